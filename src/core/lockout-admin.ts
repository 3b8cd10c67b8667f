import { GatehouseError, isGatehouseError } from '../errors.js';
import type { Store } from '../store/connect.js';
import type { TenancyView, UserRow } from '../store/repositories/users.js';
import { type UserView, userView } from './accounts.js';
import type { AuditService } from './audit.js';
import { actorOf, findVisibleUser, mayManageUser } from './authorization.js';
import type { LoginThrottle } from './login-throttle.js';
import { accountKey } from './secrets.js';
import type { AuthContext, RequestMeta } from './sessions.js';

const describe = (outcome: { accountWasLocked: boolean; addressCounters: number }) =>
  `${outcome.accountWasLocked ? 'account lock cleared' : 'the account itself was not locked'}; ` +
  `${outcome.addressCounters} address counter${outcome.addressCounters === 1 ? '' : 's'} cleared`;

/**
 * Unlocking an account an attack locked: its own lock and the locks of every address that failed
 * on it. Who may unlock is who may change the user (root, or an admin of all its tenants); an
 * address lock (password spraying from one address) is not the user's and stays.
 */
export class LockoutAdminService {
  readonly #store: Store;
  readonly #throttle: LoginThrottle;
  readonly #audit: AuditService;

  constructor(store: Store, throttle: LoginThrottle, audit: AuditService) {
    this.#store = store;
    this.#throttle = throttle;
    this.#audit = audit;
  }

  /** `reference`: a user id or a user name, as everywhere in `/users/{id}`. */
  async unlockUser(auth: AuthContext, reference: string, meta: RequestMeta): Promise<UserView> {
    const actor = await actorOf(this.#store, auth);
    let target: { row: UserRow; tenancies: TenancyView[] } | undefined;
    try {
      target = await findVisibleUser(this.#store, actor, reference);
      if (!(await mayManageUser(this.#store, actor, { id: target.row.id, tenancies: target.tenancies }))) {
        throw new GatehouseError('FORBIDDEN', 'your role or privileges do not allow unlocking this user');
      }
    } catch (error) {
      if (isGatehouseError(error)) {
        await this.#audit.record({
          action: 'user.unlock',
          actor: auth.principal,
          target: { type: 'user', id: target?.row.id ?? null, name: target?.row.username ?? '' },
          tenantId: target?.tenancies[0]?.tenantId ?? null,
          meta,
          outcome: 'failure',
          reason: `${error.code}: ${error.detail}`,
        });
      }
      throw error;
    }
    const outcome = await this.#throttle.unlockAccount('user', target.row.username);
    await this.#audit.record({
      action: 'user.unlock',
      actor: auth.principal,
      target: { type: 'user', id: target.row.id, name: target.row.username },
      tenantId: target.tenancies[0]?.tenantId ?? null,
      meta,
      outcome: 'success',
      reason: describe(outcome),
    });
    return userView(target.row, target.tenancies);
  }

  /** The operator's unlock (CLI), by user name. */
  async unlockUsername(username: string): Promise<{ username: string; description: string }> {
    const row =
      username.length <= 256 ? await this.#store.users.findByUsernameKey(accountKey(username)) : undefined;
    if (!row) throw new GatehouseError('NOT_FOUND', `no user named "${username.slice(0, 128)}"`);
    const outcome = await this.#throttle.unlockAccount('user', row.username);
    await this.#audit.record({
      action: 'user.unlock',
      actor: undefined,
      target: { type: 'user', id: row.id, name: row.username },
      tenantId: await this.#store.users.findFirstTenantId(row.id),
      outcome: 'success',
      reason: `${describe(outcome)} (command line)`,
    });
    return { username: row.username, description: describe(outcome) };
  }
}
