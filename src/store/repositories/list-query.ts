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
