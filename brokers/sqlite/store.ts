/**
 * The SQLite broker's file: its tables, how it is opened (one writer, checked, never replaced),
 * and the statements the broker runs.
 *
 * Tables (every row is one agent's):
 * - `agents`: the stream: `epoch`, `seq` (its last update's number) and `ord`, the order it was
 *   last published to (the least recent is evicted first over `maxAgents`).
 * - `history`: the agent's latest updates (`seq`, and `json`: the update's wire JSON, as the
 *   hub sends it), consecutive up to the agent's `seq`, within `historySize` and the byte bounds.
 * - `state`: the snapshot's entries, the latest update of each task it holds (open or ended: its
 *   status says) and the latest status (`task` empty), as wire JSON.
 * - `queues` and `queue`: each offline queue's `touched_at` (`Date.now()` of its newest update,
 *   for `queueTtl`) and `ord` (the order queues were last added to), and its updates' wire JSON
 *   in `pos` order (a queue may outlive its stream's epoch: each JSON has its own).
 *
 * Every row holds an update as the in-memory books hold it (`brokers/sqlite/books.ts`): the
 * wire JSON, read back at start without being serialised again.
 *
 * The file is in WAL mode with an exclusive lock taken at open and held until `close` (or the
 * process's death, which the OS turns into a release): a second hub on the same file is refused
 * at once, and a restart after SIGKILL opens it normally. `synchronous` is `NORMAL` by default:
 * a committed transaction survives the process being killed (the WAL is in the OS's page
 * cache), not a power loss or an OS crash; `durability: 'power'` (`FULL`) syncs every commit to
 * the disk as well.
 *
 * @module
 */
import type { OpenSqlite, SqliteDatabase, SqliteStatement } from './driver.ts';

/** `PRAGMA application_id` of the broker's files ("haws"): a file without it is not ours. */
export const APPLICATION_ID = 0x68617773;
/**
 * `PRAGMA user_version`: the layout below. A file of another version is refused, not rewritten.
 * 1: updates stored without `seq` and `epoch` (before the broker kept its memory in the memory
 * broker's books); 2: updates stored as their wire JSON.
 */
export const SCHEMA_VERSION = 2;

/**
 * Updates are rows of append-only tables keyed by one increasing number (`id`, shared by every
 * table), found again through the ids the broker keeps in memory and deleted by id when trimmed:
 * the rows a commit adds sit together at the end of each table, so a commit writes a few pages
 * whatever agents it touches (clustered by agent, every agent touched dirtied a page of each
 * table: measured 84 µs against 31 µs of CPU per update in commits of ten, Node 24). The tables
 * are only ever read whole, at start; `agents` and `queues` are small rows, one per agent.
 */
const SCHEMA = `
CREATE TABLE agents (id TEXT PRIMARY KEY, epoch TEXT NOT NULL, seq INTEGER NOT NULL, ord INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE history (id INTEGER PRIMARY KEY, agent TEXT NOT NULL, seq INTEGER NOT NULL, json TEXT NOT NULL);
CREATE TABLE state (id INTEGER PRIMARY KEY, agent TEXT NOT NULL, task TEXT NOT NULL, seq INTEGER NOT NULL, json TEXT NOT NULL);
CREATE TABLE queues (agent TEXT PRIMARY KEY, touched_at INTEGER NOT NULL, ord INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE queue (id INTEGER PRIMARY KEY, agent TEXT NOT NULL, pos INTEGER NOT NULL, json TEXT NOT NULL);
`;

/**
 * Why the store could not be used: `locked` (another hub holds the file), `corrupt` (not a
 * SQLite file, damaged, or not this broker's), `unavailable` (the runtime has no SQLite), `io`
 * (a read or write failed).
 */
export type SqliteStoreProblem = 'locked' | 'corrupt' | 'unavailable' | 'io';

