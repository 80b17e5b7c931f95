/**
 * Sequence numbers, resume and snapshots over real sockets, against the demo server started as
 * a child process: the behaviours `plugin/resume.test.ts` checks through the fake runtime, here
 * on each runtime's own WebSocket stack. `test/<runtime>.test.ts` runs it once per runtime.
 *
 * Every frame goes through `TestClient`, which holds it to asyncapi.yaml.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { AgentUpdate, ServerMessage, Snapshot, StatusUpdate, TaskUpdate } from '../plugin/index.ts';
import { TestClient } from './helpers/client.ts';
import { newAgentId } from './helpers/ids.ts';
import { ingest, type Runtime, type ServerHandle, startServer, task } from './helpers/server.ts';
import { sleep, waitFor } from './helpers/wait.ts';

const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);
/** A whole number from `min` to `max`, both included. */
const between = (min: number, max: number) => min + Math.floor(Math.random() * (max - min + 1));

type Hello = Extract<ServerMessage, { type: 'connection_established' }>;
type Batch = Extract<ServerMessage, { type: 'batch_update' }>;

/** The updates in a frame, batches unpacked; none for any other frame (the snapshot included). */
const updatesIn = (frame: ServerMessage): AgentUpdate[] => {
  if (frame.type === 'status_update' || frame.type === 'task_update') return [frame];
  if (frame.type === 'batch_update') return frame.updates.map((entry) => entry.content);
  return [];
};

/** Every update a connection received, in arrival order, as `seq`s. */
const seqsOf = (client: TestClient) => client.frames.flatMap(updatesIn).map((update) => update.seq);

/** The frames of a connection without pings, as `type` or, for batches, `source`. */
const shape = (client: TestClient) =>
  client.frames
    .filter((frame) => frame.type !== 'ping')
    .map((frame) => (frame.type === 'batch_update' ? frame.source : frame.type));

/** What a snapshot says, without its timestamp: comparable across connections. */
const stateOf = (snapshot: Snapshot) => {
  const { timestamp: _timestamp, ...rest } = snapshot;
  return rest;
};

/**
 * The snapshot that `updates` (an agent's, from seq 1, in order) add up to at `seq`: the latest
 * status, and the latest update of each task, oldest first (few enough tasks that no bound
 * applies).
 */
const expectedState = (updates: AgentUpdate[], seq: number) => {
  let status: StatusUpdate | null = null;
  const tasks = new Map<string, TaskUpdate>();
  for (const update of updates) {
    if (update.seq > seq) break;
    if (update.type === 'status_update') status = update;
    else {
      tasks.delete(update.task_id);
      tasks.set(update.task_id, update);
    }
  }
  const epoch = updates[0]?.epoch;
  return { type: 'snapshot', epoch, seq, status, tasks: [...tasks.values()] };
};

/** A task as the snapshot shows it: id, status, progress, result. */
const taskView = (update: TaskUpdate) => [update.task_id, update.status, update.progress, update.result];

/**
 * One watcher (a browser tab) across its connections: it remembers the stream position it
 * reached and reconnects from there with `?since=&epoch=`.
 */
class Tab {
  readonly connections: TestClient[] = [];
  readonly hellos: Hello[] = [];
  epoch: string | undefined;

  constructor(
    readonly server: ServerHandle,
    readonly agentId: string,
  ) {}

  /** The connection in use (the last one opened). */
  get current(): TestClient {
    const client = this.connections.at(-1);
    if (!client) throw new Error('never connected');
    return client;
  }

  /** The last `seq` this tab has: the last update it received, or where its connection started. */
  get position(): number {
    const hello = this.hellos.at(-1);
    const last = seqsOf(this.current).at(-1) ?? 0;
    return Math.max(hello?.seq ?? 0, last);
  }

  /** Every update received on every connection, in order. */
  seqs(): number[] {
    return this.connections.flatMap(seqsOf);
  }

  /** Opens a connection, resuming from `position` once it has been connected before; resolves on `connection_established`. */
  async open(): Promise<Hello> {
    const resume = this.epoch === undefined ? '' : `?since=${this.position}&epoch=${this.epoch}`;
    const client = await TestClient.connect(`${this.server.ws}/agents/${this.agentId}/ws${resume}`, {
      timeout: 10_000,
    });
    this.connections.push(client);
    const hello = await client.next('connection_established', 10_000);
    this.hellos.push(hello);
    this.epoch ??= hello.epoch;
    return hello;
  }

