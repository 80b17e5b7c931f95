/**
 * What the hub keeps per agent stays under its byte totals, measured as the heap after GC: each
 * scenario runs in a child Node (`--expose-gc`, `test/helpers/heap-probe.ts`) with small totals,
 * publishes several times their sum, however spread (one agent or a hundred thousand, small or
 * ~1 MB updates, many open tasks, long agent ids, two-byte JSON), and the heap it grew by must
 * stay within 1.5 times the sum of the totals. The stats and logs must account for every drop,
 * and a watched agent must get every update meanwhile. Then, in process: what a snapshot and the
 * listing show for a task whose result was too large to keep.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { describe, it } from 'node:test';
import {
  type AgentsPage,
  type BrokerContext,
  createAgentHub,
  type EvictionKind,
  type Joined,
  memoryBroker,
  type UnsequencedUpdate,
} from '../plugin/index.ts';
import { type FakeSocket, fakeRuntime } from './helpers/fake-runtime.ts';
import type { HeapReport, HeapScenario } from './helpers/heap-probe.ts';
import { ROOT, validateHttpBody } from './helpers/server.ts';

const MiB = 1024 * 1024;
/** A probe's own heap noise (the HTTP client, sockets, timers), added to every bound. */
const SLACK = 4 * MiB;

/** Runs one scenario in a child Node with `--expose-gc`. */
function probe(scenario: HeapScenario): Promise<HeapReport> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ['--expose-gc', '--import', 'tsx', 'test/helpers/heap-probe.ts', JSON.stringify(scenario)],
      { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    let err = '';
    child.stdout.on('data', (chunk) => {
      out += chunk;
    });
    child.stderr.on('data', (chunk) => {
      err += chunk;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 110_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      if (code !== 0) return reject(new Error(`heap probe exited with ${code}:\n${err}`));
      resolve(JSON.parse(out) as HeapReport);
    });
  });
}

/** The sum of the totals a scenario runs with (the hub's defaults where it sets none). */
const totalOf = (scenario: HeapScenario) =>
  (scenario.hub.maxTotalQueueBytes ?? 64 * MiB) +
  (scenario.hub.maxTotalHistoryBytes ?? 64 * MiB) +
  (scenario.hub.maxTotalStateBytes ?? 64 * MiB);

/** Runs a scenario and checks the heap bound and that stats and logs account for every drop. */
async function bounded(scenario: HeapScenario): Promise<HeapReport> {
  const report = await probe(scenario);
  const grown = report.after - report.before;
  const total = totalOf(scenario);
  const figures = `grew ${(grown / MiB).toFixed(1)} MiB, totals ${(total / MiB).toFixed(0)} MiB`;
  console.log(`# ${figures}: ${JSON.stringify(report.stats.evictions_by_kind)}`);
  assert.ok(grown <= 1.5 * total + SLACK, `heap ${figures}: over 1.5 times the totals`);
  assert.equal(report.refused, 0, 'every ingest post was accepted');
  const stats = report.stats as {
    messages_queued: number;
    queued_messages: number;
    messages_dropped: number;
    evictions_by_kind: Record<string, number>;
  };
  // Every update queued is still queued or was dropped, and each drop was logged with its count.
  assert.equal(stats.messages_queued, stats.queued_messages + stats.messages_dropped);
  assert.equal(report.logs.queue_drop?.count ?? 0, stats.messages_dropped);
  const evictions = Object.values(stats.evictions_by_kind).reduce((sum, count) => sum + count, 0);
  assert.equal(report.logs.eviction?.count ?? 0, evictions);
  return report;
}

/** Updates of ~1 MB each: the largest an ingest body of the default `maxIngestBytes` holds. */
const large = { resultBytes: 1_000_000, via: 'ingest' } as const;
const small16 = { maxTotalQueueBytes: 16 * MiB, maxTotalHistoryBytes: 16 * MiB, maxTotalStateBytes: 16 * MiB };

