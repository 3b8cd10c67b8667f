import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { ADMIN_PASSWORD, createTestContext, type TestContext } from '../helpers/context.js';
import { forEachDialect } from '../helpers/dialects.js';
import { bearer, json, nseRefresh, nseSignIn, storwareLogin } from '../helpers/http.js';

const COOKIE = 'gatehouse_session';
const MINUTE = 60_000;

function assertUnauthorized(response: LightMyRequestResponse): void {
  assert.equal(response.statusCode, 401, response.body);
}

/** The Storware error body on the session routes. */
function assertStorware401(response: LightMyRequestResponse): void {
  assertUnauthorized(response);
  assert.deepEqual(Object.keys(json(response)).sort(), ['errorCode', 'message']);
}

forEachDialect('Storware session: logout and timeouts', (dialect) => {
  let ctx: TestContext;
  const withCookie = (method: 'GET' | 'POST', url: string, cookie: string) =>
    ctx.inject({ method, url, cookies: { [COOKIE]: cookie } });
  const withBearer = (method: 'GET' | 'POST', url: string, token: string) =>
    ctx.inject({ method, url, headers: bearer(token) });
  /** An NSE JWT for the session behind a Storware cookie (NSE refresh accepts the session secret as bearer). */
  const nseTokenOf = async (cookie: string) => {
    const response = await withBearer('POST', '/api/v2.1/auth/refresh', cookie);
    assert.equal(response.statusCode, 200, response.body);
    return json(response).result.records[0].token as string;
  };

  before(async () => {
    ctx = await createTestContext(dialect, {
      GATEHOUSE_SESSION_IDLE_TIMEOUT: '10m',
      GATEHOUSE_SESSION_MAX_LIFETIME: '1h',
      GATEHOUSE_TOKEN_LIFETIME: '2h',
    });
  });
  after(() => ctx.close());

  test('logout: 201 with no body, clears the cookie; the cookie and the NSE token of that session are refused', async () => {
    const cookie = await storwareLogin(ctx);
    const nseToken = await nseTokenOf(cookie);
    assert.equal((await withBearer('GET', '/api/v2.1/jobs', nseToken)).statusCode, 200);

    const response = await withCookie('POST', '/api/session/logout', cookie);
    assert.equal(response.statusCode, 201, response.body);
    assert.equal(response.body, '');
    const cleared = response.cookies.find((c) => c.name === COOKIE);
    assert.ok(cleared, 'the cookie is cleared');
    assert.equal(cleared.value, '');
    assert.ok(
      (cleared.expires !== undefined && cleared.expires.getTime() <= Date.now()) || cleared.maxAge === 0,
      'the cleared cookie expires at once',
    );

    assertStorware401(await withCookie('GET', '/api/session', cookie));
    assertStorware401(await withCookie('GET', '/api/session/user', cookie));
    assertStorware401(await withCookie('POST', '/api/session/logout', cookie));
    const nse = await withBearer('GET', '/api/v2.1/jobs', nseToken);
    assertUnauthorized(nse);
    assert.equal(json(nse).status.code, 401);
  });

  test('an NSE signin token used as Bearer on /api/session/logout ends that session for NSE too', async () => {
    const token = await nseSignIn(ctx);
    assert.equal((await withBearer('GET', '/api/session', token)).statusCode, 204);
    assert.equal(json(await withBearer('GET', '/api/session/user', token)).requester.name, 'admin');

    const response = await withBearer('POST', '/api/session/logout', token);
    assert.equal(response.statusCode, 201, response.body);

    assertUnauthorized(await withBearer('GET', '/api/v2.1/jobs', token));
    assertUnauthorized(await withBearer('POST', '/api/v2.1/auth/refresh', token));
    assertStorware401(await withBearer('GET', '/api/session', token));
  });

  test('logout ends only its own session', async () => {
    const first = await storwareLogin(ctx);
    const second = await storwareLogin(ctx);
    const nse = await nseSignIn(ctx);
    assert.equal((await withCookie('POST', '/api/session/logout', first)).statusCode, 201);
    assertStorware401(await withCookie('GET', '/api/session', first));
    assert.equal((await withCookie('GET', '/api/session', second)).statusCode, 204);
    assert.equal((await withBearer('GET', '/api/v2.1/jobs', nse)).statusCode, 200);
  });

  test("a logout by bearer token with a cookie of another session ends the bearer's session and leaves that cookie alone", async () => {
    const cookie = await storwareLogin(ctx);
    const token = await nseSignIn(ctx);
    const response = await ctx.inject({
      method: 'POST',
      url: '/api/session/logout',
      headers: bearer(token),
      cookies: { [COOKIE]: cookie },
    });
    assert.equal(response.statusCode, 201, response.body);
    assert.equal(
      response.cookies.find((c) => c.name === COOKIE),
      undefined,
      'the cookie of the session still live is not cleared',
    );
    assertUnauthorized(await withBearer('GET', '/api/v2.1/jobs', token));
    assert.equal((await withCookie('GET', '/api/session', cookie)).statusCode, 204);
    // The cookie's own secret as the bearer: its session ends, and so the cookie goes too.
    const same = await ctx.inject({
      method: 'POST',
      url: '/api/session/logout',
      headers: bearer(cookie),
      cookies: { [COOKIE]: cookie },
    });
    assert.equal(same.cookies.find((c) => c.name === COOKIE)?.value, '');
    // The JWT of the cookie's own session (from a refresh with the cookie) as the bearer: the
    // session ends, so its cookie goes too (before, only the very same string cleared it).
    const login = await storwareLogin(ctx);
    const jwt = await nseRefresh(ctx, login);
    const byJwt = await ctx.inject({
      method: 'POST',
      url: '/api/session/logout',
      headers: bearer(jwt),
      cookies: { [COOKIE]: login },
    });
    assert.equal(byJwt.statusCode, 201, byJwt.body);
    assert.equal(byJwt.cookies.find((c) => c.name === COOKIE)?.value, '', 'the dead cookie is cleared');
    assertStorware401(await withCookie('GET', '/api/session', login));
  });

  test('a password change on NSE ends the Storware cookie sessions of that user', async () => {
    await ctx.core.accounts.createUser({ username: 'pat', password: 'first-secret-phrase-1' });
    const cookie = await storwareLogin(ctx, 'pat', 'first-secret-phrase-1');
    const changed = await ctx.inject({
      method: 'POST',
      url: '/api/v2.1/auth/password',
      payload: {
        username: 'pat',
        old_password: 'first-secret-phrase-1',
        new_password: 'second-secret-phrase-2',
      },
    });
    assert.equal(changed.statusCode, 200, changed.body);
    assertStorware401(await withCookie('GET', '/api/session', cookie));
    assert.ok(await storwareLogin(ctx, 'pat', 'second-secret-phrase-2'));
  });

  test('idle timeout: no activity for GATEHOUSE_SESSION_IDLE_TIMEOUT ends the session on both surfaces', async () => {
    const cookie = await storwareLogin(ctx);
    const nseToken = await nseTokenOf(cookie);
    ctx.clock.advance(10 * MINUTE - 1000);
    ctx.clock.advance(1001);
    assertStorware401(await withCookie('GET', '/api/session', cookie));
    assertStorware401(await withCookie('GET', '/api/session/user', cookie));
    assertUnauthorized(await withBearer('GET', '/api/v2.1/jobs', nseToken));
  });

  test('idle timeout slides: activity within the window keeps the session alive', async () => {
    const cookie = await storwareLogin(ctx);
    // 9 minutes of silence, then activity, four times over: 36 minutes, far past one idle window.
    for (let i = 0; i < 4; i++) {
      ctx.clock.advance(9 * MINUTE);
      assert.equal((await withCookie('GET', '/api/session', cookie)).statusCode, 204, `round ${i}`);
    }
    // Activity on the NSE surface counts for the same session (a token lives no longer than the
    // idle timeout, so it is taken now).
    const nseToken = await nseTokenOf(cookie);
    ctx.clock.advance(9 * MINUTE);
    assert.equal((await withBearer('GET', '/api/v2.1/jobs', nseToken)).statusCode, 200);
    ctx.clock.advance(9 * MINUTE);
    assert.equal((await withCookie('GET', '/api/session/user', cookie)).statusCode, 200);
    // And then silence past the window.
    ctx.clock.advance(10 * MINUTE + 1000);
    assertStorware401(await withCookie('GET', '/api/session', cookie));
  });

  test("an NSE token's exp never promises more than its session's idle timeout", async () => {
    // GATEHOUSE_TOKEN_LIFETIME is 2h here, the idle timeout 10m: a token left unused for its
    // lifetime would outlive its session, and a client reading exp would hold a dead token.
    const signin = await ctx.inject({
      method: 'POST',
      url: '/api/v2.1/auth/signin',
      payload: { username: 'admin', password: ADMIN_PASSWORD },
    });
    assert.equal(signin.statusCode, 200, signin.body);
    const token = json(signin).result.records[0].token as string;
    const claims = (jwt: string) =>
      JSON.parse(Buffer.from(jwt.split('.')[1] ?? '', 'base64url').toString()) as {
        iat: number;
        exp: number;
      };
    assert.equal(claims(token).exp - claims(token).iat, 10 * 60);
    ctx.clock.advance(10 * MINUTE + 1000);
    const idle = await ctx.inject({ method: 'GET', url: '/api/v2.1/jobs', headers: bearer(token) });
    assert.equal(idle.statusCode, 401, 'the session and the token end together');
  });

  test('Endpoints tokens never outlive their session', async () => {
    const login = await ctx.inject({
      method: 'POST',
      url: '/api/session/login',
      payload: { login: 'admin', password: ADMIN_PASSWORD },
    });
    const cookie = login.cookies.find((c) => c.name === COOKIE)!.value;
    // Close to the session's absolute end, the 5-minute Endpoints tokens are cut to what is left.
    for (let i = 0; i < 6; i++) {
      ctx.clock.advance(9 * MINUTE);
      assert.equal((await withCookie('GET', '/api/session', cookie)).statusCode, 204);
    }
    ctx.clock.advance(4 * MINUTE);
    const info = json(await withCookie('POST', '/api/session/refresh-endpoints-tokens', cookie));
    const session = await ctx.core.sessions.authenticateSecret(cookie);
    const { exp } = JSON.parse(
      Buffer.from(info.endpointsTokens.endpointsServerManagerToken.split('.')[1], 'base64url').toString(),
    );
    assert.ok(exp * 1000 <= session.session!.expires_at, 'exp is not past the end of the session');
  });

  test('an explicit Authorization header wins over a stale cookie', async () => {
    const stale = await storwareLogin(ctx);
    await withCookie('POST', '/api/session/logout', stale);
    const fresh = await storwareLogin(ctx);
    const response = await ctx.inject({
      method: 'GET',
      url: '/api/session',
      cookies: { [COOKIE]: stale },
      headers: bearer(fresh),
    });
    assert.equal(response.statusCode, 204);
  });

  test('a login with an API token counts as the last successful login', async () => {
    const { token } = await ctx.core.accounts.createApiToken({ username: 'admin', name: 'history' });
    ctx.clock.advance(MINUTE);
    const tokenLogin = await ctx.inject({
      method: 'POST',
      url: '/api/session/login-with-token',
      payload: { token },
    });
    assert.equal(tokenLogin.statusCode, 201);
    const at = ctx.clock.now();
    ctx.clock.advance(MINUTE);
    const next = await ctx.inject({
      method: 'POST',
      url: '/api/session/login',
      payload: { login: 'admin', password: ADMIN_PASSWORD },
    });
    assert.equal(json(next).lastSuccessfulLogin, at);
  });

  test('absolute lifetime: even an active session ends at GATEHOUSE_SESSION_MAX_LIFETIME', async () => {
    const cookie = await storwareLogin(ctx);
    for (let elapsed = 0; elapsed + 9 * MINUTE < 60 * MINUTE; elapsed += 9 * MINUTE) {
      ctx.clock.advance(9 * MINUTE);
      assert.equal((await withCookie('GET', '/api/session', cookie)).statusCode, 204);
    }
    ctx.clock.advance(9 * MINUTE);
    assertStorware401(await withCookie('GET', '/api/session', cookie));
  });
});

