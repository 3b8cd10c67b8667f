import { closeSync, mkdirSync, openSync } from 'node:fs';
import path from 'node:path';
import SQLite from 'better-sqlite3';
import {
  type CompiledQuery,
  Kysely,
  type LogEvent,
  type MigrationResultSet,
  Migrator,
  PostgresDialect,
  sql,
} from 'kysely';
import { type ChangeFeed, createStoreChanges } from './change-feed.js';
import { withInvalidations } from './invalidating-repositories.js';
import { migrations } from './migrations/index.js';
import { createPgPool } from './pg-pool.js';
import { preparingPool } from './pg-prepared-statements.js';
import { RedisUnavailableError } from './redis-counters.js';
import { createRepositories, type Repositories } from './repositories/index.js';
import type { Database } from './schema.js';
import { SqliteBatchWriter } from './sqlite-batch-writer.js';
import { SqliteCheckpointer, WRITERS_WAL_AUTOCHECKPOINT } from './sqlite-checkpointer.js';
import {
  isSqliteLockBusy,
  keepUnlessNoTransaction,
  LockWaitingSqliteDialect,
  SQLITE_LOCK_WAIT_MS,
} from './sqlite-lock-wait.js';
import { asGuardedStatement, asOneStatement, recordingStatements } from './statement-recorder.js';

export type Dialect = 'sqlite' | 'postgres';

export type StatementKind = 'select' | 'insert' | 'update' | 'delete' | 'transaction' | 'other';

/** One statement the store ran: its kind and time only, never its text or parameters. */
export interface QueryTiming {
  readonly dialect: Dialect;
  readonly statement: StatementKind;
  readonly durationMs: number;
  readonly failed: boolean;
}

export type QueryObserver = (timing: QueryTiming) => void;

export interface StoreOptions {
  /** Absent: SQLite file `gatehouse.db` in `dataDir`. */
  readonly databaseUrl: string | undefined;
  /** PostgreSQL: where the change feed listens (default: `databaseUrl`); the same database. */
  readonly listenUrl?: string | undefined;
  readonly dataDir: string;
  /** PostgreSQL pool size per process. */
  readonly poolSize?: number;
  /** PostgreSQL: named prepared statements for the statements that repeat (default: on). */
  readonly preparedStatements?: boolean;
  /** PostgreSQL: a statement is cancelled past this, and its connection dropped if no answer comes. */
  readonly statementTimeoutMs?: number;
}

/**
 * The store options a configuration asks for: the server, its workers, the CLI and the bench open
 * the store the same way, and a new store setting reaches all of them from here.
 */
export function storeOptionsOf(config: {
  readonly databaseUrl: string | undefined;
  readonly databaseListenUrl: string | undefined;
  readonly dataDir: string;
  readonly pgPreparedStatements: boolean;
  readonly pgPoolSize: number;
  readonly pgStatementTimeoutMs: number;
}): StoreOptions {
  return {
    databaseUrl: config.databaseUrl,
    listenUrl: config.databaseListenUrl,
    dataDir: config.dataDir,
    preparedStatements: config.pgPreparedStatements,
    poolSize: config.pgPoolSize,
    statementTimeoutMs: config.pgStatementTimeoutMs,
  };
}

