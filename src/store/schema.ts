import type { ColumnType, Generated } from 'kysely';

/**
 * Table types for Kysely. Columns are chosen so that every query works unchanged on SQLite and
 * PostgreSQL: times are epoch milliseconds (bigint), flags are 0/1 integers, JSON is text.
 */
type EpochMs = number;
type Flag = 0 | 1;

export interface TenantTable {
  id: string;
  code: string;
  name: string;
  description: ColumnType<string, string | undefined, string>;
  zuora_account_name: ColumnType<string, string | undefined, string>;
  zuora_account_number: ColumnType<string, string | undefined, string>;
  created_at: EpochMs;
  updated_at: EpochMs;
}

export interface UserTable {
  id: string;
  username: string;
  /** NFKC + lower case: the case-insensitive unique key. */
  username_key: string;
  first_name: string;
  last_name: string;
  display_name: string;
  email: string;
  phone: string;
  provider: 'local' | 'activeDirectory';
  external_id: string | null;
  password_hash: string | null;
  active: Flag;
  language: string;
  ui_time_zone: string;
  ui_console_mode: string;
  page_size: number;
  time_format: number;
  info_tour_enabled: Flag;
  last_success_at: EpochMs | null;
  last_failed_at: EpochMs | null;
  last_failed_ip: string | null;
  failed_count: ColumnType<number, number | undefined, number>;
  locked_until: EpochMs | null;
  password_changed_at: EpochMs | null;
  created_at: EpochMs;
  updated_at: EpochMs;
}

export interface TenancyTable {
  user_id: string;
  tenant_id: string;
  role: 'root' | 'partner' | 'admin' | 'user' | 'read';
  created_at: EpochMs;
}

export interface RoleTable {
  id: string;
  name: string;
  description: string;
  builtin: Flag;
  created_at: EpochMs;
}

export interface RolePrivilegeTable {
  role_id: string;
  privilege: string;
}

export interface UserGroupTable {
  id: string;
  name: string;
  description: string;
  builtin: Flag;
  created_at: EpochMs;
}

export interface GroupRoleTable {
  group_id: string;
  role_id: string;
}

export interface GroupMemberTable {
  group_id: string;
  user_id: string;
}

export interface NodeTable {
  id: string;
  login: string;
  login_key: string;
  password_hash: string;
  version: string | null;
  role_id: string;
  active: Flag;
  last_seen_at: EpochMs | null;
  last_success_at: EpochMs | null;
  last_failed_at: EpochMs | null;
  last_failed_ip: string | null;
  failed_count: ColumnType<number, number | undefined, number>;
  locked_until: EpochMs | null;
  /** Null for nodes made before migration 0011. */
  password_changed_at: EpochMs | null;
  created_at: EpochMs;
  updated_at: EpochMs;
}

export interface SessionTable {
  id: string;
  kind: 'user' | 'node' | 'token';
  user_id: string | null;
  node_id: string | null;
  api_token_id: string | null;
  /** SHA-256 of the opaque session secret held in the cookie; never the secret itself. */
  secret_hash: string;
  created_at: EpochMs;
  last_seen_at: EpochMs;
  expires_at: EpochMs;
  revoked_at: EpochMs | null;
  revoke_reason: string | null;
  ip: string;
  user_agent: string;
  /** Login history as it stood before this login, shown for the whole session. */
  prev_success_at: EpochMs | null;
  prev_failed_at: EpochMs | null;
  prev_failed_ip: string | null;
  /** Generation of the newest NSE bearer token issued for this session; older ones are replays. */
  token_generation: ColumnType<number, number | undefined, number>;
  /** Until when the token of the generation before the newest is still accepted (refresh grace). */
  prior_token_valid_until: ColumnType<EpochMs | null, EpochMs | null | undefined, EpochMs | null>;
}

