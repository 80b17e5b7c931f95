import type { Env, Hono } from 'hono';
import type { UpgradeWebSocket } from 'hono/ws';
import { createAdmission } from './admission.ts';
import { type AgentHandle, type AgentHandleOptions, createAgentHandle } from './agent-handle.ts';
import type { RoutesOptions, RuntimeBinding } from './binding.ts';
import { CloseCode } from './close-codes.ts';
import { createHubCore } from './core.ts';
import { createDelivery } from './delivery.ts';
import { createDeparture } from './departure.ts';
import { createEstablish } from './establish.ts';
import { startHeartbeat } from './heartbeat.ts';
import type { MetricFamily } from './metrics.ts';
import type { AgentHubOptions, ResolvedHubOptions } from './options.ts';
import { createPublishing } from './publishing.ts';
import { createReceiver } from './receiver.ts';
import { createReports } from './reports.ts';
import { createRoutes } from './routes.ts';
import {
  StatusUpdateFieldsSchema,
  type StatusUpdateInput,
  TaskUpdateFieldsSchema,
  type TaskUpdateInput,
} from './schemas.ts';
import { createSockets } from './sockets.ts';
import type { HubStats } from './stats.ts';

export { QUEUE_HANDOVER_MS } from './admission.ts';

/**
 * The agent hub: holds every connection, batches and queues updates, runs the heartbeat.
 */
export interface AgentHub<E extends Env = any> {
  /** The options in force, defaults applied. */
  readonly options: Readonly<Omit<ResolvedHubOptions, 'broker' | 'logger' | 'authorize'>>;
  /**
   * Builds the Hono app to mount: `app.route('/agents', hub.routes(bun))`, with the binding of
   * the runtime's adapter (`node`, `deno`, `bun`).
   *
   * @param runtime The adapter's binding.
   *
   * @returns The routes: the WebSocket, the stats and, with `ingest`, the ingest route.
   */
  routes(runtime: RuntimeBinding): Hono<E>;
  /**
   * Builds the Hono app to mount on a runtime without an adapter here:
   * `app.route('/agents', hub.routes(upgradeWebSocket))`.
   *
   * @param upgradeWebSocket The runtime's `upgradeWebSocket` (e.g. from `@hono/node-ws`'s
   *   `createNodeWebSocket`).
   * @param options Details of the runtime's sockets, where they differ from the standard ones.
   *
   * @returns The routes: the WebSocket, the stats and, with `ingest`, the ingest route.
   */
  routes(upgradeWebSocket: UpgradeWebSocket<any, any>, options?: RoutesOptions): Hono<E>;
  /**
   * Publishes a status update; the hub adds `type`, `agent_id` and `timestamp`.
   *
   * @returns A promise that resolves once the broker accepted the update, and rejects with
   *   `InvalidUpdateError` when the agent id or the update is invalid, or with the broker's
   *   error when it could not take it (never throws synchronously).
   */
  publishStatus(agentId: string, update: StatusUpdateInput): Promise<void>;
  /**
   * Publishes a task update; the hub adds `type`, `agent_id` and `timestamp`.
   *
   * @returns A promise that resolves once the broker accepted the update, and rejects with
   *   `InvalidUpdateError` when the agent id or the update is invalid (a `result` nesting deeper
   *   than `maxUpdateDepth` or that cannot be serialised to JSON included), or with the broker's
   *   error when it could not take it (never throws synchronously).
   */
  publishTask(agentId: string, update: TaskUpdateInput): Promise<void>;
  /**
   * A handle on one agent for code that reports step by step (and for the engine bridges):
   * `hub.agent(id).task(taskId).progress(40)`, then `.complete(result)` or `.fail(error)`; see
   * `AgentHandle`. Cheap: holds no resource, nothing is kept for it in the hub.
   *
   * @throws {InvalidUpdateError} When the agent id is invalid.
   * @throws {TypeError} When an option is invalid.
   */
  agent(agentId: string, options?: AgentHandleOptions): AgentHandle;
  /**
   * This instance's counters. `GET /ws/stats` serves them and, when the broker spans several
   * instances (Redis), adds the cluster-wide figures as `cluster`.
   */
  stats(): HubStats;
  /**
   * Every figure of the stats (with `cluster` from a broker that spans several instances) and
   * the batch size and send delay histograms, as metric families: what `GET /ws/metrics`
   * renders and `registerHubMetrics` hands to an app's prom-client registry.
   */
  metrics(): Promise<MetricFamily[]>;
  /** Flushes pending batches, closes every socket with 1001, stops every timer and the broker. */
  close(): Promise<void>;
}

