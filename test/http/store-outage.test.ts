import assert from 'node:assert/strict';
import path from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import SQLite from 'better-sqlite3';
import { sql } from 'kysely';
import pg from 'pg';
import { JobRunner, wasInterrupted } from '../../src/core/job-runner.js';
import { ADMIN_PASSWORD, createTestContext, type TestContext } from '../helpers/context.js';
import { json, nseSignIn, storwareLogin } from '../helpers/http.js';
import { POSTGRES_ADMIN_URL, postgresUnavailableReason } from '../helpers/postgres.js';
import { createProxiedPostgresContext, type TcpProxy } from '../helpers/tcp-proxy.js';

const signin = (ctx: TestContext) =>
  ctx.inject({
    method: 'POST',
    url: '/api/v2.1/auth/signin',
    payload: { username: 'admin', password: ADMIN_PASSWORD },
  });

const pgSkip = await postgresUnavailableReason();

describe('PostgreSQL unreachable: 503 in the right envelope, and service resumes by itself [postgres]', {
  skip: pgSkip && `PostgreSQL skipped: ${pgSkip}`,
}, () => {
  let ctx: TestContext;
  let proxy: TcpProxy;
  let close: () => Promise<void>;
  before(async () => {
    ({ ctx, proxy, close } = await createProxiedPostgresContext());
  });
  after(() => close());

  test('503 on both surfaces and on /readyz while the store is gone; 200 again once it is back', async () => {
    const token = await nseSignIn(ctx);
    const cookie = await storwareLogin(ctx);
    await proxy.stop();

    const nse = await signin(ctx);
    assert.equal(nse.statusCode, 503);
    assert.equal(json(nse).status.code, 503);
    assert.match(json(nse).status.verbose_message, /^STORE_UNAVAILABLE/);
    assert.equal(nse.headers['retry-after'], '1');
    const read = await ctx.inject({
      method: 'GET',
      url: '/api/v2.1/jobs',
      headers: { authorization: `Bearer ${token}` },
    });
    assert.equal(read.statusCode, 503);
    const storware = await ctx.inject({
      method: 'GET',
      url: '/api/session/user',
      cookies: { gatehouse_session: cookie },
    });
    assert.equal(storware.statusCode, 503);
    assert.equal(json(storware).errorCode, 'STORE_UNAVAILABLE');
    assert.equal((await ctx.inject({ method: 'GET', url: '/readyz' })).statusCode, 503);
    assert.equal((await ctx.inject({ method: 'GET', url: '/healthz' })).statusCode, 200);

    await proxy.start();
    assert.equal((await ctx.inject({ method: 'GET', url: '/readyz' })).statusCode, 200);
    assert.equal((await signin(ctx)).statusCode, 200);
    const again = await ctx.inject({
      method: 'GET',
      url: '/api/session/user',
      cookies: { gatehouse_session: cookie },
    });
    assert.equal(again.statusCode, 200);
  });

  test('a job whose store goes away ends failed as soon as the store is back, as interrupted (so that its request with the same key runs again), not running until its lease lapses', async () => {
    const runner = new JobRunner(ctx.store, ctx.clock, { leaseMs: 60_000, owner: 'lost-store-runner' });
    const job = await runner.submit({ action: 'test', summary: 'Loses its store' }, async (control) => {
      await control.report('1 of 2 steps', 50);
      await proxy.stop();
      await control.report('2 of 2 steps', 100);
      return 'never';
    });
    await sleep(1500);
    await proxy.start();
    const ended = await endedJob(ctx, job.id);
    assert.equal(ended?.status, 'failed', 'recorded within seconds of the store coming back');
    assert.equal(ended?.last_error, 'interrupted: the database could not be reached; run the request again');
    assert.ok(wasInterrupted(ended?.last_error ?? ''));
    assert.equal(ended?.status_detail, '2 of 2 steps');
    assert.equal(ended?.lease_expires_at, null);
    await runner.drain();
  });

  test('a job whose work succeeded while its store went away is written successful once it is back, not failed (its import would run again)', async () => {
    const runner = new JobRunner(ctx.store, ctx.clock, { leaseMs: 60_000, owner: 'lost-store-success' });
    const job = await runner.submit({ action: 'test', summary: 'Ends in an outage' }, async (control) => {
      await control.report('1 of 1 steps', 50);
      await proxy.stop();
      return 'all done';
    });
    await sleep(1500);
    await proxy.start();
    const ended = await endedJob(ctx, job.id);
    assert.equal(ended?.status, 'successful');
    assert.equal(ended?.status_detail, 'all done');
    assert.equal(ended?.last_error, '');
    await runner.drain();
  });
});

