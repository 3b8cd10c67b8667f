import type { FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify';
import type { AuthContext } from '../core/sessions.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by a surface's authentication hook on protected routes. */
    auth: AuthContext | null;
  }
}

/** The caller of a protected route; the hook has run, so it is there. */
export function authOf(request: FastifyRequest): AuthContext {
  if (!request.auth) throw new Error('route is missing its authentication hook');
  return request.auth;
}

/**
 * A route's authentication as a callback hook: a request whose answer is already known (a cached
 * session, `admitCached`) is admitted without a promise, the rest take `authenticate`. Fastify
 * awaits an async hook through promises of its own, a measurable part of a cached read.
 */
export function authenticationHook(
  admitCached: (request: FastifyRequest) => AuthContext | undefined,
  authenticate: (request: FastifyRequest) => Promise<void>,
) {
  return (request: FastifyRequest, _reply: FastifyReply, done: HookHandlerDoneFunction): void => {
    const known = admitCached(request);
    if (known) {
      request.auth = known;
      done();
    } else {
      authenticate(request).then(() => done(), done);
    }
  };
}
