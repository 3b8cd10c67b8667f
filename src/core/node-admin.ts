import type { Config } from '../config.js';
import { GatehouseError } from '../errors.js';
import type { Store } from '../store/connect.js';
import type { NodeRow, NodeSortKey } from '../store/repositories/nodes.js';
import type { AccountService } from './accounts.js';
import type { AuditService } from './audit.js';
import { actorOf, requireRoot } from './authorization.js';
import type { Clock } from './clock.js';
import { isId } from './ids.js';
import type { Listed, ListQuery } from './listing.js';
import { checkPasswordPolicy, type PasswordHasher } from './passwords.js';
import type { AuthContext, RequestMeta } from './sessions.js';

export type { NodeSortKey } from '../store/repositories/nodes.js';

export interface NodeView {
  readonly id: string;
  readonly login: string;
  /** As the node reported it at its last login; null before its first. */
  readonly version: string | null;
  readonly active: boolean;
  readonly last_seen: string | null;
  readonly created: string;
}

const nodeView = (row: NodeRow): NodeView => ({
  id: row.id,
  login: row.login,
  version: row.version,
  active: row.active === 1,
  last_seen: row.last_seen_at === null ? null : new Date(row.last_seen_at).toISOString(),
  created: new Date(row.created_at).toISOString(),
});

const nodeTarget = (row: { id: string; login: string }) => ({ type: 'node', id: row.id, name: row.login });

/** Backup-node agent accounts. They belong to no tenant, so only root manages them. */
export class NodeAdminService {
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

  async create(
    auth: AuthContext,
    meta: RequestMeta,
    input: { login: string; password: string },
  ): Promise<NodeView> {
    await this.#requireRoot(auth);
    const created = await this.#accounts.createNode(input, (tx, node) =>
      this.#audit.record(
        { action: 'node.create', actor: auth.principal, target: nodeTarget(node), meta, outcome: 'success' },
        tx,
      ),
    );
    return nodeView(await this.#find(created.id));
  }

  async list(auth: AuthContext, query: ListQuery<NodeSortKey>): Promise<Listed<NodeView, NodeSortKey>> {
    await this.#requireRoot(auth);
    const page = await this.#store.nodes.list(query);
    return { ...query, records: page.rows.map(nodeView), total: page.total };
  }

  async get(auth: AuthContext, nodeId: string): Promise<NodeView> {
    await this.#requireRoot(auth);
    return nodeView(await this.#find(nodeId));
  }

  /**
   * Deactivating a node, or giving it a new password, ends its sessions at once: an agent that
   * was switched off or whose password leaked must not carry on with the session it holds.
   * A new password also clears a lockout.
   */
  async update(
    auth: AuthContext,
    meta: RequestMeta,
    nodeId: string,
    changes: { active?: boolean | undefined; password?: string | undefined },
  ): Promise<NodeView> {
    await this.#requireRoot(auth);
    if (changes.active === undefined && changes.password === undefined) {
      throw new GatehouseError('VALIDATION_FAILED', 'give active, password or both');
    }
    const node = await this.#find(nodeId);
    if (changes.password !== undefined) {
      checkPasswordPolicy(changes.password, node.login, { minLength: this.#config.passwordMinLength });
    }
    const passwordHash =
      changes.password === undefined ? undefined : await this.#hasher.hash(changes.password);
    const now = this.#clock.now();
    const done: string[] = [];
    if (changes.active !== undefined && changes.active !== (node.active === 1)) {
      done.push(changes.active ? 'activated' : 'deactivated');
    }
    if (passwordHash !== undefined) done.push('password set');
    await this.#store.transaction(async (tx) => {
      await tx.nodes.update(node.id, {
        ...(changes.active === undefined ? {} : { active: changes.active ? 1 : 0 }),
        updated_at: now,
      });
      if (passwordHash !== undefined) await tx.nodes.setPassword(node.id, passwordHash, now);
      let ended = 0;
      if (changes.active === false || passwordHash !== undefined) {
        ended = await tx.sessions.revokeAllOfNode(
          node.id,
          now,
          changes.active === false ? 'node-deactivated' : 'password-set',
        );
      }
      if (done.length > 0) {
        await this.#audit.record(
          {
            action: 'node.update',
            actor: auth.principal,
            target: nodeTarget(node),
            meta,
            outcome: 'success',
            reason: `${done.join(', ')}; ${ended} session${ended === 1 ? '' : 's'} ended`,
          },
          tx,
        );
      }
    });
    if (passwordHash !== undefined) await this.#accounts.clearLockout('node', node.login);
    return nodeView(await this.#find(node.id));
  }

  /** Its sessions end with it. */
  async delete(auth: AuthContext, meta: RequestMeta, nodeId: string): Promise<void> {
    await this.#requireRoot(auth);
    const node = await this.#find(nodeId);
    await this.#store.transaction(async (tx) => {
      const ended = await tx.sessions.revokeAllOfNode(node.id, this.#clock.now(), 'node-deleted');
      if (!(await tx.nodes.delete(node.id))) throw new GatehouseError('NOT_FOUND', 'no such node');
      await this.#audit.record(
        {
          action: 'node.delete',
          actor: auth.principal,
          target: nodeTarget(node),
          meta,
          outcome: 'success',
          reason: `${ended} session${ended === 1 ? '' : 's'} ended`,
        },
        tx,
      );
    });
  }

  async #requireRoot(auth: AuthContext): Promise<void> {
    requireRoot(await actorOf(this.#store, auth));
  }

  async #find(nodeId: string): Promise<NodeRow> {
    const row = isId(nodeId) ? await this.#store.nodes.findById(nodeId.toLowerCase()) : undefined;
    if (!row) throw new GatehouseError('NOT_FOUND', 'no such node');
    return row;
  }
}
