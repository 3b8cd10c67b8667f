import type { Kysely } from 'kysely';
import type { Database } from '../schema.js';

export interface NamedRef {
  readonly id: string;
  readonly name: string;
}

export function createRbacRepository(db: Kysely<Database>) {
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
    async privilegesOfRole(roleId: string): Promise<string[]> {
      const rows = await db
        .selectFrom('role_privileges')
        .select('privilege')
        .where('role_id', '=', roleId)
        .orderBy('privilege')
        .execute();
      return rows.map((r) => r.privilege);
    },
  };
}
