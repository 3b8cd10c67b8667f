import { randomBytes } from 'node:crypto';
import type { Config } from '../config.js';
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
 */
export async function bootstrap(
  store: Store,
  config: Config,
  services: { rbac: RbacService; tenants: TenantService; accounts: AccountService },
): Promise<BootstrapResult> {
  await services.rbac.ensureBuiltins();
  if ((await store.users.count()) > 0) return { generatedAdminPassword: undefined, createdAdmin: false };

  if (!(await store.tenants.findByCode(SYSTEM_TENANT_CODE))) {
    await services.tenants.create({ code: SYSTEM_TENANT_CODE, name: 'System' });
  }
  const generated = config.adminPassword === undefined ? randomBytes(18).toString('base64url') : undefined;
  await services.accounts.createUser({
    username: ADMIN_USERNAME,
    password: config.adminPassword ?? generated,
    displayName: 'Administrator',
    tenantCode: SYSTEM_TENANT_CODE,
    role: 'root',
    groups: [BUILTIN_GROUPS.globalAdministrators.name],
  });
  return { generatedAdminPassword: generated, createdAdmin: true };
}
