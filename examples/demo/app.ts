/**
 * The demo app, runtime-neutral: the hub mounted at `/agents` with ingest on, the dashboard
 * (`hono-agent-ws/dashboard`) at `/`, plus a few simulated agents running tasks. `node.ts`, `deno.ts` and `bun.ts` serve it.
 *
 * @module
 */
import { type Context, Hono } from 'hono';
import { HTTPException } from 'hono/http-exception';
import { timingSafeEqual } from 'hono/utils/buffer';
import type { RedisBrokerOptions } from '../../adapters/redis.ts';
import { dashboard, tokenRequired } from '../../dashboard/index.ts';
import { type AgentHub, type AgentHubOptions, createAgentHub, SERVE_DEFAULTS } from '../../plugin/index.ts';

/** The Node server's timeouts, in milliseconds (see `serveNode`); unset ones keep its defaults. */
export interface HttpTimeouts {
  headersTimeout?: number;
  requestTimeout?: number;
  keepAliveTimeout?: number;
  connectionsCheckingInterval?: number;
}

/** Settings read from the environment; every runtime entry passes its own env. */
export interface DemoSettings {
  port: number;
  host: string;
  hub: AgentHubOptions;
  demoAgents: number;
  authToken: string | undefined;
  /** HTTP server timeouts (Node only; Deno and Bun have their own). */
  timeouts: HttpTimeouts;
  /** Set from REDIS_URL: share agents with every instance on the same Redis. */
  redis: RedisBrokerOptions | undefined;
}

const integer = (env: Record<string, string | undefined>, name: string, fallback: number): number => {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 0)
    throw new Error(`${name} must be a whole number >= 0, got ${JSON.stringify(raw)}`);
  return value;
};

/**
 * Reads the demo settings: PORT (8787; 0 picks a free port), HOST (127.0.0.1),
 * HEARTBEAT_INTERVAL_MS, MAX_QUEUE_SIZE, MAX_QUEUE_BYTES, MAX_TOTAL_QUEUE_BYTES, QUEUE_TTL_MS,
 * BATCH_INTERVAL_MS, MAX_MESSAGE_SIZE, MAX_INBOUND_RATE, MAX_INBOUND_BURST, HISTORY_SIZE,
 * MAX_HISTORY_BYTES, SNAPSHOT (`off`), DEMO_AGENTS (3),
 * AUTH_TOKEN (when set, every route needs `?token=` or `Authorization: Bearer`),
 * ALLOWED_ORIGINS (comma-separated browser origins allowed besides the server's own),
 * HEADERS_TIMEOUT_MS, REQUEST_TIMEOUT_MS, KEEP_ALIVE_TIMEOUT_MS, CONNECTIONS_CHECK_INTERVAL_MS
 * (Node's HTTP server timeouts, see `serveNode`), LOG
 * (`off`), REDIS_URL (when set, instances sharing that Redis behave as one hub),
 * PRESENCE_TTL_MS (with REDIS_URL: how long a vanished instance still counts as holding its
 * agents; 15000) and STREAM_TTL_MS (with REDIS_URL: how long an agent's stream stays in Redis
 * after it was last published to or watched; 86400000).
 */
