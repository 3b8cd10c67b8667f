import { GatehouseError } from '../errors.js';
import { isForeignKeyViolation, isUniqueViolation, type Store } from '../store/connect.js';
import type { Repositories } from '../store/repositories/index.js';
import type {
  AccessSortKey,
  GroupMember,
  GroupRow,
  MemberSortKey,
  MemberVisibility,
  RoleRow,
} from '../store/repositories/rbac.js';
import type { AuditAction, AuditService } from './audit.js';
import {
  type Actor,
  actorOf,
  canSeeUser,
  changingAuthority,
  readableTenantIds,
  seesWholly,
} from './authorization.js';
import type { Clock } from './clock.js';
import { isId, newId } from './ids.js';
import type { Listed, ListQuery } from './listing.js';
import { BUILTIN_GROUPS, BUILTIN_ROLES, PRIVILEGES, type PrivilegeDefinition } from './privilege-catalog.js';
import type { RbacService } from './rbac.js';
import type { AuthContext, RequestMeta } from './sessions.js';

export type { AccessSortKey, GroupMember, MemberSortKey } from '../store/repositories/rbac.js';

/** The privilege whose holders can always reach access management again. */
export const ACCESS_MANAGER_PRIVILEGE = 'ACCESS_MANAGEMENT_WRITE';
const READ_PRIVILEGE = 'ACCESS_MANAGEMENT_READ';
const KNOWN_PRIVILEGES: ReadonlySet<string> = new Set(PRIVILEGES.map((p) => p.code));
const NAME_MAX = 128;
const DESCRIPTION_MAX = 1024;

export interface RoleView {
  readonly id: string;
  readonly name: string;
  readonly description: string;
  readonly builtin: boolean;
  readonly privileges: string[];
}

export interface GroupView {
  readonly id: string;
  readonly name: string;
  readonly description: string;
  readonly builtin: boolean;
  readonly roles: { id: string; name: string }[];
  /** The first MEMBERS_SHOWN members the caller can see, by username; the rest are paged apart. */
  readonly members: GroupMember[];
  /** How many members the caller can see. */
  readonly memberCount: number;
}

/** A group record shows this many members at most: "Operator" holds every directory user. */
export const MEMBERS_SHOWN = 100;

export interface RoleInput {
  readonly name?: string | undefined;
  readonly description?: string | undefined;
  readonly privileges?: readonly string[] | undefined;
}

export interface GroupInput {
  readonly name?: string | undefined;
  readonly description?: string | undefined;
  readonly roles?: readonly string[] | undefined;
}

/**
 * Runs `change` and refuses it (rolling the transaction back) if it took away the last active
 * user holding ACCESS_MANAGEMENT_WRITE: nobody could manage roles and groups again. A store that
 * had no such user before (directory-only set-ups) is not held to it.
 */
export async function keepOneAccessManager<T>(tx: Repositories, change: () => Promise<T>): Promise<T> {
  await tx.rbac.lockAccessManagers();
  const before = await tx.rbac.countActiveUsersWithPrivilege(ACCESS_MANAGER_PRIVILEGE);
  const result = await change();
  if (before > 0 && (await tx.rbac.countActiveUsersWithPrivilege(ACCESS_MANAGER_PRIVILEGE)) === 0) {
    throw new GatehouseError(
      'PRECONDITION_FAILED',
      `this would leave no active user holding ${ACCESS_MANAGER_PRIVILEGE}; give it to another user first`,
    );
  }
  return result;
}

/** The built-in role each built-in group keeps (ensureBuiltins would attach it again at restart). */
const BUILTIN_GROUP_ROLE: ReadonlyMap<string, string> = new Map(
  Object.values(BUILTIN_GROUPS).map((g) => [g.name, BUILTIN_ROLES[g.role].name]),
);

/**
 * Storware-style access management: roles (sets of privileges), groups (roles bound to users).
 * Reading needs root or ACCESS_MANAGEMENT_READ, changing root or ACCESS_MANAGEMENT_WRITE; a
 * member is shown and changed only if the caller can see the user.
 */
export class AccessManagementService {
  readonly #store: Store;
  readonly #clock: Clock;
  readonly #rbac: RbacService;
  readonly #audit: AuditService;

