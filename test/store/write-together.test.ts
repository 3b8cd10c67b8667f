import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Insertable } from 'kysely';
import { sql } from 'kysely';
import { GuardFailed, isUniqueViolation } from '../../src/store/connect.js';
import type { AuditEventTable } from '../../src/store/schema.js';
import {
  asGuardedStatement,
  asOneStatement,
  UnrecordedStatementError,
} from '../../src/store/statement-recorder.js';
import { createTestContext, type TestContext } from '../helpers/context.js';
import { forEachDialect } from '../helpers/dialects.js';
import { heldTransaction } from '../helpers/held-transaction.js';
import { untilWaitingForLocks } from '../helpers/postgres.js';
import { sessionRow } from '../helpers/rows.js';

const event = (id: string, ip: string): Required<Insertable<AuditEventTable>> => ({
  id,
  at: 1_000,
  actor_type: 'user',
  actor_id: null,
  actor_name: 'admin',
  action: 'signin',
  target_type: 'user',
  target_id: null,
  target_name: 'admin',
  tenant_id: null,
  ip,
  outcome: 'success',
  reason: 'password',
});

forEachDialect("Store.writeTogether (a sign-in's writes: one statement on PostgreSQL)", (dialect) => {
  let ctx: TestContext;
  let adminId: string;
  const session = (id: string, userAgent: string) => sessionRow(id, adminId, { user_agent: userAgent });
  const admin = async () => ctx.store.users.findById(adminId);
  const eventIds = async () =>
    (await ctx.store.db.selectFrom('audit_events').select('id').where('id', 'like', 'wt-%').execute())
      .map((row) => row.id)
      .sort();

  before(async () => {
    ctx = await createTestContext(dialect);
    const found = await ctx.store.users.findByUsernameKey('admin');
    assert.ok(found);
    adminId = found.id;
    await ctx.store.users.recordFailedAttempt(adminId, 500, '192.0.2.1');
  });
  after(() => ctx.close());

  test('writes of three tables all land, each value in its place, and the answer of the work comes back', async () => {
    const answer = await ctx.store.writeTogether(async (tx) => {
      await tx.users.update(adminId, { failed_count: 0, locked_until: null, last_success_at: 3_000 });
      await tx.auditEvents.insert(event('wt-1', '198.51.100.9'));
      await tx.sessions.insert(session('wt-session-1', 'agent/1.0'));
      return 'opened';
    });
    assert.equal(answer, 'opened');
    const user = await admin();
    assert.equal(user?.failed_count, 0);
    assert.equal(user?.last_success_at, 3_000);
    // Parameters renumbered wrongly would land in the wrong columns or fail the statement.
    const written = await ctx.store.db
      .selectFrom('audit_events')
      .select(['ip', 'actor_name', 'reason'])
      .where('id', '=', 'wt-1')
      .executeTakeFirst();
    assert.deepEqual(written, { ip: '198.51.100.9', actor_name: 'admin', reason: 'password' });
    const opened = await ctx.store.sessions.findById('wt-session-1');
    assert.equal(opened?.user_agent, 'agent/1.0');
    assert.equal(opened?.secret_hash, 'hash-wt-session-1');
  });

  test('a write that fails leaves none of the others written', async () => {
    await ctx.store.users.recordFailedAttempt(adminId, 4_000, '192.0.2.1');
    const failed = await ctx.store
      .writeTogether(async (tx) => {
        await tx.users.update(adminId, { failed_count: 0, locked_until: null, last_success_at: 5_000 });
        await tx.auditEvents.insert(event('wt-2', '198.51.100.9'));
        await tx.sessions.insert(session('wt-session-1', 'agent/2.0'));
      })
      .then(
        () => undefined,
        (error: unknown) => error,
      );
    assert.ok(isUniqueViolation(failed), `expected a unique violation, got ${String(failed)}`);
    assert.equal((await admin())?.failed_count, 1);
    assert.deepEqual(await eventIds(), ['wt-1']);
  });

  test('the store metrics see one insert on PostgreSQL, the statements of a transaction on SQLite', async () => {
    const kinds: string[] = [];
    ctx.store.observeQueries((timing) => kinds.push(timing.statement));
    try {
      await ctx.store.writeTogether(async (tx) => {
        await tx.users.recordFailedAttempt(adminId, 6_000, '192.0.2.1');
        // A multi-row insert of its own making (bulk-insert.ts), not a Kysely builder's.
        await tx.auditEvents.insertMany([event('wt-7', '198.51.100.9'), event('wt-8', '198.51.100.9')]);
      });
    } finally {
      ctx.store.observeQueries(undefined);
    }
    assert.deepEqual(
      kinds,
      dialect === 'postgres' ? ['insert'] : ['transaction', 'update', 'insert', 'transaction'],
    );
    assert.deepEqual(await eventIds(), ['wt-1', 'wt-7', 'wt-8']);
  });

  if (dialect === 'postgres') {
    test('on PostgreSQL a read is refused, and nothing is written', async () => {
      await assert.rejects(
        ctx.store.writeTogether(async (tx) => {
          await tx.auditEvents.insert(event('wt-3', '198.51.100.9'));
          // Its answer would be empty whatever the store holds: refused rather than wrong.
          await tx.users.findById(adminId);
        }),
        UnrecordedStatementError,
      );
      assert.deepEqual(await eventIds(), ['wt-1', 'wt-7', 'wt-8']);
    });

    test('on PostgreSQL two writes of one table are refused, and nothing is written', async () => {
      await assert.rejects(
        ctx.store.writeTogether(async (tx) => {
          await tx.auditEvents.insert(event('wt-4', '198.51.100.9'));
          await tx.auditEvents.insert(event('wt-5', '198.51.100.9'));
        }),
        /two writes of "audit_events"/,
      );
      assert.deepEqual(await eventIds(), ['wt-1', 'wt-7', 'wt-8']);
    });

    test('a statement with a literal is not joined: its text could hold a "$1" that is no parameter', () => {
      const withLiteral = ctx.store.db
        .updateTable('users')
        .set({ last_failed_ip: sql<string>`'$1'` })
        .where('id', '=', adminId)
        .compile();
      const plain = ctx.store.db.insertInto('audit_events').values(event('wt-6', '198.51.100.9')).compile();
      assert.throws(() => asOneStatement([plain, withLiteral]), /a literal/);
    });
  }
});

