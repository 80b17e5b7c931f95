/**
 * The SQLite broker's memory: the in-memory broker's own books (`StreamBook`, `QueueBook` in
 * `plugin/broker.ts`), so numbering, history, state, queues, every limit, eviction and the
 * listing are the memory broker's by construction. What these subclasses add is only what the
 * file needs: they note which agents and queues changed, and keep a record of what the file
 * holds, so each commit writes exactly the difference.
 *
 * - Streams (the `agents`, `history` and `state` tables) are compared at commit: every agent the
 *   book touched since the last commit is written from memory against the record of its rows
 *   (history rows below the book's oldest `seq` deleted, newer ones inserted; a state entry
 *   whose held update changed replaced). The book's methods that touch a stream are overridden
 *   only to note it.
 * - Queues (the `queues` and `queue` tables) change row by row as the book changes them: updates
 *   join a queue only through `add`, and leave only through `trim`, `take`, `drop` and `discard`
 *   (see `QueueBook`), each journaled for the next transaction.
 *
 * @module
 */
import type { AgentState, HeldUpdate } from '../../plugin/agent-state.ts';
import {
  type BrokerContext,
  type DropReason,
  lengthOf,
  type Queue,
  QueueBook,
  type Stream,
  StreamBook,
} from '../../plugin/broker.ts';
import { heldBytes } from '../../plugin/encode.ts';
import type { AgentUpdate } from '../../plugin/schemas.ts';
import type { SqliteStatement, SqlValue } from './driver.ts';
import type { Statements, StoredRows } from './store.ts';

/** What the books write through: the broker's write-behind log. */
export interface Journal {
  readonly sql: Statements;
  /** Adds a row write to the next transaction. */
  write(statement: SqliteStatement, ...params: SqlValue[]): void;
  /** The next number for a row id, a queue position or an order: increasing across restarts. */
  next(): number;
  /** Reports a stored row not used (with the agent it belongs to). */
  report(error: Error, agentId: string): void;
}

/** The key of the status among a state's entries: no task id is empty. */
const STATUS = '';

/** One state entry as the file holds it: the held update it was written from, and its row. */
interface StoredEntry {
  held: HeldUpdate | undefined;
  row: number;
  /** The commit that last saw it in memory: entries not seen are deleted. */
  seen: number;
}

/** One agent's rows as the file holds them. */
interface StoredStream {
  readonly epoch: string;
  /** The `seq` of the history row at `head`. */
  first: number;
  /** History row ids, consecutive `seq` from `first`. */
  ids: number[];
  head: number;
  readonly state: Map<string, StoredEntry>;
}

/** A row whose owner is gone: deleted in the first transaction. */
const orphan = (journal: Journal, statement: SqliteStatement, id: number) => journal.write(statement, id);

/**
 * The memory broker's `StreamBook`, noting every agent it touches and the order it moves them
 * in, and writing them to the file at commit (`writeStream`).
 *
 * @internal
 */
export class StoredStreams extends StreamBook {
  /** What the file holds, per agent. */
  readonly stored = new Map<string, StoredStream>();
  /** Agents touched since the last commit. */
  readonly dirty = new Set<string>();
  /** Each agent's place in the book's order (its `agents.ord`): given when moved to the back. */
  readonly ords = new Map<string, number>();
  readonly #agentOf = new WeakMap<Stream, string>();
  readonly #journal: Journal;
  #commit = 0;

  constructor(context: BrokerContext, subscribers: ReadonlyMap<string, unknown>, maxAgents: number, journal: Journal) {
    super(context, subscribers, maxAgents);
    this.#journal = journal;
  }

  override newStream(agentId: string, epoch?: string): Stream {
    const stream = super.newStream(agentId, epoch);
    this.#agentOf.set(stream, agentId);
    this.dirty.add(agentId);
    return stream;
  }

