import {
  type Expression,
  type ExpressionBuilder,
  type Insertable,
  type Kysely,
  type Selectable,
  type SqlBool,
  sql,
} from 'kysely';
import type { Dialect } from '../connect.js';
import type { Database, SessionTable } from '../schema.js';
import { insertRows, type ListsEveryColumn } from './bulk-insert.js';
import { type StatementShape, shapeOf, standIn, withValues } from './compiled-once.js';
import { inParts, type Page, type PageRequest } from './list-query.js';

export type SessionRow = Selectable<SessionTable>;
export type SessionSortKey = 'created' | 'last_seen' | 'expires';

const SESSION_SORT = { created: 'created_at', last_seen: 'last_seen_at', expires: 'expires_at' } as const;

/** Whose sessions: a user's or a node's. */
export type SessionOwner = { readonly userId: string } | { readonly nodeId: string };

/** The cut-offs of a live session, computed by core (`liveBounds`): the same rule as its check. */
export interface LiveBounds {
  readonly now: number;
  readonly idleBefore: number;
}

/** A session with the state of its principal, read in one round trip for every request. */
export interface SessionWithPrincipal extends SessionRow {
  readonly principal_active: 0 | 1 | null;
  readonly principal_name: string | null;
}

/**
 * `(revoked_at is null) is true`: the same rows as `revoked_at is null`, in a form the planner
 * cannot match to sessions_live_idx (partial: `where revoked_at is null`, for the live-sessions
 * gauge). Without fresh statistics (a young database, a fast-growing table, a restore or an
 * upgrade before ANALYZE) PostgreSQL costed that index at a few rows whatever its size, and
 * scanned every live session to find a handful: for a refresh batch of 10 among 5,000 sessions
 * 2.7 ms against 0.4 ms by key, and growing with the sessions; a user's logout-everywhere and
 * session list did the same beside the user index. Every statement that finds sessions by key,
 * user, node or token says "live" this way; only the gauge's count says it plainly.
 */
export const notRevoked = (eb: ExpressionBuilder<Database, 'sessions'>) =>
  eb(eb.parens(eb('revoked_at', 'is', null)), 'is', true);

/** The sessions of one user or node, but `exceptId` (the caller's own, say). */
const ownedBy =
  (column: 'user_id' | 'node_id', owner: string, exceptId: string | undefined) =>
  (eb: ExpressionBuilder<Database, 'sessions'>) =>
    exceptId ? eb.and([eb(column, '=', owner), eb('id', '!=', exceptId)]) : eb(column, '=', owner);

/**
 * An update that ends the live sessions `which` picks, taking their rows in the order of their
 * ids on PostgreSQL (a sub-select `order by id for update`; a SQLite transaction that writes
 * holds the whole file already). Left to the plan, a user's sessions were taken in the order of
 * the user index, those of lent tokens token by token, and two such ends at once, sharing
 * sessions, could deadlock (found by review, with a third transaction holding one session row
 * between them: 3 of 3). Every statement that ends several sessions is built here.
 */
export function endingSessions(
  db: Kysely<Database>,
  dialect: Dialect,
  which: (eb: ExpressionBuilder<Database, 'sessions'>) => Expression<SqlBool>,
  now: number,
  reason: string | ((eb: ExpressionBuilder<Database, 'sessions'>) => Expression<string>),
) {
  const update = db
    .updateTable('sessions')
    .set((eb) => ({ revoked_at: now, revoke_reason: typeof reason === 'string' ? reason : reason(eb) }))
    .where(which);
  // `which` outside too: with only the ids of the sub-select to go by, PostgreSQL may join them
  // to a scan of every session (found by review: the sessions of 1,000 tokens, estimated at
  // 19,675, ended in 360 ms over 600,000 sessions, against 1.9 ms by the token index).
  return dialect === 'postgres'
    ? update.where('id', 'in', (eb) =>
        eb.selectFrom('sessions').select('id').where(which).where(notRevoked).orderBy('id').forUpdate(),
      )
    : update.where(notRevoked);
}

/** Which value a stand-in of the compare-and-set stands for. */
type AdvanceKey = { readonly kind: 'prior' } | { readonly kind: 'id' | 'from'; readonly index: number };

/** Batches up to this size have their compare-and-set compiled once per store; larger ones each time. */
const ADVANCE_STATEMENTS_KEPT = 64;

