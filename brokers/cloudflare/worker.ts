/**
 * The Worker's side of the agents' channels on Cloudflare: `cloudflareHub`, whose routes are the
 * hub's own (plugin/routes.ts: the same paths, checks, answers and error codes) with each agent's
 * requests forwarded to its Durable Object (`AgentChannelObject`), and the hub-wide figures
 * (stats, the agents listing, metrics) read from the directory object (`AgentDirectoryObject`).
 *
 * @module
 */
import { type Context, type Env, Hono } from 'hono';
import type { UpgradeWebSocket } from 'hono/ws';
import { discardUnreadBody } from '../../adapters/linger.ts';
import type { Log } from '../../plugin/core.ts';
import { createUpdateEncoder } from '../../plugin/encode.ts';
import type { ErrorKind } from '../../plugin/error-kinds.ts';
import { jsonLogger, type Logger } from '../../plugin/logger.ts';
import {
  BATCH_SIZE_BUCKETS,
  createHistogram,
  hubMetricFamilies,
  type MetricFamily,
  SEND_DELAY_BUCKETS,
} from '../../plugin/metrics.ts';
import type { AgentHubOptions, AuthorizeHook } from '../../plugin/options.ts';
import { resolveHubOptions } from '../../plugin/options.ts';
import { createUpdateBuilder } from '../../plugin/publishing.ts';
import { createRoutes } from '../../plugin/routes.ts';
import {
  StatusUpdateFieldsSchema,
  type StatusUpdateInput,
  TaskUpdateFieldsSchema,
  type TaskUpdateInput,
  type UnsequencedUpdate,
} from '../../plugin/schemas.ts';
import type { AgentsPage, HubStats } from '../../plugin/stats.ts';
import { DIRECTORY_HEADER, DIRECTORY_NAME, type DirectoryHistograms, REPORT_INTERVAL_HEADER } from './directory.ts';
import { AGENT_HEADER, type AgentObjectNamespace, OBJECT_ORIGIN, resumePointOf, wholeNumber } from './shared.ts';

/**
 * Options of `cloudflareHub`: the names of the two Durable Object bindings, and the hub's options
 * that apply in the Worker, with the hub's names and defaults.
 */
export interface CloudflareHubOptions<E extends Env = any>
  extends Pick<
    AgentHubOptions<E>,
    'authorize' | 'allowedOrigins' | 'ingest' | 'maxIngestBytes' | 'maxUpdateDepth' | 'logger'
  > {
  /** The binding (wrangler `durable_objects.bindings`) of the agents' `AgentChannelObject` class. Default `AGENT_CHANNEL`. */
  channel?: string;
  /** The binding of the `AgentDirectoryObject` class, which holds the hub-wide figures. Default `AGENT_DIRECTORY`. */
  directory?: string;
  /**
   * Milliseconds between two reports of an agent's object to the directory, at most: the stats,
   * the listing and the metrics are this stale (or one heartbeat, while the agent has sockets and
   * nothing else happens). An object reports only when its figures changed. Default 10000.
   */
  reportInterval?: number;
}

/**
 * Publishes to agents' objects from Worker code (a queue consumer, a cron, a route of the app).
 */
export interface CloudflarePublisher {
  /**
   * Publishes a status update; `type`, `agent_id` and `timestamp` are added.
   *
   * @returns A promise that resolves once the agent's object numbered and sent it, and rejects
   *   with `InvalidUpdateError` when the agent id or the update is invalid, or with an `Error`
   *   when the object did not take it.
   */
  publishStatus(agentId: string, update: StatusUpdateInput): Promise<void>;
  /**
   * Publishes a task update; `type`, `agent_id` and `timestamp` are added.
   *
   * @returns As `publishStatus`; a `result` nesting deeper than `maxUpdateDepth` is invalid.
   */
  publishTask(agentId: string, update: TaskUpdateInput): Promise<void>;
}

/**
 * The hub of a Worker: its routes, a publisher per env, and the hub-wide stats.
 */
