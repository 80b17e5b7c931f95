/**
 * Runs every `*.test.ts` under plugin/, adapters/, spec/ and test/ with node:test through tsx,
 * and fails when the run executed no test at all (Node 20 exits 0 on an empty run), or, on a
 * full run, when a message type of asyncapi.yaml was never seen on the wire by any test client.
 *
 * Arguments, if any, replace the file list.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
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

mkdirSync('.test-results', { recursive: true });
const tap = '.test-results/node.tap';
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
    '--test-reporter=tap',
    `--test-reporter-destination=${tap}`,
    ...files,
  ],
  { stdio: 'inherit', env: { ...process.env, [OBSERVED_DIR_ENV]: observedDir } },
);

const summary = readFileSync(tap, 'utf8');
const count = (name: string) => Number(new RegExp(`^# ${name} (\\d+)$`, 'm').exec(summary)?.[1] ?? 0);
const [tests, passed, failed, skipped] = [count('tests'), count('pass'), count('fail'), count('skipped')];
console.log(`\ntests: ${passed} passed, ${failed} failed, ${skipped} skipped`);
if (tests === 0) {
  console.error('run-tests: the run executed 0 tests');
  process.exit(1);
}
const unexercised = fullSuite ? unexercisedMessageTypes() : [];
for (const line of unexercised) console.error(`run-tests: ${line}`);
process.exit(result.status === 0 && failed === 0 && unexercised.length === 0 ? 0 : 1);

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
