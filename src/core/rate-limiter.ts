import type { RateLimit } from '../config.js';
import { GatehouseError } from '../errors.js';
import type { CounterState } from '../store/repositories/login-throttle.js';
import type { Clock } from './clock.js';
import { addressKey, type CounterBackend } from './login-throttle.js';

/** The routes limited per client address, each with its own budget (settings GATEHOUSE_RATE_LIMIT_*). */
export type RateLimitedRoute = 'signin' | 'refresh' | 'nodeLogin' | 'tokens';

const PRUNE_INTERVAL_MS = 60_000;

function describeWindow(ms: number): string {
  if (ms % 3_600_000 === 0) return ms === 3_600_000 ? 'hour' : `${ms / 3_600_000} hours`;
  if (ms % 60_000 === 0) return ms === 60_000 ? 'minute' : `${ms / 60_000} minutes`;
  return ms === 1000 ? 'second' : `${Math.ceil(ms / 1000)} seconds`;
}

/**
 * A process may admit, on its own, this fraction of what is left of an address's budget before it
 * reports to the shared counter. One process alone keeps a limit exactly (what it admitted and has
 * not heard confirmed stays within one share of what is left); with several, the limit may be
 * passed by what the others admitted on their share and not yet reported: at most 1/LOCAL_SHARE
 * of the limit each, for at most FLUSH_MS.
 */
const LOCAL_SHARE = 16;
/** Hits admitted on the local share reach the shared counter at most this late. */
const FLUSH_MS = 100;
/** Addresses followed locally at once; beyond, requests of new addresses are counted one by one. */
const MAX_TALLIES = 10_000;
/** A full table is swept of tallies whose window has passed at most this often. */
const SWEEP_INTERVAL_MS = 1000;

/** An address's count on one route as this process knows it. */
interface Tally {
  readonly route: RateLimitedRoute;
  /** The counter's subject: the address, an IPv6 one by its /64. */
  readonly subject: string;
  /** The shared count as last heard (this process's reported hits included), and its window. */
  shared: number;
  windowStart: number;
  /** Hits admitted here on the local share, not yet reported. */
  pending: number;
  /** Hits being reported right now (their answer not heard yet). */
  reporting: number;
}

/**
 * Per-address request limits of the sign-in, password, token and node-login routes: a fixed window
 * per address, counted in the same shared backend as the login throttle, so a limit holds for the
 * whole deployment and not per node. Refused requests answer 429 with `Retry-After` (seconds until
 * the window ends) before any password is hashed.
 *
 * A request is counted in the shared backend before it is admitted, except while the address is
 * far from its limit: then a process admits up to 1/LOCAL_SHARE of what is left on its own and
 * reports those hits in one write within FLUSH_MS, so that a busy client does not make every
 * request a write to one hot row. The first request of a window, and every one near the limit,
 * is counted before it is answered.
 */
export class RateLimiter {
  readonly #backend: CounterBackend;
  readonly #clock: Clock;
  readonly #limits: Readonly<Record<RateLimitedRoute, RateLimit | undefined>>;
  readonly #tallies = new Map<string, Tally>();
  readonly #maxTallies: number;
  #flushTimer: NodeJS.Timeout | undefined;
  #lastPrune = Number.NEGATIVE_INFINITY;
  #lastSweep = Number.NEGATIVE_INFINITY;

  constructor(
    backend: CounterBackend,
    clock: Clock,
    limits: Readonly<Record<RateLimitedRoute, RateLimit | undefined>>,
    maxTallies = MAX_TALLIES,
  ) {
    this.#backend = backend;
    this.#clock = clock;
    this.#limits = limits;
    this.#maxTallies = maxTallies;
  }

