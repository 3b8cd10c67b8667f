import type { Config } from '../config.js';
import type { Store } from '../store/connect.js';
import { AccountService } from './accounts.js';
import { AuditService } from './audit.js';
import { AuthenticationService } from './authentication.js';
import { type BootstrapResult, bootstrap } from './bootstrap.js';
import { CatalogService } from './catalog.js';
import { type Clock, systemClock } from './clock.js';
import { JobService } from './jobs.js';
import { Keyring, loadMasterKey } from './keyring.js';
import { PasswordHasher } from './passwords.js';
import { RbacService } from './rbac.js';
import { SessionInfoService } from './session-info.js';
import { SessionService } from './sessions.js';
import { TenantService } from './tenants.js';
import { TokenService } from './tokens.js';

export interface Core {
  readonly config: Config;
  readonly store: Store;
  readonly clock: Clock;
  readonly keyring: Keyring;
  readonly sessions: SessionService;
  readonly authentication: AuthenticationService;
  readonly accounts: AccountService;
  readonly tenants: TenantService;
  readonly rbac: RbacService;
  readonly sessionInfo: SessionInfoService;
  readonly catalog: CatalogService;
  readonly jobs: JobService;
  readonly audit: AuditService;
  /** Built-ins and, on an empty store, the first admin. */
  bootstrap(): Promise<BootstrapResult>;
}

/** Wires the core services over a migrated store. No HTTP, no SQL. */
export async function createCore(deps: { config: Config; store: Store; clock?: Clock }): Promise<Core> {
  const { config, store } = deps;
  const clock = deps.clock ?? systemClock;
  const keyring = new Keyring(store, clock, loadMasterKey(config.masterKey, config.dataDir));
  await keyring.load();
  const hasher = new PasswordHasher(config.argon2);
  const tokens = new TokenService(keyring, clock, config.issuer);
  const sessions = new SessionService(store, clock, tokens, config);
  const rbac = new RbacService(store, clock);
  const accounts = new AccountService(store, clock, config, hasher);
  const tenants = new TenantService(store, clock);
  const audit = new AuditService(store, clock);
  return {
    config,
    store,
    clock,
    keyring,
    sessions,
    authentication: new AuthenticationService(store, clock, config, hasher, sessions, audit),
    accounts,
    tenants,
    rbac,
    sessionInfo: new SessionInfoService(store, clock, config, rbac, tokens),
    catalog: new CatalogService(store, clock),
    jobs: new JobService(store, clock),
    audit,
    bootstrap: () => bootstrap(store, config, { rbac, tenants, accounts }),
  };
}