  override streamOf(agentId: string): Stream {
    const stream = super.streamOf(agentId);
    this.ords.set(agentId, this.#journal.next());
    this.dirty.add(agentId);
    return stream;
  }

  override moveToBack(moved: readonly [string, Stream][]): void {
    super.moveToBack(moved);
    for (const [agentId] of moved) {
      this.ords.set(agentId, this.#journal.next());
      this.dirty.add(agentId);
    }
  }

  override forgetHistory(stream: Stream, keep: number): void {
    super.forgetHistory(stream, keep);
    const agentId = this.#agentOf.get(stream);
    if (agentId !== undefined) this.dirty.add(agentId);
  }

  override forgetStream(agentId: string, stream: Stream): void {
    super.forgetStream(agentId, stream);
    this.ords.delete(agentId);
    this.dirty.add(agentId);
  }

  override shrinkToNewest(agentId: string, stream: Stream): void {
    super.shrinkToNewest(agentId, stream);
    this.dirty.add(agentId);
  }

  /** Writes every touched agent from memory (inside the commit's transaction). */
  writeDirty(): void {
    this.#commit++;
    for (const agentId of this.dirty) this.#writeStream(agentId);
    this.dirty.clear();
  }

  /** Deletes every row of a stored stream. */
  #erase(stored: StoredStream): void {
    const { sql } = this.#journal;
    for (let index = stored.head; index < stored.ids.length; index++) {
      sql.deleteHistoryRow.run(stored.ids[index] as number);
    }
    for (const entry of stored.state.values()) sql.deleteStateRow.run(entry.row);
  }

  /** Brings one agent's rows to what memory holds. */
  #writeStream(agentId: string): void {
    const { sql } = this.#journal;
    const stream = this.streams.get(agentId);
    let stored = this.stored.get(agentId);
    if (stored && (!stream || stored.epoch !== stream.epoch)) {
      this.#erase(stored);
      this.stored.delete(agentId);
      stored = undefined;
    }
    if (!stream) {
      sql.deleteAgent.run(agentId);
      return;
    }
    if (!stored) {
      stored = { epoch: stream.epoch, first: 0, ids: [], head: 0, state: new Map() };
      this.stored.set(agentId, stored);
    }
    sql.putAgent.run(agentId, stream.epoch, stream.seq, this.ords.get(agentId) ?? 0);
    this.#writeHistory(agentId, stream, stored);
    this.#writeState(agentId, stream.state, stored);
  }

