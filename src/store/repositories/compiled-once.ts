import { type Compilable, CompiledQuery, type RootOperationNode } from 'kysely';

/**
 * A value a statement is built with once, in place of the real one: where it lands in the compiled
 * parameters says where the real value goes on every call. `key` names that value.
 */
class StandIn<K> {
  constructor(readonly key: K) {}
}

/** A stand-in typed as the value it stands for, so that the query builder takes it. */
export const standIn = <T, K = string>(key: K): T => new StandIn(key) as T;

export interface StatementShape<K = string> {
  readonly sql: string;
  /** The statement's operation node: what the metrics and the write recorder read its kind from. */
  readonly node: RootOperationNode;
  /** Per parameter: the key of a real value, or a value compiled into the statement itself. */
  readonly slots: readonly ({ readonly key: K } | { readonly value: unknown })[];
}

/**
 * Compiles a statement built with stand-ins (`standIn`), once. Kysely builds an operation node for
 * every value and compiles the whole tree on each call: for a statement whose shape never changes
 * that is most of its cost outside the database (a sign-in's user lookup: 16 µs on the built
 * code, docs/performance-log.md). The statement must not depend on the values themselves, only on where
 * they go.
 */
export function shapeOf<K = string>(query: Compilable): StatementShape<K> {
  const compiled = query.compile();
  return {
    sql: compiled.sql,
    node: compiled.query,
    slots: compiled.parameters.map((value) =>
      value instanceof StandIn ? { key: value.key as K } : { value },
    ),
  };
}

/**
 * The statement with each stand-in's real value (`valueFor` its key) in its place. A value missing
 * (undefined) throws: PostgreSQL's client would send it as NULL and the statement would quietly
 * match nothing.
 */
export function withValues<K>(shape: StatementShape<K>, valueFor: (key: K) => unknown): CompiledQuery {
  const parameters: unknown[] = [];
  for (const slot of shape.slots) {
    const value = 'key' in slot ? valueFor(slot.key) : slot.value;
    if (value === undefined) throw new Error(`a statement compiled once lacks a value: ${shape.sql}`);
    parameters.push(value);
  }
  return { ...CompiledQuery.raw(shape.sql), parameters, query: shape.node };
}
