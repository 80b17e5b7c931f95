/**
 * The Durable Object holding one agent's channel: its sockets with the WebSocket Hibernation API,
 * its stream position, batching window, history, offline queue and snapshot state in the
 * object's SQLite storage (object-store.ts), its counters (tally.ts), and the one alarm that
 * ends batching windows, sweeps the heartbeat, expires the queue and reports the figures.
 * See docs/cloudflare.md.
 *
 * @module
 */
import { newEpoch } from '../../plugin/broker.ts';
import { CLOSE_REASONS, CloseCode } from '../../plugin/close-codes.ts';
import { createUpdateEncoder } from '../../plugin/encode.ts';
import type { ErrorKind } from '../../plugin/error-kinds.ts';
import { classifyFrame, type InboundBudget, spendFrame } from '../../plugin/inbound.ts';
import { observe } from '../../plugin/metrics.ts';
import type { AgentUpdate, ErrorCode, StatusUpdate, TaskUpdate, UnsequencedUpdate } from '../../plugin/schemas.ts';
import { AGENT_TASKS_MAX } from '../../plugin/stats.ts';
import { type AgentChannelOptions, type ResolvedChannelOptions, resolveChannelOptions } from './object-options.ts';
import { ChannelStore, type StoredUpdate } from './object-store.ts';
import { DirectoryReporter } from './reporter.ts';
import {
  AGENT_HEADER,
  AGENT_ID,
  type AgentObjectState,
  type ObjectFigures,
  type ResumePoint,
  resumePointOf,
  type WorkersWebSocket,
} from './shared.ts';
import { readTally, sumOf, type Tally } from './tally.ts';

export type { AgentChannelOptions } from './object-options.ts';

/** The per-socket state that survives hibernation (`serializeAttachment`). */
interface SocketAttachment {
  readonly connection_id: string;
  /** Answered (`pong`, or a `ping` of its own) since the last ping. */
  alive: boolean;
}

/** How long after the first socket of an agent without sockets others still get the queue, as the hub's. */
const QUEUE_HANDOVER_MS = 1000;

/** `WebSocket.OPEN`. */
const WEBSOCKET_OPEN = 1;

/** Alarms a little early are taken as due (workerd may run one a millisecond early). */
const ALARM_SLACK_MS = 1;

/**
 * A Durable Object holding one agent's channel: its sockets (accepted with the hibernation API, so
 * an idle object can be evicted while they stay open), its stream, its batching window, history,
 * offline queue and snapshot state, in the object's SQLite storage so that they continue after
 * an eviction.
 *
 * Export it (or a subclass with its own `static options`) from the Worker under the class name
 * the `durable_objects` binding names, with `new_sqlite_classes` in its migration.
 */
export class AgentChannelObject {
  /** The options of every object of this class; a subclass overrides them (`AgentChannelOptions`). */
  static options: AgentChannelOptions = {};
  /** The object's state: sockets and storage. */
  protected readonly ctx: AgentObjectState;
  /** The Worker's bindings, for subclasses and the `onFigures` hook (the directory's binding). */
  protected readonly env: unknown;
  /** The object's options, resolved. */
  protected readonly options: ResolvedChannelOptions;
  private readonly store: ChannelStore;
  /** Reports the figures to the directory, where the Worker reads the hub-wide stats. */
  private readonly reporter: DirectoryReporter;
  private readonly encoder = createUpdateEncoder();
  /** The agent, from the first request forwarded to the object (kept in storage). */
  private agentId: string;
  private readonly epoch: string;
  /** The last `seq` given out. */
  private seq: number;
  private readonly wakes: number;
  private readonly tally: Tally;
  /** Whether the tally or `seq` changed since the last `settle` (which writes them and reports). */
  private dirty = false;
  /** Whether `onFigures` was called since this instance started. */
  private figuresCalled = false;
  /** Updates held for the end of the window, the newest `seq`s; in storage as well (but the first, sent at once). */
  private pending: StoredUpdate[];
  /** Whether `agent_ws_window` has rows. */
  private windowStored: boolean;
  /** `Date.now()` when the open window ends; 0 when none is open. */
  private windowEnd = 0;
  /** When the alarm is set for, as far as this instance knows; `undefined` until read. */
  private alarmAt: number | null | undefined;
  /** The queue handed over to the sockets opening now, and the updates sent since. */
  private handover: { updates: StoredUpdate[]; until: number } | undefined;
  /**
   * Each socket's inbound budget, by connection id. In memory only: workerd evicts an object
   * after about 10 s without an event, by when any bucket has refilled (60 frames at 20/s take
   * 3 s), so a wake's full bucket is what the budget would hold anyway.
   */
  private readonly budgets = new Map<string, InboundBudget>();

