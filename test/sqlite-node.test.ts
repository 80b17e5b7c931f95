/**
 * The SQLite broker (`DB_PATH`) on Node 22 and 24, each binary from the npm registry
 * (scripts/node-versions.ts): the conformance and resume suites, and what durability promises
 * (test/sqlite-suite.ts). On Node 20, which has no SQLite, `npm start` with `DB_PATH` says which
 * runtimes have it and exits 1.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, it } from 'node:test';
import { major, NODE_VERSIONS, nodeBinary } from '../scripts/node-versions.ts';
import { conformance } from './conformance.ts';
import { ROOT, type Runtime } from './helpers/server.ts';
import { resumeSuite } from './resume-suite.ts';
import { freshDbPath, removeDbFiles, sqliteSuite } from './sqlite-suite.ts';

after(removeDbFiles);

for (const version of NODE_VERSIONS) {
  if (major(version) < 22) {
    it(`node ${version}: DB_PATH names the runtimes that have SQLite, and the demo exits 1`, () => {
      const run = spawnSync(nodeBinary(version), ['--import', 'tsx', 'examples/demo/node.ts'], {
        cwd: ROOT,
        env: { ...process.env, PORT: '0', DEMO_AGENTS: '0', DB_PATH: freshDbPath() },
        encoding: 'utf8',
        timeout: 60_000,
      });
      assert.equal(run.status, 1, run.stderr);
      assert.match(run.stderr, /SQLite is not available on Node v20\.\d+\.\d+: it is built into Node 22\.13\+/);
      assert.doesNotMatch(run.stderr, /\n\s+at /, 'one clear line, no stack trace');
      assert.doesNotMatch(run.stdout, /listening on/);
    });
    continue;
  }
  const runtime: Runtime = {
    name: `node ${version} with SQLite`,
    command: () => [nodeBinary(version), ['--import', 'tsx', 'examples/demo/node.ts']],
    env: { DB_PATH: freshDbPath() },
  };
  conformance(runtime);
  resumeSuite(runtime, {
    restartSkip: 'with SQLite the stream outlives the process: test/sqlite-suite.ts tests the restart',
  });
  sqliteSuite(runtime);
}
