import { randomBytes } from 'node:crypto';
import { type Kysely, sql } from 'kysely';
import pg from 'pg';
import type { Database } from '../../src/store/schema.js';

/** The server the PostgreSQL half of the suite runs on; each test context gets a fresh database in it. */
export const POSTGRES_ADMIN_URL =
  process.env.GATEHOUSE_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
export const POSTGRES_REQUIRED = process.env.GATEHOUSE_TEST_REQUIRE_POSTGRES === '1';

let availability: Promise<string | undefined> | undefined;

/** undefined when PostgreSQL answers; otherwise why not. */
export function postgresUnavailableReason(): Promise<string | undefined> {
  availability ??= (async () => {
    const client = new pg.Client({ connectionString: POSTGRES_ADMIN_URL, connectionTimeoutMillis: 2000 });
    try {
      await client.connect();
      await client.query('select 1');
      return undefined;
    } catch (error) {
      return `${POSTGRES_ADMIN_URL.replace(/\/\/[^@]*@/, '//')}: ${(error as Error).message}`;
    } finally {
      await client.end().catch(() => {});
    }
  })();
  return availability;
}

async function withAdmin<T>(work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: POSTGRES_ADMIN_URL });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

/** Creates an empty database and returns its URL and a function that drops it. */
export async function createFreshDatabase(): Promise<{ url: string; drop: () => Promise<void> }> {
  const name = `gatehouse_test_${process.pid}_${randomBytes(4).toString('hex')}`;
  await withAdmin((client) => client.query(`create database ${name}`));
  const url = new URL(POSTGRES_ADMIN_URL);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: () =>
      withAdmin((client) => client.query(`drop database if exists ${name} with (force)`)).then(() => {}),
  };
}

/**
 * Until `count` statements of the database `db` reaches wait for a lock held by another
 * transaction: how a test knows that a statement it started has reached the row it must wait for.
 */
export async function untilWaitingForLocks(db: Kysely<Database>, count: number): Promise<void> {
  for (let tries = 0; tries < 500; tries += 1) {
    const { rows } = await sql<{ waiting: number }>`select count(*)::int as waiting from pg_stat_activity
      where datname = current_database() and wait_event_type = 'Lock'`.execute(db);
    if ((rows[0]?.waiting ?? 0) >= count) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`${count} statement(s) never waited for a lock`);
}

/**
 * Whether another transaction holds the row `id` of `table` now: one that tries to take it
 * (`for update nowait`) is refused at once. How a test sees which rows a waiting statement took.
 */
export async function lockedElsewhere(
  db: Kysely<Database>,
  table: 'sessions' | 'api_tokens',
  id: string,
): Promise<boolean> {
  try {
    await db.transaction().execute(async (trx) => {
      await sql`select id from ${sql.table(table)} where id = ${id} for update nowait`.execute(trx);
    });
    return false;
  } catch (error) {
    if ((error as { code?: string }).code === '55P03') return true;
    throw error;
  }
}

/**
 * Takes the row `id` of `table` (`for update`) in a transaction of its own and keeps it until
 * `release` is called; `release` resolves when that transaction has ended, and may be called again.
 * How a test makes another statement meet a row held elsewhere.
 */
export async function holdRow(
  db: Kysely<Database>,
  table: 'sessions' | 'api_tokens',
  id: string,
): Promise<{ release: () => Promise<void> }> {
  let holding!: () => void;
  const held = new Promise<void>((resolve) => {
    holding = resolve;
  });
  let free!: () => void;
  const freed = new Promise<void>((resolve) => {
    free = resolve;
  });
  const ended = db.transaction().execute(async (trx) => {
    await sql`select id from ${sql.table(table)} where id = ${id} for update`.execute(trx);
    holding();
    await freed;
  });
  await Promise.race([held, ended]);
  return {
    release: async () => {
      free();
      await ended;
    },
  };
}
