import { type Kysely, sql } from 'kysely';
import type { Database } from '../schema.js';

/** Users and nodes keep the same login-history columns; one implementation serves both tables. */
export type AccountTable = 'users' | 'nodes';

/**
 * A password sign-in's own history is written by each table's repository, with the check that
 * the account still stands as it was checked (users' `recordPasswordSignIn`, nodes' `recordSignIn`).
 */
export function createLoginHistory(db: Kysely<Database>, table: AccountTable) {
  // The column sets are identical; typing against `users` keeps Kysely's checks.
  const t = table as 'users';
  return {
    /**
     * History of a failed sign-in: when, from where, and how many since the last success. The
     * lock itself is decided by the login throttle (repositories/login-throttle.ts), not here.
     */
    async recordFailedAttempt(id: string, now: number, ip: string): Promise<void> {
      await db
        .updateTable(t)
        .set({ failed_count: sql<number>`failed_count + 1`, last_failed_at: now, last_failed_ip: ip })
        .where('id', '=', id)
        .execute();
    },

    /**
     * A password set: the hash, the time of the change and the failures cleared. The time is after
     * any the row holds already (by a millisecond if the clocks say otherwise), so that a sign-in
     * that read the row before the set can tell, however close the two (users'
     * `recordPasswordSignIn`, nodes' `recordSignIn`).
     */
    async setPassword(id: string, passwordHash: string, now: number): Promise<void> {
      await db
        .updateTable(t)
        .set({
          password_hash: passwordHash,
          password_changed_at: sql<number>`case when password_changed_at >= ${now} then password_changed_at + 1 else ${now} end`,
          failed_count: 0,
          locked_until: null,
          updated_at: now,
        })
        .where('id', '=', id)
        .execute();
    },

    /**
     * A sign-in that did not prove the password (API token): history only, the count stays; only
     * while the account is active: false, and nothing written, otherwise.
     */
    async recordOtherLogin(id: string, now: number): Promise<boolean> {
      const result = await db
        .updateTable(t)
        .set({ last_success_at: now })
        .where('id', '=', id)
        .where('active', '=', 1)
        .executeTakeFirst();
      return Number(result.numUpdatedRows) > 0;
    },
  };
}
