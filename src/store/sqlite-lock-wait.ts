import { setImmediate as nextTurn, setTimeout as sleep } from 'node:timers/promises';
import {
  type CompiledQuery,
  type DatabaseConnection,
  type Driver,
  type QueryCompiler,
  type QueryResult,
  SqliteDialect,
  type SqliteDialectConfig,
  type TransactionSettings,
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
 * A refused statement has done nothing, so trying it again is safe. Inside a transaction that has
 * read already, another writer's commit makes SQLite answer SQLITE_BUSY_SNAPSHOT instead, which
 * waiting cannot cure: that one fails at once, as it did with the busy timeout.
 */
export class LockWaitingSqliteDialect extends SqliteDialect {
  readonly #waitMs: number;

  constructor(config: SqliteDialectConfig, waitMs = SQLITE_LOCK_WAIT_MS) {
    super(config);
    this.#waitMs = waitMs;
  }

  override createDriver(): Driver {
    return new LockWaitingDriver(super.createDriver(), this.#waitMs);
  }
}

class LockWaitingDriver implements Driver {
  readonly #inner: Driver;
  readonly #waitMs: number;
  readonly #waiting = new WeakMap<DatabaseConnection, DatabaseConnection>();

  constructor(inner: Driver, waitMs: number) {
    this.#inner = inner;
    this.#waitMs = waitMs;
  }

  init(): Promise<void> {
    return this.#inner.init();
  }

  async acquireConnection(): Promise<DatabaseConnection> {
    const connection = await this.#inner.acquireConnection();
    let waiting = this.#waiting.get(connection);
    if (!waiting) {
      waiting = lockWaiting(connection, this.#waitMs);
      this.#waiting.set(connection, waiting);
    }
    return waiting;
  }

  // The SQLite driver runs begin, commit and rollback through the connection it is handed: the
  // waiting one, so that a COMMIT refused for a moment is tried again too.
  beginTransaction(connection: DatabaseConnection, settings: TransactionSettings): Promise<void> {
    return this.#inner.beginTransaction(connection, settings);
  }

  commitTransaction(connection: DatabaseConnection): Promise<void> {
    return this.#inner.commitTransaction(connection);
  }

  rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    return this.#inner.rollbackTransaction(connection);
  }

  savepoint(connection: DatabaseConnection, name: string, compile: QueryCompiler['compileQuery']) {
    return this.#savepoints('savepoint')(connection, name, compile);
  }

  rollbackToSavepoint(connection: DatabaseConnection, name: string, compile: QueryCompiler['compileQuery']) {
    return this.#savepoints('rollbackToSavepoint')(connection, name, compile);
  }

  releaseSavepoint(connection: DatabaseConnection, name: string, compile: QueryCompiler['compileQuery']) {
    return this.#savepoints('releaseSavepoint')(connection, name, compile);
  }

  #savepoints(method: 'savepoint' | 'rollbackToSavepoint' | 'releaseSavepoint') {
    const delegate = this.#inner[method]?.bind(this.#inner);
    if (!delegate) throw new Error(`the SQLite driver has no ${method}`);
    return delegate;
  }

  releaseConnection(connection: DatabaseConnection): Promise<void> {
    return this.#inner.releaseConnection(connection);
  }

  destroy(): Promise<void> {
    return this.#inner.destroy();
  }
}

function lockWaiting(connection: DatabaseConnection, waitMs: number): DatabaseConnection {
  return {
    async executeQuery<R>(query: CompiledQuery): Promise<QueryResult<R>> {
      const started = performance.now();
      for (let attempt = 1; ; attempt += 1) {
        try {
          return await connection.executeQuery<R>(query);
        } catch (error) {
          if (!isLockBusy(error) || performance.now() - started >= waitMs) throw error;
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
function isLockBusy(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === 'SQLITE_BUSY' || code === 'SQLITE_BUSY_RECOVERY';
}
