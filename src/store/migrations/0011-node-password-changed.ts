import type { Kysely } from 'kysely';

/**
 * Frozen in time. When a node's password was last set (`password_changed_at`, as users have; null
 * for nodes made before this migration): a node's sign-in writes its session only while it is
 * still the one it read, and a rehash of the same password (which replaces the hash) must not
 * count as a change.
 */
// biome-ignore lint/suspicious/noExplicitAny: migrations must not depend on the evolving schema type
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('nodes').addColumn('password_changed_at', 'bigint').execute();
}

// biome-ignore lint/suspicious/noExplicitAny: see up()
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('nodes').dropColumn('password_changed_at').execute();
}
