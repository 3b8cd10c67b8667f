import { parseDuration } from '../config.js';
import { GatehouseError } from '../errors.js';
import type { Store } from '../store/connect.js';
import type { ApiTokenRow, ApiTokenSortKey } from '../store/repositories/api-tokens.js';
import type { AccountService } from './accounts.js';
import type { AuditService } from './audit.js';
import { actorOf } from './authorization.js';
import type { Clock } from './clock.js';
import { isId } from './ids.js';
import type { Listed, ListQuery } from './listing.js';
import { credentialSubject, mayActOnCredentialsOf } from './session-admin.js';
import type { AuthContext, RequestMeta } from './sessions.js';

export type { ApiTokenSortKey } from '../store/repositories/api-tokens.js';

/** What is shown of a token after it is made: never the secret, which is kept only as a hash. */
export interface ApiTokenView {
  readonly id: string;
  readonly name: string;
  readonly user_id: string;
  /** Who made it; '' for the CLI's and for tokens made before this was kept. */
  readonly created_by: string;
  readonly created: string;
  readonly expires: string | null;
  readonly last_used: string | null;
  readonly revoked: boolean;
}

export interface NewApiToken {
  readonly name: string;
  /** A duration such as "30d"; or `expiresAt`; neither: the token does not expire. */
  readonly expiresIn?: string | undefined;
  /** ISO 8601. */
  readonly expiresAt?: string | undefined;
  /** An administrator issuing a token for a user it manages. */
  readonly userId?: string | undefined;
}

/** Far enough for any script; near enough that every expiry stays a valid date. */
/** The longest an API token may live, asked for over HTTP or on the command line. */
export const MAX_API_TOKEN_LIFETIME_MS = 3650 * 86_400_000;
/** A date, or a date and time with its offset (a time without one would be read in the server's zone). */
const ISO_TIME = /^\d{4}-\d\d-\d\d(T\d\d:\d\d(:\d\d(\.\d{1,9})?)?(Z|[+-]\d\d:\d\d))?$/;

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

export const apiTokenView = (row: ApiTokenRow): ApiTokenView => ({
  id: row.id,
  name: row.name,
  user_id: row.user_id,
  created_by: row.created_by ?? '',
  created: new Date(row.created_at).toISOString(),
  expires: iso(row.expires_at),
  last_used: iso(row.last_used_at),
  revoked: row.revoked_at !== null,
});

/** API tokens over HTTP: a user's own, and (for administrators) those of users they manage. */
export class ApiTokenAdminService {
  readonly #store: Store;
  readonly #clock: Clock;
  readonly #accounts: AccountService;
  readonly #audit: AuditService;

  readonly #perUser: number;

  constructor(
    store: Store,
    clock: Clock,
    accounts: AccountService,
    audit: AuditService,
    options: { perUser: number },
  ) {
    this.#perUser = options.perUser;
    this.#store = store;
    this.#clock = clock;
    this.#accounts = accounts;
    this.#audit = audit;
  }

  /** Returns the secret once, with the record; only its hash is stored. */
  async create(
    auth: AuthContext,
    meta: RequestMeta,
    input: NewApiToken,
  ): Promise<{ view: ApiTokenView; token: string }> {
    if (auth.principal.kind !== 'user') {
      throw new GatehouseError('FORBIDDEN', 'API tokens belong to users; a node cannot have one');
    }
    // Otherwise a leaked token could mint others that outlive its revocation.
    if (auth.session?.kind === 'token') {
      throw new GatehouseError('FORBIDDEN', 'a session opened with an API token cannot create API tokens');
    }
    const actor = await actorOf(this.#store, auth);
    const subject = await credentialSubject(this.#store, actor, input.userId);
    const name = input.name.trim();
    const expiresAt = this.#expiry(input);
    return this.#store.transaction(async (tx) => {
      // Each a row and an audit event kept for ever: any user could otherwise make them without
      // end (found by review: 500 in 1.6 s by a plain user). Counted with the user's row taken
      // (PostgreSQL), so that two creations at once cannot both pass the last place; before the
      // token's insert, in the order every change to a user keeps (its row first).
      if (!(await tx.users.lockForTokenCount(subject.id))) {
        throw new GatehouseError('CHANGED_MEANWHILE', 'the user was deleted while its token was being made');
      }
      if ((await tx.apiTokens.countLiveOfUser(subject.id, this.#clock.now())) >= this.#perUser) {
        throw new GatehouseError(
          'API_TOKEN_LIMIT',
          `the user holds ${this.#perUser} live API tokens (GATEHOUSE_API_TOKENS_PER_USER); revoke one first`,
        );
      }
      const issued = await this.#accounts.issueApiToken(
        { userId: subject.id, name, expiresAt, createdBy: auth.principal.id },
        tx,
      );
      await this.#audit.record(
        {
          action: 'token.create',
          actor: auth.principal,
          target: { type: 'api_token', id: issued.row.id, name },
          tenantId: subject.tenantId,
          meta,
          outcome: 'success',
          reason: `for user ${subject.name}${expiresAt === null ? ', no expiry' : `, expires ${iso(expiresAt)}`}`,
        },
        tx,
      );
      return { view: apiTokenView(issued.row), token: issued.token };
    });
  }

