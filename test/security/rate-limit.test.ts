import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { ConfigError, loadConfig, parseRate } from '../../src/config.js';
import { addressKey } from '../../src/core/login-throttle.js';
import { RateLimiter } from '../../src/core/rate-limiter.js';
import { createTestContext, startAnotherNode, type TestContext } from '../helpers/context.js';
import { forEachDialect } from '../helpers/dialects.js';
import { json } from '../helpers/http.js';

const PASSWORD = 'rate-limited-secret-1';

/** A 429 in the NSE envelope, with Retry-After in whole seconds within the window. */
function isNse429(response: LightMyRequestResponse, windowSeconds: number): void {
  assert.equal(response.statusCode, 429, response.body);
  const retryAfter = Number(response.headers['retry-after']);
  assert.ok(
    Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= windowSeconds,
    `Retry-After ${retryAfter}`,
  );
  const body = json(response);
  assert.equal(body.status.code, 429);
  assert.equal(body.status.user_message, 'Too many requests from this address. Try again later.');
  assert.match(body.status.verbose_message, /^TOO_MANY_REQUESTS: /);
  assert.deepEqual(body.result, { total_records: 0, records: [] });
}

/** A 429 in the Storware error body. */
function isStorware429(response: LightMyRequestResponse): void {
  assert.equal(response.statusCode, 429, response.body);
  assert.ok(Number(response.headers['retry-after']) >= 1, 'Retry-After is set');
  const body = json(response);
  assert.deepEqual(Object.keys(body).sort(), ['errorCode', 'message']);
  assert.equal(body.errorCode, 'TOO_MANY_REQUESTS');
}

