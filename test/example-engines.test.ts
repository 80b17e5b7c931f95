/**
 * `npm run example:engines` (examples/engines/langgraph.ts) as a user starts it: one app serves
 * the dashboard at `/`, the hub at `/agents`, and the LangGraph graph at `POST /research/:topic`;
 * a watcher on a real socket sees a whole run, node by node, with progress.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { TestClient } from './helpers/client.ts';
import { lifecycles, Watcher } from './helpers/engine-watch.ts';
import { ROOT, request, startServer } from './helpers/server.ts';

describe('npm run example:engines', { timeout: 120_000 }, () => {
  it('is the npm script that starts the example', () => {
    const { scripts } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
      scripts: Record<string, string>;
    };
    assert.equal(scripts['example:engines'], 'node --import tsx examples/engines/langgraph.ts');
  });

  it('serves the dashboard and the hub; a run shows every node start, progress and complete', async () => {
    const server = await startServer(
      {
        name: 'engines example',
        command: () => [process.execPath, ['--import', 'tsx', 'examples/engines/langgraph.ts']],
      },
      { RUN_EVERY_MS: '0', LOG: 'off' },
    );
    try {
      const page = await request(`${server.http}/`);
      assert.equal(page.status, 200);
      assert.match(page.text, /LangGraph research agent/);
      const client = await TestClient.connect(`${server.ws}/agents/research-agent/ws`);
      assert.equal((await client.next(undefined, 5000)).type, 'connection_established');
      const watcher = new Watcher(client);
      const answer = await request(`${server.http}/research/tides`, { method: 'POST' });
      assert.equal(answer.status, 200, answer.text);
      assert.match((JSON.parse(answer.text) as { summary: string }).summary, /^tides: /);
      await watcher.untilStatus('idle', 30_000);
      const tasks = lifecycles(watcher);
      assert.deepEqual(
        [...tasks.keys()].map((id) => id.split(':')[0]),
        ['run-1', 'plan', 'search', 'read', 'write'],
      );
      for (const node of ['search', 'read', 'write']) {
        const [, updates] = [...tasks.entries()].find(([id]) => id.startsWith(`${node}:`))!;
        assert.ok(
          updates.some((update) => update.progress > 0 && update.progress < 100),
          `${node} reports progress: ${JSON.stringify(updates.map((update) => update.progress))}`,
        );
      }
      assert.deepEqual(client.problems, []);
      client.socket.terminate();
    } finally {
      await server.stop();
    }
  });
});
