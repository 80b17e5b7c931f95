/**
 * `npm run start:workers`: the demo as a Worker on workerd (scripts/start-workers.ts bundles and
 * serves it through miniflare). The same app as on Node, Deno and Bun (`demoApp`: the dashboard at
 * `/`, the hub's routes with ingest at `/agents`, the same `AUTH_TOKEN`), but each agent's channel
 * lives in its Durable Object (`DemoChannel`), the hub-wide figures in the directory
 * (`DemoDirectory`), and the simulated agents in one object (`DemoSimulator`) driven by its alarm.
 *
 * The settings are the demo's environment variables (`DEMO_ENV`), given to the Worker as its
 * vars and read at module load through `cloudflare:workers`' `env`, so that the objects' class
 * options (static, read when an object starts) can come from them too.
 *
 * @module
 */
import { env } from 'cloudflare:workers';
import {
  AgentChannelObject,
  type AgentChannelOptions,
  AgentDirectoryObject,
  cloudflareHub,
} from '../../adapters/cloudflare.ts';
import {
  type DemoSettings,
  demoApp,
  newSimulatedAgent,
  readSettings,
  type SimulatedAgent,
  simulatedAgents,
  simulationPace,
  simulationStep,
  tokenGuard,
} from './app.ts';

/** The Worker's vars as the demo's environment: strings only (bindings are objects). */
const vars = Object.fromEntries(
  Object.entries(env as Record<string, unknown>).filter(
    (entry): entry is [string, string] => typeof entry[1] === 'string',
  ),
);

const settings: DemoSettings = readSettings(vars);

/**
 * The hub's options an agent's object takes (`AgentChannelOptions`), from the demo's settings;
 * the others are the Worker's (`cloudflareHub`) or have no meaning per object (the totals).
 *
 * @param hub The demo's hub options.
 *
 * @returns The objects' options.
 */
export function channelOptions(hub: DemoSettings['hub']): AgentChannelOptions {
  const picked: AgentChannelOptions = {
    heartbeatInterval: hub.heartbeatInterval,
    batchInterval: hub.batchInterval,
    historySize: hub.historySize,
    maxHistoryBytes: hub.maxHistoryBytes,
    maxQueueSize: hub.maxQueueSize,
    maxQueueBytes: hub.maxQueueBytes,
    queueTtl: hub.queueTtl,
    maxStateBytes: hub.maxStateBytes,
    maxMessageSize: hub.maxMessageSize,
    maxInboundRate: hub.maxInboundRate,
    maxInboundBurst: hub.maxInboundBurst,
    snapshot: hub.snapshot,
  };
  // Unset ones keep the objects' defaults (the hub's).
  return Object.fromEntries(Object.entries(picked).filter(([, value]) => value !== undefined));
}

/** Each agent's channel: the demo's options. */
export class DemoChannel extends AgentChannelObject {
  static override options = channelOptions(settings.hub);
}

/** The directory the stats, the agents listing and the metrics are read from. */
export { AgentDirectoryObject as DemoDirectory };

// The binding names of workers-bindings.ts.
const hub = cloudflareHub({
  channel: 'AGENT_CHANNEL',
  directory: 'AGENT_DIRECTORY',
  reportInterval: settings.reportInterval,
  ingest: settings.hub.ingest,
  allowedOrigins: settings.hub.allowedOrigins,
  maxIngestBytes: settings.hub.maxIngestBytes,
  maxUpdateDepth: settings.hub.maxUpdateDepth,
  logger: settings.hub.logger,
  authorize: tokenGuard(settings.authToken).authorize,
});

/** What the simulator uses of its `DurableObjectState`. */
interface SimulatorState {
  readonly storage: {
    get<T>(key: string): Promise<T | undefined>;
    put(key: string, value: unknown): Promise<void>;
    getAlarm(): Promise<number | null>;
    setAlarm(time: number): Promise<void>;
  };
}

/** For the simulation's publishes: a refusal is counted and logged by the hub already. */
const ignore = () => {};

/**
 * The simulated agents of the demo, as one Durable Object: `POST /start?agents=N` (sent once by
 * scripts/start-workers.ts) stores the count and sets the alarm; each alarm moves every agent
 * that is due one step (`simulationStep`, as on Node, each at its own pace) and publishes
 * through `hub.publisher(env)`, then sets the alarm for the next agent due. Its alarms keep it
 * awake: a demo, not a pattern for production agents (which publish from their own code).
 */
export class DemoSimulator {
  private readonly ctx: SimulatorState;
  private readonly env: unknown;
  /** Each agent's position and when its next step is due; in memory (the alarms keep the object awake). */
  private readonly agents = new Map<string, { agent: SimulatedAgent; due: number }>();

  /**
   * @param ctx The object's state.
   * @param env The Worker's bindings (the agents' channels).
   */
  constructor(ctx: SimulatorState, env: unknown) {
    this.ctx = ctx;
    this.env = env;
  }

  /**
   * `POST /start?agents=N`: runs N simulated agents from now on.
   *
   * @param request The request.
   *
   * @returns 204, or 404 for anything else.
   */
  async fetch(request: Request): Promise<Response> {
    const url = new URL(request.url);
    const count = Number(url.searchParams.get('agents'));
    if (url.pathname !== '/start' || request.method !== 'POST' || !Number.isInteger(count) || count < 0) {
      return new Response('not found', { status: 404 });
    }
    await this.ctx.storage.put('agents', count);
    if (count > 0 && (await this.ctx.storage.getAlarm()) === null) await this.ctx.storage.setAlarm(Date.now());
    return new Response(null, { status: 204 });
  }

  /** Moves the agents that are due, publishes their updates, and sets the next alarm. */
  async alarm(): Promise<void> {
    const count = (await this.ctx.storage.get<number>('agents')) ?? 0;
    const now = Date.now();
    const publisher = hub.publisher(this.env);
    const published: Promise<void>[] = [];
    let next = Number.POSITIVE_INFINITY;
    for (const [index, agentId] of simulatedAgents(count).entries()) {
      let entry = this.agents.get(agentId);
      if (!entry) {
        entry = { agent: newSimulatedAgent(), due: now };
        this.agents.set(agentId, entry);
      }
      if (entry.due <= now) {
        // One agent's updates in order: each waits for the one before it.
        const steps = simulationStep(entry.agent);
        published.push(
          steps
            .reduce<Promise<unknown>>(
              (previous, { kind, update }) =>
                previous.then(() =>
                  kind === 'status' ? publisher.publishStatus(agentId, update) : publisher.publishTask(agentId, update),
                ),
              Promise.resolve(),
            )
            .then(ignore, ignore),
        );
        entry.due = now + simulationPace(index + 1);
      }
      next = Math.min(next, entry.due);
    }
    await Promise.all(published);
    if (next !== Number.POSITIVE_INFINITY) await this.ctx.storage.setAlarm(next);
  }
}

export default demoApp(settings, hub, hub.routes());