export function readSettings(env: Record<string, string | undefined>): DemoSettings {
  const hub: AgentHubOptions = { ingest: true };
  if (env.HEARTBEAT_INTERVAL_MS) hub.heartbeatInterval = integer(env, 'HEARTBEAT_INTERVAL_MS', 30_000);
  if (env.MAX_QUEUE_SIZE) hub.maxQueueSize = integer(env, 'MAX_QUEUE_SIZE', 100);
  if (env.BATCH_INTERVAL_MS) hub.batchInterval = integer(env, 'BATCH_INTERVAL_MS', 100);
  if (env.MAX_MESSAGE_SIZE) hub.maxMessageSize = integer(env, 'MAX_MESSAGE_SIZE', 65_536);
  if (env.MAX_QUEUE_BYTES) hub.maxQueueBytes = integer(env, 'MAX_QUEUE_BYTES', 0);
  if (env.MAX_TOTAL_QUEUE_BYTES) hub.maxTotalQueueBytes = integer(env, 'MAX_TOTAL_QUEUE_BYTES', 0);
  if (env.QUEUE_TTL_MS) hub.queueTtl = integer(env, 'QUEUE_TTL_MS', 0);
  if (env.MAX_INBOUND_RATE) hub.maxInboundRate = integer(env, 'MAX_INBOUND_RATE', 0);
  if (env.MAX_INBOUND_BURST) hub.maxInboundBurst = integer(env, 'MAX_INBOUND_BURST', 1);
  if (env.HISTORY_SIZE) hub.historySize = integer(env, 'HISTORY_SIZE', 1000);
  if (env.MAX_HISTORY_BYTES) hub.maxHistoryBytes = integer(env, 'MAX_HISTORY_BYTES', 0);
  if (env.SNAPSHOT === 'off') hub.snapshot = false;
  if (env.ALLOWED_ORIGINS) {
    hub.allowedOrigins = env.ALLOWED_ORIGINS.split(',')
      .map((origin) => origin.trim())
      .filter(Boolean);
  }
  if (env.LOG === 'off') hub.logger = false;
  const timeouts: HttpTimeouts = {};
  for (const [name, option] of [
    ['HEADERS_TIMEOUT_MS', 'headersTimeout'],
    ['REQUEST_TIMEOUT_MS', 'requestTimeout'],
    ['KEEP_ALIVE_TIMEOUT_MS', 'keepAliveTimeout'],
    ['CONNECTIONS_CHECK_INTERVAL_MS', 'connectionsCheckingInterval'],
  ] as const) {
    if (env[name]) timeouts[option] = integer(env, name, 0);
  }
  return {
    timeouts,
    port: integer(env, 'PORT', SERVE_DEFAULTS.port),
    host: env.HOST || SERVE_DEFAULTS.hostname,
    hub,
    demoAgents: integer(env, 'DEMO_AGENTS', 3),
    authToken: env.AUTH_TOKEN || undefined,
    redis: env.REDIS_URL
      ? {
          url: env.REDIS_URL,
          ...(env.PRESENCE_TTL_MS ? { presenceTtl: integer(env, 'PRESENCE_TTL_MS', 15_000) } : {}),
          ...(env.STREAM_TTL_MS ? { streamTtl: integer(env, 'STREAM_TTL_MS', 86_400_000) } : {}),
        }
      : undefined,
  };
}

/**
 * Puts the Redis broker in the hub options when REDIS_URL is set. A dynamic import, so
 * `@redis/client` (an optional peer dependency) is only loaded by those who use it.
 */
export async function useRedisIfConfigured(settings: DemoSettings): Promise<DemoSettings> {
  if (!settings.redis) return settings;
  const { redisBroker } = await import('../../adapters/redis.ts');
  return { ...settings, hub: { ...settings.hub, broker: redisBroker(settings.redis) } };
}

/**
 * Puts the SQLite broker in the hub options when DB_PATH is set (`DB_PATH=./data/agents.db
 * npm start`): queues, history and state survive restarts. A dynamic import, so runtimes without
 * SQLite (Node 20) load it only when asked, and are then told which runtimes have it.
 */
export async function useSqliteIfConfigured(settings: DemoSettings, path: string | undefined): Promise<DemoSettings> {
  if (!path) return settings;
  if (settings.redis)
    throw new Error('DB_PATH and REDIS_URL: set one of them (SQLite for one server, Redis for several)');
  const { sqliteBroker } = await import('../../adapters/sqlite.ts');
  return { ...settings, hub: { ...settings.hub, broker: sqliteBroker({ path }) } };
}

/** The demo: the app to serve, its hub, and a stop for the simulation. */
export interface Demo {
  app: Hono;
  hub: AgentHub;
  stop(): void;
}

/**
 * Builds the demo app; `mount` binds the hub's routes to the runtime (`hub.routes(node)`).
 */
export function createDemo(settings: DemoSettings, mount: (hub: AgentHub) => Hono): Demo {
  const { authToken } = settings;
  /** `?token=` or `Authorization: Bearer`; browsers cannot set headers on a WebSocket. */
  const tokenValid = async (c: Context): Promise<boolean> => {
    if (!authToken) return true;
    const given = c.req.query('token') ?? c.req.header('authorization')?.replace(/^Bearer\s+/i, '');
    return given !== undefined && (await timingSafeEqual(given, authToken));
  };
  const checkToken = async (c: Context): Promise<void> => {
    if (!(await tokenValid(c))) {
      const res = new Response(null, { status: 401, headers: { 'WWW-Authenticate': 'Bearer' } });
      throw new HTTPException(401, { message: 'a valid token is required', res });
    }
  };
  const hub = createAgentHub({
    ...settings.hub,
    // Guards every route the hub mounts (watch, publish, stats).
    authorize: authToken
      ? async (_agentId, c) => {
          await checkToken(c);
          return true;
        }
      : undefined,
  });
  const app = new Hono();
  // The dashboard at `/`, behind the same token as the hub's routes: open it as `/?token=...`,
  // and the page passes the token on to its WebSockets and fetches. Without it, a browser is
  // told so on a page of its own.
  const title = 'hono-agent-ws demo';
  app.use('/', async (c, next) => ((await tokenValid(c)) ? next() : tokenRequired(c, { title })));
  const simulated = Array.from({ length: settings.demoAgents }, (_, n) => `demo-agent-${n + 1}`);
  app.route('/', dashboard(hub, { base: '/agents', title, agents: simulated }));
  app.route('/agents', mount(hub));
  const stop = simulateAgents(hub, settings.demoAgents);
  return { app, hub, stop };
}

