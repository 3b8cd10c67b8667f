import { type ChangeFeed, changeTags } from '../store/change-feed.js';
import type { SessionWithPrincipal } from '../store/repositories/sessions.js';
import type { Clock } from './clock.js';
import { Lru } from './lru.js';

export interface CacheStats {
  readonly hits: number;
  readonly misses: number;
  readonly entries: number;
}

/** What a lookup tells the metrics: whether the cached entry answered. */
export type LookupCounter = (hit: boolean) => void;

interface Entry {
  session: SessionWithPrincipal;
  readonly cachedAt: number;
  readonly tags: readonly string[];
}

export const SESSION_CACHE_MAX_ENTRIES = 10_000;

/**
 * This process's copies of session rows (with their principal's state) read for authentication,
 * so that a hot read costs no store round trip. Only ever used to *accept* a request: the session
 * service re-reads the store whenever a cached row would refuse one, or would not settle it
 * (a newer token generation, a replayed one), and makes every decision that writes on a fresh row.
 *
 * Correctness rests on the store's change feed: every write that ends or alters a session, or the
 * user or node behind it, is heard by every process within a second; the feed's tags drop the
 * entries they name. While the feed is not live the cache is not used at all; an entry lives at
 * most `ttlMs` whatever happens (GATEHOUSE_SESSION_CACHE_TTL, the safety net). A read that
 * started before a change was heard is not cached (the epoch), since it may predate the change.
 */
export class SessionCache {
  readonly #feed: ChangeFeed;
  readonly #clock: Clock;
  readonly #ttlMs: number;
  readonly #count: LookupCounter;
  readonly #entries: Lru<string, Entry>;
  readonly #byTag = new Map<string, Set<string>>();
  #epoch = 0;
  #subscribed = false;
  #hits = 0;
  #misses = 0;

  constructor(
    feed: ChangeFeed,
    clock: Clock,
    options: { ttlMs: number; maxEntries?: number },
    count: LookupCounter = () => {},
  ) {
    this.#feed = feed;
    this.#clock = clock;
    this.#ttlMs = options.ttlMs;
    this.#count = count;
    this.#entries = new Lru(options.maxEntries ?? SESSION_CACHE_MAX_ENTRIES, (key, entry) => {
      for (const tag of entry.tags) {
        const keys = this.#byTag.get(tag);
        keys?.delete(key);
        if (keys?.size === 0) this.#byTag.delete(tag);
      }
    });
  }

  get enabled(): boolean {
    return this.#ttlMs > 0;
  }

  /** The cached row for `key`, if there is a fresh one and the change feed is live. */
  lookup(key: string): SessionWithPrincipal | undefined {
    if (!this.enabled) return undefined;
    if (!this.#subscribed) {
      // Subscribed on first use: a CLI process, which authenticates nobody, never opens the feed.
      this.#subscribed = true;
      this.#feed.subscribe((tags) => this.invalidate(tags));
    }
    const entry = this.#entries.get(key);
    if (!entry || !this.#feed.isLive()) return undefined;
    if (this.#clock.now() - entry.cachedAt >= this.#ttlMs) {
      this.#entries.delete(key);
      return undefined;
    }
    return entry.session;
  }

  /** Counts a lookup: hit when the cached row answered, miss when the store had to. */
  counted(hit: boolean): void {
    if (!this.enabled) return;
    if (hit) this.#hits += 1;
    else this.#misses += 1;
    this.#count(hit);
  }

  /** Taken before reading the store for `put`: a change heard after it makes that read too old. */
  mark(): number {
    return this.#epoch;
  }

  put(key: string, session: SessionWithPrincipal, mark: number): void {
    if (!this.enabled || mark !== this.#epoch || !this.#subscribed || !this.#feed.isLive()) return;
    const tags = [changeTags.session(session.id)];
    if (session.user_id !== null) tags.push(changeTags.user(session.user_id));
    if (session.node_id !== null) tags.push(changeTags.node(session.node_id));
    if (session.api_token_id !== null) tags.push(changeTags.apiToken(session.api_token_id));
    this.#entries.set(key, { session, cachedAt: this.#clock.now(), tags });
    for (const tag of tags) {
      let keys = this.#byTag.get(tag);
      if (!keys) {
        keys = new Set();
        this.#byTag.set(tag, keys);
      }
      keys.add(key);
    }
  }

  /** This process wrote the session's last use: the cached copies follow (not a change to others). */
  touched(sessionId: string, lastSeenAt: number): void {
    for (const key of this.#byTag.get(changeTags.session(sessionId)) ?? []) {
      const entry = this.#entries.get(key);
      if (entry) entry.session = { ...entry.session, last_seen_at: lastSeenAt };
    }
  }

  /** Drops the entries the tags name (`*`: all); reads in flight are not cached afterwards. */
  invalidate(tags: readonly string[]): void {
    this.#epoch += 1;
    for (const tag of tags) {
      if (tag === changeTags.all) {
        this.#entries.clear();
        return;
      }
      for (const key of [...(this.#byTag.get(tag) ?? [])]) this.#entries.delete(key);
    }
  }

  stats(): CacheStats {
    return { hits: this.#hits, misses: this.#misses, entries: this.#entries.size };
  }
}
