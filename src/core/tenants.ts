import { GatehouseError } from '../errors.js';
import { isUniqueViolation, type Store } from '../store/connect.js';
import type { Repositories } from '../store/repositories/index.js';
import type { RemovedMemberships, TenantRow, TenantSortKey } from '../store/repositories/tenants.js';
import type { AuditService } from './audit.js';
import {
  type Actor,
  actorOf,
  canManageTenantObjects,
  canSeeTenant,
  changingAuthority,
  keepOneRoot,
  LENT_TOKEN_UNBACKED,
  requireRoot,
} from './authorization.js';
import { SYSTEM_TENANT_CODE } from './bootstrap.js';
import type { Clock } from './clock.js';
import { isId, newId } from './ids.js';
import type { JobControl, JobRunner } from './job-runner.js';
import { type JobView, jobView } from './jobs.js';
import type { Listed, ListQuery } from './listing.js';
import type { AuthContext, Principal, RequestMeta } from './sessions.js';

export type { TenantSortKey } from '../store/repositories/tenants.js';

const TENANT_CODE = /^[a-z0-9_]{1,64}$/;
const MAX_NAME = 255;
const MAX_DESCRIPTION = 1024;

/** The NSE tenant record. Gatehouse keeps no usage data, so `usage` is always null. */
export interface TenantView {
  readonly id: string;
  readonly name: string;
  readonly zuora_account_name: string;
  readonly zuora_account_number: string;
  readonly description: string;
  readonly code: string;
  readonly usage: null;
}

export interface NewTenant {
  readonly code: string;
  readonly name: string;
  readonly description?: string | undefined;
  readonly zuoraAccountName?: string | undefined;
  readonly zuoraAccountNumber?: string | undefined;
}

export interface TenantChange {
  readonly name?: string | undefined;
  readonly description?: string | undefined;
  readonly zuoraAccountName?: string | undefined;
  readonly zuoraAccountNumber?: string | undefined;
  /** Not changeable; accepted when it repeats the tenant's code, as the reference's bodies do. */
  readonly code?: string | undefined;
}

export const tenantView = (row: TenantRow): TenantView => ({
  id: row.id,
  name: row.name,
  zuora_account_name: row.zuora_account_name,
  zuora_account_number: row.zuora_account_number,
  description: row.description,
  code: row.code,
  usage: null,
});

const SESSION_END_REASON = 'tenant-deleted';

/**
 * Tenants: root creates and deletes them; a member sees the tenants it belongs to; admins and
 * partners of a tenant change its name, description and billing fields. Deletion is a job.
 */
export class TenantService {
  readonly #store: Store;
  readonly #clock: Clock;
  readonly #audit: AuditService | undefined;
  readonly #jobRunner: JobRunner | undefined;

  /** Without `audit` and `jobRunner` only `create` works: what bootstrap and the CLI need. */
  constructor(store: Store, clock: Clock, audit?: AuditService, jobRunner?: JobRunner) {
    this.#store = store;
    this.#clock = clock;
    this.#audit = audit;
    this.#jobRunner = jobRunner;
  }

  /** Creates a tenant for the system itself (bootstrap, CLI): no caller to check. */
  async create(input: NewTenant): Promise<TenantRow> {
    if (!TENANT_CODE.test(input.code)) {
      throw new GatehouseError('VALIDATION_FAILED', 'code must be 1-64 lower-case letters, digits or _');
    }
    const name = checkName(input.name);
    const now = this.#clock.now();
    const row: TenantRow = {
      id: newId(now),
      code: input.code,
      name,
      description: checkLength('description', input.description ?? '', MAX_DESCRIPTION),
      zuora_account_name: checkLength('zuora_account_name', input.zuoraAccountName ?? '', MAX_NAME),
      zuora_account_number: checkLength('zuora_account_number', input.zuoraAccountNumber ?? '', MAX_NAME),
      created_at: now,
      updated_at: now,
    };
    try {
      await this.#store.tenants.insert(row);
    } catch (error) {
      if (isUniqueViolation(error)) {
        throw new GatehouseError('ALREADY_EXISTS', `a tenant with code "${input.code}" already exists`);
      }
      throw error;
    }
    return row;
  }