forEachDialect(
  "Store.writeGuarded (a sign-in's writes, only while the account stands as it was checked)",
  (dialect) => {
    let ctx: TestContext;
    let userId: string;
    const HASH =
      '$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g';
    /** A sign-in's writes as `#signedIn` makes them: the guard, the event, the session. */
    const signIn = (sessionId: string, passwordChangedAt: number | null) =>
      ctx.store.writeGuarded(async (tx) => {
        if (!(await tx.users.recordPasswordSignIn(userId, 7_000, passwordChangedAt)))
          throw new GuardFailed('changed');
        await tx.auditEvents.insert(event(`wg-${sessionId}`, '198.51.100.10'));
        await tx.sessions.insert(sessionRow(sessionId, userId));
        return 'opened';
      });
    const checkedAt = async () => (await ctx.store.users.findById(userId))?.password_changed_at ?? null;
    const written = async (sessionId: string) => ({
      /** 'none', or when the session was revoked (null: live). */
      session: await ctx.store.sessions.findById(sessionId).then((row) => (row ? row.revoked_at : 'none')),
      event: (
        await ctx.store.db
          .selectFrom('audit_events')
          .select('id')
          .where('id', '=', `wg-${sessionId}`)
          .execute()
      ).length,
    });

    /** Until `count` statements wait for a lock (PostgreSQL), or a moment (SQLite, whose writers queue). */
    const waiting = (count: number) =>
      dialect === 'postgres'
        ? untilWaitingForLocks(ctx.store.db, count)
        : new Promise((resolve) => setTimeout(resolve, 50));

    before(async () => {
      ctx = await createTestContext(dialect);
      const user = await ctx.core.accounts.createUser({
        username: 'guarded',
        password: 'a-long-enough-secret-1',
      });
      userId = user.id;
    });
    after(() => ctx.close());

    test('while the guard holds, every write lands and the answer of the work comes back', async () => {
      await ctx.store.users.recordFailedAttempt(userId, 6_000, '192.0.2.1');
      assert.equal(await signIn('wg-1', await checkedAt()), 'opened');
      assert.deepEqual(await written('wg-1'), { session: null, event: 1 });
      const user = await ctx.store.users.findById(userId);
      assert.equal(user?.failed_count, 0);
      assert.equal(user?.last_success_at, 7_000);
    });

    test('when the guard finds the account changed, nothing is written and the answer is undefined', async () => {
      const before = await checkedAt();
      await ctx.store.users.setPassword(userId, HASH, 8_000);
      await ctx.store.users.recordFailedAttempt(userId, 8_500, '192.0.2.1');
      assert.equal(await signIn('wg-2', before), undefined);
      assert.deepEqual(await written('wg-2'), { session: 'none', event: 0 });
      // The guard's own update did not land either: the failure count stands.
      assert.equal((await ctx.store.users.findById(userId))?.failed_count, 1);
    });

    test('a change holding the row when the sign-in writes: the sign-in waits for it, then writes nothing', async () => {
      const before = await checkedAt();
      const change = await heldTransaction(ctx.store, (tx) => tx.users.setPassword(userId, HASH, 9_000));
      const signedIn = signIn('wg-3', before);
      await waiting(1);
      await change.release();
      assert.equal(await signedIn, undefined);
      assert.deepEqual(await written('wg-3'), { session: 'none', event: 0 });
    });

    if (dialect === 'postgres') {
      test('a change that comes while the sign-in holds the row waits, and ends the new session', async () => {
        // The sign-in made to wait after its guard: another transaction inserts its session's id first.
        const blocker = await heldTransaction(
          ctx.store,
          (tx) => tx.sessions.insert(sessionRow('wg-4', userId)),
          {
            rollBack: true,
          },
        );
        const signedIn = signIn('wg-4', await checkedAt());
        await waiting(1);
        const change = ctx.store.transaction(async (tx) => {
          await tx.users.setPassword(userId, HASH, 10_000);
          await tx.sessions.revokeAllOfUser(userId, 10_000, 'password-set');
        });
        await waiting(2);
        await blocker.release();
        assert.equal(await signedIn, 'opened');
        await change;
        assert.deepEqual(await written('wg-4'), { session: 10_000, event: 1 });
      });

      test('its shapes are checked: the first write a plain update, no delete', () => {
        const insert = ctx.store.db
          .insertInto('audit_events')
          .values(event('wg-5', '198.51.100.9'))
          .compile();
        const update = ctx.store.db
          .updateTable('users')
          .set({ failed_count: 0 })
          .where('id', '=', userId)
          .compile();
        const remove = ctx.store.db.deleteFrom('sessions').where('id', '=', 'wg-5').compile();
        assert.throws(() => asGuardedStatement([insert, update]), /first write .* must be a plain update/);
        assert.throws(() => asGuardedStatement([update, remove]), /after the guard, only one-row inserts/);
        // A second guard's row found changed could not undo the first guard's update.
        const second = ctx.store.db
          .updateTable('api_tokens')
          .set({ last_used_at: 1 })
          .where('id', '=', 'wg-5')
          .compile();
        assert.throws(() => asGuardedStatement([update, second]), /after the guard, only one-row inserts/);
      });
    }
  },
);
