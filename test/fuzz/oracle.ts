import { Ajv, type ValidateFunction } from 'ajv';
import type { LightMyRequestResponse } from 'fastify';
import { ERROR_CODES } from '../../src/errors.js';
import type { JsonSchema, Operation } from './generate.js';

/** Lines of a stack trace, source paths, dependency paths: never in an answer. */
const STACK_TRACE =
  /\n\s+at |\bat (async )?[\w$.<>[\]]+ \(|node_modules|\/src\/|file:\/\/\/(?!etc)|\.[cm]?[jt]s:\d+:\d+|\b(TypeError|ReferenceError|RangeError|SyntaxError)\b/;
/** What SQLite, PostgreSQL and their drivers say: never in an answer. */
const DRIVER_TEXT =
  /SQLITE_[A-Z]|SqliteError|no such (table|column)|syntax error at or near|relation "[^"]*" does not exist|violates (unique|foreign key|not-null|check) constraint|duplicate key value|invalid input syntax for|DatabaseError|kysely/i;

const OPS_SHAPES: Record<string, (body: Record<string, unknown>) => boolean> = {
  '/healthz': (body) => typeof body.status === 'string',
  '/readyz': (body) => typeof body.status === 'string',
  '/.well-known/jwks.json': (body) => Array.isArray(body.keys),
};

/** Operations answers in a text format, not JSON: its content type and how the body starts. */
const TEXT_ANSWERS: Record<string, { contentType: RegExp; body: RegExp }> = {
  '/metrics': { contentType: /^text\/plain; version=0\.0\.4\b/, body: /^# (HELP|TYPE) gatehouse_/ },
};

export type Surface = 'nse' | 'storware' | 'ops';

/** Which renderer must have answered: by path, as the app routes it. */
export function surfaceOf(url: string, status: number): Surface {
  // The router ignores one trailing slash.
  const path = (url.split('?')[0] ?? url).replace(/(.)\/$/, '$1');
  if (path === '/api/session' || path.startsWith('/api/session/')) return 'storware';
  if (OPS_SHAPES[path] && status < 400) return 'ops';
  return 'nse';
}

/** Whether the URL still names the operation (a mutated path may name another route, or none). */
export function routesTo(url: string, operation: Operation): boolean {
  const path = url.split('?')[0] ?? url;
  const pattern = operation.path
    .split(/\{[^}]+\}/)
    .map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
    .join('[^/]+');
  return new RegExp(`^${pattern}/?$`).test(path);
}

/** Statuses a Storware error may have besides the registry's own (live Storware answers 400 there). */
const STORWARE_LOGIN_FAILURES = new Set(['INVALID_CREDENTIALS', 'INVALID_API_TOKEN']);

const isObject = (value: unknown): value is Record<string, unknown> =>
  value !== null && typeof value === 'object' && !Array.isArray(value);

/**
 * Checks one answer against what every answer must be. Returns the problems found (empty: fine).
 */
export class Oracle {
  readonly #ajv = new Ajv({ strict: false, allErrors: false, validateFormats: false });
  readonly #validators = new Map<JsonSchema, ValidateFunction>();

