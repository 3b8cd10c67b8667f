import type { Insertable } from 'kysely';
import type { Config } from '../config.js';
import { GatehouseError } from '../errors.js';
import { changeTags } from '../store/change-feed.js';
import { isUniqueViolation, type Store } from '../store/connect.js';
import type { ApiTokenRow } from '../store/repositories/api-tokens.js';
import type { Repositories } from '../store/repositories/index.js';
import type { Role, TenancyView, UserRow } from '../store/repositories/users.js';
import type { UserTable } from '../store/schema.js';
import { endWithPassword } from './authorization.js';
import type { Clock } from './clock.js';
import { isId, newId } from './ids.js';
import type { LoginThrottle } from './login-throttle.js';
import { checkPasswordPolicy, type PasswordHasher } from './passwords.js';
import { API_TOKEN_PREFIX, accountKey, hashSecret, newSecret } from './secrets.js';
import type { TaggedCache } from './tagged-cache.js';
import { checkProfile } from './user-profile.js';

export const ROLES: readonly Role[] = ['root', 'partner', 'admin', 'user', 'read'];

export interface NewUser {
  readonly username: string;
  readonly password?: string | undefined;
  /**
   * A password hashed elsewhere (import from another system): argon2, bcrypt or scrypt, within
   * the caps of `PasswordHasher.checkImported`. Instead of `password`; the policy cannot apply.
   */
  readonly passwordHash?: string | undefined;
  readonly firstName?: string | undefined;
  readonly lastName?: string | undefined;
  readonly displayName?: string | undefined;
  readonly email?: string | undefined;
  readonly tenantCode?: string | undefined;
  readonly role?: Role | undefined;
  readonly groups?: readonly string[] | undefined;
  readonly phone?: string | undefined;
  /** Default `local`. A directory user has no password: its directory checks it. */
  readonly provider?: 'local' | 'activeDirectory' | undefined;
  /** Tenancies by tenant id, for callers that resolved (and authorized) the tenants already. */
  readonly tenancies?: readonly { readonly tenantId: string; readonly role: Role }[] | undefined;
}

/** A new user checked and hashed by `prepareUser`, not yet written. */
export interface PreparedUser {
  readonly row: Insertable<UserTable>;
  readonly tenancies: readonly { readonly tenantId: string; readonly role: Role }[];
}

/** What both surfaces show of a user; each renders its own shape from it. */
export interface UserView {
  readonly id: string;
  readonly username: string;
  readonly firstName: string;
  readonly lastName: string;
  readonly displayName: string;
  readonly email: string;
  readonly tenancies: TenancyView[];
}

export const userView = (row: UserRow, tenancies: TenancyView[]): UserView => ({
  id: row.id,
  username: row.username,
  firstName: row.first_name,
  lastName: row.last_name,
  displayName: row.display_name,
  email: row.email,
  tenancies,
});

const USERNAME = /^[\p{L}\p{N}._@+-]{1,128}$/u;
const NODE_LOGIN = /^[\p{L}\p{N}._@-]{1,128}$/u;

/**
 * The scripts whose letters pass for one another's: a name mixing them ("аdmin" with a Cyrillic
 * "а") is a look-alike of another name, made to be taken for it in a list or an audit trail. As
 * UTS #39's "moderately restrictive" level, a name may hold letters of one of them only (with
 * letters of any other script, and digits and signs, which belong to none).
 */
const LOOK_ALIKE_SCRIPTS = [/\p{Script=Latin}/u, /\p{Script=Greek}/u, /\p{Script=Cyrillic}/u];

function mixesLookAlikeScripts(name: string): boolean {
  return LOOK_ALIKE_SCRIPTS.filter((script) => script.test(name)).length > 1;
}

/**
 * A name shaped like a user id is refused so that `/users/{id}`, which also takes a user name,
 * never has two readings. Checked when a name is given (creation, rename), not at sign-in.
 */
export function checkUsername(username: string): void {
  if (!USERNAME.test(username)) {
    throw new GatehouseError(
      'VALIDATION_FAILED',
      'username must be 1-128 letters, digits or the characters . _ @ + -',
    );
  }
  if (isId(username)) {
    throw new GatehouseError('VALIDATION_FAILED', 'username must not have the form of a user id (a UUID)');
  }
  if (mixesLookAlikeScripts(username)) {
    throw new GatehouseError(
      'VALIDATION_FAILED',
      'username must not mix Latin, Greek and Cyrillic letters (names that pass for others)',
    );
  }
}

