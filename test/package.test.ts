/**
 * The published package, as a user gets it: `npm pack` (which builds dist/ through `prepack`),
 * then fresh apps in a temporary directory that install the tarball with the docs' own install
 * commands and run the docs' own examples (README.md and docs/runtimes.md), each over a real
 * socket:
 *
 * - Node: the Node example saved as `main.mjs`, under plain `node` (no tsx) on every tested
 *   Node version (scripts/node-versions.ts);
 * - TypeScript: the same example as `main.ts` plus every entry Node can load, type-checked with
 *   a strict NodeNext tsconfig and no `skipLibCheck`, by the TypeScript the docs install and
 *   by TypeScript 5;
 * - Deno: the Deno example against the app's node_modules, `deno check`ed and run with
 *   `--cached-only` (nothing downloaded at run time);
 * - Bun: the Bun example after `bun add`;
 * - `@hono/node-ws`: installed beside the package without flags, its example run;
 * - workerd: examples/cloudflare/ type-checked with its own tsconfig, bundled with esbuild from
 *   the installed package as wrangler bundles it, and run on workerd through miniflare with the
 *   bindings of its wrangler.jsonc.
 *
 * Code blocks marked `<!-- example: NAME -->` or `<!-- install: NAME -->` are read from the
 * pages themselves (test/helpers/doc-blocks.ts), so the docs and this test cannot drift apart.
 * In an install command, the argument `hono-agent-ws` is replaced by the tarball's path.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import * as v from 'valibot';
import { HubStatsSchema } from '../plugin/index.ts';
import { NODE_VERSIONS, nodeBinary } from '../scripts/node-versions.ts';
import { runtimeBinary, runtimeEnv } from '../scripts/runtimes.ts';
import { TestClient } from './helpers/client.ts';
import { type DocBlock, markedBlocks } from './helpers/doc-blocks.ts';
import { ingest, ROOT, type Runtime, startServer } from './helpers/server.ts';
import { waitFor } from './helpers/wait.ts';
import { startWorkerd, type WorkerdServer } from './helpers/workerd.ts';

const PACKAGE = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
  name: string;
  engines: { node: string };
  exports: Record<string, string | { types: string; import: string }>;
  peerDependencies: Record<string, string>;
};
const JSR = JSON.parse(readFileSync(join(ROOT, 'jsr.json'), 'utf8')) as {
  name: string;
  version: string;
  exports: Record<string, string>;
};

const examples = markedBlocks('example');
const installs = markedBlocks('install');

/** The code of a marked block, or a failure naming the missing marker. */
function block(blocks: Map<string, DocBlock>, kind: string, name: string): string {
  const code = blocks.get(name)?.code;
  assert.ok(code, `no page of README.md and docs/ has a block marked <!-- ${kind}: ${name} -->`);
  return code;
}

/** The environment of a child npm, without what the `npm test` around us set for this project. */
function npmEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const key of Object.keys(env))
    if (/^npm_(package|lifecycle)_|^npm_config_(local_prefix|prefix)$/i.test(key) || key === 'INIT_CWD')
      delete env[key];
  return env;
}

/** Runs a command; fails with its output unless it exits 0; returns its stdout. */
function run(command: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = npmEnv()): string {
  const result = spawnSync(command, args, { cwd, env, encoding: 'utf8', timeout: 240_000 });
  const output = `${result.stdout ?? ''}${result.stderr ?? ''}`;
  assert.equal(result.status, 0, `${command} ${args.join(' ')} (in ${cwd}) failed:\n${output}${result.error ?? ''}`);
  return result.stdout;
}

/** A fresh app directory with a package.json, as `npm init` leaves it (ESM). */
function app(dir: string): string {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'package.json'), `${JSON.stringify({ name: 'app', private: true, type: 'module' })}\n`);
  return dir;
}

