/**
 * `hono-agent-ws/cloudflare` on workerd, offline, through miniflare: the Worker is bundled with
 * esbuild, served on a random loopback port, and driven with real sockets whose every frame is
 * checked against asyncapi.yaml. Eviction is workerd's own: it evicts an object whose sockets
 * are all hibernatable after some seconds without an event.
 */
import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Miniflare } from 'miniflare';
import { TestClient } from './helpers/client.ts';
import { validateServerFrame } from './helpers/contract.ts';
import { RawSocket } from './helpers/raw-socket.ts';
import { startWorkerd } from './helpers/workerd.ts';

const ENTRY = fileURLToPath(new URL('./fixtures/cloudflare/worker.ts', import.meta.url));

/** How long workerd lets an object with only hibernatable sockets sit idle before evicting it (about 10 s). */
const IDLE_BEFORE_EVICTION_MS = 12_000;

let mf: Miniflare;
let http: string;
let ws: string;

/** The object's own view of its stream, read straight from the object (not routable through the Worker). */
async function objectState(agentId: string): Promise<{ epoch: string; seq: number; wakes: number; sockets: number }> {
  // Miniflare types the namespace with its own copy of the Workers types; only these calls are used.
  const namespace = (await mf.getDurableObjectNamespace('AGENT_WS')) as unknown as {
    idFromName(name: string): unknown;
    get(id: unknown): { fetch(url: string, init: RequestInit): Promise<Response> };
  };
  const stub = namespace.get(namespace.idFromName(agentId));
  const response = await stub.fetch('https://agent-ws.object/state', { headers: { 'X-Agent-WS-Agent': agentId } });
  assert.equal(response.status, 200);
  return (await response.json()) as { epoch: string; seq: number; wakes: number; sockets: number };
}

async function ingest(agentId: string, body: unknown, raw?: string, mount = '/agents'): Promise<Response> {
  return fetch(`${http}${mount}/${agentId}/updates`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: raw ?? JSON.stringify(body),
  });
}

/**
 * A POST on a connection of its own, closed after: the server may answer before it read the
 * body (413) and close, which would break the next request of a shared keep-alive pool.
 */
function postAlone(path: string, body: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    let answered = false;
    const request = httpRequest(
      `${http}${path}`,
      { method: 'POST', agent: false, headers: { 'Content-Type': 'application/json', Connection: 'close' } },
      (response) => {
        answered = true;
        let text = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => {
          text += chunk;
        });
        response.on('end', () => resolve({ status: response.statusCode ?? 0, body: text }));
      },
    );
    // Writing the rest of a refused body may fail once the server closed: the answer is what counts.
    request.on('error', (error) => {
      if (!answered) reject(error);
    });
    request.end(body);
  });
}

before(async () => {
  ({ mf, http, ws } = await startWorkerd(ENTRY, {
    AGENT_WS: 'AgentChannelObject',
    AGENT_WS_FAST: 'FastHeartbeat',
    AGENT_DIRECTORY: 'AgentDirectoryObject',
  }));
});

after(async () => {
  await mf?.dispose();
});

