import type { Insertable, Kysely, Selectable } from 'kysely';
import type { Database, SigningKeyTable } from '../schema.js';

export type SigningKeyRow = Selectable<SigningKeyTable>;
export type SigningKeyPurpose = SigningKeyTable['purpose'];

export function createSigningKeyRepository(db: Kysely<Database>) {
  return {
    async insert(row: Insertable<SigningKeyTable>): Promise<void> {
      await db.insertInto('signing_keys').values(row).execute();
    },
    /**
     * Keys that still verify at `now` (not retired, or retiring later), oldest first: the newest
     * key without a retirement date signs.
     */
    listVerifying(now: number): Promise<SigningKeyRow[]> {
      return db
        .selectFrom('signing_keys')
        .selectAll()
        .where((eb) => eb.or([eb('retired_at', 'is', null), eb('retired_at', '>', now)]))
        .orderBy('created_at')
        .orderBy('kid')
        .execute();
    },
    /** Every key ever made, retired ones too, oldest first (for `gatehouse keys list`). */
    listAll(): Promise<SigningKeyRow[]> {
      return db.selectFrom('signing_keys').selectAll().orderBy('created_at').orderBy('kid').execute();
    },
    /** Kids of the keys of one purpose that have no retirement date yet. */
    async activeKids(purpose: SigningKeyPurpose): Promise<string[]> {
      const rows = await db
        .selectFrom('signing_keys')
        .select('kid')
        .where('purpose', '=', purpose)
        .where('retired_at', 'is', null)
        .execute();
      return rows.map((r) => r.kid);
    },
    /**
     * Brings forward to `at` the retirement of the keys of one purpose replaced earlier and still
     * verifying past `at`; answers their kids. A key without a date (one that signs) is untouched.
     */
    async retireReplacedBy(purpose: SigningKeyPurpose, at: number): Promise<string[]> {
      const rows = await db
        .selectFrom('signing_keys')
        .select('kid')
        .where('purpose', '=', purpose)
        .where('retired_at', '>', at)
        .execute();
      const kids = rows.map((r) => r.kid);
      if (kids.length > 0) {
        await db.updateTable('signing_keys').set({ retired_at: at }).where('kid', 'in', kids).execute();
      }
      return kids;
    },
    /**
     * Sets the retirement date of exactly these keys, unless they already have one (a key replaced
     * twice keeps the earlier date).
     */
    async scheduleRetirement(kids: readonly string[], at: number): Promise<void> {
      if (kids.length === 0) return;
      await db
        .updateTable('signing_keys')
        .set({ retired_at: at })
        .where('kid', 'in', kids)
        .where('retired_at', 'is', null)
        .execute();
    },
  };
}
