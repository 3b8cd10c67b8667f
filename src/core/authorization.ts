import { GatehouseError } from '../errors.js';
import type { Store } from '../store/connect.js';
import type { LentToken, LentTokenScope } from '../store/repositories/api-tokens.js';
import type { Repositories } from '../store/repositories/index.js';
import type { Role, TenancyView, UserRow } from '../store/repositories/users.js';
import { isId } from './ids.js';
import { accountKey } from './secrets.js';
import type { AuthContext, Principal } from './sessions.js';

/**
 * Who is acting, with the tenancies that decide what they may see and do (NSE authorization):
 * `root` anywhere manages everything; `admin` and `partner` manage the users and subtenants of
 * their tenants; `read` reads them; `user` reads what is its own.
 *
 * Objects of tenants the actor cannot read answer 404, exactly as objects that do not exist;
 * objects the actor can read but not change answer 403. So a refusal never tells whether
 * another tenant's object exists.
 */
export interface Actor {
  readonly principal: Principal;
  readonly tenancies: readonly TenancyView[];
  readonly isRoot: boolean;
}

const MANAGING_ROLES: ReadonlySet<Role> = new Set(['root', 'admin', 'partner']);
const READING_ROLES: ReadonlySet<Role> = new Set(['root', 'admin', 'partner', 'read']);

export function actorOf(store: Repositories, auth: AuthContext): Promise<Actor> {
  return actorOfPrincipal(store, auth.principal);
}

/** The actor of a principal outside a request: the maker of an API token, say. */
export async function actorOfPrincipal(store: Repositories, principal: Principal): Promise<Actor> {
  // Read on every request, never from the token: a role taken away counts at once.
  const tenancies = principal.kind === 'user' ? await store.users.tenancies(principal.id) : [];
  return { principal, tenancies, isRoot: tenancies.some((t) => t.role === 'root') };
}

/** Tenants whose objects the actor may read; undefined means every tenant (root). */
export function readableTenantIds(actor: Actor): string[] | undefined {
  if (actor.isRoot) return undefined;
  return actor.tenancies.filter((t) => READING_ROLES.has(t.role)).map((t) => t.tenantId);
}

/** Tenants whose users and subtenants the actor may change; undefined means every tenant (root). */
export function managedTenantIds(actor: Actor): string[] | undefined {
  if (actor.isRoot) return undefined;
  return actor.tenancies.filter((t) => MANAGING_ROLES.has(t.role)).map((t) => t.tenantId);
}

/** Any tenancy at all makes the tenant itself visible (a `user` sees its own tenant). */
export function canSeeTenant(actor: Actor, tenantId: string): boolean {
  return actor.isRoot || actor.tenancies.some((t) => t.tenantId === tenantId);
}

export function canReadTenantObjects(actor: Actor, tenantId: string): boolean {
  const ids = readableTenantIds(actor);
  return ids === undefined || ids.includes(tenantId);
}

export function canManageTenantObjects(actor: Actor, tenantId: string): boolean {
  const ids = managedTenantIds(actor);
  return ids === undefined || ids.includes(tenantId);
}

/** A user is visible to itself, to root, and to readers of any tenant it belongs to. */
export function canSeeUser(actor: Actor, target: { id: string; tenancies: readonly TenancyView[] }): boolean {
  if (actor.isRoot || actor.principal.id === target.id) return true;
  return target.tenancies.some((t) => canReadTenantObjects(actor, t.tenantId));
}

/**
 * Whether the actor reads every tenant the target belongs to (root always; a user itself always):
 * what changing the target's privileges through groups and roles needs, since the change reaches
 * it in each of them, and raised past what a tenant's admins hold it would be past their reach
 * (`mayManageUser`). A reader of one of its tenants only sees it (`canSeeUser`) but does not change it.
 */
export function seesWholly(actor: Actor, target: { id: string; tenancies: readonly TenancyView[] }): boolean {
  if (actor.isRoot || actor.principal.id === target.id) return true;
  return (
    target.tenancies.length > 0 && target.tenancies.every((t) => canReadTenantObjects(actor, t.tenantId))
  );
}

