import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type FakeSocket, fakeRuntime } from '../test/helpers/fake-runtime.ts';
import {
  type AgentHubOptions,
  type BrokerFactory,
  CIRCULAR_MARKER,
  createAgentHub,
  InvalidUpdateError,
  type LogEntry,
  memoryBroker,
  toDisplayable,
} from './index.ts';

const quiet: AgentHubOptions = { logger: false, heartbeatInterval: 0, snapshot: false, batchInterval: 0 };

const connected = async (hub: ReturnType<typeof createAgentHub>, agentId: string) => {
  const socket = await fakeRuntime(hub).connect(agentId);
  assert.ok(!(socket instanceof Response), 'connection accepted');
  return socket as FakeSocket;
};

/** Updates the socket got, after `connection_established`. */
const updates = (socket: FakeSocket) => socket.frames().filter((frame) => frame.type !== 'connection_established');

describe('hub.agent(): the task handle', () => {
  it('publishes one update per call: progress, then complete with progress 100 and the result', async () => {
    const hub = createAgentHub(quiet);
    const socket = await connected(hub, 'a1');
    const agent = hub.agent('a1');
    await agent.status('running', { state: 'executing', task_id: 'fetch' });
    const task = agent.task('fetch');
    assert.equal(task.state, 'new');
    await task.progress(0, 'started');
    await task.progress(40);
    assert.equal(task.state, 'running');
    await task.complete({ pages: 3 }, 'done');
    assert.equal(task.state, 'completed');
    await agent.status('idle');
    const seen = updates(socket).map((frame) =>
      frame.type === 'status_update'
        ? ['status', frame.status]
        : [frame.task_id, frame.status, frame.progress, frame.message, frame.result],
    );
    assert.deepEqual(seen, [
      ['status', 'running'],
      ['fetch', 'running', 0, 'started', undefined],
      ['fetch', 'running', 40, undefined, undefined],
      ['fetch', 'completed', 100, 'done', { pages: 3 }],
      ['status', 'idle'],
    ]);
    assert.equal(hub.stats().updates_published, 5);
    await hub.close();
  });

  it('fails with the error as text, at the last progress', async () => {
    const hub = createAgentHub(quiet);
    const socket = await connected(hub, 'a1');
    const task = hub.agent('a1').task('t');
    await task.progress(30);
    await task.fail(new RangeError('out of pages'));
    assert.equal(task.state, 'failed');
    const last = updates(socket).at(-1);
    assert.deepEqual([last?.status, last?.progress, last?.error], ['failed', 30, 'RangeError: out of pages']);
    await hub.close();
  });

  it('never goes back from a final state: every later call rejects and publishes nothing', async () => {
    const hub = createAgentHub(quiet);
    const socket = await connected(hub, 'a1');
    const task = hub.agent('a1').task('t');
    await task.complete();
    for (const late of [() => task.progress(50), () => task.complete('again'), () => task.fail('late')])
      await assert.rejects(
        late(),
        (error: Error) => error instanceof InvalidUpdateError && /already completed/.test(error.message),
      );
    assert.equal(task.state, 'completed');
    const failed = hub.agent('a1').task('u');
    await failed.fail('no');
    await assert.rejects(failed.progress(1), /already failed/);
    assert.equal(updates(socket).length, 2);
    await hub.close();
  });

  it('validates as publishTask does: a bad agent id or task id throws, a bad progress rejects', async () => {
    const hub = createAgentHub(quiet);
    assert.throws(() => hub.agent('bad id'), InvalidUpdateError);
    assert.throws(() => hub.agent('a1').task(''), InvalidUpdateError);
    assert.throws(() => hub.agent('a1').task('x'.repeat(257)), /1 to 256/);
    assert.throws(() => hub.agent('a1', { maxResultBytes: 10 }), TypeError);
    const task = hub.agent('a1').task('t');
    for (const progress of [-1, 101, Number.NaN, Number.POSITIVE_INFINITY, '50' as never])
      await assert.rejects(task.progress(progress), InvalidUpdateError);
    assert.equal(task.state, 'new', 'a refused call changes nothing');
    await assert.rejects(hub.agent('a1').status(''), InvalidUpdateError);
    assert.equal(hub.stats().updates_published, 0);
    await hub.close();
  });

  it('cuts a message or error longer than a task update carries, and says so', async () => {
    const hub = createAgentHub(quiet);
    const socket = await connected(hub, 'a1');
    await hub.agent('a1').task('t').progress(1, 'm'.repeat(10_000));
    await hub
      .agent('a1')
      .task('u')
      .fail(new Error('e'.repeat(20_000)));
    const [progress, failed] = updates(socket);
    assert.ok(progress?.message.length <= 8192 && progress?.message.length > 8150);
    assert.match(progress?.message, /…\[\+\d+ chars\]$/);
    assert.ok(failed?.error.length <= 8192 && failed?.error.length > 8150);
    await hub.close();
  });

  it('makes a result a dashboard can show: cycles, class instances, BigInt, errors, maps, functions, too deep', async () => {
    const hub = createAgentHub({ ...quiet, maxUpdateDepth: 4 });
    const socket = await connected(hub, 'a1');
    class Message {
      constructor(
        readonly role: string,
        readonly content: string,
      ) {}
    }
    const cyclic: Record<string, unknown> = { name: 'loop' };
    cyclic.self = cyclic;
    const result = {
      message: new Message('ai', 'hello'),
      cyclic,
      big: 12345678901234567890n,
      error: Object.assign(new TypeError('bad'), { code: 'E_BAD' }),
      map: new Map([['k', 1]]),
      set: new Set([1, 2]),
      fn: function helper() {},
      list: [undefined, () => 1, Number.NaN],
      when: new Date('2026-12-04T00:00:00.000Z'),
      deep: { a: { b: { c: { d: 1 } } } },
      bytes: new Uint8Array(4),
    };
    // publishTask refuses it; the handle shows it.
    await assert.rejects(
      hub.publishTask('a1', { task_id: 't', status: 'completed', progress: 100, result }),
      InvalidUpdateError,
    );
    await hub.agent('a1').task('t').complete(result);
    const [frame] = updates(socket);
    assert.deepEqual(frame?.result, {
      message: { role: 'ai', content: 'hello' },
      cyclic: { name: 'loop', self: CIRCULAR_MARKER },
      big: '12345678901234567890',
      error: { name: 'TypeError', message: 'bad', code: 'E_BAD' },
      map: [['k', 1]],
      set: [1, 2],
      list: [null, '[Function]', 'NaN'],
      when: '2026-12-04T00:00:00.000Z',
      // maxUpdateDepth 4: the result is level 1, `b` level 4, `c` would be 5.
      deep: { a: { b: { c: '[Object]' } } },
      bytes: '[Uint8Array(4)]',
    });
    await hub.close();
  });

  it('bounds a large result by maxResultBytes, with the documented markers', async () => {
    const hub = createAgentHub(quiet);
    const socket = await connected(hub, 'a1');
    const agent = hub.agent('a1', { maxResultBytes: 1024 });
    await agent.task('text').complete('x'.repeat(100_000));
    await agent.task('rows').complete(Array.from({ length: 1000 }, (_, n) => ({ n, label: `row ${n}` })));
    await agent.task('keys').complete(Object.fromEntries(Array.from({ length: 500 }, (_, n) => [`key${n}`, n])));
    const [text, rows, keys] = updates(socket).map((frame) => frame.result);
    for (const value of [text, rows, keys])
      assert.ok(
        new TextEncoder().encode(JSON.stringify(value)).length <= 1024,
        JSON.stringify(value).length.toString(),
      );
    assert.match(text, /^x+…\[\+\d+ chars\]$/);
    assert.match(rows.at(-1), /^\[… \d+ more items\]$/);
    assert.equal(rows.length > 5, true);
    assert.match(keys['…'], /^\[\d+ more keys\]$/);
    await hub.close();
  });

  it('contained: nothing rejects; a refused update counts as internal_error and is logged once per interval', async () => {
    const logs: LogEntry[] = [];
    const hub = createAgentHub({ ...quiet, logger: (entry) => logs.push(entry) });
    const agent = hub.agent('a1', { contained: true });
    const task = agent.task('t');
    await task.complete();
    await task.progress(10);
    await task.progress(500);
    await agent.status('');
    agent.report(new Error('mapping broke'), 'bridge:test');
    // The late progress, the bad progress, the empty status, the report.
    assert.equal(hub.stats().errors_by_kind.internal_error, 4);
    const entries = logs.filter((entry) => entry.event === 'internal_error');
    assert.deepEqual(
      entries.map((entry) => entry.operation),
      ['agent_handle', 'bridge:test'],
    );
    assert.equal(entries[0]?.agent_id, 'a1');
    await hub.close();
    // After close: dropped silently, not counted.
    await agent.task('later').progress(1);
  });

  it('contained: a broker failure is counted once, by the hub, as broker_error', async () => {
    const failing: BrokerFactory = (context) => {
      const broker = memoryBroker()(context);
      return {
        ...broker,
        publish: () => {
          throw new Error('broker down');
        },
      };
    };
    const hub = createAgentHub({ ...quiet, broker: failing });
    await hub.agent('a1', { contained: true }).task('t').progress(5);
    await assert.rejects(hub.agent('a1').task('t').progress(5), /broker down/);
    const { errors_by_kind } = hub.stats();
    assert.equal(errors_by_kind.broker_error, 2);
    assert.equal(errors_by_kind.internal_error, 0);
    await hub.close();
  });
});

