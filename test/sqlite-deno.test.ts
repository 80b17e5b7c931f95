/**
 * The SQLite broker (`DB_PATH`) on Deno (`node:sqlite`): the conformance and resume suites, and
 * what durability promises (test/sqlite-suite.ts). Deno needs read and write access for the file,
 * besides the demo's net and env.
 */
import { after } from 'node:test';
import { runtimeBinary, runtimeEnv } from '../scripts/runtimes.ts';
import { conformance } from './conformance.ts';
import type { Runtime } from './helpers/server.ts';
import { resumeSuite } from './resume-suite.ts';
import { freshDbPath, removeDbFiles, sqliteSuite } from './sqlite-suite.ts';

after(removeDbFiles);

const runtime: Runtime = {
  name: 'deno with SQLite',
  command: () => [
    runtimeBinary('deno'),
    ['run', '--allow-net', '--allow-env', '--allow-read', '--allow-write', '--cached-only', 'examples/demo/deno.ts'],
  ],
  env: { ...runtimeEnv(), DB_PATH: freshDbPath() },
};

conformance(runtime);
resumeSuite(runtime, {
  restartSkip: 'with SQLite the stream outlives the process: test/sqlite-suite.ts tests the restart',
});
sqliteSuite(runtime);
