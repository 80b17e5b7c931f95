/**
 * The Durable Object holding one agent's channel: its sockets with the WebSocket Hibernation API,
 * its stream position, history, offline queue and snapshot state in the object's SQLite storage.
 * Experimental: see docs/cloudflare.md for what is built and what is not.
 *
 * @module
 */
import { type AgentState, applyUpdate, createAgentState, heldTasks } from '../../plugin/agent-state.ts';
import { CLOSE_REASONS, CloseCode } from '../../plugin/close-codes.ts';
import { createUpdateEncoder } from '../../plugin/encode.ts';
import { classifyFrame } from '../../plugin/inbound.ts';
import type { AgentUpdate, ErrorCode, UnsequencedUpdate } from '../../plugin/schemas.ts';
import {
  AGENT_HEADER,
  AGENT_ID,
  type AgentObjectState,
  type ResumePoint,
  resumePointOf,
  type WorkersWebSocket,
  wholeNumber,
} from './shared.ts';

/** The per-socket state that survives hibernation (`serializeAttachment`). */
interface SocketAttachment {
  readonly connection_id: string;
  /** Answered (`pong`, or a `ping` of its own) since the last ping. */
  alive: boolean;
}

/**
 * Options of an agent's object. Give them as a static `options` of a subclass:
 * `export class Agents extends AgentChannelObject { static options = { heartbeatInterval: 10_000 } }`.
 */
export interface AgentChannelOptions {
  /**
   * Milliseconds between pings; a socket that has not answered one by the next is closed with
   * 4000. Each sweep is an alarm of the object, so it wakes the object once per interval while
   * it has sockets. Default 30000, as the hub's; 0 disables the heartbeat.
   */
  heartbeatInterval?: number;
  /**
   * Updates kept per agent for clients that resume (`?since=&epoch=`), the newest. Default 1000,
   * as the hub's; 0 keeps none (every resume falls back to the snapshot).
   */
  historySize?: number;
  /**
   * Most updates kept while the agent has no socket, replayed as `source: queue` to the sockets
   * that open within a second of the first; the oldest are dropped. Default 100, as the hub's.
   */
  maxQueueSize?: number;
}

/** How long after the first socket of an agent without sockets others still get the queue, as the hub's. */
const QUEUE_HANDOVER_MS = 1000;

/** A stored update, as its wire JSON. */
interface StoredUpdate {
  readonly seq: number;
  readonly type: string;
  readonly json: string;
}

/** `WebSocket.OPEN`. */
const WEBSOCKET_OPEN = 1;

/** Largest inbound frame accepted, in bytes: the hub's default `maxMessageSize`. */
const MAX_MESSAGE_SIZE = 65_536;

/** Characters of an epoch (a subset of `EpochSchema`'s). */
const EPOCH_ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789';

const newEpoch = (): string => {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  let epoch = '';
  for (const byte of bytes) epoch += EPOCH_ALPHABET[byte % EPOCH_ALPHABET.length];
  return epoch;
};

/**
 * The tables of one agent's object. `agent_ws_stream` holds one row: the epoch, the last `seq`
 * and how many times the object was constructed (each wake from hibernation is one).
 * `agent_ws_history` holds the newest updates, for clients that resume; `agent_ws_queue` those
 * published while the agent had no socket.
 * `agent_ws_state` holds the updates a snapshot shows, one row per status or task.
 */
const SCHEMA = [
  `CREATE TABLE IF NOT EXISTS agent_ws_stream (
     id INTEGER PRIMARY KEY CHECK (id = 1),
     epoch TEXT NOT NULL,
     seq INTEGER NOT NULL,
     wakes INTEGER NOT NULL
   )`,
  `CREATE TABLE IF NOT EXISTS agent_ws_history (
     seq INTEGER PRIMARY KEY,
     type TEXT NOT NULL,
     json TEXT NOT NULL
   )`,
  `CREATE TABLE IF NOT EXISTS agent_ws_queue (
     seq INTEGER PRIMARY KEY,
     type TEXT NOT NULL,
     json TEXT NOT NULL
   )`,
  `CREATE TABLE IF NOT EXISTS agent_ws_state (
     key TEXT PRIMARY KEY,
     seq INTEGER NOT NULL,
     json TEXT NOT NULL
   )`,
];

