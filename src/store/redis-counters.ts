import type { CounterKey, CounterState, HitRule } from './repositories/login-throttle.js';

/**
 * The brute-force and rate-limit counters in Redis (GATEHOUSE_REDIS_URL) instead of the store:
 * the same operations as the store's login_throttle repository, for deployments whose nodes
 * would rather not write a row per failed sign-in. Each counter is a hash that expires with its
 * window or lock; a hit is one Lua script, so it is atomic across every node.
 */
export interface RedisCounters {
  read(keys: readonly CounterKey[]): Promise<(CounterState | undefined)[]>;
  hit(key: CounterKey, now: number, rule: HitRule, count?: number): Promise<CounterState | undefined>;
  clear(keys: readonly CounterKey[]): Promise<void>;
  clearOwned(owner: string): Promise<number>;
  prune(now: number): Promise<number>;
  close(): Promise<void>;
}

/**
 * KEYS[1] the counter, KEYS[2] (optional) its owner's record of counters: a sorted set of counter
 * keys, each scored by when it expires on Redis's own clock. Each hit first drops the counters
 * that have expired, so the record holds only live ones; as a plain set it kept every counter
 * ever recorded for as long as hits renewed it (found by a soak review: a guess from a new address
 * every 12 s against a 3 min window left 36 members where at most ~15 lived, and at the defaults a
 * slow guesser below the lock kept one growing for good).
 * ARGV: now, windowMs, lockAt, lockMs, count (hits to add). Returns {hits, windowStart, lockedUntil (0: none)}, or nil
 * while the counter locks its subject (nothing is counted then). Times come from the caller's
 * clock, as with the store; TTLs are relative, so clocks of Redis and the nodes need not agree
 * (hence Redis's clock, not the caller's, for the record's scores).
 */
const HIT_SCRIPT = `
local now = tonumber(ARGV[1])
local windowMs = tonumber(ARGV[2])
local lockAt = tonumber(ARGV[3])
local lockMs = tonumber(ARGV[4])
local count = tonumber(ARGV[5])
local state = redis.call('HMGET', KEYS[1], 'h', 's', 'l')
local hits = tonumber(state[1])
local start = tonumber(state[2])
local locked = tonumber(state[3]) or 0
if hits and locked > now then return nil end
if (not hits) or locked > 0 or start + windowMs <= now then
  hits = count
  start = now
else
  hits = hits + count
end
locked = 0
if lockAt > 0 and hits >= lockAt then locked = now + lockMs end
local ttl = math.max(start + windowMs, locked) - now
if ttl < 1 then ttl = 1 end
redis.call('HSET', KEYS[1], 'h', hits, 's', string.format('%d', start), 'l', string.format('%d', locked))
redis.call('PEXPIRE', KEYS[1], ttl)
if KEYS[2] then
  local time = redis.call('TIME')
  local redisNow = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', redisNow)
  redis.call('ZADD', KEYS[2], redisNow + ttl, KEYS[1])
  if redis.call('PTTL', KEYS[2]) < ttl then redis.call('PEXPIRE', KEYS[2], ttl) end
end
return {hits, start, locked}
`;

/**
 * An operation with no answer this long fails (503), whatever the connection's state: the
 * client's own timeout stops counting once a command is written.
 */
export const REDIS_COMMAND_TIMEOUT_MS = 2000;

/** Redis cannot be reached: answered as 503 STORE_UNAVAILABLE, as a database that is down. */
export class RedisUnavailableError extends Error {
  constructor(cause: unknown) {
    super(`Redis is unavailable: ${(cause as Error)?.message ?? String(cause)}`, { cause });
    this.name = 'RedisUnavailableError';
  }
}

const toNumber = (value: unknown): number | undefined => {
  if (value === null || value === undefined) return undefined;
  const n = Number(typeof value === 'object' ? String(value) : value);
  return Number.isFinite(n) ? n : undefined;
};

/**
 * Connects to Redis (the `redis` package is loaded only when it is configured). A Redis that
 * cannot be reached at start stops the start; one lost later makes sign-ins answer 503 until it
 * is back, rather than letting attempts through uncounted.
 */