/**
 * A user may be changed by root, or by someone who manages every tenant the user belongs to
 * (changing a user of two tenants touches both) and holds every privilege the user holds (its
 * Storware groups' roles). Nobody but root changes a root user.
 *
 * The privileges matter because managing a user includes setting its password and minting its
 * API tokens: a tenant admin who could do that to a member of "Global Administrators" could sign
 * in as that member and hold more than it was given, the escalation that granting roles and
 * groups already refuses.
 */
export async function mayManageUser(
  store: Repositories,
  actor: Actor,
  target: {
    readonly id: string;
    readonly tenancies: readonly TenancyView[];
    /** The target's privileges, when the caller has them read already (several targets). */
    readonly privileges?: readonly string[];
  },
  /** The actor's own privileges, when the caller has them read already (several targets). */
  actorPrivileges?: () => Promise<ReadonlySet<string>>,
): Promise<boolean> {
  if (actor.isRoot) return true;
  if (target.tenancies.length === 0 || target.tenancies.some((t) => t.role === 'root')) return false;
  if (!target.tenancies.every((t) => canManageTenantObjects(actor, t.tenantId))) return false;
  if (actor.principal.kind === 'user' && actor.principal.id === target.id) return true;
  const privileges = target.privileges ?? (await store.rbac.privilegesOfUser(target.id));
  return holdsAll(store, actor, privileges, actorPrivileges);
}

/**
 * A token made by an administrator for another user is that administrator's authority, lent: it
 * works while its maker is active and still manages the user (tenancies and privileges, as when
 * it was made), not after the maker was demoted or the user raised above the maker.
 */
export function makerStillManages(store: Repositories, makerId: string, userId: string): Promise<boolean> {
  return makersAuthority(store)(makerId, userId);
}

/**
 * `makerStillManages` for many pairs, each maker and its privileges read once, and the tenancies
 * and privileges of `users` read ahead, a thousand users a query: a change of a large group checks
 * hundreds of lent tokens, and two queries each took most of its time.
 */
function makersAuthority(
  store: Repositories,
  users: readonly string[] = [],
): (makerId: string, userId: string) => Promise<boolean> {
  let readAhead: Promise<readonly [Map<string, TenancyView[]>, Map<string, string[]>]> | undefined;
  const targetOf = async (userId: string) => {
    if (users.length > 0) {
      // One after the other: in a transaction the two share one connection anyway.
      readAhead ??= (async () =>
        [await store.users.tenanciesOfUsers(users), await store.rbac.privilegesOfUsers(users)] as const)();
      const [tenancies, privileges] = await readAhead;
      const known = tenancies.get(userId);
      if (known !== undefined)
        return { id: userId, tenancies: known, privileges: privileges.get(userId) ?? [] };
    }
    return { id: userId, tenancies: await store.users.tenancies(userId) };
  };
  const makers = new Map<
    string,
    Promise<{ readonly actor: Actor; readonly privileges: () => Promise<ReadonlySet<string>> } | undefined>
  >();
  const makerOf = async (makerId: string) => {
    const maker = await store.users.findById(makerId);
    if (maker?.active !== 1) return undefined;
    const actor = await actorOfPrincipal(store, { kind: 'user', id: maker.id, name: maker.username });
    let privileges: Promise<ReadonlySet<string>> | undefined;
    return { actor, privileges: () => (privileges ??= privilegesHeld(store, actor)) };
  };
  return async (makerId, userId) => {
    let maker = makers.get(makerId);
    if (maker === undefined) {
      maker = makerOf(makerId);
      makers.set(makerId, maker);
    }
    const known = await maker;
    if (known === undefined) return false;
    return mayManageUser(store, known.actor, await targetOf(userId), known.privileges);
  };
}

/**
 * Runs `change`, a change to who manages whom (tenancies, group memberships, group roles, role
 * privileges, deactivation), in `tx`, and then ends the sessions opened with lent API tokens whose
 * maker no longer manages their user, in the same transaction: sign-ins with such a token are
 * refused anyway (AuthenticationService), and this ends those already open. Only the tokens
 * `scopes` names are checked (their maker or user among the users, the group's or tenant's
 * members, the role's holders), read before the change, which may remove what a scope reads.
 *
 * After the change it takes those tokens' rows (`apiTokens.holdForAuthorityCheck`), then reads
 * which makers no longer manage their users, and moves those tokens' authority version
 * (`apiTokens.moveAuthority`): a sign-in with one, checked before the change and written after
 * it, is refused by its guard. Taking the rows first waits for a sign-in being written (so that
 * the sessions ended next include its session) and for another change concerning the same
 * tokens: each of two changes committed at once can leave the maker managing while both together
 * do not, and without the rows taken each read the store without the other's change and ended
 * nothing (found by review: 12 to 15 of 40 such pairs on three nodes left the token's session
 * open). Taken before the change, a user's deletion took the token's row before the user's, the
 * other way round from a sign-in, and the two could deadlock (found by review).
 *
 * A token whose maker still manages its user keeps its version: a sign-in checked before the
 * change is as right after it. Moving every token in the scope refused good tokens whose maker's
 * groups changed faster than their sign-ins could try again (found by review: 702 of 2,419 at 33
 * changes a second).
 */
