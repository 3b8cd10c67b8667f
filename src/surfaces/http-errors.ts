import type { FastifyError, FastifyRequest } from 'fastify';
import { GatehouseError } from '../errors.js';
import { isForeignKeyViolation, isLastingStoreOutage, isStoreUnavailable } from '../store/connect.js';

interface ValidationIssue {
  instancePath?: string;
  message?: string;
  params?: Record<string, unknown>;
}

/** "body/username must be string", naming the field that failed; never echoes the value. */
function describeValidation(error: FastifyError): string {
  const context = error.validationContext ?? 'request';
  const issues = (error.validation ?? []) as ValidationIssue[];
  const parts = issues.slice(0, 5).map((issue) => {
    const where = `${context}${issue.instancePath ?? ''}`;
    const missing = issue.params?.missingProperty;
    if (typeof missing === 'string') return `${where}/${missing} is required`;
    const allowed = issue.params?.allowedValues;
    if (Array.isArray(allowed)) return `${where} must be one of ${allowed.join(', ')}`;
    return `${where} ${issue.message ?? 'is not valid'}`;
  });
  return parts.join('; ') || 'the request is not valid';
}

/**
 * Turns anything thrown while serving a request into a GatehouseError. The surfaces render the
 * result in their own body; an unexpected error becomes INTERNAL_ERROR with nothing of its
 * message, stack or SQL in the answer (it goes to the log instead).
 */
export function toGatehouseError(error: unknown, request: FastifyRequest): GatehouseError {
  if (error instanceof GatehouseError) return error;
  const fastifyError = error as Partial<FastifyError> | undefined;
  if (fastifyError?.validation) {
    return new GatehouseError('VALIDATION_FAILED', describeValidation(fastifyError as FastifyError));
  }
  switch (fastifyError?.code) {
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new GatehouseError('MALFORMED_JSON', 'the body could not be parsed as JSON');
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new GatehouseError(
        'BODY_TOO_LARGE',
        `the body exceeds the limit of ${request.routeOptions.bodyLimit} bytes`,
      );
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return new GatehouseError('UNSUPPORTED_MEDIA_TYPE', 'send the body as application/json');
  }
  // Prototype-poisoning attempts ("__proto__" keys) are refused by the JSON parser.
  if (error instanceof SyntaxError && /prototype/i.test(error.message)) {
    return new GatehouseError(
      'MALFORMED_JSON',
      'the body contains a forbidden key (__proto__ or constructor)',
    );
  }
  if (
    typeof fastifyError?.statusCode === 'number' &&
    fastifyError.statusCode >= 400 &&
    fastifyError.statusCode < 500
  ) {
    return new GatehouseError('VALIDATION_FAILED', 'the request could not be read');
  }
  // A row checked before the write and deleted by another request before it (a group, a user, a
  // tenant): the write's reference is refused by the database (found by review: 500s, up to 14
  // of 20 such pairs). Nothing was written; asked again, the request finds what is there now.
  if (isForeignKeyViolation(error)) {
    request.log.info({ err: loggable(error) }, 'a row the request refers to was deleted meanwhile');
    return new GatehouseError('CHANGED_MEANWHILE');
  }
  if (isStoreUnavailable(error)) {
    if (isLastingStoreOutage(error)) {
      request.log.error({ err: loggable(error) }, 'store unavailable: it needs an operator');
    } else request.log.warn({ err: loggable(error) }, 'store unavailable');
    return new GatehouseError('STORE_UNAVAILABLE', '', { 'Retry-After': '1' });
  }
  request.log.error({ err: loggable(error) }, 'unexpected error');
  return new GatehouseError('INTERNAL_ERROR', `request ${request.id}`);
}

/** Fields of a PostgreSQL error that quote values: "Failing row contains (...)", a password hash among them. */
const VALUE_FIELDS = ['detail', 'where', 'internalQuery', 'parameters'];

/** An unexpected error as it may be logged: its code, message, table, constraint, stack; no values. */
export function loggable(error: unknown): unknown {
  if (!(error instanceof Error) || !VALUE_FIELDS.some((field) => field in error)) return error;
  const copy = new Error(error.message);
  copy.name = error.name;
  if (error.stack !== undefined) copy.stack = error.stack;
  for (const [field, value] of Object.entries(error)) {
    if (!VALUE_FIELDS.includes(field)) Object.assign(copy, { [field]: value });
  }
  return copy;
}
