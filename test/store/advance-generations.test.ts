import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createTestContext, type TestContext } from '../helpers/context.js';
import { forEachDialect } from '../helpers/dialects.js';
import { sessionRow } from '../helpers/rows.js';

/**
 * The refreshes' compare-and-set (`sessions.advanceTokenGenerations`), whose statement is compiled
 * once per batch size and then given each batch's values: every value must land in its own place,
 * for a size met the first time, met again, and past the sizes kept.
 */
forEachDialect("sessions.advanceTokenGenerations (a batch of refreshes' compare-and-set)", (dialect) => {
  let ctx: TestContext;
  let adminId: string;
  let counter = 0;

  /** `size` fresh sessions at generations 0, 3, 6, …: a batch whose every value differs. */
  const freshSessions = async (size: number) => {
    const rows = Array.from({ length: size }, (_, index) =>
      sessionRow(`adv-${counter++}`, adminId, { token_generation: 3 * index }),
    );
    await ctx.store.db.insertInto('sessions').values(rows).execute();
    return rows.map((row) => ({ id: row.id as string, from: row.token_generation as number }));
  };
  const stateOf = async (ids: readonly string[]) =>
    new Map(
      (
        await ctx.store.db
          .selectFrom('sessions')
          .select(['id', 'token_generation', 'prior_token_valid_until'])
          .where('id', 'in', ids)
          .execute()
      ).map((row) => [row.id, { generation: row.token_generation, priorUntil: row.prior_token_valid_until }]),
    );

  before(async () => {
    ctx = await createTestContext(dialect);
    const found = await ctx.store.users.findByUsernameKey('admin');
    assert.ok(found);
    adminId = found.id;
  });

  after(async () => {
    await ctx?.close();
  });

  for (const [label, size] of [
    ['one refresh', 1],
    ['a batch of 12', 12],
    ['a batch of 12 again (its statement kept)', 12],
    ['a batch of 100 (past the sizes kept)', 100],
  ] as const) {
    test(`${label}: the sessions at their expected generation advance, the others do not`, async () => {
      const advances = await freshSessions(size);
      // Every third of them was refreshed meanwhile, or ended: those must lose.
      const stale = new Set(advances.filter((_, index) => index % 3 === 1).map((advance) => advance.id));
      const ended = new Set(advances.filter((_, index) => index % 3 === 2).map((advance) => advance.id));
      if (stale.size > 0) {
        await ctx.store.db
          .updateTable('sessions')
          .set((eb) => ({ token_generation: eb('token_generation', '+', 1) }))
          .where('id', 'in', [...stale])
          .execute();
      }
      if (ended.size > 0) {
        await ctx.store.db
          .updateTable('sessions')
          .set({ revoked_at: 3_000, revoke_reason: 'logout' })
          .where('id', 'in', [...ended])
          .execute();
      }
      const priorUntil = 7_000_000 + size;

      const moved = await ctx.store.sessions.advanceTokenGenerations(advances, priorUntil);

      const winners = advances.filter((advance) => !stale.has(advance.id) && !ended.has(advance.id));
      assert.deepEqual([...moved].sort(), winners.map((advance) => advance.id).sort());
      const after = await stateOf(advances.map((advance) => advance.id));
      for (const advance of advances) {
        const state = after.get(advance.id);
        if (stale.has(advance.id)) {
          assert.deepEqual(state, { generation: advance.from + 1, priorUntil: null }, advance.id);
        } else if (ended.has(advance.id)) {
          assert.deepEqual(state, { generation: advance.from, priorUntil: null }, advance.id);
        } else {
          assert.deepEqual(state, { generation: advance.from + 1, priorUntil }, advance.id);
        }
      }
    });
  }
});