  /** Root sees every tenant; anyone else the tenants it has a tenancy in, whatever the role. */
  async list(auth: AuthContext, query: ListQuery<TenantSortKey>): Promise<Listed<TenantView, TenantSortKey>> {
    const actor = await actorOf(this.#store, auth);
    const visible = actor.isRoot ? undefined : actor.tenancies.map((t) => t.tenantId);
    const page = await this.#store.tenants.list(query, visible);
    return { ...query, records: page.rows.map(tenantView), total: page.total };
  }

  async get(auth: AuthContext, id: string): Promise<TenantView> {
    const actor = await actorOf(this.#store, auth);
    return tenantView(await this.#visible(actor, id));
  }

  async add(auth: AuthContext, input: NewTenant, meta: RequestMeta): Promise<TenantView> {
    requireRoot(await actorOf(this.#store, auth));
    const row = await this.create(input);
    await this.#requireAudit().record({
      action: 'tenant.create',
      actor: auth.principal,
      target: { type: 'tenant', id: row.id, name: row.code },
      tenantId: row.id,
      meta,
      outcome: 'success',
    });
    return tenantView(row);
  }

  async update(auth: AuthContext, id: string, change: TenantChange, meta: RequestMeta): Promise<TenantView> {
    const actor = await actorOf(this.#store, auth);
    const tenant = await this.#visible(actor, id);
    if (!canManageTenantObjects(actor, tenant.id)) {
      throw new GatehouseError(
        'FORBIDDEN',
        'only root, or an admin or partner of this tenant, may change it',
      );
    }
    if (change.code !== undefined && change.code !== tenant.code) {
      throw new GatehouseError(
        'VALIDATION_FAILED',
        "code cannot be changed: send the tenant's own code or leave it out",
      );
    }
    const patch = {
      ...(change.name !== undefined && { name: checkName(change.name) }),
      ...(change.description !== undefined && {
        description: checkLength('description', change.description, MAX_DESCRIPTION),
      }),
      ...(change.zuoraAccountName !== undefined && {
        zuora_account_name: checkLength('zuora_account_name', change.zuoraAccountName, MAX_NAME),
      }),
      ...(change.zuoraAccountNumber !== undefined && {
        zuora_account_number: checkLength('zuora_account_number', change.zuoraAccountNumber, MAX_NAME),
      }),
    };
    const updated: TenantRow = { ...tenant, ...patch, updated_at: this.#clock.now() };
    await this.#store.transaction(async (tx) => {
      await tx.tenants.update(tenant.id, { ...patch, updated_at: updated.updated_at });
      await this.#requireAudit().record(
        {
          action: 'tenant.update',
          actor: auth.principal,
          target: { type: 'tenant', id: tenant.id, name: tenant.code },
          tenantId: tenant.id,
          meta,
          outcome: 'success',
        },
        tx,
      );
    });
    return tenantView(updated);
  }

  /**
   * Starts the deletion of a tenant as a job and answers with it. The job removes the tenant's
   * subtenants and tenancies, ends the sessions of members left without any tenancy, then the
   * tenant. Every step can run again, so asking again after a failed job finishes the work;
   * asking while a deletion runs answers with the running job.
   */
  async requestDeletion(auth: AuthContext, id: string, meta: RequestMeta): Promise<JobView> {
    const actor = await actorOf(this.#store, auth);
    const tenant = await this.#visible(actor, id);
    requireRoot(actor);
    if (tenant.code === SYSTEM_TENANT_CODE) {
      throw new GatehouseError(
        'PRECONDITION_FAILED',
        `the tenant "${SYSTEM_TENANT_CODE}" holds the built-in administrator and cannot be deleted`,
      );
    }
    const running = await this.#store.jobs.findRunning('delete', 'tenants', tenant.id);
    if (running) return jobView(running);
    await this.#keepOneRoot(tenant);
    const runner = this.#jobRunner;
    if (!runner) throw new Error('TenantService was built without a job runner');
    return runner.submit(
      {
        action: 'delete',
        summary: `Delete tenant "${tenant.name}" (${tenant.code})`,
        statusDetail: 'Deletion request accepted.',
        // object_id keeps the tenant's id once the tenant (and so the job's tenant_id) is gone.
        objectId: tenant.id,
        objectType: 'tenants',
        objectName: tenant.name,
        userId: auth.principal.kind === 'user' ? auth.principal.id : null,
        tenantId: tenant.id,
      },
      (control) => this.#delete(control, tenant, auth.principal, meta),
    );
  }

  /**
   * Removes the tenant's memberships (ending the sessions of members left without a tenant) and,
   * in the same transaction, the sessions of tokens lent by or to its members whose maker no
   * longer manages their user for want of the tenancy.
   */
  async #removeMemberships(tx: Repositories, tenant: TenantRow): Promise<RemovedMemberships> {
    const now = this.#clock.now();
    let ended = { usersLeftWithoutTenant: 0, sessionsEnded: 0 };
    const removed = await changingAuthority(
      tx,
      now,
      [{ tenant: tenant.id }],
      () => tx.tenants.removeTenancies(tenant.id),
      {
        // After the tenancies and the tokens, in the order a user's change takes them; with the
        // lent tokens' sessions, in one statement, a session of both counted as the member's
        // (found by review: ended first as the token's, 1 session was counted of 2).
        endSessions: async (removed, unbackedApiTokens) => {
          const leftWithoutTenant = await tx.tenants.listUsersWithoutTenant(removed.userIds);
          const { sessionsOfUsers } = await tx.sessions.revokeAllOfUsersAndApiTokens(
            { ids: leftWithoutTenant, reason: SESSION_END_REASON },
            { ids: unbackedApiTokens, reason: LENT_TOKEN_UNBACKED },
            now,
          );
          ended = { usersLeftWithoutTenant: leftWithoutTenant.length, sessionsEnded: sessionsOfUsers };
        },
      },
    );
    return { memberships: removed.memberships, ...ended };
  }

  async #delete(
    control: JobControl,
    tenant: TenantRow,
    actor: Principal,
    meta: RequestMeta,
  ): Promise<string> {
    const audit = this.#requireAudit();
    try {
      // Again, now: a root of another tenant may have been demoted since the request.
      await this.#keepOneRoot(tenant);
      const subtenants = await this.#store.subtenants.deleteAllOfTenant(tenant.id);
      await control.report(`Removed ${count(subtenants, 'subtenant')}.`, 30);

      const first = await this.#store.transaction((tx) =>
        keepOneRoot(tx, () => this.#removeMemberships(tx, tenant), lastRootsRefusal(tenant)),
      );
      await control.report(
        `Removed ${count(subtenants, 'subtenant')} and ${count(first.memberships, 'membership')}; ended ${count(first.sessionsEnded, 'session')} of ${count(first.usersLeftWithoutTenant, 'user')} left without a tenant.`,
        70,
      );

      // Once more with the tenant itself, in one transaction: whoever joined meanwhile is covered.
      const last = await this.#store.transaction(async (tx) => {
        const removed = await keepOneRoot(
          tx,
          () => this.#removeMemberships(tx, tenant),
          lastRootsRefusal(tenant),
        );
        await tx.subtenants.deleteAllOfTenant(tenant.id);
        await tx.tenants.delete(tenant.id);
        await audit.record(
          {
            action: 'tenant.delete',
            actor,
            target: { type: 'tenant', id: tenant.id, name: tenant.code },
            tenantId: tenant.id,
            meta,
            outcome: 'success',
            reason: `job ${control.jobId}`,
          },
          tx,
        );
        return removed;
      });
      const memberships = first.memberships + last.memberships;
      const users = first.usersLeftWithoutTenant + last.usersLeftWithoutTenant;
      const sessions = first.sessionsEnded + last.sessionsEnded;
      return `Deletion of tenant "${tenant.code}" completed successfully: removed ${count(subtenants, 'subtenant')} and ${count(memberships, 'membership')}; ended ${count(sessions, 'session')} of ${count(users, 'user')} left without a tenant.`;
    } catch (error) {
      await audit
        .record({
          action: 'tenant.delete',
          actor,
          target: { type: 'tenant', id: tenant.id, name: tenant.code },
          tenantId: tenant.id,
          meta,
          outcome: 'failure',
          reason: `job ${control.jobId} failed`,
        })
        .catch(() => {});
      throw error;
    }
  }

  /**
   * Deleting a tenant removes its tenancies: if its root users were the only active ones, nobody
   * could manage the service any more but through the CLI (412, as for deleting the last root user).
   */
  async #keepOneRoot(tenant: TenantRow): Promise<void> {
    if ((await this.#store.users.countActiveWithRole('root', { tenantId: tenant.id })) > 0) return;
    throw new GatehouseError('PRECONDITION_FAILED', lastRootsRefusal(tenant));
  }

  /** The tenant if the actor may see it; otherwise the same 404 as for an unknown id. */
  async #visible(actor: Actor, id: string): Promise<TenantRow> {
    const tenant = isId(id) ? await this.#store.tenants.findById(id.toLowerCase()) : undefined;
    if (!tenant || !canSeeTenant(actor, tenant.id)) throw new GatehouseError('NOT_FOUND', 'no such tenant');
    return tenant;
  }

  #requireAudit(): AuditService {
    if (!this.#audit) throw new Error('TenantService was built without an audit service');
    return this.#audit;
  }
}

function checkName(name: string): string {
  const trimmed = name.trim();
  if (trimmed.length < 1 || trimmed.length > MAX_NAME) {
    throw new GatehouseError('VALIDATION_FAILED', `name must be 1-${MAX_NAME} characters`);
  }
  return trimmed;
}

function checkLength(field: string, value: string, max: number): string {
  if (value.length > max)
    throw new GatehouseError('VALIDATION_FAILED', `${field} must be at most ${max} characters`);
  return value;
}

function count(n: number, noun: string): string {
  return `${n.toLocaleString('en-US')} ${noun}${n === 1 ? '' : 's'}`;
}

function lastRootsRefusal(tenant: TenantRow): string {
  return `the tenant "${tenant.code}" holds the last active root users; make a user of another tenant root before you delete it`;
}
