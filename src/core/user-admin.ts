import type { Config } from '../config.js';
import { GatehouseError, isGatehouseError } from '../errors.js';
import { isForeignKeyViolation, isUniqueViolation, type Store } from '../store/connect.js';
import type { Repositories } from '../store/repositories/index.js';
import type { Role, TenancyView, UserRow, UserSortKey } from '../store/repositories/users.js';
import { keepOneAccessManager } from './access-management.js';
import {
  type AccountService,
  checkUsername,
  type PreparedUser,
  ROLES,
  type UserView,
  userView,
} from './accounts.js';
import type { AuditAction, AuditEntry, AuditService } from './audit.js';
import {
  type Actor,
  actorOf,
  canManageTenantObjects,
  canSeeTenant,
  changingAuthority,
  findVisibleUser,
  holdsGroupPrivileges,
  keepOneRoot,
  LENT_TOKEN_UNBACKED,
  mayManageUser,
  readableTenantIds,
  revokedTokensNote,
} from './authorization.js';
import type { Clock } from './clock.js';
import { EventLoopTurns, forEachConcurrently } from './concurrency.js';
import { isId } from './ids.js';
import type { Listed, ListQuery } from './listing.js';
import { checkPasswordPolicy, type PasswordHasher } from './passwords.js';
import { BUILTIN_GROUPS } from './privilege-catalog.js';
import { accountKey } from './secrets.js';
import type { AuthContext, RequestMeta } from './sessions.js';
import { checkProfile, type UserProfile } from './user-profile.js';

export type { UserSortKey } from '../store/repositories/users.js';

export interface TenancyRequest {
  readonly tenantId: string;
  readonly role: Role;
}

export type { UserProfile } from './user-profile.js';

export interface UserCreation extends UserProfile {
  readonly username: string;
  readonly password?: string | undefined;
  /** Instead of `password`: a hash made elsewhere (user import); see `NewUser.passwordHash`. */
  readonly passwordHash?: string | undefined;
  readonly provider?: 'local' | 'activeDirectory' | undefined;
  /** The NSE `tenant_id` (primary tenant); when given it must be one of `tenancies`. */
  readonly primaryTenantId?: string | undefined;
  readonly tenancies: readonly TenancyRequest[];
}

export interface UserChange extends UserProfile {
  readonly username?: string | undefined;
  readonly password?: string | undefined;
  readonly primaryTenantId?: string | undefined;
  /** The whole new set: tenancies left out are removed (the reference: "update the entire array"). */
  readonly tenancies?: readonly TenancyRequest[] | undefined;
  /** false: the user can no longer sign in and its sessions end; true: it can again. */
  readonly active?: boolean | undefined;
}

interface Target {
  readonly row: UserRow;
  readonly tenancies: TenancyView[];
}

/** What a refused change is recorded against; filled in as the request is understood. */
interface AttemptRecord {
  targetId: string | null;
  targetName: string;
  tenantId: string | null;
}

/** Refusals worth an audit event: someone tried something they may not do. */
const AUDITED_REFUSALS = new Set(['FORBIDDEN', 'NOT_FOUND', 'PRECONDITION_FAILED']);
/** A tenancy `checkMany` may grant; otherwise it keeps the error that refused it. */
const GRANTED = Symbol('granted');

const view = userView;

/** A tenant id no tenant has: the filter of a caller naming a tenant it cannot see. */
const UNSEEN_TENANT = '00000000-0000-0000-0000-000000000000';

/**
 * The tenancies of a user that the caller may know of: all of them for root and for the user
 * itself, otherwise those in tenants the caller sees. A user of two tenants is visible to the
 * readers of either, and its record must not tell them of the other tenant.
 */
function tenanciesSeenBy(actor: Actor, userId: string, tenancies: readonly TenancyView[]): TenancyView[] {
  if (actor.isRoot || actor.principal.id === userId) return [...tenancies];
  return tenancies.filter((tenancy) => canSeeTenant(actor, tenancy.tenantId));
}

/**
 * The NSE users administration: who may list, read, create, change and delete which users
 * (rules in authorization.ts). Users of tenants the caller cannot read answer 404 exactly as
 * users that do not exist; users it can read but not change answer 403.
 */
