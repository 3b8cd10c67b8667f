import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createFreshDatabase, POSTGRES_REQUIRED, postgresUnavailableReason } from '../helpers/postgres.js';
import { freePort, type ServerProcess, startServerProcess, waitFor } from '../helpers/server-process.js';

const ADMIN_PASSWORD = 'Three-nodes-one-store-7';
const PASSWORD = 'Shared-harbour-lights-42';
const NEW_PASSWORD = 'Changed-on-node-a-913';
const REGIONS = '/api/v2.1/auth/regions';

const unavailable = await postgresUnavailableReason();
if (unavailable && POSTGRES_REQUIRED) {
  throw new Error(
    `PostgreSQL is required (GATEHOUSE_TEST_REQUIRE_POSTGRES=1) but unreachable: ${unavailable}`,
  );
}

type Headers = Record<string, string>;
const bearer = (token: string): Headers => ({ authorization: `Bearer ${token}` });
const basic = (username: string, password: string): Headers => ({
  authorization: `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`,
});

/**
 * Scale-out is PostgreSQL by nature: three Gatehouse server processes, each on its own port and
 * data directory, share one fresh database and one master key. Every change made on node A that
 * ends a session or a credential must be refused on B and C within a second, although both had
 * just answered from their caches.
 */
describe('Three server processes on one PostgreSQL: tokens work everywhere, endings reach every node within 1 s [postgres]', {
  skip: unavailable && `PostgreSQL skipped: ${unavailable}`,
}, () => {
  let database: Awaited<ReturnType<typeof createFreshDatabase>>;
  const dirs: string[] = [];
  const servers: ServerProcess[] = [];
  const nodes: string[] = [];
  let a = '';
  let b = '';
  let c = '';
  let root: Headers;
  let tenantId = '';
  const ids: Record<string, string> = {};

  const start = async (env: Record<string, string>): Promise<string> => {
    const cwd = mkdtempSync(path.join(tmpdir(), 'gatehouse-node-'));
    dirs.push(cwd);
    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    const server = startServerProcess({ ...env, GATEHOUSE_PORT: String(port), GATEHOUSE_DATA_DIR: cwd }, cwd);
    servers.push(server);
    await waitFor(
      async () => ((await fetch(`${base}/readyz`).catch(() => undefined))?.ok ? true : undefined),
      'readiness',
      60_000,
    ).catch((error: Error) => {
      throw new Error(`${error.message}; the server said:\n${server.output()}`);
    });
    return base;
  };
  const call = async (base: string, method: string, url: string, headers: Headers = {}, body?: object) => {
    const response = await fetch(`${base}${url}`, {
      method,
      headers: { ...headers, ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    const text = await response.text();
    return { status: response.status, body: text ? (JSON.parse(text) as Record<string, any>) : {} };
  };
  const signIn = async (base: string, username: string, password = PASSWORD) => {
    const response = await call(base, 'POST', '/api/v2.1/auth/signin', {}, { username, password });
    assert.equal(response.status, 200, JSON.stringify(response.body));
    return response.body.result.records[0].token as string;
  };
  const read = async (base: string, headers: Headers, from?: string) =>
    (await call(base, 'GET', REGIONS, { ...headers, ...(from ? { 'x-forwarded-for': from } : {}) })).status;
  /** A node's cache hits so far, from its /metrics. */
  const hits = async (base: string, cache: 'session' | 'credentials') => {
    const text = await (await fetch(`${base}/metrics`)).text();
    const line = text
      .split('\n')
      .find((l) => l.startsWith(`gatehouse_cache_requests_total{cache="${cache}",result="hit"}`));
    return Number(line?.split(' ').at(-1) ?? 0);
  };
  /**
   * Reads on B and on C until a read is answered from that node's cache (the first ones fill it,
   * and a node's change feed opens with its first authenticated request).
   */
  const warm = async (headers: Headers, cache: 'session' | 'credentials' = 'session') => {
    for (const base of [b, c]) {
      assert.equal(await read(base, headers), 200, `accepted on ${base}`);
      await waitFor(async () => {
        const before = await hits(base, cache);
        assert.equal(await read(base, headers), 200, `accepted again on ${base}`);
        return (await hits(base, cache)) > before ? true : undefined;
      }, `a cache hit on ${base}`);
    }
  };
  /** Polls B and C every 50 ms until both refuse; answers the slower one's time. */
  const refusedElsewhere = async (headers: Headers): Promise<number> => {
    const started = performance.now();
    const pending = new Set([b, c]);
    while (pending.size > 0) {
      for (const base of [...pending]) if ((await read(base, headers)) === 401) pending.delete(base);
      if (pending.size === 0) break;
      if (performance.now() - started > 5000) throw new Error(`still accepted on ${[...pending].join(', ')}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return performance.now() - started;
  };
  const makeUser = async (username: string) => {
    const created = await call(a, 'POST', '/api/v2.1/users', root, {
      username,
      password: PASSWORD,
      tenancies: [{ tenant_id: tenantId, role_name: 'user' }],
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    ids[username] = created.body.result.records[0].id as string;
  };

  before(async () => {
    database = await createFreshDatabase();
    const env = {
      GATEHOUSE_DATABASE_URL: database.url,
      GATEHOUSE_MASTER_KEY: randomBytes(32).toString('hex'),
      GATEHOUSE_ADMIN_PASSWORD: ADMIN_PASSWORD,
      GATEHOUSE_ARGON2_MEMORY_KIB: '1024',
      GATEHOUSE_ARGON2_ITERATIONS: '1',
      GATEHOUSE_LOG_LEVEL: 'warn',
      GATEHOUSE_RATE_LIMIT_SIGNIN: '100000/min',
      GATEHOUSE_RATE_LIMIT_REFRESH: '100000/min',
      GATEHOUSE_LOCKOUT_THRESHOLD: '2',
      GATEHOUSE_LOCKOUT_ACCOUNT_THRESHOLD: '4',
      GATEHOUSE_LOGIN_DELAY: '0',
      // The lock scenario comes from several addresses, named in X-Forwarded-For.
      GATEHOUSE_TRUST_PROXY: 'true',
    };
    // A first, alone: it migrates and creates the admin; then B and C together.
    a = await start(env);
    [b, c] = await Promise.all([start(env), start(env)]);
    nodes.push(a, b, c);
    root = bearer(await signIn(a, 'admin', ADMIN_PASSWORD));
    const tenants = await call(a, 'GET', '/api/v2.1/tenants', root);
    tenantId = (tenants.body.result.records as { id: string; code: string }[]).find(
      (t) => t.code === 'system',
    )?.id as string;
    for (const name of ['ada', 'ben', 'cy', 'dee', 'eve', 'fox']) await makeUser(name);
  });
  after(async () => {
    for (const server of servers) server.child.kill('SIGTERM');
    await Promise.all(servers.map((server) => server.exited));
    await database?.drop();
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  test('a token issued by A works on B and C; a logout on A is refused on B and C within 1 s', async () => {
    const token = await signIn(a, 'ada');
    await warm(bearer(token));
    const logout = await call(a, 'POST', '/api/session/logout', bearer(token));
    assert.equal(logout.status, 201);
    const elapsed = await refusedElsewhere(bearer(token));
    assert.ok(elapsed < 1000, `refused on B and C after ${Math.round(elapsed)} ms`);
  });

  test('an administrator ending a session on A: refused on B and C within 1 s', async () => {
    const token = await signIn(a, 'ben');
    await warm(bearer(token));
    const sid = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString()).sid as string;
    assert.equal((await call(a, 'DELETE', `/api/v2.1/sessions/${sid}`, root)).status, 204);
    const elapsed = await refusedElsewhere(bearer(token));
    assert.ok(elapsed < 1000, `refused on B and C after ${Math.round(elapsed)} ms`);
  });

  test('a password change on A ends the other sessions on B and C within 1 s', async () => {
    const token = await signIn(b, 'cy');
    await warm(bearer(token));
    const changed = await call(
      a,
      'POST',
      '/api/v2.1/auth/password',
      {},
      {
        username: 'cy',
        old_password: PASSWORD,
        new_password: NEW_PASSWORD,
      },
    );
    assert.equal(changed.status, 200, JSON.stringify(changed.body));
    const elapsed = await refusedElsewhere(bearer(token));
    assert.ok(elapsed < 1000, `refused on B and C after ${Math.round(elapsed)} ms`);
    const fresh = changed.body.result.records[0].token as string;
    assert.equal(await read(c, bearer(fresh)), 200, 'the token of the change works on C');
  });

  test('a deactivation on A: the user is refused on B and C within 1 s', async () => {
    const token = await signIn(c, 'dee');
    await warm(bearer(token));
    const off = await call(a, 'PUT', `/api/v2.1/users/${ids.dee}`, root, { active: false });
    assert.equal(off.status, 200, JSON.stringify(off.body));
    const elapsed = await refusedElsewhere(bearer(token));
    assert.ok(elapsed < 1000, `refused on B and C after ${Math.round(elapsed)} ms`);
  });

  test('an account locked by failed sign-ins on A: Basic credentials remembered by B and C are refused within 1 s', async () => {
    const credentials = basic('eve', PASSWORD);
    await warm(credentials, 'credentials');
    // One failure from each of four addresses: no address reaches its own threshold, the account does.
    for (const from of ['192.0.2.11', '192.0.2.12', '192.0.2.13', '192.0.2.14']) {
      const failed = await fetch(`${a}/api/v2.1/auth/signin`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-forwarded-for': from },
        body: JSON.stringify({ username: 'eve', password: 'not-her-password-1' }),
      });
      assert.equal(failed.status, 401);
    }
    const elapsed = await refusedElsewhere(credentials);
    assert.ok(elapsed < 1000, `refused on B and C after ${Math.round(elapsed)} ms`);
  });

  test("a tenant's deletion on A: its stranded member's sessions, a lent token's too, are refused on B and C within 1 s", async () => {
    const created = await call(a, 'POST', '/api/v2.1/tenants', root, {
      name: 'Doomed',
      code: 'doomed',
      zuora_account_name: '',
      zuora_account_number: '',
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const doomed = created.body.result.records[0].id as string;
    const member = async (username: string, tenancies: { tenant_id: string; role_name: string }[]) => {
      const made = await call(a, 'POST', '/api/v2.1/users', root, {
        username,
        password: PASSWORD,
        tenancies,
      });
      assert.equal(made.status, 201, JSON.stringify(made.body));
      return made.body.result.records[0].id as string;
    };
    const gil = await member('gil', [{ tenant_id: doomed, role_name: 'user' }]);
    // The lender keeps a tenant: only the member is left without one.
    await member('hal', [
      { tenant_id: doomed, role_name: 'admin' },
      { tenant_id: tenantId, role_name: 'user' },
    ]);
    const lent = await call(a, 'POST', '/api/v2.1/tokens', bearer(await signIn(a, 'hal')), {
      name: 'for gil',
      user_id: gil,
    });
    assert.equal(lent.status, 201, JSON.stringify(lent.body));
    const opened = await fetch(`${b}/api/session/login-with-token`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ token: lent.body.result.records[0].token }),
    });
    assert.equal(opened.status, 201, await opened.text());
    // The session's secret, the cookie's value: a Bearer credential on NSE too.
    const cookie = bearer((opened.headers.get('set-cookie') ?? '').split(';')[0]?.split('=')[1] ?? '');
    const own = bearer(await signIn(c, 'gil'));
    await warm(cookie);
    await warm(own);

    const deletion = await call(a, 'DELETE', `/api/v2.1/tenants/${doomed}`, root);
    assert.equal(deletion.status, 202, JSON.stringify(deletion.body));
    const job = deletion.body.result.records[0].id as string;
    await waitFor(async () => {
      const polled = await call(a, 'GET', `/api/v2.1/jobs/${job}`, root);
      const status = polled.body.result.records[0].status as string;
      return status === 'running' ? undefined : status;
    }, 'the deletion job').then((status) => assert.equal(status, 'successful'));
    const elapsed = Math.max(...(await Promise.all([refusedElsewhere(cookie), refusedElsewhere(own)])));
    assert.ok(elapsed < 1000, `refused on B and C after ${Math.round(elapsed)} ms of the job's end`);
  });

  test('a refresh on A: the new token works on B at once, the old one on C within the grace', async () => {
    const first = await signIn(a, 'fox');
    await warm(bearer(first));
    const refreshed = await call(a, 'POST', '/api/v2.1/auth/refresh', bearer(first));
    assert.equal(refreshed.status, 200, JSON.stringify(refreshed.body));
    const second = refreshed.body.result.records[0].token as string;
    assert.equal(await read(b, bearer(second)), 200, 'the new token on B, at once');
    assert.equal(await read(c, bearer(second)), 200, 'and on C');
    assert.equal(await read(c, bearer(first)), 200, 'the old one within the grace, on C');
    for (const base of nodes) assert.equal(await read(base, bearer(second)), 200, `still live on ${base}`);
  });
});