export interface CloudflareHub<E extends Env = any> {
  /**
   * Builds the Hono app to mount: `app.route('/agents', hub.routes())`. The hub's routes (the
   * WebSocket, the stats, the agents listing, the metrics and, with `ingest`, the ingest route),
   * with the hub's checks in the Worker (`authorize`, `allowedOrigins`) before anything reaches an
   * object.
   *
   * @returns The routes.
   */
  routes(): Hono<E>;
  /**
   * A publisher on the env's bindings: `hub.publisher(c.env).publishStatus('agent-1', {...})`.
   *
   * @param env The Worker's env (`c.env`, or the `env` of `fetch`, `queue`, `scheduled`).
   * @param ctx The invocation's `ExecutionContext`, when there is one: a failure is then counted
   *   in the background rather than before the promise rejects.
   *
   * @returns The publisher.
   */
  publisher(env: unknown, ctx?: WaitUntil): CloudflarePublisher;
  /**
   * The hub-wide stats, summed from the agents' reports to the directory (as stale as
   * `reportInterval`), as `GET /ws/stats` serves them.
   *
   * @param c The request (its env reaches the directory).
   *
   * @returns The stats.
   */
  stats(c: Context<E>): Promise<HubStats>;
}

/** What the hub uses of an `ExecutionContext`. */
export interface WaitUntil {
  waitUntil(promise: Promise<unknown>): void;
}

/** A Durable Object namespace of the env, by its binding's name. */
const namespaceIn = (env: unknown, binding: string): AgentObjectNamespace => {
  const namespace = (env as Record<string, AgentObjectNamespace | undefined> | undefined)?.[binding];
  if (!namespace || typeof namespace.idFromName !== 'function') {
    throw new Error(`hono-agent-ws: no Durable Object binding named ${binding} in the Worker's env`);
  }
  return namespace;
};

/** The invocation's `ExecutionContext`, if the runtime gave one (Hono's getter throws when not). */
const executionOf = (c: Context): WaitUntil | undefined => {
  try {
    return c.executionCtx;
  } catch {
    return undefined;
  }
};

/**
 * Creates the hub of a Worker. The agents' channels live in their objects; the Worker holds
 * nothing between requests, so every figure it counts (a refused request) goes to the directory.
 *
 * @param options The bindings' names and the hub's options; see `CloudflareHubOptions`.
 *
 * @returns The hub.
 *
 * @throws {TypeError} When an option is invalid.
 *
 * @example
 * ```ts
 * const hub = cloudflareHub({ channel: 'AGENT_CHANNEL', directory: 'AGENT_DIRECTORY', ingest: true });
 * app.route('/agents', hub.routes());
 * ```
 */
