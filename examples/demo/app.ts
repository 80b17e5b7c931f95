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
import { type DashboardHub, dashboard, tokenRequired } from '../../dashboard/index.ts';
import {
  type AgentHub,
  type AgentHubOptions,
  type AuthorizeHook,
  createAgentHub,
  SERVE_DEFAULTS,
  type StatusUpdateInput,
  type TaskUpdateInput,
} from '../../plugin/index.ts';

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
  /** Set from DB_PATH: keep queues, history and state in this SQLite file. */
  dbPath: string | undefined;
  /** Set from DB_COMMIT_INTERVAL_MS: the SQLite store's `commitInterval`. */
  dbCommitInterval?: number;
  /** Set from REPORT_INTERVAL_MS (Workers only): `cloudflareHub`'s `reportInterval`. */
  reportInterval?: number;
}

/** Turns one environment variable's text into a setting; throws a message naming the variable. */
type Parse<T> = (raw: string, name: string) => T;

/** A whole number, 0 or more: counts, bytes, milliseconds. */
const whole: Parse<number> = (raw, name) => {
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 0)
    throw new Error(`${name} must be a whole number >= 0, got ${JSON.stringify(raw)}`);
  return value;
};

/** A number, 0 or more, fractions allowed (a rate). */
const rate: Parse<number> = (raw, name) => {
  const value = Number(raw);
  if (!Number.isFinite(value) || value < 0)
    throw new Error(`${name} must be a number >= 0, got ${JSON.stringify(raw)}`);
  return value;
};

/** `on` or `off`. */
const onOff: Parse<boolean> = (raw, name) => {
  if (raw === 'on' || raw === 'off') return raw === 'on';
  throw new Error(`${name} must be on or off, got ${JSON.stringify(raw)}`);
};

/** Comma-separated, blanks dropped. */
const list: Parse<string[]> = (raw) =>
  raw
    .split(',')
    .map((item) => item.trim())
    .filter(Boolean);

/** Text as given. */
const text: Parse<string> = (raw) => raw;

/** What the demo's settings are made of, by where each variable goes. */
interface EnvTargets {
  /** `createAgentHub`'s options; unset ones keep the schema's defaults. */
  hub: AgentHubOptions;
  /** Node's HTTP server timeouts (`serveNode`); unset ones keep `serverTimeouts`. */
  timeouts: HttpTimeouts;
  /** The Redis broker's options, used when `url` is set. */
  redis: RedisBrokerOptions;
  /** The demo's own settings. */
  demo: {
    port: number;
    host: string;
    demoAgents: number;
    authToken: string;
    dbPath: string;
    dbCommitInterval: number;
    reportInterval: number;
  };
}

/** One environment variable: its name, the setting it sets, how its text is read, and why. */
export type DemoEnvVar = {
  [Target in keyof EnvTargets]: {
    [Option in keyof EnvTargets[Target]]-?: {
      readonly name: string;
      readonly target: Target;
      readonly option: Option;
      /** Returns `undefined` to leave the setting at its default. */
      readonly parse: Parse<EnvTargets[Target][Option] | undefined>;
      /** For the demo's own settings: the value when unset (hub, timeout and Redis defaults are the code's own). */
      readonly fallback?: Exclude<EnvTargets[Target][Option], undefined>;
      /** What it does, for the docs' table; empty when the option's own description says it. */
      readonly about: string;
    };
  }[keyof EnvTargets[Target]];
}[keyof EnvTargets];

/**
 * Every environment variable the demo reads, in one list: `readSettings` applies it and the
 * docs' table (docs/demo.md, `npm run docs`) is written from it. A variable that is unset or
 * empty leaves its setting at the code's default.
 */
