import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { Writable } from 'node:stream';
import { after, before, test } from 'node:test';
import { createTestContext, type TestContext } from './helpers/context.js';
import { forEachDialect } from './helpers/dialects.js';
import { json } from './helpers/http.js';

forEachDialect('Operations endpoints', (dialect) => {
  let ctx: TestContext;
  let logged = '';
  const logs = {
    stream: new Writable({
      write(chunk, _encoding, done) {
        logged += chunk.toString();
        done();
      },
    }),
    text: () => logged,
  };
  before(async () => {
    ctx = await createTestContext(dialect, {}, { logger: { level: 'info', stream: logs.stream } });
  });
  after(() => ctx.close());

  test('/healthz and /readyz answer 200 with a reachable store', async () => {
    const health = await ctx.inject({ method: 'GET', url: '/healthz' });
    assert.equal(health.statusCode, 200);
    assert.deepEqual(json(health), { status: 'ok' });
    const ready = await ctx.inject({ method: 'GET', url: '/readyz' });
    assert.equal(ready.statusCode, 200);
    assert.deepEqual(json(ready), { status: 'ready' });
  });

  test('/openapi.json documents every route with its responses, and /docs serves the UI', async () => {
    const response = await ctx.inject({ method: 'GET', url: '/openapi.json' });
    assert.equal(response.statusCode, 200);
    const spec = json(response);
    assert.equal(spec.openapi, '3.0.3');
    const documented = new Set<string>();
    for (const [path, operations] of Object.entries<Record<string, any>>(spec.paths)) {
      for (const [method, operation] of Object.entries(operations)) {
        documented.add(`${method.toUpperCase()} ${path}`);
        assert.ok(
          operation.responses && Object.keys(operation.responses).length > 0,
          `${method} ${path} has responses`,
        );
        assert.ok(operation.summary, `${method} ${path} has a summary`);
      }
    }
    const routes = ctx.app.routeTable
      .entries()
      .filter((r) => !r.hidden && r.method !== 'HEAD')
      .map((r) => `${r.method} ${r.url.replace(/:(\w+)/g, '{$1}').replace(/(.)\/$/, '$1')}`);
    assert.ok(routes.length >= 17, `expected every route, got ${routes.length}`);
    for (const route of routes) assert.ok(documented.has(route), `${route} is missing from /openapi.json`);

    // The Storware session POSTs answer 201 by default (GATEHOUSE_STORWARE_SESSION_POST_STATUS), and say so.
    for (const path of ['/api/session/login', '/api/session/logout']) {
      const codes = Object.keys(spec.paths[path].post.responses);
      assert.ok(codes.includes('201') && !codes.includes('200'), `${path}: ${codes}`);
    }

    const docs = await ctx.inject({ method: 'GET', url: '/docs/' });
    assert.equal(docs.statusCode, 200);
    assert.match(docs.body, /swagger/i);
  });

  test('every answer carries the security headers; API answers are never cached', async () => {
    const response = await ctx.inject({ method: 'GET', url: '/api/v2.1/auth/regions' });
    assert.equal(response.headers['x-content-type-options'], 'nosniff');
    assert.equal(response.headers['x-frame-options'], 'DENY');
    assert.equal(response.headers['cache-control'], 'no-store');
    assert.match(String(response.headers['content-security-policy']), /default-src 'none'/);
  });

  test('every answer carries a request id of its own, made here: the one a caller or proxy sent is logged beside it, never taken', async () => {
    const ids = new Set<string>();
    for (let i = 0; i < 3; i += 1) {
      const response = await ctx.inject({ method: 'GET', url: '/api/v2.1/auth/regions' });
      ids.add(String(response.headers['x-request-id']));
    }
    assert.equal(ids.size, 3, 'every request gets an id of its own');
    const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
    for (const id of ids) assert.match(id, UUID);
    const sent = await ctx.inject({
      method: 'GET',
      url: '/api/session/user',
      headers: { 'x-request-id': '4bf92f3577b34da6a3ce929d0e0e4736' },
    });
    assert.equal(sent.statusCode, 401);
    assert.match(String(sent.headers['x-request-id']), UUID, "another request's id is not taken");
    const logged = logs
      .text()
      .split('\n')
      .find((line) => line.includes('4bf92f3577b34da6a3ce929d0e0e4736'));
    assert.ok(logged, 'the sent id is logged');
    const entry = JSON.parse(logged) as { reqId?: string; sentRequestId?: string };
    assert.equal(entry.reqId, sent.headers['x-request-id']);
    assert.equal(entry.sentRequestId, '4bf92f3577b34da6a3ce929d0e0e4736');
    for (const bad of ['a'.repeat(65), 'two words', 'line\tbreak', '']) {
      await ctx.inject({ method: 'GET', url: '/healthz', headers: { 'x-request-id': bad } });
    }
    assert.doesNotMatch(logs.text(), /"sentRequestId":"(a{65}|two words|line)/);
  });

  test('probes and scrapes are not logged at info, as API requests are', async () => {
    for (const url of ['/healthz', '/readyz', '/metrics', '/api/v2.1/auth/regions']) {
      assert.notEqual((await ctx.inject({ method: 'GET', url })).statusCode, 500);
    }
    const urls = logs
      .text()
      .split('\n')
      .filter(Boolean)
      .map((line) => (JSON.parse(line) as { req?: { url?: string } }).req?.url);
    assert.ok(urls.includes('/api/v2.1/auth/regions'));
    for (const probe of ['/healthz', '/readyz', '/metrics']) assert.ok(!urls.includes(probe), probe);
  });

  test('/.well-known/jwks.json publishes the ES256 public key, and nothing private', async () => {
    const response = await ctx.inject({ method: 'GET', url: '/.well-known/jwks.json' });
    assert.equal(response.statusCode, 200);
    const { keys } = json(response);
    assert.equal(keys.length, 1);
    assert.deepEqual(Object.keys(keys[0]).sort(), ['alg', 'crv', 'kid', 'kty', 'use', 'x', 'y']);
    assert.equal(keys[0].alg, 'ES256');
    assert.equal(keys[0].d, undefined);
  });

  test('signing keys are sealed in the store: the same keys after a restart, no key material in clear', async () => {
    const before = json(await ctx.inject({ method: 'GET', url: '/.well-known/jwks.json' })).keys[0].kid;
    ctx = await ctx.restart();
    assert.equal(
      json(await ctx.inject({ method: 'GET', url: '/.well-known/jwks.json' })).keys[0].kid,
      before,
    );
    const rows = await ctx.store.signingKeys.listAll();
    assert.equal(rows.length, 2);
    for (const row of rows) {
      assert.match(row.sealed_material, /^v1\./);
      assert.doesNotMatch(row.sealed_material, /PRIVATE KEY/);
    }
  });

  test('the published public key is derived from the sealed private key: a key written into the store is not published', async () => {
    const published = json(await ctx.inject({ method: 'GET', url: '/.well-known/jwks.json' })).keys[0];
    const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const planted = { ...publicKey.export({ format: 'jwk' }), kid: published.kid, alg: 'ES256', use: 'sig' };
    await ctx.store.db
      .updateTable('signing_keys')
      .set({ public_jwk: JSON.stringify(planted) })
      .where('kid', '=', published.kid)
      .execute();
    // Past the keyring's reload interval: it reads the keys again.
    ctx.clock.advance(61_000);
    const after = json(await ctx.inject({ method: 'GET', url: '/.well-known/jwks.json' })).keys[0];
    assert.equal(after.kid, published.kid);
    assert.equal(after.x, published.x);
    assert.notEqual(after.x, planted.x);
  });
});