describe('memory: the heap after GC stays within 1.5 times the byte totals', {
  concurrency: 1,
  timeout: 600_000,
}, () => {
  it('150 posts of a ~1 MB task update to 150 agents nobody watches (the measured case)', async () => {
    const report = await bounded({ hub: small16, agents: 150, updates: 150, ...large });
    const { evictions_by_kind: evicted } = report.stats as { evictions_by_kind: Record<string, number> };
    assert.ok((evicted.state ?? 0) > 0 && (evicted.queue ?? 0) > 0, 'over the totals, states and queues were given up');
  });

  it('the same with snapshots off', async () => {
    await bounded({ hub: { ...small16, snapshot: false }, agents: 150, updates: 150, ...large });
  });

  it('the same with no history', async () => {
    await bounded({ hub: { ...small16, historySize: 0 }, agents: 150, updates: 150, ...large });
  });

  it('four times the totals in ~1 MB updates to distinct agents while another is watched over a socket', async () => {
    const hub = { maxTotalQueueBytes: 8 * MiB, maxTotalHistoryBytes: 8 * MiB, maxTotalStateBytes: 8 * MiB };
    const report = await bounded({ hub, agents: 100, updates: 100, watchEvery: 4, ...large });
    assert.equal(report.watched.published, 25);
    assert.equal(report.watched.received, report.watched.published, 'the watcher got every update');
    const { messages_dropped: dropped } = report.stats as { messages_dropped: number };
    assert.ok(dropped > 50, `most of the queued megabytes were dropped (${dropped})`);
  });

  it('a hundred thousand agents with small updates', async () => {
    await bounded({
      hub: { maxTotalQueueBytes: 8 * MiB, maxTotalHistoryBytes: 8 * MiB, maxTotalStateBytes: 8 * MiB },
      memoryBroker: { maxAgents: 1_000_000, maxQueuedAgents: 1_000_000 },
      agents: 100_000,
      updates: 100_000,
      resultBytes: 10,
      via: 'publish',
    });
  });

  it('agent ids of 128 characters', async () => {
    await bounded({
      hub: { maxTotalQueueBytes: 8 * MiB, maxTotalHistoryBytes: 8 * MiB, maxTotalStateBytes: 8 * MiB },
      memoryBroker: { maxAgents: 1_000_000, maxQueuedAgents: 1_000_000 },
      agents: 50_000,
      updates: 50_000,
      resultBytes: 10,
      idLength: 128,
      via: 'publish',
    });
  });

  it('one agent, many small updates', async () => {
    await bounded({
      hub: { maxTotalQueueBytes: 8 * MiB, maxTotalHistoryBytes: 8 * MiB, maxTotalStateBytes: 8 * MiB },
      agents: 1,
      updates: 20_000,
      resultBytes: 300,
      via: 'publish',
    });
  });

  it('many open tasks per agent, with histories', async () => {
    await bounded({
      hub: {
        maxTotalQueueBytes: 8 * MiB,
        maxTotalHistoryBytes: 8 * MiB,
        maxTotalStateBytes: 8 * MiB,
        maxHistoryBytes: MiB,
      },
      memoryBroker: { maxAgents: 1_000_000, maxQueuedAgents: 1_000_000 },
      agents: 200,
      updates: 60_000,
      resultBytes: 100,
      tasksPerAgent: 300,
      via: 'publish',
    });
  });

  it('results whose JSON holds a character beyond U+00FF (two bytes per character in memory)', async () => {
    await bounded({
      hub: { maxTotalQueueBytes: 8 * MiB, maxTotalHistoryBytes: 8 * MiB, maxTotalStateBytes: 8 * MiB },
      memoryBroker: { maxAgents: 1_000_000, maxQueuedAgents: 1_000_000 },
      agents: 1000,
      updates: 20_000,
      resultBytes: 2000,
      tasksPerAgent: 20,
      wide: true,
      via: 'publish',
    });
  });
});