forEachDialect('Rate limits per client address', (dialect) => {
  let ctx: TestContext;
  let apiToken: string;

  before(async () => {
    ctx = await createTestContext(dialect, {
      GATEHOUSE_RATE_LIMIT_SIGNIN: '4/min',
      GATEHOUSE_RATE_LIMIT_REFRESH: '2/min',
      GATEHOUSE_RATE_LIMIT_NODE_LOGIN: '3/30s',
      GATEHOUSE_RATE_LIMIT_TOKENS: '2/min',
    });
    await ctx.core.accounts.createUser({ username: 'rita', password: PASSWORD });
    await ctx.core.accounts.createNode({ login: 'node-1', password: 'agent-one-passphrase-1' });
    apiToken = (await ctx.core.accounts.createApiToken({ username: 'rita', name: 'ci' })).token;
  });
  after(() => ctx.close());

  const signin = (remoteAddress: string, password = PASSWORD) =>
    ctx.inject({
      method: 'POST',
      url: '/api/v2.1/auth/signin',
      payload: { username: 'rita', password },
      remoteAddress,
    });

  test('sign-in: past the limit 429 with Retry-After in the NSE envelope, even for the right password; other addresses go on', async () => {
    const address = '203.0.113.10';
    // Successes and failures count alike.
    assert.equal((await signin(address)).statusCode, 200);
    assert.equal((await signin(address, 'wrong-password-xx')).statusCode, 401);
    assert.equal((await signin(address)).statusCode, 200);
    assert.equal((await signin(address)).statusCode, 200);
    isNse429(await signin(address), 60);
    assert.equal((await signin('203.0.113.11')).statusCode, 200);
    ctx.clock.advance(30_000);
    const later = await signin(address);
    isNse429(later, 30);
    ctx.clock.advance(30_001);
    assert.equal((await signin(address)).statusCode, 200, 'a new window');
  });

  test('password change, Storware login and login-with-token share the sign-in budget of an address', async () => {
    const address = '203.0.113.20';
    const calls = [
      () =>
        ctx.inject({
          method: 'POST',
          url: '/api/v2.1/auth/password',
          payload: { username: 'rita', old_password: 'not-her-password', new_password: 'another-secret-22' },
          remoteAddress: address,
        }),
      () =>
        ctx.inject({
          method: 'POST',
          url: '/api/session/login',
          payload: { login: 'rita', password: PASSWORD },
          remoteAddress: address,
        }),
      () =>
        ctx.inject({
          method: 'POST',
          url: '/api/session/login-with-token',
          payload: { token: apiToken },
          remoteAddress: address,
        }),
      () => signin(address),
    ];
    const statuses = [];
    for (const call of calls) statuses.push((await call()).statusCode);
    assert.deepEqual(statuses, [401, 201, 201, 200]);
    isNse429((await calls[0]?.())!, 60);
    isStorware429((await calls[1]?.())!);
    isStorware429((await calls[2]?.())!);
  });

  test('refresh has its own limit, checked before the token', async () => {
    const address = '203.0.113.30';
    const token = json(await signin(address)).result.records[0].token as string;
    const refresh = (bearer: string) =>
      ctx.inject({
        method: 'POST',
        url: '/api/v2.1/auth/refresh',
        headers: { authorization: `Bearer ${bearer}` },
        remoteAddress: address,
      });
    assert.equal((await refresh(token)).statusCode, 200);
    assert.equal((await refresh('not-a-token')).statusCode, 401);
    isNse429(await refresh(token), 60);
  });

  test('API tokens made: their own limit, checked before the credentials', async () => {
    const address = '203.0.113.35';
    const token = json(await signin(address)).result.records[0].token as string;
    const make = (bearer: string) =>
      ctx.inject({
        method: 'POST',
        url: '/api/v2.1/tokens',
        headers: { authorization: `Bearer ${bearer}` },
        payload: { name: 'made in a loop' },
        remoteAddress: address,
      });
    assert.equal((await make(token)).statusCode, 201);
    assert.equal((await make('not-a-token')).statusCode, 401);
    isNse429(await make(token), 60);
    // The address's sign-in budget is its own.
    assert.equal((await signin(address)).statusCode, 200);
  });

  test('node login: its own limit, in the Storware error body', async () => {
    const address = '203.0.113.40';
    const nodeLogin = () =>
      ctx.inject({
        method: 'POST',
        url: '/api/session/node/login',
        payload: { login: 'node-1', password: 'agent-one-passphrase-1', version: '5.1.0' },
        remoteAddress: address,
      });
    for (let i = 0; i < 3; i++) assert.equal((await nodeLogin()).statusCode, 201);
    const refused = await nodeLogin();
    isStorware429(refused);
    assert.ok(Number(refused.headers['retry-after']) <= 30, 'within the 30 s window');
    // The user sign-in budget of the address is untouched by node logins.
    assert.equal((await signin(address)).statusCode, 200);
  });

  test('IPv6 clients are limited by their /64', async () => {
    const statuses = [];
    for (let i = 1; i <= 5; i++) statuses.push((await signin(`2001:db8:1:2::${i.toString(16)}`)).statusCode);
    assert.deepEqual(statuses, [200, 200, 200, 200, 429]);
    assert.equal((await signin('2001:db8:1:3::1')).statusCode, 200, 'another /64');
  });

  test('the limit holds across nodes: two apps over one database share the count', async () => {
    const other = await startAnotherNode(ctx);
    const otherApp = other.app;
    try {
      const address = '203.0.113.50';
      const on = (app: FastifyInstance) =>
        app.inject({
          method: 'POST',
          url: '/api/v2.1/auth/signin',
          payload: { username: 'rita', password: PASSWORD },
          remoteAddress: address,
        });
      const statuses = [
        (await on(ctx.app)).statusCode,
        (await on(otherApp)).statusCode,
        (await on(ctx.app)).statusCode,
        (await on(otherApp)).statusCode,
        (await on(ctx.app)).statusCode,
        (await on(otherApp)).statusCode,
      ];
      assert.deepEqual(statuses, [200, 200, 200, 200, 429, 429]);
    } finally {
      await other.close();
    }
  });
});