describe('cloudflare: routes in the Worker', () => {
  test('a bad agent id is refused with 400 before reaching any object', async () => {
    await assert.rejects(
      TestClient.connect(`${ws}/agents/bad%20id/ws`),
      (error: { status?: number; headers?: Record<string, string>; body?: string }) => {
        assert.equal(error.status, 400);
        assert.equal(error.headers?.['x-agent-ws-error'], 'invalid_agent_id');
        assert.equal((JSON.parse(error.body ?? '{}') as { error: string }).error, 'invalid_agent_id');
        return true;
      },
    );
  });

  test('a plain GET of the socket route is refused with 426', async () => {
    const response = await fetch(`${http}/agents/plain-get/ws`);
    assert.equal(response.status, 426);
    // The `Upgrade: websocket` header the other runtimes send with the 426 does not reach the
    // client: workerd drops it from a non-101 response (hop-by-hop).
    assert.equal(response.headers.get('x-agent-ws-error'), 'upgrade_required');
    assert.equal(((await response.json()) as { error: string }).error, 'upgrade_required');
  });

  test('authorize runs in the Worker before the upgrade: a refused client gets no socket', async () => {
    await assert.rejects(TestClient.connect(`${ws}/agents/guarded/ws?token=deny`), (error: { status?: number }) => {
      assert.equal(error.status, 401);
      return true;
    });
    assert.equal((await objectState('guarded')).sockets, 0);
  });

  test('ingest refuses bad JSON, invalid or too deep updates (400), big bodies (413), other media types (415)', async () => {
    const notJson = await ingest('ingest-bad', undefined, '{');
    assert.equal(notJson.status, 400);
    assert.equal(((await notJson.json()) as { error: string }).error, 'invalid_json');
    const invalid = await ingest('ingest-bad', { type: 'status_update', status: 42 });
    assert.equal(invalid.status, 400);
    const refusal = (await invalid.json()) as { error: string; issues: { path: string }[] };
    assert.equal(refusal.error, 'invalid_update');
    assert.deepEqual(
      refusal.issues.map((issue) => issue.path),
      ['status'],
    );
    let deep: unknown = 1;
    for (let level = 0; level < 40; level++) deep = [deep];
    const tooDeep = await ingest('ingest-bad', {
      type: 'task_update',
      task_id: 't',
      status: 'done',
      progress: 100,
      result: deep,
    });
    assert.equal(tooDeep.status, 400);
    assert.match(((await tooDeep.json()) as { message: string }).message, /maxUpdateDepth/);
    const tooBig = await postAlone(
      '/agents/ingest-bad/updates',
      JSON.stringify({ type: 'status_update', status: 'x'.repeat(2_000_000) }),
    );
    assert.equal(tooBig.status, 413);
    assert.equal((JSON.parse(tooBig.body) as { error: string }).error, 'payload_too_large');
    const notJsonType = await fetch(`${http}/agents/ingest-bad/updates`, {
      method: 'POST',
      headers: { 'Content-Type': 'text/plain' },
      body: JSON.stringify({ type: 'status_update', status: 'running' }),
    });
    assert.equal(notJsonType.status, 415);
    assert.equal((await objectState('ingest-bad')).seq, 0);
  });
});

