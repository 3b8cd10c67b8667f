import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { sql } from 'kysely';
import { AuditService } from '../../src/core/audit.js';
import { systemClock } from '../../src/core/clock.js';
import { KEY_PURPOSES, Keyring } from '../../src/core/keyring.js';
import { connectStore, type Store } from '../../src/store/connect.js';
import { migrations } from '../../src/store/migrations/index.js';
import { forEachDialect } from '../helpers/dialects.js';
import { createFreshDatabase } from '../helpers/postgres.js';

/**
 * Processes starting together on a new store (N replicas, or `gatehouse serve` beside a CLI
 * command) each migrate it, then each load the signing keys. Every migration must run once, by one
 * of them, and none fail; the first keys must be made once (the tests run in order, on the store
 * the first one migrated).
 */
forEachDialect('Several stores at once on one new database: migrations, then the first keys', (dialect) => {
  const stores: Store[] = [];
  let cleanUp: (() => Promise<void> | void) | undefined;
  after(async () => {
    for (const store of stores) await store.destroy();
    await cleanUp?.();
  });

  test('each migration is applied once, by one of them, and the schema is whole', async () => {
    let databaseUrl: string | undefined;
    const dataDir = mkdtempSync(path.join(tmpdir(), 'gatehouse-migrate-'));
    if (dialect === 'postgres') {
      const database = await createFreshDatabase();
      databaseUrl = database.url;
      cleanUp = async () => {
        await database.drop();
        rmSync(dataDir, { recursive: true, force: true });
      };
    } else {
      cleanUp = () => rmSync(dataDir, { recursive: true, force: true });
    }
    for (let i = 0; i < 4; i += 1) stores.push(connectStore({ databaseUrl, dataDir }));

    const applied = await Promise.all(stores.map((store) => store.migrate()));

    assert.deepEqual(applied.flat().sort(), Object.keys(migrations).sort());
    for (const store of stores) assert.equal(await store.users.count(), 0);
    assert.deepEqual(await Promise.all(stores.map((store) => store.migrate())), [[], [], [], []]);
  });

  test('a store a newer release migrated is refused by name, not as "corrupted"', async () => {
    const [store] = stores;
    assert.ok(store);
    await sql`insert into kysely_migration (name, timestamp) values ('9999-from-a-newer-release', '2026-12-06T00:00:00.000Z')`.execute(
      store.db,
    );
    try {
      await assert.rejects(
        store.migrate(),
        /^Error: the store was migrated by a newer Gatehouse \(migration 9999-from-a-newer-release is not one this release knows\): run that release or a newer one; there is no downgrade$/,
      );
    } finally {
      await sql`delete from kysely_migration where name = '9999-from-a-newer-release'`.execute(store.db);
    }
    assert.deepEqual(await store.migrate(), []);
  });

  test('the first signing keys are made once, and every keyring signs with them', async () => {
    const masterKey = randomBytes(32);
    const keyrings = stores.map(
      (store) =>
        new Keyring(store, systemClock, masterKey, {
          overlapMs: 60_000,
          audit: new AuditService(store, systemClock),
        }),
    );

    await Promise.all(keyrings.map((keyring) => keyring.load()));

    const keys = await stores[0]!.signingKeys.listAll();
    assert.deepEqual(keys.map((k) => k.purpose).sort(), [...KEY_PURPOSES].sort());
    for (const keyring of keyrings) {
      assert.equal(keyring.currentSessionKey.kid, keys.find((k) => k.purpose === 'session')?.kid);
      assert.deepEqual(
        keyring.publicJwks().map((jwk) => jwk.kid),
        keys.filter((k) => k.purpose === 'endpoints').map((k) => k.kid),
      );
    }
  });
});
