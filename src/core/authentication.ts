import type { Config } from '../config.js';
import { GatehouseError } from '../errors.js';
import type { Store } from '../store/connect.js';
import type { NodeRow } from '../store/repositories/nodes.js';
import type { UserRow } from '../store/repositories/users.js';
import type { AuditService } from './audit.js';
import type { Clock } from './clock.js';
import { checkPasswordPolicy, PASSWORD_MAX_LENGTH, type PasswordHasher } from './passwords.js';
import { API_TOKEN_PREFIX, accountKey, hashSecret } from './secrets.js';
import type {
  AuthContext,
  LoginHistory,
  OpenedSession,
  Principal,
  RequestMeta,
  SessionService,
} from './sessions.js';
import { compareVersions } from './versions.js';

const historyOf = (row: UserRow | NodeRow): LoginHistory => ({
  lastSuccessAt: row.last_success_at,
  lastFailedAt: row.last_failed_at,
  lastFailedIp: row.last_failed_ip,
});

/**
 * Every way of signing in. The rules (lockout, inactive accounts, equal work for unknown
 * accounts) live here once, so both surfaces behave the same.
 */
export class AuthenticationService {
  readonly #store: Store;
  readonly #clock: Clock;
  readonly #config: Config;
  readonly #hasher: PasswordHasher;
  readonly #sessions: SessionService;

  readonly #audit: AuditService;

  constructor(
    store: Store,
    clock: Clock,
    config: Config,
    hasher: PasswordHasher,
    sessions: SessionService,
    audit: AuditService,
  ) {
    this.#store = store;
    this.#clock = clock;
    this.#config = config;
    this.#hasher = hasher;
    this.#sessions = sessions;
    this.#audit = audit;
  }

  /** The tenant an event about this user is filed under: its first tenancy. */
  async #tenantOf(userId: string): Promise<string | null> {
    return (await this.#store.users.tenancies(userId))[0]?.tenantId ?? null;
  }