/** The key of an update's row in `agent_ws_state`. */
const stateKey = (update: AgentUpdate): string =>
  update.type === 'status_update' ? 'status' : `task:${update.task_id}`;

/**
 * A Durable Object holding one agent's channel: its sockets (accepted with the hibernation API, so
 * an idle object can be evicted while they stay open), its stream position and its snapshot state,
 * in the object's SQLite storage so that they continue after an eviction.
 *
 * Export it from the Worker under the class name the `durable_objects` binding names, with
 * `new_sqlite_classes` in its migration (the object needs SQLite storage).
 */
export class AgentChannelObject {
  /** The options of every object of this class; a subclass overrides them. */
  static options: AgentChannelOptions = {};
  /** The object's state: sockets and storage. */
  protected readonly ctx: AgentObjectState;
  private readonly encoder = createUpdateEncoder();
  private epoch: string;
  private seq: number;
  /** The snapshot state, read from storage on the first connection after a wake. */
  private agent: AgentState | undefined;
  private readonly heartbeatInterval: number;
  private readonly historySize: number;
  private readonly maxQueueSize: number;
  /** The queue handed over to the sockets opening now, and the updates sent since. */
  private handover: { updates: StoredUpdate[]; until: number } | undefined;

  /**
   * Runs on every start of the object, the first and each wake after an eviction.
   *
   * @param ctx The object's `DurableObjectState`.
   * @param _env The Worker's bindings (unused).
   */
  constructor(ctx: AgentObjectState, _env?: unknown) {
    this.ctx = ctx;
    const options = (new.target as typeof AgentChannelObject).options;
    this.heartbeatInterval = wholeNumber('heartbeatInterval', options.heartbeatInterval ?? 30_000);
    this.historySize = wholeNumber('historySize', options.historySize ?? 1000);
    this.maxQueueSize = wholeNumber('maxQueueSize', options.maxQueueSize ?? 100);
    const { sql } = ctx.storage;
    for (const statement of SCHEMA) sql.exec(statement);
    const row = sql.exec('SELECT epoch, seq FROM agent_ws_stream WHERE id = 1').toArray()[0];
    if (row) {
      this.epoch = String(row.epoch);
      this.seq = Number(row.seq);
      sql.exec('UPDATE agent_ws_stream SET wakes = wakes + 1 WHERE id = 1');
    } else {
      this.epoch = newEpoch();
      this.seq = 0;
      sql.exec('INSERT INTO agent_ws_stream (id, epoch, seq, wakes) VALUES (1, ?, 0, 1)', this.epoch);
    }
  }

  /**
   * The object's routes, called by the Worker's routes only: `GET /ws` (a WebSocket upgrade),
   * `POST /publish` (a JSON array of updates the Worker validated and stamped) and `GET /state`
   * (the stream position and the wakes, for tests and operators).
   *
   * @param request The forwarded request; the agent id is in the `X-Agent-WS-Agent` header.
   *
   * @returns The `101` with the client's socket, or the route's JSON answer.
   */
  async fetch(request: Request): Promise<Response> {
    const { pathname } = new URL(request.url);
    const agentId = request.headers.get(AGENT_HEADER) ?? '';
    if (!AGENT_ID.test(agentId)) return new Response('missing agent id', { status: 400 });
    if (pathname === '/ws' && request.headers.get('Upgrade')?.toLowerCase() === 'websocket') {
      const response = this.accept(agentId, resumePointOf(new URL(request.url).searchParams) ?? undefined);
      await this.scheduleSweep();
      return response;
    }
    if (pathname === '/publish' && request.method === 'POST') {
      const updates = (await request.json()) as UnsequencedUpdate[];
      this.publish(agentId, updates);
      return Response.json({ accepted: updates.length }, { status: 202 });
    }
    if (pathname === '/state' && request.method === 'GET') {
      const row = this.ctx.storage.sql.exec('SELECT wakes FROM agent_ws_stream WHERE id = 1').toArray()[0];
      return Response.json({
        epoch: this.epoch,
        seq: this.seq,
        wakes: Number(row?.wakes ?? 0),
        sockets: this.openSockets().length,
      });
    }
    return new Response('not found', { status: 404 });
  }

