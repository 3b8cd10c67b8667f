import type { Expression, ExpressionBuilder, Insertable, Kysely, Selectable, SqlBool } from 'kysely';
import type { Dialect } from '../connect.js';
import type { AuditEventTable, Database } from '../schema.js';
import { insertRows, type ListsEveryColumn } from './bulk-insert.js';
import type { Page, PageRequest } from './list-query.js';

export type AuditEventRow = Selectable<AuditEventTable>;
export type AuditSortKey = 'created' | 'action';

export interface AuditFilter {
  /** undefined: every tenant (root). Otherwise only events of these tenants. */
  readonly visibleTenantIds: readonly string[] | undefined;
  readonly actor?: string | undefined;
  readonly action?: string | undefined;
  readonly target?: string | undefined;
  readonly tenantId?: string | undefined;
  readonly from?: number | undefined;
  readonly to?: number | undefined;
}

const SORT = { created: 'at', action: 'action' } as const;

const AUDIT_EVENT_COLUMNS = [
  'id',
  'at',
  'actor_type',
  'actor_id',
  'actor_name',
  'action',
  'target_type',
  'target_id',
  'target_name',
  'tenant_id',
  'ip',
  'outcome',
  'reason',
] as const satisfies readonly (keyof AuditEventTable)[];
const _everyAuditColumn: ListsEveryColumn<AuditEventTable, typeof AUDIT_EVENT_COLUMNS> = true;

/** Append-only: there is no update and no delete here, on purpose. */
export function createAuditEventRepository(db: Kysely<Database>, dialect: Dialect) {
  const matching = (filter: AuditFilter) => (eb: ExpressionBuilder<Database, 'audit_events'>) => {
    const conditions: Expression<SqlBool>[] = [];
    if (filter.visibleTenantIds !== undefined)
      conditions.push(eb('tenant_id', 'in', filter.visibleTenantIds));
    if (filter.actor !== undefined) {
      conditions.push(eb.or([eb('actor_id', '=', filter.actor), eb('actor_name', '=', filter.actor)]));
    }
    if (filter.action !== undefined) conditions.push(eb('action', '=', filter.action));
    if (filter.target !== undefined) {
      conditions.push(eb.or([eb('target_id', '=', filter.target), eb('target_name', '=', filter.target)]));
    }
    if (filter.tenantId !== undefined) conditions.push(eb('tenant_id', '=', filter.tenantId));
    if (filter.from !== undefined) conditions.push(eb('at', '>=', filter.from));
    if (filter.to !== undefined) conditions.push(eb('at', '<', filter.to));
    return eb.and(conditions);
  };

  return {
    /** Compiled once per store (`insertRows`): every sign-in writes one. Every column is given. */
    insert(row: Required<Insertable<AuditEventTable>>): Promise<void> {
      return insertRows(db, dialect, 'audit_events', AUDIT_EVENT_COLUMNS, [row], 1);
    },
    /** Many events in multi-row statements of 500 (6,500 parameters); every row sets every column. */
    insertMany(rows: readonly Insertable<AuditEventTable>[]): Promise<void> {
      return insertRows(db, dialect, 'audit_events', AUDIT_EVENT_COLUMNS, rows, 500);
    },
    async list(page: PageRequest<AuditSortKey>, filter: AuditFilter): Promise<Page<AuditEventRow>> {
      if (filter.visibleTenantIds?.length === 0) return { rows: [], total: 0 };
      const [rows, count] = await Promise.all([
        db
          .selectFrom('audit_events')
          .selectAll()
          .where(matching(filter))
          .orderBy(SORT[page.sortBy], page.order)
          .orderBy('id', page.order)
          .limit(page.limit)
          .offset(page.offset)
          .execute(),
        db
          .selectFrom('audit_events')
          .select((eb) => eb.fn.countAll<number>().as('n'))
          .where(matching(filter))
          .executeTakeFirstOrThrow(),
      ]);
      return { rows, total: Number(count.n) };
    },
  };
}
