import { createHmac, randomBytes } from 'node:crypto';
import type { Clock } from './clock.js';
import { Lru } from './lru.js';
import { accountKey } from './secrets.js';
import type { CacheStats, LookupCounter } from './session-cache.js';

/** What a verified HTTP Basic credential was verified against: never the password itself. */
export interface VerifiedCredential {
  readonly userId: string;
  /** The stored hash the password matched: a hit counts only while it is still the stored one. */
  readonly passwordHash: string;
}

interface Entry extends VerifiedCredential {
  readonly cachedAt: number;
}

export const CREDENTIAL_CACHE_MAX_ENTRIES = 10_000;

/**
 * HTTP Basic sends the password with every request, and verifying it is argon2 (tens of ms of a
 * core). This remembers, for GATEHOUSE_CREDENTIAL_CACHE_TTL, which name and password pairs were
 * verified, so that a repeated request skips the hashing. It never holds the password or an
 * unkeyed hash of it: the key is an HMAC under a random key of this process (lost with it), over
 * the normalized name, a NUL and the password. Only successes are remembered.
 *
 * A hit replaces nothing but the hashing: the caller still runs the brute-force throttle (locks,
 * delay) and reads the account, and accepts only if it is the same account, still active, with the
 * same stored hash, so that a password change, a deactivation or a lock made anywhere, also by
 * another process or the CLI, takes effect on the next request without any notification.
 */
export class CredentialCache {
  readonly #key = randomBytes(32);
  readonly #clock: Clock;
  readonly #ttlMs: number;
  readonly #count: LookupCounter;
  readonly #entries: Lru<string, Entry>;
  #hits = 0;
  #misses = 0;

  constructor(
    clock: Clock,
    options: { ttlMs: number; maxEntries?: number },
    count: LookupCounter = () => {},
  ) {
    this.#clock = clock;
    this.#ttlMs = options.ttlMs;
    this.#count = count;
    this.#entries = new Lru(options.maxEntries ?? CREDENTIAL_CACHE_MAX_ENTRIES);
  }

  get enabled(): boolean {
    return this.#ttlMs > 0;
  }

  /** The cache key of a name and password. */
  keyOf(username: string, password: string): string {
    return createHmac('sha256', this.#key)
      .update(accountKey(username))
      .update('\u0000')
      .update(password)
      .digest('base64url');
  }

  /** The fresh entry of `key`, if any. */
  lookup(key: string): VerifiedCredential | undefined {
    if (!this.enabled) return undefined;
    const entry = this.#entries.get(key);
    if (!entry) return undefined;
    if (this.#clock.now() - entry.cachedAt >= this.#ttlMs) {
      this.#entries.delete(key);
      return undefined;
    }
    return entry;
  }

  /** Counts a lookup: hit when the entry spared the hashing, miss otherwise. */
  counted(hit: boolean): void {
    if (!this.enabled) return;
    if (hit) this.#hits += 1;
    else this.#misses += 1;
    this.#count(hit);
  }

  remember(key: string, credential: VerifiedCredential): void {
    if (!this.enabled) return;
    this.#entries.set(key, { ...credential, cachedAt: this.#clock.now() });
  }

  forget(key: string): void {
    this.#entries.delete(key);
  }

  stats(): CacheStats {
    return { hits: this.#hits, misses: this.#misses, entries: this.#entries.size };
  }
}
