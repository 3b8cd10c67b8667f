import type { Kysely } from 'kysely';

/**
 * Frozen in time. Job leases: the process running a job holds a lease it renews while it works,
 * so that a job whose process died (lease expired) can be told apart from one still running on
 * another node that shares the database.
 */
// biome-ignore lint/suspicious/noExplicitAny: migrations must not depend on the evolving schema type
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('jobs').addColumn('lease_owner', 'text').execute();
  await db.schema.alterTable('jobs').addColumn('lease_expires_at', 'bigint').execute();
  await db.schema
    .createIndex('jobs_status_lease_idx')
    .on('jobs')
    .columns(['status', 'lease_expires_at'])
    .execute();
}

// biome-ignore lint/suspicious/noExplicitAny: see up()
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropIndex('jobs_status_lease_idx').execute();
  await db.schema.alterTable('jobs').dropColumn('lease_expires_at').execute();
  await db.schema.alterTable('jobs').dropColumn('lease_owner').execute();
}
