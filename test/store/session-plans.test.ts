import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { sql } from 'kysely';
import { connectStore, type Store } from '../../src/store/connect.js';
import { createFreshDatabase, postgresUnavailableReason } from '../helpers/postgres.js';

const unavailable = await postgresUnavailableReason();
/**
 * Enough that reading the whole table costs more than the batch's key lookups: a smaller one may
 * rightly be read whole, a cost that grows with the table, unlike the partial index's estimate.
 */
const LIVE_SESSIONS = 20_000;

/** Index scans of the sessions table so far, by index, as this store's one connection flushed them. */
async function sessionIndexScans(store: Store): Promise<Map<string, number>> {
  // The counters of this backend reach the shared statistics when it next goes idle.
  await sql`select pg_stat_force_next_flush()`.execute(store.db);
  const { rows } = await sql<{ name: string; scans: string }>`
    select indexrelname as name, idx_scan as scans from pg_stat_user_indexes where relname = 'sessions'
  `.execute(store.db);
  return new Map(rows.map((row) => [row.name, Number(row.scans)]));
}

describe('PostgreSQL plans of the hot session statements', {
  skip: unavailable && `PostgreSQL skipped: ${unavailable}`,
}, () => {
  let database: Awaited<ReturnType<typeof createFreshDatabase>>;
  let dataDir: string;
  let store: Store;

  /** A user `id` with `count` live sessions, their ids `prefix` followed by 1, 2, ... */
  const addUserWithSessions = async (id: string, prefix: string, count: number) => {
    await sql`
      insert into users (id, username, username_key, created_at, updated_at)
      values (${id}, ${`user-${id}`}, ${`user-${id}`}, 1, 1)
    `.execute(store.db);
    await sql`
      insert into sessions (id, kind, user_id, secret_hash, created_at, last_seen_at, expires_at)
      select ${prefix} || n, 'user', ${id}, ${`${prefix}-secret-`} || n, 1, 1, 9999999999999
      from generate_series(1, ${count}::int) as n
    `.execute(store.db);
  };

  before(async () => {
    database = await createFreshDatabase();
    dataDir = mkdtempSync(path.join(tmpdir(), 'gatehouse-plans-'));
    // One connection: the statements and the counters read after them are the same backend's.
    store = connectStore({ databaseUrl: database.url, dataDir, poolSize: 1 });
    await store.migrate();
    // Sessions written straight in, and no ANALYZE: the table as a young database, a restore or
    // an upgrade leaves it until autovacuum comes round. A second user has a few of their own.
    await addUserWithSessions('u1', 's', LIVE_SESSIONS);
    await addUserWithSessions('u2', 'o', 3);
  });

  after(async () => {
    await store?.destroy();
    await database?.drop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test('a refresh batch looks up its sessions by key, not through every live session (no statistics yet)', async () => {
    const advances = Array.from({ length: 10 }, (_, i) => ({ id: `s${i * 7 + 1}`, from: 0 }));
    const before = await sessionIndexScans(store);
    const advanced = await store.sessions.advanceTokenGenerations(advances, 123);
    const afterwards = await sessionIndexScans(store);
    assert.equal(advanced.size, advances.length);
    const scansOf = (name: string) => (afterwards.get(name) ?? 0) - (before.get(name) ?? 0);
    assert.equal(scansOf('sessions_live_idx'), 0, 'the partial index of live sessions was scanned');
    assert.ok(
      scansOf('sessions_pkey') >= 1,
      `the primary key was not used: ${JSON.stringify([...afterwards])}`,
    );
  });

  test("a user's session list and logout-everywhere read that user's sessions, not every live one", async () => {
    const bounds = { now: 2, idleBefore: 0 };
    const before = await sessionIndexScans(store);
    const listed = await store.sessions.listLive({ userId: 'u2' }, bounds, {
      limit: 20,
      offset: 0,
      sortBy: 'last_seen',
      order: 'desc',
    });
    const ended = await store.sessions.revokeAllOfUser('u2', 3, 'test');
    const afterwards = await sessionIndexScans(store);
    assert.equal(listed.total, 3);
    assert.equal(ended, 3);
    const scansOf = (name: string) => (afterwards.get(name) ?? 0) - (before.get(name) ?? 0);
    assert.equal(scansOf('sessions_live_idx'), 0, 'the partial index of live sessions was scanned');
    assert.ok(
      scansOf('sessions_user_idx') >= 1,
      `the user index was not used: ${JSON.stringify([...afterwards])}`,
    );
  });
});
