import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { InjectOptions, LightMyRequestResponse } from 'fastify';
import { ConfigError, loadConfig } from '../../src/config.js';
import { ADMIN_PASSWORD, createTestContext, type TestContext } from '../helpers/context.js';
import { forEachDialect } from '../helpers/dialects.js';
import { basic, bearer, json, nseSignIn } from '../helpers/http.js';

const COOKIE = 'gatehouse_session';
const SECURE_COOKIE = '__Host-gatehouse_session';
const HOST = 'gatehouse.example';
const FOREIGN = 'https://evil.example';
const ALICE = { username: 'alice', password: 'rabbit-hole-wonder-1' };

/** The headers every answer carries, whatever the surface and status. */
function assertSecurityHeaders(response: LightMyRequestResponse, what: string): void {
  const h = response.headers;
  assert.equal(h['x-content-type-options'], 'nosniff', `${what}: X-Content-Type-Options`);
  assert.equal(h['x-frame-options'], 'DENY', `${what}: X-Frame-Options`);
  assert.equal(h['referrer-policy'], 'no-referrer', `${what}: Referrer-Policy`);
  assert.equal(h['cross-origin-resource-policy'], 'same-origin', `${what}: Cross-Origin-Resource-Policy`);
  assert.equal(
    h['content-security-policy'],
    "default-src 'none'; frame-ancestors 'none'",
    `${what}: Content-Security-Policy`,
  );
  assert.ok(h['cache-control'], `${what}: Cache-Control is set`);
}

const storwareError = (response: LightMyRequestResponse, status: number, code: string) => {
  assert.equal(response.statusCode, status, response.body);
  assert.deepEqual(Object.keys(json(response)).sort(), ['errorCode', 'message']);
  assert.equal(json(response).errorCode, code);
};
const nseError = (response: LightMyRequestResponse, status: number, code: string) => {
  assert.equal(response.statusCode, status, response.body);
  const body = json(response);
  assert.equal(body.status.code, status);
  assert.match(body.status.verbose_message, new RegExp(`^${code}`));
  assert.deepEqual(body.result, { total_records: 0, records: [] });
};

