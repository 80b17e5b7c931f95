import type { Context, Hono } from 'hono';
import type { UpgradeWebSocket, WSContext, WSEvents, WSMessageReceive } from 'hono/ws';
import * as v from 'valibot';
import { type Broker, memoryBroker } from './broker.ts';
import { CLOSE_REASONS, CloseCode } from './close-codes.ts';
import { jsonLogger, type LogEntry, type Logger } from './logger.ts';
import { type AgentHubOptions, type ResolvedHubOptions, resolveHubOptions } from './options.ts';
import { createRoutes, type RoutesOptions, type SocketBinding } from './routes.ts';
import {
  AgentIdSchema,
  type AgentUpdate,
  type BatchUpdate,
  ClientMessageSchema,
  type ErrorCode,
  type IngestItem,
  StatusUpdateFieldsSchema,
  type StatusUpdateInput,
  TaskUpdateFieldsSchema,
  type TaskUpdateInput,
} from './schemas.ts';
import { createErrorCounters, type ErrorKind, type HubStats } from './stats.ts';

/**
 * Thrown by `publishStatus` and `publishTask` for an update that does not match its schema.
 */
export class InvalidUpdateError extends TypeError {
  /** The validation issues. */
  readonly issues: readonly v.BaseIssue<unknown>[];

  constructor(what: string, issues: [v.BaseIssue<unknown>, ...v.BaseIssue<unknown>[]]) {
    super(`invalid ${what}: ${v.summarize(issues).replaceAll('\n', '; ')}`);
    this.name = 'InvalidUpdateError';
    this.issues = issues;
  }
}

/**
 * The agent hub: holds every connection, batches and queues updates, runs the heartbeat.
 */
export interface AgentHub {
  /** The options in force, defaults applied. */
  readonly options: Readonly<Omit<ResolvedHubOptions, 'broker' | 'logger' | 'authorize'>>;
  /**
   * Builds the Hono app to mount: `app.route('/agents', hub.routes(upgradeWebSocket))`.
   *
   * @param upgradeWebSocket The runtime's `upgradeWebSocket` (from `@hono/node-server`,
   *   `@hono/node-ws`, `hono/deno`, `hono/bun`, …).
   * @param options Runtime details an adapter supplies.
   *
   * @returns The routes: the WebSocket, the stats and, with `ingest`, the ingest route.
   */
  routes(upgradeWebSocket: UpgradeWebSocket<any, any>, options?: RoutesOptions): Hono;
  /**
   * Publishes a status update; the hub adds `type`, `agent_id` and `timestamp`.
   *
   * @throws {InvalidUpdateError} When the agent id or the update is invalid.
   *
   * @returns A promise that settles once the broker accepted the update.
   */
  publishStatus(agentId: string, update: StatusUpdateInput): Promise<void>;
  /**
   * Publishes a task update; the hub adds `type`, `agent_id` and `timestamp`.
   *
   * @throws {InvalidUpdateError} When the agent id or the update is invalid.
   *
   * @returns A promise that settles once the broker accepted the update.
   */
  publishTask(agentId: string, update: TaskUpdateInput): Promise<void>;
  /**
   * This instance's counters. `GET /ws/stats` serves them and, when the broker spans several
   * instances (Redis), adds the cluster-wide figures as `cluster`.
   */
  stats(): HubStats;
  /** Flushes pending batches, closes every socket with 1001, stops every timer and the broker. */
  close(): Promise<void>;
}

/**
 * One open WebSocket. State lives here, not on the runtime's context object (Bun hands a
 * fresh context to every event).
 *
 * @internal
 */
interface Connection {
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
  /** Updates held for the end of the window (or, while joining, for the end of the join). */
  pending: AgentUpdate[];
  windowOpen: boolean;
  deadline: number;
  /**
   * The binding whose native pub/sub fans this agent's frames out, while every connection
   * shares it; `null` once connections of different bindings mix (then: one write per socket).
   */
  topicBinding: SocketBinding | null | undefined;
}

