import assert from 'node:assert/strict';
import { createPublicKey, type JsonWebKey, verify } from 'node:crypto';
import { after, before, test } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { BUILTIN_ROLES } from '../../src/core/privilege-catalog.js';
import { ADMIN_PASSWORD, createTestContext, type TestContext } from '../helpers/context.js';
import { forEachDialect } from '../helpers/dialects.js';
import { json, storwareLogin } from '../helpers/http.js';

const COOKIE = 'gatehouse_session';

const decode = (part: string) => JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));

/**
 * Verifies an Endpoints token the way a downstream service would: the key from our JWKS,
 * selected by `kid`, ES256 (JOSE signatures are r||s, hence ieee-p1363). Returns the claims.
 */
function verifyWithJwks(token: string, jwks: { keys: Array<Record<string, string>> }): Record<string, any> {
  const [h, p, s] = token.split('.');
  assert.ok(h && p && s, 'three parts');
  const header = decode(h);
  assert.equal(header.alg, 'ES256');
  const jwk = jwks.keys.find((k) => k.kid === header.kid);
  assert.ok(jwk, `the JWKS holds the key ${header.kid}`);
  assert.equal(jwk.kty, 'EC');
  assert.equal(jwk.crv, 'P-256');
  assert.equal(jwk.d, undefined, 'the JWKS holds no private part');
  const key = createPublicKey({ key: jwk as unknown as JsonWebKey, format: 'jwk' });
  const valid = verify(
    'sha256',
    Buffer.from(`${h}.${p}`),
    { key, dsaEncoding: 'ieee-p1363' },
    Buffer.from(s, 'base64url'),
  );
  assert.ok(valid, 'the signature verifies with the published key');
  return decode(p);
}

function assertStorwareError(response: LightMyRequestResponse, status: number, errorCode?: string): void {
  assert.equal(response.statusCode, status, response.body);
  const body = json(response);
  assert.deepEqual(Object.keys(body).sort(), ['errorCode', 'message']);
  assert.equal(typeof body.message, 'string');
  if (errorCode) assert.equal(body.errorCode, errorCode);
}

const cookieOf = (response: LightMyRequestResponse) => {
  const cookie = response.cookies.find((c) => c.name === COOKIE);
  assert.ok(cookie, 'a session cookie is set');
  return cookie.value;
};

