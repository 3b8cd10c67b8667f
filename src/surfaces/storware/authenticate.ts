import type {} from '@fastify/cookie';
import type { FastifyRequest } from 'fastify';
import type { Core } from '../../core/index.js';
import { GatehouseError } from '../../errors.js';
import { authenticationHook } from '../auth-context.js';
import { authorizationCredentials, requestMeta } from '../request-meta.js';

/** Clients replay whatever cookie they get; the name is ours. */
export const SESSION_COOKIE = 'gatehouse_session';
/**
 * Its name over HTTPS: browsers keep a `__Host-` cookie to exactly the host that set it, over
 * HTTPS only (it must be Secure, with Path=/ and no Domain), so no sibling host can set or read it.
 */
export const SECURE_SESSION_COOKIE = `__Host-${SESSION_COOKIE}`;

/** Whether this request's session cookie is the Secure `__Host-` one (GATEHOUSE_COOKIE_SECURE). */
export function securesCookie(request: FastifyRequest, cookieSecure: 'auto' | boolean): boolean {
  return cookieSecure === 'auto' ? request.protocol === 'https' : cookieSecure;
}

/**
 * The session cookie's value, under the one name this request's cookie would be set with: over
 * HTTPS a cookie without the `__Host-` prefix is not taken, since any sibling host (or anyone on
 * the network, over plain HTTP) can plant one and sign its victim into the planter's session.
 */
export function sessionCookieValue(
  request: FastifyRequest,
  cookieSecure: 'auto' | boolean,
): string | undefined {
  // Parsed here, not by a hook on every request: only Storware's authentication reads cookies.
  const header = request.headers.cookie;
  if (!header) return undefined;
  return request.server.parseCookie(header)[
    securesCookie(request, cookieSecure) ? SECURE_SESSION_COOKIE : SESSION_COOKIE
  ];
}

/** A Storware call is authenticated by a bearer token (NSE JWT or session secret) or the session cookie. */
export function storwareAuthenticator(core: Core) {
  const { cookieSecure } = core.config;
  return authenticationHook(
    (request) => {
      const bearer = authorizationCredentials(request, 'bearer');
      if (bearer !== undefined) return core.sessions.admitCachedBearer(bearer);
      const cookie = sessionCookieValue(request, cookieSecure);
      return cookie ? core.sessions.admitCachedSecret(cookie) : undefined;
    },
    async (request) => {
      // An explicit Authorization header wins over a cookie the client may still carry from before.
      const bearer = authorizationCredentials(request, 'bearer');
      if (bearer !== undefined) {
        request.auth = await core.sessions.authenticateBearer(bearer, requestMeta(request));
        return;
      }
      const cookie = sessionCookieValue(request, cookieSecure);
      if (cookie) {
        request.auth = await core.sessions.authenticateSecret(cookie);
        return;
      }
      throw new GatehouseError('AUTHENTICATION_REQUIRED', 'sign in first: POST /api/session/login');
    },
  );
}
