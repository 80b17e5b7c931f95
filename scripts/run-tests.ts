/**
 * Runs every `*.test.ts` under plugin/, adapters/, spec/ and test/ with node:test through tsx,
 * and fails when the run executed no test at all (Node 20 exits 0 on an empty run), or, on a
 * full run, when a message type of asyncapi.yaml was never seen on the wire by any test client.
 *
 * Every file has `FILE_TIMEOUT_MS` to run (`--test-timeout`, which on Node 20 bounds each file,
 * not each test in it): a file that runs out is failed, and the tests it was running are named
 * (scripts/test-timeouts.mjs) in the output and in the summary. Cancelled tests count as failed.
 *
 * Arguments, if any, replace the file list.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadContract, OBSERVED_DIR_ENV, type Sender, unobservedMessageTypes } from '../spec/contract.ts';

const roots = ['plugin', 'adapters', 'spec', 'test'];
/** Only a full run can prove every spec'd message type is exercised; a partial run skips the check. */
const fullSuite = process.argv.length <= 2;
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

/**
 * Ms each test file has: 15 minutes, generous (the longest files, the runtime suites, take 2–5
 * minutes on a loaded 2-core machine), so only a hang reaches it; `TEST_FILE_TIMEOUT_MS`
 * overrides it (the runner's own test sets a short one). Suites may set tighter ones themselves.
 */
const FILE_TIMEOUT_MS = Number(process.env.TEST_FILE_TIMEOUT_MS) || 15 * 60_000;

mkdirSync('.test-results', { recursive: true });
// `TEST_TAP_FILE` elsewhere for a run inside a run (the runner's own test), which must not
// overwrite the outer run's report.
const tap = process.env.TEST_TAP_FILE ?? '.test-results/node.tap';
// One directory per run, so runs started side by side in the same tree do not mix records.
const observedDir = join('.test-results', 'observed', String(process.pid));
rmSync(observedDir, { recursive: true, force: true });
const result = spawnSync(
  process.execPath,
  [
    '--import',
    'tsx',
    '--test',
    '--test-reporter=spec',
    '--test-reporter-destination=stdout',
    // Node's TAP, plus the names of the tests a file timeout cut.
    `--test-reporter=${fileURLToPath(new URL('./test-timeouts.mjs', import.meta.url))}`,
    `--test-reporter-destination=${tap}`,
    `--test-timeout=${FILE_TIMEOUT_MS}`,
    ...files,
  ],
  { stdio: 'inherit', env: { ...process.env, [OBSERVED_DIR_ENV]: observedDir } },
);

const summary = readFileSync(tap, 'utf8');
const count = (name: string) => Number(new RegExp(`^# ${name} (\\d+)$`, 'm').exec(summary)?.[1] ?? 0);
const [tests, passed, skipped] = [count('tests'), count('pass'), count('skipped')];
// A test cut by its file's timeout, or left unfinished by its parent, is cancelled, not failed.
const failed = count('fail') + count('cancelled');
console.log(`\ntests: ${passed} passed, ${failed} failed, ${skipped} skipped`);
for (const name of failedNames(summary)) console.log(`  ✖ ${name}`);
for (const line of summary.split('\n')) if (line.startsWith('# timed out: ')) console.log(`  ✖ ${line.slice(2)}`);
if (tests === 0) {
  console.error('run-tests: the run executed 0 tests');
  process.exit(1);
}
const unexercised = fullSuite ? unexercisedMessageTypes() : [];
for (const line of unexercised) console.error(`run-tests: ${line}`);
process.exit(result.status === 0 && failed === 0 && unexercised.length === 0 ? 0 : 1);

/**
 * The innermost failed tests of a TAP report (`not ok` lines), each with its suites:
 * `suite › test`. A `# TODO` or `# SKIP` result is not a failure.
 */
function failedNames(report: string): string[] {
  const names: string[] = [];
  const path: string[] = [];
  for (const line of report.split('\n')) {
    const subtest = /^( *)# Subtest: (.*)$/.exec(line);
    if (subtest) {
      path.length = (subtest[1] as string).length / 4;
      path.push(subtest[2] as string);
      continue;
    }
    const result = /^( *)not ok \d+ - (.*)$/.exec(line);
    if (!result || / # (TODO|SKIP)\b/.test(result[2] as string)) continue;
    const name = path.slice(0, (result[1] as string).length / 4 + 1).join(' › ');
    // A suite fails when a subtest did: only its tests are named (they come first in TAP).
    if (!names.some((known) => known.startsWith(`${name} › `))) names.push(name);
  }
  return names;
}

/**
 * Message types asyncapi.yaml lists that no test process saw on the wire, from the records
 * test/helpers/contract.ts leaves in `observedDir`.
 */
function unexercisedMessageTypes(): string[] {
  const seen: Record<Sender, Set<string>> = { server: new Set(), client: new Set() };
  let records: string[] = [];
  try {
    records = readdirSync(observedDir).filter((file) => file.endsWith('.json'));
  } catch {}
  for (const file of records) {
    const record = JSON.parse(readFileSync(join(observedDir, file), 'utf8')) as Record<Sender, string[]>;
    for (const sender of ['server', 'client'] as const) for (const type of record[sender]) seen[sender].add(type);
  }
  rmSync(observedDir, { recursive: true, force: true });
  return unobservedMessageTypes(loadContract(), seen);
}
