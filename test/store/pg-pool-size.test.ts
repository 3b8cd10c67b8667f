import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import type { RunningServer } from '../../src/server.js';
import { ADMIN_PASSWORD } from '../helpers/context.js';
import { POSTGRES_ADMIN_URL, postgresUnavailableReason } from '../helpers/postgres.js';
import { type FreshStore, freshStore, startTestServer } from '../helpers/server.js';

const unavailable = await postgresUnavailableReason();

describe('GATEHOUSE_PG_POOL_SIZE bounds the connections of a server process', {
  skip: unavailable && `PostgreSQL skipped: ${unavailable}`,
}, () => {
  let store: FreshStore;
  let monitor: pg.Client;
  const servers: RunningServer[] = [];

  const start = async (settings: Record<string, string>) => {
    const server = await startTestServer(store, settings);
    servers.push(server);
    return server;
  };

  /** The most connections to the test database seen while 60 list requests run at once. */
  const peakConnectionsUnderLoad = async (server: RunningServer): Promise<number> => {
    const signin = await fetch(`${server.url}/api/v2.1/auth/signin`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: 'admin', password: ADMIN_PASSWORD }),
    });
    const token = ((await signin.json()) as { result: { records: [{ token: string }] } }).result.records[0]
      .token;
    const name = new URL(store.settings.GATEHOUSE_DATABASE_URL ?? '').pathname.slice(1);
    let peak = 0;
    let loading = true;
    const watching = (async () => {
      while (loading) {
        const { rows } = await monitor.query<{ n: string }>(
          'select count(*) as n from pg_stat_activity where datname = $1',
          [name],
        );
        peak = Math.max(peak, Number(rows[0]?.n ?? 0));
      }
    })();
    const answers = await Promise.all(
      Array.from({ length: 60 }, () =>
        fetch(`${server.url}/api/v2.1/users?limit=50`, { headers: { authorization: `Bearer ${token}` } }),
      ),
    );
    loading = false;
    await watching;
    assert.deepEqual(
      answers.map((answer) => answer.status),
      answers.map(() => 200),
    );
    return peak;
  };

  before(async () => {
    store = await freshStore('postgres');
    monitor = new pg.Client({ connectionString: POSTGRES_ADMIN_URL });
    await monitor.connect();
  });
  after(async () => {
    for (const server of servers) await server.close();
    await monitor.end();
    await store.dispose();
  });

  test('two connections and the listener, however many requests wait; the default pool opens more', async () => {
    const small = await start({ GATEHOUSE_PG_POOL_SIZE: '2' });
    // The pool's two and the change feed's listener.
    assert.ok((await peakConnectionsUnderLoad(small)) <= 3);
    await small.close();
    servers.length = 0;

    const usual = await start({});
    assert.ok(
      (await peakConnectionsUnderLoad(usual)) > 3,
      'the default pool (10) opens more under the same load',
    );
  });
});
