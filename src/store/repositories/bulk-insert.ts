import { CompiledQuery, type Insertable, InsertQueryNode, type Kysely, TableNode } from 'kysely';
import type { Dialect } from '../connect.js';
import type { Database } from '../schema.js';

const insertInto = (table: string) => InsertQueryNode.create(TableNode.create(table));

/** The SQL of a full statement of each shape (dialect, table, columns, rows), built once per process. */
const statementsByShape = new Map<string, string>();

/**
 * Writes `rows` in multi-row INSERTs of `rowsPerStatement` rows, each row's `columns` in order (a
 * value left undefined is written as NULL, not as the column's default: list only the columns
 * every row sets).
 *
 * Kysely builds an operation node for every value and compiles the whole tree again for every
 * statement: for an import of 100,000 users that is millions of nodes to build, walk and collect
 * (15-19 % of such an import's CPU on SQLite, measured against the builder's way: docs/performance-log.md).
 * Here Kysely compiles a full statement of each shape once, and each statement after that is only
 * its parameters. The SQL is the dialect's own, as Kysely writes it; a last, shorter statement is
 * compiled as usual.
 */
export async function insertRows<T extends keyof Database & string>(
  db: Kysely<Database>,
  dialect: Dialect,
  table: T,
  columns: readonly (keyof Insertable<Database[T]> & string)[],
  rows: readonly Insertable<Database[T]>[],
  rowsPerStatement: number,
): Promise<void> {
  for (let start = 0; start < rows.length; start += rowsPerStatement) {
    const end = Math.min(rows.length, start + rowsPerStatement);
    // Filled by push, not preallocated: `new Array(n)` stays holey however it is filled, and V8
    // copies a holey array to another thread (SQLite's writer) element by element, keys and all.
    const parameters: unknown[] = [];
    for (let index = start; index < end; index += 1) {
      const row = rows[index] as Record<string, unknown>;
      for (const column of columns) parameters.push(row[column] ?? null);
    }
    const sql =
      end - start === rowsPerStatement
        ? statementOf(db, dialect, table, columns, rowsPerStatement)
        : compileInsert(db, table, columns, end - start);
    // Not `CompiledQuery.raw(sql, parameters)`: it freezes the array, and V8 copies a frozen array
    // to another thread element by element, 2.5-3 times slower than a plain one. An insert's node,
    // not a raw one, so that it counts as an insert wherever statements are told apart by kind (the
    // metrics; a statement it is joined into, statement-recorder.ts).
    await db.executeQuery({ ...CompiledQuery.raw(sql), parameters, query: insertInto(table) });
  }
}

function statementOf(
  db: Kysely<Database>,
  dialect: Dialect,
  table: string,
  columns: readonly string[],
  rows: number,
): string {
  const shape = `${dialect}\0${table}\0${columns.join(',')}\0${rows}`;
  let sql = statementsByShape.get(shape);
  if (sql === undefined) {
    sql = compileInsert(db, table, columns, rows);
    statementsByShape.set(shape, sql);
  }
  return sql;
}

function compileInsert(
  db: Kysely<Database>,
  table: string,
  columns: readonly string[],
  rows: number,
): string {
  const row = Object.fromEntries(columns.map((column) => [column, null]));
  const compiled = db
    .insertInto(table as keyof Database)
    .values(Array.from({ length: rows }, () => row) as never)
    .compile();
  // Every value a parameter, row after row and column after column: the order filled above.
  if (compiled.parameters.length !== rows * columns.length) {
    throw new Error(
      `a ${rows}-row insert into ${table} compiled to ${compiled.parameters.length} parameters`,
    );
  }
  return compiled.sql;
}

/**
 * True when `Listed` names every column of `Table` but those in `Defaulted`; a column added to a
 * table without being added to its list of bulk-insert columns fails to compile where it is used.
 */
export type ListsEveryColumn<Table, Listed extends readonly (keyof Table)[], Defaulted = never> = [
  Exclude<keyof Table, Listed[number] | Defaulted>,
] extends [never]
  ? true
  : false;