forEachDialect('Session cookie and cross-site requests', (dialect) => {
  let ctx: TestContext;

  before(async () => {
    ctx = await createTestContext(dialect);
    await ctx.core.accounts.createUser(ALICE);
  });
  after(() => ctx.close());

  /** A request as a browser at https://gatehouse.example would send it. */
  const browser = (options: InjectOptions & { headers?: Record<string, string> }) =>
    ctx.inject({ ...options, headers: { host: HOST, ...options.headers } });
  const login = async (headers: Record<string, string> = {}) => {
    const response = await browser({
      method: 'POST',
      url: '/api/session/login',
      headers,
      payload: { login: 'alice', password: ALICE.password },
    });
    return { response, cookie: response.cookies.find((c) => c.name === COOKIE) };
  };
  const logout = (cookie: string, headers: Record<string, string> = {}) =>
    browser({ method: 'POST', url: '/api/session/logout', headers, cookies: { [COOKIE]: cookie } });
  const alive = async (cookie: string) =>
    (await browser({ method: 'GET', url: '/api/session', cookies: { [COOKIE]: cookie } })).statusCode === 204;
  const aliceRow = async () => {
    const row = await ctx.store.users.findByUsernameKey('alice');
    assert.ok(row, 'alice exists');
    return row;
  };

  test('login sets the session cookie HttpOnly, SameSite=Strict, Path=/api, not Secure over HTTP', async () => {
    const { response, cookie } = await login();
    assert.equal(response.statusCode, 201);
    assert.ok(cookie, 'a session cookie is set');
    assert.equal(cookie.httpOnly, true);
    assert.equal(cookie.sameSite, 'Strict');
    assert.equal(cookie.path, '/api');
    assert.equal(cookie.secure, undefined, 'plain HTTP with GATEHOUSE_COOKIE_SECURE=auto: no Secure flag');
    assert.equal(cookie.maxAge, undefined, 'a browser-session cookie: gone when the browser closes');
    assert.equal(cookie.expires, undefined, 'a browser-session cookie: gone when the browser closes');
    const out = await logout(cookie.value);
    assert.equal(out.statusCode, 201);
    const cleared = out.cookies.find((c) => c.name === COOKIE);
    assert.ok(cleared, 'logout clears the cookie');
    assert.equal(cleared.value, '');
    assert.equal(cleared.path, '/api', 'cleared with the attributes it was set with');
    assert.equal(cleared.httpOnly, true);
    assert.ok(cleared.expires && cleared.expires.getTime() <= Date.now(), 'the cleared cookie is expired');
  });

  test('a logout from a page of another site (Origin) is refused and the session lives on', async () => {
    const { cookie } = await login();
    assert.ok(cookie, 'logged in');
    const forged = await logout(cookie.value, { origin: FOREIGN, 'content-type': 'text/plain' });
    storwareError(forged, 403, 'CROSS_SITE_REQUEST');
    assert.match(json(forged).message, /Origin https:\/\/evil\.example/);
    assert.equal(await alive(cookie.value), true, 'the refused logout ended nothing');
    const nullOrigin = await logout(cookie.value, { origin: 'null' });
    storwareError(nullOrigin, 403, 'CROSS_SITE_REQUEST');
    const refresh = await browser({
      method: 'POST',
      url: '/api/session/refresh-endpoints-tokens',
      headers: { origin: FOREIGN },
      cookies: { [COOKIE]: cookie.value },
    });
    storwareError(refresh, 403, 'CROSS_SITE_REQUEST');
    assert.equal(await alive(cookie.value), true, 'still alive');

    // The same request from the service's own origin goes through.
    const own = await logout(cookie.value, { origin: `https://${HOST}` });
    assert.equal(own.statusCode, 201);
    assert.equal(await alive(cookie.value), false, 'the same-origin logout ended the session');
  });

  test('Sec-Fetch-Site: cross-site and same-site are refused, same-origin and none are not', async () => {
    const { cookie } = await login();
    assert.ok(cookie, 'logged in');
    for (const site of ['cross-site', 'same-site', 'CROSS-SITE']) {
      storwareError(await logout(cookie.value, { 'sec-fetch-site': site }), 403, 'CROSS_SITE_REQUEST');
    }
    // A sibling subdomain is same-site: SameSite=Strict cookies reach it, the Origin check must not
    // let it through even though the browser calls it "same-site".
    storwareError(
      await logout(cookie.value, { 'sec-fetch-site': 'same-site', origin: `https://sub.${HOST}` }),
      403,
      'CROSS_SITE_REQUEST',
    );
    assert.equal(await alive(cookie.value), true, 'nothing ended');
    // Fetch metadata wins over the Host comparison: behind a proxy that rewrites Host the browser
    // still knows the request is same-origin.
    const sameOrigin = await logout(cookie.value, {
      'sec-fetch-site': 'same-origin',
      origin: `https://${HOST}`,
      host: '10.0.0.7:8080',
    });
    assert.equal(sameOrigin.statusCode, 201);
    assert.equal(await alive(cookie.value), false);

    const second = await login({ 'sec-fetch-site': 'none' });
    assert.equal(second.response.statusCode, 201, 'a login the user started (none) works');
  });

  test('a request with neither Origin nor Sec-Fetch-Site (a script, curl, an agent) goes through', async () => {
    const { cookie } = await login();
    assert.ok(cookie, 'logged in');
    assert.equal((await logout(cookie.value)).statusCode, 201);
    assert.equal(await alive(cookie.value), false);
  });

  test('a login posted from another site is refused before the password is checked', async () => {
    const before = await aliceRow();
    const sessions = await ctx.store.db
      .selectFrom('sessions')
      .select((eb) => eb.fn.countAll<string | number>().as('n'))
      .executeTakeFirstOrThrow();
    const forged: Array<Record<string, string>> = [{ origin: FOREIGN }, { 'sec-fetch-site': 'cross-site' }];
    for (const headers of forged) {
      const good = await login(headers);
      storwareError(good.response, 403, 'CROSS_SITE_REQUEST');
      assert.equal(good.cookie, undefined, 'no cookie is planted');
      const wrong = await browser({
        method: 'POST',
        url: '/api/session/login',
        headers,
        payload: { login: 'alice', password: 'not-her-password-at-all' },
      });
      storwareError(wrong, 403, 'CROSS_SITE_REQUEST');
    }
    const after = await aliceRow();
    assert.equal(after.failed_count, before.failed_count, 'a forged wrong password is not a failed sign-in');
    const sessionsAfter = await ctx.store.db
      .selectFrom('sessions')
      .select((eb) => eb.fn.countAll<string | number>().as('n'))
      .executeTakeFirstOrThrow();
    assert.equal(Number(sessionsAfter.n), Number(sessions.n), 'no session was opened');
  });

  test('a bearer token is not ambient: with a foreign Origin it still works, on both surfaces', async () => {
    const token = await nseSignIn(ctx, 'alice', ALICE.password);
    const cross = { origin: FOREIGN, 'sec-fetch-site': 'cross-site' };
    const refreshed = await browser({
      method: 'POST',
      url: '/api/session/refresh-endpoints-tokens',
      headers: { ...cross, ...bearer(token) },
    });
    assert.equal(refreshed.statusCode, 201, refreshed.body);
    const nse = await browser({
      method: 'POST',
      url: '/api/v2.1/auth/refresh',
      headers: { ...cross, ...bearer(token) },
    });
    assert.equal(nse.statusCode, 200, nse.body);
    const next = json(nse).result.records[0].token as string;
    const out = await browser({
      method: 'POST',
      url: '/api/session/logout',
      headers: { ...cross, ...bearer(next) },
    });
    assert.equal(out.statusCode, 201, out.body);
  });

  test('NSE: a cross-site sign-in or HTTP Basic change is refused in the NSE envelope, counting no failure', async () => {
    const before = await aliceRow();
    const signin = await browser({
      method: 'POST',
      url: '/api/v2.1/auth/signin',
      headers: { origin: FOREIGN },
      payload: ALICE,
    });
    nseError(signin, 403, 'CROSS_SITE_REQUEST');
    // Browsers replay cached Basic credentials to any page's request: Basic is ambient too.
    const basicChange = await browser({
      method: 'DELETE',
      url: '/api/v2.1/sessions',
      headers: { 'sec-fetch-site': 'cross-site', ...basic('alice', 'a-wrong-password-1') },
    });
    nseError(basicChange, 403, 'CROSS_SITE_REQUEST');
    assert.equal((await aliceRow()).failed_count, before.failed_count, 'Basic was never checked');
    // Reads are not changes: a cross-site GET is answered as usual (the browser hides the answer).
    const read = await browser({
      method: 'GET',
      url: '/api/v2.1/auth/regions',
      headers: { origin: FOREIGN, ...basic('alice', ALICE.password) },
    });
    assert.equal(read.statusCode, 200);
  });

  test('a login never adopts the cookie it is sent (no fixation); every session secret is new, 256 random bits', async () => {
    const first = await login();
    assert.ok(first.cookie, 'logged in');
    const planted = await login({ cookie: `${COOKIE}=${first.cookie.value}` });
    assert.ok(planted.cookie, 'logged in again');
    assert.notEqual(planted.cookie.value, first.cookie.value, 'a new secret, not the one sent');
    const unknown = await login({ cookie: `${COOKIE}=gss_${'A'.repeat(43)}` });
    assert.ok(unknown.cookie, 'logged in with a made-up cookie present');
    assert.notEqual(unknown.cookie.value, `gss_${'A'.repeat(43)}`, 'a chosen secret is never adopted');
    for (const cookie of [first.cookie, planted.cookie, unknown.cookie]) {
      assert.match(cookie.value, /^gss_[A-Za-z0-9_-]{43}$/, '32 random bytes, base64url');
    }
    assert.equal(new Set([first, planted, unknown].map((l) => l.cookie?.value)).size, 3);
    // Both earlier sessions are separate and alive: logging in again ended nothing by accident.
    assert.equal(await alive(first.cookie.value), true);
  });

  test('a session secret or token in the URL is never a credential', async () => {
    const token = await nseSignIn(ctx, 'alice', ALICE.password);
    const { cookie } = await login();
    assert.ok(cookie, 'logged in');
    for (const url of [
      `/api/session?${COOKIE}=${cookie.value}`,
      `/api/session/user?token=${cookie.value}`,
      `/api/session/user?access_token=${token}`,
      `/api/v2.1/jobs?token=${token}`,
      `/api/v2.1/jobs?access_token=${token}`,
      `/api/v2.1/jobs?authorization=Bearer%20${token}`,
    ]) {
      const response = await ctx.inject({ method: 'GET', url });
      assert.equal(response.statusCode, 401, url.replace(/=.*/, '=…'));
      assert.ok(!response.body.includes(token) && !response.body.includes(cookie.value), 'not echoed');
    }
  });

  test('no directory listing, and no repository, package or data file is served', async () => {
    for (const url of [
      '/',
      '/.git/config',
      '/.env',
      '/package.json',
      '/src/app.ts',
      '/data/gatehouse.db',
      '/docs/static/',
      '/docs/static/../../package.json',
      '/docs/static/..%2f..%2fpackage.json',
      '/docs/static/%2e%2e/%2e%2e/package.json',
    ]) {
      const response = await ctx.inject({ method: 'GET', url });
      assert.equal(response.statusCode, 404, `${url}: ${response.body.slice(0, 120)}`);
      assert.match(json(response).status.verbose_message, /^ROUTE_NOT_FOUND/, url);
    }
  });

  test('security headers on every answer: 200, 404, 401, 400, 403, 405 and 413 of each surface', async () => {
    const token = await nseSignIn(ctx);
    const cases: Array<[string, InjectOptions, number]> = [
      ['NSE 200', { method: 'GET', url: '/api/v2.1/auth/regions', headers: bearer(token) }, 200],
      ['NSE 404', { method: 'GET', url: '/api/v2.1/no-such-thing', headers: bearer(token) }, 404],
      ['NSE 401', { method: 'GET', url: '/api/v2.1/jobs' }, 401],
      [
        'NSE 400',
        {
          method: 'POST',
          url: '/api/v2.1/auth/signin',
          payload: '{"username":',
          headers: { 'content-type': 'application/json' },
        },
        400,
      ],
      [
        'NSE 403',
        { method: 'POST', url: '/api/v2.1/auth/signin', payload: ALICE, headers: { origin: FOREIGN } },
        403,
      ],
      ['NSE 405', { method: 'DELETE', url: '/api/v2.1/auth/signin' }, 405],
      [
        'NSE 413',
        {
          method: 'POST',
          url: '/api/v2.1/auth/signin',
          payload: { username: 'x', password: 'y'.repeat(70_000) },
        },
        413,
      ],
      ['Storware 200', { method: 'GET', url: '/api/session/user', headers: bearer(token) }, 200],
      ['Storware 204', { method: 'GET', url: '/api/session', headers: bearer(token) }, 204],
      ['Storware 404', { method: 'GET', url: '/api/session/no-such-thing' }, 404],
      ['Storware 401', { method: 'GET', url: '/api/session/user' }, 401],
      ['Storware 400', { method: 'POST', url: '/api/session/login', payload: { login: 'alice' } }, 400],
      [
        'Storware 403',
        { method: 'POST', url: '/api/session/logout', headers: { 'sec-fetch-site': 'cross-site' } },
        403,
      ],
      ['ops 200', { method: 'GET', url: '/healthz' }, 200],
      ['ops 200 (JWKS)', { method: 'GET', url: '/.well-known/jwks.json' }, 200],
      ['ops 405', { method: 'POST', url: '/readyz' }, 405],
      ['elsewhere 404', { method: 'GET', url: '/nowhere' }, 404],
    ];
    for (const [what, options, status] of cases) {
      const response = await ctx.inject(options);
      assert.equal(response.statusCode, status, `${what}: ${response.body.slice(0, 200)}`);
      assertSecurityHeaders(response, what);
      assert.equal(response.headers['strict-transport-security'], undefined, `${what}: no HSTS over HTTP`);
    }
    const authenticated = await ctx.inject({
      method: 'GET',
      url: '/api/session/user',
      headers: bearer(token),
    });
    assert.equal(authenticated.headers['cache-control'], 'no-store', 'personal data is never cached');
    const docs = await ctx.inject({ method: 'GET', url: '/docs/' });
    assert.equal(docs.headers['x-content-type-options'], 'nosniff', '/docs too');
    assert.equal(docs.headers['x-frame-options'], 'DENY', '/docs is never framed');
  });
});

