import { changeTags } from '../store/change-feed.js';
import type { SessionWithPrincipal } from '../store/repositories/sessions.js';
import { TaggedCache } from './tagged-cache.js';

export type { CacheStats, LookupCounter } from './tagged-cache.js';

/**
 * This process's copies of session rows (with their principal's state) read for authentication,
 * so that a hot read costs no store round trip. Only ever used to *accept* a request: the session
 * service re-reads the store whenever a cached row would refuse one, or would not settle it
 * (a newer token generation, a replayed one), and makes every decision that writes on a fresh row.
 * An entry is filed under its session, user, node and API token: a write to any of them (logout,
 * revocation, password change, deactivation, lock) drops it on every process (see TaggedCache).
 */
export class SessionCache extends TaggedCache<SessionWithPrincipal> {
  putSession(key: string, session: SessionWithPrincipal, mark: number): void {
    const tags = [changeTags.session(session.id)];
    if (session.user_id !== null) tags.push(changeTags.user(session.user_id));
    if (session.node_id !== null) tags.push(changeTags.node(session.node_id));
    if (session.api_token_id !== null) tags.push(changeTags.apiToken(session.api_token_id));
    this.put(key, session, tags, mark);
  }

  /** This process wrote the session's last use: the cached copies follow (not a change to others). */
  touched(sessionId: string, lastSeenAt: number): void {
    this.updateTagged(changeTags.session(sessionId), (session) => ({ ...session, last_seen_at: lastSeenAt }));
  }
}
