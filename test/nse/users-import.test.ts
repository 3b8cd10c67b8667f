import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { INTERRUPTED_JOB_ERROR } from '../../src/core/job-runner.js';
import { createTestContext, type TestContext } from '../helpers/context.js';
import { forEachDialect } from '../helpers/dialects.js';
import { bearer, json, nseSignIn } from '../helpers/http.js';

const HEADER = 'username,password,firstName,lastName,displayName,email,phone,tenant_code,role';
const goodPassword = (i: number) => `Strong-pass-phrase-${i}`;

forEachDialect('NSE users import', (dialect) => {
  let ctx: TestContext;
  const tokens: Record<string, string> = {};

  const importUsers = (who: string, body: string, contentType = 'text/csv', key?: string) =>
    ctx.inject({
      method: 'POST',
      url: '/api/v2.1/users/import',
      headers: {
        ...bearer(tokens[who]!),
        'content-type': contentType,
        ...(key ? { 'idempotency-key': key } : {}),
      },
      payload: body,
    });

  const finished = async (who: string, id: string) => {
    for (let attempt = 0; attempt < 600; attempt += 1) {
      const job = json(
        await ctx.inject({ method: 'GET', url: `/api/v2.1/jobs/${id}`, headers: bearer(tokens[who]!) }),
      ).result.records[0];
      if (job.status !== 'running') return job;
      await sleep(25);
    }
    throw new Error('the import job did not finish');
  };

  const waitForProgress = async (id: string) => {
    for (let attempt = 0; attempt < 2000; attempt += 1) {
      const job = await ctx.store.jobs.findById(id);
      if (job && job.progress > 0) return;
      await sleep(2);
    }
    throw new Error('the import job reported no progress');
  };

  const userExists = async (name: string) =>
    (await ctx.inject({ method: 'GET', url: `/api/v2.1/users/${name}`, headers: bearer(tokens.admin!) }))
      .statusCode === 200;

  before(async () => {
    ctx = await createTestContext(dialect);
    await ctx.core.tenants.create({ code: 'acme', name: 'Acme' });
    await ctx.core.tenants.create({ code: 'globex', name: 'Globex' });
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
      role: 'user',
    });
    await ctx.core.accounts.createUser({
      username: 'reader',
      password: 'quiet-library-42',
      tenantCode: 'acme',
      role: 'read',
    });
    tokens.admin = await nseSignIn(ctx);
    tokens.alice = await nseSignIn(ctx, 'alice', 'rabbit-hole-wonder-1');
    tokens.gus = await nseSignIn(ctx, 'gus', 'fring-chicken-88');
    tokens.reader = await nseSignIn(ctx, 'reader', 'quiet-library-42');
  });
  after(() => ctx.close());

  test('a CSV import creates the good rows and reports every bad row with its row number', async () => {
    const broken: Record<number, [string, RegExp]> = {
      7: ['bad user!,Strong-pass-phrase-x,,,,,,acme,user', /username must be/],
      20: ['weakling,weakpw1,,,,,,acme,user', /password|characters/i],
      33: ['lost-soul,Strong-pass-phrase-y,,,,,,nosuch,user', /no tenant with the tenant_code given/],
      45: ['alice,Strong-pass-phrase-z,,,,,,acme,user', /already|exists/i],
      58: ['imp1,Strong-pass-phrase-1,,,,,,acme,user', /already|exists/i],
      71: ['spy,Strong-pass-phrase-spy,,,,,,globex,admin', /no tenant with the tenant_code given/],
      84: ['climber,Strong-pass-phrase-c,,,,,,acme,root', /only a root user/],
      97: ['"unbalanced,Strong-pass-phrase-u,,,,,,acme,user', /malformed CSV/],
      110: ['nopassword,,,,,,,acme,user', /password is required/],
      123: ['boss,Strong-pass-phrase-b,,,,,,acme,boss', /role must be one of/],
      // An unquoted comma in a password: the row is refused whole, quoting no piece of it.
      136: ['shifted,Correct-Horse,Battery-Staple-9,,,,,,acme,user', /10 fields where the header has 9/],
      149: ['short,Strong-pass-phrase-s,acme', /3 fields where the header has 9/],
      // A password in the tenant_code column (columns out of place) is not quoted back.
      162: ['swapped,acme,,,,,,Tenant-Column-Secret-7,user', /: no tenant with the tenant_code given$/],
      // A short password that is a piece of the rule's own words leaves them whole.
      175: ['tiny,pass,,,,,,acme,user', /: The password must be at least \d+ characters long\.$/],
    };
    const lines = [HEADER];
    let good = 0;
    for (let row = 2; row <= 201; row += 1) {
      const bad = broken[row];
      if (bad) lines.push(bad[0]);
      else {
        good += 1;
        lines.push(
          `imp${good},${goodPassword(good)},Imp,"Orter, ${good}",,imp${good}@example.com,,acme,user`,
        );
      }
    }
    assert.equal(good, 186);
    const response = await importUsers('alice', `${lines.join('\r\n')}\r\n`);
    assert.equal(response.statusCode, 202, response.body);
    const accepted = json(response);
    assert.equal(accepted.status.code, 202);
    const submitted = accepted.result.records[0];
    assert.equal(submitted.action, 'user.import');
    assert.equal(submitted.status_detail, '0 of 200 users imported');

    const job = await finished('alice', submitted.id);
    assert.equal(job.status, 'partially_failed');
    assert.equal(job.status_detail, '186 of 200 users imported; 14 rows failed');
    assert.match(job.last_error, /14 rows failed/);
    assert.equal(job.job_tasks.length, 14);
    assert.deepEqual(readdirSync(path.join(ctx.config.dataDir, 'imports')), [], 'the spool file is gone');
    const rows = Object.keys(broken).map(Number);
    job.job_tasks.forEach((task: Record<string, any>, index: number) => {
      const row = rows[index]!;
      assert.equal(task.status, 'failed');
      assert.ok(task.status_detail.startsWith(`row ${row}: `), task.status_detail);
      assert.match(task.status_detail, broken[row]![1]);
    });

    assert.ok(await userExists('imp1'));
    assert.ok(await userExists('imp186'));
    await nseSignIn(ctx, 'imp186', goodPassword(186));
    const profile = json(
      await ctx.inject({ method: 'GET', url: '/api/v2.1/users/imp5', headers: bearer(tokens.admin!) }),
    ).result.records[0];
    assert.equal(profile.lastName, 'Orter, 5');
    for (const name of [
      'spy',
      'climber',
      'lost-soul',
      'weakling',
      'nopassword',
      'boss',
      'shifted',
      'short',
      'swapped',
      'tiny',
    ]) {
      assert.equal(await userExists(name), false, name);
    }

    const audit = json(
      await ctx.inject({
        method: 'GET',
        url: '/api/v2.1/audit-events?limit=1000',
        headers: bearer(tokens.admin!),
      }),
    );
    const imports = audit.result.records.filter((e: Record<string, any>) => e.action === 'user.import');
    assert.equal(imports.length, 1);
    assert.equal(imports[0].target_id, submitted.id);
    for (const text of [JSON.stringify(job), JSON.stringify(audit)]) {
      assert.doesNotMatch(
        text,
        /Strong-pass-phrase|weakpw1|Correct-Horse|Battery-Staple|Tenant-Column-Secret/,
      );
    }
  });

  test("an import job is its importer's and root's: a reader of the importer's tenant does not see it, nor its failed rows", async () => {
    const response = await importUsers('alice', `${HEADER}\nstray,Strong-pass-phrase-st,,,,,,globex,user\n`);
    assert.equal(response.statusCode, 202, response.body);
    const id = json(response).result.records[0].id as string;
    const job = await finished('alice', id);
    assert.equal(job.status, 'failed');
    assert.equal(job.tenant_id, '');
    const read = (who: string, url: string) =>
      ctx.inject({ method: 'GET', url: `/api/v2.1${url}`, headers: bearer(tokens[who]!) });
    for (const who of ['reader', 'gus']) {
      assert.equal((await read(who, `/jobs/${id}`)).statusCode, 404, who);
      const listed = json(await read(who, '/jobs?limit=1000')).result.records.map(
        (j: { id: string }) => j.id,
      );
      assert.ok(!listed.includes(id), who);
    }
    for (const who of ['alice', 'admin']) {
      assert.equal((await read(who, `/jobs/${id}`)).statusCode, 200, who);
      const listed = json(await read(who, '/jobs?limit=1000')).result.records.map(
        (j: { id: string }) => j.id,
      );
      assert.ok(listed.includes(id), who);
    }
  });

  test('a line, JSON string, literal or array element longer than 64 KiB is refused whole before any job (the readers build each whole)', async () => {
    const long = 'x'.repeat(70 * 1024);
    const bodies: [string, string][] = [
      [`${HEADER}\nlongline,${goodPassword(1)},${long},,,,,acme,user\n`, 'text/csv'],
      [
        `${JSON.stringify({ username: 'longjson', password: goodPassword(2), firstName: long, tenant_code: 'acme' })}\n`,
        'application/x-ndjson',
      ],
      [
        JSON.stringify([
          { username: 'longarray', password: goodPassword(3), displayName: long, tenant_code: 'acme' },
        ]),
        'application/json',
      ],
      [
        `[{"username":"longnumber","tenant_code":"acme","password":${'9'.repeat(70 * 1024)}}]`,
        'application/json',
      ],
      // One element built of short parts: the parser builds it whole, at ~60 bytes of memory a
      // byte of `{},`, so 16 MiB of them took a gigabyte.
      [
        `[{"username":"manyparts","tenant_code":"acme","x":[${'{},'.repeat(25 * 1024)}{}]}]`,
        'application/json',
      ],
      [
        `[{"username":"manystrings","tenant_code":"acme","x":[${'"ab",'.repeat(15 * 1024)}"ab"]}]`,
        'application/json',
      ],
    ];
    const jobsBefore = json(
      await ctx.inject({ method: 'GET', url: '/api/v2.1/jobs', headers: bearer(tokens.admin!) }),
    ).result.total_records;
    for (const [body, type] of bodies) {
      const refused = await importUsers('admin', body, type);
      assert.equal(refused.statusCode, 400, `${type}: ${refused.body.slice(0, 200)}`);
      assert.match(json(refused).status.verbose_message, /longer than 65536 bytes/);
    }
    const jobsAfter = json(
      await ctx.inject({ method: 'GET', url: '/api/v2.1/jobs', headers: bearer(tokens.admin!) }),
    ).result.total_records;
    assert.equal(jobsAfter, jobsBefore, 'no job started');
    assert.deepEqual(readdirSync(path.join(ctx.config.dataDir, 'imports')), [], 'no spool file left');
    // Escaped quotes and backslashes inside strings are followed, not taken for their end.
    const escaped = JSON.stringify([
      {
        username: 'quoted-one',
        password: goodPassword(4),
        displayName: 'say "hi" \\ bye',
        tenant_code: 'acme',
      },
    ]);
    const accepted = await importUsers('admin', escaped, 'application/json');
    assert.equal(accepted.statusCode, 202, accepted.body);
    assert.equal((await finished('admin', json(accepted).result.records[0].id)).status, 'successful');
  });

  test('lines ended by a CR alone (old Mac files) are rows as readline reads them, counted alike, however long the file', async () => {
    const hash = `$2b$04$abcdefghijklmnopqrstuv${'A'.repeat(31)}`;
    const lines = ['username,password_hash,tenant_code,role'];
    for (let i = 0; i < 3000; i += 1) lines.push(`mac${i},"${hash}",acme,user`);
    const body = `${lines.join('\r')}\r`;
    assert.ok(body.length > 64 * 1024);
    const accepted = await importUsers('admin', body);
    assert.equal(accepted.statusCode, 202, accepted.body);
    assert.equal(json(accepted).result.records[0].status_detail, '0 of 3,000 users imported');
    const job = await finished('admin', json(accepted).result.records[0].id);
    assert.equal(job.status_detail, '3,000 of 3,000 users imported; 0 rows failed');
    // CR LF and LF alike, mixed.
    const mixed = await importUsers(
      'admin',
      `username,password_hash,tenant_code\r\nmix1,"${hash}",acme\nmix2,"${hash}",acme\r\r\n`,
    );
    assert.equal(json(mixed).result.records[0].status_detail, '0 of 2 users imported');
    assert.equal(
      (await finished('admin', json(mixed).result.records[0].id)).status_detail,
      '2 of 2 users imported; 0 rows failed',
    );
  });

  test('a row with a NUL or a broken surrogate pair fails alone, on both stores, before any lookup', async () => {
    const rows = [
      { username: 'nul-one', password: goodPassword(11), tenant_code: 'acme' },
      { username: 'nul-two', password: goodPassword(12), tenant_code: 'acme\u0000' },
      { username: 'nul-three', password: goodPassword(13), tenant_code: 'acme', firstName: '\ud800' },
      { username: 'nul-four', password: goodPassword(14), tenant_code: 'acme' },
    ];
    // JSON.stringify writes the NUL and the lone surrogate as the escapes \u0000 and \ud800.
    const ndjson = `${rows.map((r) => JSON.stringify(r)).join('\n')}\n`;
    assert.match(ndjson, /acme\\u0000/);
    const accepted = await importUsers('admin', ndjson, 'application/x-ndjson');
    assert.equal(accepted.statusCode, 202, accepted.body);
    const job = await finished('admin', json(accepted).result.records[0].id);
    assert.equal(job.status, 'partially_failed', JSON.stringify(job));
    assert.equal(job.status_detail, '2 of 4 users imported; 2 rows failed');
    assert.deepEqual(
      job.job_tasks.map((t: { status_detail: string }) => t.status_detail),
      [
        'row 2: tenant_code holds a NUL character or a broken surrogate pair',
        'row 3: firstName holds a NUL character or a broken surrogate pair',
      ],
    );
    const csv = await importUsers('admin', `${HEADER}\nnul-five,${goodPassword(15)},,,,,,acme\u0000,user\n`);
    assert.equal(csv.statusCode, 202, csv.body);
    const csvJob = await finished('admin', json(csv).result.records[0].id);
    assert.equal(csvJob.status, 'failed');
    assert.match(csvJob.job_tasks[0].status_detail, /row 2: the line holds a NUL character/);
  });

  test('a later batch finds the names an earlier batch took; the lowest 1,000 failed rows are listed, and 1,000 kept', async () => {
    // Rows go in batches of 1,000, each checked while the one before it is written. A well-formed
    // bcrypt hash: nothing to hash, so 2,500 rows take no time.
    const hash = `$2b$04$abcdefghijklmnopqrstuv${'A'.repeat(31)}`;
    const lines = ['username,password_hash,tenant_code,role'];
    for (let i = 0; i < 2500; i += 1) {
      // Data rows are numbered by line: i is row i + 2.
      if (i < 1000) lines.push(`batch${i},"${hash}",acme,user`);
      else if (i < 1600) lines.push(`BATCH${i - 1000},"${hash}",acme,user`);
      else lines.push(`late${i},"${hash}",acme,boss`);
    }
    const response = await importUsers('alice', `${lines.join('\n')}\n`);
    assert.equal(response.statusCode, 202, response.body);
    const job = await finished('alice', json(response).result.records[0].id);
    assert.equal(job.status, 'partially_failed');
    assert.equal(job.status_detail, '1,000 of 2,500 users imported; 1,500 rows failed');
    assert.match(job.last_error, /1,500 rows failed; the first 1,000 are listed/);
    // Rows 1002-1601 name users of the first batch (in other case); 1602-2501 have no such role.
    // The second batch's role failures are found before its names are; the list is by row all the same.
    const listed = job.job_tasks.map((task: Record<string, any>) => task.status_detail);
    assert.equal(listed.length, 1000);
    listed.forEach((detail: string, index: number) => {
      const row = 1002 + index;
      assert.ok(detail.startsWith(`row ${row}: `), detail);
      assert.match(detail, row <= 1601 ? /already exists/ : /role must be one of/);
    });
    assert.ok(await userExists('batch999'));
    assert.equal(await userExists('late1600'), false);
    // The store keeps as many failed rows as the job lists, not every one: a body of bad lines
    // would cost it ~125 bytes for each byte sent.
    const stored = await ctx.store.db
      .selectFrom('import_failures')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('job_id', '=', job.id)
      .executeTakeFirstOrThrow();
    assert.equal(Number(stored.n), 1000);
  });

  test('an Idempotency-Key retry answers the first job and imports nothing twice', async () => {
    const body = [1, 2, 3]
      .map((i) =>
        JSON.stringify({ username: `nd${i}`, password: goodPassword(100 + i), tenant_code: 'acme' }),
      )
      .join('\n');
    const first = await importUsers('alice', body, 'application/x-ndjson', 'import-42');
    assert.equal(first.statusCode, 202, first.body);
    const firstId = json(first).result.records[0].id;
    const retry = await importUsers('alice', body, 'application/x-ndjson', 'import-42');
    assert.equal(retry.statusCode, 202);
    assert.equal(json(retry).result.records[0].id, firstId);
    const job = await finished('alice', firstId);
    assert.equal(job.status, 'successful');
    assert.equal(job.status_detail, '3 of 3 users imported; 0 rows failed');
    const afterDone = await importUsers('alice', body, 'application/x-ndjson', 'import-42');
    assert.equal(json(afterDone).result.records[0].id, firstId);
    assert.equal(json(afterDone).result.records[0].status, 'successful');

    const other = await importUsers(
      'alice',
      `${body}\n`.replace('nd3', 'nd4'),
      'application/x-ndjson',
      'import-42',
    );
    assert.equal(other.statusCode, 409);
    assert.match(json(other).status.verbose_message, /IDEMPOTENCY_KEY_REUSED/);
    assert.equal(await userExists('nd4'), false);

    const jobs = json(
      await ctx.inject({ method: 'GET', url: '/api/v2.1/jobs?limit=100', headers: bearer(tokens.alice!) }),
    );
    const ndjsonImports = jobs.result.records.filter((j: Record<string, any>) => j.object_name === 'ndjson');
    assert.equal(ndjsonImports.length, 1);
  });

  test('callers who may not create users are refused; bad requests are refused whole', async () => {
    const csv = `${HEADER}\nsneaky,${goodPassword(1)},,,,,,globex,user\n`;
    for (const who of ['gus', 'reader']) {
      const response = await importUsers(who, csv);
      assert.equal(response.statusCode, 403, who);
    }
    assert.equal(await userExists('sneaky'), false);
    const anonymous = await ctx.inject({
      method: 'POST',
      url: '/api/v2.1/users/import',
      headers: { 'content-type': 'text/csv' },
      payload: csv,
    });
    assert.equal(anonymous.statusCode, 401);
    const asXml = await importUsers('alice', '<users/>', 'application/xml');
    assert.equal(asXml.statusCode, 415);
    assert.match(json(asXml).status.verbose_message, /text\/csv, application\/json or application\/x-ndjson/);
    const badKey = await importUsers('alice', csv, 'text/csv', 'has space');
    assert.equal(badKey.statusCode, 400);
  });

  test('a JSON array imports element by element, numbering rows from 1; a broken document is refused whole', async () => {
    const users = [
      { username: 'arr1', password: goodPassword(101), tenant_code: 'acme', email: 'arr1@example.com' },
      { username: 'arr2', password: goodPassword(102), tenant_code: 'acme', role: 'read', extra: { a: [1] } },
      { username: 'arr3', password: 12345, tenant_code: 'acme' },
      'not an object',
      { username: 'arr5', password: goodPassword(105), tenant_code: 'acme', __proto__: { role: 'root' } },
    ];
    const response = await importUsers('alice', JSON.stringify(users, null, 2), 'application/json');
    assert.equal(response.statusCode, 202, response.body);
    const accepted = json(response).result.records[0];
    assert.equal(accepted.status_detail, '0 of 5 users imported');
    const job = await finished('alice', accepted.id);
    assert.equal(job.status, 'partially_failed');
    assert.equal(job.status_detail, '3 of 5 users imported; 2 rows failed');
    assert.deepEqual(
      job.job_tasks.map((task: Record<string, string>) => task.status_detail),
      ['row 3: password must be a string', 'row 4: not a JSON object'],
    );
    for (const name of ['arr1', 'arr2', 'arr5']) assert.ok(await userExists(name), name);
    const arr5 = json(
      await ctx.inject({ method: 'GET', url: '/api/v2.1/users/arr5', headers: bearer(tokens.admin!) }),
    ).result.records[0];
    assert.equal(arr5.tenancies[0].role, 'user', 'a __proto__ key grants nothing');

    const before = await ctx.store.users.count();
    for (const broken of [
      '[{"username":"half1","password":"x"}, {"username": ',
      '{"username":"obj"}',
      '[1,2',
      '',
    ]) {
      const refused = await importUsers('alice', broken, 'application/json');
      assert.equal(refused.statusCode, 400, broken);
      assert.match(json(refused).status.verbose_message, /^VALIDATION_FAILED: body must be a JSON array/);
    }
    assert.equal(await ctx.store.users.count(), before, 'nothing imported from a broken document');
    assert.deepEqual(readdirSync(path.join(ctx.config.dataDir, 'imports')), [], 'no spool left behind');
  });

  test('a cross-tenant row is a per-row failure that reads like an unknown tenant', async () => {
    const csv = `${HEADER}\nacme-ok,${goodPassword(7)},,,,,,acme,user\nglobex-spy,${goodPassword(8)},,,,,,globex,user\n`;
    const response = await importUsers('alice', csv);
    const job = await finished('alice', json(response).result.records[0].id);
    assert.equal(job.status, 'partially_failed');
    assert.equal(job.job_tasks[0].status_detail, 'row 3: no tenant with the tenant_code given');
    assert.ok(await userExists('acme-ok'));
    assert.equal(await userExists('globex-spy'), false);
  });

  test('an import stops when its importer is deactivated: no more users are created in its name', async () => {
    await ctx.core.accounts.createUser({
      username: 'impy',
      password: 'importing-all-day-7',
      tenantCode: 'acme',
      role: 'admin',
    });
    tokens.impy = await nseSignIn(ctx, 'impy', 'importing-all-day-7');
    const hash = `$2b$04$abcdefghijklmnopqrstuv${'A'.repeat(31)}`;
    const rows = 30_000;
    const lines = ['username,password_hash,tenant_code,role'];
    for (let i = 0; i < rows; i += 1) lines.push(`impied${i},"${hash}",acme,user`);
    const response = await importUsers('impy', `${lines.join('\n')}\n`);
    assert.equal(response.statusCode, 202, response.body);
    const id = json(response).result.records[0].id as string;
    await waitForProgress(id);
    const deactivated = await ctx.inject({
      method: 'PUT',
      url: '/api/v2.1/users/impy',
      headers: bearer(tokens.admin!),
      payload: { active: false },
    });
    assert.equal(deactivated.statusCode, 200, deactivated.body);
    const job = await finished('admin', id);
    const imported = Number(
      (
        await ctx.store.db
          .selectFrom('users')
          .select((eb) => eb.fn.countAll<number>().as('n'))
          .where('username', 'like', 'impied%')
          .executeTakeFirstOrThrow()
      ).n,
    );
    assert.equal(job.status, 'failed', JSON.stringify(job));
    assert.match(job.last_error, /deactivated/);
    assert.ok(imported > 0 && imported < rows, `${imported} imported`);
  });

  test('an import stopped by a shutdown ends failed (interrupted) and says how many users it did import; the same request with its Idempotency-Key runs again', async () => {
    const hash = `$2b$04$abcdefghijklmnopqrstuv${'A'.repeat(31)}`;
    const rows = 30_000;
    const lines = ['username,password_hash,tenant_code,role'];
    for (let i = 0; i < rows; i += 1) lines.push(`drained${i},"${hash}",acme,user`);
    const body = `${lines.join('\n')}\n`;
    const response = await importUsers('admin', body, 'text/csv', 'drained-import');
    assert.equal(response.statusCode, 202, response.body);
    const id = json(response).result.records[0].id as string;
    // Stopped once its first batch is recorded, while later ones are being written.
    await waitForProgress(id);
    await ctx.core.jobRunner.drain();
    const job = (await ctx.store.jobs.findById(id))!;
    const imported = Number(
      (
        await ctx.store.db
          .selectFrom('users')
          .select((eb) => eb.fn.countAll<number>().as('n'))
          .where('username', 'like', 'drained%')
          .executeTakeFirstOrThrow()
      ).n,
    );
    assert.equal(job.status, 'failed', job.status_detail);
    assert.equal(job.last_error, INTERRUPTED_JOB_ERROR);
    assert.ok(imported > 0 && imported < rows, `${imported} imported`);
    assert.equal(job.status_detail, `${imported.toLocaleString('en-US')} of 30,000 users imported`);
    // The progress of the same report as the detail (it lagged one recording behind).
    assert.equal(job.progress, Math.round((imported / rows) * 100));
    ctx = await ctx.restart();
    tokens.admin = await nseSignIn(ctx);
    // As a release before 2026-12-06 worded it: a job interrupted by the restart of an upgrade.
    await ctx.store.db
      .updateTable('jobs')
      .set({ last_error: 'interrupted: the server stopped while the job was running; run the request again' })
      .where('id', '=', id)
      .execute();

    // As the job's message says, the request is sent again, with its key: it runs again (before,
    // the key answered the dead job for as long as it was kept), and the key names the new job.
    const again = await importUsers('admin', body, 'text/csv', 'drained-import');
    assert.equal(again.statusCode, 202, again.body);
    const againId = json(again).result.records[0].id as string;
    assert.notEqual(againId, id);
    const rerun = await finished('admin', againId);
    assert.equal(rerun.status, 'partially_failed', rerun.status_detail);
    assert.equal(
      rerun.status_detail,
      `${(rows - imported).toLocaleString('en-US')} of 30,000 users imported; ${imported.toLocaleString('en-US')} rows failed`,
    );
    const third = await importUsers('admin', body, 'text/csv', 'drained-import');
    assert.equal(json(third).result.records[0].id, againId);
  });

  test('an import cut short by a restart ends failed with the interrupted reason', async () => {
    const now = ctx.clock.now();
    const id = '00000000-0000-4000-8000-00000000abcd';
    const systemTenant = await ctx.store.tenants.findByCode('system');
    await ctx.store.jobs.insert({
      id,
      action: 'user.import',
      job_summary: 'Import 100,000 users (csv)',
      object_id: '',
      object_type: 'user',
      object_name: 'csv',
      status: 'running',
      status_detail: '41,200 of 100,000 users imported',
      last_error: '',
      progress: 41,
      user_id: null,
      tenant_id: systemTenant?.id ?? null,
      tasks_json: '[]',
      created_at: now,
      updated_at: now,
      lease_owner: 'a-process-that-died',
      lease_expires_at: now - 1,
    });
    ctx = await ctx.restart();
    tokens.admin = await nseSignIn(ctx);
    const job = json(
      await ctx.inject({ method: 'GET', url: `/api/v2.1/jobs/${id}`, headers: bearer(tokens.admin) }),
    ).result.records[0];
    assert.equal(job.status, 'failed');
    assert.equal(job.last_error, INTERRUPTED_JOB_ERROR);
    assert.equal(job.status_detail, '41,200 of 100,000 users imported');
  });
});
