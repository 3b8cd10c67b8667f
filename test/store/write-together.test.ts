import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Insertable } from 'kysely';
import { sql } from 'kysely';
import { isUniqueViolation } from '../../src/store/connect.js';
import type { AuditEventTable } from '../../src/store/schema.js';
import { asOneStatement, UnrecordedStatementError } from '../../src/store/statement-recorder.js';
import { createTestContext, type TestContext } from '../helpers/context.js';
import { forEachDialect } from '../helpers/dialects.js';
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
