import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createTestContext, type TestContext } from '../helpers/context.js';
import { forEachDialect } from '../helpers/dialects.js';

forEachDialect('Transactions ended to break a deadlock', (dialect) => {
  let ctx: TestContext;
  before(async () => {
    ctx = await createTestContext(dialect);
  });
  after(() => ctx.close());

  // SQLite runs one writing transaction at a time: two cannot wait for each other.
  if (dialect !== 'postgres') return;

  /**
   * Two transactions that take the same two rows in opposite orders: PostgreSQL ends one of them
   * to break the deadlock (after its deadlock_timeout, 1 s), and the store runs it again.
   */
  test('a transaction PostgreSQL ended to break a deadlock is run again, and both commit', async () => {
    const warnings: string[] = [];
    ctx.store.observeWarnings((message) => warnings.push(message));
    const [first, second] = await Promise.all(
      ['deadlock-a', 'deadlock-b'].map((username) =>
        ctx.core.accounts.createUser({ username, password: 'Deadlock-phrase-2031' }),
      ),
    );
    const ids = [first!.id, second!.id];
    const taken: (() => void)[] = [];
    const takenFirst = ids.map(() => new Promise<void>((resolve) => taken.push(resolve)));
    const runs = [0, 0];
    const crossing = (side: 0 | 1) =>
      ctx.store.transaction(async (tx) => {
        runs[side] = (runs[side] ?? 0) + 1;
        await tx.users.update(ids[side]!, { first_name: `run ${runs[side]}`, updated_at: 1 });
        taken[side]!();
        // Each waits until the other holds its first row, then asks for that row.
        await takenFirst[1 - side];
        await tx.users.update(ids[1 - side]!, { last_name: `by ${side}`, updated_at: 1 });
        return side;
      });
    // Before: one of the two rejected with "deadlock detected".
    assert.deepEqual(await Promise.all([crossing(0), crossing(1)]), [0, 1]);
    assert.equal(runs[0]! + runs[1]!, 3, 'one side ran twice');
    assert.equal(warnings.filter((warning) => warning.includes('deadlock')).length, 1);
  });
});
