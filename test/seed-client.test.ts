/**
 * The protocol seed's own "JavaScript Client" example, run verbatim (test/fixtures/seed-client.js)
 * against the demo on Node: a client written before `seq`, `epoch` and `snapshot` existed must
 * log every update exactly once, ignore the snapshot (its `switch` has no case for it), and never
 * log an old update again as new after it reconnects, which it does the only way it knows: by
 * running again, without `?since=`.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { newAgentId } from './helpers/ids.ts';
import { ingest, node, ROOT, type ServerHandle, startServer, stats } from './helpers/server.ts';
import { sleep, waitFor } from './helpers/wait.ts';

const FIXTURE = fileURLToPath(new URL('./fixtures/seed-client.js', import.meta.url));
const BATCH = 100;
const HEARTBEAT = 200;

/** One `console.log` call of the example: its arguments. */
type Line = unknown[];

/** An update posted to the ingest route. */
type Update = { type: string; task_id?: string; progress?: number; status?: string };
/** A task update whose progress names it: the example logs only `progress` for one. */
const task = (progress: number): Update => ({
  type: 'task_update',
  task_id: `task-${progress % 3}`,
  status: 'running',
  progress,
});
/** A status update whose status names it: the example logs only `status` for one. */
const status = (name: string): Update => ({ type: 'status_update', status: name });
/** What the example's log shows of an update: `task:<progress>` or `status:<status>`. */
const nameOf = (update: Update) =>
  update.type === 'task_update' ? `task:${update.progress}` : `status:${update.status}`;

/** An update as the example logged it, and whether it came in a `batch_update`. */
type Logged = { name: string; batched: boolean };

/** One run of the example: a page that opens, logs, and is left (SIGTERM). */
class SeedRun {
  readonly out: Line[] = [];
  readonly err: Line[] = [];
  readonly exited: Promise<number | null>;

  private constructor(readonly child: ChildProcess) {
    const collect = (into: Line[]) => {
      let rest = '';
      return (chunk: Buffer) => {
        const lines = (rest + chunk).split('\n');
        rest = lines.pop() ?? '';
        for (const line of lines) into.push(JSON.parse(line) as Line);
      };
    };
    child.stdout?.on('data', collect(this.out));
    child.stderr?.on('data', collect(this.err));
    this.exited = once(child, 'exit').then(([code]) => code as number | null);
  }