  /**
   * Accepts a client's socket for hibernation and sends it `connection_established`, the
   * snapshot and, when it resumes and the history holds everything after its `since`, what it
   * missed as one `batch_update` with `source: resume`.
   */
  private accept(agentId: string, resume: ResumePoint | undefined): Response {
    const pair = new (
      globalThis as unknown as { WebSocketPair: new () => Record<0 | 1, WorkersWebSocket> }
    ).WebSocketPair();
    const [client, server] = [pair[0], pair[1]];
    const missed = resume ? this.missedSince(resume) : undefined;
    const queued = this.takeHandover();
    this.ctx.acceptWebSocket(server);
    const attachment: SocketAttachment = { connection_id: crypto.randomUUID(), alive: true };
    server.serializeAttachment(attachment);
    server.send(
      JSON.stringify({
        type: 'connection_established',
        agent_id: agentId,
        connection_id: attachment.connection_id,
        heartbeat_interval: this.heartbeatInterval,
        // Not built yet on Workers: no batching window, each publish is sent at once.
        batch_interval: 0,
        epoch: this.epoch,
        seq: this.seq,
        recovered: missed !== undefined,
        timestamp: new Date().toISOString(),
      }),
    );
    server.send(this.snapshotFrame(agentId));
    // As the hub: a client that asked to resume and could not gets no queue (the snapshot is its
    // truth, and older updates after it would roll its state back).
    const backlog = missed ?? (resume ? [] : queued);
    if (backlog.length > 0) server.send(storedBatch(agentId, missed ? 'resume' : 'queue', backlog));
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
    if (this.openSockets().length > 0) return [];
    const { sql } = this.ctx.storage;
    const rows = sql.exec('SELECT seq, type, json FROM agent_ws_queue ORDER BY seq').toArray();
    if (rows.length === 0) return [];
    sql.exec('DELETE FROM agent_ws_queue');
    const updates = rows.map((row) => ({ seq: Number(row.seq), type: String(row.type), json: String(row.json) }));
    this.handover = { updates, until: now + QUEUE_HANDOVER_MS };
    return updates;
  }

  /** Exactly the updates after `since` up to the latest, or `undefined` when the history does not hold them all. */
  private missedSince(resume: ResumePoint): StoredUpdate[] | undefined {
    if (resume.epoch !== this.epoch || resume.since > this.seq) return undefined;
    const rows = this.ctx.storage.sql
      .exec('SELECT seq, type, json FROM agent_ws_history WHERE seq > ? ORDER BY seq', resume.since)
      .toArray();
    const expected = this.seq - resume.since;
    if (rows.length !== expected || (expected > 0 && Number(rows[0]?.seq) !== resume.since + 1)) return undefined;
    return rows.map((row) => ({ seq: Number(row.seq), type: String(row.type), json: String(row.json) }));
  }

  /** The agent's state, from storage the first time after a wake. */
  private state(): AgentState {
    if (this.agent) return this.agent;
    const agent = createAgentState();
    const rows = this.ctx.storage.sql.exec('SELECT json FROM agent_ws_state ORDER BY seq').toArray();
    for (const row of rows) {
      const json = String(row.json);
      applyUpdate(agent, JSON.parse(json) as AgentUpdate, json);
    }
    this.agent = agent;
    return agent;
  }

