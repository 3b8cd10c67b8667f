import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

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
 * Adds the headers to every answer, and ends its connection (`Connection: close`, which the client
 * reads before it sends again: no request is lost) when the process is shutting down, so that the
 * client opens its next request elsewhere, where one kept alive may be closed under it by the
 * drain (found by review: an answer sent during the drain said keep-alive, and its connection was
 * closed 2 ms later); or when the connection has served `maxAgeMs` (0: never) since its first
 * answer, so that clients that keep their connections spread again over the workers and nodes
 * (GATEHOUSE_CONNECTION_MAX_AGE).
 */
export function addSecurityHeaders(
  app: FastifyInstance,
  shuttingDown: () => boolean,
  maxAgeMs: number,
): void {
  // A callback hook, not an async one: it runs on every answer, and a promise per answer costs.
  app.addHook('onSend', (request, reply, payload, done) => {
    setSecurityHeaders(request, reply);
    if (shuttingDown() || (maxAgeMs > 0 && servedFor(request.raw.socket) >= maxAgeMs))
      reply.header('Connection', 'close');
    done(null, payload);
  });
}

const FIRST_ANSWER_AT = Symbol('gatehouse.firstAnswerAt');

/** How long a connection has served since its first answer, in milliseconds. */
function servedFor(socket: object): number {
  const now = performance.now();
  const held = socket as { [FIRST_ANSWER_AT]?: number };
  held[FIRST_ANSWER_AT] ??= now;
  return now - held[FIRST_ANSWER_AT];
}
