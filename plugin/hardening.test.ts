/**
 * What a hostile client, publisher or broker can do to one hub, through the in-process fake
 * runtime: every input gets its documented answer, and nothing escapes as an exception.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fakeClock } from '../test/helpers/clock.ts';
import { type FakeSocket, fakeRuntime } from '../test/helpers/fake-runtime.ts';
import {
  type AgentHubOptions,
  type AgentUpdate,
  type BrokerFactory,
  createAgentHub,
  type LogEntry,
  memoryBroker,
} from './index.ts';

const quiet: AgentHubOptions = { logger: false, heartbeatInterval: 0, snapshot: false };
const connected = async (runtime: ReturnType<typeof fakeRuntime>, agentId: string, headers = {}) => {
  const socket = await runtime.connect(agentId, headers);
  assert.ok(!(socket instanceof Response), 'connection accepted');
  return socket as FakeSocket;
};
const task = (n: number) => ({ task_id: `t${n}`, status: 'running', progress: n });
const taskIds = (socket: FakeSocket) =>
  socket.frames().flatMap((frame) => {
    if (frame.type === 'task_update') return [frame.task_id];
    if (frame.type === 'batch_update')
      return frame.updates.map((entry: { content: { task_id: string } }) => entry.content.task_id);
    return [];
  });

describe('a connection that is closing', () => {
  it('stops counting once a close frame went either way: updates go to the other connections', async () => {
    const hub = createAgentHub({ ...quiet, batchInterval: 0 });
    const runtime = fakeRuntime(hub);
    const leaving = await connected(runtime, 'a');
    const staying = await connected(runtime, 'a');
    leaving.peerClosing();
    for (let n = 1; n <= 3; n++) await hub.publishTask('a', task(n));
    assert.deepEqual(taskIds(leaving), []);
    assert.deepEqual(taskIds(staying), ['t1', 't2', 't3']);
    assert.equal(hub.stats().active_connections, 1);
    await hub.close();
  });

  it('queues what was published after the last connection started closing', async (t) => {
    const clock = fakeClock(t);
    const hub = createAgentHub({ ...quiet, batchInterval: 20 });
    const runtime = fakeRuntime(hub);
    const leaving = await connected(runtime, 'a');
    await hub.publishTask('a', task(1));
    leaving.peerClosing();
    for (let n = 2; n <= 4; n++) await hub.publishTask('a', task(n));
    await clock.advance(50);
    assert.deepEqual(taskIds(leaving), ['t1']);
    assert.equal(hub.stats().queued_messages, 3);
    const next = await connected(runtime, 'a');
    assert.deepEqual(taskIds(next), ['t2', 't3', 't4']);
    await hub.close();
  });
});

describe('inbound frame budget', () => {
  it('closes a client over its budget with 1008, counted once, and leaves the others alone', async () => {
    const hub = createAgentHub({ ...quiet, maxInboundRate: 5, maxInboundBurst: 10 });
    const runtime = fakeRuntime(hub);
    const flooder = await connected(runtime, 'a');
    const other = await connected(runtime, 'b');
    for (let n = 0; n < 30; n++) flooder.receive('{"type":"pong"}');
    assert.equal(flooder.closed?.code, 1008);
    assert.equal(hub.stats().errors_by_kind.rate_limited, 1);
    assert.equal(other.closed, undefined);
    await hub.publishTask('b', task(1));
    assert.deepEqual(taskIds(other), ['t1']);
    await hub.close();
  });

  it('refills over time: a client under the rate is never closed', async (t) => {
    const clock = fakeClock(t);
    const hub = createAgentHub({ ...quiet, maxInboundRate: 200, maxInboundBurst: 2 });
    const socket = await connected(fakeRuntime(hub), 'a');
    for (let n = 0; n < 10; n++) {
      socket.receive('{"type":"pong"}');
      await clock.advance(12);
    }
    assert.equal(socket.closed, undefined);
    await hub.close();
  });
});

describe('browser origins', () => {
  const attempt = async (options: AgentHubOptions, headers: Record<string, string>) => {
    const hub = createAgentHub({ ...quiet, ...options });
    const result = await fakeRuntime(hub).connect('a', headers);
    const stats = hub.stats();
    await hub.close();
    return { status: result instanceof Response ? result.status : 101, result, stats };
  };

  it('accepts no Origin (non-browser clients) and the server’s own origin', async () => {
    assert.equal((await attempt({}, {})).status, 101);
    assert.equal(
      (await attempt({}, { host: 'agents.example:8787', origin: 'http://agents.example:8787' })).status,
      101,
    );
  });

  it('refuses a foreign origin and `null` with 403 origin_forbidden, unless listed', async () => {
    for (const origin of ['https://evil.example', 'null', 'http://agents.example:9999', 'not a url']) {
      const { status, result, stats } = await attempt({}, { host: 'agents.example:8787', origin });
      assert.equal(status, 403, origin);
      assert.equal((result as Response).headers.get('x-agent-ws-error'), 'origin_forbidden');
      assert.equal(stats.errors_by_kind.origin_forbidden, 1);
    }
    const listed = { allowedOrigins: ['https://dashboard.example', 'null'] };
    assert.equal((await attempt(listed, { host: 'x', origin: 'https://dashboard.example' })).status, 101);
    assert.equal((await attempt(listed, { host: 'x', origin: 'null' })).status, 101);
    assert.equal((await attempt({ allowedOrigins: '*' }, { host: 'x', origin: 'https://any.example' })).status, 101);
  });

  it('refuses an allowedOrigins entry that is not an origin', () => {
    assert.throws(() => createAgentHub({ allowedOrigins: ['https://a.example/path'] }), /allowedOrigins/);
  });
});

describe('containment', () => {
  /** A broker that delivers what it is given, plus whatever the test slips in. */
  const leakyBroker = () => {
    const subscribers = new Map<string, (update: AgentUpdate) => void>();
    const factory: BrokerFactory = (context) => {
      const inner = memoryBroker()(context);
      return {
        ...inner,
        subscribe(agentId, onUpdate) {
          subscribers.set(agentId, onUpdate);
          return inner.subscribe(agentId, onUpdate);
        },
      };
    };
    return { factory, inject: (agentId: string, update: unknown) => subscribers.get(agentId)?.(update as AgentUpdate) };
  };

  it('an update that cannot be serialised inside a batching window costs that update only', async (t) => {
    const clock = fakeClock(t);
    const { factory, inject } = leakyBroker();
    const hub = createAgentHub({ ...quiet, batchInterval: 20, broker: factory });
    const socket = await connected(fakeRuntime(hub), 'a');
    await hub.publishTask('a', task(1));
    // A window is open now: the poisoned update would be serialised inside the flush timer. (A
    // BigInt fails JSON.stringify on every runtime; a deep array only where the stack is small.)
    inject('a', { type: 'task_update', agent_id: 'a', task_id: 'poison', status: 'x', progress: 1, result: 1n });
    await hub.publishTask('a', task(2));
    await hub.publishTask('a', task(3));
    await clock.advance(60);
    assert.deepEqual(taskIds(socket), ['t1', 't2', 't3']);
    assert.equal(hub.stats().errors_by_kind.internal_error, 1);
    await hub.close();
  });

  it('a throwing send path, logger or early frame never escapes an event handler', async () => {
    const hub = createAgentHub({
      heartbeatInterval: 0,
      logger: () => {
        throw new Error('logger down');
      },
    });
    const runtime = fakeRuntime(hub, {
      prepareFrame: () => {
        throw new Error('prepare failed');
      },
      sendFrame: () => {},
    });
    const socket = await runtime.connect('a');
    assert.ok(!(socket instanceof Response));
    assert.doesNotThrow(() => (socket as FakeSocket).receive('{"type":"ping"}'));
    assert.ok(hub.stats().errors_by_kind.internal_error >= 1);
    await hub.close();
  });
});

