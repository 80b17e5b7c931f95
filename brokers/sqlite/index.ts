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
 * over again after the restart (its updates stay in the history for a resuming client); the
 * takes of one turn share that commit, made on the next turn (a reconnect storm joins hundreds
 * of agents at once: one transaction, not one each).
 *
 * Memory is the in-memory broker's own books (`StreamBook`, `QueueBook`; `books.ts` notes what
 * they change), so every limit (count, bytes, TTL, totals), eviction and the listing behave as
 * with `memoryBroker` by construction; this file adds what a store needs: the write-behind log
 * and its grouped transactions, reading the file back at start, the lock and the checks.
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

import {
  type Broker,
  type BrokerContext,
  type BrokerFactory,
  type Joined,
  listPage,
  type PublishReceipt,
  type UnsubscribeReceipt,
} from '../../plugin/broker.ts';
import { heldBytes } from '../../plugin/encode.ts';
import type { AgentUpdate, UnsequencedUpdate } from '../../plugin/schemas.ts';
import { type Journal, StoredQueues, StoredStreams } from './books.ts';
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

/** Publishes held before a commit is forced without waiting for the tick: bounds a transaction. */
const MAX_PENDING = 5000;

/** Shared receipts. */
const NOT_QUEUED: PublishReceipt = Object.freeze({ queued: false });
const QUEUED: PublishReceipt = Object.freeze({ queued: true });
const NOTHING_QUEUED: UnsubscribeReceipt = Object.freeze({ queued: 0 });

/**
 * A publish waiting for its commit: numbered and in the books, not yet delivered or queued.
 *
 * @internal
 */
interface Pending {
  readonly agentId: string;
  readonly update: AgentUpdate;
  readonly json: string;
  readonly held: number;
  readonly resolve: (receipt: PublishReceipt) => void;
  readonly reject: (error: unknown) => void;
}

/**
 * A subscriber whose queue was taken, answered once the take is committed.
 *
 * @internal
 */
interface Taker {
  readonly agentId: string;
  readonly joined: Joined;
  readonly resolve: (joined: Joined) => void;
  readonly reject: (error: unknown) => void;
}