/** Runs the docs' install command `name` in `dir`, with the tarball for `hono-agent-ws`. */
function install(name: string, dir: string, tarball: string): string {
  const words = block(installs, 'install', name).trim().split(/\s+/);
  const [tool, ...args] = words.map((word) => (word === PACKAGE.name ? tarball : word));
  if (tool === 'npm') return run('npm', [...args, '--no-audit', '--no-fund'], dir);
  if (tool === 'bun') return run(runtimeBinary('bun'), args, dir, { ...process.env, ...runtimeEnv() });
  throw new Error(`install: ${name}: unexpected tool ${tool}`);
}

/**
 * Starts an example (it prints `listening on http://127.0.0.1:PORT`) and, over a real socket,
 * receives `connection_established`, the update it published before anyone watched (replayed
 * from the queue), and an update published live through the ingest route. With `graceful`,
 * SIGTERM must then close the socket with 1001 and exit 0.
 */
async function exercise(runtime: Runtime, graceful: boolean): Promise<void> {
  const server = await startServer(runtime);
  try {
    const client = await TestClient.connect(`${server.ws}/agents/agent-7/ws`);
    const hello = await client.next(undefined, 5000);
    assert.equal(hello.type, 'connection_established');
    assert.equal((await client.next(undefined, 5000)).type, 'snapshot');
    const replay = await client.next(undefined, 5000);
    assert.equal(replay.type, 'batch_update');
    assert.equal(replay.source, 'queue');
    assert.equal(replay.updates.length, 1);
    const queued = replay.updates[0]!.content;
    assert.equal(queued.type, 'task_update');
    assert.deepEqual([queued.agent_id, queued.task_id, queued.progress], ['agent-7', 't1', 40]);
    const accepted = await ingest(server, 'agent-7', {
      type: 'task_update',
      task_id: 't2',
      status: 'done',
      progress: 100,
    });
    assert.equal(accepted.status, 202);
    const live = await client.next(undefined, 5000);
    assert.equal(live.type, 'task_update');
    assert.equal(live.task_id, 't2');
    if (graceful) {
      assert.equal(await server.stop(), 0, `exit code\n${server.output()}`);
      assert.equal((await client.closed).code, 1001);
    } else {
      client.socket.terminate();
    }
    assert.deepEqual(client.problems, [], 'every frame matched asyncapi.yaml');
  } finally {
    await server.stop();
  }
}

/** The strictest settings a Node TypeScript app commonly uses; `skipLibCheck` off. */
const TSCONFIG = {
  compilerOptions: {
    target: 'ES2022',
    module: 'NodeNext',
    moduleResolution: 'NodeNext',
    strict: true,
    exactOptionalPropertyTypes: true,
    noUncheckedIndexedAccess: true,
    noImplicitOverride: true,
    verbatimModuleSyntax: true,
    isolatedModules: true,
    skipLibCheck: false,
    noEmit: true,
    types: ['node'],
  },
  files: ['main.ts', 'entries.ts'],
};

/** Loads the declarations of every entry a Node app can load (`/deno` needs Deno's types). */
const ENTRIES_TS = `import type * as core from 'hono-agent-ws';
import type * as bun from 'hono-agent-ws/bun';
import type * as client from 'hono-agent-ws/client';
import type * as cloudflare from 'hono-agent-ws/cloudflare';
import type * as node from 'hono-agent-ws/node';
import type * as redis from 'hono-agent-ws/redis';
import type * as sqlite from 'hono-agent-ws/sqlite';

export type Uses = [core.HubStats, core.ServerMessage, typeof node.serveNode, typeof bun.serveBun, typeof redis.redisBroker, typeof sqlite.sqliteBroker];
export type ClientUses = [typeof client.connectAgent, client.AgentClient, client.StatusUpdate];
export type CloudflareUses = [typeof cloudflare.cloudflareHub, cloudflare.CloudflareHub, typeof cloudflare.AgentDirectoryObject];
`;