  constructor(store: Store, clock: Clock, rbac: RbacService, audit: AuditService) {
    this.#store = store;
    this.#clock = clock;
    this.#rbac = rbac;
    this.#audit = audit;
  }

  /** The catalog is no secret: any signed-in caller may read it. */
  privileges(): PrivilegeDefinition[] {
    return PRIVILEGES.map((p) => ({ code: p.code, section: p.section, description: p.description }));
  }

  async listRoles(
    auth: AuthContext,
    query: ListQuery<AccessSortKey>,
  ): Promise<Listed<RoleView, AccessSortKey>> {
    await this.#actor(auth, 'read');
    const page = await this.#store.rbac.listRoles(query);
    const records = await Promise.all(page.rows.map((row) => this.#roleView(this.#store, row)));
    return { ...query, records, total: page.total };
  }

  async getRole(auth: AuthContext, id: string): Promise<RoleView> {
    await this.#actor(auth, 'read');
    return this.#roleView(this.#store, await this.#findRole(this.#store, id));
  }

  async createRole(auth: AuthContext, input: RoleInput, meta: RequestMeta): Promise<RoleView> {
    const actor = await this.#actor(auth, 'write');
    const name = checkName(input.name, 'role');
    const description = checkDescription(input.description);
    const privileges = checkPrivileges(input.privileges ?? []);
    await this.#mayGrant(auth, actor, privileges);
    const now = this.#clock.now();
    const id = newId(now);
    return this.#unique(name, 'role', () =>
      this.#store.transaction(async (tx) => {
        await tx.rbac.insertRole({ id, name, description, builtin: 0, created_at: now });
        // insertRole ignores a clash (the built-ins race); a missing row means the name is taken.
        const row = await tx.rbac.findRoleById(id);
        if (!row) throw new GatehouseError('ALREADY_EXISTS', `a role named "${name}" already exists`);
        await tx.rbac.setRolePrivileges(id, privileges);
        await this.#record(
          tx,
          'role.create',
          auth,
          meta,
          'role',
          row,
          `privileges: ${privileges.join(', ')}`,
        );
        return this.#roleView(tx, row);
      }),
    );
  }

  async updateRole(auth: AuthContext, id: string, input: RoleInput, meta: RequestMeta): Promise<RoleView> {
    const actor = await this.#actor(auth, 'write');
    const row = await this.#findRole(this.#store, id);
    const name = input.name === undefined ? row.name : checkName(input.name, 'role');
    const description =
      input.description === undefined ? row.description : checkDescription(input.description);
    const privileges = input.privileges === undefined ? undefined : checkPrivileges(input.privileges);
    const current = await this.#store.rbac.privilegesOfRole(row.id);
    // What it takes away counts as what it gives: otherwise an access manager could strip a role
    // worth more than itself, and then manage (and take over) the users who held it.
    if (privileges !== undefined) await this.#mayGrant(auth, actor, [...privileges, ...current]);
    if (row.builtin === 1) {
      if (name !== row.name) throw builtinRefusal('role', row.name, 'renamed');
      if (privileges !== undefined && !sameSet(current, privileges)) {
        throw builtinRefusal('role', row.name, 'given other privileges');
      }
    }
    return this.#unique(name, 'role', () =>
      this.#store.transaction(async (tx) =>
        keepOneAccessManager(tx, async () => {
          if (!(await tx.rbac.updateRole(row.id, { name, description }))) {
            throw new GatehouseError('NOT_FOUND', 'no such role');
          }
          if (privileges !== undefined && row.builtin === 0 && !sameSet(current, privileges)) {
            await refuseUnseenHolders(tx, actor, { role: row.id }, row.name, 'change its privileges');
            await changingAuthority(tx, this.#clock.now(), [{ role: row.id }], () =>
              tx.rbac.setRolePrivileges(row.id, privileges),
            );
          }
          const updated = { ...row, name, description };
          await this.#record(
            tx,
            'role.update',
            auth,
            meta,
            'role',
            updated,
            changes(row, name, description, privileges),
          );
          return this.#roleView(tx, updated);
        }),
      ),
    );
  }

  /** A role still attached to groups is detached from them; the role of a node cannot go. */
  async deleteRole(auth: AuthContext, id: string, meta: RequestMeta): Promise<void> {
    const actor = await this.#actor(auth, 'write');
    const row = await this.#findRole(this.#store, id);
    if (row.builtin === 1) throw builtinRefusal('role', row.name, 'deleted');
    await this.#mayGrant(auth, actor, await this.#store.rbac.privilegesOfRole(row.id));
    await this.#store
      .transaction(async (tx) =>
        keepOneAccessManager(tx, async () => {
          const nodes = await tx.rbac.countNodesWithRole(row.id);
          if (nodes > 0) {
            throw new GatehouseError(
              'PRECONDITION_FAILED',
              `role "${row.name}" is the role of ${nodes} node(s)`,
            );
          }
          await refuseUnseenHolders(tx, actor, { role: row.id }, row.name, 'delete it');
          const groups = await tx.rbac.countGroupsWithRole(row.id);
          const deleted = await changingAuthority(tx, this.#clock.now(), [{ role: row.id }], () =>
            tx.rbac.deleteRole(row.id),
          );
          if (!deleted) throw new GatehouseError('NOT_FOUND', 'no such role');
          await this.#record(tx, 'role.delete', auth, meta, 'role', row, `detached from ${groups} group(s)`);
        }),
      )
      .catch((error: unknown) => {
        // A node given the role after it was counted: the database keeps a node's role.
        if (!isForeignKeyViolation(error)) throw error;
        throw new GatehouseError('PRECONDITION_FAILED', `role "${row.name}" is the role of a node`);
      });
  }

  async listGroups(
    auth: AuthContext,
    query: ListQuery<AccessSortKey>,
  ): Promise<Listed<GroupView, AccessSortKey>> {
    const actor = await this.#actor(auth, 'read');
    const page = await this.#store.rbac.listGroups(query);
    const records = await Promise.all(page.rows.map((row) => this.#groupView(this.#store, actor, row)));
    return { ...query, records, total: page.total };
  }

  /** A group's members the caller can see, a page at a time. */
  async listGroupMembers(
    auth: AuthContext,
    id: string,
    query: ListQuery<MemberSortKey>,
  ): Promise<Listed<GroupMember, MemberSortKey>> {
    const actor = await this.#actor(auth, 'read');
    const row = await this.#findGroup(this.#store, id);
    const page = await this.#store.rbac.listGroupMembers(row.id, memberVisibility(actor), query);
    return { ...query, records: page.rows.map(({ id, username }) => ({ id, username })), total: page.total };
  }

  async getGroup(auth: AuthContext, id: string): Promise<GroupView> {
    const actor = await this.#actor(auth, 'read');
    return this.#groupView(this.#store, actor, await this.#findGroup(this.#store, id));
  }

  async createGroup(auth: AuthContext, input: GroupInput, meta: RequestMeta): Promise<GroupView> {
    const actor = await this.#actor(auth, 'write');
    const name = checkName(input.name, 'group');
    const description = checkDescription(input.description);
    const roleIds = await this.#checkRoles(input.roles ?? []);
    await this.#mayGrant(auth, actor, await this.#privilegesOfRoles(roleIds));
    const now = this.#clock.now();
    const id = newId(now);
    return this.#unique(name, 'group', () =>
      this.#store.transaction(async (tx) => {
        await tx.rbac.insertGroup({ id, name, description, builtin: 0, created_at: now });
        const row = await tx.rbac.findGroupById(id);
        if (!row) throw new GatehouseError('ALREADY_EXISTS', `a group named "${name}" already exists`);
        await tx.rbac.setGroupRoles(id, roleIds);
        await this.#record(tx, 'group.create', auth, meta, 'group', row, `roles: ${roleIds.length}`);
        return this.#groupView(tx, actor, row);
      }),
    );
  }

  async updateGroup(auth: AuthContext, id: string, input: GroupInput, meta: RequestMeta): Promise<GroupView> {
    const actor = await this.#actor(auth, 'write');
    const row = await this.#findGroup(this.#store, id);
    const name = input.name === undefined ? row.name : checkName(input.name, 'group');
    const description =
      input.description === undefined ? row.description : checkDescription(input.description);
    const roleIds = input.roles === undefined ? undefined : await this.#checkRoles(input.roles);
    if (roleIds !== undefined) {
      // The roles it had count as the roles it gets (see updateRole).
      await this.#mayGrant(auth, actor, [
        ...(await this.#privilegesOfRoles(roleIds)),
        ...(await this.#privilegesOfGroup(row.id)),
      ]);
    }
    if (row.builtin === 1) {
      if (name !== row.name) throw builtinRefusal('group', row.name, 'renamed');
      const kept = BUILTIN_GROUP_ROLE.get(row.name);
      const keptRole = kept === undefined ? undefined : await this.#store.rbac.findRoleByName(kept);
      // Exactly its built-in role: a role added to "Operator" would reach every directory user.
      if (roleIds !== undefined && keptRole && !sameSet(roleIds, [keptRole.id])) {
        throw builtinRefusal(
          'group',
          row.name,
          `given roles other than its built-in role "${keptRole.name}"`,
        );
      }
    }
    return this.#unique(name, 'group', () =>
      this.#store.transaction(async (tx) =>
        keepOneAccessManager(tx, async () => {
          if (!(await tx.rbac.updateGroup(row.id, { name, description }))) {
            throw new GatehouseError('NOT_FOUND', 'no such group');
          }
          if (roleIds !== undefined) {
            const current = (await tx.rbac.rolesOfGroup(row.id)).map((role) => role.id);
            if (!sameSet(current, roleIds)) {
              await refuseUnseenHolders(tx, actor, { group: row.id }, row.name, 'change its roles');
            }
            await changingAuthority(tx, this.#clock.now(), [{ group: row.id }], () =>
              tx.rbac.setGroupRoles(row.id, roleIds),
            );
          }
          const updated = { ...row, name, description };
          const reason = [
            name !== row.name ? 'name' : '',
            description !== row.description ? 'description' : '',
            roleIds !== undefined ? `roles (${roleIds.join(', ')})` : '',
          ].filter(Boolean);
          await this.#record(
            tx,
            'group.update',
            auth,
            meta,
            'group',
            updated,
            `changed ${reason.join(', ') || 'nothing'}`,
          );
          return this.#groupView(tx, actor, updated);
        }),
      ),
    );
  }

  async deleteGroup(auth: AuthContext, id: string, meta: RequestMeta): Promise<void> {
    const actor = await this.#actor(auth, 'write');
    const row = await this.#findGroup(this.#store, id);
    if (row.builtin === 1) throw builtinRefusal('group', row.name, 'deleted');
    await this.#mayGrant(auth, actor, await this.#privilegesOfGroup(row.id));
    await this.#store.transaction(async (tx) =>
      keepOneAccessManager(tx, async () => {
        const members = await tx.rbac.countGroupMembers(row.id);
        await refuseUnseenHolders(tx, actor, { group: row.id }, row.name, 'delete it');
        const deleted = await changingAuthority(tx, this.#clock.now(), [{ group: row.id }], () =>
          tx.rbac.deleteGroup(row.id),
        );
        if (!deleted) throw new GatehouseError('NOT_FOUND', 'no such group');
        await this.#record(tx, 'group.delete', auth, meta, 'group', row, `had ${members} member(s)`);
      }),
    );
  }

  /**
   * Replaces the members the caller can see; members it cannot see stay, since the caller
   * neither knows of them nor may touch them.
   */
  async replaceMembers(
    auth: AuthContext,
    id: string,
    userIds: readonly string[],
    meta: RequestMeta,
  ): Promise<GroupView> {
    const actor = await this.#actor(auth, 'write');
    const row = await this.#findGroup(this.#store, id);
    await this.#mayGrant(auth, actor, await this.#privilegesOfGroup(row.id));
    const wanted = new Set<string>();
    for (const userId of userIds) wanted.add(await this.#visibleUser(actor, userId));
    return this.#store.transaction(async (tx) =>
      keepOneAccessManager(tx, async () => {
        const current = await tx.rbac.membersOfGroup(row.id, memberVisibility(actor));
        const currentIds = new Set(current.map((m) => m.id));
        const removed = current.filter((m) => !wanted.has(m.id));
        const added = [...wanted].filter((userId) => !currentIds.has(userId));
        // Exactly the members it loses and gains (in parts, however many: the scope reads them so).
        const changed = [...removed.map((member) => member.id), ...added];
        await refusePartlySeen(tx, actor, changed);
        await changingAuthority(tx, this.#clock.now(), [{ users: changed }], async () => {
          for (const member of removed) await tx.rbac.removeGroupMember(row.id, member.id);
          for (const userId of added) await tx.rbac.addGroupMember(row.id, userId);
        });
        await this.#record(
          tx,
          'group.members',
          auth,
          meta,
          'group',
          row,
          `added ${added.length}${listed(added)}, removed ${removed.length}${listed(removed.map((m) => m.id))}`,
        );
        return this.#groupView(tx, actor, row);
      }),
    );
  }

  async addMember(auth: AuthContext, id: string, userId: string, meta: RequestMeta): Promise<GroupView> {
    const actor = await this.#actor(auth, 'write');
    const row = await this.#findGroup(this.#store, id);
    const member = await this.#visibleUser(actor, userId);
    await this.#mayGrant(auth, actor, await this.#privilegesOfGroup(row.id));
    return this.#store.transaction(async (tx) => {
      // After every change of groups and roles committed before it (keepOneAccessManager's lock,
      // which they take): a change of the group's roles or of a role's privileges lists the lent
      // tokens it concerns by the group's members, and did not see this one's new member while
      // both were made; together they raised the member above a token's maker, and neither
      // ended that token's sessions (found by review: 9 and 12 of 24 such pairs).
      await tx.rbac.lockAccessManagers();
      await refusePartlySeen(tx, actor, [member]);
      // A user may now hold more privileges than the maker of a token lent to it.
      await changingAuthority(tx, this.#clock.now(), [{ users: [member] }], () =>
        tx.rbac.addGroupMember(row.id, member),
      );
      await this.#record(tx, 'group.members', auth, meta, 'group', row, `added user ${member}`);
      return this.#groupView(tx, actor, row);
    });
  }

  async removeMember(auth: AuthContext, id: string, userId: string, meta: RequestMeta): Promise<GroupView> {
    const actor = await this.#actor(auth, 'write');
    const row = await this.#findGroup(this.#store, id);
    const member = await this.#visibleUser(actor, userId);
    // Taking a membership away needs what giving it needs (see updateRole).
    await this.#mayGrant(auth, actor, await this.#privilegesOfGroup(row.id));
    return this.#store.transaction(async (tx) =>
      keepOneAccessManager(tx, async () => {
        await refusePartlySeen(tx, actor, [member]);
        const removed = await changingAuthority(tx, this.#clock.now(), [{ users: [member] }], () =>
          tx.rbac.removeGroupMember(row.id, member),
        );
        if (!removed) throw new GatehouseError('NOT_FOUND', 'the user is not a member of this group');
        await this.#record(tx, 'group.members', auth, meta, 'group', row, `removed user ${member}`);
        return this.#groupView(tx, actor, row);
      }),
    );
  }

  /**
   * No escalation: a caller who is not root may grant, or take away, only privileges it holds
   * itself, so an access manager cannot make a role, a group or a membership worth more than it
   * is, nor strip one that is (and then manage the users who held it).
   */
  async #mayGrant(auth: AuthContext, actor: Actor, privileges: Iterable<string>): Promise<void> {
    if (actor.isRoot) return;
    const held = new Set(await this.#rbac.privilegesOf(auth.principal, { fresh: true }));
    const missing = [...new Set(privileges)].filter((p) => !held.has(p)).sort();
    if (missing.length > 0) {
      throw new GatehouseError(
        'FORBIDDEN',
        `you cannot grant privileges you do not hold: ${missing.slice(0, 10).join(', ')}${missing.length > 10 ? ', …' : ''}`,
      );
    }
  }

  async #privilegesOfRoles(roleIds: readonly string[]): Promise<string[]> {
    const lists = await Promise.all(roleIds.map((id) => this.#store.rbac.privilegesOfRole(id)));
    return lists.flat();
  }

  async #privilegesOfGroup(groupId: string): Promise<string[]> {
    const roles = await this.#store.rbac.rolesOfGroup(groupId);
    return this.#privilegesOfRoles(roles.map((r) => r.id));
  }

  /** Root may always; others need the privilege (writing implies reading). */
  async #actor(auth: AuthContext, need: 'read' | 'write'): Promise<Actor> {
    const actor = await actorOf(this.#store, auth);
    if (actor.isRoot) return actor;
    const held = await this.#rbac.privilegesOf(auth.principal, { fresh: need === 'write' });
    const allowed =
      held.includes(ACCESS_MANAGER_PRIVILEGE) || (need === 'read' && held.includes(READ_PRIVILEGE));
    if (!allowed) {
      throw new GatehouseError(
        'FORBIDDEN',
        `${need === 'read' ? 'reading' : 'changing'} roles and groups needs ${need === 'read' ? READ_PRIVILEGE : ACCESS_MANAGER_PRIVILEGE}`,
      );
    }
    return actor;
  }

  async #findRole(store: Repositories, id: string): Promise<RoleRow> {
    const row = isId(id) ? await store.rbac.findRoleById(id.toLowerCase()) : undefined;
    if (!row) throw new GatehouseError('NOT_FOUND', 'no such role');
    return row;
  }

  async #findGroup(store: Repositories, id: string): Promise<GroupRow> {
    const row = isId(id) ? await store.rbac.findGroupById(id.toLowerCase()) : undefined;
    if (!row) throw new GatehouseError('NOT_FOUND', 'no such group');
    return row;
  }

  async #checkRoles(roleIds: readonly string[]): Promise<string[]> {
    const ids: string[] = [];
    for (const roleId of roleIds) {
      const role = isId(roleId) ? await this.#store.rbac.findRoleById(roleId.toLowerCase()) : undefined;
      if (!role) throw new GatehouseError('VALIDATION_FAILED', `no role with id "${roleId.slice(0, 64)}"`);
      if (!ids.includes(role.id)) ids.push(role.id);
    }
    return ids;
  }

  /** An unknown user and one the caller cannot see answer alike. */
  async #visibleUser(actor: Actor, userId: string): Promise<string> {
    const row = isId(userId) ? await this.#store.users.findById(userId.toLowerCase()) : undefined;
    if (row) {
      const tenancies = await this.#store.users.tenancies(row.id);
      if (canSeeUser(actor, { id: row.id, tenancies })) return row.id;
    }
    throw new GatehouseError('NOT_FOUND', `no user with id "${userId.slice(0, 64)}"`);
  }

  async #roleView(store: Repositories, row: RoleRow): Promise<RoleView> {
    return {
      id: row.id,
      name: row.name,
      description: row.description,
      builtin: row.builtin === 1,
      privileges: await store.rbac.privilegesOfRole(row.id),
    };
  }

  async #groupView(store: Repositories, actor: Actor, row: GroupRow): Promise<GroupView> {
    const members = await store.rbac.listGroupMembers(row.id, memberVisibility(actor), {
      offset: 0,
      limit: MEMBERS_SHOWN,
      sortBy: 'username',
      order: 'asc',
    });
    return {
      id: row.id,
      name: row.name,
      description: row.description,
      builtin: row.builtin === 1,
      roles: (await store.rbac.rolesOfGroup(row.id)).map((r) => ({ id: r.id, name: r.name })),
      members: members.rows,
      memberCount: members.total,
    };
  }

  async #unique<T>(name: string, kind: 'role' | 'group', work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (error) {
      if (isUniqueViolation(error))
        throw new GatehouseError('ALREADY_EXISTS', `a ${kind} named "${name}" already exists`);
      throw error;
    }
  }

  async #record(
    tx: Repositories,
    action: AuditAction,
    auth: AuthContext,
    meta: RequestMeta,
    type: 'role' | 'group',
    target: { id: string; name: string },
    reason: string,
  ): Promise<void> {
    await this.#audit.record(
      {
        action,
        actor: auth.principal,
        target: { type, id: target.id, name: target.name },
        meta,
        outcome: 'success',
        reason,
      },
      tx,
    );
  }
}

