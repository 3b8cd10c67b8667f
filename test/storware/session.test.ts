import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { ALL_PRIVILEGE_CODES, BUILTIN_ROLES } from '../../src/core/privilege-catalog.js';
import { ADMIN_PASSWORD, createTestContext, type TestContext } from '../helpers/context.js';
import { forEachDialect } from '../helpers/dialects.js';
import { bearer, json, storwareLogin } from '../helpers/http.js';

const COOKIE = 'gatehouse_session';

/** The SessionInfoResponse of session-api.txt, key for key; '?' marks the fields that may be null. */
const SESSION_INFO_SHAPE = {
  requester: { guid: 'string', name: 'string' },
  infoTourEnabled: 'boolean',
  lastFailedLoginIp: 'string?',
  language: 'string',
  appUserSettings: { pageSize: 'number', timeFormat: 'number' },
  privileges: 'array',
  endpointsTokens: {
    endpointsServerManagerToken: 'string?',
    endpointsServerManagerWarning: 'string?',
    endpointsOrganizationAdminToken: 'string?',
    endpointsOrganizationAdminWarning: 'string?',
  },
  uiConsoleMode: 'string',
  lastSuccessfulLogin: 'number?',
  lastFailedLogin: 'number?',
  uiTimeZone: 'string',
} as const;

/** AppUserDetails of session-api.txt. */
const USER_DETAILS_SHAPE = {
  login: 'string',
  firstName: 'string',
  lastName: 'string',
  lastFailedLoginIp: 'string?',
  source: 'string',
  language: 'string',
  active: 'boolean',
  infoTourEnabled: 'boolean',
  endpointsOrganization: { guid: 'string', name: 'string' },
  groups: 'array',
  appUserSettings: { pageSize: 'number', timeFormat: 'number' },
  externalId: 'string?',
  thirdPartyRestriction: 'string',
  guid: 'string',
  lastSuccessfulLogin: 'number?',
  lastFailedLogin: 'number?',
  uiTimeZone: 'string',
} as const;

type Shape = { readonly [key: string]: string | Shape };

const typeOf = (value: unknown) => (value === null ? 'null' : Array.isArray(value) ? 'array' : typeof value);

/** Exactly the keys of the shape (no more, no fewer), each with its JSON type. */
function assertShape(actual: unknown, shape: Shape, where = 'body'): void {
  assert.equal(typeOf(actual), 'object', `${where} is an object`);
  const record = actual as Record<string, unknown>;
  assert.deepEqual(Object.keys(record).sort(), Object.keys(shape).sort(), `${where}: keys`);
  for (const [key, expected] of Object.entries(shape)) {
    const value = record[key];
    if (typeof expected === 'string') {
      const nullable = expected.endsWith('?');
      const type = expected.replace('?', '');
      assert.ok(
        typeOf(value) === type || (nullable && value === null),
        `${where}.${key}: expected ${expected}, got ${JSON.stringify(value)}`,
      );
    } else {
      assertShape(value, expected, `${where}.${key}`);
    }
  }
}

function assertStorwareError(response: LightMyRequestResponse, status: number, errorCode?: string): void {
  assert.equal(response.statusCode, status, response.body);
  const body = json(response);
  assert.deepEqual(Object.keys(body).sort(), ['errorCode', 'message']);
  assert.equal(typeof body.errorCode, 'string');
  assert.equal(typeof body.message, 'string');
  assert.ok(body.message.length > 0);
  if (errorCode) assert.equal(body.errorCode, errorCode);
}