describe('cloudflare: an agent’s Durable Object', () => {
  test('connection_established, snapshot, then each update to every socket, numbered', async () => {
    const first = await TestClient.connect(`${ws}/agents/fan-out/ws`);
    const second = await TestClient.connect(`${ws}/agents/fan-out/ws`);
    try {
      const established = await first.next('connection_established');
      assert.equal(established.agent_id, 'fan-out');
      assert.equal(established.heartbeat_interval, 30_000);
      assert.equal(established.seq, 0);
      assert.equal(established.recovered, false);
      const snapshot = await first.next('snapshot');
      assert.equal(snapshot.status, null);
      assert.equal(snapshot.epoch, established.epoch);
      const other = await second.next('connection_established');
      assert.notEqual(other.connection_id, established.connection_id);
      await second.next('snapshot');

      const accepted = await ingest('fan-out', { type: 'status_update', status: 'running' });
      assert.equal(accepted.status, 202);
      assert.deepEqual(await accepted.json(), { accepted: 1 });
      for (const client of [first, second]) {
        const update = await client.next('status_update');
        assert.equal(update.seq, 1);
        assert.equal(update.epoch, established.epoch);
        assert.equal(update.status, 'running');
      }

      const batch = await ingest('fan-out', [
        { type: 'task_update', task_id: 't1', status: 'running', progress: 10 },
        { type: 'task_update', task_id: 't1', status: 'completed', progress: 100, result: { pages: 3 } },
      ]);
      assert.equal(batch.status, 202);
      // As the hub's batching: one frame when both fall in the window seq 1 opened, else seq 2 at
      // once and seq 3 at the end of the window it opens (test/cloudflare-object.test.ts).
      for (const client of [first, second]) {
        const frame = await client.next();
        const seqs =
          frame.type === 'batch_update'
            ? frame.updates.map((entry) => entry.content.seq)
            : [(frame as { seq: number }).seq];
        if (seqs.length === 1) seqs.push((await client.next('task_update')).seq);
        assert.deepEqual(seqs, [2, 3]);
      }

      // A later client's snapshot shows the state as of seq 3.
      const late = await TestClient.connect(`${ws}/agents/fan-out/ws`);
      try {
        assert.equal((await late.next('connection_established')).seq, 3);
        const state = await late.next('snapshot');
        assert.equal(state.seq, 3);
        assert.equal(state.status?.status, 'running');
        assert.deepEqual(
          state.tasks.map((task) => [task.task_id, task.status, task.seq]),
          [['t1', 'completed', 3]],
        );
      } finally {
        await late.close();
      }
      for (const client of [first, second]) assert.deepEqual(client.problems, []);
    } finally {
      await first.close();
      await second.close();
    }
  });

  test('a client resuming with ?since=&epoch= gets exactly what it missed; a stale epoch gets the snapshot only', async () => {
    const agentId = 'resuming';
    const first = await TestClient.connect(`${ws}/agents/${agentId}/ws`);
    const { epoch } = await first.next('connection_established');
    for (const status of ['one', 'two', 'three']) {
      assert.equal((await ingest(agentId, { type: 'status_update', status })).status, 202);
    }
    assert.equal((await first.next('status_update')).seq, 1);
    await first.close();
    const more = await ingest(agentId, [
      { type: 'status_update', status: 'four' },
      { type: 'task_update', task_id: 'x', status: 'running', progress: 5 },
    ]);
    assert.equal(more.status, 202);

    const resumed = await TestClient.connect(`${ws}/agents/${agentId}/ws?since=1&epoch=${epoch}`);
    try {
      const established = await resumed.next('connection_established');
      assert.equal(established.recovered, true);
      assert.equal(established.seq, 5);
      assert.equal((await resumed.next('snapshot')).seq, 5);
      const missed = await resumed.next('batch_update');
      assert.equal(missed.source, 'resume');
      assert.deepEqual(
        missed.updates.map((entry) => entry.content.seq),
        [2, 3, 4, 5],
      );
      assert.deepEqual(resumed.problems, []);
    } finally {
      await resumed.close();
    }

    // Up to date: recovered, nothing to replay.
    const current = await TestClient.connect(`${ws}/agents/${agentId}/ws?since=5&epoch=${epoch}`);
    try {
      assert.equal((await current.next('connection_established')).recovered, true);
      await current.next('snapshot');
      await current.expectSilence(300);
    } finally {
      await current.close();
    }

    const stale = await TestClient.connect(`${ws}/agents/${agentId}/ws?since=1&epoch=someotherepoch`);
    try {
      assert.equal((await stale.next('connection_established')).recovered, false);
      assert.equal((await stale.next('snapshot')).seq, 5);
      await stale.expectSilence(300);
    } finally {
      await stale.close();
    }
    // Ahead of the stream (a client of a lost history): the snapshot only.
    const ahead = await TestClient.connect(`${ws}/agents/${agentId}/ws?since=99&epoch=${epoch}`);
    try {
      assert.equal((await ahead.next('connection_established')).recovered, false);
      await ahead.next('snapshot');
      await ahead.expectSilence(300);
    } finally {
      await ahead.close();
    }
  });

  test('updates published while nobody watches are replayed as source: queue to the sockets that open within the handover', async () => {
    const agentId = 'offline';
    for (const status of ['queued one', 'queued two']) {
      assert.equal((await ingest(agentId, { type: 'status_update', status })).status, 202);
    }
    const first = await TestClient.connect(`${ws}/agents/${agentId}/ws`);
    const second = await TestClient.connect(`${ws}/agents/${agentId}/ws`);
    try {
      for (const client of [first, second]) {
        assert.equal((await client.next('connection_established')).seq, 2);
        assert.equal((await client.next('snapshot')).status?.status, 'queued two');
        const queue = await client.next('batch_update');
        assert.equal(queue.source, 'queue');
        assert.deepEqual(
          queue.updates.map((entry) => entry.content.seq),
          [1, 2],
        );
      }
      assert.deepEqual([...first.problems, ...second.problems], []);
    } finally {
      await first.close();
      await second.close();
    }
    // Handed over: a socket opening later gets the snapshot only.
    await new Promise((done) => setTimeout(done, 1100));
    const later = await TestClient.connect(`${ws}/agents/${agentId}/ws`);
    try {
      assert.equal((await later.next('snapshot')).seq, 2);
      await later.expectSilence(300);
    } finally {
      await later.close();
    }
  });

  test('the offline queue keeps the newest maxQueueSize updates', async () => {
    const agentId = 'offline-full';
    const burst = Array.from({ length: 105 }, (_, index) => ({ type: 'status_update', status: `s${index + 1}` }));
    assert.equal((await ingest(agentId, burst)).status, 202);
    const client = await TestClient.connect(`${ws}/agents/${agentId}/ws`);
    try {
      await client.next('snapshot');
      const queue = await client.next('batch_update');
      const seqs = queue.updates.map((entry) => entry.content.seq);
      assert.equal(seqs.length, 100);
      assert.equal(seqs[0], 6);
      assert.equal(seqs.at(-1), 105);
    } finally {
      await client.close();
    }
  });

  test('a malformed resume point is refused with 400 in the Worker', async () => {
    for (const query of ['since=1', 'since=-1&epoch=abc', 'since=1&epoch=bad%20epoch', 'since=1e3&epoch=abc']) {
      await assert.rejects(
        TestClient.connect(`${ws}/agents/resume-bad/ws?${query}`),
        (error: { status?: number; headers?: Record<string, string> }) => {
          assert.equal(error.status, 400, query);
          assert.equal(error.headers?.['x-agent-ws-error'], 'invalid_resume');
          return true;
        },
      );
    }
  });

  test('publishTask from Worker code reaches the agent’s sockets; invalid updates reject with InvalidUpdateError', async () => {
    const client = await TestClient.connect(`${ws}/agents/from-code/ws`);
    try {
      await client.next('snapshot');
      const post = (agentId: string, body: unknown) =>
        fetch(`${http}/app/${agentId}/task`, { method: 'POST', body: JSON.stringify(body) });
      assert.equal((await post('from-code', { task_id: 'a', status: 'running', progress: 50 })).status, 204);
      const update = await client.next('task_update');
      assert.deepEqual([update.task_id, update.progress, update.seq, update.agent_id], ['a', 50, 1, 'from-code']);
      const bad = await post('from-code', { task_id: 'a', status: 'running', progress: 140 });
      assert.equal(bad.status, 400);
      assert.match(((await bad.json()) as { invalid: string }).invalid, /^invalid task update: .*progress/);
      let deep: unknown = 1;
      for (let level = 0; level < 40; level++) deep = { deeper: deep };
      const tooDeep = await post('from-code', { task_id: 'a', status: 'done', progress: 100, result: deep });
      assert.equal(tooDeep.status, 400);
      assert.match(((await tooDeep.json()) as { invalid: string }).invalid, /maxUpdateDepth/);
      const badId = await post('bad%20id', { task_id: 'a', status: 'running', progress: 1 });
      assert.equal(badId.status, 400);
      assert.match(((await badId.json()) as { invalid: string }).invalid, /^invalid agent id/);
      await client.expectSilence(200);
      assert.deepEqual(client.problems, []);
    } finally {
      await client.close();
    }
  });

  test('bad frames get the documented answers and the socket stays usable', async () => {
    const client = await TestClient.connect(`${ws}/agents/bad-frames/ws`);
    try {
      await client.next('snapshot');
      client.sendRaw('not json');
      assert.equal((await client.next('error')).code, 'invalid_json');
      client.sendRaw(JSON.stringify({ type: 'subscribe' }));
      assert.equal((await client.next('error')).code, 'unknown_type');
      client.sendRaw(Buffer.from([1, 2, 3]), true);
      assert.equal((await client.next('error')).code, 'binary_not_supported');
      client.send({ type: 'ping' });
      await client.next('pong');
      client.sendRaw('x'.repeat(70_000));
      const closed = await client.closed;
      assert.equal(closed.code, 1009);
      assert.deepEqual(client.problems, []);
    } finally {
      client.socket.terminate();
    }
  });

  test('the object is evicted while its socket stays open; it wakes on the next update, or on the socket’s pong, and seq continues', async () => {
    const agentId = 'hibernating';
    const client = await TestClient.connect(`${ws}/agents/${agentId}/ws`);
    try {
      const established = await client.next('connection_established');
      await client.next('snapshot');
      assert.equal((await ingest(agentId, { type: 'status_update', status: 'running' })).status, 202);
      assert.equal((await client.next('status_update')).seq, 1);
      const before = await objectState(agentId);
      assert.equal(before.wakes, 1);

      // Idle, so workerd evicts the object; each round ends with an update, which wakes it.
      let seq = 1;
      let wakes = before.wakes;
      for (let round = 0; round < 3 && wakes === before.wakes; round++) {
        await new Promise((done) => setTimeout(done, IDLE_BEFORE_EVICTION_MS));
        assert.equal((await ingest(agentId, { type: 'status_update', status: `round ${round}` })).status, 202);
        const update = await client.next('status_update');
        seq++;
        assert.equal(update.seq, seq);
        assert.equal(update.epoch, established.epoch);
        wakes = (await objectState(agentId)).wakes;
      }
      assert.ok(wakes > before.wakes, 'workerd never evicted the object');
      const after = await objectState(agentId);
      assert.equal(after.seq, seq);
      assert.equal(after.epoch, established.epoch);
      assert.equal(after.sockets, 1);

      // The history survived the eviction too: a client resuming from seq 1 gets the rest.
      const resumed = await TestClient.connect(`${ws}/agents/${agentId}/ws?since=1&epoch=${established.epoch}`);
      try {
        assert.equal((await resumed.next('connection_established')).recovered, true);
        await resumed.next('snapshot');
        const missed = await resumed.next('batch_update');
        assert.deepEqual(
          missed.updates.map((entry) => entry.content.seq),
          Array.from({ length: seq - 1 }, (_, index) => index + 2),
        );
      } finally {
        await resumed.close();
      }
      // Evicted again, the object is woken by the socket's own frames: a heartbeat's pong, then
      // a ping it answers, each handled by a new instance with the socket still there.
      let frameWakes = (await objectState(agentId)).wakes;
      const idleFrom = frameWakes;
      for (let round = 0; round < 3 && frameWakes === idleFrom; round++) {
        await new Promise((done) => setTimeout(done, IDLE_BEFORE_EVICTION_MS));
        client.send({ type: 'pong' });
        client.send({ type: 'ping' });
        await client.next('pong');
        frameWakes = (await objectState(agentId)).wakes;
      }
      assert.ok(frameWakes > idleFrom, 'workerd never evicted the object before the frames');
      assert.equal(client.socket.readyState, client.socket.OPEN);
      assert.equal((await ingest(agentId, { type: 'status_update', status: 'after the frames' })).status, 202);
      assert.equal((await client.next('status_update')).seq, seq + 1, 'seq continues after a wake by a frame');
      assert.deepEqual(client.problems, []);
    } finally {
      await client.close();
    }
  });
});

