/**
 * The Redis broker: the whole conformance suite on one instance, then the six cross-instance
 * guarantees of the README, each with demo server processes sharing a real `redis-server`
 * started here (free port, persistence off) and stopped after.
 *
 * Skipped, with the reason printed, only when redis-server is not installed and CI is not set;
 * in CI a Redis that cannot start fails every test here.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { ServerMessage, TaskUpdate } from '../plugin/index.ts';
import { conformance } from './conformance.ts';
import { TestClient } from './helpers/client.ts';
import { type RedisServer, redisSkipReason, startRedis } from './helpers/redis.ts';
import { eventually, ingest, node, type ServerHandle, startServer, stats, task } from './helpers/server.ts';

const skip = redisSkipReason();
if (skip) console.log(`# skipping the Redis tests: ${skip}`);

const BATCH = 80;
const PRESENCE_TTL = 1500;
const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));
let sequence = 0;
const agent = (label: string) => `${label}-${process.pid}-${++sequence}`;

let redis: RedisServer | undefined;
/** Filled once Redis runs; startServer reads it when each server starts. */
const redisEnv: Record<string, string> = {};

if (!skip) {
  before(async () => {
    redis = await startRedis();
    redisEnv.REDIS_URL = redis.url;
  });
  after(() => redis?.dispose());
  // Every single-instance behaviour holds with the Redis broker too.
  conformance({ ...node, name: 'node with the Redis broker', env: redisEnv });
}

/** Task ids carried by a client's frames, batches unpacked, in arrival order. */
const taskIds = (frames: readonly ServerMessage[]): string[] =>
  frames.flatMap((frame) => {
    if (frame.type === 'task_update') return [frame.task_id];
    if (frame.type === 'batch_update') return frame.updates.map((entry) => (entry.content as TaskUpdate).task_id);
    return [];
  });

