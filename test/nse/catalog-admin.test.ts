import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { isForeignKeyViolation } from '../../src/store/connect.js';
import { createTestContext, type TestContext } from '../helpers/context.js';
import { forEachDialect } from '../helpers/dialects.js';
import { bearer, json, nseSignIn } from '../helpers/http.js';

const API = '/api/v2.1';

forEachDialect('NSE regions and zones administration', (dialect) => {
  let ctx: TestContext;
  let adminId: string;
  const tokens: Record<string, string> = {};
  const call = (who: string, method: 'GET' | 'POST' | 'PUT' | 'DELETE', url: string, payload?: object) =>
    ctx.inject({
      method,
      url: `${API}${url}`,
      headers: bearer(tokens[who]!),
      ...(payload ? { payload } : {}),
    });
  const regionNames = async () =>
    json(await call('admin', 'GET', '/regions?sort_by=name&order_by=asc')).result.records.map(
      (r: any) => r.name,
    );
  const auditRows = (action: string) =>
    ctx.store.db.selectFrom('audit_events').selectAll().where('action', '=', action).orderBy('at').execute();
  const expectError = (response: LightMyRequestResponse, status: number, verbose: RegExp) => {
    assert.equal(response.statusCode, status, response.body);
    const body = json(response);
    assert.equal(body.status.code, status);
    assert.match(body.status.verbose_message, verbose);
    assert.deepEqual(body.result, { total_records: 0, records: [] });
  };

  before(async () => {
    ctx = await createTestContext(dialect);
    await ctx.core.tenants.create({ code: 'acme', name: 'Acme' });
    await ctx.core.accounts.createUser({
      username: 'alice',
      password: 'rabbit-hole-wonder-1',
      tenantCode: 'acme',
      role: 'admin',
    });
    await ctx.core.accounts.createUser({
      username: 'rita',
      password: 'quiet-reader-4242',
      tenantCode: 'acme',
      role: 'read',
    });
    adminId = (
      await ctx.store.db
        .selectFrom('users')
        .select('id')
        .where('username', '=', 'admin')
        .executeTakeFirstOrThrow()
    ).id;
    tokens.admin = await nseSignIn(ctx);
    tokens.alice = await nseSignIn(ctx, 'alice', 'rabbit-hole-wonder-1');
    tokens.rita = await nseSignIn(ctx, 'rita', 'quiet-reader-4242');
  });
  after(() => ctx.close());

  test('root creates a region: 201 with the reference create keys plus description and zones; audited', async () => {
    const response = await call('admin', 'POST', '/regions', {
      name: 'au-east1',
      description: 'Sydney',
      unknown_field: 'ignored',
    });
    assert.equal(response.statusCode, 201);
    const body = json(response);
    assert.deepEqual(body.status, {
      user_message: 'Okay. New resource created.',
      verbose_message: '',
      code: 201,
    });
    assert.equal(body.result.total_records, 1);
    const record = body.result.records[0];
    assert.deepEqual(record, {
      id: record.id,
      name: 'au-east1',
      description: 'Sydney',
      Description: 'Sydney',
      user_id: adminId,
      created: new Date(ctx.clock.now()).toISOString(),
      tags: null,
      zones: [],
    });

    const fetchedRegion = json(await call('rita', 'GET', '/regions/au-east1'));
    assert.equal(fetchedRegion.result.returned_records, 1);
    assert.deepEqual(fetchedRegion.result.records[0], {
      id: record.id,
      name: 'au-east1',
      description: 'Sydney',
      zones: [],
    });
    const consumer = json(await call('rita', 'GET', '/auth/regions/au-east1'));
    assert.deepEqual(consumer.result.records[0], fetchedRegion.result.records[0]);

    const [event, ...others] = await auditRows('region.create');
    assert.equal(others.length, 0);
    assert.equal(event?.actor_type, 'user');
    assert.equal(event?.actor_id, adminId);
    assert.equal(event?.actor_name, 'admin');
    assert.equal(event?.target_type, 'region');
    assert.equal(event?.target_id, record.id);
    assert.equal(event?.target_name, 'au-east1');
    assert.equal(event?.tenant_id, null);
    assert.equal(event?.ip, '127.0.0.1');
    assert.equal(event?.outcome, 'success');
  });

  test('a region without a description gets an empty one; a duplicate name is a 409', async () => {
    const bare = json(await call('admin', 'POST', '/regions', { name: 'us-west2' }));
    assert.equal(bare.result.records[0].description, '');
    assert.equal(bare.result.records[0].Description, '');
    expectError(
      await call('admin', 'POST', '/regions', { name: 'us-west2', description: 'again' }),
      409,
      /^ALREADY_EXISTS: a region named "us-west2" already exists$/,
    );
    assert.equal(json(await call('admin', 'GET', '/regions/us-west2')).result.records[0].description, '');
  });

  test('bad region bodies are a 400 naming the field, and create nothing', async () => {
    const before = await regionNames();
    for (const [payload, field] of [
      [{}, 'name'],
      [{ name: '' }, 'name'],
      [{ name: '-leading-dash' }, 'name'],
      [{ name: 'has space' }, 'name'],
      [{ name: 'x'.repeat(65) }, 'name'],
      [{ name: 'x'.repeat(300) }, 'name'],
      [{ name: 42 }, 'name'],
      [{ name: 'ok-name', description: 7 }, 'description'],
      [{ name: 'ok-name', description: 'd'.repeat(1025) }, 'description'],
    ] as const) {
      const response = await call('admin', 'POST', '/regions', payload);
      expectError(response, 400, new RegExp(`^VALIDATION_FAILED: (body/)?${field}`));
    }
    assert.deepEqual(await regionNames(), before);
  });

  test('GET /regions pages and sorts; bad paging is a 400', async () => {
    for (const name of ['pg-a', 'pg-c', 'pg-b']) {
      ctx.clock.advance(1000);
      await call('admin', 'POST', '/regions', { name });
    }
    const newest = json(await call('rita', 'GET', '/regions?limit=2'));
    assert.deepEqual(
      newest.result.records.map((r: any) => r.name),
      ['pg-b', 'pg-c'],
    );
    assert.equal(newest.result.sort_by, 'created');
    assert.equal(newest.result.order_by, 'desc');
    assert.equal(newest.result.returned_records, 2);
    const total = newest.result.total_records;
    assert.ok(total >= 5);

    const page = json(await call('rita', 'GET', '/regions?offset=1&limit=2&sort_by=name&order_by=asc'));
    const all = await regionNames();
    assert.deepEqual(
      page.result.records.map((r: any) => r.name),
      all.slice(1, 3),
    );
    assert.deepEqual(
      { ...page.result, records: undefined },
      {
        returned_records: 2,
        total_records: total,
        sort_by: 'name',
        order_by: 'asc',
        offset: 1,
        limit: 2,
        records: undefined,
      },
    );
    expectError(
      await call('rita', 'GET', '/regions?sort_by=zones'),
      400,
      /^VALIDATION_FAILED: querystring\/sort_by/,
    );
    expectError(await call('rita', 'GET', '/regions?limit=0'), 400, /^VALIDATION_FAILED: querystring\/limit/);
  });

  test('zones: create in a region (all three fields required), read, filter, page, sort', async () => {
    await call('admin', 'POST', '/regions', { name: 'eu-north1', description: 'Stockholm' });
    const response = await call('admin', 'POST', '/zones', {
      name: 'eu-north1-a',
      description: 'Stockholm A',
      region_name: 'eu-north1',
    });
    assert.equal(response.statusCode, 201);
    const body = json(response);
    assert.equal(body.status.user_message, 'Okay. New resource created.');
    assert.equal(body.status.code, 201);
    const zone = body.result.records[0];
    assert.deepEqual(zone, {
      id: zone.id,
      name: 'eu-north1-a',
      description: 'Stockholm A',
      region: 'eu-north1',
    });
    for (const [name, region] of [
      ['eu-north1-b', 'eu-north1'],
      ['au-east1-a', 'au-east1'],
    ]) {
      ctx.clock.advance(1000);
      assert.equal(
        (await call('admin', 'POST', '/zones', { name, description: name, region_name: region })).statusCode,
        201,
      );
    }

    assert.deepEqual(json(await call('rita', 'GET', '/zones/eu-north1-a')).result.records[0], zone);
    assert.deepEqual(json(await call('rita', 'GET', '/regions/eu-north1')).result.records[0].zones, [
      'eu-north1-a',
      'eu-north1-b',
    ]);

    const all = json(await call('rita', 'GET', '/zones'));
    assert.equal(all.result.total_records, 3);
    assert.deepEqual(
      all.result.records.map((z: any) => z.name),
      ['au-east1-a', 'eu-north1-b', 'eu-north1-a'],
    );
    const byRegion = json(
      await call('rita', 'GET', '/zones?region=eu-north1&sort_by=name&order_by=asc&limit=1&offset=1'),
    );
    assert.equal(byRegion.result.total_records, 2);
    assert.equal(byRegion.result.returned_records, 1);
    assert.deepEqual(
      byRegion.result.records.map((z: any) => z.name),
      ['eu-north1-b'],
    );
    const sortedByRegion = json(await call('rita', 'GET', '/zones?sort_by=region&order_by=asc'));
    assert.deepEqual(
      sortedByRegion.result.records.map((z: any) => z.region),
      ['au-east1', 'eu-north1', 'eu-north1'],
    );
    assert.equal(json(await call('rita', 'GET', '/zones?region=nowhere')).result.total_records, 0);
    expectError(
      await call('rita', 'GET', '/zones/eu-north1-z'),
      404,
      /^NOT_FOUND: no zone named "eu-north1-z"$/,
    );

    const [event] = await auditRows('zone.create');
    assert.equal(event?.actor_id, adminId);
    assert.equal(event?.target_type, 'zone');
    assert.equal(event?.target_id, zone.id);
    assert.equal(event?.target_name, 'eu-north1-a');
    assert.equal(event?.ip, '127.0.0.1');
  });

  test('bad zone bodies: 400 naming the field; unknown region 404 naming it; duplicate 409', async () => {
    const count = async () => json(await call('admin', 'GET', '/zones')).result.total_records;
    const before = await count();
    for (const [payload, field] of [
      [{ description: 'd', region_name: 'eu-north1' }, 'body/name is required'],
      [{ name: 'z1', region_name: 'eu-north1' }, 'body/description is required'],
      [{ name: 'z1', description: 'd' }, 'body/region_name is required'],
      [{ name: 'bad name', description: 'd', region_name: 'eu-north1' }, 'name'],
      [{ name: 'z1', description: 'd', region_name: 5 }, 'body/region_name'],
    ] as const) {
      expectError(
        await call('admin', 'POST', '/zones', payload),
        400,
        new RegExp(`^VALIDATION_FAILED: ${field}`),
      );
    }
    expectError(
      await call('admin', 'POST', '/zones', { name: 'z1', description: 'd', region_name: 'atlantis' }),
      404,
      /^NOT_FOUND: no region named "atlantis"$/,
    );
    expectError(
      await call('admin', 'POST', '/zones', {
        name: 'eu-north1-a',
        description: 'd',
        region_name: 'au-east1',
      }),
      409,
      /^ALREADY_EXISTS: a zone named "eu-north1-a" already exists$/,
    );
    assert.equal(await count(), before);
    assert.equal(
      json(await call('admin', 'GET', '/zones/eu-north1-a')).result.records[0].region,
      'eu-north1',
    );
  });

  test('PUT a region: description, rename (its zones follow), 409 onto an existing name, 404, 400', async () => {
    await call('admin', 'POST', '/regions', { name: 'ap-south1', description: 'Mumbai' });
    await call('admin', 'POST', '/zones', {
      name: 'ap-south1-a',
      description: 'Mumbai A',
      region_name: 'ap-south1',
    });

    const described = await call('admin', 'PUT', '/regions/ap-south1', { description: 'Mumbai, India' });
    assert.equal(described.statusCode, 200);
    assert.deepEqual(json(described).status, {
      user_message: 'Okay. Returned 1 record.',
      verbose_message: '',
      code: 200,
    });
    const record = json(described).result.records[0];
    assert.deepEqual(record, {
      id: record.id,
      name: 'ap-south1',
      description: 'Mumbai, India',
      zones: ['ap-south1-a'],
    });

    const renamed = json(
      await call('admin', 'PUT', '/regions/ap-south1', { name: 'in-west1', description: 'Mumbai' }),
    );
    assert.deepEqual(renamed.result.records[0], {
      id: record.id,
      name: 'in-west1',
      description: 'Mumbai',
      zones: ['ap-south1-a'],
    });
    expectError(await call('admin', 'GET', '/regions/ap-south1'), 404, /^NOT_FOUND/);
    assert.equal(json(await call('admin', 'GET', '/zones/ap-south1-a')).result.records[0].region, 'in-west1');
    assert.equal(json(await call('admin', 'GET', '/zones?region=in-west1')).result.total_records, 1);

    const same = await call('admin', 'PUT', '/regions/in-west1', { name: 'in-west1' });
    assert.equal(same.statusCode, 200);

    expectError(
      await call('admin', 'PUT', '/regions/in-west1', { name: 'au-east1', description: 'clobber' }),
      409,
      /^ALREADY_EXISTS: a region named "au-east1" already exists$/,
    );
    assert.equal(
      json(await call('admin', 'GET', '/regions/in-west1')).result.records[0].description,
      'Mumbai',
    );
    assert.equal(
      json(await call('admin', 'GET', '/regions/au-east1')).result.records[0].description,
      'Sydney',
    );

    expectError(
      await call('admin', 'PUT', '/regions/atlantis', { description: 'x' }),
      404,
      /^NOT_FOUND: no region named "atlantis"$/,
    );
    expectError(
      await call('admin', 'PUT', '/regions/in-west1', { name: 'no/slash' }),
      400,
      /^VALIDATION_FAILED: name/,
    );
    expectError(
      await call('admin', 'PUT', '/regions/in-west1', { description: 3 }),
      400,
      /^VALIDATION_FAILED: body\/description/,
    );

    const events = await auditRows('region.update');
    assert.deepEqual(
      events.map((e) => [e.target_id, e.target_name, e.actor_id]),
      [
        [record.id, 'ap-south1', adminId],
        [record.id, 'in-west1', adminId],
        [record.id, 'in-west1', adminId],
      ],
    );
  });

  test('DELETE a region with zones is a 412 naming them; after its zones go it deletes (204)', async () => {
    await call('admin', 'POST', '/regions', { name: 'sa-east1', description: 'São Paulo' });
    for (const name of ['sa-east1-b', 'sa-east1-a']) {
      await call('admin', 'POST', '/zones', { name, description: name, region_name: 'sa-east1' });
    }
    const regionId = json(await call('admin', 'GET', '/regions/sa-east1')).result.records[0].id;

    expectError(
      await call('admin', 'DELETE', '/regions/sa-east1'),
      412,
      /^PRECONDITION_FAILED: region "sa-east1" still has zones: sa-east1-a, sa-east1-b; delete them first$/,
    );
    assert.equal(json(await call('admin', 'GET', '/regions/sa-east1')).result.records[0].zones.length, 2);

    const zoneId = json(await call('admin', 'GET', '/zones/sa-east1-a')).result.records[0].id;
    const zoneGone = await call('admin', 'DELETE', '/zones/sa-east1-a');
    assert.equal(zoneGone.statusCode, 204);
    assert.equal(zoneGone.body, '');
    expectError(await call('admin', 'GET', '/zones/sa-east1-a'), 404, /^NOT_FOUND/);
    expectError(
      await call('admin', 'DELETE', '/zones/sa-east1-a'),
      404,
      /^NOT_FOUND: no zone named "sa-east1-a"$/,
    );
    expectError(
      await call('admin', 'DELETE', '/regions/sa-east1'),
      412,
      /^PRECONDITION_FAILED: region "sa-east1" still has zones: sa-east1-b;/,
    );
    assert.equal((await call('admin', 'DELETE', '/zones/sa-east1-b')).statusCode, 204);

    const regionGone = await call('admin', 'DELETE', '/regions/sa-east1');
    assert.equal(regionGone.statusCode, 204);
    assert.equal(regionGone.body, '');
    expectError(await call('admin', 'GET', '/regions/sa-east1'), 404, /^NOT_FOUND/);
    expectError(
      await call('admin', 'DELETE', '/regions/sa-east1'),
      404,
      /^NOT_FOUND: no region named "sa-east1"$/,
    );

    const [regionEvent] = await auditRows('region.delete');
    assert.equal(regionEvent?.target_id, regionId);
    assert.equal(regionEvent?.target_name, 'sa-east1');
    assert.equal(regionEvent?.actor_id, adminId);
    assert.equal(regionEvent?.ip, '127.0.0.1');
    const zoneEvents = await auditRows('zone.delete');
    assert.deepEqual(
      zoneEvents.map((e) => e.target_name),
      ['sa-east1-a', 'sa-east1-b'],
    );
    assert.equal(zoneEvents[0]?.target_id, zoneId);
  });

  test('a region refusing deletion names at most ten of its zones', async () => {
    await call('admin', 'POST', '/regions', { name: 'big' });
    for (let i = 10; i < 22; i++) {
      await call('admin', 'POST', '/zones', { name: `big-${i}`, description: '', region_name: 'big' });
    }
    const response = await call('admin', 'DELETE', '/regions/big');
    expectError(response, 412, /still has zones: big-10, big-11, .*, big-19 and 2 more; delete them first$/);
  });

  test('the store refuses to drop a region that zones point at, which the 412 relies on under a race', async () => {
    const big = json(await call('admin', 'GET', '/regions/big')).result.records[0];
    await assert.rejects(ctx.store.catalog.deleteRegion(big.id), (error) => isForeignKeyViolation(error));
    assert.equal(json(await call('admin', 'GET', '/regions/big')).result.records[0].zones.length, 12);
  });

  test('PUT a zone: rename, describe, move to another region; 404, 409, 400', async () => {
    await call('admin', 'POST', '/regions', { name: 'us-east1' });
    await call('admin', 'POST', '/zones', {
      name: 'us-east1-a',
      description: 'Virginia A',
      region_name: 'us-east1',
    });
    const id = json(await call('admin', 'GET', '/zones/us-east1-a')).result.records[0].id;

    const described = await call('admin', 'PUT', '/zones/us-east1-a', {
      name: 'us-east1-a',
      description: 'Ashburn A',
    });
    assert.equal(described.statusCode, 200);
    assert.equal(json(described).status.user_message, 'Okay. Returned 1 record.');
    assert.deepEqual(json(described).result.records[0], {
      id,
      name: 'us-east1-a',
      description: 'Ashburn A',
      region: 'us-east1',
    });

    const moved = json(
      await call('admin', 'PUT', '/zones/us-east1-a', { name: 'us-west2-a', region_name: 'us-west2' }),
    );
    assert.deepEqual(moved.result.records[0], {
      id,
      name: 'us-west2-a',
      description: 'Ashburn A',
      region: 'us-west2',
    });
    assert.deepEqual(json(await call('admin', 'GET', '/regions/us-east1')).result.records[0].zones, []);
    assert.deepEqual(json(await call('admin', 'GET', '/regions/us-west2')).result.records[0].zones, [
      'us-west2-a',
    ]);

    expectError(
      await call('admin', 'PUT', '/zones/us-west2-a', { region_name: 'atlantis' }),
      404,
      /^NOT_FOUND: no region named "atlantis"$/,
    );
    expectError(
      await call('admin', 'PUT', '/zones/us-west2-a', { name: 'eu-north1-a' }),
      409,
      /^ALREADY_EXISTS: a zone named "eu-north1-a" already exists$/,
    );
    expectError(
      await call('admin', 'PUT', '/zones/nope', { description: 'x' }),
      404,
      /^NOT_FOUND: no zone named "nope"$/,
    );
    expectError(
      await call('admin', 'PUT', '/zones/us-west2-a', { name: '' }),
      400,
      /^VALIDATION_FAILED: name/,
    );
    expectError(
      await call('admin', 'PUT', '/zones/us-west2-a', { region_name: ['us-east1'] }),
      400,
      /^VALIDATION_FAILED: body\/region_name/,
    );
    assert.deepEqual(
      json(await call('admin', 'GET', '/zones/us-west2-a')).result.records[0],
      moved.result.records[0],
    );

    const events = await auditRows('zone.update');
    assert.deepEqual(
      events.map((e) => [e.target_id, e.target_name]),
      [
        [id, 'us-east1-a'],
        [id, 'us-west2-a'],
      ],
    );
  });

  test('only root writes: a tenant admin and a read user get 403 on every write, and nothing changes', async () => {
    const snapshot = async () => ({
      regions: json(await call('admin', 'GET', '/regions?sort_by=name&order_by=asc')).result.records,
      zones: json(await call('admin', 'GET', '/zones?sort_by=name&order_by=asc')).result.records,
      audit: (await ctx.store.db.selectFrom('audit_events').select('id').execute()).length,
    });
    const before = await snapshot();
    const writes: ['POST' | 'PUT' | 'DELETE', string, object?][] = [
      ['POST', '/regions', { name: 'rogue-region', description: 'x' }],
      ['PUT', '/regions/au-east1', { name: 'stolen', description: 'x' }],
      ['PUT', '/regions/atlantis', { description: 'x' }],
      ['DELETE', '/regions/us-east1'],
      ['DELETE', '/regions/atlantis'],
      ['POST', '/zones', { name: 'rogue-zone', description: 'x', region_name: 'au-east1' }],
      ['PUT', '/zones/au-east1-a', { name: 'stolen', region_name: 'eu-north1' }],
      ['DELETE', '/zones/au-east1-a'],
      ['DELETE', '/zones/nope'],
    ];
    for (const who of ['alice', 'rita']) {
      for (const [method, url, payload] of writes) {
        expectError(await call(who, method, url, payload), 403, /^FORBIDDEN: only a root user may do this$/);
      }
      // Reads are for everyone signed in: regions and zones are global.
      assert.equal((await call(who, 'GET', '/regions')).statusCode, 200);
      assert.equal((await call(who, 'GET', '/zones/au-east1-a')).statusCode, 200);
    }
    assert.deepEqual(await snapshot(), before);
  });

  test('every route needs authentication', async () => {
    for (const [method, url] of [
      ['GET', '/regions'],
      ['GET', '/regions/au-east1'],
      ['POST', '/regions'],
      ['PUT', '/regions/au-east1'],
      ['DELETE', '/regions/au-east1'],
      ['GET', '/zones'],
      ['GET', '/zones/au-east1-a'],
      ['POST', '/zones'],
      ['PUT', '/zones/au-east1-a'],
      ['DELETE', '/zones/au-east1-a'],
    ] as const) {
      const response = await ctx.inject({
        method,
        url: `${API}${url}`,
        ...(method === 'POST' || method === 'PUT'
          ? { payload: { name: 'x1', description: 'd', region_name: 'au-east1' } }
          : {}),
      });
      assert.equal(response.statusCode, 401, `${method} ${url}`);
    }
    assert.equal(json(await call('admin', 'GET', '/regions/au-east1')).result.records[0].name, 'au-east1');
  });

  test('the CLI path (no requester) still creates, audited as the system', async () => {
    const region = await ctx.core.catalog.createRegion({ name: 'cli-region', description: 'from the CLI' });
    assert.equal(region.userId, null);
    const zone = await ctx.core.catalog.createZone({ name: 'cli-zone', regionName: 'cli-region' });
    assert.equal(zone.region, 'cli-region');
    const regionEvent = (await auditRows('region.create')).find((e) => e.target_name === 'cli-region');
    assert.equal(regionEvent?.actor_type, 'system');
    assert.equal(regionEvent?.actor_id, null);
    assert.equal(regionEvent?.ip, '');
    const zoneEvent = (await auditRows('zone.create')).find((e) => e.target_name === 'cli-zone');
    assert.equal(zoneEvent?.actor_type, 'system');
  });
});