forEachDialect('Session cookie behind a proxy that ends TLS', (dialect) => {
  const contexts: TestContext[] = [];
  const open = async (settings: Record<string, string>) => {
    const ctx = await createTestContext(dialect, settings);
    contexts.push(ctx);
    return ctx;
  };
  after(async () => {
    for (const ctx of contexts) await ctx.close();
  });
  const loginCookie = async (ctx: TestContext, headers: Record<string, string>) => {
    const response = await ctx.inject({
      method: 'POST',
      url: '/api/session/login',
      headers,
      payload: { login: 'admin', password: ADMIN_PASSWORD },
    });
    assert.equal(response.statusCode, 201, response.body);
    const cookie = response.cookies.find((c) => c.name === COOKIE || c.name === SECURE_COOKIE);
    assert.ok(cookie, 'a session cookie is set');
    return { response, cookie };
  };

  test('auto: a Secure __Host- cookie and HSTS when a trusted proxy reports HTTPS, neither over plain HTTP', async () => {
    const ctx = await open({ GATEHOUSE_TRUST_PROXY: 'true' });
    const https = await loginCookie(ctx, { 'x-forwarded-proto': 'https' });
    assert.equal(https.cookie.name, SECURE_COOKIE, 'kept to this host by the __Host- prefix');
    assert.equal(https.cookie.secure, true);
    assert.equal(https.cookie.path, '/', 'a __Host- cookie must have Path=/');
    assert.equal(https.cookie.domain, undefined, 'a __Host- cookie has no Domain');
    assert.equal(https.cookie.httpOnly, true);
    assert.equal(https.cookie.sameSite, 'Strict');
    assert.equal(https.response.headers['strict-transport-security'], 'max-age=31536000');
    const user = await ctx.inject({
      method: 'GET',
      url: '/api/session/user',
      headers: { 'x-forwarded-proto': 'https' },
      cookies: { [SECURE_COOKIE]: https.cookie.value },
    });
    assert.equal(user.statusCode, 200, 'the __Host- cookie authenticates');
    const out = await ctx.inject({
      method: 'POST',
      url: '/api/session/logout',
      headers: { 'x-forwarded-proto': 'https' },
      cookies: { [SECURE_COOKIE]: https.cookie.value },
    });
    assert.equal(out.statusCode, 201);
    const cleared = out.cookies.find((c) => c.name === SECURE_COOKIE);
    assert.equal(cleared?.value, '', 'cleared');
    assert.equal(cleared?.secure, true, 'cleared as it was set');
    assert.equal(cleared?.path, '/', 'cleared as it was set');
    const http = await loginCookie(ctx, {});
    assert.equal(http.cookie.name, COOKIE);
    assert.equal(http.cookie.secure, undefined);
    assert.equal(http.response.headers['strict-transport-security'], undefined);
    // Over HTTPS only the __Host- name is taken: a cookie without the prefix may have been planted
    // by a sibling host or over plain HTTP, to sign the victim into the planter's session.
    const planted = await ctx.inject({
      method: 'GET',
      url: '/api/session/user',
      headers: { 'x-forwarded-proto': 'https' },
      cookies: { [COOKIE]: http.cookie.value },
    });
    assert.equal(planted.statusCode, 401, 'a cookie without the prefix is not taken over HTTPS');
    const again = await loginCookie(ctx, { 'x-forwarded-proto': 'https' });
    // The proxy also reports the public host: a same-origin page behind it is recognised.
    const sameOrigin = await ctx.inject({
      method: 'POST',
      url: '/api/session/logout',
      headers: {
        host: '10.0.0.7:8080',
        'x-forwarded-host': HOST,
        'x-forwarded-proto': 'https',
        origin: `https://${HOST}`,
      },
      cookies: { [SECURE_COOKIE]: again.cookie.value },
    });
    assert.equal(sameOrigin.statusCode, 201, sameOrigin.body);
  });

  test('true: always Secure (a proxy that does not say it ended TLS); false: never', async () => {
    const always = await open({ GATEHOUSE_COOKIE_SECURE: 'true' });
    const secure = (await loginCookie(always, {})).cookie;
    assert.equal(secure.secure, true);
    assert.equal(secure.name, SECURE_COOKIE);
    const never = await open({ GATEHOUSE_COOKIE_SECURE: 'false', GATEHOUSE_TRUST_PROXY: 'true' });
    const plain = (await loginCookie(never, { 'x-forwarded-proto': 'https' })).cookie;
    assert.equal(plain.secure, undefined);
    assert.equal(plain.name, COOKIE);
    assert.equal(plain.path, '/api');
  });

  test('GATEHOUSE_ALLOWED_ORIGINS lets a listed console on another origin change state, no other', async () => {
    const ctx = await open({
      GATEHOUSE_ALLOWED_ORIGINS: 'https://console.example.com, https://ops.example.com:8443',
    });
    const { cookie } = await loginCookie(ctx, {
      origin: 'https://console.example.com',
      'sec-fetch-site': 'same-site',
    });
    const other = await ctx.inject({
      method: 'POST',
      url: '/api/session/logout',
      headers: { origin: 'https://console.example.com.evil.example', 'sec-fetch-site': 'cross-site' },
      cookies: { [COOKIE]: cookie.value },
    });
    storwareError(other, 403, 'CROSS_SITE_REQUEST');
    const listed = await ctx.inject({
      method: 'POST',
      url: '/api/session/logout',
      headers: { origin: 'https://ops.example.com:8443', 'sec-fetch-site': 'cross-site' },
      cookies: { [COOKIE]: cookie.value },
    });
    assert.equal(listed.statusCode, 201, listed.body);
  });
});

