import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createTestContext, type TestContext } from '../helpers/context.js';
import { forEachDialect } from '../helpers/dialects.js';
import { sessionRow } from '../helpers/rows.js';

/**
 * `sessions.revokeAllOfUsersAndApiTokens`: a deletion ends the sessions of users (a tenant's
 * stranded members, a deleted user) and those of the lent tokens it leaves unbacked together,
 * each for its own reason, and counts those of the users as its own. On PostgreSQL in one
 * statement for any number of either (each list one array value); on SQLite a thousand a
 * statement. More than a thousand tokens here, past both.
 */
forEachDialect('Sessions of users and of API tokens ended together', (dialect) => {
  let ctx: TestContext;
  before(async () => {
    ctx = await createTestContext(dialect);
  });
  after(() => ctx.close());

  test("each for its own reason, a session of both as its user's; the users' counted; others untouched", async () => {
    const user = async (name: string) =>
      (await ctx.core.accounts.createUser({ username: name, password: 'Together-phrase-2031' })).id;
    const [leaving, borrower, bystander] = [
      await user('leaving'),
      await user('borrower'),
      await user('bystander'),
    ];
    const tokenIds = Array.from({ length: 1_200 }, (_, i) => `tok-${String(i).padStart(5, '0')}`);
    await ctx.store.db
      .insertInto('api_tokens')
      .values(
        tokenIds.map((id) => ({
          id,
          user_id: id === 'tok-00000' ? leaving : borrower,
          name: id,
          secret_hash: `hash-${id}`,
          created_at: 1_000,
          expires_at: null,
          last_used_at: null,
          revoked_at: null,
          created_by: bystander,
        })),
      )
      .execute();
    const rows = [
      sessionRow('s-leaving-own', leaving),
      // Lent to the user who leaves, and named as a token too: ends as the user's.
      sessionRow('s-leaving-lent', leaving, { kind: 'token', api_token_id: 'tok-00000' }),
      ...tokenIds.slice(1).map((id) => sessionRow(`s-${id}`, borrower, { kind: 'token', api_token_id: id })),
      sessionRow('s-borrower-own', borrower),
      sessionRow('s-bystander', bystander),
      sessionRow('s-leaving-ended', leaving, { revoked_at: 1_500, revoke_reason: 'logout' }),
    ];
    for (let at = 0; at < rows.length; at += 200) {
      await ctx.store.db
        .insertInto('sessions')
        .values(rows.slice(at, at + 200))
        .execute();
    }

    const ended = await ctx.store.sessions.revokeAllOfUsersAndApiTokens(
      { ids: [leaving], reason: 'deleted' },
      { ids: tokenIds, reason: 'token-maker-changed' },
      5_000,
    );

    assert.equal(ended.sessionsOfUsers, 2);
    assert.deepEqual([...ended.users], [leaving]);
    assert.equal(ended.apiTokens.size, 1_199);
    assert.ok(!ended.apiTokens.has('tok-00000'), "the leaving user's lent token ended as the user's");
    const reasons = new Map(
      (await ctx.store.db.selectFrom('sessions').select(['id', 'revoke_reason', 'revoked_at']).execute()).map(
        (row) => [row.id, row],
      ),
    );
    assert.equal(reasons.get('s-leaving-own')?.revoke_reason, 'deleted');
    assert.equal(reasons.get('s-leaving-lent')?.revoke_reason, 'deleted');
    assert.equal(reasons.get('s-tok-01199')?.revoke_reason, 'token-maker-changed');
    assert.equal(reasons.get('s-tok-00001')?.revoked_at, 5_000);
    assert.equal(
      [...reasons.values()].filter((row) => row.revoke_reason === 'token-maker-changed').length,
      1_199,
    );
    assert.equal(reasons.get('s-borrower-own')?.revoked_at, null, "the borrower's own session stays");
    assert.equal(reasons.get('s-bystander')?.revoked_at, null);
    assert.equal(reasons.get('s-leaving-ended')?.revoke_reason, 'logout', 'an ended session keeps its end');
    assert.equal(reasons.get('s-leaving-ended')?.revoked_at, 1_500);
  });

  test('nothing named: nothing ended', async () => {
    const ended = await ctx.store.sessions.revokeAllOfUsersAndApiTokens(
      { ids: [], reason: 'deleted' },
      { ids: [], reason: 'token-maker-changed' },
      6_000,
    );
    assert.deepEqual(ended, { sessionsOfUsers: 0, users: new Set(), apiTokens: new Set() });
  });
});
