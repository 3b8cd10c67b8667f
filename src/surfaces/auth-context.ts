import type { FastifyRequest } from 'fastify';
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
