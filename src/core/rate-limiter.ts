import type { RateLimit } from '../config.js';
import { GatehouseError } from '../errors.js';
import type { Clock } from './clock.js';
import { addressKey, type CounterBackend } from './login-throttle.js';

/** The routes limited per client address, each with its own budget (settings GATEHOUSE_RATE_LIMIT_*). */
export type RateLimitedRoute = 'signin' | 'refresh' | 'nodeLogin';

const PRUNE_INTERVAL_MS = 60_000;

function describeWindow(ms: number): string {
  if (ms % 3_600_000 === 0) return ms === 3_600_000 ? 'hour' : `${ms / 3_600_000} hours`;
  if (ms % 60_000 === 0) return ms === 60_000 ? 'minute' : `${ms / 60_000} minutes`;
  return ms === 1000 ? 'second' : `${Math.ceil(ms / 1000)} seconds`;
}

/**
 * Per-address request limits of the sign-in, password, token and node-login routes: a fixed window
 * per address, counted in the same shared backend as the login throttle, so a limit holds for the
 * whole deployment and not per node. Refused requests answer 429 with `Retry-After` (seconds until
 * the window ends) before any password is hashed.
 */
export class RateLimiter {
  readonly #backend: CounterBackend;
  readonly #clock: Clock;
  readonly #limits: Readonly<Record<RateLimitedRoute, RateLimit | undefined>>;
  #lastPrune = Number.NEGATIVE_INFINITY;

  constructor(
    backend: CounterBackend,
    clock: Clock,
    limits: Readonly<Record<RateLimitedRoute, RateLimit | undefined>>,
  ) {
    this.#backend = backend;
    this.#clock = clock;
    this.#limits = limits;
  }

  /** Counts a request of `route` from `ip`; throws TOO_MANY_REQUESTS past the limit. */
  async take(route: RateLimitedRoute, ip: string): Promise<void> {
    const limit = this.#limits[route];
    if (!limit) return;
    const now = this.#clock.now();
    const state = await this.#backend.hit({ scope: `rate:${route}`, subject: addressKey(ip) }, now, {
      windowMs: limit.windowMs,
      lockAt: 0,
      lockMs: 0,
    });
    if (now - this.#lastPrune >= PRUNE_INTERVAL_MS) {
      this.#lastPrune = now;
      await this.#backend.prune(now);
    }
    if (state && state.hits > limit.limit) {
      const retryAfter = Math.max(1, Math.ceil((state.windowStart + limit.windowMs - now) / 1000));
      throw new GatehouseError(
        'TOO_MANY_REQUESTS',
        `more than ${limit.limit} requests per ${describeWindow(limit.windowMs)} from this address; retry in ${retryAfter}s`,
        { 'Retry-After': String(retryAfter) },
      );
    }
  }
}
