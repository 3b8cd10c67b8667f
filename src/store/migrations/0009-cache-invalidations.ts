import type { Kysely } from 'kysely';

/**
 * Frozen in time. The change feed of SQLite stores: every write that ends or alters a session or
 * its user or node adds a row naming what changed (`tag`, e.g. `session:<id>`), in the same
 * transaction; every process sharing the file (`serve --workers N`, the CLI) polls the rows past
 * the last one it saw and drops those entries from its caches. `seq` is the rowid: SQLite has one
 * writer at a time, so rows appear in the order they commit. PostgreSQL stores use LISTEN/NOTIFY
 * instead and leave this table empty; it exists there too so that both stores have one schema.
 */
// biome-ignore lint/suspicious/noExplicitAny: migrations must not depend on the evolving schema type
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('cache_invalidations')
    .addColumn('seq', 'integer', (c) => c.primaryKey())
    .addColumn('tag', 'text', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .execute();
}

// biome-ignore lint/suspicious/noExplicitAny: see up()
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('cache_invalidations').execute();
}
