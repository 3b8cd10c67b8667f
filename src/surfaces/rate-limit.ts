import type { FastifyRequest } from 'fastify';
import type { Core } from '../core/index.js';
import type { SignInSurface } from '../core/metrics.js';
import type { RateLimitedRoute } from '../core/rate-limiter.js';
import { isGatehouseError } from '../errors.js';

/**
 * An onRequest hook that counts the request against its route's per-address limit. It runs before
 * the body is read and before any credential is checked, so a refused request costs no hashing;
 * the 429 renders in the envelope of the route's own surface. On a sign-in route (`signIn` given)
 * a refusal also counts as a `rate_limited` sign-in of that surface (a failure of the counters
 * themselves, as an `error`).
 */
export function rateLimited(core: Core, route: RateLimitedRoute, signIn?: SignInSurface) {
  return async (request: FastifyRequest): Promise<void> => {
    try {
      await core.rateLimiter.take(route, request.ip);
    } catch (error) {
      if (signIn) {
        const limited = isGatehouseError(error) && error.code === 'TOO_MANY_REQUESTS';
        core.metrics.recordSignIn(signIn, limited ? 'rate_limited' : 'error');
      }
      throw error;
    }
  };
}
