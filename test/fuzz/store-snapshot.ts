import { createHash } from 'node:crypto';
import { sql } from 'kysely';
import type { Store } from '../../src/store/connect.js';

/**
 * What a refused request may write, by design; everything else in the store must stay as it was.
 *
 * - a refused sign-in (or Basic attempt) updates the account's failure history and lock
 *   (`failed_count`, `last_failed_at`, `last_failed_ip`, `locked_until` of users and nodes);
 * - any refusal the operators should know of is an audit event with outcome `failure`, and a
 *   lock it causes is a `lockout` event;
 * - an authenticated request marks its session used (`sessions.last_seen_at`), whatever its fate;
 * - the brute-force and rate-limit counters (`login_throttle`) count every attempt, refused or not:
 *   counting refusals is their purpose;
 * - the change feed of SQLite (`cache_invalidations`) holds a row per change it announces (each
 *   also a change of the table it names, compared there), and every process prunes old rows.
 *
 * Tables added later are compared whole until they are listed here with a reason.
 */
const WRITTEN_BY_REFUSALS: Readonly<Record<string, readonly string[]>> = {
  users: ['failed_count', 'last_failed_at', 'last_failed_ip', 'locked_until'],
  nodes: ['failed_count', 'last_failed_at', 'last_failed_ip', 'locked_until'],
  sessions: ['last_seen_at'],
};
const COUNTERS = new Set(['login_throttle', 'cache_invalidations']);
const expectedRow = (table: string, row: Record<string, unknown>): boolean =>
  COUNTERS.has(table) ||
  (table === 'audit_events' && (row.outcome === 'failure' || row.action === 'lockout'));

export type Snapshot = ReadonlyMap<string, readonly string[]>;

/** Every row of every table (rows as canonical JSON, sorted), minus what a refusal may write. */
export async function snapshotStore(store: Store): Promise<Snapshot> {
  const tables = await store.db.introspection.getTables();
  const out = new Map<string, string[]>();
  for (const table of tables) {
    const skipped = new Set(WRITTEN_BY_REFUSALS[table.name] ?? []);
    const { rows } = await sql<Record<string, unknown>>`select * from ${sql.table(table.name)}`.execute(
      store.db,
    );
    out.set(
      table.name,
      rows
        .filter((row) => !expectedRow(table.name, row))
        .map((row) =>
          JSON.stringify(
            Object.keys(row)
              .filter((column) => !skipped.has(column))
              .sort()
              .map((column) => [column, normalise(row[column])]),
          ),
        )
        .sort(),
    );
  }
  return out;
}

/** PostgreSQL answers bigint as text and SQLite as a number: compare them as text. */
function normalise(value: unknown): unknown {
  if (value === null || value === undefined) return null;
  if (Buffer.isBuffer(value)) return createHash('sha256').update(value).digest('hex');
  if (value instanceof Date) return value.getTime();
  return String(value);
}

/** What changed between two snapshots, briefly; empty when nothing did. */
export function differences(before: Snapshot, after: Snapshot): string[] {
  const out: string[] = [];
  for (const table of new Set([...before.keys(), ...after.keys()])) {
    const was = new Set(before.get(table) ?? []);
    const now = new Set(after.get(table) ?? []);
    const added = [...now].filter((row) => !was.has(row));
    const removed = [...was].filter((row) => !now.has(row));
    if (added.length === 0 && removed.length === 0) continue;
    const show = (rows: string[]) => rows.slice(0, 3).map((row) => row.slice(0, 400));
    out.push(
      `${table}: ${added.length} row(s) new or changed ${JSON.stringify(show(added))}, ${removed.length} gone or changed ${JSON.stringify(show(removed))}`,
    );
  }
  return out;
}
