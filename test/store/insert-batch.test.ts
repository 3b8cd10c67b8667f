import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Insertable } from 'kysely';
import { connectStore, isUniqueViolation, type Store } from '../../src/store/connect.js';
import type { TenantTable } from '../../src/store/schema.js';
import { SqliteBatchWriter } from '../../src/store/sqlite-batch-writer.js';
import { UnrecordedStatementError } from '../../src/store/statement-recorder.js';
import { forEachDialect } from '../helpers/dialects.js';
import { createFreshDatabase } from '../helpers/postgres.js';

const tenant = (code: string): Insertable<TenantTable> => ({
  id: `id-${code}`,
  code,
  name: code.toUpperCase(),
  created_at: 1,
  updated_at: 1,
});

forEachDialect('Store.insertBatch (an import batch: inserts only, one transaction)', (dialect) => {
  let store: Store;
  let dataDir: string;
  let drop: (() => Promise<void>) | undefined;
  const codes = async () =>
    (await store.db.selectFrom('tenants').select('code').orderBy('code').execute()).map((row) => row.code);

  before(async () => {
    dataDir = mkdtempSync(path.join(tmpdir(), 'gatehouse-insert-batch-'));
    const database = dialect === 'postgres' ? await createFreshDatabase() : undefined;
    drop = database?.drop;
    store = connectStore({ databaseUrl: database?.url, dataDir });
    await store.migrate();
  });

  after(async () => {
    await store.destroy();
    await drop?.();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test('every insert of the batch is written, and read back by the store', async () => {
    await store.insertBatch(async (tx) => {
      await tx.tenants.insert(tenant('alpha'));
      await tx.tenants.insert(tenant('beta'));
    });
    assert.deepEqual(await codes(), ['alpha', 'beta']);
  });

  test('a unique violation anywhere in the batch writes none of it, and reads as one', async () => {
    const failed = await store
      .insertBatch(async (tx) => {
        await tx.tenants.insert(tenant('gamma'));
        await tx.tenants.insert({ ...tenant('alpha'), id: 'id-alpha-again' });
      })
      .then(
        () => undefined,
        (error: unknown) => error,
      );
    assert.ok(isUniqueViolation(failed), `expected a unique violation, got ${String(failed)}`);
    assert.deepEqual(await codes(), ['alpha', 'beta']);
  });

  test('a transaction that reads, then writes after an import batch committed meanwhile, succeeds', async () => {
    let batch: Promise<void> | undefined;
    await store.transaction(async (tx) => {
      assert.ok(await tx.tenants.findByCode('alpha'));
      batch = store.insertBatch(async (other) => {
        await other.tenants.insert(tenant('epsilon'));
      });
      // Time for the batch to commit between this transaction's read and its write, if it may.
      await sleep(100);
      await tx.tenants.insert(tenant('zeta'));
    });
    await batch;
    assert.deepEqual(await codes(), ['alpha', 'beta', 'epsilon', 'zeta']);
  });

  if (dialect === 'sqlite') {
    test('on SQLite a statement other than an insert is refused and nothing is written', async () => {
      await assert.rejects(
        store.insertBatch(async (tx) => {
          await tx.tenants.insert(tenant('delta'));
          // Its answer would be empty whatever the store holds: refused rather than wrong.
          await tx.tenants.findByCode('alpha');
        }),
        UnrecordedStatementError,
      );
      assert.deepEqual(await codes(), ['alpha', 'beta', 'epsilon', 'zeta']);
    });

    test('a writer that cannot open its file fails each batch with the reason; the next batch tries again', async () => {
      const missing = path.join(dataDir, 'no-such-folder', 'gatehouse.db');
      const writer = new SqliteBatchWriter(missing, 100);
      try {
        for (let attempt = 0; attempt < 2; attempt += 1) {
          await assert.rejects(
            writer.write([{ sql: 'insert into tenants (id) values (?)', parameters: ['secret-value'] }]),
            (error: Error) => {
              assert.match(error.message, /directory does not exist|unable to open/i);
              assert.doesNotMatch(error.message, /secret-value/);
              return true;
            },
          );
        }
      } finally {
        await writer.close();
      }
    });
  }
});
