import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { after, before, test } from 'node:test';
import { ADMIN_PASSWORD, createTestContext, type TestContext } from '../helpers/context.js';
import { forEachDialect } from '../helpers/dialects.js';
import { basic, bearer, json, nseSignIn, sidOf } from '../helpers/http.js';

const signin = (ctx: TestContext, username: string, password: string) =>
  ctx.inject({ method: 'POST', url: '/api/v2.1/auth/signin', payload: { username, password } });

forEachDialect('NSE auth', (dialect) => {
  let ctx: TestContext;
  before(async () => {
    ctx = await createTestContext(dialect, {
      GATEHOUSE_LOCKOUT_THRESHOLD: '3',
      GATEHOUSE_LOCKOUT_DURATION: '10m',
    });
    await ctx.core.tenants.create({ code: 'acme', name: 'Acme Corp' });
    await ctx.core.accounts.createUser({
      username: 'Alice',
      password: 'rabbit-hole-wonder-1',
      firstName: 'Alice',
      lastName: 'Liddell',
      displayName: 'Al',
      email: 'alice@example.com',
      tenantCode: 'acme',
      role: 'admin',
    });
  });
  after(() => ctx.close());

  test('signin answers the reference record: user with tenancies and an HS256 token with username and exp', async () => {
    const response = await signin(ctx, 'alice', 'rabbit-hole-wonder-1');
    assert.equal(response.statusCode, 200);
    const body = json(response);
    assert.deepEqual(body.status, {
      user_message: 'Authentication succeeeded.',
      verbose_message: '',
      code: 200,
    });
    assert.equal(body.result.total_records, 1);
    const { user, token } = body.result.records[0];
    assert.equal(user.username, 'Alice');
    assert.equal(user.firstName, 'Alice');
    assert.equal(user.lastName, 'Liddell');
    assert.equal(user.displayName, 'Al');
    assert.equal(user.email, 'alice@example.com');
    assert.equal(user.tenancies.length, 1);
    assert.deepEqual(Object.keys(user.tenancies[0]).sort(), ['code', 'id', 'name', 'role', 'role_name']);
    assert.equal(user.tenancies[0].code, 'acme');
    assert.equal(user.tenancies[0].role, 'admin');
    const [header, payload] = token
      .split('.')
      .slice(0, 2)
      .map((part: string) => JSON.parse(Buffer.from(part, 'base64url').toString()));
    assert.equal(header.alg, 'HS256');
    assert.equal(typeof header.kid, 'string');
    assert.equal(payload.username, 'Alice');
    assert.equal(typeof payload.exp, 'number');
    assert.equal(typeof payload.sid, 'string');
  });

  test('a wrong password, an unknown user and an inactive user get the same 401 answer', async () => {
    await ctx.core.accounts.createUser({ username: 'sleepy', password: 'seven-dwarfs-zzz-1' });
    const sleepy = await ctx.store.users.findByUsernameKey('sleepy');
    await ctx.store.users.update(sleepy!.id, { active: 0 });
    const answers = await Promise.all([
      signin(ctx, 'alice', 'wrong-password-1'),
      signin(ctx, 'nobody-here', 'wrong-password-1'),
      signin(ctx, 'sleepy', 'seven-dwarfs-zzz-1'),
    ]);
    for (const response of answers) {
      assert.equal(response.statusCode, 401);
      assert.deepEqual(json(response), json(answers[0]!));
    }
    assert.equal(json(answers[0]!).status.verbose_message, 'INVALID_CREDENTIALS');
    // The failure above counts: reset it for the tests that follow.
    await ctx.store.users.update((await ctx.store.users.findByUsernameKey('alice'))!.id, {
      failed_count: 0,
      last_success_at: ctx.clock.now(),
    });
  });

  test('Bearer and HTTP Basic both authenticate; a bad Basic password is refused', async () => {
    const token = await nseSignIn(ctx, 'alice', 'rabbit-hole-wonder-1');
    assert.equal(
      (await ctx.inject({ method: 'GET', url: '/api/v2.1/auth/regions', headers: bearer(token) })).statusCode,
      200,
    );
    assert.equal(
      (
        await ctx.inject({
          method: 'GET',
          url: '/api/v2.1/auth/regions',
          headers: basic('alice', 'rabbit-hole-wonder-1'),
        })
      ).statusCode,
      200,
    );
    const refused = await ctx.inject({
      method: 'GET',
      url: '/api/v2.1/auth/regions',
      headers: basic('alice', 'nope-nope-nope'),
    });
    assert.equal(refused.statusCode, 401);
    await ctx.store.users.update((await ctx.store.users.findByUsernameKey('alice'))!.id, {
      failed_count: 0,
      last_success_at: ctx.clock.now(),
    });
    const none = await ctx.inject({ method: 'GET', url: '/api/v2.1/auth/regions' });
    assert.equal(none.statusCode, 401);
    assert.equal(json(none).status.verbose_message.split(':')[0], 'AUTHENTICATION_REQUIRED');
  });

  test('HTTP Basic is strict base64 of UTF-8: characters outside the alphabet or bytes that are not UTF-8 are malformed, not skipped or replaced', async () => {
    const read = (value: string) =>
      ctx.inject({
        method: 'GET',
        url: '/api/v2.1/auth/regions',
        headers: { authorization: `Basic ${value}` },
      });
    const good = Buffer.from('alice:rabbit-hole-wonder-1').toString('base64');
    assert.equal((await read(good)).statusCode, 200);
    for (const value of [
      `${good}!!!`,
      `${good.slice(0, 8)} ${good.slice(8)}`,
      Buffer.concat([
        Buffer.from('alice:rabbit-hole-'),
        Buffer.from([0xff, 0xc0]),
        Buffer.from('wonder-1'),
      ]).toString('base64'),
    ]) {
      const refused = await read(value);
      assert.equal(refused.statusCode, 401, value);
      assert.equal(
        json(refused).status.verbose_message,
        'AUTHENTICATION_REQUIRED: the Basic credentials are malformed',
      );
    }
    // A password holding U+FFFD, which stands for any bytes that are not UTF-8, is not set.
    await assert.rejects(
      ctx.core.accounts.createUser({ username: 'frank', password: 'Quartz-\uFFFD\uFFFD-lamp-82' }),
      (error: Error & { code?: string }) => error.code === 'PASSWORD_POLICY' && /U\+FFFD/.test(error.message),
    );
  });

  test('refresh gives a new token for the same session; the old one keeps its own expiry', async () => {
    const token = await nseSignIn(ctx, 'alice', 'rabbit-hole-wonder-1');
    ctx.clock.advance(2000);
    const response = await ctx.inject({
      method: 'POST',
      url: '/api/v2.1/auth/refresh',
      headers: bearer(token),
    });
    assert.equal(response.statusCode, 200);
    const refreshed = json(response).result.records[0].token as string;
    assert.notEqual(refreshed, token);
    assert.equal(sidOf(refreshed), sidOf(token));
    assert.equal(json(response).result.records[0].user.username, 'Alice');
    const basicRefresh = await ctx.inject({
      method: 'POST',
      url: '/api/v2.1/auth/refresh',
      headers: basic('alice', 'rabbit-hole-wonder-1'),
    });
    assert.equal(basicRefresh.statusCode, 401);
  });

  test('expired, garbled, alg-none and foreign-signed tokens are refused with 401', async () => {
    const token = await nseSignIn(ctx, 'alice', 'rabbit-hole-wonder-1');
    const [h, p] = token.split('.') as [string, string, string];
    const noneHeader = Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT' })).toString('base64url');
    const foreignSig = createHmac('sha256', 'not-our-key').update(`${h}.${p}`).digest('base64url');
    for (const bad of [
      'garbage',
      `${h}.${p}.`,
      `${noneHeader}.${p}.`,
      `${h}.${p}.${foreignSig}`,
      `${h}.${p}x.sig`,
    ]) {
      const response = await ctx.inject({ method: 'GET', url: '/api/v2.1/jobs', headers: bearer(bad) });
      assert.equal(response.statusCode, 401, bad);
      assert.equal(json(response).status.code, 401);
    }
    ctx.clock.advance(ctx.config.tokenLifetimeMs + 60_000);
    const expired = await ctx.inject({ method: 'GET', url: '/api/v2.1/jobs', headers: bearer(token) });
    assert.equal(expired.statusCode, 401);
    assert.match(json(expired).status.verbose_message, /TOKEN_EXPIRED|SESSION_ENDED/);
  });

  test('password change needs the old password, applies the policy, ends other sessions and returns a new token', async () => {
    await ctx.core.accounts.createUser({
      username: 'bob',
      password: 'builder-of-things-1',
      tenantCode: 'acme',
      role: 'user',
    });
    const first = await nseSignIn(ctx, 'bob', 'builder-of-things-1');
    const change = (old_password: string, new_password: string) =>
      ctx.inject({
        method: 'POST',
        url: '/api/v2.1/auth/password',
        payload: { username: 'bob', old_password, new_password },
      });

    const wrongOld = await change('not-bobs-password', 'fixit-again-2x');
    assert.equal(wrongOld.statusCode, 401);
    const tooShort = await change('builder-of-things-1', 'short');
    assert.equal(tooShort.statusCode, 400);
    assert.match(json(tooShort).status.verbose_message, /PASSWORD_POLICY/);

    const changed = await change('builder-of-things-1', 'a-brand-new-secret');
    assert.equal(changed.statusCode, 200);
    const fresh = json(changed).result.records[0].token;
    assert.equal(
      (await ctx.inject({ method: 'GET', url: '/api/v2.1/jobs', headers: bearer(first) })).statusCode,
      401,
    );
    assert.equal(
      (await ctx.inject({ method: 'GET', url: '/api/v2.1/jobs', headers: bearer(fresh) })).statusCode,
      200,
    );
    assert.equal((await signin(ctx, 'bob', 'builder-of-things-1')).statusCode, 401);
    assert.equal((await signin(ctx, 'bob', 'a-brand-new-secret')).statusCode, 200);
  });

  test('after N failures the account is locked, even for the right password, and a restart keeps the lock', async () => {
    await ctx.core.accounts.createUser({ username: 'carol', password: 'christmas-song-1' });
    for (let i = 0; i < 3; i++)
      assert.equal((await signin(ctx, 'carol', `wrong-${i}-password`)).statusCode, 401);
    assert.equal((await signin(ctx, 'carol', 'christmas-song-1')).statusCode, 401);
    ctx = await ctx.restart();
    assert.equal((await signin(ctx, 'carol', 'christmas-song-1')).statusCode, 401);
    ctx.clock.advance(10 * 60_000 + 1);
    assert.equal((await signin(ctx, 'carol', 'christmas-song-1')).statusCode, 200);
  });

  test('the bootstrap admin signs in as root of tenant system', async () => {
    const response = await signin(ctx, 'admin', ADMIN_PASSWORD);
    assert.equal(response.statusCode, 200);
    assert.deepEqual(
      json(response).result.records[0].user.tenancies.map((t: any) => [t.code, t.role]),
      [['system', 'root']],
    );
  });
});
