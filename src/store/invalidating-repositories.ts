import { type ChangePublisher, changeTags, failureTags } from './change-feed.js';
import type { Repositories } from './repositories/index.js';
import { inParts } from './repositories/list-query.js';

/**
 * Columns whose change alters what a cache holds about a principal: its state (sessions), its UI
 * settings (session info), its profile (the user record of the NSE answers) or, for a node, its
 * role (privileges). Sign-in bookkeeping (last success, failure counts) is not among them: it
 * changes at every sign-in and nothing caches it.
 */
const CACHED_COLUMNS = [
  'active',
  'username',
  'login',
  'password_hash',
  'role_id',
  'first_name',
  'last_name',
  'display_name',
  'email',
  'language',
  'ui_time_zone',
  'ui_console_mode',
  'page_size',
  'time_format',
  'info_tour_enabled',
] as const;

const altersPrincipal = (patch: object) => CACHED_COLUMNS.some((column) => column in patch);

/**
 * The repositories, with every write that ends or alters a session, the user or node behind one,
 * a privilege, a signing key or the region/zone catalog publishing what it changed to the change feed in the
 * same executor (its transaction, if any): the per-process caches (src/core/tagged-cache.ts) of
 * every process drop those entries. All such writes are listed here, in one place, so that none is
 * missed: a new method that changes what a cache holds belongs in this list too
 * (test/scale/caches.test.ts checks that every write method of rbac and catalog is).
 */
