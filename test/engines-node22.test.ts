/**
 * The bridges whose engines need Node >= 22 (Mastra: @mastra/core asks for >= 22.13; OpenAI
 * Agents: its `openai` dependency asks for >= 22; AI SDK 7, a dev dependency under the alias
 * `ai-7` beside AI SDK 6), run on every tested Node version from 22 up, each binary from the
 * npm registry as test/node-versions.test.ts gets them. Their suites are in
 * test/engines/*.suite.ts; the engines are this project's dev dependencies.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { major, NODE_VERSIONS, nodeBinary } from '../scripts/node-versions.ts';
import { ROOT } from './helpers/server.ts';

/** Each suite and the tests it has: a run that ran fewer did not test what it claims. */
const SUITES = {
  'test/engines/mastra.suite.ts': 7,
  'test/engines/openai-agents.suite.ts': 4,
  'test/engines/ai-sdk-7.suite.ts': 3,
} as const;

/**
 * The child's environment: without the parent's test context, so it runs its own tests (node:test
 * would see a recursive run and skip them), and NODE_ENV=test as test runners set it.
 */
function suiteEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, NODE_ENV: 'test' };
  delete env.NODE_TEST_CONTEXT;
  return env;
}

for (const version of NODE_VERSIONS.filter((candidate) => major(candidate) >= 22)) {
  describe(`engine bridges on node ${version}`, { concurrency: false, timeout: 600_000 }, () => {
    for (const [suite, expected] of Object.entries(SUITES)) {
      it(`${suite}: every test passes`, () => {
        const run = spawnSync(nodeBinary(version), ['--import', 'tsx', '--test', '--test-reporter=tap', suite], {
          cwd: ROOT,
          encoding: 'utf8',
          timeout: 300_000,
          env: suiteEnv(),
        });
        const output = `${run.stdout}${run.stderr}`;
        const count = (name: string) => Number(new RegExp(`^# ${name} (\\d+)$`, 'm').exec(output)?.[1] ?? -1);
        assert.equal(run.status, 0, output);
        assert.equal(count('fail'), 0, output);
        assert.equal(count('pass'), expected, output);
      });
    }
  });
}
