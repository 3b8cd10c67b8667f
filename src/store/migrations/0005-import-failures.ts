import type { Kysely } from 'kysely';

/**
 * Frozen in time. User imports: the rows an import job could not create (row number and reason,
 * never the row's password), and the Idempotency-Key of each import request so that a retried
 * request finds its first job instead of importing twice.
 */
// biome-ignore lint/suspicious/noExplicitAny: migrations must not depend on the evolving schema type
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('import_failures')
    .addColumn('job_id', 'text', (c) => c.notNull())
    .addColumn('row_number', 'integer', (c) => c.notNull())
    .addColumn('reason', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('import_failures_pk', ['job_id', 'row_number'])
    .execute();
  await db.schema
    .createTable('import_requests')
    .addColumn('user_id', 'text', (c) => c.notNull())
    .addColumn('idempotency_key', 'text', (c) => c.notNull())
    .addColumn('job_id', 'text', (c) => c.notNull())
    .addColumn('body_sha256', 'text', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addPrimaryKeyConstraint('import_requests_pk', ['user_id', 'idempotency_key'])
    .execute();
}

// biome-ignore lint/suspicious/noExplicitAny: see up()
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('import_requests').execute();
  await db.schema.dropTable('import_failures').execute();
}