describe('memory: a result too large to keep in the state', { timeout: 30_000 }, () => {
  const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));

  it('is left out of the snapshot and the listing (result_omitted), and counted; the live update carries it whole', async () => {
    const hub = createAgentHub({ logger: false, heartbeatInterval: 0, batchInterval: 0, maxStateBytes: 64 * 1024 });
    const runtime = fakeRuntime(hub);
    const watcher = (await runtime.connect('watched')) as FakeSocket;
    await sleep(0);
    const result = { text: 'x'.repeat(100_000) };
    await hub.publishTask('watched', { task_id: 'big', status: 'completed', progress: 100, result });
    await hub.publishTask('watched', { task_id: 'small', status: 'running', progress: 5, result: { ok: true } });
    await hub.publishTask('queued', { task_id: 'big', status: 'running', progress: 50, result });
    await sleep(10);
    const live = watcher.frames().find((frame) => frame.type === 'task_update' && frame.task_id === 'big');
    assert.deepEqual(live?.result, result, 'the live update is whole');

    // A newcomer's snapshot comes from the hub's own state of the watched agent.
    const late = (await runtime.connect('watched')) as FakeSocket;
    await sleep(0);
    const snapshot = late.frames().find((frame) => frame.type === 'snapshot');
    const big = snapshot?.tasks.find((task: { task_id: string }) => task.task_id === 'big');
    assert.equal(big.result_omitted, true);
    assert.equal('result' in big, false);
    assert.equal(big.status, 'completed');
    const small = snapshot?.tasks.find((task: { task_id: string }) => task.task_id === 'small');
    assert.deepEqual(small.result, { ok: true });
    assert.equal(small.result_omitted, undefined);

    // The broker's state of an agent nobody watches: the listing and a first watcher's snapshot.
    const response = await runtime.app.request('/agents/ws/agents');
    const page = validateHttpBody('AgentsPage', await response.json()) as AgentsPage;
    const queued = page.agents.find((agent) => agent.agent_id === 'queued');
    assert.equal(queued?.open_tasks[0]?.result_omitted, true);
    const first = (await runtime.connect('queued')) as FakeSocket;
    await sleep(0);
    const frames = first.frames();
    const state = frames.find((frame) => frame.type === 'snapshot');
    assert.equal(state?.tasks[0]?.result_omitted, true);
    const handed = frames.find((frame) => frame.type === 'batch_update' || frame.type === 'task_update');
    const update = handed?.type === 'batch_update' ? handed.updates[0].content : handed;
    assert.deepEqual(update?.result, result, 'the queued update is whole');

    const { evictions_by_kind: evicted } = hub.stats();
    // The broker's and the hub's states of `watched`, and the broker's of `queued`; then the hub's of `queued`.
    assert.ok(evicted.result >= 3, `results left out: ${evicted.result}`);
    await hub.close();
  });

  it('keeps the newest update of an agent whatever its size, and forgets older ones first', async () => {
    const hub = createAgentHub({ logger: false, heartbeatInterval: 0, batchInterval: 0, maxStateBytes: 64 * 1024 });
    const runtime = fakeRuntime(hub);
    for (let i = 0; i < 10; i++) {
      await hub.publishTask('busy', { task_id: `t${i}`, status: 'running', progress: i, message: 'm'.repeat(8000) });
    }
    const socket = (await runtime.connect('busy')) as FakeSocket;
    await sleep(0);
    const snapshot = socket.frames().find((frame) => frame.type === 'snapshot');
    const ids = snapshot?.tasks.map((task: { task_id: string }) => task.task_id);
    assert.ok(ids.length < 10 && ids.length > 0, `older tasks were forgotten: ${ids}`);
    assert.equal(ids.at(-1), 't9', 'the newest is kept');
    assert.deepEqual(
      ids,
      [...ids].sort((a: string, b: string) => Number(a.slice(1)) - Number(b.slice(1))),
    );
    assert.ok(hub.stats().evictions_by_kind.task > 0);
    await hub.close();
  });
});