export interface ApiTokenTable {
  id: string;
  user_id: string;
  name: string;
  secret_hash: string;
  created_at: EpochMs;
  expires_at: EpochMs | null;
  last_used_at: EpochMs | null;
  revoked_at: EpochMs | null;
  /** The user who made it; null: the CLI, or made before this was kept (migration 0010). */
  created_by: string | null;
  /**
   * Moved by every change to who manages whom that concerns a lent token (its maker's or its
   * user's): a sign-in with it is written only while this is what it read (migration 0012).
   */
  authority_version: ColumnType<number, number | undefined, number>;
}

export interface SigningKeyTable {
  kid: string;
  purpose: 'session' | 'endpoints';
  algorithm: 'HS256' | 'ES256';
  /** AES-256-GCM sealed with the master key. */
  sealed_material: string;
  public_jwk: string | null;
  created_at: EpochMs;
  retired_at: EpochMs | null;
}

export interface RegionTable {
  id: string;
  name: string;
  description: string;
  user_id: string | null;
  created_at: EpochMs;
  updated_at: EpochMs;
}

export interface ZoneTable {
  id: string;
  name: string;
  description: string;
  region_id: string;
  created_at: EpochMs;
  updated_at: EpochMs;
}

export interface JobTable {
  id: string;
  action: string;
  job_summary: string;
  object_id: string;
  object_type: string;
  object_name: string;
  status: string;
  status_detail: string;
  last_error: string;
  progress: number;
  user_id: string | null;
  tenant_id: string | null;
  tasks_json: string;
  created_at: EpochMs;
  updated_at: EpochMs;
  /** The process running the job; with lease_expires_at, how others know it is still alive. */
  lease_owner: ColumnType<string | null, string | null | undefined, string | null>;
  lease_expires_at: ColumnType<EpochMs | null, EpochMs | null | undefined, EpochMs | null>;
}

export interface ImportFailureTable {
  job_id: string;
  row_number: number;
  reason: string;
}

export interface ImportRequestTable {
  user_id: string;
  idempotency_key: string;
  job_id: string;
  body_sha256: string;
  created_at: EpochMs;
}

export interface SubtenantTable {
  id: string;
  tenant_id: string;
  code: string;
  name: string;
  description: string;
  created_at: EpochMs;
  updated_at: EpochMs;
}

export interface AuditEventTable {
  id: string;
  at: EpochMs;
  actor_type: 'user' | 'node' | 'system' | 'anonymous';
  actor_id: string | null;
  actor_name: string;
  action: string;
  target_type: string;
  target_id: string | null;
  target_name: string;
  tenant_id: string | null;
  ip: string;
  outcome: 'success' | 'failure';
  /** Internal detail (why a sign-in failed); never a secret. */
  reason: string;
}

/** Brute-force and rate-limit counters (migration 0007); see repositories/login-throttle.ts. */
export interface LoginThrottleTable {
  scope: string;
  subject: string;
  owner: string | null;
  hits: number;
  window_start: EpochMs;
  locked_until: EpochMs | null;
  expires_at: EpochMs;
}

/** SQLite's change feed (PostgreSQL uses LISTEN/NOTIFY): what changed, in commit order. */
export interface CacheInvalidationTable {
  seq: Generated<number>;
  /** `session:<id>`, `user:<id>`, `node:<id>`, `api-token:<id>` or `*` (everything). */
  tag: string;
  created_at: EpochMs;
}

export interface Database {
  tenants: TenantTable;
  users: UserTable;
  tenancies: TenancyTable;
  roles: RoleTable;
  role_privileges: RolePrivilegeTable;
  user_groups: UserGroupTable;
  group_roles: GroupRoleTable;
  group_members: GroupMemberTable;
  nodes: NodeTable;
  sessions: SessionTable;
  api_tokens: ApiTokenTable;
  signing_keys: SigningKeyTable;
  regions: RegionTable;
  zones: ZoneTable;
  jobs: JobTable;
  subtenants: SubtenantTable;
  audit_events: AuditEventTable;
  import_failures: ImportFailureTable;
  import_requests: ImportRequestTable;
  login_throttle: LoginThrottleTable;
  cache_invalidations: CacheInvalidationTable;
}
