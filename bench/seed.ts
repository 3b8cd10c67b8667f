// Puts the data of the benchmark into a store before the server starts: the accounts the load signs
// in with go through the core (so they are real), the filler of the large-store scenario is written
// in bulk with one shared password hash (hashing a million passwords would measure argon2, not the store).
import { randomBytes } from 'node:crypto';
import type { Insertable } from 'kysely';
import { loadConfig } from '../src/config.js';
import { newId } from '../src/core/ids.js';
import { createCore } from '../src/core/index.js';
import { PasswordHasher } from '../src/core/passwords.js';
import { accountKey, hashSecret, newSecret, SESSION_SECRET_PREFIX } from '../src/core/secrets.js';
import { connectStore, type Store, storeOptionsOf } from '../src/store/connect.js';
import type { SessionTable, UserTable } from '../src/store/schema.js';

export const BENCH_PASSWORD = 'Bench-pass-phrase-2026!';
/** Accounts the load signs in as, one per connection at most. */
const LOAD_USERS = 64;
const BATCH = 500;
/** Users written per transaction, as the import writes them (ROWS_PER_BATCH in user-import.ts). */
const USERS_PER_TRANSACTION = 1000;

export interface SeedFacts {
  readonly password: string;
  /** argon2id of `password` with the server's parameters, for the pre-hashed import. */
  readonly passwordHash: string;
  readonly usernames: readonly string[];
  /** Rows/s of inserting `rows` users with their tenancy in batches, as a plain bulk load would. */
  bulkInsertRate(env: Record<string, string>, rows: number): Promise<number>;
}

function open(env: Record<string, string>): { store: Store; config: ReturnType<typeof loadConfig> } {
  const config = loadConfig({ ...env, GATEHOUSE_ADMIN_PASSWORD: BENCH_PASSWORD });
  // The same store stack as the Gatehouse under test, prepared statements included.
  return { store: connectStore(storeOptionsOf(config)), config };
}

/** A user row as the core writes one, for bulk loads. */
function userRow(username: string, passwordHash: string, now: number): Insertable<UserTable> {
  return {
    id: newId(now),
    username,
    username_key: accountKey(username),
    first_name: 'Bench',
    last_name: username,
    display_name: '',
    email: `${username}@bench.example`,
    phone: '',
    provider: 'local',
    external_id: null,
    password_hash: passwordHash,
    active: 1,
    language: 'en',
    ui_time_zone: 'UTC',
    ui_console_mode: 'light',
    page_size: 25,
    time_format: 24,
    info_tour_enabled: 0,
    last_success_at: null,
    last_failed_at: null,
    last_failed_ip: null,
    locked_until: null,
    password_changed_at: now,
    created_at: now,
    updated_at: now,
  };
}

async function insertUsers(
  store: Store,
  prefix: string,
  from: number,
  to: number,
  passwordHash: string,
  tenantId: string,
): Promise<string[]> {
  const ids: string[] = [];
  for (let start = from; start < to; start += USERS_PER_TRANSACTION) {
    const now = Date.now();
    const rows = Array.from({ length: Math.min(USERS_PER_TRANSACTION, to - start) }, (_, i) =>
      userRow(`${prefix}${start + i}`, passwordHash, now),
    );
    // The store's own bulk writes, as the import's: the baseline is the same statements without
    // the checks, the audit events and the job around them.
    await store.transaction(async (tx) => {
      await tx.users.insertMany(rows);
      await tx.users.addTenancies(
        rows.map((row) => ({ user_id: row.id, tenant_id: tenantId, role: 'user' as const, created_at: now })),
      );
    });
    ids.push(...rows.map((row) => row.id));
  }
  return ids;
}