/**
 * Refuses a caller who is not root a change to the privileges of users it cannot see (another
 * tenant's members of a group, the holders of a role through any group): as `replaceMembers`
 * leaves such members alone, the caller may neither know of them nor change what they may do,
 * and raising them would put them past their own administrators' reach (`mayManageUser`).
 */
async function refuseUnseenHolders(
  tx: Repositories,
  actor: Actor,
  scope: { readonly group: string } | { readonly role: string },
  name: string,
  change: string,
): Promise<void> {
  if (actor.isRoot) return;
  const visibility = memberVisibility(actor, { wholly: true });
  const [all, seen] =
    'group' in scope
      ? [
          await tx.rbac.countGroupMembers(scope.group),
          await tx.rbac.countGroupMembers(scope.group, visibility),
        ]
      : [await tx.rbac.countRoleHolders(scope.role), await tx.rbac.countRoleHolders(scope.role, visibility)];
  const what = 'group' in scope ? `group "${name}" has members` : `role "${name}" is held by users`;
  if (seen < all) {
    throw new GatehouseError(
      'FORBIDDEN',
      `${what} you cannot see, or who belong to tenants you cannot read; only root may ${change}`,
    );
  }
}

/**
 * Refuses a caller who is not root a change to the groups of a user it sees through one tenant
 * while the user belongs to others it cannot read (`seesWholly`): the privileges given or taken
 * would hold in those tenants too.
 */
