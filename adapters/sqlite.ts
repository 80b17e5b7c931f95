/**
 * `hono-agent-ws/sqlite`: the SQLite broker (`brokers/sqlite/`) with the runtime's own SQLite:
 * `node:sqlite` on Node (22.13+ without a flag; 22.5+ with `--experimental-sqlite`; 24) and on
 * Deno (2.2+, which needs `--allow-read` and `--allow-write` for the file), `bun:sqlite` on Bun.
 * Node 20 has no SQLite: `sqliteBroker` then throws a `SqliteStoreError` (`unavailable`) that
 * names the versions that have it. The binding is loaded here, once, when the module is imported.
 *
 * @module
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type { OpenSqlite, SqliteDatabase, SqliteDriver } from '../brokers/sqlite/driver.ts';
import { createSqliteBroker, type SqliteBrokerOptions, SqliteStoreError } from '../brokers/sqlite/index.ts';
import type { BrokerFactory } from '../plugin/index.ts';

export type { Durability, SqliteBrokerOptions, SqliteStoreProblem } from '../brokers/sqlite/index.ts';
export { SqliteStoreError } from '../brokers/sqlite/index.ts';

/** Where SQLite is built in; the `unavailable` error names them. */
export const SQLITE_RUNTIMES =
  'Node 22.13+ (22.5+ with --experimental-sqlite) and Node 24 (node:sqlite), Deno 2.2+ (node:sqlite), Bun (bun:sqlite)';

/** The part of Bun's global this file reads: `tsc` checks it without Bun's type package. */
declare const Bun: { version: string } | undefined;
/** The part of Deno's global this file reads. */
declare const Deno: { version: { deno: string } } | undefined;

/** The part of `node:sqlite`'s `DatabaseSync` and `bun:sqlite`'s `Database` the driver uses: the same shape. */
type Binding = new (path: string, options?: Record<string, unknown>) => SqliteDatabase;

/** `bun:sqlite`'s statement: the driver's, and `finalize`. */
type BunStatement = ReturnType<SqliteDatabase['prepare']> & { finalize(): void };

const runtime = (): string => {
  if (typeof Bun !== 'undefined') return `Bun ${Bun.version}`;
  if (typeof Deno !== 'undefined') return `Deno ${Deno.version.deno}`;
  return `Node ${process.version}`;
};

/** The runtime's SQLite class, or why there is none. Specifiers in variables: Node 20's types have no `node:sqlite`. */
const loaded: { binding: Binding; bun: boolean } | { missing: unknown } = await (async () => {
  const bun = typeof Bun !== 'undefined';
  const specifier = bun ? 'bun:sqlite' : 'node:sqlite';
  try {
    const module = (await import(specifier)) as { DatabaseSync?: Binding; Database?: Binding };
    const binding = bun ? module.Database : module.DatabaseSync;
    if (!binding) throw new Error(`${specifier} has no ${bun ? 'Database' : 'DatabaseSync'}`);
    return { binding, bun };
  } catch (error) {
    return { missing: error };
  }
})();

/**
 * The runtime's driver: opens a file (creating its directory), with `node:sqlite` or `bun:sqlite`.
 *
 * @throws {SqliteStoreError} `unavailable` when the runtime has no SQLite.
 */
export function openSqlite(): OpenSqlite {
  if ('missing' in loaded) {
    throw new SqliteStoreError(
      'unavailable',
      '',
      `SQLite is not available on ${runtime()}: it is built into ${SQLITE_RUNTIMES}. Run the server on one of those, or use the in-memory or Redis broker (${String((loaded.missing as Error)?.message ?? loaded.missing)})`,
      { cause: loaded.missing },
    );
  }
  const { binding: Database, bun } = loaded;
  return (path) => {
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
    if (!bun) return new Database(path);
    // Bun defers closing while a statement is unfinalised, keeping the file locked: finalise them.
    const db = new Database(path, { create: true, readwrite: true });
    const statements: BunStatement[] = [];
    return {
      exec: (sql) => db.exec(sql),
      prepare(sql) {
        const statement = db.prepare(sql) as BunStatement;
        statements.push(statement);
        return statement;
      },
      close() {
        for (const statement of statements) statement.finalize();
        db.close();
      },
    };
  };
}

/**
 * Creates the SQLite broker: one process, every agent's stream, history, snapshot state and
 * offline queue kept in `path` as well as in memory, so a restart forgets nothing. See
 * `brokers/sqlite/index.ts` for how a publish is made durable, and `docs/sqlite.md`.
 *
 * ```ts
 * import { sqliteBroker } from 'hono-agent-ws/sqlite';
 * const hub = createAgentHub({ broker: sqliteBroker({ path: './data/agents.db' }) });
 * ```
 *
 * @param options The broker options; `path` is required.
 *
 * @returns A broker factory for `createAgentHub({ broker })`; the file is opened, checked and
 *   locked when the hub starts it.
 *
 * @throws {SqliteStoreError} `unavailable` on a runtime without SQLite (Node 20); from
 *   `createAgentHub`, `locked` when another hub holds the file, `corrupt` when it is damaged or
 *   not this broker's (it is never replaced), `io` when it cannot be opened.
 * @throws {TypeError} When an option is invalid.
 */
export function sqliteBroker(options: SqliteBrokerOptions): BrokerFactory {
  return createSqliteBroker({ open: openSqlite(), defer }, options);
}

/** `setImmediate` on Node, Bun and Deno (all have it); a zero timeout elsewhere. */
const defer: SqliteDriver['defer'] =
  typeof setImmediate === 'function' ? (task) => void setImmediate(task) : (task) => void setTimeout(task, 0);