const SESSION_POSTS = [
  '/api/session/login',
  '/api/session/login-with-token',
  '/api/session/node/login',
  '/api/session/logout',
  '/api/session/refresh-endpoints-tokens',
];

forEachDialect('Storware session: GATEHOUSE_STORWARE_SESSION_POST_STATUS=200', (dialect) => {
  let ctx: TestContext;
  before(async () => {
    ctx = await createTestContext(dialect, {
      GATEHOUSE_STORWARE_SESSION_POST_STATUS: '200',
      GATEHOUSE_NODE_MIN_VERSION: '5.0.0',
    });
    await ctx.core.accounts.createNode({ login: 'node-01', password: 'backup-agent-pass-1' });
  });
  after(() => ctx.close());

  test('login, login-with-token, node/login, refresh-endpoints-tokens and logout answer 200', async () => {
    const login = await ctx.inject({
      method: 'POST',
      url: '/api/session/login',
      payload: { login: 'admin', password: ADMIN_PASSWORD },
    });
    assert.equal(login.statusCode, 200, login.body);
    assert.equal(json(login).requester.name, 'admin');
    const cookie = login.cookies.find((c) => c.name === COOKIE)!.value;

    const { token } = await ctx.core.accounts.createApiToken({ username: 'admin' });
    const withToken = await ctx.inject({
      method: 'POST',
      url: '/api/session/login-with-token',
      payload: { token },
    });
    assert.equal(withToken.statusCode, 200, withToken.body);
    assert.ok(withToken.cookies.some((c) => c.name === COOKIE));

    const node = await ctx.inject({
      method: 'POST',
      url: '/api/session/node/login',
      payload: { login: 'node-01', password: 'backup-agent-pass-1', version: '5.1.0' },
    });
    assert.equal(node.statusCode, 200, node.body);
    assert.equal(json(node).requester.name, 'node-01');

    const refresh = await ctx.inject({
      method: 'POST',
      url: '/api/session/refresh-endpoints-tokens',
      cookies: { [COOKIE]: cookie },
    });
    assert.equal(refresh.statusCode, 200, refresh.body);
    assert.equal(typeof json(refresh).endpointsTokens.endpointsServerManagerToken, 'string');

    const logout = await ctx.inject({
      method: 'POST',
      url: '/api/session/logout',
      cookies: { [COOKIE]: cookie },
    });
    assert.equal(logout.statusCode, 200);
    assert.equal(
      (await ctx.inject({ method: 'GET', url: '/api/session', cookies: { [COOKIE]: cookie } })).statusCode,
      401,
    );
  });

  test("/openapi.json names 200 as these POSTs' success, and not 201", async () => {
    const spec = json(await ctx.inject({ method: 'GET', url: '/openapi.json' }));
    for (const path of SESSION_POSTS) {
      const codes = Object.keys(spec.paths[path].post.responses);
      assert.ok(codes.includes('200') && !codes.includes('201'), `${path}: ${codes}`);
    }
  });

  test('the setting changes only the success status: failures stay 400/401 and the session check stays 204', async () => {
    const failed = await ctx.inject({
      method: 'POST',
      url: '/api/session/login',
      payload: { login: 'admin', password: 'not-the-password' },
    });
    assert.equal(failed.statusCode, 400);
    const old = await ctx.inject({
      method: 'POST',
      url: '/api/session/node/login',
      payload: { login: 'node-01', password: 'backup-agent-pass-1', version: '4.0' },
    });
    assert.equal(old.statusCode, 400);
    assert.equal((await ctx.inject({ method: 'POST', url: '/api/session/logout' })).statusCode, 401);
    const cookie = await ctx
      .inject({
        method: 'POST',
        url: '/api/session/login',
        payload: { login: 'admin', password: ADMIN_PASSWORD },
      })
      .then((r) => r.cookies.find((c) => c.name === COOKIE)!.value);
    assert.equal(
      (await ctx.inject({ method: 'GET', url: '/api/session', cookies: { [COOKIE]: cookie } })).statusCode,
      204,
    );
  });
});
