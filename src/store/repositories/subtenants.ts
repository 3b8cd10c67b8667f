import type { Expression, ExpressionBuilder, Insertable, Kysely, Selectable, SqlBool } from 'kysely';
import type { Database, SubtenantTable } from '../schema.js';
import type { Page, PageRequest } from './list-query.js';

export type SubtenantRow = Selectable<SubtenantTable>;
/** A subtenant with the name of its tenant, as the records show it. */
export interface SubtenantWithTenant extends SubtenantRow {
  readonly tenant_name: string;
}
export type SubtenantSortKey = 'created' | 'name' | 'code';

const SUBTENANT_SORT = {
  created: 'subtenants.created_at',
  name: 'subtenants.name',
  code: 'subtenants.code',
} as const;

export interface SubtenantScope {
  /** undefined: every subtenant (root). Otherwise only those of these tenants. */
  readonly visibleTenantIds: readonly string[] | undefined;
  readonly tenantId?: string | undefined;
}

export function createSubtenantRepository(db: Kysely<Database>) {
  const withTenant = () =>
    db
      .selectFrom('subtenants')
      .innerJoin('tenants', 'tenants.id', 'subtenants.tenant_id')
      .selectAll('subtenants')
      .select('tenants.name as tenant_name');
  const inScope = (scope: SubtenantScope) => (eb: ExpressionBuilder<Database, 'subtenants'>) => {
    const conditions: Expression<SqlBool>[] = [];
    if (scope.visibleTenantIds !== undefined)
      conditions.push(eb('subtenants.tenant_id', 'in', scope.visibleTenantIds));
    if (scope.tenantId !== undefined) conditions.push(eb('subtenants.tenant_id', '=', scope.tenantId));
    return eb.and(conditions);
  };

  return {
    async insert(row: Insertable<SubtenantTable>): Promise<void> {
      await db.insertInto('subtenants').values(row).execute();
    },
    findById(id: string): Promise<SubtenantWithTenant | undefined> {
      return withTenant().where('subtenants.id', '=', id).executeTakeFirst();
    },
    async list(
      page: PageRequest<SubtenantSortKey>,
      scope: SubtenantScope,
    ): Promise<Page<SubtenantWithTenant>> {
      // "in ()" is not valid SQL; a caller with no readable tenant sees nothing.
      if (scope.visibleTenantIds?.length === 0) return { rows: [], total: 0 };
      const [rows, count] = await Promise.all([
        withTenant()
          .where(inScope(scope))
          .orderBy(SUBTENANT_SORT[page.sortBy], page.order)
          .orderBy('subtenants.id', page.order)
          .limit(page.limit)
          .offset(page.offset)
          .execute(),
        db
          .selectFrom('subtenants')
          .select((eb) => eb.fn.countAll<number>().as('n'))
          .where(inScope(scope))
          .executeTakeFirstOrThrow(),
      ]);
      return { rows, total: Number(count.n) };
    },
    async update(
      id: string,
      patch: { name?: string; description?: string; updated_at: number },
    ): Promise<void> {
      await db.updateTable('subtenants').set(patch).where('id', '=', id).execute();
    },
    /** True if this call removed it (false: it was already gone). */
    async delete(id: string): Promise<boolean> {
      const result = await db.deleteFrom('subtenants').where('id', '=', id).executeTakeFirst();
      return Number(result.numDeletedRows) > 0;
    },
    /** Removes every subtenant of the tenant; returns how many there were. */
    async deleteAllOfTenant(tenantId: string): Promise<number> {
      const result = await db.deleteFrom('subtenants').where('tenant_id', '=', tenantId).executeTakeFirst();
      return Number(result.numDeletedRows);
    },
  };
}