describe('the npm package', { concurrency: false, timeout: 600_000 }, () => {
  let dir: string;
  let tarball: string;
  let packed: { filename: string; entryCount: number; size: number; unpackedSize: number; files: { path: string }[] };

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'hono-agent-ws-package-'));
    const output = run('npm', ['pack', '--pack-destination', dir, '--json'], ROOT);
    // Before the JSON, npm prints what the prepack script printed.
    packed = JSON.parse(output.slice(output.search(/^\[/m)))[0];
    tarball = join(dir, packed.filename);
  });
  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('packs dist/, the two specs, README and LICENSE, nothing else', (t) => {
    const files = packed.files.map((file) => file.path).sort();
    t.diagnostic(`${packed.filename}: ${packed.entryCount} files, ${packed.size} B packed, ${packed.unpackedSize} B`);
    const top = ['LICENSE', 'README.md', 'asyncapi.yaml', 'openapi.yaml', 'package.json'];
    assert.deepEqual(
      files.filter((file) => !file.startsWith('dist/')),
      top,
    );
    for (const file of files.filter((name) => name.startsWith('dist/')))
      assert.match(file, /^dist\/[\w/-]+\.(js|js\.map|d\.ts)$/, file);
    for (const file of files.filter((name) => name.endsWith('.js'))) {
      assert.ok(files.includes(`${file}.map`), `${file} has a source map`);
      assert.ok(files.includes(file.replace(/\.js$/, '.d.ts')), `${file} has declarations`);
    }
    assert.equal(files.filter((file) => file.includes('.test.')).length, 0, 'no tests');
    for (const target of Object.values(PACKAGE.exports).flatMap((entry) =>
      typeof entry === 'string' ? [entry] : [entry.types, entry.import],
    ))
      assert.ok(files.includes(target.replace(/^\.\//, '')), `${target} is in the tarball`);
  });

  it('has the same entries in package.json and jsr.json, built from the same sources', () => {
    const code = Object.keys(PACKAGE.exports).filter((entry) => !/\.(yaml|json)$/.test(entry));
    assert.deepEqual(code, Object.keys(JSR.exports));
    for (const entry of code) {
      const source = JSR.exports[entry]!.replace(/^\.\//, '').replace(/\.ts$/, '');
      assert.deepEqual(
        PACKAGE.exports[entry],
        { types: `./dist/${source}.d.ts`, import: `./dist/${source}.js` },
        entry,
      );
    }
    assert.equal(JSR.version, (PACKAGE as unknown as { version: string }).version);
  });

  it('names in engines exactly the Node versions it is tested on', () => {
    assert.equal(PACKAGE.engines.node, NODE_VERSIONS.map((version) => `^${version}`).join(' || '));
  });

  describe('on Node', { concurrency: false }, () => {
    let nodeApp: string;
    before(() => {
      nodeApp = app(join(dir, 'node'));
      install('node', nodeApp, tarball);
      install('node-types', nodeApp, tarball);
      writeFileSync(join(nodeApp, 'main.mjs'), block(examples, 'example', 'node'));
      writeFileSync(join(nodeApp, 'main.ts'), block(examples, 'example', 'node'));
      writeFileSync(join(nodeApp, 'entries.ts'), ENTRIES_TS);
      writeFileSync(join(nodeApp, 'tsconfig.json'), `${JSON.stringify(TSCONFIG, null, 2)}\n`);
    });

    for (const version of NODE_VERSIONS) {
      it(`runs the README's Node example with plain node ${version}`, async () => {
        await exercise(
          { name: `node ${version}`, command: () => [nodeBinary(version), ['main.mjs']], cwd: nodeApp },
          true,
        );
      });
    }

    it('resolves the specs and package.json through exports, with source maps carrying the sources', () => {
      const script = `for (const entry of ['asyncapi.yaml', 'openapi.yaml', 'package.json'])
        console.log(import.meta.resolve('hono-agent-ws/' + entry));
        console.log(import.meta.resolve('hono-agent-ws'));`;
      const [asyncapi, openapi, manifest, core] = run(process.execPath, ['--input-type=module', '-e', script], nodeApp)
        .trim()
        .split('\n')
        .map((url) => fileURLToPath(url));
      assert.match(readFileSync(asyncapi!, 'utf8'), /^asyncapi: 3\.0\.0$/m);
      assert.match(readFileSync(openapi!, 'utf8'), /^openapi: 3\.1\.\d+$/m);
      assert.equal(JSON.parse(readFileSync(manifest!, 'utf8')).name, PACKAGE.name);
      const map = JSON.parse(readFileSync(`${core}.map`, 'utf8')) as { sources: string[]; sourcesContent?: string[] };
      assert.equal(map.sourcesContent?.length, map.sources.length);
      assert.match(map.sourcesContent?.[0] ?? '', /export \* from '\.\/schemas\.ts'/);
    });

    it('installs the bin: `hono-agent-ws` runs from node_modules/.bin through its #! line', () => {
      const bin = join(nodeApp, 'node_modules', '.bin', 'hono-agent-ws');
      assert.equal(run(bin, ['--version'], nodeApp).trim(), (PACKAGE as unknown as { version: string }).version);
      assert.match(run(bin, ['--help'], nodeApp), /^Usage: hono-agent-ws watch <ws-url>/);
    });

    it('type-checks the Node example and every Node entry: strict NodeNext, no skipLibCheck', (t) => {
      const tsc = join(nodeApp, 'node_modules', 'typescript', 'bin', 'tsc');
      t.diagnostic(run(process.execPath, [tsc, '--version'], nodeApp).trim());
      run(process.execPath, [tsc, '-p', '.'], nodeApp);
    });

    it('type-checks the same with TypeScript 5', (t) => {
      const ts5 = join(dir, 'typescript-5');
      run('npm', ['install', '--prefix', ts5, '--no-save', '--no-audit', '--no-fund', 'typescript@5'], dir);
      const tsc = join(ts5, 'node_modules', 'typescript', 'bin', 'tsc');
      t.diagnostic(run(process.execPath, [tsc, '--version'], nodeApp).trim());
      run(process.execPath, [tsc, '-p', '.'], nodeApp);
    });
  });

  describe('on Deno', { concurrency: false }, () => {
    let denoApp: string;
    const deno = (args: string[]): Runtime => ({
      name: 'deno',
      command: () => [runtimeBinary('deno'), args],
      cwd: denoApp,
      env: runtimeEnv(),
    });
    before(() => {
      denoApp = app(join(dir, 'deno'));
      install('deno', denoApp, tarball);
      writeFileSync(join(denoApp, 'main.ts'), block(examples, 'example', 'deno'));
    });

    it("type-checks the docs' Deno example against the installed package", () => {
      const [command, args] = deno(['check', '--cached-only', 'main.ts']).command();
      run(command, args, denoApp, { ...process.env, ...runtimeEnv(), NO_COLOR: '1' });
    });

    it("runs the docs' Deno example from node_modules, downloading nothing", async () => {
      await exercise(deno(['run', '--allow-net', '--allow-env', '--cached-only', 'main.ts']), true);
    });
  });

  describe('on Bun', { concurrency: false }, () => {
    let bunApp: string;
    before(() => {
      bunApp = app(join(dir, 'bun'));
      install('bun', bunApp, tarball);
      writeFileSync(join(bunApp, 'main.ts'), block(examples, 'example', 'bun'));
    });

    it("runs the docs' Bun example after bun add", async () => {
      await exercise(
        { name: 'bun', command: () => [runtimeBinary('bun'), ['main.ts']], cwd: bunApp, env: runtimeEnv() },
        true,
      );
    });
  });

  describe('on workerd (Cloudflare Workers)', { concurrency: false }, () => {
    let workerApp: string;
    let worker: WorkerdServer | undefined;
    before(() => {
      workerApp = app(join(dir, 'cloudflare'));
      install('cloudflare', workerApp, tarball);
      // The example project as a user copies it: wrangler.jsonc, tsconfig.json, src/index.ts.
      cpSync(join(ROOT, 'examples', 'cloudflare'), workerApp, { recursive: true });
    });
    after(async () => {
      await worker?.mf.dispose();
    });

    it('type-checks the example Worker against the installed package, with its own tsconfig', () => {
      run(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', '.'], workerApp);
    });

    it('bundles the example Worker from the installed package and runs it on workerd: upgrade, publish, stats', async () => {
      // wrangler.jsonc's own bindings: its comments are whole lines.
      const config = JSON.parse(
        readFileSync(join(workerApp, 'wrangler.jsonc'), 'utf8').replace(/^\s*\/\/.*$/gm, ''),
      ) as {
        main: string;
        durable_objects: { bindings: { name: string; class_name: string }[] };
        vars: Record<string, string>;
      };
      worker = await startWorkerd(
        join(workerApp, config.main),
        Object.fromEntries(config.durable_objects.bindings.map((binding) => [binding.name, binding.class_name])),
        { bindings: config.vars },
      );
      const token = config.vars.AGENT_TOKEN as string;
      const refused = await fetch(`${worker.http}/agents/ws/stats`);
      assert.equal(refused.status, 401);
      const client = await TestClient.connect(`${worker.ws}/agents/agent-7/ws?token=${token}`);
      assert.equal((await client.next('connection_established', 5000)).agent_id, 'agent-7');
      await client.next('snapshot', 5000);
      const job = await fetch(`${worker.http}/jobs/agent-7`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${token}` },
      });
      assert.equal(job.status, 202);
      const { task_id } = (await job.json()) as { task_id: string };
      const frame = await client.next(undefined, 5000);
      const updates = frame.type === 'batch_update' ? frame.updates.map((entry) => entry.content) : [frame];
      assert.deepEqual(
        updates.map((update) => [update.type, 'task_id' in update ? update.task_id : undefined]),
        [['task_update', task_id]],
      );
      const accepted = await fetch(`${worker.http}/agents/agent-7/updates?token=${token}`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ type: 'status_update', status: 'running' }),
      });
      assert.equal(accepted.status, 202);
      await client.next(undefined, 5000);
      let stats: v.InferOutput<typeof HubStatsSchema> | undefined;
      await waitFor(
        async () => {
          const response = await fetch(`${worker?.http}/agents/ws/stats?token=${token}`);
          stats = v.parse(HubStatsSchema, await response.json());
          return stats.active_connections === 1;
        },
        10_000,
        'the agent reported to the directory',
        200,
      );
      assert.equal(stats?.agents_connected, 1);
      const page = await fetch(`${worker.http}/dashboard?token=${token}`, { headers: { Accept: 'text/html' } });
      assert.equal(page.status, 200);
      assert.match(await page.text(), /id="dashboard-config"/);
      await client.close();
      assert.deepEqual(client.problems, [], 'every frame matched asyncapi.yaml');
    });
  });

  describe('beside @hono/node-ws', { concurrency: false }, () => {
    let nodeWsApp: string;
    before(() => {
      nodeWsApp = app(join(dir, 'node-ws'));
      // npm refuses (ERESOLVE) if a peer range conflicts: no --force, no --legacy-peer-deps.
      install('node-ws', nodeWsApp, tarball);
      writeFileSync(join(nodeWsApp, 'main.mjs'), block(examples, 'example', 'node-ws'));
    });

    it('installs without flags next to @hono/node-server v1', () => {
      const installed = (name: string) =>
        (JSON.parse(readFileSync(join(nodeWsApp, 'node_modules', name, 'package.json'), 'utf8')) as { version: string })
          .version;
      assert.match(installed('@hono/node-server'), /^1\./);
      assert.match(installed('@hono/node-ws'), /^1\./);
    });

    it("runs the docs' @hono/node-ws example with plain node", async () => {
      await exercise({ name: 'node-ws', command: () => [process.execPath, ['main.mjs']], cwd: nodeWsApp }, false);
    });
  });
});
