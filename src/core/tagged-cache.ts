import { LRUCache } from 'lru-cache';
import { type ChangeFeed, changeTags } from '../store/change-feed.js';
import type { Clock } from './clock.js';

export interface CacheStats {
  readonly hits: number;
  readonly misses: number;
  readonly entries: number;
}

/** What a lookup tells the metrics: whether the cached entry answered. */
export type LookupCounter = (hit: boolean) => void;

/** Entries per cache unless told otherwise: a value each for this many sessions, principals, pages. */
export const CACHE_MAX_ENTRIES = 10_000;

/**
 * How many tags' last change a cache remembers (see `put`). Forgetting the oldest only makes reads
 * that started before it uncacheable, so the bound trades memory for a few more misses under a
 * storm of changes to distinct things.
 */
const CHANGES_REMEMBERED = 4096;

interface Entry<V> {
  value: V;
  /** When the value was read from the store: the entry lives `ttlMs` from then. */
  readonly cachedAt: number;
  readonly tags: readonly string[];
}

/** A cached value and when it was read from the store. */
export interface CachedEntry<V> {
  readonly value: V;
  readonly cachedAt: number;
}

/**
 * This process's copies of values read from the store, each filed under the change-feed tags
 * whose writes would alter it, so that a hot read costs no store round trip.
 *
 * Correctness rests on the store's change feed: every write that alters a cached value publishes
 * its tags in the write's transaction (src/store/invalidating-repositories.ts), heard by this
 * process at its commit and by every other within a second; the tags drop the entries filed under
 * them. While the feed is not live the cache is not used at all; an entry lives at most `ttlMs`
 * whatever happens (the safety net). A read that started before a change to one of its tags was
 * heard is not cached (see `mark`), since it may predate the change; a change to anything else
 * does not stop it, so that a hot read keeps being cached while unrelated things change fast.
 */
