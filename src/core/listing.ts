/** Paging as the NSE lists take it; the route schemas bound the values, core passes them on. */
export interface ListQuery<SortKey extends string> {
  readonly offset: number;
  readonly limit: number;
  readonly sortBy: SortKey;
  readonly order: 'asc' | 'desc';
}

export interface Listed<T, SortKey extends string> extends ListQuery<SortKey> {
  readonly records: T[];
  readonly total: number;
}

export const MAX_PAGE_SIZE = 1000;
