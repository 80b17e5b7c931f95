import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fakeClock } from '../test/helpers/clock.ts';
import { type DropReason, type Joined, MEMORY_BOOKKEEPING, memoryBroker } from './broker.ts';
import type { AgentUpdate, UnsequencedUpdate } from './schemas.ts';

const update = (n: number): UnsequencedUpdate => ({
  type: 'task_update',
  agent_id: 'a',
  task_id: `t${n}`,
  status: 'running',
  progress: 0,
  timestamp: '2026-01-01T00:00:00.000Z',
});
/** An update as the broker hands it out. */
const sequenced = (n: number) => ({ ...update(n), seq: n, epoch: 'e' }) as AgentUpdate;
const ids = (updates: readonly UnsequencedUpdate[]) =>
  updates.map((u) => (u.type === 'task_update' ? u.task_id : u.status));

describe('memoryBroker', () => {
  const setup = (
    maxQueueSize: number,
    maxQueuedAgents?: number,
    limits: { maxQueueBytes?: number; maxTotalQueueBytes?: number; queueTtl?: number } = {},
  ) => {
    const drops: [string, number][] = [];
    const reasons: (DropReason | undefined)[] = [];
    const broker = memoryBroker({ maxQueuedAgents })({
      maxQueueSize,
      maxQueueBytes: limits.maxQueueBytes ?? 1 << 30,
      maxTotalQueueBytes: limits.maxTotalQueueBytes ?? 1 << 30,
      queueTtl: limits.queueTtl ?? 0,
      historySize: 1000,
      maxHistoryBytes: 1 << 30,
      maxTotalHistoryBytes: 1 << 30,
      sizeOf: (u) => JSON.stringify(u).length,
      onDropped: (agentId, count, reason) => {
        drops.push([agentId, count]);
        reasons.push(reason);
      },
    });
    return { broker, drops, reasons };
  };
  /** Bytes of one numbered update (seq < 10). */
  const bytes = JSON.stringify({ ...update(1), seq: 1, epoch: 'abcdefghijkl' }).length;

  it('delivers to the subscriber, queues without one, and hands the queue over once', () => {
    const { broker } = setup(10);
    assert.deepEqual(broker.publish('a', update(1)), { queued: true });
    assert.deepEqual(broker.publish('a', update(2)), { queued: true });
    assert.equal(broker.queuedCount?.(), 2);
    const live: AgentUpdate[] = [];
    assert.deepEqual(ids((broker.subscribe('a', (u) => live.push(u)) as Joined).queue), ['t1', 't2']);
    assert.equal(broker.queuedCount?.(), 0);
    assert.deepEqual(broker.publish('a', update(3)), { queued: false });
    assert.deepEqual(ids(live), ['t3']);
    broker.unsubscribe('a', []);
    assert.deepEqual((broker.subscribe('a', () => {}) as Joined).queue, []);
  });

  it('drops the oldest on overflow and reports how many', () => {
    const { broker, drops } = setup(3);
    for (let n = 1; n <= 1000; n++) broker.publish('a', update(n));
    assert.equal(
      drops.reduce((sum, [, count]) => sum + count, 0),
      997,
    );
    assert.deepEqual(ids((broker.subscribe('a', () => {}) as Joined).queue), ['t998', 't999', 't1000']);
  });

  it('puts undelivered updates ahead of later ones', () => {
    const { broker } = setup(4);
    broker.subscribe('a', () => {});
    broker.unsubscribe('a', [sequenced(1), sequenced(2)]);
    broker.publish('a', update(3));
    assert.deepEqual(ids((broker.subscribe('a', () => {}) as Joined).queue), ['t1', 't2', 't3']);
  });

  it('bounds the number of queued agents, evicting the oldest queue', () => {
    const { broker, drops } = setup(5, 2);
    broker.publish('a', update(1));
    broker.publish('b', update(2));
    broker.publish('c', update(3));
    assert.deepEqual(drops, [['a', 1]]);
    assert.deepEqual((broker.subscribe('a', () => {}) as Joined).queue, []);
    assert.equal(broker.queuedCount?.(), 2);
  });

  it('bounds each queue in bytes, dropping the oldest, and drops an update too big on its own', () => {
    const { broker, drops, reasons } = setup(100, undefined, { maxQueueBytes: bytes * 3 });
    for (let n = 1; n <= 5; n++) broker.publish('a', update(n));
    assert.deepEqual(drops, [
      ['a', 1],
      ['a', 1],
    ]);
    assert.deepEqual(reasons, ['bytes', 'bytes']);
    assert.equal(broker.queuedCount?.(), 3);
    const huge = { ...update(6), message: 'x'.repeat(bytes * 4) };
    broker.publish('a', huge);
    assert.equal(broker.queuedCount?.(), 0, 'the oversized update pushed out everything, then itself');
    assert.deepEqual((broker.subscribe('a', () => {}) as Joined).queue, []);
  });

  it('bounds all queues together, dropping whole queues that waited longest', () => {
    // Four updates in three queues fit; the totals count the bookkeeping too.
    const total = 4 * (bytes + MEMORY_BOOKKEEPING.entry) + 3 * (MEMORY_BOOKKEEPING.queue + 1);
    const { broker, drops, reasons } = setup(100, undefined, { maxTotalQueueBytes: total });
    broker.publish('a', update(1));
    broker.publish('a', update(2));
    broker.publish('b', update(3));
    broker.publish('c', update(4));
    broker.publish('c', update(5));
    assert.deepEqual(drops, [['a', 2]]);
    assert.deepEqual(reasons, ['total_bytes']);
    assert.deepEqual(ids((broker.subscribe('c', () => {}) as Joined).queue), ['t4', 't5']);
    assert.deepEqual(ids((broker.subscribe('b', () => {}) as Joined).queue), ['t3']);
  });

  it('expires a queue nobody took within queueTtl of its newest update', async (t) => {
    const clock = fakeClock(t);
    const { broker, drops, reasons } = setup(100, undefined, { queueTtl: 30 });
    broker.publish('a', update(1));
    broker.publish('a', update(2));
    await clock.advance(60);
    assert.equal(broker.queuedCount?.(), 0);
    assert.deepEqual(drops, [['a', 2]]);
    assert.deepEqual(reasons, ['expired']);
    assert.deepEqual((broker.subscribe('a', () => {}) as Joined).queue, []);
  });

  it('numbers each agent’s updates 1, 2, 3 in one epoch, and hands history after a seq', () => {
    const { broker } = setup(10);
    const published = [1, 2, 3, 4].map((n) => {
      const draft = update(n);
      broker.publish('a', draft);
      return draft as AgentUpdate;
    });
    assert.deepEqual(
      published.map((u) => u.seq),
      [1, 2, 3, 4],
    );
    const { epoch } = published[0] as AgentUpdate;
    assert.ok(published.every((u) => u.epoch === epoch));
    broker.publish('b', update(9));
    const joined = broker.subscribe('a', () => {}) as Joined;
    assert.equal(joined.epoch, epoch);
    assert.equal(joined.seq, 4);
    assert.deepEqual(ids(broker.history('a', 2, epoch) as AgentUpdate[]), ['t3', 't4']);
    assert.deepEqual(broker.history('a', 4, epoch), []);
    assert.equal(broker.history('a', 1, 'another'), undefined);
    assert.equal(broker.history('a', 5, epoch), undefined, 'a seq from the future');
  });

  it('says history is lost once it is trimmed, by count or bytes', () => {
    const drops: unknown[] = [];
    const broker = memoryBroker()({
      maxQueueSize: 10,
      maxQueueBytes: 1 << 20,
      maxTotalQueueBytes: 1 << 20,
      queueTtl: 0,
      historySize: 3,
      maxHistoryBytes: 1 << 20,
      maxTotalHistoryBytes: 1 << 20,
      sizeOf: (u) => JSON.stringify(u).length,
      onDropped: (...args) => drops.push(args),
    });
    for (let n = 1; n <= 5; n++) broker.publish('a', update(n));
    const { epoch } = broker.subscribe('a', () => {}) as Joined;
    assert.equal(broker.history('a', 1, epoch), undefined);
    assert.deepEqual(ids(broker.history('a', 2, epoch) as AgentUpdate[]), ['t3', 't4', 't5']);
  });

  it('keeps the state a snapshot shows: latest status, open tasks, recent ended ones', () => {
    const { broker } = setup(10);
    broker.publish('a', {
      type: 'status_update',
      agent_id: 'a',
      status: 'busy',
      timestamp: '2026-01-01T00:00:00.000Z',
    });
    broker.publish('a', { ...update(1), status: 'running' });
    broker.publish('a', { ...update(2), status: 'running' });
    broker.publish('a', { ...update(1), status: 'completed', progress: 100 } as UnsequencedUpdate);
    const joined = broker.subscribe('a', () => {}) as Joined;
    assert.equal(joined.status?.status, 'busy');
    assert.deepEqual(
      joined.tasks.map((task) => [task.task_id, task.status, task.seq]),
      [
        ['t2', 'running', 3],
        ['t1', 'completed', 4],
      ],
    );
  });
});
