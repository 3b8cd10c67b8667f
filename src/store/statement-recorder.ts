import {
  type CompiledQuery,
  type DatabaseConnection,
  type Driver,
  Kysely,
  PostgresAdapter,
  PostgresIntrospector,
  PostgresQueryCompiler,
  type QueryResult,
  SqliteAdapter,
  SqliteIntrospector,
  SqliteQueryCompiler,
} from 'kysely';
import type { Database } from './schema.js';

/** What a statement of a kind the recorder does not take meets (`Store.insertBatch`, `Store.writeTogether`). */
export class UnrecordedStatementError extends Error {
  constructor(taken: string, kind: string) {
    super(`this work may run ${taken} only; it ran a statement of kind ${kind}`);
    this.name = 'UnrecordedStatementError';
  }
}

/**
 * A Kysely whose statements are compiled for `dialect` and kept in `into` instead of run: the
 * repositories write through it unchanged, and the caller sends what they wrote at once. Only
 * writes whose answer nobody reads may be recorded, of the kinds `taken` lists; anything else
 * throws, since its answer (always empty here) would be a lie. A transaction of its own is refused
 * too: the caller makes the recorded statements one. With `updatesChangeARow`, an update answers
 * that it changed one row: a guard (`asGuardedStatement`), whose real answer the statement gives.
 */
export function recordingStatements(
  dialect: 'sqlite' | 'postgres',
  into: CompiledQuery[],
  kindOf: (query: CompiledQuery) => string,
  taken: ReadonlySet<string>,
  options: { readonly updatesChangeARow?: boolean } = {},
): Kysely<Database> {
  const takenList = [...taken].join(', ');
  const connection: DatabaseConnection = {
    async executeQuery<R>(query: CompiledQuery): Promise<QueryResult<R>> {
      const kind = kindOf(query);
      if (!taken.has(kind)) throw new UnrecordedStatementError(takenList, kind);
      into.push(query);
      // A guard's answer (`asGuardedStatement`): taken as holding; the statement finds out.
      return options.updatesChangeARow && kind === 'update'
        ? { rows: [], numAffectedRows: 1n }
        : { rows: [] };
    },
    // biome-ignore lint/correctness/useYield: refuses before the first row
    async *streamQuery() {
      throw new UnrecordedStatementError(takenList, 'select');
    },
  };
  const driver: Driver = {
    init: async () => {},
    acquireConnection: async () => connection,
    beginTransaction: async () => {
      throw new UnrecordedStatementError(takenList, 'transaction');
    },
    commitTransaction: async () => {},
    rollbackTransaction: async () => {},
    releaseConnection: async () => {},
    destroy: async () => {},
  };
  const postgres = dialect === 'postgres';
  return new Kysely<Database>({
    dialect: {
      createAdapter: () => (postgres ? new PostgresAdapter() : new SqliteAdapter()),
      createDriver: () => driver,
      createIntrospector: (db) => (postgres ? new PostgresIntrospector(db) : new SqliteIntrospector(db)),
      createQueryCompiler: () => (postgres ? new PostgresQueryCompiler() : new SqliteQueryCompiler()),
    },
  });
}

/** The table an insert, update or delete compiled by Kysely writes. */
const WRITTEN_TABLE = /^\s*(?:insert\s+into|update|delete\s+from)\s+"([^"]+)"/i;
const PLACEHOLDER = /\$(\d+)/g;

/** The statements' SQL, checked as `asOneStatement` says, with their parameters numbered as one list. */
function renumbered(statements: readonly CompiledQuery[]): { parts: string[]; parameters: unknown[] } {
  const tables = new Set<string>();
  const parameters: unknown[] = [];
  const parts = statements.map((statement) => {
    const table = WRITTEN_TABLE.exec(statement.sql)?.[1];
    if (table === undefined) throw new Error(`not a write of one table: ${statement.sql.slice(0, 60)}`);
    if (tables.has(table)) throw new Error(`two writes of "${table}" cannot be one statement`);
    tables.add(table);
    if (statement.sql.includes("'")) throw new Error(`a literal in "${statement.sql.slice(0, 60)}"`);
    const offset = parameters.length;
    let highest = 0;
    const sql = statement.sql.replace(PLACEHOLDER, (_, index: string) => {
      highest = Math.max(highest, Number(index));
      return `$${Number(index) + offset}`;
    });
    if (highest !== statement.parameters.length) {
      throw new Error(`${statement.parameters.length} parameters for placeholders up to $${highest}`);
    }
    parameters.push(...statement.parameters);
    return sql;
  });
  return { parts, parameters };
}

