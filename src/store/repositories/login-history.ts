import { type Kysely, sql } from 'kysely';
import type { Database } from '../schema.js';

/** Users and nodes keep the same login-history columns; one implementation serves both tables. */
export type AccountTable = 'users' | 'nodes';

export interface FailureOutcome {
  readonly failedCount: number;
  readonly lockedUntil: number | null;
}

export function createLoginHistory(db: Kysely<Database>, table: AccountTable) {
  // The column sets are identical; typing against `users` keeps Kysely's checks.
  const t = table as 'users';
  return {
    /**
     * Counts a failure atomically, in the store, so that concurrent attempts and other processes
     * see the same count and a restart forgets nothing. A lock that has run out starts a new count;
     * failures during a lock do not extend it.
     */
    async recordFailure(
      id: string,
      now: number,
      ip: string,
      threshold: number,
      lockMs: number,
    ): Promise<FailureOutcome | undefined> {
      const expired = sql<boolean>`locked_until is not null and locked_until <= ${now}`;
      const nextCount = sql<number>`case when ${expired} then 1 else failed_count + 1 end`;
      const row = await db
        .updateTable(t)
        .set({
          failed_count: nextCount,
          locked_until: sql<number | null>`case
            when locked_until is not null and locked_until > ${now} then locked_until
            when (${nextCount}) >= ${threshold} then ${now + lockMs}
            else null end`,
          last_failed_at: now,
          last_failed_ip: ip,
        })
        .where('id', '=', id)
        .returning(['failed_count', 'locked_until'])
        .executeTakeFirst();
      return row && { failedCount: row.failed_count, lockedUntil: row.locked_until };
    },

    /** A password sign-in: clears the failure count and any lock. */
    async recordSuccess(id: string, now: number): Promise<void> {
      await db
        .updateTable(t)
        .set({ failed_count: 0, locked_until: null, last_success_at: now })
        .where('id', '=', id)
        .execute();
    },

    /** A sign-in that did not prove the password (API token): history only, the lockout stays. */
    async recordOtherLogin(id: string, now: number): Promise<void> {
      await db.updateTable(t).set({ last_success_at: now }).where('id', '=', id).execute();
    },
  };
}