  /**
   * Runs on every start of the object, the first and each wake after an eviction: reads one
   * row (stream and tally) and the pending window (usually empty).
   *
   * @param ctx The object's `DurableObjectState`.
   * @param env The Worker's bindings.
   */
  constructor(ctx: AgentObjectState, env?: unknown) {
    this.ctx = ctx;
    this.env = env;
    this.reporter = new DirectoryReporter(ctx, env);
    this.options = resolveChannelOptions((new.target as typeof AgentChannelObject).options);
    this.store = new ChannelStore(ctx.storage, this.options);
    const stream = this.store.openStream(newEpoch());
    this.agentId = stream.agentId;
    this.epoch = stream.epoch;
    this.seq = stream.seq;
    this.wakes = stream.wakes;
    this.tally = readTally(stream.tally);
    this.pending = this.store.readWindow();
    this.windowStored = this.pending.length > 0;
  }

  /** The last `seq` sent (or queued): the pending window's are not, yet. */
  private get flushedSeq(): number {
    return this.pending.length > 0 ? (this.pending[0] as StoredUpdate).seq - 1 : this.seq;
  }

  /**
   * The object's routes, called by the Worker's routes only: `GET /ws` (a WebSocket upgrade),
   * `POST /publish` (a JSON array of updates the Worker validated and stamped; 202 once they are
   * in storage), `GET /figures` (`ObjectFigures`) and `GET /state` (the stream position and the
   * wakes, for tests and operators).
   *
   * @param request The forwarded request; the agent id is in the `X-Agent-WS-Agent` header.
   *
   * @returns The `101` with the client's socket, or the route's JSON answer.
   */
  async fetch(request: Request): Promise<Response> {
    const url = new URL(request.url);
    const agentId = request.headers.get(AGENT_HEADER) ?? '';
    if (!AGENT_ID.test(agentId)) return new Response('missing agent id', { status: 400 });
    this.reporter.noteRequest(request);
    if (agentId !== this.agentId) {
      this.agentId = agentId;
      this.dirty = true;
    }
    let response: Response;
    if (url.pathname === '/ws' && request.headers.get('Upgrade')?.toLowerCase() === 'websocket') {
      response = this.accept(resumePointOf(url.searchParams) ?? undefined);
    } else if (url.pathname === '/publish' && request.method === 'POST') {
      const updates = (await request.json()) as UnsequencedUpdate[];
      if (!Array.isArray(updates)) return new Response('expected an array of updates', { status: 400 });
      // One transaction: the updates' rows and the stream's `seq`, durable before the 202 leaves
      // (the output gate), so a crash cannot number two updates alike.
      this.ctx.storage.transactionSync(() => {
        this.publish(updates);
        this.save();
      });
      response = Response.json({ accepted: updates.length }, { status: 202 });
    } else if (url.pathname === '/figures' && request.method === 'GET') {
      response = Response.json(this.figures());
    } else if (url.pathname === '/state' && request.method === 'GET') {
      response = Response.json({
        epoch: this.epoch,
        seq: this.seq,
        wakes: this.wakes,
        sockets: this.openSockets().length,
      });
    } else {
      return new Response('not found', { status: 404 });
    }
    await this.settle(false);
    return response;
  }

