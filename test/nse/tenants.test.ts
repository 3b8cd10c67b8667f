import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { newId } from '../../src/core/ids.js';
import { INTERRUPTED_JOB_ERROR, JobRunner } from '../../src/core/job-runner.js';
import { GatehouseError } from '../../src/errors.js';
import type { Role } from '../../src/store/repositories/users.js';
import { createTestContext, type TestContext } from '../helpers/context.js';
import { forEachDialect } from '../helpers/dialects.js';
import { bearer, json, nseSignIn } from '../helpers/http.js';
import { holdRow, lockedElsewhere, untilWaitingForLocks } from '../helpers/postgres.js';

const PASSWORD = 'Orchard-lantern-4821';
const UNKNOWN_ID = '01890000-0000-7000-8000-000000000000';
const TENANTS = '/api/v2.1/tenants';
const JOBS = '/api/v2.1/jobs';

forEachDialect('NSE tenants', (dialect) => {
  let ctx: TestContext;
  let system: string;
  let acme: string;
  let globex: string;
  const ids: Record<string, string> = {};
  const tokens: Record<string, string> = {};

  const call = (who: string, method: 'GET' | 'POST' | 'PUT' | 'DELETE', url: string, payload?: object) =>
    ctx.inject({ method, url, headers: bearer(tokens[who]!), ...(payload ? { payload } : {}) });
  const makeUser = async (username: string, tenancies: Array<[string, Role]>) => {
    ctx.clock.advance(1000);
    const user = await ctx.core.accounts.createUser({ username, password: PASSWORD });
    for (const [tenantId, role] of tenancies) {
      await ctx.store.users.addTenancy({
        user_id: user.id,
        tenant_id: tenantId,
        role,
        created_at: ctx.clock.now(),
      });
    }
    ids[username] = user.id;
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
  const tenantRow = (id: string) => ctx.store.tenants.findById(id);
  const auditRows = (action: string, targetId: string) =>
    ctx.store.db
      .selectFrom('audit_events')
      .selectAll()
      .where('action', '=', action)
      .where('target_id', '=', targetId)
      .execute();
  /** Polls the job as root until it is no longer running. */
  const settled = async (jobId: string) => {
    for (let attempt = 0; attempt < 500; attempt++) {
      const job = json(await call('admin', 'GET', `${JOBS}/${jobId}`)).result.records[0];
      if (job.status !== 'running') return job;
      await sleep(10);
    }
    throw new Error(`job ${jobId} still running`);
  };
  const insertJob = async (fields: {
    status: string;
    owner: string | null;
    expiresAt: number | null;
    objectId?: string;
  }) => {
    const now = ctx.clock.now();
    const id = newId(now);
    await ctx.store.jobs.insert({
      id,
      action: 'delete',
      job_summary: 'Delete',
      object_id: fields.objectId ?? '',
      object_type: 'tenants',
      object_name: '',
      status: fields.status,
      status_detail: 'Removed 2 subtenants.',
      last_error: '',
      progress: 30,
      user_id: null,
      tenant_id: null,
      tasks_json: '[]',
      created_at: now,
      updated_at: now,
      lease_owner: fields.owner,
      lease_expires_at: fields.expiresAt,
    });
    return id;
  };

  before(async () => {
    ctx = await createTestContext(dialect);
    system = (await ctx.store.tenants.findByCode('system'))!.id;
    acme = (
      await ctx.core.tenants.create({
        code: 'acme',
        name: 'Acme',
        zuoraAccountName: 'Acme Inc',
        zuoraAccountNumber: 'A00000415',
      })
    ).id;
    ctx.clock.advance(1000);
    globex = (await ctx.core.tenants.create({ code: 'globex', name: 'Globex' })).id;
    tokens.admin = await nseSignIn(ctx);
    await makeUser('alice', [[acme, 'admin']]);
    await makeUser('pat', [[acme, 'partner']]);
    await makeUser('rita', [[acme, 'read']]);
    await makeUser('uma', [[acme, 'user']]);
    await makeUser('gus', [[globex, 'admin']]);
    await makeUser('loner', []);
  });
  after(() => ctx.close());

  test('root lists every tenant in the reference record shape, with usage null', async () => {
    const response = await call('admin', 'GET', TENANTS);
    assert.equal(response.statusCode, 200);
    const body = json(response);
    assert.equal(body.status.user_message, 'Okay. Returned 3 records.');
    assert.equal(body.result.total_records, 3);
    assert.equal(body.result.sort_by, 'created');
    assert.equal(body.result.order_by, 'desc');
    assert.deepEqual(
      body.result.records.map((t: any) => t.code),
      ['globex', 'acme', 'system'],
    );
    assert.deepEqual(body.result.records[1], {
      id: acme,
      name: 'Acme',
      zuora_account_name: 'Acme Inc',
      zuora_account_number: 'A00000415',
      description: '',
      code: 'acme',
      usage: null,
    });
  });

  test('paging and sorting; an unknown sort key is a 400', async () => {
    const body = json(await call('admin', 'GET', `${TENANTS}?sort_by=code&order_by=asc&offset=1&limit=1`));
    assert.equal(body.result.returned_records, 1);
    assert.equal(body.result.total_records, 3);
    assert.equal(body.result.offset, 1);
    assert.equal(body.result.limit, 1);
    assert.deepEqual(
      body.result.records.map((t: any) => t.code),
      ['globex'],
    );
    isError(await call('admin', 'GET', `${TENANTS}?sort_by=usage`), 400, 'VALIDATION_FAILED');
    isError(await call('admin', 'GET', `${TENANTS}?limit=0`), 400, 'VALIDATION_FAILED');
  });

  test('a member sees only the tenants it belongs to, whatever its role; no tenancy, no tenants', async () => {
    for (const who of ['alice', 'rita', 'uma']) {
      const body = json(await call(who, 'GET', TENANTS));
      assert.deepEqual(
        body.result.records.map((t: any) => t.id),
        [acme],
        who,
      );
      assert.equal(body.result.total_records, 1);
    }
    assert.equal(json(await call('loner', 'GET', TENANTS)).result.total_records, 0);
    assert.equal((await ctx.inject({ method: 'GET', url: TENANTS })).statusCode, 401);
  });

  test("a tenant by id; another tenant's, an unknown and a malformed id answer the same 404", async () => {
    const own = await call('uma', 'GET', `${TENANTS}/${acme}`);
    assert.equal(own.statusCode, 200);
    assert.equal(json(own).result.records[0].code, 'acme');
    const answers = await Promise.all(
      [globex, system, UNKNOWN_ID, 'not-an-id'].map((id) => call('alice', 'GET', `${TENANTS}/${id}`)),
    );
    for (const response of answers) {
      isError(response, 404, 'NOT_FOUND');
      assert.deepEqual(json(response), json(answers[0]!));
    }
    assert.equal((await call('admin', 'GET', `${TENANTS}/${globex}`)).statusCode, 200);
  });

  test('root creates a tenant: 201, the record, an audit event', async () => {
    const response = await call('admin', 'POST', TENANTS, {
      name: 'MyNewTenant',
      code: 'my_tenant_1',
      zuora_account_name: 'string',
      zuora_account_number: 'A00000415',
      description: 'DescriptionOfMyTenant',
      unknown_field: 'ignored',
    });
    assert.equal(response.statusCode, 201, response.body);
    const body = json(response);
    assert.equal(body.status.user_message, 'Okay. New resource created.');
    assert.equal(body.status.code, 201);
    const record = body.result.records[0];
    assert.deepEqual(
      { ...record, id: undefined },
      {
        id: undefined,
        name: 'MyNewTenant',
        zuora_account_name: 'string',
        zuora_account_number: 'A00000415',
        description: 'DescriptionOfMyTenant',
        code: 'my_tenant_1',
        usage: null,
      },
    );
    assert.equal((await tenantRow(record.id))?.code, 'my_tenant_1');
    const [event] = await auditRows('tenant.create', record.id);
    assert.equal(event?.actor_id, (await ctx.store.users.findByUsernameKey('admin'))?.id);
    assert.equal(event?.outcome, 'success');
  });

  test('creating: a taken code is 409, bad fields are 400 naming the field', async () => {
    const valid = { name: 'X', code: 'fresh', zuora_account_name: '', zuora_account_number: '' };
    isError(await call('admin', 'POST', TENANTS, { ...valid, code: 'acme' }), 409, 'ALREADY_EXISTS');
    for (const [change, field] of [
      [{ code: 'Bad-Code' }, 'code'],
      [{ code: '' }, 'code'],
      [{ code: 'a'.repeat(65) }, 'code'],
      [{ code: 7 }, 'code'],
      [{ name: '   ' }, 'name'],
      [{ name: 'n'.repeat(256) }, 'name'],
      [{ description: 'd'.repeat(1025) }, 'description'],
      [{ zuora_account_name: 'z'.repeat(256) }, 'zuora_account_name'],
    ] as const) {
      const body = isError(
        await call('admin', 'POST', TENANTS, { ...valid, ...change }),
        400,
        'VALIDATION_FAILED',
      );
      assert.match(body.status.verbose_message, new RegExp(field), JSON.stringify(change));
    }
    for (const field of ['code', 'name', 'zuora_account_name', 'zuora_account_number']) {
      const { [field as keyof typeof valid]: _left, ...rest } = valid;
      const body = isError(await call('admin', 'POST', TENANTS, rest), 400, 'VALIDATION_FAILED');
      assert.match(body.status.verbose_message, new RegExp(`body/${field} is required`));
    }
    assert.equal(await ctx.store.tenants.findByCode('fresh'), undefined);
  });

  test('only root creates tenants: others get 403 and nothing is made', async () => {
    for (const who of ['alice', 'pat', 'uma', 'loner']) {
      isError(
        await call(who, 'POST', TENANTS, {
          name: 'Sneaky',
          code: `sneaky_${who}`,
          zuora_account_name: '',
          zuora_account_number: '',
        }),
        403,
        'FORBIDDEN',
      );
      assert.equal(await ctx.store.tenants.findByCode(`sneaky_${who}`), undefined);
    }
  });

  test('an admin or partner changes its tenant: name, description, billing fields; the code may be repeated', async () => {
    const response = await call('alice', 'PUT', `${TENANTS}/${acme}`, {
      code: 'acme',
      name: 'Acme Corp',
      description: 'Roadrunner supplies',
      zuora_account_name: 'Acme Corporation',
      zuora_account_number: 'A00000999',
    });
    assert.equal(response.statusCode, 200, response.body);
    assert.deepEqual(json(response).result.records[0], {
      id: acme,
      name: 'Acme Corp',
      zuora_account_name: 'Acme Corporation',
      zuora_account_number: 'A00000999',
      description: 'Roadrunner supplies',
      code: 'acme',
      usage: null,
    });
    const partial = await call('pat', 'PUT', `${TENANTS}/${acme}`, { description: 'Anvils too' });
    assert.equal(partial.statusCode, 200);
    const stored = await tenantRow(acme);
    assert.equal(stored?.name, 'Acme Corp');
    assert.equal(stored?.description, 'Anvils too');
    assert.equal((await auditRows('tenant.update', acme)).length, 2);
    assert.equal(
      (await call('admin', 'PUT', `${TENANTS}/${globex}`, { name: 'Globex Corp' })).statusCode,
      200,
    );
  });

  test('changing a tenant: the code cannot change, bad fields are 400, nothing changes', async () => {
    const before = await tenantRow(acme);
    let body = isError(
      await call('alice', 'PUT', `${TENANTS}/${acme}`, { code: 'acme2', name: 'Z' }),
      400,
      'VALIDATION_FAILED',
    );
    assert.match(body.status.verbose_message, /code/);
    body = isError(await call('alice', 'PUT', `${TENANTS}/${acme}`, { name: '' }), 400, 'VALIDATION_FAILED');
    assert.match(body.status.verbose_message, /name/);
    body = isError(await call('alice', 'PUT', `${TENANTS}/${acme}`, { name: 5 }), 400, 'VALIDATION_FAILED');
    assert.match(body.status.verbose_message, /body\/name/);
    assert.deepEqual(await tenantRow(acme), before);
  });

  test('read and user members may not change their tenant (403); nothing changes', async () => {
    const before = await tenantRow(acme);
    for (const who of ['rita', 'uma']) {
      isError(await call(who, 'PUT', `${TENANTS}/${acme}`, { name: 'Hijacked' }), 403, 'FORBIDDEN');
    }
    assert.deepEqual(await tenantRow(acme), before);
  });

  test('an admin of another tenant changing or deleting it gets the unknown-id 404; nothing changes', async () => {
    const before = await tenantRow(globex);
    const unknown = await call('alice', 'PUT', `${TENANTS}/${UNKNOWN_ID}`, { name: 'Hijacked' });
    isError(unknown, 404, 'NOT_FOUND');
    const put = await call('alice', 'PUT', `${TENANTS}/${globex}`, { name: 'Hijacked' });
    assert.deepEqual(json(put), json(unknown));
    const del = await call('alice', 'DELETE', `${TENANTS}/${globex}`);
    assert.deepEqual(json(del), json(await call('alice', 'DELETE', `${TENANTS}/${UNKNOWN_ID}`)));
    isError(del, 404, 'NOT_FOUND');
    assert.deepEqual(await tenantRow(globex), before);
    assert.equal(await ctx.store.jobs.findRunning('delete', 'tenants', globex), undefined);
  });

  test('only root deletes tenants: a member of the tenant gets 403; the system tenant is 412; unknown ids 404', async () => {
    for (const who of ['alice', 'pat', 'uma']) {
      isError(await call(who, 'DELETE', `${TENANTS}/${acme}`), 403, 'FORBIDDEN');
    }
    assert.ok(await tenantRow(acme));
    isError(await call('admin', 'DELETE', `${TENANTS}/${system}`), 412, 'PRECONDITION_FAILED');
    assert.ok(await tenantRow(system));
    isError(await call('admin', 'DELETE', `${TENANTS}/${UNKNOWN_ID}`), 404, 'NOT_FOUND');
    isError(await call('admin', 'DELETE', `${TENANTS}/nope`), 404, 'NOT_FOUND');
  });

  test('a tenant holding the last active root users is not deleted (412); with a root elsewhere it is', async () => {
    const keep = (await ctx.core.tenants.create({ code: 'keep', name: 'Keep' })).id;
    const systemId = (await ctx.store.tenants.findByCode('system'))!.id;
    await makeUser('keeper', [[keep, 'root']]);
    tokens.keeper = await nseSignIn(ctx, 'keeper', PASSWORD);
    // The built-in admin stops being root: keeper, of `keep`, is the only root left.
    const demoted = await call('keeper', 'PUT', '/api/v2.1/users/admin', {
      tenancies: [{ tenant_id: systemId, role_name: 'admin' }],
    });
    assert.equal(demoted.statusCode, 200, demoted.body);
    const refused = isError(await call('keeper', 'DELETE', `${TENANTS}/${keep}`), 412, 'PRECONDITION_FAILED');
    assert.match(refused.status.verbose_message, /last active root/);
    assert.ok(await tenantRow(keep));
    // Root again elsewhere: the tenant goes, and root users are left.
    const restored = await call('keeper', 'PUT', '/api/v2.1/users/admin', {
      tenancies: [{ tenant_id: systemId, role_name: 'root' }],
    });
    assert.equal(restored.statusCode, 200, restored.body);
    const accepted = await call('keeper', 'DELETE', `${TENANTS}/${keep}`);
    assert.equal(accepted.statusCode, 202, accepted.body);
    assert.equal((await settled(json(accepted).result.records[0].id)).status, 'successful');
    assert.equal(await tenantRow(keep), undefined);
  });

  test('deleting a tenant is a job: 202, then subtenants, memberships and the sessions of users left without a tenant go', async () => {
    const doomed = (await ctx.core.tenants.create({ code: 'doomed', name: 'Doomed' })).id;
    for (const code of ['north', 'south']) {
      await ctx.store.subtenants.insert({
        id: newId(),
        tenant_id: doomed,
        code,
        name: code,
        description: '',
        created_at: ctx.clock.now(),
        updated_at: ctx.clock.now(),
      });
    }
    await makeUser('solo', [[doomed, 'admin']]);
    await makeUser('duo', [
      [doomed, 'user'],
      [globex, 'read'],
    ]);
    const soloSecond = await nseSignIn(ctx, 'solo', PASSWORD);

    const response = await call('admin', 'DELETE', `${TENANTS}/${doomed}`);
    assert.equal(response.statusCode, 202, response.body);
    const accepted = json(response);
    assert.equal(accepted.status.code, 202);
    const job = accepted.result.records[0];
    assert.equal(job.action, 'delete');
    assert.equal(job.status, 'running');
    assert.equal(job.object_type, 'tenants');
    assert.equal(job.object_id, doomed);
    assert.equal(job.object_name, 'Doomed');
    assert.equal(job.tenant_id, doomed);
    assert.equal(job.user_id, (await ctx.store.users.findByUsernameKey('admin'))?.id);
    assert.deepEqual(job.job_tasks, []);

    const done = await settled(job.id);
    assert.equal(done.status, 'successful', JSON.stringify(done));
    assert.equal(done.progress, 100);
    assert.equal(done.last_error, '');
    assert.match(
      done.status_detail,
      /completed successfully.*2 subtenants and 2 memberships.*1 user left without a tenant/,
    );
    // The tenant is gone, so the job belongs to no tenant any more; object_id still names it.
    assert.equal(done.tenant_id, '');
    assert.equal(done.object_id, doomed);

    assert.equal(await tenantRow(doomed), undefined);
    isError(await call('admin', 'GET', `${TENANTS}/${doomed}`), 404, 'NOT_FOUND');
    const leftovers = await ctx.store.db
      .selectFrom('subtenants')
      .select('id')
      .where('tenant_id', '=', doomed)
      .execute();
    assert.deepEqual(leftovers, []);
    const tenancies = await ctx.store.db
      .selectFrom('tenancies')
      .select('user_id')
      .where('tenant_id', '=', doomed)
      .execute();
    assert.deepEqual(tenancies, []);
    assert.deepEqual(
      (await ctx.store.users.tenancies(ids.duo!)).map((t) => t.tenantId),
      [globex],
    );

    // Every session of the user left without a tenant has ended; the other keeps its own.
    for (const token of [tokens.solo!, soloSecond]) {
      isError(
        await ctx.inject({ method: 'GET', url: TENANTS, headers: bearer(token) }),
        401,
        'SESSION_ENDED',
      );
    }
    const duo = await call('duo', 'GET', TENANTS);
    assert.equal(duo.statusCode, 200);
    assert.deepEqual(
      json(duo).result.records.map((t: any) => t.id),
      [globex],
    );
    // The account itself stays: it may sign in again, and sees no tenant.
    tokens.solo = await nseSignIn(ctx, 'solo', PASSWORD);
    assert.equal(json(await call('solo', 'GET', TENANTS)).result.total_records, 0);
    isError(await call('solo', 'GET', `${JOBS}/${job.id}`), 404, 'NOT_FOUND');

    const [event] = await auditRows('tenant.delete', doomed);
    assert.equal(event?.outcome, 'success');
    assert.equal(event?.target_name, 'doomed');

    isError(await call('admin', 'DELETE', `${TENANTS}/${doomed}`), 404, 'NOT_FOUND');
  });

  test("a member left without a tenant: every session of its ends with the tenant, a lent token's too, and is counted", async () => {
    const lonely = (await ctx.core.tenants.create({ code: 'lonely', name: 'Lonely' })).id;
    await makeUser('castaway', [[lonely, 'user']]);
    // The token's maker manages the member through the tenant going, and keeps another.
    await makeUser('lender-lonely', [
      [lonely, 'admin'],
      [globex, 'admin'],
    ]);
    const made = await call('lender-lonely', 'POST', '/api/v2.1/tokens', {
      name: 'lent',
      user_id: ids.castaway,
    });
    assert.equal(made.statusCode, 201, made.body);
    const opened = await ctx.inject({
      method: 'POST',
      url: '/api/session/login-with-token',
      payload: { token: json(made).result.records[0].token },
    });
    assert.equal(opened.statusCode, 201, opened.body);
    const response = await call('admin', 'DELETE', `${TENANTS}/${lonely}`);
    assert.equal(response.statusCode, 202, response.body);
    const done = await settled(json(response).result.records[0].id);
    assert.equal(done.status, 'successful', JSON.stringify(done));
    // Before: the lent token's session was ended first, as the token's, and left out of the count.
    assert.match(done.status_detail, /ended 2 sessions of 1 user left without a tenant/);
    const reasons = await ctx.store.db
      .selectFrom('sessions')
      .select('revoke_reason')
      .where('user_id', '=', ids.castaway!)
      .execute();
    assert.deepEqual(
      reasons.map((r) => r.revoke_reason),
      ['tenant-deleted', 'tenant-deleted'],
    );
  });

  /**
   * The sessions of members left without a tenant and those of lent tokens left unbacked end in
   * one statement, every row taken in id order (PostgreSQL; a SQLite writer holds the whole file).
   * Before, two statements each in id order: a member's session was taken while a token's session
   * with a lower id was still to come, against the order of any other statement taking both
   * (found by review, reading the code). Shown with the token's session, the lower, held: the
   * member's must not be taken meanwhile.
   */
  test("a tenant's deletion takes the sessions it ends in id order, a stranded member's and an unbacked token's alike", {
    skip: dialect !== 'postgres' && 'row locks are PostgreSQL’s',
  }, async () => {
    const ordered = (await ctx.core.tenants.create({ code: 'ordered', name: 'Ordered' })).id;
    const elsewhere = (await ctx.core.tenants.create({ code: 'elsewhere', name: 'Elsewhere' })).id;
    // The maker keeps a tenant, but manages the borrower only through the one going.
    await makeUser('lender-ordered', [
      [ordered, 'admin'],
      [globex, 'admin'],
    ]);
    await makeUser('borrower-ordered', [[ordered, 'user']]);
    const made = await call('lender-ordered', 'POST', '/api/v2.1/tokens', {
      name: 'lent in order',
      user_id: ids['borrower-ordered'],
    });
    assert.equal(made.statusCode, 201, made.body);
    const opened = await ctx.inject({
      method: 'POST',
      url: '/api/session/login-with-token',
      payload: { token: json(made).result.records[0].token },
    });
    assert.equal(opened.statusCode, 201, opened.body);
    // The borrower keeps a tenant the maker has no say in: the token is left unbacked, not stranded.
    await ctx.store.users.addTenancy({
      user_id: ids['borrower-ordered']!,
      tenant_id: elsewhere,
      role: 'user',
      created_at: ctx.clock.now(),
    });
    // Signed in later: a higher id than the token's session.
    await makeUser('stranded-ordered', [[ordered, 'user']]);
    const sessionOf = async (userId: string, byToken: boolean) =>
      (
        await ctx.store.db
          .selectFrom('sessions')
          .select('id')
          .where('user_id', '=', userId)
          .where('api_token_id', byToken ? 'is not' : 'is', null)
          .executeTakeFirstOrThrow()
      ).id;
    const tokenSession = await sessionOf(ids['borrower-ordered']!, true);
    const memberSession = await sessionOf(ids['stranded-ordered']!, false);
    assert.ok(tokenSession < memberSession);

    const { release } = await holdRow(ctx.store.db, 'sessions', tokenSession);
    let takenMeanwhile: boolean;
    let response: Awaited<ReturnType<typeof call>>;
    try {
      response = await call('admin', 'DELETE', `${TENANTS}/${ordered}`);
      assert.equal(response.statusCode, 202, response.body);
      await untilWaitingForLocks(ctx.store.db, 1);
      takenMeanwhile = await lockedElsewhere(ctx.store.db, 'sessions', memberSession);
    } finally {
      await release();
    }
    assert.equal(takenMeanwhile, false, "the member's session taken while the lower one was waited for");
    const done = await settled(json(response).result.records[0].id);
    assert.equal(done.status, 'successful', JSON.stringify(done));
    assert.match(done.status_detail, /ended 1 session of 1 user left without a tenant/);
    const reasons = await ctx.store.db
      .selectFrom('sessions')
      .select(['id', 'revoke_reason'])
      .where('id', 'in', [tokenSession, memberSession])
      .orderBy('id')
      .execute();
    assert.deepEqual(
      reasons.map((row) => row.revoke_reason),
      ['token-maker-changed', 'tenant-deleted'],
    );
  });

  test('a tenant deleted while its only member is given a new password and another tenant: both go through, no deadlock', async () => {
    const deadlocks: string[] = [];
    ctx.store.observeWarnings((message) => {
      if (message.includes('deadlock')) deadlocks.push(message);
    });
    const failed: string[] = [];
    for (let round = 0; round < 16; round += 1) {
      const leaving = (await ctx.core.tenants.create({ code: `leaving_${round}`, name: 'Leaving' })).id;
      const member = `mover-${round}`;
      // Signed in twice: the deletion ends the sessions of a member left without a tenant.
      await makeUser(member, [[leaving, 'admin']]);
      await nseSignIn(ctx, member, PASSWORD);
      const [deletion, change] = await Promise.all([
        call('admin', 'DELETE', `${TENANTS}/${leaving}`),
        // A round later each time, to meet the deletion's transaction at different points.
        sleep(round % 8).then(() =>
          call('admin', 'PUT', `/api/v2.1/users/${ids[member]}`, {
            password: `Harbour-light-${round}-2031`,
            tenancies: [{ tenant_id: acme, role_name: 'user' }],
          }),
        ),
      ]);
      if (change.statusCode !== 200) failed.push(`${round} change: ${change.statusCode}`);
      assert.equal(deletion.statusCode, 202, deletion.body);
      const done = await settled(json(deletion).result.records[0].id);
      if (done.status !== 'successful') failed.push(`${round} deletion: ${done.last_error}`);
      assert.deepEqual(
        (await ctx.store.users.tenancies(ids[member]!)).map((t) => t.tenantId),
        change.statusCode === 200 ? [acme] : [],
      );
    }
    assert.deepEqual(failed, []);
    // Before (on PostgreSQL): the deletion ended the member's sessions and then removed its
    // tenancy; the change removed the tenancy and then ended the sessions (its new password's).
    assert.deepEqual(deadlocks, []);
  });

  test('asking again while a deletion runs answers with the running job', async () => {
    const busy = (await ctx.core.tenants.create({ code: 'busy', name: 'Busy' })).id;
    const running = await insertJob({
      status: 'running',
      owner: 'another-node',
      expiresAt: ctx.clock.now() + 60_000,
      objectId: busy,
    });
    const response = await call('admin', 'DELETE', `${TENANTS}/${busy}`);
    assert.equal(response.statusCode, 202);
    assert.equal(json(response).result.records[0].id, running);
    assert.ok(await tenantRow(busy));
  });

  test('a deletion cut short by a crash is marked failed at start-up, and asking again finishes it', async () => {
    const halfway = (await ctx.core.tenants.create({ code: 'halfway', name: 'Halfway' })).id;
    await makeUser('stranded', [[halfway, 'admin']]);
    const crashed = await insertJob({
      status: 'running',
      owner: 'crashed-node',
      expiresAt: ctx.clock.now() - 1,
      objectId: halfway,
    });
    const alive = await insertJob({
      status: 'running',
      owner: 'live-node',
      expiresAt: ctx.clock.now() + 60_000,
    });

    ctx = await ctx.restart();
    tokens.admin = await nseSignIn(ctx);
    const failed = json(await call('admin', 'GET', `${JOBS}/${crashed}`)).result.records[0];
    assert.equal(failed.status, 'failed');
    assert.equal(failed.last_error, INTERRUPTED_JOB_ERROR);
    assert.equal(failed.status_detail, 'Removed 2 subtenants.');
    assert.equal(json(await call('admin', 'GET', `${JOBS}/${alive}`)).result.records[0].status, 'running');

    const again = json(await call('admin', 'DELETE', `${TENANTS}/${halfway}`)).result.records[0];
    assert.notEqual(again.id, crashed);
    assert.equal((await settled(again.id)).status, 'successful');
    assert.equal(await tenantRow(halfway), undefined);
  });

  test('recovery leaves live leases and jobs without a lease alone', async () => {
    const expired = await insertJob({
      status: 'running',
      owner: 'gone-node',
      expiresAt: ctx.clock.now() - 1000,
    });
    const live = await insertJob({
      status: 'running',
      owner: 'live-node',
      expiresAt: ctx.clock.now() + 1000,
    });
    const unleased = await insertJob({ status: 'running', owner: null, expiresAt: null });
    const finished = await insertJob({
      status: 'successful',
      owner: 'gone-node',
      expiresAt: ctx.clock.now() - 1000,
    });
    assert.equal(await ctx.core.jobRunner.recoverInterrupted(), 1);
    const status = async (id: string) => (await ctx.store.jobs.findById(id))?.status;
    assert.equal(await status(expired), 'failed');
    assert.equal((await ctx.store.jobs.findById(expired))?.last_error, INTERRUPTED_JOB_ERROR);
    assert.equal(await status(live), 'running');
    assert.equal(await status(unleased), 'running');
    assert.equal(await status(finished), 'successful');
    // Once the live lease lapses without renewal, that job too is recovered.
    ctx.clock.advance(2000);
    assert.ok((await ctx.core.jobRunner.recoverInterrupted()) >= 1);
    assert.equal(await status(live), 'failed');
  });

  test('a job that fails on an unexpected error is told to the observer (a server logs it); a refusal is not', async () => {
    const runner = new JobRunner(ctx.store, ctx.clock, { owner: 'observed-runner' });
    const told: [string, string, unknown][] = [];
    runner.observeUnexpectedFailures((job, error) => told.push([job.id, job.action, error]));
    const fire = new Error('the disk is on fire');
    const failed = await runner.submit({ action: 'test', summary: 'Breaks' }, async () => {
      throw fire;
    });
    const refused = await runner.submit({ action: 'test', summary: 'Refused' }, async () => {
      throw new GatehouseError('PRECONDITION_FAILED', 'not now');
    });
    for (let i = 0; i < 200 && runner.runningCount > 0; i += 1) await sleep(10);
    // Before: the record said "an internal error stopped the job", and nothing said which.
    assert.deepEqual(told, [[failed.id, 'test', fire]]);
    assert.equal(
      (await ctx.store.jobs.findById(failed.id))?.last_error,
      'an internal error stopped the job; run the request again',
    );
    assert.equal((await ctx.store.jobs.findById(refused.id))?.last_error, 'not now');
  });

  test('a runner renews the lease of its running jobs, and drain waits for them and fails them as interrupted', async () => {
    const runner = new JobRunner(ctx.store, ctx.clock, { leaseMs: 300, owner: 'test-runner' });
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const job = await runner.submit({ action: 'test', summary: 'Waits' }, async (control) => {
      await control.report('started', 10);
      await gate;
      await control.report('past the gate', 50);
      return 'never';
    });
    assert.equal(job.status, 'running');
    // Time passes beyond the first lease; the runner's timer renews it, so others leave it alone.
    ctx.clock.advance(1000);
    await sleep(250);
    const other = new JobRunner(ctx.store, ctx.clock, { owner: 'other-runner' });
    await other.recoverInterrupted();
    const row = await ctx.store.jobs.findById(job.id);
    assert.equal(row?.status, 'running');
    assert.equal(row?.status_detail, 'started');
    assert.ok((row?.lease_expires_at ?? 0) > ctx.clock.now());

    const drained = runner.drain();
    let drainedYet = false;
    void drained.then(() => {
      drainedYet = true;
    });
    await sleep(20);
    assert.equal(drainedYet, false, 'drain waits for the running work');
    release();
    await drained;
    const ended = await ctx.store.jobs.findById(job.id);
    assert.equal(ended?.status, 'failed');
    assert.equal(ended?.last_error, INTERRUPTED_JOB_ERROR);
    assert.equal(ended?.lease_expires_at, null);
    await assert.rejects(runner.submit({ action: 'test', summary: 'Too late' }, async () => 'x'));
  });

  test('a job whose lease lapsed and was taken over is not overwritten by its late runner', async () => {
    const runner = new JobRunner(ctx.store, ctx.clock, { leaseMs: 60_000, owner: 'slow-runner' });
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const job = await runner.submit({ action: 'test', summary: 'Slow' }, async (control) => {
      await gate;
      await control.report('late', 90);
      return 'late success';
    });
    await sleep(10);
    ctx.clock.advance(120_000);
    const other = new JobRunner(ctx.store, ctx.clock, { owner: 'rescuer' });
    assert.ok((await other.recoverInterrupted()) >= 1);
    release();
    await runner.drain();
    const row = await ctx.store.jobs.findById(job.id);
    assert.equal(row?.status, 'failed');
    assert.equal(row?.last_error, INTERRUPTED_JOB_ERROR);
  });
});