/**
 * The SQLite store cannot be used; `problem` says why. The file is never replaced or repaired:
 * move it away (or fix what the message says) and start again.
 */
export class SqliteStoreError extends Error {
  /** Why; see `SqliteStoreProblem`. */
  readonly problem: SqliteStoreProblem;
  /** The file concerned. */
  readonly path: string;

  constructor(problem: SqliteStoreProblem, path: string, message: string, options?: { cause?: unknown }) {
    super(`hono-agent-ws/sqlite: ${message}`, options);
    this.name = 'SqliteStoreError';
    this.problem = problem;
    this.path = path;
  }
}

const messageOf = (error: unknown) => (error instanceof Error ? error.message : String(error));
const isLocked = (error: unknown) => /locked|busy/i.test(messageOf(error));

/** The statements the broker runs, compiled once. */
export interface Statements {
  readonly begin: SqliteStatement;
  readonly commit: SqliteStatement;
  readonly rollback: SqliteStatement;
  readonly putAgent: SqliteStatement;
  readonly deleteAgent: SqliteStatement;
  readonly putHistoryRow: SqliteStatement;
  readonly deleteHistoryRow: SqliteStatement;
  readonly putStateRow: SqliteStatement;
  readonly deleteStateRow: SqliteStatement;
  readonly putQueue: SqliteStatement;
  readonly deleteQueue: SqliteStatement;
  readonly putQueuedRow: SqliteStatement;
  readonly deleteQueuedRow: SqliteStatement;
}

/** An open, locked, checked store. */
export interface Store {
  readonly db: SqliteDatabase;
  readonly statements: Statements;
}

/** How much a commit waits for the disk; see the module comment. */
export type Durability = 'process' | 'power';

/**
 * Opens the store at `path`: creates it when the file is new or empty, else checks that it is
 * this broker's, of this layout, and intact (`PRAGMA quick_check`), and takes its lock.
 *
 * @throws {SqliteStoreError} `locked`, `corrupt` or `io`; the file is left as it was.
 */
export function openStore(open: OpenSqlite, path: string, durability: Durability): Store {
  let db: SqliteDatabase;
  try {
    db = open(path);
  } catch (error) {
    throw new SqliteStoreError('io', path, `cannot open ${path}: ${messageOf(error)}`, { cause: error });
  }
  try {
    // No waiting on a lock: a second hub is refused at once rather than after a timeout.
    db.exec('PRAGMA busy_timeout = 0');
    // Taken by the first transaction and held until close: one writer per file.
    db.exec('PRAGMA locking_mode = EXCLUSIVE');
    db.exec('BEGIN EXCLUSIVE');
    db.exec('COMMIT');
  } catch (error) {
    db.close();
    if (isLocked(error)) {
      throw new SqliteStoreError(
        'locked',
        path,
        `${path} is in use by another hub (one hub per file): stop it first, or give this one its own file`,
        { cause: error },
      );
    }
    throw unreadable(path, error);
  }
  try {
    const [id] = db.prepare('PRAGMA application_id').all();
    const [version] = db.prepare('PRAGMA user_version').all();
    const tables = db.prepare("SELECT count(*) AS n FROM sqlite_schema WHERE type = 'table'").all()[0]?.n;
    if (tables === 0) {
      db.exec('PRAGMA journal_mode = WAL');
      db.exec(
        `BEGIN; ${SCHEMA} PRAGMA application_id = ${APPLICATION_ID}; PRAGMA user_version = ${SCHEMA_VERSION}; COMMIT`,
      );
    } else if (id?.application_id !== APPLICATION_ID) {
      throw new SqliteStoreError(
        'corrupt',
        path,
        `${path} is a SQLite file of something else (application_id ${id?.application_id}), not a hono-agent-ws store; it was left as is`,
      );
    } else if (version?.user_version !== SCHEMA_VERSION) {
      throw new SqliteStoreError(
        'corrupt',
        path,
        `${path} has layout ${version?.user_version}, this version reads layout ${SCHEMA_VERSION} only; it was left as is: start the version that wrote it to deliver what it holds, or move it away to start with an empty store`,
      );
    } else {
      const [check] = db.prepare('PRAGMA quick_check').all();
      const verdict = check ? Object.values(check)[0] : 'no answer';
      if (verdict !== 'ok') {
        throw new SqliteStoreError('corrupt', path, `${path} is damaged (quick_check: ${verdict}); it was left as is`);
      }
      db.exec('PRAGMA journal_mode = WAL');
    }
    db.exec(`PRAGMA synchronous = ${durability === 'power' ? 'FULL' : 'NORMAL'}`);
    // The WAL is reset after each checkpoint; this caps what it keeps on disk meanwhile.
    db.exec('PRAGMA journal_size_limit = 16777216');
    return { db, statements: prepare(db) };
  } catch (error) {
    db.close();
    throw error instanceof SqliteStoreError ? error : unreadable(path, error);
  }
}

