import { type Kysely, sql } from 'kysely';

/**
 * Frozen in time. The active-sessions gauge counts live sessions on every scrape: over a million
 * sessions a full scan took ~100 ms (blocking, on SQLite); this partial index holds only unrevoked
 * sessions, ordered by last use, so the count reads the recently used ones (~10 ms there).
 */
// biome-ignore lint/suspicious/noExplicitAny: migrations must not depend on the evolving schema type
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createIndex('sessions_live_idx')
    .on('sessions')
    .columns(['last_seen_at', 'expires_at'])
    .where(sql.ref('revoked_at'), 'is', null)
    .execute();
}

// biome-ignore lint/suspicious/noExplicitAny: see up()
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropIndex('sessions_live_idx').execute();
}