  /** History rows below memory's oldest `seq` go, those past the file's newest come. */
  #writeHistory(agentId: string, stream: Stream, stored: StoredStream): void {
    const { sql, next } = this.#journal;
    const held = stream.history.length - stream.head;
    const first = stream.seq - held + 1;
    while (stored.head < stored.ids.length && (held === 0 || stored.first < first)) {
      sql.deleteHistoryRow.run(stored.ids[stored.head] as number);
      stored.head++;
      stored.first++;
    }
    if (stored.head === stored.ids.length) {
      stored.ids = [];
      stored.head = 0;
      stored.first = first;
    } else if (stored.head > 64 && stored.head * 2 > stored.ids.length) {
      stored.ids = stored.ids.slice(stored.head);
      stored.head = 0;
    }
    for (let seq = stored.first + stored.ids.length - stored.head; seq <= stream.seq; seq++) {
      const id = next();
      sql.putHistoryRow.run(id, agentId, seq, stream.history[stream.head + seq - first] as string);
      stored.ids.push(id);
    }
  }

  /** State entries whose held update changed are replaced; those memory no longer has go. */
  #writeState(agentId: string, state: AgentState, stored: StoredStream): void {
    const { sql, next } = this.#journal;
    const commit = this.#commit;
    const visit = (key: string, held: HeldUpdate) => {
      const entry = stored.state.get(key);
      if (entry?.held === held) {
        entry.seen = commit;
        return;
      }
      if (entry) sql.deleteStateRow.run(entry.row);
      const row = next();
      sql.putStateRow.run(row, agentId, key, held.seq, held.json);
      stored.state.set(key, { held, row, seen: commit });
    };
    if (state.status) visit(STATUS, state.status);
    for (const [taskId, held] of state.open) visit(taskId, held);
    for (const [taskId, held] of state.ended) visit(taskId, held);
    for (const [key, entry] of stored.state) {
      if (entry.seen === commit) continue;
      sql.deleteStateRow.run(entry.row);
      stored.state.delete(key);
    }
  }

  /**
   * Reads the file's streams back: the record of what it holds first, then memory, through the
   * book (this start's limits apply; what they leave out is deleted by the first commit).
   *
   * @throws {Error} When a stored update cannot be read; the broker reports the file corrupt.
   */
  load(rows: StoredRows): void {
    const journal = this.#journal;
    for (const row of rows.agents) {
      this.stored.set(String(row.id), { epoch: String(row.epoch), first: 0, ids: [], head: 0, state: new Map() });
    }
    const histories = this.#loadHistoryRows(rows);
    for (const row of rows.state) {
      const stored = this.stored.get(String(row.agent));
      if (!stored) orphan(journal, journal.sql.deleteStateRow, Number(row.id));
      else {
        const had = stored.state.get(String(row.task));
        if (had) orphan(journal, journal.sql.deleteStateRow, had.row);
        stored.state.set(String(row.task), { held: undefined, row: Number(row.id), seen: 0 });
      }
    }
    // Memory, in the order agents were last touched: over maxAgents the least recent go.
    for (const row of rows.agents) {
      const agentId = String(row.id);
      if (this.streams.size >= this.maxAgents) this.forgetLeastRecent();
      const stream = this.newStream(agentId, String(row.epoch));
      stream.seq = Number(row.seq);
      this.streams.set(agentId, stream);
      this.ords.set(agentId, Number(row.ord));
    }
    for (const row of rows.state) this.#loadState(row);
    for (const [agentId, jsons] of histories) {
      const stream = this.streams.get(agentId);
      if (!stream || this.context.historySize === 0) continue;
      for (const json of jsons) this.keepInHistory(stream, json, heldBytes(json));
    }
    // The first commit compares every agent with its rows.
    for (const agentId of this.stored.keys()) this.dirty.add(agentId);
  }

  /** Records the history rows; returns each agent's JSON when it is whole (consecutive to its `seq`). */
  #loadHistoryRows(rows: StoredRows): Map<string, string[]> {
    const journal = this.#journal;
    const histories = new Map<string, string[]>();
    const seqs = new Map<string, number>(rows.agents.map((row) => [String(row.id), Number(row.seq)]));
    const gapped = new Set<string>();
    for (const row of rows.history) {
      const agentId = String(row.agent);
      const stored = this.stored.get(agentId);
      if (!stored) {
        orphan(journal, journal.sql.deleteHistoryRow, Number(row.id));
        continue;
      }
      if (stored.ids.length === 0) stored.first = Number(row.seq);
      else if (Number(row.seq) !== stored.first + stored.ids.length) gapped.add(agentId);
      stored.ids.push(Number(row.id));
      const jsons = histories.get(agentId);
      if (jsons) jsons.push(String(row.json));
      else histories.set(agentId, [String(row.json)]);
    }
    // A history must be a run of consecutive numbers ending at the stream's seq; one that is
    // not (cannot happen through this broker) is not trusted for resuming: its rows go.
    for (const agentId of [...histories.keys()]) {
      const stored = this.stored.get(agentId) as StoredStream;
      if (!gapped.has(agentId) && stored.first + stored.ids.length - 1 === seqs.get(agentId)) continue;
      for (const id of stored.ids) orphan(journal, journal.sql.deleteHistoryRow, id);
      stored.ids = [];
      histories.delete(agentId);
      journal.report(new Error(`the stored history of ${agentId} has gaps: not used for resuming`), agentId);
    }
    return histories;
  }

  /** Applies one state row to its stream, as a publish would have. */
  #loadState(row: Record<string, SqlValue>): void {
    const agentId = String(row.agent);
    const stream = this.streams.get(agentId);
    if (!stream) return;
    const json = String(row.json);
    const update = this.parse(json);
    const key = update?.type === 'status_update' ? STATUS : update?.type === 'task_update' ? update.task_id : undefined;
    if (key !== String(row.task) || update.seq !== Number(row.seq) || update.epoch !== stream.epoch) {
      throw new Error(`a state row of ${agentId} does not hold its update: ${json.slice(0, 80)}`);
    }
    this.applyState(agentId, stream, update, json, heldBytes(json));
    const entry = this.stored.get(agentId)?.state.get(key);
    if (entry?.row === Number(row.id)) entry.held = stream.state.newest ?? undefined;
  }

  /** Forgets memory and the record of the file, for reading the file again. */
  reset(): void {
    this.clear();
    this.stored.clear();
    this.dirty.clear();
    this.ords.clear();
  }
}

/** One queue's rows: ids and positions, parallel to the updates the queue holds. */
interface QueueRows {
  ids: number[];
  positions: number[];
  head: number;
}

/**
 * The memory broker's `QueueBook`, journaling each row a queue gains or loses, and noting the
 * queues whose own row (`touched_at`, order) changed.
 *
 * @internal
 */
export class StoredQueues extends QueueBook {
  /** Queues whose `queues` row must be written at commit. */
  readonly dirty = new Set<string>();
  /** Each queue's place in the book's order (`queues.ord`). */
  readonly ords = new Map<string, number>();
  readonly #rows = new Map<string, QueueRows>();
  readonly #journal: Journal;
  /** While a stored queue is read back: its rows, which `add` adopts rather than writes. */
  #adopting: QueueRows | undefined;

  constructor(context: BrokerContext, maxQueuedAgents: number, journal: Journal) {
    super(context, maxQueuedAgents);
    this.#journal = journal;
  }

