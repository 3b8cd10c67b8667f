import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { PassThrough } from 'node:stream';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { LightMyRequestResponse } from 'fastify';
import { runCli } from '../../src/cli/index.js';
import { ConfigError, loadConfig } from '../../src/config.js';
import { ADMIN_PASSWORD, createTestContext, type TestContext } from '../helpers/context.js';
import { forEachDialect } from '../helpers/dialects.js';
import { bearer, json, nseSignIn, storwareLogin } from '../helpers/http.js';

/** A password that breaks no rule: random, so neither a list, a run nor a name can match it. */
const acceptable = (length: number) => randomBytes(length).toString('base64url').slice(0, length);

/** Passwords every path must refuse for `username`, with the rule the refusal must name. */
function weakPasswords(username: string): [string, RegExp][] {
  const capitalized = `${username[0]?.toUpperCase()}${username.slice(1)}`;
  return [
    ['Password123456', /commonly used or breached password with only digits or symbols added/],
    ['LeaveMeAlone', /commonly used or breached password\./],
    ['Short-pw-1', /at least 12 characters/],
    [acceptable(1025), /at most 1024 characters/],
    // U+FDFA is 18 characters once normalized: the checks' time grows with the normalized text.
    [`${'\uFDFA'.repeat(120)}Zz-9`, /at most 2048 characters long once normalized/],
    [`${capitalized}-2024`, /must not contain the username/],
    // One letter dropped and two characters added: edit distance 3.
    [`${username.slice(0, 4)}${username.slice(5)}!2`, /the username with a few characters changed/],
    ['aaaa1111bbbb', /only repeated characters or sequences/],
    ['My-Gatehouse-Login', /name of the service/],
  ];
}