export const DEMO_ENV: readonly DemoEnvVar[] = [
  {
    name: 'PORT',
    target: 'demo',
    option: 'port',
    parse: whole,
    fallback: SERVE_DEFAULTS.port,
    about: '`0` picks a free port',
  },
  {
    name: 'HOST',
    target: 'demo',
    option: 'host',
    parse: text,
    fallback: SERVE_DEFAULTS.hostname,
    about: 'the interface to bind',
  },
  {
    name: 'DEMO_AGENTS',
    target: 'demo',
    option: 'demoAgents',
    parse: whole,
    fallback: 3,
    about: 'simulated agents; `0` for none',
  },
  {
    name: 'AUTH_TOKEN',
    target: 'demo',
    option: 'authToken',
    parse: text,
    about:
      'when set, every route (WebSocket, stats, listing, metrics, ingest, the dashboard) needs `?token=…` or `Authorization: Bearer …`, compared in constant time; 401 otherwise',
  },
  { name: 'HEARTBEAT_INTERVAL_MS', target: 'hub', option: 'heartbeatInterval', parse: whole, about: '' },
  { name: 'MAX_QUEUE_SIZE', target: 'hub', option: 'maxQueueSize', parse: whole, about: '' },
  { name: 'MAX_QUEUE_BYTES', target: 'hub', option: 'maxQueueBytes', parse: whole, about: '' },
  { name: 'MAX_TOTAL_QUEUE_BYTES', target: 'hub', option: 'maxTotalQueueBytes', parse: whole, about: '' },
  { name: 'QUEUE_TTL_MS', target: 'hub', option: 'queueTtl', parse: whole, about: '' },
  { name: 'BATCH_INTERVAL_MS', target: 'hub', option: 'batchInterval', parse: whole, about: '' },
  { name: 'MAX_MESSAGE_SIZE', target: 'hub', option: 'maxMessageSize', parse: whole, about: '' },
  { name: 'MAX_INBOUND_RATE', target: 'hub', option: 'maxInboundRate', parse: rate, about: '' },
  { name: 'MAX_INBOUND_BURST', target: 'hub', option: 'maxInboundBurst', parse: whole, about: '' },
  { name: 'HISTORY_SIZE', target: 'hub', option: 'historySize', parse: whole, about: '' },
  { name: 'MAX_HISTORY_BYTES', target: 'hub', option: 'maxHistoryBytes', parse: whole, about: '' },
  { name: 'MAX_TOTAL_HISTORY_BYTES', target: 'hub', option: 'maxTotalHistoryBytes', parse: whole, about: '' },
  { name: 'MAX_STATE_BYTES', target: 'hub', option: 'maxStateBytes', parse: whole, about: '' },
  { name: 'MAX_TOTAL_STATE_BYTES', target: 'hub', option: 'maxTotalStateBytes', parse: whole, about: '' },
  { name: 'SNAPSHOT', target: 'hub', option: 'snapshot', parse: onOff, about: '`on` or `off`' },
  {
    name: 'ALLOWED_ORIGINS',
    target: 'hub',
    option: 'allowedOrigins',
    parse: list,
    about: "comma-separated browser origins allowed besides the server's own",
  },
  {
    name: 'LOG',
    target: 'hub',
    option: 'logger',
    parse: (raw) => (raw === 'off' ? false : undefined),
    about: '`off` silences the log; anything else keeps JSON lines on the console',
  },
  { name: 'HEADERS_TIMEOUT_MS', target: 'timeouts', option: 'headersTimeout', parse: whole, about: 'Node only' },
  { name: 'REQUEST_TIMEOUT_MS', target: 'timeouts', option: 'requestTimeout', parse: whole, about: 'Node only' },
  { name: 'KEEP_ALIVE_TIMEOUT_MS', target: 'timeouts', option: 'keepAliveTimeout', parse: whole, about: 'Node only' },
  {
    name: 'CONNECTIONS_CHECK_INTERVAL_MS',
    target: 'timeouts',
    option: 'connectionsCheckingInterval',
    parse: whole,
    about: 'Node only',
  },
  {
    name: 'REDIS_URL',
    target: 'redis',
    option: 'url',
    parse: text,
    about: 'when set, the hub uses the Redis broker: instances sharing that Redis behave as one hub',
  },
  { name: 'PRESENCE_TTL_MS', target: 'redis', option: 'presenceTtl', parse: whole, about: 'with `REDIS_URL`' },
  { name: 'STREAM_TTL_MS', target: 'redis', option: 'streamTtl', parse: whole, about: 'with `REDIS_URL`' },
  {
    name: 'DB_PATH',
    target: 'demo',
    option: 'dbPath',
    parse: text,
    about:
      'when set, the hub uses the SQLite store in this file: queues, history and state survive restarts (one server; not with `REDIS_URL`)',
  },
  {
    name: 'DB_COMMIT_INTERVAL_MS',
    target: 'demo',
    option: 'dbCommitInterval',
    parse: whole,
    about: "with `DB_PATH`: the store's `commitInterval`, least milliseconds between two commits (docs/sqlite.md)",
  },
  {
    name: 'REPORT_INTERVAL_MS',
    target: 'demo',
    option: 'reportInterval',
    parse: whole,
    about:
      "Workers only (`npm run start:workers`): `cloudflareHub`'s `reportInterval` (default 10000), how stale the stats, listing and metrics may be; `0` reports every change before answering",
  },
];