  private snapshotFrame(agentId: string): string {
    const agent = this.state();
    // The state holds the updates' JSON, as the hub's: nothing is serialised again.
    const tasks = heldTasks(agent).map((task) => task.json);
    return `{"type":"snapshot","agent_id":"${agentId}","epoch":"${this.epoch}","seq":${this.seq},"status":${agent.status ? agent.status.json : 'null'},"tasks":[${tasks.join(',')}],"timestamp":"${new Date().toISOString()}"}`;
  }

  /**
   * Numbers the updates, stores the position and the snapshot state in one transaction, then
   * sends them to every socket: one update as its own frame, several as one `batch_update`.
   */
  private publish(agentId: string, incoming: readonly UnsequencedUpdate[]): void {
    if (incoming.length === 0) return;
    const agent = this.state();
    const updates = incoming.map(
      (update) => ({ ...update, agent_id: agentId, seq: this.seq + 1, epoch: this.epoch }) as AgentUpdate,
    );
    const { sql } = this.ctx.storage;
    const sockets = this.openSockets();
    const watched = sockets.length > 0;
    const stored: StoredUpdate[] = [];
    this.ctx.storage.transactionSync(() => {
      let seq = this.seq;
      for (const update of updates) {
        (update as { seq: number }).seq = ++seq;
        const json = this.encoder.json(update);
        applyUpdate(agent, update, json);
        stored.push({ seq, type: update.type, json });
        if (!watched && this.maxQueueSize > 0) {
          sql.exec('INSERT INTO agent_ws_queue (seq, type, json) VALUES (?, ?, ?)', seq, update.type, json);
        }
        if (this.historySize > 0) {
          sql.exec('INSERT INTO agent_ws_history (seq, type, json) VALUES (?, ?, ?)', seq, update.type, json);
        }
        sql.exec(
          'INSERT INTO agent_ws_state (key, seq, json) VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE SET seq = excluded.seq, json = excluded.json',
          stateKey(update),
          update.seq,
          json,
        );
      }
      sql.exec('DELETE FROM agent_ws_history WHERE seq <= ?', seq - this.historySize);
      if (!watched) sql.exec('DELETE FROM agent_ws_queue WHERE seq <= ?', seq - this.maxQueueSize);
      this.forgetDropped(agent);
      sql.exec('UPDATE agent_ws_stream SET seq = ? WHERE id = 1', seq);
      this.seq = seq;
    });
    if (this.handover && Date.now() < this.handover.until) this.handover.updates.push(...stored);
    if (!watched) return;
    const frame =
      updates.length === 1
        ? this.encoder.json(updates[0] as AgentUpdate)
        : this.encoder.batch(agentId, updates, 'window', () => {});
    if (frame === undefined) return;
    for (const socket of sockets) {
      try {
        socket.send(frame);
      } catch {
        // A socket closing meanwhile: its close event removes it.
      }
    }
  }

  /** Deletes the rows of tasks the snapshot state forgot (past its bounds), when there are any. */
  private forgetDropped(agent: AgentState): void {
    const { sql } = this.ctx.storage;
    const held = agent.open.size + agent.ended.size + (agent.status ? 1 : 0);
    const rows = Number(sql.exec('SELECT count(*) AS n FROM agent_ws_state').toArray()[0]?.n ?? 0);
    if (rows <= held) return;
    const keep = new Set<string>();
    if (agent.status) keep.add('status');
    for (const taskId of [...agent.open.keys(), ...agent.ended.keys()]) keep.add(`task:${taskId}`);
    for (const row of sql.exec('SELECT key FROM agent_ws_state').toArray()) {
      const key = String(row.key);
      if (!keep.has(key)) sql.exec('DELETE FROM agent_ws_state WHERE key = ?', key);
    }
  }

