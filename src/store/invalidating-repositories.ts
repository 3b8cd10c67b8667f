import { type ChangePublisher, changeTags } from './change-feed.js';
import type { Repositories } from './repositories/index.js';

/** Columns whose change alters what a cached session says about its principal. */
const PRINCIPAL_COLUMNS = ['active', 'username', 'login', 'password_hash'] as const;

const altersPrincipal = (patch: object) => PRINCIPAL_COLUMNS.some((column) => column in patch);

/**
 * The repositories, with every write that ends or alters a session, or the user or node behind
 * one, publishing what it changed to the change feed in the same executor (its transaction, if
 * any): the per-process caches (sessions, HTTP Basic credentials) of every process drop those
 * entries. All such writes are listed here, in one place, so that none is missed: a new method
 * that ends sessions or changes an account's state belongs in this list too.
 */
export function withInvalidations(repositories: Repositories, publisher: ChangePublisher): Repositories {
  const { sessions, users, nodes, tenants } = repositories;
  const publish = (...tags: string[]) => publisher.publish(tags);
  return {
    ...repositories,
    sessions: {
      ...sessions,
      async advanceTokenGeneration(id, from, priorValidUntil) {
        const advanced = await sessions.advanceTokenGeneration(id, from, priorValidUntil);
        if (advanced) await publish(changeTags.session(id));
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
      async delete(id) {
        const deleted = await users.delete(id);
        if (deleted) await publish(changeTags.user(id));
        return deleted;
      },
    },
    nodes: {
      ...nodes,
      async update(id, patch) {
        await nodes.update(id, patch);
        if (altersPrincipal(patch)) await publish(changeTags.node(id));
      },
      async delete(id) {
        const deleted = await nodes.delete(id);
        if (deleted) await publish(changeTags.node(id));
        return deleted;
      },
    },
    tenants: {
      ...tenants,
      // Ends the sessions of users left without a tenant, chosen by SQL: rare, so everything goes.
      async removeMemberships(tenantId, now, reason) {
        const removed = await tenants.removeMemberships(tenantId, now, reason);
        if (removed.sessionsEnded > 0) await publish(changeTags.all);
        return removed;
      },
    },
  };
}
