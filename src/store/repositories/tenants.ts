import type { Insertable, Kysely, Selectable, Updateable } from 'kysely';
import type { Dialect } from '../connect.js';
import type { Database, TenantTable } from '../schema.js';
import { inParts, type Page, type PageRequest } from './list-query.js';
import { endingSessions } from './sessions.js';

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

export function createTenantRepository(db: Kysely<Database>, dialect: Dialect) {
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
     * Removes every tenancy in the tenant; answers the members it had. Their sessions are ended
     * apart (`endSessionsOfUsersWithoutTenant`), once the tenancies are gone: the lock order of
     * every change to a user is its row, its tenancies, the API tokens, then the sessions, and a
     * deletion that ended the members' sessions before taking their tenancies deadlocked with a
     * member's change (found by review).
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
     * Ends the live sessions of those of `userIds` who have no tenancy left. Run it in the
     * transaction that removed their tenancies, so that the two happen together: a member who
     * joined another tenant meanwhile keeps its sessions, and a re-run finds nothing half done.
     */
    async endSessionsOfUsersWithoutTenant(
      userIds: readonly string[],
      now: number,
      reason: string,
    ): Promise<Omit<RemovedMemberships, 'memberships'>> {
      let usersLeftWithoutTenant = 0;
      let sessionsEnded = 0;
      for (const part of inParts(userIds)) {
        const withoutTenant = db
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
          );
        const counted = await db
          .selectFrom(withoutTenant.as('left'))
          .select((eb) => eb.fn.countAll<number>().as('n'))
          .executeTakeFirstOrThrow();
        usersLeftWithoutTenant += Number(counted.n);
        if (Number(counted.n) === 0) continue;
        const ended = await endingSessions(
          db,
          dialect,
          (eb) => eb('user_id', 'in', withoutTenant),
          now,
          reason,
        ).executeTakeFirst();
        sessionsEnded += Number(ended.numUpdatedRows);
      }
      return { usersLeftWithoutTenant, sessionsEnded };
    },
  };
}
