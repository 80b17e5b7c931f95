/**
 * What every runtime's client must do against the real demo server, written once: the Node,
 * Deno and Bun runs (test/client.test.ts) and the Chromium run (test/client-browser.test.ts)
 * each give a `Driver` that starts one client and reports its events (test/helpers/client-harness.ts).
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import type { ConnectOptions } from '../../client/index.ts';
import { CLOSE_TASK, type Report } from './client-harness.ts';
import { startFront } from './front.ts';
import { newAgentId } from './ids.ts';
import { ingest, node, type Runtime, request, type ServerHandle, startServer, statsWith, task } from './server.ts';
import { sleep, waitFor } from './wait.ts';

/** One client being run. */
export interface Run {
  readonly reports: Report[];
  /** Resolves with the first report (from `from` on) that `match`es. */
  waitFor(match: (report: Report) => boolean, what: string, timeout?: number, from?: number): Promise<Report>;
  /** Resolves once the client is closed and nothing it started is left (the process exited by itself, no timer pending). */
  finished(timeout?: number): Promise<void>;
  /** Ends the run whatever its state (cleanup). */
  dispose(): Promise<void>;
}

/** Starts clients on one runtime. */
export interface Driver {
  readonly name: string;
  start(url: string, options: ConnectOptions & { origin?: string; closeOn?: string }): Promise<Run>;
  /** The Node runner only: `ws` can send an `Origin` header. */
  readonly canSetOrigin?: boolean;
  /** No status in the error of a refused handshake: the client has to probe with fetch. */
  readonly probes?: boolean;
  /** The WebSocket hands over a refused upgrade's response (`ws`): no probe for its error code. */
  readonly readsRefusal?: boolean;
}

const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

type UpdateView = { type: string; seq: number; epoch: string; task_id?: string };
/** The updates a run reported, without the closing sentinel. */
const updatesOf = (run: Run) =>
  run.reports
    .filter((report) => report.event === 'update')
    .map((report) => ({ ...(report.args[0] as UpdateView), source: (report.args[1] as { source: string }).source }))
    .filter((update) => update.task_id !== CLOSE_TASK);
const isUpdate = (seq: number, epoch?: string) => (report: Report) =>
  report.event === 'update' &&
  (report.args[0] as UpdateView).seq === seq &&
  (epoch === undefined || (report.args[0] as UpdateView).epoch === epoch);
/** Publishes the sentinel and waits until the client closed and left nothing running. */
async function closeThroughServer(server: ServerHandle, agentId: string, run: Run): Promise<void> {
  await ingest(server, agentId, task(0, { task_id: CLOSE_TASK }));
  await run.waitFor((report) => report.event === 'closed_by_harness', 'the harness closing the client');
  await run.finished();
  const end = run.reports.find((report) => report.event === 'iterator_end');
  assert.ok(end, 'updates() ended after close()');
}

/** The server the client runs against: the Node demo unless given. */
export interface ServerUnderTest {
  readonly runtime: Runtime;
  /**
   * Skip reason for the scenarios that signal the server's process (SIGKILL and a restart on the
   * same port, SIGSTOP for a silent server), if signals do not reach what serves the sockets.
   */
  readonly signalsSkip?: string;
}

