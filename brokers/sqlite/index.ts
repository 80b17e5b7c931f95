/**
 * SQLite broker: one process, and nothing forgotten on restart. Every agent's epoch and `seq`,
 * history, snapshot state and offline queue are kept in one SQLite file as well as in memory,
 * within the same bounds as the in-memory broker, so the file stays bounded too.
 *
 * ```ts
 * import { sqliteBroker } from 'hono-agent-ws/sqlite';
 * const hub = createAgentHub({ broker: sqliteBroker({ path: './data/agents.db' }) });
 * ```
 *
 * Acknowledged means durable. A publish numbers its update in memory at once, and the update is
 * written with every other change of its commit window in one transaction (`commitInterval`): a
 * publish after a quiet spell is committed on the next turn of the event loop, and while
 * publishes keep coming, at most one commit runs per window. Only
 * after COMMIT is it delivered to the agent's connections or put in its queue, and does the
 * publish resolve (the ingest route answers 202). So an update a client has seen, or a publisher
 * was told about, is in the file: after SIGKILL and a restart on the same file the agent keeps
 * its epoch, `seq` goes on from there, a resuming client is `recovered` with exactly what it
 * missed, the first watcher gets the queue, and the snapshot shows the tasks. Taking a queue is
 * committed before the hub hands it over, so a queue handed over before a crash is not handed
 * over again after the restart (its updates stay in the history for a resuming client).
 *
 * Reads (join, resume, list) are answered from memory: a restart's reconnect storm costs no
 * query per connection. The file is read whole at start, checked (`PRAGMA quick_check`) and
 * locked (one hub per file). When a commit fails (disk full, I/O error), every publish of that
 * transaction rejects and memory is rebuilt from the file, so memory never runs ahead of it.
 *
 * Runtime-neutral given a driver (`driver.ts`); `hono-agent-ws/sqlite` (`adapters/sqlite.ts`)
 * supplies `node:sqlite` on Node 22.5+ and Deno, `bun:sqlite` on Bun.
 *
 * @module
 */
import { type AgentState, applyUpdate, createAgentState, snapshotTasks } from '../../plugin/agent-state.ts';
import {
  type AgentListing,
  type Broker,
  type BrokerContext,
  type BrokerFactory,
  type DropReason,
  newEpoch,
  type PublishReceipt,
  type StreamPosition,
  type UnsubscribeReceipt,
} from '../../plugin/broker.ts';
import type { AgentUpdate, StatusUpdate, TaskUpdate, UnsequencedUpdate } from '../../plugin/schemas.ts';
import type { SqliteDriver, SqliteStatement, SqlValue } from './driver.ts';
import { type Durability, openStore, readAll, SqliteStoreError, type Statements, type Store } from './store.ts';

export type { Durability, SqliteStoreProblem } from './store.ts';
export { SqliteStoreError } from './store.ts';

/**
 * Options of `sqliteBroker`.
 */
export interface SqliteBrokerOptions {
  /**
   * The database file; created (with its directory) when missing. One hub per file: a second
   * one is refused. An existing file that is not this broker's, or is damaged, is refused and
   * left as is.
   */
  path: string;
  /**
   * What a commit waits for: `process` (default; SQLite `synchronous = NORMAL`) survives the
   * process being killed, `power` (`FULL`) also a power loss or OS crash, at the cost of a disk
   * sync per transaction, during which the event loop waits.
   */
  durability?: Durability;
  /**
   * Least milliseconds between two commits: the publishes of one window share a transaction,
   * which is what makes the store cheap under load (a commit costs ~60-100 µs of CPU whatever it
   * holds). A publish after a quiet spell is committed at once (next turn of the event loop); a
   * busy agent's updates wait for the window's end, up to this long, before they are delivered
   * and acknowledged. 0 commits on every turn. Default 10.
   */
  commitInterval?: number;
  /** As `MemoryBrokerOptions.maxQueuedAgents`: most agents holding an offline queue. Default 10000. */
  maxQueuedAgents?: number;
  /** As `MemoryBrokerOptions.maxAgents`: most agents whose stream is kept. Default 10000. */
  maxAgents?: number;
}

/** Default of `BrokerContext.maxStateBytes` for a hub that does not pass it. */
const DEFAULT_MAX_STATE_BYTES = 1024 * 1024;
/** Default of `BrokerContext.maxTotalStateBytes` for a hub that does not pass it. */
const DEFAULT_MAX_TOTAL_STATE_BYTES = 64 * 1024 * 1024;
/** Publishes held before a commit is forced without waiting for the tick: bounds a transaction. */
const MAX_PENDING = 5000;