export class UserAdminService {
  readonly #store: Store;
  readonly #clock: Clock;
  readonly #config: Config;
  readonly #hasher: PasswordHasher;
  readonly #accounts: AccountService;
  readonly #audit: AuditService;

  constructor(
    store: Store,
    clock: Clock,
    config: Config,
    hasher: PasswordHasher,
    accounts: AccountService,
    audit: AuditService,
  ) {
    this.#store = store;
    this.#clock = clock;
    this.#config = config;
    this.#hasher = hasher;
    this.#accounts = accounts;
    this.#audit = audit;
  }

  async list(
    auth: AuthContext,
    query: ListQuery<UserSortKey>,
    filter: { tenantId?: string | undefined; id?: string | undefined; username?: string | undefined },
  ): Promise<Listed<UserView, UserSortKey>> {
    const actor = await actorOf(this.#store, auth);
    const page = await this.#store.users.list(query, {
      visibleTenantIds: readableTenantIds(actor),
      selfId: auth.principal.kind === 'user' ? auth.principal.id : undefined,
      // A tenant the caller cannot see has no users it may list, as one that does not exist.
      tenantId:
        filter.tenantId === undefined || canSeeTenant(actor, filter.tenantId)
          ? filter.tenantId
          : UNSEEN_TENANT,
      // Ids are stored in lower case; a malformed one matches nobody rather than failing.
      id: filter.id === undefined ? undefined : isId(filter.id) ? filter.id.toLowerCase() : '',
      usernameKey: filter.username === undefined ? undefined : accountKey(filter.username),
    });
    const tenancies = await this.#store.users.tenanciesOfUsers(page.rows.map((row) => row.id));
    return {
      ...query,
      records: page.rows.map((row) => view(row, tenanciesSeenBy(actor, row.id, tenancies.get(row.id) ?? []))),
      total: page.total,
    };
  }

  /** `reference`: a user id (UUID-shaped) or a user name (case-insensitive). */
  async get(auth: AuthContext, reference: string): Promise<UserView> {
    const actor = await actorOf(this.#store, auth);
    const target = await this.#find(actor, reference);
    return view(target.row, tenanciesSeenBy(actor, target.row.id, target.tenancies));
  }

  async create(auth: AuthContext, input: UserCreation, meta: RequestMeta): Promise<UserView> {
    const actor = await actorOf(this.#store, auth);
    const attempt: AttemptRecord = {
      targetId: null,
      targetName: input.username.slice(0, 128),
      tenantId: null,
    };
    return this.#audited('user.create', auth, meta, attempt, async () => {
      checkTenancyList(input.tenancies, input.primaryTenantId);
      await this.#checkGrantable(actor, input.tenancies);
      attempt.tenantId = input.primaryTenantId ?? input.tenancies[0]?.tenantId ?? null;
      const provider = input.provider ?? 'local';
      if (provider === 'local' && input.password === undefined && input.passwordHash === undefined) {
        throw new GatehouseError('VALIDATION_FAILED', 'body/password is required for a local user');
      }
      checkProfile(input);
      if (
        provider === 'activeDirectory' &&
        !(await holdsGroupPrivileges(this.#store, actor, BUILTIN_GROUPS.operators.name))
      ) {
        throw new GatehouseError(
          'FORBIDDEN',
          `a directory user starts in "${BUILTIN_GROUPS.operators.name}", whose privileges you do not all hold`,
        );
      }
      const created = await this.#accounts.createUser(
        {
          username: input.username,
          password: input.password,
          passwordHash: input.passwordHash,
          firstName: input.firstName,
          lastName: input.lastName,
          displayName: input.displayName,
          email: input.email,
          phone: input.phone,
          provider,
          tenancies: input.tenancies,
          // The design's default for directory users; local users start in no group.
          groups: provider === 'activeDirectory' ? [BUILTIN_GROUPS.operators.name] : undefined,
        },
        (tx, user) =>
          this.#audit.recordMany(
            eventsPerTenant(
              {
                action: 'user.create',
                actor: auth.principal,
                target: { type: 'user', id: user.id, name: user.username },
                meta,
              },
              input.tenancies,
              (tenancies) =>
                `${provider} user; tenancies ${tenancies}${
                  input.passwordHash === undefined ? '' : '; password hash imported'
                }`,
              attempt.tenantId,
            ),
            tx,
          ),
      );
      return view(created, await this.#store.users.tenancies(created.id));
    });
  }

  /**
   * Bulk creation (the import's path), first half: each input checked against the rules of
   * `create` and its password hashed `inFlight` at a time, one answer per input in its order,
   * nothing written. A caller with several batches may check the next while `writeMany` writes
   * this one (the import does: on PostgreSQL the server writes while this process checks).
   */
  async checkMany(
    auth: AuthContext,
    inputs: readonly UserCreation[],
    meta: RequestMeta,
    inFlight: number,
  ): Promise<CheckedUsers> {
    const actor = await actorOf(this.#store, auth);
    // A request of a deactivated or deleted account is refused with its sessions; a batch of a
    // long import acts for its importer just the same, so it stops here (within the batches
    // already being written).
    if (
      auth.principal.kind === 'user' &&
      (await this.#store.users.findById(auth.principal.id))?.active !== 1
    ) {
      throw new GatehouseError('FORBIDDEN', 'the importing account was deactivated or deleted');
    }
    const results: (PreparedUser | GatehouseError | undefined)[] = inputs.map(() => undefined);
    const refusals: AuditEntry[] = [];
    const refuse = (index: number, error: unknown) => {
      if (!isGatehouseError(error)) throw error;
      results[index] = error;
      if (AUDITED_REFUSALS.has(error.code)) {
        refusals.push({
          action: 'user.create',
          actor: auth.principal,
          target: { type: 'user', id: null, name: (inputs[index] as UserCreation).username.slice(0, 128) },
          tenantId: null,
          meta,
          outcome: 'failure',
          reason: `${error.code}: ${error.detail}`,
        });
      }
    };
    // One look at each tenant per call, not per row: the answer kept, an error or GRANTED.
    const grants = new Map<string, unknown>();
    // Rows are checked one after another, awaiting only a tenant's first look; those with a hash
    // given are prepared at once. Those with a password are hashed after, `inFlight` at a time.
    // An await per row (and the promises and garbage behind it) cost an import of pre-hashed users
    // more than its checks. Without turns, a batch would hold the event loop.
    const toHash: number[] = [];
    const turns = new EventLoopTurns();
    for (const [index, input] of inputs.entries()) {
      const turn = turns.take();
      if (turn) await turn;
      try {
        checkTenancyList(input.tenancies, input.primaryTenantId);
        for (const tenancy of input.tenancies) {
          const key = `${tenancy.tenantId}\0${tenancy.role}`;
          if (!grants.has(key)) {
            grants.set(
              key,
              await this.#checkGrantable(actor, [tenancy]).then(
                () => GRANTED,
                (error: unknown) => error,
              ),
            );
          }
          const grant = grants.get(key);
          if (grant !== GRANTED) throw grant;
        }
        if (input.password === undefined && input.passwordHash === undefined) {
          throw new GatehouseError('VALIDATION_FAILED', 'password is required for a local user');
        }
        checkProfile(input);
        if (input.password === undefined) {
          results[index] = this.#accounts.prepareUnhashed(input, { provider: 'local' });
        } else toHash.push(index);
      } catch (error) {
        refuse(index, error);
      }
    }
    await forEachConcurrently(toHash, inFlight, async (index) => {
      await turns.take();
      try {
        const input = inputs[index] as UserCreation;
        results[index] = await this.#accounts.prepareUser(input, { bulk: true, provider: 'local' });
      } catch (error) {
        refuse(index, error);
      }
    });
    return { auth, inputs, meta, results, refusals };
  }

  /**
   * Bulk creation, second half: writes the users `checkMany` passed, with their audit events, in
   * one transaction, and answers for every input (a name taken already, or twice, fails as
   * existing). Names are checked against the store here, so that a batch written meanwhile counts.
   * `namesInFlight`, shared by the batches of one caller written at once, holds the names (keys) of
   * those not yet committed: taken for this batch too, as they will be (or were already) once those
   * commit. This batch's names are in it until its write has settled.
   */
  async writeMany(
    checked: CheckedUsers,
    namesInFlight: Set<string> = new Set(),
  ): Promise<(CreatedUser | GatehouseError)[]> {
    const { auth, inputs, meta, refusals } = checked;
    const results = [...checked.results];
    const keys = results.flatMap((result) => (isPrepared(result) ? [result.row.username_key] : []));
    const taken = await this.#store.users.takenUsernameKeys(keys);
    const ready: number[] = [];
    const claimed: string[] = [];
    results.forEach((result, index) => {
      if (!isPrepared(result)) return;
      const key = result.row.username_key;
      // namesInFlight holds this batch's names too from here: a second row of a name fails as well.
      if (taken.has(key) || namesInFlight.has(key)) {
        results[index] = alreadyExists(result.row.username);
      } else {
        namesInFlight.add(key);
        claimed.push(key);
        ready.push(index);
      }
    });
    const created = ready.map((index) => {
      const prepared = results[index] as PreparedUser;
      const input = inputs[index] as UserCreation;
      const events = eventsPerTenant(
        {
          action: 'user.create',
          actor: auth.principal,
          target: { type: 'user', id: prepared.row.id, name: prepared.row.username },
          meta,
        },
        input.tenancies,
        (tenancies) =>
          `local user; tenancies ${tenancies}${input.passwordHash === undefined ? '' : '; password hash imported'}`,
        input.primaryTenantId ?? null,
      );
      return { index, prepared, events };
    });
    try {
      for (const [index, refusal] of await this.#insertCreated(created)) results[index] = refusal;
    } finally {
      for (const key of claimed) namesInFlight.delete(key);
    }
    await this.#audit.recordMany(refusals);
    return results.map((result) =>
      isPrepared(result)
        ? { id: result.row.id, username: result.row.username }
        : (result ?? new GatehouseError('INTERNAL_ERROR')),
    );
  }

  /**
   * Writes new users with their audit events in one transaction of inserts (on SQLite, on the
   * writer thread while the caller goes on). A name taken since it was checked, or a tenant
   * deleted since, fails that transaction: then one transaction per user tells which; returns
   * those refused, by index.
   */
  async #insertCreated(
    created: readonly { index: number; prepared: PreparedUser; events: readonly AuditEntry[] }[],
  ): Promise<Map<number, GatehouseError>> {
    try {
      await this.#store.insertBatch(async (tx) => {
        await this.#accounts.insertPrepared(
          tx,
          created.map((user) => user.prepared),
        );
        await this.#audit.recordMany(
          created.flatMap((user) => user.events),
          tx,
        );
      });
      return new Map();
    } catch (error) {
      if (!isUniqueViolation(error) && !isForeignKeyViolation(error)) throw error;
    }
    const refused = new Map<number, GatehouseError>();
    for (const { index, prepared, events } of created) {
      try {
        await this.#store.transaction(async (tx) => {
          await this.#accounts.insertPrepared(tx, [prepared]);
          await this.#audit.recordMany(events, tx);
        });
      } catch (single) {
        if (isUniqueViolation(single)) refused.set(index, alreadyExists(prepared.row.username));
        // Its tenancy's tenant, deleted by a tenant's deletion while the import ran (found by
        // review: 19 of 24 such imports failed as a whole on an internal error).
        else if (isForeignKeyViolation(single)) {
          refused.set(
            index,
            new GatehouseError(
              'NOT_FOUND',
              'no tenant with the tenant_code given (deleted while the import ran)',
            ),
          );
        } else throw single;
      }
    }
    return refused;
  }

  /**
   * Changes a user. A password set here ends every session of the user (the holder of a stolen
   * session must not outlive the reset); `tenancies` replaces the whole set.
   */
  async update(
    auth: AuthContext,
    reference: string,
    change: UserChange,
    meta: RequestMeta,
  ): Promise<UserView> {
    const actor = await actorOf(this.#store, auth);
    const attempt = attemptOn(reference);
    return this.#audited('user.update', auth, meta, attempt, async () => {
      const target = await this.#find(actor, reference);
      Object.assign(attempt, {
        targetId: target.row.id,
        targetName: target.row.username,
        tenantId: target.tenancies[0]?.tenantId ?? null,
      });
      if (!(await mayManageUser(this.#store, actor, { id: target.row.id, tenancies: target.tenancies }))) {
        throw new GatehouseError('FORBIDDEN', 'your role or privileges do not allow changing this user');
      }
      const deactivating = change.active === false && target.row.active === 1;
      const activating = change.active === true && target.row.active === 0;
      if (deactivating) {
        if (actor.principal.id === target.row.id) {
          throw new GatehouseError('FORBIDDEN', 'you may not deactivate your own account');
        }
        if (target.tenancies.some((t) => t.role === 'root'))
          await this.#keepOneRoot(target.row, 'deactivate');
      }
      const username = change.username ?? target.row.username;
      if (change.username !== undefined && change.username !== target.row.username) checkUsername(username);
      checkProfile(change);
      if (change.password !== undefined) {
        // One's own password changes only with the current one (`/auth/password`): a stolen token
        // or API token must not be enough to take the account over for good.
        if (actor.principal.id === target.row.id) {
          throw new GatehouseError(
            'FORBIDDEN',
            'change your own password with POST /api/v2.1/auth/password, which asks for the current one',
          );
        }
        if (target.row.provider !== 'local') {
          throw new GatehouseError(
            'VALIDATION_FAILED',
            'a directory (activeDirectory) user has no local password',
          );
        }
        checkPasswordPolicy(change.password, username, { minLength: this.#config.passwordMinLength });
      }
      const tenancies = change.tenancies;
      const tenanciesChange = tenancies !== undefined && !sameTenancies(target.tenancies, tenancies);
      let losesRoot = false;
      if (tenancies !== undefined) checkTenancyList(tenancies, change.primaryTenantId);
      else if (change.primaryTenantId !== undefined) {
        checkTenancyList(
          target.tenancies.map((t) => ({ tenantId: t.tenantId, role: t.role })),
          change.primaryTenantId,
        );
      }
      if (tenancies !== undefined && tenanciesChange) {
        await this.#checkGrantable(actor, tenancies);
        if (!actor.isRoot && actor.principal.id === target.row.id) {
          throw new GatehouseError('FORBIDDEN', 'you may not change your own tenancies or roles');
        }
        losesRoot =
          target.tenancies.some((t) => t.role === 'root') && !tenancies.some((t) => t.role === 'root');
        if (losesRoot) await this.#keepOneRoot(target.row, 'take the root role from');
      }

      const { columns, changed } = changedColumns(target.row, { ...change, username });
      if (tenanciesChange) changed.push('tenancies');
      if (deactivating || activating)
        changed.push(deactivating ? 'active (deactivated)' : 'active (activated)');
      const passwordHash =
        change.password === undefined ? undefined : await this.#hasher.hash(change.password);
      if (changed.length === 0 && passwordHash === undefined) return view(target.row, target.tenancies);

      const now = this.#clock.now();
      const tenantId = (tenanciesChange ? tenancies?.[0]?.tenantId : undefined) ?? attempt.tenantId;
      const event = (action: AuditAction, reason: string) => ({
        action,
        actor: auth.principal,
        target: { type: 'user', id: target.row.id, name: username },
        tenantId: change.primaryTenantId ?? tenantId,
        meta,
        outcome: 'success' as const,
        reason,
      });
      // Checked again within the transaction: a concurrent change may have taken the other root.
      const rootGuard =
        (deactivating && target.tenancies.some((t) => t.role === 'root')) || losesRoot
          ? <T>(tx: Repositories, run: () => Promise<T>) =>
              keepOneRoot(
                tx,
                run,
                lastRootRefusal(target.row, deactivating ? 'deactivate' : 'take the root role from'),
              )
          : <T>(_: Repositories, run: () => Promise<T>) => run();
      try {
        await this.#store.transaction((tx) =>
          rootGuard(tx, async () => {
            // Deactivating the last holder of ACCESS_MANAGEMENT_WRITE would leave nobody to undo it.
            const guarded = deactivating
              ? keepOneAccessManager
              : <T>(_: unknown, run: () => Promise<T>) => run();
            await guarded(tx, () =>
              tx.users.update(target.row.id, {
                ...(deactivating || activating ? { active: deactivating ? 0 : 1 } : {}),
                ...columns,
                updated_at: now,
              }),
            );
            if (passwordHash !== undefined) await tx.users.setPassword(target.row.id, passwordHash, now);
            if (tenanciesChange && tenancies) await tx.users.replaceTenancies(target.row.id, tenancies, now);
            // The user's own sessions end with a deactivation or a password set; the sessions of
            // tokens lent to or by the user, when their maker no longer manages their user (sign-ins
            // are checked again, authentication.ts). Both in one statement, in id order, a lent
            // token's session of the user counted as the user's (sessions.revokeAllOfUsersAndApiTokens).
            const ownEnd = deactivating
              ? 'deactivated'
              : passwordHash !== undefined
                ? 'password-set'
                : undefined;
            let tokensRevoked = { held: 0, lent: [] as readonly string[] };
            let ended = 0;
            const endSessions = async (unbackedApiTokens: readonly string[]) => {
              // The user's tokens before its sessions: the lock order (sessions repository,
              // revokeAllOfUser). After the lent ones, which `changingAuthority` takes in id
              // order, the user's among them: two such changes at once, each taking its own
              // user's first, deadlocked (found by review: 5 of 140 pairs of admins who had lent
              // each other tokens, given new passwords and tenancies at the same moment).
              // Those it lent too: they end with its password (apiTokens.revokeAllHeldOrLent).
              let lentRevoked: readonly string[] = [];
              if (passwordHash !== undefined) {
                tokensRevoked = await tx.apiTokens.revokeAllHeldOrLent(target.row.id, now);
                lentRevoked = tokensRevoked.lent;
              }
              ({ sessionsOfUsers: ended } = await tx.sessions.revokeAllOfUsersAndApiTokens(
                { ids: ownEnd === undefined ? [] : [target.row.id], reason: ownEnd ?? '' },
                { ids: [...new Set([...unbackedApiTokens, ...lentRevoked])], reason: LENT_TOKEN_UNBACKED },
                now,
              ));
            };
            if (deactivating || tenanciesChange) {
              await changingAuthority(tx, now, [{ users: [target.row.id] }], async () => {}, {
                endSessions: (_, unbacked) => endSessions(unbacked),
              });
            } else {
              await endSessions([]);
            }
            if (changed.length > 0) {
              const endedNote = deactivating ? `; ${ended} session(s) ended` : '';
              await this.#audit.record(event('user.update', `changed ${changed.join(', ')}${endedNote}`), tx);
            }
            if (passwordHash !== undefined) {
              // Ended by the deactivation, when both: counted there.
              const endedBySet = deactivating ? 0 : ended;
              await this.#audit.record(
                event(
                  'password.set',
                  `set by an administrator; ${endedBySet} session(s) ended, ${revokedTokensNote(tokensRevoked)}`,
                ),
                tx,
              );
            }
          }),
        );
      } catch (error) {
        if (isUniqueViolation(error)) {
          throw new GatehouseError('ALREADY_EXISTS', `a user named "${username}" already exists`);
        }
        throw error;
      }
      if (passwordHash !== undefined) await this.#accounts.clearLockout('user', username);
      const updated = await this.#store.users.findById(target.row.id);
      if (!updated) throw new GatehouseError('NOT_FOUND', 'no such user');
      return view(updated, await this.#store.users.tenancies(updated.id));
    });
  }

  /** Deletes a user; its sessions, API tokens, tenancies and group memberships go with it. */
  async delete(auth: AuthContext, reference: string, meta: RequestMeta): Promise<void> {
    const actor = await actorOf(this.#store, auth);
    const attempt = attemptOn(reference);
    await this.#audited('user.delete', auth, meta, attempt, async () => {
      const target = await this.#find(actor, reference);
      Object.assign(attempt, {
        targetId: target.row.id,
        targetName: target.row.username,
        tenantId: target.tenancies[0]?.tenantId ?? null,
      });
      if (!(await mayManageUser(this.#store, actor, { id: target.row.id, tenancies: target.tenancies }))) {
        throw new GatehouseError('FORBIDDEN', 'your role or privileges do not allow deleting this user');
      }
      const root = target.tenancies.some((t) => t.role === 'root');
      if (root) await this.#keepOneRoot(target.row, 'delete');
      // As for deactivation: a tenant's only admin would leave it to root alone.
      if (actor.principal.id === target.row.id) {
        throw new GatehouseError('FORBIDDEN', 'you may not delete your own account');
      }
      await this.#store.transaction(async (tx) => {
        // Gone already (a concurrent delete): the same answer as for an unknown user.
        // Tokens it lent work no more: the sessions opened with them end with it. In the lock
        // order of every change to a user: its row (which a sign-in with a token lent to it takes
        // before the token's), its tenancies and groups, the lent tokens in id order, and then
        // what the cascade deletes. The cascade alone took tokens before the ordered check, and
        // deadlocked with a change of a user it had lent a token to (found by review: 3 to 8 of
        // 20 pairs).
        // Its sessions too, in id order, before the cascade deletes them in the order of its
        // plan, which a logout or a refresh batch holding one of them could meet the other way
        // round (found by review).
        const remove = () =>
          keepOneAccessManager(tx, async () => {
            if (!(await tx.users.lockForDeletion(target.row.id))) return false;
            const now = this.#clock.now();
            await changingAuthority(
              tx,
              now,
              [{ users: [target.row.id] }],
              () => tx.users.removeTenanciesAndGroups(target.row.id),
              {
                endSessions: async (_, unbackedApiTokens) => {
                  await tx.sessions.revokeAllOfUsersAndApiTokens(
                    { ids: [target.row.id], reason: 'deleted' },
                    { ids: unbackedApiTokens, reason: LENT_TOKEN_UNBACKED },
                    now,
                  );
                },
              },
            );
            return tx.users.delete(target.row.id);
          });
        const deleted = root
          ? await keepOneRoot(tx, remove, lastRootRefusal(target.row, 'delete'))
          : await remove();
        if (!deleted) throw new GatehouseError('NOT_FOUND', 'no such user');
        await this.#audit.recordMany(
          eventsPerTenant(
            {
              action: 'user.delete',
              actor: auth.principal,
              target: { type: 'user', id: target.row.id, name: target.row.username },
              meta,
            },
            target.tenancies,
            (tenancies) => `tenancies were ${tenancies}`,
            attempt.tenantId,
          ),
          tx,
        );
      });
    });
  }

  #find(actor: Actor, reference: string): Promise<Target> {
    return findVisibleUser(this.#store, actor, reference);
  }

  /**
   * Every tenant named must exist and be managed by the actor; only root grants root. A tenant
   * the actor cannot see answers as one that does not exist.
   */
  async #checkGrantable(actor: Actor, tenancies: readonly TenancyRequest[]): Promise<void> {
    for (const tenancy of tenancies) {
      const tenant = isId(tenancy.tenantId)
        ? await this.#store.tenants.findById(tenancy.tenantId)
        : undefined;
      if (!tenant || !canSeeTenant(actor, tenant.id)) {
        throw new GatehouseError('NOT_FOUND', `no tenant with id "${tenancy.tenantId.slice(0, 64)}"`);
      }
      if (!canManageTenantObjects(actor, tenant.id)) {
        throw new GatehouseError(
          'FORBIDDEN',
          `your role does not allow managing users of tenant "${tenant.code}"`,
        );
      }
      if (tenancy.role === 'root' && !actor.isRoot) {
        throw new GatehouseError('FORBIDDEN', 'only a root user may grant the root role');
      }
    }
  }

  /** Refuses to leave the service without an active root user: nobody could manage tenants again. */
  async #keepOneRoot(target: UserRow, doing: string): Promise<void> {
    if ((await this.#store.users.countActiveWithRole('root', { userId: target.id })) === 0) {
      throw new GatehouseError('PRECONDITION_FAILED', lastRootRefusal(target, doing));
    }
  }

  /** Runs a change; a refusal (403, 404, 412) is audited too, never with more than the caller sent. */
  async #audited<T>(
    action: AuditAction,
    auth: AuthContext,
    meta: RequestMeta,
    attempt: AttemptRecord,
    change: () => Promise<T>,
  ): Promise<T> {
    try {
      return await change();
    } catch (error) {
      if (isGatehouseError(error) && AUDITED_REFUSALS.has(error.code)) {
        await this.#audit.record({
          action,
          actor: auth.principal,
          target: { type: 'user', id: attempt.targetId, name: attempt.targetName },
          tenantId: attempt.tenantId,
          meta,
          outcome: 'failure',
          reason: `${error.code}: ${error.detail}`,
        });
      }
      throw error;
    }
  }
}