async function refusePartlySeen(tx: Repositories, actor: Actor, userIds: readonly string[]): Promise<void> {
  if (actor.isRoot) return;
  for (const id of userIds) {
    if (!seesWholly(actor, { id, tenancies: await tx.users.tenancies(id) })) {
      throw new GatehouseError(
        'FORBIDDEN',
        `user ${id} belongs to tenants you cannot read; only root may change its groups`,
      );
    }
  }
}

/** The members `canSeeUser` lets the actor see (`wholly`: those `seesWholly` lets it change), as the store filters them: root all of them. */
function memberVisibility(actor: Actor, options: { wholly?: boolean } = {}): MemberVisibility | undefined {
  if (actor.isRoot) return undefined;
  return {
    tenantIds: readableTenantIds(actor) ?? [],
    selfId: actor.principal.kind === 'user' ? actor.principal.id : undefined,
    wholly: options.wholly,
  };
}

function checkName(name: string | undefined, kind: 'role' | 'group'): string {
  const trimmed = name?.trim() ?? '';
  if (trimmed.length === 0 || trimmed.length > NAME_MAX) {
    throw new GatehouseError('VALIDATION_FAILED', `the ${kind} name must be 1 to ${NAME_MAX} characters`);
  }
  // Names are shown to people and written into audit events: no line breaks, escapes or invisible
  // characters that forge a log line or pass for another name ("Global Administrators\u200b").
  if (INVISIBLE_OR_CONTROL.test(trimmed)) {
    throw new GatehouseError(
      'VALIDATION_FAILED',
      `the ${kind} name must not hold control or invisible characters`,
    );
  }
  return trimmed;
}