export interface Store extends Repositories {
  readonly dialect: Dialect;
  readonly db: Kysely<Database>;
  /** Runs `work` in one transaction; the repositories it gets write inside it. */
  transaction<T>(work: (tx: Repositories) => Promise<T>): Promise<T>;
  /**
   * `transaction`, run by one process of the deployment at a time: for a read and the write it
   * decides where no unique key guards the write (the first signing keys of an empty store, which
   * nodes started together would each make). SQLite's transactions are that already (BEGIN
   * IMMEDIATE takes the write lock first); on PostgreSQL the transaction first takes an advisory
   * lock it holds until it ends.
   */
  transactionAlone<T>(work: (tx: Repositories) => Promise<T>): Promise<T>;
  /**
   * Runs `work`, which may only insert and never reads what its inserts answer, as one
   * transaction: an import's batch. On SQLite the inserts are collected as `work` makes them and
   * written on a thread of their own, so that the event loop serves requests and prepares the next
   * batch meanwhile; any other statement in `work` throws `UnrecordedStatementError` and nothing
   * is written. On PostgreSQL it is `transaction`.
   */
  insertBatch(work: (tx: Repositories) => Promise<void>): Promise<void>;
  /**
   * Runs `work`, which may only insert, update and delete, never reads what those answer, and
   * writes each table at most once, as one transaction: a refused sign-in's failure count and
   * audit events. On PostgreSQL the writes are collected as `work` makes them and sent as one
   * statement, one round trip where a transaction takes one per statement plus BEGIN and COMMIT
   * (statement-recorder.ts); anything else in `work` throws and nothing is written. On SQLite,
   * whose statements cost no round trip, it is `transaction`.
   */
  writeTogether<T>(work: (tx: Repositories) => Promise<T>): Promise<T>;
  /**
   * Runs `work` as `writeTogether` does, its first write an update that is a guard, the others
   * one-row inserts: they are written only if the update changed a row, and if it changed none,
   * nothing is written and the answer is undefined. `work` throws `GuardFailed` when the update
   * answers that it changed nothing (on SQLite, a transaction, where it learns so at once); on
   * PostgreSQL the update answers that it changed a row, and the one statement the writes make
   * finds out (`asGuardedStatement`). A sign-in's writes: the account's row, as it was checked,
   * then the audit event and the session. Work with two guards must be a `transaction`: in one
   * statement the first guard's update would stand when the second changed nothing.
   */
  writeGuarded<T>(work: (tx: Repositories) => Promise<T>): Promise<T | undefined>;
  /** Brings the schema up to date; safe to run from several processes at once. Returns what it applied. */
  migrate(): Promise<string[]>;
  /**
   * Cheap round trip, for readiness. Fails too on a read-only PostgreSQL, and for
   * `WRITES_REFUSED_MS` after this process's store refused a write for a reason that outlasts the
   * request (a full disk, a read-only database), unless a write went through since.
   */
  ping(): Promise<void>;
  /** Whether a schema was ever made here (a migration applied): false for an empty database. */
  initialized(): Promise<boolean>;
  /** Hands the time of every statement from now on to `observer` (the metrics); replaces the previous one. */
  observeQueries(observer: QueryObserver | undefined): void;
  /**
   * Hands `listener` what the store has to tell the operator (a setting that does not suit the
   * server it found), those told before it was given included.
   */
  observeWarnings(listener: (message: string) => void): void;
  /**
   * Changes to sessions and accounts made by any process sharing this store, for the per-process
   * caches: published by the repositories' writes themselves (invalidating-repositories.ts).
   */
  readonly changes: ChangeFeed;
  /**
   * Announces a change kept outside the store's tables (the sign-in counters in Redis, say) to the
   * caches of every process, as the repositories' writes announce theirs.
   */
  publish(tags: readonly string[]): Promise<void>;
  destroy(): Promise<void>;
}

/** `transactionAlone`'s PostgreSQL advisory lock (Kysely's migrations hold a key of their own). */
const ALONE_LOCK_KEY = '7301842965533178881';

/**
 * Runs of a transaction that PostgreSQL ended to break a deadlock (SQLSTATE 40P01): the whole
 * transaction was rolled back, so it is run again, as PostgreSQL's manual advises, after a pause
 * of a few milliseconds that differs between the two sides. Administrative changes that take rows
 * of several users, tenancies, tokens and sessions at once cannot all take them in one order
 * (a review found a user's deletion against a change of the user it lent a token to, and a
 * tenant's deletion against a change of a member's tenancies: 500s and failed jobs).
 */
const DEADLOCK_RUNS = 3;

const isDeadlock = (error: unknown): boolean =>
  typeof error === 'object' && error !== null && (error as { code?: unknown }).code === '40P01';

