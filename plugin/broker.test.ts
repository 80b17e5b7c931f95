import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type DropReason, memoryBroker } from './broker.ts';
import type { AgentUpdate } from './schemas.ts';

const update = (n: number): AgentUpdate => ({
  type: 'task_update',
  agent_id: 'a',
  task_id: `t${n}`,
  status: 'running',
  progress: 0,
  timestamp: '2026-01-01T00:00:00.000Z',
});
const ids = (updates: readonly AgentUpdate[]) => updates.map((u) => (u.type === 'task_update' ? u.task_id : u.status));

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
      sizeOf: (u) => JSON.stringify(u).length,
      onDropped: (agentId, count, reason) => {
        drops.push([agentId, count]);
        reasons.push(reason);
      },
    });
    return { broker, drops, reasons };
  };
  const bytes = JSON.stringify(update(1)).length;

  it('delivers to the subscriber, queues without one, and hands the queue over once', () => {
    const { broker } = setup(10);
    assert.deepEqual(broker.publish('a', update(1)), { queued: true });
    assert.deepEqual(broker.publish('a', update(2)), { queued: true });
    assert.equal(broker.queuedCount?.(), 2);
    const live: AgentUpdate[] = [];
    assert.deepEqual(ids(broker.subscribe('a', (u) => live.push(u)) as AgentUpdate[]), ['t1', 't2']);
    assert.equal(broker.queuedCount?.(), 0);
    assert.deepEqual(broker.publish('a', update(3)), { queued: false });
    assert.deepEqual(ids(live), ['t3']);
    broker.unsubscribe('a', []);
    assert.deepEqual(
      broker.subscribe('a', () => {}),
      [],
    );
  });

  it('drops the oldest on overflow and reports how many', () => {
    const { broker, drops } = setup(3);
    for (let n = 1; n <= 1000; n++) broker.publish('a', update(n));
    assert.equal(
      drops.reduce((sum, [, count]) => sum + count, 0),
      997,
    );
    assert.deepEqual(ids(broker.subscribe('a', () => {}) as AgentUpdate[]), ['t998', 't999', 't1000']);
  });

  it('puts undelivered updates ahead of later ones', () => {
    const { broker } = setup(4);
    broker.subscribe('a', () => {});
    broker.unsubscribe('a', [update(1), update(2)]);
    broker.publish('a', update(3));
    assert.deepEqual(ids(broker.subscribe('a', () => {}) as AgentUpdate[]), ['t1', 't2', 't3']);
  });

  it('bounds the number of queued agents, evicting the oldest queue', () => {
    const { broker, drops } = setup(5, 2);
    broker.publish('a', update(1));
    broker.publish('b', update(2));
    broker.publish('c', update(3));
    assert.deepEqual(drops, [['a', 1]]);
    assert.deepEqual(
      broker.subscribe('a', () => {}),
      [],
    );
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
    assert.deepEqual(
      broker.subscribe('a', () => {}),
      [],
    );
  });

  it('bounds all queues together, dropping whole queues that waited longest', () => {
    const { broker, drops, reasons } = setup(100, undefined, { maxTotalQueueBytes: bytes * 4 });
    broker.publish('a', update(1));
    broker.publish('a', update(2));
    broker.publish('b', update(3));
    broker.publish('c', update(4));
    broker.publish('c', update(5));
    assert.deepEqual(drops, [['a', 2]]);
    assert.deepEqual(reasons, ['total_bytes']);
    assert.deepEqual(ids(broker.subscribe('c', () => {}) as AgentUpdate[]), ['t4', 't5']);
    assert.deepEqual(ids(broker.subscribe('b', () => {}) as AgentUpdate[]), ['t3']);
  });

  it('expires a queue nobody took within queueTtl of its newest update', async () => {
    const { broker, drops, reasons } = setup(100, undefined, { queueTtl: 30 });
    broker.publish('a', update(1));
    broker.publish('a', update(2));
    await new Promise((done) => setTimeout(done, 60));
    assert.equal(broker.queuedCount?.(), 0);
    assert.deepEqual(drops, [['a', 2]]);
    assert.deepEqual(reasons, ['expired']);
    assert.deepEqual(
      broker.subscribe('a', () => {}),
      [],
    );
  });
});
