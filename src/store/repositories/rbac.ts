import type { ExpressionBuilder, Kysely, Selectable } from 'kysely';
import type { Database, RoleTable, UserGroupTable } from '../schema.js';
import { inParts, type Page, type PageRequest } from './list-query.js';

export type RoleRow = Selectable<RoleTable>;
export type GroupRow = Selectable<UserGroupTable>;
export type AccessSortKey = 'name' | 'created';

export interface NamedRef {
  readonly id: string;
  readonly name: string;
}

export type MemberSortKey = 'username' | 'created';

export interface GroupMember {
  readonly id: string;
  readonly username: string;
}

/**
 * The members a caller who is not root sees: those with a tenancy in one of `tenantIds`, and the
 * caller itself.
 */
export interface MemberVisibility {
  readonly tenantIds: readonly string[];
  readonly selfId: string | undefined;
  /**
   * Only the users all of whose tenants are among `tenantIds` (and the caller): those whose
   * privileges the caller may change, since a change reaches them in every tenant they belong to.
   */
  readonly wholly?: boolean;
}

/** Whether `users.id` is a user the caller can see: one of its tenants' or itself. */
function visibleUser(eb: ExpressionBuilder<Database, 'users'>, visibleTo: MemberVisibility) {
  const visible = [];
  if (visibleTo.tenantIds.length > 0) {
    const tenancies = () =>
      eb.selectFrom('tenancies').select('tenancies.user_id').whereRef('tenancies.user_id', '=', 'users.id');
    const seen = eb.exists(tenancies().where('tenancies.tenant_id', 'in', visibleTo.tenantIds));
    visible.push(
      visibleTo.wholly === true
        ? eb.and([
            seen,
            eb.not(eb.exists(tenancies().where('tenancies.tenant_id', 'not in', visibleTo.tenantIds))),
          ])
        : seen,
    );
  }
  if (visibleTo.selfId !== undefined) visible.push(eb('users.id', '=', visibleTo.selfId));
  return eb.or(visible);
}