/** The only place that branches on the dialect. */
export function connectStore(options: StoreOptions): Store {
  const dialect: Dialect = options.databaseUrl ? 'postgres' : 'sqlite';
  let observer: QueryObserver | undefined;
  const warnings: string[] = [];
  let warn = (message: string) => {
    warnings.push(message);
  };
  const lostPreparedStatements = () =>
    warn(
      'PostgreSQL: a prepared statement was not found in the session that prepared it (a pooler in transaction mode?); statements run unprepared from now on: set GATEHOUSE_PG_PREPARED_STATEMENTS=false',
    );
  // The last write the store refused for a reason that outlasts the request (a full disk, a
  // read-only database): such a store still answers the readiness check's read, and the balancer
  // must hear that this node cannot sign anyone in (found by review: /readyz said ready while every
  // sign-in failed). A write that goes through clears it; so does time, so that a node taken out of
  // rotation gets requests again to find out whether the store has recovered.
  let writesRefused: { code: string; at: number } | undefined;
  // What clears it: on PostgreSQL a write that went through (its one-statement writes commit by
  // themselves, and it refuses a read-only write at the statement); on SQLite, where a write in a
  // transaction only reaches the page cache and the disk may still refuse its commit, the commit of
  // a transaction that wrote. A commit of one that only read, or whose guard changed nothing,
  // proves nothing (found by review: it cleared the latch of a full disk).
  let wroteSinceBegin = false;
  const noteWentThrough = (event: LogEvent) => {
    const sql = event.query.sql;
    if (WRITES.has(statementKind(event.query.query.kind, sql))) {
      if (dialect === 'postgres') writesRefused = undefined;
      else wroteSinceBegin = true;
    } else if (BEGIN.test(sql)) wroteSinceBegin = false;
    else if (COMMIT.test(sql) && wroteSinceBegin) writesRefused = undefined;
  };
  const noteRefusedWrite = (error: unknown) => {
    const code = writeRefusalCode(error);
    if (code !== undefined) writesRefused = { code, at: performance.now() };
  };
  const pool = options.databaseUrl
    ? createPgPool(options.databaseUrl, {
        max: options.poolSize ?? 10,
        statementTimeoutMs: options.statementTimeoutMs ?? DEFAULT_STATEMENT_TIMEOUT_MS,
      })
    : undefined;
  const writer = pool ? undefined : new SqliteBatchWriter(sqliteFile(options.dataDir), SQLITE_LOCK_WAIT_MS);
  const checkpointer = pool ? undefined : new SqliteCheckpointer(sqliteFile(options.dataDir));
  const db = new Kysely<Database>({
    dialect: pool
      ? new PostgresDialect({
          pool: options.preparedStatements === false ? pool : preparingPool(pool, lostPreparedStatements),
        })
      : new LockWaitingSqliteDialect({ database: withStatementCache(openSqlite(options.dataDir)) }),
    // Kysely times every statement (transactions' begin and commit included) and tells its log.
    log: (event: LogEvent) => {
      // Anything but a select may have written (a commit, an auto-committed write): the WAL is
      // checkpointed on a thread of its own, not in some later commit on this one.
      if (checkpointer && event.query.query.kind !== 'SelectQueryNode') checkpointer.soon();
      if (event.level === 'error') noteRefusedWrite(event.error);
      else if (writesRefused) noteWentThrough(event);
      // The SQLite feed's polls, ten a second whatever the load, are its heartbeat, not a
      // request's store time (PostgreSQL's listener has a client of its own, untimed too): timed,
      // they made an idle node's select latency theirs (found by review).
      if (!pool && isChangeFeedRead(event.query)) return;
      observer?.({
        dialect,
        statement: statementKind(event.query.query.kind, event.query.sql),
        durationMs: event.queryDurationMillis,
        failed: event.level === 'error',
      });
    },
  });

  const changes = createStoreChanges(dialect, db, {
    databaseUrl: options.databaseUrl,
    listenUrl: options.listenUrl,
    warn: (message) => warn(message),
  });
  const repositoriesOf = (executor: Kysely<Database>, committed: (tags: readonly string[]) => void) =>
    withInvalidations(createRepositories(executor, dialect), changes.publisher(executor, committed));

  async function inTransaction<T>(work: (tx: Repositories) => Promise<T>, advisoryLock: boolean): Promise<T> {
    for (let run = 1; ; run += 1) {
      // This process's caches hear of the transaction's changes once it has committed, not before:
      // a request reading meanwhile would otherwise cache the row as it was.
      const committed: string[] = [];
      try {
        const result = await db.transaction().execute(async (trx) => {
          if (advisoryLock) await sql`select pg_advisory_xact_lock(${ALONE_LOCK_KEY})`.execute(trx);
          return work(repositoriesOf(trx, (tags) => committed.push(...tags)));
        });
        changes.dispatchLocal(committed);
        return result;
      } catch (error) {
        if (!isDeadlock(error) || run === DEADLOCK_RUNS) throw error;
        warn(`a transaction was ended by PostgreSQL to break a deadlock; running it again (run ${run + 1})`);
        await new Promise((resolve) => setTimeout(resolve, 5 + Math.random() * 20));
      }
    }
  }

  return {
    dialect,
    db,
    // Outside a transaction each statement commits by itself: tell this process's caches at once.
    ...repositoriesOf(db, changes.dispatchLocal),
    transaction: (work) => inTransaction(work, false),
    transactionAlone: (work) => inTransaction(work, dialect === 'postgres'),
    async insertBatch(work) {
      if (!writer) return this.transaction(work);
      const batch: CompiledQuery[] = [];
      const committed: string[] = [];
      const recorder = recordingStatements('sqlite', batch, kindOfQuery, INSERTS);
      await work(repositoriesOf(recorder, (tags) => committed.push(...tags)));
      if (batch.length > 0) {
        const started = performance.now();
        let failed = true;
        try {
          await writer.write(batch.map(({ sql, parameters }) => ({ sql, parameters })));
          failed = false;
          writesRefused = undefined;
          // Copied into the database while the next batch is written.
          checkpointer?.now();
        } catch (error) {
          noteRefusedWrite(error);
          throw error;
        } finally {
          // The batch is one transaction on the writer's thread: timed as one, from here.
          observer?.({ dialect, statement: 'transaction', durationMs: performance.now() - started, failed });
        }
      }
      changes.dispatchLocal(committed);
    },
    async writeTogether(work) {
      if (dialect !== 'postgres') return this.transaction(work);
      const writes: CompiledQuery[] = [];
      const committed: string[] = [];
      const result = await work(
        repositoriesOf(recordingStatements('postgres', writes, kindOfQuery, WRITES), (tags) =>
          committed.push(...tags),
        ),
      );
      if (writes.length > 0) await db.executeQuery(asOneStatement(writes));
      changes.dispatchLocal(committed);
      return result;
    },
    async writeGuarded(work) {
      try {
        if (dialect !== 'postgres') return await this.transaction(work);
        const writes: CompiledQuery[] = [];
        const committed: string[] = [];
        const recorder = recordingStatements('postgres', writes, kindOfQuery, WRITES, {
          updatesChangeARow: true,
        });
        const result = await work(repositoriesOf(recorder, (tags) => committed.push(...tags)));
        const { rows } = await db.executeQuery<{ guarded: number }>(asGuardedStatement(writes));
        if (!(rows[0]?.guarded ?? 0)) return undefined;
        changes.dispatchLocal(committed);
        return result;
      } catch (error) {
        if (error instanceof GuardFailed) return undefined;
        throw error;
      }
    },
    async migrate() {
      const { error, results = [] } =
        dialect === 'sqlite'
          ? await migrateSqliteAlone(db)
          : await migratePostgresUntimed(options.databaseUrl as string);
      if (error) {
        const failed = results.find((r) => r.status === 'Error')?.migrationName;
        // Kysely's words for a store a newer release migrated ("corrupted migrations") mislead.
        const unknown = /previously executed migration (\S+) is missing/.exec((error as Error).message)?.[1];
        if (unknown !== undefined) {
          throw new Error(
            `the store was migrated by a newer Gatehouse (migration ${unknown} is not one this release knows): run that release or a newer one; there is no downgrade`,
            { cause: error },
          );
        }
        // Keep the original (and its code): a store that is down must still read as unavailable.
        if (!failed) throw error;
        throw new Error(`migration ${failed} failed: ${(error as Error).message}`, { cause: error });
      }
      return results.filter((r) => r.status === 'Success').map((r) => r.migrationName);
    },
    async ping() {
      await db.selectFrom('tenants').select('id').limit(1).execute();
      // Asked, not only learned from a refused write: every process of a node then answers alike,
      // and before the first write fails (a standby after a failover takes reads).
      if (dialect === 'postgres') {
        const { rows } = await sql<{
          read_only: string;
        }>`select current_setting('transaction_read_only') as read_only`.execute(db);
        if (rows[0]?.read_only === 'on') {
          throw Object.assign(new Error('the database takes no writes (read-only: a standby?)'), {
            code: '25006',
          });
        }
      }
      if (writesRefused && performance.now() - writesRefused.at < WRITES_REFUSED_MS) {
        const { code, at } = writesRefused;
        throw Object.assign(
          new Error(
            `the store refused a write ${Math.round(performance.now() - at)} ms ago (${code}): it answers reads but takes no writes`,
          ),
          { code },
        );
      }
    },
    async initialized() {
      // Kysely's migrator keeps its record in this table (its default name), on either dialect.
      const tables = await db.introspection.getTables({ withInternalKyselyTables: true });
      return tables.some((table) => table.name === 'kysely_migration');
    },
    observeQueries(next) {
      observer = next;
    },
    observeWarnings(listener) {
      warn = listener;
      for (const message of warnings.splice(0)) listener(message);
    },
    changes: changes.feed,
    publish: (tags) => changes.publisher(db, changes.dispatchLocal).publish(tags),
    async destroy() {
      await changes.feed.close();
      await writer?.close();
      await checkpointer?.close();
      await db.destroy();
    },
  };
}