/** Users, nodes and API tokens: creating them and changing their credentials. */
export class AccountService {
  readonly #store: Store;
  readonly #clock: Clock;
  readonly #config: Config;
  readonly #hasher: PasswordHasher;
  readonly #throttle: LoginThrottle;
  readonly #profiles: TaggedCache<UserView>;

  constructor(
    store: Store,
    clock: Clock,
    config: Config,
    hasher: PasswordHasher,
    throttle: LoginThrottle,
    profiles: TaggedCache<UserView>,
  ) {
    this.#store = store;
    this.#clock = clock;
    this.#config = config;
    this.#hasher = hasher;
    this.#throttle = throttle;
    this.#profiles = profiles;
  }

  /** A password set by an administrator also ends the sign-in locks of the account. */
  async clearLockout(kind: 'user' | 'node', name: string): Promise<void> {
    await this.#throttle.unlockAccount(kind, name);
  }

  /**
   * The checks and the hashing of a new user, without writing it: tenancies must come by id (the
   * caller resolved and authorized them). `createUser` and bulk creation (import) both use it.
   * `options.provider` overrides the input's (a copy of the input with it set, `{ ...input }`,
   * took V8's slow path: ~1.3 µs and 1 KiB of garbage per user of an import).
   */
  async prepareUser(
    input: NewUser,
    options: { bulk?: boolean; provider?: NewUser['provider'] } = {},
  ): Promise<PreparedUser> {
    const provider = this.#checkNewUser(input, options.provider);
    const passwordHash =
      input.password === undefined
        ? (input.passwordHash ?? null)
        : await this.#hasher.hash(input.password, { bulk: options.bulk });
    return newUserRow(input, provider, passwordHash, this.#clock.now());
  }

  /**
   * `prepareUser` for a user with no password to hash here (a hash given, or none): the same
   * checks, answered at once. An import of pre-hashed users then spends no await per row.
   */
  prepareUnhashed(input: NewUser, options: { provider?: NewUser['provider'] } = {}): PreparedUser {
    if (input.password !== undefined) {
      throw new Error('prepareUnhashed: this user has a password to hash; use prepareUser');
    }
    const provider = this.#checkNewUser(input, options.provider);
    return newUserRow(input, provider, input.passwordHash ?? null, this.#clock.now());
  }

  /** The rules a new user must pass before anything is hashed or written; returns its provider. */
  #checkNewUser(input: NewUser, providerOverride: NewUser['provider']): 'local' | 'activeDirectory' {
    const provider = providerOverride ?? input.provider ?? 'local';
    checkUsername(input.username);
    if (
      provider === 'activeDirectory' &&
      (input.password !== undefined || input.passwordHash !== undefined)
    ) {
      throw new GatehouseError(
        'VALIDATION_FAILED',
        'a directory (activeDirectory) user has no local password',
      );
    }
    if (input.password !== undefined && input.passwordHash !== undefined) {
      throw new GatehouseError('VALIDATION_FAILED', 'give a password or a password hash, not both');
    }
    if (input.tenancies !== undefined && input.tenantCode !== undefined) {
      throw new GatehouseError('VALIDATION_FAILED', 'give tenancies by id or one tenant by code, not both');
    }
    if (input.tenancies !== undefined && input.tenancies.length > 1) {
      const tenantIds = input.tenancies.map((t) => t.tenantId);
      if (new Set(tenantIds).size !== tenantIds.length) {
        throw new GatehouseError('VALIDATION_FAILED', 'tenancies names a tenant more than once');
      }
    }
    if (input.password !== undefined) {
      checkPasswordPolicy(input.password, input.username, { minLength: this.#config.passwordMinLength });
    }
    if (input.passwordHash !== undefined) this.#hasher.checkImported(input.passwordHash);
    if ((input.tenantCode === undefined) !== (input.role === undefined)) {
      throw new GatehouseError('VALIDATION_FAILED', 'a tenant and a role go together: give both or neither');
    }
    if (input.role !== undefined && !ROLES.includes(input.role)) {
      throw new GatehouseError('VALIDATION_FAILED', `role must be one of ${ROLES.join(', ')}`);
    }
    return provider;
  }

  /** Writes prepared users and their tenancies, in as few statements as the store allows. */
  async insertPrepared(tx: Repositories, users: readonly PreparedUser[]): Promise<void> {
    await tx.users.insertMany(users.map((user) => user.row));
    await tx.users.addTenancies(
      users.flatMap((user) =>
        user.tenancies.map((tenancy) => ({
          user_id: user.row.id,
          tenant_id: tenancy.tenantId,
          role: tenancy.role,
          created_at: user.row.created_at,
        })),
      ),
    );
  }

  /** `within` runs inside the creating transaction (an audit event that must share its fate). */
  async createUser(
    input: NewUser,
    within?: (tx: Repositories, user: { id: string; username: string }) => Promise<void>,
  ): Promise<UserRow> {
    checkProfile(input);
    const prepared = await this.prepareUser(input);
    const { id } = prepared.row;
    try {
      await this.#store.transaction(async (tx) => {
        const tenant =
          input.tenantCode === undefined ? undefined : await tx.tenants.findByCode(input.tenantCode);
        if (input.tenantCode !== undefined && !tenant) {
          throw new GatehouseError('NOT_FOUND', `no tenant with code "${input.tenantCode}"`);
        }
        const groupIds: string[] = [];
        for (const name of input.groups ?? []) {
          const group = await tx.rbac.findGroupByName(name);
          if (!group) throw new GatehouseError('NOT_FOUND', `no group named "${name}"`);
          groupIds.push(group.id);
        }
        const tenancies =
          tenant && input.role ? [{ tenantId: tenant.id, role: input.role }] : prepared.tenancies;
        await this.insertPrepared(tx, [{ ...prepared, tenancies }]);
        for (const groupId of groupIds) await tx.rbac.addGroupMember(groupId, id);
        await within?.(tx, { id, username: input.username });
      });
    } catch (error) {
      if (isUniqueViolation(error)) {
        throw new GatehouseError('ALREADY_EXISTS', `a user named "${input.username}" already exists`);
      }
      throw error;
    }
    const user = await this.#store.users.findById(id);
    if (!user) throw new Error('created user vanished');
    return user;
  }

  /** An operator sets a password (CLI): every session of the user ends, every API token is revoked. */
  async setPassword(username: string, password: string): Promise<{ id: string; username: string }> {
    const user = await this.#store.users.findByUsernameKey(accountKey(username));
    if (!user) throw new GatehouseError('NOT_FOUND', `no user named "${username}"`);
    if (user.provider !== 'local') {
      throw new GatehouseError(
        'VALIDATION_FAILED',
        'a directory (activeDirectory) user has no local password',
      );
    }
    checkPasswordPolicy(password, user.username, { minLength: this.#config.passwordMinLength });
    const passwordHash = await this.#hasher.hash(password);
    const now = this.#clock.now();
    await this.#store.transaction(async (tx) => {
      await tx.users.setPassword(user.id, passwordHash, now);
      await endWithPassword(tx, user.id, now, 'password-set');
    });
    await this.clearLockout('user', user.username);
    return { id: user.id, username: user.username };
  }

  /**
   * The user as the sign-in, refresh and password answers show it: cached per process under the
   * user and each of its tenants, whose writes (profile, tenancies, a tenant's name) drop it.
   */
  async viewUser(userId: string): Promise<UserView> {
    const cached = this.#profiles.lookup(userId);
    this.#profiles.counted(cached !== undefined);
    if (cached) return cached;
    const mark = this.#profiles.mark();
    const user = await this.#store.users.findById(userId);
    if (!user) throw new GatehouseError('NOT_FOUND', 'no such user');
    const view = userView(user, await this.#store.users.tenancies(user.id));
    const tags = [
      changeTags.user(userId),
      ...view.tenancies.map((tenancy) => changeTags.tenant(tenancy.tenantId)),
    ];
    this.#profiles.put(userId, view, tags, mark);
    return view;
  }

  /** `within` runs inside the creating transaction (an audit event that must share its fate). */
  async createNode(
    input: { login: string; password: string },
    within?: (tx: Repositories, node: { id: string; login: string }) => Promise<void>,
  ): Promise<{ id: string; login: string }> {
    if (!NODE_LOGIN.test(input.login)) {
      throw new GatehouseError(
        'VALIDATION_FAILED',
        'login must be 1-128 letters, digits or the characters . _ @ -',
      );
    }
    if (mixesLookAlikeScripts(input.login)) {
      throw new GatehouseError(
        'VALIDATION_FAILED',
        'login must not mix Latin, Greek and Cyrillic letters (names that pass for others)',
      );
    }
    checkPasswordPolicy(input.password, input.login, { minLength: this.#config.passwordMinLength });
    const role = await this.#store.rbac.findRoleByName('Backup Node');
    if (!role) throw new Error('built-in role "Backup Node" is missing: run migrations');
    const passwordHash = await this.#hasher.hash(input.password);
    const now = this.#clock.now();
    const id = newId(now);
    try {
      await this.#store.transaction(async (tx) => {
        await tx.nodes.insert({
          id,
          login: input.login,
          login_key: accountKey(input.login),
          password_hash: passwordHash,
          version: null,
          role_id: role.id,
          active: 1,
          last_seen_at: null,
          last_success_at: null,
          last_failed_at: null,
          last_failed_ip: null,
          locked_until: null,
          password_changed_at: now,
          created_at: now,
          updated_at: now,
        });
        await within?.(tx, { id, login: input.login });
      });
    } catch (error) {
      if (isUniqueViolation(error)) {
        throw new GatehouseError('ALREADY_EXISTS', `a node with login "${input.login}" already exists`);
      }
      throw error;
    }
    return { id, login: input.login };
  }

  /** Issues an API token; the secret is returned once and only its hash is kept. */
  async createApiToken(input: {
    username: string;
    name?: string | undefined;
    expiresInMs?: number | undefined;
  }): Promise<{ id: string; token: string; expiresAt: number | null }> {
    const user = await this.#store.users.findByUsernameKey(accountKey(input.username));
    if (!user) throw new GatehouseError('NOT_FOUND', `no user named "${input.username}"`);
    const expiresAt = input.expiresInMs === undefined ? null : this.#clock.now() + input.expiresInMs;
    const issued = await this.issueApiToken({ userId: user.id, name: input.name ?? 'api token', expiresAt });
    return { id: issued.row.id, token: issued.token, expiresAt };
  }

  /** The one place an API token secret is made: for the CLI above and the tokens API. */
  async issueApiToken(
    input: { userId: string; name: string; expiresAt: number | null; createdBy?: string | undefined },
    store: Pick<Repositories, 'apiTokens'> = this.#store,
  ): Promise<{ row: ApiTokenRow; token: string }> {
    if (input.name.length < 1 || input.name.length > 128) {
      throw new GatehouseError('VALIDATION_FAILED', 'name must be 1-128 characters');
    }
    const now = this.#clock.now();
    const token = newSecret(API_TOKEN_PREFIX);
    const row: ApiTokenRow = {
      id: newId(now),
      user_id: input.userId,
      name: input.name,
      secret_hash: hashSecret(token),
      created_at: now,
      expires_at: input.expiresAt,
      last_used_at: null,
      revoked_at: null,
      created_by: input.createdBy ?? null,
      authority_version: 0,
    };
    await store.apiTokens.insert(row);
    return { row, token };
  }
}

/** A new user's row as `prepareUser` makes it, its password already hashed (or none). */
function newUserRow(
  input: NewUser,
  provider: 'local' | 'activeDirectory',
  passwordHash: string | null,
  now: number,
): PreparedUser {
  return {
    row: {
      id: newId(now),
      username: input.username,
      username_key: accountKey(input.username),
      first_name: input.firstName ?? '',
      last_name: input.lastName ?? '',
      display_name: input.displayName ?? '',
      email: input.email ?? '',
      phone: input.phone ?? '',
      provider,
      external_id: null,
      password_hash: passwordHash,
      active: 1,
      language: 'EN',
      ui_time_zone: 'UTC',
      ui_console_mode: 'WORKFLOW',
      page_size: 20,
      time_format: 24,
      info_tour_enabled: 1,
      last_success_at: null,
      last_failed_at: null,
      last_failed_ip: null,
      locked_until: null,
      password_changed_at: passwordHash ? now : null,
      created_at: now,
      updated_at: now,
    },
    tenancies: input.tenancies ?? [],
  };
}