  /** Runs the example for `agentId`; resolves once it logged that it is connected. */
  static async start(server: ServerHandle, agentId: string): Promise<SeedRun> {
    const child = spawn(process.execPath, [FIXTURE], {
      cwd: ROOT,
      env: { ...process.env, AGENT_ID: agentId, SERVER: `127.0.0.1:${server.port}` },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const run = new SeedRun(child);
    await waitFor(
      () => run.out.some(([what]) => what === 'Connected to agent:'),
      10_000,
      `the example connected (stderr: ${JSON.stringify(run.err)})`,
    );
    return run;
  }

  /** The updates it logged, in order, with how each arrived (alone or in a batch). */
  logged(): Logged[] {
    return this.out.flatMap(([what, value]): Logged[] => {
      if (what === 'Task progress:') return [{ name: `task:${value}`, batched: false }];
      if (what === 'Agent status:') return [{ name: `status:${value}`, batched: false }];
      if (what === 'Batch update:') {
        const entry = value as { type: string; content: { type: string; progress?: number; status?: string } };
        assert.equal(entry.type, entry.content.type);
        return [{ name: nameOf(entry.content), batched: true }];
      }
      return [];
    });
  }

  names(): string[] {
    return this.logged().map((update) => update.name);
  }

  /** Leaves the page; resolves with the exit code once the socket closed. */
  async stop(): Promise<number | null> {
    if (this.child.exitCode === null) this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    const code = await this.exited;
    clearTimeout(timer);
    return code;
  }

  /** Every line is one the example writes, connected once, closed only when left, no error. */
  assertClean(stopped: boolean): void {
    const kinds = this.out.map(([what]) => what);
    assert.deepEqual(
      kinds.filter((what) => what === 'Connected to agent:'),
      ['Connected to agent:'],
    );
    assert.equal(kinds[0], 'Connected to agent:');
    for (const what of kinds) {
      assert.ok(
        ['Connected to agent:', 'Agent status:', 'Task progress:', 'Batch update:', 'Connection closed'].includes(
          what as string,
        ),
        `unexpected line ${JSON.stringify(what)}`,
      );
    }
    assert.equal(kinds.filter((what) => what === 'Connection closed').length, stopped ? 1 : 0);
    if (stopped) assert.equal(kinds.at(-1), 'Connection closed');
    assert.deepEqual(this.err, [], 'no WebSocket error');
  }
}

describe('the seed’s JavaScript client example, verbatim, on node', { concurrency: false }, () => {
  let server: ServerHandle;
  const runs: SeedRun[] = [];
  const start = async (agentId: string) => {
    const run = await SeedRun.start(server, agentId);
    runs.push(run);
    return run;
  };
  /** The server has released every connection (the left page's included). */
  const allClosed = () => waitFor(async () => (await stats(server)).active_connections === 0, 5000, 'all closed');

  before(async () => {
    // Pings every 200 ms: the example answers them, or the server would close it (4000).
    server = await startServer(node, { BATCH_INTERVAL_MS: String(BATCH), HEARTBEAT_INTERVAL_MS: String(HEARTBEAT) });
  });
  after(async () => {
    for (const run of runs) await run.stop();
    await server?.stop();
  });

  it('logs every live update once, alone or from a window batch, and nothing old after it reconnects', async () => {
    const id = newAgentId('seed-live');
    const page = await start(id);
    const published: string[] = [];
    const publish = async (body: Update | Update[]) => {
      assert.equal((await ingest(server, id, body)).status, 202);
      for (const update of Array.isArray(body) ? body : [body]) published.push(nameOf(update));
    };
    const delivered = () => waitFor(() => page.logged().length >= published.length, 5000, 'all logged');
    // Singles, each after the previous window closed: each goes out alone. A window closing empty
    // is not announced by the server, so each wait below is real time.
    await publish(task(1));
    await delivered();
    await sleep(BATCH * 2);
    await publish(status('s-2'));
    await delivered();
    await sleep(BATCH * 2);
    // Eight at once: the first alone, the rest in one window batch.
    await publish([task(3), status('s-4'), task(5), task(6), task(7), status('s-8'), task(9), task(10)]);
    await delivered();
    // Several requests inside one window.
    await sleep(BATCH * 2);
    await Promise.all([11, 12, 13].map((n) => publish(task(n))));
    await publish([task(14), task(15)]);
    await delivered();
    // Longer than two heartbeats: it answered the pings and is still connected. (Nothing must
    // happen here, and the example logs no ping: real time.)
    await sleep(HEARTBEAT * 3);

    assert.deepEqual(page.names(), published, 'every update logged once, in order');
    assert.ok(
      page.logged().some((update) => update.batched),
      'some came in a batch',
    );
    assert.ok(
      page.logged().some((update) => !update.batched),
      'some came alone',
    );
    page.assertClean(false);
    assert.equal((await stats(server)).errors_by_kind.heartbeat_timeout, 0);

    // Left and opened again: connection_established and a snapshot, which it ignores; nothing old.
    assert.equal(await page.stop(), 0);
    page.assertClean(true);
    const again = await start(id);
    // Nothing must come: an old update would follow connection_established at once (a queue or
    // history batch is sent on joining), or at the latest with a window's flush.
    await sleep(BATCH * 3);
    assert.deepEqual(again.names(), [], 'no old update logged again');
    // It is live: the next update is logged, once.
    await publish(task(16));
    await waitFor(() => again.logged().length === 1, 5000, 'the new update logged');
    // Nothing more may follow it: a window's length and more.
    await sleep(BATCH * 2);
    assert.deepEqual(again.names(), ['task:16']);
    assert.deepEqual(page.names(), published.slice(0, -1), 'the left page logged nothing more');
    assert.equal(await again.stop(), 0);
    again.assertClean(true);
    await allClosed();
  });

  it('logs the offline queue once, and nothing of it again after it reconnects', async () => {
    const id = newAgentId('seed-queue');
    const queued = [task(20), status('s-21'), task(22), task(23)];
    await ingest(server, id, queued.slice(0, 2));
    await ingest(server, id, queued[2]);
    await ingest(server, id, queued[3]);
    const page = await start(id);
    await waitFor(() => page.logged().length >= queued.length, 5000, 'the queue logged');
    // Nothing more may follow it: a window's length and more.
    await sleep(BATCH * 2);
    assert.deepEqual(
      page.logged(),
      queued.map((update) => ({ name: nameOf(update), batched: true })),
    );
    assert.equal(await page.stop(), 0);
    page.assertClean(true);
    await allClosed();

    const again = await start(id);
    // As above: a queue handed over again would come on joining.
    await sleep(BATCH * 3);
    assert.deepEqual(again.names(), [], 'the queue is not logged again');
    assert.equal(await again.stop(), 0);
    again.assertClean(true);
    await allClosed();
  });

  // The documented limit (docs/protocol.md, "Delivery guarantees"): the server cannot tell a reload without
  // `?since=` from a second tab, so within QUEUE_HANDOVER_MS it hands the queue over again.
  it('reloaded within a second of the queue handover: the queue is handed over again, as documented', async () => {
    const id = newAgentId('seed-handover');
    const queued = [task(30), task(31), task(32)];
    await ingest(server, id, queued);
    const [stays, page] = await Promise.all([start(id), start(id)]);
    await waitFor(() => page.logged().length >= 3 && stays.logged().length >= 3, 5000, 'the queue logged by both');
    assert.equal(await page.stop(), 0);
    const again = await start(id);
    try {
      await waitFor(() => again.logged().length >= 3, 5000, 'the queue handed over again');
    } finally {
      await again.stop();
      await stays.stop();
      await allClosed();
    }
  });
});
