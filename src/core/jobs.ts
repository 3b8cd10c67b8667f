import { GatehouseError } from '../errors.js';
import type { Store } from '../store/connect.js';
import type { JobRow, JobSortKey } from '../store/repositories/jobs.js';
import { actorOf, readableTenantIds } from './authorization.js';
import type { Clock } from './clock.js';
import { isId, newId } from './ids.js';
import type { Listed, ListQuery } from './listing.js';
import type { AuthContext } from './sessions.js';

export type { JobSortKey } from '../store/repositories/jobs.js';

export interface JobTask {
  readonly id: string;
  readonly job_id: string;
  readonly action: string;
  readonly driver: string;
  readonly object_id: string;
  readonly object_type: string;
  readonly resource_type: string;
  readonly status: string;
  readonly status_detail: string;
  readonly last_error: string;
  readonly user_id: string;
  /** Never holds a secret: callers pass only identifiers and names. */
  readonly request_payload: Record<string, string | number | boolean | null>;
}

export interface JobView {
  readonly id: string;
  readonly action: string;
  readonly job_summary: string;
  readonly created: string;
  readonly updated: string;
  readonly object_id: string;
  readonly object_type: string;
  readonly object_name: string;
  readonly status: string;
  readonly status_detail: string;
  readonly last_error: string;
  readonly progress: number;
  readonly user_id: string;
  readonly tenant_id: string;
  readonly job_tasks: JobTask[];
}

export interface NewJob {
  readonly action: string;
  readonly summary: string;
  readonly objectId?: string;
  readonly objectType?: string;
  readonly objectName?: string;
  readonly status: string;
  readonly statusDetail?: string;
  readonly userId?: string | null;
  readonly tenantId?: string | null;
}

export const jobView = (row: JobRow): JobView => ({
  id: row.id,
  action: row.action,
  job_summary: row.job_summary,
  created: new Date(row.created_at).toISOString(),
  updated: new Date(row.updated_at).toISOString(),
  object_id: row.object_id,
  object_type: row.object_type,
  object_name: row.object_name,
  status: row.status,
  status_detail: row.status_detail,
  last_error: row.last_error,
  progress: row.progress,
  user_id: row.user_id ?? '',
  tenant_id: row.tenant_id ?? '',
  job_tasks: JSON.parse(row.tasks_json) as JobTask[],
});

/**
 * Records of asynchronous operations. A caller sees the jobs it started and those of the tenants
 * it administers or reads; root sees all.
 */
export class JobService {
  readonly #store: Store;
  readonly #clock: Clock;

  constructor(store: Store, clock: Clock) {
    this.#store = store;
    this.#clock = clock;
  }

  async create(input: NewJob): Promise<JobView> {
    const now = this.#clock.now();
    const row: JobRow = {
      id: newId(now),
      action: input.action,
      job_summary: input.summary,
      object_id: input.objectId ?? '',
      object_type: input.objectType ?? '',
      object_name: input.objectName ?? '',
      status: input.status,
      status_detail: input.statusDetail ?? '',
      last_error: '',
      progress: 0,
      user_id: input.userId ?? null,
      tenant_id: input.tenantId ?? null,
      tasks_json: '[]',
      created_at: now,
      updated_at: now,
      lease_owner: null,
      lease_expires_at: null,
    };
    await this.#store.jobs.insert(row);
    return jobView(row);
  }

  async list(
    auth: AuthContext,
    query: ListQuery<JobSortKey>,
    filter: { tenantId?: string | undefined },
  ): Promise<Listed<JobView, JobSortKey>> {
    const visibleTenantIds = await this.#visibleTenants(auth);
    const page = await this.#store.jobs.list(query, {
      visibleTenantIds,
      ownerId: auth.principal.kind === 'user' ? auth.principal.id : undefined,
      tenantId: filter.tenantId,
    });
    return { ...query, records: page.rows.map(jobView), total: page.total };
  }

  async get(auth: AuthContext, id: string): Promise<JobView> {
    // Same answer for a malformed id, an unknown job and another tenant's job.
    const row = isId(id) ? await this.#store.jobs.findById(id.toLowerCase()) : undefined;
    if (row) {
      const visible = await this.#visibleTenants(auth);
      const own = auth.principal.kind === 'user' && row.user_id === auth.principal.id;
      if (visible === undefined || own || (row.tenant_id !== null && visible.includes(row.tenant_id)))
        return jobView(row);
    }
    throw new GatehouseError('NOT_FOUND', 'no such job');
  }

  /**
   * Tenants whose jobs the caller reads (undefined: every tenant, a root user): those where it
   * administers or reads, as for the tenant's users. A `user` member reads only its own jobs.
   */
  async #visibleTenants(auth: AuthContext): Promise<string[] | undefined> {
    return readableTenantIds(await actorOf(this.#store, auth));
  }
}