const INVISIBLE_OR_CONTROL = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/u;

function checkDescription(description: string | undefined): string {
  const text = description ?? '';
  if (text.length > DESCRIPTION_MAX) {
    throw new GatehouseError(
      'VALIDATION_FAILED',
      `the description must be at most ${DESCRIPTION_MAX} characters`,
    );
  }
  return text;
}

function checkPrivileges(codes: readonly string[]): string[] {
  const unknown = codes.filter((code) => !KNOWN_PRIVILEGES.has(code));
  if (unknown.length > 0) {
    throw new GatehouseError(
      'VALIDATION_FAILED',
      `unknown privilege code(s): ${unknown
        .slice(0, 10)
        .map((c) => c.slice(0, 64))
        .join(', ')}`,
    );
  }
  return [...new Set(codes)].sort();
}

/** Ids of users or roles for an audit reason: ` (a, b)`, or nothing for none. */
function listed(ids: readonly string[]): string {
  return ids.length === 0 ? '' : ` (${ids.join(', ')})`;
}

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  const left = new Set(a);
  const right = new Set(b);
  return left.size === right.size && [...left].every((x) => right.has(x));
}

function builtinRefusal(kind: 'role' | 'group', name: string, what: string): GatehouseError {
  return new GatehouseError('PRECONDITION_FAILED', `the built-in ${kind} "${name}" cannot be ${what}`);
}

function changes(row: RoleRow, name: string, description: string, privileges: string[] | undefined): string {
  const changed = [
    name !== row.name ? 'name' : '',
    description !== row.description ? 'description' : '',
    privileges !== undefined ? `privileges (${privileges.join(', ')})` : '',
  ].filter(Boolean);
  return `changed ${changed.join(', ') || 'nothing'}`;
}
