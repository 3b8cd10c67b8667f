import type { Insertable, Kysely, Selectable } from 'kysely';
import type { Database, SigningKeyTable } from '../schema.js';

export type SigningKeyRow = Selectable<SigningKeyTable>;

export function createSigningKeyRepository(db: Kysely<Database>) {
  return {
    async insert(row: Insertable<SigningKeyTable>): Promise<void> {
      await db.insertInto('signing_keys').values(row).execute();
    },
    /** Keys that still verify, oldest first (the newest one signs). */
    listUnretired(): Promise<SigningKeyRow[]> {
      return db
        .selectFrom('signing_keys')
        .selectAll()
        .where('retired_at', 'is', null)
        .orderBy('created_at')
        .orderBy('kid')
        .execute();
    },
  };
}
