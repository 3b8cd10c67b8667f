import { createHmac, randomBytes } from 'node:crypto';
import type { ChangeFeed } from '../store/change-feed.js';
import type { Clock } from './clock.js';
import { addressKey } from './login-throttle.js';
import { accountKey } from './secrets.js';
import { type LookupCounter, TaggedCache } from './tagged-cache.js';

/** Who a remembered HTTP Basic credential proved to be: never the password itself. */
export interface VerifiedCredential {
  readonly userId: string;
  readonly username: string;
}

/**
 * HTTP Basic sends the password with every request, and verifying it is argon2 (tens of ms of a
 * core). This remembers, for GATEHOUSE_CREDENTIAL_CACHE_TTL, which name and password pairs were
 * verified from which address, so that a repeated request skips the hashing, the sign-in counters
 * and the account read. It never holds the password or an unkeyed hash of it: the key is an HMAC
 * under a random key of this process (lost with it) over the normalized name, a NUL and the
 * password, followed by the client's address as the counters key it. Only successes are
 * remembered, and only while the change feed is live (see TaggedCache).
 *
 * An entry is filed under its account (a password change or set, a deactivation, a rename or a
 * deletion drops it), and under the sign-in counters of its account and its address: any failed
 * attempt against the account, or from the address, made on any process, drops it, so a lock is
 * never answered from here and the next request of the pair is checked in full again.
 */
export class CredentialCache extends TaggedCache<VerifiedCredential> {
  readonly #key = randomBytes(32);

  constructor(feed: ChangeFeed, clock: Clock, options: { ttlMs: number }, count?: LookupCounter) {
    super(feed, clock, { ...options, kinds: ['user', 'throttle'] }, count);
  }

  /** The cache key of a name and password sent from `ip`. */
  keyOf(username: string, password: string, ip: string): string {
    const proof = createHmac('sha256', this.#key)
      .update(accountKey(username))
      .update('\u0000')
      .update(password)
      .digest('base64url');
    return `${proof} ${addressKey(ip)}`;
  }
}