export function createRbacRepository(db: Kysely<Database>) {
  // One query, however many members (a directory's users all join "Operator").
  const membersQuery = (groupId: string, visibleTo: MemberVisibility | undefined) => {
    const members = db
      .selectFrom('group_members')
      .innerJoin('users', 'users.id', 'group_members.user_id')
      .select(['users.id', 'users.username'])
      .where('group_members.group_id', '=', groupId);
    return visibleTo === undefined ? members : members.where((eb) => visibleUser(eb, visibleTo));
  };

  const countMembers = async (groupId: string, visibleTo: MemberVisibility | undefined) => {
    const count = await membersQuery(groupId, visibleTo)
      .clearSelect()
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .executeTakeFirstOrThrow();
    return Number(count.n);
  };

  return {
    findRoleByName(name: string): Promise<NamedRef | undefined> {
      return db.selectFrom('roles').select(['id', 'name']).where('name', '=', name).executeTakeFirst();
    },
    findGroupByName(name: string): Promise<NamedRef | undefined> {
      return db.selectFrom('user_groups').select(['id', 'name']).where('name', '=', name).executeTakeFirst();
    },
    async insertRole(row: {
      id: string;
      name: string;
      description: string;
      builtin: 0 | 1;
      created_at: number;
    }) {
      // Several processes may seed the built-ins at once; the first insert wins.
      await db
        .insertInto('roles')
        .values(row)
        .onConflict((oc) => oc.column('name').doNothing())
        .execute();
    },
    async insertGroup(row: {
      id: string;
      name: string;
      description: string;
      builtin: 0 | 1;
      created_at: number;
    }) {
      await db
        .insertInto('user_groups')
        .values(row)
        .onConflict((oc) => oc.column('name').doNothing())
        .execute();
    },
    /** Makes the role hold exactly these privileges. */
    async setRolePrivileges(roleId: string, privileges: readonly string[]): Promise<void> {
      await db.deleteFrom('role_privileges').where('role_id', '=', roleId).execute();
      if (privileges.length > 0) {
        await db
          .insertInto('role_privileges')
          .values(privileges.map((privilege) => ({ role_id: roleId, privilege })))
          .onConflict((oc) => oc.doNothing())
          .execute();
      }
    },
    async addGroupRole(groupId: string, roleId: string): Promise<void> {
      await db
        .insertInto('group_roles')
        .values({ group_id: groupId, role_id: roleId })
        .onConflict((oc) => oc.doNothing())
        .execute();
    },
    async addGroupMember(groupId: string, userId: string): Promise<void> {
      await db
        .insertInto('group_members')
        .values({ group_id: groupId, user_id: userId })
        .onConflict((oc) => oc.doNothing())
        .execute();
    },
    groupsOfUser(userId: string): Promise<NamedRef[]> {
      return db
        .selectFrom('group_members')
        .innerJoin('user_groups', 'user_groups.id', 'group_members.group_id')
        .select(['user_groups.id', 'user_groups.name'])
        .where('group_members.user_id', '=', userId)
        .orderBy('user_groups.name')
        .execute();
    },
    /** Union of the privileges of every role of every group the user belongs to. */
    async privilegesOfUser(userId: string): Promise<string[]> {
      const rows = await db
        .selectFrom('group_members')
        .innerJoin('group_roles', 'group_roles.group_id', 'group_members.group_id')
        .innerJoin('role_privileges', 'role_privileges.role_id', 'group_roles.role_id')
        .select('role_privileges.privilege')
        .distinct()
        .where('group_members.user_id', '=', userId)
        .orderBy('role_privileges.privilege')
        .execute();
      return rows.map((r) => r.privilege);
    },
    /** `privilegesOfUser` of each of `userIds`, in one query a thousand users. */
    async privilegesOfUsers(userIds: readonly string[]): Promise<Map<string, string[]>> {
      const byUser = new Map<string, string[]>(userIds.map((id) => [id, []]));
      for (const part of inParts(userIds)) {
        const rows = await db
          .selectFrom('group_members')
          .innerJoin('group_roles', 'group_roles.group_id', 'group_members.group_id')
          .innerJoin('role_privileges', 'role_privileges.role_id', 'group_roles.role_id')
          .select(['group_members.user_id as userId', 'role_privileges.privilege'])
          .distinct()
          .where('group_members.user_id', 'in', part)
          .orderBy('role_privileges.privilege')
          .execute();
        for (const { userId, privilege } of rows) byUser.get(userId)?.push(privilege);
      }
      return byUser;
    },
    async privilegesOfRole(roleId: string): Promise<string[]> {
      const rows = await db
        .selectFrom('role_privileges')
        .select('privilege')
        .where('role_id', '=', roleId)
        .orderBy('privilege')
        .execute();
      return rows.map((r) => r.privilege);
    },
    // Access management (NSE /roles, /groups): the queries behind src/core/access-management.ts.
    findRoleById(id: string): Promise<RoleRow | undefined> {
      return db.selectFrom('roles').selectAll().where('id', '=', id).executeTakeFirst();
    },
    findGroupById(id: string): Promise<GroupRow | undefined> {
      return db.selectFrom('user_groups').selectAll().where('id', '=', id).executeTakeFirst();
    },
    async listRoles(query: PageRequest<AccessSortKey>): Promise<Page<RoleRow>> {
      const column = query.sortBy === 'name' ? 'name' : 'created_at';
      const rows = await db
        .selectFrom('roles')
        .selectAll()
        .orderBy(column, query.order)
        .orderBy('id', query.order)
        .offset(query.offset)
        .limit(query.limit)
        .execute();
      const count = await db
        .selectFrom('roles')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .executeTakeFirstOrThrow();
      return { rows, total: Number(count.n) };
    },
    async listGroups(query: PageRequest<AccessSortKey>): Promise<Page<GroupRow>> {
      const column = query.sortBy === 'name' ? 'name' : 'created_at';
      const rows = await db
        .selectFrom('user_groups')
        .selectAll()
        .orderBy(column, query.order)
        .orderBy('id', query.order)
        .offset(query.offset)
        .limit(query.limit)
        .execute();
      const count = await db
        .selectFrom('user_groups')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .executeTakeFirstOrThrow();
      return { rows, total: Number(count.n) };
    },
    async updateRole(id: string, change: { name: string; description: string }): Promise<boolean> {
      const result = await db.updateTable('roles').set(change).where('id', '=', id).executeTakeFirst();
      return Number(result.numUpdatedRows) > 0;
    },
    async updateGroup(id: string, change: { name: string; description: string }): Promise<boolean> {
      const result = await db.updateTable('user_groups').set(change).where('id', '=', id).executeTakeFirst();
      return Number(result.numUpdatedRows) > 0;
    },
    /** Its privileges and group attachments go with it (cascade). */
    async deleteRole(id: string): Promise<boolean> {
      const result = await db.deleteFrom('roles').where('id', '=', id).executeTakeFirst();
      return Number(result.numDeletedRows) > 0;
    },
    /** Its role attachments and memberships go with it (cascade). */
    async deleteGroup(id: string): Promise<boolean> {
      const result = await db.deleteFrom('user_groups').where('id', '=', id).executeTakeFirst();
      return Number(result.numDeletedRows) > 0;
    },
    async countNodesWithRole(roleId: string): Promise<number> {
      const row = await db
        .selectFrom('nodes')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .where('role_id', '=', roleId)
        .executeTakeFirstOrThrow();
      return Number(row.n);
    },
    async countGroupsWithRole(roleId: string): Promise<number> {
      const row = await db
        .selectFrom('group_roles')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .where('role_id', '=', roleId)
        .executeTakeFirstOrThrow();
      return Number(row.n);
    },
    rolesOfGroup(groupId: string): Promise<NamedRef[]> {
      return db
        .selectFrom('group_roles')
        .innerJoin('roles', 'roles.id', 'group_roles.role_id')
        .select(['roles.id', 'roles.name'])
        .where('group_roles.group_id', '=', groupId)
        .orderBy('roles.name')
        .execute();
    },
    /** Makes the group hold exactly these roles. */
    async setGroupRoles(groupId: string, roleIds: readonly string[]): Promise<void> {
      await db.deleteFrom('group_roles').where('group_id', '=', groupId).execute();
      if (roleIds.length > 0) {
        await db
          .insertInto('group_roles')
          .values(roleIds.map((roleId) => ({ group_id: groupId, role_id: roleId })))
          .onConflict((oc) => oc.doNothing())
          .execute();
      }
    },
    /** A group's members, all of them or those `visibleTo` names, by username. */
    membersOfGroup(groupId: string, visibleTo?: MemberVisibility): Promise<GroupMember[]> {
      return membersQuery(groupId, visibleTo).orderBy('users.username_key').execute();
    },
    /** One page of them, and how many there are in all. */
    async listGroupMembers(
      groupId: string,
      visibleTo: MemberVisibility | undefined,
      query: PageRequest<MemberSortKey>,
    ): Promise<Page<GroupMember>> {
      const rows = await membersQuery(groupId, visibleTo)
        .orderBy(query.sortBy === 'username' ? 'users.username_key' : 'users.created_at', query.order)
        .orderBy('users.id', query.order)
        .offset(query.offset)
        .limit(query.limit)
        .execute();
      return { rows, total: await countMembers(groupId, visibleTo) };
    },
    countGroupMembers(groupId: string, visibleTo?: MemberVisibility): Promise<number> {
      return countMembers(groupId, visibleTo);
    },
    /** The users holding a role through any of their groups (each once), or those of them visible. */
    async countRoleHolders(roleId: string, visibleTo?: MemberVisibility): Promise<number> {
      const holders = db
        .selectFrom('users')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .where((eb) =>
          eb.exists(
            eb
              .selectFrom('group_members')
              .innerJoin('group_roles', 'group_roles.group_id', 'group_members.group_id')
              .select('group_members.user_id')
              .whereRef('group_members.user_id', '=', 'users.id')
              .where('group_roles.role_id', '=', roleId),
          ),
        );
      const row = await (visibleTo === undefined
        ? holders
        : holders.where((eb) => visibleUser(eb, visibleTo))
      ).executeTakeFirstOrThrow();
      return Number(row.n);
    },
    async removeGroupMember(groupId: string, userId: string): Promise<boolean> {
      const result = await db
        .deleteFrom('group_members')
        .where('group_id', '=', groupId)
        .where('user_id', '=', userId)
        .executeTakeFirst();
      return Number(result.numDeletedRows) > 0;
    },
    /** Active users holding the privilege through any of their groups' roles. */
    async countActiveUsersWithPrivilege(privilege: string): Promise<number> {
      const row = await db
        .selectFrom('group_members')
        .innerJoin('users', 'users.id', 'group_members.user_id')
        .innerJoin('group_roles', 'group_roles.group_id', 'group_members.group_id')
        .innerJoin('role_privileges', 'role_privileges.role_id', 'group_roles.role_id')
        .select((eb) => eb.fn.count<number>('users.id').distinct().as('n'))
        .where('role_privileges.privilege', '=', privilege)
        .where('users.active', '=', 1)
        .executeTakeFirstOrThrow();
      return Number(row.n);
    },
    /**
     * Serializes the changes of groups, roles and memberships: PostgreSQL at read committed would
     * otherwise let two transactions each remove a different last-but-one access manager, or each
     * list the lent tokens it concerns by memberships without the other's (core/authorization.ts,
     * `changingAuthority`). A no-op write on one shared row makes the second wait for the first
     * (SQLite has one writer anyway).
     */
    async lockAccessManagers(): Promise<void> {
      await db
        .updateTable('roles')
        .set((eb) => ({ builtin: eb.ref('builtin') }))
        .where('builtin', '=', 1)
        .execute();
    },
  };
}
