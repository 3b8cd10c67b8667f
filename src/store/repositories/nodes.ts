import type { Insertable, Kysely, Selectable, Updateable } from 'kysely';
import type { Database, NodeTable } from '../schema.js';
import { nullsLowest, type Page, type PageRequest } from './list-query.js';
import { createLoginHistory } from './login-history.js';

export type NodeRow = Selectable<NodeTable>;
export type NodeSortKey = 'created' | 'login' | 'last_seen';

const NODE_SORT = { created: 'created_at', login: 'login_key', last_seen: 'last_seen_at' } as const;

export function createNodeRepository(db: Kysely<Database>) {
  return {
    async insert(row: Insertable<NodeTable>): Promise<void> {
      await db.insertInto('nodes').values(row).execute();
    },
    findById(id: string): Promise<NodeRow | undefined> {
      return db.selectFrom('nodes').selectAll().where('id', '=', id).executeTakeFirst();
    },
    findByLoginKey(loginKey: string): Promise<NodeRow | undefined> {
      return db.selectFrom('nodes').selectAll().where('login_key', '=', loginKey).executeTakeFirst();
    },
    /**
     * A node's password sign-in: its failures start again from 0, and the version it reports is
     * kept; only while the node is active and its password is still the one checked, set at
     * `passwordChangedAt` (a rehash of it does not count): false, and nothing written, otherwise.
     * Run first in the sign-in's transaction, as users' `recordPasswordSignIn` and for the same
     * reason.
     */
    async recordSignIn(
      id: string,
      version: string,
      now: number,
      passwordChangedAt: number | null,
    ): Promise<boolean> {
      const result = await db
        .updateTable('nodes')
        .set({
          failed_count: 0,
          locked_until: null,
          last_success_at: now,
          version,
          last_seen_at: now,
          updated_at: now,
        })
        .where('id', '=', id)
        .where('active', '=', 1)
        .where('password_changed_at', passwordChangedAt === null ? 'is' : '=', passwordChangedAt)
        .executeTakeFirst();
      return Number(result.numUpdatedRows) > 0;
    },
    async list(page: PageRequest<NodeSortKey>): Promise<Page<NodeRow>> {
      const [rows, count] = await Promise.all([
        db
          .selectFrom('nodes')
          .selectAll()
          .orderBy(NODE_SORT[page.sortBy], nullsLowest(page.order))
          .orderBy('id', page.order)
          .limit(page.limit)
          .offset(page.offset)
          .execute(),
        db
          .selectFrom('nodes')
          .select((eb) => eb.fn.countAll<number>().as('n'))
          .executeTakeFirstOrThrow(),
      ]);
      return { rows, total: Number(count.n) };
    },
    async update(id: string, patch: Updateable<NodeTable>): Promise<void> {
      await db.updateTable('nodes').set(patch).where('id', '=', id).execute();
    },
    /**
     * Swaps the password hash for an equivalent one (rehash at sign-in) only while it is still
     * `expected`: a password set meanwhile wins. True when the row changed.
     */
    async replacePasswordHash(id: string, expected: string, next: string): Promise<boolean> {
      const result = await db
        .updateTable('nodes')
        .set({ password_hash: next })
        .where('id', '=', id)
        .where('password_hash', '=', expected)
        .executeTakeFirst();
      return Number(result.numUpdatedRows) > 0;
    },
    /** True when a row went; its sessions go with it (foreign key cascade). */
    async delete(id: string): Promise<boolean> {
      const result = await db.deleteFrom('nodes').where('id', '=', id).executeTakeFirst();
      return Number(result.numDeletedRows) > 0;
    },
    // Last, not first: see createUserRepository.
    ...createLoginHistory(db, 'nodes'),
  };
}
