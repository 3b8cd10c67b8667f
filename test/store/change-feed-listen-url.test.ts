import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { sql } from 'kysely';
import { loadConfig } from '../../src/config.js';
import { changeTags } from '../../src/store/change-feed.js';
import { connectStore, type Store, storeOptionsOf } from '../../src/store/connect.js';
import { createFreshDatabase, postgresUnavailableReason } from '../helpers/postgres.js';
import { TcpProxy } from '../helpers/tcp-proxy.js';

const pgSkip = await postgresUnavailableReason();

async function until(probe: () => boolean, what: string, ms = 5000): Promise<void> {
  const started = performance.now();
  while (performance.now() - started < ms) {
    if (probe()) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`timed out waiting for ${what}`);
}

const throughProxy = (url: string, proxy: TcpProxy) => {
  const routed = new URL(url);
  routed.hostname = '127.0.0.1';
  routed.port = String(proxy.port);
  return routed.toString();
};

describe('GATEHOUSE_DATABASE_LISTEN_URL: the change feed listens where it says [postgres]', {
  skip: pgSkip && `PostgreSQL skipped: ${pgSkip}`,
}, () => {
  let database: Awaited<ReturnType<typeof createFreshDatabase>>;
  let elsewhere: Awaited<ReturnType<typeof createFreshDatabase>>;
  const stores: Store[] = [];
  const open = async (settings: Record<string, string>) => {
    const config = loadConfig({ GATEHOUSE_DATABASE_URL: database.url, ...settings });
    const store = connectStore(storeOptionsOf(config));
    stores.push(store);
    await store.migrate();
    return store;
  };

  before(async () => {
    database = await createFreshDatabase();
    elsewhere = await createFreshDatabase();
  });
  after(async () => {
    for (const store of stores) await store.destroy();
    await database.drop();
    await elsewhere.drop();
  });

  test('the listener connects by the listen URL and the pool by the database URL; changes reach it', async () => {
    const proxy = new TcpProxy({ host: '127.0.0.1', port: 5432 });
    await proxy.start();
    try {
      const writer = await open({});
      const listening = await open({ GATEHOUSE_DATABASE_LISTEN_URL: throughProxy(database.url, proxy) });
      await until(() => listening.changes.isLive(), 'the feed through the listen URL');
      const heard: string[] = [];
      listening.changes.subscribe((tags) => heard.push(...tags));
      await writer.publish([changeTags.user('u-listen-url')]);
      await until(() => heard.includes('user:u-listen-url'), "the writer's change");

      await proxy.stop();
      await until(() => !listening.changes.isLive(), 'the feed down with its listen URL');
      await listening.ping();
      assert.equal(listening.changes.isLive(), false, 'the pool does not go by the listen URL');
      await proxy.start();
      await until(() => listening.changes.isLive(), 'the feed back', 10_000);
    } finally {
      await proxy.stop();
    }
  });

  test('a listener on another database is never trusted, the operator is told, and it is not retried at once', async () => {
    const proxy = new TcpProxy({ host: '127.0.0.1', port: 5432 });
    await proxy.start();
    after(() => proxy.stop());
    const store = await open({ GATEHOUSE_DATABASE_LISTEN_URL: throughProxy(elsewhere.url, proxy) });
    const warnings: string[] = [];
    store.observeWarnings((message) => warnings.push(message));
    const writer = await open({});
    const heard: string[] = [];
    store.changes.subscribe((tags) => heard.push(...tags));
    const started = performance.now();
    // Past many heartbeats (every 200 ms), which it hears, and a few proofs it does not.
    while (performance.now() - started < 3000) {
      assert.equal(store.changes.isLive(), false, 'live on heartbeats that prove nothing');
      await writer.publish([changeTags.user('u-elsewhere')]);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.deepEqual(heard, []);
    assert.equal(warnings.length, 1, 'told once');
    assert.match(warnings[0] ?? '', /did not hear a notification sent through the pool/);
    assert.match(warnings[0] ?? '', /GATEHOUSE_DATABASE_LISTEN_URL must reach the database/);
    // Found unfit once, the next listening connection waits 30 s: a misconfiguration does not
    // mend itself, and each try costs the server a session.
    assert.equal(proxy.accepted, 1, 'listening connections opened');
    await store.ping();
  });

  test('once proven, a feed stays live while the pool is too busy to send the next proof', async () => {
    const store = await open({ GATEHOUSE_PG_POOL_SIZE: '1' });
    await until(() => store.changes.isLive(), 'the feed');
    // The only pooled connection held past the next proof's time (every 5 s).
    const holding = store.db.transaction().execute((trx) => sql`select pg_sleep(6)`.execute(trx));
    const started = performance.now();
    while (performance.now() - started < 6000) {
      assert.equal(store.changes.isLive(), true, `down ${Math.round(performance.now() - started)} ms in`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    await holding;
  });

  test('a busy pool delays the first proof without the listener being dropped', async () => {
    const store = await open({
      GATEHOUSE_PG_POOL_SIZE: '1',
      GATEHOUSE_DATABASE_LISTEN_URL: `${database.url}?application_name=gatehouse-listener`,
    });
    const holding = store.db.transaction().execute((trx) => sql`select pg_sleep(4)`.execute(trx));
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(store.changes.isLive(), false, 'not proven yet');
    await holding;
    const freed = performance.now();
    await until(() => store.changes.isLive(), 'the feed once the pool is free', 3000);
    // Dropped as stalled at 3 s, it would wait out a reconnection too; kept, the proof waiting for
    // the pool goes as soon as the pool is free.
    assert.ok(performance.now() - freed < 1000, `${Math.round(performance.now() - freed)} ms`);
  });
});
