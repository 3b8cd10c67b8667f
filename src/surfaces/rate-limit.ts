import type { FastifyRequest } from 'fastify';
import type { Core } from '../core/index.js';
import type { RateLimitedRoute } from '../core/rate-limiter.js';

/**
 * An onRequest hook that counts the request against its route's per-address limit. It runs before
 * the body is read and before any credential is checked, so a refused request costs no hashing;
 * the 429 renders in the envelope of the route's own surface.
 */
export function rateLimited(core: Core, route: RateLimitedRoute) {
  return async (request: FastifyRequest): Promise<void> => {
    await core.rateLimiter.take(route, request.ip);
  };
}
