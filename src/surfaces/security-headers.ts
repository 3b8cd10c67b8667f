import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { GatehouseError } from '../errors.js';

/**
 * Headers every answer carries, errors included. API answers hold tokens and personal data:
 * never cached, never framed, never sniffed, never loaded by another site's page as a script or
 * image (Cross-Origin-Resource-Policy). /docs needs its own scripts, so the strict CSP stays off it.
 * Over HTTPS (served, or reported by a trusted proxy) browsers are told to use nothing else:
 * Strict-Transport-Security over plain HTTP would be ignored, so it is sent only there.
 */
export function setSecurityHeaders(request: FastifyRequest, reply: FastifyReply): void {
  for (const [name, value] of EVERY_ANSWER) reply.header(name, value);
  // Not a security header, but one every answer carries too: what to quote to the operator.
  reply.header('X-Request-Id', request.id);
  if (request.protocol === 'https') reply.header('Strict-Transport-Security', 'max-age=31536000');
  if (!request.url.startsWith('/docs')) {
    reply.header(...API_CSP);
    if (!reply.hasHeader('Cache-Control')) reply.header('Cache-Control', 'no-store');
  }
}

const EVERY_ANSWER = [
  ['X-Content-Type-Options', 'nosniff'],
  ['X-Frame-Options', 'DENY'],
  ['Referrer-Policy', 'no-referrer'],
  ['Cross-Origin-Resource-Policy', 'same-origin'],
] as const;
const API_CSP = ['Content-Security-Policy', "default-src 'none'; frame-ancestors 'none'"] as const;

/** The headers of an API answer, as lines of a response written straight to a socket. */
export const API_SECURITY_HEADER_LINES = [...EVERY_ANSWER, API_CSP, ['Cache-Control', 'no-store']]
  .map(([name, value]) => `${name}: ${value}\r\n`)
  .join('');

/**
 * Adds the headers to every answer, and ends its connection (`Connection: close`) when the process
 * is shutting down, so that the client opens its next request elsewhere, where one kept alive may
 * be closed under it by the drain (found by review: an answer sent during the drain said
 * keep-alive, and its connection was closed 2 ms later); or when the connection has served
 * `maxAgeMs` (0: never) since its first answer, so that clients that keep their connections
 * spread again over the workers and nodes (GATEHOUSE_CONNECTION_MAX_AGE).
 *
 * Node closes a connection after the answer that says so, and drops the answers of requests
 * pipelined behind it, which had been processed all the same (found by review). So only the
 * answer to the last request received so far on the connection closes it (answers go out in the
 * order of their requests: those before it are sent first), and a request received after that
 * answer is refused unprocessed (RFC 9112 9.6), for its client to send again on a new connection.
 */
export function addSecurityHeaders(
  app: FastifyInstance,
  shuttingDown: () => boolean,
  maxAgeMs: number,
): void {
  // Callback hooks, not async ones: they run on every request, and a promise each costs.
  app.addHook('onRequest', (request, _reply, done) => {
    const connection = request.raw.socket as ConnectionFacts;
    const received = (connection[RECEIVED] ?? 0) + 1;
    connection[RECEIVED] = received;
    (request.raw as ReceivedRequest)[POSITION] = received;
    if (connection[CLOSING]) done(new GatehouseError('CONNECTION_CLOSING'));
    else done();
  });
  app.addHook('onSend', (request, reply, payload, done) => {
    setSecurityHeaders(request, reply);
    const connection = request.raw.socket as ConnectionFacts;
    const now = performance.now();
    connection[FIRST_ANSWER_AT] ??= now;
    if (
      (shuttingDown() || (maxAgeMs > 0 && now - connection[FIRST_ANSWER_AT] >= maxAgeMs)) &&
      (request.raw as ReceivedRequest)[POSITION] === connection[RECEIVED]
    ) {
      reply.header('Connection', 'close');
      connection[CLOSING] = true;
    }
    done(null, payload);
  });
}

const FIRST_ANSWER_AT = Symbol('gatehouse.firstAnswerAt');
const RECEIVED = Symbol('gatehouse.requestsReceived');
const CLOSING = Symbol('gatehouse.closing');
const POSITION = Symbol('gatehouse.positionOnConnection');

/**
 * What the hooks keep on a connection's socket: when it first answered, how many requests it has
 * brought, and whether an answer on it said `Connection: close`.
 */
interface ConnectionFacts {
  [FIRST_ANSWER_AT]?: number;
  [RECEIVED]?: number;
  [CLOSING]?: boolean;
}

/** A request, with its place among those its connection brought. */
interface ReceivedRequest {
  [POSITION]?: number;
}