describe('Cookie and origin settings', () => {
  test('GATEHOUSE_COOKIE_SECURE and GATEHOUSE_ALLOWED_ORIGINS are validated and normalised', () => {
    const base = { GATEHOUSE_DATA_DIR: '/tmp/unused' };
    assert.equal(loadConfig(base).cookieSecure, 'auto');
    assert.deepEqual(loadConfig(base).allowedOrigins, []);
    assert.equal(loadConfig({ ...base, GATEHOUSE_COOKIE_SECURE: 'true' }).cookieSecure, true);
    assert.equal(loadConfig({ ...base, GATEHOUSE_COOKIE_SECURE: 'false' }).cookieSecure, false);
    assert.deepEqual(
      loadConfig({
        ...base,
        GATEHOUSE_ALLOWED_ORIGINS: 'https://Console.Example.com:443/, http://a.example:8080',
      }).allowedOrigins,
      ['https://console.example.com', 'http://a.example:8080'],
    );
    assert.throws(
      () =>
        loadConfig({
          ...base,
          GATEHOUSE_COOKIE_SECURE: 'yes',
          GATEHOUSE_ALLOWED_ORIGINS:
            'https://ok.example, console.example.com, https://x.example/path, ftp://f.example',
        }),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError, 'a ConfigError');
        const text = error.problems.join('\n');
        assert.match(text, /GATEHOUSE_COOKIE_SECURE: expected one of auto, true, false, got "yes"/);
        assert.match(text, /"console\.example\.com"/);
        assert.match(text, /"https:\/\/x\.example\/path"/);
        assert.match(text, /"ftp:\/\/f\.example"/);
        assert.doesNotMatch(text, /ok\.example/);
        return true;
      },
    );
  });
});
