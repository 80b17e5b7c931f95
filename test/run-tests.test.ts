/**
 * scripts/run-tests.ts fails a run whose test hangs, within the file timeout, and names the
 * hanging test (with its suite) in its summary and in the TAP report.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { it } from 'node:test';
import { ROOT } from './helpers/server.ts';

it('fails a hanging test file after the file timeout, naming the test', { timeout: 120_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'run-tests-'));
  // Without it, the inner `node --test` takes itself for a test file run by this one.
  const { NODE_TEST_CONTEXT: _, ...env } = process.env;
  try {
    const tap = join(dir, 'node.tap');
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', 'scripts/run-tests.ts', 'test/fixtures/runner/hangs.ts'],
      { cwd: ROOT, env: { ...env, TEST_FILE_TIMEOUT_MS: '3000', TEST_TAP_FILE: tap } },
    );
    let output = '';
    child.stdout.on('data', (chunk) => {
      output += chunk;
    });
    child.stderr.on('data', (chunk) => {
      output += chunk;
    });
    const code = await new Promise<number | null>((done) => child.on('close', done));
    assert.equal(code, 1, output);
    assert.match(output, /tests: 1 passed, 1 failed/);
    const named = /✖ timed out: .*hangs\.ts, while running: a suite with a hanging test › never settles$/m;
    assert.match(output, named);
    assert.match(
      readFileSync(tap, 'utf8'),
      /^# timed out: .*hangs\.ts, while running: a suite with a hanging test › never settles$/m,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
