import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { connectStore } from '../../src/store/connect.js';
import { createFreshDatabase, postgresUnavailableReason } from '../helpers/postgres.js';

const unavailable = await postgresUnavailableReason();

test('pruning the sign-in counters passes over the rows a failed sign-in is counting: no deadlock [postgres]', {
  skip: unavailable && `PostgreSQL skipped: ${unavailable}`,
}, async () => {
  const database = await createFreshDatabase();
  const dataDir = mkdtempSync(path.join(tmpdir(), 'gatehouse-prune-'));
  const store = connectStore({ databaseUrl: database.url, dataDir });
  try {
    await store.migrate();
    const rule = { windowMs: 1000, lockAt: 10, lockMs: 1000 };
    const address = { scope: 'ip', subject: '10.0.0.1' };
    const pair = { scope: 'pair', subject: 'account 10.0.0.1', owner: 'account' };
    const account = { scope: 'account', subject: 'account' };
    // Earlier failures, all expired: the address's row first on disk, as a prune meets them.
    const long = Date.now() - 10_000;
    for (const key of [address, pair, account]) await store.loginThrottle.hit(key, long, rule);
    const now = Date.now();
    let resume = () => {};
    const paused = new Promise<void>((resolve) => {
      resume = resolve;
    });
    // A failure counted as countFailure counts it (pair, account, address), held between the
    // account and the address while the prune runs.
    const counting = store.transaction(async (tx) => {
      await tx.loginThrottle.hit(pair, now, rule);
      await tx.loginThrottle.hit(account, now, rule);
      await paused;
      return tx.loginThrottle.hit(address, now, rule);
    });
    await new Promise((resolve) => setTimeout(resolve, 50));
    const pruning = store.loginThrottle.prune(now);
    await new Promise((resolve) => setTimeout(resolve, 50));
    resume();
    const [counted, pruned] = await Promise.all([counting, pruning]);
    assert.equal(pruned, 1, 'the expired row nobody held is gone; the two held are passed over');
    assert.equal(counted?.hits, 1, "the address's count starts afresh");
    const [pairState, accountState] = await store.loginThrottle.read([pair, account]);
    assert.equal(pairState?.hits, 1);
    assert.equal(accountState?.hits, 1);
  } finally {
    await store.destroy();
    await database.drop();
    rmSync(dataDir, { recursive: true, force: true });
  }
});
