import type { Env, Hono } from 'hono';
import type { UpgradeWebSocket, WSContext, WSEvents, WSMessageReceive } from 'hono/ws';
import * as v from 'valibot';
import { type AgentHandle, type AgentHandleOptions, createAgentHandle } from './agent-handle.ts';
import { type AgentState, applyUpdate, createAgentState } from './agent-state.ts';
import { type Broker, type Joined, memoryBroker, type UnsubscribeReceipt } from './broker.ts';
import { CLOSE_REASONS, CloseCode } from './close-codes.ts';
import { createUpdateEncoder, nestsDeeperThan } from './encode.ts';
import { InvalidUpdateError } from './errors.ts';
import { createFanOut } from './fanout.ts';
import { classifyFrame, classifySocketFailure, type InboundBudget, spendFrame } from './inbound.ts';
import { jsonLogger, type LogEntry, type Logger } from './logger.ts';
import {
  BATCH_SIZE_BUCKETS,
  createHistogram,
  hubMetricFamilies,
  type MetricFamily,
  observe,
  SEND_DELAY_BUCKETS,
} from './metrics.ts';
import { type AgentHubOptions, type ResolvedHubOptions, resolveHubOptions } from './options.ts';
import { AGENT_ID, createRoutes, type RoutesOptions, type RuntimeBinding, type SocketBinding } from './routes.ts';
import {
  AgentIdSchema,
  type AgentUpdate,
  type ErrorCode,
  type IngestItem,
  StatusUpdateFieldsSchema,
  type StatusUpdateInput,
  TaskUpdateFieldsSchema,
  type TaskUpdateInput,
  type UnsequencedUpdate,
} from './schemas.ts';
import { type AgentSummary, type AgentsPage, createErrorCounters, type ErrorKind, type HubStats } from './stats.ts';
import { createLogThrottle } from './throttle.ts';
import { createWindowScheduler } from './windows.ts';

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
 * One open WebSocket. State lives here, not on the runtime's context object (Bun hands a
 * fresh context to every event).
 *
 * @internal
 */
interface Connection extends InboundBudget {
  readonly id: string;
  readonly channel: Channel;
  readonly socket: WSContext;
  readonly binding: SocketBinding;
  /** Answered since the last ping. */
  alive: boolean;
  /** Still counted; false once removed, whoever noticed first. */
  open: boolean;
  /** `connection_established` sent: from then on the client gets every update published. */
  established: boolean;
  /** Frames that arrived before `connection_established` went out; answered right after it. */
  early: WSMessageReceive[] | undefined;
  /** Where the client asked to resume from (`?since=&epoch=`). */
  readonly resume: ResumePoint | undefined;
}

/**
 * Where a client asks to resume: the last `seq` it has, in `epoch`.
 */
export interface ResumePoint {
  readonly since: number;
  readonly epoch: string;
}

/**
 * One agent with local connections: the unit of fan-out, batching and broker subscription.
 *
 * @internal
 */
interface Channel {
  readonly agentId: string;
  readonly connections: Set<Connection>;
  /** `joining` until the broker answered the subscription with the offline queue. */
  state: 'joining' | 'live' | 'gone';
  /** The agent's stream: its epoch, the last `seq` accepted into `pending` and the last sent. */
  epoch: string;
  headSeq: number;
  flushedSeq: number;
  /** The agent's state as of `flushedSeq`: what a snapshot shows. */
  agent: AgentState;
  /** Connections whose resume history is being read: nothing is flushed meanwhile. */
  pauses: number;
  /**
   * The offline queue this channel took and every update sent since, for connections that join
   * within `QUEUE_HANDOVER_MS` after it: they get the same `queue` batch as the first.
   */
  handover: { readonly updates: AgentUpdate[]; readonly until: number } | undefined;
  /** Updates held for the end of the window (or, while joining, for the end of the join). */
  pending: AgentUpdate[];
  windowOpen: boolean;
  deadline: number;
  /**
   * The binding whose native pub/sub fans this agent's frames out, while every connection
   * shares it; `null` once connections of different bindings mix (then: one write per socket).
   */
  topicBinding: SocketBinding | null | undefined;
  /** Characters broadcast since the sockets' send buffers were last looked at (plugin/fanout.ts). */
  unchecked: number;
}

/** Most frames held from a client before its `connection_established` is sent. */
const MAX_EARLY_FRAMES = 16;

/**
 * Milliseconds after a channel took its offline queue during which joining connections get it
 * too: watchers that open together (a dashboard with several panes, a reconnect storm) all see
 * the same queue, not only the first.
 */
export const QUEUE_HANDOVER_MS = 1000;

/** A promise that needs no allocation per publish. */
const DONE: Promise<void> = Promise.resolve();

/**
 * Creates an agent hub.
 *
 * @param options The hub options; see `AgentHubOptions`.
 *
 * @returns The hub.
 *
 * @throws {TypeError} When an option is invalid.
 */