  /** Drops the connection: a close handshake, or the TCP connection cut without one. */
  async drop(how: 'close' | 'terminate'): Promise<void> {
    await (how === 'close' ? this.current.close(1001) : this.current.terminate());
  }
}

/** A status update body for the ingest route. */
const status = (text: string, extra: Record<string, unknown> = {}) => ({
  type: 'status_update',
  status: text,
  ...extra,
});

/**
 * Publishes for `ms` at about `rate` updates per second, spread over `agents`, several updates
 * per POST (one keep-alive connection pool). Returns how many each agent got accepted: its
 * latest `seq`, since every agent is fresh.
 */
async function publishFlow(server: ServerHandle, agents: string[], rate: number, ms: number) {
  const published = new Map(agents.map((id) => [id, 0]));
  const failures: string[] = [];
  const tick = 100;
  const perTick = (rate * tick) / 1000;
  const started = performance.now();
  let owed = 0;
  let ticks = 0;
  while (performance.now() - started < ms) {
    owed += perTick;
    const count = Math.floor(owed);
    owed -= count;
    // This tick's updates, dealt round-robin over the agents, sent as one POST per agent.
    const bodies = new Map<string, unknown[]>();
    for (let n = 0; n < count; n++) {
      const id = agents[(ticks * count + n) % agents.length] as string;
      const done = published.get(id) as number;
      const k = done + (bodies.get(id)?.length ?? 0) + 1;
      const body =
        k % 10 === 0
          ? status(k % 20 === 0 ? 'idle' : 'busy', {
              execution_status: { state: 'executing', task_id: `task-${k % 7}` },
            })
          : task(k % 7, { progress: k % 101, ...(k % 13 === 0 ? { status: 'completed', result: { k } } : {}) });
      bodies.set(id, [...(bodies.get(id) ?? []), body]);
    }
    await Promise.all(
      [...bodies].map(async ([id, updates]) => {
        const response = await fetch(`${server.http}/agents/${id}/updates`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(updates),
        });
        const answer = (await response.json()) as { accepted?: number };
        if (response.status !== 202 || answer.accepted !== updates.length) {
          failures.push(`${id}: ${response.status} ${JSON.stringify(answer)}`);
        } else published.set(id, (published.get(id) as number) + updates.length);
      }),
    );
    ticks++;
    const next = started + ticks * tick;
    const wait = next - performance.now();
    if (wait > 0) await sleep(wait);
  }
  return { published, failures, seconds: (performance.now() - started) / 1000 };
}

/** Options of `resumeSuite`. */
export interface ResumeSuiteOptions {
  /** Clients in the reconnect storm (over 20 agents); default 200. */
  stormClients?: number;
  /**
   * Skip reason for the restart test: a broker whose history outlives the server process (Redis)
   * rightly keeps the epoch across a restart; `test/redis.test.ts` covers Redis losing its data.
   */
  restartSkip?: string;
}