  /**
   * The agent's figures now (`GET /figures`, and what `onFigures` reports).
   *
   * @returns Its counters, stream position, latest status and open tasks.
   */
  protected figures(): ObjectFigures {
    const agent = this.store.state();
    const open = [...agent.open.values()];
    const openTasks: TaskUpdate[] = [];
    for (let index = open.length - 1; index >= 0 && openTasks.length < AGENT_TASKS_MAX; index--) {
      openTasks.push(JSON.parse((open[index] as { json: string }).json) as TaskUpdate);
    }
    const { counters, dropped, errors, evictions, queue, history } = this.tally;
    return {
      agent_id: this.agentId,
      epoch: this.epoch,
      seq: this.seq,
      status: agent.status ? (JSON.parse(agent.status.json) as StatusUpdate) : null,
      open_tasks: openTasks,
      open_tasks_total: agent.open.size,
      last_update_at: this.tally.lastUpdateAt,
      total_connections: counters.total_connections,
      active_connections: this.openSockets().length,
      messages_sent: counters.messages_sent,
      messages_received: counters.messages_received,
      updates_published: counters.updates_published,
      batches_sent: counters.batches_sent,
      messages_queued: counters.messages_queued,
      queued_messages: queue.count,
      queued_bytes: queue.bytes,
      messages_dropped: sumOf(dropped),
      dropped_by_reason: { ...dropped },
      errors_by_kind: { ...errors },
      evictions_by_kind: { ...evictions },
      history_updates: history.count,
      history_bytes: history.bytes,
      state_bytes: agent.bytes,
      wakes: this.wakes,
      alarms: counters.alarms,
      batch_size: this.tally.batchSize,
      send_delay: this.tally.sendDelay,
    };
  }

  /**
   * Hook: called once an event (a publish, a connection, a frame, a close) has been handled
   * when the figures changed, and after every alarm (with `changed` false when they did not;
   * true on the first call after each wake, as this instance cannot know what was reported).
   * `read` builds the figures (it parses the snapshot's open tasks: call it only to report).
   * Returns when it wants to be called again even if nothing changes (milliseconds since the
   * Unix epoch: a report held back to keep an interval), or `undefined`; the object folds that
   * time into its one alarm. Awaited: a report that is not due should return its due time
   * rather than wait. Reports to the Worker's directory (brokers/cloudflare/reporter.ts).
   *
   * @param read Builds the figures now.
   * @param changed Whether they changed since the last call.
   *
   * @returns When to be called again, or `undefined`.
   */
  protected onFigures(read: () => ObjectFigures, changed: boolean): number | undefined | Promise<number | undefined> {
    return this.reporter.report(read, changed, this.options.heartbeatInterval > 0 && this.openSockets().length > 0);
  }

  // ---- sockets ------------------------------------------------------------------------------

  /**
   * Accepts a client's socket for hibernation and sends it `connection_established`, the
   * snapshot and, when it resumes and the history holds everything after its `since`, what it
   * missed as one `batch_update` with `source: resume`; else, when it is the agent's first
   * socket (or within a second of it), the offline queue with `source: queue`.
   */
  private accept(resume: ResumePoint | undefined): Response {
    const pair = new (
      globalThis as unknown as { WebSocketPair: new () => Record<0 | 1, WorkersWebSocket> }
    ).WebSocketPair();
    const [client, server] = [pair[0], pair[1]];
    // The snapshot and the resume are as of what was sent: the pending window reaches this
    // socket at its end, with every other.
    const flushed = this.flushedSeq;
    const queued = this.takeHandover();
    // The history, or else the queue just handed over (it may reach further back than a short
    // history), as the hub's plugin/establish.ts.
    const missed =
      resume && resume.epoch === this.epoch && resume.since <= flushed
        ? (this.store.historyBetween(resume.since, flushed) ?? gapIn(queued, resume.since, flushed))
        : undefined;
    this.ctx.acceptWebSocket(server);
    const attachment: SocketAttachment = { connection_id: crypto.randomUUID(), alive: true };
    server.serializeAttachment(attachment);
    this.tally.counters.total_connections++;
    this.dirty = true;
    this.send(
      server,
      JSON.stringify({
        type: 'connection_established',
        agent_id: this.agentId,
        connection_id: attachment.connection_id,
        heartbeat_interval: this.options.heartbeatInterval,
        batch_interval: this.options.batchInterval,
        epoch: this.epoch,
        seq: flushed,
        recovered: missed !== undefined,
        timestamp: new Date().toISOString(),
      }),
    );
    if (this.options.snapshot) this.send(server, this.snapshotFrame(flushed));
    // As the hub: a client that asked to resume and could not gets no queue (the snapshot is its
    // truth, and older updates after it would roll its state back).
    const backlog = missed ?? (resume ? [] : queued);
    if (backlog.length > 0) {
      this.send(server, storedBatch(this.agentId, missed ? 'resume' : 'queue', backlog));
      this.tally.counters.batches_sent++;
      observe(this.tally.batchSize, backlog.length);
    }
    if (this.options.heartbeatInterval > 0 && this.tally.sweepAt === 0) {
      this.tally.sweepAt = Date.now() + this.options.heartbeatInterval;
    }
    return new Response(null, { status: 101, webSocket: client } as ResponseInit);
  }