/** The error for a file SQLite could not read. */
export const unreadable = (path: string, error: unknown): SqliteStoreError =>
  new SqliteStoreError(
    'corrupt',
    path,
    `${path} is not a readable SQLite file (${messageOf(error)}); it was left as is: move it away to start with an empty store`,
    { cause: error },
  );

function prepare(db: SqliteDatabase): Statements {
  const p = (sql: string) => db.prepare(sql);
  return {
    begin: p('BEGIN'),
    commit: p('COMMIT'),
    rollback: p('ROLLBACK'),
    putAgent: p('INSERT OR REPLACE INTO agents (id, epoch, seq, ord) VALUES (?, ?, ?, ?)'),
    deleteAgent: p('DELETE FROM agents WHERE id = ?'),
    putHistoryRow: p('INSERT INTO history (id, agent, seq, json) VALUES (?, ?, ?, ?)'),
    deleteHistoryRow: p('DELETE FROM history WHERE id = ?'),
    putStateRow: p('INSERT INTO state (id, agent, task, seq, json) VALUES (?, ?, ?, ?, ?)'),
    deleteStateRow: p('DELETE FROM state WHERE id = ?'),
    putQueue: p('INSERT OR REPLACE INTO queues (agent, touched_at, ord) VALUES (?, ?, ?)'),
    deleteQueue: p('DELETE FROM queues WHERE agent = ?'),
    putQueuedRow: p('INSERT INTO queue (id, agent, pos, json) VALUES (?, ?, ?, ?)'),
    deleteQueuedRow: p('DELETE FROM queue WHERE id = ?'),
  };
}

/** Every row of the store, for loading it into memory at start. */
export interface StoredRows {
  readonly agents: Record<string, SqlValueRow>[];
  readonly history: Record<string, SqlValueRow>[];
  readonly state: Record<string, SqlValueRow>[];
  readonly queues: Record<string, SqlValueRow>[];
  readonly queued: Record<string, SqlValueRow>[];
}

type SqlValueRow = string | number | null;

/**
 * Reads every row, in the order the broker rebuilds its memory in.
 *
 * @throws {SqliteStoreError} `corrupt` when SQLite cannot read a table.
 */
export function readAll(store: Store, path: string): StoredRows {
  const all = (sql: string) => {
    try {
      return store.db.prepare(sql).all();
    } catch (error) {
      throw unreadable(path, error);
    }
  };
  return {
    agents: all('SELECT id, epoch, seq, ord FROM agents ORDER BY ord'),
    history: all('SELECT id, agent, seq, json FROM history ORDER BY agent, seq'),
    state: all('SELECT id, agent, task, seq, json FROM state ORDER BY agent, seq'),
    queues: all('SELECT agent, touched_at, ord FROM queues ORDER BY ord'),
    queued: all('SELECT id, agent, pos, json FROM queue ORDER BY agent, pos'),
  };
}