describe('toDisplayable', () => {
  const bounds = { maxBytes: 512, maxDepth: 8 };
  const size = (value: unknown) => new TextEncoder().encode(JSON.stringify(value)).length;

  it('keeps plain JSON as it is', () => {
    const value = { a: [1, 'two', null, true], b: { c: 'é✓😀' } };
    assert.deepEqual(toDisplayable(value, bounds), value);
    assert.equal(toDisplayable(undefined, bounds), undefined);
  });

  it('stays within maxBytes for any shape, multi-byte text included', () => {
    const shapes: unknown[] = [
      '😀'.repeat(1000),
      'é'.repeat(1000),
      '\u0000'.repeat(1000),
      Array.from({ length: 300 }, () => '😀😀😀'),
      Array.from({ length: 50 }, (_, n) => ({ [`k${'😀'.repeat(n)}`]: 'v'.repeat(n) })),
      { nested: { deeper: Array.from({ length: 100 }, (_, n) => [n, [n, [n]]]) } },
    ];
    for (const maxBytes of [256, 300, 512, 1000]) {
      for (const shape of shapes) {
        const shown = toDisplayable(shape, { maxBytes, maxDepth: 8 });
        assert.ok(size(shown) <= maxBytes, `${size(shown)} > ${maxBytes}: ${JSON.stringify(shown).slice(0, 80)}`);
      }
    }
  });

  it('never splits a surrogate pair', () => {
    const shown = toDisplayable('😀'.repeat(500), bounds) as string;
    assert.doesNotMatch(shown, /[\ud800-\udbff](?![\udc00-\udfff])/);
  });

  it('survives getters that throw and toJSON that throws', () => {
    const hostile = {
      get boom() {
        throw new Error('no');
      },
      nested: {
        toJSON: () => {
          throw new Error('no');
        },
      },
      ok: 1,
    };
    assert.deepEqual(toDisplayable(hostile, bounds), { boom: '[Unreadable]', nested: '[Unreadable]', ok: 1 });
  });

  it('shows a proxy whose traps throw as unreadable, and cuts a huge string without serialising it whole', () => {
    const hostile = new Proxy(
      {},
      {
        ownKeys() {
          throw new Error('no keys');
        },
      },
    );
    assert.deepEqual(toDisplayable({ hostile, ok: true }, bounds), { hostile: '[Unreadable]', ok: true });
    const huge = 'x'.repeat(50_000_000);
    const shown = toDisplayable(huge, bounds) as string;
    assert.ok(size(shown) <= 512);
    assert.match(shown, /…\[\+49999\d{3} chars\]$/);
  });

  it('uses replace for objects an engine knows', () => {
    class Message {
      constructor(readonly content: string) {}
    }
    const shown = toDisplayable([new Message('hi'), { plain: true }], {
      ...bounds,
      replace: (value) => (value instanceof Message ? { type: 'message', content: value.content } : undefined),
    });
    assert.deepEqual(shown, [{ type: 'message', content: 'hi' }, { plain: true }]);
  });

  it('handles a deep chain without overflowing the stack', () => {
    let chain: Record<string, unknown> = {};
    const root = chain;
    for (let n = 0; n < 100_000; n++) {
      const next = {};
      chain.next = next;
      chain = next;
    }
    const shown = toDisplayable(root, { maxBytes: 4096, maxDepth: 32 });
    assert.ok(size(shown) <= 4096);
    assert.match(JSON.stringify(shown), /\[Object\]/);
  });
});