const NODE_KINDS = new Map<string, StatementKind>([
  ['SelectQueryNode', 'select'],
  ['InsertQueryNode', 'insert'],
  ['UpdateQueryNode', 'update'],
  ['DeleteQueryNode', 'delete'],
]);

const FIRST_WORDS = new Map<string, StatementKind>([
  ['select', 'select'],
  ['with', 'select'],
  ['insert', 'insert'],
  ['update', 'update'],
  ['delete', 'delete'],
  ['begin', 'transaction'],
  ['start', 'transaction'],
  ['commit', 'transaction'],
  ['rollback', 'transaction'],
  ['savepoint', 'transaction'],
  ['release', 'transaction'],
]);

const INSERTS: ReadonlySet<string> = new Set(['insert']);
const WRITES: ReadonlySet<string> = new Set(['insert', 'update', 'delete']);
const kindOfQuery = (query: CompiledQuery) => statementKind(query.query.kind, query.sql);

/** The kind of a statement: from Kysely's operation node, or for raw SQL from its first word. */
export function statementKind(nodeKind: string, sql: string): StatementKind {
  const known = NODE_KINDS.get(nodeKind);
  if (known) return known;
  const word = /^\s*([a-z]+)/i.exec(sql)?.[1]?.toLowerCase();
  return (word === undefined ? undefined : FIRST_WORDS.get(word)) ?? 'other';
}

