import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, test } from 'node:test';
import { runCli } from '../src/cli/index.js';
import { ADMIN_PASSWORD, createTestContext, type TestContext } from './helpers/context.js';
import { forEachDialect } from './helpers/dialects.js';
import { nseSignIn } from './helpers/http.js';

forEachDialect('CLI import', (dialect) => {
  let ctx: TestContext;

  /** Runs `gatehouse <args>` in this process over the test context's store. */
  const gatehouse = async (args: readonly string[]) => {
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
    const code = await runCli(args, {
      stdin: new PassThrough(),
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
    await ctx.core.tenants.create({ code: 'acme', name: 'Acme' });
  });
  after(() => ctx.close());

  test('gatehouse import FILE imports the rows, shows progress and a summary, and lists failed rows', async () => {
    const rows = ['username,password,tenant_code,role'];
    for (let i = 1; i <= 30; i += 1) rows.push(`cli${i},Strong-pass-phrase-${i},acme,user`);
    rows.push('cli-bad,Strong-pass-phrase-x,nosuch,user');
    writeFileSync(path.join(ctx.config.dataDir, 'users.csv'), `${rows.join('\n')}\n`);
    const run = await gatehouse(['import', 'users.csv']);
    assert.equal(run.code, 1, run.stderr);
    assert.match(run.stdout, /partially_failed: 30 of 31 users imported; 1 rows failed/);
    assert.match(run.stderr, /0 of 31 users imported/);
    assert.match(run.stderr, /row 32: no tenant with the tenant_code given/);
    assert.doesNotMatch(run.stdout + run.stderr, /Strong-pass-phrase/);
    await nseSignIn(ctx, 'cli30', 'Strong-pass-phrase-30');
  });

  test('a clean file exits 0; unknown format and unknown --as user are refused', async () => {
    writeFileSync(
      path.join(ctx.config.dataDir, 'more.jsonl'),
      `${JSON.stringify({ username: 'jsonl1', password: 'Strong-pass-phrase-j', tenant_code: 'acme' })}\n`,
    );
    const clean = await gatehouse(['import', 'more.jsonl']);
    assert.equal(clean.code, 0, clean.stderr);
    assert.match(clean.stdout, /successful: 1 of 1 users imported/);
    writeFileSync(path.join(ctx.config.dataDir, 'users.txt'), 'x');
    assert.equal((await gatehouse(['import', 'users.txt'])).code, 2);
    mkdirSync(path.join(ctx.config.dataDir, 'folder.csv'));
    const folder = await gatehouse(['import', 'folder.csv']);
    assert.equal(folder.code, 2);
    assert.match(folder.stderr, /folder\.csv is not a file/);
    const nobody = await gatehouse(['import', 'more.jsonl', '--as', 'nobody']);
    assert.equal(nobody.code, 1);
    assert.match(nobody.stderr, /no active user "nobody"/);
  });
});
