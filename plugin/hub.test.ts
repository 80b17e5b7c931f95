import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Hono } from 'hono';
import { HTTPException } from 'hono/http-exception';
import type { UpgradeWebSocket } from 'hono/ws';
import { type FakeSocket, fakeRuntime, fakeTopics } from '../test/helpers/fake-runtime.ts';
import { sleep, waitFor } from '../test/helpers/wait.ts';
import {
  type AgentHubOptions,
  type BrokerFactory,
  createAgentHub,
  InvalidUpdateError,
  type LogEntry,
  memoryBroker,
} from './index.ts';

const quiet: AgentHubOptions = { logger: false, heartbeatInterval: 0, snapshot: false };
const connected = async (runtime: ReturnType<typeof fakeRuntime>, agentId: string) => {
  const socket = await runtime.connect(agentId);
  assert.ok(!(socket instanceof Response), 'connection accepted');
  return socket as FakeSocket;
};
const task = (n: number) => ({ task_id: `t${n}`, status: 'running', progress: n });

describe('createAgentHub options', () => {
  it('applies the documented defaults', async () => {
    const hub = createAgentHub({ logger: false });
    assert.deepEqual(
      {
        heartbeatInterval: hub.options.heartbeatInterval,
        maxQueueSize: hub.options.maxQueueSize,
        batchInterval: hub.options.batchInterval,
        maxMessageSize: hub.options.maxMessageSize,
        ingest: hub.options.ingest,
      },
      { heartbeatInterval: 30_000, maxQueueSize: 100, batchInterval: 100, maxMessageSize: 65_536, ingest: false },
    );
    await hub.close();
  });

  it('throws one clear error naming every bad option', () => {
    assert.throws(
      () =>
        createAgentHub({
          batchInterval: -1,
          heartbeatInterval: 1.5,
          maxQueueSize: '10' as never,
          typo: 1,
        } as AgentHubOptions),
      (error: Error) =>
        error instanceof TypeError &&
        /batchInterval/.test(error.message) &&
        /heartbeatInterval/.test(error.message) &&
        /maxQueueSize/.test(error.message) &&
        /typo/.test(error.message),
    );
    assert.throws(() => createAgentHub({ authorize: 'yes' as never }), /authorize must be a function/);
  });
});

describe('publishing', () => {
  it('adds type, agent_id and timestamp, and rejects (never throws) a bad update', async () => {
    const hub = createAgentHub({ ...quiet, batchInterval: 0 });
    const runtime = fakeRuntime(hub);
    const socket = await connected(runtime, 'a1');
    await hub.publishStatus('a1', { status: 'running', execution_status: { state: 'executing', progress: 10 } });
    const [, frame] = socket.frames();
    assert.deepEqual(Object.keys(frame ?? {}).slice(0, 2), ['type', 'agent_id']);
    assert.equal(frame?.type, 'status_update');
    assert.equal(frame?.agent_id, 'a1');
    assert.ok(!Number.isNaN(Date.parse(frame?.timestamp)));
    await assert.rejects(hub.publishTask('a1', { task_id: 't', status: 'running', progress: 101 }), InvalidUpdateError);
    await assert.rejects(hub.publishTask('a1', { status: 'running', progress: 1 } as never), InvalidUpdateError);
    await assert.rejects(hub.publishStatus('a1', { status: 'x', extra: 1 } as never), /invalid status update/);
    await assert.rejects(hub.publishStatus('bad id', { status: 'x' }), /invalid agent id/);
    assert.equal(hub.stats().updates_published, 1);
    await hub.close();
    await assert.rejects(hub.publishStatus('a1', { status: 'x' }), /closed/);
  });

  it('refuses a result nested deeper than maxUpdateDepth, or not serialisable, and sends the rest', async () => {
    const hub = createAgentHub({ ...quiet, batchInterval: 0, maxUpdateDepth: 8 });
    const runtime = fakeRuntime(hub);
    const socket = await connected(runtime, 'a1');
    const nest = (depth: number): unknown => (depth === 0 ? 1 : [nest(depth - 1)]);
    let deep: unknown = 1;
    for (let i = 0; i < 10_000; i++) deep = [deep];
    const task = (result: unknown) => ({ task_id: 't', status: 'done', progress: 100, result });
    await assert.rejects(hub.publishTask('a1', task(deep)), /result nests deeper than 8 levels/);
    await assert.rejects(hub.publishTask('a1', task(nest(9))), InvalidUpdateError);
    await assert.rejects(hub.publishTask('a1', task({ big: 10n })), /not JSON-serialisable/);
    const cycle: Record<string, unknown> = {};
    cycle.self = cycle;
    await assert.rejects(hub.publishTask('a1', task(cycle)), InvalidUpdateError);
    await hub.publishTask('a1', task(nest(8)));
    assert.deepEqual(
      socket.frames().map((frame) => frame.type),
      ['connection_established', 'task_update'],
    );
    assert.equal(hub.stats().updates_published, 1);
    await hub.close();
  });
});