/** Shared receipts. */
const NOT_QUEUED: PublishReceipt = Object.freeze({ queued: false });
const QUEUED: PublishReceipt = Object.freeze({ queued: true });
const NOTHING_QUEUED: UnsubscribeReceipt = Object.freeze({ queued: 0 });

/**
 * One agent's stream, in memory and mirrored in the file.
 *
 * @internal
 */
interface Stream {
  readonly epoch: string;
  seq: number;
  history: AgentUpdate[];
  sizes: number[];
  head: number;
  bytes: number;
  readonly state: AgentState;
  /** The file's row id of each history entry (`history.id`), parallel to `history`. */
  rows: number[];
  /** Bytes of the state's updates, by task id; the status under `STATUS`. */
  readonly stateSizes: Map<string, number>;
  /** The file's row id of each of them (`state.id`). */
  readonly stateRows: Map<string, number>;
  stateBytes: number;
  /** Its place in the order agents were last published to (the file's `agents.ord`). */
  ord: number;
}

/** The key of the status in `Stream.stateSizes`: no task id is empty. */
const STATUS = '';

/**
 * One agent's offline queue, oldest first; `positions` are the file's `queue.pos` (the order),
 * `rows` its `queue.id`.
 *
 * @internal
 */
interface Queue {
  items: AgentUpdate[];
  sizes: number[];
  positions: number[];
  rows: number[];
  head: number;
  bytes: number;
  touchedAt: number;
  ord: number;
}

/**
 * A publish waiting for its commit.
 *
 * @internal
 */
interface Pending {
  readonly agentId: string;
  readonly update: AgentUpdate;
  readonly resolve: (receipt: PublishReceipt) => void;
  readonly reject: (error: unknown) => void;
}

const integerOption = (name: string, value: number | undefined, fallback: number, min: number): number => {
  const result = value ?? fallback;
  if (!Number.isInteger(result) || result < min || result > 2 ** 31 - 1) {
    throw new TypeError(`sqliteBroker: ${name} must be a whole number >= ${min}, got ${value}`);
  }
  return result;
};

/** A bound from the hub: its value, or `fallback` when an older hub passes none. */
const bound = (value: number | undefined, fallback: number): number =>
  typeof value === 'number' && Number.isFinite(value) && value >= 0 ? value : fallback;

/**
 * Creates the SQLite broker over a driver; `hono-agent-ws/sqlite` calls it with the runtime's.
 *
 * @param driver The runtime's SQLite (see `driver.ts`).
 * @param options The broker options.
 *
 * @returns A broker factory for `createAgentHub({ broker })`. The file is opened, checked,
 *   locked and read when the hub starts the broker (in `createAgentHub`).
 *
 * @throws {TypeError} When an option is invalid.
 * @throws {SqliteStoreError} From the factory, when the file is in use by another hub (`locked`),
 *   damaged or not this broker's (`corrupt`), or cannot be opened (`io`).
 */
export function createSqliteBroker(driver: SqliteDriver, options: SqliteBrokerOptions): BrokerFactory {
  const path = options?.path;
  if (typeof path !== 'string' || path === '') throw new TypeError('sqliteBroker: path must name the database file');
  const durability = options.durability ?? 'process';
  if (durability !== 'process' && durability !== 'power') {
    throw new TypeError(`sqliteBroker: durability must be "process" or "power", got ${String(durability)}`);
  }
  const commitInterval = integerOption('commitInterval', options.commitInterval, 10, 0);
  const maxQueuedAgents = integerOption('maxQueuedAgents', options.maxQueuedAgents, 10_000, 1);
  const maxAgents = integerOption('maxAgents', options.maxAgents, 10_000, 1);
  return (context) =>
    startBroker(openStore(driver.open, path, durability), driver.defer, path, context, {
      commitInterval,
      maxQueuedAgents,
      maxAgents,
    });
}

