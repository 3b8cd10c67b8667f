import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Role } from '../../src/store/repositories/users.js';
import { createTestContext, type TestContext } from '../helpers/context.js';
import { forEachDialect } from '../helpers/dialects.js';
import { bearer, json, nseSignIn } from '../helpers/http.js';

const PASSWORD = 'Harbour-kestrel-5930';
const UNKNOWN_ID = '01890000-0000-7000-8000-000000000000';
const SUBTENANTS = '/api/v2.1/subtenants';

forEachDialect('NSE subtenants', (dialect) => {
  let ctx: TestContext;
  let acme: string;
  let globex: string;
  /** Subtenant ids by code. */
  const subs: Record<string, string> = {};
  const tokens: Record<string, string> = {};

  const call = (who: string, method: 'GET' | 'POST' | 'PUT' | 'DELETE', url: string, payload?: object) =>
    ctx.inject({ method, url, headers: bearer(tokens[who]!), ...(payload ? { payload } : {}) });
  const makeUser = async (username: string, tenancies: Array<[string, Role]>) => {
    const user = await ctx.core.accounts.createUser({ username, password: PASSWORD });
    for (const [tenantId, role] of tenancies) {
      await ctx.store.users.addTenancy({
        user_id: user.id,
        tenant_id: tenantId,
        role,
        created_at: ctx.clock.now(),
      });
    }
    tokens[username] = await nseSignIn(ctx, username, PASSWORD);
  };
  const isError = (response: { statusCode: number; body: string }, status: number, code: string) => {
    assert.equal(response.statusCode, status, response.body);
    const body = JSON.parse(response.body);
    assert.equal(body.status.code, status);
    assert.match(body.status.verbose_message, new RegExp(`^${code}`));
    assert.deepEqual(body.result, { total_records: 0, records: [] });
    return body;
  };
  const create = async (who: string, tenantId: string, code: string, key = code) => {
    ctx.clock.advance(1000);
    const response = await call(who, 'POST', SUBTENANTS, {
      tenant_id: tenantId,
      code,
      name: code.toUpperCase(),
    });
    assert.equal(response.statusCode, 201, response.body);
    subs[key] = json(response).result.records[0].id as string;
  };
  const subtenantRow = (id: string) => ctx.store.subtenants.findById(id);
  const count = async () =>
    Number(
      (
        await ctx.store.db
          .selectFrom('subtenants')
          .select((eb) => eb.fn.countAll<number>().as('n'))
          .executeTakeFirstOrThrow()
      ).n,
    );
  const codes = (body: any) => body.result.records.map((s: any) => s.code);

  before(async () => {
    ctx = await createTestContext(dialect);
    acme = (await ctx.core.tenants.create({ code: 'acme', name: 'Acme' })).id;
    globex = (await ctx.core.tenants.create({ code: 'globex', name: 'Globex' })).id;
    tokens.admin = await nseSignIn(ctx);
    await makeUser('alice', [[acme, 'admin']]);
    await makeUser('pat', [[acme, 'partner']]);
    await makeUser('rita', [[acme, 'read']]);
    await makeUser('uma', [[acme, 'user']]);
    await makeUser('gus', [[globex, 'admin']]);
    await makeUser('loner', []);
    await create('admin', globex, 'gx_one');
    await create('gus', globex, 'gx_two');
  });
  after(() => ctx.close());

  test('an admin creates a subtenant in its tenant: 201, the reference record, an audit event', async () => {
    ctx.clock.advance(1000);
    const response = await call('alice', 'POST', SUBTENANTS, {
      name: 'MySubtenant',
      code: 'mynewsubtenant',
      tenant_id: acme,
      description: 'First one',
      unknown_field: 'ignored',
    });
    assert.equal(response.statusCode, 201, response.body);
    const body = json(response);
    assert.equal(body.status.user_message, 'Okay. New resource created.');
    assert.equal(body.status.code, 201);
    const record = body.result.records[0];
    subs.mynewsubtenant = record.id;
    assert.deepEqual(record, {
      id: record.id,
      description: 'First one',
      name: 'MySubtenant',
      code: 'mynewsubtenant',
      tenant_id: acme,
      tenant: 'Acme',
    });
    assert.equal((await subtenantRow(record.id))?.tenant_id, acme);
    const events = await ctx.store.db
      .selectFrom('audit_events')
      .selectAll()
      .where('action', '=', 'subtenant.create')
      .where('target_id', '=', record.id)
      .execute();
    assert.equal(events.length, 1);
    assert.equal(events[0]?.tenant_id, acme);
    await create('pat', acme, 'ac_two');
  });

  test('a code is unique within its tenant (409), and may repeat in another tenant', async () => {
    const before = await count();
    const body = isError(
      await call('pat', 'POST', SUBTENANTS, { tenant_id: acme, code: 'ac_two', name: 'Again' }),
      409,
      'ALREADY_EXISTS',
    );
    assert.match(body.status.verbose_message, /ac_two/);
    assert.equal(await count(), before);
    await create('admin', globex, 'ac_two', 'globex_ac_two');
    assert.equal((await subtenantRow(subs.globex_ac_two!))?.tenant_id, globex);
  });

  test('bad fields are 400 naming the field; nothing is created', async () => {
    const before = await count();
    const valid = { tenant_id: acme, code: 'okay', name: 'Okay' };
    for (const [change, field] of [
      [{ code: 'Not-Valid' }, 'code'],
      [{ code: '' }, 'code'],
      [{ code: 12 }, 'code'],
      [{ name: ' ' }, 'name'],
      [{ name: 'n'.repeat(256) }, 'name'],
      [{ description: 'd'.repeat(1025) }, 'description'],
      [{ tenant_id: 42 }, 'tenant_id'],
    ] as const) {
      const body = isError(
        await call('alice', 'POST', SUBTENANTS, { ...valid, ...change }),
        400,
        'VALIDATION_FAILED',
      );
      assert.match(body.status.verbose_message, new RegExp(field), JSON.stringify(change));
    }
    for (const field of ['tenant_id', 'code', 'name']) {
      const rest: Record<string, string> = { ...valid };
      delete rest[field];
      const body = isError(await call('alice', 'POST', SUBTENANTS, rest), 400, 'VALIDATION_FAILED');
      assert.match(body.status.verbose_message, new RegExp(`body/${field} is required`));
    }
    assert.equal(await count(), before);
  });

  test('creating in another tenant answers as for an unknown tenant (404); read and user members get 403', async () => {
    const before = await count();
    const unknown = await call('alice', 'POST', SUBTENANTS, { tenant_id: UNKNOWN_ID, code: 'x', name: 'X' });
    isError(unknown, 404, 'NOT_FOUND');
    for (const tenantId of [globex, 'not-an-id']) {
      const response = await call('alice', 'POST', SUBTENANTS, { tenant_id: tenantId, code: 'x', name: 'X' });
      assert.deepEqual(json(response), json(unknown));
    }
    // The tenant is visible to its read and user members, but they do not manage it.
    for (const who of ['rita', 'uma']) {
      isError(
        await call(who, 'POST', SUBTENANTS, { tenant_id: acme, code: 'x', name: 'X' }),
        403,
        'FORBIDDEN',
      );
    }
    isError(
      await call('loner', 'POST', SUBTENANTS, { tenant_id: acme, code: 'x', name: 'X' }),
      404,
      'NOT_FOUND',
    );
    assert.equal(await count(), before);
  });

  test('lists: root sees all; members who read a tenant see its subtenants; user members and others none', async () => {
    const all = json(await call('admin', 'GET', SUBTENANTS));
    assert.equal(all.result.total_records, 5);
    assert.equal(all.status.user_message, 'Okay. Returned 5 records.');
    for (const who of ['alice', 'pat', 'rita']) {
      const body = json(await call(who, 'GET', SUBTENANTS));
      assert.deepEqual(codes(body), ['ac_two', 'mynewsubtenant'], who);
      assert.equal(body.result.total_records, 2);
      assert.deepEqual(body.result.records[1].tenant, 'Acme');
    }
    for (const who of ['uma', 'loner']) {
      assert.equal(json(await call(who, 'GET', SUBTENANTS)).result.total_records, 0, who);
    }
    assert.deepEqual(codes(json(await call('gus', 'GET', SUBTENANTS))), ['ac_two', 'gx_two', 'gx_one']);
  });

  test('lists filter on tenant_id; another tenant filtered on shows nothing', async () => {
    const globexOnly = json(await call('admin', 'GET', `${SUBTENANTS}?tenant_id=${globex}`));
    assert.deepEqual(codes(globexOnly), ['ac_two', 'gx_two', 'gx_one']);
    assert.ok(globexOnly.result.records.every((s: any) => s.tenant_id === globex && s.tenant === 'Globex'));
    assert.equal(
      json(await call('alice', 'GET', `${SUBTENANTS}?tenant_id=${globex}`)).result.total_records,
      0,
    );
    assert.equal(json(await call('alice', 'GET', `${SUBTENANTS}?tenant_id=${acme}`)).result.total_records, 2);
  });

  test('paging and sorting; an unknown sort key is a 400', async () => {
    const body = json(await call('admin', 'GET', `${SUBTENANTS}?sort_by=code&order_by=asc&offset=1&limit=2`));
    assert.equal(body.result.returned_records, 2);
    assert.equal(body.result.total_records, 5);
    assert.equal(body.result.sort_by, 'code');
    assert.equal(body.result.order_by, 'asc');
    assert.deepEqual(codes(body), ['ac_two', 'gx_one']);
    const byCreated = json(await call('admin', 'GET', `${SUBTENANTS}?order_by=asc&limit=1`));
    assert.deepEqual(codes(byCreated), ['gx_one']);
    isError(await call('admin', 'GET', `${SUBTENANTS}?sort_by=tenant`), 400, 'VALIDATION_FAILED');
    isError(await call('admin', 'GET', `${SUBTENANTS}?offset=-1`), 400, 'VALIDATION_FAILED');
  });

  test("a subtenant by id; another tenant's, an unknown and a malformed id answer the same 404", async () => {
    const own = await call('rita', 'GET', `${SUBTENANTS}/${subs.mynewsubtenant}`);
    assert.equal(own.statusCode, 200);
    assert.equal(json(own).result.records[0].code, 'mynewsubtenant');
    const answers = await Promise.all(
      [subs.gx_one!, UNKNOWN_ID, 'not-an-id'].map((id) => call('alice', 'GET', `${SUBTENANTS}/${id}`)),
    );
    for (const response of answers) {
      isError(response, 404, 'NOT_FOUND');
      assert.deepEqual(json(response), json(answers[0]!));
    }
    // A user member does not see its tenant's subtenants either.
    assert.deepEqual(
      json(await call('uma', 'GET', `${SUBTENANTS}/${subs.mynewsubtenant}`)),
      json(answers[0]!),
    );
  });

  test('admins and partners change name and description; code and tenant may be repeated, not changed', async () => {
    const response = await call('alice', 'PUT', `${SUBTENANTS}/${subs.mynewsubtenant}`, {
      name: 'MyModifiedSubtenant',
      code: 'mynewsubtenant',
      tenant_id: acme,
    });
    assert.equal(response.statusCode, 200, response.body);
    assert.deepEqual(json(response).result.records[0], {
      id: subs.mynewsubtenant,
      description: 'First one',
      name: 'MyModifiedSubtenant',
      code: 'mynewsubtenant',
      tenant_id: acme,
      tenant: 'Acme',
    });
    assert.equal(
      (await call('pat', 'PUT', `${SUBTENANTS}/${subs.mynewsubtenant}`, { description: 'Changed' }))
        .statusCode,
      200,
    );
    const stored = await subtenantRow(subs.mynewsubtenant!);
    assert.equal(stored?.name, 'MyModifiedSubtenant');
    assert.equal(stored?.description, 'Changed');

    for (const [change, field] of [
      [{ code: 'renamed' }, 'code'],
      [{ tenant_id: globex }, 'tenant_id'],
      [{ name: '' }, 'name'],
      [{ name: false }, 'name'],
    ] as const) {
      const body = isError(
        await call('alice', 'PUT', `${SUBTENANTS}/${subs.mynewsubtenant}`, change),
        400,
        'VALIDATION_FAILED',
      );
      assert.match(body.status.verbose_message, new RegExp(field));
    }
    assert.deepEqual(await subtenantRow(subs.mynewsubtenant!), stored);
  });

  test('read and user members may not change subtenants; an admin of another tenant gets the unknown-id 404', async () => {
    const before = await subtenantRow(subs.mynewsubtenant!);
    isError(
      await call('rita', 'PUT', `${SUBTENANTS}/${subs.mynewsubtenant}`, { name: 'Nope' }),
      403,
      'FORBIDDEN',
    );
    isError(
      await call('uma', 'PUT', `${SUBTENANTS}/${subs.mynewsubtenant}`, { name: 'Nope' }),
      404,
      'NOT_FOUND',
    );
    assert.deepEqual(await subtenantRow(subs.mynewsubtenant!), before);

    const globexBefore = await subtenantRow(subs.gx_one!);
    const unknown = await call('alice', 'PUT', `${SUBTENANTS}/${UNKNOWN_ID}`, { name: 'Hijacked' });
    isError(unknown, 404, 'NOT_FOUND');
    assert.deepEqual(
      json(await call('alice', 'PUT', `${SUBTENANTS}/${subs.gx_one}`, { name: 'Hijacked' })),
      json(unknown),
    );
    assert.deepEqual(await subtenantRow(subs.gx_one!), globexBefore);
  });

  test('deleting: others get 404 or 403 and nothing goes; the manager gets 204, then it is gone', async () => {
    const unknown = await call('alice', 'DELETE', `${SUBTENANTS}/${UNKNOWN_ID}`);
    isError(unknown, 404, 'NOT_FOUND');
    assert.deepEqual(json(await call('alice', 'DELETE', `${SUBTENANTS}/${subs.gx_one}`)), json(unknown));
    assert.ok(await subtenantRow(subs.gx_one!));
    isError(await call('rita', 'DELETE', `${SUBTENANTS}/${subs.ac_two}`), 403, 'FORBIDDEN');
    isError(await call('uma', 'DELETE', `${SUBTENANTS}/${subs.ac_two}`), 404, 'NOT_FOUND');
    assert.ok(await subtenantRow(subs.ac_two!));

    const response = await call('alice', 'DELETE', `${SUBTENANTS}/${subs.ac_two}`);
    assert.equal(response.statusCode, 204);
    assert.equal(response.body, '');
    assert.equal(await subtenantRow(subs.ac_two!), undefined);
    isError(await call('alice', 'GET', `${SUBTENANTS}/${subs.ac_two}`), 404, 'NOT_FOUND');
    isError(await call('alice', 'DELETE', `${SUBTENANTS}/${subs.ac_two}`), 404, 'NOT_FOUND');
    const events = await ctx.store.db
      .selectFrom('audit_events')
      .select(['outcome', 'tenant_id'])
      .where('action', '=', 'subtenant.delete')
      .where('target_id', '=', subs.ac_two!)
      .execute();
    assert.deepEqual(events, [{ outcome: 'success', tenant_id: acme }]);
    // Root deletes in any tenant.
    assert.equal((await call('admin', 'DELETE', `${SUBTENANTS}/${subs.gx_two}`)).statusCode, 204);
  });

  test('without credentials every route is a 401', async () => {
    for (const [method, url] of [
      ['GET', SUBTENANTS],
      ['GET', `${SUBTENANTS}/${subs.gx_one}`],
      ['POST', SUBTENANTS],
      ['PUT', `${SUBTENANTS}/${subs.gx_one}`],
      ['DELETE', `${SUBTENANTS}/${subs.gx_one}`],
    ] as const) {
      const payload = { tenant_id: acme, code: 'anon', name: 'Anon' };
      const response = await ctx.inject({
        method,
        url,
        ...(method === 'POST' || method === 'PUT' ? { payload } : {}),
      });
      assert.equal(response.statusCode, 401, `${method} ${url}`);
    }
  });
});
