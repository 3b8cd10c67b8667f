import {
  type CompiledQuery,
  type DatabaseConnection,
  type Driver,
  Kysely,
  type QueryResult,
  SqliteAdapter,
  SqliteIntrospector,
  SqliteQueryCompiler,
} from 'kysely';
import type { Database } from './schema.js';
import type { BatchStatement } from './sqlite-batch-writer.js';

/** What a statement other than an insert meets in `Store.insertBatch`'s work. */
export class NotAnInsertError extends Error {
  constructor(kind: string) {
    super(`insertBatch takes inserts only; its work ran a statement of kind ${kind}`);
    this.name = 'NotAnInsertError';
  }
}

/**
 * A Kysely for SQLite whose statements are compiled as SQLite's and kept in `into` instead of run:
 * the repositories write through it unchanged, and the batch goes to the writer thread in one
 * message. Only inserts whose answer nobody reads are taken; anything else throws, since its
 * answer (always empty here) would be a lie.
 */
export function recordingInserts(
  into: BatchStatement[],
  kindOf: (query: CompiledQuery) => string,
): Kysely<Database> {
  const connection: DatabaseConnection = {
    async executeQuery<R>(query: CompiledQuery): Promise<QueryResult<R>> {
      const kind = kindOf(query);
      if (kind !== 'insert') throw new NotAnInsertError(kind);
      into.push({ sql: query.sql, parameters: query.parameters });
      return { rows: [] };
    },
    // biome-ignore lint/correctness/useYield: refuses before the first row
    async *streamQuery() {
      throw new NotAnInsertError('select');
    },
  };
  const driver: Driver = {
    init: async () => {},
    acquireConnection: async () => connection,
    // The writer thread makes the batch one transaction; work asking for its own is not an insert.
    beginTransaction: async () => {
      throw new NotAnInsertError('transaction');
    },
    commitTransaction: async () => {},
    rollbackTransaction: async () => {},
    releaseConnection: async () => {},
    destroy: async () => {},
  };
  return new Kysely<Database>({
    dialect: {
      createAdapter: () => new SqliteAdapter(),
      createDriver: () => driver,
      createIntrospector: (db) => new SqliteIntrospector(db),
      createQueryCompiler: () => new SqliteQueryCompiler(),
    },
  });
}
