/**
 * The conformance suite against the demo app on `@hono/node-ws` (test/fixtures/node-ws/): the
 * hub's routes mounted with `createNodeWebSocket`'s `upgradeWebSocket` on `@hono/node-server`
 * v1, no adapter of ours. The fixture has its own package-lock.json (those versions differ from
 * the project's); it is installed with `npm ci` before the first server starts, and type-checked.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { conformance } from './conformance.ts';
import { ROOT, type Runtime } from './helpers/server.ts';

const FIXTURE = join(ROOT, 'test', 'fixtures', 'node-ws');
let installed = false;

/** `npm ci` in the fixture, once per process. */
function install(): void {
  if (installed) return;
  const run = spawnSync('npm', ['ci', '--no-audit', '--no-fund'], { cwd: FIXTURE, encoding: 'utf8' });
  if (run.status !== 0) throw new Error(`npm ci in test/fixtures/node-ws failed:\n${run.stdout}${run.stderr}`);
  installed = true;
}

const nodeWs: Runtime = {
  name: 'node + @hono/node-ws',
  command: () => [process.execPath, ['--import', 'tsx', 'test/fixtures/node-ws/server.ts']],
  prepare: install,
};

test('the @hono/node-ws fixture type-checks against its own dependencies', () => {
  install();
  const tsc = spawnSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', FIXTURE], {
    cwd: ROOT,
    encoding: 'utf8',
  });
  assert.equal(tsc.status, 0, tsc.stdout + tsc.stderr);
});

conformance(nodeWs, {
  refusalHeaderSkip:
    '@hono/node-ws writes the refusal of an upgrade itself, as a bare status line without the headers of the response',
});