const sqliteFile = (dataDir: string) => path.join(dataDir, 'gatehouse.db');

const migratorOf = (db: Kysely<Database>) =>
  new Migrator({ db, provider: { getMigrations: async () => migrations } });

/**
 * PostgreSQL's migrations on a connection of their own with no statement timeout: one may rewrite
 * or index a large table for longer than any request's statement may take.
 */
async function migratePostgresUntimed(databaseUrl: string): Promise<MigrationResultSet> {
  const db = new Kysely<Database>({
    dialect: new PostgresDialect({ pool: createPgPool(databaseUrl, { max: 1 }) }),
  });
  try {
    return await migratorOf(db).migrateToLatest();
  } finally {
    await db.destroy();
  }
}

/** How long a process starting on SQLite waits for another one's migrations to commit. */
const SQLITE_MIGRATION_WAIT_MS = 5 * 60_000;

/**
 * On PostgreSQL Kysely runs the migrations in a transaction under an advisory lock. On SQLite it
 * runs them with no transaction and no lock (its adapter has none), so two processes starting
 * at once on a new file both found every migration to run, and the second failed on "table
 * already exists". Here they run in one IMMEDIATE transaction: another process waits for its
 * commit and then finds nothing left to run, and a migration that fails leaves nothing behind.
 */
