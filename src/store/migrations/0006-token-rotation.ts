import type { Kysely } from 'kysely';

/**
 * Frozen in time. Refresh rotation of the NSE bearer token: each session counts the generation of
 * its newest token, and remembers until when the one before it is still accepted (the grace
 * window for requests in flight). A token of any older generation is a replay.
 */
// biome-ignore lint/suspicious/noExplicitAny: migrations must not depend on the evolving schema type
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .alterTable('sessions')
    .addColumn('token_generation', 'integer', (c) => c.notNull().defaultTo(0))
    .execute();
  await db.schema.alterTable('sessions').addColumn('prior_token_valid_until', 'bigint').execute();
}

// biome-ignore lint/suspicious/noExplicitAny: see up()
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('sessions').dropColumn('prior_token_valid_until').execute();
  await db.schema.alterTable('sessions').dropColumn('token_generation').execute();
}
