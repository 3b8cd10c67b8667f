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
  const gatehouse = async (args: readonly string[], onStderr?: (soFar: string) => void) => {
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    let out = '';
    let err = '';
    stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
    });
    stderr.on('data', (chunk: Buffer) => {
      err += chunk.toString();
      onStderr?.(err);
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

  test('Ctrl-C stops the import at its next batch: the job ends failed, saying how far it came, not left running', async () => {
    const rows = ['username,password,tenant_code,role'];
    for (let i = 1; i <= 5_000; i += 1) rows.push(`sig${i},Strong-pass-phrase-${i},acme,user`);
    writeFileSync(path.join(ctx.config.dataDir, 'many.csv'), `${rows.join('\n')}\n`);
    // As a terminal's Ctrl-C reaches the process, once the import shows its first progress.
    let signalled = false;
    const run = await gatehouse(['import', 'many.csv'], (stderr) => {
      if (!signalled && /of 5,000 users imported/.test(stderr)) {
        signalled = true;
        process.emit('SIGINT', 'SIGINT');
      }
    });
    assert.ok(signalled);
    assert.equal(run.code, 1, run.stderr);
    assert.match(run.stderr, /SIGINT: stopping the import/);
    assert.match(run.stdout, /job \S+: failed: [\d,]+ of 5,000 users imported/);
    const jobs = await ctx.store.db.selectFrom('jobs').select(['status', 'last_error']).execute();
    // Before: the process's SIGINT ended it with the job still running, for a server to fail later.
    assert.deepEqual(
      jobs.filter((job) => job.status === 'running'),
      [],
    );
    const imported = await ctx.store.db
      .selectFrom('users')
      .select((eb) => eb.fn.countAll<number | string>().as('n'))
      .where('username', 'like', 'sig%')
      .executeTakeFirstOrThrow();
    assert.ok(Number(imported.n) < 5_000, `stopped before the end: ${imported.n}`);
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