export function createAgentHub<E extends Env = any>(options: AgentHubOptions<E> = {}): AgentHub<E> {
  const config = resolveHubOptions(options);
  const { heartbeatInterval, batchInterval, maxMessageSize, maxBufferedAmount, maxInboundRate, maxInboundBurst } =
    config;
  const logger: Logger | undefined = config.logger === false ? undefined : (config.logger ?? jsonLogger);
  const log = (
    level: LogEntry['level'],
    event: LogEntry['event'],
    details: Omit<LogEntry, 'level' | 'event' | 'time'>,
  ) => {
    if (!logger) return;
    try {
      logger({ level, event, time: new Date().toISOString(), ...details });
    } catch {
      // A failing logger must not take the hub down with it.
    }
  };
  // Warnings a client or a publisher can cause at will are throttled: one line per key per
  // interval, with a count, so they cannot flood the logs.
  const throttle = createLogThrottle(config.logInterval, log);
  const encoder = createUpdateEncoder();

  const startedAt = Date.now();
  const instanceId = crypto.randomUUID();
  const idPrefix = instanceId.slice(0, 8);
  let connectionSeq = 0;
  const errors = createErrorCounters();
  const counters = {
    total_connections: 0,
    messages_sent: 0,
    messages_received: 0,
    updates_published: 0,
    batches_sent: 0,
    messages_queued: 0,
    messages_dropped: 0,
  };
  const countError = (kind: ErrorKind) => {
    errors[kind]++;
  };
  const batchSize = createHistogram(BATCH_SIZE_BUCKETS);
  const sendDelay = createHistogram(SEND_DELAY_BUCKETS);
  /** A failure contained inside the hub: counted, logged (throttled), and it costs one update or one event. */
  const internalError = (operation: string, error: unknown, agentId?: string) => {
    countError('internal_error');
    throttle.note(`internal_error:${operation}`, 'error', 'internal_error', {
      agent_id: agentId,
      operation,
      error: String(error),
    });
  };

  const connections = new Set<Connection>();
  const channels = new Map<string, Channel>();
  let closing = false;

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

  // ---- sending: plugin/fanout.ts writes, the hub decides what a failure costs ------------

  const { sendTo, sendPrepared, preparer, broadcast, topicOf } = createFanOut<Connection>({
    maxBufferedAmount,
    topicPrefix: idPrefix,
    sent: (count) => {
      counters.messages_sent += count;
    },
    failed: (connection, error) => {
      countError('send_failed');
      drop(connection, CloseCode.INTERNAL_ERROR, { error: String(error) });
    },
    slow: (connection) => {
      countError('slow_consumer');
      drop(connection, CloseCode.SLOW_CONSUMER, {});
    },
    topicFailed: (agentId, error) => {
      countError('send_failed');
      log('error', 'send_error', { agent_id: agentId, via: 'topic', error: String(error) });
    },
  });

  /** An accepted update that could not be serialised after all (e.g. one a broker handed back). */
  const updateFailed = (agentId: string) => (_update: AgentUpdate, error: unknown) =>
    internalError('serialize', error, agentId);

  /**
   * Stops counting connections whose socket is closing: a close frame was received or sent, so
   * a frame written now would be lost. When the last one goes, the channel's pending updates go
   * back to the queue (`removeConnection`).
   *
   * @returns Whether the channel still has connections to send to.
   */
  const releaseClosing = (channel: Channel): boolean => {
    // Every socket on a binding whose runtime reports the close as soon as a close frame is
    // read or sent: a closing socket has already been removed by its close event.
    if (channel.topicBinding?.closeReported) return channel.state === 'live';
    for (const connection of channel.connections) {
      if (connection.binding.isOpen(connection.socket)) continue;
      if (removeConnection(connection)) {
        log('info', 'connection_close', {
          agent_id: channel.agentId,
          connection_id: connection.id,
          code: 'closing',
        });
      }
    }
    return channel.state === 'live';
  };

  /**
   * Sends what the channel holds: alone if one update, else as one `batch_update`. Nothing held,
   * nothing done: releasing closing sockets looks at every socket of the agent, which for every
   * newcomer to a busy agent would make n connections cost O(n²).
   */
  const flush = (channel: Channel) => {
    if (channel.pending.length === 0 || channel.pauses > 0 || !releaseClosing(channel)) return;
    const updates = channel.pending;
    channel.pending = [];
    if (updates.length === 0) return;
    for (const update of updates) applyUpdate(channel.agent, update);
    channel.flushedSeq = (updates[updates.length - 1] as AgentUpdate).seq;
    if (channel.handover) {
      if (performance.now() < channel.handover.until) channel.handover.updates.push(...updates);
      else channel.handover = undefined;
    }
    let frame: string | undefined;
    if (updates.length === 1) {
      try {
        frame = encoder.json(updates[0] as AgentUpdate);
      } catch (error) {
        updateFailed(channel.agentId)(updates[0] as AgentUpdate, error);
      }
    } else {
      frame = encoder.batch(channel.agentId, updates, 'window', updateFailed(channel.agentId));
      if (frame !== undefined) {
        counters.batches_sent++;
        observe(batchSize, updates.length);
      }
    }
    if (frame === undefined) return;
    broadcast(channel, frame);
    // Once per frame per agent, from its oldest update's timestamp (set when it was accepted,
    // on whichever instance): the window, the broker and the write are all in it.
    const accepted = Date.parse((updates[0] as AgentUpdate).timestamp);
    if (!Number.isNaN(accepted)) observe(sendDelay, Math.max(0, Date.now() - accepted) / 1000);
  };

  // ---- batching: one timer per hub ---------------------------------------------------------

  const windows = createWindowScheduler<Channel>(
    batchInterval,
    (channel, now) => {
      // Paused: the resume that paused it flushes when it ends.
      if (channel.state !== 'live' || channel.pending.length === 0 || channel.pauses > 0) return;
      flush(channel);
      // Traffic is flowing: keep batching instead of sending the next update alone.
      if (channel.state === 'live') windows.open(channel, now);
    },
    (channel, error) => internalError('flush', error, channel.agentId),
  );

  const deliver = (channel: Channel, update: AgentUpdate) => {
    if (channel.state === 'gone') {
      // A broker must stop calling back once unsubscribed; say so loudly rather than lose it quietly.
      brokerFailed('deliver', channel.agentId, new Error('update delivered after unsubscribe'));
      return;
    }
    if (channel.state === 'live') {
      if (update.epoch !== channel.epoch) {
        // The broker lost the history (Redis data loss): a new stream starts; clients see the epoch change.
        channel.epoch = update.epoch;
        channel.headSeq = 0;
        channel.flushedSeq = 0;
        channel.agent = createAgentState();
      }
      // Already held: a networked broker may repeat what the subscription's position covered.
      if (update.seq <= channel.headSeq) return;
      channel.headSeq = update.seq;
    }
    channel.pending.push(update);
    if (channel.state === 'joining' || channel.windowOpen || channel.pauses > 0) return;
    flush(channel);
    if (batchInterval > 0 && channel.state === 'live') windows.open(channel, performance.now());
  };

  /** Flushes what waited while the channel was paused, and goes on batching. */
  const resumeFlushing = (channel: Channel) => {
    if (channel.state !== 'live' || channel.pauses > 0 || channel.pending.length === 0 || channel.windowOpen) return;
    flush(channel);
    if (batchInterval > 0 && channel.state === 'live') windows.open(channel, performance.now());
  };

  // ---- channels and the broker -----------------------------------------------------------

  // Hoisted (function, not const): the broker context above may report before this line runs.
  function brokerFailed(what: string, agentId: string | undefined, error: unknown) {
    countError('broker_error');
    log('error', 'broker_error', { agent_id: agentId, operation: what, error: String(error) });
  }

  const snapshotFrame = (channel: Channel): string => {
    const { status, open, ended } = channel.agent;
    const tasks = [...open.values(), ...ended.values()].sort((a, b) => a.seq - b.seq);
    // The updates' JSON is reused: a snapshot costs no re-serialisation of what it shows.
    const json = (update: AgentUpdate) => encoder.json(update);
    return `{"type":"snapshot","agent_id":"${channel.agentId}","epoch":"${channel.epoch}","seq":${channel.flushedSeq},"status":${status ? json(status) : 'null'},"tasks":[${tasks.map(json).join(',')}],"timestamp":"${new Date().toISOString()}"}`;
  };

  /**
   * Starts a connection: `connection_established`, the snapshot, then what it missed (the
   * `resume` batch when recovered, else the `queue` handover), and from then on every update.
   *
   * @param missed The updates after the client's `since` (up to at least `flushedSeq`), or
   *   `undefined` when it did not ask to resume or they are not all held.
   */
  const establish = (connection: Connection, missed: readonly AgentUpdate[] | undefined) => {
    const { channel, binding } = connection;
    const since = connection.resume?.since ?? 0;
    const handover = channel.handover && performance.now() < channel.handover.until ? channel.handover : undefined;
    /** Exactly since+1 … flushedSeq, from `updates`, or undefined when they do not cover it. */
    const gapFrom = (updates: readonly AgentUpdate[] | undefined) => {
      if (!updates || connection.resume?.epoch !== channel.epoch) return undefined;
      const gap = updates.filter((update) => update.seq > since && update.seq <= channel.flushedSeq);
      const complete =
        gap.length === 0
          ? since === channel.flushedSeq
          : (gap[0] as AgentUpdate).seq === since + 1 && (gap.at(-1) as AgentUpdate).seq === channel.flushedSeq;
      return complete ? gap : undefined;
    };
    // The history, or else the queue just handed over (it may reach further back than a short history).
    const resume = connection.resume ? (gapFrom(missed) ?? gapFrom(handover?.updates)) : undefined;
    const recovered = resume !== undefined;
    connection.established = true;
    if (channel.topicBinding === undefined) channel.topicBinding = binding.topics ? binding : null;
    else if (channel.topicBinding !== binding) channel.topicBinding = null;
    if (binding.topics) binding.topics.subscribe(connection.socket, topicOf(channel.agentId));
    sendTo(
      connection,
      JSON.stringify({
        type: 'connection_established',
        agent_id: channel.agentId,
        connection_id: connection.id,
        heartbeat_interval: heartbeatInterval,
        batch_interval: batchInterval,
        epoch: channel.epoch,
        seq: channel.flushedSeq,
        recovered,
        timestamp: new Date().toISOString(),
      }),
    );
    if (!connection.open) return;
    if (config.snapshot) sendTo(connection, snapshotFrame(channel));
    // A client that asked to resume and could not gets no queue: the snapshot is its truth, and
    // older updates after it would roll its state back.
    const backlog = recovered ? resume : connection.resume ? [] : (handover?.updates ?? []);
    if (backlog && backlog.length > 0 && connection.open) {
      const frame = encoder.batch(
        channel.agentId,
        backlog,
        recovered ? 'resume' : 'queue',
        updateFailed(channel.agentId),
      );
      if (frame !== undefined) {
        counters.batches_sent++;
        observe(batchSize, backlog.length);
        sendTo(connection, frame);
      }
    }
    if (connection.resume)
      log('info', 'connection_resumed', {
        agent_id: channel.agentId,
        connection_id: connection.id,
        since,
        recovered,
        replayed: recovered ? resume.length : 0,
      });
    answerEarlyFrames(connection);
  };

  /** Answers frames a client sent while it was being admitted: after connection_established and the replay. */
  const answerEarlyFrames = (connection: Connection) => {
    const early = connection.early;
    connection.early = undefined;
    if (early) for (const data of early) if (connection.open) receive(connection, data);
  };

  /**
   * Admits a connection to a live channel: reads what it missed when it asks to resume (the
   * channel pauses meanwhile, so nothing is sent twice or skipped), then establishes it.
   */
  const admit = (connection: Connection) => {
    const { channel } = connection;
    const resume = connection.resume;
    if (!resume || resume.epoch !== channel.epoch || resume.since > channel.flushedSeq)
      return establish(connection, undefined);
    if (resume.since === channel.flushedSeq) return establish(connection, []);
    let history: ReturnType<Broker['history']>;
    try {
      history = broker.history(channel.agentId, resume.since, resume.epoch);
    } catch (error) {
      brokerFailed('history', channel.agentId, error);
      return establish(connection, undefined);
    }
    if (!(history instanceof Promise)) return establish(connection, history);
    channel.pauses++;
    const done = contained('resume', channel.agentId, (missed: AgentUpdate[] | undefined) => {
      channel.pauses--;
      if (connection.open) establish(connection, missed);
      resumeFlushing(channel);
    });
    history.then(done, (error) => {
      brokerFailed('history', channel.agentId, error);
      done(undefined);
    });
  };

  const completeJoin = (channel: Channel, joined: Joined) => {
    channel.epoch = joined.epoch;
    channel.headSeq = joined.seq;
    channel.flushedSeq = joined.seq;
    channel.agent = createAgentState();
    if (joined.status) applyUpdate(channel.agent, joined.status);
    for (const task of joined.tasks) applyUpdate(channel.agent, task);
    // Updates that arrived while joining: a networked broker may repeat some the position covers.
    const live = channel.pending.filter((update) => update.epoch !== joined.epoch || update.seq > joined.seq);
    channel.pending = [];
    // A client that closed while the broker answered takes nothing with it.
    for (const connection of channel.connections) {
      if (!connection.binding.isOpen(connection.socket)) removeConnection(connection);
    }
    if (channel.state === 'gone') {
      // Every connection left while the broker answered: hand everything back to the queue.
      leave(channel.agentId, [...joined.queue, ...live]);
      return;
    }
    channel.state = 'live';
    if (joined.queue.length > 0) {
      channel.handover = { updates: [...joined.queue], until: performance.now() + QUEUE_HANDOVER_MS };
    }
    // connection_established goes out only now that the broker has subscribed, so a client that
    // has it gets every later update live.
    for (const connection of channel.connections) admit(connection);
    for (const update of live) deliver(channel, update);
  };

  /** Runs a broker callback or answer: whatever it throws costs that one step, nothing more. */
  const contained =
    <A extends unknown[]>(operation: string, agentId: string, step: (...args: A) => void) =>
    (...args: A) => {
      try {
        step(...args);
      } catch (error) {
        internalError(operation, error, agentId);
      }
    };

  const join = (channel: Channel) => {
    let joined: Joined | Promise<Joined>;
    const onUpdate = contained('deliver', channel.agentId, (update: AgentUpdate) => deliver(channel, update));
    const complete = contained('join', channel.agentId, (result: Joined) => completeJoin(channel, result));
    try {
      joined = broker.subscribe(channel.agentId, onUpdate);
    } catch (error) {
      joined = Promise.reject(error);
    }
    if (!(joined instanceof Promise)) return complete(joined);
    joined.then(complete, (error) => {
      brokerFailed('subscribe', channel.agentId, error);
      for (const connection of channel.connections) drop(connection, CloseCode.INTERNAL_ERROR, {});
    });
  };

  const pendingLeaves = new Set<Promise<void>>();
  const leave = (agentId: string, undelivered: readonly AgentUpdate[]) => {
    const countQueued = (receipt: UnsubscribeReceipt | undefined) => {
      if (receipt) counters.messages_queued += receipt.queued;
    };
    try {
      const result = broker.unsubscribe(agentId, undelivered);
      if (!(result instanceof Promise)) countQueued(result);
      else {
        const settled = result.then(countQueued, (error) => brokerFailed('unsubscribe', agentId, error));
        pendingLeaves.add(settled);
        settled.finally(() => pendingLeaves.delete(settled));
      }
    } catch (error) {
      brokerFailed('unsubscribe', agentId, error);
    }
  };

  const removeConnection = (connection: Connection) => {
    if (!connection.open) return false;
    connection.open = false;
    connections.delete(connection);
    const { channel } = connection;
    if (connection.established && connection.binding.topics) {
      try {
        connection.binding.topics.unsubscribe(connection.socket, topicOf(channel.agentId));
      } catch {
        // Already closed: the runtime dropped its subscriptions with it.
      }
    }
    channel.connections.delete(connection);
    if (channel.connections.size === 0) {
      channels.delete(channel.agentId);
      const wasLive = channel.state === 'live';
      channel.state = 'gone';
      if (wasLive) {
        const undelivered = channel.pending;
        channel.pending = [];
        leave(channel.agentId, undelivered);
      }
    }
    return true;
  };

  /** Closes a connection the hub gave up on; the close event that follows finds it removed. */
  function drop(connection: Connection, code: CloseCode, details: Record<string, unknown>) {
    if (!removeConnection(connection)) return;
    // Shutting down is routine; every other drop is a failure worth a warning.
    log(code === CloseCode.GOING_AWAY ? 'info' : 'warn', 'connection_dropped', {
      agent_id: connection.channel.agentId,
      connection_id: connection.id,
      code,
      reason: CLOSE_REASONS[code],
      ...details,
    });
    try {
      connection.socket.close(code, CLOSE_REASONS[code]);
    } catch {
      // Already closed underneath us: nothing left to release.
    }
  }

  // ---- heartbeat: one sweep timer per hub ------------------------------------------------

  // A sweep judges only connections that had a fair chance to answer. When the event loop runs
  // late (the process is overloaded, or the previous sweep took most of the interval), the pongs
  // of healthy clients may still sit unread in the socket buffers, and dropping those clients
  // would turn an overload into a reconnect storm. Such a sweep is skipped (and logged), but
  // never twice in a row, so a dead client is still dropped within three intervals.
  let lastSweepStart = performance.now();
  let lastSweepEnd = lastSweepStart;
  let skippedLast = false;
  const sweep = () => {
    const started = performance.now();
    const late = started - lastSweepStart - heartbeatInterval;
    const quiet = started - lastSweepEnd;
    lastSweepStart = started;
    if (!skippedLast && (late > heartbeatInterval / 2 || quiet < heartbeatInterval / 2)) {
      skippedLast = true;
      lastSweepEnd = started;
      throttle.note('heartbeat_late', 'warn', 'heartbeat_sweep_skipped', {
        late_ms: Math.round(late),
        quiet_ms: Math.round(quiet),
        interval_ms: heartbeatInterval,
      });
      return;
    }
    skippedLast = false;
    try {
      pingAll();
    } finally {
      lastSweepEnd = performance.now();
    }
  };
  const pingAll = () => {
    const prepare = preparer(JSON.stringify({ type: 'ping', timestamp: new Date().toISOString() }));
    for (const connection of connections) {
      try {
        // Not yet established (the broker is subscribing): neither pinged nor timed out.
        if (!connection.established) continue;
        if (!connection.binding.isOpen(connection.socket)) {
          releaseClosing(connection.channel);
          continue;
        }
        if (!connection.alive) {
          countError('heartbeat_timeout');
          drop(connection, CloseCode.HEARTBEAT_TIMEOUT, {});
          continue;
        }
        connection.alive = false;
        sendPrepared(connection, prepare(connection));
      } catch (error) {
        internalError('heartbeat', error, connection.channel.agentId);
      }
    }
  };
  const heartbeatTimer = heartbeatInterval > 0 ? setInterval(sweep, heartbeatInterval) : undefined;

  // ---- inbound frames --------------------------------------------------------------------

  const reject = (connection: Connection, code: ErrorCode, message: string) => {
    countError(code);
    throttle.note(`bad_frame:${code}`, 'warn', 'bad_frame', {
      agent_id: connection.channel.agentId,
      connection_id: connection.id,
      code,
      message,
    });
    sendTo(connection, JSON.stringify({ type: 'error', code, message, timestamp: new Date().toISOString() }));
  };

  const receive = (connection: Connection, data: WSMessageReceive) => {
    counters.messages_received++;
    const verdict = classifyFrame(data, maxMessageSize);
    switch (verdict.kind) {
      case 'pong':
        connection.alive = true;
        return;
      case 'ping':
        connection.alive = true;
        return sendTo(connection, JSON.stringify({ type: 'pong', timestamp: new Date().toISOString() }));
      case 'reject':
        return reject(connection, verdict.code, verdict.message);
      case 'close':
        countError(verdict.error);
        return drop(connection, verdict.code, { limit: maxMessageSize });
    }
  };

  // ---- connections -----------------------------------------------------------------------

  /** A new connection of `agentId` on `socket`, added to its channel (made if new). */
  const addConnection = (
    agentId: string,
    binding: SocketBinding,
    resume: ResumePoint | undefined,
    socket: WSContext,
  ): Connection => {
    let channel = channels.get(agentId);
    if (!channel) {
      channel = {
        agentId,
        connections: new Set(),
        state: 'joining',
        epoch: '',
        headSeq: 0,
        flushedSeq: 0,
        agent: createAgentState(),
        pauses: 0,
        handover: undefined,
        pending: [],
        windowOpen: false,
        deadline: 0,
        topicBinding: undefined,
        unchecked: 0,
      };
      channels.set(agentId, channel);
    }
    const connection: Connection = {
      id: `${idPrefix}-${++connectionSeq}`,
      channel,
      socket,
      binding,
      alive: true,
      open: true,
      established: false,
      early: undefined,
      resume,
      tokens: maxInboundBurst,
      refilledAt: performance.now(),
    };
    connections.add(connection);
    channel.connections.add(connection);
    counters.total_connections++;
    return connection;
  };

  /** Starts a connection `addConnection` made; `isNewChannel` when its channel was made for it. */
  const startConnection = (connection: Connection, isNewChannel: boolean): void => {
    const { channel } = connection;
    log('info', 'connection_open', { agent_id: channel.agentId, connection_id: connection.id });
    // A channel still joining admits its connections when the broker answers. A live one
    // first sends what its window holds, so the newcomer starts exactly where the others are.
    if (channel.state === 'live') {
      flush(channel);
      admit(connection);
    } else if (isNewChannel) join(channel);
  };

  const onFrame = (connection: Connection, data: WSMessageReceive): void => {
    if (!spendFrame(connection, maxInboundRate, maxInboundBurst, performance.now())) {
      counters.messages_received++;
      countError('rate_limited');
      drop(connection, CloseCode.RATE_LIMITED, { rate: maxInboundRate, burst: maxInboundBurst });
      return;
    }
    if (connection.established) {
      receive(connection, data);
      return;
    }
    // The broker is still subscribing (Redis). A client has no reason to send much before
    // it hears from the server, so a few frames are held and a flood is refused.
    connection.early ??= [];
    if (connection.early.push(data) > MAX_EARLY_FRAMES) {
      counters.messages_received += connection.early.length;
      countError('rate_limited');
      drop(connection, CloseCode.RATE_LIMITED, { early_frames: connection.early.length });
    }
  };

  const onClosed = (connection: Connection, code: number): void => {
    const wasOpen = removeConnection(connection);
    if (!wasOpen) return;
    // 1006 (Node, Bun) and 0 (Deno) mean the peer vanished without a close frame. Other codes
    // are the client's own choice, not an error of ours.
    if (code === 1006 || code === 0) countError('abrupt_close');
    log('info', 'connection_close', { agent_id: connection.channel.agentId, connection_id: connection.id, code });
  };

  const onFailed = (connection: Connection, event: Event): void => {
    const error = (event as ErrorEvent).error ?? (event as ErrorEvent).message;
    const failure = classifySocketFailure(error);
    countError(failure.kind);
    drop(connection, failure.code, { error: String(error) });
  };

  /**
   * A connection's listeners: one object per socket holding its state, the methods shared by
   * every socket (a closure per listener would cost four functions and their scope per socket).
   * Every hono adapter calls them as methods (`events.onOpen?.(event, context)`), so `this` is
   * the listeners. Every event is contained: what a client sends, or a runtime reports, never
   * escapes into the runtime's event loop as an uncaught exception.
   */
  class Listeners implements WSEvents {
    connection: Connection | undefined = undefined;
    constructor(
      readonly agentId: string,
      readonly binding: SocketBinding,
      readonly resume: ResumePoint | undefined,
    ) {}
    onOpen(_event: Event, socket: WSContext): void {
      try {
        if (closing) {
          socket.close(CloseCode.GOING_AWAY, CLOSE_REASONS[CloseCode.GOING_AWAY]);
          return;
        }
        const isNewChannel = !channels.has(this.agentId);
        this.connection = addConnection(this.agentId, this.binding, this.resume, socket);
        startConnection(this.connection, isNewChannel);
      } catch (error) {
        internalError('open', error, this.agentId);
      }
    }
    onMessage(event: MessageEvent<WSMessageReceive>, _socket: WSContext): void {
      try {
        if (this.connection?.open) onFrame(this.connection, event.data);
      } catch (error) {
        internalError('message', error, this.agentId);
      }
    }
    onClose(event: CloseEvent, _socket: WSContext): void {
      try {
        if (this.connection) onClosed(this.connection, event.code);
      } catch (error) {
        internalError('close', error, this.agentId);
      }
    }
    onError(event: Event, _socket: WSContext): void {
      try {
        if (this.connection?.open) onFailed(this.connection, event);
      } catch (error) {
        internalError('error', error, this.agentId);
      }
    }
  }

  // The agent id is the channel's own string when the agent has one: one string per agent, not
  // one per connection (the route's parameter is a fresh string each time).
  const connect = (agentId: string, binding: SocketBinding, resume: ResumePoint | undefined): WSEvents =>
    new Listeners(channels.get(agentId)?.agentId ?? agentId, binding, resume);

  // ---- publishing ------------------------------------------------------------------------

  const publish = (update: UnsequencedUpdate): Promise<void> => {
    if (closing) return Promise.reject(new Error('hono-agent-ws: the hub is closed'));
    counters.updates_published++;
    let receipt: ReturnType<Broker['publish']>;
    try {
      receipt = broker.publish(update.agent_id, update);
    } catch (error) {
      brokerFailed('publish', update.agent_id, error);
      return Promise.reject(error);
    }
    if (!(receipt instanceof Promise)) {
      if (receipt.queued) counters.messages_queued++;
      return DONE;
    }
    return receipt.then(
      (settled) => {
        if (settled.queued) counters.messages_queued++;
      },
      (error) => {
        brokerFailed('publish', update.agent_id, error);
        throw error;
      },
    );
  };

  /** Nesting of `result` within `maxUpdateDepth`: checked before anything else touches it. */
  const DepthSchema = v.object({
    result: v.optional(
      v.pipe(
        v.unknown(),
        v.check(
          (input: unknown) => !nestsDeeperThan(input, config.maxUpdateDepth),
          `result nests deeper than ${config.maxUpdateDepth} levels (maxUpdateDepth)`,
        ),
      ),
    ),
  });

  /**
   * Builds a complete update from validated fields, refusing what the hub could not send: too
   * deep, or not serialisable. Serialises it once, for every frame it will be part of.
   *
   * @throws {InvalidUpdateError}
   */
  const prepareUpdate = (agentId: string, item: IngestItem): UnsequencedUpdate => buildUpdate(agentId, item.type, item);

  /** `prepareUpdate` of `fields` (with `type`, or without it as the publish methods have them), copied once. */
  const buildUpdate = (
    agentId: string,
    type: IngestItem['type'],
    fields: Omit<IngestItem, 'type'> | IngestItem,
  ): UnsequencedUpdate => {
    const what = type === 'status_update' ? 'status update' : 'task update';
    // The schema only to word the refusal: a valibot pipeline per update costs more than the check.
    if ((fields as { result?: unknown }).result !== undefined) {
      const depth = v.safeParse(DepthSchema, fields);
      if (!depth.success) throw new InvalidUpdateError(what, depth.issues);
    }
    // `type` first, so `type` and `agent_id` lead on the wire (a `type` in `fields` keeps that place).
    const update = { type, agent_id: agentId, ...fields, timestamp: new Date().toISOString() } as UnsequencedUpdate;
    try {
      encoder.body(update);
    } catch (error) {
      const failed = v.safeParse(
        v.custom(() => false, `update is not JSON-serialisable: ${String(error)}`),
        update,
      );
      throw new InvalidUpdateError(what, failed.issues as [v.BaseIssue<unknown>, ...v.BaseIssue<unknown>[]]);
    }
    return update;
  };

  const publishFields = (
    agentId: string,
    type: IngestItem['type'],
    schema: typeof StatusUpdateFieldsSchema | typeof TaskUpdateFieldsSchema,
    update: unknown,
  ): Promise<void> => {
    try {
      if (typeof agentId !== 'string' || !AGENT_ID.test(agentId)) {
        const id = v.safeParse(AgentIdSchema, agentId);
        if (!id.success) throw new InvalidUpdateError('agent id', id.issues);
      }
      const result = v.safeParse(schema, update);
      if (!result.success) throw new InvalidUpdateError(type.replace('_', ' '), result.issues);
      return publish(buildUpdate(agentId, type, result.output as Omit<IngestItem, 'type'>));
    } catch (error) {
      return Promise.reject(error);
    }
  };

  /**
   * Releases every connection whose socket is closing. A runtime reports a close only once TCP
   * is gone (`ws` waits up to 30 s for a peer that keeps it open), and sends find such sockets
   * only for agents that get updates; the stats look at all of them, at most once a second.
   */
  let releasedAt = Number.NEGATIVE_INFINITY;
  const releaseAllClosing = () => {
    const now = performance.now();
    if (now - releasedAt < 1000) return;
    releasedAt = now;
    for (const connection of connections) {
      if (connection.established && !connection.binding.isOpen(connection.socket)) releaseClosing(connection.channel);
    }
  };

  const stats = (): HubStats => {
    releaseAllClosing();
    let errorTotal = 0;
    for (const kind in errors) errorTotal += errors[kind as ErrorKind];
    return {
      instance_id: instanceId,
      total_connections: counters.total_connections,
      active_connections: connections.size,
      agents_connected: channels.size,
      messages_sent: counters.messages_sent,
      messages_received: counters.messages_received,
      updates_published: counters.updates_published,
      batches_sent: counters.batches_sent,
      messages_queued: counters.messages_queued,
      queued_messages: broker.queuedCount?.() ?? 0,
      messages_dropped: counters.messages_dropped,
      errors: errorTotal,
      errors_by_kind: { ...errors },
      started_at: new Date(startedAt).toISOString(),
      uptime_seconds: Math.round((Date.now() - startedAt) / 1000),
    };
  };

  /** What the stats route serves: this instance's figures, plus the broker's cluster-wide ones. */
  const statsWithCluster = async (): Promise<HubStats> => {
    const own = stats();
    if (!broker.clusterStats) return own;
    try {
      own.cluster = await broker.clusterStats();
    } catch (error) {
      // The stats keep answering while the broker is down, without `cluster`.
      brokerFailed('stats', undefined, error);
    }
    return own;
  };

  const metrics = async (): Promise<MetricFamily[]> =>
    hubMetricFamilies({ stats: await statsWithCluster(), batchSize, sendDelay });

  /**
   * A page of the agents the hub knows: from the broker (cluster-wide with Redis), each with this
   * instance's connections; a broker without `listAgents` gives the agents connected here.
   */
  const listAgents = async (after: string | undefined, limit: number, maxTasks: number): Promise<AgentsPage> => {
    const local = (agentId: string) => channels.get(agentId)?.connections.size ?? 0;
    if (broker.listAgents) {
      let page: Awaited<ReturnType<NonNullable<Broker['listAgents']>>>;
      try {
        page = await broker.listAgents(after, limit, maxTasks);
      } catch (error) {
        brokerFailed('list', undefined, error);
        throw error;
      }
      return {
        agents: page.agents.map((agent): AgentSummary => {
          const connections = local(agent.agent_id);
          return {
            agent_id: agent.agent_id,
            connections,
            instances: agent.instances ?? (connections > 0 ? 1 : 0),
            status: agent.status,
            open_tasks: [...agent.open_tasks],
            open_tasks_total: agent.open_tasks_total,
            seq: agent.seq,
            epoch: agent.epoch,
            queued: agent.queued,
          };
        }),
        next_cursor: page.next,
      };
    }
    const ids = [...channels.keys()].filter((id) => after === undefined || id > after).sort();
    const page = ids.slice(0, limit);
    return {
      agents: page.map((agentId): AgentSummary => {
        const channel = channels.get(agentId) as Channel;
        const open = [...channel.agent.open.values()];
        return {
          agent_id: agentId,
          connections: channel.connections.size,
          instances: 1,
          status: channel.agent.status,
          open_tasks: maxTasks > 0 ? open.slice(-maxTasks).reverse() : [],
          open_tasks_total: open.length,
          seq: channel.flushedSeq,
          epoch: channel.epoch,
          queued: 0,
        };
      }),
      next_cursor: ids.length > limit ? (page.at(-1) ?? null) : null,
    };
  };

  const { broker: _broker, logger: _logger, authorize, ...publicOptions } = config;

  const hub: AgentHub<E> = {
    options: Object.freeze(publicOptions),
    routes(runtime: RuntimeBinding | UpgradeWebSocket<any, any>, routesOptions?: RoutesOptions): Hono<E> {
      const [upgradeWebSocket, details] =
        typeof runtime === 'function' ? [runtime, routesOptions] : [runtime.upgradeWebSocket, runtime];
      return createRoutes(
        {
          config,
          isClosing: () => closing,
          connect,
          countError,
          internalError,
          log,
          stats: statsWithCluster,
          metrics,
          listAgents,
          prepareUpdate,
          publish: (updates) =>
            updates.length === 1 ? publish(updates[0] as UnsequencedUpdate) : Promise.all(updates.map(publish)),
          authorize,
        },
        upgradeWebSocket,
        details,
      ) as unknown as Hono<E>;
    },
    publishStatus: (agentId, update) => publishFields(agentId, 'status_update', StatusUpdateFieldsSchema, update),
    publishTask: (agentId, update) => publishFields(agentId, 'task_update', TaskUpdateFieldsSchema, update),
    agent: (agentId, handleOptions) =>
      createAgentHandle(hub, agentId, handleOptions, (operation, error) => internalError(operation, error, agentId)),
    stats,
    metrics,
    async close() {
      if (closing) return;
      closing = true;
      if (heartbeatTimer !== undefined) clearInterval(heartbeatTimer);
      windows.clear();
      for (const channel of channels.values()) {
        if (channel.state === 'live' && channel.pending.length > 0) {
          try {
            flush(channel);
          } catch (error) {
            internalError('flush', error, channel.agentId);
          }
        }
      }
      for (const connection of [...connections]) drop(connection, CloseCode.GOING_AWAY, {});
      await Promise.all(pendingLeaves);
      await broker.close();
      throttle.close();
      log('info', 'hub_closed', { total_connections: counters.total_connections });
    },
  };
  return hub;
}
