/**
 * The conformance suite: every wire behaviour, over real sockets, against the demo server
 * started as a child process. `test/<runtime>.test.ts` runs it once per runtime. These servers
 * run with SNAPSHOT=off, so frames arrive exactly as the seed protocol has them; snapshots,
 * sequence numbers and resume have their own suite (`test/resume-suite.ts`).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { QUEUE_HANDOVER_MS } from '../plugin/hub.ts';
import type { ServerMessage, TaskUpdate } from '../plugin/index.ts';
import { TestClient } from './helpers/client.ts';
import { newAgentId } from './helpers/ids.ts';
import { parsePrometheus } from './helpers/prometheus.ts';
import {
  agents,
  ingest,
  metrics,
  type Runtime,
  request,
  type ServerHandle,
  startServer,
  stats,
  statsWith,
  task,
} from './helpers/server.ts';
import { sleep, waitFor } from './helpers/wait.ts';

/** Where a runtime differs; every flag carries its reason. */
export interface Capabilities {
  /** Skip reason for the abrupt-drop error count, if the runtime cannot report it. */
  abruptCloseSkip?: string;
  /**
   * Why a refused upgrade carries no `X-Agent-WS-Error` header, if it cannot: the server
   * answers the handshake itself with the status line only (`@hono/node-ws`).
   */
  refusalHeaderSkip?: string;
  /**
   * Why the 426 to a plain GET carries no `Upgrade: websocket` header, if it cannot: the runtime
   * strips hop-by-hop headers from a response that is not a 101 (workerd).
   */
  upgradeHeaderSkip?: string;
  /**
   * Skip reason for the SIGTERM test, if the runtime gives the server no shutdown to act on
   * (Workers: the platform ends an object's sockets itself, and its window is in storage).
   */
  shutdownSkip?: string;
}

const BATCH = 80;

