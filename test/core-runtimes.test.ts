/**
 * The core's own unit tests (plugin/*.test.ts: a hub on the fake runtime, the memory broker)
 * run under `deno test` and `bun test` too, proving plugin/ imports and works unchanged there.
 * A runner that finds no test still exits 0, so the pass counts are asserted, not just the code.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { describe, it } from 'node:test';
import { ROOT, type RuntimeName, runtimeBinary, runtimeEnv } from '../scripts/runtimes.ts';

const files = readdirSync(new URL('../plugin/', import.meta.url))
  .filter((file) => file.endsWith('.test.ts'))
  .sort()
  .map((file) => `./plugin/${file}`);

/** Runs a runtime's test runner; resolves with its exit code and uncoloured output. */
function run(name: RuntimeName, args: string[]): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(runtimeBinary(name), args, {
      cwd: ROOT,
      env: { ...process.env, ...runtimeEnv(), NO_COLOR: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (chunk) => {
      output += chunk;
    });
    child.stderr.on('data', (chunk) => {
      output += chunk;
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, output }));
  });
}

const runners: Record<RuntimeName, { args: string[]; counts: (output: string) => [number, number] }> = {
  // "ok | 6 passed (16 steps) | 0 failed": node:test's describe maps to a Deno test, its `it`s
  // to steps, so the steps are the count comparable with Node's and Bun's.
  deno: {
    args: ['test', '--allow-all', '--cached-only', ...files],
    counts(output) {
      const match = /(\d+) passed(?: \((\d+) steps?\))? \| (\d+) failed/.exec(output);
      return match ? [Number(match[2] ?? match[1]), Number(match[3])] : [0, -1];
    },
  },
  // " 16 pass" / " 0 fail"
  bun: {
    args: ['test', ...files],
    counts(output) {
      const pass = /^\s*(\d+) pass$/m.exec(output);
      const fail = /^\s*(\d+) fail$/m.exec(output);
      return pass && fail ? [Number(pass[1]), Number(fail[1])] : [0, -1];
    },
  },
};

describe('the core on every runtime', () => {
  it('has unit tests to run', () => {
    assert.ok(files.length > 0, 'plugin/*.test.ts');
  });
  for (const name of ['deno', 'bun'] as const) {
    it(`passes its unit tests under ${name} test`, async (t) => {
      const { code, output } = await run(name, runners[name].args);
      const [passed, failed] = runners[name].counts(output);
      t.diagnostic(`${name}: ${passed} passed, ${failed} failed (${files.join(' ')})`);
      assert.equal(failed, 0, output);
      assert.ok(passed > 0, `${name} ran no test:\n${output}`);
      assert.equal(code, 0, output);
    });
  }
});
