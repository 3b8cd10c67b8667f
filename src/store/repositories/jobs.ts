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
  /** undefined: every job (root). Otherwise only jobs of these tenants, and those of `ownerId`. */
  readonly visibleTenantIds: readonly string[] | undefined;
  /** The caller's own jobs are visible whatever their tenant. */
  readonly ownerId?: string | undefined;
  readonly tenantId?: string | undefined;
}

export function createJobRepository(db: Kysely<Database>) {
  const inScope = (scope: JobScope) => (eb: ExpressionBuilder<Database, 'jobs'>) => {
    const conditions: Expression<SqlBool>[] = [];
    if (scope.visibleTenantIds !== undefined) {
      const visible: Expression<SqlBool>[] = [];
      // "in ()" is not valid SQL.
      if (scope.visibleTenantIds.length > 0) visible.push(eb('tenant_id', 'in', scope.visibleTenantIds));
      if (scope.ownerId !== undefined) visible.push(eb('user_id', '=', scope.ownerId));
      conditions.push(eb.or(visible));
    }
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
      if (scope.visibleTenantIds?.length === 0 && scope.ownerId === undefined) return { rows: [], total: 0 };
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

    /** A job of this action on this object that is still running, if any. */
    findRunning(action: string, objectType: string, objectId: string): Promise<JobRow | undefined> {
      return db
        .selectFrom('jobs')
        .selectAll()
        .where('status', '=', 'running')
        .where('action', '=', action)
        .where('object_type', '=', objectType)
        .where('object_id', '=', objectId)
        .orderBy('created_at', 'desc')
        .executeTakeFirst();
    },
    /** Extends the leases of the jobs this process still runs. */
    async renewLeases(owner: string, ids: readonly string[], expiresAt: number): Promise<void> {
      if (ids.length === 0) return;
      await db
        .updateTable('jobs')
        .set({ lease_expires_at: expiresAt })
        .where('lease_owner', '=', owner)
        .where('status', '=', 'running')
        .where('id', 'in', ids)
        .execute();
    },
    /**
     * Writes progress of a running job, only while `owner` still holds it. False: the job is no
     * longer this process's (its lease expired and it was marked failed), so the work must stop.
     */
    async recordProgress(
      id: string,
      owner: string,
      patch: { status_detail: string; progress: number; updated_at: number },
    ): Promise<boolean> {
      const result = await db
        .updateTable('jobs')
        .set(patch)
        .where('id', '=', id)
        .where('lease_owner', '=', owner)
        .where('status', '=', 'running')
        .executeTakeFirst();
      return Number(result.numUpdatedRows) > 0;
    },
    /** Ends a running job held by `owner` and releases its lease. */
    async finish(
      id: string,
      owner: string,
      patch: {
        status: string;
        status_detail?: string;
        last_error: string;
        progress?: number;
        updated_at: number;
        tasks_json?: string;
      },
    ): Promise<boolean> {
      const result = await db
        .updateTable('jobs')
        .set({ ...patch, lease_expires_at: null })
        .where('id', '=', id)
        .where('lease_owner', '=', owner)
        .where('status', '=', 'running')
        .executeTakeFirst();
      return Number(result.numUpdatedRows) > 0;
    },
    /**
     * Up to `limit` jobs in one of `statuses` that were last changed before `before`, oldest first.
     * Found through the index on `created_at`: a job is changed no earlier than it was created.
     */
    async findEndedBefore(statuses: readonly string[], before: number, limit: number): Promise<string[]> {
      const rows = await db
        .selectFrom('jobs')
        .select('id')
        .where('created_at', '<', before)
        .where('updated_at', '<', before)
        .where('status', 'in', statuses)
        .orderBy('created_at')
        .limit(limit)
        .execute();
      return rows.map((row) => row.id);
    },
    async deleteByIds(ids: readonly string[]): Promise<number> {
      if (ids.length === 0) return 0;
      const result = await db.deleteFrom('jobs').where('id', 'in', ids).executeTakeFirst();
      return Number(result.numDeletedRows);
    },
    /**
     * Marks failed every running job whose lease expired before `now` (its process is gone),
     * except those of `exceptOwner`. Jobs without a lease are left alone: no runner holds them.
     */
    async failExpired(now: number, lastError: string, exceptOwner: string): Promise<number> {
      const result = await db
        .updateTable('jobs')
        .set({ status: 'failed', last_error: lastError, updated_at: now, lease_expires_at: null })
        .where('status', '=', 'running')
        .where('lease_expires_at', '<', now)
        .where('lease_owner', '!=', exceptOwner)
        .executeTakeFirst();
      return Number(result.numUpdatedRows);
    },
  };
}
