import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { shapeOf, standIn, withValues } from '../../src/store/repositories/compiled-once.js';
import { createTestContext, type TestContext } from '../helpers/context.js';
import { forEachDialect } from '../helpers/dialects.js';

/**
 * Statements compiled once (a sign-in's user lookup and throttle read, the refreshes'
 * compare-and-set) take their values at each call: each call must see its own, and a value left
 * out must stop the statement rather than reach PostgreSQL as NULL.
 */
forEachDialect('Statements compiled once', (dialect) => {
  let ctx: TestContext;

  before(async () => {
    ctx = await createTestContext(dialect);
    await ctx.core.accounts.createUser({ username: 'shape-a', password: 'Shape-of-things-41' });
    await ctx.core.accounts.createUser({ username: 'shape-b', password: 'Shape-of-things-42' });
  });
  after(() => ctx.close());

  /** Active users between two names: two stand-ins, and one value (active = 1) built in. */
  const usernamesBetween = () =>
    shapeOf(
      ctx.store.db
        .selectFrom('users')
        .select('username')
        .where('username', '>=', standIn<string>('low'))
        .where('username', '<=', standIn<string>('high'))
        .where('active', '=', 1)
        .orderBy('username'),
    );

  test('one shape, run with different values, answers for each; values built into it stay', async () => {
    const shape = usernamesBetween();
    assert.deepEqual(
      shape.slots.filter((slot) => 'value' in slot),
      [{ value: 1 }],
    );
    const run = async (low: string, high: string) =>
      (
        await ctx.store.db.executeQuery<{ username: string }>(
          withValues(shape, (key) => (key === 'low' ? low : high)),
        )
      ).rows.map((row) => row.username);
    assert.deepEqual(await run('shape-a', 'shape-b'), ['shape-a', 'shape-b']);
    assert.deepEqual(await run('shape-b', 'shape-z'), ['shape-b']);
    assert.deepEqual(await run('shape-a', 'shape-a'), ['shape-a']);
  });

  test('a value left out throws before anything is sent', () => {
    const shape = usernamesBetween();
    assert.throws(
      () => withValues(shape, (key) => (key === 'low' ? 'shape-a' : undefined)),
      /a statement compiled once lacks a value/,
    );
  });
});
