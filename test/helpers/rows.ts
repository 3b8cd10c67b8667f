import type { NewSessionRow } from '../../src/store/repositories/sessions.js';

/** A live user session row as the store tests write it directly: every column set, `changes` last. */
export function sessionRow(id: string, userId: string, changes: Partial<NewSessionRow> = {}): NewSessionRow {
  return {
    id,
    kind: 'user',
    user_id: userId,
    node_id: null,
    api_token_id: null,
    secret_hash: `hash-${id}`,
    created_at: 2_000,
    last_seen_at: 2_000,
    expires_at: 9_000_000_000_000,
    revoked_at: null,
    revoke_reason: null,
    ip: '192.0.2.7',
    user_agent: 'test',
    prev_success_at: null,
    prev_failed_at: null,
    prev_failed_ip: null,
    token_generation: 0,
    prior_token_valid_until: null,
    ...changes,
  };
}
