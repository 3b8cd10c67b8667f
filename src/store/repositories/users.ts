import type {
  Expression,
  ExpressionBuilder,
  Insertable,
  Kysely,
  Selectable,
  SelectQueryBuilder,
  SqlBool,
  Updateable,
} from 'kysely';
import type { Dialect } from '../connect.js';
import type { Database, TenancyTable, UserTable } from '../schema.js';
import { insertRows, type ListsEveryColumn } from './bulk-insert.js';
import { type StatementShape, shapeOf, standIn, withValues } from './compiled-once.js';
import { inParts, type Page, type PageRequest } from './list-query.js';
import { createLoginHistory } from './login-history.js';

export type UserRow = Selectable<UserTable>;
/** A user as a sign-in reads it: with the tenant its events are filed under, if any. */
export type SigningInUser = UserRow & { readonly first_tenant_id: string | null };
export type Role = TenancyTable['role'];

/**
 * A user's tenancies in the order they are listed, first to last: by when each was made, then by
 * the tenant's code. "First" below means first in this order.
 */
const inTenancyOrder = <DB extends Pick<Database, 'tenancies' | 'tenants'>, O>(
  query: SelectQueryBuilder<DB, 'tenancies' | 'tenants', O>,
) => query.orderBy('tenancies.created_at').orderBy('tenants.code');

/** The tenant a user's events are filed under: its first tenancy. */
const firstTenantId = (eb: ExpressionBuilder<Database, 'users'>) =>
  eb
    .selectFrom('tenancies')
    .innerJoin('tenants', 'tenants.id', 'tenancies.tenant_id')
    .select('tenancies.tenant_id')
    .whereRef('tenancies.user_id', '=', 'users.id')
    .$call(inTenancyOrder)
    .limit(1)
    .as('first_tenant_id');

export interface TenancyView {
  readonly tenantId: string;
  readonly code: string;
  readonly name: string;
  readonly role: Role;
}