export async function changingAuthority<T>(
  tx: Repositories,
  now: number,
  scopes: readonly LentTokenScope[],
  change: () => Promise<T>,
  {
    endSessions,
  }: {
    /**
     * Ends the sessions the change itself ends together with those of the lent tokens found
     * unbacked (`unbackedApiTokens`, for the reason `LENT_TOKEN_UNBACKED`), in one statement
     * (`sessions.revokeAllOfUsersAndApiTokens`): after the tokens' rows are taken (the lock order:
     * tokens, then sessions, in id order), and so that a session of both ends, and is counted, as
     * the change's own (found by review: a tenant's deletion counted 1 session of 2).
     */
    readonly endSessions?: (result: T, unbackedApiTokens: readonly string[]) => Promise<void>;
  } = {},
): Promise<T> {
  const lent = new Map<string, LentToken>();
  for (const scope of scopes) {
    for (const token of await tx.apiTokens.listLent(scope, now)) lent.set(token.apiTokenId, token);
  }
  const result = await change();
  const unbacked: string[] = [];
  if (lent.size > 0) {
    await tx.apiTokens.holdForAuthorityCheck([...lent.keys()]);
    const stillManages = makersAuthority(tx, [...new Set([...lent.values()].map((token) => token.userId))]);
    const backed = new Map<string, boolean>();
    for (const { apiTokenId, userId, makerId } of lent.values()) {
      const pair = `${makerId} ${userId}`;
      let stillBacked = backed.get(pair);
      if (stillBacked === undefined) {
        stillBacked = await stillManages(makerId, userId);
        backed.set(pair, stillBacked);
      }
      if (!stillBacked) unbacked.push(apiTokenId);
    }
    if (unbacked.length > 0) await tx.apiTokens.moveAuthority(unbacked);
  }
  if (endSessions) await endSessions(result, unbacked);
  else if (unbacked.length > 0) await tx.sessions.revokeAllOfApiTokens(unbacked, now, LENT_TOKEN_UNBACKED);
  return result;
}

/**
 * Why the sessions of a lent token end when its maker no longer manages its user, or its maker's
 * password changed (the token revoked).
 */
export const LENT_TOKEN_UNBACKED = 'token-maker-changed';

/**
 * What a new password ends, as a change, an administrator's set or the CLI's `passwd` makes it:
 * the user's sessions (for `reason`), its live API tokens and those it lent, and the sessions
 * opened with those. The tokens first: the lock order (sessions repository). Answers the tokens.
 */
export async function endWithPassword(
  tx: Repositories,
  userId: string,
  now: number,
  reason: string,
): Promise<{ held: number; lent: string[] }> {
  const tokens = await tx.apiTokens.revokeAllHeldOrLent(userId, now);
  await tx.sessions.revokeAllOfUsersAndApiTokens(
    { ids: [userId], reason },
    { ids: tokens.lent, reason: LENT_TOKEN_UNBACKED },
    now,
  );
  return tokens;
}

/** How an audit event tells the tokens a password change revoked (`apiTokens.revokeAllHeldOrLent`). */
export function revokedTokensNote(tokens: {
  readonly held: number;
  readonly lent: readonly string[];
}): string {
  const lent = tokens.lent.length;
  return `${tokens.held + lent} API token(s) revoked${lent > 0 ? `, ${lent} of them lent to other users` : ''}`;
}

/**
 * `changingAuthority` for a change made already, whose scopes it cannot have altered (users named
 * by id): ends the sessions of the lent tokens they name whose maker no longer manages their user.
 */
export function endUnbackedLentSessions(
  tx: Repositories,
  now: number,
  scopes: readonly { readonly users: readonly string[] }[],
): Promise<void> {
  return changingAuthority(tx, now, scopes, async () => {});
}

