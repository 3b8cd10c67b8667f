import { type Kysely, sql } from 'kysely';
import type { Dialect } from '../connect.js';
import type { Database } from '../schema.js';
import { type StatementShape, shapeOf, standIn, withValues } from './compiled-once.js';

/** Users and nodes keep the same login-history columns; one implementation serves both tables. */
export type AccountTable = 'users' | 'nodes';

/**
 * A successful sign-in's update, compiled once per dialect and table (compiled-once.ts): it runs in
 * the sign-in's own transaction, whose repositories are new each time, so it is kept here.
 */
const successUpdates = new Map<string, StatementShape>();

export function createLoginHistory(db: Kysely<Database>, table: AccountTable, dialect: Dialect) {
  // The column sets are identical; typing against `users` keeps Kysely's checks.
  const t = table as 'users';
  const successUpdate = (): StatementShape => {
    const key = `${dialect}:${table}`;
    let shape = successUpdates.get(key);
    if (!shape) {
      shape = shapeOf(
        db
          .updateTable(t)
          .set({ failed_count: 0, locked_until: null, last_success_at: standIn<number>('now') })
          .where('id', '=', standIn<string>('id')),
      );
      successUpdates.set(key, shape);
    }
    return shape;
  };
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

    /** A password sign-in: the failures since the last success start again from 0. */
    async recordSuccess(id: string, now: number): Promise<void> {
      await db.executeQuery(withValues(successUpdate(), (key) => (key === 'id' ? id : now)));
    },

    /** A sign-in that did not prove the password (API token): history only, the count stays. */
    async recordOtherLogin(id: string, now: number): Promise<void> {
      await db.updateTable(t).set({ last_success_at: now }).where('id', '=', id).execute();
    },
  };
}
