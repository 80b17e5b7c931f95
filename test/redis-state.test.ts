/**
 * The Redis broker keeps each agent's snapshot state within `maxStateBytes` and all agents'
 * within `maxTotalStateBytes`, as the in-memory broker does, against a real `redis-server`: what
 * goes first, what stays (the newest update, the state of a watched agent), a result too large to
 * keep (`result_omitted`), and the evictions reported by kind.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { redisBroker } from '../brokers/redis/index.ts';
import type { BrokerContext, EvictionKind, Joined, UnsequencedUpdate } from '../plugin/index.ts';
import { type RedisServer, redisSkipReason, startRedis } from './helpers/redis.ts';

const skip = redisSkipReason();
if (skip) console.log(`# skipping the Redis state tests: ${skip}`);

const KiB = 1024;
let redis: RedisServer | undefined;

describe('Redis broker: state within maxStateBytes and maxTotalStateBytes', {
  skip,
  concurrency: false,
  timeout: 60_000,
}, () => {
  before(async () => {
    redis = await startRedis();
  });
  after(() => redis?.dispose());

  const setup = (db: number, limits: { maxStateBytes: number; maxTotalStateBytes: number }) => {
    assert.ok(redis);
    redis.cli(db, 'FLUSHDB');
    const evictions: [string, EvictionKind, number][] = [];
    const context: BrokerContext = {
      maxQueueSize: 100,
      maxQueueBytes: 1 << 20,
      maxTotalQueueBytes: 1 << 24,
      queueTtl: 0,
      historySize: 0,
      maxHistoryBytes: 0,
      maxTotalHistoryBytes: 0,
      ...limits,
      sizeOf: (update) => JSON.stringify(update).length,
      onDropped: () => {},
      onEvicted: (agentId, kind, count) => evictions.push([agentId, kind, count]),
    };
    const broker = redisBroker({ url: `${redis.url}/${db}`, presenceTtl: 1500 })(context);
    const task = (agentId: string, id: string, extra: Record<string, unknown> = {}): UnsequencedUpdate =>
      ({
        type: 'task_update',
        agent_id: agentId,
        task_id: id,
        status: 'running',
        progress: 1,
        timestamp: new Date().toISOString(),
        ...extra,
      }) as UnsequencedUpdate;
    const stateBytes = () => Number(redis?.cli(db, 'GET', 'haw:state-bytes'));
    const agentBytes = (agentId: string) => Number(redis?.cli(db, 'HGET', `haw:agent:${agentId}`, 'sbytes'));
    return { broker, evictions, task, stateBytes, agentBytes };
  };

  it('keeps a result too large to keep out of the state (result_omitted), and forgets older tasks first', async () => {
    const { broker, evictions, task, agentBytes } = setup(11, { maxStateBytes: 32 * KiB, maxTotalStateBytes: 1 << 24 });
    try {
      const big = 'x'.repeat(40 * KiB);
      await broker.publish('a', task('a', 'big', { status: 'completed', result: { big } }));
      for (let i = 0; i < 8; i++) await broker.publish('a', task('a', `t${i}`, { message: 'm'.repeat(4000) }));
      const joined = (await broker.subscribe('a', () => {})) as Joined;
      const ids = joined.tasks.map((update) => update.task_id);
      assert.ok(ids.length < 9, `older tasks went: ${ids}`);
      assert.equal(ids.at(-1), 't7', 'the newest stays');
      assert.ok(agentBytes('a') <= 32 * KiB, `within maxStateBytes: ${agentBytes('a')}`);
      assert.deepEqual(
        evictions.find(([, kind]) => kind === 'result'),
        ['a', 'result', 1],
      );
      assert.ok(evictions.some(([agentId, kind]) => agentId === 'a' && kind === 'task'));
      await broker.unsubscribe('a', []);
      // Alone, the big task stays, without its result.
      await broker.publish('b', task('b', 'big', { result: { big } }));
      const listed = await broker.listAgents?.(undefined, 10, 10);
      const b = listed?.agents.find((agent) => agent.agent_id === 'b');
      assert.equal(b?.open_tasks[0]?.result_omitted, true);
      assert.equal(b?.open_tasks[0]?.result, undefined);
    } finally {
      await broker.close();
    }
  });

  it('over the total, forgets the agents touched least recently, keeps a watched one with its newest update', async () => {
    const total = 64 * KiB;
    const { broker, evictions, task, stateBytes } = setup(12, { maxStateBytes: 32 * KiB, maxTotalStateBytes: total });
    try {
      await broker.subscribe('watched', () => {});
      await broker.publish('watched', task('watched', 'w1', { message: 'w'.repeat(8000) }));
      await broker.publish('watched', task('watched', 'w2', { message: 'w'.repeat(8000) }));
      for (let i = 0; i < 40; i++) {
        await broker.publish(`a${i}`, task(`a${i}`, 't', { message: 'x'.repeat(4000) }));
        assert.ok(stateBytes() <= total, `within the total after ${i}: ${stateBytes()}`);
      }
      const forgotten = evictions.filter(([agentId, kind]) => kind === 'state' && agentId.startsWith('a'));
      assert.ok(forgotten.length > 20, `idle agents were forgotten: ${forgotten.length}`);
      assert.equal(forgotten[0]?.[0], 'a0', 'the least recently touched first');
      const listed = await broker.listAgents?.(undefined, 100, 10);
      const ids = listed?.agents.map((agent) => agent.agent_id) ?? [];
      assert.ok(ids.includes('a39') && !ids.includes('a0'), `${ids}`);
      const watched = listed?.agents.find((agent) => agent.agent_id === 'watched');
      assert.ok(watched, 'the watched agent is never forgotten');
      assert.ok(
        watched.open_tasks.some((update) => update.task_id === 'w2'),
        'its newest update stays',
      );
      const sum = ids.reduce((bytes, id) => bytes + Number(redis?.cli(12, 'HGET', `haw:agent:${id}`, 'sbytes')), 0);
      assert.equal(sum, stateBytes(), 'the total is the sum of the agents');
    } finally {
      await broker.close();
    }
  });
});
