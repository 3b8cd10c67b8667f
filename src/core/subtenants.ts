import { GatehouseError } from '../errors.js';
import { isUniqueViolation, type Store } from '../store/connect.js';
import type { SubtenantSortKey, SubtenantWithTenant } from '../store/repositories/subtenants.js';
import type { AuditService } from './audit.js';
import {
  type Actor,
  actorOf,
  canManageTenantObjects,
  canReadTenantObjects,
  canSeeTenant,
  readableTenantIds,
} from './authorization.js';
import type { Clock } from './clock.js';
import { isId, newId } from './ids.js';
import type { Listed, ListQuery } from './listing.js';
import type { AuthContext, RequestMeta } from './sessions.js';

export type { SubtenantSortKey } from '../store/repositories/subtenants.js';

const SUBTENANT_CODE = /^[a-z0-9_]{1,64}$/;
const MAX_NAME = 255;
const MAX_DESCRIPTION = 1024;

/** The NSE subtenant record; `tenant` is the name of the tenant it belongs to. */
export interface SubtenantView {
  readonly id: string;
  readonly description: string;
  readonly name: string;
  readonly code: string;
  readonly tenant_id: string;
  readonly tenant: string;
}

export interface NewSubtenant {
  readonly tenantId: string;
  readonly code: string;
  readonly name: string;
  readonly description?: string | undefined;
}

export interface SubtenantChange {
  readonly name?: string | undefined;
  readonly description?: string | undefined;
  /** Neither may change; each is accepted when it repeats the current value. */
  readonly code?: string | undefined;
  readonly tenantId?: string | undefined;
}

const view = (row: SubtenantWithTenant): SubtenantView => ({
  id: row.id,
  description: row.description,
  name: row.name,
  code: row.code,
  tenant_id: row.tenant_id,
  tenant: row.tenant_name,
});

/**
 * Subtenants, inside a tenant. Root manages them all; admins and partners those of their tenants;
 * `read` members read them. A `user` member sees none: a subtenant belongs to no user, and
 * `user` reads only what is its own.
 */
export class SubtenantService {
  readonly #store: Store;
  readonly #clock: Clock;
  readonly #audit: AuditService;

  constructor(store: Store, clock: Clock, audit: AuditService) {
    this.#store = store;
    this.#clock = clock;
    this.#audit = audit;
  }

