import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, test } from 'node:test';
import { sql } from 'kysely';
import { ADMIN_PASSWORD, createTestContext, type TestContext } from './helpers/context.js';
import { forEachDialect } from './helpers/dialects.js';
import { json } from './helpers/http.js';

forEachDialect('Secrets stay secret', (dialect) => {
  let ctx: TestContext;
  let logs = '';
  const secrets: string[] = [];

  before(async () => {
    const stream = new Writable({
      write(chunk, _encoding, done) {
        logs += chunk.toString();
        done();
      },
    });
    ctx = await createTestContext(dialect, {}, { logger: { level: 'trace', stream } });
    await ctx.core.accounts.createUser({ username: 'alice', password: 'rabbit-hole-wonder-1' });
    secrets.push('rabbit-hole-wonder-1', ADMIN_PASSWORD, 'a-brand-new-secret');
  });
  after(() => ctx.close());

  test('passwords, tokens and cookies never reach a log line, an error body or the store in clear', async () => {
    const bodies: string[] = [];
    const signin = await ctx.inject({
      method: 'POST',
      url: '/api/v2.1/auth/signin',
      payload: { username: 'alice', password: 'rabbit-hole-wonder-1' },
    });
    const token = json(signin).result.records[0].token as string;
    secrets.push(token);
    const login = await ctx.inject({
      method: 'POST',
      url: '/api/session/login',
      payload: { login: 'admin', password: ADMIN_PASSWORD },
    });
    const cookie = login.cookies.find((c) => c.name === 'gatehouse_session')!.value;
    secrets.push(cookie);
    const session = json(login);
    secrets.push(session.endpointsTokens.endpointsServerManagerToken);
    const apiToken = (await ctx.core.accounts.createApiToken({ username: 'alice' })).token;
    secrets.push(apiToken);

    // Failures that carry secrets in the request.
    for (const request of [
      {
        method: 'POST' as const,
        url: '/api/v2.1/auth/signin',
        payload: { username: 'alice', password: 'a-brand-new-secret' },
      },
      {
        method: 'POST' as const,
        url: '/api/v2.1/auth/password',
        payload: {
          username: 'alice',
          old_password: 'rabbit-hole-wonder-1',
          new_password: 'a-brand-new-secret',
        },
      },
      {
        method: 'POST' as const,
        url: '/api/v2.1/auth/password',
        payload: { username: 'alice', old_password: 'a-brand-new-secret', new_password: 'alice' },
      },
      { method: 'POST' as const, url: '/api/session/login-with-token', payload: { token: apiToken } },
      { method: 'GET' as const, url: '/api/v2.1/jobs', headers: { authorization: `Bearer ${token}x` } },
      { method: 'GET' as const, url: '/api/session/user', cookies: { gatehouse_session: `${cookie}x` } },
    ]) {
      bodies.push((await ctx.inject(request)).body);
    }

    const dump: string[] = [];
    for (const table of [
      'users',
      'sessions',
      'api_tokens',
      'signing_keys',
      'nodes',
      'jobs',
      'audit_events',
    ]) {
      const rows = await sql<Record<string, unknown>>`select * from ${sql.table(table)}`.execute(
        ctx.store.db,
      );
      dump.push(JSON.stringify(rows.rows));
    }
    const store = dump.join('\n');

    assert.ok(logs.length > 0, 'the logger should have written something');
    for (const secret of secrets) {
      assert.ok(!logs.includes(secret), `a secret reached the log: ${secret.slice(0, 6)}…`);
      for (const body of bodies)
        assert.ok(!body.includes(secret), `a secret reached an error body: ${secret.slice(0, 6)}…`);
      assert.ok(!store.includes(secret), `a secret is in the store in clear: ${secret.slice(0, 6)}…`);
    }
    assert.match(store, /\$argon2id\$/, 'passwords are stored as argon2id hashes');
  });
});
