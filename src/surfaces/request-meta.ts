import type { FastifyRequest } from 'fastify';
import type { RequestMeta } from '../core/sessions.js';

export function requestMeta(request: FastifyRequest): RequestMeta {
  const agent = request.headers['user-agent'];
  return {
    ip: request.ip,
    userAgent: typeof agent === 'string' ? agent : '',
    // A client that has sent its FIN is gone too: Node's server (no half-open) ends the socket then,
    // and no answer reaches it. The socket is destroyed only a loop turn later.
    clientGone: () => {
      const socket = request.raw.socket;
      return socket?.destroyed === true || socket?.readableEnded === true;
    },
  };
}

/** The credentials part of an `Authorization: <scheme> <credentials>` header, if the scheme matches. */
export function authorizationCredentials(
  request: FastifyRequest,
  scheme: 'bearer' | 'basic',
): string | undefined {
  const header = request.headers.authorization;
  if (typeof header !== 'string') return undefined;
  const space = header.indexOf(' ');
  if (space < 0 || header.slice(0, space).toLowerCase() !== scheme) return undefined;
  return header.slice(space + 1).trim();
}