/** Registers the scenarios as tests (inside the caller's describe). */
export function clientScenarios(driver: Driver, { runtime, signalsSkip }: ServerUnderTest = { runtime: node }): void {
  it('delivers every update once, in order, batches unpacked with their source, after the snapshot', async () => {
    const server = await startServer(runtime, { BATCH_INTERVAL_MS: '300', HEARTBEAT_INTERVAL_MS: '1000' });
    let run: Run | undefined;
    try {
      const id = newAgentId('client-batches');
      assert.equal((await ingest(server, id, [task(1), task(2), task(3)])).status, 202);
      // With validation: every frame checked against the server's valibot schemas (a lazy chunk).
      run = await driver.start(`${server.ws}/agents/${id}/ws`, { validate: true });
      await run.waitFor(isUpdate(3), 'the offline queue');
      assert.equal(
        (
          await ingest(
            server,
            id,
            range(4, 8).map((n) => task(n)),
          )
        ).status,
        202,
      );
      await run.waitFor(isUpdate(8), 'the batch');
      const updates = updatesOf(run);
      assert.deepEqual(
        updates.map((update) => update.seq),
        range(1, 8),
      );
      assert.deepEqual(
        updates.map((update) => update.source),
        ['queue', 'queue', 'queue', 'live', 'window', 'window', 'window', 'window'],
      );
      assert.deepEqual(
        updates.map((update) => update.task_id),
        range(1, 8).map((n) => `task-${n}`),
      );
      const kinds = run.reports.map((report) => report.event);
      assert.ok(!kinds.includes('invalid_frame'), 'every frame passed validation');
      assert.ok(kinds.indexOf('snapshot') < kinds.indexOf('update'), 'the snapshot comes first');
      assert.deepEqual(
        run.reports.filter((report) => report.event === 'state').map((report) => report.args[0]),
        ['connecting', 'open'],
      );
      await closeThroughServer(server, id, run);
      const typed = run.reports.find((report) => report.event === 'closed_by_harness')!.args[0];
      assert.equal(typed, 9, 'status_update/task_update events: the 8 and the sentinel');
      assert.deepEqual(run.reports.find((report) => report.event === 'iterator_end')!.args[0], range(1, 9));
      assert.deepEqual(
        run.reports.filter((report) => report.event === 'state').map((report) => report.args[0]),
        ['connecting', 'open', 'closed'],
      );
    } finally {
      await run?.dispose();
      await server.stop();
    }
  });

  it('comes back by itself when the server is killed and restarted on the same port', {
    skip: signalsSkip,
  }, async () => {
    const env = { HEARTBEAT_INTERVAL_MS: '1000', BATCH_INTERVAL_MS: '0' };
    const first = await startServer(runtime, env);
    let second: ServerHandle | undefined;
    let run: Run | undefined;
    try {
      const id = newAgentId('client-restart');
      run = await driver.start(`${first.ws}/agents/${id}/ws`, { reconnect: { initialDelayMs: 100, maxDelayMs: 400 } });
      const hello = (await run.waitFor((report) => report.event === 'open', 'open')).args[0] as { epoch: string };
      await ingest(first, id, task(1));
      await run.waitFor(isUpdate(1), 'update 1');
      first.process.kill('SIGKILL');
      await first.stop();
      await run.waitFor(
        (report) => report.event === 'close' && (report.args[0] as { willReconnect: boolean }).willReconnect,
        'a close that will reconnect',
      );
      // A few attempts against nothing: two more closes after the one above, each a failed attempt.
      await run.waitFor(
        () => run!.reports.filter((report) => report.event === 'close').length >= 3,
        'two failed attempts against nothing',
      );
      second = await startServer(runtime, { ...env, PORT: String(first.port) });
      const again = (await run.waitFor((report) => report.event === 'open', 'open again', 15_000, run.reports.length))
        .args[0] as { epoch: string; recovered: boolean; reconnects: number };
      assert.notEqual(again.epoch, hello.epoch, 'a restarted in-memory server starts a new epoch');
      assert.equal(again.recovered, false);
      assert.equal(again.reconnects, 1);
      await ingest(second, id, task(2));
      await run.waitFor(isUpdate(1, again.epoch), 'update 1 of the new epoch');
      assert.ok(
        run.reports.some((report) => report.event === 'state' && report.args[0] === 'reconnecting'),
        'reported reconnecting',
      );
      await closeThroughServer(second, id, run);
    } finally {
      await run?.dispose();
      await first.stop();
      await second?.stop();
    }
  });

  it('gives up on a silent connection after 2 × heartbeat_interval and resumes', { skip: signalsSkip }, async () => {
    const server = await startServer(runtime, { HEARTBEAT_INTERVAL_MS: '300', BATCH_INTERVAL_MS: '0' });
    let run: Run | undefined;
    try {
      const id = newAgentId('client-silent');
      run = await driver.start(`${server.ws}/agents/${id}/ws`, {
        connectTimeoutMs: 1000,
        reconnect: { initialDelayMs: 100, maxDelayMs: 200 },
      });
      await run.waitFor((report) => report.event === 'open', 'open');
      await ingest(server, id, task(1));
      await run.waitFor(isUpdate(1), 'update 1');
      await sleep(700); // pings answered: still the same connection
      assert.equal(run.reports.filter((report) => report.event === 'close').length, 0, 'pongs kept it open');
      server.process.kill('SIGSTOP');
      const started = Date.now();
      const close = await run.waitFor((report) => report.event === 'close', 'the liveness timeout', 5000);
      const waited = Date.now() - started;
      server.process.kill('SIGCONT');
      assert.equal((close.args[0] as { code: number }).code, 4000);
      assert.ok(waited < 1500, `gave up after ${waited} ms`);
      const again = await run.waitFor(
        (report) => report.event === 'open' && (report.args[0] as { recovered: boolean }).recovered,
        'a recovered resume',
        10_000,
      );
      assert.equal((again.args[0] as { reconnects: number }).reconnects, 1);
      await ingest(server, id, task(2));
      await run.waitFor(isUpdate(2), 'update 2');
      assert.deepEqual(
        updatesOf(run).map((update) => update.seq),
        [1, 2],
      );
      await closeThroughServer(server, id, run);
    } finally {
      server.process.kill('SIGCONT');
      await run?.dispose();
      await server.stop();
    }
  });

  it('a forced drop while updates are published: no gap and no repeat in seq', async () => {
    const server = await startServer(runtime, { HEARTBEAT_INTERVAL_MS: '1000', BATCH_INTERVAL_MS: '50' });
    const front = await startFront(() => server.port);
    let run: Run | undefined;
    let publishing = true;
    let published = 0;
    const id = newAgentId('client-drop');
    const publisher = (async () => {
      while (publishing) {
        const n = published + 1;
        assert.equal((await ingest(server, id, task(n))).status, 202);
        published = n;
        await sleep(10);
      }
    })();
    try {
      run = await driver.start(`${front.ws}/agents/${id}/ws`, { reconnect: { initialDelayMs: 200, maxDelayMs: 400 } });
      await run.waitFor((report) => report.event === 'open', 'open');
      const live = run;
      const closes = () => live.reports.filter((report) => report.event === 'close').length;
      await run.waitFor(() => updatesOf(live).length >= 5, 'five updates before the drop');
      front.refuse(true);
      front.cut();
      await run.waitFor((report) => report.event === 'close', 'the drop');
      const atDrop = published;
      // Kept out until an attempt was refused and updates were published meanwhile.
      await waitFor(
        () => closes() >= 2 && published >= atDrop + 5,
        10_000,
        'a refused attempt and five updates published during the drop',
      );
      front.refuse(false);
      const reopened = await run.waitFor(
        (report) => report.event === 'open' && (report.args[0] as { recovered: boolean }).recovered,
        'a recovered resume',
        10_000,
      );
      const afterResume = run.reports.indexOf(reopened);
      await run.waitFor(
        () =>
          live.reports
            .slice(afterResume)
            .filter((report) => report.event === 'update' && (report.args[1] as { source: string }).source !== 'resume')
            .length >= 5,
        'five live updates after the resume',
      );
      publishing = false;
      await publisher;
      await run.waitFor(isUpdate(published), `the last update (${published})`);
      const seqs = updatesOf(run).map((update) => update.seq);
      assert.deepEqual(seqs, range(1, published), 'every seq once, in order');
      const resumed = updatesOf(run).filter((update) => update.source === 'resume');
      assert.ok(resumed.length > 0, 'the updates published during the drop came in the resume batch');
      await closeThroughServer(server, id, run);
    } finally {
      publishing = false;
      await publisher.catch(() => {});
      await run?.dispose();
      await front.close();
      await server.stop();
    }
  });

  it('stops at once on a handshake refused with 401, without retrying', async (t) => {
    const server = await startServer(runtime, { AUTH_TOKEN: 'secret' });
    let run: Run | undefined;
    try {
      const id = newAgentId('client-refused');
      if (driver.probes) {
        const plain = await request(`${server.http}/agents/${id}/ws?token=wrong`);
        if (plain.status === 426) {
          t.skip(
            'the hub answers a plain GET 426 before it runs authorize (plugin/routes.ts), so a browser cannot learn the 401',
          );
          return;
        }
      }
      const unauthorized = async () =>
        (await statsWith(server, { authorization: 'Bearer secret' })).errors_by_kind.unauthorized ?? 0;
      const before = await unauthorized();
      run = await driver.start(`${server.ws}/agents/${id}/ws`, {
        token: 'wrong',
        reconnect: { initialDelayMs: 20, maxDelayMs: 50 },
      });
      const fatal = await run.waitFor((report) => report.event === 'fatal', 'fatal');
      assert.deepEqual(
        { kind: 'handshake_refused', status: 401 },
        { kind: (fatal.args[0] as any).kind, status: (fatal.args[0] as any).status },
      );
      // `ws` hands over the response; everywhere else the probe reads X-Agent-WS-Error.
      assert.equal((fatal.args[0] as { code?: string }).code, 'unauthorized');
      await run.finished();
      // Nothing may follow: a client that retried would do so within 50 ms (maxDelayMs), so a
      // window of four retry delays is enough to see it.
      await sleep(200);
      // One refused attempt; one probe besides where the WebSocket hides the response.
      assert.equal((await unauthorized()) - before, driver.readsRefusal ? 1 : 2);
      const stats = await statsWith(server, { authorization: 'Bearer secret' });
      assert.equal(stats.total_connections, 0);
      assert.ok(run.reports.some((report) => report.event === 'iterator_end'));
    } finally {
      await run?.dispose();
      await server.stop();
    }
  });

  if (driver.canSetOrigin) {
    it('stops at once on a handshake refused with 403 (a foreign browser origin)', async () => {
      const server = await startServer(runtime);
      let run: Run | undefined;
      try {
        run = await driver.start(`${server.ws}/agents/${newAgentId('client-origin')}/ws`, {
          origin: 'https://evil.example',
          reconnect: { initialDelayMs: 20, maxDelayMs: 50 },
        });
        const fatal = await run.waitFor((report) => report.event === 'fatal', 'fatal');
        assert.equal((fatal.args[0] as { status: number }).status, 403);
        assert.equal((fatal.args[0] as { code?: string }).code, 'origin_forbidden');
        await run.finished();
        const stats = await statsWith(server, {});
        assert.equal(stats.errors_by_kind.origin_forbidden, 1);
      } finally {
        await run?.dispose();
        await server.stop();
      }
    });
  }

  it('close() while waiting to reconnect leaves nothing running', async () => {
    // Nothing listens there: every attempt fails, the client waits up to 10 s between them.
    const front = await startFront(() => 1);
    const port = front.port;
    await front.close();
    const run = await driver.start(`ws://127.0.0.1:${port}/agents/${newAgentId('client-nowhere')}/ws`, {
      reconnect: { initialDelayMs: 10_000, maxDelayMs: 10_000 },
      closeOn: 'reconnecting',
    });
    try {
      const started = Date.now();
      await run.finished(5000);
      assert.ok(Date.now() - started < 5000);
      const states = run.reports.filter((report) => report.event === 'state').map((report) => report.args[0]);
      assert.deepEqual(states, ['connecting', 'reconnecting', 'closed']);
    } finally {
      await run.dispose();
    }
  });

  it('gives up after maxRetries failed attempts', async () => {
    const front = await startFront(() => 1);
    const port = front.port;
    await front.close();
    const run = await driver.start(`ws://127.0.0.1:${port}/agents/${newAgentId('client-retries')}/ws`, {
      reconnect: { initialDelayMs: 20, maxDelayMs: 40, maxRetries: 3 },
    });
    try {
      const fatal = await run.waitFor((report) => report.event === 'fatal', 'fatal');
      assert.deepEqual(fatal.args[0], { kind: 'retries_exhausted' });
      await run.finished();
      const closes = run.reports.filter((report) => report.event === 'close');
      assert.equal(closes.length, 3, 'three failed attempts');
    } finally {
      await run.dispose();
    }
  });
}
