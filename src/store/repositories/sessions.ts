import type { Insertable, Kysely, Selectable } from 'kysely';
import type { Database, SessionTable } from '../schema.js';

export type SessionRow = Selectable<SessionTable>;

/** A session with the state of its principal, read in one round trip for every request. */
export interface SessionWithPrincipal extends SessionRow {
  readonly principal_active: 0 | 1 | null;
  readonly principal_name: string | null;
}

export function createSessionRepository(db: Kysely<Database>) {
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
    async insert(row: Insertable<SessionTable>): Promise<void> {
      await db.insertInto('sessions').values(row).execute();
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
    /** Returns true if this call ended the session (false: it had already ended). */
    async revoke(id: string, now: number, reason: string): Promise<boolean> {
      const result = await db
        .updateTable('sessions')
        .set({ revoked_at: now, revoke_reason: reason })
        .where('id', '=', id)
        .where('revoked_at', 'is', null)
        .executeTakeFirst();
      return Number(result.numUpdatedRows) > 0;
    },
    async revokeAllOfUser(userId: string, now: number, reason: string, exceptId?: string): Promise<number> {
      let query = db
        .updateTable('sessions')
        .set({ revoked_at: now, revoke_reason: reason })
        .where('user_id', '=', userId)
        .where('revoked_at', 'is', null);
      if (exceptId) query = query.where('id', '!=', exceptId);
      const result = await query.executeTakeFirst();
      return Number(result.numUpdatedRows);
    },
  };
}
