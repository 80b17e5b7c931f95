/**
 * One agent's tables in its object's SQLite storage, and the bounds they are kept within: the
 * history, the offline queue, the pending batching window and the snapshot state. Each bound
 * is the hub's (same option, same order of dropping, same counting), applied to rows.
 *
 * Sizes are kept in the tally (one row), so a bound is checked without reading the rows; only
 * the rows that go are read, oldest first, through a lazy cursor (a Durable Object bills rows
 * read).
 *
 * @module
 */
import { type AgentState, applyUpdate, createAgentState } from '../../plugin/agent-state.ts';
import { utf8Length } from '../../plugin/encode.ts';
import type { AgentUpdate } from '../../plugin/schemas.ts';
import type { ResolvedChannelOptions } from './object-options.ts';
import type { AgentObjectState } from './shared.ts';
import type { Tally } from './tally.ts';

/**
 * The tables. `agent_ws_stream` holds one row: the agent, the epoch, the last `seq`, the
 * constructions (`wakes`: the first start and each wake after an eviction) and the tally
 * (tally.ts) as JSON. `agent_ws_history` holds the newest updates for clients that resume,
 * `agent_ws_queue` those published while the agent had no socket, `agent_ws_window` those held
 * for the end of the batching window, `agent_ws_state` the updates a snapshot shows, one row
 * per status or task. Every update row keeps the update's wire JSON and its UTF-8 bytes (what
 * the bounds count).
 */
const SCHEMA = [
  `CREATE TABLE IF NOT EXISTS agent_ws_stream (
     id INTEGER PRIMARY KEY CHECK (id = 1),
     agent_id TEXT NOT NULL,
     epoch TEXT NOT NULL,
     seq INTEGER NOT NULL,
     wakes INTEGER NOT NULL,
     tally TEXT NOT NULL
   )`,
  'CREATE TABLE IF NOT EXISTS agent_ws_history (seq INTEGER PRIMARY KEY, json TEXT NOT NULL, bytes INTEGER NOT NULL)',
  'CREATE TABLE IF NOT EXISTS agent_ws_queue (seq INTEGER PRIMARY KEY, json TEXT NOT NULL, bytes INTEGER NOT NULL)',
  'CREATE TABLE IF NOT EXISTS agent_ws_window (seq INTEGER PRIMARY KEY, json TEXT NOT NULL)',
  'CREATE TABLE IF NOT EXISTS agent_ws_state (key TEXT PRIMARY KEY, seq INTEGER NOT NULL, json TEXT NOT NULL)',
];

/** An update as stored: its number, type and wire JSON (serialised once, at publish). */
export interface StoredUpdate {
  readonly seq: number;
  readonly type: AgentUpdate['type'];
  readonly json: string;
  /** The update itself, while the object still has it (read back from `json` otherwise). */
  readonly update?: AgentUpdate;
}

/** The stream row, as read at construction. */
export interface StreamRow {
  readonly agentId: string;
  readonly epoch: string;
  readonly seq: number;
  readonly wakes: number;
  readonly tally: string | undefined;
}

/** The key of an update's row in `agent_ws_state`. */
const stateKey = (update: AgentUpdate): string =>
  update.type === 'status_update' ? 'status' : `task:${update.task_id}`;

/** A stored update from its row. */
const storedOf = (row: Record<string, unknown>): StoredUpdate => {
  const json = String(row.json);
  // The type is the JSON's first field (`encoder.json` keeps the update's own order, `type` first).
  const type = json.startsWith('{"type":"status_update"') ? 'status_update' : 'task_update';
  return { seq: Number(row.seq), type, json };
};

/**
 * One agent's tables.
 */
export class ChannelStore {
  private readonly storage: AgentObjectState['storage'];
  private readonly options: ResolvedChannelOptions;
  /** The snapshot state, read from its rows the first time it is needed after a wake. */
  private agent: AgentState | undefined;
  /** The keys of the rows of `agent_ws_state`, with the state. */
  private stateKeys: Set<string> | undefined;

  /**
   * @param storage The object's storage.
   * @param options The object's options.
   */
  constructor(storage: AgentObjectState['storage'], options: ResolvedChannelOptions) {
    this.storage = storage;
    this.options = options;
    for (const statement of SCHEMA) storage.sql.exec(statement);
  }

  private get sql(): AgentObjectState['storage']['sql'] {
    return this.storage.sql;
  }

  /**
   * Reads the stream row, made when the object is new, and counts this construction.
   *
   * @param epoch The epoch of a new stream.
   *
   * @returns The row, `wakes` this construction included.
   */
  openStream(epoch: string): StreamRow {
    const row = this.sql
      .exec('SELECT agent_id, epoch, seq, wakes, tally FROM agent_ws_stream WHERE id = 1')
      .toArray()[0];
    if (!row) {
      this.sql.exec(
        "INSERT INTO agent_ws_stream (id, agent_id, epoch, seq, wakes, tally) VALUES (1, '', ?, 0, 1, '{}')",
        epoch,
      );
      return { agentId: '', epoch, seq: 0, wakes: 1, tally: undefined };
    }
    const wakes = Number(row.wakes) + 1;
    this.sql.exec('UPDATE agent_ws_stream SET wakes = ? WHERE id = 1', wakes);
    return {
      agentId: String(row.agent_id),
      epoch: String(row.epoch),
      seq: Number(row.seq),
      wakes,
      tally: String(row.tally),
    };
  }

