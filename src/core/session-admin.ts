import { GatehouseError } from '../errors.js';
import type { Store } from '../store/connect.js';
import type { SessionOwner, SessionRow, SessionSortKey } from '../store/repositories/sessions.js';
import type { AuditService } from './audit.js';
import { type Actor, actorOf, canSeeUser, mayManageUser } from './authorization.js';
import type { Clock } from './clock.js';
import { isId } from './ids.js';
import type { Listed, ListQuery } from './listing.js';
import { type AuthContext, isSessionLive, type RequestMeta, type SessionService } from './sessions.js';

export type { SessionSortKey } from '../store/repositories/sessions.js';

export interface SessionView {
  readonly id: string;
  readonly kind: 'user' | 'node' | 'token';
  readonly created: string;
  readonly last_seen: string;
  readonly expires: string;
  readonly ip: string;
  readonly user_agent: string;
  /** The session this very request came through (never true for HTTP Basic, which has none). */
  readonly current: boolean;
}

/** Whose credentials a request is about: the caller itself, or a user the caller manages. */
export type CredentialSubject =
  | { readonly kind: 'user'; readonly id: string; readonly name: string; readonly tenantId: string | null }
  | { readonly kind: 'node'; readonly id: string; readonly name: string; readonly tenantId: null };

/**
 * Resolves `?user_id=`: omitted or the caller's own id means the caller; another user must be
 * one the caller manages. A user the caller cannot see (another tenant's, or none at all)
 * answers 404 like an unknown id; one it sees but does not manage answers 403.
 */
export async function credentialSubject(
  store: Store,
  actor: Actor,
  userId: string | undefined,
): Promise<CredentialSubject> {
  const { principal } = actor;
  if (userId === undefined || (principal.kind === 'user' && userId.toLowerCase() === principal.id)) {
    return principal.kind === 'node'
      ? { kind: 'node', id: principal.id, name: principal.name, tenantId: null }
      : {
          kind: 'user',
          id: principal.id,
          name: principal.name,
          tenantId: actor.tenancies[0]?.tenantId ?? null,
        };
  }
  const user = isId(userId) ? await store.users.findById(userId.toLowerCase()) : undefined;
  const tenancies = user ? await store.users.tenancies(user.id) : [];
  if (!user || !canSeeUser(actor, { id: user.id, tenancies })) {
    throw new GatehouseError('NOT_FOUND', 'no such user');
  }
  if (!(await mayManageUser(store, actor, { id: user.id, tenancies }))) {
    throw new GatehouseError(
      'FORBIDDEN',
      "only an administrator of all of this user's tenants who holds all of its privileges may do this",
    );
  }
  return { kind: 'user', id: user.id, name: user.username, tenantId: tenancies[0]?.tenantId ?? null };
}

/**
 * Whether the actor may act on credentials (sessions, API tokens) held by this user: its own,
 * or those of a user it manages. Anything else is reported as not found, never as forbidden,
 * so that ids of other people's credentials reveal nothing.
 */
export async function mayActOnCredentialsOf(store: Store, actor: Actor, userId: string): Promise<boolean> {
  if (actor.principal.kind === 'user' && actor.principal.id === userId) return true;
  return mayManageUser(store, actor, { id: userId, tenancies: await store.users.tenancies(userId) });
}

const ownerOf = (subject: CredentialSubject): SessionOwner =>
  subject.kind === 'node' ? { nodeId: subject.id } : { userId: subject.id };

const iso = (ms: number) => new Date(ms).toISOString();

/** Listing and ending sessions: one's own, and (for administrators) those of managed users. */
export class SessionAdminService {
  readonly #store: Store;
  readonly #clock: Clock;
  readonly #sessions: SessionService;
  readonly #audit: AuditService;

  constructor(store: Store, clock: Clock, sessions: SessionService, audit: AuditService) {
    this.#store = store;
    this.#clock = clock;
    this.#sessions = sessions;
    this.#audit = audit;
  }

  /** Live sessions only: the same rule that decides whether a session's token still works. */
  async list(
    auth: AuthContext,
    query: ListQuery<SessionSortKey>,
    filter: { userId?: string | undefined },
  ): Promise<Listed<SessionView, SessionSortKey>> {
    const actor = await actorOf(this.#store, auth);
    const subject = await credentialSubject(this.#store, actor, filter.userId);
    const page = await this.#store.sessions.listLive(ownerOf(subject), this.#sessions.liveBounds(), query);
    const view = (row: SessionRow): SessionView => ({
      id: row.id,
      kind: row.kind,
      created: iso(row.created_at),
      last_seen: iso(row.last_seen_at),
      expires: iso(row.expires_at),
      ip: row.ip,
      user_agent: row.user_agent,
      current: row.id === auth.session?.id,
    });
    return { ...query, records: page.rows.map(view), total: page.total };
  }

  /**
   * Ends one live session of the caller, of a user it manages, or (root) of a node. Any other
   * session, and one that has already ended, is not found.
   */
  async end(auth: AuthContext, meta: RequestMeta, sessionId: string): Promise<void> {
    const actor = await actorOf(this.#store, auth);
    const session = isId(sessionId)
      ? await this.#store.sessions.findById(sessionId.toLowerCase())
      : undefined;
    const allowed =
      session !== undefined &&
      (session.node_id !== null
        ? actor.isRoot || (auth.principal.kind === 'node' && auth.principal.id === session.node_id)
        : session.user_id !== null && (await mayActOnCredentialsOf(this.#store, actor, session.user_id)));
    if (!session || !allowed || !isSessionLive(session, this.#sessions.liveBounds())) {
      throw new GatehouseError('NOT_FOUND', 'no such session');
    }
    const own = (session.node_id ?? session.user_id) === auth.principal.id;
    await this.#store.transaction(async (tx) => {
      if (!(await tx.sessions.revoke(session.id, this.#clock.now(), own ? 'ended' : 'ended-by-admin'))) {
        throw new GatehouseError('NOT_FOUND', 'no such session');
      }
      await this.#audit.record(
        {
          action: 'session.end',
          actor: auth.principal,
          target: { type: 'session', id: session.id, name: session.principal_name ?? '' },
          tenantId: session.user_id === null ? null : await tx.users.findFirstTenantId(session.user_id),
          meta,
          outcome: 'success',
        },
        tx,
      );
    });
  }

  /**
   * Ends every session of the caller but the one this request came through, or every session
   * of a managed user. A request with HTTP Basic has no session of its own, so it ends them all.
   */
  async endAll(
    auth: AuthContext,
    meta: RequestMeta,
    filter: { userId?: string | undefined },
  ): Promise<number> {
    const actor = await actorOf(this.#store, auth);
    const subject = await credentialSubject(this.#store, actor, filter.userId);
    const keep = subject.id === auth.principal.id ? auth.session?.id : undefined;
    const now = this.#clock.now();
    const reason = subject.id === auth.principal.id ? 'ended' : 'ended-by-admin';
    return this.#store.transaction(async (tx) => {
      const ended =
        subject.kind === 'node'
          ? await tx.sessions.revokeAllOfNode(subject.id, now, reason, keep)
          : await tx.sessions.revokeAllOfUser(subject.id, now, reason, keep);
      if (ended > 0) {
        await this.#audit.record(
          {
            action: 'session.end',
            actor: auth.principal,
            target: { type: subject.kind, id: subject.id, name: subject.name },
            tenantId: subject.tenantId,
            meta,
            outcome: 'success',
            reason: `${ended} session${ended === 1 ? '' : 's'} ended${keep ? ', the current one kept' : ''}`,
          },
          tx,
        );
      }
      return ended;
    });
  }
}
