import { LRUCache } from 'lru-cache';
import type { ChangeFeed } from '../store/change-feed.js';
import { changeTags } from '../store/change-feed.js';
import type { SessionWithPrincipal } from '../store/repositories/sessions.js';
import type { Clock } from './clock.js';
import { type LookupCounter, TaggedCache } from './tagged-cache.js';

export type { CacheStats, LookupCounter } from './tagged-cache.js';

const TOKEN_ADVANCE = 'session-token:';
/** How many sessions' newest token generation the cache remembers (see #advanced). */
const ADVANCES_REMEMBERED = 4096;

/**
 * This process's copies of session rows (with their principal's state) read for authentication,
 * so that a hot read costs no store round trip. Only ever used to *accept* a request: the session
 * service re-reads the store whenever a cached row would refuse one, or would not settle it
 * (a newer token generation, a replayed one), and makes every decision that writes on a fresh row.
 * An entry is filed under its session, user, node and API token: a write to any of them (logout,
 * revocation, password change, deactivation, lock) drops it on every process (see TaggedCache).
 *
 * A refresh is the one change told with its content (`changeTags.sessionToken`): copies older than
 * the new generation are dropped, the refreshing process files the row it wrote, and the echo of
 * its own change leaves that row in place. The next request of a client that refreshes every few
 * seconds is then a hit instead of a read.
 */
export class SessionCache extends TaggedCache<SessionWithPrincipal> {
  /**
   * Per session, the newest token generation heard and when. The session advanced longest ago is
   * forgotten first (read with `peek`, so only an advance moves a session), and the floor rises.
   */
  readonly #advances = new LRUCache<string, { readonly generation: number; readonly epoch: number }>({
    max: ADVANCES_REMEMBERED,
    dispose: (advance, _sessionId, reason) => {
      if (reason === 'evict') this.#advanceFloor = advance.epoch;
    },
  });
  /** Reads marked before this may have missed an advance that is no longer remembered. */
  #advanceFloor = 0;

  constructor(feed: ChangeFeed, clock: Clock, options: { ttlMs: number }, count?: LookupCounter) {
    super(feed, clock, { ...options, kinds: ['session', 'user', 'node', 'api-token'] }, count);
  }

  /** Files a session row read from the store at `readAt` (TaggedCache.put). */
  putSession(key: string, session: SessionWithPrincipal, mark: number, readAt: number): void {
    const advance = this.#advances.peek(session.id);
    if (advance ? advance.generation > session.token_generation : mark < this.#advanceFloor) return;
    const tags = [changeTags.session(session.id)];
    if (session.user_id !== null) tags.push(changeTags.user(session.user_id));
    if (session.node_id !== null) tags.push(changeTags.node(session.node_id));
    if (session.api_token_id !== null) tags.push(changeTags.apiToken(session.api_token_id));
    this.put(key, session, tags, mark, readAt);
  }

  /** This process wrote the session's last use: the cached copies follow (not a change to others). */
  touched(sessionId: string, lastSeenAt: number): void {
    this.updateTagged(changeTags.session(sessionId), (session) => ({ ...session, last_seen_at: lastSeenAt }));
  }

  override invalidate(tags: readonly string[]): void {
    let others: string[] | undefined;
    for (const tag of tags) {
      if (tag.startsWith(TOKEN_ADVANCE)) {
        const at = tag.lastIndexOf(':');
        this.#advanced(tag.slice(TOKEN_ADVANCE.length, at), Number(tag.slice(at + 1)));
      } else {
        others ??= [];
        others.push(tag);
      }
    }
    if (others) super.invalidate(others);
  }

  #advanced(sessionId: string, generation: number): void {
    const epoch = this.heard();
    const known = this.#advances.peek(sessionId);
    if (known && known.generation >= generation) return;
    this.#advances.set(sessionId, { generation, epoch });
    this.dropTagged(changeTags.session(sessionId), (session) => session.token_generation < generation);
  }
}