type ProfileColumn =
  | 'username'
  | 'username_key'
  | 'first_name'
  | 'last_name'
  | 'display_name'
  | 'email'
  | 'phone';

/** The columns whose value the change actually alters, and the NSE names of those fields. */
function changedColumns(row: UserRow, change: UserProfile & { username: string }) {
  const columns: Partial<Record<ProfileColumn, string>> = {};
  const changed: string[] = [];
  if (change.username !== row.username) {
    columns.username = change.username;
    columns.username_key = accountKey(change.username);
    changed.push('username');
  }
  const fields = [
    ['first_name', 'firstName', change.firstName],
    ['last_name', 'lastName', change.lastName],
    ['display_name', 'displayName', change.displayName],
    ['email', 'email', change.email],
    ['phone', 'phone', change.phone],
  ] as const;
  for (const [column, field, value] of fields) {
    if (value !== undefined && value !== row[column]) {
      columns[column] = value;
      changed.push(field);
    }
  }
  return { columns, changed };
}

/** Before the target is found: only what the caller sent, an id or a name. */
function attemptOn(reference: string): AttemptRecord {
  return isId(reference)
    ? { targetId: reference.toLowerCase(), targetName: '', tenantId: null }
    : { targetId: null, targetName: reference.slice(0, 128), tenantId: null };
}