forEachDialect('password policy on every path that sets a password', (dialect) => {
  let ctx: TestContext;
  let root: string;
  let acme: string;

  const call = (method: 'POST' | 'PUT', url: string, payload: object, token = root) =>
    ctx.inject({ method, url: `/api/v2.1${url}`, headers: bearer(token), payload });

  /** A refusal: 400 PASSWORD_POLICY naming the rule, and the password nowhere in the answer. */
  const refused = (response: LightMyRequestResponse, password: string, rule: RegExp, what: string) => {
    assert.equal(response.statusCode, 400, `${what}: ${response.body}`);
    const verbose = json(response).status.verbose_message as string;
    assert.match(verbose, /^PASSWORD_POLICY: /, what);
    assert.match(verbose, rule, what);
    assert.ok(!response.body.includes(password), `${what}: the answer echoes the password`);
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

  /** Runs `gatehouse <args>` in this process over the test context's store. */
  const gatehouse = async (args: readonly string[], stdin = '') => {
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    let out = '';
    let err = '';
    stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
    });
    stderr.on('data', (chunk: Buffer) => {
      err += chunk.toString();
    });
    const input = new PassThrough();
    input.end(stdin);
    const code = await runCli(args, {
      stdin: input,
      stdout,
      stderr,
      cwd: ctx.config.dataDir,
      env: {
        GATEHOUSE_DATA_DIR: ctx.config.dataDir,
        ...(ctx.config.databaseUrl ? { GATEHOUSE_DATABASE_URL: ctx.config.databaseUrl } : {}),
        GATEHOUSE_ADMIN_PASSWORD: ADMIN_PASSWORD,
        GATEHOUSE_ARGON2_MEMORY_KIB: '1024',
        GATEHOUSE_ARGON2_ITERATIONS: '1',
        GATEHOUSE_LOG_LEVEL: 'silent',
      },
    });
    return { code, stdout: out, stderr: err };
  };

  before(async () => {
    ctx = await createTestContext(dialect);
    acme = (await ctx.core.tenants.create({ code: 'acme', name: 'Acme' })).id;
    root = await nseSignIn(ctx);
  });
  after(() => ctx.close());

  test('NSE POST /users refuses each weak password naming its rule, creates nothing, and accepts 129 characters', async () => {
    const tenancies = [{ tenant_id: acme, role_name: 'user' }];
    const users = await ctx.store.users.count();
    for (const [password, rule] of weakPasswords('winterbottom')) {
      const response = await call('POST', '/users', { username: 'winterbottom', password, tenancies });
      refused(response, password, rule, `create with ${password.slice(0, 20)}`);
    }
    // An e-mail address as username: its local part counts too, with or without separators.
    const byMail = await call('POST', '/users', {
      username: 'john.smith@corp.example',
      password: 'JohnSmith-1980!',
      tenancies,
    });
    refused(byMail, 'JohnSmith-1980!', /must not contain the username/, 'e-mail username');
    assert.equal(await ctx.store.users.count(), users, 'no user was created');

    const long = acceptable(129);
    const created = await call('POST', '/users', { username: 'winterbottom', password: long, tenancies });
    assert.equal(created.statusCode, 201, created.body);
    await nseSignIn(ctx, 'winterbottom', long);
  });

  test('NSE PUT /users/{id} refuses a weak password and keeps the old one', async () => {
    const oldPassword = acceptable(16);
    const user = await ctx.core.accounts.createUser({
      username: 'blackwoodsmith',
      password: oldPassword,
      tenantCode: 'acme',
      role: 'user',
    });
    for (const [password, rule] of weakPasswords('blackwoodsmith')) {
      refused(
        await call('PUT', `/users/${user.id}`, { password }),
        password,
        rule,
        `PUT ${password.slice(0, 20)}`,
      );
    }
    await nseSignIn(ctx, 'blackwoodsmith', oldPassword);
    const long = acceptable(129);
    assert.equal((await call('PUT', `/users/${user.id}`, { password: long })).statusCode, 200);
    await nseSignIn(ctx, 'blackwoodsmith', long);
  });

  test('POST /auth/password refuses a weak new password; the old one still signs in', async () => {
    const oldPassword = acceptable(16);
    await ctx.core.accounts.createUser({
      username: 'fairweathers',
      password: oldPassword,
      tenantCode: 'acme',
      role: 'user',
    });
    const change = (new_password: string) =>
      ctx.inject({
        method: 'POST',
        url: '/api/v2.1/auth/password',
        payload: { username: 'fairweathers', old_password: oldPassword, new_password },
      });
    for (const [password, rule] of weakPasswords('fairweathers')) {
      refused(await change(password), password, rule, `change to ${password.slice(0, 20)}`);
    }
    await storwareLogin(ctx, 'fairweathers', oldPassword);
    const long = acceptable(129);
    assert.equal((await change(long)).statusCode, 200);
    await storwareLogin(ctx, 'fairweathers', long);
  });

  test('an import row with a weak password fails with the rule named and the password nowhere in the job', async () => {
    const weak = weakPasswords('longfellowes');
    const rows = ['username,password,tenant_code,role'];
    for (const [password] of weak) rows.push(`longfellowes,"${password}",acme,user`);
    const long = acceptable(129);
    rows.push(`longfellowes,"${long}",acme,user`);
    const response = await ctx.inject({
      method: 'POST',
      url: '/api/v2.1/users/import',
      headers: { ...bearer(root), 'content-type': 'text/csv' },
      payload: `${rows.join('\n')}\n`,
    });
    assert.equal(response.statusCode, 202, response.body);
    const job = await finished(json(response).result.records[0].id);
    assert.equal(job.status, 'partially_failed', JSON.stringify(job));
    assert.equal(job.job_tasks.length, weak.length);
    weak.forEach(([password, rule], index) => {
      const task = job.job_tasks[index];
      assert.ok(task.status_detail.startsWith(`row ${index + 2}: `), task.status_detail);
      assert.match(task.last_error, rule);
      assert.ok(!JSON.stringify(task).includes(password), 'a job task holds the password');
    });
    await nseSignIn(ctx, 'longfellowes', long);
  });

  test('NSE POST and PUT /nodes refuse weak node passwords', async () => {
    for (const [password, rule] of weakPasswords('backup-node-alpha')) {
      const response = await call('POST', '/nodes', { login: 'backup-node-alpha', password });
      refused(response, password, rule, `node create with ${password.slice(0, 20)}`);
    }
    const created = await call('POST', '/nodes', { login: 'backup-node-alpha', password: acceptable(129) });
    assert.equal(created.statusCode, 201, created.body);
    const id = json(created).result.records[0].id;
    for (const [password, rule] of weakPasswords('backup-node-alpha')) {
      refused(
        await call('PUT', `/nodes/${id}`, { password }),
        password,
        rule,
        `node PUT ${password.slice(0, 20)}`,
      );
    }
  });

  test('the CLI (user create, user passwd) refuses weak passwords, exit 1, naming the rule', async () => {
    for (const [password, rule] of weakPasswords('quartermaster')) {
      const run = await gatehouse(
        [
          'user',
          'create',
          '--username',
          'quartermaster',
          '--password-stdin',
          '--tenant',
          'acme',
          '--role',
          'user',
        ],
        password,
      );
      assert.equal(run.code, 1, run.stderr);
      assert.match(run.stderr, rule);
      assert.ok(!(run.stdout + run.stderr).includes(password), 'the CLI printed the password');
    }
    assert.equal(await ctx.store.users.findByUsernameKey('quartermaster'), undefined, 'no user was created');
    const first = acceptable(20);
    const created = await gatehouse(
      ['user', 'create', '--username', 'quartermaster', '--password-stdin'],
      first,
    );
    assert.equal(created.code, 0, created.stderr);
    for (const [password, rule] of weakPasswords('quartermaster')) {
      const run = await gatehouse(
        ['user', 'passwd', '--username', 'quartermaster', '--password-stdin'],
        password,
      );
      assert.equal(run.code, 1, run.stderr);
      assert.match(run.stderr, rule);
    }
    await nseSignIn(ctx, 'quartermaster', first);
  });
});

test('GATEHOUSE_ADMIN_PASSWORD must pass the policy: the start-up error names the rule, not the password', () => {
  for (const [password, rule] of [
    ['Password123456', /commonly used/],
    ['Administrator-2024', /username/],
    ['Gatehouse-admin-1', /username|service/],
  ] as const) {
    assert.throws(
      () => loadConfig({ GATEHOUSE_ADMIN_PASSWORD: password }),
      (error: Error) =>
        error instanceof ConfigError &&
        /GATEHOUSE_ADMIN_PASSWORD: /.test(error.message) &&
        rule.test(error.message) &&
        !error.message.includes(password),
    );
  }
  assert.equal(loadConfig({ GATEHOUSE_ADMIN_PASSWORD: ADMIN_PASSWORD }).adminPassword, ADMIN_PASSWORD);
});