describe('fan-out cost', () => {
  it('stringifies each update once, not once per frame or per connection', async () => {
    const hub = createAgentHub({ ...quiet, batchInterval: 20 });
    const runtime = fakeRuntime(hub);
    const sockets = await Promise.all(Array.from({ length: 50 }, () => connected(runtime, 'crowd')));
    const stringify = JSON.stringify;
    let calls = 0;
    JSON.stringify = ((...args: Parameters<typeof stringify>) => {
      calls++;
      return stringify(...args);
    }) as typeof stringify;
    try {
      for (let n = 0; n < 5; n++) await hub.publishTask('crowd', task(n));
      // The window's batch reached every socket, counted on the raw frames (parsing them calls
      // JSON.stringify). Real time: with this test on the fake clock, the file sometimes never
      // exited under load (a timer left live; the next test swaps the timer functions itself).
      await waitFor(() => sockets.every((socket) => socket.sent.length === 3), 3000, 'the batch on every socket', 1);
    } finally {
      JSON.stringify = stringify;
    }
    assert.equal(calls, 5, 'each update serialised once, for its frame alone and for the batch');
    for (const socket of sockets)
      assert.deepEqual(
        socket
          .frames()
          .slice(1)
          .map((frame) => frame.type),
        ['task_update', 'batch_update'],
      );
    await hub.close();
  });

  it('runs a bounded number of timers however many agents and sockets', async () => {
    const live = new Set<unknown>();
    const { setTimeout: st, setInterval: si, clearTimeout: ct, clearInterval: ci } = globalThis;
    let created = 0;
    globalThis.setTimeout = ((fn: () => void, ms?: number) => {
      created++;
      const timer = st(() => {
        live.delete(timer);
        fn();
      }, ms);
      live.add(timer);
      return timer;
    }) as typeof setTimeout;
    globalThis.setInterval = ((fn: () => void, ms?: number) => {
      created++;
      const timer = si(fn, ms);
      live.add(timer);
      return timer;
    }) as typeof setInterval;
    globalThis.clearTimeout = ((timer: any) => {
      live.delete(timer);
      ct(timer);
    }) as typeof clearTimeout;
    globalThis.clearInterval = ((timer: any) => {
      live.delete(timer);
      ci(timer);
    }) as typeof clearInterval;
    try {
      const hub = createAgentHub({ logger: false, heartbeatInterval: 1000, batchInterval: 10 });
      const runtime = fakeRuntime(hub);
      for (let agent = 0; agent < 40; agent++) for (let n = 0; n < 5; n++) await connected(runtime, `agent-${agent}`);
      let peak = 0;
      for (let round = 0; round < 5; round++) {
        for (let agent = 0; agent < 40; agent++) {
          await hub.publishTask(`agent-${agent}`, task(round));
          await hub.publishTask(`agent-${agent}`, task(round + 1));
        }
        peak = Math.max(peak, live.size);
        await new Promise((done) => st(done, 15));
      }
      assert.ok(peak <= 2, `at most a heartbeat and a flush timer live at once (saw ${peak})`);
      assert.ok(created < 40, `timers are per hub, not per agent or socket (created ${created})`);
      await hub.close();
      assert.equal(live.size, 0, 'close stops every timer');
    } finally {
      Object.assign(globalThis, { setTimeout: st, setInterval: si, clearTimeout: ct, clearInterval: ci });
    }
  });
});