  /**
   * A frame from a client, also after a wake: answered as the hub answers it.
   *
   * @param socket The client's socket.
   * @param message The frame.
   */
  webSocketMessage(socket: WorkersWebSocket, message: string | ArrayBuffer): void {
    const verdict = classifyFrame(message, MAX_MESSAGE_SIZE);
    if (verdict.kind === 'pong' || verdict.kind === 'ping') {
      // As the hub: a `pong` or the client's own `ping` answers the heartbeat, nothing else does.
      const attachment = socket.deserializeAttachment() as SocketAttachment;
      if (!attachment.alive) {
        attachment.alive = true;
        socket.serializeAttachment(attachment);
      }
    }
    switch (verdict.kind) {
      case 'pong':
        break;
      case 'ping':
        socket.send(JSON.stringify({ type: 'pong', timestamp: new Date().toISOString() }));
        break;
      case 'reject':
        sendError(socket, verdict.code, verdict.message);
        break;
      case 'close':
        socket.close(verdict.code, CLOSE_REASONS[verdict.code]);
        break;
    }
  }

  /** Sets the sweep's alarm unless one is set or the heartbeat is off. */
  private async scheduleSweep(): Promise<void> {
    if (this.heartbeatInterval === 0 || (await this.ctx.storage.getAlarm()) !== null) return;
    await this.ctx.storage.setAlarm(Date.now() + this.heartbeatInterval);
  }

  /**
   * The heartbeat sweep, one alarm per interval while the object has sockets: closes with 4000
   * each socket that has not answered the previous ping, and pings the others. The liveness of
   * each socket is in its attachment, so it survives an eviction between two sweeps.
   */
  async alarm(): Promise<void> {
    const ping = JSON.stringify({ type: 'ping', timestamp: new Date().toISOString() });
    let remaining = 0;
    for (const socket of this.ctx.getWebSockets()) {
      try {
        const attachment = socket.deserializeAttachment() as SocketAttachment;
        if (!attachment.alive) {
          socket.close(CloseCode.HEARTBEAT_TIMEOUT, CLOSE_REASONS[CloseCode.HEARTBEAT_TIMEOUT]);
          continue;
        }
        attachment.alive = false;
        socket.serializeAttachment(attachment);
        socket.send(ping);
        remaining++;
      } catch {
        // A socket closing meanwhile: its close event removes it.
      }
    }
    // Set anew, not through scheduleSweep: the alarm running now may still read as set.
    if (remaining > 0) await this.ctx.storage.setAlarm(Date.now() + this.heartbeatInterval);
  }

  /**
   * The client closed: completes the closing handshake.
   *
   * @param socket The client's socket.
   * @param code The client's close code.
   */
  webSocketClose(socket: WorkersWebSocket, code: number): void {
    try {
      // 1005 and 1006 cannot be sent in a close frame.
      socket.close(code === 1005 || code === 1006 ? 1000 : code);
    } catch {
      // Already closed.
    }
  }

  /**
   * The socket failed; workerd has dropped it already.
   *
   * @param _socket The client's socket.
   * @param _error What failed.
   */
  webSocketError(_socket: WorkersWebSocket, _error: unknown): void {}
}

/** A `batch_update` of stored updates: the frame `encoder.batch` builds, with no serialisation again. */
const storedBatch = (agentId: string, source: 'resume' | 'queue', updates: readonly StoredUpdate[]): string => {
  const entries = updates.map((update) => `{"type":"${update.type}","content":${update.json}}`);
  return `{"type":"batch_update","agent_id":"${agentId}","source":"${source}","updates":[${entries.join(',')}],"timestamp":"${new Date().toISOString()}"}`;
};

const sendError = (socket: WorkersWebSocket, code: ErrorCode, message: string) =>
  socket.send(JSON.stringify({ type: 'error', code, message, timestamp: new Date().toISOString() }));
