import { LRUCache } from 'lru-cache';
import type { Config } from '../config.js';
import { GatehouseError, isGatehouseError } from '../errors.js';
import { changeTags } from '../store/change-feed.js';
import { GuardFailed, type Store } from '../store/connect.js';
import type { Repositories } from '../store/repositories/index.js';
import type { NodeRow } from '../store/repositories/nodes.js';
import type { SigningInUser, UserRow } from '../store/repositories/users.js';
import type { AuditEntry, AuditService } from './audit.js';
import { endWithPassword, makerStillManages, revokedTokensNote } from './authorization.js';
import { type Clock, sleep } from './clock.js';
import type { CredentialCache } from './credential-cache.js';
import type { Admission, LockScope, LoginThrottle, PlacedLock, SignInAttempt } from './login-throttle.js';
import type { Metrics, SignInOutcome, SignInSurface } from './metrics.js';
import {
  BUSY_RETRY_AFTER_S,
  checkPasswordPolicy,
  PASSWORD_MAX_LENGTH,
  type PasswordHasher,
} from './passwords.js';
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
 * An id no account has. A refusal for an unknown name runs the same queries as one for a real
 * account (login history, tenant of the event) against it, matching nothing: like the dummy hash,
 * so that the time of the answer does not tell whether the name exists.
 */
const NO_ACCOUNT = '';

/** A refused sign-in's account, and for a user the tenant its events are filed under. */
interface RefusedAccount {
  readonly id: string;
  readonly name: string;
  readonly tenantId?: string | null;
}

const refusedUser = (user: SigningInUser): RefusedAccount => ({
  id: user.id,
  name: user.username,
  tenantId: user.first_tenant_id,
});

const refusedNode = (node: NodeRow): RefusedAccount => ({ id: node.id, name: node.login });

/**
 * The refusal's reason when the password was right but the account changed while it was checked
 * (a password set, a deactivation: #signedIn). Not counted toward a lock.
 */
const CHANGED_MEANWHILE = 'changed-during-sign-in';

/**
 * Tries of a token sign-in whose writes found the token or its user changed since they were read;
 * each reads and checks them again. Past this a token whose version keeps moving is refused.
 */
const TOKEN_SIGN_IN_ATTEMPTS = 5;

const LOCK_REASON = {
  pair: 'locked: too many failures of this account from this address',
  account: 'locked: too many failures of this account from several addresses',
  address: 'locked: too many failures from this address',
} as const;

const LOCK_REASONS: ReadonlySet<string> = new Set(Object.values(LOCK_REASON));

/**
 * A refusal that costs no hashing, and so can be repeated fast (under a lock: `#refuseLocked`; of
 * an API token: `#refuseToken`), is recorded at most this often per kind, address and process.
 */
const REPEATED_REFUSAL_RECORD_MS = 60_000;
/** Such refusals whose last record a process remembers. */
const REPEATED_REFUSALS_REMEMBERED = 10_000;

/** The audit reason of a lock a failure just placed. */
function lockoutReason(lock: PlacedLock): string {
  switch (lock.scope) {
    case 'pair':
      return `${lock.failures} consecutive failures`;
    case 'account':
      return `${lock.failures} failures from several addresses: the account is locked for every address`;
    case 'address':
      return `${lock.failures} failures from this address: its sign-ins are locked`;
  }
}

/**
 * Every way of signing in. The rules (brute-force throttle, inactive accounts, equal work for
 * unknown accounts) live here once, so both surfaces behave the same.
 *
 * Every refusal of a password (unknown name, wrong password, inactive, locked) answers the same
 * INVALID_CREDENTIALS after the same argon2 work, and the throttle counts unknown names exactly
 * like known ones, so neither the answer, nor its timing, nor a lock tells whether a name exists.
 */
