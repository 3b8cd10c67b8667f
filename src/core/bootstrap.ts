import { randomBytes } from 'node:crypto';
import type { Config } from '../config.js';
import { GatehouseError } from '../errors.js';
import type { Store } from '../store/connect.js';
import type { AccountService } from './accounts.js';
import { BUILTIN_GROUPS } from './privilege-catalog.js';
import type { RbacService } from './rbac.js';
import type { TenantService } from './tenants.js';

export const SYSTEM_TENANT_CODE = 'system';
export const ADMIN_USERNAME = 'admin';

export interface BootstrapResult {
  /** Set only when Gatehouse made the admin password up; shown once to the operator. */
  readonly generatedAdminPassword: string | undefined;
  readonly createdAdmin: boolean;
}

/**
 * Runs at every start after migrations: keeps the built-in roles and groups in step, and on an
 * empty store creates tenant `system` and its root user `admin`.
 *
 * Several nodes may start at once on one empty database (a deployment of N replicas): each sees
 * no user, and all but one then find the tenant or the admin made by another. That is not an
 * error: they start as on a bootstrapped store, and only the one that made the admin shows its
 * generated password.
 */
export async function bootstrap(
  store: Store,
  config: Config,
  services: { rbac: RbacService; tenants: TenantService; accounts: AccountService },
): Promise<BootstrapResult> {
  await services.rbac.ensureBuiltins();
  if ((await store.users.count()) > 0) return { generatedAdminPassword: undefined, createdAdmin: false };

  if (!(await store.tenants.findByCode(SYSTEM_TENANT_CODE))) {
    await createdHere(services.tenants.create({ code: SYSTEM_TENANT_CODE, name: 'System' }));
  }
  const generated = config.adminPassword === undefined ? randomBytes(18).toString('base64url') : undefined;
  const created = await createdHere(
    services.accounts.createUser({
      username: ADMIN_USERNAME,
      password: config.adminPassword ?? generated,
      displayName: 'Administrator',
      tenantCode: SYSTEM_TENANT_CODE,
      role: 'root',
      groups: [BUILTIN_GROUPS.globalAdministrators.name],
    }),
  );
  if (!created) return { generatedAdminPassword: undefined, createdAdmin: false };
  return { generatedAdminPassword: generated, createdAdmin: true };
}

/** False where another process made the same thing first (its unique key taken). */
async function createdHere(creating: Promise<unknown>): Promise<boolean> {
  try {
    await creating;
    return true;
  } catch (error) {
    if (error instanceof GatehouseError && error.code === 'ALREADY_EXISTS') return false;
    throw error;
  }
}