export function createUserRepository(db: Kysely<Database>, dialect: Dialect) {
  /** Every password sign-in reads the user this way: built and compiled once (compiled-once.ts). */
  let signingIn: StatementShape | undefined;
  /**
   * Takes the user's row for the rest of the transaction with the lock given (PostgreSQL; a SQLite
   * transaction that writes holds the whole file already): false if there is no such user.
   */
  const lockRow = async (id: string, strength: 'for update' | 'for no key update'): Promise<boolean> => {
    const row = await db
      .selectFrom('users')
      .select('id')
      .where('id', '=', id)
      .$if(dialect === 'postgres', (query) =>
        strength === 'for update' ? query.forUpdate() : query.forNoKeyUpdate(),
      )
      .executeTakeFirst();
    return row !== undefined;
  };

  return {
    async insert(row: Insertable<UserTable>): Promise<void> {
      await db.insertInto('users').values(row).execute();
    },
    /**
     * Many users in multi-row statements (bulk import), 500 rows (12,500 parameters) each: under
     * both stores' parameter limits. Every row sets each of NEW_USER_COLUMNS.
     */
    insertMany(rows: readonly Insertable<UserTable>[]): Promise<void> {
      return insertRows(db, dialect, 'users', NEW_USER_COLUMNS, rows, 500);
    },
    addTenancies(rows: readonly Insertable<TenancyTable>[]): Promise<void> {
      return insertRows(db, dialect, 'tenancies', TENANCY_COLUMNS, rows, 1000);
    },
    /** Which of these user name keys are taken already. */
    async takenUsernameKeys(keys: readonly string[]): Promise<Set<string>> {
      const taken = new Set<string>();
      for (const chunk of chunks(keys, 1000)) {
        const rows = await db
          .selectFrom('users')
          .select('username_key')
          .where('username_key', 'in', chunk)
          .execute();
        for (const row of rows) taken.add(row.username_key);
      }
      return taken;
    },
    findById(id: string): Promise<UserRow | undefined> {
      return db.selectFrom('users').selectAll().where('id', '=', id).executeTakeFirst();
    },
    findByUsernameKey(usernameKey: string): Promise<UserRow | undefined> {
      return db.selectFrom('users').selectAll().where('username_key', '=', usernameKey).executeTakeFirst();
    },
    /** A user and the tenant its events are filed under, in one statement: a sign-in needs both. */
    async findSigningIn(usernameKey: string): Promise<SigningInUser | undefined> {
      signingIn ??= shapeOf(
        db
          .selectFrom('users')
          .selectAll('users')
          .select(firstTenantId)
          .where('username_key', '=', standIn<string>('usernameKey')),
      );
      const { rows } = await db.executeQuery<SigningInUser>(withValues(signingIn, () => usernameKey));
      return rows[0];
    },
    /** The tenant a user's events are filed under; null for no tenancy or no such user. */
    async findFirstTenantId(userId: string): Promise<string | null> {
      const row = await db
        .selectFrom('users')
        .select(firstTenantId)
        .where('id', '=', userId)
        .executeTakeFirst();
      return row?.first_tenant_id ?? null;
    },
    async count(): Promise<number> {
      const row = await db
        .selectFrom('users')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .executeTakeFirstOrThrow();
      return Number(row.n);
    },
    async update(id: string, patch: Updateable<UserTable>): Promise<void> {
      await db.updateTable('users').set(patch).where('id', '=', id).execute();
    },
    /**
     * Swaps the password hash for an equivalent one (rehash at sign-in) only while it is still
     * `expected`: a password set meanwhile wins. True when the row changed.
     */
    async replacePasswordHash(id: string, expected: string, next: string): Promise<boolean> {
      const result = await db
        .updateTable('users')
        .set({ password_hash: next })
        .where('id', '=', id)
        .where('password_hash', '=', expected)
        .executeTakeFirst();
      return Number(result.numUpdatedRows) > 0;
    },

    async addTenancy(row: Insertable<TenancyTable>): Promise<void> {
      await db.insertInto('tenancies').values(row).execute();
    },
    async tenancies(userId: string): Promise<TenancyView[]> {
      const rows = await db
        .selectFrom('tenancies')
        .innerJoin('tenants', 'tenants.id', 'tenancies.tenant_id')
        .select(['tenants.id as tenantId', 'tenants.code', 'tenants.name', 'tenancies.role'])
        .where('tenancies.user_id', '=', userId)
        .$call(inTenancyOrder)
        .execute();
      return rows;
    },

    async list(page: PageRequest<UserSortKey>, scope: UserScope): Promise<Page<UserRow>> {
      const visible = visibleUsers(scope);
      if (visible === 'nobody') return { rows: [], total: 0 };
      const inScope = (eb: ExpressionBuilder<Database, 'users'>) => {
        const conditions: Expression<SqlBool>[] = [];
        if (visible !== 'everybody') {
          const either: Expression<SqlBool>[] = [];
          if (visible.tenantIds.length > 0) either.push(eb.exists(tenancyIn(eb, visible.tenantIds)));
          if (visible.selfId !== undefined) either.push(eb('users.id', '=', visible.selfId));
          conditions.push(eb.or(either));
        }
        if (scope.tenantId !== undefined) conditions.push(eb.exists(tenancyIn(eb, [scope.tenantId])));
        if (scope.id !== undefined) conditions.push(eb('users.id', '=', scope.id));
        if (scope.usernameKey !== undefined)
          conditions.push(eb('users.username_key', '=', scope.usernameKey));
        return eb.and(conditions);
      };
      const [rows, count] = await Promise.all([
        db
          .selectFrom('users')
          .selectAll()
          .where(inScope)
          .orderBy(USER_SORT[page.sortBy], page.order)
          .orderBy('id', page.order)
          .limit(page.limit)
          .offset(page.offset)
          .execute(),
        db
          .selectFrom('users')
          .select((eb) => eb.fn.countAll<number>().as('n'))
          .where(inScope)
          .executeTakeFirstOrThrow(),
      ]);
      return { rows, total: Number(count.n) };
    },
    /** The tenancies of each of `userIds`, in the order `tenancies()` gives them: one query a thousand users. */
    async tenanciesOfUsers(userIds: readonly string[]): Promise<Map<string, TenancyView[]>> {
      const byUser = new Map<string, TenancyView[]>(userIds.map((id) => [id, []]));
      for (const part of inParts(userIds)) {
        const rows = await db
          .selectFrom('tenancies')
          .innerJoin('tenants', 'tenants.id', 'tenancies.tenant_id')
          .select([
            'tenancies.user_id as userId',
            'tenants.id as tenantId',
            'tenants.code',
            'tenants.name',
            'tenancies.role',
          ])
          .where('tenancies.user_id', 'in', part)
          .$call(inTenancyOrder)
          .execute();
        for (const { userId, ...tenancy } of rows) byUser.get(userId)?.push(tenancy);
      }
      return byUser;
    },
    /**
     * Makes the user's tenancies exactly `wanted`. Kept tenancies keep their creation time, so
     * the user's first (primary) tenancy stays first.
     */
    async replaceTenancies(
      userId: string,
      wanted: readonly { tenantId: string; role: Role }[],
      now: number,
    ): Promise<void> {
      const current = await db
        .selectFrom('tenancies')
        .select(['tenant_id', 'role'])
        .where('user_id', '=', userId)
        .execute();
      const wantedIds = wanted.map((t) => t.tenantId);
      const dropped = current.filter((t) => !wantedIds.includes(t.tenant_id)).map((t) => t.tenant_id);
      if (dropped.length > 0) {
        await db
          .deleteFrom('tenancies')
          .where('user_id', '=', userId)
          .where('tenant_id', 'in', dropped)
          .execute();
      }
      for (const tenancy of wanted) {
        const existing = current.find((t) => t.tenant_id === tenancy.tenantId);
        if (!existing) {
          await db
            .insertInto('tenancies')
            .values({ user_id: userId, tenant_id: tenancy.tenantId, role: tenancy.role, created_at: now })
            .execute();
        } else if (existing.role !== tenancy.role) {
          await db
            .updateTable('tenancies')
            .set({ role: tenancy.role })
            .where('user_id', '=', userId)
            .where('tenant_id', '=', tenancy.tenantId)
            .execute();
        }
      }
    },
    /**
     * Active users holding `role` in some tenant, leaving out one user (the one being removed) or
     * one tenant (the one being deleted), if named.
     */
    async countActiveWithRole(
      role: Role,
      leaving: { readonly userId?: string; readonly tenantId?: string } = {},
    ): Promise<number> {
      let query = db
        .selectFrom('users')
        .innerJoin('tenancies', 'tenancies.user_id', 'users.id')
        .select((eb) => eb.fn.count<number>('users.id').distinct().as('n'))
        .where('tenancies.role', '=', role)
        .where('users.active', '=', 1);
      if (leaving.userId !== undefined) query = query.where('users.id', '!=', leaving.userId);
      if (leaving.tenantId !== undefined) query = query.where('tenancies.tenant_id', '!=', leaving.tenantId);
      return Number((await query.executeTakeFirstOrThrow()).n);
    },
    /**
     * A password sign-in's history (its failures start again from 0), written only while the user is active and
     * its password is still the one checked, set at `passwordChangedAt`: false, and nothing
     * written, otherwise. Run first in the sign-in's transaction, it holds the row until the
     * session commits: a password set or a deactivation (each of which updates the row before
     * ending the user's sessions) either came first, and this finds it, or waits for the new
     * session and ends it too.
     */
    async recordPasswordSignIn(id: string, now: number, passwordChangedAt: number | null): Promise<boolean> {
      const result = await db
        .updateTable('users')
        .set({ failed_count: 0, locked_until: null, last_success_at: now })
        .where('id', '=', id)
        .where('active', '=', 1)
        .where('password_changed_at', passwordChangedAt === null ? 'is' : '=', passwordChangedAt)
        .executeTakeFirst();
      return Number(result.numUpdatedRows) > 0;
    },
    /**
     * Takes the user's row for the rest of the transaction (PostgreSQL; a SQLite transaction that
     * writes holds the whole file already), as its deletion will: false if there is no such user.
     * A deletion takes it first, as a sign-in with a token lent to the user does (core/user-admin.ts).
     */
    lockForDeletion(id: string): Promise<boolean> {
      return lockRow(id, 'for update');
    },
    /**
     * Takes the user's row (PostgreSQL, `for no key update`) for the rest of the transaction, so
     * that API token creations for the user, each counting its tokens first, go one at a time, and
     * after a deletion that took it. Not `for update`: that would hold up the user's sign-ins too,
     * whose new session's foreign key takes the row `for key share`. False if there is no such user.
     */
    lockForTokenCount(id: string): Promise<boolean> {
      return lockRow(id, 'for no key update');
    },
    /**
     * Removes the user's tenancies and group memberships, ahead of its deletion: in the lock order
     * of every change to who manages whom (them, then the API tokens), which the deletion's
     * cascade would not keep (core/user-admin.ts).
     */
    async removeTenanciesAndGroups(id: string): Promise<void> {
      await db.deleteFrom('tenancies').where('user_id', '=', id).execute();
      await db.deleteFrom('group_members').where('user_id', '=', id).execute();
    },
    /** Deletes the user; its tenancies, group memberships, API tokens and sessions go with it (cascade). */
    async delete(id: string): Promise<boolean> {
      const result = await db.deleteFrom('users').where('id', '=', id).executeTakeFirst();
      return Number(result.numDeletedRows) > 0;
    },
    // Last, not first: in a literal that starts with a spread, V8 defines each later method on its
    // slow path. Built that way this repository took ~22 µs, and the repositories are built for
    // every transaction (each sign-in's): all thirteen take ~1.5 µs now (docs/performance-log.md).
    ...createLoginHistory(db, 'users'),
  };
}