/**
 * Creates an agent hub: the parts of plugin/ wired together, each with one job (see
 * docs/architecture.md). An update goes in through `publishing`, the broker numbers it and
 * delivers it to `delivery`, which batches it and writes it through the fan-out; `sockets`
 * and `admission` let connections in, `receiver` answers what they send, `heartbeat` and
 * `departure` let them out.
 *
 * @param options The hub options; see `AgentHubOptions`.
 *
 * @returns The hub.
 *
 * @throws {TypeError} When an option is invalid.
 */
export function createAgentHub<E extends Env = any>(options: AgentHubOptions<E> = {}): AgentHub<E> {
  const core = createHubCore(options);
  const departure = createDeparture(core);
  const delivery = createDelivery(core, departure);
  const receiver = createReceiver(core, departure, delivery.fanOut);
  const establish = createEstablish(core, delivery.fanOut, receiver);
  const admission = createAdmission(core, departure, delivery, establish);
  const connect = createSockets(core, departure, delivery, receiver, admission);
  const heartbeat = startHeartbeat(core, departure, delivery.fanOut);
  const publishing = createPublishing(core);
  const reports = createReports(core, departure);
  const { config } = core;
  const { broker: _broker, logger: _logger, authorize, ...publicOptions } = config;

  const hub: AgentHub<E> = {
    options: Object.freeze(publicOptions),
    routes(runtime: RuntimeBinding | UpgradeWebSocket<any, any>, routesOptions?: RoutesOptions): Hono<E> {
      const [upgradeWebSocket, details] =
        typeof runtime === 'function' ? [runtime, routesOptions] : [runtime.upgradeWebSocket, runtime];
      return createRoutes(
        {
          config,
          isClosing: () => core.closing,
          connect,
          countError: core.countError,
          internalError: core.internalError,
          log: core.log,
          stats: reports.statsWithCluster,
          metrics: reports.metrics,
          listAgents: reports.listAgents,
          prepareUpdate: publishing.prepareUpdate,
          publish: publishing.publishAll,
          authorize,
        },
        upgradeWebSocket,
        details,
      ) as unknown as Hono<E>;
    },
    publishStatus: (agentId, update) =>
      publishing.publishFields(agentId, 'status_update', StatusUpdateFieldsSchema, update),
    publishTask: (agentId, update) => publishing.publishFields(agentId, 'task_update', TaskUpdateFieldsSchema, update),
    agent: (agentId, handleOptions) =>
      createAgentHandle(hub, agentId, handleOptions, (operation, error) =>
        core.internalError(operation, error, agentId),
      ),
    stats: reports.stats,
    metrics: reports.metrics,
    async close() {
      if (core.closing) return;
      core.closing = true;
      heartbeat.stop();
      delivery.windows.clear();
      for (const channel of core.channels.values()) {
        if (channel.state === 'live' && channel.pending.length > 0) {
          try {
            delivery.flush(channel);
          } catch (error) {
            core.internalError('flush', error, channel.agentId);
          }
        }
      }
      for (const connection of [...core.connections]) departure.drop(connection, CloseCode.GOING_AWAY, {});
      await Promise.all(departure.pendingLeaves);
      await core.broker.close();
      core.throttle.close();
      core.log('info', 'hub_closed', { total_connections: core.counters.total_connections });
    },
  };
  return hub;
}
