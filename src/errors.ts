/**
 * The one registry of error codes. Core throws `GatehouseError(code, detail)`; each surface has a
 * single renderer that turns any error into its own body. Every code here is documented in
 * docs/errors.md, and test/errors-registry.test.ts keeps the two in step.
 */
export const ERROR_CODES = {
  MALFORMED_REQUEST: { status: 400, message: 'The request is not valid HTTP.' },
  VALIDATION_FAILED: { status: 400, message: 'The request is not valid.' },
  MALFORMED_JSON: { status: 400, message: 'The request body is not valid JSON.' },
  REQUEST_TIMEOUT: { status: 408, message: 'The request did not arrive in time.' },
  BODY_TOO_LARGE: { status: 413, message: 'The request body is too large.' },
  HEADERS_TOO_LARGE: { status: 431, message: 'The request headers are too large.' },
  UNSUPPORTED_MEDIA_TYPE: {
    status: 415,
    message: 'The request body is of a content type this endpoint does not take.',
  },
  AUTHENTICATION_REQUIRED: { status: 401, message: 'Authentication is required.' },
  INVALID_CREDENTIALS: { status: 401, message: 'The username or password is incorrect.' },
  INVALID_API_TOKEN: { status: 401, message: 'The token is not valid.' },
  TOKEN_INVALID: { status: 401, message: 'The token is not valid.' },
  TOKEN_EXPIRED: { status: 401, message: 'The token has expired.' },
  SESSION_ENDED: { status: 401, message: 'The session has ended. Sign in again.' },
  NODE_VERSION_UNSUPPORTED: { status: 400, message: 'This node version is not supported.' },
  PASSWORD_POLICY: { status: 400, message: 'The new password does not meet the password policy.' },
  FORBIDDEN: { status: 403, message: 'You are not allowed to do this.' },
  CROSS_SITE_REQUEST: {
    status: 403,
    message: 'The request came from a page of another site and was refused.',
  },
  NOT_FOUND: { status: 404, message: 'The resource was not found.' },
  ROUTE_NOT_FOUND: { status: 404, message: 'There is no such endpoint.' },
  METHOD_NOT_ALLOWED: { status: 405, message: 'This method is not allowed on this endpoint.' },
  ALREADY_EXISTS: { status: 409, message: 'A resource with this name already exists.' },
  IDEMPOTENCY_KEY_REUSED: {
    status: 409,
    message: 'This Idempotency-Key was already used for another request.',
  },
  CHANGED_MEANWHILE: {
    status: 409,
    message: 'Something this request refers to was changed or deleted while it was being made. Try again.',
  },
  API_TOKEN_LIMIT: {
    status: 409,
    message: 'The user holds as many API tokens as allowed. Revoke one before creating another.',
  },
  PRECONDITION_FAILED: { status: 412, message: 'A precondition of this request was not met.' },
  TOO_MANY_REQUESTS: {
    status: 429,
    message: 'Too many requests from this address. Try again later.',
  },
  STORE_UNAVAILABLE: { status: 503, message: 'The service is temporarily unavailable. Try again shortly.' },
  SERVICE_BUSY: { status: 503, message: 'The service is busy checking passwords. Try again shortly.' },
  CLIENT_CLOSED_REQUEST: { status: 499, message: 'The client closed the connection before the answer.' },
  CONNECTION_CLOSING: {
    status: 503,
    message: 'This connection is closing. Send the request again on a new one.',
  },
  INTERNAL_ERROR: { status: 500, message: 'An internal error occurred.' },
} as const satisfies Record<string, { status: number; message: string }>;

export type ErrorCode = keyof typeof ERROR_CODES;

export class GatehouseError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  /** Safe to show to the caller: names what was wrong, never a secret. */
  readonly detail: string;
  /** Extra response headers the error implies (Allow, Retry-After...). */
  readonly headers: Readonly<Record<string, string>>;

  constructor(code: ErrorCode, detail = '', headers: Record<string, string> = {}) {
    super(detail ? `${code}: ${detail}` : code);
    this.name = 'GatehouseError';
    this.code = code;
    this.status = ERROR_CODES[code].status;
    this.detail = detail;
    this.headers = headers;
  }

  get userMessage(): string {
    return ERROR_CODES[this.code].message;
  }
}

export function isGatehouseError(error: unknown): error is GatehouseError {
  return error instanceof GatehouseError;
}