  /**
   * Writes the stream's position and tally: once per event, at its end.
   *
   * @param agentId The agent.
   * @param seq The last `seq` given out.
   * @param tally The tally.
   */
  saveStream(agentId: string, seq: number, tally: Tally): void {
    this.sql.exec(
      'UPDATE agent_ws_stream SET agent_id = ?, seq = ?, tally = ? WHERE id = 1',
      agentId,
      seq,
      JSON.stringify(tally),
    );
  }

  // ---- history ------------------------------------------------------------------------------

  /**
   * Adds updates to the history, then drops the oldest while it holds more than `historySize`
   * updates or `maxHistoryBytes` bytes (an update over it on its own is not kept).
   *
   * @param updates The updates, in `seq` order.
   * @param tally Where the history's size is kept.
   */
  addHistory(updates: readonly StoredUpdate[], tally: Tally): void {
    const { historySize, maxHistoryBytes } = this.options;
    if (historySize === 0) return;
    for (const update of updates) {
      const bytes = utf8Length(update.json);
      this.sql.exec('INSERT INTO agent_ws_history (seq, json, bytes) VALUES (?, ?, ?)', update.seq, update.json, bytes);
      tally.history.count++;
      tally.history.bytes += bytes;
    }
    const history = tally.history;
    if (history.count <= historySize && history.bytes <= maxHistoryBytes) return;
    this.dropOldest('agent_ws_history', history, () => history.count > historySize || history.bytes > maxHistoryBytes);
  }

  /**
   * The history from `after` (excluded) to `upTo` (included), or `undefined` unless it holds
   * every one of them.
   *
   * @param after The last `seq` the client has.
   * @param upTo The last `seq` sent.
   *
   * @returns The updates, oldest first.
   */
  historyBetween(after: number, upTo: number): StoredUpdate[] | undefined {
    const rows = this.sql
      .exec('SELECT seq, json FROM agent_ws_history WHERE seq > ? AND seq <= ? ORDER BY seq', after, upTo)
      .toArray();
    const expected = upTo - after;
    if (rows.length !== expected || (expected > 0 && Number(rows[0]?.seq) !== after + 1)) return undefined;
    return rows.map(storedOf);
  }

  // ---- offline queue ------------------------------------------------------------------------

  /**
   * Drops the whole queue when `queueTtl` has passed since its newest update.
   *
   * @param tally Where the queue's size and the drops are kept.
   * @param now `Date.now()`.
   *
   * @returns How many updates were dropped.
   */
  expireQueue(tally: Tally, now: number): number {
    const { queue } = tally;
    if (this.options.queueTtl === 0 || queue.count === 0 || queue.touchedAt + this.options.queueTtl > now) return 0;
    const count = queue.count;
    this.sql.exec('DELETE FROM agent_ws_queue');
    queue.count = 0;
    queue.bytes = 0;
    tally.dropped.expired += count;
    return count;
  }

  /**
   * When the queue expires, if it holds anything and `queueTtl` is on.
   *
   * @param tally The tally.
   *
   * @returns `Date.now()` of its expiry, or `undefined`.
   */
  queueExpiry(tally: Tally): number | undefined {
    const { queue } = tally;
    return this.options.queueTtl > 0 && queue.count > 0 ? queue.touchedAt + this.options.queueTtl : undefined;
  }

  /**
   * Queues updates for the agent's next client, as the hub's broker does: an expired queue is
   * dropped first, then the oldest updates go while it holds more than `maxQueueSize` updates
   * (counted `count`) or `maxQueueBytes` bytes (`bytes`).
   *
   * @param updates The updates, in `seq` order.
   * @param tally Where the queue's size and the drops are kept.
   * @param now `Date.now()`.
   */
  enqueue(updates: readonly StoredUpdate[], tally: Tally, now: number): void {
    if (updates.length === 0) return;
    this.expireQueue(tally, now);
    const { queue } = tally;
    const { maxQueueSize, maxQueueBytes } = this.options;
    for (const update of updates) {
      const bytes = utf8Length(update.json);
      this.sql.exec('INSERT INTO agent_ws_queue (seq, json, bytes) VALUES (?, ?, ?)', update.seq, update.json, bytes);
      queue.count++;
      queue.bytes += bytes;
    }
    queue.touchedAt = now;
    tally.counters.messages_queued += updates.length;
    if (queue.count <= maxQueueSize && queue.bytes <= maxQueueBytes) return;
    this.dropOldest('agent_ws_queue', queue, () => {
      if (queue.count > maxQueueSize) tally.dropped.count++;
      else if (queue.bytes > maxQueueBytes) tally.dropped.bytes++;
      else return false;
      return true;
    });
  }