export function cloudflareHub<E extends Env = any>(options: CloudflareHubOptions<E> = {}): CloudflareHub<E> {
  const { channel = 'AGENT_CHANNEL', directory = 'AGENT_DIRECTORY', reportInterval = 10_000, ...hubOptions } = options;
  let config: ReturnType<typeof resolveHubOptions>;
  try {
    config = resolveHubOptions(hubOptions as AgentHubOptions);
    wholeNumber('reportInterval', reportInterval);
    for (const [name, binding] of [
      ['channel', channel],
      ['directory', directory],
    ] as const) {
      if (typeof binding !== 'string' || binding === '') throw new Error(`${name} must name a binding`);
    }
  } catch (error) {
    // The hub's own validation, named after this function.
    throw new TypeError(String((error as Error).message).replace(/^createAgentHub: /, 'cloudflareHub: '));
  }
  const logger: Logger | undefined = config.logger === false ? undefined : (config.logger ?? jsonLogger);
  const log: Log = (level, event, details) => {
    try {
      logger?.({ level, event, time: new Date().toISOString(), ...details });
    } catch {
      // A failing logger must not fail the request.
    }
  };
  const builder = createUpdateBuilder(config.maxUpdateDepth, createUpdateEncoder());
  /** Tells the object where its directory is and how often to report to it. */
  const objectHeaders = (agentId: string, from?: Headers): Headers => {
    const headers = new Headers(from);
    headers.set(AGENT_HEADER, agentId);
    headers.set(DIRECTORY_HEADER, directory);
    headers.set(REPORT_INTERVAL_HEADER, String(reportInterval));
    return headers;
  };
  const directoryStub = (env: unknown) => {
    const namespace = namespaceIn(env, directory);
    return namespace.get(namespace.idFromName(DIRECTORY_NAME));
  };
  /** A GET on the directory's own route, its JSON answer. */
  const askDirectory = async <T>(env: unknown, path: string): Promise<T> => {
    const response = await directoryStub(env).fetch(new Request(`${OBJECT_ORIGIN}${path}`));
    if (!response.ok) throw new Error(`the directory answered HTTP ${response.status}`);
    return (await response.json()) as T;
  };

  /** Adds counts to the directory's; a failure is logged (the counts are lost, the request is not). */
  const sendCounts = async (env: unknown, counts: Partial<Record<ErrorKind, number>>): Promise<void> => {
    try {
      await directoryStub(env).fetch(
        new Request(`${OBJECT_ORIGIN}/errors`, { method: 'POST', body: JSON.stringify(counts) }),
      );
    } catch (error) {
      log('error', 'internal_error', { operation: 'count_errors', error: String(error) });
    }
  };
  // Errors counted in this isolate, sent to the directory together: while one request's report
  // is on its way (in its `waitUntil`), the errors meanwhile wait for the next, so a burst of
  // refusals costs few requests.
  let pending: Partial<Record<ErrorKind, number>> = {};
  let sending: Promise<void> | undefined;
  const sendPending = async (env: unknown): Promise<void> => {
    while (Object.keys(pending).length > 0) {
      const counts = pending;
      pending = {};
      await sendCounts(env, counts);
    }
  };
  /**
   * Counts an error in the directory: in the background with the invocation's `waitUntil`, else
   * at once, on its own (a promise of another request's work is not awaited across requests).
   */
  const countError = (kind: ErrorKind, env: unknown, ctx: WaitUntil | undefined): Promise<void> => {
    if (!ctx) return sendCounts(env, { [kind]: 1 });
    pending[kind] = (pending[kind] ?? 0) + 1;
    if (!sending) {
      sending = sendPending(env).finally(() => {
        sending = undefined;
      });
      ctx.waitUntil(sending);
    }
    return sending;
  };

  /** Hands complete updates of one agent to its object, which numbers, stores and sends them. */
  const publishTo = async (env: unknown, agentId: string, updates: readonly UnsequencedUpdate[], ctx?: WaitUntil) => {
    let status: number;
    try {
      const namespace = namespaceIn(env, channel);
      const response = await namespace.get(namespace.idFromName(agentId)).fetch(
        new Request(`${OBJECT_ORIGIN}/publish`, {
          method: 'POST',
          headers: objectHeaders(agentId, new Headers({ 'Content-Type': 'application/json' })),
          body: JSON.stringify(updates),
        }),
      );
      status = response.status;
    } catch (error) {
      log('error', 'broker_error', { agent_id: agentId, operation: 'publish', error: String(error) });
      const counted = countError('broker_error', env, ctx);
      if (!ctx) await counted;
      throw error;
    }
    if (status !== 202) {
      log('error', 'broker_error', { agent_id: agentId, operation: 'publish', status });
      const counted = countError('broker_error', env, ctx);
      if (!ctx) await counted;
      throw new Error(`hono-agent-ws: the agent's object refused the update: HTTP ${status}`);
    }
  };

  const stats = (c: Context): Promise<HubStats> => askDirectory<HubStats>(c.env, '/stats');

  const metrics = async (c: Context): Promise<MetricFamily[]> => {
    const { stats: figures, histograms } = await askDirectory<{ stats: HubStats; histograms: DirectoryHistograms }>(
      c.env,
      '/metrics',
    );
    const families = hubMetricFamilies({
      stats: figures,
      batchSize: histograms.batch_size ?? createHistogram(BATCH_SIZE_BUCKETS),
      sendDelay: histograms.send_delay ?? createHistogram(SEND_DELAY_BUCKETS),
    });
    // A histogram no agent reported is left out (a family without samples is not rendered),
    // not shown empty as if it had been measured.
    for (const [name, histogram] of [
      ['hono_agent_ws_batch_size_updates', histograms.batch_size],
      ['hono_agent_ws_send_delay_seconds', histograms.send_delay],
    ] as const) {
      const family = families.find((candidate) => candidate.name === name);
      if (family && histogram === null) family.values = [];
    }
    return families;
  };

  const listAgents = (after: string | undefined, limit: number, maxTasks: number, c: Context): Promise<AgentsPage> => {
    const query = new URLSearchParams({ limit: String(limit), tasks: String(maxTasks) });
    if (after !== undefined) query.set('after', after);
    return askDirectory<AgentsPage>(c.env, `/agents?${query}`);
  };

  /**
   * The WebSocket route's "upgrade": the hub's route ran its checks (agent id, origin, resume
   * point, `authorize`, a WebSocket request); the agent's object accepts the socket.
   */
  const forwardToObject: UpgradeWebSocket<any, any> = (() => async (c: Context) => {
    const agentId = c.req.param('agent_id') as string;
    const resume = resumePointOf(new URL(c.req.url).searchParams);
    const query = resume ? `?since=${resume.since}&epoch=${resume.epoch}` : '';
    const namespace = namespaceIn(c.env, channel);
    return namespace
      .get(namespace.idFromName(agentId))
      .fetch(new Request(`${OBJECT_ORIGIN}/ws${query}`, { headers: objectHeaders(agentId, c.req.raw.headers) }));
  }) as unknown as UpgradeWebSocket<any, any>;

  const notConnectable = () => {
    throw new Error('hono-agent-ws: on Workers the agent’s object accepts the socket');
  };

  return {
    routes: () => {
      const app = new Hono<E>();
      // A refusal answered before its body was read (the 413 of an oversized ingest, a 401):
      // workerd resets about half such connections while the client still writes, and the
      // client never sees the status. The Worker reads the rest first, within LINGER_LIMITS.
      app.use(async (c, next) => {
        await next();
        if (c.req.method !== 'GET' && c.req.method !== 'HEAD' && c.res.status !== 101) {
          await discardUnreadBody(c.req.raw);
        }
      });
      const hubRoutes = createRoutes(
        {
          config,
          // A Worker is never shutting down as a process is: each request is on its own.
          isClosing: () => false,
          connect: notConnectable,
          countError: (kind, c) => {
            if (c) void countError(kind, c.env, executionOf(c));
          },
          internalError: (operation, error, agentId, c) => {
            log('error', 'internal_error', { agent_id: agentId, operation, error: String(error) });
            if (c) void countError('internal_error', c.env, executionOf(c));
          },
          log,
          stats,
          metrics,
          listAgents,
          prepareUpdate: (agentId, item) => builder.buildUpdate(agentId, item.type, item),
          publish: (updates, c) =>
            updates.length === 0
              ? Promise.resolve()
              : publishTo(c.env, (updates[0] as UnsequencedUpdate).agent_id, updates, executionOf(c)),
          authorize: config.authorize as AuthorizeHook | undefined,
        },
        forwardToObject,
      ) as unknown as Hono<E>;
      return app.route('/', hubRoutes);
    },
    publisher: (env, ctx) => {
      const publish = async (
        agentId: string,
        type: 'status_update' | 'task_update',
        schema: typeof StatusUpdateFieldsSchema | typeof TaskUpdateFieldsSchema,
        update: unknown,
      ): Promise<void> => {
        const built = builder.checkFields(agentId, type, schema, update);
        await publishTo(env, agentId, [built], ctx);
      };
      return {
        publishStatus: (agentId, update) => publish(agentId, 'status_update', StatusUpdateFieldsSchema, update),
        publishTask: (agentId, update) => publish(agentId, 'task_update', TaskUpdateFieldsSchema, update),
      };
    },
    stats: (c) => stats(c),
  };
}