export function withInvalidations(repositories: Repositories, publisher: ChangePublisher): Repositories {
  const { sessions, users, nodes, tenants, rbac, catalog, signingKeys, loginThrottle } = repositories;
  const publish = (...tags: string[]) => publisher.publish(tags);
  /** Runs a write, then tells the caches of every process (only if it changed something). */
  const then =
    <A extends unknown[], R>(write: (...args: A) => Promise<R>, tags: (result: R, ...args: A) => string[]) =>
    async (...args: A): Promise<R> => {
      const result = await write(...args);
      await publish(...tags(result, ...args));
      return result;
    };
  const always = () => [changeTags.rbac];
  const ifChanged = (changed: boolean) => (changed ? [changeTags.rbac] : []);
  const catalogChanged = () => [changeTags.catalog];
  const catalogIfChanged = (changed: boolean) => (changed ? [changeTags.catalog] : []);
  const keysChanged = () => [changeTags.signingKeys];
  return {
    ...repositories,
    // Every process reloads its keys: a key retired at once (a leaked one) verifies nowhere.
    signingKeys: {
      ...signingKeys,
      insert: then(signingKeys.insert, keysChanged),
      scheduleRetirement: then(signingKeys.scheduleRetirement, keysChanged),
    },
    // A failure drops the credentials remembered for its account and its address everywhere: a
    // lock it places must refuse them on every node (counted and announced in one transaction).
    loginThrottle: {
      ...loginThrottle,
      countFailure: then(loginThrottle.countFailure, (_, hits) => failureTags(hits.map((hit) => hit.key))),
    },
    rbac: {
      ...rbac,
      insertRole: then(rbac.insertRole, always),
      insertGroup: then(rbac.insertGroup, always),
      setRolePrivileges: then(rbac.setRolePrivileges, always),
      addGroupRole: then(rbac.addGroupRole, always),
      setGroupRoles: then(rbac.setGroupRoles, always),
      updateRole: then(rbac.updateRole, ifChanged),
      updateGroup: then(rbac.updateGroup, ifChanged),
      deleteRole: then(rbac.deleteRole, ifChanged),
      deleteGroup: then(rbac.deleteGroup, ifChanged),
      // A membership changes one user's privileges only.
      addGroupMember: then(rbac.addGroupMember, (_, _groupId, userId) => [changeTags.user(userId)]),
      removeGroupMember: then(rbac.removeGroupMember, (removed, _groupId, userId) =>
        removed ? [changeTags.user(userId)] : [],
      ),
    },
    catalog: {
      ...catalog,
      insertRegion: then(catalog.insertRegion, catalogChanged),
      insertZone: then(catalog.insertZone, catalogChanged),
      updateRegion: then(catalog.updateRegion, catalogChanged),
      updateZone: then(catalog.updateZone, catalogChanged),
      deleteRegion: then(catalog.deleteRegion, catalogIfChanged),
      deleteZone: then(catalog.deleteZone, catalogIfChanged),
    },
    sessions: {
      ...sessions,
      async advanceTokenGenerations(advances, priorValidUntil, options) {
        const advanced = await sessions.advanceTokenGenerations(advances, priorValidUntil, options);
        if (options?.announce === false) return advanced;
        await publish(
          ...advances
            .filter((advance) => advanced.has(advance.id))
            .map((advance) => changeTags.sessionToken(advance.id, advance.from + 1)),
        );
        return advanced;
      },
      async revoke(id, now, reason) {
        const ended = await sessions.revoke(id, now, reason);
        if (ended) await publish(changeTags.session(id));
        return ended;
      },
      async revokeAllOfUser(userId, now, reason, exceptId) {
        const ended = await sessions.revokeAllOfUser(userId, now, reason, exceptId);
        if (ended > 0) await publish(changeTags.user(userId));
        return ended;
      },
      async revokeAllOfNode(nodeId, now, reason, exceptId) {
        const ended = await sessions.revokeAllOfNode(nodeId, now, reason, exceptId);
        if (ended > 0) await publish(changeTags.node(nodeId));
        return ended;
      },
      async revokeAllOfApiTokens(ids, now, reason) {
        const ended = await sessions.revokeAllOfApiTokens(ids, now, reason);
        // A thousand tags a message: a SQLite statement binds only so many values.
        for (const part of inParts([...ended])) await publish(...part.map((id) => changeTags.apiToken(id)));
        return ended;
      },
      async revokeAllOfUsersAndApiTokens(users, apiTokens, now) {
        const ended = await sessions.revokeAllOfUsersAndApiTokens(users, apiTokens, now);
        // A thousand tags a message: a SQLite statement binds only so many values.
        for (const part of inParts([...ended.users])) await publish(...part.map((id) => changeTags.user(id)));
        for (const part of inParts([...ended.apiTokens])) {
          await publish(...part.map((id) => changeTags.apiToken(id)));
        }
        return ended;
      },
      async revokeAllOfApiToken(apiTokenId, now, reason) {
        const ended = await sessions.revokeAllOfApiToken(apiTokenId, now, reason);
        if (ended > 0) await publish(changeTags.apiToken(apiTokenId));
        return ended;
      },
    },
    users: {
      ...users,
      async update(id, patch) {
        await users.update(id, patch);
        if (altersPrincipal(patch)) await publish(changeTags.user(id));
      },
      async setPassword(id, passwordHash, now) {
        await users.setPassword(id, passwordHash, now);
        await publish(changeTags.user(id));
      },
      async removeTenanciesAndGroups(id) {
        await users.removeTenanciesAndGroups(id);
        await publish(changeTags.user(id));
      },
      async delete(id) {
        const deleted = await users.delete(id);
        if (deleted) await publish(changeTags.user(id));
        return deleted;
      },
      // A new user's tenancies (insertMany, addTenancies: the user is created in the same
      // transaction) and a rehash of the same password (replacePasswordHash) change nothing cached.
      async addTenancy(row) {
        await users.addTenancy(row);
        await publish(changeTags.user(row.user_id));
      },
      async replaceTenancies(userId, wanted, now) {
        await users.replaceTenancies(userId, wanted, now);
        await publish(changeTags.user(userId));
      },
    },
    nodes: {
      ...nodes,
      async update(id, patch) {
        await nodes.update(id, patch);
        if (altersPrincipal(patch)) await publish(changeTags.node(id));
      },
      async setPassword(id, passwordHash, now) {
        await nodes.setPassword(id, passwordHash, now);
        await publish(changeTags.node(id));
      },
      async delete(id) {
        const deleted = await nodes.delete(id);
        if (deleted) await publish(changeTags.node(id));
        return deleted;
      },
    },
    tenants: {
      ...tenants,
      async update(id, patch) {
        await tenants.update(id, patch);
        if ('name' in patch || 'code' in patch) await publish(changeTags.tenant(id));
      },
      async delete(id) {
        const deleted = await tenants.delete(id);
        if (deleted) await publish(changeTags.tenant(id));
        return deleted;
      },
      async removeTenancies(tenantId) {
        const removed = await tenants.removeTenancies(tenantId);
        await publish(changeTags.tenant(tenantId));
        return removed;
      },
    },
  };
}
