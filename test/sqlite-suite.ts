/**
 * What the SQLite broker promises, against the demo server (`DB_PATH`) as a child process on
 * one runtime: acknowledged means durable across SIGKILL mid-burst (the queue to the first
 * watcher, the resume to a client that was watching, the snapshot), a client resuming across a
 * graceful restart, the file bounded under a long run, one hub per file (and the next start
 * after SIGKILL succeeds), a damaged or foreign file refused and left as it was.
 * `test/sqlite-<runtime>.test.ts` run it once per runtime, beside the conformance and resume
 * suites on the same broker.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { AgentUpdate, ServerMessage, TaskUpdate } from '../plugin/index.ts';
import { TestClient } from './helpers/client.ts';
import { newAgentId } from './helpers/ids.ts';
import { ingest, ROOT, type Runtime, type ServerHandle, startServer, task } from './helpers/server.ts';
import { waitFor } from './helpers/wait.ts';

/** The directories of this process's database files: `removeDbFiles` removes them. */
const directories: string[] = [];

/** A fresh directory for one database file, and the file's path in it. */
export const freshDbPath = (): string => {
  const dir = mkdtempSync(join(tmpdir(), 'haw-sqlite-'));
  directories.push(dir);
  return join(dir, 'agents.db');
};

/** Removes every directory `freshDbPath` made: call it from the test file's `after`. */
export const removeDbFiles = (): void => {
  for (const dir of directories.splice(0)) rmSync(dir, { recursive: true, force: true });
};

/** Updates in a frame, batches unpacked. */
const updatesIn = (frame: ServerMessage): AgentUpdate[] => {
  if (frame.type === 'status_update' || frame.type === 'task_update') return [frame];
  if (frame.type === 'batch_update') return frame.updates.map((entry) => entry.content);
  return [];
};
const updatesOf = (client: TestClient) => client.frames.flatMap(updatesIn);

/** Bytes of the database and its WAL. */
const fileBytes = (path: string) =>
  [path, `${path}-wal`].reduce((sum, file) => {
    try {
      return sum + statSync(file).size;
    } catch {
      return sum;
    }
  }, 0);

