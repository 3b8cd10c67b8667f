import type { Kysely } from 'kysely';

/**
 * Frozen in time. Brute-force counters shared by every node of a deployment: failed sign-ins per
 * account, per client address and per account+address, and the per-address request counts of the
 * rate limits. One row per (scope, subject); `owner` ties an account+address row to its account so
 * that an administrator's unlock finds them all. `expires_at` is when the row means nothing any
 * more (window over, lock over): old rows are deleted by it.
 *
 * The lockout columns of users and nodes (failed_count, locked_until) no longer drive the lock;
 * a lock in force when this migration runs is not carried over (the new subjects are keyed
 * hashes that SQL cannot compute), so it ends at the upgrade.
 */
// biome-ignore lint/suspicious/noExplicitAny: migrations must not depend on the evolving schema type
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('login_throttle')
    .addColumn('scope', 'text', (c) => c.notNull())
    .addColumn('subject', 'text', (c) => c.notNull())
    .addColumn('owner', 'text')
    .addColumn('hits', 'integer', (c) => c.notNull())
    .addColumn('window_start', 'bigint', (c) => c.notNull())
    .addColumn('locked_until', 'bigint')
    .addColumn('expires_at', 'bigint', (c) => c.notNull())
    .addPrimaryKeyConstraint('login_throttle_pk', ['scope', 'subject'])
    .execute();
  await db.schema.createIndex('login_throttle_owner_idx').on('login_throttle').column('owner').execute();
  await db.schema
    .createIndex('login_throttle_expires_idx')
    .on('login_throttle')
    .column('expires_at')
    .execute();
}

// biome-ignore lint/suspicious/noExplicitAny: see up()
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('login_throttle').execute();
}