describe('PostgreSQL connections that stop answering without a word (a failover, a partition) [postgres]', {
  skip: pgSkip && `PostgreSQL skipped: ${pgSkip}`,
}, () => {
  let ctx: TestContext;
  let proxy: TcpProxy;
  let close: () => Promise<void>;
  before(async () => {
    ({ ctx, proxy, close } = await createProxiedPostgresContext({ GATEHOUSE_PG_STATEMENT_TIMEOUT: '1s' }));
  });
  after(() => close());

  test('each request answers within the timeout (503), and new connections serve again', async () => {
    // Several connections in the pool, all of them then black-holed.
    const warm = await Promise.all(Array.from({ length: 4 }, () => signin(ctx)));
    assert.deepEqual(
      warm.map((r) => r.statusCode),
      [200, 200, 200, 200],
    );
    proxy.freeze();

    const started = performance.now();
    const statuses: number[] = [];
    for (;;) {
      const attempt = performance.now();
      const answers = await Promise.all(Array.from({ length: 4 }, () => signin(ctx)));
      // A statement with no answer gives up its connection 1 s after its own timeout at most.
      assert.ok(
        performance.now() - attempt < 8000,
        `answered after ${Math.round(performance.now() - attempt)} ms`,
      );
      for (const answer of answers) {
        statuses.push(answer.statusCode);
        if (answer.statusCode !== 200) {
          assert.equal(answer.statusCode, 503);
          assert.match(json(answer).status.verbose_message, /^STORE_UNAVAILABLE/);
        }
      }
      if (answers.every((a) => a.statusCode === 200)) break;
      assert.ok(performance.now() - started < 30_000, `still failing after 30 s: ${statuses.join(' ')}`);
    }
    assert.ok(statuses.includes(503), 'the black-holed connections were used, and failed');
  });
});

describe('A PostgreSQL statement held up past GATEHOUSE_PG_STATEMENT_TIMEOUT [postgres]', {
  skip: pgSkip && `PostgreSQL skipped: ${pgSkip}`,
}, () => {
  let ctx: TestContext;
  before(async () => {
    ctx = await createTestContext('postgres', { GATEHOUSE_PG_STATEMENT_TIMEOUT: '1s' });
  });
  after(() => ctx.close());

  test('is cancelled by PostgreSQL: 503 after the timeout, not a wait for as long as the lock is held', async () => {
    assert.equal((await signin(ctx)).statusCode, 200);
    const holder = new pg.Client({ connectionString: ctx.config.databaseUrl });
    await holder.connect();
    try {
      // Another client (a DBA's maintenance, say) holds the sessions table.
      await holder.query('begin');
      await holder.query('lock table sessions in access exclusive mode');
      const started = performance.now();
      const held = await signin(ctx);
      const waited = performance.now() - started;
      assert.equal(held.statusCode, 503);
      assert.match(json(held).status.verbose_message, /^STORE_UNAVAILABLE/);
      assert.ok(waited >= 900 && waited < 5000, `answered after ${Math.round(waited)} ms`);
      await holder.query('rollback');
      assert.equal((await signin(ctx)).statusCode, 200);
    } finally {
      await holder.end();
    }
  });

  test('a transaction longer than the timeout, each of its statements shorter, is not cut', async () => {
    // Dead after 2 s (the 1 s timeout and as long again): the check is per statement, not per checkout.
    const naps = await ctx.store.db.transaction().execute(async (trx) => {
      let count = 0;
      for (let i = 0; i < 4; i += 1) {
        await sql`select pg_sleep(0.7)`.execute(trx);
        count += 1;
      }
      return count;
    });
    assert.equal(naps, 4);
  });
});