export class AuthenticationService {
  readonly #store: Store;
  readonly #clock: Clock;
  readonly #config: Config;
  readonly #hasher: PasswordHasher;
  readonly #sessions: SessionService;
  readonly #audit: AuditService;
  readonly #throttle: LoginThrottle;
  readonly #credentials: CredentialCache;
  readonly #metrics: Metrics;
  /** The outcome of a refusal for the sign-in counter, by its error: all answer INVALID_CREDENTIALS. */
  readonly #refusals = new WeakMap<object, SignInOutcome>();
  /**
   * When a repeated refusal was last recorded here: under each lock and address
   * (`LoginThrottle.lockKey`), of each API token, reason and address.
   */
  readonly #repeatedRefusalsRecorded = new LRUCache<string, number>({
    max: REPEATED_REFUSALS_REMEMBERED,
  });

  constructor(
    store: Store,
    clock: Clock,
    config: Config,
    hasher: PasswordHasher,
    sessions: SessionService,
    audit: AuditService,
    throttle: LoginThrottle,
    metrics: Metrics,
    credentials: CredentialCache,
  ) {
    this.#store = store;
    this.#clock = clock;
    this.#config = config;
    this.#hasher = hasher;
    this.#sessions = sessions;
    this.#audit = audit;
    this.#throttle = throttle;
    this.#metrics = metrics;
    this.#credentials = credentials;
  }

  /** Counts a sign-in once it has settled, by surface and outcome: never by name or address. */
  async #counted<T>(surface: SignInSurface, attempt: Promise<T>): Promise<T> {
    try {
      const result = await attempt;
      this.#metrics.recordSignIn(surface, 'success');
      return result;
    } catch (error) {
      const outcome = this.#outcomeOf(error);
      this.#metrics.recordSignIn(surface, outcome);
      // Told only after the Retry-After it gives: a client that tries again at once would otherwise
      // keep the event loop busy refusing it, and the hashing threads, which yield to the event
      // loop, would starve (docs/scaling.md: 8 sign-ins/s instead of 100 in such a storm).
      if (outcome === 'busy') await sleep(this.#clock, BUSY_RETRY_AFTER_S * 1000);
      throw error;
    }
  }

  #outcomeOf(error: unknown): SignInOutcome {
    const marked = typeof error === 'object' && error !== null ? this.#refusals.get(error) : undefined;
    if (marked) return marked;
    if (!isGatehouseError(error)) return 'error';
    switch (error.code) {
      case 'INVALID_CREDENTIALS':
      case 'INVALID_API_TOKEN':
        return 'invalid_credentials';
      case 'NODE_VERSION_UNSUPPORTED':
        return 'unsupported_version';
      case 'TOO_MANY_REQUESTS':
        return 'rate_limited';
      case 'SERVICE_BUSY':
        return 'busy';
      case 'CLIENT_CLOSED_REQUEST':
        return 'abandoned';
      default:
        return 'error';
    }
  }

  /**
   * Records a refusal (with its real reason, for operators) and answers as for any refusal. A
   * counted failure (`locks` given: those it placed, often none) also goes into the account's
   * login history, in the same transaction as its events. An unknown name runs the same
   * statements against NO_ACCOUNT, matching nothing, so that both answers take the same time. A
   * user's tenant came with the user (`findSigningIn`): no statement of its own for either.
   */
  async #refuse(
    kind: 'user' | 'node',
    target: RefusedAccount | undefined,
    reason: string,
    meta: RequestMeta,
    locks?: readonly PlacedLock[],
  ): Promise<never> {
    const tenantId = target?.tenantId ?? null;
    // An unknown name is not written down: people type passwords into the username field.
    const account = target && { type: kind, id: target.id, name: target.name };
    const now = this.#clock.now();
    const events: AuditEntry[] = (locks ?? []).map((lock) => {
      // An address lock is about the address, not the account.
      const ofAccount = lock.scope !== 'address';
      return {
        action: 'lockout',
        actor: undefined,
        target: ofAccount ? account : undefined,
        tenantId: ofAccount ? tenantId : null,
        meta,
        outcome: 'success',
        reason: lockoutReason(lock),
      };
    });
    events.push({
      action: 'signin',
      actor: null,
      target: account,
      tenantId,
      meta,
      outcome: 'failure',
      reason,
    });
    // The history and the events in one multi-row insert: one statement on PostgreSQL.
    await this.#store.writeTogether(async (tx) => {
      if (locks) {
        const history = kind === 'user' ? tx.users : tx.nodes;
        await history.recordFailedAttempt(target?.id ?? NO_ACCOUNT, now, meta.ip);
      }
      await this.#audit.recordMany(events, tx);
    });
    throw this.#refusal(LOCK_REASONS.has(reason) ? 'locked' : 'invalid_credentials');
  }

  /** The one answer of every refusal, marked with its outcome for the sign-in counter. */
  #refusal(outcome: SignInOutcome): GatehouseError {
    const refusal = new GatehouseError('INVALID_CREDENTIALS');
    this.#refusals.set(refusal, outcome);
    return refusal;
  }

  /**
   * A refusal under a lock: its audit event is written once a minute per lock, address and
   * process, not once per attempt. The lock's own event says who is locked out, from where and why; an event
   * per refused attempt let a flood of guesses from a locked address (HTTP Basic has no rate
   * limit of its own, and a locked attempt costs no hashing) write a row each, without end. Every
   * refusal is still counted in `gatehouse_signins_total{outcome="locked"}`.
   */
  #refuseLocked(
    kind: 'user' | 'node',
    target: RefusedAccount | undefined,
    lock: LockScope,
    attempt: SignInAttempt,
    meta: RequestMeta,
  ): Promise<never> {
    // Keyed by account and address under an account or pair lock, so that one address's flood
    // does not hide another's attempts (the real user's among them); by address under its lock.
    const key = `${kind} ${this.#throttle.lockKey(attempt, lock === 'address' ? 'address' : 'pair')}`;
    const now = this.#clock.now();
    const recorded = this.#repeatedRefusalsRecorded.get(key);
    if (recorded === undefined || now - recorded >= REPEATED_REFUSAL_RECORD_MS) {
      this.#repeatedRefusalsRecorded.set(key, now);
      return this.#refuse(kind, target, LOCK_REASON[lock], meta);
    }
    return Promise.reject(this.#refusal('locked'));
  }

  /**
   * The writes of a successful sign-in, all or none: the account's own bookkeeping (`record`),
   * the audit event and the new session. Never a session without its event or the other way
   * round; on PostgreSQL one statement (`Store.writeGuarded`), one round trip where a transaction
   * of the same writes takes five. `tenantId` files the event: a user's first tenancy, none for a
   * node.
   *
   * `record` comes first and answers whether the account still stands as it was checked (active,
   * the same password, the token not revoked); its update holds the account's row until the
   * session commits. A password set, a deactivation or a revocation made while the password was
   * being checked (each updates that row before ending the sessions) thus either came first, and
   * nothing is written (undefined), or waits for this session and ends it too. Written without
   * that check (as they were until 2026-12-06), a sign-in in flight during a password reset kept
   * its session, found by review: 27 of 296 on three nodes of one PostgreSQL.
   */
  #signedIn(
    principal: Principal,
    tenantId: string | null,
    meta: RequestMeta,
    reason: string,
    session: Parameters<SessionService['open']>[1],
    record: (tx: Repositories) => Promise<boolean>,
    /**
     * `several`: `record` updates more than one row (a token sign-in: the user's, then the
     * token's). Those writes are a transaction: in one statement, the first row's update would
     * stand when the second found its row changed (found by review).
     */
    guards: 'one' | 'several' = 'one',
  ): Promise<OpenedSession | undefined> {
    const write = <T>(work: (tx: Repositories) => Promise<T>): Promise<T | undefined> =>
      guards === 'one'
        ? this.#store.writeGuarded(work)
        : this.#store.transaction(work).catch((error: unknown) => {
            if (error instanceof GuardFailed) return undefined;
            throw error;
          });
    return write(async (tx) => {
      if (!(await record(tx))) throw new GuardFailed('the account changed while it was checked');
      await this.#audit.record(
        {
          action: 'signin',
          actor: principal,
          target: { type: principal.kind, id: principal.id, name: principal.name },
          tenantId,
          meta,
          outcome: 'success',
          reason,
        },
        tx,
      );
      return this.#sessions.open(principal, session, tx);
    });
  }

  /**
   * Checks a username and password. Unknown, wrong, locked and inactive all get the same error
   * after the same hashing work; wrong passwords (of known and unknown names) count towards the
   * locks. A locked attempt is refused whatever its password (hashed all the same, for the time)
   * and is not counted, so a lock cannot be prolonged by hammering it.
   */
  verifyUserPassword(
    username: string,
    password: string,
    meta: RequestMeta,
  ): Promise<{ readonly id: string; readonly username: string }> {
    // Called from outside only for HTTP Basic; sign-in and password change use the uncounted one
    // and count themselves.
    // Basic alone uses the credential cache: it sends the password with every request. A pair
    // remembered from this address answers at once, and is no sign-in (the cache's metrics count
    // it); any other is checked in full, counted, then remembered.
    const credentials = this.#credentials;
    const cacheKey =
      credentials.enabled &&
      username.length > 0 &&
      username.length <= 256 &&
      password.length <= PASSWORD_MAX_LENGTH
        ? credentials.keyOf(username, password, meta.ip)
        : undefined;
    if (cacheKey === undefined)
      return this.#counted('basic', this.#verifyUserPassword(username, password, meta));
    const known = credentials.lookup(cacheKey);
    credentials.counted(known !== undefined);
    if (known) return Promise.resolve({ id: known.userId, username: known.username });
    return this.#counted('basic', this.#verifyAndRemember(username, password, meta, cacheKey));
  }

  async #verifyAndRemember(
    username: string,
    password: string,
    meta: RequestMeta,
    cacheKey: string,
  ): Promise<{ readonly id: string; readonly username: string }> {
    const credentials = this.#credentials;
    // Taken before the counters and the account are read: a failure announced meanwhile (by any
    // process) keeps this success from being remembered.
    const mark = credentials.mark();
    const user = await this.#verifyUserPassword(username, password, meta);
    const attempt: SignInAttempt = { kind: 'user', name: username, ip: meta.ip };
    credentials.put(
      cacheKey,
      { userId: user.id, username: user.username },
      [changeTags.user(user.id), ...this.#throttle.tagsOf(attempt)],
      mark,
    );
    return user;
  }

  /**
   * Runs `check` within a turn to check a password (PasswordHasher.turn), with the attempt's
   * counters read once the turn is taken: a lock is looked for when a hashing thread is about to
   * be free for this check, not when the request arrived. Guesses sent all at once are thus checked
   * against the failures of those before them (at most threads + 1 checks are under way in a
   * process), where counters read on arrival would let every guess of the burst through. A due
   * delay is waited out without the turn (a slowed attacker holds up no one else), and the
   * counters are read again after it. The turn ends with the check.
   */
  async #checkInTurn<T>(
    attempt: SignInAttempt,
    meta: RequestMeta,
    check: (admission: Admission) => Promise<T>,
  ): Promise<T> {
    this.#hasher.refuseIfBusy();
    let endTurn = await this.#hasher.turn(meta.clientGone);
    try {
      let admission = await this.#throttle.check(attempt);
      if (admission.delayMs > 0) {
        const { delayMs } = admission;
        endTurn();
        await sleep(this.#clock, delayMs);
        endTurn = await this.#hasher.turn(meta.clientGone);
        admission = { ...(await this.#throttle.check(attempt)), delayMs };
      }
      return await check(admission);
    } finally {
      // Ending a turn twice does nothing: a turn not retaken after the delay is not ended again.
      endTurn();
    }
  }

  #verifyUserPassword(username: string, password: string, meta: RequestMeta): Promise<SigningInUser> {
    const attempt: SignInAttempt = { kind: 'user', name: username.slice(0, 1024), ip: meta.ip };
    return this.#checkInTurn(attempt, meta, (admission) =>
      this.#checkUserPassword(username, password, meta, attempt, admission),
    );
  }

  async #checkUserPassword(
    username: string,
    password: string,
    meta: RequestMeta,
    attempt: SignInAttempt,
    admission: Admission,
  ): Promise<SigningInUser> {
    const user =
      username.length > 0 && username.length <= 256 && password.length <= PASSWORD_MAX_LENGTH * 4
        ? await this.#store.users.findSigningIn(accountKey(username))
        : undefined;
    const account = user && refusedUser(user);
    // A lock is refused without hashing: it falls on unknown names alike, so its quick answer tells
    // nothing about the account, and a flood of guesses from a locked address (HTTP Basic has no
    // rate limit of its own) costs no argon2 work once the address lock is reached.
    if (admission.locked) return this.#refuseLocked('user', account, admission.locked, attempt, meta);
    if (!user?.password_hash) {
      await this.#hasher.verifyDummy(password, meta.clientGone);
      const locks = await this.#throttle.fail(attempt);
      return this.#refuse('user', undefined, user ? 'no-local-password' : 'unknown-user', meta, locks);
    }
    if (!(await this.#hasher.verify(user.password_hash, password, meta.clientGone))) {
      // Padded before it is counted, as an unknown name's dummy work is: counted at once, a
      // quick "no" would show in the delay of the next attempt sent just after it.
      await this.#hasher.padMiss(user.password_hash, password);
      const locks = await this.#throttle.fail(attempt);
      return this.#refuse('user', account, 'wrong-password', meta, locks);
    }
    if (user.active !== 1) {
      // Counted like a wrong password: otherwise the missing delay after it would tell that the
      // password of a deactivated account was right.
      const locks = await this.#throttle.fail(attempt);
      return this.#refuse('user', account, 'inactive', meta, locks);
    }
    await this.#throttle.succeed(attempt, admission);
    // An imported or weaker hash becomes argon2id with the current settings (passwords.ts).
    const stored = user.password_hash;
    await this.#hasher.rehashIfNeeded(stored, password, (next) =>
      this.#store.users.replacePasswordHash(user.id, stored, next),
    );
    return user;
  }

  /** Password sign-in of a user, on either surface: a new session. */
  signIn(
    username: string,
    password: string,
    meta: RequestMeta,
    surface: 'nse' | 'storware',
  ): Promise<OpenedSession> {
    return this.#counted(surface, this.#signIn(username, password, meta));
  }

  async #signIn(username: string, password: string, meta: RequestMeta): Promise<OpenedSession> {
    const user = await this.#verifyUserPassword(username, password, meta);
    const now = this.#clock.now();
    const opened = await this.#signedIn(
      userPrincipal(user),
      user.first_tenant_id,
      meta,
      'password',
      { kind: 'user', history: historyOf(user), meta },
      (tx) => tx.users.recordPasswordSignIn(user.id, now, user.password_changed_at),
    );
    return opened ?? this.#refuse('user', refusedUser(user), CHANGED_MEANWHILE, meta);
  }

  /**
   * A user changes their own password, proving the old one. Every session of the user ends; the
   * caller gets a new one.
   */
  async changePassword(
    input: { username: string; oldPassword: string; newPassword: string },
    meta: RequestMeta,
  ): Promise<OpenedSession> {
    // Counted as a sign-in's check (surface `password`): the route takes a name and a password
    // from anyone, so it is as good a place to guess as the sign-in (found by review: a guess
    // there showed in no metric). Its outcome is the check's; the new password's policy is not.
    const user = await this.#counted(
      'password',
      this.#verifyUserPassword(input.username, input.oldPassword, meta),
    );
    checkPasswordPolicy(input.newPassword, user.username, { minLength: this.#config.passwordMinLength });
    const passwordHash = await this.#hasher.hash(input.newPassword);
    const now = this.#clock.now();
    const opened = await this.#store.transaction(async (tx) => {
      // First, as a sign-in's (#signedIn): a password set or a deactivation made while the old
      // password was checked wins over this change, which would otherwise undo a reset.
      if (!(await tx.users.recordPasswordSignIn(user.id, now, user.password_changed_at))) return undefined;
      await tx.users.setPassword(user.id, passwordHash, now);
      // Tokens too, its own and those it lent: one minted by whoever knew the old password must
      // not outlive the change.
      const tokens = await endWithPassword(tx, user.id, now, 'password-changed');
      await this.#audit.record(
        {
          action: 'password.change',
          actor: userPrincipal(user),
          target: { type: 'user', id: user.id, name: user.username },
          tenantId: user.first_tenant_id,
          meta,
          outcome: 'success',
          ...(tokens.held + tokens.lent.length > 0 ? { reason: revokedTokensNote(tokens) } : {}),
        },
        tx,
      );
      return this.#sessions.open(userPrincipal(user), { kind: 'user', history: historyOf(user), meta }, tx);
    });
    return opened ?? this.#refuse('user', refusedUser(user), CHANGED_MEANWHILE, meta);
  }

  /** Backup-node agent sign-in; a node of a version below the configured minimum is refused. */
  nodeSignIn(login: string, password: string, version: string, meta: RequestMeta): Promise<OpenedSession> {
    return this.#counted('node', this.#nodeSignIn(login, password, version, meta));
  }

  async #nodeSignIn(
    login: string,
    password: string,
    version: string,
    meta: RequestMeta,
  ): Promise<OpenedSession> {
    const attempt: SignInAttempt = { kind: 'node', name: login.slice(0, 1024), ip: meta.ip };
    const node = await this.#checkInTurn(attempt, meta, (admission) =>
      this.#checkNodePassword(login, password, meta, attempt, admission),
    );
    // After the password: only a node that proves itself learns the minimum version.
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
    const principal: Principal = { kind: 'node', id: node.id, name: node.login };
    const now = this.#clock.now();
    const opened = await this.#signedIn(
      principal,
      null,
      meta,
      `node ${version.slice(0, 64)}`,
      { kind: 'node', history: historyOf(node), meta },
      (tx) => tx.nodes.recordSignIn(node.id, version.slice(0, 64), now, node.password_changed_at),
    );
    return opened ?? this.#refuse('node', refusedNode(node), CHANGED_MEANWHILE, meta);
  }

  async #checkNodePassword(
    login: string,
    password: string,
    meta: RequestMeta,
    attempt: SignInAttempt,
    admission: Admission,
  ): Promise<NodeRow> {
    const node =
      login.length > 0 && login.length <= 256 && password.length <= PASSWORD_MAX_LENGTH * 4
        ? await this.#store.nodes.findByLoginKey(accountKey(login))
        : undefined;
    const account = node && refusedNode(node);
    if (admission.locked) return this.#refuseLocked('node', account, admission.locked, attempt, meta);
    if (!node) {
      await this.#hasher.verifyDummy(password, meta.clientGone);
      const locks = await this.#throttle.fail(attempt);
      return this.#refuse('node', undefined, 'unknown-node', meta, locks);
    }
    if (!(await this.#hasher.verify(node.password_hash, password, meta.clientGone))) {
      // Padded before it is counted, as an unknown name's dummy work is: counted at once, a
      // quick "no" would show in the delay of the next attempt sent just after it.
      await this.#hasher.padMiss(node.password_hash, password);
      const locks = await this.#throttle.fail(attempt);
      return this.#refuse('node', account, 'wrong-password', meta, locks);
    }
    if (node.active !== 1) {
      const locks = await this.#throttle.fail(attempt);
      return this.#refuse('node', account, 'inactive', meta, locks);
    }
    await this.#throttle.succeed(attempt, admission);
    await this.#hasher.rehashIfNeeded(node.password_hash, password, (next) =>
      this.#store.nodes.replacePasswordHash(node.id, node.password_hash, next),
    );
    return node;
  }

  /** Ends the caller's session (logout), on both surfaces at once. */
  async signOut(auth: AuthContext, meta: RequestMeta): Promise<void> {
    const session = auth.session;
    if (!session) return;
    const tenantId =
      auth.principal.kind === 'user' ? await this.#store.users.findFirstTenantId(auth.principal.id) : null;
    // One transaction: the change feed's announcement commits with the revocation, so no process
    // can keep a logged-out session cached because the announcement alone failed.
    await this.#store.transaction(async (tx) => {
      if (!(await tx.sessions.revoke(session.id, this.#clock.now(), 'logout'))) return;
      await this.#audit.record(
        {
          action: 'signout',
          actor: auth.principal,
          target: { type: 'session', id: session.id },
          tenantId,
          meta,
          outcome: 'success',
        },
        tx,
      );
    });
  }

  /** Sign-in with a long-lived API token: a session of kind "token" for the token's user. */
  tokenSignIn(token: string, meta: RequestMeta): Promise<OpenedSession> {
    return this.#counted('token', this.#tokenSignIn(token, meta));
  }

  async #tokenSignIn(token: string, meta: RequestMeta): Promise<OpenedSession> {
    const secretHash =
      token.startsWith(API_TOKEN_PREFIX) && token.length < 200 ? hashSecret(token) : undefined;
    // A guard that fails means that the token, its user or its maker's authority changed while
    // it was checked: checked again from the start, which refuses a revocation, a deactivation or
    // a demotion, and lets a change that left the maker's authority as it was through.
    for (let attempt = 1; ; attempt += 1) {
      const tried = await this.#tokenSignInOnce(secretHash, meta);
      if ('session' in tried) return tried.session;
      if (tried.reason !== CHANGED_MEANWHILE || attempt === TOKEN_SIGN_IN_ATTEMPTS) {
        return this.#refuseToken(tried, meta);
      }
    }
  }

  /** One token sign-in: its session, or why it was refused (CHANGED_MEANWHILE: its guard failed). */
  async #tokenSignInOnce(
    secretHash: string | undefined,
    meta: RequestMeta,
  ): Promise<{ readonly session: OpenedSession } | TokenRefusal> {
    const row =
      secretHash === undefined ? undefined : await this.#store.apiTokens.findBySecretHash(secretHash);
    const now = this.#clock.now();
    if (!row) return { reason: 'unknown-api-token' };
    const user = await this.#store.users.findById(row.user_id);
    const refused = (reason: string): TokenRefusal => ({ reason, tokenId: row.id, token: row.name, user });
    if (row.revoked_at !== null) return refused('revoked');
    if (row.expires_at !== null && row.expires_at <= now) return refused('expired');
    // A password lockout protects the password; it does not stop a token the user issued.
    if (user?.active !== 1) return refused('inactive');
    if (
      row.created_by !== null &&
      row.created_by !== user.id &&
      !(await makerStillManages(this.#store, row.created_by, user.id))
    ) {
      return refused('maker-no-longer-manages');
    }
    const opened = await this.#signedIn(
      userPrincipal(user),
      await this.#store.users.findFirstTenantId(user.id),
      meta,
      `api token ${row.name}`,
      { kind: 'token', apiTokenId: row.id, notAfter: row.expires_at, history: historyOf(user), meta },
      // The user's row first, as a password set takes it before the tokens' (no deadlock).
      async (tx) =>
        (await tx.users.recordOtherLogin(user.id, now)) &&
        (await tx.apiTokens.markUsed(row.id, now, row.authority_version)),
      'several',
    );
    return opened ? { session: opened } : refused(CHANGED_MEANWHILE);
  }

  /**
   * Records a refused token sign-in, filed under the token's user and naming the token (never its
   * secret), and answers INVALID_API_TOKEN. An unknown token is recorded with no user: it names
   * nobody. A refusal costs no hashing, so a client repeating one (a script with a revoked token,
   * or guesses) could write rows as fast as it asks: each token and reason, or unknown tokens, is
   * recorded once a minute per address and process, as a refusal under a lock is; every refusal
   * is counted in `gatehouse_signins_total{surface="token"}`.
   */
  async #refuseToken(refusal: TokenRefusal, meta: RequestMeta): Promise<never> {
    const { user } = refusal;
    const key = `token ${refusal.tokenId ?? 'unknown'} ${refusal.reason} ${meta.ip}`;
    const now = this.#clock.now();
    const recorded = this.#repeatedRefusalsRecorded.get(key);
    if (recorded !== undefined && now - recorded < REPEATED_REFUSAL_RECORD_MS) {
      throw new GatehouseError('INVALID_API_TOKEN');
    }
    this.#repeatedRefusalsRecorded.set(key, now);
    await this.#audit.record({
      action: 'signin',
      actor: null,
      target: user && { type: 'user', id: user.id, name: user.username },
      tenantId: user ? await this.#store.users.findFirstTenantId(user.id) : null,
      meta,
      outcome: 'failure',
      reason: refusal.token === undefined ? refusal.reason : `api token ${refusal.token}: ${refusal.reason}`,
    });
    throw new GatehouseError('INVALID_API_TOKEN');
  }
}

/** Why a token sign-in was refused, with the token's name and user when the token was known. */
interface TokenRefusal {
  readonly reason: string;
  readonly tokenId?: string;
  readonly token?: string;
  readonly user?: UserRow | undefined;
}

export function userPrincipal(user: UserRow): Principal {
  return { kind: 'user', id: user.id, name: user.username };
}