  /**
   * The sockets still open: one whose close began (a close frame sent or received) is listed by
   * `getWebSockets` until its close event, but takes no updates; while only such sockets are
   * left, updates go to the queue.
   */
  private openSockets(): WorkersWebSocket[] {
    return this.ctx.getWebSockets().filter((socket) => socket.readyState === WEBSOCKET_OPEN);
  }

  /**
   * The queue for a socket opening now: taken from storage when the agent had no socket, else
   * the one handed over less than `QUEUE_HANDOVER_MS` ago, with what was sent since.
   */
  private takeHandover(): StoredUpdate[] {
    const now = Date.now();
    if (this.handover && now < this.handover.until) return this.handover.updates;
    this.handover = undefined;
    if (this.openSockets().length > 0 || this.tally.queue.count === 0) {
      // Expiry is also the alarm's; a queue found expired here goes at once.
      if (this.store.expireQueue(this.tally, now) > 0) this.dirty = true;
      return [];
    }
    const updates = this.store.takeQueue(this.tally, now);
    this.dirty = true;
    if (updates.length > 0) this.handover = { updates, until: now + QUEUE_HANDOVER_MS };
    return updates;
  }

  private snapshotFrame(seq: number): string {
    const agent = this.store.state();
    // The state holds the updates' JSON, as the hub's: nothing is serialised again.
    const tasks = [...agent.open.values(), ...agent.ended.values()].sort((a, b) => a.seq - b.seq).map((t) => t.json);
    return `{"type":"snapshot","agent_id":"${this.agentId}","epoch":"${this.epoch}","seq":${seq},"status":${agent.status ? agent.status.json : 'null'},"tasks":[${tasks.join(',')}],"timestamp":"${new Date().toISOString()}"}`;
  }

  /** Writes one frame to one socket, counted; a socket whose write throws is closed with 1011. */
  private send(socket: WorkersWebSocket, frame: string): void {
    try {
      socket.send(frame);
      this.tally.counters.messages_sent++;
    } catch {
      this.countError('send_failed');
      closeQuietly(socket, CloseCode.INTERNAL_ERROR);
    }
    this.dirty = true;
  }

  private countError(kind: ErrorKind): void {
    this.tally.errors[kind]++;
    this.dirty = true;
  }

  // ---- publishing and the batching window ---------------------------------------------------

