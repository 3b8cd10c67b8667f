import type { Kysely } from 'kysely';

/** Frozen in time. Revoking an API token ends the sessions it opened: find them by index. */
// biome-ignore lint/suspicious/noExplicitAny: migrations must not depend on the evolving schema type
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.createIndex('sessions_api_token_idx').on('sessions').column('api_token_id').execute();
}

// biome-ignore lint/suspicious/noExplicitAny: see up()
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropIndex('sessions_api_token_idx').execute();
}
