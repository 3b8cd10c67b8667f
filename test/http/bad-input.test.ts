import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { ADMIN_PASSWORD, createTestContext, type TestContext } from '../helpers/context.js';
import { forEachDialect } from '../helpers/dialects.js';
import { json } from '../helpers/http.js';

const isNseError = (body: any, status: number, code: string) => {
  assert.equal(body.status.code, status);
  assert.equal(typeof body.status.user_message, 'string');
  assert.match(body.status.verbose_message, new RegExp(`^${code}`));
  assert.deepEqual(body.result, { total_records: 0, records: [] });
};
const isStorwareError = (body: any, code: string) => {
  assert.deepEqual(Object.keys(body).sort(), ['errorCode', 'message']);
  assert.equal(body.errorCode, code);
};

forEachDialect('Bad input', (dialect) => {
  let ctx: TestContext;
  let aliceId: string;
  const post = (url: string, payload: string, contentType = 'application/json') =>
    ctx.inject({ method: 'POST', url, payload, headers: { 'content-type': contentType } });

  before(async () => {
    ctx = await createTestContext(dialect);
    aliceId = (await ctx.core.accounts.createUser({ username: 'alice', password: 'rabbit-hole-wonder-1' }))
      .id;
  });
  after(() => ctx.close());

  const nothingWritten = async () => {
    const alice = await ctx.store.users.findById(aliceId);
    assert.equal(alice?.failed_count, 0, 'a refused request must not count as a failed sign-in');
    assert.equal(alice?.last_failed_at, null);
  };

  test('malformed JSON: 400 in the envelope of each surface', async () => {
    isNseError(json(await post('/api/v2.1/auth/signin', '{"username": "alice",')), 400, 'MALFORMED_JSON');
    const storware = await post('/api/session/login', '{login:');
    assert.equal(storware.statusCode, 400);
    isStorwareError(json(storware), 'MALFORMED_JSON');
    await nothingWritten();
  });

  test('wrong types and missing fields name the field; nothing is written', async () => {
    const cases: Array<[string, string, RegExp]> = [
      [
        '/api/v2.1/auth/signin',
        JSON.stringify({ username: 'alice', password: 12345678901234 }),
        /body\/password must be string/,
      ],
      ['/api/v2.1/auth/signin', JSON.stringify({ username: 'alice' }), /body\/password is required/],
      ['/api/v2.1/auth/signin', JSON.stringify(['alice', 'x']), /body must be object/],
      ['/api/v2.1/auth/signin', '"alice"', /body must be object/],
      [
        '/api/v2.1/auth/password',
        JSON.stringify({ username: 'alice', new_password: 'x'.repeat(20) }),
        /old_password is required/,
      ],
    ];
    for (const [url, payload, detail] of cases) {
      const response = await post(url, payload);
      assert.equal(response.statusCode, 400, payload);
      isNseError(json(response), 400, 'VALIDATION_FAILED');
      assert.match(json(response).status.verbose_message, detail);
    }
    const storware = await post(
      '/api/session/login',
      JSON.stringify({ login: 'alice', password: { $ne: null } }),
    );
    assert.equal(storware.statusCode, 400);
    isStorwareError(json(storware), 'VALIDATION_FAILED');
    assert.match(json(storware).message, /body\/password must be string/);
    const node = await post('/api/session/node/login', JSON.stringify({ login: 'n', password: 'p' }));
    isStorwareError(json(node), 'VALIDATION_FAILED');
    assert.match(json(node).message, /version is required/);
    await nothingWritten();
  });

  test('unknown body fields are ignored', async () => {
    const response = await post(
      '/api/v2.1/auth/signin',
      JSON.stringify({ username: 'alice', password: 'rabbit-hole-wonder-1', rememberMe: true, tenant: 'x' }),
    );
    assert.equal(response.statusCode, 200);
  });

  test('prototype-pollution keys are refused', async () => {
    const response = await post(
      '/api/v2.1/auth/signin',
      '{"username":"alice","password":"x","__proto__":{"admin":true}}',
    );
    assert.equal(response.statusCode, 400);
    isNseError(json(response), 400, 'MALFORMED_JSON');
    assert.equal(({} as any).admin, undefined);
  });

  test('an oversized body is a 413, a foreign content type a 415', async () => {
    const big = JSON.stringify({ username: 'alice', password: 'x'.repeat(70 * 1024) });
    const response = await post('/api/v2.1/auth/signin', big);
    assert.equal(response.statusCode, 413);
    isNseError(json(response), 413, 'BODY_TOO_LARGE');
    const storware = await post('/api/session/login', big);
    assert.equal(storware.statusCode, 413);
    isStorwareError(json(storware), 'BODY_TOO_LARGE');
    const text = await post('/api/v2.1/auth/signin', 'username=alice', 'application/x-www-form-urlencoded');
    assert.equal(text.statusCode, 415);
    isNseError(json(text), 415, 'UNSUPPORTED_MEDIA_TYPE');
    // text/plain alike, on both surfaces, even when the text is JSON.
    const plain = await post('/api/v2.1/auth/signin', JSON.stringify({ username: 'alice' }), 'text/plain');
    isNseError(json(plain), 415, 'UNSUPPORTED_MEDIA_TYPE');
    const storwarePlain = await post('/api/session/login', JSON.stringify({ login: 'alice' }), 'text/plain');
    assert.equal(storwarePlain.statusCode, 415);
    isStorwareError(json(storwarePlain), 'UNSUPPORTED_MEDIA_TYPE');
    await nothingWritten();
  });

  test('a call without a body is served whatever content type its client sets (curl -d "" sends a form type)', async () => {
    const token = json(
      await post(
        '/api/v2.1/auth/signin',
        JSON.stringify({ username: 'alice', password: 'rabbit-hole-wonder-1' }),
      ),
    ).result.records[0].token as string;
    for (const type of ['application/x-www-form-urlencoded', 'text/plain', '*/*', 'application/json']) {
      const refreshed = await ctx.inject({
        method: 'POST',
        url: '/api/v2.1/auth/refresh',
        headers: { authorization: `Bearer ${token}`, 'content-type': type },
        payload: '',
      });
      assert.equal(refreshed.statusCode, 200, `${type}: ${refreshed.body}`);
    }
  });

  test('unknown routes are 404 and wrong methods 405 with Allow, in the envelope of the surface', async () => {
    const nse = await ctx.inject({ method: 'GET', url: '/api/v2.1/nothing-here' });
    assert.equal(nse.statusCode, 404);
    isNseError(json(nse), 404, 'ROUTE_NOT_FOUND');
    const storware = await ctx.inject({ method: 'GET', url: '/api/session/nothing-here' });
    assert.equal(storware.statusCode, 404);
    isStorwareError(json(storware), 'ROUTE_NOT_FOUND');
    const elsewhere = await ctx.inject({ method: 'GET', url: '/not/an/api' });
    isNseError(json(elsewhere), 404, 'ROUTE_NOT_FOUND');

    const wrongMethod = await ctx.inject({ method: 'DELETE', url: '/api/v2.1/auth/signin' });
    assert.equal(wrongMethod.statusCode, 405);
    assert.equal(wrongMethod.headers.allow, 'POST');
    isNseError(json(wrongMethod), 405, 'METHOD_NOT_ALLOWED');
    const storwareMethod = await ctx.inject({ method: 'PUT', url: '/api/session/login' });
    assert.equal(storwareMethod.statusCode, 405);
    isStorwareError(json(storwareMethod), 'METHOD_NOT_ALLOWED');
    const param = await ctx.inject({ method: 'DELETE', url: '/api/v2.1/jobs/123' });
    assert.equal(param.statusCode, 405);
    assert.equal(param.headers.allow, 'GET, HEAD');
  });

  test('credentials are checked before the body: no credentials and a bad body is a 401', async () => {
    const nse = await post('/api/v2.1/users', '{"username": 42}');
    assert.equal(nse.statusCode, 401);
    const storware = await post('/api/session/logout', '{not json');
    assert.equal(storware.statusCode, 401);
  });

  test('a header that is not a credential is a 401, not a 500', async () => {
    for (const authorization of [
      'Bearer',
      'Bearer ',
      'Basic !!!',
      'Basic bm9jb2xvbg==',
      'Digest x',
      'Bearer gss_short',
    ]) {
      const response = await ctx.inject({ method: 'GET', url: '/api/v2.1/jobs', headers: { authorization } });
      assert.equal(response.statusCode, 401, authorization);
      isNseError(json(response), 401, '');
    }
    const cookie = await ctx.inject({
      method: 'GET',
      url: '/api/session/user',
      cookies: { gatehouse_session: 'x'.repeat(5000) },
    });
    assert.equal(cookie.statusCode, 401);
    isStorwareError(json(cookie), 'SESSION_ENDED');
  });

  test('a logout with a JSON content type and no body is fine', async () => {
    const login = await ctx.inject({
      method: 'POST',
      url: '/api/session/login',
      payload: { login: 'admin', password: ADMIN_PASSWORD },
    });
    const cookie = login.cookies.find((c) => c.name === 'gatehouse_session')!.value;
    const response = await ctx.inject({
      method: 'POST',
      url: '/api/session/logout',
      headers: { 'content-type': 'application/json' },
      cookies: { gatehouse_session: cookie },
    });
    assert.equal(response.statusCode, 201);
    assert.equal(response.body, '');
  });

  test('an unexpected failure is a 500 with no stack trace or SQL in the body', async () => {
    // Break the schema under the running app: the query fails in a way no code path expects.
    await ctx.store.db.schema.alterTable('users').renameTo('users_gone').execute();
    try {
      const response = await post(
        '/api/v2.1/auth/signin',
        JSON.stringify({ username: 'alice', password: 'whatever-it-is' }),
      );
      assert.equal(response.statusCode, 500);
      isNseError(json(response), 500, 'INTERNAL_ERROR');
      assert.doesNotMatch(response.body, /select|users|sqlite|relation|stack|at \w+ \(/i);
      // What the caller quotes to the operator, who finds the log line by it.
      const id = response.headers['x-request-id'] as string;
      assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
      assert.equal(json(response).status.verbose_message, `INTERNAL_ERROR: request ${id}`);
      const storware = await ctx.inject({
        method: 'POST',
        url: '/api/session/login',
        headers: { 'content-type': 'application/json', 'x-request-id': 'lb-7f3a.0042' },
        payload: JSON.stringify({ login: 'alice', password: 'whatever-it-is' }),
      });
      assert.equal(storware.statusCode, 500);
      const storwareId = storware.headers['x-request-id'] as string;
      assert.notEqual(storwareId, 'lb-7f3a.0042', "a sent id is not the request's");
      assert.deepEqual(json(storware), {
        errorCode: 'INTERNAL_ERROR',
        message: `An internal error occurred. (request ${storwareId})`,
      });
    } finally {
      await ctx.store.db.schema.alterTable('users_gone').renameTo('users').execute();
    }
  });
});