describe('SQLite locked by another process: 503, and service resumes [sqlite]', () => {
  let ctx: TestContext;
  before(async () => {
    ctx = await createTestContext('sqlite');
  });
  after(() => ctx.close());

  test('a write that cannot get the lock within the busy timeout is a 503, then works once the lock is gone', async () => {
    const intruder = new SQLite(path.join(ctx.config.dataDir, 'gatehouse.db'));
    intruder.exec('BEGIN EXCLUSIVE');
    try {
      const response = await signin(ctx);
      assert.equal(response.statusCode, 503);
      assert.match(json(response).status.verbose_message, /^STORE_UNAVAILABLE/);
    } finally {
      intruder.exec('ROLLBACK');
      intruder.close();
    }
    assert.equal((await signin(ctx)).statusCode, 200);
  });

  test('a write waiting for the lock lets the process serve other requests, then goes through', async () => {
    const intruder = new SQLite(path.join(ctx.config.dataDir, 'gatehouse.db'));
    intruder.exec('BEGIN IMMEDIATE');
    let settled = false;
    const pending = signin(ctx).finally(() => {
      settled = true;
    });
    try {
      // Time for the sign-in to hash and reach its write. Were that write to wait for the lock on
      // the event loop's thread (SQLite's own busy timeout), this timer could not fire before the
      // write had given up, and the sign-in below would be a 503.
      await sleep(300);
      const health = await ctx.inject({ method: 'GET', url: '/healthz' });
      assert.equal(health.statusCode, 200);
      assert.equal(settled, false, 'the sign-in is still waiting for the lock');
    } finally {
      intruder.exec('ROLLBACK');
      intruder.close();
    }
    const response = await pending;
    assert.equal(response.statusCode, 200, response.body);
  });
});

/** A logger stream kept in memory: what the operator reads when a request fails. */
function loggedLines(): { stream: Writable; text: () => string } {
  let logged = '';
  const stream = new Writable({
    write(chunk, _encoding, done) {
      logged += chunk.toString();
      done();
    },
  });
  return { stream, text: () => logged };
}

describe('A SQLite store that takes no more writes (a full disk): 503 with its cause logged, and /readyz says so [sqlite]', () => {
  let ctx: TestContext;
  const logs = loggedLines();
  before(async () => {
    ctx = await createTestContext('sqlite', {}, { logger: { level: 'warn', stream: logs.stream } });
  });
  after(() => ctx.close());

  test('sign-ins answer 503 STORE_UNAVAILABLE, never 500; /readyz answers 503 until a write goes through again', async () => {
    // SQLite refuses to grow the file past max_page_count with the same error as a full disk
    // (SQLITE_FULL), and rolls the transaction back by itself as it does then.
    const [{ page_count: pages }] = (
      await sql<{ page_count: number }>`pragma page_count`.execute(ctx.store.db)
    ).rows as [{ page_count: number }];
    await sql.raw(`pragma max_page_count = ${pages}`).execute(ctx.store.db);
    let refused: Awaited<ReturnType<typeof signin>> | undefined;
    try {
      for (let attempt = 0; attempt < 2000 && refused === undefined; attempt += 1) {
        const response = await signin(ctx);
        if (response.statusCode !== 200) refused = response;
      }
      assert.ok(refused, 'a sign-in needed the file to grow');
      assert.equal(refused.statusCode, 503, refused.body);
      assert.match(json(refused).status.verbose_message, /^STORE_UNAVAILABLE/);
      assert.equal(refused.headers['retry-after'], '1');
      const full = logs
        .text()
        .split('\n')
        .find((line) => line.includes('SQLITE_FULL'));
      assert.ok(full, 'the cause is logged');
      assert.equal((JSON.parse(full) as { level: number }).level, 50, 'as an error: it needs an operator');
      assert.doesNotMatch(logs.text(), /no transaction is active/);
      const ready = await ctx.inject({ method: 'GET', url: '/readyz' });
      assert.equal(ready.statusCode, 503);
      assert.equal(json(ready).status, 'store unavailable');
      // A transaction that only reads commits on a full disk too: it proves nothing.
      await ctx.store.transaction((tx) => tx.users.findByUsernameKey('admin'));
      assert.equal((await ctx.inject({ method: 'GET', url: '/readyz' })).statusCode, 503);
      assert.equal((await ctx.inject({ method: 'GET', url: '/healthz' })).statusCode, 200);
    } finally {
      await sql.raw('pragma max_page_count = 1073741823').execute(ctx.store.db);
    }
    assert.equal((await signin(ctx)).statusCode, 200);
    assert.equal((await ctx.inject({ method: 'GET', url: '/readyz' })).statusCode, 200);
  });
});

