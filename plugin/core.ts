import { createStateLedger, type StateLedger } from './agent-state.ts';
import { type Broker, memoryBroker } from './broker.ts';
import type { Channel, Connection } from './channel.ts';
import { createUpdateEncoder, type UpdateEncoder } from './encode.ts';
import type { ErrorKind } from './error-kinds.ts';
import { createEvictionCounters, createHubCounters, type EvictionKind, type HubCounters } from './figures.ts';
import { jsonLogger, type LogEntry, type Logger } from './logger.ts';
import { BATCH_SIZE_BUCKETS, createHistogram, type Histogram, SEND_DELAY_BUCKETS } from './metrics.ts';
import { type AgentHubOptions, type ResolvedHubOptions, resolveHubOptions } from './options.ts';
import type { AgentUpdate } from './schemas.ts';
import { createErrorCounters } from './stats.ts';
import { createLogThrottle, type LogThrottle } from './throttle.ts';

/**
 * Writes one log line; a logger that throws is ignored.
 *
 * @internal
 */
export type Log = (
  level: LogEntry['level'],
  event: LogEntry['event'],
  details: Omit<LogEntry, 'level' | 'event' | 'time'>,
) => void;

/**
 * What every part of one hub shares: its options, its state (connections, channels, the
 * broker), its counters and how it reports a failure. The parts (plugin/departure.ts,
 * plugin/delivery.ts, plugin/admission.ts, ...) each take it and add one job.
 *
 * @internal
 */
export interface HubCore {
  readonly config: ResolvedHubOptions;
  readonly log: Log;
  /** Warnings a client or a publisher can cause at will: one line per key per interval. */
  readonly throttle: LogThrottle;
  /** Serialises each update once, for every frame it goes in. */
  readonly encoder: UpdateEncoder;
  readonly instanceId: string;
  /** Start of connection ids and native topic names: unique per hub. */
  readonly idPrefix: string;
  readonly startedAt: number;
  readonly counters: HubCounters;
  readonly errors: Record<ErrorKind, number>;
  readonly evictions: Record<EvictionKind, number>;
  readonly batchSize: Histogram;
  readonly sendDelay: Histogram;
  readonly connections: Set<Connection>;
  /** The agents with connections here, by id. */
  readonly channels: Map<string, Channel>;
  readonly broker: Broker;
  /** The state of each agent with a connection here, as of what was sent: what snapshots show. */
  readonly liveStates: StateLedger<Channel>;
  /** Moves a channel's state forward; an update that cannot be serialised is reported with its frame. */
  remember(channel: Channel, update: AgentUpdate): void;
  /** `close()` began: no new connection, no new update. */
  closing: boolean;
  countError(kind: ErrorKind): void;
  /** A failure contained inside the hub: counted, logged (throttled), and it costs one update or one event. */
  internalError(operation: string, error: unknown, agentId?: string): void;
  /** A broker call failed: counted and logged. */
  brokerFailed(operation: string, agentId: string | undefined, error: unknown): void;
  /** An accepted update that could not be serialised after all (e.g. one a broker handed back). */
  updateFailed(agentId: string): (update: AgentUpdate, error: unknown) => void;
  /** Runs a broker callback or answer: whatever it throws costs that one step, nothing more. */
  contained<A extends unknown[]>(operation: string, agentId: string, step: (...args: A) => void): (...args: A) => void;
}

/**
 * Creates the shared core of a hub, and its broker.
 *
 * @param options The hub options.
 *
 * @returns The core.
 *
 * @throws {TypeError} When an option is invalid.
 *
 * @internal
 */
export function createHubCore(options: AgentHubOptions): HubCore {
  const config = resolveHubOptions(options);
  const logger: Logger | undefined = config.logger === false ? undefined : (config.logger ?? jsonLogger);
  const log: Log = (level, event, details) => {
    if (!logger) return;
    try {
      logger({ level, event, time: new Date().toISOString(), ...details });
    } catch {
      // A failing logger must not take the hub down with it.
    }
  };
  const throttle = createLogThrottle(config.logInterval, log);
  const encoder = createUpdateEncoder();
  const instanceId = crypto.randomUUID();
  const errors = createErrorCounters();
  const counters = createHubCounters();
  const evictions = createEvictionCounters();
  const connections = new Set<Connection>();
  /** Data given up to stay within the byte limits: counted by kind, logged (throttled) with a count. */
  const evicted = (agentId: string, kind: EvictionKind, count: number) => {
    evictions[kind] += count;
    throttle.note(`eviction:${kind}`, 'warn', 'eviction', { agent_id: agentId, kind }, count);
  };

  const countError = (kind: ErrorKind) => {
    errors[kind]++;
  };
  const internalError = (operation: string, error: unknown, agentId?: string) => {
    countError('internal_error');
    throttle.note(`internal_error:${operation}`, 'error', 'internal_error', {
      agent_id: agentId,
      operation,
      error: String(error),
    });
  };
  const brokerFailed = (operation: string, agentId: string | undefined, error: unknown) => {
    countError('broker_error');
    log('error', 'broker_error', { agent_id: agentId, operation, error: String(error) });
  };

  const broker: Broker = (config.broker ?? memoryBroker())({
    maxQueueSize: config.maxQueueSize,
    maxQueueBytes: config.maxQueueBytes,
    maxTotalQueueBytes: config.maxTotalQueueBytes,
    queueTtl: config.queueTtl,
    historySize: config.historySize,
    maxHistoryBytes: config.maxHistoryBytes,
    maxTotalHistoryBytes: config.maxTotalHistoryBytes,
    maxStateBytes: config.maxStateBytes,
    maxTotalStateBytes: config.maxTotalStateBytes,
    sizeOf: (update) => encoder.sizeOf(update),
    bodyOf: (update) => encoder.body(update),
    jsonOf: (update) => encoder.json(update),
    parse: (json) => encoder.adopt(json),
    onEvicted: evicted,
    onDropped(agentId, count, reason = 'count') {
      counters.messages_dropped += count;
      throttle.note(`queue_drop:${agentId}`, 'warn', 'queue_drop', { agent_id: agentId, reason }, count);
    },
    // For networked brokers: the same id in Redis as in the stats, failures the broker meets
    // on its own (a lost connection) counted like any other broker error, and the figures the
    // broker shares for the cluster-wide stats.
    instanceId,
    onError: (operation, error, agentId) => brokerFailed(operation, agentId, error),
    localFigures: () => ({ active_connections: connections.size }),
  });

  const liveStates = createStateLedger<Channel>(
    config.maxStateBytes,
    config.maxTotalStateBytes,
    (channel, kind, count) => evicted(channel.agentId, kind, count),
  );
  const remember = (channel: Channel, update: AgentUpdate) => {
    let json: string;
    try {
      json = encoder.json(update);
    } catch {
      return;
    }
    liveStates.apply(channel, channel.agent, update, json);
  };

  return {
    config,
    log,
    throttle,
    encoder,
    instanceId,
    idPrefix: instanceId.slice(0, 8),
    startedAt: Date.now(),
    counters,
    errors,
    evictions,
    batchSize: createHistogram(BATCH_SIZE_BUCKETS),
    sendDelay: createHistogram(SEND_DELAY_BUCKETS),
    connections,
    channels: new Map(),
    broker,
    liveStates,
    remember,
    closing: false,
    countError,
    internalError,
    brokerFailed,
    updateFailed: (agentId) => (_update, error) => internalError('serialize', error, agentId),
    contained:
      (operation, agentId, step) =>
      (...args) => {
        try {
          step(...args);
        } catch (error) {
          internalError(operation, error, agentId);
        }
      },
  };
}
