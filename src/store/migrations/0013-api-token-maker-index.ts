import type { Kysely } from 'kysely';

/**
 * Frozen in time. The tokens a user made for others are found by their maker: a change of who
 * manages whom reads the lent tokens of the users it concerns, and a password change revokes those
 * its user made. Without an index each read every token.
 */
// biome-ignore lint/suspicious/noExplicitAny: migrations must not depend on the evolving schema type
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.createIndex('api_tokens_created_by_idx').on('api_tokens').column('created_by').execute();
}

// biome-ignore lint/suspicious/noExplicitAny: see up()
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropIndex('api_tokens_created_by_idx').execute();
}