  /**
   * Numbers the updates and stores them (history, and the pending window or the queue), all in
   * the caller's transaction, before the publish is answered. As the hub's delivery: an update
   * while no window is open goes out at once and opens one; those within it are held (rows of
   * `agent_ws_window`) for its end, when the alarm sends them as one frame.
   */
  private publish(incoming: readonly UnsequencedUpdate[]): void {
    if (incoming.length === 0) return;
    const now = Date.now();
    const stored: StoredUpdate[] = [];
    for (const draft of incoming) {
      const update = { ...draft, agent_id: this.agentId, seq: ++this.seq, epoch: this.epoch } as AgentUpdate;
      stored.push({ seq: update.seq, type: update.type, json: this.encoder.json(update), update });
    }
    this.tally.counters.updates_published += stored.length;
    this.tally.lastUpdateAt = new Date(now).toISOString();
    this.dirty = true;
    this.store.addHistory(stored, this.tally);
    if (this.openSockets().length === 0) {
      // Nobody to send to: what the window held goes first, so the queue stays in `seq` order.
      this.flushWindow(now);
      this.store.applyToState(stored, this.tally);
      this.store.enqueue(stored, this.tally, now);
      return;
    }
    for (const update of stored) {
      if (this.windowEnd > now) {
        this.pending.push(update);
        this.store.holdInWindow(update);
        this.windowStored = true;
        continue;
      }
      this.pending.push(update);
      this.flushWindow(now);
      if (this.options.batchInterval > 0) this.windowEnd = now + this.options.batchInterval;
    }
  }

  /**
   * Ends the window: what it held goes to every open socket as one frame (one update as its
   * own frame, several as one `batch_update` with `source: window`, built from their JSON with
   * no serialisation again), or, with no socket left, to the queue.
   *
   * @returns Whether anything was sent.
   */
  private flushWindow(now: number): boolean {
    if (this.pending.length === 0) return false;
    const updates = this.pending;
    this.pending = [];
    if (this.windowStored) this.store.clearWindow();
    this.windowStored = false;
    this.store.applyToState(updates, this.tally);
    this.dirty = true;
    const sockets = this.openSockets();
    if (sockets.length === 0) {
      this.store.enqueue(updates, this.tally, now);
      return false;
    }
    if (this.handover) {
      if (now < this.handover.until) this.handover.updates.push(...updates);
      else this.handover = undefined;
    }
    let frame: string;
    if (updates.length === 1) frame = (updates[0] as StoredUpdate).json;
    else {
      frame = storedBatch(this.agentId, 'window', updates);
      this.tally.counters.batches_sent++;
      observe(this.tally.batchSize, updates.length);
    }
    for (const socket of sockets) this.send(socket, frame);
    // As the hub: once per frame, from its oldest update's acceptance.
    const accepted = Date.parse(acceptedAt(updates[0] as StoredUpdate));
    if (!Number.isNaN(accepted)) observe(this.tally.sendDelay, Math.max(0, Date.now() - accepted) / 1000);
    return true;
  }

  // ---- inbound frames -----------------------------------------------------------------------

  /**
   * A frame from a client, also after a wake: answered as the hub answers it (its rate limit,
   * its size limit, its `error` frames and close codes).
   *
   * @param socket The client's socket.
   * @param message The frame.
   */
  async webSocketMessage(socket: WorkersWebSocket, message: string | ArrayBuffer): Promise<void> {
    this.tally.counters.messages_received++;
    this.dirty = true;
    const attachment = socket.deserializeAttachment() as SocketAttachment;
    const { maxInboundRate, maxInboundBurst } = this.options;
    let budget = this.budgets.get(attachment.connection_id);
    if (!budget) {
      budget = { tokens: maxInboundBurst, refilledAt: Date.now() };
      this.budgets.set(attachment.connection_id, budget);
    }
    if (!spendFrame(budget, maxInboundRate, maxInboundBurst, Date.now())) {
      this.countError('rate_limited');
      closeQuietly(socket, CloseCode.RATE_LIMITED);
      this.budgets.delete(attachment.connection_id);
    } else {
      this.answer(socket, attachment, message);
    }
    await this.settle(false);
  }

