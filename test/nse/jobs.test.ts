import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createTestContext, type TestContext } from '../helpers/context.js';
import { forEachDialect } from '../helpers/dialects.js';
import { bearer, json, nseSignIn } from '../helpers/http.js';

forEachDialect('NSE jobs', (dialect) => {
  let ctx: TestContext;
  let acmeId: string;
  let globexId: string;
  let acmeJobs: string[];
  let globexJob: string;
  let systemJob: string;
  let umaId: string;
  const tokens: Record<string, string> = {};
  const get = (who: string, url: string) => ctx.inject({ method: 'GET', url, headers: bearer(tokens[who]!) });

  before(async () => {
    ctx = await createTestContext(dialect);
    acmeId = (await ctx.core.tenants.create({ code: 'acme', name: 'Acme' })).id;
    globexId = (await ctx.core.tenants.create({ code: 'globex', name: 'Globex' })).id;
    await ctx.core.accounts.createUser({
      username: 'alice',
      password: 'rabbit-hole-wonder-1',
      tenantCode: 'acme',
      role: 'admin',
    });
    await ctx.core.accounts.createUser({
      username: 'gus',
      password: 'fring-chicken-88',
      tenantCode: 'globex',
      role: 'read',
    });
    await ctx.core.accounts.createUser({ username: 'loner', password: 'no-tenant-at-all-1' });
    umaId = (
      await ctx.core.accounts.createUser({
        username: 'uma',
        password: 'plain-member-of-acme-1',
        tenantCode: 'acme',
        role: 'user',
      })
    ).id;
    acmeJobs = [];
    for (const name of ['bucket-a', 'bucket-b']) {
      const job = await ctx.core.jobs.create({
        action: 'create',
        summary: 'Create request is successfully submitted',
        objectType: 'sg_buckets',
        objectName: name,
        status: 'successful',
        tenantId: acmeId,
      });
      acmeJobs.push(job.id);
      ctx.clock.advance(1000);
    }
    globexJob = (
      await ctx.core.jobs.create({
        action: 'delete',
        summary: 'Delete',
        status: 'running',
        tenantId: globexId,
      })
    ).id;
    ctx.clock.advance(1000);
    systemJob = (
      await ctx.core.jobs.create({ action: 'maintenance', summary: 'Housekeeping', status: 'successful' })
    ).id;
    tokens.admin = await nseSignIn(ctx);
    tokens.alice = await nseSignIn(ctx, 'alice', 'rabbit-hole-wonder-1');
    tokens.gus = await nseSignIn(ctx, 'gus', 'fring-chicken-88');
    tokens.loner = await nseSignIn(ctx, 'loner', 'no-tenant-at-all-1');
    tokens.uma = await nseSignIn(ctx, 'uma', 'plain-member-of-acme-1');
  });
  after(() => ctx.close());

  test("a tenant member sees its tenants' jobs only, newest first, in the reference record shape", async () => {
    const body = json(await get('alice', '/api/v2.1/jobs'));
    assert.equal(body.result.total_records, 2);
    assert.deepEqual(
      body.result.records.map((j: any) => j.id),
      [...acmeJobs].reverse(),
    );
    const job = body.result.records[0];
    assert.equal(job.object_name, 'bucket-b');
    assert.equal(job.status, 'successful');
    assert.equal(job.tenant_id, acmeId);
    assert.match(job.created, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    assert.deepEqual(job.job_tasks, []);
    const gus = json(await get('gus', '/api/v2.1/jobs'));
    assert.deepEqual(
      gus.result.records.map((j: any) => j.id),
      [globexJob],
    );
    assert.equal(json(await get('loner', '/api/v2.1/jobs')).result.total_records, 0);
  });

  test("a `user` member of a tenant reads its own jobs only, not the tenant's", async () => {
    assert.equal(json(await get('uma', '/api/v2.1/jobs')).result.total_records, 0);
    assert.equal((await get('uma', `/api/v2.1/jobs/${acmeJobs[0]}`)).statusCode, 404);
    const own = await ctx.core.jobs.create({
      action: 'user.import',
      summary: 'Import 1 user (csv)',
      status: 'successful',
      userId: umaId,
    });
    const listed = json(await get('uma', '/api/v2.1/jobs')).result;
    assert.equal(listed.total_records, 1);
    assert.equal(listed.records[0].id, own.id);
    assert.equal((await get('uma', `/api/v2.1/jobs/${own.id}`)).statusCode, 200);
    assert.equal((await get('alice', `/api/v2.1/jobs/${own.id}`)).statusCode, 404, 'filed under no tenant');
    await ctx.store.jobs.deleteByIds([own.id]);
  });

  test('root sees every job; tenant_id filters', async () => {
    assert.equal(json(await get('admin', '/api/v2.1/jobs')).result.total_records, 4);
    const filtered = json(await get('admin', `/api/v2.1/jobs?tenant_id=${globexId}`));
    assert.deepEqual(
      filtered.result.records.map((j: any) => j.id),
      [globexJob],
    );
  });

  test("filtering on another tenant's id shows nothing", async () => {
    const body = json(await get('alice', `/api/v2.1/jobs?tenant_id=${globexId}`));
    assert.equal(body.result.total_records, 0);
    assert.deepEqual(body.result.records, []);
  });

  test('paging and sorting', async () => {
    const body = json(await get('admin', '/api/v2.1/jobs?limit=2&offset=1&sort_by=created&order_by=asc'));
    assert.equal(body.result.returned_records, 2);
    assert.equal(body.result.total_records, 4);
    assert.deepEqual(
      body.result.records.map((j: any) => j.id),
      [acmeJobs[1], globexJob],
    );
    assert.equal((await get('admin', '/api/v2.1/jobs?sort_by=last_error')).statusCode, 400);
  });

  test("a job by id; another tenant's job, a system job, an unknown id and a malformed id all answer the same 404", async () => {
    const own = json(await get('alice', `/api/v2.1/jobs/${acmeJobs[0]}`));
    assert.equal(own.result.total_records, 1);
    assert.equal(own.result.records[0].id, acmeJobs[0]);
    const answers = await Promise.all(
      [globexJob, systemJob, '01890000-0000-7000-8000-000000000000', 'not-an-id'].map((id) =>
        get('alice', `/api/v2.1/jobs/${id}`),
      ),
    );
    for (const response of answers) {
      assert.equal(response.statusCode, 404);
      assert.deepEqual(json(response), json(answers[0]!));
    }
    assert.equal((await get('admin', `/api/v2.1/jobs/${systemJob}`)).statusCode, 200);
  });

  test('jobs survive a restart', async () => {
    ctx = await ctx.restart();
    tokens.admin = await nseSignIn(ctx);
    assert.equal(json(await get('admin', '/api/v2.1/jobs')).result.total_records, 4);
  });
});