  check(
    request: { method: string; url: string; operation: Operation | undefined; secrets: readonly string[] },
    response: LightMyRequestResponse,
  ): string[] {
    const problems: string[] = [];
    const status = response.statusCode;
    const body = response.body;
    if (status >= 500) problems.push(`answered ${status}`);
    if (STACK_TRACE.test(body)) problems.push(`a stack trace or source path: ${STACK_TRACE.exec(body)?.[0]}`);
    if (DRIVER_TEXT.test(body)) problems.push(`database text: ${DRIVER_TEXT.exec(body)?.[0]}`);
    const headerText = Object.entries(response.headers)
      .map(([name, value]) => `${name}: ${String(value)}`)
      .join('\n');
    for (const secret of request.secrets) {
      if (body.includes(secret))
        problems.push(`a secret sent in the request comes back in the body (${secret})`);
      if (headerText.includes(secret))
        problems.push(`a secret sent in the request comes back in a header (${secret})`);
    }
    if (response.headers['x-content-type-options'] !== 'nosniff') problems.push('no security headers');

    const noBody = request.method === 'HEAD' || status === 204 || status === 304;
    if (noBody) {
      if (body !== '') problems.push(`a ${status} to ${request.method} with a body`);
      return problems;
    }
    const surface = surfaceOf(request.url, status);
    if (body === '') {
      // Storware's session POSTs (logout) answer 200/201 with no body, as the reference shows.
      if (!(surface === 'storware' && status < 300)) problems.push(`an empty ${status} body`);
      return problems;
    }
    const text = TEXT_ANSWERS[(request.url.split('?')[0] ?? '').replace(/(.)\/$/, '$1')];
    if (text && status < 400) {
      if (!text.contentType.test(String(response.headers['content-type']))) {
        problems.push(`content type ${String(response.headers['content-type'])}`);
      }
      if (!text.body.test(body)) problems.push('not the text format of the operation');
      return problems;
    }
    if (!/^application\/json\b/.test(String(response.headers['content-type']))) {
      problems.push(`content type ${String(response.headers['content-type'])}`);
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(body);
    } catch {
      problems.push('the body is not JSON');
      return problems;
    }
    problems.push(...this.#envelope(surface, request.url, status, parsed));
    if (request.operation && request.method === request.operation.method) {
      problems.push(...this.#documented(request.operation, status, parsed));
    }
    return problems;
  }

  #envelope(surface: Surface, url: string, status: number, body: unknown): string[] {
    if (!isObject(body)) return ['the body is not a JSON object'];
    if (surface === 'ops') {
      const shape = OPS_SHAPES[(url.split('?')[0] ?? '').replace(/(.)\/$/, '$1')];
      return shape?.(body) ? [] : ['not the shape of the operations answer'];
    }
    if (surface === 'storware') {
      if (status < 400) return [];
      const keys = Object.keys(body).sort().join(',');
      if (keys !== 'errorCode,message') return [`a Storware error with keys ${keys}`];
      const code = String(body.errorCode);
      const registered = ERROR_CODES[code as keyof typeof ERROR_CODES];
      if (!registered) return [`an unregistered error code ${code}`];
      const expected = STORWARE_LOGIN_FAILURES.has(code) ? 400 : registered.status;
      if (expected !== status) return [`${code} answered ${status}, registered as ${expected}`];
      if (typeof body.message !== 'string' || body.message === '')
        return ['a Storware error without a message'];
      return [];
    }
    const envelope = body.status;
    const result = body.result;
    if (!isObject(envelope) || !isObject(result)) return ['not in the NSE envelope'];
    const problems: string[] = [];
    if (envelope.code !== status) problems.push(`status.code ${String(envelope.code)} on a ${status}`);
    if (typeof envelope.user_message !== 'string' || envelope.user_message === '') {
      problems.push('no status.user_message');
    }
    if (typeof envelope.verbose_message !== 'string') problems.push('no status.verbose_message');
    if (typeof result.total_records !== 'number' || !Array.isArray(result.records)) {
      problems.push('result without total_records and records');
    }
    if (status >= 400) {
      if (result.total_records !== 0 || (Array.isArray(result.records) && result.records.length > 0)) {
        problems.push('an error with records');
      }
      const code = String(envelope.verbose_message).split(':')[0] ?? '';
      const registered = ERROR_CODES[code as keyof typeof ERROR_CODES];
      if (!registered) problems.push(`an unregistered error code "${code.slice(0, 60)}"`);
      else if (registered.status !== status)
        problems.push(`${code} answered ${status}, registered as ${registered.status}`);
    }
    return problems;
  }

  /** The status is one the operation documents, and the body matches the documented schema. */
  #documented(operation: Operation, status: number, body: unknown): string[] {
    const key = [String(status), `${String(status)[0]}XX`, 'default'].find((k) => k in operation.responses);
    // 405 (another method on a known path) and 404 (a bad parameter) are answered by the router.
    if (key === undefined) return status === 404 || status === 405 ? [] : [`undocumented status ${status}`];
    const schema = operation.responses[key];
    if (!schema) return [];
    let validate = this.#validators.get(schema);
    if (!validate) {
      validate = this.#ajv.compile(schema);
      this.#validators.set(schema, validate);
    }
    if (validate(body)) return [];
    const first = validate.errors?.[0];
    return [`the body does not match the documented ${key} schema: ${first?.instancePath} ${first?.message}`];
  }
}