  /** Records the refusal (with its real reason, for operators) and answers as for any refusal. */
  async #refuse(
    target: { kind: 'user' | 'node'; id: string; name: string } | undefined,
    reason: string,
    meta: RequestMeta,
  ): Promise<never> {
    await this.#audit.record({
      action: 'signin',
      actor: null,
      // An unknown name is not written down: people type passwords into the username field.
      target: target && { type: target.kind, id: target.id, name: target.name },
      tenantId: target?.kind === 'user' ? await this.#tenantOf(target.id) : null,
      meta,
      outcome: 'failure',
      reason,
    });
    throw new GatehouseError('INVALID_CREDENTIALS');
  }

  async #recordFailure(
    account: { kind: 'user' | 'node'; id: string; name: string },
    meta: RequestMeta,
  ): Promise<void> {
    const repository = account.kind === 'user' ? this.#store.users : this.#store.nodes;
    const outcome = await repository.recordFailure(
      account.id,
      this.#clock.now(),
      meta.ip,
      this.#config.lockoutThreshold,
      this.#config.lockoutDurationMs,
    );
    if (outcome?.failedCount === this.#config.lockoutThreshold) {
      await this.#audit.record({
        action: 'lockout',
        actor: undefined,
        target: { type: account.kind, id: account.id, name: account.name },
        tenantId: account.kind === 'user' ? await this.#tenantOf(account.id) : null,
        meta,
        outcome: 'success',
        reason: `${outcome.failedCount} consecutive failures`,
      });
    }
  }

  async #signedIn(principal: Principal, meta: RequestMeta, reason: string): Promise<void> {
    await this.#audit.record({
      action: 'signin',
      actor: principal,
      target: { type: principal.kind, id: principal.id, name: principal.name },
      tenantId: principal.kind === 'user' ? await this.#tenantOf(principal.id) : null,
      meta,
      outcome: 'success',
      reason,
    });
  }

  /**
   * Checks a username and password. Unknown, wrong, locked and inactive all get the same error
   * after the same hashing work; only a wrong password counts towards the lockout.
   */
  async verifyUserPassword(username: string, password: string, meta: RequestMeta): Promise<UserRow> {
    const user =
      username.length > 0 && username.length <= 256 && password.length <= PASSWORD_MAX_LENGTH * 4
        ? await this.#store.users.findByUsernameKey(accountKey(username))
        : undefined;
    if (!user?.password_hash) {
      await this.#hasher.verifyDummy(password);
      return this.#refuse(undefined, user ? 'no-local-password' : 'unknown-user', meta);
    }
    const account = { kind: 'user' as const, id: user.id, name: user.username };
    const matches = await this.#hasher.verify(user.password_hash, password);
    const now = this.#clock.now();
    if (!matches) {
      await this.#recordFailure(account, meta);
      return this.#refuse(account, 'wrong-password', meta);
    }
    if (user.active !== 1) return this.#refuse(account, 'inactive', meta);
    if (user.locked_until !== null && user.locked_until > now) return this.#refuse(account, 'locked', meta);
    return user;
  }

  /** Password sign-in of a user, on either surface: a new session. */
  async signIn(username: string, password: string, meta: RequestMeta): Promise<OpenedSession> {
    const user = await this.verifyUserPassword(username, password, meta);
    await this.#store.users.recordSuccess(user.id, this.#clock.now());
    await this.#signedIn(userPrincipal(user), meta, 'password');
    return this.#sessions.open(userPrincipal(user), { kind: 'user', history: historyOf(user), meta });
  }

  /**
   * A user changes their own password, proving the old one. Every session of the user ends; the
   * caller gets a new one.
   */
  async changePassword(
    input: { username: string; oldPassword: string; newPassword: string },
    meta: RequestMeta,
  ): Promise<OpenedSession> {
    const user = await this.verifyUserPassword(input.username, input.oldPassword, meta);
    checkPasswordPolicy(input.newPassword, user.username, { minLength: this.#config.passwordMinLength });
    const passwordHash = await this.#hasher.hash(input.newPassword);
    const now = this.#clock.now();
    return this.#store.transaction(async (tx) => {
      await tx.users.update(user.id, {
        password_hash: passwordHash,
        password_changed_at: now,
        updated_at: now,
      });
      await tx.users.recordSuccess(user.id, now);
      await tx.sessions.revokeAllOfUser(user.id, now, 'password-changed');
      await this.#audit.record(
        {
          action: 'password.change',
          actor: userPrincipal(user),
          target: { type: 'user', id: user.id, name: user.username },
          tenantId: (await tx.users.tenancies(user.id))[0]?.tenantId ?? null,
          meta,
          outcome: 'success',
        },
        tx,
      );
      return this.#sessions.open(userPrincipal(user), { kind: 'user', history: historyOf(user), meta }, tx);
    });
  }

  /** Backup-node agent sign-in; versions below the configured minimum are refused first. */
  async nodeSignIn(
    login: string,
    password: string,
    version: string,
    meta: RequestMeta,
  ): Promise<OpenedSession> {
    const minimum = this.#config.nodeMinVersion;
    if (minimum !== undefined) {
      const comparison = compareVersions(version, minimum);
      if (comparison === undefined) {
        throw new GatehouseError(
          'NODE_VERSION_UNSUPPORTED',
          `Node version "${version.slice(0, 40)}" is not a version number such as ${minimum}.`,
        );
      }
      if (comparison < 0) {
        throw new GatehouseError(
          'NODE_VERSION_UNSUPPORTED',
          `Node version ${version} is older than the minimum supported version ${minimum}. Upgrade the node.`,
        );
      }
    }
    const node =
      login.length > 0 && login.length <= 256 && password.length <= PASSWORD_MAX_LENGTH * 4
        ? await this.#store.nodes.findByLoginKey(accountKey(login))
        : undefined;
    if (!node) {
      await this.#hasher.verifyDummy(password);
      return this.#refuse(undefined, 'unknown-node', meta);
    }
    const account = { kind: 'node' as const, id: node.id, name: node.login };
    const now = this.#clock.now();
    if (!(await this.#hasher.verify(node.password_hash, password))) {
      await this.#recordFailure(account, meta);
      return this.#refuse(account, 'wrong-password', meta);
    }
    if (node.active !== 1) return this.#refuse(account, 'inactive', meta);
    if (node.locked_until !== null && node.locked_until > now) return this.#refuse(account, 'locked', meta);
    await this.#store.nodes.recordSuccess(node.id, now);
    await this.#store.nodes.recordVersion(node.id, version.slice(0, 64), now);
    await this.#signedIn(account, meta, `node ${version.slice(0, 64)}`);
    return this.#sessions.open(account, { kind: 'node', history: historyOf(node), meta });
  }

  /** Ends the caller's session (logout), on both surfaces at once. */
  async signOut(auth: AuthContext, meta: RequestMeta): Promise<void> {
    if (!auth.session) return;
    if (await this.#sessions.end(auth.session.id, 'logout')) {
      await this.#audit.record({
        action: 'signout',
        actor: auth.principal,
        target: { type: 'session', id: auth.session.id },
        tenantId: auth.principal.kind === 'user' ? await this.#tenantOf(auth.principal.id) : null,
        meta,
        outcome: 'success',
      });
    }
  }

  /** Sign-in with a long-lived API token: a session of kind "token" for the token's user. */
  async tokenSignIn(token: string, meta: RequestMeta): Promise<OpenedSession> {
    const row =
      token.startsWith(API_TOKEN_PREFIX) && token.length < 200
        ? await this.#store.apiTokens.findBySecretHash(hashSecret(token))
        : undefined;
    const now = this.#clock.now();
    if (!row || row.revoked_at !== null || (row.expires_at !== null && row.expires_at <= now)) {
      throw new GatehouseError('INVALID_API_TOKEN');
    }
    const user = await this.#store.users.findById(row.user_id);
    // A password lockout protects the password; it does not stop a token the user issued.
    if (user?.active !== 1) throw new GatehouseError('INVALID_API_TOKEN');
    await this.#store.apiTokens.markUsed(row.id, now);
    await this.#store.users.recordOtherLogin(user.id, now);
    await this.#signedIn(userPrincipal(user), meta, `api token ${row.name}`);
    return this.#sessions.open(userPrincipal(user), {
      kind: 'token',
      apiTokenId: row.id,
      notAfter: row.expires_at,
      history: historyOf(user),
      meta,
    });
  }
}

export function userPrincipal(user: UserRow): Principal {
  return { kind: 'user', id: user.id, name: user.username };
}