export async function seedStore(
  env: Record<string, string>,
  totalUsers: number,
  connections: number,
): Promise<SeedFacts> {
  const { store, config } = open(env);
  await store.migrate();
  const core = await createCore({ config, store });
  await core.bootstrap();
  const tenant = await core.tenants.create({ code: 'bench', name: 'Benchmark' });
  for (const region of ['au-east1', 'eu-west1', 'us-east1']) {
    await core.catalog.createRegion({ name: region, description: `Region ${region}` });
    for (const zone of ['a', 'b']) {
      await core.catalog.createZone({ name: `${region}-${zone}`, regionName: region, description: 'zone' });
    }
  }
  const usernames: string[] = [];
  for (let i = 1; i <= Math.max(connections, Math.min(LOAD_USERS, connections * 2)); i += 1) {
    const username = `bench${i}`;
    await core.accounts.createUser({ username, password: BENCH_PASSWORD, tenantCode: 'bench', role: 'user' });
    usernames.push(username);
  }
  const hasher = new PasswordHasher(config.argon2, undefined, 1);
  const passwordHash = await hasher.hash(BENCH_PASSWORD);
  await hasher.close();
  const existing = await store.users.count();
  await insertUsers(store, 'filler', existing, totalUsers, passwordHash, tenant.id);
  await core.close();
  await store.destroy();
  return {
    password: BENCH_PASSWORD,
    passwordHash,
    usernames,
    async bulkInsertRate(runEnv, rows) {
      const again = open(runEnv).store;
      try {
        const started = performance.now();
        await insertUsers(again, `bulk${Date.now()}-`, 0, rows, passwordHash, tenant.id);
        return rows / ((performance.now() - started) / 1000);
      } finally {
        await again.destroy();
      }
    },
  };
}

/**
 * Grows the store to `total` users, each user it adds with one live session, and returns the
 * cookie values (session secrets) of `sampled` of those sessions, spread evenly over them: the
 * large-store reads go to sessions all over the table, not to a few new ones at its end.
 */
export async function growStore(
  env: Record<string, string>,
  total: number,
  sampled: number,
): Promise<string[]> {
  const { store } = open(env);
  try {
    const tenant = await store.tenants.findByCode('bench');
    if (!tenant) throw new Error('seed the store first');
    const passwordHash = (await store.users.findByUsernameKey('bench1'))?.password_hash ?? '';
    const existing = await store.users.count();
    const ids = await insertUsers(store, 'large', existing, total, passwordHash, tenant.id);
    const every = Math.max(1, Math.floor(ids.length / sampled));
    const secrets: string[] = [];
    for (let start = 0; start < ids.length; start += BATCH) {
      const now = Date.now();
      const rows: Insertable<SessionTable>[] = ids.slice(start, start + BATCH).map((userId, i) => {
        let secretHash = randomBytes(32).toString('hex');
        if ((start + i) % every === 0 && secrets.length < sampled) {
          const secret = newSecret(SESSION_SECRET_PREFIX);
          secrets.push(secret);
          secretHash = hashSecret(secret);
        }
        return {
          id: newId(now),
          kind: 'user',
          user_id: userId,
          node_id: null,
          api_token_id: null,
          secret_hash: secretHash,
          created_at: now,
          last_seen_at: now,
          expires_at: now + 12 * 3600_000,
          revoked_at: null,
          revoke_reason: null,
          ip: '127.0.0.1',
          user_agent: 'bench',
          prev_success_at: null,
          prev_failed_at: null,
          prev_failed_ip: null,
        };
      });
      await store.db.insertInto('sessions').values(rows).execute();
    }
    return secrets;
  } finally {
    await store.destroy();
  }
}

/** The NSE bearer token of each session whose cookie value is given, signed by the store's key. */
export async function bearerTokensOf(
  env: Record<string, string>,
  secrets: readonly string[],
): Promise<string[]> {
  const { store, config } = open(env);
  const core = await createCore({ config, store });
  try {
    const tokens: string[] = [];
    for (const secret of secrets) {
      const auth = await core.sessions.authenticateSecret(secret);
      if (!auth.session) throw new Error('a seeded session was not found');
      tokens.push(await core.sessions.issueToken({ ...auth, session: auth.session }));
    }
    return tokens;
  } finally {
    await core.close();
    await store.destroy();
  }
}