  /**
   * The tokens of the caller, or of a user it manages (`userId`); with `createdBy`, the tokens
   * that user (the caller, or one it manages) made, for itself or lent to others, whoever holds
   * them now: what an incident's responder looks for when a maker's credentials leaked. A maker
   * lends only to users it manages, and the caller manages the maker, so their holders were the
   * caller's to manage when they were made.
   */
  async list(
    auth: AuthContext,
    query: ListQuery<ApiTokenSortKey>,
    filter: { userId?: string | undefined; createdBy?: string | undefined },
  ): Promise<Listed<ApiTokenView, ApiTokenSortKey>> {
    const actor = await actorOf(this.#store, auth);
    const empty = { ...query, records: [], total: 0 };
    let tokensOf: { userId?: string; createdBy?: string };
    if (filter.createdBy !== undefined) {
      const maker = await credentialSubject(this.#store, actor, filter.createdBy);
      if (maker.kind === 'node') return empty;
      const holder =
        filter.userId === undefined ? undefined : await credentialSubject(this.#store, actor, filter.userId);
      if (holder?.kind === 'node') return empty;
      tokensOf = { createdBy: maker.id, ...(holder ? { userId: holder.id } : {}) };
    } else {
      const subject = await credentialSubject(this.#store, actor, filter.userId);
      if (subject.kind === 'node') return empty;
      tokensOf = { userId: subject.id };
    }
    const page = await this.#store.apiTokens.list(tokensOf, query);
    return { ...query, records: page.rows.map(apiTokenView), total: page.total };
  }

  async get(auth: AuthContext, tokenId: string): Promise<ApiTokenView> {
    return apiTokenView(await this.#visible(auth, tokenId));
  }

  /**
   * Revokes a token and ends the sessions opened with it. Revoking a revoked token changes
   * nothing and is not an error: the caller gets what it asked for.
   */
  async revoke(auth: AuthContext, meta: RequestMeta, tokenId: string): Promise<void> {
    const row = await this.#visible(auth, tokenId);
    const now = this.#clock.now();
    await this.#store.transaction(async (tx) => {
      if (!(await tx.apiTokens.revoke(row.id, now))) return;
      const ended = await tx.sessions.revokeAllOfApiToken(row.id, now, 'api-token-revoked');
      const owner = await tx.users.findById(row.user_id);
      await this.#audit.record(
        {
          action: 'token.revoke',
          actor: auth.principal,
          target: { type: 'api_token', id: row.id, name: row.name },
          tenantId: await tx.users.findFirstTenantId(row.user_id),
          meta,
          outcome: 'success',
          reason: `of user ${owner?.username ?? row.user_id}; ${ended} session${ended === 1 ? '' : 's'} ended`,
        },
        tx,
      );
    });
  }

  /** A token of the caller or of a user it manages; any other is not found. */
  async #visible(auth: AuthContext, tokenId: string): Promise<ApiTokenRow> {
    const row = isId(tokenId) ? await this.#store.apiTokens.findById(tokenId.toLowerCase()) : undefined;
    if (row && (await mayActOnCredentialsOf(this.#store, await actorOf(this.#store, auth), row.user_id))) {
      return row;
    }
    throw new GatehouseError('NOT_FOUND', 'no such API token');
  }

  #expiry(input: NewApiToken): number | null {
    if (input.expiresIn !== undefined && input.expiresAt !== undefined) {
      throw new GatehouseError('VALIDATION_FAILED', 'give expires_in or expires_at, not both');
    }
    const now = this.#clock.now();
    let expiresAt: number | null = null;
    if (input.expiresIn !== undefined) {
      const ms = parseDuration(input.expiresIn);
      if (ms === undefined || ms <= 0) {
        throw new GatehouseError(
          'VALIDATION_FAILED',
          'expires_in must be a duration such as 90s, 15m, 12h or 30d',
        );
      }
      expiresAt = now + ms;
    }
    if (input.expiresAt !== undefined) {
      const at = ISO_TIME.test(input.expiresAt) ? Date.parse(input.expiresAt) : Number.NaN;
      if (Number.isNaN(at)) {
        throw new GatehouseError(
          'VALIDATION_FAILED',
          'expires_at must be an ISO 8601 date, or date and time with a zone, such as 2030-01-31T12:00:00Z',
        );
      }
      if (at <= now) throw new GatehouseError('VALIDATION_FAILED', 'expires_at must be in the future');
      expiresAt = at;
    }
    if (expiresAt !== null && expiresAt - now > MAX_API_TOKEN_LIFETIME_MS) {
      throw new GatehouseError(
        'VALIDATION_FAILED',
        'a token may live at most 3650 days; leave out expires_in and expires_at for one that does not expire',
      );
    }
    return expiresAt;
  }
}