function startBroker(
  store: Store,
  defer: SqliteDriver['defer'],
  path: string,
  context: BrokerContext,
  options: { commitInterval: number; maxQueuedAgents: number; maxAgents: number },
): Broker {
  const { maxQueueSize, maxQueueBytes, maxTotalQueueBytes, queueTtl, sizeOf, onDropped } = context;
  const { historySize, maxHistoryBytes, maxTotalHistoryBytes } = context;
  const maxStateBytes = bound(context.maxStateBytes, DEFAULT_MAX_STATE_BYTES);
  const maxTotalStateBytes = bound(context.maxTotalStateBytes, DEFAULT_MAX_TOTAL_STATE_BYTES);
  const { maxQueuedAgents, maxAgents, commitInterval } = options;
  const sql: Statements = store.statements;
  const report = (operation: string, error: unknown, agentId?: string) => context.onError?.(operation, error, agentId);

  const subscribers = new Map<string, (update: AgentUpdate) => void>();
  // In the order agents were last published to / queues last added to: the front goes first.
  const streams = new Map<string, Stream>();
  const queues = new Map<string, Queue>();
  let queued = 0;
  let queuedBytes = 0;
  let historyBytes = 0;
  let stateBytes = 0;
  /** Next `ord` (agents and queues) and `pos` (queued updates): increasing across restarts. */
  let counter = 0;

  /** The JSON each update was stored or published with (without `seq` and `epoch`). */
  const bodies = new WeakMap<AgentUpdate, string>();
  const bodyOf = (update: AgentUpdate): string => bodies.get(update) ?? JSON.stringify(update);
  /** Reads back an update the snapshot state holds as JSON. */
  const parse = context.parse ?? ((json: string) => JSON.parse(json) as AgentUpdate);

  // ---- the write-behind journal: what the next transaction writes ------------------------

  /** Row writes in the order they happened: replayed as is in the transaction. */
  let writes: [SqliteStatement, SqlValue[]][] = [];
  /** Agents whose `agents` row, history front or queue changed: written from memory at commit. */
  const dirtyAgents = new Set<string>();
  const dirtyQueues = new Set<string>();
  let pending: Pending[] = [];
  /** A commit is scheduled; `lastCommit` is when the last one ran (`performance.now()`). */
  let scheduled = false;
  let lastCommit = Number.NEGATIVE_INFINITY;
  let closed = false;
  /** Set when the file could not be read back after a failed commit: every call fails with it. */
  let broken: unknown;

  const write = (statement: SqliteStatement, ...params: SqlValue[]) => {
    writes.push([statement, params]);
    schedule();
  };
  const schedule = () => {
    if (scheduled || closed) return;
    scheduled = true;
    const wait = lastCommit + commitInterval - performance.now();
    if (wait > 0) setTimeout(flush, wait);
    else defer(flush);
  };

  // ---- streams: numbering, history, state -------------------------------------------------

  const newStream = (epoch = newEpoch()): Stream => ({
    epoch,
    seq: 0,
    history: [],
    sizes: [],
    rows: [],
    head: 0,
    bytes: 0,
    state: createAgentState(),
    stateSizes: new Map(),
    stateRows: new Map(),
    stateBytes: 0,
    ord: ++counter,
  });

  const forgetHistory = (stream: Stream, keep: number) => {
    while (stream.history.length - stream.head > keep) {
      const bytes = stream.sizes[stream.head] as number;
      stream.history[stream.head] = undefined as unknown as AgentUpdate;
      write(sql.deleteHistoryRow, stream.rows[stream.head] as number);
      stream.head++;
      stream.bytes -= bytes;
      historyBytes -= bytes;
    }
    if (stream.head > 64 && stream.head * 2 > stream.history.length) {
      stream.history = stream.history.slice(stream.head);
      stream.sizes = stream.sizes.slice(stream.head);
      stream.rows = stream.rows.slice(stream.head);
      stream.head = 0;
    }
  };

  /** Drops the state's entry `key` from the counts and the file (the caller drops it from the state). */
  const uncount = (stream: Stream, key: string) => {
    const bytes = stream.stateSizes.get(key) ?? 0;
    stream.stateSizes.delete(key);
    stream.stateBytes -= bytes;
    stateBytes -= bytes;
    const row = stream.stateRows.get(key);
    if (row !== undefined) write(sql.deleteStateRow, row);
    stream.stateRows.delete(key);
  };

  /** Forgets the state's entry `key` (a task id, or `STATUS`). */
  const forgetState = (stream: Stream, key: string) => {
    if (!stream.stateSizes.has(key)) return;
    uncount(stream, key);
    if (key === STATUS) stream.state.status = null;
    else if (!stream.state.open.delete(key)) stream.state.ended.delete(key);
  };

  const forgetStream = (agentId: string, stream: Stream) => {
    forgetHistory(stream, 0);
    clearState(stream);
    streams.delete(agentId);
    dirtyAgents.add(agentId);
  };

  /** Moves the state forward by one update, within the snapshot's bounds and the byte bounds. */
  const updateState = (agentId: string, stream: Stream, update: AgentUpdate) => {
    const { state } = stream;
    const key = update.type === 'status_update' ? STATUS : update.task_id;
    // applyUpdate forgets at most the least recently updated open or ended task: note both.
    const firstOpen = state.open.keys().next().value;
    const firstEnded = state.ended.keys().next().value;
    applyUpdate(state, update, context.jsonOf?.(update));
    for (const first of [firstOpen, firstEnded]) {
      if (first !== undefined && first !== key && !state.open.has(first) && !state.ended.has(first)) {
        uncount(stream, first);
      }
    }
    uncount(stream, key);
    const bytes = sizeOf(update);
    const row = ++counter;
    stream.stateSizes.set(key, bytes);
    stream.stateRows.set(key, row);
    stream.stateBytes += bytes;
    stateBytes += bytes;
    write(sql.putStateRow, row, agentId, key, update.seq, bodyOf(update));
    // Over the agent's bound: ended tasks go first, then open ones, least recently updated first.
    while (stream.stateBytes > maxStateBytes) {
      const victim =
        state.ended.keys().next().value ?? state.open.keys().next().value ?? (state.status ? STATUS : undefined);
      if (victim === undefined) break;
      forgetState(stream, victim);
    }
    // Over the total: the states of the agents published to least recently go, this one last.
    for (const other of streams.values()) {
      if (stateBytes <= maxTotalStateBytes) break;
      if (other !== stream) clearState(other);
    }
    if (stateBytes > maxTotalStateBytes) clearState(stream);
  };

  const clearState = (stream: Stream) => {
    for (const key of [...stream.stateSizes.keys()]) forgetState(stream, key);
  };

  /** Numbers the update, records it in history and state, within every bound. */
  const record = (agentId: string, draft: UnsequencedUpdate): AgentUpdate => {
    let stream = streams.get(agentId);
    if (stream) streams.delete(agentId);
    else {
      if (streams.size >= maxAgents) {
        const [oldestId, oldest] = streams.entries().next().value as [string, Stream];
        forgetStream(oldestId, oldest);
      }
      stream = newStream();
    }
    streams.set(agentId, stream);
    stream.ord = ++counter;
    dirtyAgents.add(agentId);
    const update = draft as AgentUpdate;
    update.seq = ++stream.seq;
    update.epoch = stream.epoch;
    updateState(agentId, stream, update);
    if (historySize > 0) {
      const bytes = sizeOf(update);
      stream.history.push(update);
      stream.sizes.push(bytes);
      stream.bytes += bytes;
      historyBytes += bytes;
      const row = ++counter;
      stream.rows.push(row);
      write(sql.putHistoryRow, row, agentId, update.seq, bodyOf(update));
      while (stream.history.length - stream.head > historySize || stream.bytes > maxHistoryBytes) {
        forgetHistory(stream, stream.history.length - stream.head - 1);
      }
      for (const other of streams.values()) {
        if (historyBytes <= maxTotalHistoryBytes) break;
        forgetHistory(other, 0);
      }
    }
    return update;
  };

  const position = (agentId: string): StreamPosition => {
    let stream = streams.get(agentId);
    if (!stream) {
      // An agent never published to starts its epoch now (and keeps it across restarts), so a
      // client that resumes from it later finds the same epoch.
      if (streams.size >= maxAgents) {
        const [oldestId, oldest] = streams.entries().next().value as [string, Stream];
        forgetStream(oldestId, oldest);
      }
      stream = newStream();
      streams.set(agentId, stream);
      dirtyAgents.add(agentId);
      schedule();
    }
    // The state holds the updates' JSON (plugin/agent-state.ts): read back for the hub.
    const status = stream.state.status;
    return {
      epoch: stream.epoch,
      seq: stream.seq,
      status: status ? (parse(status.json) as StatusUpdate) : null,
      tasks: snapshotTasks(stream.state, parse),
    };
  };

  // ---- queues ------------------------------------------------------------------------------

  const size = (queue: Queue) => queue.items.length - queue.head;

  const remove = (agentId: string, queue: Queue): AgentUpdate[] => {
    queues.delete(agentId);
    queued -= size(queue);
    queuedBytes -= queue.bytes;
    for (let index = queue.head; index < queue.rows.length; index++) {
      write(sql.deleteQueuedRow, queue.rows[index] as number);
    }
    dirtyQueues.add(agentId);
    schedule();
    return queue.items.slice(queue.head);
  };

  const dropQueue = (agentId: string, queue: Queue, reason: DropReason) => {
    const count = size(queue);
    remove(agentId, queue);
    if (count > 0) onDropped(agentId, count, reason);
  };

  const trim = (agentId: string, queue: Queue) => {
    let byCount = 0;
    let byBytes = 0;
    while (size(queue) > 0 && (size(queue) > maxQueueSize || queue.bytes > maxQueueBytes)) {
      if (size(queue) > maxQueueSize) byCount++;
      else byBytes++;
      const bytes = queue.sizes[queue.head] as number;
      write(sql.deleteQueuedRow, queue.rows[queue.head] as number);
      queue.head++;
      queue.bytes -= bytes;
      queued--;
      queuedBytes -= bytes;
    }
    if (queue.head > 64 && queue.head * 2 > queue.items.length) {
      queue.items = queue.items.slice(queue.head);
      queue.sizes = queue.sizes.slice(queue.head);
      queue.positions = queue.positions.slice(queue.head);
      queue.rows = queue.rows.slice(queue.head);
      queue.head = 0;
    }
    if (byCount > 0) onDropped(agentId, byCount, 'count');
    if (byBytes > 0) onDropped(agentId, byBytes, 'bytes');
  };

  const expire = (now: number) => {
    if (queueTtl === 0) return;
    for (const [agentId, queue] of queues) {
      if (queue.touchedAt + queueTtl > now) break;
      dropQueue(agentId, queue, 'expired');
    }
  };

  const enqueue = (agentId: string, updates: readonly AgentUpdate[], front: boolean): void => {
    const now = Date.now();
    expire(now);
    let queue = queues.get(agentId);
    if (queue) queues.delete(agentId);
    else {
      if (queues.size >= maxQueuedAgents) {
        const [oldestAgent, oldestQueue] = queues.entries().next().value as [string, Queue];
        dropQueue(oldestAgent, oldestQueue, 'agents');
      }
      queue = { items: [], sizes: [], positions: [], rows: [], head: 0, bytes: 0, touchedAt: now, ord: 0 };
    }
    queues.set(agentId, queue);
    queue.touchedAt = now;
    queue.ord = ++counter;
    dirtyQueues.add(agentId);
    const sizes = updates.map(sizeOf);
    const added = sizes.reduce((sum, bytes) => sum + bytes, 0);
    const held = size(queue);
    // Before the held ones when handed back, else after: `pos` keeps the file in queue order.
    const firstPosition = front && held > 0 ? (queue.positions[queue.head] as number) - updates.length : 0;
    const positions = updates.map((_, index) => (front && held > 0 ? firstPosition + index : ++counter));
    const rows = updates.map(() => ++counter);
    updates.forEach((update, index) => {
      write(
        sql.putQueuedRow,
        rows[index] as number,
        agentId,
        positions[index] as number,
        update.epoch,
        update.seq,
        bodyOf(update),
      );
    });
    if (front) {
      queue.items = [...updates, ...queue.items.slice(queue.head)];
      queue.sizes = [...sizes, ...queue.sizes.slice(queue.head)];
      queue.positions = [...positions, ...queue.positions.slice(queue.head)];
      queue.rows = [...rows, ...queue.rows.slice(queue.head)];
      queue.head = 0;
    } else {
      queue.items.push(...updates);
      queue.sizes.push(...sizes);
      queue.positions.push(...positions);
      queue.rows.push(...rows);
    }
    queue.bytes += added;
    queued += updates.length;
    queuedBytes += added;
    trim(agentId, queue);
    for (const [otherAgent, other] of queues) {
      if (queuedBytes <= maxTotalQueueBytes) break;
      if (other !== queue) dropQueue(otherAgent, other, 'total_bytes');
    }
    if (queuedBytes > maxTotalQueueBytes) dropQueue(agentId, queue, 'total_bytes');
    else if (size(queue) === 0) remove(agentId, queue);
  };

  // ---- commit --------------------------------------------------------------------------------

  /**
   * Writes everything since the last commit in one transaction, then delivers or queues the
   * publishes it made durable and resolves them. On failure, rejects them and rebuilds memory
   * from the file.
   *
   * @returns Whether everything written so far is committed.
   */
  function flush(): boolean {
    // A commit scheduled before a forced one (subscribe, close, MAX_PENDING) finds nothing to do.
    scheduled = false;
    if (closed) return false;
    if (writes.length === 0 && pending.length === 0 && dirtyAgents.size === 0 && dirtyQueues.size === 0) return true;
    const publishes = pending;
    pending = [];
    // Deliver or queue, decided now: queueing adds its rows to this same transaction.
    const receipts: PublishReceipt[] = [];
    const deliveries: [(update: AgentUpdate) => void, AgentUpdate][] = [];
    for (const { agentId, update } of publishes) {
      const deliver = subscribers.get(agentId);
      if (deliver) {
        deliveries.push([deliver, update]);
        receipts.push(NOT_QUEUED);
      } else {
        enqueue(agentId, [update], false);
        receipts.push(QUEUED);
      }
    }
    const batch = writes;
    writes = [];
    lastCommit = performance.now();
    try {
      sql.begin.run();
      try {
        for (const [statement, params] of batch) statement.run(...params);
        for (const agentId of dirtyAgents) writeAgent(agentId);
        for (const agentId of dirtyQueues) writeQueue(agentId);
        sql.commit.run();
      } catch (error) {
        try {
          sql.rollback.run();
        } catch {
          // SQLite rolled it back itself (a full disk, an I/O error).
        }
        throw error;
      }
    } catch (error) {
      dirtyAgents.clear();
      dirtyQueues.clear();
      report('commit', error);
      for (const { reject } of publishes) reject(error);
      reload();
      return false;
    } finally {
      // The enqueues above scheduled a commit of what this one wrote.
      scheduled = false;
    }
    dirtyAgents.clear();
    dirtyQueues.clear();
    for (const [deliver, update] of deliveries) deliver(update);
    publishes.forEach(({ resolve }, index) => {
      resolve(receipts[index] as PublishReceipt);
    });
    return true;
  }

  const writeAgent = (agentId: string) => {
    const stream = streams.get(agentId);
    if (!stream) {
      sql.deleteAgent.run(agentId);
      return;
    }
    sql.putAgent.run(agentId, stream.epoch, stream.seq, stream.ord);
  };

  /** A queue's own row (its rows are written and deleted one by one as they come and go). */
  const writeQueue = (agentId: string) => {
    const queue = queues.get(agentId);
    if (!queue || size(queue) === 0) sql.deleteQueue.run(agentId);
    else sql.putQueue.run(agentId, queue.touchedAt, queue.ord);
  };

  // ---- loading -------------------------------------------------------------------------------

  /** Parses a stored update: its JSON, then the `seq` and `epoch` kept beside it. */
  const revive = (body: unknown, seq: unknown, epoch: string): AgentUpdate => {
    const update = JSON.parse(String(body)) as AgentUpdate;
    if (typeof update !== 'object' || update === null || typeof update.type !== 'string') {
      throw new Error(`a stored update is not an update: ${String(body).slice(0, 80)}`);
    }
    bodies.set(update, String(body));
    update.seq = Number(seq);
    update.epoch = epoch;
    return update;
  };

  /** Rebuilds memory from the file. */
  function load(): void {
    const rows = readAll(store, path);
    streams.clear();
    queues.clear();
    queued = 0;
    queuedBytes = 0;
    historyBytes = 0;
    stateBytes = 0;
    /** Rows no agent or queue holds any more (cannot happen through this broker): deleted. */
    const orphans: [SqliteStatement, number][] = [];
    try {
      for (const row of rows.agents) {
        const stream = newStream(String(row.epoch));
        stream.seq = Number(row.seq);
        stream.ord = Number(row.ord);
        counter = Math.max(counter, stream.ord);
        streams.set(String(row.id), stream);
      }
      for (const row of rows.state) {
        const id = Number(row.id);
        counter = Math.max(counter, id);
        const stream = streams.get(String(row.agent));
        if (!stream) {
          orphans.push([sql.deleteStateRow, id]);
          continue;
        }
        const update = revive(row.body, row.seq, stream.epoch);
        const key = update.type === 'status_update' ? STATUS : update.task_id;
        if (key !== String(row.task))
          throw new Error(`a state row of ${String(row.agent)} is filed under the wrong key`);
        applyUpdate(stream.state, update, context.jsonOf?.(update));
        const bytes = sizeOf(update);
        stream.stateSizes.set(key, bytes);
        stream.stateRows.set(key, id);
        stream.stateBytes += bytes;
        stateBytes += bytes;
      }
      // Tasks the snapshot's own bounds turned away while loading (none when the file was
      // written by this broker) are not counted.
      for (const stream of streams.values()) {
        for (const key of [...stream.stateSizes.keys()]) {
          if (key !== STATUS && !stream.state.open.has(key) && !stream.state.ended.has(key)) uncount(stream, key);
        }
      }
      for (const row of rows.history) {
        const id = Number(row.id);
        counter = Math.max(counter, id);
        const stream = streams.get(String(row.agent));
        if (!stream) {
          orphans.push([sql.deleteHistoryRow, id]);
          continue;
        }
        const update = revive(row.body, row.seq, stream.epoch);
        const bytes = sizeOf(update);
        stream.history.push(update);
        stream.sizes.push(bytes);
        stream.rows.push(id);
        stream.bytes += bytes;
        historyBytes += bytes;
      }
      // A history must be a run of consecutive numbers ending at the stream's seq; one that is
      // not (cannot happen through this broker) is not trusted for resuming.
      for (const [agentId, stream] of streams) {
        const held = stream.history;
        const consecutive = held.every((update, index) => update.seq === stream.seq - held.length + 1 + index);
        if (!consecutive) {
          forgetHistory(stream, 0);
          report('load', new Error(`the stored history of ${agentId} has gaps: not used for resuming`), agentId);
        }
      }
      const meta = new Map<string, { touchedAt: number; ord: number }>();
      for (const row of rows.queues) {
        meta.set(String(row.agent), { touchedAt: Number(row.touched_at), ord: Number(row.ord) });
        counter = Math.max(counter, Number(row.ord));
      }
      const loaded = new Map<string, Queue>();
      for (const row of rows.queued) {
        const agentId = String(row.agent);
        const id = Number(row.id);
        const pos = Number(row.pos);
        counter = Math.max(counter, id, pos);
        const held = meta.get(agentId);
        if (!held) {
          orphans.push([sql.deleteQueuedRow, id]);
          continue;
        }
        let queue = loaded.get(agentId);
        if (!queue) {
          queue = { items: [], sizes: [], positions: [], rows: [], head: 0, bytes: 0, ...held };
          loaded.set(agentId, queue);
        }
        const update = revive(row.body, row.seq, String(row.epoch));
        const bytes = sizeOf(update);
        queue.items.push(update);
        queue.sizes.push(bytes);
        queue.positions.push(pos);
        queue.rows.push(id);
        queue.bytes += bytes;
        queued++;
        queuedBytes += bytes;
      }
      for (const [agentId] of meta) {
        const queue = loaded.get(agentId);
        if (queue) queues.set(agentId, queue);
        else dirtyQueues.add(agentId);
      }
    } catch (error) {
      throw new SqliteStoreError(
        'corrupt',
        path,
        `${path} holds a row this broker cannot read (${error instanceof Error ? error.message : String(error)}); it was left as is`,
        { cause: error },
      );
    }
    // The sweep of orphans and the bounds of this start (they may be smaller than before) go
    // into the first transaction.
    for (const [statement, id] of orphans) write(statement, id);
    enforceBounds();
  }

  /** Applies the bounds of this start to what the file held (they may be smaller than before). */
  const enforceBounds = () => {
    while (streams.size > maxAgents) {
      const [oldestId, oldest] = streams.entries().next().value as [string, Stream];
      forgetStream(oldestId, oldest);
    }
    for (const stream of streams.values()) {
      while (stream.history.length - stream.head > historySize || stream.bytes > maxHistoryBytes) {
        forgetHistory(stream, stream.history.length - stream.head - 1);
      }
      while (stream.stateBytes > maxStateBytes) {
        const { state } = stream;
        const victim =
          state.ended.keys().next().value ?? state.open.keys().next().value ?? (state.status ? STATUS : undefined);
        if (victim === undefined) break;
        forgetState(stream, victim);
      }
    }
    for (const stream of streams.values()) {
      if (historyBytes <= maxTotalHistoryBytes) break;
      forgetHistory(stream, 0);
    }
    for (const stream of streams.values()) {
      if (stateBytes <= maxTotalStateBytes) break;
      clearState(stream);
    }
    expire(Date.now());
    while (queues.size > maxQueuedAgents) {
      const [oldestAgent, oldestQueue] = queues.entries().next().value as [string, Queue];
      dropQueue(oldestAgent, oldestQueue, 'agents');
    }
    for (const [agentId, queue] of queues) trim(agentId, queue);
    for (const [agentId, queue] of queues) {
      if (queuedBytes <= maxTotalQueueBytes) break;
      dropQueue(agentId, queue, 'total_bytes');
    }
  };

  /** After a failed commit: memory goes back to what the file holds. */
  const reload = () => {
    writes = [];
    try {
      load();
      // Connections keep their own positions; the hub ignores a seq it already has.
    } catch (error) {
      broken = error;
      report('load', error);
    }
  };

  const usable = () => {
    if (closed) throw new Error('hono-agent-ws/sqlite: the broker is closed');
    if (broken !== undefined) throw broken;
  };

  try {
    load();
    flush();
  } catch (error) {
    store.db.close();
    throw error;
  }

  return {
    subscribe(agentId, onUpdate) {
      usable();
      // Publishes not yet committed are committed first: the position is what the file holds,
      // and every later update reaches onUpdate.
      flush();
      subscribers.set(agentId, onUpdate);
      expire(Date.now());
      const queue = queues.get(agentId);
      const joined = { ...position(agentId), queue: queue ? remove(agentId, queue) : [] };
      // The queue's removal is committed before the hub sends it: a crash after the handover
      // cannot hand it over again after the restart. When that commit fails the queue is back
      // (memory is re-read from the file) and nothing is handed over.
      if (joined.queue.length > 0 && !flush()) {
        subscribers.delete(agentId);
        throw new Error('hono-agent-ws/sqlite: the queue could not be taken (commit failed)');
      }
      return joined;
    },
    history(agentId, since, epoch) {
      const stream = streams.get(agentId);
      if (!stream || stream.epoch !== epoch || since > stream.seq || since < 0) return undefined;
      const held = stream.history.length - stream.head;
      const first = stream.seq - held + 1;
      if (since + 1 < first) return undefined;
      return stream.history.slice(stream.head + (since + 1 - first));
    },
    unsubscribe(agentId, undelivered) {
      subscribers.delete(agentId);
      if (undelivered.length === 0 || closed || broken !== undefined) return NOTHING_QUEUED;
      enqueue(agentId, undelivered, true);
      return { queued: undelivered.length };
    },
    publish(agentId, draft) {
      usable();
      const body = context.bodyOf?.(draft);
      const update = record(agentId, draft);
      if (body !== undefined) bodies.set(update, body);
      return new Promise<PublishReceipt>((resolve, reject) => {
        pending.push({ agentId, update, resolve, reject });
        schedule();
        if (pending.length >= MAX_PENDING) flush();
      });
    },
    queuedCount() {
      expire(Date.now());
      return queued;
    },
    listAgents(after, limit, maxTasks) {
      expire(Date.now());
      const ids = [...streams.keys()].filter((id) => after === undefined || id > after).sort();
      const page = ids.slice(0, limit);
      const agents = page.map((agentId): AgentListing => {
        const stream = streams.get(agentId) as Stream;
        const open = [...stream.state.open.values()];
        const queue = queues.get(agentId);
        return {
          agent_id: agentId,
          epoch: stream.epoch,
          seq: stream.seq,
          status: stream.state.status ? (parse(stream.state.status.json) as StatusUpdate) : null,
          open_tasks:
            maxTasks > 0
              ? open
                  .slice(-maxTasks)
                  .reverse()
                  .map((held) => parse(held.json) as TaskUpdate)
              : [],
          open_tasks_total: open.length,
          queued: queue ? size(queue) : 0,
        };
      });
      return { agents, next: ids.length > limit ? (page.at(-1) ?? null) : null };
    },
    close() {
      if (closed) return;
      if (broken === undefined) {
        try {
          flush();
        } catch (error) {
          report('close', error);
        }
      }
      closed = true;
      subscribers.clear();
      try {
        store.db.close();
      } catch (error) {
        report('close', error);
      }
    },
  };
}