  /** Counts a request of `route` from `ip`; throws TOO_MANY_REQUESTS past the limit. */
  async take(route: RateLimitedRoute, ip: string): Promise<void> {
    const limit = this.#limits[route];
    if (!limit) return;
    const now = this.#clock.now();
    const subject = addressKey(ip);
    const id = `${route} ${subject}`;
    const tally = this.#tallies.get(id);
    if (tally && now < tally.windowStart + limit.windowMs) {
      // Unconfirmed hits (admitted or being reported) stay within one share of what is left.
      const share = Math.floor((limit.limit - tally.shared) / LOCAL_SHARE);
      if (tally.pending + tally.reporting < share) {
        tally.pending += 1;
        this.#flushSoon();
        return;
      }
    }
    // Counted before it is answered, with whatever this process admitted meanwhile.
    const count = (tally?.pending ?? 0) + 1;
    if (tally) {
      tally.pending = 0;
      tally.reporting += count;
    }
    let state: CounterState | undefined;
    try {
      state = await this.#count(route, subject, now, limit, count);
    } catch (error) {
      // This request is refused (the backend is down); the ones admitted before stay to report.
      if (tally) tally.pending += count - 1;
      throw error;
    } finally {
      if (tally) tally.reporting -= count;
    }
    if (state) this.#heard(id, route, subject, state);
    if (now - this.#lastPrune >= PRUNE_INTERVAL_MS) {
      this.#lastPrune = now;
      // Housekeeping: a prune that fails leaves old rows to the next one, not this request's answer.
      await this.#backend.prune(now).catch(() => {});
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

  /** Reports the hits admitted on the local share now (also at shutdown). */
  async flush(): Promise<void> {
    clearTimeout(this.#flushTimer);
    this.#flushTimer = undefined;
    const now = this.#clock.now();
    const reports: Promise<void>[] = [];
    for (const [id, tally] of this.#tallies) {
      const limit = this.#limits[tally.route];
      if (!limit) continue;
      if (tally.pending === 0) {
        if (this.#spent(tally, now)) this.#tallies.delete(id);
        continue;
      }
      const count = tally.pending;
      tally.pending = 0;
      tally.reporting += count;
      reports.push(
        this.#count(tally.route, tally.subject, now, limit, count).then(
          (state) => {
            tally.reporting -= count;
            if (state) this.#heard(id, tally.route, tally.subject, state);
          },
          () => {
            // Not counted yet: reported with the next flush (the store may be back by then).
            tally.reporting -= count;
            tally.pending += count;
            this.#flushSoon();
          },
        ),
      );
    }
    await Promise.all(reports);
  }

  #count(route: RateLimitedRoute, subject: string, now: number, limit: RateLimit, count: number) {
    return this.#backend.hit(
      { scope: `rate:${route}`, subject },
      now,
      { windowMs: limit.windowMs, lockAt: 0, lockMs: 0 },
      count,
    );
  }

  #heard(id: string, route: RateLimitedRoute, subject: string, state: CounterState): void {
    const tally = this.#tallies.get(id);
    if (tally) {
      tally.shared = state.hits;
      tally.windowStart = state.windowStart;
    } else if (this.#tallies.size < this.#maxTallies || this.#sweep()) {
      this.#tallies.set(id, {
        route,
        subject,
        shared: state.hits,
        windowStart: state.windowStart,
        pending: 0,
        reporting: 0,
      });
    }
  }

  /**
   * Forgets the tallies whose window has passed with nothing left to report, and answers whether
   * that made room. `flush` forgets them too, but it runs only when some address was admitted on
   * its share: traffic of addresses that each come once (found by review) filled the table with
   * expired tallies for good, and every later address was counted one request at a time. At most
   * once a second, so that many new addresses at once do not walk the table each.
   */
  #sweep(): boolean {
    const now = this.#clock.now();
    if (now - this.#lastSweep < SWEEP_INTERVAL_MS) return false;
    this.#lastSweep = now;
    for (const [id, tally] of this.#tallies) if (this.#spent(tally, now)) this.#tallies.delete(id);
    return this.#tallies.size < this.#maxTallies;
  }

  /** Whether a tally has nothing left to report and its window (or its route's limit) is gone. */
  #spent(tally: Tally, now: number): boolean {
    if (tally.pending !== 0 || tally.reporting !== 0) return false;
    const limit = this.#limits[tally.route];
    return !limit || now >= tally.windowStart + limit.windowMs;
  }

  #flushSoon(): void {
    if (this.#flushTimer) return;
    this.#flushTimer = setTimeout(() => {
      this.#flushTimer = undefined;
      void this.flush();
    }, FLUSH_MS);
    this.#flushTimer.unref();
  }
}