export class TaggedCache<V> {
  readonly #feed: ChangeFeed;
  readonly #clock: Clock;
  readonly #ttlMs: number;
  readonly #count: LookupCounter;
  readonly #entries: LRUCache<string, Entry<V>>;
  readonly #byTag = new Map<string, Set<string>>();
  /** Counts the changes heard: a mark is the count when a read started. */
  #epoch = 0;
  /**
   * Per tag, the epoch of the last change heard to it. The tag changed longest ago is forgotten
   * first (read with `peek`, so only a change moves a tag), and the floor rises to its epoch.
   */
  readonly #changedAt = new LRUCache<string, number>({
    max: CHANGES_REMEMBERED,
    dispose: (epoch, _tag, reason) => {
      if (reason === 'evict') this.#floor = epoch;
    },
  });
  /** Reads marked before this may have missed a change that is no longer remembered (or `*`). */
  #floor = 0;
  /**
   * The kinds of tag (`user`, `session`, `rbac` ...) this cache files entries under, declared when
   * it is made: changes to other kinds (a storm of token refreshes, for a catalog cache) are not
   * even remembered.
   */
  readonly #kinds: ReadonlySet<string>;
  #subscribed = false;
  #hits = 0;
  #misses = 0;

  constructor(
    feed: ChangeFeed,
    clock: Clock,
    options: { ttlMs: number; kinds: readonly TagKind[]; maxEntries?: number },
    count: LookupCounter = () => {},
  ) {
    this.#kinds = new Set(options.kinds);
    this.#feed = feed;
    this.#clock = clock;
    this.#ttlMs = options.ttlMs;
    this.#count = count;
    // The least recently used entry goes first. Every entry that leaves, however it leaves (also
    // when its key is set again), leaves its tags' sets.
    this.#entries = new LRUCache({
      max: options.maxEntries ?? CACHE_MAX_ENTRIES,
      dispose: (entry, key) => {
        for (const tag of entry.tags) {
          const keys = this.#byTag.get(tag);
          keys?.delete(key);
          if (keys?.size === 0) this.#byTag.delete(tag);
        }
      },
    });
  }

  get enabled(): boolean {
    return this.#ttlMs > 0;
  }

  /** The cached value of `key`, if there is a fresh one and the change feed is live. */
  lookup(key: string): V | undefined {
    return this.lookupEntry(key)?.value;
  }

  /** As `lookup`, with the time its value was read from the store. */
  lookupEntry(key: string): CachedEntry<V> | undefined {
    if (!this.enabled) return undefined;
    if (!this.#subscribed) {
      // Subscribed on first use: a CLI process, which serves no reads, never opens the feed.
      this.#subscribed = true;
      this.#feed.subscribe((tags) => this.invalidate(tags));
    }
    const entry = this.#entries.get(key);
    if (!entry || !this.#feed.isLive()) return undefined;
    if (this.#clock.now() - entry.cachedAt >= this.#ttlMs) {
      this.#entries.delete(key);
      return undefined;
    }
    return entry;
  }

  /** Counts a lookup: hit when the cached value answered, miss when the store had to. */
  counted(hit: boolean): void {
    if (!this.enabled) return;
    if (hit) this.#hits += 1;
    else this.#misses += 1;
    this.#count(hit);
  }

  /** Taken before reading the store for `put`: a change to its tags heard after it makes that read too old. */
  mark(): number {
    return this.#epoch;
  }

  /** Whether a change to one of `tags` (or to everything) was heard after `mark`. */
  protected changedSince(tags: readonly string[], mark: number): boolean {
    if (mark < this.#floor) return true;
    for (const tag of tags) {
      if ((this.#changedAt.peek(tag) ?? Number.NEGATIVE_INFINITY) > mark) return true;
    }
    return false;
  }

  /** Counts a change heard; returns its epoch. */
  protected heard(): number {
    this.#epoch += 1;
    return this.#epoch;
  }

  /**
   * Files `value`, read from the store at `readAt` (now unless told), under `tags`: it lives
   * `ttlMs` from its read. A value made from an older copy (a row this process wrote over a cached
   * one) is filed with that copy's read time: re-filed as new, a copy refreshed every few seconds
   * lived for ever, and a change nobody announced was never seen (found by review).
   */
  put(key: string, value: V, tags: readonly string[], mark: number, readAt?: number): void {
    if (!this.enabled || !this.#subscribed || !this.#feed.isLive()) return;
    for (const tag of tags) {
      if (!this.#kinds.has(kindOf(tag))) throw new Error(`tag ${kindOf(tag)} is not declared by this cache`);
    }
    if (this.changedSince(tags, mark)) return;
    const cachedAt = readAt ?? this.#clock.now();
    // Read a lifetime ago or more (a slow read, a copy re-filed late): out of date already.
    if (this.#clock.now() - cachedAt >= this.#ttlMs) return;
    this.#entries.set(key, { value, cachedAt, tags });
    for (const tag of tags) {
      let keys = this.#byTag.get(tag);
      if (!keys) {
        keys = new Set();
        this.#byTag.set(tag, keys);
      }
      keys.add(key);
    }
  }

  /**
   * The value of `key`: the cached one, or `load`'s, which is then cached under `tags`. The
   * shortcut for values that are only ever read whole; callers that must judge a cached value
   * before trusting it use lookup, mark and put.
   */
  async read(key: string, tags: readonly string[], load: () => Promise<V>): Promise<V> {
    const cached = this.lookup(key);
    this.counted(cached !== undefined);
    if (cached !== undefined) return cached;
    const mark = this.mark();
    const value = await load();
    this.put(key, value, tags, mark);
    return value;
  }

  /** Replaces the value of every entry filed under `tag` (a change this process made itself). */
  updateTagged(tag: string, update: (value: V) => V): void {
    for (const key of this.#byTag.get(tag) ?? []) {
      const entry = this.#entries.peek(key);
      if (entry) entry.value = update(entry.value);
    }
  }

  /** Drops the entries filed under `tag` that `stale` condemns (this process heard how they changed). */
  protected dropTagged(tag: string, stale: (value: V) => boolean): void {
    for (const key of [...(this.#byTag.get(tag) ?? [])]) {
      const entry = this.#entries.peek(key);
      if (entry && stale(entry.value)) this.#entries.delete(key);
    }
  }

  /**
   * Drops the entries the tags name (`*`: all); reads of them in flight are not cached afterwards.
   */
  invalidate(tags: readonly string[]): void {
    const epoch = this.heard();
    for (const tag of tags) {
      if (tag === changeTags.all) {
        this.#entries.clear();
        this.#changedAt.clear();
        this.#floor = epoch;
        return;
      }
      if (!this.#kinds.has(kindOf(tag))) continue;
      this.#changedAt.set(tag, epoch);
      const keys = this.#byTag.get(tag);
      if (keys) for (const key of [...keys]) this.#entries.delete(key);
    }
  }

  stats(): CacheStats {
    return { hits: this.#hits, misses: this.#misses, entries: this.#entries.size };
  }
}

/** `user` of `user:<id>`; a tag without an id is its own kind (`rbac`, `catalog`). */
export type TagKind = 'session' | 'user' | 'node' | 'api-token' | 'tenant' | 'throttle' | 'rbac' | 'catalog';

function kindOf(tag: string): string {
  const colon = tag.indexOf(':');
  return colon < 0 ? tag : tag.slice(0, colon);
}