  private answer(socket: WorkersWebSocket, attachment: SocketAttachment, message: string | ArrayBuffer): void {
    const verdict = classifyFrame(message, this.options.maxMessageSize);
    switch (verdict.kind) {
      case 'pong':
      case 'ping':
        // As the hub: a `pong` or the client's own `ping` answers the heartbeat, nothing else does.
        if (!attachment.alive) {
          attachment.alive = true;
          socket.serializeAttachment(attachment);
        }
        if (verdict.kind === 'ping')
          this.send(socket, JSON.stringify({ type: 'pong', timestamp: new Date().toISOString() }));
        break;
      case 'reject':
        this.countError(verdict.code);
        this.send(socket, errorFrame(verdict.code, verdict.message));
        break;
      case 'close':
        this.countError(verdict.error);
        closeQuietly(socket, verdict.code);
        this.budgets.delete(attachment.connection_id);
        break;
    }
  }

  /**
   * The client closed: completes the closing handshake; with no socket left, what the window
   * held goes to the queue.
   *
   * @param socket The client's socket.
   * @param code The client's close code.
   */
  async webSocketClose(socket: WorkersWebSocket, code: number): Promise<void> {
    if (code === 1006 || code === 0) this.countError('abrupt_close');
    this.forget(socket);
    // 1005 and 1006 cannot be sent in a close frame.
    closeQuietly(socket, code === 1005 || code === 1006 ? 1000 : code);
    this.dirty = true;
    this.left();
    await this.settle(false);
  }

  /** After a socket went: with none left, the window goes to the queue and no sweep is due. */
  private left(): void {
    if (this.openSockets().length > 0) return;
    this.flushWindow(Date.now());
    this.tally.sweepAt = 0;
  }

  /**
   * The socket failed; workerd has dropped it already.
   *
   * @param socket The client's socket.
   * @param _error What failed.
   */
  async webSocketError(socket: WorkersWebSocket, _error: unknown): Promise<void> {
    this.countError('socket_error');
    this.forget(socket);
    this.left();
    await this.settle(false);
  }

  private forget(socket: WorkersWebSocket): void {
    try {
      this.budgets.delete((socket.deserializeAttachment() as SocketAttachment).connection_id);
    } catch {
      // No attachment: nothing to forget.
    }
  }

  // ---- the alarm ----------------------------------------------------------------------------

  /**
   * The one alarm: ends a window that is due (after an eviction, a window found in storage is
   * due), expires the queue, sweeps the heartbeat, then reports the figures and sets the alarm
   * for whichever of them comes next.
   */
  async alarm(): Promise<void> {
    const now = Date.now();
    // Counted, and written by `settle`, but not a change worth a report on its own.
    this.tally.counters.alarms++;
    this.alarmAt = null;
    if (this.pending.length > 0 && this.windowEnd <= now + ALARM_SLACK_MS) {
      // Traffic is flowing: keep batching instead of sending the next update alone, as the hub.
      if (this.flushWindow(now) && this.options.batchInterval > 0) this.windowEnd = now + this.options.batchInterval;
    }
    this.store.expireQueue(this.tally, now);
    if (this.tally.sweepAt !== 0 && this.tally.sweepAt <= now + ALARM_SLACK_MS) this.sweep(now);
    await this.settle(true);
  }

  /**
   * The heartbeat sweep: closes with 4000 each socket that has not answered the previous ping,
   * and pings the others. Liveness is in each socket's attachment, so it survives an eviction
   * between two sweeps; the next sweep is due one interval on while sockets are left.
   */
  private sweep(now: number): void {
    const ping = JSON.stringify({ type: 'ping', timestamp: new Date(now).toISOString() });
    let remaining = 0;
    for (const socket of this.openSockets()) {
      try {
        const attachment = socket.deserializeAttachment() as SocketAttachment;
        if (!attachment.alive) {
          this.countError('heartbeat_timeout');
          this.forget(socket);
          closeQuietly(socket, CloseCode.HEARTBEAT_TIMEOUT);
          continue;
        }
        attachment.alive = false;
        socket.serializeAttachment(attachment);
        this.send(socket, ping);
        remaining++;
      } catch {
        // A socket closing meanwhile: its close event removes it.
      }
    }
    this.tally.sweepAt = remaining > 0 && this.options.heartbeatInterval > 0 ? now + this.options.heartbeatInterval : 0;
  }