forEachDialect('Storware session: login, session check, user info', (dialect) => {
  let ctx: TestContext;
  const login = (login: string, password: string, remoteAddress?: string) =>
    ctx.inject({
      method: 'POST',
      url: '/api/session/login',
      payload: { login, password },
      ...(remoteAddress ? { remoteAddress } : {}),
    });
  const withCookie = (method: 'GET' | 'POST', url: string, cookie: string) =>
    ctx.inject({ method, url, cookies: { [COOKIE]: cookie } });

  before(async () => {
    ctx = await createTestContext(dialect, { GATEHOUSE_LOCKOUT_THRESHOLD: '3' });
    await ctx.core.tenants.create({ code: 'acme', name: 'Acme Corp' });
    await ctx.core.tenants.create({ code: 'globex', name: 'Globex' });
    await ctx.core.accounts.createUser({
      username: 'olivia',
      password: 'operator-on-duty-7',
      firstName: 'Olivia',
      lastName: 'Ops',
      tenantCode: 'acme',
      role: 'user',
      groups: ['Operator'],
    });
    await ctx.core.accounts.createUser({ username: 'nobody', password: 'member-of-nothing-1' });
    await ctx.core.accounts.createUser({ username: 'sleepy', password: 'seven-dwarfs-zzz-1' });
    await ctx.store.users.update((await ctx.store.users.findByUsernameKey('sleepy'))!.id, { active: 0 });
  });
  after(() => ctx.close());

  test('login answers 201 with exactly the SessionInfoResponse keys and an HttpOnly SameSite=Strict cookie', async () => {
    const response = await login('admin', ADMIN_PASSWORD);
    assert.equal(response.statusCode, 201, response.body);
    assert.match(String(response.headers['content-type']), /^application\/json/);
    const body = json(response);
    assertShape(body, SESSION_INFO_SHAPE);
    assert.equal(body.requester.name, 'admin');
    assert.ok(body.privileges.every((p: unknown) => typeof p === 'string'));

    const cookie = response.cookies.find((c) => c.name === COOKIE);
    assert.ok(cookie, 'a session cookie is set');
    assert.ok(cookie.value.length > 20);
    assert.equal(cookie.httpOnly, true);
    assert.equal(cookie.sameSite, 'Strict');
    const raw = [response.headers['set-cookie']].flat().find((h) => String(h).startsWith(`${COOKIE}=`));
    assert.match(String(raw), /;\s*HttpOnly/i);
    assert.match(String(raw), /;\s*SameSite=Strict/i);
    // The cookie must reach every /api/session route.
    assert.ok(['/', '/api', '/api/session'].includes(cookie.path ?? '/'), `cookie path ${cookie.path}`);
  });

  test('the cookie authenticates GET /api/session (204), /user and /user/details', async () => {
    const cookie = await storwareLogin(ctx);
    const check = await withCookie('GET', '/api/session', cookie);
    assert.equal(check.statusCode, 204);
    assert.equal(check.body, '');

    const user = await withCookie('GET', '/api/session/user', cookie);
    assert.equal(user.statusCode, 200);
    assertShape(json(user), SESSION_INFO_SHAPE);
    assert.equal(json(user).requester.name, 'admin');

    const details = await withCookie('GET', '/api/session/user/details', cookie);
    assert.equal(details.statusCode, 200);
    assertShape(json(details), USER_DETAILS_SHAPE);
    assert.equal(json(details).login, 'admin');
    assert.equal(json(details).guid, json(user).requester.guid);
  });

  test('the session cookie value works as a Bearer token too', async () => {
    const cookie = await storwareLogin(ctx);
    assert.equal(
      (await ctx.inject({ method: 'GET', url: '/api/session', headers: bearer(cookie) })).statusCode,
      204,
    );
  });

  test('requests sent with the headers the reference shows (Content-Type: */*, an empty body) are served', async () => {
    const cookie = await storwareLogin(ctx);
    // session-api.txt: GET /session, /session/user, /session/user/details and POST /session/logout
    // are sent with "Content-Type: */*"; refresh-endpoints-tokens with application/json. HTTP
    // clients send an empty POST with Content-Length: 0.
    const send = (method: 'GET' | 'POST', url: string, contentType: string) =>
      ctx.inject({
        method,
        url,
        headers: { 'content-type': contentType, accept: 'application/json' },
        cookies: { [COOKIE]: cookie },
        ...(method === 'POST' ? { payload: '' } : {}),
      });
    assert.equal((await send('GET', '/api/session', '*/*')).statusCode, 204);
    assert.equal((await send('GET', '/api/session/user', '*/*')).statusCode, 200);
    assert.equal((await send('GET', '/api/session/user/details', '*/*')).statusCode, 200);
    const refreshed = await send('POST', '/api/session/refresh-endpoints-tokens', 'application/json');
    assert.equal(refreshed.statusCode, 201, refreshed.body);
    const loggedOut = await send('POST', '/api/session/logout', '*/*');
    assert.equal(loggedOut.statusCode, 201, loggedOut.body);
    assertStorwareError(await send('GET', '/api/session', '*/*'), 401);
    // A body that is not JSON is still refused, in the Storware error shape.
    const xml = await ctx.inject({
      method: 'POST',
      url: '/api/session/login',
      headers: { 'content-type': 'application/xml' },
      payload: '<login/>',
    });
    assertStorwareError(xml, 415, 'UNSUPPORTED_MEDIA_TYPE');
  });

  test('no cookie, a garbage cookie or a garbage bearer: 401 with {errorCode, message} on every session route', async () => {
    const routes = [
      ['GET', '/api/session'],
      ['GET', '/api/session/user'],
      ['GET', '/api/session/user/details'],
      ['POST', '/api/session/logout'],
      ['POST', '/api/session/refresh-endpoints-tokens'],
    ] as const;
    for (const [method, url] of routes) {
      assertStorwareError(await ctx.inject({ method, url }), 401);
      assertStorwareError(await withCookie(method, url, 'garbage'), 401);
      assertStorwareError(await withCookie(method, url, 'gss_not-a-real-session-secret-at-all'), 401);
      assertStorwareError(await ctx.inject({ method, url, headers: bearer('a.b.c') }), 401);
    }
  });

  test('wrong password, unknown login, inactive user and locked user all get the same 400 body', async () => {
    await ctx.core.accounts.createUser({ username: 'locky', password: 'locked-out-soon-1' });
    for (let i = 0; i < 3; i++) await login('locky', `wrong-password-${i}`);
    const answers = [
      await login('olivia', 'not-her-password'),
      await login('no-such-user', 'whatever-password-1'),
      await login('sleepy', 'seven-dwarfs-zzz-1'),
      await login('locky', 'locked-out-soon-1'),
    ];
    for (const response of answers) {
      assertStorwareError(response, 400, 'INVALID_CREDENTIALS');
      assert.deepEqual(json(response), json(answers[0]!));
      assert.equal(
        response.cookies.find((c) => c.name === COOKIE),
        undefined,
        'no cookie on a failed login',
      );
    }
    // Olivia's failure above must not lock her out for the tests that follow.
    await ctx.store.users.update((await ctx.store.users.findByUsernameKey('olivia'))!.id, {
      failed_count: 0,
      last_success_at: ctx.clock.now(),
    });
  });

  test('a login body that is not {login, password} is a 400 naming the field, in the Storware error shape', async () => {
    const missing = await ctx.inject({
      method: 'POST',
      url: '/api/session/login',
      payload: { login: 'admin' },
    });
    assertStorwareError(missing, 400, 'VALIDATION_FAILED');
    assert.match(json(missing).message, /password/);
    assert.doesNotMatch(missing.body, /Correct-horse/);
    const notJson = await ctx.inject({
      method: 'POST',
      url: '/api/session/login',
      headers: { 'content-type': 'application/json' },
      payload: '{"login":',
    });
    assertStorwareError(notJson, 400);
  });

  test('login history: the body shows the history as it stood before this login', async () => {
    await ctx.core.accounts.createUser({ username: 'hist', password: 'time-repeats-itself-1' });
    const fresh = await login('hist', 'time-repeats-itself-1');
    assert.equal(fresh.statusCode, 201);
    assert.equal(json(fresh).lastSuccessfulLogin, null);
    assert.equal(json(fresh).lastFailedLogin, null);
    assert.equal(json(fresh).lastFailedLoginIp, null);

    ctx.clock.advance(60_000);
    const firstLoginAt = ctx.clock.now() - 60_000;
    const failedAt = ctx.clock.now();
    assert.equal((await login('hist', 'wrong-password-here', '203.0.113.7')).statusCode, 400);

    ctx.clock.advance(60_000);
    const secondAt = ctx.clock.now();
    const second = await login('hist', 'time-repeats-itself-1', '198.51.100.9');
    assert.equal(second.statusCode, 201);
    assert.equal(json(second).lastFailedLogin, failedAt);
    assert.equal(json(second).lastFailedLoginIp, '203.0.113.7');
    assert.equal(json(second).lastSuccessfulLogin, firstLoginAt);

    ctx.clock.advance(60_000);
    const third = await login('hist', 'time-repeats-itself-1');
    assert.equal(third.statusCode, 201);
    assert.equal(json(third).lastSuccessfulLogin, secondAt);
    assert.equal(json(third).lastFailedLogin, failedAt);
    assert.equal(json(third).lastFailedLoginIp, '203.0.113.7');

    // Each session keeps the history of its own login: /user and /user/details of the second
    // session still show what the second login saw.
    const secondCookie = second.cookies.find((c) => c.name === COOKIE)!.value;
    const user = json(await withCookie('GET', '/api/session/user', secondCookie));
    assert.equal(user.lastSuccessfulLogin, firstLoginAt);
    assert.equal(user.lastFailedLogin, failedAt);
    const details = json(await withCookie('GET', '/api/session/user/details', secondCookie));
    assert.equal(details.lastSuccessfulLogin, firstLoginAt);
    assert.equal(details.lastFailedLogin, failedAt);
    assert.equal(details.lastFailedLoginIp, '203.0.113.7');
  });

  test('privileges: admin has every privilege, an Operator has the Operator role, a user in no group has none', async () => {
    const admin = json(await login('admin', ADMIN_PASSWORD));
    assert.deepEqual([...admin.privileges].sort(), [...ALL_PRIVILEGE_CODES].sort());
    assert.equal(new Set(admin.privileges).size, admin.privileges.length, 'no duplicates');

    const olivia = await login('olivia', 'operator-on-duty-7');
    assert.equal(olivia.statusCode, 201, olivia.body);
    const privileges: string[] = json(olivia).privileges;
    assert.deepEqual([...privileges].sort(), [...new Set(BUILTIN_ROLES.operator.privileges)].sort());
    assert.ok(!privileges.includes('ACCESS_MANAGEMENT_WRITE'));
    assert.ok(privileges.includes('VE_INSTANCE_EXPORT_TASK_REGISTER'));

    const nobody = await login('nobody', 'member-of-nothing-1');
    assert.equal(nobody.statusCode, 201);
    assert.deepEqual(json(nobody).privileges, []);
    // /user answers the same privileges as the login did.
    const cookie = nobody.cookies.find((c) => c.name === COOKIE)!.value;
    assert.deepEqual(json(await withCookie('GET', '/api/session/user', cookie)).privileges, []);
  });

  test('user/details: groups with guid and name, the first tenant as endpointsOrganization, source LOCAL, active', async () => {
    const cookie = await storwareLogin(ctx, 'olivia', 'operator-on-duty-7');
    const response = await withCookie('GET', '/api/session/user/details', cookie);
    assert.equal(response.statusCode, 200);
    const details = json(response);
    assertShape(details, USER_DETAILS_SHAPE);
    assert.equal(details.login, 'olivia');
    assert.equal(details.firstName, 'Olivia');
    assert.equal(details.lastName, 'Ops');
    assert.equal(details.source, 'LOCAL');
    assert.equal(details.active, true);
    assert.equal(details.externalId, null);
    const operatorGroup = await ctx.store.rbac.findGroupByName('Operator');
    assert.deepEqual(details.groups, [{ guid: operatorGroup!.id, name: 'Operator' }]);
    const acme = await ctx.store.tenants.findByCode('acme');
    assert.deepEqual(details.endpointsOrganization, { guid: acme!.id, name: 'Acme Corp' });

    const admin = json(await withCookie('GET', '/api/session/user/details', await storwareLogin(ctx)));
    assert.deepEqual(
      admin.groups.map((g: { name: string }) => g.name),
      ['Global Administrators'],
    );
    assert.equal(typeof admin.groups[0].guid, 'string');
    assert.equal(admin.endpointsOrganization.name, (await ctx.store.tenants.findByCode('system'))!.name);
  });

  test('user/details of a user with no tenant and no group: empty groups, null organization', async () => {
    const cookie = await storwareLogin(ctx, 'nobody', 'member-of-nothing-1');
    const details = json(await withCookie('GET', '/api/session/user/details', cookie));
    assert.deepEqual(details.groups, []);
    assert.equal(details.endpointsOrganization, null);
    assert.equal(details.login, 'nobody');
  });

  test('a user deactivated after login loses the session at once', async () => {
    await ctx.core.accounts.createUser({ username: 'fired', password: 'clear-your-desk-1' });
    const cookie = await storwareLogin(ctx, 'fired', 'clear-your-desk-1');
    assert.equal((await withCookie('GET', '/api/session', cookie)).statusCode, 204);
    await ctx.store.users.update((await ctx.store.users.findByUsernameKey('fired'))!.id, { active: 0 });
    assertStorwareError(await withCookie('GET', '/api/session', cookie), 401);
  });
});