describe('memory: the hub keeps the states of watched agents within maxTotalStateBytes', { timeout: 30_000 }, () => {
  const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));

  it('cuts the agent updated least recently to its newest update, and counts it', async () => {
    const hub = createAgentHub({
      logger: false,
      heartbeatInterval: 0,
      batchInterval: 0,
      maxStateBytes: 64 * 1024,
      maxTotalStateBytes: 96 * 1024,
    });
    const runtime = fakeRuntime(hub);
    for (const id of ['first', 'second', 'third']) await runtime.connect(id);
    await sleep(0);
    const message = 'm'.repeat(8000);
    for (const id of ['first', 'second', 'third']) {
      for (let i = 0; i < 5; i++)
        await hub.publishTask(id, { task_id: `t${i}`, status: 'running', progress: i, message });
    }
    await sleep(10);
    const tasksOf = async (id: string) => {
      const socket = (await runtime.connect(id)) as FakeSocket;
      await sleep(0);
      const snapshot = socket.frames().find((frame) => frame.type === 'snapshot');
      return snapshot?.tasks.map((task: { task_id: string }) => task.task_id) as string[];
    };
    assert.deepEqual(await tasksOf('first'), ['t4'], 'updated least recently: only its newest update stays');
    assert.deepEqual(await tasksOf('third'), ['t0', 't1', 't2', 't3', 't4'], 'updated last: whole');
    assert.ok(hub.stats().evictions_by_kind.state >= 1);
    await hub.close();
  });
});

describe('memory: the in-memory broker over maxTotalStateBytes', { timeout: 30_000 }, () => {
  const setup = (limits: Partial<BrokerContext>, maxAgents?: number) => {
    const evictions: [string, EvictionKind, number][] = [];
    const broker = memoryBroker({ maxAgents })({
      maxQueueSize: 100,
      maxQueueBytes: 1 << 20,
      maxTotalQueueBytes: 1 << 24,
      queueTtl: 0,
      historySize: 0,
      maxHistoryBytes: 0,
      maxTotalHistoryBytes: 0,
      maxStateBytes: 1 << 20,
      maxTotalStateBytes: 1 << 24,
      ...limits,
      sizeOf: (update) => JSON.stringify(update).length,
      onDropped: () => {},
      onEvicted: (agentId, kind, count) => evictions.push([agentId, kind, count]),
    });
    const task = (agentId: string, id: string, message = 'x'.repeat(4000)): UnsequencedUpdate => ({
      type: 'task_update',
      agent_id: agentId,
      task_id: id,
      status: 'running',
      progress: 1,
      message,
      timestamp: new Date().toISOString(),
    });
    return { broker, evictions, task };
  };

  it('forgets the agents touched least recently; a watched one keeps its newest update and is never forgotten', () => {
    const { broker, evictions, task } = setup({ maxTotalStateBytes: 64 * 1024 });
    broker.subscribe('watched', () => {});
    broker.publish('watched', task('watched', 'w1'));
    broker.publish('watched', task('watched', 'w2'));
    for (let i = 0; i < 40; i++) broker.publish(`a${i}`, task(`a${i}`, 't'));
    const forgotten = evictions.filter(([agentId, kind]) => kind === 'state' && agentId.startsWith('a'));
    assert.ok(forgotten.length > 20, `idle agents were forgotten: ${forgotten.length}`);
    assert.deepEqual(
      forgotten.map(([agentId]) => agentId),
      forgotten.map((_, i) => `a${i}`),
      'least recently touched first',
    );
    const ids = broker.listAgents?.(undefined, 100, 10);
    const listed = (ids && 'agents' in ids ? ids.agents : []).map((agent) => agent.agent_id);
    assert.ok(listed.includes('watched') && listed.includes('a39') && !listed.includes('a0'), `${listed}`);
    const joined = broker.subscribe('watched', () => {}) as Joined;
    assert.equal(joined.tasks.at(-1)?.task_id, 'w2', 'the newest update of the watched agent stays');
  });

  it('past maxAgents, forgets the least recently touched agent nobody watches', () => {
    const { broker, evictions, task } = setup({}, 3);
    broker.subscribe('watched', () => {});
    broker.publish('watched', task('watched', 'w'));
    for (let i = 0; i < 5; i++) broker.publish(`a${i}`, task(`a${i}`, 't', 'short'));
    assert.deepEqual(
      evictions.map(([agentId, kind]) => `${agentId} ${kind}`),
      ['a0 state', 'a1 state', 'a2 state'],
    );
    assert.equal((broker.subscribe('watched', () => {}) as Joined).seq, 1, 'the watched stream stays');
  });
});
