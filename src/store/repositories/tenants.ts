import type { Insertable, Kysely, Selectable } from 'kysely';
import type { Database, TenantTable } from '../schema.js';

export type TenantRow = Selectable<TenantTable>;

export function createTenantRepository(db: Kysely<Database>) {
  return {
    async insert(row: Insertable<TenantTable>): Promise<void> {
      await db.insertInto('tenants').values(row).execute();
    },
    findById(id: string): Promise<TenantRow | undefined> {
      return db.selectFrom('tenants').selectAll().where('id', '=', id).executeTakeFirst();
    },
    findByCode(code: string): Promise<TenantRow | undefined> {
      return db.selectFrom('tenants').selectAll().where('code', '=', code).executeTakeFirst();
    },
  };
}
