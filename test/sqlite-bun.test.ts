/**
 * The SQLite broker (`DB_PATH`) on Bun (`bun:sqlite`): the conformance and resume suites, and
 * what durability promises (test/sqlite-suite.ts).
 */
import { after } from 'node:test';
import { conformance } from './conformance.ts';
import { bun, type Runtime } from './helpers/server.ts';
import { resumeSuite } from './resume-suite.ts';
import { freshDbPath, removeDbFiles, sqliteSuite } from './sqlite-suite.ts';

after(removeDbFiles);

const runtime: Runtime = { ...bun, name: 'bun with SQLite', env: { ...bun.env, DB_PATH: freshDbPath() } };

conformance(runtime);
resumeSuite(runtime, {
  restartSkip: 'with SQLite the stream outlives the process: test/sqlite-suite.ts tests the restart',
});
sqliteSuite(runtime);