/**
 * For the simulation's publishes: a rejection (broker down) is already counted and logged by the
 * hub, and an unhandled one would end the process.
 */
const ignore = () => {};

/** What a runtime entry (`node.ts`, `deno.ts`, `bun.ts`) supplies to `runDemo`. */
export interface DemoRuntime {
  /** The process environment. */
  env: Record<string, string | undefined>;
  /** Mounts the hub's routes with the runtime's `upgradeWebSocket` and routes options. */
  mount: (hub: AgentHub) => Hono;
  /** The adapter's `serveNode` / `serveDeno` / `serveBun`. */
  serve: (
    options: {
      fetch: Hono['fetch'];
      hub: AgentHub;
      port: number;
      hostname: string;
    } & HttpTimeouts,
  ) => Promise<{ readonly port: number; close(): Promise<void> }>;
  /** Registers a signal handler. */
  onSignal: (signal: 'SIGINT' | 'SIGTERM', handler: () => void) => void;
  /** Ends the process. */
  exit: (code: number) => void;
}

/**
 * Runs the demo: reads the settings, serves, prints `listening on http://HOST:PORT` with the
 * real port, and on SIGINT/SIGTERM closes the hub gracefully and exits 0.
 */
export async function runDemo(runtime: DemoRuntime): Promise<void> {
  let demo: Demo;
  let settings: DemoSettings;
  try {
    settings = await useSqliteIfConfigured(await useRedisIfConfigured(readSettings(runtime.env)), runtime.env.DB_PATH);
    demo = createDemo(settings, runtime.mount);
  } catch (error) {
    // The store's refusals (no SQLite on this runtime, file in use, damaged file) say what to do.
    if (!(error instanceof Error && error.name === 'SqliteStoreError')) throw error;
    console.error(error.message);
    runtime.exit(1);
    return;
  }
  const server = await runtime.serve({
    fetch: demo.app.fetch,
    hub: demo.hub,
    port: settings.port,
    hostname: settings.host,
    ...settings.timeouts,
  });
  console.log(`listening on http://${settings.host}:${server.port}`);
  let stopping = false;
  const shutdown = async () => {
    if (stopping) return;
    stopping = true;
    demo.stop();
    await server.close();
    runtime.exit(0);
  };
  runtime.onSignal('SIGINT', shutdown);
  runtime.onSignal('SIGTERM', shutdown);
}

/** Runs `count` pretend agents, each working through tasks with progress. */
function simulateAgents(hub: AgentHub, count: number): () => void {
  const timers: ReturnType<typeof setInterval>[] = [];
  for (let n = 1; n <= count; n++) {
    const agentId = `demo-agent-${n}`;
    let task = 0;
    let progress = 100;
    const tick = () => {
      if (progress >= 100) {
        task++;
        progress = 0;
        hub
          .publishStatus(agentId, {
            status: 'running',
            execution_status: { state: 'executing', task_id: `task-${task}`, progress: 0, message: 'started' },
          })
          .catch(ignore);
      }
      progress = Math.min(100, progress + 10 + Math.floor(Math.random() * 20));
      const done = progress >= 100;
      hub
        .publishTask(agentId, {
          task_id: `task-${task}`,
          status: done ? 'completed' : 'running',
          progress,
          message: done ? 'finished' : `step ${Math.ceil(progress / 10)}`,
          ...(done ? { result: { items: Math.floor(Math.random() * 10) } } : {}),
        })
        .catch(ignore);
      if (done) hub.publishStatus(agentId, { status: 'idle' }).catch(ignore);
    };
    timers.push(setInterval(tick, 400 + 150 * n));
  }
  return () => {
    for (const timer of timers) clearInterval(timer);
  };
}
