/**
 * Runs every `*.test.ts` under plugin/, adapters/, spec/ and test/ with node:test through tsx,
 * and fails when the run executed no test at all (Node 20 exits 0 on an empty run).
 *
 * Arguments, if any, replace the file list.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const roots = ['plugin', 'adapters', 'spec', 'test'];
const files =
  process.argv.length > 2
    ? process.argv.slice(2)
    : roots
        .flatMap((root) => {
          try {
            return readdirSync(root, { recursive: true, encoding: 'utf8' }).map((file) => join(root, file));
          } catch {
            return [];
          }
        })
        .filter((file) => file.endsWith('.test.ts') && !file.includes('node_modules'))
        .sort();

if (files.length === 0) {
  console.error('run-tests: no test files found');
  process.exit(1);
}

mkdirSync('.test-results', { recursive: true });
const tap = '.test-results/node.tap';
const result = spawnSync(
  process.execPath,
  [
    '--import',
    'tsx',
    '--test',
    '--test-reporter=spec',
    '--test-reporter-destination=stdout',
    '--test-reporter=tap',
    `--test-reporter-destination=${tap}`,
    ...files,
  ],
  { stdio: 'inherit' },
);

const summary = readFileSync(tap, 'utf8');
const count = (name: string) => Number(new RegExp(`^# ${name} (\\d+)$`, 'm').exec(summary)?.[1] ?? 0);
const [tests, passed, failed, skipped] = [count('tests'), count('pass'), count('fail'), count('skipped')];
console.log(`\ntests: ${passed} passed, ${failed} failed, ${skipped} skipped`);
if (tests === 0) {
  console.error('run-tests: the run executed 0 tests');
  process.exit(1);
}
process.exit(result.status === 0 && failed === 0 ? 0 : 1);
