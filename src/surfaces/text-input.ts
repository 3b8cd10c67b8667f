import type { FastifyInstance } from 'fastify';
import { isUnstorableText } from '../core/unicode-text.js';
import { GatehouseError } from '../errors.js';

/** Parsed JSON, a query or parameters object (null-prototype ones too); not a stream or a buffer. */
const isPlain = (value: object): boolean => {
  const prototype: unknown = Object.getPrototypeOf(value);
  return Array.isArray(value) || prototype === null || Object.getPrototypeOf(prototype) === null;
};

const isEmpty = (value: object): boolean => {
  for (const _key in value) return false;
  return true;
};

/**
 * Where a string (or an object key) inside `value` holds a NUL or a lone surrogate: `body/name`,
 * or undefined. Iterative, so a deeply nested body cannot exhaust the stack.
 */
export function unstorableTextAt(value: unknown, where: string): string | undefined {
  // Most requests have no body, no query and no parameters: answered without allocating.
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'string') return isUnstorableText(value) ? where : undefined;
  if (typeof value === 'object' && isEmpty(value)) return undefined;
  const pending: Array<[unknown, string]> = [[value, where]];
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    const [item, path] = next;
    if (typeof item === 'string') {
      if (isUnstorableText(item)) return path;
    } else if (item !== null && typeof item === 'object' && isPlain(item)) {
      for (const [key, child] of Object.entries(item)) {
        const childPath = `${path}/${key.slice(0, 64)}`;
        if (isUnstorableText(key)) return childPath;
        pending.push([child, childPath]);
      }
    }
  }
  return undefined;
}

/**
 * Refuses text no store keeps faithfully: PostgreSQL cannot hold a NUL in text at all (the
 * query fails), and both stores would silently turn a lone surrogate into U+FFFD. No name,
 * description or password needs either. Checked after authentication (credentials first, as
 * everywhere) and before validation, so both stores answer the same 400 naming the field.
 */
export function refuseUnstorableText(app: FastifyInstance): void {
  app.addHook('preValidation', (request, _reply, done) => {
    const where =
      unstorableTextAt(request.params, 'params') ??
      unstorableTextAt(request.query, 'querystring') ??
      unstorableTextAt(request.body, 'body');
    if (where === undefined) return done();
    done(
      new GatehouseError(
        'VALIDATION_FAILED',
        `${where} holds a NUL character or a broken surrogate pair; send valid Unicode text`,
      ),
    );
  });
}
