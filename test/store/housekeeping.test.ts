import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { sql } from 'kysely';
import type { SweepResult } from '../../src/core/housekeeping.js';
import { newId } from '../../src/core/ids.js';
import { createTestContext, startAnotherNode, type TestContext } from '../helpers/context.js';
import { forEachDialect } from '../helpers/dialects.js';
import { bearer, json, nseSignIn, sidOf } from '../helpers/http.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

/**
 * Ids carry the time they were made, from a clock that never goes back within a process
 * (core/ids.ts): the other store's suite, run before in this process, moved it days ahead. A
 * suite's clock starts after every id made so far, as the real clock is in a running server.
 */
function startAfterEveryId(ctx: TestContext): void {
  const latest = Number.parseInt(newId().replace(/-/g, '').slice(0, 12), 16);
  ctx.clock.advance(Math.max(0, latest - ctx.clock.now()) + 1000);
}

forEachDialect('Housekeeping: expired sessions and finished jobs', (dialect) => {
  let ctx: TestContext;
  const sessionExists = async (id: string) => (await ctx.store.sessions.findById(id)) !== undefined;
  /** `count` sessions of the admin, opened now through the core; answers their ids. */
  const openSessions = async (count: number): Promise<string[]> => {
    const admin = await ctx.store.users.findByUsernameKey('admin');
    assert.ok(admin);
    const ids: string[] = [];
    for (let i = 0; i < count; i += 1) {
      const { auth } = await ctx.core.sessions.open(
        { kind: 'user', id: admin.id, name: admin.username },
        {
          kind: 'user',
          history: { lastSuccessAt: null, lastFailedAt: null, lastFailedIp: null },
          meta: { ip: '127.0.0.1', userAgent: 'housekeeping test' },
        },
      );
      if (auth.session) ids.push(auth.session.id);
    }
    return ids;
  };
  const regions = (token: string) =>
    ctx.inject({ method: 'GET', url: '/api/v2.1/auth/regions', headers: bearer(token) });

  before(async () => {
    ctx = await createTestContext(dialect, {
      GATEHOUSE_SESSION_RETENTION: '1d',
      GATEHOUSE_SESSION_MAX_LIFETIME: '12h',
      GATEHOUSE_JOB_RETENTION: '30d',
    });
    startAfterEveryId(ctx);
    await ctx.core.tenants.create({ code: 'acme', name: 'Acme' });
  });
  after(async () => {
    await ctx.close();
  });

  test('a session is deleted once the retention has passed since its expiry; newer ones stay', async () => {
    const old = await nseSignIn(ctx);
    const loggedOut = await nseSignIn(ctx);
    const logout = await ctx.inject({
      method: 'POST',
      url: '/api/session/logout',
      headers: bearer(loggedOut),
    });
    assert.equal(logout.statusCode, 201);
    assert.equal((await regions(loggedOut)).statusCode, 401);
    ctx.clock.advance(12 * HOUR);
    // Signed in at the moment `old` expires: expired too at the sweep, but not for a day yet.
    const recent = await nseSignIn(ctx);
    ctx.clock.advance(DAY + 1000);
    const live = await nseSignIn(ctx);
    assert.equal((await regions(live)).statusCode, 200);

    const swept = await ctx.core.housekeeping.sweep();
    assert.deepEqual(swept, { sessions: 2, jobs: 0 });
    assert.equal(await sessionExists(sidOf(old)), false);
    assert.equal(await sessionExists(sidOf(loggedOut)), false, 'a logged-out session goes as well');
    assert.equal(await sessionExists(sidOf(recent)), true);
    assert.equal(await sessionExists(sidOf(live)), true);
    // The deleted session's token stays refused; the live one keeps working.
    assert.equal((await regions(old)).statusCode, 401);
    assert.equal((await regions(live)).statusCode, 200);
    assert.deepEqual(await ctx.core.housekeeping.sweep(), { sessions: 0, jobs: 0 }, 'nothing twice');

    const metrics = (await ctx.inject({ method: 'GET', url: '/metrics' })).body;
    assert.match(metrics, /^gatehouse_housekeeping_deleted_rows_total\{table="sessions"\} 2$/m);
  });

  test('a backlog larger than one delete is cleared in one sweep', async () => {
    const opened = await openSessions(1203);
    assert.equal(opened.length, 1203);
    ctx.clock.advance(12 * HOUR + DAY + 1000);
    const swept = await ctx.core.housekeeping.sweep();
    assert.ok(swept.sessions >= 1203, `${swept.sessions} deleted`);
    const left = await ctx.store.db.selectFrom('sessions').select('id').where('id', 'in', opened).execute();
    assert.deepEqual(left, []);
  });

  test('a finished job goes with its failed rows and Idempotency-Key; a running or recent one stays', async () => {
    const token = await nseSignIn(ctx);
    const running = await ctx.core.jobs.create({
      action: 'maintenance',
      summary: 'never ends',
      status: 'running',
    });
    const body = 'username,password,tenant_code\nhk-alice,Strong-pass-phrase-1,acme\nhk-bob,short,acme\n';
    const importUsers = () =>
      ctx.inject({
        method: 'POST',
        url: '/api/v2.1/users/import',
        headers: { ...bearer(token), 'content-type': 'text/csv', 'idempotency-key': 'hk-import-1' },
        payload: body,
      });
    const accepted = await importUsers();
    assert.equal(accepted.statusCode, 202);
    const importId: string = json(accepted).result.records[0].id;
    let job: Record<string, unknown> | undefined;
    for (
      let attempt = 0;
      attempt < 400 && job?.status !== 'partially_failed' && job?.status !== 'failed';
      attempt += 1
    ) {
      await sleep(25);
      job = json(
        await ctx.inject({ method: 'GET', url: `/api/v2.1/jobs/${importId}`, headers: bearer(token) }),
      ).result.records[0];
    }
    assert.equal(job?.status, 'partially_failed', JSON.stringify(job));
    assert.equal((await ctx.store.imports.failures(importId, 10)).length, 1);

    ctx.clock.advance(30 * DAY - 1000);
    const recent = await ctx.core.jobs.create({
      action: 'maintenance',
      summary: 'done',
      status: 'successful',
    });
    assert.equal((await ctx.core.housekeeping.sweep()).jobs, 0, 'not 30 days yet');
    ctx.clock.advance(2000);
    const fresh = await nseSignIn(ctx);
    const swept = await ctx.core.housekeeping.sweep();
    assert.equal(swept.jobs, 1);

    const gone = await ctx.inject({
      method: 'GET',
      url: `/api/v2.1/jobs/${importId}`,
      headers: bearer(fresh),
    });
    assert.equal(gone.statusCode, 404);
    assert.deepEqual(await ctx.store.imports.failures(importId, 10), []);
    assert.ok(await ctx.store.jobs.findById(running.id), 'a running job is never deleted');
    assert.ok(await ctx.store.jobs.findById(recent.id));
    // The Idempotency-Key went with its job: the same request now starts a new import.
    const again = await ctx.inject({
      method: 'POST',
      url: '/api/v2.1/users/import',
      headers: { ...bearer(fresh), 'content-type': 'text/csv', 'idempotency-key': 'hk-import-1' },
      payload: body,
    });
    assert.equal(again.statusCode, 202);
    assert.notEqual(json(again).result.records[0].id, importId);
  });

  test('two nodes sweeping the same backlog at once leave no expired session, without error', async () => {
    await openSessions(1000);
    ctx.clock.advance(12 * HOUR + DAY + 1000);
    const other = await startAnotherNode(ctx);
    try {
      const [here, there] = await Promise.all([
        ctx.core.housekeeping.sweep(),
        other.core.housekeeping.sweep(),
      ]);
      assert.ok(here.sessions + there.sessions >= 1000, `${here.sessions} + ${there.sessions}`);
      const left = await ctx.store.db
        .selectFrom('sessions')
        .select('id')
        .where('expires_at', '<', ctx.clock.now() - DAY)
        .execute();
      assert.deepEqual(left, []);
    } finally {
      await other.close();
    }
  });

  test('a serving process sweeps by itself', async () => {
    const expiring = await nseSignIn(ctx);
    ctx.clock.advance(12 * HOUR + DAY + 1000);
    // The sweeps' timer does not hold a process open by itself (a server's socket does): this does.
    const keepAlive = setTimeout(() => {}, 10_000);
    const result = await new Promise<SweepResult>((resolve, reject) => {
      ctx.core.housekeeping.watch({ intervalMs: 20, onSweep: resolve, onError: reject });
    }).finally(() => clearTimeout(keepAlive));
    assert.ok(result.sessions >= 1);
    assert.equal(await sessionExists(sidOf(expiring)), false);
  });
});

