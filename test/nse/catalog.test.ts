import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { ADMIN_PASSWORD, createTestContext, type TestContext } from '../helpers/context.js';
import { forEachDialect } from '../helpers/dialects.js';
import { bearer, json, nseSignIn } from '../helpers/http.js';

forEachDialect('NSE regions and zones', (dialect) => {
  let ctx: TestContext;
  let token: string;
  const get = (url: string) => ctx.inject({ method: 'GET', url, headers: bearer(token) });

  before(async () => {
    ctx = await createTestContext(dialect);
    for (const [name, description] of [
      ['au-east1', 'Sydney'],
      ['au-west1', 'Perth'],
      ['eu-north1', 'Stockholm'],
    ] as const) {
      await ctx.core.catalog.createRegion({ name, description });
      ctx.clock.advance(1000);
    }
    await ctx.core.catalog.createZone({
      name: 'au-east1-a',
      regionName: 'au-east1',
      description: 'Sydney A',
    });
    await ctx.core.catalog.createZone({
      name: 'au-east1-b',
      regionName: 'au-east1',
      description: 'Sydney B',
    });
    await ctx.core.catalog.createZone({ name: 'au-west1-a', regionName: 'au-west1', description: 'Perth A' });
    token = await nseSignIn(ctx);
  });
  after(() => ctx.close());

  test('regions list: newest first by default, with zone names and the list fields', async () => {
    const response = await get('/api/v2.1/auth/regions');
    assert.equal(response.statusCode, 200);
    const body = json(response);
    assert.deepEqual(body.status, {
      user_message: 'Okay. Returned 3 records.',
      verbose_message: '',
      code: 200,
    });
    const { records, ...fields } = body.result;
    assert.deepEqual(fields, {
      returned_records: 3,
      total_records: 3,
      sort_by: 'created',
      order_by: 'desc',
      offset: 0,
      limit: 1000,
    });
    assert.deepEqual(
      records.map((r: any) => r.name),
      ['eu-north1', 'au-west1', 'au-east1'],
    );
    assert.deepEqual(records[2], {
      id: records[2].id,
      name: 'au-east1',
      description: 'Sydney',
      zones: ['au-east1-a', 'au-east1-b'],
    });
  });

  test('offset, limit, sort_by and order_by page through the list', async () => {
    const body = json(await get('/api/v2.1/auth/regions?offset=1&limit=1&sort_by=name&order_by=asc'));
    assert.equal(body.status.user_message, 'Okay. Returned 1 record.');
    assert.equal(body.result.returned_records, 1);
    assert.equal(body.result.total_records, 3);
    assert.equal(body.result.offset, 1);
    assert.equal(body.result.limit, 1);
    assert.equal(body.result.sort_by, 'name');
    assert.equal(body.result.order_by, 'asc');
    assert.deepEqual(
      body.result.records.map((r: any) => r.name),
      ['au-west1'],
    );
  });

  test('bad paging parameters are a 400 naming the parameter', async () => {
    for (const [query, field] of [
      ['limit=0', 'limit'],
      ['limit=5000', 'limit'],
      ['offset=-1', 'offset'],
      ['offset=abc', 'offset'],
      ['sort_by=password', 'sort_by'],
      ['order_by=sideways', 'order_by'],
    ]) {
      const response = await get(`/api/v2.1/auth/regions?${query}`);
      assert.equal(response.statusCode, 400, query);
      const body = json(response);
      assert.equal(body.status.code, 400);
      assert.match(
        body.status.verbose_message,
        new RegExp(`^VALIDATION_FAILED: querystring/${field}`),
        query,
      );
      assert.deepEqual(body.result, { total_records: 0, records: [] });
    }
  });

  test('a region by name; an unknown one is a 404 in the envelope', async () => {
    const body = json(await get('/api/v2.1/auth/regions/au-west1'));
    assert.equal(body.result.returned_records, 1);
    assert.deepEqual(body.result.records[0].zones, ['au-west1-a']);
    const missing = await get('/api/v2.1/auth/regions/nowhere');
    assert.equal(missing.statusCode, 404);
    assert.equal(json(missing).status.code, 404);
    assert.match(json(missing).status.verbose_message, /^NOT_FOUND/);
  });

  test('zones: all, by region, by name; records carry region (the reference shape)', async () => {
    const all = json(await get('/api/v2.1/auth/zones?sort_by=name&order_by=asc'));
    assert.equal(all.result.total_records, 3);
    assert.deepEqual(all.result.records[0], {
      id: all.result.records[0].id,
      name: 'au-east1-a',
      description: 'Sydney A',
      region: 'au-east1',
    });
    const east = json(await get('/api/v2.1/auth/zones?region=au-east1'));
    assert.deepEqual(east.result.records.map((z: any) => z.name).sort(), ['au-east1-a', 'au-east1-b']);
    assert.equal(east.result.total_records, 2);
    const none = json(await get('/api/v2.1/auth/zones?region=eu-north1'));
    assert.equal(none.result.total_records, 0);
    // region_name, the name zone create takes, filters alike.
    const byCreateName = json(await get('/api/v2.1/auth/zones?region_name=au-east1'));
    assert.deepEqual(byCreateName.result.records, east.result.records);
    assert.equal(json(await get('/api/v2.1/zones?region_name=nowhere')).result.total_records, 0);
    assert.equal((await get('/api/v2.1/zones?region=au-east1&region_name=au-west1')).statusCode, 400);
    const one = json(await get('/api/v2.1/auth/zones/au-west1-a'));
    assert.equal(one.result.records[0].region, 'au-west1');
    assert.equal((await get('/api/v2.1/auth/zones/au-west1-z')).statusCode, 404);
  });

  test('the catalog needs authentication', async () => {
    for (const url of [
      '/api/v2.1/auth/regions',
      '/api/v2.1/auth/regions/au-east1',
      '/api/v2.1/auth/zones',
      '/api/v2.1/auth/zones/au-east1-a',
    ]) {
      const response = await ctx.inject({ method: 'GET', url });
      assert.equal(response.statusCode, 401, url);
      assert.equal(
        response.headers['www-authenticate'],
        'Bearer realm="gatehouse", Basic realm="gatehouse", charset="UTF-8"',
      );
    }
  });

  test('a client that sends Basic credentials only when challenged gets the challenge, and then in', async () => {
    const url = '/api/v2.1/auth/regions';
    const first = await ctx.inject({ method: 'GET', url });
    assert.equal(first.statusCode, 401);
    const challenges = String(first.headers['www-authenticate']);
    assert.match(challenges, /Basic realm="gatehouse"/);
    const retried = await ctx.inject({
      method: 'GET',
      url,
      headers: { authorization: `Basic ${Buffer.from(`admin:${ADMIN_PASSWORD}`).toString('base64')}` },
    });
    assert.equal(retried.statusCode, 200, retried.body);
    // Not where Basic is not taken: the sign-in's credentials are in its body, and a client
    // answering the challenge would send the same wrong password again.
    const signin = await ctx.inject({
      method: 'POST',
      url: '/api/v2.1/auth/signin',
      payload: { username: 'admin', password: 'not-the-password-1' },
    });
    assert.equal(signin.statusCode, 401);
    assert.equal(signin.headers['www-authenticate'], 'Bearer realm="gatehouse"');
    // Nor on the refresh, which takes a session's token only.
    const refresh = await ctx.inject({
      method: 'POST',
      url: '/api/v2.1/auth/refresh',
      headers: { authorization: `Basic ${Buffer.from(`admin:${ADMIN_PASSWORD}`).toString('base64')}` },
    });
    assert.equal(refresh.statusCode, 401);
    assert.equal(refresh.headers['www-authenticate'], 'Bearer realm="gatehouse"');
    // No Basic challenge where it would do harm: after a Bearer token (the client wants a new
    // token), to a browser's script (the browser would open its own password dialog).
    for (const headers of [
      { authorization: 'Bearer not-a-token' },
      { 'sec-fetch-mode': 'cors' },
      { 'sec-fetch-mode': 'same-origin' },
    ]) {
      const refused = await ctx.inject({ method: 'GET', url, headers });
      assert.equal(refused.statusCode, 401, JSON.stringify(headers));
      assert.equal(refused.headers['www-authenticate'], 'Bearer realm="gatehouse"', JSON.stringify(headers));
    }
  });
});