describe('logging', () => {
  it('logs a stream of bad frames once per interval, with a count', async (t) => {
    const clock = fakeClock(t);
    const entries: LogEntry[] = [];
    const hub = createAgentHub({
      heartbeatInterval: 0,
      maxInboundRate: 0,
      logInterval: 40,
      logger: (entry) => entries.push(entry),
    });
    const socket = await connected(fakeRuntime(hub), 'a');
    for (let n = 0; n < 500; n++) socket.receive('not json');
    const bad = () => entries.filter((entry) => entry.event === 'bad_frame');
    assert.equal(bad().length, 1);
    assert.equal(bad()[0]?.count, 1);
    await clock.advance(120);
    assert.equal(bad().length, 2);
    assert.equal(bad()[1]?.count, 499);
    assert.equal(hub.stats().errors_by_kind.invalid_json, 500);
    await hub.close();
  });

  it('logs queue drops once per agent per interval, with the number dropped', async () => {
    const entries: LogEntry[] = [];
    const hub = createAgentHub({
      ...quiet,
      maxQueueSize: 2,
      logInterval: 10_000,
      logger: (entry) => entries.push(entry),
    });
    for (let n = 0; n < 100; n++) await hub.publishTask('nobody', task(n));
    const drops = entries.filter((entry) => entry.event === 'queue_drop');
    assert.equal(drops.length, 1);
    assert.equal(hub.stats().messages_dropped, 98);
    await hub.close();
    const flushed = entries.filter((entry) => entry.event === 'queue_drop');
    assert.equal(flushed.length, 2, 'close() writes what was pending');
    assert.equal(
      flushed.reduce((sum, entry) => sum + (entry.count as number), 0),
      98,
    );
  });
});