const integerOption = (name: string, value: number | undefined, fallback: number, min: number): number => {
  const result = value ?? fallback;
  if (!Number.isInteger(result) || result < min || result > 2 ** 31 - 1) {
    throw new TypeError(`sqliteBroker: ${name} must be a whole number >= ${min}, got ${value}`);
  }
  return result;
};

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
  const { commitInterval } = options;
  const sql: Statements = store.statements;
  const report = (operation: string, error: unknown, agentId?: string) => context.onError?.(operation, error, agentId);

  // ---- the write-behind log: what the next transaction writes ------------------------------

  /** Queue row writes in the order they happened: replayed as is in the transaction. */
  let writes: [SqliteStatement, SqlValue[]][] = [];
  let pending: Pending[] = [];
  let takers: Taker[] = [];
  /** A commit is deferred to the next turn for the takers. */
  let soon = false;
  /** Next row id, queue position and order: increasing across restarts. */
  let counter = 0;
  /** A commit is scheduled; `lastCommit` is when the last one ran (`performance.now()`). */
  let scheduled = false;
  let lastCommit = Number.NEGATIVE_INFINITY;
  let closed = false;
  /** Set when the file could not be read back after a failed commit: every call fails with it. */
  let broken: unknown;

  const journal: Journal = {
    sql,
    write(statement, ...params) {
      writes.push([statement, params]);
    },
    next: () => ++counter,
    report: (error, agentId) => report('load', error, agentId),
  };
  const subscribers = new Map<string, (update: AgentUpdate) => void>();
  // The memory broker's books: every limit, eviction and listing is the memory broker's.
  const streams = new StoredStreams(context, subscribers, options.maxAgents, journal);
  const queues = new StoredQueues(context, options.maxQueuedAgents, journal);
  const { jsonOf, parse } = streams;

  const dirty = () => writes.length > 0 || pending.length > 0 || streams.dirty.size > 0 || queues.dirty.size > 0;
  /** Schedules a commit of what the books changed, if they changed anything. */
  const schedule = () => {
    if (scheduled || closed || !dirty()) return;
    scheduled = true;
    const wait = lastCommit + commitInterval - performance.now();
    if (wait > 0) setTimeout(flush, wait);
    else defer(flush);
  };

  /** Commits on the next turn of the event loop, whatever the interval: a taker is waiting. */
  const commitSoon = () => {
    if (soon) return;
    soon = true;
    defer(() => {
      soon = false;
      flush();
    });
  };

  /** Answers the takers: after a commit, or with `error` when it failed (their queues are back). */
  const answerTakers = (error?: unknown) => {
    if (takers.length === 0) return;
    const answered = takers;
    takers = [];
    for (const taker of answered) {
      if (error === undefined) taker.resolve(taker.joined);
      else {
        subscribers.delete(taker.agentId);
        taker.reject(error);
      }
    }
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
    if (!dirty()) {
      answerTakers();
      return true;
    }
    const publishes = pending;
    pending = [];
    // Deliver or queue, decided now: queueing adds its rows to this same transaction.
    const receipts: PublishReceipt[] = [];
    const deliveries: [(update: AgentUpdate) => void, AgentUpdate][] = [];
    for (const { agentId, update, json, held } of publishes) {
      const deliver = subscribers.get(agentId);
      if (deliver) {
        deliveries.push([deliver, update]);
        receipts.push(NOT_QUEUED);
      } else {
        queues.enqueue(agentId, [json], [held], false);
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
        streams.writeDirty();
        queues.writeDirty();
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
      report('commit', error);
      for (const { reject } of publishes) reject(error);
      reload();
      answerTakers(new Error('hono-agent-ws/sqlite: the queue could not be taken (commit failed)', { cause: error }));
      return false;
    }
    answerTakers();
    for (const [deliver, update] of deliveries) deliver(update);
    publishes.forEach(({ resolve }, index) => {
      resolve(receipts[index] as PublishReceipt);
    });
    return true;
  }

  // ---- loading -------------------------------------------------------------------------------

  /** Rebuilds memory from the file, through the books (this start's limits apply). */
  function load(): void {
    const rows = readAll(store, path);
    streams.reset();
    queues.reset();
    writes = [];
    // Every number handed out from now on is past every one the file holds.
    counter = 0;
    for (const table of [rows.agents, rows.queues])
      for (const row of table) counter = Math.max(counter, Number(row.ord));
    for (const table of [rows.history, rows.state, rows.queued])
      for (const row of table) counter = Math.max(counter, Number(row.id));
    for (const row of rows.queued) counter = Math.max(counter, Number(row.pos));
    try {
      streams.load(rows);
      queues.load(rows);
    } catch (error) {
      throw new SqliteStoreError(
        'corrupt',
        path,
        `${path} holds a row this broker cannot read (${error instanceof Error ? error.message : String(error)}); it was left as is`,
        { cause: error },
      );
    }
  }

  /** After a failed commit: memory goes back to what the file holds. */
  const reload = () => {
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
      // Publishes not yet committed are committed first: they are delivered to the subscribers
      // they had, and every later update reaches onUpdate.
      if (pending.length > 0) flush();
      subscribers.set(agentId, onUpdate);
      queues.expire(Date.now());
      const queue = queues.queues.get(agentId);
      const joined = { ...streams.position(agentId), queue: queue ? queues.take(agentId, queue, parse) : [] };
      if (joined.queue.length === 0) {
        schedule();
        return joined;
      }
      // The queue's removal is committed before the hub sends it: a crash after the handover
      // cannot hand it over again after the restart. The takes of one turn of the event loop
      // share that commit (a reconnect storm takes hundreds at once). When it fails the queue
      // is back (memory is re-read from the file) and nothing is handed over.
      return new Promise<Joined>((resolve, reject) => {
        takers.push({ agentId, joined, resolve, reject });
        commitSoon();
      });
    },
    history(agentId, since, epoch) {
      return streams.history(agentId, since, epoch);
    },
    unsubscribe(agentId, undelivered) {
      subscribers.delete(agentId);
      if (undelivered.length === 0 || closed || broken !== undefined) return NOTHING_QUEUED;
      const items = undelivered.map(jsonOf);
      queues.enqueue(agentId, items, items.map(heldBytes), true);
      schedule();
      return { queued: undelivered.length };
    },
    publish(agentId, draft: UnsequencedUpdate) {
      usable();
      const [update, json, held] = streams.record(agentId, draft);
      return new Promise<PublishReceipt>((resolve, reject) => {
        pending.push({ agentId, update, json, held, resolve, reject });
        schedule();
        if (pending.length >= MAX_PENDING) flush();
      });
    },
    queuedCount() {
      queues.expire(Date.now());
      schedule();
      return queues.count;
    },
    listAgents(after, limit, maxTasks) {
      queues.expire(Date.now());
      schedule();
      return listPage(streams, queues, after, limit, maxTasks);
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
      answerTakers(new Error('hono-agent-ws/sqlite: the broker is closed'));
      subscribers.clear();
      try {
        store.db.close();
      } catch (error) {
        report('close', error);
      }
    },
  };
}