async function migrateSqliteAlone(db: Kysely<Database>): Promise<MigrationResultSet> {
  return db.connection().execute(async (connection) => {
    const started = performance.now();
    for (;;) {
      try {
        await sql`begin immediate`.execute(connection);
        break;
      } catch (error) {
        // The lock-waiting connection waited SQLITE_LOCK_WAIT_MS already; a migration may take longer.
        if (!isSqliteLockBusy(error) || performance.now() - started >= SQLITE_MIGRATION_WAIT_MS) throw error;
      }
    }
    // SQLite may have rolled back by itself (a full disk): a failed ROLLBACK must not replace the
    // error that matters, as in the driver's (sqlite-lock-wait.ts).
    const rollback = () => sql`rollback`.execute(connection).catch(keepUnlessNoTransaction);
    let outcome: MigrationResultSet;
    try {
      outcome = await migratorOf(connection).migrateToLatest();
    } catch (error) {
      await rollback();
      throw error;
    }
    if (outcome.error === undefined) await sql`commit`.execute(connection);
    else await rollback();
    return outcome;
  });
}

function openSqlite(dataDir: string): SQLite.Database {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  // The file holds the password hashes and the sealed keys: a new one is the owner's alone, whatever
  // the umask and the directory's mode (an existing one keeps the mode its operator gave it). SQLite
  // gives its -wal and -shm files the database file's mode.
  closeSync(openSync(sqliteFile(dataDir), 'a', 0o600));
  const database = new SQLite(sqliteFile(dataDir));
  try {
    // WAL lets readers run beside the writer (and several processes share the file). Switching to
    // it may wait for another process opening the file at the same moment: SQLite's busy timeout
    // covers that; the statements that follow wait for locks with the thread free (sqlite-lock-wait.ts).
    database.pragma(`busy_timeout = ${SQLITE_LOCK_WAIT_MS}`);
    database.pragma('journal_mode = WAL');
    database.pragma('synchronous = NORMAL');
    database.pragma('foreign_keys = ON');
    database.pragma(`wal_autocheckpoint = ${WRITERS_WAL_AUTOCHECKPOINT}`);
    database.pragma('busy_timeout = 0');
  } catch (error) {
    database.close();
    throw unopenedSqlite(dataDir, error);
  }
  return database;
}

/**
 * SQLite's own words name no file ("unable to open database file": the directory is read-only,
 * so the -wal and -shm files cannot be made beside the database); the operator needs the path, and
 * where the file or its directory could not be written, what to change. The code is kept: a store
 * that cannot be opened reads as unavailable.
 */
function unopenedSqlite(dataDir: string, error: unknown): unknown {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code !== 'string' || !code.startsWith('SQLITE_')) return error;
  const unwritable = /^SQLITE_(CANTOPEN|READONLY|PERM|AUTH)/.test(code)
    ? ' (Gatehouse writes the file and makes its -wal and -shm files beside it: the directory must be writable; GATEHOUSE_DATA_DIR)'
    : '';
  return Object.assign(
    new Error(
      `cannot open the SQLite store ${sqliteFile(dataDir)}: ${(error as Error).message}${unwritable}`,
      {
        cause: error,
      },
    ),
    { code },
  );
}

/** Distinct statements kept prepared: the code issues a few hundred shapes of query. */
const SQLITE_STATEMENT_CACHE = 500;

/**
 * Kysely prepares every query anew, and preparing (parsing and planning against the schema) costs
 * more than running an indexed lookup: reusing the prepared statement of the same SQL text saves
 * most of a simple query's time. A statement still being iterated is never handed out twice.
 */
function withStatementCache(database: SQLite.Database) {
  const statements = new Map<string, SQLite.Statement>();
  return {
    close: () => database.close(),
    prepare(sql: string): SQLite.Statement {
      const known = statements.get(sql);
      if (known && !known.busy) return known;
      const statement = database.prepare(sql);
      if (!known) {
        if (statements.size >= SQLITE_STATEMENT_CACHE) statements.clear();
        statements.set(sql, statement);
      }
      return statement;
    },
  };
}

/** PostgreSQL statement timeout when none is configured (the settings' default). */
const DEFAULT_STATEMENT_TIMEOUT_MS = 30_000;

