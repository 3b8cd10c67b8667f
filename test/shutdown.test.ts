import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { ADMIN_PASSWORD } from './helpers/context.js';
import { forEachDialect } from './helpers/dialects.js';
import { type FreshStore, freshStore, startTestServer } from './helpers/server.js';
import { freePort, startServerProcess, waitFor } from './helpers/server-process.js';

forEachDialect('Shutdown behind a load balancer (GATEHOUSE_SHUTDOWN_DELAY)', (dialect) => {
  let store: FreshStore;
  before(async () => {
    store = await freshStore(dialect);
  });
  after(() => store.dispose());

  test('readiness fails at once, requests are served until the delay has passed, then the port closes', async () => {
    const server = await startTestServer(store, { GATEHOUSE_SHUTDOWN_DELAY: '1s' });
    const signIn = () =>
      fetch(`${server.url}/api/v2.1/auth/signin`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', connection: 'close' },
        body: JSON.stringify({ username: 'admin', password: ADMIN_PASSWORD }),
      });
    const get = (url: string, headers: Record<string, string> = {}) =>
      fetch(`${server.url}${url}`, { headers: { connection: 'close', ...headers } });

    assert.equal((await get('/readyz')).status, 200);
    const before = await signIn();
    assert.equal(before.status, 200);
    const token = ((await before.json()) as { result: { records: [{ token: string }] } }).result.records[0]
      .token;

    const started = performance.now();
    const closing = server.close();
    const readiness = await get('/readyz');
    assert.equal(readiness.status, 503);
    assert.deepEqual(await readiness.json(), { status: 'shutting down' });
    assert.equal((await get('/healthz')).status, 200, 'alive while it drains');
    // New connections and sign-ins are still served: the balancer has not yet seen the 503.
    assert.equal((await signIn()).status, 200);
    assert.equal((await get('/api/v2.1/auth/regions', { authorization: `Bearer ${token}` })).status, 200);

    await closing;
    assert.ok(performance.now() - started >= 990, 'the port stays open for the delay');
    await assert.rejects(get('/healthz'), 'closed after it');
  });
});

test('npm start (src/main.ts): a second SIGTERM during the drain is ignored; the process ends it and exits 0', async () => {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'gatehouse-signals-'));
  const port = await freePort();
  const server = startServerProcess(
    {
      GATEHOUSE_DATA_DIR: dataDir,
      GATEHOUSE_PORT: String(port),
      GATEHOUSE_ADMIN_PASSWORD: ADMIN_PASSWORD,
      GATEHOUSE_SHUTDOWN_DELAY: '1s',
      GATEHOUSE_ARGON2_MEMORY_KIB: '1024',
      GATEHOUSE_ARGON2_ITERATIONS: '1',
    },
    dataDir,
  );
  try {
    const url = `http://127.0.0.1:${port}`;
    await waitFor(
      async () => ((await fetch(`${url}/readyz`).catch(() => undefined))?.ok ? true : undefined),
      'ready',
    );
    server.child.kill('SIGTERM');
    await waitFor(async () => ((await fetch(`${url}/readyz`)).status === 503 ? true : undefined), 'draining');
    server.child.kill('SIGTERM');
    assert.equal((await fetch(`${url}/healthz`)).status, 200, 'still serving through the delay');
    assert.equal(await server.exited, 0, server.output());
  } finally {
    server.child.kill('SIGKILL');
    rmSync(dataDir, { recursive: true, force: true });
  }
});
