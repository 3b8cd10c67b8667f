import { setTimeout as sleep } from 'node:timers/promises';
import type { Config } from '../config.js';
import { GatehouseError } from '../errors.js';
import type { Store } from '../store/connect.js';
import type { SessionWithPrincipal } from '../store/repositories/sessions.js';
import type { AuditService } from './audit.js';
import type { Clock } from './clock.js';
import { GroupWriter } from './concurrency.js';
import { newId } from './ids.js';
import { hashSecret, newSecret, SESSION_SECRET_PREFIX } from './secrets.js';
import type { SessionCache } from './session-cache.js';
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
  /** The refresh generation of the bearer JWT the request came with (none for cookies, secrets, Basic). */
  readonly tokenGeneration?: number | undefined;
  /** The session cache's mark from before `session` was read: a change this request makes may re-file it. */
  readonly cacheMark?: number | undefined;
  /**
   * When `session` was read from the store (for a cached copy, when the copy was): re-filed after
   * a change this request makes, it lives no longer than the copy it came from.
   */
  readonly cacheReadAt?: number | undefined;
}

export interface RequestMeta {
  readonly ip: string;
  readonly userAgent: string;
  /**
   * True once the client has closed or half-closed its connection: work only its answer needed may
   * be skipped.
   */
  readonly clientGone?: () => boolean;
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

/**
 * Where a presented token generation stands against its session: the newest; the one before it,
 * inside the grace window after the refresh that replaced it; a replay (anything older, or the
 * one before after the window); or one never issued.
 */
export type TokenStanding = 'current' | 'grace' | 'replayed' | 'unknown';

export function tokenStanding(
  session: Pick<SessionWithPrincipal, 'token_generation' | 'prior_token_valid_until'>,
  generation: number,
  now: number,
): TokenStanding {
  const current = session.token_generation;
  if (generation === current) return 'current';
  if (generation > current) return 'unknown';
  if (
    generation === current - 1 &&
    session.prior_token_valid_until !== null &&
    now < session.prior_token_valid_until
  ) {
    return 'grace';
  }
  return 'replayed';
}

/** A refresh's compare-and-set: the session's token line from generation `from` to the next. */
interface Advance {
  readonly id: string;
  readonly from: number;
}

/**
 * Of a batch's compare-and-set: the grace end of the token replaced (it moved), `lost` (the
 * session is no longer at `from`, or has ended), `held` (still at `from` and live: its row was
 * held and passed over), `again` (still at `from` and live, but it came second of its session in
 * the batch), or the error of the read that tells these apart (it did not move).
 */
type AdvanceOutcome = number | 'lost' | 'held' | 'again' | { readonly failed: unknown };

/**
 * How often refreshes passed over for a held row go again, all together: a batch a tick (of 256
 * at most; more make several) however many they are and whenever they came (found by review:
 * each on a timer of its own, 100 held rows cost 275 transactions a second). A freed row is seen
 * within a tick.
 */
const HELD_RETRY_MS = 100;

/**
 * How long a process serves its copy of a session row: GATEHOUSE_SESSION_CACHE_TTL, and never past
 * GATEHOUSE_REFRESH_GRACE. A copy read before a refresh elsewhere names the replaced token as
 * current; the store accepts that token for the grace, so a copy that never outlives the grace
 * accepts nothing the store would refuse as a replay then, whether or not the refresh was
 * announced. Before, a process with a longer lifetime than the others relied on their announcing
 * refreshes, which they did by their own settings, not its (found by review: a token replaced
 * twice accepted for the copy's 60 s, 30 s past its grace).
 */
export function sessionCopyLifetimeMs(config: Pick<Config, 'sessionCacheTtlMs' | 'refreshGraceMs'>): number {
  return Math.min(config.sessionCacheTtlMs, config.refreshGraceMs);
}

/** The session row is the truth: every token and cookie is checked against it on every request. */
export class SessionService {
  readonly #store: Store;
  readonly #clock: Clock;
  readonly #tokens: TokenService;
  readonly #config: Config;
  readonly #audit: AuditService;
  readonly #cache: SessionCache;
  /** last_seen_at is written at most this often per session, not on every request. */
  readonly #touchIntervalMs: number;
  /**
   * Refreshes' compare-and-sets, written in groups that pass over a session row another
   * transaction holds; such a one goes again in a later group (#advance).
   */
  readonly #advances: GroupWriter<Advance, AdvanceOutcome>;
  /** The next tick at which refreshes passed over for a held row go again (HELD_RETRY_MS). */
  #heldRetry: Promise<void> | undefined;
  /** This server is draining (stopWaiting): refreshes of held rows try once more, then give up. */
  #stopped = false;
  /**
   * Whether other processes hear of each refresh, so that they drop copies naming the replaced
   * token as current. No copy outlives the grace (sessionCopyLifetimeMs), during which the row
   * accepts that token too, so this is not what keeps a replay out. It narrows one case: a copy
   * read before two refreshes in a row accepts the oldest token for the rest of its life (README,
   * *Scale-out*). Told when the grace is shorter than two lifetimes, as before copies were bounded
   * by the grace; otherwise not: a NOTIFY that wakes every node's listener (on SQLite a row) for
   * every refresh costs refreshes (docs/performance-log.md). A newer token than a copy's is read
   * afresh in any case.
   */
  readonly #announceRefreshes: boolean;

