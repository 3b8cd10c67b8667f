import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createTestContext, type TestContext } from '../helpers/context.js';
import { forEachDialect } from '../helpers/dialects.js';

/**
 * `apiTokens.listLent` with a `users` scope as long as a group's members can be (a replaced
 * membership of a large group): SQLite binds at most 32,766 values in a statement, PostgreSQL
 * 65,535, and each id is bound twice (maker or user).
 */
forEachDialect('apiTokens.listLent with a long list of users', (dialect) => {
  let ctx: TestContext;
  before(async () => {
    ctx = await createTestContext(dialect);
  });
  after(() => ctx.close());

  test('40,000 users in scope: answered in parts, each token once', async () => {
    const admin = await ctx.store.users.findSigningIn('admin');
    assert.ok(admin);
    const lentTo = await ctx.core.accounts.createUser({
      username: 'borrower',
      password: 'Harbour-gate-2031',
      tenantCode: 'system',
      role: 'user',
    });
    const { token } = await ctx.core.accounts.issueApiToken({
      userId: lentTo.id,
      name: 'lent',
      expiresAt: null,
      createdBy: admin.id,
    });
    const opened = await ctx.inject({
      method: 'POST',
      url: '/api/session/login-with-token',
      payload: { token },
    });
    assert.equal(opened.statusCode, 201, opened.body);
    const users = Array.from(
      { length: 40_000 },
      (_, i) => `01890000-0000-7000-8000-${String(i).padStart(12, '0')}`,
    );
    // The maker at the end of one part and the user in another: found once.
    users[999] = admin.id;
    users[35_000] = lentTo.id;
    const found = await ctx.store.apiTokens.listLent({ users }, ctx.clock.now());
    assert.deepEqual(
      found.map((row) => [row.makerId, row.userId]),
      [[admin.id, lentTo.id]],
    );
  });
});
