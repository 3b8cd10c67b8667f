import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { connectStore, type Store } from '../../src/store/connect.js';
import { CHECKPOINT_DELAY_MS } from '../../src/store/sqlite-checkpointer.js';

// SQLite only: PostgreSQL checkpoints its own WAL in its own processes.
let store: Store;
let dataDir: string;
const databaseBytes = () => statSync(path.join(dataDir, 'gatehouse.db')).size;

before(async () => {
  dataDir = mkdtempSync(path.join(tmpdir(), 'gatehouse-checkpoint-'));
  store = connectStore({ databaseUrl: undefined, dataDir });
  await store.migrate();
});

after(async () => {
  await store.destroy();
  rmSync(dataDir, { recursive: true, force: true });
});

test('a commit past 1,000 WAL pages leaves the checkpoint to a thread of its own, which runs it within the delay', async () => {
  // The migration's own checkpoint first, so that none is under way when the write below commits.
  await sleep(CHECKPOINT_DELAY_MS + 1000);
  const before = databaseBytes();
  // Well past SQLite's default automatic checkpoint (1,000 pages, ~4 MiB), in one statement.
  const rows = Array.from({ length: 2000 }, (_, i) => ({
    id: `tenant-${i}`,
    code: `t${i}`,
    name: `${'n'.repeat(3000)}${i}`,
    created_at: 1,
    updated_at: 1,
  }));
  await store.db.insertInto('tenants').values(rows).execute();
  const committed = databaseBytes();
  // The commit only appended to the WAL: on the event loop's connection it did not copy pages
  // into the database file (which would have grown it by ~6 MiB here).
  assert.ok(
    committed - before < 1_000_000,
    `the database file grew from ${before} to ${committed} bytes within the commit`,
  );
  // The database file grows page by page as the checkpoint copies: waited for until it holds all.
  let checkpointed = committed;
  for (
    let waited = 0;
    waited < CHECKPOINT_DELAY_MS + 10_000 && checkpointed - before <= 6_000_000;
    waited += 50
  ) {
    await sleep(50);
    checkpointed = databaseBytes();
  }
  assert.ok(
    checkpointed - before > 6_000_000,
    `the database file grew from ${before} to ${checkpointed} bytes with the checkpoint`,
  );
  // And the rows read back as written.
  const count = await store.db
    .selectFrom('tenants')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('id', 'like', 'tenant-%')
    .executeTakeFirstOrThrow();
  assert.equal(Number(count.n), 2000);
});
