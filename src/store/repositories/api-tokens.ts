import type { ExpressionBuilder, Insertable, Kysely, Selectable, SelectQueryBuilder } from 'kysely';
import type { Dialect } from '../connect.js';
import type { ApiTokenTable, Database } from '../schema.js';
import { inParts, nullsHighest, nullsLowest, type Page, type PageRequest } from './list-query.js';

export type ApiTokenRow = Selectable<ApiTokenTable>;
export type ApiTokenSortKey = 'created' | 'name' | 'expires' | 'last_used';

const API_TOKEN_SORT = {
  created: 'created_at',
  name: 'name',
  expires: 'expires_at',
  last_used: 'last_used_at',
} as const;

/**
 * Which lent tokens a change may concern: those whose maker or user is among `users`, a member of
 * the group `group`, a member of a group holding `role`, or a member of `tenant`.
 */
export type LentTokenScope =
  | { readonly users: readonly string[] }
  | { readonly group: string }
  | { readonly role: string }
  | { readonly tenant: string };

/** A token one user made for another: the maker's authority, lent. */
export interface LentToken {
  readonly apiTokenId: string;
  readonly userId: string;
  readonly makerId: string;
}

export function createApiTokenRepository(db: Kysely<Database>, dialect: Dialect) {
  /** The users a group, role or tenant scope names, as a subquery. */
  const usersOfScope = (scope: Exclude<LentTokenScope, { readonly users: readonly string[] }>) =>
    'group' in scope
      ? db.selectFrom('group_members').select('user_id').where('group_id', '=', scope.group)
      : 'role' in scope
        ? db
            .selectFrom('group_members')
            .innerJoin('group_roles', 'group_roles.group_id', 'group_members.group_id')
            .select('group_members.user_id')
            .where('group_roles.role_id', '=', scope.role)
        : db.selectFrom('tenancies').select('user_id').where('tenant_id', '=', scope.tenant);
  /** Live (unrevoked, unexpired) lent tokens, to be narrowed by `narrowed`. */
  const liveLent = async (
    now: number,
    narrowed: (query: ReturnType<typeof liveLentQuery>) => ReturnType<typeof liveLentQuery>,
  ): Promise<LentToken[]> => {
    const rows = await narrowed(liveLentQuery(now)).execute();
    return rows.flatMap((row) => (row.makerId === null ? [] : [{ ...row, makerId: row.makerId }]));
  };
  const liveLentQuery = (now: number) =>
    db
      .selectFrom('api_tokens')
      .select(['id as apiTokenId', 'user_id as userId', 'created_by as makerId'])
      .where('revoked_at', 'is', null)
      .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', now)]))
      .where('created_by', 'is not', null)
      .whereRef('created_by', '!=', 'user_id');
  /** Live lent tokens whose maker or user is `among`. */
  const lentAmong = async (
    among: readonly string[] | ReturnType<typeof usersOfScope>,
    now: number,
  ): Promise<LentToken[]> => {
    if (Array.isArray(among) && among.length === 0) return [];
    return liveLent(now, (query) =>
      query.where((eb) => eb.or([eb('created_by', 'in', among), eb('user_id', 'in', among)])),
    );
  };

  return {
    /**
     * The live (unrevoked, unexpired) lent tokens a change to who manages whom may concern (see
     * `LentTokenScope`), each once: read before the change, which may remove what a scope reads.
     */
    async listLent(scope: LentTokenScope, now: number): Promise<LentToken[]> {
      if (!('users' in scope)) return lentAmong(usersOfScope(scope), now);
      // A long list (a large group's members) goes in parts; each id is bound twice.
      const found = new Map<string, LentToken>();
      for (const part of inParts(scope.users)) {
        for (const token of await lentAmong(part, now)) {
          found.set(token.apiTokenId, token);
        }
      }
      return [...found.values()];
    },
    /**
     * The live lent tokens with a live session, for the periodic check that their makers still
     * manage their users (core/housekeeping.ts). Few rows: tokens made for others, in use.
     */
    listLentInUse(now: number): Promise<LentToken[]> {
      return liveLent(now, (query) =>
        query.where(({ exists, selectFrom }) =>
          exists(
            selectFrom('sessions')
              .select('sessions.id')
              .whereRef('sessions.api_token_id', '=', 'api_tokens.id')
              .where('sessions.revoked_at', 'is', null)
              .where('sessions.expires_at', '>', now),
          ),
        ),
      );
    },
    /**
     * Takes the rows of the tokens `ids` for the rest of the transaction, in the order of their
     * ids (on SQLite a transaction that writes holds the whole file already): a change to who
     * manages whom takes them before it reads whether their makers still manage their users, so
     * that two changes concerning the same tokens read one after the other, the second with the
     * first's writes (core/authorization.ts, `changingAuthority`). In id order, and before the
     * transaction takes any of them otherwise, so that two changes holding overlapping sets wait
     * for each other instead of deadlocking.
     */
    async holdForAuthorityCheck(ids: readonly string[]): Promise<void> {
      for (const part of inParts([...ids].sort())) {
        await db
          .selectFrom('api_tokens')
          .select('id')
          .where('id', 'in', part)
          .orderBy('id')
          .$if(dialect === 'postgres', (query) => query.forUpdate())
          .execute();
      }
    },
    /**
     * Moves the authority version of the tokens `ids`, after a change to who manages whom: a
     * sign-in with one that checked the maker's authority before the change then fails its guard
     * (`markUsed`), and one whose guard holds the token's row is waited for, so that its session
     * is there to be found afterwards. After the change, not before: the change may lock a user's
     * row, which a sign-in takes before its token's.
     */
    async moveAuthority(ids: readonly string[]): Promise<void> {
      for (const part of inParts(ids)) {
        await db
          .updateTable('api_tokens')
          .set((eb) => ({ authority_version: eb('authority_version', '+', 1) }))
          .where('id', 'in', part)
          .execute();
      }
    },
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
     * authority (`moveAuthority`) waits for the session and then finds it.
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
    /**
     * The tokens a user holds (`userId`), or made (`createdBy`), or both; revoked and expired ones
     * too: the list is also their history.
     */
    async list(
      filter: { readonly userId?: string; readonly createdBy?: string },
      page: PageRequest<ApiTokenSortKey>,
    ): Promise<Page<ApiTokenRow>> {
      const filtered = <Q extends SelectQueryBuilder<Database, 'api_tokens', object>>(query: Q): Q => {
        let narrowed = query;
        if (filter.userId !== undefined) narrowed = narrowed.where('user_id', '=', filter.userId) as Q;
        if (filter.createdBy !== undefined)
          narrowed = narrowed.where('created_by', '=', filter.createdBy) as Q;
        return narrowed;
      };
      const [rows, count] = await Promise.all([
        filtered(db.selectFrom('api_tokens').selectAll())
          .orderBy(
            API_TOKEN_SORT[page.sortBy],
            page.sortBy === 'expires' ? nullsHighest(page.order) : nullsLowest(page.order),
          )
          .orderBy('id', page.order)
          .limit(page.limit)
          .offset(page.offset)
          .execute(),
        filtered(
          db.selectFrom('api_tokens').select((eb) => eb.fn.countAll<number>().as('n')),
        ).executeTakeFirstOrThrow(),
      ]);
      return { rows, total: Number(count.n) };
    },
    /**
     * Revokes every live token a user holds, and every one it made for another user (lent): a
     * password change ends what whoever knew the old password minted, lent or not (found by
     * review: a token lent by an admin whose password was reset still signed in, and kept
     * administering its tenant as the user it was lent to). Answers how many of its own it
     * revoked, and the ids of the lent ones, whose sessions (of other users) the caller ends.
     * Live ones only, as `listLent` reads them for a change of who manages whom: an expired one
     * is dead already, and taken here it was taken out of that change's order (found by review:
     * a maker's password change and the deletion of the user of two tokens it had lent, one
     * expired, deadlocked).
     */
    async revokeAllHeldOrLent(userId: string, now: number): Promise<{ held: number; lent: string[] }> {
      const heldOrMade = (eb: ExpressionBuilder<Database, 'api_tokens'>) =>
        eb.and([
          eb('revoked_at', 'is', null),
          eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', now)]),
          eb.or([eb('user_id', '=', userId), eb('created_by', '=', userId)]),
        ]);
      const update = db.updateTable('api_tokens').set({ revoked_at: now }).where(heldOrMade);
      // In the order of their ids, as holdForAuthorityCheck takes lent tokens (endingSessions):
      // a lent token is the maker's and its user's, and two changes of the two take it alike.
      const rows = await (dialect === 'postgres'
        ? update.where('id', 'in', (eb) =>
            eb.selectFrom('api_tokens').select('id').where(heldOrMade).orderBy('id').forUpdate(),
          )
        : update
      )
        .returning(['id', 'user_id'])
        .execute();
      const lent = rows.filter((row) => row.user_id !== userId).map((row) => row.id);
      return { held: rows.length - lent.length, lent };
    },
    /** How many live (unrevoked, unexpired) tokens the user holds. */
    async countLiveOfUser(userId: string, now: number): Promise<number> {
      const row = await db
        .selectFrom('api_tokens')
        .select((eb) => eb.fn.countAll<number | string>().as('n'))
        .where('user_id', '=', userId)
        .where('revoked_at', 'is', null)
        .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', now)]))
        .executeTakeFirstOrThrow();
      return Number(row.n);
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
