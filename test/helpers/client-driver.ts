/**
 * Runs the client (`hono-agent-ws/client`) as a child process (test/helpers/client-runner.ts)
 * that prints its events, one JSON line each: the drivers of test/client.test.ts and of the
 * client's run against Workers (test/workers.test.ts).
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { ROOT, runtimeBinary, runtimeEnv } from '../../scripts/runtimes.ts';
import type { Report } from './client-harness.ts';
import type { Driver, Run } from './client-scenarios.ts';

const RUNNER = 'test/helpers/client-runner.ts';

/** A driver that runs the client as a child process. */
export function processDriver(
  name: string,
  command: (arg: string) => [string, string[]],
  extra: Partial<Driver> = {},
): Driver {
  return {
    name,
    ...extra,
    async start(url, options) {
      const [cmd, args] = command(JSON.stringify([url, options]));
      const child: ChildProcess = spawn(cmd, args, {
        cwd: ROOT,
        env: { ...process.env, ...runtimeEnv(), NO_COLOR: '1' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const reports: Report[] = [];
      let waiters: (() => void)[] = [];
      const wake = () => {
        for (const waiter of waiters) waiter();
        waiters = [];
      };
      let buffer = '';
      let stderr = '';
      child.stdout!.setEncoding('utf8');
      child.stdout!.on('data', (chunk: string) => {
        buffer += chunk;
        let newline = buffer.indexOf('\n');
        while (newline >= 0) {
          const line = buffer.slice(0, newline);
          buffer = buffer.slice(newline + 1);
          try {
            reports.push(JSON.parse(line));
          } catch {
            stderr += `${line}\n`;
          }
          newline = buffer.indexOf('\n');
        }
        wake();
      });
      child.stderr!.on('data', (chunk) => {
        stderr += chunk;
      });
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      exited.then(wake);
      const describeRun = () =>
        `${name} client: ${reports.map((report) => JSON.stringify(report)).join('\n')}\nstderr: ${stderr}`;
      const run: Run = {
        reports,
        async waitFor(match, what, timeout = 10_000, from = 0) {
          const deadline = Date.now() + timeout;
          for (;;) {
            const found = reports.slice(from).find(match);
            if (found) return found;
            if (child.exitCode !== null) throw new Error(`${what}: the client process exited\n${describeRun()}`);
            if (Date.now() > deadline) throw new Error(`${what}: not within ${timeout} ms\n${describeRun()}`);
            await new Promise<void>((resolve) => {
              waiters.push(resolve);
              setTimeout(resolve, 100);
            });
          }
        },
        async finished(timeout = 5000) {
          await run.waitFor(
            (report) => report.event === 'state' && report.args[0] === 'closed',
            'state closed',
            timeout,
          );
          const timer = new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), timeout).unref());
          const code = await Promise.race([exited, timer]);
          assert.notEqual(code, 'timeout', `the process did not exit by itself after close()\n${describeRun()}`);
          assert.equal(code, 0, describeRun());
        },
        async dispose() {
          if (child.exitCode === null && child.signalCode === null) {
            child.kill('SIGKILL');
            await exited;
          }
        },
      };
      return run;
    },
  };
}

/** The client on Node 20 with `ws` (it can send an `Origin` and reads a refused upgrade's response). */
export const nodeClientDriver: Driver = processDriver(
  'node (ws)',
  (arg) => [process.execPath, ['--import', 'tsx', RUNNER, arg]],
  { canSetOrigin: true, readsRefusal: true },
);

/** The client on Deno, with its global WebSocket. */
export const denoClientDriver: Driver = processDriver('deno', (arg) => [
  runtimeBinary('deno'),
  ['run', '--allow-net', '--allow-env', '--allow-read', '--cached-only', RUNNER, arg],
]);

/** The client on Bun, with its global WebSocket. */
export const bunClientDriver: Driver = processDriver('bun', (arg) => [runtimeBinary('bun'), [RUNNER, arg]]);