function checkTenancyList(tenancies: readonly TenancyRequest[], primaryTenantId: string | undefined): void {
  if (tenancies.length === 0) {
    throw new GatehouseError('VALIDATION_FAILED', 'body/tenancies must hold at least one tenancy');
  }
  const ids = tenancies.map((t) => t.tenantId);
  if (ids.length > 1 && new Set(ids).size !== ids.length) {
    throw new GatehouseError('VALIDATION_FAILED', 'body/tenancies names a tenant more than once');
  }
  for (const tenancy of tenancies) {
    if (!ROLES.includes(tenancy.role)) {
      throw new GatehouseError(
        'VALIDATION_FAILED',
        `body/tenancies role_name must be one of ${ROLES.join(', ')}`,
      );
    }
  }
  if (primaryTenantId !== undefined && !ids.includes(primaryTenantId)) {
    throw new GatehouseError('VALIDATION_FAILED', 'body/tenant_id must be one of the tenants in tenancies');
  }
}

function sameTenancies(current: readonly TenancyView[], wanted: readonly TenancyRequest[]): boolean {
  return (
    current.length === wanted.length &&
    wanted.every((w) => current.some((c) => c.tenantId === w.tenantId && c.role === w.role))
  );
}

/** Users checked by `checkMany`, not yet written: what `writeMany` takes. */
export interface CheckedUsers {
  readonly auth: AuthContext;
  readonly inputs: readonly UserCreation[];
  readonly meta: RequestMeta;
  readonly results: readonly (PreparedUser | GatehouseError | undefined)[];
  readonly refusals: readonly AuditEntry[];
}

