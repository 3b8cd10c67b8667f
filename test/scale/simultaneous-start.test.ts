import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { connectStore } from '../../src/store/connect.js';
import { forEachDialect } from '../helpers/dialects.js';
import { createFreshDatabase } from '../helpers/postgres.js';
import {
  freePort,
  generatedPassword,
  type ServerProcess,
  startServerProcess,
  waitFor,
} from '../helpers/server-process.js';

const NODES = 3;

/**
 * A deployment of N replicas starts them together on an empty store: each finds migrations to
 * run and no user yet. Every one must come up, and exactly one make (and show) the admin's
 * generated password, which then works on all of them.
 */
forEachDialect('Three server processes started at once on one empty store', (dialect) => {
  const dirs: string[] = [];
  const servers: ServerProcess[] = [];
  let dropDatabase: (() => Promise<void>) | undefined;
  after(async () => {
    for (const server of servers) server.child.kill('SIGTERM');
    await Promise.all(servers.map((server) => server.exited));
    await dropDatabase?.();
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  test('all come up; one shows the generated admin password, and it signs in on every node', async () => {
    const scratch = () => {
      const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-start-'));
      dirs.push(dir);
      return dir;
    };
    const env: Record<string, string> = {
      GATEHOUSE_MASTER_KEY: randomBytes(32).toString('hex'),
      GATEHOUSE_ARGON2_MEMORY_KIB: '1024',
      GATEHOUSE_ARGON2_ITERATIONS: '1',
      GATEHOUSE_LOG_LEVEL: 'warn',
    };
    if (dialect === 'postgres') {
      const database = await createFreshDatabase();
      dropDatabase = database.drop;
      env.GATEHOUSE_DATABASE_URL = database.url;
    } else {
      env.GATEHOUSE_DATA_DIR = scratch(); // one SQLite file for the three
    }
    const ports = await Promise.all(Array.from({ length: NODES }, () => freePort()));
    const started = ports.map((port) => {
      const cwd = scratch();
      const server = startServerProcess(
        { GATEHOUSE_DATA_DIR: cwd, ...env, GATEHOUSE_PORT: String(port) },
        cwd,
      );
      servers.push(server);
      return { server, base: `http://127.0.0.1:${port}` };
    });

    await Promise.all(
      started.map(async ({ server, base }) => {
        let ready = false;
        await Promise.race([
          waitFor(
            async () => ((await fetch(`${base}/readyz`).catch(() => undefined))?.ok ? true : undefined),
            `readiness of ${base}`,
            60_000,
          ).then(() => {
            ready = true;
          }),
          server.exited.then((code) => {
            if (!ready) throw new Error(`a node exited (${code}) at start:\n${server.output()}`);
          }),
        ]);
      }),
    );

    const shown = started.map(({ server }) => generatedPassword(server.output())).filter(Boolean);
    assert.equal(shown.length, 1, `generated passwords shown: ${shown.length}`);
    for (const { base } of started) {
      const response = await fetch(`${base}/api/v2.1/auth/signin`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ username: 'admin', password: shown[0] }),
      });
      assert.equal(response.status, 200, `sign-in on ${base}`);
    }

    // One first key of each kind, not one per node: every node publishes the same JWKS at once.
    const store = connectStore({
      databaseUrl: env.GATEHOUSE_DATABASE_URL,
      dataDir: env.GATEHOUSE_DATA_DIR ?? '',
    });
    try {
      const keys = await store.signingKeys.listAll();
      assert.deepEqual(keys.map((k) => k.purpose).sort(), ['endpoints', 'session']);
      const endpointsKid = keys.find((k) => k.purpose === 'endpoints')?.kid;
      for (const { base } of started) {
        const jwks = (await (await fetch(`${base}/.well-known/jwks.json`)).json()) as {
          keys: { kid: string }[];
        };
        assert.deepEqual(
          jwks.keys.map((k) => k.kid),
          [endpointsKid],
          `JWKS of ${base}`,
        );
      }
    } finally {
      await store.destroy();
    }
  });
});
