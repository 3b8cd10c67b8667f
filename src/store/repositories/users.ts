import type { Insertable, Kysely, Selectable, Updateable } from 'kysely';
import type { Database, TenancyTable, UserTable } from '../schema.js';
import { createLoginHistory } from './login-history.js';

export type UserRow = Selectable<UserTable>;
export type Role = TenancyTable['role'];

export interface TenancyView {
  readonly tenantId: string;
  readonly code: string;
  readonly name: string;
  readonly role: Role;
}

export function createUserRepository(db: Kysely<Database>) {
  return {
    ...createLoginHistory(db, 'users'),

    async insert(row: Insertable<UserTable>): Promise<void> {
      await db.insertInto('users').values(row).execute();
    },
    findById(id: string): Promise<UserRow | undefined> {
      return db.selectFrom('users').selectAll().where('id', '=', id).executeTakeFirst();
    },
    findByUsernameKey(usernameKey: string): Promise<UserRow | undefined> {
      return db.selectFrom('users').selectAll().where('username_key', '=', usernameKey).executeTakeFirst();
    },
    async count(): Promise<number> {
      const row = await db
        .selectFrom('users')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .executeTakeFirstOrThrow();
      return Number(row.n);
    },
    async update(id: string, patch: Updateable<UserTable>): Promise<void> {
      await db.updateTable('users').set(patch).where('id', '=', id).execute();
    },

    async addTenancy(row: Insertable<TenancyTable>): Promise<void> {
      await db.insertInto('tenancies').values(row).execute();
    },
    async tenancies(userId: string): Promise<TenancyView[]> {
      const rows = await db
        .selectFrom('tenancies')
        .innerJoin('tenants', 'tenants.id', 'tenancies.tenant_id')
        .select(['tenants.id as tenantId', 'tenants.code', 'tenants.name', 'tenancies.role'])
        .where('tenancies.user_id', '=', userId)
        .orderBy('tenancies.created_at')
        .orderBy('tenants.code')
        .execute();
      return rows;
    },
  };
}
