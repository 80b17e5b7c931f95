import { type Broker, memoryBroker } from './broker.ts';
import type { Channel, Connection } from './channel.ts';
import { createUpdateEncoder, type UpdateEncoder } from './encode.ts';
import type { ErrorKind } from './error-kinds.ts';
import { createHubCounters, type HubCounters } from './figures.ts';
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
  readonly batchSize: Histogram;
  readonly sendDelay: Histogram;
  readonly connections: Set<Connection>;
  /** The agents with connections here, by id. */
  readonly channels: Map<string, Channel>;
  readonly broker: Broker;
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
  const connections = new Set<Connection>();

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
    sizeOf: (update) => encoder.sizeOf(update),
    bodyOf: (update) => encoder.body(update),
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
    batchSize: createHistogram(BATCH_SIZE_BUCKETS),
    sendDelay: createHistogram(SEND_DELAY_BUCKETS),
    connections,
    channels: new Map(),
    broker,
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