describe('heartbeat', () => {
  const isPing = (frame: string) => frame.startsWith('{"type":"ping"');
  const blockFor = (ms: number) => {
    const end = performance.now() + ms;
    while (performance.now() < end) {
      // The event loop is stuck, as in an overloaded process: nothing is read meanwhile.
    }
  };

  it('skips a sweep that runs late instead of dropping clients whose pongs are still unread', async () => {
    const entries: LogEntry[] = [];
    const hub = createAgentHub({ heartbeatInterval: 100, snapshot: false, logger: (entry) => entries.push(entry) });
    const runtime = fakeRuntime(hub);
    const socket = await connected(runtime, 'agent-late');
    const lazy = await connected(runtime, 'agent-late');
    try {
      await waitFor(() => socket.sent.some(isPing), 3000, 'the first ping', 2);
      // Blocked past the next sweep; the pong is "read" only after the overdue sweep has run.
      blockFor(180);
      setTimeout(() => socket.receive('{"type":"pong"}'), 0);
      // Real time, briefly: the overdue sweep and then the pong run; what follows asserts the
      // sweep closed nobody, which no event can announce.
      await sleep(5);
      assert.equal(socket.closed, undefined, 'the client that answered is kept');
      assert.ok(entries.some((entry) => entry.event === 'heartbeat_sweep_skipped'));
      // The next sweep judges again: the client that answered stays, one that never answers goes.
      const pings = socket.sent.filter(isPing).length;
      await waitFor(() => socket.sent.filter(isPing).length > pings, 3000, 'the next ping', 2);
      socket.receive('{"type":"pong"}');
      await waitFor(() => lazy.closed !== undefined, 3000, 'the silent client closed', 5);
      assert.equal(lazy.closed?.code, 4000);
      assert.equal(socket.closed, undefined);
      assert.equal(hub.stats().errors_by_kind.heartbeat_timeout, 1);
    } finally {
      await hub.close();
    }
  });
});

describe('native topic fan-out', () => {
  it('publishes once per frame, counts per socket, and still drops slow consumers', async () => {
    const native = fakeTopics();
    const hub = createAgentHub({ ...quiet, batchInterval: 0, maxBufferedAmount: 1000 });
    const runtime = fakeRuntime(hub, { topics: native.topics });
    const sockets = await Promise.all(Array.from({ length: 5 }, () => connected(runtime, 'topical')));
    const other = await connected(runtime, 'elsewhere');
    const before = hub.stats().messages_sent;
    await hub.publishTask('topical', task(1));
    assert.equal(native.calls, 1, 'one native publish for five sockets');
    assert.equal(hub.stats().messages_sent - before, 5);
    for (const socket of sockets)
      assert.deepEqual(
        socket.frames().map((frame) => frame.type),
        ['connection_established', 'task_update'],
      );
    assert.equal(other.frames().length, 1, 'another agent hears nothing');
    (sockets[0] as FakeSocket).bufferedAmount = 5000;
    await hub.publishTask('topical', task(2));
    assert.equal(sockets[0]?.closed?.code, 4001);
    await hub.publishTask('topical', task(3));
    assert.equal(sockets[0]?.frames().length, 3, 'unsubscribed once dropped');
    assert.equal(sockets[1]?.frames().length, 4);
    await hub.close();
  });
});

