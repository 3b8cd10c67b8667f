import type { Insertable, Kysely, Selectable } from 'kysely';
import type { Database, NodeTable } from '../schema.js';
import { createLoginHistory } from './login-history.js';

export type NodeRow = Selectable<NodeTable>;

export function createNodeRepository(db: Kysely<Database>) {
  return {
    ...createLoginHistory(db, 'nodes'),

    async insert(row: Insertable<NodeTable>): Promise<void> {
      await db.insertInto('nodes').values(row).execute();
    },
    findById(id: string): Promise<NodeRow | undefined> {
      return db.selectFrom('nodes').selectAll().where('id', '=', id).executeTakeFirst();
    },
    findByLoginKey(loginKey: string): Promise<NodeRow | undefined> {
      return db.selectFrom('nodes').selectAll().where('login_key', '=', loginKey).executeTakeFirst();
    },
    async recordVersion(id: string, version: string, now: number): Promise<void> {
      await db
        .updateTable('nodes')
        .set({ version, last_seen_at: now, updated_at: now })
        .where('id', '=', id)
        .execute();
    },
  };
}
