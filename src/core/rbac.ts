import type { Store } from '../store/connect.js';
import type { Clock } from './clock.js';
import { newId } from './ids.js';
import { BUILTIN_GROUPS, BUILTIN_ROLES } from './privilege-catalog.js';
import type { Principal } from './sessions.js';

/** Groups → roles → privileges. Effective privileges are read from the store on every call, so a change shows at once. */
export class RbacService {
  readonly #store: Store;
  readonly #clock: Clock;

  constructor(store: Store, clock: Clock) {
    this.#store = store;
    this.#clock = clock;
  }

  async privilegesOf(principal: Principal): Promise<string[]> {
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
        await tx.rbac.setRolePrivileges(existing.id, role.privileges);
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
