import type { Insertable, Kysely, Selectable } from 'kysely';
import type { ApiTokenTable, Database } from '../schema.js';
import { nullsHighest, nullsLowest, type Page, type PageRequest } from './list-query.js';

export type ApiTokenRow = Selectable<ApiTokenTable>;
export type ApiTokenSortKey = 'created' | 'name' | 'expires' | 'last_used';

const API_TOKEN_SORT = {
  created: 'created_at',
  name: 'name',
  expires: 'expires_at',
  last_used: 'last_used_at',
} as const;

export function createApiTokenRepository(db: Kysely<Database>) {
  return {
    async insert(row: Insertable<ApiTokenTable>): Promise<void> {
      await db.insertInto('api_tokens').values(row).execute();
    },
    findBySecretHash(secretHash: string): Promise<ApiTokenRow | undefined> {
      return db.selectFrom('api_tokens').selectAll().where('secret_hash', '=', secretHash).executeTakeFirst();
    },
    /**
     * A sign-in with the token, only while it is not revoked and its maker's authority unchanged
     * since it was read (`authorityVersion`): false, and nothing written, otherwise. Run in the
     * sign-in's guarded write, it holds the row until the session commits, so that a change of
     * authority (`sessions.markLentAuthorityChanging`) waits for the session and then finds it.
     */
    async markUsed(id: string, now: number, authorityVersion: number): Promise<boolean> {
      const result = await db
        .updateTable('api_tokens')
        .set({ last_used_at: now })
        .where('id', '=', id)
        .where('revoked_at', 'is', null)
        .where('authority_version', '=', authorityVersion)
        .executeTakeFirst();
      return Number(result.numUpdatedRows) > 0;
    },
    findById(id: string): Promise<ApiTokenRow | undefined> {
      return db.selectFrom('api_tokens').selectAll().where('id', '=', id).executeTakeFirst();
    },
    /** Every token of a user, revoked and expired ones too: the list is also their history. */
    async listOfUser(userId: string, page: PageRequest<ApiTokenSortKey>): Promise<Page<ApiTokenRow>> {
      const [rows, count] = await Promise.all([
        db
          .selectFrom('api_tokens')
          .selectAll()
          .where('user_id', '=', userId)
          .orderBy(
            API_TOKEN_SORT[page.sortBy],
            page.sortBy === 'expires' ? nullsHighest(page.order) : nullsLowest(page.order),
          )
          .orderBy('id', page.order)
          .limit(page.limit)
          .offset(page.offset)
          .execute(),
        db
          .selectFrom('api_tokens')
          .select((eb) => eb.fn.countAll<number>().as('n'))
          .where('user_id', '=', userId)
          .executeTakeFirstOrThrow(),
      ]);
      return { rows, total: Number(count.n) };
    },
    /** Revokes every live token of a user; the number revoked. */
    async revokeAllOfUser(userId: string, now: number): Promise<number> {
      const result = await db
        .updateTable('api_tokens')
        .set({ revoked_at: now })
        .where('user_id', '=', userId)
        .where('revoked_at', 'is', null)
        .executeTakeFirst();
      return Number(result.numUpdatedRows);
    },
    /** True if this call revoked the token (false: it was revoked already, or is gone). */
    async revoke(id: string, now: number): Promise<boolean> {
      const result = await db
        .updateTable('api_tokens')
        .set({ revoked_at: now })
        .where('id', '=', id)
        .where('revoked_at', 'is', null)
        .executeTakeFirst();
      return Number(result.numUpdatedRows) > 0;
    },
  };
}
