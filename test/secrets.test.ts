import assert from 'node:assert/strict';
import net from 'node:net';
import { Writable } from 'node:stream';
import { after, before, test } from 'node:test';
import { sql } from 'kysely';
import { loggable } from '../src/surfaces/http-errors.js';
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
      // No route reads a secret from the query string, but clients put them there anyway.
      { method: 'GET' as const, url: `/api/v2.1/jobs?password=a-brand-new-secret&token=${apiToken}` },
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

  test("a request the HTTP parser refuses is answered in its surface's body, and its bytes (credentials, cookie, password) are not logged", async () => {
    const address = new URL(await ctx.app.listen({ host: '127.0.0.1', port: 0 }));
    const exchange = (request: string) =>
      new Promise<string>((resolve, reject) => {
        const socket = net.connect(Number(address.port), address.hostname);
        let text = '';
        socket.on('data', (chunk) => {
          text += chunk;
        });
        socket.on('error', reject);
        socket.on('close', () => resolve(text));
        socket.on('connect', () => socket.write(request));
      });
    const basic = Buffer.from('admin:parser-sees-this-password-1').toString('base64');
    const body = JSON.stringify({ username: 'admin', password: 'parser-sees-this-password-2' });
    const bytes = (line: string, extra = '') =>
      `${line}\r\nHost: gatehouse\r\nAuthorization: Basic ${basic}\r\nCookie: gatehouse_session=parser-sees-this-cookie\r\n${extra}Content-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
    const badHeader = await exchange(bytes('POST /api/v2.1/auth/signin HTTP/1.1', 'Bad Header: y\r\n'));
    const badMethod = await exchange(bytes('BREW /api/session/login HTTP/1.1'));
    const hugeHeader = await exchange(
      bytes('GET /api/v2.1/auth/regions HTTP/1.1', `X-Big: ${'b'.repeat(20_000)}\r\n`),
    );
    const split = (text: string) => {
      const [head = '', answer = ''] = text.split('\r\n\r\n');
      return { head, body: JSON.parse(answer) };
    };

    const nse = split(badHeader);
    assert.match(nse.head, /^HTTP\/1\.1 400 /);
    assert.match(nse.head, /\r\nX-Content-Type-Options: nosniff\r\n/);
    assert.match(nse.head, /\r\nCache-Control: no-store\r\n/);
    assert.deepEqual(nse.body.status, {
      user_message: 'The request is not valid HTTP.',
      verbose_message: 'MALFORMED_REQUEST',
      code: 400,
    });
    const storware = split(badMethod);
    assert.match(storware.head, /^HTTP\/1\.1 400 /);
    assert.deepEqual(storware.body, {
      errorCode: 'MALFORMED_REQUEST',
      message: 'The request is not valid HTTP.',
    });
    const large = split(hugeHeader);
    assert.match(large.head, /^HTTP\/1\.1 431 /);
    assert.equal(large.body.status.verbose_message, 'HEADERS_TOO_LARGE');

    assert.match(logs, /refused a request the HTTP parser could not read/);
    for (const secret of [basic, 'parser-sees-this-password-2', 'parser-sees-this-cookie']) {
      assert.ok(!logs.includes(secret), `a secret reached the log: ${secret.slice(0, 6)}…`);
    }
    // The bytes would be logged as numbers: no log line holds them in any form.
    assert.ok(!/rawPacket/.test(logs), "a request's raw bytes were logged");
  });

  test('an unexpected store error is logged without the values it quotes (PostgreSQL: "Failing row contains ...")', async () => {
    const hash = '$argon2id$v=19$m=19456,t=2,p=1$c2VjcmV0LXNhbHQ$failing-row-secret-hash';
    const error =
      await sql`insert into users (id, username, username_key, password_hash, created_at, updated_at)
      values (${'u-failing'}, ${null}, ${'failing'}, ${hash}, ${0}, ${0})`
        .execute(ctx.store.db)
        .then(
          () => undefined,
          (e: unknown) => e,
        );
    assert.ok(error instanceof Error, 'the insert fails');
    if (dialect === 'postgres')
      assert.match(JSON.stringify(error), /failing-row-secre/, 'the raw error quotes it');
    const logged = JSON.stringify(loggable(error), Object.getOwnPropertyNames(loggable(error)));
    assert.doesNotMatch(logged, /failing-row-secre/);
    assert.match(logged, /username/, 'what failed is still named');
  });
});
