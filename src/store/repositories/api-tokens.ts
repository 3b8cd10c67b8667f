import type { Insertable, Kysely, Selectable } from 'kysely';
import type { ApiTokenTable, Database } from '../schema.js';

export type ApiTokenRow = Selectable<ApiTokenTable>;

export function createApiTokenRepository(db: Kysely<Database>) {
  return {
    async insert(row: Insertable<ApiTokenTable>): Promise<void> {
      await db.insertInto('api_tokens').values(row).execute();
    },
    findBySecretHash(secretHash: string): Promise<ApiTokenRow | undefined> {
      return db.selectFrom('api_tokens').selectAll().where('secret_hash', '=', secretHash).executeTakeFirst();
    },
    async markUsed(id: string, now: number): Promise<void> {
      await db.updateTable('api_tokens').set({ last_used_at: now }).where('id', '=', id).execute();
    },
  };
}
