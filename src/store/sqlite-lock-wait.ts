import { setImmediate as nextTurn, setTimeout as sleep } from 'node:timers/promises';
import {
  CompiledQuery,
  type DatabaseConnection,
  type Driver,
  type QueryResult,
  SqliteDialect,
  type SqliteDialectConfig,
  SqliteDriver,
} from 'kysely';

/** How long a statement waits for another process's write lock before it fails (SQLITE_BUSY). */
export const SQLITE_LOCK_WAIT_MS = 5000;

/**
 * SQLite's own busy timeout waits inside the call, and better-sqlite3 calls on the event loop's
 * thread: while one statement waits for another process's write lock (several workers on one
 * file), the whole process stops, for 1 ms at the least, often for several (SQLite sleeps 1, 2,
 * 5, 10 ... ms between tries). This dialect runs SQLite with no busy timeout and waits here
 * instead, with the thread free: a statement refused with SQLITE_BUSY is tried again on a later
 * turn of the event loop, and the process serves other requests meanwhile.
 *
 * A refused statement has done nothing, so trying it again is safe. Transactions begin IMMEDIATE,
 * so that a refusal comes at their BEGIN: a deferred transaction that had read already would meet
 * another writer's commit as SQLITE_BUSY_SNAPSHOT, which waiting cannot cure.
 */
export class LockWaitingSqliteDialect extends SqliteDialect {
  readonly #config: SqliteDialectConfig;

  constructor(config: SqliteDialectConfig) {
    super(config);
    this.#config = config;
  }

  override createDriver(): Driver {
    return new LockWaitingSqliteDriver(this.#config);
  }
}

/**
 * Kysely's SQLite driver, handing out its one connection wrapped. The driver runs begin, commit,
 * rollback and savepoints through the connection it is handed back, so those wait too.
 */
class LockWaitingSqliteDriver extends SqliteDriver {
  #waiting: DatabaseConnection | undefined;

  override async acquireConnection(): Promise<DatabaseConnection> {
    const connection = await super.acquireConnection();
    this.#waiting ??= lockWaiting(connection, SQLITE_LOCK_WAIT_MS);
    return this.#waiting;
  }

  /**
   * `BEGIN IMMEDIATE`, not Kysely's deferred `BEGIN`: a deferred transaction that reads, then
   * writes after another connection (another process, or this one's import writer thread) has
   * committed, fails with SQLITE_BUSY_SNAPSHOT, which no waiting cures. Taking the write lock at
   * the start, a refusal comes at BEGIN, before anything was read, and waiting for it is safe.
   */
  override async beginTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw('begin immediate'));
  }

  /**
   * SQLite rolls a transaction back by itself on some errors (SQLITE_FULL: the disk is full), and
   * Kysely's ROLLBACK then fails with "no transaction is active", an error that replaced the one
   * that mattered: a full disk answered 500 and logged only the failed rollback (found by review).
   * Nothing is left to undo, so the original error goes on as it was.
   */
  override async rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw('rollback')).catch(keepUnlessNoTransaction);
  }
}

/** Rethrows `error` unless it is SQLite's answer to a ROLLBACK with no transaction left to undo. */
export function keepUnlessNoTransaction(error: unknown): void {
  if (!/no transaction is active/.test((error as Error | null)?.message ?? '')) throw error;
}

function lockWaiting(connection: DatabaseConnection, waitMs: number): DatabaseConnection {
  return {
    async executeQuery<R>(query: CompiledQuery): Promise<QueryResult<R>> {
      const started = performance.now();
      for (let attempt = 1; ; attempt += 1) {
        try {
          return await connection.executeQuery<R>(query);
        } catch (error) {
          if (!isSqliteLockBusy(error) || performance.now() - started >= waitMs) throw error;
          // A lock is held for well under a millisecond (one statement or one short transaction):
          // the next turns of the loop first, then growing sleeps for a holder that takes longer.
          if (attempt <= 3) await nextTurn();
          else await sleep(Math.min(2 ** (attempt - 4), 25));
        }
      }
    },
    streamQuery: (query, chunkSize) => connection.streamQuery(query, chunkSize),
  };
}

/** Another connection holds the lock (or is recovering the WAL): worth trying again. */
export function isSqliteLockBusy(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === 'SQLITE_BUSY' || code === 'SQLITE_BUSY_RECOVERY';
}