  /** Writes the position and tally (one row); `dirty` stays for `settle` to see. */
  private save(): void {
    this.store.saveStream(this.agentId, this.seq, this.tally);
  }

  /**
   * Ends every event: writes the tally and position when they changed (one row), calls
   * `onFigures`, and sets the alarm for the earliest of the window's end, the sweep, the queue's
   * expiry and the report the hook asked for.
   */
  private async settle(fromAlarm: boolean): Promise<void> {
    const called = this.dirty || fromAlarm;
    // The first call after a wake says `changed`: this instance cannot know what was reported.
    const changed = this.dirty || !this.figuresCalled;
    this.dirty = false;
    // Written before anything is awaited: in the same implicit transaction as the event's rows
    // (a `seq` behind its history would number two updates alike after a crash).
    if (called) {
      this.save();
      this.figuresCalled = true;
      let due = 0;
      try {
        due = (await this.onFigures(() => this.figures(), changed)) ?? 0;
      } catch {
        // Contained, as the hub contains a throwing hook: counted, and tried again by the next event.
        this.countError('internal_error');
      }
      // A new due time, or a change meanwhile (a throwing hook's count): written now, and a
      // change is reported by the next event's `settle`.
      if (due !== this.tally.reportAt || this.dirty) {
        this.tally.reportAt = due;
        this.save();
      }
    }
    const next = Math.min(
      this.pending.length > 0 ? this.windowEnd : Number.POSITIVE_INFINITY,
      this.tally.sweepAt || Number.POSITIVE_INFINITY,
      this.store.queueExpiry(this.tally) ?? Number.POSITIVE_INFINITY,
      this.tally.reportAt || Number.POSITIVE_INFINITY,
    );
    if (this.alarmAt === undefined) this.alarmAt = await this.ctx.storage.getAlarm();
    if (next === Number.POSITIVE_INFINITY) {
      if (this.alarmAt !== null) await this.ctx.storage.deleteAlarm();
      this.alarmAt = null;
    } else if (this.alarmAt !== next) {
      await this.ctx.storage.setAlarm(next);
      this.alarmAt = next;
    }
  }
}

/** When an update was accepted (its `timestamp`); read from its JSON once the object woke without it. */
const acceptedAt = (stored: StoredUpdate): string =>
  stored.update?.timestamp ?? String((JSON.parse(stored.json) as { timestamp?: unknown }).timestamp);

/** Exactly the updates after `since` up to `upTo` in `updates`, or `undefined` when they do not cover it. */
const gapIn = (updates: readonly StoredUpdate[], since: number, upTo: number): StoredUpdate[] | undefined => {
  const gap = updates.filter((update) => update.seq > since && update.seq <= upTo);
  const complete =
    gap.length === 0
      ? since === upTo
      : (gap[0] as StoredUpdate).seq === since + 1 && (gap.at(-1) as StoredUpdate).seq === upTo;
  return complete ? gap : undefined;
};

/** A `batch_update` of stored updates: the frame `encoder.batch` builds, with no serialisation again. */
const storedBatch = (
  agentId: string,
  source: 'window' | 'resume' | 'queue',
  updates: readonly StoredUpdate[],
): string => {
  const entries = updates.map((update) => `{"type":"${update.type}","content":${update.json}}`);
  return `{"type":"batch_update","agent_id":"${agentId}","source":"${source}","updates":[${entries.join(',')}],"timestamp":"${new Date().toISOString()}"}`;
};

const errorFrame = (code: ErrorCode, message: string): string =>
  JSON.stringify({ type: 'error', code, message, timestamp: new Date().toISOString() });

/** Closes a socket with a code of close-codes.ts (or the client's own), if it is not closed already. */
const closeQuietly = (socket: WorkersWebSocket, code: number): void => {
  try {
    socket.close(code, CLOSE_REASONS[code as CloseCode]);
  } catch {
    // Already closed.
  }
};