export type UserSortKey = 'created' | 'username';

const USER_SORT = { created: 'created_at', username: 'username_key' } as const;

export interface UserScope {
  /** undefined: every user (root). Otherwise users with a tenancy in one of these tenants. */
  readonly visibleTenantIds: readonly string[] | undefined;
  /** The caller, which sees itself whatever its tenancies. */
  readonly selfId?: string | undefined;
  /** Only users with a tenancy in this tenant. */
  readonly tenantId?: string | undefined;
  /** Only the user of this id. */
  readonly id?: string | undefined;
  /** Only the user of this name (its `accountKey`: case and width folded). */
  readonly usernameKey?: string | undefined;
}

function visibleUsers(
  scope: UserScope,
): 'everybody' | 'nobody' | { tenantIds: readonly string[]; selfId: string | undefined } {
  if (scope.visibleTenantIds === undefined) return 'everybody';
  // "in ()" is not valid SQL, and "or" of nothing would be everybody on some drivers.
  if (scope.visibleTenantIds.length === 0 && scope.selfId === undefined) return 'nobody';
  return { tenantIds: scope.visibleTenantIds, selfId: scope.selfId };
}

function tenancyIn(eb: ExpressionBuilder<Database, 'users'>, tenantIds: readonly string[]) {
  return eb
    .selectFrom('tenancies')
    .select('tenancies.user_id')
    .whereRef('tenancies.user_id', '=', 'users.id')
    .where('tenancies.tenant_id', 'in', tenantIds);
}

