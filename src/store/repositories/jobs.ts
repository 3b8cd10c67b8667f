import type { Expression, ExpressionBuilder, Insertable, Kysely, Selectable, SqlBool } from 'kysely';
import type { Database, JobTable } from '../schema.js';
import type { Page, PageRequest } from './list-query.js';

export type JobRow = Selectable<JobTable>;
export type JobSortKey = 'created' | 'updated' | 'action' | 'status';

const JOB_SORT = {
  created: 'created_at',
  updated: 'updated_at',
  action: 'action',
  status: 'status',
} as const;

export interface JobScope {
  /** undefined: every job (root). Otherwise only jobs of these tenants. */
  readonly visibleTenantIds: readonly string[] | undefined;
  readonly tenantId?: string | undefined;
}

export function createJobRepository(db: Kysely<Database>) {
  const inScope = (scope: JobScope) => (eb: ExpressionBuilder<Database, 'jobs'>) => {
    const conditions: Expression<SqlBool>[] = [];
    if (scope.visibleTenantIds !== undefined) conditions.push(eb('tenant_id', 'in', scope.visibleTenantIds));
    if (scope.tenantId !== undefined) conditions.push(eb('tenant_id', '=', scope.tenantId));
    return eb.and(conditions);
  };

  return {
    async insert(row: Insertable<JobTable>): Promise<void> {
      await db.insertInto('jobs').values(row).execute();
    },
    findById(id: string): Promise<JobRow | undefined> {
      return db.selectFrom('jobs').selectAll().where('id', '=', id).executeTakeFirst();
    },
    async list(page: PageRequest<JobSortKey>, scope: JobScope): Promise<Page<JobRow>> {
      // "in ()" is not valid SQL; a caller with no tenants sees nothing.
      if (scope.visibleTenantIds?.length === 0) return { rows: [], total: 0 };
      const [rows, count] = await Promise.all([
        db
          .selectFrom('jobs')
          .selectAll()
          .where(inScope(scope))
          .orderBy(JOB_SORT[page.sortBy], page.order)
          .orderBy('id', page.order)
          .limit(page.limit)
          .offset(page.offset)
          .execute(),
        db
          .selectFrom('jobs')
          .select((eb) => eb.fn.countAll<number>().as('n'))
          .where(inScope(scope))
          .executeTakeFirstOrThrow(),
      ]);
      return { rows, total: Number(count.n) };
    },
  };
}