export function conformance(runtime: Runtime, capabilities: Capabilities = {}): void {
  describe(`conformance on ${runtime.name}`, { concurrency: false }, () => {
    let server: ServerHandle;
    const clients: TestClient[] = [];
    const open = async (agentId: string, options: Parameters<typeof TestClient.connect>[1] = {}) => {
      const client = await TestClient.connect(`${server.ws}/agents/${agentId}/ws`, options);
      clients.push(client);
      return client;
    };

    before(async () => {
      server = await startServer(runtime, {
        SNAPSHOT: 'off',
        BATCH_INTERVAL_MS: String(BATCH),
        HEARTBEAT_INTERVAL_MS: '60000',
        MAX_QUEUE_SIZE: '5',
        MAX_MESSAGE_SIZE: '2048',
      });
    });
    after(async () => {
      for (const client of clients) client.socket.terminate();
      for (const client of clients) assert.deepEqual(client.problems, [], 'every frame matched the contract');
      await server?.stop();
    });

    it('sends connection_established first, with agent id, connection id and ISO timestamp', async () => {
      const id = newAgentId('hello');
      const client = await open(id);
      const first = await client.next('connection_established');
      assert.equal(client.frames[0], first);
      assert.equal(first.agent_id, id);
      assert.ok(first.connection_id.length > 0);
      assert.equal(first.batch_interval, BATCH);
      assert.ok(Math.abs(Date.parse(first.timestamp) - Date.now()) < 60_000);
    });

    it('fans out to every connection of the agent and to no other agent', async () => {
      const id = newAgentId('fanout');
      const watchers = await Promise.all([open(id), open(id), open(id)]);
      const other = await open(newAgentId('other'));
      await Promise.all([...watchers, other].map((client) => client.next('connection_established')));
      assert.equal((await ingest(server, id, task(1))).status, 202);
      for (const client of watchers) {
        const update = await client.next('task_update');
        assert.equal(update.agent_id, id);
        assert.equal(update.task_id, 'task-1');
      }
      await other.expectSilence(BATCH * 3);
      for (const client of watchers) await client.expectSilence(0);
      const ids = new Set(watchers.map((client) => (client.frames[0] as { connection_id: string }).connection_id));
      assert.equal(ids.size, 3, 'each connection has its own id');
    });

    it('sends a lone update at once, then batches what arrives inside the window, in order', async () => {
      const id = newAgentId('batch');
      const client = await open(id);
      await client.next('connection_established');
      await ingest(
        server,
        id,
        [1, 2, 3, 4, 5, 6].map((n) => task(n)),
      );
      const first = await client.next();
      assert.equal(first.type, 'task_update', 'the first update opens the window and goes out alone');
      assert.equal((first as { task_id: string }).task_id, 'task-1');
      const batch = await client.next();
      assert.equal(batch.type, 'batch_update');
      assert.equal(batch.source, 'window');
      assert.deepEqual(
        batch.updates.map((entry) => [entry.type, (entry.content as { task_id: string }).task_id]),
        [2, 3, 4, 5, 6].map((n) => ['task_update', `task-${n}`]),
      );
      for (const entry of batch.updates) assert.equal(entry.content.type, entry.type);
      // One update inside a window goes out as itself, not as a batch of one. First the window
      // the batch opened must close empty, which the server does not announce: waited out.
      await sleep(BATCH * 3);
      await ingest(server, id, [task(7), task(8)]);
      assert.equal(((await client.next()) as { task_id: string }).task_id, 'task-7');
      const eighth = await client.next();
      assert.equal(eighth.type, 'task_update');
      assert.equal((eighth as { task_id: string }).task_id, 'task-8');
      // Traffic over: after the window closes quietly (unannounced, so waited out), the next
      // update is immediate again.
      await sleep(BATCH * 3);
      const before = Date.now();
      await ingest(server, id, task(9));
      assert.equal(((await client.next('task_update')) as { task_id: string }).task_id, 'task-9');
      assert.ok(Date.now() - before < 2000);
    });

    it('queues updates while the agent has no connection, keeps the newest maxQueueSize, replays once', async () => {
      const id = newAgentId('queue');
      const before = await stats(server);
      for (let n = 1; n <= 8; n++) assert.equal((await ingest(server, id, task(n))).status, 202);
      const afterPublish = await stats(server);
      assert.equal(
        afterPublish.messages_dropped - before.messages_dropped,
        3,
        'overflow drops the oldest and counts it',
      );
      assert.equal(afterPublish.messages_queued - before.messages_queued, 8);

      const client = await open(id);
      assert.equal((await client.next()).type, 'connection_established');
      const replay = await client.next();
      // The server opened the handover when it joined, before it sent this.
      const handoverOpenedBefore = performance.now();
      assert.equal(replay.type, 'batch_update');
      assert.equal(replay.source, 'queue');
      assert.deepEqual(
        replay.updates.map((entry) => (entry.content as { task_id: string }).task_id),
        ['task-4', 'task-5', 'task-6', 'task-7', 'task-8'],
      );
      // Live updates follow the replay, in order.
      await ingest(server, id, task(9));
      assert.equal(((await client.next('task_update')) as { task_id: string }).task_id, 'task-9');

      // After the handover (connections within QUEUE_HANDOVER_MS get the same queue), no more.
      // A deadline inside the server process, which announces nothing: waited out in real time.
      await sleep(handoverOpenedBefore + QUEUE_HANDOVER_MS + 100 - performance.now());
      const second = await open(id);
      await second.next('connection_established');
      await second.expectSilence(BATCH * 3);
      await client.close();
      await second.close();
      await waitFor(
        async () => (await stats(server)).agents_connected === afterPublish.agents_connected,
        3000,
        'agent offline',
      );
      const third = await open(id);
      await third.next('connection_established');
      await third.expectSilence(BATCH * 3);
    });

    it('keeps order across a live batch, going offline and the queue replay', async () => {
      const id = newAgentId('order');
      const { active_connections: idle } = await stats(server);
      const client = await open(id);
      await client.next('connection_established');
      await ingest(server, id, [task(1), task(2), task(3)]);
      await client.close();
      await waitFor(async () => (await stats(server)).active_connections === idle, 3000, 'server saw the close');
      await ingest(server, id, [task(4), task(5)]);
      const back = await open(id);
      await back.next('connection_established');
      const seen: string[] = [];
      const collect = (frame: ServerMessage) => {
        if (frame.type === 'task_update') seen.push(frame.task_id);
        if (frame.type === 'batch_update')
          for (const entry of frame.updates) seen.push((entry.content as TaskUpdate).task_id);
      };
      await waitFor(() => {
        seen.length = 0;
        for (const frame of [...client.frames, ...back.frames]) collect(frame);
        return seen.length >= 5;
      });
      // Updates 2 and 3 were in the window when the client left: either sent before it
      // closed, or handed back to the queue; never lost, never reordered.
      assert.deepEqual(seen, ['task-1', 'task-2', 'task-3', 'task-4', 'task-5']);
    });

    it('reports stats and cleans up failed sockets', async () => {
      const id = newAgentId('stats');
      const before = await stats(server);
      for (const field of ['total_connections', 'active_connections', 'messages_sent', 'errors'] as const) {
        assert.equal(typeof before[field], 'number', field);
      }
      const client = await open(id);
      await client.next('connection_established');
      await waitFor(async () => (await stats(server)).active_connections === before.active_connections + 1);
      const during = await stats(server);
      assert.equal(during.total_connections, before.total_connections + 1);
      assert.ok(during.messages_sent > before.messages_sent);
      assert.ok(during.agents_connected >= 1);
      await client.terminate();
      await waitFor(
        async () => (await stats(server)).active_connections === before.active_connections,
        5000,
        'cleanup',
      );
      const afterDrop = await stats(server);
      if (!capabilities.abruptCloseSkip) {
        assert.equal(afterDrop.errors_by_kind.abrupt_close + afterDrop.errors_by_kind.socket_error > 0, true);
        assert.ok(afterDrop.errors > before.errors, 'an abrupt drop counts as an error');
      }
    });

    it('lists agents: connected with their connections, status and open tasks, queued ones, page by page', async () => {
      const watched = newAgentId('listed');
      const queued = newAgentId('listed-queued');
      const first = await open(watched);
      const second = await open(watched);
      await first.next('connection_established');
      await second.next('connection_established');
      assert.equal((await ingest(server, watched, [task(1), task(2, { status: 'completed' }), task(3)])).status, 202);
      assert.equal((await ingest(server, watched, { type: 'status_update', status: 'running' })).status, 202);
      assert.equal((await ingest(server, queued, task(7))).status, 202);
      await first.next('batch_update');
      // Every agent, page by page (earlier tests left others), 2 at a time.
      const found = new Map<string, Awaited<ReturnType<typeof agents>>['agents'][number]>();
      let cursor: string | null = null;
      const ids: string[] = [];
      do {
        const page: Awaited<ReturnType<typeof agents>> = await agents(
          server,
          `?limit=2${cursor ? `&cursor=${cursor}` : ''}`,
        );
        assert.ok(page.agents.length <= 2);
        for (const entry of page.agents) {
          ids.push(entry.agent_id);
          found.set(entry.agent_id, entry);
        }
        cursor = page.next_cursor;
      } while (cursor !== null);
      assert.deepEqual(ids, [...ids].sort(), 'in agent id order, each once');
      assert.equal(new Set(ids).size, ids.length);
      const listed = found.get(watched);
      assert.ok(listed, 'the watched agent is listed');
      assert.equal(listed.connections, 2);
      assert.equal(listed.instances, 1);
      assert.equal(listed.status?.status, 'running');
      assert.deepEqual(
        listed.open_tasks.map((entry) => entry.task_id),
        ['task-3', 'task-1'],
      );
      assert.equal(listed.seq, 4);
      const waiting = found.get(queued);
      assert.ok(waiting, 'the queued agent is listed');
      assert.equal(waiting.connections, 0);
      assert.equal(waiting.queued, 1);
      const refused = await request(`${server.http}/agents/ws/agents?limit=0`);
      assert.equal(refused.status, 400);
      assert.equal(JSON.parse(refused.text).error, 'invalid_query');
    });

    it('serves the stats as Prometheus metrics (text 0.0.4), the same figures', async () => {
      const id = newAgentId('metrics');
      const client = await open(id);
      await client.next('connection_established');
      await ingest(server, id, [task(1), task(2), task(3)]);
      await client.next('task_update');
      await client.next('batch_update');
      const { contentType, text } = await metrics(server);
      const figures = await stats(server);
      assert.equal(contentType, 'text/plain; version=0.0.4; charset=utf-8');
      const families = parsePrometheus(text);
      const value = (name: string) => Number(families.get(`hono_agent_ws_${name}`)?.metrics[0]?.value);
      assert.equal(value('updates_published_total'), figures.updates_published);
      assert.equal(value('connections_total'), figures.total_connections);
      assert.equal(value('batches_sent_total'), figures.batches_sent);
      assert.equal(value('messages_queued_total'), figures.messages_queued);
      assert.equal(value('messages_dropped_total'), figures.messages_dropped);
      for (const sample of families.get('hono_agent_ws_errors_total')?.metrics ?? []) {
        const kind = sample.labels?.kind as keyof typeof figures.errors_by_kind;
        assert.equal(Number(sample.value), figures.errors_by_kind[kind], kind);
      }
      const batches = families.get('hono_agent_ws_batch_size_updates')?.metrics[0];
      assert.equal(Number(batches?.count), figures.batches_sent);
      assert.ok(Number(families.get('hono_agent_ws_send_delay_seconds')?.metrics[0]?.count) >= 2);
    });

    it('answers bad frames with error frames, counts them, and keeps the connection', async () => {
      const client = await open(newAgentId('bad'));
      await client.next('connection_established');
      const before = await stats(server);
      const cases: [string | Buffer, string, boolean?][] = [
        ['not json', 'invalid_json'],
        ['[1,2]', 'invalid_message'],
        ['{"type":5}', 'invalid_message'],
        ['{"type":"pong","timestamp":"yesterday"}', 'invalid_message'],
        ['{"type":"subscribe"}', 'unknown_type'],
        [Buffer.from([1, 2, 3]), 'binary_not_supported', true],
      ];
      for (const [data, code, binary] of cases) {
        client.sendRaw(data, binary);
        const error = await client.next('error');
        assert.equal(error.code, code, `answer to ${String(data)}`);
        assert.ok(error.message.length > 0);
      }
      client.send({ type: 'ping' });
      assert.equal((await client.next('pong')).type, 'pong', 'the connection still works');
      const afterBad = await stats(server);
      assert.equal(afterBad.errors - before.errors, cases.length);
      assert.equal(afterBad.errors_by_kind.invalid_message - before.errors_by_kind.invalid_message, 3);
    });

    it('closes with 1009 on a frame over maxMessageSize', async () => {
      const client = await open(newAgentId('big'));
      await client.next('connection_established');
      const before = await stats(server);
      client.sendRaw(JSON.stringify({ type: 'pong', pad: 'x'.repeat(3000) }));
      assert.equal((await client.closed).code, 1009);
      await waitFor(async () => (await stats(server)).errors > before.errors);
    });

    it('refuses bad agent ids with 400 JSON and plain GETs with 426', async () => {
      for (const bad of ['x'.repeat(129), 'bad$id', '%20']) {
        const refused = await TestClient.connect(`${server.ws}/agents/${bad}/ws`).catch((error) => error);
        assert.equal(refused.status, 400, bad);
        if (!capabilities.refusalHeaderSkip) assert.equal(refused.headers['x-agent-ws-error'], 'invalid_agent_id');
        // Without an upgrade the same refusal carries its JSON body on every runtime.
        const plain = await request(`${server.http}/agents/${bad}/ws`);
        assert.equal(plain.status, 400);
        assert.equal(JSON.parse(plain.text).error, 'invalid_agent_id');
      }
      const plain = await request(`${server.http}/agents/${newAgentId('plain')}/ws`);
      assert.equal(plain.status, 426);
      if (!capabilities.upgradeHeaderSkip) assert.equal(plain.headers.upgrade, 'websocket');
      assert.equal(JSON.parse(plain.text).error, 'upgrade_required');
      const okId = 'A-z_0.9:x'.padEnd(128, 'y');
      const client = await open(okId);
      assert.equal((await client.next('connection_established')).agent_id, okId);
    });

    it('refuses a 10,000-deep result at the door (live, inside a window, offline) and loses nothing else', async () => {
      // Written as text: JSON.stringify itself overflows on it (which is what crashed the hub).
      const deep = `${JSON.stringify(task(99)).slice(0, -1)},"result":${'['.repeat(10_000)}${']'.repeat(10_000)}}`;
      const refused = async (id: string) => {
        const answer = await ingest(server, id, deep);
        assert.equal(answer.status, 400);
        assert.match(String(answer.body.message), /maxUpdateDepth/);
      };
      // Offline: the updates queued around it are all replayed (MAX_QUEUE_SIZE is 5 here).
      const offline = newAgentId('deep-offline');
      for (let n = 1; n <= 5; n++) await ingest(server, offline, task(n));
      await refused(offline);
      const late = await open(offline);
      await late.next('connection_established');
      const queued = await late.next('batch_update');
      assert.deepEqual(
        queued.updates.map((entry) => (entry.content as TaskUpdate).task_id),
        ['task-1', 'task-2', 'task-3', 'task-4', 'task-5'],
      );
      // Live, then inside the window the first update opened.
      const live = newAgentId('deep-live');
      const client = await open(live);
      await client.next('connection_established');
      await refused(live);
      assert.equal((await ingest(server, live, task(1))).status, 202);
      await refused(live);
      assert.equal((await ingest(server, live, [task(2), task(3)])).status, 202);
      const seen: string[] = [];
      while (seen.length < 3) {
        const frame = await client.next();
        if (frame.type === 'task_update') seen.push(frame.task_id);
        if (frame.type === 'batch_update')
          for (const entry of frame.updates) seen.push((entry.content as TaskUpdate).task_id);
      }
      assert.deepEqual(seen, ['task-1', 'task-2', 'task-3']);
      assert.equal(server.process.exitCode, null, 'the server is alive');
    });

    it('ingests single updates and arrays, and rejects bad requests with 400, 413 and 415', async () => {
      const id = newAgentId('ingest');
      const client = await open(id);
      await client.next('connection_established');
      const status = await ingest(server, id, {
        type: 'status_update',
        status: 'running',
        execution_status: { state: 'executing', task_id: 't', progress: 5, message: 'go' },
      });
      assert.deepEqual(status, { status: 202, body: { accepted: 1 } });
      const update = await client.next('status_update');
      assert.equal(update.status, 'running');
      assert.equal(update.execution_status?.progress, 5);
      assert.deepEqual((await ingest(server, id, [task(1), task(2, { status: 'failed', error: 'boom' })])).body, {
        accepted: 2,
      });

      const before = await stats(server);
      const bad = await ingest(server, id, { type: 'task_update', task_id: 'x', status: 'running', progress: 140 });
      assert.equal(bad.status, 400);
      assert.equal(bad.body.error, 'invalid_update');
      assert.ok(Array.isArray(bad.body.issues) && bad.body.issues.length > 0);
      assert.equal((await ingest(server, id, { type: 'connection_established' })).status, 400);
      assert.equal((await ingest(server, id, [])).status, 400);
      assert.equal((await ingest(server, id, '{oops')).status, 400);
      assert.equal((await ingest(server, id, 'hello', { 'content-type': 'text/plain' })).status, 415);
      assert.equal((await ingest(server, id, task(1, { message: 'x'.repeat(2 * 1024 * 1024) }))).status, 413);
      assert.equal((await ingest(server, 'bad$id', task(1))).status, 400);
      const afterBad = await stats(server);
      assert.equal(afterBad.errors_by_kind.ingest_rejected - before.errors_by_kind.ingest_rejected, 7);
    });
  });

  describe(`conformance on ${runtime.name}: heartbeat`, { concurrency: false }, () => {
    let server: ServerHandle;
    before(async () => {
      server = await startServer(runtime, { SNAPSHOT: 'off', HEARTBEAT_INTERVAL_MS: '150' });
    });
    after(() => server?.stop());

    it('pings every interval, keeps clients that answer, closes silent ones with 4000', async () => {
      const live = await TestClient.connect(`${server.ws}/agents/${newAgentId('hb')}/ws`);
      const silent = await TestClient.connect(`${server.ws}/agents/${newAgentId('hb')}/ws`, { autoPong: false });
      const before = await stats(server);
      const ping = await live.next('ping', 2000);
      assert.ok(ping.timestamp);
      const closed = await silent.closed;
      assert.equal(closed.code, 4000);
      assert.equal(closed.reason, 'heartbeat timeout');
      // Two more sweeps, each judging the pong to the ping before it: the client that answers stays.
      const pings = () => live.frames.filter((frame) => frame.type === 'ping').length;
      const pingsAtClose = pings();
      await waitFor(
        () => pings() >= pingsAtClose + 2 || live.socket.readyState !== live.socket.OPEN,
        3000,
        'two sweeps after the close',
      );
      assert.equal(live.socket.readyState, live.socket.OPEN, 'a client that answers stays');
      assert.ok(live.frames.filter((frame) => frame.type === 'ping').length >= 3);
      const afterSweep = await stats(server);
      assert.equal(afterSweep.errors_by_kind.heartbeat_timeout - before.errors_by_kind.heartbeat_timeout, 1);
      assert.equal(afterSweep.active_connections, 1);
      live.socket.terminate();
      assert.deepEqual([...live.problems, ...silent.problems], []);
    });
  });

  describe(`conformance on ${runtime.name}: batching off, authorize, shutdown`, { concurrency: false }, () => {
    it('sends every update on its own when BATCH_INTERVAL_MS=0', async () => {
      const server = await startServer(runtime, { SNAPSHOT: 'off', BATCH_INTERVAL_MS: '0' });
      try {
        const id = newAgentId('nobatch');
        const client = await TestClient.connect(`${server.ws}/agents/${id}/ws`);
        await client.next('connection_established');
        await ingest(
          server,
          id,
          [1, 2, 3, 4].map((n) => task(n)),
        );
        for (let n = 1; n <= 4; n++) assert.equal(((await client.next()) as { task_id: string }).task_id, `task-${n}`);
        assert.equal(client.frames.filter((frame) => frame.type === 'batch_update').length, 0);
        client.socket.terminate();
      } finally {
        await server.stop();
      }
    });

    it('with AUTH_TOKEN guards every route: 401 without or with a wrong token, before any upgrade', async () => {
      const server = await startServer(runtime, { SNAPSHOT: 'off', AUTH_TOKEN: 's3cret' });
      try {
        const id = newAgentId('auth');
        const bearer = { authorization: 'Bearer s3cret' };
        await assert.rejects(TestClient.connect(`${server.ws}/agents/${id}/ws`), { status: 401 });
        await assert.rejects(TestClient.connect(`${server.ws}/agents/${id}/ws?token=wrong`), { status: 401 });
        const client = await TestClient.connect(`${server.ws}/agents/${id}/ws`, { headers: bearer });
        await client.next('connection_established');
        // Stats and ingest are guarded too: an update injected without the token never lands.
        assert.equal((await request(`${server.http}/agents/ws/stats`)).status, 401);
        assert.equal((await request(`${server.http}/agents/ws/agents`)).status, 401);
        assert.equal((await request(`${server.http}/agents/ws/metrics?token=wrong`)).status, 401);
        assert.equal((await request(`${server.http}/agents/ws/agents`, { headers: bearer })).status, 200);
        assert.equal((await request(`${server.http}/agents/ws/metrics?token=s3cret`)).status, 200);
        assert.equal((await ingest(server, id, task(1))).status, 401);
        assert.equal((await ingest(server, id, task(2), { authorization: 'Bearer nope' })).status, 401);
        assert.equal((await ingest(server, id, task(3), bearer)).status, 202);
        assert.equal(((await client.next('task_update')) as TaskUpdate).task_id, 'task-3');
        await client.expectSilence(BATCH * 2);
        const counted = await statsWith(server, bearer);
        assert.equal(counted.errors_by_kind.unauthorized, 7);
        assert.equal(counted.total_connections, 1);
        const tokenInQuery = await TestClient.connect(`${server.ws}/agents/${id}/ws?token=s3cret`);
        await tokenInQuery.next('connection_established');
        client.socket.terminate();
        tokenInQuery.socket.terminate();
      } finally {
        await server.stop();
      }
    });

    it('refuses a foreign browser Origin with 403 before the upgrade, accepts its own and listed ones', async () => {
      const server = await startServer(runtime, {
        SNAPSHOT: 'off',
        ALLOWED_ORIGINS: 'https://dashboard.example, null',
      });
      try {
        const id = newAgentId('origin');
        for (const origin of ['https://evil.example', 'http://127.0.0.1:1']) {
          await assert.rejects(TestClient.connect(`${server.ws}/agents/${id}/ws`, { headers: { origin } }), {
            status: 403,
          });
        }
        for (const origin of [`http://127.0.0.1:${server.port}`, 'https://dashboard.example', 'null']) {
          const client = await TestClient.connect(`${server.ws}/agents/${id}/ws`, { headers: { origin } });
          await client.next('connection_established');
          client.socket.terminate();
        }
        assert.equal((await stats(server)).errors_by_kind.origin_forbidden, 2);
      } finally {
        await server.stop();
      }
    });

    it('on SIGTERM flushes pending batches, closes sockets with 1001 and exits 0', {
      skip: capabilities.shutdownSkip,
    }, async () => {
      const server = await startServer(runtime, { SNAPSHOT: 'off', BATCH_INTERVAL_MS: '5000' });
      const id = newAgentId('shutdown');
      const client = await TestClient.connect(`${server.ws}/agents/${id}/ws`);
      await client.next('connection_established');
      await ingest(server, id, [task(1), task(2), task(3)]);
      await client.next('task_update');
      const code = await server.stop();
      const batch = await client.next('batch_update');
      assert.deepEqual(
        batch.updates.map((entry) => (entry.content as { task_id: string }).task_id),
        ['task-2', 'task-3'],
      );
      assert.equal((await client.closed).code, 1001);
      assert.equal(code, 0);
      assert.deepEqual(client.problems, []);
    });
  });
}