forEachDialect('Rate limits far from the limit: counted locally, reported within 100 ms', (dialect) => {
  let ctx: TestContext;
  before(async () => {
    ctx = await createTestContext(dialect, { GATEHOUSE_RATE_LIMIT_REFRESH: '64/min' });
  });
  after(() => ctx.close());

  // A refresh without a token is counted, then refused as unauthenticated: 401 until the limit.
  const refresh = (app: Pick<FastifyInstance, 'inject'>, remoteAddress: string) =>
    app.inject({ method: 'POST', url: '/api/v2.1/auth/refresh', remoteAddress });
  const shared = async (address: string) =>
    (await ctx.store.loginThrottle.read([{ scope: 'rate:refresh', subject: addressKey(address) }]))[0]
      ?.hits ?? 0;

  test('one process keeps the limit exactly, and its shared count catches up within 100 ms', async () => {
    const address = '198.51.100.7';
    const statuses: number[] = [];
    for (let i = 0; i < 10; i++) statuses.push((await refresh(ctx.app, address)).statusCode);
    assert.deepEqual(new Set(statuses), new Set([401]));
    const counted = await shared(address);
    assert.ok(counted < 10, `some of the 10 were admitted on the local share (shared count ${counted})`);
    await new Promise((resolve) => setTimeout(resolve, 250));
    assert.equal(await shared(address), 10, 'all 10 reported');
    for (let i = 10; i < 70; i++) statuses.push((await refresh(ctx.app, address)).statusCode);
    assert.equal(statuses.filter((status) => status === 401).length, 64, 'exactly the limit admitted');
    assert.deepEqual(new Set(statuses.slice(64)), new Set([429]));
  });

  test('addresses that each came once do not keep the table full: once their windows pass, a new address is counted on its share again', async () => {
    const limits = {
      signin: undefined,
      nodeLogin: undefined,
      tokens: undefined,
      refresh: { limit: 64, windowMs: 60_000 },
    };
    // The store's own counters, a table of 20 addresses instead of 10,000.
    const counters = { ...ctx.store.loginThrottle, close: async () => {} };
    const limiter = new RateLimiter(counters, ctx.clock, limits, 20);
    for (let i = 0; i < 20; i++) await limiter.take('refresh', `203.0.113.${i}`);
    ctx.clock.advance(61_000);
    const address = '198.51.100.9';
    await limiter.take('refresh', address);
    await limiter.take('refresh', address);
    // Before, the full table took no new address: both requests were written one by one.
    assert.equal(await shared(address), 1, 'the second request admitted on the local share');
    await limiter.flush();
    assert.equal(await shared(address), 2, 'and reported');
  });

  test('two processes over one store: the limit holds within 1/16 of it per other process', async () => {
    const other = await startAnotherNode(ctx);
    const otherApp = other.app;
    try {
      const address = '198.51.100.8';
      const statuses = await Promise.all(
        Array.from({ length: 100 }, (_, i) => refresh(i % 2 === 0 ? ctx.app : otherApp, address)),
      );
      const admitted = statuses.filter((response) => response.statusCode === 401).length;
      assert.ok(admitted >= 64 && admitted <= 64 + 4, `admitted ${admitted} of 100 with a limit of 64`);
      assert.equal(statuses.length - admitted, statuses.filter((r) => r.statusCode === 429).length);
    } finally {
      await other.close();
    }
  });
});

describe('Rate-limit and lockout settings', () => {
  test('rates read as requests per period; off turns a limit off', () => {
    assert.deepEqual(parseRate('20/min'), { limit: 20, windowMs: 60_000 });
    assert.deepEqual(parseRate('100 / 15m'), { limit: 100, windowMs: 900_000 });
    assert.deepEqual(parseRate('5/s'), { limit: 5, windowMs: 1000 });
    assert.equal(parseRate('off'), null);
    for (const bad of ['20', 'twenty/min', '0/min', '20/fortnight', '20/10ms']) {
      assert.equal(parseRate(bad), undefined, bad);
    }
    const config = loadConfig({ GATEHOUSE_RATE_LIMIT_REFRESH: 'off' });
    assert.deepEqual(config.rateLimits, {
      signin: { limit: 30, windowMs: 60_000 },
      refresh: undefined,
      nodeLogin: { limit: 60, windowMs: 60_000 },
      tokens: { limit: 30, windowMs: 60_000 },
    });
    assert.equal(config.lockoutAccountThreshold, 20);
    assert.equal(config.lockoutIpThreshold, 100);
  });

  test('an account threshold below twice the pair threshold, and bad rates, stop start-up with one message', () => {
    assert.throws(
      () =>
        loadConfig({
          GATEHOUSE_LOCKOUT_THRESHOLD: '5',
          GATEHOUSE_LOCKOUT_ACCOUNT_THRESHOLD: '9',
          GATEHOUSE_RATE_LIMIT_SIGNIN: 'lots',
          GATEHOUSE_REDIS_URL: 'http://cache:6379',
        }),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError, 'a ConfigError');
        const text = error.problems.join('\n');
        assert.match(text, /GATEHOUSE_LOCKOUT_ACCOUNT_THRESHOLD: must be at least twice/);
        assert.match(text, /GATEHOUSE_RATE_LIMIT_SIGNIN: expected requests per period/);
        assert.match(text, /GATEHOUSE_REDIS_URL: expected a redis:\/\//);
        return true;
      },
    );
  });
});