export function resumeSuite(runtime: Runtime, options: ResumeSuiteOptions = {}): void {
  const stormClients = options.stormClients ?? 200;

  describe(`resume and snapshots on ${runtime.name}`, { concurrency: false }, () => {
    let server: ServerHandle;
    const clients: TestClient[] = [];
    const open = async (agentId: string, query = '') => {
      const client = await TestClient.connect(`${server.ws}/agents/${agentId}/ws${query}`);
      clients.push(client);
      return client;
    };
    const tabs: Tab[] = [];
    const tab = (agentId: string) => {
      const created = new Tab(server, agentId);
      tabs.push(created);
      return created;
    };

    before(async () => {
      server = await startServer(runtime, { BATCH_INTERVAL_MS: '50', HEARTBEAT_INTERVAL_MS: '60000' });
    });
    after(async () => {
      const all = [...clients, ...tabs.flatMap((t) => t.connections)];
      for (const client of all) client.socket.terminate();
      for (const client of all) assert.deepEqual(client.problems, [], 'every frame matched the contract');
      await server?.stop();
    });

    it('two tabs: one reloads while the other stays; it gets exactly the 20 it missed, once, in order', async () => {
      const id = newAgentId('tabs');
      const stays = tab(id);
      const reloads = tab(id);
      await stays.open();
      await reloads.open();
      for (let n = 1; n <= 5; n++) assert.equal((await ingest(server, id, task(n))).status, 202);
      await waitFor(() => reloads.position === 5 && stays.position === 5, 5000, 'both tabs at seq 5');
      await reloads.drop('close');

      // 20 updates while it is away: singles and a batch, statuses and tasks.
      for (let n = 6; n <= 10; n++) await ingest(server, id, task(n));
      await ingest(server, id, status('busy', { execution_status: { state: 'executing', task_id: 'task-9' } }));
      await ingest(
        server,
        id,
        range(12, 25).map((n) => task(n)),
      );
      // Sent to the tab that stayed, so out of every batching window: all of it is history.
      await waitFor(() => stays.position === 25, 5000, 'the tab that stayed at seq 25');
      // Comes back while more are published: whatever is not in its resume batch arrives live.
      const [hello] = await Promise.all([
        reloads.open(),
        ingest(
          server,
          id,
          range(26, 30).map((n) => task(n)),
        ),
      ]);
      assert.equal(hello.recovered, true);
      assert.equal(hello.epoch, reloads.epoch);
      const back = reloads.current;
      await waitFor(() => reloads.position === 30 && stays.position === 30, 5000, 'both tabs at seq 30');
      // Nothing more may arrive (no repeat, nothing late): a window in which nothing must happen, so real time.
      await sleep(150);

      const frames = back.frames.filter((frame) => frame.type !== 'ping');
      assert.equal(frames[0]?.type, 'connection_established');
      assert.equal(frames[1]?.type, 'snapshot');
      assert.equal((frames[1] as Snapshot).seq, hello.seq);
      const resumed = frames[2] as Batch;
      assert.equal(resumed?.type, 'batch_update');
      assert.equal(resumed.source, 'resume');
      const replayed = resumed.updates.map((entry) => entry.content.seq);
      // Exactly what it missed up to where its connection starts; the rest came live.
      assert.deepEqual(replayed, range(6, hello.seq));
      assert.ok(hello.seq >= 25, `the 20 missed are all in the resume batch (it starts at ${hello.seq})`);
      assert.equal(frames.filter((frame) => frame.type === 'batch_update' && frame.source === 'resume').length, 1);
      assert.deepEqual(seqsOf(back), range(6, 30));
      assert.deepEqual(reloads.seqs(), range(1, 30));
      assert.deepEqual(stays.seqs(), range(1, 30));
      assert.equal(stays.hellos.length, 1);
      for (const update of [...stays.connections, ...reloads.connections].flatMap((c) => c.frames.flatMap(updatesIn)))
        assert.equal(update.epoch, hello.epoch);
    });

    it('nothing missed: recovered, a snapshot and no batch', async () => {
      const id = newAgentId('uptodate');
      const watcher = tab(id);
      await watcher.open();
      await ingest(server, id, [task(1), task(2)]);
      await waitFor(() => watcher.position === 2, 5000, 'seq 2');
      await watcher.drop('terminate');
      const hello = await watcher.open();
      assert.equal(hello.recovered, true);
      assert.equal(hello.seq, 2);
      assert.equal((await watcher.current.next('snapshot')).seq, 2);
      await watcher.current.expectSilence(200);
      assert.deepEqual(shape(watcher.current), ['connection_established', 'snapshot']);
    });

    it(`reconnect storm: ${stormClients} clients over 20 agents drop and resume while ~500 updates/s flow; no gap, no repeat`, async (context) => {
      const agents = Array.from({ length: 20 }, () => newAgentId('storm'));
      // Unevenly: 4 agents with one tab (each drop takes the agent offline: its updates are
      // queued and the tab resumes on a fresh subscription), 4 with three, the rest share the others.
      const owners = [
        ...agents.slice(0, 4),
        ...agents.slice(4, 8).flatMap((id) => [id, id, id]),
        ...Array.from({ length: stormClients - 16 }, (_, n) => agents[8 + (n % 12)] as string),
      ];
      const stormTabs = owners.map((id) => tab(id));
      // Connected before anything is published: every tab starts at seq 0 of a fresh agent.
      for (let n = 0; n < stormTabs.length; n += 50) await Promise.all(stormTabs.slice(n, n + 50).map((t) => t.open()));

      let storming = true;
      let drops = 0;
      const failures: unknown[] = [];
      const droppers = stormTabs.map(async (t) => {
        try {
          await sleep(between(0, 800));
          while (storming) {
            await t.drop(Math.random() < 0.5 ? 'close' : 'terminate');
            drops++;
            await sleep(between(0, 150));
            await t.open();
            await sleep(between(300, 1200));
          }
        } catch (error) {
          failures.push(error);
          storming = false;
        }
      });
      const flow = await publishFlow(server, agents, 500, 4000).finally(() => {
        storming = false;
      });
      await Promise.all(droppers);
      const total = [...flow.published.values()].reduce((sum, n) => sum + n, 0);
      context.diagnostic(
        `${total} updates in ${flow.seconds.toFixed(1)} s (${Math.round(total / flow.seconds)}/s), ${drops} drops and resumes over ${stormTabs.length} clients`,
      );
      assert.deepEqual(failures, [], 'every drop and reconnect worked');
      assert.deepEqual(flow.failures, []);
      assert.ok(total >= 1000, `enough updates flowed (${total})`);
      assert.ok(drops >= stormTabs.length, `every client dropped at least once on average (${drops})`);

      // Quiet: every tab catches up with the last update of its agent.
      await waitFor(
        () => stormTabs.every((t) => t.position === flow.published.get(t.agentId)),
        10_000,
        'every tab at its agent’s last seq',
      );
      // Nothing more may arrive (no repeat, nothing late): a window in which nothing must happen, so real time.
      await sleep(200);
      for (const t of stormTabs) {
        const last = flow.published.get(t.agentId) as number;
        const seqs = t.seqs();
        const first = seqs[0] ?? last + 1;
        assert.ok(first <= (t.hellos[0] as Hello).seq + 1, `${t.agentId}: no gap before the first update`);
        assert.deepEqual(seqs, range(first, last), `${t.agentId}: every seq once, in order`);
        // The tab has every update of its agent: each snapshot must be the state they add up to.
        const updates = t.connections.flatMap((client) => client.frames.flatMap(updatesIn));
        for (const [n, hello] of t.hellos.entries()) {
          assert.equal(hello.epoch, t.epoch, 'one epoch');
          if (n > 0) assert.equal(hello.recovered, true, `${t.agentId}: reconnection ${n} recovered`);
          const client = t.connections[n] as TestClient;
          const frames = shape(client);
          assert.deepEqual(frames.slice(0, 2), ['connection_established', 'snapshot']);
          assert.ok(!frames.includes('queue'), 'a resuming client never gets the queue');
          const snapshot = client.frames.find((frame) => frame.type === 'snapshot') as Snapshot;
          assert.equal(snapshot.seq, hello.seq);
          assert.deepEqual(stateOf(snapshot), { ...expectedState(updates, hello.seq), agent_id: t.agentId });
        }
      }
    });

    it('a wrong epoch, a seq from the future, a malformed resume point', async () => {
      const id = newAgentId('epoch');
      const watcher = tab(id);
      const hello = await watcher.open();
      await ingest(server, id, [task(1), task(2), task(3)]);
      await waitFor(() => watcher.position === 3, 5000, 'seq 3');
      for (const query of ['?since=2&epoch=notTheEpoch', `?since=9&epoch=${hello.epoch}`]) {
        const client = await open(id, query);
        const back = await client.next('connection_established');
        assert.equal(back.recovered, false, query);
        assert.equal(back.epoch, hello.epoch, query);
        assert.equal((await client.next('snapshot')).seq, 3, query);
        await client.expectSilence(150);
        assert.deepEqual(seqsOf(client), [], query);
      }
      for (const query of ['?since=abc&epoch=e', '?since=3', '?since=-1&epoch=e', '?since=3&epoch=bad%20epoch']) {
        const refused = await TestClient.connect(`${server.ws}/agents/${id}/ws${query}`).catch((error) => error);
        assert.equal(refused.status, 400, query);
        assert.equal(refused.headers['x-agent-ws-error'], 'invalid_resume', query);
      }
    });

    it('a dashboard joining mid-task sees the current status, running tasks with their latest progress, the completed one with its result', async () => {
      const id = newAgentId('midtask');
      // Published while nobody watches: the first joiner's snapshot comes from the broker...
      await ingest(server, id, [
        status('busy', { execution_status: { state: 'executing', task_id: 'task-2', progress: 10 } }),
        task(1, { progress: 10 }),
        task(2, { progress: 5 }),
        task(3, { progress: 20 }),
        task(1, { progress: 45, message: 'half way' }),
        task(2, { status: 'completed', progress: 100, result: { pages: 3, ok: true } }),
        task(3, { progress: 70 }),
        status('busy', { execution_status: { state: 'executing', task_id: 'task-3', progress: 70 } }),
      ]);
      const first = await open(id);
      const hello = await first.next('connection_established');
      const snapshot = await first.next('snapshot');
      assert.equal(hello.seq, 8);
      assert.equal(snapshot.seq, 8);
      assert.equal(snapshot.epoch, hello.epoch);
      assert.equal(snapshot.agent_id, id);
      assert.equal(snapshot.status?.status, 'busy');
      assert.equal(snapshot.status?.seq, 8);
      assert.deepEqual(snapshot.status?.execution_status, { state: 'executing', task_id: 'task-3', progress: 70 });
      // Oldest update first: task-1 last moved at seq 5, task-2 ended at 6, task-3 moved at 7.
      assert.deepEqual(snapshot.tasks.map(taskView), [
        ['task-1', 'running', 45, undefined],
        ['task-2', 'completed', 100, { pages: 3, ok: true }],
        ['task-3', 'running', 70, undefined],
      ]);
      assert.deepEqual(
        snapshot.tasks.map((t) => t.seq),
        [5, 6, 7],
      );
      assert.equal(snapshot.tasks[0]?.message, 'half way');

      // ...a later joiner's from the hub's own state of the live channel: the same.
      await ingest(server, id, task(4, { progress: 1 }));
      await first.next('task_update');
      const second = await open(id);
      await second.next('connection_established');
      const later = await second.next('snapshot');
      assert.equal(later.seq, 9);
      assert.deepEqual(later.tasks.map(taskView), [
        ...snapshot.tasks.map(taskView),
        ['task-4', 'running', 1, undefined],
      ]);
      assert.deepEqual(later.status, snapshot.status);
      assert.deepEqual(shape(first).slice(0, 3), ['connection_established', 'snapshot', 'queue']);
    });

    it('five watchers joining an offline agent together all get the same snapshot and the same queue', async () => {
      const id = newAgentId('five');
      await ingest(server, id, [task(1), status('busy'), task(2), task(1, { progress: 50 })]);
      for (let n = 3; n <= 5; n++) await ingest(server, id, task(n));
      const watchers = await Promise.all(Array.from({ length: 5 }, () => open(id)));
      const hellos = await Promise.all(watchers.map((w) => w.next('connection_established')));
      const snapshots = await Promise.all(watchers.map((w) => w.next('snapshot')));
      const queues = await Promise.all(watchers.map((w) => w.next('batch_update')));
      for (const [n, watcher] of watchers.entries()) {
        assert.equal(hellos[n]?.seq, 7);
        assert.equal(hellos[n]?.epoch, hellos[0]?.epoch);
        assert.equal(hellos[n]?.recovered, false);
        assert.deepEqual(stateOf(snapshots[n] as Snapshot), stateOf(snapshots[0] as Snapshot));
        assert.equal(queues[n]?.source, 'queue');
        assert.deepEqual(queues[n]?.updates, queues[0]?.updates);
        assert.deepEqual(seqsOf(watcher), range(1, 7));
      }
      assert.equal(snapshots[0]?.seq, 7);
      assert.equal(snapshots[0]?.status?.status, 'busy');
      // Live updates reach all five once, after the queue.
      await ingest(server, id, task(6));
      for (const watcher of watchers) {
        await watcher.next('task_update');
        assert.deepEqual(seqsOf(watcher), range(1, 8));
      }
    });
  });

  describe(`resume and snapshots on ${runtime.name}: history overflow, restart, snapshot off`, {
    concurrency: false,
  }, () => {
    it('history overflowed (HISTORY_SIZE=5): recovered false, and a snapshot at the latest seq with the right tasks', async () => {
      const server = await startServer(runtime, { HISTORY_SIZE: '5', BATCH_INTERVAL_MS: '50' });
      const all: TestClient[] = [];
      try {
        const id = newAgentId('overflow');
        const connect = async (query = '') => {
          const client = await TestClient.connect(`${server.ws}/agents/${id}/ws${query}`);
          all.push(client);
          return client;
        };
        // Another tab keeps the agent watched, so nothing is queued: only history could help.
        const stays = await connect();
        const leaves = await connect();
        const { epoch } = await leaves.next('connection_established');
        await ingest(server, id, [task(1, { progress: 10 }), task(2, { progress: 10 })]);
        await waitFor(() => seqsOf(leaves).at(-1) === 2, 5000, 'seq 2');
        await leaves.close();
        await ingest(server, id, [
          task(1, { progress: 60 }),
          status('busy', { execution_status: { state: 'executing', task_id: 'task-2' } }),
          task(3, { progress: 5 }),
          task(2, { status: 'failed', progress: 30, error: 'boom' }),
          task(1, { progress: 80 }),
          task(3, { status: 'completed', progress: 100, result: ['a', 'b'] }),
          task(4, { progress: 15 }),
        ]);
        await waitFor(() => seqsOf(stays).at(-1) === 9, 5000, 'seq 9');
        // Missed 3..9 (7 updates), the server holds 5..9.
        const back = await connect(`?since=2&epoch=${epoch}`);
        const hello = await back.next('connection_established');
        assert.equal(hello.recovered, false);
        assert.equal(hello.epoch, epoch);
        assert.equal(hello.seq, 9);
        const snapshot = await back.next('snapshot');
        assert.equal(snapshot.seq, 9);
        assert.equal(snapshot.status?.status, 'busy');
        assert.equal(snapshot.status?.seq, 4);
        assert.deepEqual(snapshot.tasks.map(taskView), [
          ['task-2', 'failed', 30, undefined],
          ['task-1', 'running', 80, undefined],
          ['task-3', 'completed', 100, ['a', 'b']],
          ['task-4', 'running', 15, undefined],
        ]);
        assert.equal(snapshot.tasks[0]?.error, 'boom');
        await back.expectSilence(200);
        assert.deepEqual(shape(back), ['connection_established', 'snapshot'], 'nothing replayed');
        // Within what is held it still recovers: since=4 needs 5..9.
        const near = await connect(`?since=4&epoch=${epoch}`);
        assert.equal((await near.next('connection_established')).recovered, true);
        await near.next('snapshot');
        assert.deepEqual(
          (await near.next('batch_update')).updates.map((entry) => entry.content.seq),
          range(5, 9),
        );
        // Live updates go on from the snapshot for the one that did not recover.
        await ingest(server, id, task(5));
        assert.equal((await back.next('task_update')).seq, 10);
        for (const client of all) assert.deepEqual(client.problems, []);
      } finally {
        for (const client of all) client.socket.terminate();
        await server.stop();
      }
    });

    it('history overflowed while nobody watched, the queue covers the gap: recovered from the queue', async () => {
      const server = await startServer(runtime, { HISTORY_SIZE: '5', BATCH_INTERVAL_MS: '50' });
      const all: TestClient[] = [];
      try {
        const id = newAgentId('overflow-offline');
        const only = await TestClient.connect(`${server.ws}/agents/${id}/ws`);
        all.push(only);
        const { epoch } = await only.next('connection_established');
        await ingest(server, id, task(1, { progress: 10 }));
        await waitFor(() => seqsOf(only).at(-1) === 1, 5000, 'seq 1');
        await only.close();
        await ingest(
          server,
          id,
          range(2, 12).map((n) => task(n % 3, { progress: n })),
        );
        const back = await TestClient.connect(`${server.ws}/agents/${id}/ws?since=1&epoch=${epoch}`);
        all.push(back);
        const hello = await back.next('connection_established');
        // The queue handed over on this join holds 2…12 (MAX_QUEUE_SIZE 100): enough to recover.
        assert.equal(hello.recovered, true);
        assert.equal(hello.seq, 12);
        const snapshot = await back.next('snapshot');
        assert.equal(snapshot.seq, 12);
        const resumed = await back.next('batch_update');
        assert.equal(resumed.source, 'resume');
        assert.deepEqual(
          resumed.updates.map((entry) => (entry.content as { seq: number }).seq),
          range(2, 12),
        );
        assert.deepEqual(snapshot.tasks.map(taskView), [
          ['task-1', 'running', 10, undefined],
          ['task-2', 'running', 11, undefined],
          ['task-0', 'running', 12, undefined],
        ]);
        for (const client of all) assert.deepEqual(client.problems, []);
      } finally {
        for (const client of all) client.socket.terminate();
        await server.stop();
      }
    });

    it('history and queue both overflowed while nobody watched: recovered false, the snapshot, and no queue after it', async () => {
      const server = await startServer(runtime, { HISTORY_SIZE: '5', MAX_QUEUE_SIZE: '5', BATCH_INTERVAL_MS: '50' });
      const all: TestClient[] = [];
      try {
        const id = newAgentId('overflow-offline');
        const only = await TestClient.connect(`${server.ws}/agents/${id}/ws`);
        all.push(only);
        const { epoch } = await only.next('connection_established');
        await ingest(server, id, task(1, { progress: 10 }));
        await waitFor(() => seqsOf(only).at(-1) === 1, 5000, 'seq 1');
        await only.close();
        await ingest(
          server,
          id,
          range(2, 12).map((n) => task(n % 3, { progress: n })),
        );
        const back = await TestClient.connect(`${server.ws}/agents/${id}/ws?since=1&epoch=${epoch}`);
        all.push(back);
        const hello = await back.next('connection_established');
        assert.equal(hello.recovered, false);
        assert.equal(hello.seq, 12);
        const snapshot = await back.next('snapshot');
        assert.equal(snapshot.seq, 12);
        assert.deepEqual(snapshot.tasks.map(taskView), [
          ['task-1', 'running', 10, undefined],
          ['task-2', 'running', 11, undefined],
          ['task-0', 'running', 12, undefined],
        ]);
        // Older updates after the snapshot would roll a client's state back: none follow.
        await back.expectSilence(300);
        for (const client of all) assert.deepEqual(client.problems, []);
      } finally {
        for (const client of all) client.socket.terminate();
        await server.stop();
      }
    });

    it('an old epoch after a restart: recovered false, a new epoch, the new stream', {
      skip: options.restartSkip,
    }, async () => {
      let server = await startServer(runtime, { BATCH_INTERVAL_MS: '50' });
      const all: TestClient[] = [];
      try {
        const id = newAgentId('restart');
        const before = await TestClient.connect(`${server.ws}/agents/${id}/ws`);
        all.push(before);
        const old = await before.next('connection_established');
        await ingest(server, id, [task(1), task(2), task(3), task(4)]);
        await waitFor(() => seqsOf(before).at(-1) === 4, 5000, 'seq 4');
        assert.equal(await server.stop(), 0);
        await before.closed;

        server = await startServer(runtime, { BATCH_INTERVAL_MS: '50' });
        await ingest(server, id, [task(7, { progress: 70 }), status('back')]);
        const back = await TestClient.connect(`${server.ws}/agents/${id}/ws?since=4&epoch=${old.epoch}`);
        all.push(back);
        const hello = await back.next('connection_established');
        assert.equal(hello.recovered, false);
        assert.notEqual(hello.epoch, old.epoch);
        assert.equal(hello.seq, 2);
        const snapshot = await back.next('snapshot');
        assert.equal(snapshot.epoch, hello.epoch);
        assert.equal(snapshot.seq, 2);
        assert.equal(snapshot.status?.status, 'back');
        assert.deepEqual(snapshot.tasks.map(taskView), [['task-7', 'running', 70, undefined]]);
        for (const client of all) assert.deepEqual(client.problems, []);
      } finally {
        for (const client of all) client.socket.terminate();
        await server.stop();
      }
    });

    it('SNAPSHOT=off: no snapshot, the queue right after connection_established', async () => {
      const server = await startServer(runtime, { SNAPSHOT: 'off', BATCH_INTERVAL_MS: '50' });
      try {
        const id = newAgentId('nosnapshot');
        await ingest(server, id, [task(1), task(2)]);
        const client = await TestClient.connect(`${server.ws}/agents/${id}/ws`);
        const hello = await client.next('connection_established');
        const { epoch } = hello;
        await client.next('batch_update');
        await client.close();
        const back = await TestClient.connect(`${server.ws}/agents/${id}/ws?since=1&epoch=${epoch}`);
        assert.equal((await back.next('connection_established')).recovered, true);
        assert.deepEqual(
          (await back.next('batch_update')).updates.map((entry) => entry.content.seq),
          [2],
        );
        await back.expectSilence(150);
        assert.deepEqual(shape(client), ['connection_established', 'queue']);
        assert.deepEqual(shape(back), ['connection_established', 'resume']);
        back.socket.terminate();
        assert.deepEqual([...client.problems, ...back.problems], []);
      } finally {
        await server.stop();
      }
    });
  });
}
