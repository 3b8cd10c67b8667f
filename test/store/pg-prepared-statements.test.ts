import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { sql } from 'kysely';
import pg from 'pg';
import { connectStore, type Store } from '../../src/store/connect.js';
import { createFreshDatabase, postgresUnavailableReason } from '../helpers/postgres.js';

const unavailable = await postgresUnavailableReason();

/**
 * The named statements of the store's one connection (pool size 1: every statement runs on it),
 * this question itself left out.
 */
async function preparedNames(store: Store): Promise<string[]> {
  const { rows } = await sql<{ name: string }>`
    select name from pg_prepared_statements where statement not like '%pg_prepared_statements%'
  `.execute(store.db);
  return rows.map((row) => row.name);
}

const TENANT = {
  code: 'acme',
  name: 'Acme',
  description: '',
  created_at: 1,
  updated_at: 1,
};

describe('PostgreSQL prepared statements', {
  skip: unavailable && `PostgreSQL skipped: ${unavailable}`,
}, () => {
  let database: Awaited<ReturnType<typeof createFreshDatabase>>;
  let dataDir: string;
  const stores: Store[] = [];
  const open = async (preparedStatements?: boolean) => {
    const store = connectStore({ databaseUrl: database.url, dataDir, poolSize: 1, preparedStatements });
    stores.push(store);
    return store;
  };

  before(async () => {
    database = await createFreshDatabase();
    dataDir = mkdtempSync(path.join(tmpdir(), 'gatehouse-prepared-'));
    const store = await open(false);
    await store.migrate();
    await store.tenants.insert({ id: 't1', ...TENANT });
  });

  after(async () => {
    for (const store of stores) await store.destroy();
    await database?.drop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test('a statement that repeats is prepared once per connection; one seen once is not', async () => {
    const store = await open();
    await store.tenants.findByCode('acme');
    assert.deepEqual(await preparedNames(store), [], 'seen once: run unnamed');
    for (let i = 0; i < 3; i += 1) assert.equal((await store.tenants.findByCode('acme'))?.id, 't1');
    const [name, ...more] = await preparedNames(store);
    assert.match(name ?? '', /^gatehouse_[0-9a-f]{24}_0$/);
    assert.deepEqual(more, []);
  });

  test('a name means one statement in every process: a digest of its text, not a counter', async () => {
    // Behind a pooler, another process's server session may answer: a name bound there must
    // stand for the same statement, whatever each process ran first.
    const first = await open();
    const second = await open();
    for (let i = 0; i < 2; i += 1) await first.tenants.findById('t1');
    for (let i = 0; i < 2; i += 1) await second.tenants.findByCode('acme');
    for (let i = 0; i < 2; i += 1) await second.tenants.findById('t1');
    const named = async (store: Store) =>
      new Map(
        (
          await sql<{ name: string; statement: string }>`
            select name, statement from pg_prepared_statements
            where statement not like '%pg_prepared_statements%'
          `.execute(store.db)
        ).rows.map((row) => [row.statement, row.name]),
      );
    const [[byIdText, byIdName] = []] = [...(await named(first))];
    const inSecond = await named(second);
    assert.equal(inSecond.size, 2);
    assert.equal(inSecond.get(byIdText ?? ''), byIdName, 'the same statement, the same name');
    assert.equal(new Set(inSecond.values()).size, 2, 'two statements, two names');
  });

  test('statements that miss their preparation (a pooler in transaction mode) turn naming off, with one warning', async () => {
    const store = await open();
    const warnings: string[] = [];
    store.observeWarnings((message) => warnings.push(message));
    for (let i = 0; i < 3; i += 1) await store.tenants.findByCode('acme');
    assert.equal((await preparedNames(store)).length, 1);
    // What a pooler does to a client: its next statement reaches a server session that never
    // prepared the name (pg, believing it prepared, sends only Bind: "does not exist").
    await sql`deallocate all`.execute(store.db);
    assert.equal((await store.tenants.findByCode('acme'))?.id, 't1', 'run again unnamed, not failed');
    for (let i = 0; i < 3; i += 1) await store.tenants.findByCode('acme');
    await store.tenants.findById('t1');
    await store.tenants.findById('t1');
    assert.deepEqual(await preparedNames(store), [], 'nothing named any more');
    assert.equal(warnings.length, 1);
    assert.match(warnings[0] ?? '', /GATEHOUSE_PG_PREPARED_STATEMENTS=false/);
  });

  test('GATEHOUSE_PG_PREPARED_STATEMENTS=false: nothing is prepared', async () => {
    const store = await open(false);
    for (let i = 0; i < 3; i += 1) await store.tenants.findByCode('acme');
    assert.deepEqual(await preparedNames(store), []);
  });

  test('a table changed under a prepared statement (a migration elsewhere) does not fail the next use', async () => {
    const store = await open();
    for (let i = 0; i < 3; i += 1) await store.tenants.findByCode('acme');
    // Another process adds a column: the prepared `select *` no longer has the row type it was
    // planned for, and PostgreSQL refuses to run it ("cached plan must not change result type").
    await alterElsewhere(database.url, 'alter table tenants add column added_by_a_later_release text');
    assert.equal((await store.tenants.findByCode('acme'))?.id, 't1');
    assert.equal((await store.tenants.findByCode('acme'))?.id, 't1');
    // Inside a transaction the first use fails (the transaction is aborted by then); the caller's
    // next attempt prepares it afresh.
    await alterElsewhere(database.url, 'alter table tenants add column added_later_still text');
    await assert.rejects(
      store.transaction((tx) => tx.tenants.findByCode('acme')),
      /cached plan must not change result type/,
    );
    assert.equal((await store.transaction((tx) => tx.tenants.findByCode('acme')))?.id, 't1');
  });
});

/** Runs a schema change on a connection of its own, as another process would. */
async function alterElsewhere(url: string, statement: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(statement);
  } finally {
    await client.end();
  }
}