/** The columns a new user's row sets: all but the counters that start at their default. */
const NEW_USER_COLUMNS = [
  'id',
  'username',
  'username_key',
  'first_name',
  'last_name',
  'display_name',
  'email',
  'phone',
  'provider',
  'external_id',
  'password_hash',
  'active',
  'language',
  'ui_time_zone',
  'ui_console_mode',
  'page_size',
  'time_format',
  'info_tour_enabled',
  'last_success_at',
  'last_failed_at',
  'last_failed_ip',
  'locked_until',
  'password_changed_at',
  'created_at',
  'updated_at',
] as const satisfies readonly (keyof UserTable)[];

const TENANCY_COLUMNS = [
  'user_id',
  'tenant_id',
  'role',
  'created_at',
] as const satisfies readonly (keyof TenancyTable)[];

const _everyUserColumn: ListsEveryColumn<UserTable, typeof NEW_USER_COLUMNS, 'failed_count'> = true;
const _everyTenancyColumn: ListsEveryColumn<TenancyTable, typeof TENANCY_COLUMNS> = true;

/** `items` in slices of at most `size`: one statement each (an `in` list of user name keys). */
function* chunks<T>(items: readonly T[], size: number): Generator<T[]> {
  for (let start = 0; start < items.length; start += size) yield items.slice(start, start + size);
}
