import type { Config } from '../config.js';
import type { Store } from '../store/connect.js';
import { AccessManagementService } from './access-management.js';
import { AccountService, type UserView } from './accounts.js';
import { ApiTokenAdminService } from './api-token-admin.js';
import { AuditService } from './audit.js';
import { AuthenticationService } from './authentication.js';
import { type BootstrapResult, bootstrap } from './bootstrap.js';
import { type CatalogListing, CatalogService } from './catalog.js';
import { type Clock, systemClock } from './clock.js';
import { CredentialCache } from './credential-cache.js';
import { HousekeepingService } from './housekeeping.js';
import { JobRunner } from './job-runner.js';
import { JobService } from './jobs.js';
import { Keyring, loadMasterKey } from './keyring.js';
import { LockoutAdminService } from './lockout-admin.js';
import { createLoginDefences } from './login-defences.js';
import type { LoginThrottle } from './login-throttle.js';
import { Metrics } from './metrics.js';
import { NodeAdminService } from './node-admin.js';
import { loadCommonPasswords, PasswordHasher } from './passwords.js';
import type { RateLimiter } from './rate-limiter.js';
import { RbacService } from './rbac.js';
import { SessionAdminService } from './session-admin.js';
import { type CacheStats, SessionCache } from './session-cache.js';
import { SessionInfoService, type UiSettings } from './session-info.js';
import { SessionService, sessionCopyLifetimeMs } from './sessions.js';
import { SubtenantService } from './subtenants.js';
import { TaggedCache, type TagKind } from './tagged-cache.js';
import { TenantService } from './tenants.js';
import { TokenService } from './tokens.js';
import { UserAdminService } from './user-admin.js';
import { UserImportService } from './user-import.js';

export interface Caches {
  readonly sessions: SessionCache;
  readonly credentials: CredentialCache;
  /** Effective privileges per user or node. */
  readonly privileges: TaggedCache<readonly string[]>;
  /** UI settings per user (session info). */
  readonly settings: TaggedCache<UiSettings>;
  /** Region and zone lists. */
  readonly catalog: TaggedCache<CatalogListing>;
  /** Users as the NSE sign-in and refresh answers show them. */
  readonly profiles: TaggedCache<UserView>;
  stats(): Readonly<
    Record<'sessions' | 'credentials' | 'privileges' | 'settings' | 'catalog' | 'profiles', CacheStats>
  >;
}

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
  readonly subtenants: SubtenantService;
  /** Runs jobs' work in the background of this process. */
  readonly jobRunner: JobRunner;
  /** Deletes long-expired sessions and long-finished jobs (the retention settings). */
  readonly housekeeping: HousekeepingService;
  readonly userAdmin: UserAdminService;
  readonly userImport: UserImportService;
  readonly sessionAdmin: SessionAdminService;
  readonly apiTokenAdmin: ApiTokenAdminService;
  readonly nodeAdmin: NodeAdminService;
  readonly accessManagement: AccessManagementService;
  /** Brute-force defence of password sign-ins: progressive delay and locks, shared by every node. */
  readonly throttle: LoginThrottle;
  /** Per-address limits of the sign-in, password, token, refresh and node-login routes. */
  readonly rateLimiter: RateLimiter;
  readonly lockoutAdmin: LockoutAdminService;
  /** Prometheus instruments of this process (sign-ins, hashing, store, caches; HTTP from the app). */
  readonly metrics: Metrics;
  /**
   * This process's caches (sessions by token or cookie, verified HTTP Basic credentials,
   * privileges, UI settings, the catalog) and their hit and miss counts since start.
   */
  readonly caches: Caches;
  /** Built-ins and, on an empty store, the first admin. */
  bootstrap(): Promise<BootstrapResult>;
  /**
   * The server begins its drain: requests waiting on another change (a refresh whose session row
   * another transaction holds) give up with a 503 rather than keep the drain waiting.
   */
  stopWaiting(): void;
  /**
   * Stops the housekeeping, waits for running jobs to write their outcome and closes the
   * counters' Redis connection; call it before the store is closed.
   */
  close(): Promise<void>;
}