describe('ingest', () => {
  const post = (
    app: { request: (path: string, init: RequestInit) => Response | Promise<Response> },
    path: string,
    body: string,
    type = 'application/json',
  ) => app.request(path, { method: 'POST', headers: { 'content-type': type }, body });

  it('refuses a 10,000-deep result with 400 naming the limit, and stays up', async () => {
    const hub = createAgentHub({ ...quiet, ingest: true });
    const runtime = fakeRuntime(hub);
    const body = `{"type":"task_update","task_id":"t","status":"done","progress":100,"result":${'['.repeat(10_000)}${']'.repeat(10_000)}}`;
    const response = await post(runtime.app, '/agents/a/updates', body);
    assert.equal(response.status, 400);
    const answer = (await response.json()) as { error: string; issues: { path: string; message: string }[] };
    assert.equal(answer.error, 'invalid_update');
    assert.equal(answer.issues[0]?.path, 'result');
    assert.match(answer.issues[0]?.message ?? '', /deeper than 32 levels \(maxUpdateDepth\)/);
    const batch = `[{"type":"status_update","status":"ok"},${body}]`;
    const second = (await (await post(runtime.app, '/agents/a/updates', batch)).json()) as {
      issues: { path: string }[];
    };
    assert.equal(second.issues[0]?.path, '1.result');
    assert.equal(hub.stats().updates_published, 0, 'nothing of a refused batch is published');
    await hub.close();
  });

  it('answers 415 for a charset other than UTF-8, and 400 for an empty agent id', async () => {
    const hub = createAgentHub({ ...quiet, ingest: true });
    const runtime = fakeRuntime(hub);
    const ok = '{"type":"status_update","status":"ok"}';
    assert.equal((await post(runtime.app, '/agents/a/updates', ok, 'application/json; charset=utf-16')).status, 415);
    assert.equal((await post(runtime.app, '/agents/a/updates', ok, 'application/json; charset=UTF-8')).status, 202);
    assert.equal((await post(runtime.app, '/agents/a/updates', ok, 'application/json;charset="utf-8"')).status, 202);
    assert.equal((await post(runtime.app, '/agents//updates', ok)).status, 400);
    const empty = await runtime.app.request('/agents//ws', { headers: { upgrade: 'websocket' } });
    assert.equal(empty.status, 400);
    assert.equal(empty.headers.get('x-agent-ws-error'), 'invalid_agent_id');
    await hub.close();
  });
});