/**
 * The safety net under `changingAuthority`: ends the sessions of lent tokens in use whose maker no
 * longer manages their user, whatever made it so. Every change Gatehouse makes checks the tokens
 * it concerns itself; this finds what a change made outside it (in the database directly, by an
 * operator) left (core/housekeeping.ts, every minute). Answers how many tokens it found unbacked.
 */
export async function endUnbackedLentSessionsInUse(store: Store, now: number): Promise<number> {
  const inUse = await store.apiTokens.listLentInUse(now);
  const stillManages = makersAuthority(store, [...new Set(inUse.map((token) => token.userId))]);
  const unbackedUsers = new Set<string>();
  let unbacked = 0;
  for (const { userId, makerId } of inUse) {
    if (await stillManages(makerId, userId)) continue;
    unbacked += 1;
    unbackedUsers.add(userId);
  }
  if (unbacked === 0) return 0;
  // Checked again in a transaction, which moves the tokens' versions before it ends their sessions.
  await store.transaction((tx) => endUnbackedLentSessions(tx, now, [{ users: [...unbackedUsers] }]));
  return unbacked;
}

/**
 * Whether the actor holds every privilege that membership of this group gives (root: always), as
 * it must to put a user into it: a directory user, for one, starts in "Operator".
 */
export async function holdsGroupPrivileges(
  store: Repositories,
  actor: Actor,
  groupName: string,
): Promise<boolean> {
  if (actor.isRoot) return true;
  const group = await store.rbac.findGroupByName(groupName);
  if (!group) return false;
  const roles = await store.rbac.rolesOfGroup(group.id);
  const given = await Promise.all(roles.map((role) => store.rbac.privilegesOfRole(role.id)));
  return holdsAll(store, actor, given.flat());
}

/** Whether the actor (not root: callers decide that) holds every one of `privileges`, read fresh. */
async function holdsAll(
  store: Repositories,
  actor: Actor,
  privileges: readonly string[],
  actorPrivileges: () => Promise<ReadonlySet<string>> = () => privilegesHeld(store, actor),
): Promise<boolean> {
  if (privileges.length === 0) return true;
  const held = await actorPrivileges();
  return privileges.every((privilege) => held.has(privilege));
}

/** The actor's privileges (none but a user's), read fresh. */
async function privilegesHeld(store: Repositories, actor: Actor): Promise<ReadonlySet<string>> {
  return new Set(
    actor.principal.kind === 'user' ? await store.rbac.privilegesOfUser(actor.principal.id) : [],
  );
}

/**
 * Runs `change` in `tx` and refuses (412, rolling it back) if it left no active root user where
 * there was one: checked after the change, under a lock, so that two changes at once (each root
 * deactivating the other) cannot both pass a check made before either. A check before the
 * transaction can still give the earlier, friendlier refusal.
 */
export async function keepOneRoot<T>(
  tx: Repositories,
  change: () => Promise<T>,
  refusal: string,
): Promise<T> {
  await tx.tenants.lockForRootChanges();
  const before = await tx.users.countActiveWithRole('root');
  const result = await change();
  if (before > 0 && (await tx.users.countActiveWithRole('root')) === 0) {
    throw new GatehouseError('PRECONDITION_FAILED', refusal);
  }
  return result;
}

export function requireRoot(actor: Actor): void {
  if (!actor.isRoot) throw new GatehouseError('FORBIDDEN', 'only a root user may do this');
}

/**
 * A user by id (UUID-shaped) or by name (case-insensitive), as `/users/{x}` takes it. The same
 * NOT_FOUND for an unknown user, one the actor cannot see, and a malformed reference.
 */
export async function findVisibleUser(
  store: Repositories,
  actor: Actor,
  reference: string,
): Promise<{ row: UserRow; tenancies: TenancyView[] }> {
  const row = isId(reference)
    ? await store.users.findById(reference.toLowerCase())
    : reference.length <= 256
      ? await store.users.findByUsernameKey(accountKey(reference))
      : undefined;
  if (row) {
    const tenancies = await store.users.tenancies(row.id);
    if (canSeeUser(actor, { id: row.id, tenancies })) return { row, tenancies };
  }
  throw new GatehouseError('NOT_FOUND', 'no such user');
}