describe('connections', () => {
  it('hands updates pending in a window back to the queue when the last connection leaves', async () => {
    const hub = createAgentHub({ ...quiet, batchInterval: 10_000 });
    const runtime = fakeRuntime(hub);
    const first = await connected(runtime, 'leaver');
    for (let n = 1; n <= 3; n++) await hub.publishTask('leaver', task(n));
    first.peerClosed(1000);
    const next = await connected(runtime, 'leaver');
    const [, replay] = next.frames();
    assert.equal(replay?.type, 'batch_update');
    assert.equal(replay?.source, 'queue');
    assert.deepEqual(
      replay?.updates.map((entry: any) => entry.content.task_id),
      ['t2', 't3'],
    );
    await hub.close();
  });

  it('drops a socket whose send throws (1011) or whose buffer overflows (4001), and counts both', async () => {
    const hub = createAgentHub({ ...quiet, batchInterval: 0, maxBufferedAmount: 1000 });
    const runtime = fakeRuntime(hub);
    const failing = await connected(runtime, 'fail');
    const slow = await connected(runtime, 'fail');
    const fine = await connected(runtime, 'fail');
    failing.failSends = true;
    slow.bufferedAmount = 5000;
    await hub.publishTask('fail', task(1));
    assert.equal(failing.closed?.code, 1011);
    assert.equal(slow.closed?.code, 4001);
    assert.equal(fine.closed, undefined);
    const stats = hub.stats();
    assert.equal(stats.active_connections, 1);
    assert.equal(stats.errors_by_kind.send_failed, 1);
    assert.equal(stats.errors_by_kind.slow_consumer, 1);
    assert.equal(stats.errors, 2);
    // The close event that follows finds the connection already gone: counted once.
    failing.peerClosed(1006);
    assert.equal(hub.stats().errors, 2);
    await hub.close();
  });

  it('counts an abrupt drop and forgets the agent once its last connection is gone', async () => {
    const hub = createAgentHub(quiet);
    const runtime = fakeRuntime(hub);
    const socket = await connected(runtime, 'gone');
    assert.equal(hub.stats().agents_connected, 1);
    socket.peerClosed(1006);
    const stats = hub.stats();
    assert.equal(stats.active_connections, 0);
    assert.equal(stats.agents_connected, 0);
    assert.equal(stats.errors_by_kind.abrupt_close, 1);
    await hub.close();
  });

  it('refuses with 403 when authorize returns false and with the status of an HTTPException', async () => {
    const hub = createAgentHub({
      ...quiet,
      authorize: (agentId, _c, action) => {
        if (agentId?.startsWith('anon')) throw new HTTPException(401, { message: 'no credentials' });
        return action === 'watch' && agentId !== 'secret';
      },
    });
    const runtime = fakeRuntime(hub);
    assert.equal(((await runtime.connect('secret')) as Response).status, 403);
    const anonymous = (await runtime.connect('anon-1')) as Response;
    assert.equal(anonymous.status, 401);
    assert.equal(anonymous.headers.get('x-agent-ws-error'), 'unauthorized');
    assert.ok(!((await runtime.connect('public')) instanceof Response));
    // The hook guards every route: this one allows only `watch`.
    assert.equal((await runtime.app.request('/agents/ws/stats')).status, 403);
    assert.equal(hub.stats().errors_by_kind.unauthorized, 1);
    assert.equal(hub.stats().errors_by_kind.forbidden, 2);
    await hub.close();
  });

  it('lets any other error of authorize reach the app, counted as internal_error', async () => {
    const hub = createAgentHub({
      ...quiet,
      authorize: () => {
        throw new Error('session store down');
      },
    });
    const runtime = fakeRuntime(hub);
    const seen: unknown[] = [];
    runtime.app.onError((error, c) => {
      seen.push(error);
      return c.text('outage', 500);
    });
    assert.equal(((await runtime.connect('a')) as Response).status, 500);
    assert.match(String(seen[0]), /session store down/);
    assert.equal(hub.stats().errors_by_kind.internal_error, 1);
    await hub.close();
  });

  it('closes every socket with 1001 on close(), after flushing the pending batch', async () => {
    const hub = createAgentHub({ ...quiet, batchInterval: 10_000 });
    const runtime = fakeRuntime(hub);
    const socket = await connected(runtime, 'closing');
    for (let n = 1; n <= 3; n++) await hub.publishTask('closing', task(n));
    await hub.close();
    assert.deepEqual(
      socket.frames().map((frame) => frame.type),
      ['connection_established', 'task_update', 'batch_update'],
    );
    assert.equal(socket.closed?.code, 1001);
    assert.equal(hub.stats().active_connections, 0);
  });
});

