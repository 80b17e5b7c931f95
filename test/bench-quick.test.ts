/**
 * Runs the benchmark's quick version (`bench/run.ts --quick --no-write`) so the benchmark never
 * rots. No timing assertions: it checks that every server and scenario ran and that every
 * window delivered exactly what was published.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';

test('quick benchmark: every scenario delivers exactly what was published', { timeout: 240_000 }, () => {
  const run = spawnSync(process.execPath, ['--import', 'tsx', 'bench/run.ts', '--quick', '--no-write'], {
    encoding: 'utf8',
    timeout: 230_000,
    maxBuffer: 64 * 1024 * 1024,
  });
  assert.equal(run.status, 0, `bench exited with ${run.status}\n${run.stderr.slice(-4000)}`);
  const line = run.stdout.split('\n').find((text) => text.startsWith('BENCH_CHECKS '));
  assert.ok(line, 'bench printed no BENCH_CHECKS line');
  const checks = JSON.parse(line.slice('BENCH_CHECKS '.length)) as {
    server: string;
    scenario: string;
    expected: number;
    received: number;
  }[];
  const scenarios = new Set(checks.map((check) => check.scenario.replace(/@\d+/, '').replace(/ probe$/, '')));
  for (const scenario of ['connect', 'fixed', 'flat', 'dense', 'sparse', 'memory', 'scale broadcasts']) {
    assert.ok(scenarios.has(scenario), `no ${scenario} scenario ran`);
  }
  for (const server of ['plugin-node', 'plugin-node-batched', 'plugin-node-nohistory', 'ws', 'socketio']) {
    assert.ok(
      checks.some((check) => check.server === server),
      `server ${server} did not run`,
    );
  }
  for (const check of checks) {
    assert.ok(check.expected > 0, `${check.server} ${check.scenario}: nothing published`);
    assert.equal(check.received / check.expected, 1, `${check.server} ${check.scenario}: delivered/published`);
  }
  assert.match(run.stdout, /HTTP \(autocannon\)/, 'the HTTP scenario did not run');
  assert.match(run.stdout, /Idle connections/, 'the idle scenario did not run');
  assert.match(run.stdout, /History memory/, 'the history memory measurement did not run');
  // The scale scenario ran on raw ws and the plugin on Node (and on Bun and Deno where installed),
  // opening every connection it asked for, with every figure measured.
  for (const server of ['plugin-node', 'ws']) {
    assert.ok(
      checks.some((check) => check.server === server && check.scenario.startsWith('scale@')),
      `no scale scenario on ${server}`,
    );
  }
  const scale = run.stdout.split('\n').filter((row) => /^\| (plugin · Node|raw ws) \| \d+ of \d+ \|/.test(row));
  assert.equal(scale.length, 2, `scale table rows:\n${run.stdout}`);
  for (const row of scale) {
    const [, reached, asked] = /\| (\d+) of (\d+) \|/.exec(row) ?? [];
    assert.equal(reached, asked, `every connection asked for opened: ${row}`);
    assert.ok(!row.includes('–'), `a scale figure is missing: ${row}`);
  }
});