/**
 * PostgreSQL writes as one statement: every one but the last a data-modifying WITH clause, which
 * PostgreSQL runs exactly once, to completion, whether or not anything reads it. One statement is
 * one round trip and commits by itself, where a transaction of the same writes costs a round trip
 * for each and two more for BEGIN and COMMIT. All the clauses see the tables as they were before
 * the statement: no two of the writes may touch the same table (an update would not see a row
 * inserted beside it, and two updates of a row keep only one), so that is refused, as is a
 * statement with a literal in it, whose `$` the renumbering could mistake for a parameter.
 */
export function asOneStatement(statements: readonly CompiledQuery[]): CompiledQuery {
  const last = statements.at(-1);
  if (last === undefined) throw new Error('no statements to join');
  if (statements.length === 1) return last;
  const { parts, parameters } = renumbered(statements);
  const clauses = parts.slice(0, -1).map((sql, index) => `w${index} as (${sql})`);
  return {
    // The last statement's node: the statement is timed and counted as its kind.
    query: last.query,
    queryId: last.queryId,
    sql: `with ${clauses.join(', ')} ${parts.at(-1)}`,
    parameters,
  };
}

/** An update of one table with a `where` clause (`SUBQUERY_OR_ANSWER` refuses a second one). */
const PLAIN_UPDATE = /^\s*update\s+"[^"]+"\s+set\s[\s\S]*?\swhere\s[\s\S]+$/i;
/** An insert of one row of parameters: its head (table and columns) and its values. */
const ONE_ROW_INSERT =
  /^(\s*insert\s+into\s+"[^"]+"\s*\([^()]*\))\s*values\s*\(((?:\s*\$\d+\s*,)*\s*\$\d+\s*)\)\s*$/i;
const SUBQUERY_OR_ANSWER = /\b(?:select|returning|where\s[\s\S]*\swhere)\b/i;

/**
 * PostgreSQL writes as one statement, as `asOneStatement`, whose first write, an update, is a
 * guard: every write after it, each a one-row insert, is made only if the guard changed a row, and
 * the statement answers `guarded`, the number of rows the guard changed: 0, and nothing was written.
 *
 * What makes it a guard: an update that finds its row locked by another transaction waits, then
 * checks its condition again on the row as that transaction left it (READ COMMITTED), and the row
 * stays locked until this statement commits. A change to the row (a password set) thus either
 * commits first, and the guard fails, or waits for everything written here. One guard only: a
 * second update's row could be found changed after the first update was made, and the statement
 * cannot undo it (a transaction can). Only plain shapes are taken, so that the rewriting stays
 * exact: the update with no subquery or `returning`, inserts of one row of parameters (`insert …
 * select $1, … where exists …` types its parameters from the columns as `values` does).
 */
export function asGuardedStatement(statements: readonly CompiledQuery[]): CompiledQuery {
  const last = statements.at(-1);
  if (last === undefined) throw new Error('no statements to join');
  const { parts, parameters } = renumbered(statements);
  const [guard = '', ...writes] = parts;
  if (!PLAIN_UPDATE.test(guard) || SUBQUERY_OR_ANSWER.test(guard)) {
    throw new Error(`the first write of a guarded statement must be a plain update: ${guard.slice(0, 60)}`);
  }
  const clauses = [`w0 as (${guard} returning 1)`];
  writes.forEach((sql, index) => {
    const insert = ONE_ROW_INSERT.exec(sql);
    if (insert?.[1] === undefined || insert[2] === undefined) {
      throw new Error(`after the guard, only one-row inserts: ${sql.slice(0, 60)}`);
    }
    clauses.push(
      `w${index + 1} as (${insert[1]} select ${insert[2].trim()} where exists (select 1 from w0))`,
    );
  });
  return {
    query: last.query,
    queryId: last.queryId,
    sql: `with ${clauses.join(', ')} select count(*)::int as guarded from w0`,
    parameters,
  };
}