describe('Redis broker: several instances behave as one hub', { skip, concurrency: false }, () => {
  let a: ServerHandle;
  let b: ServerHandle;
  const clients: TestClient[] = [];
  const extraServers: ServerHandle[] = [];
  const env = () => ({
    ...redisEnv,
    PRESENCE_TTL_MS: String(PRESENCE_TTL),
    BATCH_INTERVAL_MS: String(BATCH),
    HEARTBEAT_INTERVAL_MS: '60000',
    MAX_QUEUE_SIZE: '5',
    LOG: 'json',
  });
  const open = async (server: ServerHandle, agentId: string) => {
    const client = await TestClient.connect(`${server.ws}/agents/${agentId}/ws`);
    clients.push(client);
    await client.next('connection_established');
    return client;
  };
  const closeAll = async () => {
    await Promise.all(clients.splice(0).map((client) => client.close()));
  };
  const queuedOn = async (...servers: ServerHandle[]) =>
    (await Promise.all(servers.map(stats))).reduce((sum, s) => sum + s.messages_queued, 0);

  before(async () => {
    [a, b] = await Promise.all([startServer(node, env()), startServer(node, env())]);
  });
  after(async () => {
    for (const client of clients) client.socket.terminate();
    for (const client of clients) assert.deepEqual(client.problems, [], 'every frame matched the contract');
    await Promise.all([...extraServers, a, b].map((server) => server?.stop()));
  });

  it('1. delivers an update published on A (ingest or API) to every client on B, once, in order, batched', async () => {
    const id = agent('fanout');
    const onB = [await open(b, id), await open(b, id)];
    const onA = await open(a, id);
    assert.equal(
      (
        await ingest(
          a,
          id,
          [1, 2, 3, 4, 5, 6].map((n) => task(n)),
        )
      ).status,
      202,
    );
    for (const client of [...onB, onA]) {
      const first = await client.next();
      assert.equal(first.type, 'task_update', 'the first update opens the window and goes out alone');
      assert.equal((first as TaskUpdate).task_id, 'task-1');
      const batch = await client.next();
      assert.equal(batch.type, 'batch_update');
      assert.equal(batch.source, 'window');
      assert.deepEqual(taskIds([batch]), ['task-2', 'task-3', 'task-4', 'task-5', 'task-6']);
    }
    for (const client of [...onB, onA]) await client.expectSilence(BATCH * 3);

    // The API path: a third instance whose simulated agent publishes with publishTask/Status.
    const c = await startServer(node, { ...env(), DEMO_AGENTS: '1' });
    extraServers.push(c);
    try {
      const watcher = await open(b, 'demo-agent-1');
      await eventually(() => taskIds(watcher.frames).length >= 4, 10_000, 'updates of demo-agent-1 on B');
      const progress = new Map<string, number[]>();
      for (const frame of watcher.frames) {
        const updates = frame.type === 'batch_update' ? frame.updates.map((entry) => entry.content) : [frame];
        for (const update of updates) {
          if (update.type !== 'task_update') continue;
          assert.equal(update.agent_id, 'demo-agent-1');
          progress.set(update.task_id, [...(progress.get(update.task_id) ?? []), update.progress]);
        }
      }
      for (const [taskId, values] of progress) {
        assert.deepEqual(
          values,
          [...values].sort((x, y) => x - y),
          `${taskId} progress arrives in publish order`,
        );
        assert.equal(new Set(values).size, values.length, `${taskId}: no update twice`);
      }
    } finally {
      await c.stop();
      await closeAll();
    }
  });

  it('2. queues for an agent with no connection anywhere, keeps the newest maxQueueSize, replays once', async () => {
    const id = agent('queue');
    const [beforeA, beforeB] = await Promise.all([stats(a), stats(b)]);
    // Published alternately on both instances, one after the other: one queue, in publish order.
    for (let n = 1; n <= 8; n++) assert.equal((await ingest(n % 2 ? a : b, id, task(n))).status, 202);
    const [afterA, afterB] = await Promise.all([stats(a), stats(b)]);
    assert.equal(
      afterA.messages_queued + afterB.messages_queued - beforeA.messages_queued - beforeB.messages_queued,
      8,
    );
    assert.equal(
      afterA.messages_dropped + afterB.messages_dropped - beforeA.messages_dropped - beforeB.messages_dropped,
      3,
      'the oldest 3 were dropped and counted',
    );
    assert.equal(afterB.cluster?.queued_messages, (beforeB.cluster?.queued_messages ?? 0) + 5);

    // Two clients arrive at once, one per instance: exactly one gets the queue.
    const [onA, onB] = await Promise.all([open(a, id), open(b, id)]);
    await eventually(() => [onA, onB].some((client) => client.frames.some((f) => f.type === 'batch_update')));
    await sleep(BATCH * 3);
    const replays = [onA, onB].flatMap((client) => client.drain());
    assert.equal(replays.length, 1, `one replay in all: ${JSON.stringify(replays)}`);
    const [replay] = replays;
    assert.equal(replay?.type, 'batch_update');
    assert.equal(replay.source, 'queue');
    assert.deepEqual(taskIds([replay]), ['task-4', 'task-5', 'task-6', 'task-7', 'task-8']);
    assert.equal((await stats(a)).cluster?.queued_messages, beforeB.cluster?.queued_messages);

    // Once everyone left, a later client (on either instance) gets nothing again.
    await closeAll();
    await eventually(async () => (await stats(a)).cluster?.agents_connected === 0, 5000, 'agent offline');
    const later = [await open(a, id), await open(b, id)];
    for (const client of later) await client.expectSilence(BATCH * 4);
    await closeAll();
  });

  it('3. delivers live, not queued, to an agent whose only client is on A when B publishes', async () => {
    const id = agent('live');
    const onA = await open(a, id);
    const queuedBefore = await queuedOn(a, b);
    const clusterBefore = (await stats(b)).cluster?.queued_messages;
    for (let n = 1; n <= 3; n++) {
      assert.equal((await ingest(b, id, task(n))).status, 202);
      await sleep(BATCH * 2);
    }
    const frames = [await onA.next(), await onA.next(), await onA.next()];
    assert.deepEqual(
      frames.map((frame) => frame.type),
      ['task_update', 'task_update', 'task_update'],
      'live updates, not a queue replay',
    );
    assert.deepEqual(taskIds(frames), ['task-1', 'task-2', 'task-3']);
    assert.equal(await queuedOn(a, b), queuedBefore, 'nothing was queued');
    assert.equal((await stats(b)).cluster?.queued_messages, clusterBefore);
    await closeAll();
  });

  it('4. an instance killed with SIGKILL: its agents count as offline within the presence timeout, updates queue', async () => {
    const killed = await startServer(node, env());
    extraServers.push(killed);
    const id = agent('killed');
    const doomed = await TestClient.connect(`${killed.ws}/agents/${id}/ws`);
    await doomed.next('connection_established');
    await eventually(async () => (await stats(b)).cluster?.instances === 3, 5000, 'three instances');

    killed.process.kill('SIGKILL');
    const killedAt = Date.now();
    // Publish until the cluster treats the agent as offline: from then on every update is queued.
    const queuedBefore = await queuedOn(b);
    const published: string[] = [];
    let firstQueued = -1;
    for (let n = 1; firstQueued < 0; n++) {
      assert.ok(Date.now() - killedAt < PRESENCE_TTL + 5000, 'an update was queued within the presence timeout');
      assert.equal((await ingest(b, id, task(n))).status, 202);
      published.push(`task-${n}`);
      if ((await queuedOn(b)) > queuedBefore) firstQueued = published.length - 1;
      else await sleep(50);
    }
    const queuedAfterMs = Date.now() - killedAt;
    await eventually(async () => (await stats(b)).cluster?.instances === 2, PRESENCE_TTL + 5000, 'instance expired');
    const expiredAfterMs = Date.now() - killedAt;
    console.log(`# SIGKILL: first update queued after ${queuedAfterMs} ms, instance gone after ${expiredAfterMs} ms`);
    for (let n = published.length + 1; published.length < firstQueued + 3; n++) {
      assert.equal((await ingest(a, id, task(n))).status, 202);
      published.push(`task-${n}`);
    }

    // Nothing published from the first queued update on is lost: a new client gets it all.
    const heir = await open(a, id);
    const replay = await heir.next('batch_update');
    assert.equal(replay.source, 'queue');
    assert.deepEqual(taskIds([replay]), published.slice(firstQueued).slice(-5));
    await closeAll();
  });

  it('4b. a frozen instance (SIGSTOP) stops counting after the presence timeout', async () => {
    const frozen = await startServer(node, env());
    extraServers.push(frozen);
    const id = agent('frozen');
    const client = await TestClient.connect(`${frozen.ws}/agents/${id}/ws`);
    await client.next('connection_established');
    // Its sockets stay open, so only the presence timeout can tell it is gone.
    frozen.process.kill('SIGSTOP');
    const frozenAt = Date.now();
    try {
      const queuedBefore = await queuedOn(b);
      for (let n = 1; (await queuedOn(b)) === queuedBefore; n++) {
        assert.ok(Date.now() - frozenAt < PRESENCE_TTL + 3000, 'queued within the presence timeout');
        assert.equal((await ingest(b, id, task(n))).status, 202);
        await sleep(50);
      }
      console.log(`# SIGSTOP: updates queued after ${Date.now() - frozenAt} ms (presence timeout ${PRESENCE_TTL} ms)`);
    } finally {
      frozen.process.kill('SIGKILL');
      client.socket.terminate();
    }
  });

  it('6. stats on any instance: cluster-wide totals and live instances, plus its own figures', async () => {
    await eventually(async () => (await stats(a)).cluster?.instances === 2, PRESENCE_TTL + 5000, 'two instances');
    const shared = agent('stats-shared');
    const onlyB = agent('stats-b');
    await Promise.all([open(a, shared), open(a, shared), open(b, shared), open(b, onlyB)]);
    const unwatched = agent('stats-queued');
    const queuedBefore = (await stats(a)).cluster?.queued_messages ?? 0;
    await ingest(b, unwatched, [task(1), task(2), task(3)]);
    // Another instance's connection count is as fresh as its last heartbeat (presenceTtl / 3).
    await eventually(
      async () => {
        const [sa, sb] = await Promise.all([stats(a), stats(b)]);
        return sa.cluster?.active_connections === 4 && sb.cluster?.active_connections === 4;
      },
      PRESENCE_TTL + 5000,
      'cluster-wide connections',
    );
    const [sa, sb] = await Promise.all([stats(a), stats(b)]);
    assert.notEqual(sa.instance_id, sb.instance_id);
    for (const s of [sa, sb]) {
      assert.deepEqual(s.cluster, {
        instances: 2,
        active_connections: 4,
        agents_connected: 2,
        queued_messages: queuedBefore + 3,
      });
    }
    assert.equal(sa.active_connections, 2, "A's own figures");
    assert.equal(sa.agents_connected, 1);
    assert.equal(sb.active_connections, 2, "B's own figures");
    assert.equal(sb.agents_connected, 2);
    await closeAll();
  });

  it('5. Redis stopped for a few seconds: no crash, publishes fail loudly, delivery resumes by itself', async () => {
    assert.ok(redis);
    const withDemo = await startServer(node, { ...env(), DEMO_AGENTS: '1' });
    extraServers.push(withDemo);
    const id = agent('outage');
    const watcher = await open(b, id);
    const [beforeA, beforeB] = await Promise.all([stats(a), stats(b)]);

    await redis.stop();
    const downAt = Date.now();
    await eventually(async () => (await ingest(a, id, task(1))).status === 503, 5000, 'ingest answers 503');
    // A new client cannot join while Redis is away: refused loudly (1011), not left hanging.
    const refused = await TestClient.connect(`${a.ws}/agents/${agent('refused')}/ws`);
    assert.equal((await refused.closed).code, 1011);
    while (Date.now() - downAt < 3000) {
      assert.equal((await ingest(a, id, task(2))).status, 503);
      await sleep(200);
    }
    const during = await stats(a);
    assert.ok(during.errors_by_kind.broker_error > beforeA.errors_by_kind.broker_error, 'broker errors counted');
    assert.equal(during.cluster, undefined, 'stats still answer, without cluster figures');
    assert.match(a.output(), /"event":"broker_error"/, 'broker errors logged');
    for (const server of [a, b, withDemo]) {
      assert.equal(server.process.exitCode, null, 'no instance crashed');
      assert.equal(server.process.signalCode, null);
    }
    assert.equal(watcher.socket.readyState, watcher.socket.OPEN, 'clients stay connected');

    await redis.start();
    const upAt = Date.now();
    // Publishing works again, and reaches the client on B, without restarting anything.
    let n = 10;
    await eventually(async () => (await ingest(a, id, task(++n))).status === 202, 15_000, 'ingest accepted again');
    const first = `task-${n}`;
    await eventually(() => taskIds(watcher.frames).includes(first), 15_000, 'delivery resumed');
    console.log(`# Redis outage: publishing again ${Date.now() - upAt} ms after Redis came back`);
    await sleep(BATCH * 3);
    watcher.frames.length = 0;
    watcher.drain();
    await ingest(a, id, [task(101), task(102), task(103)]);
    await eventually(() => taskIds(watcher.frames).length >= 3);
    assert.deepEqual(taskIds(watcher.frames), ['task-101', 'task-102', 'task-103']);

    const [afterA, afterB] = await Promise.all([stats(a), stats(b)]);
    assert.equal(afterA.instance_id, beforeA.instance_id, 'A was not restarted');
    assert.equal(afterB.instance_id, beforeB.instance_id, 'B was not restarted');
    await eventually(async () => (await stats(b)).cluster?.instances === 3, 5000, 'all instances registered again');
    await closeAll();
  });
});