export async function connectRedisCounters(url: string, prefix: string): Promise<RedisCounters> {
  const { createClient } = await import('redis');
  const open = async () => {
    const fresh = createClient({
      url,
      // Commands fail at once while reconnecting instead of queueing sign-ins behind an outage.
      disableOfflineQueue: true,
      socket: { connectTimeout: 3000, reconnectStrategy: (retries) => Math.min(100 * 2 ** retries, 2000) },
    });
    // Without a listener an 'error' event would end the process; failures reach callers as
    // rejections. The last is kept for the start's message: the client retries a refused
    // connection on its own, and "no answer" alone named a refusal as a silence (found by review).
    let lastError: Error | undefined;
    fresh.on('error', (error: Error) => {
      lastError = error;
    });
    let connected = false;
    try {
      await Promise.race([
        fresh.connect().then(() => {
          connected = true;
        }),
        new Promise((_, reject) =>
          setTimeout(
            () =>
              reject(
                new Error(
                  `not connected to ${redactUrl(url)} within 5s${lastError ? ` (${describe(lastError)})` : ': no answer'}`,
                ),
              ),
            5000,
          ).unref(),
        ),
      ]);
    } catch (error) {
      fresh.destroy();
      throw new RedisUnavailableError(error);
    }
    if (!connected) throw new RedisUnavailableError(new Error('not connected'));
    return fresh;
  };
  let client = await open();

  /**
   * A connection that went silent without closing (a partition, a failover) holds every command
   * written to it until TCP gives up, minutes later, and the client's own timeout stops counting
   * once a command is written. A command unanswered for REDIS_COMMAND_TIMEOUT_MS fails (503) and
   * its connection is replaced by a new one; the old one is dropped once the new one answers.
   */
  let replacing: Promise<void> | undefined;
  const replace = (silent: typeof client) => {
    if (client !== silent || replacing) return;
    replacing = open()
      .then((fresh) => {
        client = fresh;
        silent.destroy();
      })
      // Redis unreachable: the old client keeps trying on its own; the next timeout tries again.
      .catch(() => {})
      .finally(() => {
        replacing = undefined;
      });
  };
  const guarded = async <T>(work: (redis: typeof client) => Promise<T>): Promise<T> => {
    const redis = client;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        replace(redis);
        reject(new Error(`no answer within ${REDIS_COMMAND_TIMEOUT_MS} ms`));
      }, REDIS_COMMAND_TIMEOUT_MS);
    });
    try {
      return await Promise.race([work(redis), timeout]);
    } catch (error) {
      throw new RedisUnavailableError(error);
    } finally {
      clearTimeout(timer);
    }
  };

  const counterKey = (key: CounterKey) => `${prefix}throttle:${key.scope}:${key.subject}`;
  const ownerKey = (owner: string) => `${prefix}throttle-owned:${owner}`;
  /**
   * The record as a plain set, under the name versions before 2026-12-08 gave it: nodes of such a
   * version may still write it during a rolling upgrade, and an unlock must clear what it names.
   * It expires with its last counter. (An unlock made on a node of such a version reads only this
   * one, and misses the counters newer nodes recorded, until the upgrade is done.)
   */
  const formerOwnerKey = (owner: string) => `${prefix}throttle-owner:${owner}`;

  return {
    read: (keys) =>
      guarded((redis) =>
        Promise.all(
          keys.map(async (key) => {
            const [hits, start, locked] = await redis.hmGet(counterKey(key), ['h', 's', 'l']);
            const h = toNumber(hits);
            const s = toNumber(start);
            if (h === undefined || s === undefined) return undefined;
            const l = toNumber(locked) ?? 0;
            return { hits: h, windowStart: s, lockedUntil: l > 0 ? l : null };
          }),
        ),
      ),

    hit: (key, now, rule, count = 1) =>
      guarded(async (redis) => {
        const keys = [counterKey(key)];
        if (key.owner !== undefined) keys.push(ownerKey(key.owner));
        const reply = await redis.eval(HIT_SCRIPT, {
          keys,
          arguments: [
            String(now),
            String(rule.windowMs),
            String(rule.lockAt),
            String(rule.lockMs),
            String(count),
          ],
        });
        if (!Array.isArray(reply)) return undefined;
        const [hits, start, locked] = reply.map(toNumber);
        if (hits === undefined || start === undefined) return undefined;
        return { hits, windowStart: start, lockedUntil: locked ? locked : null };
      }),

    clear: (keys) =>
      guarded(async (redis) => {
        if (keys.length > 0) await redis.del(keys.map(counterKey));
      }),

    clearOwned: (owner) =>
      guarded(async (redis) => {
        const [members, formerMembers] = await Promise.all([
          redis.zRange(ownerKey(owner), 0, -1),
          redis.sMembers(formerOwnerKey(owner)),
        ]);
        const counters = [...new Set([...members, ...formerMembers])];
        const removed = counters.length > 0 ? await redis.del(counters) : 0;
        await redis.del([ownerKey(owner), formerOwnerKey(owner)]);
        return Number(removed);
      }),

    // Every key carries its own expiry: Redis prunes.
    prune: async () => 0,

    async close() {
      await replacing;
      // Gracefully when it answers; a silent connection would never let `close` finish.
      const closing = client.isOpen ? client.close() : Promise.resolve();
      const silent = await Promise.race([
        closing.then(() => false),
        new Promise<boolean>((resolve) => setTimeout(resolve, REDIS_COMMAND_TIMEOUT_MS, true).unref()),
      ]);
      if (silent) client.destroy();
    },
  };
}

/**
 * An error's words: a refused connection to a name with several addresses (localhost: ::1 and
 * 127.0.0.1) is an AggregateError whose own message is empty (found by review).
 */
function describe(error: Error): string {
  if (error.message) return error.message;
  if (error instanceof AggregateError) return error.errors.map((each) => describe(each as Error)).join('; ');
  return (error as { code?: string }).code ?? error.name;
}

/** The URL without its password, for messages. */
function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return 'Redis';
  }
}