  override queueOf(agentId: string, now: number): Queue {
    const queue = super.queueOf(agentId, now);
    this.ords.set(agentId, this.#journal.next());
    this.dirty.add(agentId);
    return queue;
  }

  override add(agentId: string, queue: Queue, items: readonly string[], held: readonly number[], front: boolean): void {
    super.add(agentId, queue, items, held, front);
    let rows = this.#rows.get(agentId);
    if (!rows) {
      rows = { ids: [], positions: [], head: 0 };
      this.#rows.set(agentId, rows);
    }
    this.dirty.add(agentId);
    const adopted = this.#adopting;
    if (adopted) {
      rows.ids.push(...adopted.ids);
      rows.positions.push(...adopted.positions);
      return;
    }
    const { sql, next, write } = this.#journal;
    const ids = items.map(() => next());
    // Before the held ones when handed back, else after: `pos` keeps the file in queue order.
    const firstHeld = rows.head < rows.ids.length ? (rows.positions[rows.head] as number) : undefined;
    const positions = items.map((_, index) =>
      front && firstHeld !== undefined ? firstHeld - items.length + index : next(),
    );
    items.forEach((json, index) => {
      write(sql.putQueuedRow, ids[index] as number, agentId, positions[index] as number, json);
    });
    if (front) {
      rows.ids = [...ids, ...rows.ids.slice(rows.head)];
      rows.positions = [...positions, ...rows.positions.slice(rows.head)];
      rows.head = 0;
    } else {
      rows.ids.push(...ids);
      rows.positions.push(...positions);
    }
  }

  override trim(agentId: string, queue: Queue): void {
    const before = lengthOf(queue);
    super.trim(agentId, queue);
    if (lengthOf(queue) < before) this.#forgetRows(agentId, before - lengthOf(queue));
  }

  override take(agentId: string, queue: Queue, parse: (json: string) => AgentUpdate): AgentUpdate[] {
    this.#forgetRows(agentId, Number.POSITIVE_INFINITY);
    return super.take(agentId, queue, parse);
  }

  override drop(agentId: string, queue: Queue, reason: DropReason): void {
    this.#forgetRows(agentId, Number.POSITIVE_INFINITY);
    super.drop(agentId, queue, reason);
  }

  override discard(agentId: string): void {
    this.#forgetRows(agentId, Number.POSITIVE_INFINITY);
    super.discard(agentId);
  }

  /** Deletes the rows of a queue's `count` oldest updates. */
  #forgetRows(agentId: string, count: number): void {
    this.dirty.add(agentId);
    const rows = this.#rows.get(agentId);
    if (!rows) return;
    const { sql, write } = this.#journal;
    const end = Math.min(rows.ids.length, rows.head + count);
    for (let index = rows.head; index < end; index++) write(sql.deleteQueuedRow, rows.ids[index] as number);
    rows.head = end;
    if (rows.head === rows.ids.length) this.#rows.delete(agentId);
    else if (rows.head > 64 && rows.head * 2 > rows.ids.length) {
      rows.ids = rows.ids.slice(rows.head);
      rows.positions = rows.positions.slice(rows.head);
      rows.head = 0;
    }
  }

  /** Writes the `queues` row of every queue noted (inside the commit's transaction). */
  writeDirty(): void {
    const { sql } = this.#journal;
    for (const agentId of this.dirty) {
      const queue = this.queues.get(agentId);
      if (queue && lengthOf(queue) > 0) sql.putQueue.run(agentId, queue.touchedAt, this.ords.get(agentId) ?? 0);
      else {
        sql.deleteQueue.run(agentId);
        this.ords.delete(agentId);
      }
    }
    this.dirty.clear();
  }

  /**
   * Reads the file's queues back, in the order they were last added to, each with the time it
   * was: through the book, so this start's limits and `queueTtl` apply (what they drop is
   * deleted by the first commit).
   */
  load(rows: StoredRows): void {
    const journal = this.#journal;
    const items = new Map<string, { rows: QueueRows; jsons: string[] }>();
    for (const row of rows.queued) {
      const agentId = String(row.agent);
      let held = items.get(agentId);
      if (!held) {
        held = { rows: { ids: [], positions: [], head: 0 }, jsons: [] };
        items.set(agentId, held);
      }
      held.rows.ids.push(Number(row.id));
      held.rows.positions.push(Number(row.pos));
      held.jsons.push(String(row.json));
    }
    for (const row of rows.queues) {
      const agentId = String(row.agent);
      const held = items.get(agentId);
      items.delete(agentId);
      this.dirty.add(agentId);
      if (!held) continue;
      this.#adopting = held.rows;
      try {
        this.enqueue(agentId, held.jsons, held.jsons.map(heldBytes), false, Number(row.touched_at));
      } finally {
        this.#adopting = undefined;
      }
    }
    for (const { rows: unowned } of items.values()) {
      for (const id of unowned.ids) orphan(journal, journal.sql.deleteQueuedRow, id);
    }
    this.expire(Date.now());
  }

  /** Forgets memory and the record of the file, for reading the file again. */
  reset(): void {
    this.clear();
    this.#rows.clear();
    this.dirty.clear();
    this.ords.clear();
  }
}