forEachDialect('GATEHOUSE_TRUST_PROXY: the client address behind a proxy', (dialect) => {
  const failedSignInFrom = async (
    ctx: TestContext,
    remoteAddress: string,
    forwardedFor: string,
  ): Promise<string | undefined> => {
    const response = await ctx.inject({
      method: 'POST',
      url: '/api/v2.1/auth/signin',
      remoteAddress,
      headers: { 'x-forwarded-for': forwardedFor },
      payload: { username: 'admin', password: 'Not-the-password-1' },
    });
    assert.equal(response.statusCode, 401, response.body);
    const events = await ctx.store.db
      .selectFrom('audit_events')
      .select(['ip', 'id'])
      .where('action', '=', 'signin')
      .orderBy('id', 'desc')
      .limit(1)
      .execute();
    return events[0]?.ip;
  };

  test('true trusts the one proxy in front: an address the client writes at the left of X-Forwarded-For is not believed', async () => {
    const ctx = await createTestContext(dialect, {
      GATEHOUSE_TRUST_PROXY: 'true',
      GATEHOUSE_RATE_LIMIT_SIGNIN: '3/min',
      GATEHOUSE_LOGIN_DELAY: '0',
    });
    try {
      // The proxy appends the address it saw; whatever the client sent stays at the left.
      assert.equal(await failedSignInFrom(ctx, '127.0.0.1', '198.51.100.200, 203.0.113.7'), '203.0.113.7');
      for (let i = 0; i < 2; i++) await failedSignInFrom(ctx, '127.0.0.1', `198.51.100.${i}, 203.0.113.7`);
      const limited = await ctx.inject({
        method: 'POST',
        url: '/api/v2.1/auth/signin',
        remoteAddress: '127.0.0.1',
        headers: { 'x-forwarded-for': '198.51.100.99, 203.0.113.7' },
        payload: { username: 'admin', password: 'Not-the-password-1' },
      });
      isNse429(limited, 60);
    } finally {
      await ctx.close();
    }
  });

  test('a list of proxy addresses and ranges: believed only from them, and only as far as the first address not in it', async () => {
    const ctx = await createTestContext(dialect, { GATEHOUSE_TRUST_PROXY: '10.0.0.0/8, 192.0.2.1' });
    try {
      assert.equal(
        await failedSignInFrom(ctx, '10.1.2.3', '203.0.113.9, 198.51.100.4, 192.0.2.1'),
        '198.51.100.4',
      );
      assert.equal(await failedSignInFrom(ctx, '198.51.100.77', '203.0.113.9'), '198.51.100.77');
    } finally {
      await ctx.close();
    }
  });

  test('false (the default) believes no header', async () => {
    const ctx = await createTestContext(dialect);
    try {
      assert.equal(await failedSignInFrom(ctx, '198.51.100.78', '203.0.113.9'), '198.51.100.78');
    } finally {
      await ctx.close();
    }
  });
});

test('GATEHOUSE_TRUST_PROXY takes false, true, a hop count or addresses and ranges; anything else stops start-up naming it', () => {
  assert.equal(loadConfig({}).trustProxy, false);
  assert.equal(loadConfig({ GATEHOUSE_TRUST_PROXY: 'true' }).trustProxy, 1);
  assert.equal(loadConfig({ GATEHOUSE_TRUST_PROXY: '2' }).trustProxy, 2);
  assert.deepEqual(loadConfig({ GATEHOUSE_TRUST_PROXY: 'loopback, 10.0.0.0/8,2001:db8::/32' }).trustProxy, [
    'loopback',
    '10.0.0.0/8',
    '2001:db8::/32',
  ]);
  for (const bad of ['yes', '0', '11', '10.0.0.0/33', 'proxy.example', '10.0.0.1/8/2']) {
    assert.throws(
      () => loadConfig({ GATEHOUSE_TRUST_PROXY: bad }),
      (e: Error) => e instanceof ConfigError && /GATEHOUSE_TRUST_PROXY/.test(e.message),
      bad,
    );
  }
});