/** What `writeMany` answers for a user it created. */
export interface CreatedUser {
  readonly id: string;
  readonly username: string;
}

function isPrepared(result: PreparedUser | GatehouseError | undefined): result is PreparedUser {
  return result !== undefined && !isGatehouseError(result);
}

function alreadyExists(username: string): GatehouseError {
  return new GatehouseError('ALREADY_EXISTS', `a user named "${username}" already exists`);
}

function describeTenancies(tenancies: readonly { tenantId: string; role: Role }[]): string {
  return tenancies.map((t) => `${t.tenantId}=${t.role}`).join(', ') || 'none';
}

/**
 * A user's creation or deletion, told to each tenant it is (or was) in: an event per tenant, each
 * naming that tenant's tenancy only (`reason` is given the description). One event naming them
 * all, filed under the first tenant, showed that tenant's admins the user's tenancies elsewhere,
 * which the user record hides from them, and the other tenants' admins saw nothing (found by
 * review). A user in no tenant: one event, under `noTenant`. Built as literals: a spread copy
 * that adds fields costs ~1 µs, a row of an import each.
 */
function eventsPerTenant(
  event: Pick<AuditEntry, 'action' | 'actor' | 'target' | 'meta'>,
  tenancies: readonly { tenantId: string; role: Role }[],
  reason: (tenancies: string) => string,
  noTenant: string | null,
): AuditEntry[] {
  const each = (tenantId: string | null, described: string): AuditEntry => ({
    action: event.action,
    actor: event.actor,
    target: event.target,
    tenantId,
    meta: event.meta,
    outcome: 'success',
    reason: reason(described),
  });
  if (tenancies.length === 0) return [each(noTenant, 'none')];
  return tenancies.map((t) => each(t.tenantId, describeTenancies([t])));
}

function lastRootRefusal(target: UserRow, doing: string): string {
  return `"${target.username}" is the last active root user; make another user root before you ${doing} it`;
}