/** Runs the demo on `path` expecting it to refuse to start: its exit code and output. */
const refusedStart = (runtime: Runtime, path: string) => {
  const [command, args] = runtime.command();
  const run = spawnSync(command, args, {
    cwd: ROOT,
    env: { ...process.env, PORT: '0', HOST: '127.0.0.1', DEMO_AGENTS: '0', LOG: 'off', ...runtime.env, DB_PATH: path },
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { status: run.status, output: `${run.stdout}${run.stderr}` };
};

/**
 * POSTs to the ingest route and resolves with the status; rejects on any connection error (the
 * shared `ingest` waits forever on a reset, which a killed server gives).
 */
const post = (server: ServerHandle, agentId: string, body: unknown) =>
  new Promise<number>((resolve, reject) => {
    const req = http.request(
      `${server.http}/agents/${agentId}/updates`,
      { method: 'POST', headers: { 'content-type': 'application/json' }, agent: false },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });

/** SIGKILL, and the exit. */
const kill = async (server: ServerHandle) => {
  const exited = new Promise((done) => server.process.once('exit', done));
  server.process.kill('SIGKILL');
  await exited;
};

/** Asserts that `updates` are exactly seq 1..n of one epoch, each once, in order. */
const assertWhole = (updates: readonly AgentUpdate[], epoch: string, who: string) => {
  assert.deepEqual(
    updates.map((update) => update.seq),
    updates.map((_, index) => index + 1),
    `${who}: seq 1..${updates.length}, each once, in order`,
  );
  assert.ok(
    updates.every((update) => update.epoch === epoch),
    `${who}: one epoch`,
  );
};

export function sqliteSuite(runtime: Runtime): void {
  describe(`SQLite broker on ${runtime.name}: acknowledged means durable`, { concurrency: false }, () => {
    it('SIGKILL mid-burst: every acknowledged update reaches the first watcher (queue) and the resuming client, the snapshot shows the tasks', async () => {
      const path = freshDbPath();
      const env = {
        DB_PATH: path,
        BATCH_INTERVAL_MS: '20',
        HEARTBEAT_INTERVAL_MS: '60000',
        MAX_QUEUE_SIZE: '100000',
        MAX_QUEUE_BYTES: '100000000',
      };
      let server = await startServer(runtime, env);
      const queued = newAgentId('unwatched');
      const watched = newAgentId('watched');
      const clients: TestClient[] = [];
      try {
        const watcher = await TestClient.connect(`${server.ws}/agents/${watched}/ws`);
        clients.push(watcher);
        const { epoch } = await watcher.next('connection_established');

        // Eight publishers post batches of five until the server dies; a 202 is an acknowledgement.
        const acked = new Map<string, Set<string>>([
          [queued, new Set()],
          [watched, new Set()],
        ]);
        let next = 0;
        let killed = false;
        const publisher = async (lane: number) => {
          while (!killed) {
            const agentId = lane % 2 === 0 ? queued : watched;
            const batch = Array.from({ length: 5 }, () => {
              const n = ++next;
              return task(n, { status: n % 4 === 0 ? 'completed' : 'running' });
            });
            try {
              const status = await post(server, agentId, batch);
              if (status === 202) for (const update of batch) acked.get(agentId)?.add(update.task_id);
            } catch {
              // The server died under it: not acknowledged, so it may or may not be stored.
            }
          }
        };
        const publishers = Array.from({ length: 8 }, (_, lane) => publisher(lane));
        await waitFor(() => [...acked.values()].every((ids) => ids.size >= 100), 30_000, '100 acknowledged per agent');
        await kill(server);
        killed = true;
        await Promise.all(publishers);
        await watcher.closed;
        const seen = updatesOf(watcher);

        server = await startServer(runtime, env);
        // The unwatched agent: its first watcher gets the whole queue.
        const first = await TestClient.connect(`${server.ws}/agents/${queued}/ws`);
        clients.push(first);
        const firstHello = await first.next('connection_established');
        const queueBatch = await first.next('batch_update', 10_000);
        assert.equal(queueBatch.source, 'queue');
        const fromQueue = queueBatch.updates.map((entry) => entry.content);
        assertWhole(fromQueue, firstHello.epoch, 'queue');
        assert.equal(firstHello.seq, fromQueue.length);
        const queuedIds = new Set(fromQueue.map((update) => (update as TaskUpdate).task_id));
        const lostQueued = [...(acked.get(queued) as Set<string>)].filter((id) => !queuedIds.has(id));
        assert.deepEqual(lostQueued, [], 'every acknowledged update in the queue');

        // The watched agent: its client resumes from the last seq it had.
        const since = seen.at(-1)?.seq ?? 0;
        const back = await TestClient.connect(`${server.ws}/agents/${watched}/ws?since=${since}&epoch=${epoch}`);
        clients.push(back);
        const hello = await back.next('connection_established');
        assert.equal(hello.recovered, true, 'recovered across the SIGKILL');
        assert.equal(hello.epoch, epoch, 'same epoch');
        const snapshot = await back.next('snapshot');
        let resumed: AgentUpdate[] = [];
        if (hello.seq > since) {
          const batch = await back.next('batch_update', 10_000);
          assert.equal(batch.source, 'resume');
          resumed = batch.updates.map((entry) => entry.content);
        }
        const all = [...seen, ...resumed];
        assertWhole(all, epoch, 'seen before the kill, then resumed');
        assert.equal(all.length, hello.seq);
        const got = new Set(all.map((update) => (update as TaskUpdate).task_id));
        const lost = [...(acked.get(watched) as Set<string>)].filter((id) => !got.has(id));
        assert.deepEqual(lost, [], 'every acknowledged update seen or resumed');

        // The snapshot: the latest update of every task still open, as published.
        const latest = new Map<string, TaskUpdate>();
        for (const update of all) latest.set((update as TaskUpdate).task_id, update as TaskUpdate);
        const open = [...latest.values()].filter((update) => update.status === 'running');
        const shown = new Map(snapshot.tasks.map((update) => [update.task_id, update]));
        for (const update of open)
          assert.deepEqual(shown.get(update.task_id), update, `snapshot has ${update.task_id}`);
        for (const update of snapshot.tasks) assert.deepEqual(update, latest.get(update.task_id));

        // And the numbering goes on.
        assert.equal((await ingest(server, watched, [task(1_000_000)])).status, 202);
        const live = updatesIn(await back.next(undefined, 5000));
        assert.deepEqual(
          live.map((update) => [update.seq, update.epoch]),
          [[hello.seq + 1, epoch]],
        );
        for (const client of clients) assert.deepEqual(client.problems, [], 'every frame matched the contract');
        console.log(
          `# ${runtime.name}: acknowledged before SIGKILL ${acked.get(queued)?.size} + ${acked.get(watched)?.size}; stored ${fromQueue.length} + ${all.length}`,
        );
      } finally {
        for (const client of clients) client.socket.terminate();
        await server.stop();
      }
    });

    it('a queue handed to its first watcher, then SIGKILL: after the restart it is not handed over again, and a resuming client still recovers it from history', async () => {
      // A long commit window: what the handover does not commit itself waits a second, so a
      // broker that left the queue's removal to the next commit would still hold it when killed.
      const env = { DB_PATH: freshDbPath(), DB_COMMIT_INTERVAL_MS: '1000', BATCH_INTERVAL_MS: '20' };
      let server = await startServer(runtime, env);
      const id = newAgentId('handover');
      const clients: TestClient[] = [];
      try {
        assert.equal(await post(server, id, [task(1), task(2), task(3)]), 202);
        const first = await TestClient.connect(`${server.ws}/agents/${id}/ws`);
        clients.push(first);
        const hello = await first.next('connection_established');
        const queue = await first.next('batch_update');
        assert.equal(queue.source, 'queue');
        assert.deepEqual(
          queue.updates.map((entry) => entry.content.seq),
          [1, 2, 3],
        );
        await kill(server);
        await first.closed;

        server = await startServer(runtime, env);
        const next = await TestClient.connect(`${server.ws}/agents/${id}/ws`);
        clients.push(next);
        const again = await next.next('connection_established');
        assert.equal(again.epoch, hello.epoch, 'same epoch');
        assert.equal(again.seq, 3);
        await next.next('snapshot');
        await next.expectSilence(500);
        assert.deepEqual(
          next.frames.filter((frame) => frame.type === 'batch_update'),
          [],
          'the queue was handed over once, before the kill',
        );

        const resuming = await TestClient.connect(`${server.ws}/agents/${id}/ws?since=0&epoch=${hello.epoch}`);
        clients.push(resuming);
        const back = await resuming.next('connection_established');
        assert.equal(back.recovered, true);
        const resumed = await resuming.next('batch_update');
        assert.equal(resumed.source, 'resume');
        assert.deepEqual(
          resumed.updates.map((entry) => entry.content.seq),
          [1, 2, 3],
        );
        for (const client of clients) assert.deepEqual(client.problems, []);
      } finally {
        for (const client of clients) client.socket.terminate();
        await server.stop();
      }
    });

    it('a client resumes across a graceful restart: recovered, same epoch, seq going on, the snapshot kept', async () => {
      const path = freshDbPath();
      const env = { DB_PATH: path, BATCH_INTERVAL_MS: '20' };
      let server = await startServer(runtime, env);
      const id = newAgentId('restart');
      const clients: TestClient[] = [];
      try {
        const before = await TestClient.connect(`${server.ws}/agents/${id}/ws`);
        clients.push(before);
        const old = await before.next('connection_established');
        await ingest(server, id, [task(1), task(2, { status: 'completed' }), task(3), task(4)]);
        await waitFor(() => updatesOf(before).at(-1)?.seq === 4, 5000, 'seq 4');
        assert.equal(await server.stop(), 0);
        await before.closed;

        server = await startServer(runtime, env);
        await ingest(server, id, [task(3, { progress: 33 }), task(5)]);
        const back = await TestClient.connect(`${server.ws}/agents/${id}/ws?since=4&epoch=${old.epoch}`);
        clients.push(back);
        const hello = await back.next('connection_established');
        assert.equal(hello.recovered, true);
        assert.equal(hello.epoch, old.epoch);
        assert.equal(hello.seq, 6);
        const snapshot = await back.next('snapshot');
        assert.deepEqual(
          snapshot.tasks.map((update) => [update.task_id, update.status, update.seq]),
          [
            ['task-1', 'running', 1],
            ['task-2', 'completed', 2],
            ['task-4', 'running', 4],
            ['task-3', 'running', 5],
            ['task-5', 'running', 6],
          ],
        );
        const resumed = await back.next('batch_update');
        assert.equal(resumed.source, 'resume');
        assert.deepEqual(
          resumed.updates.map((entry) => entry.content.seq),
          [5, 6],
        );
        for (const client of clients) assert.deepEqual(client.problems, []);
      } finally {
        for (const client of clients) client.socket.terminate();
        await server.stop();
      }
    });

    it('the file stays bounded under a long run: four times the updates, about the same size', async () => {
      const path = freshDbPath();
      const server = await startServer(runtime, {
        DB_PATH: path,
        HISTORY_SIZE: '50',
        MAX_HISTORY_BYTES: '20000',
        MAX_TOTAL_HISTORY_BYTES: '500000',
        MAX_QUEUE_SIZE: '50',
        MAX_TOTAL_QUEUE_BYTES: '500000',
      });
      try {
        const agents = Array.from({ length: 50 }, () => newAgentId('bounded'));
        let n = 0;
        const round = async () => {
          for (let step = 0; step < 20; step++) {
            await Promise.all(
              agents.map(async (agentId) => {
                const batch = Array.from({ length: 10 }, () => {
                  n++;
                  // Tasks end, so the snapshot keeps at most its 20 most recent per agent.
                  return task(n, { status: 'completed', message: 'x'.repeat(100) });
                });
                assert.equal((await ingest(server, agentId, batch)).status, 202);
              }),
            );
          }
        };
        await round();
        const afterOne = fileBytes(path);
        for (let more = 0; more < 3; more++) await round();
        const afterFour = fileBytes(path);
        console.log(
          `# ${runtime.name}: ${n} updates; file ${afterOne} bytes after a quarter, ${afterFour} after all (WAL ${fileBytes(`${path}-wal`)})`,
        );
        assert.ok(afterFour <= afterOne * 1.25 + 1_000_000, `bounded: ${afterOne} then ${afterFour} bytes`);
        // History, queues and state: about 1.5 MB of JSON at most; the file holds it with overhead.
        assert.ok(afterFour < 12_000_000, `${afterFour} bytes`);
      } finally {
        await server.stop();
      }
    });

    it('a second hub on the same file is refused; after SIGKILL the next start succeeds and keeps everything', async () => {
      const path = freshDbPath();
      const first = await startServer(runtime, { DB_PATH: path });
      const id = newAgentId('locked');
      let again: ServerHandle | undefined;
      try {
        assert.equal((await ingest(first, id, [task(1), task(2)])).status, 202);
        const second = refusedStart(runtime, path);
        assert.equal(second.status, 1, second.output);
        assert.match(second.output, /is in use by another hub/);
        assert.doesNotMatch(second.output, /listening on/);
        await kill(first);
        again = await startServer(runtime, { DB_PATH: path });
        const client = await TestClient.connect(`${again.ws}/agents/${id}/ws`);
        const hello = await client.next('connection_established');
        assert.equal(hello.seq, 2);
        const queue = await client.next('batch_update');
        assert.deepEqual(
          queue.updates.map((entry) => entry.content.seq),
          [1, 2],
        );
        client.socket.terminate();
      } finally {
        await first.stop();
        await again?.stop();
      }
    });

    it('a damaged file, or one that is not a store, is reported at start and left as it was', async () => {
      // Not SQLite at all.
      const garbage = freshDbPath();
      writeFileSync(garbage, 'this is not a database\n'.repeat(500));
      const before = readFileSync(garbage);
      const notSqlite = refusedStart(runtime, garbage);
      assert.equal(notSqlite.status, 1, notSqlite.output);
      assert.match(notSqlite.output, /not a readable SQLite file/);
      assert.deepEqual(readFileSync(garbage), before, 'left as it was');

      // A real store with pages overwritten in the middle.
      const damaged = freshDbPath();
      const server = await startServer(runtime, { DB_PATH: damaged });
      const id = newAgentId('damaged');
      for (let n = 0; n < 20; n++) {
        await ingest(
          server,
          id,
          Array.from({ length: 20 }, (_, index) => task(n * 20 + index, { message: 'y'.repeat(200) })),
        );
      }
      assert.equal(await server.stop(), 0);
      const bytes = readFileSync(damaged);
      assert.ok(bytes.length > 5 * 4096, `a store of ${bytes.length} bytes`);
      bytes.fill(0xab, 2 * 4096, 4 * 4096);
      writeFileSync(damaged, bytes);
      const broken = refusedStart(runtime, damaged);
      assert.equal(broken.status, 1, broken.output);
      assert.match(broken.output, /damaged|not a readable SQLite file/);
      assert.deepEqual(readFileSync(damaged), bytes, 'left as it was');

      // A store of an older layout: `PRAGMA user_version` (bytes 60-63 of the header) set back to 1.
      const older = freshDbPath();
      const writer = await startServer(runtime, { DB_PATH: older });
      assert.equal((await ingest(writer, id, [task(1)])).status, 202);
      assert.equal(await writer.stop(), 0);
      const store = readFileSync(older);
      assert.equal(store.readUInt32BE(60), 2, 'this version writes layout 2');
      store.writeUInt32BE(1, 60);
      writeFileSync(older, store);
      const old = refusedStart(runtime, older);
      assert.equal(old.status, 1, old.output);
      assert.match(old.output, /has layout 1, this version reads layout 2 only; it was left as is/);
      assert.deepEqual(readFileSync(older), store, 'left as it was');
    });
  });
}
