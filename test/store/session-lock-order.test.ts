import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { NewSessionRow } from '../../src/store/repositories/sessions.js';
import { createTestContext, type TestContext } from '../helpers/context.js';
import { forEachDialect } from '../helpers/dialects.js';
import { holdRow, lockedElsewhere, untilWaitingForLocks } from '../helpers/postgres.js';

/**
 * Every statement that ends several sessions takes their rows in the order of their ids, whatever
 * the order its plan finds them in (the user index's, token by token): two of them at once that
 * share sessions then wait for each other instead of deadlocking (found by review: a user's
 * sessions ended against a lent token's, with a third transaction holding one session row between
 * them, deadlocked 3 times in 3).
 *
 * Shown with rows inserted against the order of their ids (the heap's order, which the plans
 * follow): while the lowest is held, the statement waits for it and holds none of the others. A
 * user's API tokens revoked together likewise; a refresh batch passes over a held row instead.
 */
forEachDialect('Sessions ended in the order of their ids', (dialect) => {
  let ctx: TestContext;
  before(async () => {
    ctx = await createTestContext(dialect);
  });
  after(() => ctx.close());

  // SQLite runs one writing transaction at a time: it holds the whole file, not rows.
  if (dialect !== 'postgres') return;

  const session = (id: string, userId: string, apiTokenId: string | null): NewSessionRow => {
    const now = ctx.clock.now();
    return {
      id,
      kind: apiTokenId === null ? 'user' : 'token',
      user_id: userId,
      node_id: null,
      api_token_id: apiTokenId,
      secret_hash: `hash of ${id}`,
      created_at: now,
      last_seen_at: now,
      expires_at: now + 3_600_000,
      revoked_at: null,
      revoke_reason: null,
      ip: '198.51.100.7',
      user_agent: 'lock order test',
      prev_success_at: null,
      prev_failed_at: null,
      prev_failed_ip: null,
      token_generation: 0,
      prior_token_valid_until: null,
    };
  };
  /** Starts `end` while the lowest session is held; answers which sessions it held meanwhile. */
  const heldMeanwhile = async (
    lowest: string,
    others: readonly string[],
    end: () => Promise<unknown>,
    table: 'sessions' | 'api_tokens' = 'sessions',
  ) => {
    const { release } = await holdRow(ctx.store.db, table, lowest);
    const ending = end();
    await untilWaitingForLocks(ctx.store.db, 1);
    const taken: string[] = [];
    for (const id of others) if (await lockedElsewhere(ctx.store.db, table, id)) taken.push(id);
    await release();
    await ending;
    return taken;
  };
  const live = async (ids: readonly string[]) =>
    (
      await ctx.store.db
        .selectFrom('sessions')
        .select('id')
        .where('id', 'in', ids)
        .where('revoked_at', 'is', null)
        .execute()
    ).map((row) => row.id);

  /**
   * A user with three live sessions whose ids end in `${tag}3`, `${tag}2`, `${tag}1`, inserted in
   * that order, highest id first: the heap, and the user index among equal keys, hold them so.
   * The ids answered are in that order too, the lowest last.
   */
  const userWithSessionsAgainstIdOrder = async (username: string, tag: string) => {
    const user = await ctx.core.accounts.createUser({ username, password: 'Order-phrase-2031' });
    const ids = [3, 2, 1].map((n) => `01a00000-0000-7000-8000-0000000000${tag}${n}`);
    for (const id of ids) await ctx.store.sessions.insert(session(id, user.id, null));
    return { user, ids, lowest: ids[2]!, others: ids.slice(0, 2) };
  };

  test("a user's sessions", async () => {
    const { user, ids, lowest, others } = await userWithSessionsAgainstIdOrder('ordered-user', 'a');
    const held = await heldMeanwhile(lowest, others, () =>
      ctx.store.transaction((tx) => tx.sessions.revokeAllOfUser(user.id, ctx.clock.now(), 'logout-all')),
    );
    // Before: the two others taken first, in the heap's order.
    assert.deepEqual(held, []);
    assert.deepEqual(await live(ids), []);
  });

  test('the sessions of several lent tokens', async () => {
    const user = await ctx.core.accounts.createUser({
      username: 'ordered-tokens',
      password: 'Order-phrase-2031',
    });
    const tokens: string[] = [];
    for (let i = 0; i < 2; i += 1) {
      ctx.clock.advance(1);
      tokens.push(
        (await ctx.core.accounts.issueApiToken({ userId: user.id, name: `t${i}`, expiresAt: null })).row.id,
      );
    }
    // The first token's session has the higher id: token by token, it came first.
    const [first, second] = tokens as [string, string];
    const ids = ['01a00000-0000-7000-8000-0000000000b2', '01a00000-0000-7000-8000-0000000000b1'];
    await ctx.store.sessions.insert(session(ids[0]!, user.id, first));
    await ctx.store.sessions.insert(session(ids[1]!, user.id, second));
    const held = await heldMeanwhile(ids[1]!, [ids[0]!], () =>
      ctx.store.transaction((tx) =>
        tx.sessions.revokeAllOfApiTokens([first, second], ctx.clock.now(), 'token-maker-changed'),
      ),
    );
    assert.deepEqual(held, []);
    assert.deepEqual(await live(ids), []);
  });

  test('a refresh batch passing over held rows: it takes the others at once and leaves the held one', async () => {
    const { ids, lowest, others } = await userWithSessionsAgainstIdOrder('passing-refresh', 'f');
    const { release } = await holdRow(ctx.store.db, 'sessions', lowest);
    // Answers while the lowest is still held: a batch never waits at a row lock.
    let advanced: Set<string> | undefined;
    try {
      advanced = await Promise.race([
        ctx.store.sessions.advanceTokenGenerations(
          ids.map((id) => ({ id, from: 0 })),
          ctx.clock.now(),
        ),
        sleep(10_000).then(() => undefined),
      ]);
    } finally {
      await release();
    }
    assert.ok(advanced, 'the batch answered while a row was held');
    assert.deepEqual([...advanced].sort(), [...others].sort());
    const generations = await ctx.store.db
      .selectFrom('sessions')
      .select(['id', 'token_generation'])
      .where('id', 'in', ids)
      .orderBy('id')
      .execute();
    assert.deepEqual(
      generations.map((row) => row.token_generation),
      [0, 1, 1],
      'the held one, lowest, left at its generation',
    );
  });

  test("a user's sessions, deleted with the user", async () => {
    const root = await ctx.core.accounts.createUser({
      username: 'ordered-root',
      password: 'Order-phrase-2031',
    });
    const system = await ctx.store.tenants.findByCode('system');
    await ctx.store.users.addTenancy({
      user_id: root.id,
      tenant_id: system!.id,
      role: 'root',
      created_at: 1,
    });
    const { user, lowest, others } = await userWithSessionsAgainstIdOrder('ordered-leaving', 'e');
    const held = await heldMeanwhile(lowest, others, () =>
      ctx.core.userAdmin.delete(
        { principal: { kind: 'user', id: root.id, name: 'ordered-root' }, session: undefined },
        user.id,
        { ip: '198.51.100.7', userAgent: 'lock order test' },
      ),
    );
    // Before: the deletion's cascade took them in the order of the user index, the highest first.
    assert.deepEqual(held, []);
    assert.equal(await ctx.store.users.findById(user.id), undefined);
  });

  test("a user's API tokens and those it lent, revoked with its password set", async () => {
    const user = await ctx.core.accounts.createUser({
      username: 'ordered-own',
      password: 'Order-phrase-2031',
    });
    const other = await ctx.core.accounts.createUser({
      username: 'ordered-lent-to',
      password: 'Order-phrase-2031',
    });
    // Its own, one it lent, and its own again: the lowest held elsewhere.
    const tokens = [
      { id: '01a00000-0000-7000-8000-0000000000c3', holder: user.id },
      { id: '01a00000-0000-7000-8000-0000000000c2', holder: other.id },
      { id: '01a00000-0000-7000-8000-0000000000c1', holder: user.id },
    ];
    for (const { id, holder } of tokens) {
      await ctx.store.apiTokens.insert({
        id,
        user_id: holder,
        name: id,
        secret_hash: `hash of ${id}`,
        created_at: ctx.clock.now(),
        expires_at: null,
        last_used_at: null,
        revoked_at: null,
        created_by: user.id,
      });
    }
    let revoked: { held: number; lent: string[] } | undefined;
    const held = await heldMeanwhile(
      tokens[2]!.id,
      [tokens[0]!.id, tokens[1]!.id],
      async () => {
        revoked = await ctx.store.transaction((tx) =>
          tx.apiTokens.revokeAllHeldOrLent(user.id, ctx.clock.now()),
        );
      },
      'api_tokens',
    );
    assert.deepEqual(held, []);
    assert.deepEqual(revoked, { held: 2, lent: [tokens[1]!.id] });
  });
});
