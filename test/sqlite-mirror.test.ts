/**
 * The SQLite broker behaves as the in-memory broker, on every runtime with SQLite (Node 22 and
 * 24, Deno, Bun): `test/fixtures/sqlite-mirror.ts` runs one scripted sequence of publishes,
 * connects, resumes and listings, under small limits, through a hub on each broker, and the SQLite
 * hub is closed and started again on its file halfway while the memory hub goes on. Every frame,
 * listing and counter must be the same (epochs by order of appearance; timestamps and connection
 * ids left out), and the script must have run into the bounds it is meant to exercise.
 *
 * Also on each of them, `test/fixtures/sqlite-takes.ts`: the queue handovers of many agents
 * joined in one turn (a reconnect storm) share one commit, and a failed commit refuses them and
 * keeps their queues.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { describe, it } from 'node:test';
import { major, NODE_VERSIONS, nodeBinary } from '../scripts/node-versions.ts';
import { ROOT, runtimeBinary, runtimeEnv } from '../scripts/runtimes.ts';

/** Runs the fixture; resolves with what it printed on stdout, rejects with its output on failure. */
const run = (command: string, args: string[], env: Record<string, string> = {}) =>
  new Promise<string>((resolve, reject) => {
    const child = spawn(command, args, {
      cwd: ROOT,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => {
      stdout += chunk;
    });
    child.stderr.on('data', (chunk) => {
      stderr += chunk;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(stdout);
      else reject(new Error(`${command} ${args.join(' ')} exited ${code}:\n${stdout}\n${stderr}`));
    });
  });

type Entry = [string, any];

/** Each runtime with SQLite, as a function running a fixture there and resolving with its last line. */
const runtimes: [string, (fixture: string) => Promise<string>][] = [
  ...NODE_VERSIONS.filter((version) => major(version) >= 22).map(
    (version): [string, (fixture: string) => Promise<string>] => [
      `node ${version}`,
      (fixture) => run(nodeBinary(version), ['--no-warnings', '--import', 'tsx', fixture]),
    ],
  ),
  ['deno', (fixture) => run(runtimeBinary('deno'), ['run', '--allow-all', '--cached-only', fixture], runtimeEnv())],
  ['bun', (fixture) => run(runtimeBinary('bun'), [fixture], runtimeEnv())],
];
const lastLine = (output: string) => output.trim().split('\n').at(-1) as string;

describe('the SQLite broker answers as the in-memory broker, before and after a restart', () => {
  for (const [name, start] of runtimes) {
    it(`${name}: the same frames, listings and counters`, async () => {
      const { memory, sqlite } = JSON.parse(lastLine(await start('test/fixtures/sqlite-mirror.ts'))) as {
        memory: Entry[];
        sqlite: Entry[];
      };
      assert.deepEqual(
        sqlite.map(([label]) => label),
        memory.map(([label]) => label),
      );
      for (const [index, [label, value]] of memory.entries()) {
        assert.deepEqual((sqlite[index] as Entry)[1], value, `${label} (step ${index})`);
      }

      // The script ran into what it is meant to exercise (else the comparison proves little).
      const figures = memory.filter(([label]) => label === 'figures').at(-1)?.[1];
      for (const kind of ['queue', 'history', 'state']) assert.ok(figures.evictions[kind] > 0, `${kind} evictions`);
      assert.ok(figures.dropped > 0, 'queued updates dropped over the limits');
      const frames = (label: string) => memory.find(([seen]) => seen === `frames ${label}`)?.[1] as any[];
      assert.ok(
        frames('fresh2').some((frame) => frame.type === 'batch_update' && frame.source === 'queue'),
        'a queue read back from the file after the restart',
      );
      assert.equal(frames('again3')[0].recovered, true, 'a resume across the restart');
      assert.ok(
        frames('r3').some((frame) => frame.type === 'batch_update' && frame.source === 'resume'),
        'a resume batch',
      );
    });
  }
});

describe('the SQLite broker hands over the queues of many agents joined at once in one commit', () => {
  for (const [name, start] of runtimes) {
    it(`${name}: one commit for 50 takes, a failed one refuses them and keeps the queues, a restart hands none again`, async () => {
      const seen = JSON.parse(lastLine(await start('test/fixtures/sqlite-takes.ts')));
      assert.deepEqual(seen.storm, Array(50).fill(2), 'every agent gets its queue');
      // The 50 takes share a commit; the ord bookkeeping of the subscribes may add one more.
      assert.ok(seen.stormCommits >= 1 && seen.stormCommits <= 2, `${seen.stormCommits} commits for 50 takes`);
      assert.deepEqual(seen.failed, Array(5).fill('refused'), 'a failed commit refuses the takes');
      assert.deepEqual(seen.retried, [2], 'the queue is back after the failed commit');
      assert.deepEqual(
        seen.afterRestart,
        [...Array(51).fill(0), ...Array(4).fill(2)],
        'handed-over queues are gone after a restart; the refused ones are kept',
      );
    });
  }
});
