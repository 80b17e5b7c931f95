import type { Env, Hono } from 'hono';
import type { UpgradeWebSocket, WSContext, WSEvents, WSMessageReceive } from 'hono/ws';
import * as v from 'valibot';
import { type Broker, memoryBroker, type UnsubscribeReceipt } from './broker.ts';
import { CLOSE_REASONS, CloseCode } from './close-codes.ts';
import { createUpdateEncoder, nestsDeeperThan } from './encode.ts';
import { InvalidUpdateError } from './errors.ts';
import { classifyFrame, classifySocketFailure, type InboundBudget, spendFrame } from './inbound.ts';
import { jsonLogger, type LogEntry, type Logger } from './logger.ts';
import { type AgentHubOptions, type ResolvedHubOptions, resolveHubOptions } from './options.ts';
import { createRoutes, type RoutesOptions, type RuntimeBinding, type SocketBinding } from './routes.ts';
import {
  AgentIdSchema,
  type AgentUpdate,
  type ErrorCode,
  type IngestItem,
  StatusUpdateFieldsSchema,
  type StatusUpdateInput,
  TaskUpdateFieldsSchema,
  type TaskUpdateInput,
} from './schemas.ts';
import { createErrorCounters, type ErrorKind, type HubStats } from './stats.ts';
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
    sizeOf: (update) => encoder.sizeOf(update),
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

  /** Sends what the channel holds: alone if one update, else as one `batch_update`. */
  const flush = (channel: Channel) => {
    if (!releaseClosing(channel)) return;
    const updates = channel.pending;
    channel.pending = [];
    let frame: string | undefined;
    if (updates.length === 1) {
      try {
        frame = encoder.json(updates[0] as AgentUpdate);
      } catch (error) {
        updateFailed(channel.agentId)(updates[0] as AgentUpdate, error);
      }
    } else {
      frame = encoder.batch(channel.agentId, updates, 'window', updateFailed(channel.agentId));
      if (frame !== undefined) counters.batches_sent++;
    }
    if (frame !== undefined) broadcast(channel, frame);
  };

  // ---- batching: one timer per hub ---------------------------------------------------------

  const windows = createWindowScheduler<Channel>(
    batchInterval,
    (channel, now) => {
      if (channel.state !== 'live' || channel.pending.length === 0) return;
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
    channel.pending.push(update);
    if (channel.state === 'joining' || channel.windowOpen) return;
    flush(channel);
    if (batchInterval > 0 && channel.state === 'live') windows.open(channel, performance.now());
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
    // A client that closed while the broker answered takes nothing with it.
    for (const connection of channel.connections) {
      if (!connection.binding.isOpen(connection.socket)) removeConnection(connection);
    }
    if (channel.state === 'gone') {
      // Every connection left while the broker answered: hand everything back to the queue.
      leave(channel.agentId, [...backlog, ...channel.pending]);
      return;
    }
    channel.state = 'live';
    if (backlog.length > 0) {
      const frame = encoder.batch(channel.agentId, backlog, 'queue', updateFailed(channel.agentId));
      if (frame !== undefined) {
        counters.batches_sent++;
        broadcast(channel, frame);
      }
    }
    for (const connection of channel.connections) answerEarlyFrames(connection);
    const live = channel.pending;
    channel.pending = [];
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
    let backlog: AgentUpdate[] | Promise<AgentUpdate[]>;
    const onUpdate = contained('deliver', channel.agentId, (update: AgentUpdate) => deliver(channel, update));
    const complete = contained('join', channel.agentId, (updates: readonly AgentUpdate[]) =>
      completeJoin(channel, updates),
    );
    try {
      backlog = broker.subscribe(channel.agentId, onUpdate);
    } catch (error) {
      backlog = Promise.reject(error);
    }
    if (Array.isArray(backlog)) return complete(backlog);
    backlog.then(complete, (error) => {
      brokerFailed('subscribe', channel.agentId, error);
      for (const connection of channel.connections) drop(connection, CloseCode.INTERNAL_ERROR, {});
    });
  };

  const pendingLeaves = new Set<Promise<void>>();
  const leave = (agentId: string, undelivered: readonly AgentUpdate[]) => {
    const countQueued = (receipt: UnsubscribeReceipt | void) => {
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

  const sweep = () => {
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

  const connect = (agentId: string, binding: SocketBinding): WSEvents => {
    // Per-connection state lives in this closure, not on the context object.
    let connection: Connection | undefined;
    // Every event is contained: what a client sends, or a runtime reports, never escapes into
    // the runtime's event loop as an uncaught exception.
    const guard =
      <A extends unknown[]>(event: string, handler: (...args: A) => void) =>
      (...args: A) => {
        try {
          handler(...args);
        } catch (error) {
          internalError(event, error, agentId);
        }
      };
    return {
      onOpen: guard('open', (_event: Event, socket: WSContext) => {
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
          tokens: maxInboundBurst,
          refilledAt: performance.now(),
        };
        connections.add(connection);
        channel.connections.add(connection);
        counters.total_connections++;
        log('info', 'connection_open', { agent_id: agentId, connection_id: id });
        // A channel still joining establishes its connections when the broker answers.
        if (channel.state === 'live') establish(connection);
        else if (isNewChannel) join(channel);
      }),
      onMessage: guard('message', (event: MessageEvent<WSMessageReceive>, _socket: WSContext) => {
        if (!connection?.open) return;
        if (!spendFrame(connection, maxInboundRate, maxInboundBurst, performance.now())) {
          counters.messages_received++;
          countError('rate_limited');
          drop(connection, CloseCode.RATE_LIMITED, { rate: maxInboundRate, burst: maxInboundBurst });
          return;
        }
        if (connection.established) return receive(connection, event.data);
        // The broker is still subscribing (Redis). A client has no reason to send much before
        // it hears from the server, so a few frames are held and a flood is refused.
        connection.early ??= [];
        if (connection.early.push(event.data) > MAX_EARLY_FRAMES) {
          counters.messages_received += connection.early.length;
          countError('rate_limited');
          drop(connection, CloseCode.RATE_LIMITED, { early_frames: connection.early.length });
        }
      }),
      onClose: guard('close', (event: CloseEvent, _socket: WSContext) => {
        if (!connection) return;
        const code = event.code;
        const wasOpen = removeConnection(connection);
        if (!wasOpen) return;
        // 1006 (Node, Bun) and 0 (Deno) mean the peer vanished without a close frame. Other codes
        // are the client's own choice, not an error of ours.
        if (code === 1006 || code === 0) countError('abrupt_close');
        log('info', 'connection_close', { agent_id: agentId, connection_id: connection.id, code });
      }),
      onError: guard('error', (event: Event, _socket: WSContext) => {
        if (!connection?.open) return;
        const error = (event as ErrorEvent).error ?? (event as ErrorEvent).message;
        const failure = classifySocketFailure(error);
        countError(failure.kind);
        drop(connection, failure.code, { error: String(error) });
      }),
    };
  };

  // ---- publishing ------------------------------------------------------------------------

  const publish = (update: AgentUpdate): Promise<void> => {
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
  const prepareUpdate = (agentId: string, { type, ...fields }: IngestItem): AgentUpdate => {
    const what = type === 'status_update' ? 'status update' : 'task update';
    const depth = v.safeParse(DepthSchema, fields);
    if (!depth.success) throw new InvalidUpdateError(what, depth.issues);
    // `type` first, so `type` and `agent_id` lead on the wire.
    const update = { type, agent_id: agentId, ...fields, timestamp: new Date().toISOString() } as AgentUpdate;
    try {
      encoder.json(update);
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
      const id = v.safeParse(AgentIdSchema, agentId);
      if (!id.success) throw new InvalidUpdateError('agent id', id.issues);
      const result = v.safeParse(schema, update);
      if (!result.success) throw new InvalidUpdateError(type.replace('_', ' '), result.issues);
      return publish(prepareUpdate(agentId, { type, ...result.output } as IngestItem));
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

  const { broker: _broker, logger: _logger, authorize, ...publicOptions } = config;

  return {
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
          prepareUpdate,
          publish: (updates) => Promise.all(updates.map(publish)),
          authorize,
        },
        upgradeWebSocket,
        details,
      ) as unknown as Hono<E>;
    },
    publishStatus: (agentId, update) => publishFields(agentId, 'status_update', StatusUpdateFieldsSchema, update),
    publishTask: (agentId, update) => publishFields(agentId, 'task_update', TaskUpdateFieldsSchema, update),
    stats,
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
}