/**
 * Reads the demo settings from the environment, by `DEMO_ENV`.
 *
 * @param env The process environment.
 *
 * @returns The settings.
 *
 * @throws {Error} When a variable cannot be read; the message names it.
 */
export function readSettings(env: Record<string, string | undefined>): DemoSettings {
  const hub: EnvTargets['hub'] = { ingest: true };
  const targets: { [Target in keyof EnvTargets]: Partial<EnvTargets[Target]> } = {
    hub,
    timeouts: {},
    redis: {},
    demo: {},
  };
  for (const variable of DEMO_ENV) {
    const raw = env[variable.name];
    const value = raw === undefined || raw === '' ? variable.fallback : variable.parse(raw, variable.name);
    if (value !== undefined) (targets[variable.target] as Record<string, unknown>)[variable.option] = value;
  }
  const { demo, timeouts, redis } = targets;
  return {
    port: demo.port as number,
    host: demo.host as string,
    hub,
    demoAgents: demo.demoAgents as number,
    authToken: demo.authToken,
    dbPath: demo.dbPath,
    dbCommitInterval: demo.dbCommitInterval,
    reportInterval: demo.reportInterval,
    timeouts,
    redis: redis.url ? redis : undefined,
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
  const broker = sqliteBroker({ path, commitInterval: settings.dbCommitInterval });
  return { ...settings, hub: { ...settings.hub, broker } };
}

/** The demo: the app to serve, its hub, and a stop for the simulation. */
export interface Demo {
  app: Hono;
  hub: AgentHub;
  stop(): void;
}

/** What the demo's routes need of a hub: the dashboard reads its stats (`AgentHub`, or `cloudflareHub`'s). */
export type DemoHub = DashboardHub;

/**
 * The token check of `AUTH_TOKEN`: `?token=` or `Authorization: Bearer` (browsers cannot set
 * headers on a WebSocket), compared in constant time; everything passes when no token is set.
 *
 * @param authToken The token, or `undefined` for none.
 *
 * @returns `valid` (a boolean) and `authorize`, the hub's `authorize` hook (401 on a bad token),
 *   `undefined` when no token is set.
 */
export function tokenGuard(authToken: string | undefined): {
  valid(c: Context): Promise<boolean>;
  authorize: AuthorizeHook | undefined;
} {
  const valid = async (c: Context): Promise<boolean> => {
    if (!authToken) return true;
    const given = c.req.query('token') ?? c.req.header('authorization')?.replace(/^Bearer\s+/i, '');
    return given !== undefined && (await timingSafeEqual(given, authToken));
  };
  const authorize: AuthorizeHook = async (_agentId, c) => {
    if (!(await valid(c))) {
      const res = new Response(null, { status: 401, headers: { 'WWW-Authenticate': 'Bearer' } });
      throw new HTTPException(401, { message: 'a valid token is required', res });
    }
    return true;
  };
  return { valid, authorize: authToken ? authorize : undefined };
}

/** The ids of the simulated agents: `demo-agent-1` to `demo-agent-<count>`. */
export const simulatedAgents = (count: number): string[] =>
  Array.from({ length: count }, (_, n) => `demo-agent-${n + 1}`);

/**
 * The demo's app around a hub's routes: the dashboard at `/` (behind the same token as the hub's
 * routes: open it as `/?token=...`, and the page passes the token on to its WebSockets and
 * fetches; without it, a browser is told so on a page of its own) and the routes at `/agents`.
 *
 * @param settings The demo's settings (the token, the simulated agents the page lists).
 * @param hub The hub the dashboard reads.
 * @param routes The hub's routes, bound to the runtime.
 *
 * @returns The app.
 */
export function demoApp(settings: DemoSettings, hub: DemoHub, routes: Hono): Hono {
  const { valid } = tokenGuard(settings.authToken);
  const app = new Hono();
  const title = 'hono-agent-ws demo';
  app.use('/', async (c, next) => ((await valid(c)) ? next() : tokenRequired(c, { title })));
  app.route('/', dashboard(hub, { base: '/agents', title, agents: simulatedAgents(settings.demoAgents) }));
  app.route('/agents', routes);
  return app;
}

/**
 * Builds the demo app; `mount` binds the hub's routes to the runtime (`hub.routes(node)`).
 */
export function createDemo(settings: DemoSettings, mount: (hub: AgentHub) => Hono): Demo {
  // Guards every route the hub mounts (watch, publish, stats).
  const hub = createAgentHub({ ...settings.hub, authorize: tokenGuard(settings.authToken).authorize });
  const app = demoApp(settings, hub, mount(hub));
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
    const read = readSettings(runtime.env);
    settings = await useSqliteIfConfigured(await useRedisIfConfigured(read), read.dbPath);
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

/** Where one simulated agent is: its task number and that task's progress (100: done). */
export interface SimulatedAgent {
  task: number;
  progress: number;
}

/** A simulated agent before its first step: the next step starts task 1. */
export const newSimulatedAgent = (): SimulatedAgent => ({ task: 0, progress: 100 });

/** One update a simulated agent publishes. */
export type SimulatedUpdate = { kind: 'status'; update: StatusUpdateInput } | { kind: 'task'; update: TaskUpdateInput };

/**
 * One step of a simulated agent: a new task when the last one is done (a `running` status),
 * then some progress on it, and `idle` when it completes.
 *
 * @param agent Its position, moved on in place.
 *
 * @returns The updates to publish, in order.
 */
export function simulationStep(agent: SimulatedAgent): SimulatedUpdate[] {
  const updates: SimulatedUpdate[] = [];
  if (agent.progress >= 100) {
    agent.task++;
    agent.progress = 0;
    updates.push({
      kind: 'status',
      update: {
        status: 'running',
        execution_status: { state: 'executing', task_id: `task-${agent.task}`, progress: 0, message: 'started' },
      },
    });
  }
  agent.progress = Math.min(100, agent.progress + 10 + Math.floor(Math.random() * 20));
  const done = agent.progress >= 100;
  updates.push({
    kind: 'task',
    update: {
      task_id: `task-${agent.task}`,
      status: done ? 'completed' : 'running',
      progress: agent.progress,
      message: done ? 'finished' : `step ${Math.ceil(agent.progress / 10)}`,
      ...(done ? { result: { items: Math.floor(Math.random() * 10) } } : {}),
    },
  });
  if (done) updates.push({ kind: 'status', update: { status: 'idle' } });
  return updates;
}

/** Milliseconds between two steps of the `n`th simulated agent (from 1): each its own pace. */
export const simulationPace = (n: number): number => 400 + 150 * n;

/** Runs `count` pretend agents, each working through tasks with progress. */
function simulateAgents(hub: AgentHub, count: number): () => void {
  const timers: ReturnType<typeof setInterval>[] = [];
  for (const [index, agentId] of simulatedAgents(count).entries()) {
    const agent = newSimulatedAgent();
    const tick = () => {
      for (const { kind, update } of simulationStep(agent)) {
        const published = kind === 'status' ? hub.publishStatus(agentId, update) : hub.publishTask(agentId, update);
        published.catch(ignore);
      }
    };
    timers.push(setInterval(tick, simulationPace(index + 1)));
  }
  return () => {
    for (const timer of timers) clearInterval(timer);
  };
}
