import type { Insertable } from 'kysely';
import type { Store } from '../store/connect.js';
import type { AuditEventRow, AuditFilter, AuditSortKey } from '../store/repositories/audit-events.js';
import type { AuditEventTable } from '../store/schema.js';
import { actorOf, managedTenantIds } from './authorization.js';
import type { Clock } from './clock.js';
import { newId } from './ids.js';
import type { Listed, ListQuery } from './listing.js';
import type { AuthContext, Principal, RequestMeta } from './sessions.js';

export type { AuditSortKey } from '../store/repositories/audit-events.js';

/** The actions the audit log records. */
export type AuditAction =
  | 'signin'
  | 'signout'
  | 'lockout'
  | 'password.change'
  | 'password.set'
  | 'user.create'
  | 'user.update'
  | 'user.delete'
  | 'user.unlock'
  | 'user.import'
  | 'tenant.create'
  | 'tenant.update'
  | 'tenant.delete'
  | 'subtenant.create'
  | 'subtenant.update'
  | 'subtenant.delete'
  | 'region.create'
  | 'region.update'
  | 'region.delete'
  | 'zone.create'
  | 'zone.update'
  | 'zone.delete'
  | 'node.create'
  | 'node.update'
  | 'node.delete'
  | 'session.end'
  | 'session.token_reuse'
  | 'key.rotate'
  | 'token.revoke'
  | 'token.create'
  | 'role.create'
  | 'role.update'
  | 'role.delete'
  | 'group.create'
  | 'group.update'
  | 'group.delete'
  | 'group.members';

export interface AuditEntry {
  readonly action: AuditAction;
  /** undefined: the system itself (CLI, bootstrap); null: nobody identified (unknown user). */
  readonly actor: Principal | null | undefined;
  readonly target?:
    | { readonly type: string; readonly id?: string | null; readonly name?: string }
    | undefined;
  readonly tenantId?: string | null | undefined;
  readonly meta?: RequestMeta | undefined;
  readonly outcome: 'success' | 'failure';
  /** Kept for the operators (why a sign-in failed); never a secret, never told to the caller. */
  readonly reason?: string | undefined;
}

export interface AuditEventView {
  readonly id: string;
  readonly time: string;
  readonly actor_type: string;
  readonly actor_id: string;
  readonly actor_name: string;
  readonly action: string;
  readonly target_type: string;
  readonly target_id: string;
  readonly target_name: string;
  readonly tenant_id: string;
  readonly ip: string;
  readonly outcome: string;
  readonly reason: string;
}

const view = (row: AuditEventRow): AuditEventView => ({
  id: row.id,
  time: new Date(row.at).toISOString(),
  actor_type: row.actor_type,
  actor_id: row.actor_id ?? '',
  actor_name: row.actor_name,
  action: row.action,
  target_type: row.target_type,
  target_id: row.target_id ?? '',
  target_name: row.target_name,
  tenant_id: row.tenant_id ?? '',
  ip: row.ip,
  outcome: row.outcome,
  reason: row.reason,
});

/** Who did what to whom, when, from where, with what outcome. Append-only. */
export class AuditService {
  readonly #store: Store;
  readonly #clock: Clock;

  constructor(store: Store, clock: Clock) {
    this.#store = store;
    this.#clock = clock;
  }

  /** Writes one event; pass a transaction's repositories to make it part of the change. */
  async record(entry: AuditEntry, store: Pick<Store, 'auditEvents'> = this.#store): Promise<void> {
    await store.auditEvents.insert(this.#row(entry, this.#clock.now()));
  }

  /** Writes many events in multi-row statements (bulk changes such as an import). */
  async recordMany(
    entries: readonly AuditEntry[],
    store: Pick<Store, 'auditEvents'> = this.#store,
  ): Promise<void> {
    if (entries.length === 0) return;
    const now = this.#clock.now();
    await store.auditEvents.insertMany(entries.map((entry) => this.#row(entry, now)));
  }

  #row(entry: AuditEntry, now: number): Required<Insertable<AuditEventTable>> {
    return {
      id: newId(now),
      at: now,
      actor_type:
        entry.actor === undefined ? 'system' : entry.actor === null ? 'anonymous' : entry.actor.kind,
      actor_id: entry.actor?.id ?? null,
      actor_name: entry.actor?.name ?? '',
      action: entry.action,
      target_type: entry.target?.type ?? '',
      target_id: entry.target?.id ?? null,
      target_name: entry.target?.name ?? '',
      tenant_id: entry.tenantId ?? null,
      ip: entry.meta?.ip.slice(0, 64) ?? '',
      outcome: entry.outcome,
      reason: reasonText(entry.reason),
    };
  }

  /**
   * Events of the tenants the caller administers (admin, partner; root: all); events of no tenant
   * are root's. A `read` or `user` member sees none: the trail holds addresses and who failed to
   * sign in, which reading a tenant's users does not.
   */
  async list(
    auth: AuthContext,
    query: ListQuery<AuditSortKey>,
    filter: Omit<AuditFilter, 'visibleTenantIds'>,
  ): Promise<Listed<AuditEventView, AuditSortKey>> {
    const actor = await actorOf(this.#store, auth);
    const page = await this.#store.auditEvents.list(query, {
      ...filter,
      visibleTenantIds: managedTenantIds(actor),
    });
    return { ...query, records: page.rows.map(view), total: page.total };
  }
}

/** Long enough for a role's whole privilege list; a longer reason says that it was cut. */
const REASON_MAX = 2000;

function reasonText(reason: string | undefined): string {
  if (reason === undefined) return '';
  return reason.length <= REASON_MAX ? reason : `${reason.slice(0, REASON_MAX - 1)}…`;
}