describe('a broker that answers asynchronously', () => {
  /** The memory broker behind a subscribe that resolves only when the test says so. */
  const slowBroker = () => {
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const factory: BrokerFactory = (context) => {
      const inner = memoryBroker()(context);
      return {
        ...inner,
        async subscribe(agentId, onUpdate) {
          await gate;
          return inner.subscribe(agentId, onUpdate);
        },
      };
    };
    return { factory, release: () => release() };
  };

  it('sends connection_established first, then answers frames the client sent while joining', async () => {
    const { factory, release } = slowBroker();
    const hub = createAgentHub({ ...quiet, broker: factory });
    const runtime = fakeRuntime(hub);
    await hub.publishTask('early', task(1));
    const socket = await connected(runtime, 'early');
    socket.receive('{"type":"ping"}');
    socket.receive('not json');
    assert.deepEqual(socket.sent, [], 'nothing before the broker answered');
    release();
    await waitFor(() => socket.frames().length >= 4, 3000, 'the four answers after the broker', 1);
    assert.deepEqual(
      socket.frames().map((frame) => frame.type),
      ['connection_established', 'batch_update', 'pong', 'error'],
    );
    await hub.close();
  });

  it('refuses a flood of frames sent before connection_established', async () => {
    const { factory } = slowBroker();
    const hub = createAgentHub({ ...quiet, broker: factory });
    const socket = await connected(fakeRuntime(hub), 'flood');
    for (let n = 0; n < 20; n++) socket.receive('{"type":"ping"}');
    assert.equal(socket.closed?.code, 1008);
    assert.equal(hub.stats().active_connections, 0);
    assert.equal(hub.stats().errors_by_kind.rate_limited, 1);
    await hub.close();
  });
});

describe('structured logs', () => {
  it('logs one entry per connect, disconnect and bad frame, with agent and connection ids', async () => {
    const entries: LogEntry[] = [];
    const hub = createAgentHub({ heartbeatInterval: 0, logger: (entry) => entries.push(entry) });
    const runtime = fakeRuntime(hub);
    const socket = await connected(runtime, 'logged');
    socket.receive('nope');
    socket.peerClosed(1000);
    await hub.close();
    const [open, bad, close] = entries;
    assert.equal(open?.event, 'connection_open');
    assert.equal(bad?.event, 'bad_frame');
    assert.equal(close?.event, 'connection_close');
    for (const entry of [open, bad, close]) {
      assert.equal(entry?.agent_id, 'logged');
      assert.match(String(entry?.connection_id), /.+-\d+/);
      assert.ok(!Number.isNaN(Date.parse(String(entry?.time))));
    }
    assert.equal(entries.at(-1)?.event, 'hub_closed');
  });

  it('survives a logger that throws', async () => {
    const hub = createAgentHub({
      heartbeatInterval: 0,
      logger: () => {
        throw new Error('disk full');
      },
    });
    const runtime = fakeRuntime(hub);
    const socket = await connected(runtime, 'x');
    socket.receive('nope');
    assert.equal(socket.frames().at(-1)?.code, 'invalid_json');
    await hub.close();
  });
});

describe('types', () => {
  it('is generic over the app’s Env: authorize sees typed variables, routes() returns Hono<E>', async () => {
    type AppEnv = { Variables: { user: { name: string; agents: string[] } } };
    const hub = createAgentHub<AppEnv>({
      ...quiet,
      // c.get('user') is typed: a wrong key or field would not compile.
      authorize: (agentId, c) => agentId !== undefined && c.get('user').agents.includes(agentId),
    });
    const app = new Hono<AppEnv>();
    app.use(async (c, next) => {
      c.set('user', { name: 'ada', agents: ['mine'] });
      await next();
    });
    // Never reached here: the only request is refused before the upgrade.
    const fakeUpgrade = (() => async () => new Response(null)) as unknown as UpgradeWebSocket;
    const routes: Hono<AppEnv> = hub.routes(fakeUpgrade);
    app.route('/agents', routes);
    const refused = await app.request('/agents/theirs/ws', { headers: { upgrade: 'websocket' } });
    assert.equal(refused.status, 403);
    await hub.close();
  });
});
