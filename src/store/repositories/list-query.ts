import type { OrderByItemBuilder } from 'kysely';

/** What every paged, sorted list in the store takes. Core validates the fields before. */
export interface PageRequest<SortKey extends string> {
  readonly offset: number;
  readonly limit: number;
  readonly sortBy: SortKey;
  readonly order: 'asc' | 'desc';
}

export interface Page<Row> {
  readonly rows: Row[];
  readonly total: number;
}

type NullOrdering = (item: OrderByItemBuilder) => OrderByItemBuilder;

/**
 * SQLite puts NULLs first in ascending order and PostgreSQL last: naming the place makes both
 * stores list alike. "Never" (never seen, never used) sorts as the lowest value...
 */
export const nullsLowest =
  (order: 'asc' | 'desc'): NullOrdering =>
  (item) =>
    order === 'asc' ? item.asc().nullsFirst() : item.desc().nullsLast();

/** ...and "no limit" (never expires) as the highest. */
export const nullsHighest =
  (order: 'asc' | 'desc'): NullOrdering =>
  (item) =>
    order === 'asc' ? item.asc().nullsLast() : item.desc().nullsFirst();

/**
 * A long list of values to bind, in parts of at most `size`: SQLite binds at most 32,766 values in
 * a statement (PostgreSQL 65,535), and a value may be bound more than once.
 */
export function* inParts<T>(values: readonly T[], size = 1000): Generator<readonly T[]> {
  for (let at = 0; at < values.length; at += size) yield values.slice(at, at + size);
}