  /**
   * Takes the whole queue (an expired one is dropped instead).
   *
   * @param tally Where the queue's size is kept.
   * @param now `Date.now()`.
   *
   * @returns Its updates, oldest first.
   */
  takeQueue(tally: Tally, now: number): StoredUpdate[] {
    this.expireQueue(tally, now);
    if (tally.queue.count === 0) return [];
    const updates = this.sql.exec('SELECT seq, json FROM agent_ws_queue ORDER BY seq').toArray().map(storedOf);
    this.sql.exec('DELETE FROM agent_ws_queue');
    tally.queue.count = 0;
    tally.queue.bytes = 0;
    return updates;
  }

  /**
   * Deletes the oldest rows of a table while `over()` says so (it counts each drop).
   *
   * @param table `agent_ws_history` or `agent_ws_queue`.
   * @param size The table's size in the tally, kept in step.
   * @param over Whether the table is still over its bounds; called once per row that goes.
   */
  private dropOldest(table: string, size: { count: number; bytes: number }, over: () => boolean): void {
    let last: number | undefined;
    // Lazy: only the rows that go are read.
    for (const row of this.sql.exec(`SELECT seq, bytes FROM ${table} ORDER BY seq`)) {
      if (size.count === 0 || !over()) break;
      last = Number(row.seq);
      size.count--;
      size.bytes -= Number(row.bytes);
    }
    if (last !== undefined) this.sql.exec(`DELETE FROM ${table} WHERE seq <= ?`, last);
  }

  // ---- batching window ----------------------------------------------------------------------

  /**
   * The updates held for the end of the window: an object evicted (or crashed) mid-window finds
   * them here when its alarm wakes it.
   *
   * @returns The updates, oldest first.
   */
  readWindow(): StoredUpdate[] {
    return this.sql.exec('SELECT seq, json FROM agent_ws_window ORDER BY seq').toArray().map(storedOf);
  }

  /**
   * Holds an update for the end of the window.
   *
   * @param update The update.
   */
  holdInWindow(update: StoredUpdate): void {
    this.sql.exec('INSERT INTO agent_ws_window (seq, json) VALUES (?, ?)', update.seq, update.json);
  }

  /** Empties the window: its updates were sent or queued. */
  clearWindow(): void {
    this.sql.exec('DELETE FROM agent_ws_window');
  }

  // ---- snapshot state -----------------------------------------------------------------------

  /**
   * The snapshot state, from its rows the first time after a wake.
   *
   * @returns The state.
   */
  state(): AgentState {
    if (this.agent) return this.agent;
    const agent = createAgentState();
    const keys = new Set<string>();
    for (const row of this.sql.exec('SELECT key, json FROM agent_ws_state ORDER BY seq')) {
      const json = String(row.json);
      applyUpdate(agent, JSON.parse(json) as AgentUpdate, json, this.options.maxStateBytes);
      keys.add(String(row.key));
    }
    this.agent = agent;
    this.stateKeys = keys;
    return agent;
  }

  /**
   * Moves the snapshot state forward by updates sent (or queued), within `maxStateBytes` as the
   * hub's: over it, the least recently updated entries go (counted as `task` evictions), and an
   * update over it on its own is kept without its `result` (`result`). Its rows follow: the
   * entry each update made, and the removal of those it forgot.
   *
   * @param updates The updates, in `seq` order.
   * @param tally Where evictions are counted.
   */
  applyToState(updates: readonly StoredUpdate[], tally: Tally): void {
    const agent = this.state();
    const keys = this.stateKeys as Set<string>;
    for (const stored of updates) {
      const update = stored.update ?? (JSON.parse(stored.json) as AgentUpdate);
      const trim = applyUpdate(agent, update, stored.json, this.options.maxStateBytes);
      if (trim.forgotten > 0) tally.evictions.task += trim.forgotten;
      if (trim.omitted) tally.evictions.result++;
      const key = stateKey(update);
      const held = agent.newest;
      if (!held) continue;
      this.sql.exec(
        'INSERT INTO agent_ws_state (key, seq, json) VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE SET seq = excluded.seq, json = excluded.json',
        key,
        held.seq,
        held.json,
      );
      keys.add(key);
    }
    const heldCount = agent.open.size + agent.ended.size + (agent.status ? 1 : 0);
    if (keys.size <= heldCount) return;
    for (const key of keys) {
      const still =
        key === 'status' ? agent.status !== null : agent.open.has(key.slice(5)) || agent.ended.has(key.slice(5));
      if (still) continue;
      this.sql.exec('DELETE FROM agent_ws_state WHERE key = ?', key);
      keys.delete(key);
    }
  }
}
