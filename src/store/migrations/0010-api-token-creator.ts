import type { Kysely } from 'kysely';

/**
 * Frozen in time. Who made each API token (`created_by`, a user id; null for the CLI's and for
 * tokens made before this migration): a token an administrator made for another user works only
 * while its maker still manages that user. No foreign key: a token whose maker is deleted must stop
 * working, not become one nobody made.
 */
// biome-ignore lint/suspicious/noExplicitAny: migrations must not depend on the evolving schema type
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('api_tokens').addColumn('created_by', 'text').execute();
}

// biome-ignore lint/suspicious/noExplicitAny: see up()
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('api_tokens').dropColumn('created_by').execute();
}
