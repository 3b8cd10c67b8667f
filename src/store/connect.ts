import { mkdirSync } from 'node:fs';
import path from 'node:path';
import SQLite from 'better-sqlite3';
import { Kysely, Migrator, PostgresDialect, SqliteDialect } from 'kysely';
import pg from 'pg';
import { migrations } from './migrations/index.js';
import { RedisUnavailableError } from './redis-counters.js';
import { createRepositories, type Repositories } from './repositories/index.js';
import type { Database } from './schema.js';

export type Dialect = 'sqlite' | 'postgres';

export interface StoreOptions {
  /** Absent: SQLite file `gatehouse.db` in `dataDir`. */
  readonly databaseUrl: string | undefined;
  readonly dataDir: string;
  /** PostgreSQL pool size per process. */
  readonly poolSize?: number;
}

export interface Store extends Repositories {
  readonly dialect: Dialect;
  readonly db: Kysely<Database>;
  /** Runs `work` in one transaction; the repositories it gets write inside it. */
  transaction<T>(work: (tx: Repositories) => Promise<T>): Promise<T>;
  /** Brings the schema up to date; safe to run from several processes at once. Returns what it applied. */
  migrate(): Promise<string[]>;
  /** Cheap round trip, for readiness. */
  ping(): Promise<void>;
  destroy(): Promise<void>;
}

/** The only place that branches on the dialect. */
export function connectStore(options: StoreOptions): Store {
  const dialect: Dialect = options.databaseUrl ? 'postgres' : 'sqlite';
  const db = new Kysely<Database>({
    dialect: options.databaseUrl
      ? new PostgresDialect({ pool: createPgPool(options.databaseUrl, options.poolSize ?? 10) })
      : new SqliteDialect({ database: openSqlite(options.dataDir) }),
  });

  return {
    dialect,
    db,
    ...createRepositories(db),
    transaction: (work) => db.transaction().execute((trx) => work(createRepositories(trx))),
    async migrate() {
      const migrator = new Migrator({ db, provider: { getMigrations: async () => migrations } });
      const { error, results = [] } = await migrator.migrateToLatest();
      if (error) {
        const failed = results.find((r) => r.status === 'Error')?.migrationName;
        // Keep the original (and its code): a store that is down must still read as unavailable.
        if (!failed) throw error;
        throw new Error(`migration ${failed} failed: ${(error as Error).message}`, { cause: error });
      }
      return results.filter((r) => r.status === 'Success').map((r) => r.migrationName);
    },
    async ping() {
      await db.selectFrom('tenants').select('id').limit(1).execute();
    },
    destroy: () => db.destroy(),
  };
}

function openSqlite(dataDir: string): SQLite.Database {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const database = new SQLite(path.join(dataDir, 'gatehouse.db'));
  // WAL lets readers run beside the writer (and several processes share the file);
  // busy_timeout makes a second writer wait instead of failing at once.
  database.pragma('journal_mode = WAL');
  database.pragma('busy_timeout = 5000');
  database.pragma('synchronous = NORMAL');
  database.pragma('foreign_keys = ON');
  return database;
}

function createPgPool(connectionString: string, max: number): pg.Pool {
  const pool = new pg.Pool({
    connectionString,
    max,
    connectionTimeoutMillis: 3000,
    // bigint columns hold epoch milliseconds, well inside Number's exact range.
    types: {
      getTypeParser: ((oid: number, format?: string) =>
        oid === pg.types.builtins.INT8
          ? (value: string) => Number(value)
          : pg.types.getTypeParser(oid, format as 'text')) as typeof pg.types.getTypeParser,
    },
  });
  // A client losing its server (restart, failover) must not crash the process: the query in
  // flight rejects (and becomes a 503), and the pool replaces the client on the next checkout.
  pool.on('error', () => {});
  pool.on('connect', (client) => client.on('error', () => {}));
  return pool;
}

const PG_UNAVAILABLE = new Set(['57P01', '57P02', '57P03', '53300', '08000', '08001', '08003', '08006']);
const NET_UNAVAILABLE = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EHOSTUNREACH',
]);
const SQLITE_UNAVAILABLE = new Set([
  'SQLITE_BUSY',
  'SQLITE_LOCKED',
  'SQLITE_CANTOPEN',
  'SQLITE_IOERR',
  'SQLITE_FULL',
]);

/** True when an error means "the store cannot be reached now", as opposed to a bug. */
export function isStoreUnavailable(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  if (error instanceof RedisUnavailableError) return true;
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string') {
    if (PG_UNAVAILABLE.has(code) || NET_UNAVAILABLE.has(code)) return true;
    if ([...SQLITE_UNAVAILABLE].some((c) => code.startsWith(c))) return true;
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