forEachDialect('Housekeeping turned off', (dialect) => {
  let ctx: TestContext;
  before(async () => {
    ctx = await createTestContext(dialect, {
      GATEHOUSE_SESSION_RETENTION: 'off',
      GATEHOUSE_JOB_RETENTION: 'off',
    });
  });
  after(async () => {
    await ctx.close();
  });

  test('with both retentions off nothing is deleted, however old', async () => {
    const token = await nseSignIn(ctx);
    const job = await ctx.core.jobs.create({ action: 'maintenance', summary: 'done', status: 'successful' });
    ctx.clock.advance(10_000 * DAY);
    assert.deepEqual(await ctx.core.housekeeping.sweep(), { sessions: 0, jobs: 0 });
    assert.ok(await ctx.store.sessions.findById(sidOf(token)));
    assert.ok(await ctx.store.jobs.findById(job.id));
  });
});

forEachDialect('Housekeeping that fails is counted and left to its next run', (dialect) => {
  let ctx: TestContext;
  before(async () => {
    ctx = await createTestContext(dialect, {
      GATEHOUSE_SESSION_RETENTION: '1d',
      GATEHOUSE_SESSION_MAX_LIFETIME: '12h',
      GATEHOUSE_LOCKOUT_DURATION: '1m',
    });
    startAfterEveryId(ctx);
  });
  after(async () => {
    await ctx.close();
  });

  const failures = async (task: string) => {
    const series = `gatehouse_housekeeping_failures_total{task="${task}"} `;
    const line = (await ctx.core.metrics.text()).split('\n').find((l) => l.startsWith(series));
    return Number(line?.slice(series.length) ?? 0);
  };
  /** Makes every delete from `table` fail, as a store refusing it would (a real refusal, by trigger). */
  const refuseDeletes = async (table: 'login_throttle' | 'sessions') => {
    const statements =
      dialect === 'sqlite'
        ? [
            `create trigger refuse_${table} before delete on ${table} begin select raise(abort, 'refused by a test'); end`,
          ]
        : [
            `create function refuse_${table}() returns trigger language plpgsql as $$ begin raise exception 'refused by a test'; end $$`,
            `create trigger refuse_${table} before delete on ${table} for each statement execute function refuse_${table}()`,
          ];
    for (const statement of statements) await sql.raw(statement).execute(ctx.store.db);
  };
  const wrongSignIn = () =>
    ctx.inject({
      method: 'POST',
      url: '/api/v2.1/auth/signin',
      payload: { username: 'admin', password: 'not-the-password-1' },
      remoteAddress: '198.51.100.44',
    });

  test('a prune of the sign-in counters that fails is counted; the sign-in is answered as ever', async () => {
    await refuseDeletes('login_throttle');
    assert.equal((await wrongSignIn()).statusCode, 401);
    // Past the counters' window and the prunes' interval, the first one has rows to delete.
    ctx.clock.advance(2 * 60_000 + 1000);
    assert.equal((await wrongSignIn()).statusCode, 401);
    assert.ok((await failures('counters')) >= 1, 'the failed prune is counted');
  });

  test('a sweep that fails is counted and told', async () => {
    await nseSignIn(ctx);
    await refuseDeletes('sessions');
    ctx.clock.advance(12 * HOUR + DAY + 1000);
    const keepAlive = setTimeout(() => {}, 10_000);
    const error = await new Promise<unknown>((resolve) => {
      ctx.core.housekeeping.watch({ intervalMs: 20, onError: resolve });
    }).finally(() => clearTimeout(keepAlive));
    assert.match(String(error), /refused by a test/);
    // At least one: the watch goes on sweeping (and failing) every 20 ms while the metrics are read.
    assert.ok((await failures('sweep')) >= 1);
  });
});
