/**
 * The engine bridges as a user gets them: `npm pack`, then one fresh app per engine that runs
 * the install command of docs/engines/<engine>.md (the tarball in place of `hono-agent-ws`, the
 * engine at its current version from the registry), type-checks that page's example (strict
 * NodeNext) and runs it on Node 22, the oldest Node every engine supports: a watcher on a real
 * socket sees every task of a run reach its final state, with progress, and the agent go idle.
 *
 * Code blocks marked `<!-- example: NAME -->` / `<!-- install: NAME -->` in the docs pages are
 * read from the pages themselves, as test/package.test.ts reads the README's.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { NODE_VERSIONS, nodeBinary } from '../scripts/node-versions.ts';
import { TestClient } from './helpers/client.ts';
import { lifecycles, Watcher } from './helpers/engine-watch.ts';
import { ROOT, request, startServer } from './helpers/server.ts';

/** What each page's example serves, and what one run of it must show. */
const ENGINES = {
  langgraph: { agent: 'research-agent', run: '/research/tides', tasks: 4, progress: 'read' },
  'ai-sdk': { agent: 'tide-bot', run: '/ask', tasks: 2, progress: undefined },
  mastra: { agent: 'crawler', run: '/crawl', tasks: 4, progress: 'read-page' },
  'openai-agents': { agent: 'support-bot', run: '/support', tasks: 3, progress: undefined },
} as const;

/** Node 22: the engines' lowest supported line among the tested ones; it runs TypeScript as is. */
const NODE_22 = NODE_VERSIONS.find((version) => version.startsWith('22.'))!;

/** The page's code blocks marked `<!-- KIND: NAME -->`. */
function pageBlock(engine: string, kind: 'example' | 'install'): string {
  const page = readFileSync(join(ROOT, 'docs', 'engines', `${engine}.md`), 'utf8');
  const marked = new RegExp(`<!-- ${kind}: ${engine} -->\\n\`\`\`\\w*\\n([\\s\\S]*?)\\n\`\`\``);
  const code = marked.exec(page)?.[1];
  assert.ok(code, `docs/engines/${engine}.md has no block marked <!-- ${kind}: ${engine} -->`);
  return code;
}

/** The environment of a child npm, without what an `npm test` around us set for this project. */
function npmEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const key of Object.keys(env))
    if (/^npm_(package|lifecycle)_|^npm_config_(local_prefix|prefix)$/i.test(key) || key === 'INIT_CWD')
      delete env[key];
  return env;
}

/** Runs a command; fails with its output unless it exits 0; returns its stdout. */
function run(command: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = npmEnv()): string {
  const result = spawnSync(command, args, { cwd, env, encoding: 'utf8', timeout: 300_000 });
  const output = `${result.stdout ?? ''}${result.stderr ?? ''}`;
  assert.equal(result.status, 0, `${command} ${args.join(' ')} (in ${cwd}) failed:\n${output}${result.error ?? ''}`);
  return result.stdout;
}

/** Strict NodeNext, as a Node TypeScript app has it; the engines' own declarations not checked. */
const TSCONFIG = {
  compilerOptions: {
    target: 'ES2022',
    module: 'NodeNext',
    moduleResolution: 'NodeNext',
    strict: true,
    noUncheckedIndexedAccess: true,
    verbatimModuleSyntax: true,
    isolatedModules: true,
    erasableSyntaxOnly: true,
    skipLibCheck: true,
    noEmit: true,
    types: ['node'],
  },
  files: ['main.ts'],
};

describe('the engine bridges, packed', { concurrency: false, timeout: 900_000 }, () => {
  let dir: string;
  let tarball: string;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'hono-agent-ws-engines-'));
    const output = run('npm', ['pack', '--pack-destination', dir, '--json'], ROOT);
    tarball = join(dir, JSON.parse(output.slice(output.search(/^\[/m)))[0].filename);
  });
  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  for (const [engine, expected] of Object.entries(ENGINES)) {
    describe(engine, { concurrency: false }, () => {
      let app: string;
      before(() => {
        app = join(dir, engine);
        mkdirSync(app, { recursive: true });
        writeFileSync(join(app, 'package.json'), `${JSON.stringify({ name: 'app', private: true, type: 'module' })}\n`);
        const [tool, ...args] = pageBlock(engine, 'install')
          .trim()
          .split(/\s+/)
          .map((word) => (word === 'hono-agent-ws' ? tarball : word));
        assert.equal(tool, 'npm');
        // npm run by Node 22, as the app's user has it: npm picks the newest version whose
        // engines fit (on Node 20 it would pick AI SDK 6, not 7). npm refuses (ERESOLVE) a peer
        // range that conflicts: no --force, no --legacy-peer-deps.
        const env = { ...npmEnv(), PATH: `${dirname(nodeBinary(NODE_22))}${delimiter}${process.env.PATH}` };
        // The types the type check needs go in the same install: one npm run per app. Offline
        // first (the packuments earlier installs cached); a cached packument older than an
        // engine's newest release names a version it does not know (ETARGET): then ask the
        // registry afresh, once.
        const install = [...args, '@types/node@22', '@types/ws', '--no-audit', '--no-fund'];
        const first = spawnSync('npm', [...install, '--prefer-offline'], {
          cwd: app,
          env,
          encoding: 'utf8',
          timeout: 300_000,
        });
        if (first.status !== 0) {
          assert.match(
            `${first.stdout}${first.stderr}`,
            /ETARGET/,
            `npm ${install.join(' ')} failed:\n${first.stdout}${first.stderr}`,
          );
          run('npm', [...install, '--prefer-online'], app, env);
        }
        writeFileSync(join(app, 'main.ts'), pageBlock(engine, 'example'));
        writeFileSync(join(app, 'tsconfig.json'), `${JSON.stringify(TSCONFIG, null, 2)}\n`);
      });

      it(`type-checks docs/engines/${engine}.md's example against the installed engine`, (t) => {
        const installed = JSON.parse(run('npm', ['ls', '--json', '--depth=0'], app)) as {
          dependencies: Record<string, { version: string }>;
        };
        t.diagnostic(
          Object.entries(installed.dependencies)
            .map(([name, { version }]) => `${name}@${version}`)
            .join(' '),
        );
        run(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', '.'], app);
      });

      it(`runs it on node ${NODE_22}: a watcher sees every task end, with progress, and the agent idle`, async () => {
        const server = await startServer({ name: engine, command: () => [nodeBinary(NODE_22), ['main.ts']], cwd: app });
        try {
          const client = await TestClient.connect(`${server.ws}/agents/${expected.agent}/ws`);
          assert.equal((await client.next(undefined, 5000)).type, 'connection_established');
          const watcher = new Watcher(client);
          const answer = await request(`${server.http}${expected.run}`, { method: 'POST' });
          assert.equal(answer.status, 200, answer.text);
          await watcher.untilStatus('idle', 15_000);
          const tasks = lifecycles(watcher);
          assert.equal(tasks.size, expected.tasks, [...tasks.keys()].join(', '));
          if (expected.progress) {
            const [, updates] = [...tasks.entries()].find(([id]) => id.startsWith(`${expected.progress}:`))!;
            const between = updates.filter((update) => update.progress > 0 && update.progress < 100);
            assert.ok(between.length > 0, `progress between 0 and 100: ${JSON.stringify(updates)}`);
          }
          assert.deepEqual(client.problems, [], 'every frame matched asyncapi.yaml');
          client.socket.terminate();
        } finally {
          await server.stop();
        }
      });
    });
  }
});
