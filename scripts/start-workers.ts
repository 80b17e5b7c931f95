/**
 * `npm run start:workers`: the demo as a Worker (examples/demo/workers.ts) on workerd through
 * miniflare, both from npm, nothing downloaded at run time. Reads the demo's environment
 * (`DEMO_ENV`, checked here first so a bad value stops it naming the variable), hands the
 * variables that are set to the Worker as its vars, prints `listening on http://HOST:PORT` with
 * the real port, starts the simulated agents (`DEMO_AGENTS`), and on SIGINT/SIGTERM stops
 * workerd and exits 0.
 */
import { fileURLToPath } from 'node:url';
import { DEMO_ENV, readSettings } from '../examples/demo/app.ts';
import { WORKERS_BINDINGS } from '../examples/demo/workers-bindings.ts';
import { serveWorker } from './workerd.ts';

const ENTRY = fileURLToPath(new URL('../examples/demo/workers.ts', import.meta.url));

let settings: ReturnType<typeof readSettings>;
try {
  settings = readSettings(process.env);
} catch (error) {
  console.error(error instanceof Error ? error.message : String(error));
  process.exit(1);
}
// Each agent is kept in its Durable Object's own storage: there is no broker to choose.
for (const name of ['REDIS_URL', 'DB_PATH'] as const) {
  if (process.env[name]) {
    console.error(`${name} does not apply on Workers: each agent's channel is kept in its Durable Object's storage`);
    process.exit(1);
  }
}

const vars: Record<string, string> = {};
for (const { name } of DEMO_ENV) {
  const value = process.env[name];
  if (value !== undefined && value !== '') vars[name] = value;
}

const { mf, url } = await serveWorker(ENTRY, {
  durableObjects: WORKERS_BINDINGS,
  // The demo app's brokers, loaded by `import()` only with REDIS_URL or DB_PATH, refused above:
  // left out, they stay an `import()` the Worker never runs.
  external: ['../../adapters/redis.ts', '../../adapters/sqlite.ts'],
  bindings: vars,
  host: settings.host,
  port: settings.port,
});

if (settings.demoAgents > 0) {
  // Miniflare types the namespace with its own copy of the Workers types; only these calls are used.
  const simulators = (await mf.getDurableObjectNamespace('DEMO_SIMULATOR')) as unknown as {
    idFromName(name: string): unknown;
    get(id: unknown): { fetch(url: string, init: RequestInit): Promise<Response> };
  };
  const started = await simulators
    .get(simulators.idFromName('demo'))
    .fetch(`https://simulator/start?agents=${settings.demoAgents}`, { method: 'POST' });
  if (started.status !== 204) throw new Error(`the simulator did not start: HTTP ${started.status}`);
}

console.log(`listening on http://${settings.host}:${url.port}`);

let stopping = false;
const shutdown = async () => {
  if (stopping) return;
  stopping = true;
  await mf.dispose();
  process.exit(0);
};
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  // Miniflare's exit hook would stop workerd and exit 128 + signal before `dispose` resolves:
  // this script owns the signals (tsx's own relay is hidden from `listeners`, and kept).
  for (const listener of process.listeners(signal)) process.removeListener(signal, listener);
  process.on(signal, shutdown);
}
