import type { Kysely } from 'kysely';

/**
 * Frozen in time. A count of the changes to who manages whom that concerned a lent API token (made
 * by one user for another): a change moves it, and a sign-in with the token writes its session only
 * while the count is the one it read when it checked the maker's authority. Without it, a sign-in
 * checked just before the maker's demotion and written just after kept its session.
 */
// biome-ignore lint/suspicious/noExplicitAny: migrations must not depend on the evolving schema type
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .alterTable('api_tokens')
    .addColumn('authority_version', 'integer', (column) => column.notNull().defaultTo(0))
    .execute();
}

// biome-ignore lint/suspicious/noExplicitAny: see up()
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('api_tokens').dropColumn('authority_version').execute();
}
