import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { createTestContext, type TestContext } from '../helpers/context.js';
import { forEachDialect } from '../helpers/dialects.js';
import { basic, bearer, json, nseSignIn } from '../helpers/http.js';

/** Each test here is a failure the OpenAPI fuzzer found once, kept so that it stays fixed. */
const nseError = (response: LightMyRequestResponse, status: number, detail: RegExp) => {
  assert.equal(response.statusCode, status, response.body);
  const body = json(response);
  assert.equal(body.status.code, status);
  assert.match(body.status.verbose_message, detail);
  assert.deepEqual(body.result, { total_records: 0, records: [] });
  assert.equal(response.headers['x-content-type-options'], 'nosniff', 'security headers');
  assert.equal(response.headers['content-security-policy'], "default-src 'none'; frame-ancestors 'none'");
};

forEachDialect('Found by fuzzing', (dialect) => {
  let ctx: TestContext;
  let token: string;

  before(async () => {
    ctx = await createTestContext(dialect);
    token = await nseSignIn(ctx);
    await ctx.core.accounts.createUser({ username: 'alice', password: 'rabbit-hole-wonder-1' });
  });
  after(() => ctx.close());

  test('a NUL in a body field, path parameter or query is a 400 naming it (PostgreSQL cannot store it)', async () => {
    const cases: Array<[string, Parameters<TestContext['inject']>[0], RegExp]> = [
      [
        'sign-in name',
        {
          method: 'POST',
          url: '/api/v2.1/auth/signin',
          payload: { username: 'a\u0000b', password: 'whatever-it-is-1' },
        },
        /body\/username holds a NUL/,
      ],
      [
        'tenant name',
        {
          method: 'POST',
          url: '/api/v2.1/tenants',
          headers: bearer(token),
          payload: { code: 'nul', name: '\u0000', zuora_account_name: '', zuora_account_number: '' },
        },
        /body\/name holds a NUL/,
      ],
      [
        'nested field',
        {
          method: 'POST',
          url: '/api/v2.1/users',
          headers: bearer(token),
          payload: { username: 'nul-user', tenancies: [{ tenant_id: 'x\u0000', role_name: 'user' }] },
        },
        /body\/tenancies\/0\/tenant_id holds a NUL/,
      ],
      [
        'path parameter',
        { method: 'GET', url: '/api/v2.1/auth/regions/%00', headers: bearer(token) },
        /params\/name/,
      ],
      [
        'query',
        { method: 'GET', url: '/api/v2.1/auth/zones?region=a%00', headers: bearer(token) },
        /querystring\/region/,
      ],
      [
        'lone surrogate',
        { method: 'POST', url: '/api/v2.1/regions', headers: bearer(token), payload: '{"name":"r\\ud800"}' },
        /body\/name holds a NUL character or a broken surrogate pair/,
      ],
    ];
    for (const [what, options, detail] of cases) {
      const response = await ctx.inject({
        ...options,
        headers: { 'content-type': 'application/json', ...(options.headers as Record<string, string>) },
      });
      nseError(response, 400, detail);
      assert.match(json(response).status.verbose_message, /^VALIDATION_FAILED/, what);
    }
    const storware = await ctx.inject({
      method: 'POST',
      url: '/api/session/login',
      payload: { login: 'alice\u0000', password: 'rabbit-hole-wonder-1' },
    });
    assert.equal(storware.statusCode, 400);
    assert.equal(json(storware).errorCode, 'VALIDATION_FAILED');
    assert.match(json(storware).message, /body\/login holds a NUL/);
    const alice = await ctx.store.users.findByUsernameKey('alice');
    assert.equal(alice?.failed_count, 0, 'a refused body is not a failed sign-in');
    // The same name without the NUL still works: nothing was stored half-way.
    const fine = await ctx.inject({
      method: 'POST',
      url: '/api/v2.1/tenants',
      headers: bearer(token),
      payload: { code: 'nul', name: 'No NUL', zuora_account_name: '', zuora_account_number: '' },
    });
    assert.equal(fine.statusCode, 201, fine.body);
  });

  test('the operations routes document the refusals they answer: a NUL in an unused query is a 400 in the NSE envelope', async () => {
    const document = json(await ctx.inject({ method: 'GET', url: '/openapi.json' })) as {
      paths: Record<string, Record<string, { tags?: string[]; responses: Record<string, unknown> }>>;
    };
    const operations = Object.entries(document.paths).flatMap(([url, methods]) =>
      Object.values(methods)
        .filter((operation) => operation.tags?.includes('Operations'))
        .map((operation) => ({ url, responses: operation.responses })),
    );
    assert.deepEqual(operations.map((o) => o.url).sort(), [
      '/.well-known/jwks.json',
      '/healthz',
      '/metrics',
      '/readyz',
    ]);
    for (const { url, responses } of operations) {
      nseError(
        await ctx.inject({ method: 'GET', url: `${url}?b1oia=a%00b` }),
        400,
        /querystring\/b1oia holds a NUL/,
      );
      assert.ok('4XX' in responses || '4xx' in responses, `${url} documents its 4xx answers`);
      assert.ok('5XX' in responses || '5xx' in responses, `${url} documents its 5xx answers`);
    }
  });

  test('an audit time filter past any time a Date holds is a 400, not a 500 (PostgreSQL bigint)', async () => {
    const list = (query: string) =>
      ctx.inject({ method: 'GET', url: `/api/v2.1/audit-events?${query}`, headers: bearer(token) });
    nseError(await list('offset=97&to=99999999999999999999999'), 400, /querystring\/to must be/);
    nseError(await list('from=8640000000000001'), 400, /querystring\/from must be/);
    const latest = await list('from=0&to=8640000000000000');
    assert.equal(latest.statusCode, 200, latest.body);
    assert.ok(json(latest).result.total_records > 0, 'the sign-in of this suite is listed');
  });

  test('HTTP Basic credentials holding a NUL are malformed: 401, not a 500', async () => {
    const response = await ctx.inject({
      method: 'GET',
      url: '/api/v2.1/jobs',
      headers: basic('alice\u0000', 'rabbit-hole-wonder-1'),
    });
    nseError(response, 401, /^AUTHENTICATION_REQUIRED: the Basic credentials are malformed/);
  });

  test('a URL that is not valid percent-encoding is a 400 in the envelope of its surface, with the security headers', async () => {
    nseError(
      await ctx.inject({
        method: 'DELETE',
        url: '/api/v2.1/groups/%E0%A4%A/members/x',
        headers: bearer(token),
      }),
      400,
      /^VALIDATION_FAILED: the URL is not valid/,
    );
    const storware = await ctx.inject({ method: 'GET', url: '/api/session/%zz' });
    assert.equal(storware.statusCode, 400);
    assert.deepEqual(json(storware), {
      errorCode: 'VALIDATION_FAILED',
      message: 'The request is not valid. (the URL is not valid: a bad percent-encoding)',
    });
    assert.equal(storware.headers['x-frame-options'], 'DENY', 'security headers');
  });

  test('a path segment longer than the router keeps is a 400 in the envelope, not Fastify’s own 414', async () => {
    nseError(
      await ctx.inject({ method: 'GET', url: `/api/v2.1/users/${'a'.repeat(300)}`, headers: bearer(token) }),
      400,
      /^VALIDATION_FAILED: a path segment is too long/,
    );
  });
});