// 57P01–57P05: the server shut down, crashed, is starting, dropped the database or ended an idle
// session; 08xxx: connection failures; 53xxx: out of disk, memory or connections; 57014:
// cancelled (the statement timeout); 25P03: a transaction left idle past it; 25006: a read-only
// database (a standby after a failover); 3D000: the database is gone; 28xxx: the credentials were
// refused (rotated); 58030: an I/O error. All are the server's state, not a request's fault: 503.
const PG_UNAVAILABLE = new Set([
  '57P01',
  '57P02',
  '57P03',
  '57P04',
  '57P05',
  '53100',
  '53200',
  '53300',
  '08000',
  '08001',
  '08003',
  '08004',
  '08006',
  '57014',
  '25P03',
  '25006',
  '3D000',
  '28000',
  '28P01',
  '58030',
]);
const NET_UNAVAILABLE = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EHOSTUNREACH',
]);
const SQLITE_UNAVAILABLE = [
  'SQLITE_BUSY',
  'SQLITE_LOCKED',
  'SQLITE_CANTOPEN',
  'SQLITE_IOERR',
  'SQLITE_FULL',
  'SQLITE_READONLY',
];

/** The refusals of `ping`'s latch: the store's state, not contention (busy, a timeout) that passes. */
const WRITE_REFUSALS = ['SQLITE_FULL', 'SQLITE_READONLY', 'SQLITE_IOERR', '25006', '53100', '58030'];
/** A read of the change feed's table: only the feed reads it (its writers insert and delete). */
function isChangeFeedRead(query: CompiledQuery): boolean {
  return query.query.kind === 'SelectQueryNode' && query.sql.includes('from "cache_invalidations"');
}

/** How long after a refused write readiness fails, unless a commit goes through meanwhile. */
export const WRITES_REFUSED_MS = 5000;
const COMMIT = /^\s*commit\b/i;
const BEGIN = /^\s*begin\b/i;

/**
 * Outages that need an operator, not patience: a full disk, a read-only or dropped database,
 * refused credentials. Logged as errors, where a lost connection or a lock wait is a warning.
 */
const LASTING = [...WRITE_REFUSALS, '3D000', '57P04', '28000', '28P01'];

/**
 * The error's code if it is one of `codes` or, for SQLite's extended codes, begins with one
 * (SQLITE_IOERR_WRITE, SQLITE_READONLY_DBMOVED); otherwise undefined.
 */
function codeAmong(error: unknown, codes: readonly string[]): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && codes.some((known) => code.startsWith(known)) ? code : undefined;
}

export const isLastingStoreOutage = (error: unknown): boolean => codeAmong(error, LASTING) !== undefined;

const writeRefusalCode = (error: unknown): string | undefined => codeAmong(error, WRITE_REFUSALS);

/** True when an error means "the store cannot be reached now", as opposed to a bug. */
export function isStoreUnavailable(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  if (error instanceof RedisUnavailableError) return true;
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string') {
    if (PG_UNAVAILABLE.has(code) || NET_UNAVAILABLE.has(code)) return true;
    if (codeAmong(error, SQLITE_UNAVAILABLE) !== undefined) return true;
  }
  const message = error.message;
  return (
    message.includes('Connection terminated') ||
    message.includes('timeout exceeded when trying to connect') ||
    message.includes('Client has encountered a connection error')
  );
}

/** True for a violated unique constraint, on either dialect. */
export function isUniqueViolation(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === '23505' || code === 'SQLITE_CONSTRAINT_UNIQUE' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY';
}

/** True for a violated foreign key (a row still referenced, or a reference to a row gone), on either dialect. */
export function isForeignKeyViolation(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === '23503' || code === 'SQLITE_CONSTRAINT_FOREIGNKEY';
}

/**
 * Thrown by the work of `Store.writeGuarded` when a guard (an update) answers that it changed
 * nothing: the writes so far are undone and the write answers undefined.
 */
export class GuardFailed extends Error {
  constructor(what: string) {
    super(`a guarded write's condition no longer holds: ${what}`);
    this.name = 'GuardFailed';
  }
}
