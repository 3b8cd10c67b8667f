import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, test } from 'node:test';
import { loadConfig } from '../../src/config.js';
import type { RunningServer } from '../../src/server.js';
import { forEachDialect } from '../helpers/dialects.js';
import { type FreshStore, freshStore, startTestServer } from '../helpers/server.js';

/** A client of one kept-alive connection at a time: each answer's `Connection` header and connection. */
function keptAliveClient(url: string) {
  const { hostname, port } = new URL(url);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const connections: unknown[] = [];
  const get = () =>
    new Promise<{ connection: string; over: number }>((resolve, reject) => {
      http
        .get({ host: hostname, port, path: '/healthz', agent }, (answer) => {
          if (!connections.includes(answer.socket)) connections.push(answer.socket);
          const seen = {
            connection: String(answer.headers.connection),
            over: connections.indexOf(answer.socket),
          };
          answer.resume();
          answer.on('end', () =>
            answer.statusCode === 200 ? resolve(seen) : reject(new Error(`${answer.statusCode}`)),
          );
        })
        .on('error', reject);
    });
  return { get, close: () => agent.destroy() };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

test('GATEHOUSE_CONNECTION_MAX_AGE: 60 s unless set; off, or a duration from 1 s to 24 h', () => {
  assert.equal(loadConfig({}, '/srv/gatehouse').connectionMaxAgeMs, 60_000);
  assert.equal(loadConfig({ GATEHOUSE_CONNECTION_MAX_AGE: 'off' }, '/srv/gatehouse').connectionMaxAgeMs, 0);
  assert.equal(
    loadConfig({ GATEHOUSE_CONNECTION_MAX_AGE: '5m' }, '/srv/gatehouse').connectionMaxAgeMs,
    300_000,
  );
  for (const bad of ['0', '500ms', '25h', 'soon'])
    assert.throws(
      () => loadConfig({ GATEHOUSE_CONNECTION_MAX_AGE: bad }, '/srv/gatehouse'),
      /GATEHOUSE_CONNECTION_MAX_AGE/,
    );
});

forEachDialect('Kept-alive connections (GATEHOUSE_CONNECTION_MAX_AGE)', (dialect) => {
  let store: FreshStore;
  let aging: RunningServer;
  let unlimited: RunningServer;
  before(async () => {
    store = await freshStore(dialect);
    aging = await startTestServer(store, { GATEHOUSE_CONNECTION_MAX_AGE: '1s' });
    unlimited = await startTestServer(store, { GATEHOUSE_CONNECTION_MAX_AGE: 'off' });
  });
  after(async () => {
    await aging.close();
    await unlimited.close();
    await store.dispose();
  });

  // A client that keeps its connections alive would otherwise stay on the process and node it
  // first reached: after a worker is replaced, or a node added, it never spread to the new one.
  test('the first answer after the connection has served its age closes it, saying so, and the client goes on over a new one', async () => {
    const client = keptAliveClient(aging.url);
    try {
      assert.deepEqual(await client.get(), { connection: 'keep-alive', over: 0 });
      assert.deepEqual(await client.get(), { connection: 'keep-alive', over: 0 });
      await sleep(1100);
      assert.deepEqual(await client.get(), { connection: 'close', over: 0 });
      assert.deepEqual(
        await client.get(),
        { connection: 'keep-alive', over: 1 },
        'a new connection, aged anew',
      );
    } finally {
      client.close();
    }
  });

  test('off: a connection serves for as long as the client keeps it', async () => {
    const client = keptAliveClient(unlimited.url);
    try {
      assert.deepEqual(await client.get(), { connection: 'keep-alive', over: 0 });
      await sleep(1100);
      assert.deepEqual(await client.get(), { connection: 'keep-alive', over: 0 });
    } finally {
      client.close();
    }
  });
});
