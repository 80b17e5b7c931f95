/**
 * The seam between the SQLite broker and a runtime's SQLite binding: the few synchronous calls
 * the broker makes, which `node:sqlite` (Node 22.5+, Deno) and `bun:sqlite` (Bun) both answer
 * with the same shapes. `adapters/sqlite.ts` picks the binding; the broker itself imports no
 * runtime module.
 *
 * @module
 */

/** A value SQLite binds or returns: the broker stores text and whole numbers only. */
export type SqlValue = string | number | null;

/** A prepared statement. */
export interface SqliteStatement {
  /** Runs it with positional parameters (`?`). */
  run(...params: SqlValue[]): unknown;
  /** Runs it and returns every row as an object keyed by column name. */
  all(...params: SqlValue[]): Record<string, SqlValue>[];
}

/** An open database connection. */
export interface SqliteDatabase {
  /** Runs one or more statements without parameters. */
  exec(sql: string): void;
  /** Compiles a statement once, to run many times. */
  prepare(sql: string): SqliteStatement;
  /** Closes the connection, releasing the file and its lock. */
  close(): void;
}

/**
 * Opens (creating it if missing) the database file at `path`.
 *
 * @throws When the file cannot be opened; the broker words the error.
 */
export type OpenSqlite = (path: string) => SqliteDatabase;

/** What the broker needs of a runtime: its SQLite, and a way to run a task on the next turn. */
export interface SqliteDriver {
  /** Opens a database file. */
  readonly open: OpenSqlite;
  /**
   * Runs `task` on the next turn of the event loop, after the I/O already waiting (`setImmediate`
   * where there is one): a publish after a quiet spell is committed that soon.
   */
  readonly defer: (task: () => void) => void;
}