/** Most frames held from a client before its `connection_established` is sent. */
const MAX_EARLY_FRAMES = 16;

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
export function createAgentHub(options: AgentHubOptions = {}): AgentHub {
  const config = resolveHubOptions(options);
  const { heartbeatInterval, batchInterval, maxMessageSize, maxBufferedAmount } = config;
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

  const connections = new Set<Connection>();
  const channels = new Map<string, Channel>();
  let closing = false;

  const broker: Broker = (config.broker ?? memoryBroker())({
    maxQueueSize: config.maxQueueSize,
    onDropped(agentId, count) {
      counters.messages_dropped += count;
      log('warn', 'queue_drop', { agent_id: agentId, dropped: count });
    },
    // For networked brokers: the same id in Redis as in the stats, failures the broker meets
    // on its own (a lost connection) counted like any other broker error, and the figures the
    // broker shares for the cluster-wide stats.
    instanceId,
    onError: (operation, error, agentId) => brokerFailed(operation, agentId, error),
    localFigures: () => ({ active_connections: connections.size }),
  });

  // ---- sending ---------------------------------------------------------------------------

  /** Writes a frame already prepared by the connection's binding. */
  const sendPrepared = (connection: Connection, prepared: unknown) => {
    try {
      connection.binding.send(connection.socket, prepared);
    } catch (error) {
      countError('send_failed');
      drop(connection, CloseCode.INTERNAL_ERROR, { error: String(error) });
      return;
    }
    counters.messages_sent++;
    dropIfSlow(connection);
  };

  /** Closes a connection whose send buffer holds more than `maxBufferedAmount` bytes (4001). */
  const dropIfSlow = (connection: Connection) => {
    if (maxBufferedAmount > 0 && connection.binding.bufferedAmount(connection.socket) > maxBufferedAmount) {
      countError('slow_consumer');
      drop(connection, CloseCode.SLOW_CONSUMER, {});
    }
  };

  const sendTo = (connection: Connection, frame: string) => sendPrepared(connection, connection.binding.prepare(frame));

  /**
   * Prepares one frame for many connections: once per binding (in practice once), not once per
   * socket.
   */
  const preparer = (frame: string) => {
    let binding: SocketBinding | undefined;
    let prepared: unknown;
    return (connection: Connection) => {
      if (connection.binding !== binding) {
        binding = connection.binding;
        prepared = binding.prepare(frame);
      }
      return prepared;
    };
  };

  /** One frame to every connection of an agent: serialised once, prepared once. */
  const broadcast = (channel: Channel, frame: string) => {
    const binding = channel.topicBinding;
    const via = channel.connections.values().next().value;
    if (binding?.topics && via) {
      try {
        binding.topics.publish(via.socket, topicOf(channel.agentId), binding.prepare(frame));
      } catch (error) {
        // The native fan-out failed as a whole: fall back to one write per socket for good.
        countError('send_failed');
        log('error', 'send_error', { agent_id: channel.agentId, via: 'topic', error: String(error) });
        channel.topicBinding = null;
        return broadcast(channel, frame);
      }
      counters.messages_sent += channel.connections.size;
      if (maxBufferedAmount > 0) for (const connection of channel.connections) dropIfSlow(connection);
      return;
    }
    const prepare = preparer(frame);
    for (const connection of channel.connections) sendPrepared(connection, prepare(connection));
  };

  /** The native topic of an agent, unique per hub (several hubs may share one server). */
  const topicOf = (agentId: string) => `${idPrefix}:${agentId}`;

  const batchFrame = (channel: Channel, updates: readonly AgentUpdate[], source: BatchUpdate['source']) => {
    counters.batches_sent++;
    return JSON.stringify({
      type: 'batch_update',
      agent_id: channel.agentId,
      source,
      updates: updates.map((content) => ({ type: content.type, content }) as BatchUpdate['updates'][number]),
      timestamp: new Date().toISOString(),
    } satisfies BatchUpdate);
  };

  const sendPending = (channel: Channel) => {
    const updates = channel.pending;
    channel.pending = [];
    const frame = updates.length === 1 ? JSON.stringify(updates[0]) : batchFrame(channel, updates, 'window');
    broadcast(channel, frame);
  };

  // ---- batching: one timer per hub. Every window has the same length, so windows close in the
  // order they opened and a FIFO of open windows is already sorted by deadline.

  let windows: Channel[] = [];
  let windowsHead = 0;
  let flushTimer: ReturnType<typeof setTimeout> | undefined;

  const openWindow = (channel: Channel, now: number) => {
    channel.windowOpen = true;
    channel.deadline = now + batchInterval;
    windows.push(channel);
    if (flushTimer === undefined && !flushing) flushTimer = setTimeout(closeDueWindows, batchInterval);
  };

  // True while closeDueWindows runs: it re-arms the timer itself once it knows the next deadline.
  let flushing = false;
  const closeDueWindows = () => {
    flushTimer = undefined;
    flushing = true;
    const now = performance.now();
    try {
      // Timers may fire a fraction of a millisecond early; treat those windows as due.
      while (windowsHead < windows.length && (windows[windowsHead] as Channel).deadline <= now + 1) {
        const channel = windows[windowsHead++] as Channel;
        channel.windowOpen = false;
        if (channel.state !== 'live' || channel.pending.length === 0) continue;
        sendPending(channel);
        // Traffic is flowing: keep batching instead of sending the next update alone.
        openWindow(channel, now);
      }
    } finally {
      flushing = false;
      if (windowsHead > 1024 && windowsHead * 2 > windows.length) {
        windows = windows.slice(windowsHead);
        windowsHead = 0;
      }
      const next = windows[windowsHead];
      if (next && !closing) flushTimer = setTimeout(closeDueWindows, Math.max(0, next.deadline - now));
    }
  };

  const deliver = (channel: Channel, update: AgentUpdate) => {
    if (channel.state === 'gone') {
      // A broker must stop calling back once unsubscribed; say so loudly rather than lose it quietly.
      brokerFailed('deliver', channel.agentId, new Error('update delivered after unsubscribe'));
      return;
    }
    if (channel.state === 'joining' || channel.windowOpen) {
      channel.pending.push(update);
      return;
    }
    broadcast(channel, JSON.stringify(update));
    if (batchInterval > 0) openWindow(channel, performance.now());
  };

  // ---- channels and the broker -----------------------------------------------------------

  // Hoisted (function, not const): the broker context above may report before this line runs.
  function brokerFailed(what: string, agentId: string | undefined, error: unknown) {
    countError('broker_error');
    log('error', 'broker_error', { agent_id: agentId, operation: what, error: String(error) });
  }

  const establish = (connection: Connection) => {
    connection.established = true;
    const { channel, binding } = connection;
    if (channel.topicBinding === undefined) channel.topicBinding = binding.topics ? binding : null;
    else if (channel.topicBinding !== binding) channel.topicBinding = null;
    if (binding.topics) binding.topics.subscribe(connection.socket, topicOf(channel.agentId));
    sendTo(
      connection,
      JSON.stringify({
        type: 'connection_established',
        agent_id: connection.channel.agentId,
        connection_id: connection.id,
        heartbeat_interval: heartbeatInterval,
        batch_interval: batchInterval,
        timestamp: new Date().toISOString(),
      }),
    );
  };

  /** Answers frames a client sent while its channel joined: after connection_established and the replay. */
  const answerEarlyFrames = (connection: Connection) => {
    const early = connection.early;
    connection.early = undefined;
    if (early) for (const data of early) if (connection.open) receive(connection, data);
  };

  const completeJoin = (channel: Channel, backlog: readonly AgentUpdate[]) => {
    // connection_established goes out only now that the broker has subscribed, so a client that
    // has it gets every later update live. (Immediate with the in-memory broker; with a networked
    // one, updates published meanwhile reach the client in the queue replay.)
    for (const connection of channel.connections) establish(connection);
    if (channel.state === 'gone') {
      // Every connection left while the broker answered: hand everything back to the queue.
      leave(channel.agentId, [...backlog, ...channel.pending]);
      return;
    }
    channel.state = 'live';
    if (backlog.length > 0) broadcast(channel, batchFrame(channel, backlog, 'queue'));
    for (const connection of channel.connections) answerEarlyFrames(connection);
    const live = channel.pending;
    channel.pending = [];
    for (const update of live) deliver(channel, update);
  };

  const join = (channel: Channel) => {
    let backlog: AgentUpdate[] | Promise<AgentUpdate[]>;
    try {
      backlog = broker.subscribe(channel.agentId, (update) => deliver(channel, update));
    } catch (error) {
      backlog = Promise.reject(error);
    }
    if (Array.isArray(backlog)) return completeJoin(channel, backlog);
    backlog.then(
      (updates) => completeJoin(channel, updates),
      (error) => {
        brokerFailed('subscribe', channel.agentId, error);
        for (const connection of channel.connections) drop(connection, CloseCode.INTERNAL_ERROR, {});
      },
    );
  };

  const pendingLeaves = new Set<Promise<void>>();
  const leave = (agentId: string, undelivered: readonly AgentUpdate[]) => {
    try {
      const result = broker.unsubscribe(agentId, undelivered);
      if (result instanceof Promise) {
        const settled = result.catch((error) => brokerFailed('unsubscribe', agentId, error));
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

  const sweep = () => {
    const prepare = preparer(JSON.stringify({ type: 'ping', timestamp: new Date().toISOString() }));
    for (const connection of connections) {
      // Not yet established (the broker is subscribing): neither pinged nor timed out.
      if (!connection.established) continue;
      if (!connection.alive) {
        countError('heartbeat_timeout');
        drop(connection, CloseCode.HEARTBEAT_TIMEOUT, {});
        continue;
      }
      connection.alive = false;
      sendPrepared(connection, prepare(connection));
    }
  };
  const heartbeatTimer = heartbeatInterval > 0 ? setInterval(sweep, heartbeatInterval) : undefined;

  // ---- inbound frames --------------------------------------------------------------------

  const utf8 = new TextEncoder();
  const byteLength = (data: WSMessageReceive): number => {
    if (typeof data === 'string') {
      // UTF-8 takes at least one byte per UTF-16 unit and at most three.
      if (data.length > maxMessageSize) return data.length;
      if (data.length * 3 <= maxMessageSize) return data.length;
      return utf8.encode(data).byteLength;
    }
    return data instanceof Blob ? data.size : data.byteLength;
  };

  const reject = (connection: Connection, code: ErrorCode, message: string) => {
    countError(code);
    log('warn', 'bad_frame', { agent_id: connection.channel.agentId, connection_id: connection.id, code, message });
    sendTo(connection, JSON.stringify({ type: 'error', code, message, timestamp: new Date().toISOString() }));
  };

  const receive = (connection: Connection, data: WSMessageReceive) => {
    counters.messages_received++;
    if (byteLength(data) > maxMessageSize) {
      countError('message_too_big');
      drop(connection, CloseCode.MESSAGE_TOO_BIG, { limit: maxMessageSize });
      return;
    }
    if (typeof data !== 'string') {
      return reject(connection, 'binary_not_supported', 'binary frames are not supported; send JSON text');
    }
    let message: unknown;
    try {
      message = JSON.parse(data);
    } catch {
      return reject(connection, 'invalid_json', 'frame is not valid JSON');
    }
    const type = (message as { type?: unknown } | null)?.type;
    if (typeof message !== 'object' || message === null || Array.isArray(message) || typeof type !== 'string') {
      return reject(connection, 'invalid_message', 'expected a JSON object with a string "type"');
    }
    if (type !== 'pong' && type !== 'ping') {
      return reject(connection, 'unknown_type', `unknown message type ${JSON.stringify(type.slice(0, 64))}`);
    }
    const parsed = v.safeParse(ClientMessageSchema, message);
    if (!parsed.success) return reject(connection, 'invalid_message', v.summarize(parsed.issues));
    connection.alive = true;
    if (parsed.output.type === 'ping') {
      sendTo(connection, JSON.stringify({ type: 'pong', timestamp: new Date().toISOString() }));
    }
  };

  // ---- connections -----------------------------------------------------------------------

  const connect = (agentId: string, binding: SocketBinding): WSEvents => {
    // Per-connection state lives in this closure, not on the context object.
    let connection: Connection | undefined;
    return {
      onOpen(_event, socket) {
        if (closing) {
          socket.close(CloseCode.GOING_AWAY, CLOSE_REASONS[CloseCode.GOING_AWAY]);
          return;
        }
        let channel = channels.get(agentId);
        const isNewChannel = channel === undefined;
        if (!channel) {
          channel = {
            agentId,
            connections: new Set(),
            state: 'joining',
            pending: [],
            windowOpen: false,
            deadline: 0,
            topicBinding: undefined,
          };
          channels.set(agentId, channel);
        }
        const id = `${idPrefix}-${++connectionSeq}`;
        connection = {
          id,
          channel,
          socket,
          binding,
          alive: true,
          open: true,
          established: false,
          early: undefined,
        };
        connections.add(connection);
        channel.connections.add(connection);
        counters.total_connections++;
        log('info', 'connection_open', { agent_id: agentId, connection_id: id });
        // A channel still joining establishes its connections when the broker answers.
        if (channel.state === 'live') establish(connection);
        else if (isNewChannel) join(channel);
      },
      onMessage(event, _socket) {
        if (!connection?.open) return;
        if (connection.established) return receive(connection, event.data);
        // The broker is still subscribing (Redis). A client has no reason to send much before
        // it hears from the server, so a few frames are held and a flood is refused.
        connection.early ??= [];
        if (connection.early.push(event.data) > MAX_EARLY_FRAMES) {
          countError('message_too_big');
          drop(connection, CloseCode.MESSAGE_TOO_BIG, { early_frames: connection.early.length });
        }
      },
      onClose(event, _socket) {
        if (!connection) return;
        const code = (event as CloseEvent).code;
        const wasOpen = removeConnection(connection);
        if (!wasOpen) return;
        // 1006 (Node, Bun) and 0 (Deno) mean the peer vanished without a close frame.
        if (code === 1006 || code === 0) countError('abrupt_close');
        log('info', 'connection_close', { agent_id: agentId, connection_id: connection.id, code });
      },
      onError(event, _socket) {
        if (!connection?.open) return;
        countError('socket_error');
        const error = (event as ErrorEvent).error ?? (event as ErrorEvent).message;
        drop(connection, CloseCode.INTERNAL_ERROR, { error: String(error) });
      },
    };
  };

  // ---- publishing ------------------------------------------------------------------------

  const publish = (update: AgentUpdate): Promise<void> => {
    if (closing) throw new Error('hono-agent-ws: the hub is closed');
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

  const checkAgentId = (agentId: string) => {
    const result = v.safeParse(AgentIdSchema, agentId);
    if (!result.success) throw new InvalidUpdateError('agent id', result.issues);
  };

  // `item` starts with `type`, so `type` and `agent_id` lead on the wire.
  const buildUpdate = (agentId: string, { type, ...fields }: IngestItem): AgentUpdate =>
    ({ type, agent_id: agentId, ...fields, timestamp: new Date().toISOString() }) as AgentUpdate;

  const stats = (): HubStats => {
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

  const { broker: _broker, logger: _logger, authorize, ...publicOptions } = config;

  return {
    options: Object.freeze(publicOptions),
    routes(upgradeWebSocket, routesOptions) {
      return createRoutes(
        {
          config,
          isClosing: () => closing,
          connect,
          countError,
          log,
          stats: statsWithCluster,
          publishIngest: (agentId, items) => Promise.all(items.map((item) => publish(buildUpdate(agentId, item)))),
          authorize: authorize as ((agentId: string, c: Context) => boolean | Promise<boolean>) | undefined,
        },
        upgradeWebSocket,
        routesOptions,
      );
    },
    publishStatus(agentId, update) {
      checkAgentId(agentId);
      const result = v.safeParse(StatusUpdateFieldsSchema, update);
      if (!result.success) throw new InvalidUpdateError('status update', result.issues);
      return publish(buildUpdate(agentId, { type: 'status_update', ...result.output }));
    },
    publishTask(agentId, update) {
      checkAgentId(agentId);
      const result = v.safeParse(TaskUpdateFieldsSchema, update);
      if (!result.success) throw new InvalidUpdateError('task update', result.issues);
      return publish(buildUpdate(agentId, { type: 'task_update', ...result.output }));
    },
    stats,
    async close() {
      if (closing) return;
      closing = true;
      if (heartbeatTimer !== undefined) clearInterval(heartbeatTimer);
      if (flushTimer !== undefined) clearTimeout(flushTimer);
      flushTimer = undefined;
      for (const channel of channels.values()) {
        if (channel.state === 'live' && channel.pending.length > 0) sendPending(channel);
      }
      windows = [];
      windowsHead = 0;
      for (const connection of [...connections]) drop(connection, CloseCode.GOING_AWAY, {});
      await Promise.all(pendingLeaves);
      await broker.close();
      log('info', 'hub_closed', { total_connections: counters.total_connections });
    },
  };
}
