/**
 * The conformance suite on every tested Node version (scripts/node-versions.ts) besides the one
 * running the tests, which test/node.test.ts covers: the demo server as `npm start` runs it,
 * with that version's binary from the npm registry.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { isCurrent, NODE_VERSIONS, nodeBinary } from '../scripts/node-versions.ts';
import { conformance } from './conformance.ts';

for (const version of NODE_VERSIONS) {
  if (isCurrent(version)) continue;
  test(`node ${version} comes from the npm registry and is that version`, () => {
    const run = spawnSync(nodeBinary(version), ['--version'], { encoding: 'utf8' });
    assert.equal(run.stdout.trim(), `v${version}`);
  });
  conformance({
    name: `node ${version}`,
    command: () => [nodeBinary(version), ['--import', 'tsx', 'examples/demo/node.ts']],
  });
}