/** Wires the core services over a migrated store. No HTTP, no SQL. */
export async function createCore(deps: {
  config: Config;
  store: Store;
  clock?: Clock;
  /** The process serves this core (default): its metrics include the process's (Metrics). */
  serving?: boolean;
}): Promise<Core> {
  const { config, store } = deps;
  const clock = deps.clock ?? systemClock;
  const metrics = new Metrics({
    clock,
    processMetrics: deps.serving ?? true,
    // Read on scrape only, after the services below exist: the same rule as a session's own check.
    countLiveSessions: () => store.sessions.countLive(sessions.liveBounds()),
  });
  store.observeQueries((query) =>
    metrics.observeStoreQuery(query.dialect, query.statement, query.durationMs / 1000),
  );
  const audit = new AuditService(store, clock);
  const keyring = new Keyring(store, clock, loadMasterKey(config.masterKey, config.dataDir), {
    overlapMs: config.keyOverlapMs,
    audit,
  });
  await keyring.load();
  if (deps.serving ?? true) keyring.watch();
  const hasher = new PasswordHasher(config.argon2, metrics, config.hashThreads, config.hashQueueLimit);
  // Read the password blocklist now: a missing file stops start-up, not the first password change.
  loadCommonPasswords();
  const { throttle, rateLimiter } = await createLoginDefences({
    config,
    store,
    clock,
    masterKey: loadMasterKey(config.masterKey, config.dataDir),
    metrics,
  });
  const tokens = new TokenService(keyring, clock, config.issuer);
  const readCache = <V>(
    name: 'privileges' | 'settings' | 'catalog' | 'profiles',
    kinds: readonly TagKind[],
  ) =>
    new TaggedCache<V>(store.changes, clock, { ttlMs: config.readCacheTtlMs, kinds }, (hit) =>
      metrics.recordCacheLookup(name, hit),
    );
  const caches: Caches = {
    sessions: new SessionCache(store.changes, clock, { ttlMs: sessionCopyLifetimeMs(config) }, (hit) =>
      metrics.recordCacheLookup('session', hit),
    ),
    credentials: new CredentialCache(store.changes, clock, { ttlMs: config.credentialCacheTtlMs }, (hit) =>
      metrics.recordCacheLookup('credentials', hit),
    ),
    privileges: readCache('privileges', ['rbac', 'user', 'node']),
    settings: readCache('settings', ['user']),
    catalog: readCache('catalog', ['catalog']),
    profiles: readCache('profiles', ['user', 'tenant']),
    stats: () => ({
      sessions: caches.sessions.stats(),
      credentials: caches.credentials.stats(),
      privileges: caches.privileges.stats(),
      settings: caches.settings.stats(),
      catalog: caches.catalog.stats(),
      profiles: caches.profiles.stats(),
    }),
  };
  const sessions = new SessionService(store, clock, tokens, config, audit, caches.sessions);
  const rbac = new RbacService(store, clock, caches.privileges);
  const accounts = new AccountService(store, clock, config, hasher, throttle, caches.profiles);
  const jobRunner = new JobRunner(store, clock, { leaseMs: config.jobLeaseMs });
  const tenants = new TenantService(store, clock, audit, jobRunner);
  // Its own UserAdminService: the service holds no state, and the import applies the same rules.
  const userImport = new UserImportService(
    store,
    clock,
    config,
    jobRunner,
    new UserAdminService(store, clock, config, hasher, accounts, audit),
    audit,
  );
  const housekeeping = new HousekeepingService(store, clock, config, metrics);
  jobRunner.afterRecovery(() => userImport.sweepSpool());
  // Jobs left running by a process that stopped (its lease expired) end as failed, not running for ever.
  await jobRunner.recoverInterrupted();
  await userImport.sweepSpool();
  return {
    config,
    store,
    clock,
    keyring,
    sessions,
    authentication: new AuthenticationService(
      store,
      clock,
      config,
      hasher,
      sessions,
      audit,
      throttle,
      metrics,
      caches.credentials,
    ),
    accounts,
    tenants,
    rbac,
    sessionInfo: new SessionInfoService(store, clock, config, rbac, tokens, caches.settings),
    catalog: new CatalogService(store, clock, audit, caches.catalog),
    jobs: new JobService(store, clock),
    audit,
    subtenants: new SubtenantService(store, clock, audit),
    jobRunner,
    housekeeping,
    stopWaiting: () => sessions.stopWaiting(),
    close: async () => {
      sessions.stopWaiting();
      await housekeeping.close();
      await jobRunner.drain();
      await rateLimiter.flush();
      await throttle.close();
      await hasher.close();
    },
    userAdmin: new UserAdminService(store, clock, config, hasher, accounts, audit),
    userImport,
    sessionAdmin: new SessionAdminService(store, clock, sessions, audit),
    apiTokenAdmin: new ApiTokenAdminService(store, clock, accounts, audit, {
      perUser: config.apiTokensPerUser,
    }),
    nodeAdmin: new NodeAdminService(store, clock, config, hasher, accounts, audit),
    accessManagement: new AccessManagementService(store, clock, rbac, audit),
    throttle,
    rateLimiter,
    lockoutAdmin: new LockoutAdminService(store, throttle, audit),
    metrics,
    caches,
    bootstrap: () => bootstrap(store, config, { rbac, tenants, accounts }),
  };
}
