import type { Insertable, Kysely, Selectable, Updateable } from 'kysely';
import type { Database, TenantTable } from '../schema.js';
import { inParts, type Page, type PageRequest } from './list-query.js';

export type TenantRow = Selectable<TenantTable>;
export type TenantSortKey = 'created' | 'name' | 'code';

const TENANT_SORT = { created: 'created_at', name: 'name', code: 'code' } as const;

/** What removing a tenant's memberships did. */
export interface RemovedMemberships {
  readonly memberships: number;
  /** Members whose only tenancy this was. */
  readonly usersLeftWithoutTenant: number;
  readonly sessionsEnded: number;
}

/** The tenancies removed from a tenant. */
export interface RemovedTenancies {
  readonly memberships: number;
  /** The members they were of. */
  readonly userIds: readonly string[];
}

export function createTenantRepository(db: Kysely<Database>) {
  return {
    /**
     * Serializes the transactions that could take the last active root away (on PostgreSQL; a
     * SQLite transaction has the database to itself already): a no-op write of the `system`
     * tenant's row, which cannot be deleted, holds its row lock to the commit.
     */
    async lockForRootChanges(): Promise<void> {
      await db
        .updateTable('tenants')
        .set((eb) => ({ code: eb.ref('code') }))
        .where('code', '=', 'system')
        .execute();
    },
    async insert(row: Insertable<TenantTable>): Promise<void> {
      await db.insertInto('tenants').values(row).execute();
    },
    findById(id: string): Promise<TenantRow | undefined> {
      return db.selectFrom('tenants').selectAll().where('id', '=', id).executeTakeFirst();
    },
    findByCode(code: string): Promise<TenantRow | undefined> {
      return db.selectFrom('tenants').selectAll().where('code', '=', code).executeTakeFirst();
    },

    /** `visibleTenantIds` undefined: every tenant (root). */
    async list(
      page: PageRequest<TenantSortKey>,
      visibleTenantIds: readonly string[] | undefined,
    ): Promise<Page<TenantRow>> {
      // "in ()" is not valid SQL; a caller with no tenants sees nothing.
      if (visibleTenantIds?.length === 0) return { rows: [], total: 0 };
      let rows = db.selectFrom('tenants').selectAll();
      let count = db.selectFrom('tenants').select((eb) => eb.fn.countAll<number>().as('n'));
      if (visibleTenantIds !== undefined) {
        rows = rows.where('id', 'in', visibleTenantIds);
        count = count.where('id', 'in', visibleTenantIds);
      }
      const [found, counted] = await Promise.all([
        rows
          .orderBy(TENANT_SORT[page.sortBy], page.order)
          .orderBy('id', page.order)
          .limit(page.limit)
          .offset(page.offset)
          .execute(),
        count.executeTakeFirstOrThrow(),
      ]);
      return { rows: found, total: Number(counted.n) };
    },
    async update(id: string, patch: Updateable<TenantTable>): Promise<void> {
      await db.updateTable('tenants').set(patch).where('id', '=', id).execute();
    },
    /** True if this call removed the tenant (false: it was already gone). */
    async delete(id: string): Promise<boolean> {
      const result = await db.deleteFrom('tenants').where('id', '=', id).executeTakeFirst();
      return Number(result.numDeletedRows) > 0;
    },

    /**
     * Removes every tenancy in the tenant; answers the members it had. The sessions of those left
     * without a tenant (`listUsersWithoutTenant`) are ended apart, once the tenancies are gone:
     * the lock order of every change to a user is its row, its tenancies, the API tokens, then
     * the sessions, and a deletion that ended the members' sessions before taking their
     * tenancies deadlocked with a member's change (found by review).
     */
    async removeTenancies(tenantId: string): Promise<RemovedTenancies> {
      const removed = await db
        .deleteFrom('tenancies')
        .where('tenant_id', '=', tenantId)
        .returning('user_id')
        .execute();
      return { memberships: removed.length, userIds: removed.map((row) => row.user_id) };
    },
    /**
     * Those of `userIds` who have no tenancy left. Read in the transaction that removed their
     * tenancies, and their sessions ended in it (`sessions.revokeAllOfUsersAndApiTokens`), so
     * that the two happen together and a re-run finds nothing half done.
     */
    async listUsersWithoutTenant(userIds: readonly string[]): Promise<string[]> {
      const found: string[] = [];
      for (const part of inParts(userIds)) {
        const rows = await db
          .selectFrom('users')
          .select('users.id')
          .where('users.id', 'in', part)
          .where(({ not, exists, selectFrom }) =>
            not(
              exists(
                selectFrom('tenancies')
                  .select('tenancies.user_id')
                  .whereRef('tenancies.user_id', '=', 'users.id'),
              ),
            ),
          )
          .execute();
        for (const row of rows) found.push(row.id);
      }
      return found;
    },
  };
}