describe('cloudflare: heartbeat', () => {
  test('a socket that answers pings stays; one that does not gets a 4000 close frame', async () => {
    const answering = await TestClient.connect(`${ws}/fast/heartbeat/ws`);
    // A raw socket never answers a ping, and shows the close frame the moment it arrives: the
    // TCP close after a close frame sent from an alarm comes seconds later on workerd (see
    // docs/cloudflare.md), and is not what this test is about.
    const silent = await RawSocket.connect(`${ws}/fast/heartbeat/ws`);
    try {
      assert.equal((await answering.next('connection_established')).heartbeat_interval, 1500);
      const closeFrame = await Promise.race([
        silent.closeFrame,
        new Promise<undefined>((done) => setTimeout(done, 20_000, undefined)),
      ]);
      assert.deepEqual(closeFrame, { code: 4000, reason: 'heartbeat timeout' });
      const seen = silent.frames.flatMap((frame) =>
        frame.kind === 'text' ? [validateServerFrame(JSON.parse(frame.text)).type] : [],
      );
      assert.deepEqual(seen, ['connection_established', 'snapshot', 'ping']);
      // The answering socket is pinged by this sweep and the next, and is still served.
      for (let sweep = 0; sweep < 2; sweep++) await answering.next('ping', 10_000);
      assert.equal(answering.socket.readyState, answering.socket.OPEN);
      const accepted = await ingest('heartbeat', { type: 'status_update', status: 'alive' }, undefined, '/fast');
      assert.equal(accepted.status, 202);
      assert.equal((await answering.next('status_update')).seq, 1);
      assert.deepEqual(answering.problems, []);
    } finally {
      await answering.close();
      await silent.destroy();
    }
  });
});