forEachDialect('Storware session: Endpoints tokens, login-with-token, node login', (dialect) => {
  let ctx: TestContext;
  let jwks: { keys: Array<Record<string, string>> };
  const withCookie = (method: 'GET' | 'POST', url: string, cookie: string) =>
    ctx.inject({ method, url, cookies: { [COOKIE]: cookie } });
  const loginWithToken = (token: unknown) =>
    ctx.inject({ method: 'POST', url: '/api/session/login-with-token', payload: { token } });
  const nodeLogin = (login: string, password: string, version: string) =>
    ctx.inject({ method: 'POST', url: '/api/session/node/login', payload: { login, password, version } });

  before(async () => {
    ctx = await createTestContext(dialect, { GATEHOUSE_NODE_MIN_VERSION: '5.0.0' });
    await ctx.core.tenants.create({ code: 'acme', name: 'Acme Corp' });
    await ctx.core.accounts.createUser({
      username: 'olivia',
      password: 'operator-on-duty-7',
      tenantCode: 'acme',
      role: 'user',
      groups: ['Operator'],
    });
    await ctx.core.accounts.createNode({ login: 'node-01', password: 'backup-agent-pass-1' });
    const response = await ctx.inject({ method: 'GET', url: '/.well-known/jwks.json' });
    assert.equal(response.statusCode, 200);
    jwks = json(response) as typeof jwks;
    assert.ok(jwks.keys.length >= 1);
  });
  after(() => ctx.close());

  test('admin gets both Endpoints tokens, each verifiable from the JWKS, audience-scoped and short-lived', async () => {
    const response = await ctx.inject({
      method: 'POST',
      url: '/api/session/login',
      payload: { login: 'admin', password: ADMIN_PASSWORD },
    });
    assert.equal(response.statusCode, 201);
    const body = json(response);
    const tokens = body.endpointsTokens;
    assert.equal(tokens.endpointsServerManagerWarning, null);
    assert.equal(tokens.endpointsOrganizationAdminWarning, null);
    const nowSeconds = ctx.clock.now() / 1000;
    for (const [token, audience] of [
      [tokens.endpointsServerManagerToken, 'endpoints-server-manager'],
      [tokens.endpointsOrganizationAdminToken, 'endpoints-organization-admin'],
    ] as const) {
      assert.equal(typeof token, 'string');
      const claims = verifyWithJwks(token, jwks);
      assert.equal(claims.aud, audience);
      assert.equal(claims.sub, body.requester.guid);
      assert.equal(claims.kind, 'user');
      assert.equal(typeof claims.sid, 'string');
      assert.equal(typeof claims.jti, 'string');
      assert.ok(claims.exp > nowSeconds, 'not expired');
      assert.ok(Math.abs(claims.iat - nowSeconds) <= 1, 'issued now, by the service clock');
      assert.ok(claims.exp - claims.iat <= 5 * 60, `short-lived: ${claims.exp - claims.iat}s`);
      assert.ok(claims.exp - claims.iat > 0);
    }
    // One token is not the other with a different label.
    assert.notEqual(tokens.endpointsServerManagerToken, tokens.endpointsOrganizationAdminToken);
  });

  test('a tampered Endpoints token does not verify', async () => {
    const body = json(
      await ctx.inject({
        method: 'POST',
        url: '/api/session/login',
        payload: { login: 'admin', password: ADMIN_PASSWORD },
      }),
    );
    const [h, p, s] = body.endpointsTokens.endpointsServerManagerToken.split('.');
    const claims = decode(p);
    claims.aud = 'endpoints-organization-admin';
    const forged = `${h}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${s}`;
    assert.throws(() => verifyWithJwks(forged, jwks), /signature verifies/);
  });

  test('a user without the privileges gets null tokens and warnings naming the missing privilege', async () => {
    const response = await ctx.inject({
      method: 'POST',
      url: '/api/session/login',
      payload: { login: 'olivia', password: 'operator-on-duty-7' },
    });
    assert.equal(response.statusCode, 201);
    const tokens = json(response).endpointsTokens;
    assert.equal(tokens.endpointsServerManagerToken, null);
    assert.equal(tokens.endpointsOrganizationAdminToken, null);
    assert.match(tokens.endpointsServerManagerWarning, /ENDPOINTS_SERVER_MANAGE\b/);
    assert.match(tokens.endpointsOrganizationAdminWarning, /ENDPOINTS_ORGANIZATION_ADMIN\b/);

    const refreshed = await withCookie('POST', '/api/session/refresh-endpoints-tokens', cookieOf(response));
    assert.equal(refreshed.statusCode, 201);
    assert.equal(json(refreshed).endpointsTokens.endpointsServerManagerToken, null);
    assert.match(json(refreshed).endpointsTokens.endpointsServerManagerWarning, /ENDPOINTS_SERVER_MANAGE\b/);
  });

  test('refresh-endpoints-tokens answers 201 with new tokens (new jti) for the same session', async () => {
    const login = await ctx.inject({
      method: 'POST',
      url: '/api/session/login',
      payload: { login: 'admin', password: ADMIN_PASSWORD },
    });
    const cookie = cookieOf(login);
    const before = json(login).endpointsTokens;
    ctx.clock.advance(2 * 60_000);
    const response = await withCookie('POST', '/api/session/refresh-endpoints-tokens', cookie);
    assert.equal(response.statusCode, 201);
    const after = json(response);
    assert.equal(after.requester.name, 'admin');
    assert.ok(Array.isArray(after.privileges) && after.privileges.length > 0);
    for (const key of ['endpointsServerManagerToken', 'endpointsOrganizationAdminToken'] as const) {
      const old = verifyWithJwks(before[key], jwks);
      const renewed = verifyWithJwks(after.endpointsTokens[key], jwks);
      assert.notEqual(renewed.jti, old.jti);
      assert.equal(renewed.aud, old.aud);
      assert.equal(renewed.sid, old.sid, 'same session');
      assert.ok(renewed.exp > old.exp, 'the new token lives past the old one');
    }
  });

  test('login-with-token: a CLI API token logs in (201, cookie) as its user', async () => {
    const { token } = await ctx.core.accounts.createApiToken({ username: 'olivia', name: 'cli' });
    const response = await loginWithToken(token);
    assert.equal(response.statusCode, 201, response.body);
    const body = json(response);
    assert.equal(body.requester.name, 'olivia');
    assert.deepEqual([...body.privileges].sort(), [...new Set(BUILTIN_ROLES.operator.privileges)].sort());
    const cookie = cookieOf(response);
    assert.equal((await withCookie('GET', '/api/session', cookie)).statusCode, 204);
    assert.equal(json(await withCookie('GET', '/api/session/user/details', cookie)).login, 'olivia');
    // The token is reusable until it expires or is revoked.
    assert.equal((await loginWithToken(token)).statusCode, 201);
  });

  test('login-with-token: unknown, malformed, expired and inactive-user tokens get the same 400', async () => {
    const { token: expiring } = await ctx.core.accounts.createApiToken({
      username: 'olivia',
      name: 'short',
      expiresInMs: 60_000,
    });
    assert.equal((await loginWithToken(expiring)).statusCode, 201, 'valid before expiry');
    await ctx.core.accounts.createUser({ username: 'gone', password: 'left-the-company-1' });
    const { token: orphan } = await ctx.core.accounts.createApiToken({ username: 'gone' });
    await ctx.store.users.update((await ctx.store.users.findByUsernameKey('gone'))!.id, { active: 0 });
    ctx.clock.advance(61_000);
    const answers = [
      await loginWithToken(`gtk_${'A'.repeat(43)}`),
      await loginWithToken('not-a-token'),
      await loginWithToken(expiring),
      await loginWithToken(orphan),
    ];
    for (const response of answers) {
      assertStorwareError(response, 400, 'INVALID_API_TOKEN');
      assert.deepEqual(json(response), json(answers[0]!));
      assert.equal(
        response.cookies.find((c) => c.name === COOKIE),
        undefined,
      );
    }
    assertStorwareError(await loginWithToken(12345), 400, 'VALIDATION_FAILED');
    assertStorwareError(
      await ctx.inject({ method: 'POST', url: '/api/session/login-with-token', payload: {} }),
      400,
      'VALIDATION_FAILED',
    );
  });

  test('login-with-token: every refusal is an audit event with its reason, naming the token and its user, never the secret', async () => {
    await ctx.core.accounts.createUser({
      username: 'rita',
      password: 'revoked-and-retired-4',
      tenantCode: 'acme',
      role: 'user',
    });
    const rita = (await ctx.store.users.findByUsernameKey('rita'))!;
    const { row, token: revoked } = await ctx.core.accounts.issueApiToken({
      userId: rita.id,
      name: 'old laptop',
      expiresAt: null,
    });
    await ctx.store.apiTokens.revoke(row.id, ctx.clock.now());
    const unknown = `gtk_${'B'.repeat(43)}`;
    ctx.clock.advance(1_000); // past the events of the tests before (the test clock stands still)
    const since = ctx.clock.now();
    const ip = '198.51.100.77';
    const tried = (token: string) =>
      ctx.inject({
        method: 'POST',
        url: '/api/session/login-with-token',
        payload: { token },
        remoteAddress: ip,
      });
    // Each refused three times: a script repeating a refusal writes one event a minute, not one each.
    for (let i = 0; i < 3; i += 1) {
      assertStorwareError(await tried(revoked), 400, 'INVALID_API_TOKEN');
      assertStorwareError(await tried(unknown), 400, 'INVALID_API_TOKEN');
    }
    const events = () =>
      ctx.store.db
        .selectFrom('audit_events')
        .selectAll()
        .where('action', '=', 'signin')
        .where('outcome', '=', 'failure')
        .where('at', '>=', since)
        .orderBy('at')
        .orderBy('id')
        .execute();
    const recorded = await events();
    // Before: neither was written down, only counted in gatehouse_signins_total.
    assert.deepEqual(
      recorded.map((e) => [e.target_type, e.target_name, e.tenant_id, e.actor_type, e.ip, e.reason]),
      [
        [
          'user',
          'rita',
          await ctx.store.users.findFirstTenantId(rita.id),
          'anonymous',
          ip,
          'api token old laptop: revoked',
        ],
        ['', '', null, 'anonymous', ip, 'unknown-api-token'],
      ],
    );
    for (const secret of [revoked, unknown]) assert.ok(!JSON.stringify(recorded).includes(secret.slice(4)));
    ctx.clock.advance(60_000);
    assertStorwareError(await tried(revoked), 400, 'INVALID_API_TOKEN');
    assert.equal((await events()).length, 3, 'a minute later, recorded again');
  });

  test('node/login refuses a version below GATEHOUSE_NODE_MIN_VERSION with a message naming both versions, to a node that proved its password only', async () => {
    // Without the password, the answer is the one of any failed login: the minimum is not told.
    for (const [login, password] of [
      ['node-01', 'not-the-password-1'],
      ['no-such-node', 'backup-agent-pass-1'],
    ] as const) {
      const refused = await nodeLogin(login, password, '4.9.1');
      assertStorwareError(refused, 400, 'INVALID_CREDENTIALS');
      assert.doesNotMatch(refused.body, /5\.0\.0/);
    }
    const response = await nodeLogin('node-01', 'backup-agent-pass-1', '4.9.1');
    assertStorwareError(response, 400, 'NODE_VERSION_UNSUPPORTED');
    assert.match(json(response).message, /4\.9\.1/);
    assert.match(json(response).message, /5\.0\.0/);
    assert.equal(
      response.cookies.find((c) => c.name === COOKIE),
      undefined,
    );
    const garbage = await nodeLogin('node-01', 'backup-agent-pass-1', 'latest');
    assertStorwareError(garbage, 400, 'NODE_VERSION_UNSUPPORTED');
    // A sign-in of a supported version clears the failure counted above for the tests after this one.
    assert.equal((await nodeLogin('node-01', 'backup-agent-pass-1', '5.0.0')).statusCode, 201);
  });

  test('node/login with a supported version: 201, requester is the node, privileges of the Backup Node role', async () => {
    assert.equal((await nodeLogin('node-01', 'not-the-password-1', '5.1.0')).statusCode, 400);
    assert.equal((await ctx.store.nodes.findByLoginKey('node-01'))?.failed_count, 1);
    const response = await nodeLogin('node-01', 'backup-agent-pass-1', '5.1.0');
    assert.equal(response.statusCode, 201, response.body);
    const body = json(response);
    assert.equal(body.requester.name, 'node-01');
    assert.deepEqual([...body.privileges].sort(), [...BUILTIN_ROLES.backupNode.privileges].sort());
    // Backup Node holds ENDPOINTS_SERVER_MANAGE but not ENDPOINTS_ORGANIZATION_ADMIN.
    const serverManager = verifyWithJwks(body.endpointsTokens.endpointsServerManagerToken, jwks);
    assert.equal(serverManager.aud, 'endpoints-server-manager');
    assert.equal(serverManager.kind, 'node', 'a node is told apart from a user of the same name');
    assert.equal(serverManager.sub, body.requester.guid);
    assert.equal(body.endpointsTokens.endpointsOrganizationAdminToken, null);
    assert.match(body.endpointsTokens.endpointsOrganizationAdminWarning, /ENDPOINTS_ORGANIZATION_ADMIN/);

    const node = await ctx.store.nodes.findById(body.requester.guid);
    assert.equal(node?.version, '5.1.0', 'the reported version is recorded');
    assert.equal(node?.failed_count, 0, 'the failure before it is forgotten');
    assert.equal(node?.last_success_at, ctx.clock.now());
    assert.equal(node?.last_seen_at, ctx.clock.now());

    const cookie = cookieOf(response);
    assert.equal((await withCookie('GET', '/api/session', cookie)).statusCode, 204);
    const user = json(await withCookie('GET', '/api/session/user', cookie));
    assert.equal(user.requester.name, 'node-01');
    const details = await withCookie('GET', '/api/session/user/details', cookie);
    assert.equal(details.statusCode, 200);
    assert.equal(json(details).login, 'node-01');
    assert.deepEqual(json(details).groups, []);
    // Exactly the minimum is accepted.
    assert.equal((await nodeLogin('node-01', 'backup-agent-pass-1', '5.0.0')).statusCode, 201);
  });

  test('node/login: bad password, unknown node and a user account all get the same 400', async () => {
    const answers = [
      await nodeLogin('node-01', 'wrong-password-here', '5.1.0'),
      await nodeLogin('node-99', 'backup-agent-pass-1', '5.1.0'),
      await nodeLogin('admin', ADMIN_PASSWORD, '5.1.0'),
    ];
    for (const response of answers) {
      assertStorwareError(response, 400, 'INVALID_CREDENTIALS');
      assert.deepEqual(json(response), json(answers[0]!));
    }
    assertStorwareError(
      await ctx.inject({
        method: 'POST',
        url: '/api/session/node/login',
        payload: { login: 'node-01', password: 'backup-agent-pass-1' },
      }),
      400,
      'VALIDATION_FAILED',
    );
    // The failure is node login history, shown on the next node login.
    ctx.clock.advance(1000);
    const next = json(await nodeLogin('node-01', 'backup-agent-pass-1', '5.1.0'));
    assert.equal(typeof next.lastFailedLogin, 'number');
    assert.equal(typeof next.lastSuccessfulLogin, 'number');
  });

  test('user credentials do not open a node session, and node credentials do not open a user session', async () => {
    const response = await ctx.inject({
      method: 'POST',
      url: '/api/session/login',
      payload: { login: 'node-01', password: 'backup-agent-pass-1' },
    });
    assertStorwareError(response, 400, 'INVALID_CREDENTIALS');
    assert.ok(await storwareLogin(ctx));
  });
});