  async list(
    auth: AuthContext,
    query: ListQuery<SubtenantSortKey>,
    filter: { tenantId?: string | undefined },
  ): Promise<Listed<SubtenantView, SubtenantSortKey>> {
    const actor = await actorOf(this.#store, auth);
    const page = await this.#store.subtenants.list(query, {
      visibleTenantIds: readableTenantIds(actor),
      tenantId: filter.tenantId,
    });
    return { ...query, records: page.rows.map(view), total: page.total };
  }

  async get(auth: AuthContext, id: string): Promise<SubtenantView> {
    const actor = await actorOf(this.#store, auth);
    return view(await this.#readable(actor, id));
  }

  async create(auth: AuthContext, input: NewSubtenant, meta: RequestMeta): Promise<SubtenantView> {
    const actor = await actorOf(this.#store, auth);
    const tenant = isId(input.tenantId)
      ? await this.#store.tenants.findById(input.tenantId.toLowerCase())
      : undefined;
    // A tenant the caller cannot see answers as one that does not exist.
    if (!tenant || !canSeeTenant(actor, tenant.id)) {
      throw new GatehouseError('NOT_FOUND', 'no such tenant (tenant_id)');
    }
    requireManager(actor, tenant.id);
    if (!SUBTENANT_CODE.test(input.code)) {
      throw new GatehouseError('VALIDATION_FAILED', 'code must be 1-64 lower-case letters, digits or _');
    }
    const now = this.#clock.now();
    const row = {
      id: newId(now),
      tenant_id: tenant.id,
      code: input.code,
      name: checkName(input.name),
      description: checkDescription(input.description ?? ''),
      created_at: now,
      updated_at: now,
    };
    try {
      await this.#store.transaction(async (tx) => {
        await tx.subtenants.insert(row);
        await this.#audit.record(
          {
            action: 'subtenant.create',
            actor: auth.principal,
            target: { type: 'subtenant', id: row.id, name: row.code },
            tenantId: tenant.id,
            meta,
            outcome: 'success',
          },
          tx,
        );
      });
    } catch (error) {
      if (isUniqueViolation(error)) {
        throw new GatehouseError(
          'ALREADY_EXISTS',
          `tenant "${tenant.code}" already has a subtenant with code "${input.code}"`,
        );
      }
      throw error;
    }
    return view({ ...row, tenant_name: tenant.name });
  }

  async update(
    auth: AuthContext,
    id: string,
    change: SubtenantChange,
    meta: RequestMeta,
  ): Promise<SubtenantView> {
    const actor = await actorOf(this.#store, auth);
    const subtenant = await this.#readable(actor, id);
    requireManager(actor, subtenant.tenant_id);
    if (change.code !== undefined && change.code !== subtenant.code) {
      throw new GatehouseError(
        'VALIDATION_FAILED',
        "code cannot be changed: send the subtenant's own code or leave it out",
      );
    }
    if (change.tenantId !== undefined && change.tenantId !== subtenant.tenant_id) {
      throw new GatehouseError(
        'VALIDATION_FAILED',
        'tenant_id cannot be changed: a subtenant stays in its tenant',
      );
    }
    const patch = {
      ...(change.name !== undefined && { name: checkName(change.name) }),
      ...(change.description !== undefined && { description: checkDescription(change.description) }),
      updated_at: this.#clock.now(),
    };
    await this.#store.transaction(async (tx) => {
      await tx.subtenants.update(subtenant.id, patch);
      await this.#audit.record(
        {
          action: 'subtenant.update',
          actor: auth.principal,
          target: { type: 'subtenant', id: subtenant.id, name: subtenant.code },
          tenantId: subtenant.tenant_id,
          meta,
          outcome: 'success',
        },
        tx,
      );
    });
    return view({ ...subtenant, ...patch });
  }

  async remove(auth: AuthContext, id: string, meta: RequestMeta): Promise<void> {
    const actor = await actorOf(this.#store, auth);
    const subtenant = await this.#readable(actor, id);
    requireManager(actor, subtenant.tenant_id);
    await this.#store.transaction(async (tx) => {
      // Gone meanwhile (a concurrent delete): the caller wanted it gone, and it is.
      if (!(await tx.subtenants.delete(subtenant.id))) return;
      await this.#audit.record(
        {
          action: 'subtenant.delete',
          actor: auth.principal,
          target: { type: 'subtenant', id: subtenant.id, name: subtenant.code },
          tenantId: subtenant.tenant_id,
          meta,
          outcome: 'success',
        },
        tx,
      );
    });
  }

  /** The subtenant if the actor may read it; otherwise the same 404 as for an unknown id. */
  async #readable(actor: Actor, id: string): Promise<SubtenantWithTenant> {
    const subtenant = isId(id) ? await this.#store.subtenants.findById(id.toLowerCase()) : undefined;
    if (!subtenant || !canReadTenantObjects(actor, subtenant.tenant_id)) {
      throw new GatehouseError('NOT_FOUND', 'no such subtenant');
    }
    return subtenant;
  }
}

function requireManager(actor: Actor, tenantId: string): void {
  if (!canManageTenantObjects(actor, tenantId)) {
    throw new GatehouseError(
      'FORBIDDEN',
      "only root, or an admin or partner of the tenant, may change the tenant's subtenants",
    );
  }
}

function checkName(name: string): string {
  const trimmed = name.trim();
  if (trimmed.length < 1 || trimmed.length > MAX_NAME) {
    throw new GatehouseError('VALIDATION_FAILED', `name must be 1-${MAX_NAME} characters`);
  }
  return trimmed;
}

function checkDescription(description: string): string {
  if (description.length > MAX_DESCRIPTION) {
    throw new GatehouseError(
      'VALIDATION_FAILED',
      `description must be at most ${MAX_DESCRIPTION} characters`,
    );
  }
  return description;
}
