import assert from 'node:assert/strict';
import { randomBytes, scryptSync } from 'node:crypto';
import { Writable } from 'node:stream';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { hash as argon2Hash } from '@node-rs/argon2';
import { hash as bcryptHash } from '@node-rs/bcrypt';
import { createTestContext, type TestContext } from '../helpers/context.js';
import { forEachDialect } from '../helpers/dialects.js';
import { bearer, json, nseSignIn, storwareLogin } from '../helpers/http.js';

const b64 = (bytes: Buffer) => bytes.toString('base64').replace(/=+$/, '');

/** `$scrypt$ln=..,r=..,p=..$salt$hash`, the format Gatehouse documents, made with node:crypto. */
function scryptHash(password: string, log2N: number, r: number, p: number): string {
  const salt = randomBytes(16);
  const key = scryptSync(password, salt, 32, { N: 2 ** log2N, r, p });
  return `$scrypt$ln=${log2N},r=${r},p=${p}$${b64(salt)}$${b64(key)}`;
}

forEachDialect('imported password hashes', (dialect) => {
  let ctx: TestContext;
  let root: string;
  let logs = '';
  /** Every hash and password the test hands over: none may show up in a job, an event or a log. */
  const secrets: string[] = [];

  const importJson = async (rows: object[]) => {
    const response = await ctx.inject({
      method: 'POST',
      url: '/api/v2.1/users/import',
      headers: { ...bearer(root), 'content-type': 'application/json' },
      payload: JSON.stringify(rows),
    });
    assert.equal(response.statusCode, 202, response.body);
    return finished(json(response).result.records[0].id);
  };
  const finished = async (id: string) => {
    for (let attempt = 0; attempt < 600; attempt += 1) {
      const job = json(
        await ctx.inject({ method: 'GET', url: `/api/v2.1/jobs/${id}`, headers: bearer(root) }),
      ).result.records[0];
      if (job.status !== 'running') return job;
      await sleep(25);
    }
    throw new Error('the import job did not finish');
  };
  const signInStatus = async (username: string, password: string) =>
    (await ctx.inject({ method: 'POST', url: '/api/v2.1/auth/signin', payload: { username, password } }))
      .statusCode;

  before(async () => {
    const stream = new Writable({
      write(chunk, _encoding, done) {
        logs += chunk.toString();
        done();
      },
    });
    ctx = await createTestContext(dialect, {}, { logger: { level: 'trace', stream } });
    await ctx.core.tenants.create({ code: 'acme', name: 'Acme' });
    root = await nseSignIn(ctx);
  });
  after(() => ctx.close());

  test('users imported with argon2, bcrypt and scrypt hashes sign in with their original passwords', async () => {
    const users: { username: string; password: string; passwordHash: string }[] = [];
    const add = (username: string, password: string, passwordHash: string) => {
      users.push({ username, password, passwordHash });
      secrets.push(password, passwordHash);
    };
    const password = (name: string) => `${name}-original-secret-${randomBytes(4).toString('hex')}`;
    for (const [name, algorithm] of [
      ['from-argon2id', 2],
      ['from-argon2i', 1],
      ['from-argon2d', 0],
    ] as const) {
      const original = password(name);
      add(
        name,
        original,
        await argon2Hash(original, { algorithm, memoryCost: 4096, timeCost: 2, parallelism: 2 }),
      );
    }
    for (const version of ['2a', '2b', '2y'] as const) {
      const original = password(`bcrypt-${version}`);
      // The variants differ only in their prefix for such passwords; 1.10 of the library writes $2b$.
      add(
        `from-bcrypt-${version}`,
        original,
        (await bcryptHash(original, 4)).replace(/^\$2b\$/, `$${version}$`),
      );
    }
    const scryptOriginal = password('scrypt');
    add('from-scrypt', scryptOriginal, scryptHash(scryptOriginal, 10, 8, 1));

    const job = await importJson(
      users.map((user) => ({
        username: user.username,
        password_hash: user.passwordHash,
        tenant_code: 'acme',
        role: 'user',
      })),
    );
    assert.equal(job.status, 'successful', JSON.stringify(job));
    assert.equal(job.status_detail, `${users.length} of ${users.length} users imported; 0 rows failed`);

    for (const user of users) {
      const stored = await ctx.store.users.findByUsernameKey(user.username);
      assert.ok(stored?.password_hash, `${user.username} has a stored hash`);
      assert.equal(
        await signInStatus(user.username, `${user.password}x`),
        401,
        `${user.username}: wrong password`,
      );
      await nseSignIn(ctx, user.username, user.password);
      await storwareLogin(ctx, user.username, user.password);
    }
  });

  test('a CSV row takes password_hash as a quoted field; a row may not give both password and hash', async () => {
    const original = 'csv-imported-original-77';
    const argon2 = await argon2Hash(original, { algorithm: 2, memoryCost: 2048, timeCost: 1 });
    secrets.push(original, argon2);
    const body = [
      'username,password,password_hash,tenant_code,role',
      `csv-argon2,,"${argon2}",acme,user`,
      `csv-both,Another-fine-password-1,"${argon2}",acme,user`,
      'csv-neither,,,acme,user',
    ].join('\n');
    const response = await ctx.inject({
      method: 'POST',
      url: '/api/v2.1/users/import',
      headers: { ...bearer(root), 'content-type': 'text/csv' },
      payload: `${body}\n`,
    });
    assert.equal(response.statusCode, 202, response.body);
    const job = await finished(json(response).result.records[0].id);
    assert.equal(job.status, 'partially_failed');
    assert.deepEqual(
      job.job_tasks.map((task: { status_detail: string }) => task.status_detail),
      [
        'row 3: give password or password_hash, not both',
        'row 4: a password is required: password, or password_hash',
      ],
    );
    await nseSignIn(ctx, 'csv-argon2', original);
  });

  test('hashes over the cost caps and malformed ones are per-row failures that name the problem', async () => {
    const bcrypt4 = await bcryptHash('whatever-it-was-123', 4);
    const argon2 = await argon2Hash('whatever-it-was-123', { algorithm: 2, memoryCost: 4096, timeCost: 2 });
    const scrypt = scryptHash('whatever-it-was-123', 10, 8, 1);
    const cases: [string, RegExp][] = [
      [bcrypt4.replace('$04$', '$31$'), /^password_hash: bcrypt cost 31 exceeds the cap 14$/],
      [bcrypt4.replace('$04$', '$15$'), /^password_hash: bcrypt cost 15 exceeds the cap 14$/],
      [argon2.replace('m=4096', 'm=4194304'), /argon2id memory m=4194304 KiB exceeds the cap 262144 KiB/],
      [argon2.replace('t=2', 't=1000'), /argon2id iterations t=1000 exceed the cap 10/],
      [argon2.replace('p=1', 'p=64'), /argon2id parallelism p=64 exceeds the cap 16/],
      [scrypt.replace('ln=10', 'ln=24'), /scrypt ln 24 exceeds the cap 20/],
      [scrypt.replace('ln=10', 'ln=20'), /scrypt memory 128·N·r = 1024 MiB exceeds the cap 256 MiB/],
      [
        scrypt.replace('ln=10,r=8,p=1', 'ln=16,r=8,p=16'),
        /scrypt work N·r·p = 2\^23\.0 exceeds the cap 2\^21/,
      ],
      ['not-a-hash-at-all', /password_hash: not a supported hash/],
      ['$1$saltsalt$md5cryptisnotaccepted', /password_hash: not a supported hash/],
      [bcrypt4.slice(0, 40), /not a well-formed bcrypt hash/],
      [argon2.replace('v=19', 'v=16'), /version 16 is not supported/],
      [argon2.replace(/\$[^$]+$/, '$!!!!'), /not a well-formed argon2id PHC string/],
      [scrypt.replace(',p=1', ''), /not a well-formed scrypt hash/],
    ];
    secrets.push(bcrypt4, argon2, scrypt, ...cases.map(([hash]) => hash));
    const before = await ctx.store.users.count();
    const job = await importJson(
      cases.map(([passwordHash], index) => ({
        username: `capped-${index}`,
        password_hash: passwordHash,
        tenant_code: 'acme',
      })),
    );
    assert.equal(job.status, 'failed', JSON.stringify(job));
    assert.equal(await ctx.store.users.count(), before, 'no user was created');
    assert.equal(job.job_tasks.length, cases.length);
    cases.forEach(([, reason], index) => {
      const task = job.job_tasks[index];
      assert.ok(task.status_detail.startsWith(`row ${index + 1}: `), task.status_detail);
      assert.match(task.last_error, reason);
    });
  });

  test('a stored hash past the caps never verifies, so a crafted row cannot stall a sign-in', async () => {
    const original = 'crafted-row-password-1';
    const user = await ctx.core.accounts.createUser({ username: 'handmade', password: original });
    const bcrypt = await bcryptHash(original, 4);
    secrets.push(original, bcrypt);
    // Written past the import check, as a database edited by hand would be.
    await ctx.store.users.update(user.id, { password_hash: bcrypt.replace('$04$', '$20$') });
    const started = Date.now();
    assert.equal(await signInStatus('handmade', original), 401);
    assert.ok(Date.now() - started < 5000, 'the sign-in did not run a cost-20 bcrypt');
    await ctx.store.users.update(user.id, { password_hash: bcrypt });
    assert.equal(await signInStatus('handmade', original), 200);
  });

  test('no password or hash reaches a job, an audit event or a log line', async () => {
    assert.ok(secrets.length > 20, 'the tests above handed over secrets');
    assert.ok(logs.length > 0, 'the logger wrote something');
    const jobs = JSON.stringify([
      await ctx.store.db.selectFrom('jobs').selectAll().execute(),
      await ctx.store.db.selectFrom('import_failures').selectAll().execute(),
    ]);
    const events = JSON.stringify(await ctx.store.db.selectFrom('audit_events').selectAll().execute());
    for (const secret of secrets) {
      assert.ok(!jobs.includes(secret), 'a job holds a password or hash');
      assert.ok(!events.includes(secret), 'an audit event holds a password or hash');
      assert.ok(!logs.includes(secret), 'a log line holds a password or hash');
    }
    const imported = await ctx.store.db
      .selectFrom('audit_events')
      .select('reason')
      .where('action', '=', 'user.create')
      .where('target_name', '=', 'from-scrypt')
      .executeTakeFirst();
    assert.match(imported?.reason ?? '', /password hash imported/);
  });
});