/** Every column of a session: a new session sets each (`insert`). */
const SESSION_COLUMNS = [
  'id',
  'kind',
  'user_id',
  'node_id',
  'api_token_id',
  'secret_hash',
  'created_at',
  'last_seen_at',
  'expires_at',
  'revoked_at',
  'revoke_reason',
  'ip',
  'user_agent',
  'prev_success_at',
  'prev_failed_at',
  'prev_failed_ip',
  'token_generation',
  'prior_token_valid_until',
] as const satisfies readonly (keyof SessionTable)[];
const _everySessionColumn: ListsEveryColumn<SessionTable, typeof SESSION_COLUMNS> = true;

/** What `revokeAllOfUsersAndApiTokens` ended. */
export interface EndedOfUsersAndApiTokens {
  /** Sessions of the users named, ended as theirs. */
  readonly sessionsOfUsers: number;
  /** The users named who had sessions ended. */
  readonly users: Set<string>;
  /** The tokens named that had sessions ended as theirs (not as a user's named too). */
  readonly apiTokens: Set<string>;
}

/** A new session: every column given, none left to its default. */
export type NewSessionRow = Required<Insertable<SessionTable>>;

export function createSessionRepository(db: Kysely<Database>, dialect: Dialect) {
  /**
   * The compare-and-set of a batch of refreshes, by batch size. Every refresh goes through one:
   * each size is built and compiled once (compiled-once.ts). A batch of 12 on SQLite, the
   * statement run included: 78-87 µs of CPU a call built each time, 43-50 compiled once
   * (docs/performance-log.md).
   */
  const advanceStatements = new Map<number, StatementShape<AdvanceKey>>();
  const advanceStatement = (size: number): StatementShape<AdvanceKey> => {
    const known = advanceStatements.get(size);
    if (known) return known;
    const standIns = Array.from({ length: size }, (_, index) => ({
      id: standIn<string, AdvanceKey>({ kind: 'id', index }),
      from: standIn<number, AdvanceKey>({ kind: 'from', index }),
    }));
    const asked = (eb: ExpressionBuilder<Database, 'sessions'>) =>
      eb.and([
        notRevoked(eb),
        eb.or(
          standIns.map((advance) =>
            eb.and([eb('id', '=', advance.id), eb('token_generation', '=', advance.from)]),
          ),
        ),
      ]);
    const update = db.updateTable('sessions').set((eb) => ({
      token_generation: eb('token_generation', '+', 1),
      prior_token_valid_until: standIn<number, AdvanceKey>({ kind: 'prior' }),
    }));
    // On PostgreSQL, rows another transaction holds are passed over (`skip locked`): a batch never
    // waits at a row lock, so it holds up none of the refreshes queued behind it and cannot
    // deadlock (found by review: waiting at one held row, an unrelated refresh took ~1.2 s; taken
    // in the heap's order, a batch deadlocked with a logout everywhere and failed 19 of its 30
    // refreshes with a 500). Its caller tries those sessions again (core/sessions.ts).
    const shape = shapeOf<AdvanceKey>(
      (dialect === 'postgres'
        ? update.where('id', 'in', (eb) =>
            eb.selectFrom('sessions').select('id').where(asked).orderBy('id').forUpdate().skipLocked(),
          )
        : update.where(asked)
      ).returning('id'),
    );
    if (size <= ADVANCE_STATEMENTS_KEPT) advanceStatements.set(size, shape);
    return shape;
  };

  const endSessionsOf = async (
    users: { readonly ids: readonly string[]; readonly reason: string },
    apiTokens: { readonly ids: readonly string[]; readonly reason: string },
    now: number,
  ): Promise<EndedOfUsersAndApiTokens> => {
    const ofUsers = new Set(users.ids);
    const ended = { sessionsOfUsers: 0, users: new Set<string>(), apiTokens: new Set<string>() };
    const count = (rows: readonly { user_id: string | null; api_token_id: string | null }[]) => {
      for (const row of rows) {
        if (row.user_id !== null && ofUsers.has(row.user_id)) {
          ended.sessionsOfUsers += 1;
          ended.users.add(row.user_id);
        } else if (row.api_token_id !== null) {
          ended.apiTokens.add(row.api_token_id);
        }
      }
    };
    if (users.ids.length === 0 && apiTokens.ids.length === 0) return ended;
    if (dialect === 'postgres') {
      // Each list one array value: one statement for any number, its plan the same for every one.
      const userIds = [...users.ids];
      const apiTokenIds = [...apiTokens.ids];
      const ofUser = (eb: ExpressionBuilder<Database, 'sessions'>) =>
        sql<SqlBool>`${eb.ref('user_id')} = any(${userIds}::text[])`;
      count(
        await endingSessions(
          db,
          dialect,
          (eb) => eb.or([ofUser(eb), sql<SqlBool>`${eb.ref('api_token_id')} = any(${apiTokenIds}::text[])`]),
          now,
          (eb) => eb.case().when(ofUser(eb)).then(users.reason).else(apiTokens.reason).end(),
        )
          .returning(['user_id', 'api_token_id'])
          .execute(),
      );
      return ended;
    }
    for (const part of inParts(users.ids)) {
      count(
        await endingSessions(db, dialect, (eb) => eb('user_id', 'in', part), now, users.reason)
          .returning(['user_id', 'api_token_id'])
          .execute(),
      );
    }
    for (const part of inParts(apiTokens.ids)) {
      count(
        await endingSessions(db, dialect, (eb) => eb('api_token_id', 'in', part), now, apiTokens.reason)
          .returning(['user_id', 'api_token_id'])
          .execute(),
      );
    }
    return ended;
  };

  const withPrincipal = () =>
    db
      .selectFrom('sessions')
      .leftJoin('users', 'users.id', 'sessions.user_id')
      .leftJoin('nodes', 'nodes.id', 'sessions.node_id')
      .selectAll('sessions')
      .select((eb) => [
        eb.fn.coalesce('users.active', 'nodes.active').as('principal_active'),
        eb.fn.coalesce('users.username', 'nodes.login').as('principal_name'),
      ]);

  return {
    /** Compiled once per store (`insertRows`): every sign-in writes one. */
    insert(row: NewSessionRow): Promise<void> {
      return insertRows(db, dialect, 'sessions', SESSION_COLUMNS, [row], 1);
    },
    /** Where each session's token line stands: its generation, and whether it has ended. */
    findTokenGenerations(
      ids: readonly string[],
    ): Promise<{ id: string; token_generation: number; revoked_at: number | null }[]> {
      return db
        .selectFrom('sessions')
        .select(['id', 'token_generation', 'revoked_at'])
        .where('id', 'in', ids)
        .execute();
    },
    async findById(id: string): Promise<SessionWithPrincipal | undefined> {
      return (await withPrincipal().where('sessions.id', '=', id).executeTakeFirst()) as
        | SessionWithPrincipal
        | undefined;
    },
    async findBySecretHash(secretHash: string): Promise<SessionWithPrincipal | undefined> {
      return (await withPrincipal().where('sessions.secret_hash', '=', secretHash).executeTakeFirst()) as
        | SessionWithPrincipal
        | undefined;
    },
    async touch(id: string, now: number): Promise<void> {
      await db.updateTable('sessions').set({ last_seen_at: now }).where('id', '=', id).execute();
    },
    /**
     * Refresh rotation as compare-and-sets, one statement for a batch: moves each session's token
     * line from generation `from` to `from + 1` only if it is still there and the session live, so
     * that of two concurrent refreshes of the same token exactly one wins (on both stores: the
     * UPDATE re-checks its WHERE under the row lock); answers the ids that moved. Each (id, from)
     * must appear once. `options.announce: false` keeps the change from the other processes'
     * caches (read by invalidating-repositories.ts; the default tells them).
     * A session whose row another transaction holds (PostgreSQL; a SQLite writer holds the whole
     * file, and the statement waits for it) is left as it is and answered as not moved.
     */
    async advanceTokenGenerations(
      advances: readonly { readonly id: string; readonly from: number }[],
      priorValidUntil: number,
      _options?: { readonly announce?: boolean },
    ): Promise<Set<string>> {
      if (advances.length === 0) return new Set();
      const { rows } = await db.executeQuery<{ id: string }>(
        withValues(advanceStatement(advances.length), (key) =>
          key.kind === 'prior'
            ? priorValidUntil
            : key.kind === 'id'
              ? advances[key.index]?.id
              : advances[key.index]?.from,
        ),
      );
      return new Set(rows.map((row) => row.id));
    },
    /**
     * Deletes up to `limit` sessions that expired before `expiredBefore`, among those whose id is
     * below `idBelow`; answers how many it deleted. Ids begin with their creation time
     * (core/ids.ts), so `idBelow` bounds the search to a range of the primary key: the sweep needs
     * no index on `expires_at`, which every sign-in would pay to write.
     */
    async deleteExpired(idBelow: string, expiredBefore: number, limit: number): Promise<number> {
      const result = await db
        .deleteFrom('sessions')
        .where('id', 'in', (eb) =>
          eb
            .selectFrom('sessions')
            .select('id')
            .where('id', '<', idBelow)
            .where('expires_at', '<', expiredBefore)
            .orderBy('id')
            .limit(limit),
        )
        .executeTakeFirst();
      return Number(result.numDeletedRows);
    },
    /** Returns true if this call ended the session (false: it had already ended). */
    async revoke(id: string, now: number, reason: string): Promise<boolean> {
      const result = await db
        .updateTable('sessions')
        .set({ revoked_at: now, revoke_reason: reason })
        .where('id', '=', id)
        .where(notRevoked)
        .executeTakeFirst();
      return Number(result.numUpdatedRows) > 0;
    },
    /**
     * Ends the user's live sessions. Lock order: a transaction that changes the account, its API
     * tokens and its sessions takes them in that order (a sign-in: account, token; a token's
     * revocation: token, its sessions; a password set: account, tokens, sessions). In another
     * order two of them deadlock on PostgreSQL: a password set that ended the sessions before the
     * tokens did, against a revocation of one of them (found by review: 38 of 600 failed).
     */
    async revokeAllOfUser(userId: string, now: number, reason: string, exceptId?: string): Promise<number> {
      const result = await endingSessions(
        db,
        dialect,
        ownedBy('user_id', userId, exceptId),
        now,
        reason,
      ).executeTakeFirst();
      return Number(result.numUpdatedRows);
    },
    async revokeAllOfNode(nodeId: string, now: number, reason: string, exceptId?: string): Promise<number> {
      const result = await endingSessions(
        db,
        dialect,
        ownedBy('node_id', nodeId, exceptId),
        now,
        reason,
      ).executeTakeFirst();
      return Number(result.numUpdatedRows);
    },
    /** The sessions opened by signing in with one API token. */
    async revokeAllOfApiToken(apiTokenId: string, now: number, reason: string): Promise<number> {
      const result = await endingSessions(
        db,
        dialect,
        (eb) => eb('api_token_id', '=', apiTokenId),
        now,
        reason,
      ).executeTakeFirst();
      return Number(result.numUpdatedRows);
    },
    /**
     * Ends the sessions opened with any of the API tokens `ids`; answers the tokens that had one
     * to end. A change to who manages whom may end the sessions of hundreds of lent tokens
     * (core/authorization.ts, `changingAuthority`).
     */
    async revokeAllOfApiTokens(ids: readonly string[], now: number, reason: string): Promise<Set<string>> {
      return (await endSessionsOf({ ids: [], reason }, { ids, reason }, now)).apiTokens;
    },
    /**
     * Ends, together, the live sessions of the users `users.ids` (for `users.reason`) and those
     * opened with the API tokens `apiTokens.ids` (for `apiTokens.reason`; a session of both ends
     * as its user's). On PostgreSQL in one statement, whatever their numbers, that takes every row
     * in id order: two statements, each in id order, took the second's rows after the first's
     * whatever their ids, against the order of any other statement taking rows of both (found by
     * review, reading a tenant's deletion). SQLite: a thousand of each a statement, one writer at
     * a time. Answers how many of the users' sessions it ended, the users they were of, and the
     * tokens that had sessions ended as theirs.
     */
    revokeAllOfUsersAndApiTokens(
      users: { readonly ids: readonly string[]; readonly reason: string },
      apiTokens: { readonly ids: readonly string[]; readonly reason: string },
      now: number,
    ): Promise<EndedOfUsersAndApiTokens> {
      return endSessionsOf(users, apiTokens, now);
    },
    /**
     * Live sessions of everyone, for the active-sessions gauge: one count over the partial index
     * of unrevoked sessions (`sessions_live_idx`), not a scan of every session ever opened.
     */
    async countLive(bounds: LiveBounds): Promise<number> {
      const row = await db
        .selectFrom('sessions')
        .where('revoked_at', 'is', null)
        .where('last_seen_at', '>', bounds.idleBefore)
        .where('expires_at', '>', bounds.now)
        .select((eb) => eb.fn.countAll<number | string>().as('n'))
        .executeTakeFirstOrThrow();
      return Number(row.n);
    },
    /** Live sessions of one user or node: not revoked, not past their expiry, not idle too long. */
    async listLive(
      owner: SessionOwner,
      bounds: LiveBounds,
      page: PageRequest<SessionSortKey>,
    ): Promise<Page<SessionRow>> {
      const live = () => {
        const query = db
          .selectFrom('sessions')
          .where(notRevoked)
          .where('expires_at', '>', bounds.now)
          .where('last_seen_at', '>', bounds.idleBefore);
        return 'userId' in owner
          ? query.where('user_id', '=', owner.userId)
          : query.where('node_id', '=', owner.nodeId);
      };
      const [rows, count] = await Promise.all([
        live()
          .selectAll()
          .orderBy(SESSION_SORT[page.sortBy], page.order)
          .orderBy('id', page.order)
          .limit(page.limit)
          .offset(page.offset)
          .execute(),
        live()
          .select((eb) => eb.fn.countAll<number>().as('n'))
          .executeTakeFirstOrThrow(),
      ]);
      return { rows, total: Number(count.n) };
    },
  };
}