  constructor(
    store: Store,
    clock: Clock,
    tokens: TokenService,
    config: Config,
    audit: AuditService,
    cache: SessionCache,
  ) {
    this.#store = store;
    this.#clock = clock;
    this.#tokens = tokens;
    this.#config = config;
    this.#audit = audit;
    this.#cache = cache;
    this.#touchIntervalMs = Math.min(60_000, Math.floor(config.sessionIdleTimeoutMs / 10));
    this.#announceRefreshes = config.refreshGraceMs < 2 * config.sessionCacheTtlMs;
    this.#advances = new GroupWriter((advances) => this.#writeAdvances(advances));
  }

  async #writeAdvances(advances: readonly Advance[]): Promise<AdvanceOutcome[]> {
    // One compare-and-set per session in a statement: a second refresh of a session in this
    // batch is judged below with those that did not move.
    const first = new Map<string, Advance>();
    for (const advance of advances) if (!first.has(advance.id)) first.set(advance.id, advance);
    const priorValidUntil = this.#clock.now() + this.#config.refreshGraceMs;
    const moved = await this.#store.sessions.advanceTokenGenerations([...first.values()], priorValidUntil, {
      announce: this.#announceRefreshes,
    });
    const movedHere = (advance: Advance) => first.get(advance.id) === advance && moved.has(advance.id);
    const open = advances.filter((advance) => !movedHere(advance));
    if (open.length === 0) return advances.map(() => priorValidUntil);
    // Lost, passed over, or a second of its session: the row as it stands now tells. One still at
    // its `from` and live was held (or came second) and may yet move; any other has lost. A
    // lost one does not wait with the held ones (found by review: it queued behind them). If the
    // read fails, those fail, and those that moved have still moved (found by review: judged
    // lost instead, a held one was answered a token of the generation it had, not rotated).
    let standing: Map<string, { token_generation: number; revoked_at: number | null }>;
    try {
      const rows = await this.#store.sessions.findTokenGenerations([...new Set(open.map((a) => a.id))]);
      standing = new Map(rows.map((row) => [row.id, row]));
    } catch (failed) {
      return advances.map((advance) => (movedHere(advance) ? priorValidUntil : { failed }));
    }
    return advances.map((advance) => {
      if (movedHere(advance)) return priorValidUntil;
      const row = standing.get(advance.id);
      if (row?.revoked_at !== null || row.token_generation !== advance.from) return 'lost';
      return first.get(advance.id) === advance ? 'held' : 'again';
    });
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
      token_generation: 0,
      prior_token_valid_until: null,
    };
    await store.sessions.insert(row);
    return {
      // The added fields first: after a spread, V8 defines each new field on its slow path (~1 µs).
      auth: { principal, session: { principal_active: 1, principal_name: principal.name, ...row } },
      secret,
    };
  }

  /**
   * The NSE bearer token of a session, of its current refresh generation: expires with the token
   * lifetime or the session, whichever is first.
   */
  issueToken(auth: AuthContext & { readonly session: SessionWithPrincipal }): Promise<string> {
    return this.#sign(auth.principal, auth.session, auth.session.token_generation);
  }

  /**
   * `/auth/refresh`: rotates the session's token line. The token presented must be the newest
   * (its successor is issued and it keeps working for GATEHOUSE_REFRESH_GRACE) or its predecessor
   * within that grace (a concurrent refresh already rotated: the caller gets a token of the same,
   * newest generation, so the session never has two lines). A session secret refreshes like the
   * newest token. Older tokens never get here: authentication ended their session.
   */
  async refreshToken(
    auth: AuthContext & { readonly session: SessionWithPrincipal },
    meta: RequestMeta,
  ): Promise<string> {
    const { session } = auth;
    const presented = auth.tokenGeneration ?? session.token_generation;
    if (presented === session.token_generation) {
      const priorValidUntil = await this.#advance(session.id, presented, meta);
      if (priorValidUntil !== undefined) {
        const advanced = {
          ...session,
          token_generation: presented + 1,
          prior_token_valid_until: priorValidUntil,
        };
        // The row as this process wrote it: the client's next request, with the new token, is a hit.
        // Not if anything else about the session or its principal was heard since it was read.
        if (auth.cacheMark !== undefined && auth.cacheReadAt !== undefined) {
          this.#cache.putSession(`sid:${session.id}`, advanced, auth.cacheMark, auth.cacheReadAt);
        }
        return this.#sign(auth.principal, advanced, presented + 1);
      }
    }
    // The predecessor within its grace, or another refresh of the same token won: judge the token
    // again against the row as it is now (the one seen may have come from the session cache), which
    // may find a replay by then and end the session. A session secret names no generation (the one
    // tried was a copy's, maybe one refresh behind): the session is judged, and its token handed out.
    const fresh = await this.#check(
      await this.#store.sessions.findById(session.id),
      auth.tokenGeneration === undefined ? undefined : { generation: presented, meta },
    );
    return this.#sign(fresh.principal, fresh.session, fresh.session.token_generation);
  }

  /**
   * The compare-and-set of one refresh, in the process's next batch. A batch passes over a session
   * whose row another transaction holds (a logout everywhere, a password change, a deletion,
   * another node's refresh of the same session): such a refresh goes again at the next tick, with
   * every other one passed over, until its row is free, as long as a statement may wait, or until
   * its client leaves. It holds no connection meanwhile, and waits behind no other row. Before,
   * the batch waited at the lock, and every refresh queued behind it too (found by review: an
   * unrelated refresh took ~1.2 s behind a row held 0.6 s); then each such refresh waited alone,
   * each on a connection of its own, and took the whole pool (found by review: a sign-in failed
   * after 3 s); then a few at a time, the others queued behind rows they did not need (found by
   * review: 3.1 s behind a row it had been refused for 100 ms). Answers the grace end of the token
   * replaced, or undefined if the refresh lost.
   */
  async #advance(id: string, from: number, meta: RequestMeta): Promise<number | undefined> {
    const giveUpAt = performance.now() + this.#config.pgStatementTimeoutMs;
    let triedWhileStopped = false;
    for (;;) {
      const outcome = await this.#advances.run({ id, from });
      if (outcome === 'lost') return undefined;
      if (typeof outcome === 'number') return outcome;
      if (outcome === 'again') continue;
      // The store's error, answered and logged as any other.
      if (typeof outcome === 'object') throw outcome.failed;
      // As a statement waiting that long would have been cancelled.
      if (performance.now() + HELD_RETRY_MS > giveUpAt) {
        throw new GatehouseError('STORE_UNAVAILABLE', 'the session stayed locked by another change', {
          'Retry-After': '1',
        });
      }
      // Draining: one more tick, for a row held only a moment (a last use written, another
      // node's refresh), then give up (found by review: without it, given up at once).
      if (this.#stopped) {
        if (triedWhileStopped) {
          throw new GatehouseError(
            'STORE_UNAVAILABLE',
            'the session was locked by another change while this server shut down',
            { 'Retry-After': '1' },
          );
        }
        triedWhileStopped = true;
      }
      await this.#nextHeldRetry();
      if (meta.clientGone?.()) {
        throw new GatehouseError('CLIENT_CLOSED_REQUEST', 'the client left while its session was locked');
      }
    }
  }

  /**
   * The server is draining: a refresh waiting for a row another transaction holds tries once more
   * at the next tick, then gives up, 503 with Retry-After, and its client tries again (on another
   * node, behind a balancer) with the token it has, which still works. Otherwise the drain waited for it until its
   * row was free or the statement timeout (30 s) had passed, longer than orchestrators commonly
   * allow a process to stop.
   */
  stopWaiting(): void {
    this.#stopped = true;
  }

  #nextHeldRetry(): Promise<void> {
    this.#heldRetry ??= sleep(HELD_RETRY_MS).then(() => {
      this.#heldRetry = undefined;
    });
    return this.#heldRetry;
  }

  #sign(principal: Principal, session: SessionWithPrincipal, generation: number): Promise<string> {
    // A token never promises more than its session can keep: clients read `exp` to know when to
    // refresh, and a session left unused for its idle timeout ends, whatever the token says.
    const now = this.#clock.now();
    const expiresAt = Math.min(
      now + Math.min(this.#config.tokenLifetimeMs, this.#config.sessionIdleTimeoutMs),
      session.expires_at,
    );
    return this.#tokens.signSessionToken({
      username: principal.name,
      sid: session.id,
      generation,
      expiresAt,
    });
  }

  /**
   * Accepts an NSE JWT or an opaque session secret (cookie value used as a bearer token). A JWT of
   * a replaced generation past its grace ends its whole session: someone holds a copy of a token
   * that its owner has already refreshed.
   */
  async authenticateBearer(token: string, meta?: RequestMeta): Promise<AuthContext> {
    if (token.startsWith(SESSION_SECRET_PREFIX)) return this.authenticateSecret(token);
    if (!looksLikeJwt(token)) throw new GatehouseError('TOKEN_INVALID', 'The bearer token is malformed.');
    const claims = await this.#tokens.verifySessionToken(token);
    // The context carries the token's generation (tokenGeneration) from #admit.
    return this.#authenticate(`sid:${claims.sid}`, () => this.#store.sessions.findById(claims.sid), {
      generation: claims.gen,
      meta,
    });
  }

  async authenticateSecret(secret: string): Promise<AuthContext> {
    if (!secret.startsWith(SESSION_SECRET_PREFIX) || secret.length > 200) {
      throw new GatehouseError('SESSION_ENDED');
    }
    const secretHash = hashSecret(secret);
    return this.#authenticate(`secret:${secretHash}`, () =>
      this.#store.sessions.findBySecretHash(secretHash),
    );
  }

  /**
   * What `authenticateBearer` would answer, without a promise, when its answer is already known:
   * a token verified here lately, for a session in the cache that accepts it as it stands and
   * needs no write. Undefined otherwise (never a refusal): take `authenticateBearer`. Most reads
   * of a busy service are such, and a request's promises are a measurable part of a cached read.
   */
  admitCachedBearer(token: string): AuthContext | undefined {
    if (token.startsWith(SESSION_SECRET_PREFIX)) return this.admitCachedSecret(token);
    const claims = this.#tokens.knownSessionToken(token);
    return claims && this.#admitCached(`sid:${claims.sid}`, claims.gen);
  }

  /** `authenticateSecret`'s answer when already known, as `admitCachedBearer`; undefined otherwise. */
  admitCachedSecret(secret: string): AuthContext | undefined {
    if (!secret.startsWith(SESSION_SECRET_PREFIX) || secret.length > 200) return undefined;
    return this.#admitCached(`secret:${hashSecret(secret)}`, undefined);
  }

  #admitCached(key: string, generation: number | undefined): AuthContext | undefined {
    const now = this.#clock.now();
    const entry = this.#cache.lookupEntry(key);
    if (!entry) return undefined;
    const cached = entry.value;
    if (!this.#accepts(cached, generation, now) || this.#dueForTouch(cached, now)) return undefined;
    this.#cache.counted(true);
    return contextOf(cached, this.#cache.mark(), entry.cachedAt, generation);
  }

  #dueForTouch(session: SessionWithPrincipal, now: number): boolean {
    return now - session.last_seen_at >= this.#touchIntervalMs;
  }

  /**
   * A cached row may only accept: whatever it would not accept as it stands (ended, idle by its
   * possibly older last use, a newer or a replayed token generation) is judged again on a fresh
   * read, and so is every decision that writes (a replay ends the session).
   */
  async #authenticate(
    key: string,
    read: () => Promise<SessionWithPrincipal | undefined>,
    token?: { readonly generation: number; readonly meta: RequestMeta | undefined },
  ): Promise<AuthContext & { session: SessionWithPrincipal }> {
    const now = this.#clock.now();
    const entry = this.#cache.lookupEntry(key);
    if (entry && this.#accepts(entry.value, token?.generation, now)) {
      this.#cache.counted(true);
      return this.#admit(entry.value, now, this.#cache.mark(), entry.cachedAt, token?.generation);
    }
    this.#cache.counted(false);
    const mark = this.#cache.mark();
    const readAt = this.#clock.now();
    const auth = await this.#check(await read(), token, mark, readAt);
    this.#cache.putSession(key, auth.session, mark, readAt);
    return auth;
  }

  /**
   * Whether a cached copy may answer for the row. Only for the current generation: a token in its
   * grace may have become a replay since the copy was read (refreshed again on another process),
   * and the grace is for requests in flight during a refresh, few enough to be read afresh. Taken
   * from a copy, a token two refreshes old was accepted where the store ends the session over it
   * (found by review).
   */
  #accepts(session: SessionWithPrincipal, generation: number | undefined, now: number): boolean {
    if (!isSessionLive(session, this.liveBounds(now))) return false;
    if (session.principal_active !== 1 || session.principal_name === null) return false;
    return generation === undefined || tokenStanding(session, generation, now) === 'current';
  }

  liveBounds(now: number = this.#clock.now()): LiveSessionBounds {
    return { now, idleBefore: now - this.#config.sessionIdleTimeoutMs };
  }

  async #check(
    session: SessionWithPrincipal | undefined,
    token?: { readonly generation: number; readonly meta: RequestMeta | undefined },
    cacheMark?: number,
    cacheReadAt?: number,
  ): Promise<AuthContext & { session: SessionWithPrincipal }> {
    const now = this.#clock.now();
    if (
      !session ||
      !isSessionLive(session, this.liveBounds(now)) ||
      session.principal_active !== 1 ||
      session.principal_name === null
    ) {
      throw new GatehouseError('SESSION_ENDED');
    }
    if (token) {
      const standing = tokenStanding(session, token.generation, now);
      if (standing === 'unknown') {
        throw new GatehouseError('TOKEN_INVALID', 'The token was not issued for this session.');
      }
      if (standing === 'replayed') await this.#endReplayed(session, token.generation, token.meta);
    }
    return this.#admit(session, now, cacheMark, cacheReadAt, token?.generation);
  }

  /** Accepts a request on a live session: its last use is written at most every touch interval. */
  async #admit(
    session: SessionWithPrincipal,
    now: number,
    cacheMark: number | undefined,
    cacheReadAt: number | undefined,
    tokenGeneration: number | undefined,
  ): Promise<AuthContext & { session: SessionWithPrincipal }> {
    let current = session;
    if (this.#dueForTouch(session, now)) {
      await this.#store.sessions.touch(session.id, now);
      current = { ...session, last_seen_at: now };
      this.#cache.touched(session.id, now);
    }
    return contextOf(current, cacheMark, cacheReadAt, tokenGeneration);
  }

  async #endReplayed(
    session: SessionWithPrincipal,
    generation: number,
    meta: RequestMeta | undefined,
  ): Promise<never> {
    const now = this.#clock.now();
    const tenancies = session.user_id ? await this.#store.users.tenancies(session.user_id) : [];
    await this.#store.transaction(async (tx) => {
      // Only the request that ended it writes the event: replays racing each other record it once.
      if (!(await tx.sessions.revoke(session.id, now, 'token-reuse'))) return;
      await this.#audit.record(
        {
          // Gatehouse ends it; who presented the copy is exactly what is not known.
          actor: undefined,
          action: 'session.token_reuse',
          target: { type: 'session', id: session.id, name: session.principal_name ?? '' },
          tenantId: tenancies[0]?.tenantId ?? null,
          meta,
          outcome: 'success',
          reason: `token generation ${generation} presented after generation ${session.token_generation} was issued`,
        },
        tx,
      );
    });
    throw new GatehouseError(
      'SESSION_ENDED',
      'A token replaced by a refresh was used again, so the session has been ended. Sign in again.',
    );
  }
}

/**
 * A request's authentication context, built whole: a copy with a field added
 * (`{ ...auth, tokenGeneration }`) takes V8's slow path, ~1 µs a request.
 */
function contextOf(
  session: SessionWithPrincipal,
  cacheMark: number | undefined,
  cacheReadAt: number | undefined,
  tokenGeneration: number | undefined,
): AuthContext & { session: SessionWithPrincipal } {
  const kind: PrincipalKind = session.node_id !== null ? 'node' : 'user';
  return {
    principal: { kind, id: session.node_id ?? session.user_id ?? '', name: session.principal_name ?? '' },
    session,
    cacheMark,
    cacheReadAt,
    tokenGeneration,
  };
}
