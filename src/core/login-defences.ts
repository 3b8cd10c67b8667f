import { createHmac } from 'node:crypto';
import type { Config } from '../config.js';
import { failureTags } from '../store/change-feed.js';
import type { Store } from '../store/connect.js';
import type { CounterState } from '../store/repositories/login-throttle.js';
import type { Clock } from './clock.js';
import { type CounterBackend, LoginThrottle } from './login-throttle.js';
import type { Metrics } from './metrics.js';
import { RateLimiter } from './rate-limiter.js';

/**
 * The counters' backend: Redis when GATEHOUSE_REDIS_URL is set, otherwise the store. Either way
 * every node of a deployment shares it.
 */
async function openCounters(config: Config, store: Store): Promise<CounterBackend> {
  if (config.redisUrl !== undefined) {
    // Loaded only when configured: a deployment without Redis never loads the client.
    const { connectRedisCounters } = await import('../store/redis-counters.js');
    const redis = await connectRedisCounters(config.redisUrl, config.redisKeyPrefix);
    return {
      ...redis,
      // Two systems, two steps: if the announcement fails after the counts, the sign-in fails (503)
      // and other nodes' remembered credentials of the account run out with their lifetime.
      async countFailure(hits, now) {
        const states: (CounterState | undefined)[] = [];
        for (const { key, rule } of hits) states.push(await redis.hit(key, now, rule));
        await store.publish(failureTags(hits.map((hit) => hit.key)));
        return states;
      },
    };
  }
  return {
    ...store.loginThrottle,
    countFailure: (hits, now) => store.transaction((tx) => tx.loginThrottle.countFailure(hits, now)),
    close: async () => {},
  };
}

/**
 * The brute-force defences of the sign-in routes: the login throttle (progressive delay and
 * locks) and the per-address rate limits, over one shared counter backend. Account names are
 * keyed by an HMAC under a key derived from the master key, which every node shares already.
 */
export async function createLoginDefences(deps: {
  config: Config;
  store: Store;
  clock: Clock;
  masterKey: Buffer;
  metrics: Metrics;
}): Promise<{ throttle: LoginThrottle; rateLimiter: RateLimiter }> {
  const { config, store, clock, masterKey, metrics } = deps;
  const opened = await openCounters(config, store);
  const counters: CounterBackend = {
    ...opened,
    // The throttle and the rate limiter leave a failed prune to the next one (it is not their
    // request's answer); counted, so that a table growing for want of one is seen.
    prune: (now) =>
      opened.prune(now).catch((error: unknown) => {
        metrics.recordHousekeepingFailure('counters');
        throw error;
      }),
  };
  const subjectKey = createHmac('sha256', masterKey).update('gatehouse login-throttle subjects v1').digest();
  const throttle = new LoginThrottle(
    counters,
    clock,
    {
      pairThreshold: config.lockoutThreshold,
      accountThreshold: config.lockoutAccountThreshold,
      addressThreshold: config.lockoutIpThreshold,
      lockMs: config.lockoutDurationMs,
      delayBaseMs: config.loginDelayMs,
      delayMaxMs: config.loginDelayMaxMs,
    },
    subjectKey,
  );
  return { throttle, rateLimiter: new RateLimiter(counters, clock, config.rateLimits) };
}
