import { type TSchema, Type } from 'typebox';

/** `type: [T, "null"]` keeps fast-json-stringify on its fast path (no anyOf). */
export const NullableString = (options: { description?: string } = {}) =>
  Type.Unsafe<string | null>({ type: ['string', 'null'], ...options });

export const NullableInteger = (options: { description?: string } = {}) =>
  Type.Unsafe<number | null>({ type: ['integer', 'null'], ...options });

/** A string enum with a `type`, so that validators coerce and messages list the values. */
export const StringEnum = <T extends string>(
  values: readonly T[],
  options: { default?: T; description?: string } = {},
) => Type.Unsafe<T>({ type: 'string', enum: [...values], ...options });

export type { TSchema };
