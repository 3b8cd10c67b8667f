import { changeTags } from '../store/change-feed.js';
import type { Store } from '../store/connect.js';
import { changingAuthority } from './authorization.js';
import type { Clock } from './clock.js';
import { newId } from './ids.js';
import { BUILTIN_GROUPS, BUILTIN_ROLES } from './privilege-catalog.js';
import type { Principal } from './sessions.js';
import type { TaggedCache } from './tagged-cache.js';

/**
 * Groups → roles → privileges. A principal's effective privileges are cached per process, filed
 * under every role and group change and under the principal itself (its memberships, a node's
 * role): a change made by any process is seen by every other within a second, and at once by the
 * process that made it.
 */
export class RbacService {
  readonly #store: Store;
  readonly #clock: Clock;
  readonly #cache: TaggedCache<readonly string[]> | undefined;

  constructor(store: Store, clock: Clock, cache?: TaggedCache<readonly string[]>) {
    this.#store = store;
    this.#clock = clock;
    this.#cache = cache;
  }

  /**
   * Sorted; the caller must not change the list (it may be the cached one). A decision that
   * writes (granting, changing roles and groups) asks for `fresh`: read from the store, not
   * from a copy that another process's change may not have reached yet.
   */
  privilegesOf(principal: Principal, options: { fresh?: boolean } = {}): Promise<readonly string[]> {
    const tag = principal.kind === 'user' ? changeTags.user(principal.id) : changeTags.node(principal.id);
    const read = () => this.#readPrivileges(principal);
    return this.#cache && options.fresh !== true
      ? this.#cache.read(tag, [changeTags.rbac, tag], read)
      : read();
  }

  async #readPrivileges(principal: Principal): Promise<readonly string[]> {
    if (principal.kind === 'user') return this.#store.rbac.privilegesOfUser(principal.id);
    const node = await this.#store.nodes.findById(principal.id);
    return node ? this.#store.rbac.privilegesOfRole(node.role_id) : [];
  }

  /**
   * Creates the built-in roles and groups if missing and keeps their privileges in step with the
   * catalog. Idempotent; runs at every start.
   */
  async ensureBuiltins(): Promise<void> {
    const now = this.#clock.now();
    await this.#store.transaction(async (tx) => {
      const roleIds = new Map<string, string>();
      for (const [key, role] of Object.entries(BUILTIN_ROLES)) {
        if (!(await tx.rbac.findRoleByName(role.name))) {
          await tx.rbac.insertRole({
            id: newId(now),
            name: role.name,
            description: role.description,
            builtin: 1,
            created_at: now,
          });
        }
        const existing = await tx.rbac.findRoleByName(role.name);
        if (!existing) throw new Error(`built-in role ${role.name} could not be created`);
        const current = new Set(await tx.rbac.privilegesOfRole(existing.id));
        const changed =
          current.size !== role.privileges.length || role.privileges.some((code) => !current.has(code));
        if (changed) {
          // A release that changes a built-in role may raise its holders above the makers of
          // tokens lent to them (or lower the makers): those tokens' sessions end.
          await changingAuthority(tx, now, [{ role: existing.id }], () =>
            tx.rbac.setRolePrivileges(existing.id, role.privileges),
          );
        }
        roleIds.set(key, existing.id);
      }
      for (const group of Object.values(BUILTIN_GROUPS)) {
        if (!(await tx.rbac.findGroupByName(group.name))) {
          await tx.rbac.insertGroup({
            id: newId(now),
            name: group.name,
            description: group.description,
            builtin: 1,
            created_at: now,
          });
        }
        const existing = await tx.rbac.findGroupByName(group.name);
        if (!existing) throw new Error(`built-in group ${group.name} could not be created`);
        const roleId = roleIds.get(group.role);
        if (roleId) await tx.rbac.addGroupRole(existing.id, roleId);
      }
    });
  }
}