describe('A PostgreSQL database that turned read-only (a standby after a failover): 503, and /readyz says so [postgres]', {
  skip: pgSkip && `PostgreSQL skipped: ${pgSkip}`,
}, () => {
  let ctx: TestContext;
  let name: string;
  const logs = loggedLines();
  /** Sets the database read-only or writable, and ends its connections so that new ones take it. */
  const setReadOnly = async (on: boolean) => {
    const admin = new pg.Client({ connectionString: POSTGRES_ADMIN_URL });
    await admin.connect();
    try {
      await admin.query(
        `alter database ${name} ${on ? 'set default_transaction_read_only = on' : 'reset default_transaction_read_only'}`,
      );
      await admin.query('select pg_terminate_backend(pid) from pg_stat_activity where datname = $1', [name]);
    } finally {
      await admin.end();
    }
  };
  before(async () => {
    ctx = await createTestContext('postgres', {}, { logger: { level: 'warn', stream: logs.stream } });
    name = new URL(ctx.config.databaseUrl as string).pathname.slice(1);
  });
  after(() => ctx.close());

  test('sign-ins answer 503 STORE_UNAVAILABLE, never 500; /readyz answers 503 until writes go through again', async () => {
    await setReadOnly(true);
    // Asked directly: before any write has been refused.
    for (let attempt = 0; attempt < 2; attempt += 1) {
      assert.equal((await ctx.inject({ method: 'GET', url: '/readyz' })).statusCode, 503);
    }
    const answers: number[] = [];
    // The first requests may meet the pool's ended connections (503 too); then the read-only ones.
    for (let attempt = 0; attempt < 5; attempt += 1) answers.push((await signin(ctx)).statusCode);
    assert.deepEqual(answers, [503, 503, 503, 503, 503]);
    assert.match(logs.text(), /25006/);
    assert.equal((await ctx.inject({ method: 'GET', url: '/readyz' })).statusCode, 503);

    await setReadOnly(false);
    let status = 0;
    for (let attempt = 0; attempt < 5 && status !== 200; attempt += 1)
      status = (await signin(ctx)).statusCode;
    assert.equal(status, 200);
    assert.equal((await ctx.inject({ method: 'GET', url: '/readyz' })).statusCode, 200);
  });
});

/** The job's row once it no longer reads `running`, looked at every 100 ms for up to 5 s. */
async function endedJob(ctx: TestContext, id: string) {
  const until = performance.now() + 5000;
  for (;;) {
    const row = await ctx.store.jobs.findById(id).catch(() => undefined);
    if ((row && row.status !== 'running') || performance.now() > until) return row;
    await sleep(100);
  }
}
