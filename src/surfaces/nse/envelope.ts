import { type TProperties, type TSchema, Type } from 'typebox';
import { type Listed, MAX_PAGE_SIZE } from '../../core/listing.js';
import type { GatehouseError } from '../../errors.js';
import { StringEnum } from '../schema-helpers.js';

/** The NSE envelope: `{status:{user_message, verbose_message, code}, result:{...}}`, on success and on error. */
const Status = Type.Object({
  user_message: Type.String(),
  verbose_message: Type.String(),
  code: Type.Integer(),
});

export const NseErrorBody = Type.Object(
  {
    status: Status,
    result: Type.Object({
      total_records: Type.Integer(),
      records: Type.Array(Type.Never(), { maxItems: 0 }),
    }),
  },
  { $id: 'NseError', description: 'Error in the NSE envelope' },
);

export const RecordEnvelope = (record: TSchema) =>
  Type.Object({
    status: Status,
    result: Type.Object({
      total_records: Type.Integer(),
      returned_records: Type.Optional(Type.Integer()),
      records: Type.Array(record),
    }),
  });

export const ListEnvelope = (record: TSchema) =>
  Type.Object({
    status: Status,
    result: Type.Object({
      returned_records: Type.Integer(),
      total_records: Type.Integer(),
      sort_by: Type.String(),
      order_by: Type.String(),
      offset: Type.Integer(),
      limit: Type.Integer(),
      records: Type.Array(record),
    }),
  });

export const listQuerySchema = <K extends string, E extends TProperties = Record<never, never>>(
  sortKeys: readonly K[],
  extra?: E,
) =>
  Type.Object({
    offset: Type.Integer({ minimum: 0, maximum: 2_147_483_647, default: 0, description: 'Records to skip' }),
    limit: Type.Integer({
      minimum: 1,
      maximum: MAX_PAGE_SIZE,
      default: MAX_PAGE_SIZE,
      description: 'Records to return',
    }),
    sort_by: StringEnum(sortKeys, { default: 'created' as K, description: 'Attribute to sort by' }),
    order_by: StringEnum(['asc', 'desc'] as const, { default: 'desc', description: 'Sort order' }),
    ...(extra as E),
  });

export interface ListQueryParams<K extends string> {
  offset: number;
  limit: number;
  sort_by: K;
  order_by: 'asc' | 'desc';
}

export const toListQuery = <K extends string>(q: ListQueryParams<K>) => ({
  offset: q.offset,
  limit: q.limit,
  sortBy: q.sort_by,
  order: q.order_by,
});

export function recordsMessage(count: number): string {
  return `Okay. Returned ${count} record${count === 1 ? '' : 's'}.`;
}

export function ok(code: number, userMessage: string) {
  return { user_message: userMessage, verbose_message: '', code };
}

/**
 * One record, as the sign-in, create, change and get-by-id answers carry it. The reference's
 * examples show `returned_records` in some of these and `total_records` in others: both, so that a
 * client reading either finds it.
 */
export function single<T>(record: T, userMessage = recordsMessage(1), code = 200) {
  return {
    status: ok(code, userMessage),
    result: { returned_records: 1, total_records: 1, records: [record] },
  };
}

export function listed<T, K extends string>(list: Listed<T, K>) {
  return {
    status: ok(200, recordsMessage(list.records.length)),
    result: {
      returned_records: list.records.length,
      total_records: list.total,
      sort_by: list.sortBy,
      order_by: list.order,
      offset: list.offset,
      limit: list.limit,
      records: list.records,
    },
  };
}

/** An error in the envelope: `verbose_message` carries the code and what was wrong. */
export function errorBody(failure: GatehouseError) {
  return {
    status: {
      user_message: failure.userMessage,
      verbose_message: failure.detail ? `${failure.code}: ${failure.detail}` : failure.code,
      code: failure.status,
    },
    result: { total_records: 0, records: [] as never[] },
  };
}

/** Shared by every NSE route: the error answers they document, and the credentials they take. */
export const NSE_ERRORS = { '4xx': NseErrorBody, '5xx': NseErrorBody };
export const NSE_SECURITY: Record<string, string[]>[] = [{ bearer: [] }, { basic: [] }];
