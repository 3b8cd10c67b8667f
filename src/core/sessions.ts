import type { Config } from '../config.js';
import { GatehouseError } from '../errors.js';
import type { Store } from '../store/connect.js';
import type { SessionWithPrincipal } from '../store/repositories/sessions.js';
import type { Clock } from './clock.js';
import { newId } from './ids.js';
import { hashSecret, newSecret, SESSION_SECRET_PREFIX } from './secrets.js';
import { looksLikeJwt, type TokenService } from './tokens.js';

export type PrincipalKind = 'user' | 'node';

export interface Principal {
  readonly kind: PrincipalKind;
  readonly id: string;
  readonly name: string;
}

/** Who made a request, and through which session (none for HTTP Basic). */
export interface AuthContext {
  readonly principal: Principal;
  readonly session: SessionWithPrincipal | undefined;
}

export interface RequestMeta {
  readonly ip: string;
  readonly userAgent: string;
}

export interface LoginHistory {
  readonly lastSuccessAt: number | null;
  readonly lastFailedAt: number | null;
  readonly lastFailedIp: string | null;
}

export interface OpenedSession {
  readonly auth: AuthContext & { readonly session: SessionWithPrincipal };
  /** The opaque secret for the cookie; shown to the client once, stored only as a hash. */
  readonly secret: string;
}

type SessionStore = Pick<Store, 'sessions'>;

/**
 * The cut-offs that make a session live at `now`: the one rule, applied to a row by
 * `isSessionLive` and handed to the store to filter lists by the same bounds.
 */
export interface LiveSessionBounds {
  readonly now: number;
  /** A session last seen at or before this has been idle too long. */
  readonly idleBefore: number;
}

export function isSessionLive(
  session: Pick<SessionWithPrincipal, 'revoked_at' | 'expires_at' | 'last_seen_at'>,
  bounds: LiveSessionBounds,
): boolean {
  return (
    session.revoked_at === null && session.expires_at > bounds.now && session.last_seen_at > bounds.idleBefore
  );
}

/** The session row is the truth: every token and cookie is checked against it on every request. */
export class SessionService {
  readonly #store: Store;
  readonly #clock: Clock;
  readonly #tokens: TokenService;
  readonly #config: Config;
  /** last_seen_at is written at most this often per session, not on every request. */
  readonly #touchIntervalMs: number;

  constructor(store: Store, clock: Clock, tokens: TokenService, config: Config) {
    this.#store = store;
    this.#clock = clock;
    this.#tokens = tokens;
    this.#config = config;
    this.#touchIntervalMs = Math.min(60_000, Math.floor(config.sessionIdleTimeoutMs / 10));
  }

  async open(
    principal: Principal,
    options: {
      kind: 'user' | 'node' | 'token';
      apiTokenId?: string;
      /** A session opened with an expiring API token ends when the token does. */
      notAfter?: number | null;
      history: LoginHistory;
      meta: RequestMeta;
    },
    store: SessionStore = this.#store,
  ): Promise<OpenedSession> {
    const now = this.#clock.now();
    const secret = newSecret(SESSION_SECRET_PREFIX);
    const row = {
      id: newId(now),
      kind: options.kind,
      user_id: principal.kind === 'user' ? principal.id : null,
      node_id: principal.kind === 'node' ? principal.id : null,
      api_token_id: options.apiTokenId ?? null,
      secret_hash: hashSecret(secret),
      created_at: now,
      last_seen_at: now,
      expires_at: Math.min(
        now + this.#config.sessionMaxLifetimeMs,
        options.notAfter ?? Number.POSITIVE_INFINITY,
      ),
      revoked_at: null,
      revoke_reason: null,
      ip: options.meta.ip.slice(0, 64),
      user_agent: options.meta.userAgent.slice(0, 512),
      prev_success_at: options.history.lastSuccessAt,
      prev_failed_at: options.history.lastFailedAt,
      prev_failed_ip: options.history.lastFailedIp,
    };
    await store.sessions.insert(row);
    return {
      auth: { principal, session: { ...row, principal_active: 1, principal_name: principal.name } },
      secret,
    };
  }

  /** The NSE bearer token of a session: expires with the token lifetime or the session, whichever is first. */
  issueToken(auth: AuthContext & { readonly session: SessionWithPrincipal }): string {
    const expiresAt = Math.min(this.#clock.now() + this.#config.tokenLifetimeMs, auth.session.expires_at);
    return this.#tokens.signSessionToken({ username: auth.principal.name, sid: auth.session.id, expiresAt });
  }

  /** Accepts an NSE JWT or an opaque session secret (cookie value used as a bearer token). */
  async authenticateBearer(token: string): Promise<AuthContext> {
    if (token.startsWith(SESSION_SECRET_PREFIX)) return this.authenticateSecret(token);
    if (!looksLikeJwt(token)) throw new GatehouseError('TOKEN_INVALID', 'The bearer token is malformed.');
    const claims = await this.#tokens.verifySessionToken(token);
    return this.#check(await this.#store.sessions.findById(claims.sid));
  }

  async authenticateSecret(secret: string): Promise<AuthContext> {
    if (!secret.startsWith(SESSION_SECRET_PREFIX) || secret.length > 200) {
      throw new GatehouseError('SESSION_ENDED');
    }
    return this.#check(await this.#store.sessions.findBySecretHash(hashSecret(secret)));
  }

  liveBounds(now: number = this.#clock.now()): LiveSessionBounds {
    return { now, idleBefore: now - this.#config.sessionIdleTimeoutMs };
  }

  /** Ends one session; true if it was live. */
  end(sessionId: string, reason: string): Promise<boolean> {
    return this.#store.sessions.revoke(sessionId, this.#clock.now(), reason);
  }

  async #check(session: SessionWithPrincipal | undefined): Promise<AuthContext> {
    const now = this.#clock.now();
    if (
      !session ||
      !isSessionLive(session, this.liveBounds(now)) ||
      session.principal_active !== 1 ||
      session.principal_name === null
    ) {
      throw new GatehouseError('SESSION_ENDED');
    }
    if (now - session.last_seen_at >= this.#touchIntervalMs) {
      await this.#store.sessions.touch(session.id, now);
    }
    const kind: PrincipalKind = session.node_id !== null ? 'node' : 'user';
    const id = session.node_id ?? session.user_id ?? '';
    return { principal: { kind, id, name: session.principal_name }, session };
  }
}
