import { createHmac, createSecretKey, randomUUID } from 'node:crypto';
import { createSigner, createVerifier } from 'fast-jwt';
import { LRUCache } from 'lru-cache';
import { GatehouseError } from '../errors.js';
import type { Clock } from './clock.js';
import type { Keyring } from './keyring.js';

/** Claims of the NSE bearer token: the reference's `{username, exp}` plus what revocation needs. */
export interface SessionTokenClaims {
  readonly username: string;
  readonly sid: string;
  /**
   * Refresh generation within the session (`gen`): each refresh issues the next one, and the
   * session row says which generations are still accepted. Tokens from before rotation existed
   * carry none and count as 0, the generation of every session that was never refreshed.
   */
  readonly gen: number;
  readonly iat: number;
  readonly exp: number;
}

export const ENDPOINTS_AUDIENCES = {
  serverManager: { audience: 'endpoints-server-manager', privilege: 'ENDPOINTS_SERVER_MANAGE' },
  organizationAdmin: { audience: 'endpoints-organization-admin', privilege: 'ENDPOINTS_ORGANIZATION_ADMIN' },
} as const;

/**
 * Tolerated difference between our clock and the clocks of the nodes that signed or present a
 * token: `exp` may be this far past, `nbf` and `iat` this far ahead.
 */
export const CLOCK_SKEW_SECONDS = 30;

/** Session tokens whose signature and claims were checked lately, kept to skip the HMAC and parsing. */
const VERIFIED_TOKENS_MAX = 10_000;

interface VerifiedToken {
  readonly claims: SessionTokenClaims;
  readonly nbf: number | undefined;
  readonly kid: string;
}

// fast-jwt returns synchronous functions when the key is not a callback.
type SyncSigner = (payload: Record<string, unknown>) => string;
type SyncVerifier = (token: string) => Record<string, unknown>;

/**
 * Signs session tokens with one key: HS256 in JWS compact form, the very bytes fast-jwt's signer
 * makes for the same claims (test/nse/jwt-attacks.test.ts holds them equal), in half its time
 * (3.2 against 6.3 µs a token, timed alone), since the header is encoded once per key and the
 * claims come complete, with nothing to check, copy or fill in. Every sign-in and refresh signs
 * one. Verifying stays with fast-jwt.
 */
function sessionTokenSigner(secret: Buffer, kid: string): SyncSigner {
  const key = createSecretKey(secret);
  const header = Buffer.from(JSON.stringify({ alg: 'HS256', typ: 'JWT', kid })).toString('base64url');
  return (claims) => {
    const signingInput = `${header}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}`;
    return `${signingInput}.${createHmac('sha256', key).update(signingInput).digest('base64url')}`;
  };
}

function decodeHeader(token: string): { alg?: unknown; kid?: unknown } | undefined {
  const dot = token.indexOf('.');
  if (dot <= 0) return undefined;
  try {
    const header: unknown = JSON.parse(Buffer.from(token.slice(0, dot), 'base64url').toString('utf8'));
    return header !== null && typeof header === 'object' ? header : undefined;
  } catch {
    return undefined;
  }
}

export function looksLikeJwt(token: string): boolean {
  return /^[\w-]+\.[\w-]+\.[\w-]+$/.test(token);
}

/**
 * Signs and checks tokens. The algorithm is pinned per key (HS256 for session tokens), so `none`,
 * algorithm confusion and foreign keys are refused before any claim is read.
 */
export class TokenService {
  readonly #keyring: Keyring;
  readonly #clock: Clock;
  readonly #issuer: string;
  readonly #signers = new Map<string, SyncSigner>();
  readonly #verifiers = new Map<string, SyncVerifier>();
  /**
   * By the whole token text: only the very same bytes hit, so a hit proves what a verification
   * would (the same signature over the same header and claims). The times are checked again on
   * every hit, and so is the key: a token whose key was retired is refused at once.
   */
  readonly #verified = new LRUCache<string, VerifiedToken>({ max: VERIFIED_TOKENS_MAX });

  constructor(keyring: Keyring, clock: Clock, issuer: string) {
    this.#keyring = keyring;
    this.#clock = clock;
    this.#issuer = issuer;
  }

  async signSessionToken(claims: {
    username: string;
    sid: string;
    generation: number;
    expiresAt: number;
  }): Promise<string> {
    await this.#keyring.refreshIfDue();
    const key = this.#keyring.currentSessionKey;
    let signer = this.#signers.get(key.kid);
    if (!signer) {
      signer = sessionTokenSigner(key.secret, key.kid);
      this.#signers.set(key.kid, signer);
    }
    const signed: SessionTokenClaims = {
      username: claims.username,
      sid: claims.sid,
      gen: claims.generation,
      iat: Math.floor(this.#clock.now() / 1000),
      exp: Math.floor(claims.expiresAt / 1000),
    };
    // Not `{ ...signed, iss }`: a copy with a field added takes V8's slow path (~1 µs).
    const token = signer({
      username: signed.username,
      sid: signed.sid,
      gen: signed.gen,
      iat: signed.iat,
      exp: signed.exp,
      iss: this.#issuer,
    });
    // These bytes were signed here, just now, with a key that verifies: a verification would read
    // back these claims, so the client's next request (often to this process: a refresh line, or a
    // read after signing in) skips it. Its key and times are still checked on every use.
    this.#verified.set(token, { claims: signed, nbf: undefined, kid: key.kid });
    return token;
  }

  /**
   * The claims of a token verified (or signed) here lately, whose key is current and whose times
   * hold: what `verifySessionToken` would answer, without a promise. Undefined when anything is
   * to be done or refused first; `verifySessionToken` then does it.
   */
  knownSessionToken(token: string): SessionTokenClaims | undefined {
    if (this.#keyring.mayBeStale) return undefined;
    const known = this.#verified.get(token);
    if (!known || !this.#keyring.sessionKey(known.kid) || this.#timesProblem(known.claims, known.nbf)) {
      return undefined;
    }
    return known.claims;
  }

  async verifySessionToken(token: string): Promise<SessionTokenClaims> {
    // A key retired elsewhere (heard on the change feed) is dropped before any token is trusted.
    if (this.#keyring.mayBeStale) await this.#keyring.freshen();
    const known = this.#verified.get(token);
    if (known && this.#keyring.sessionKey(known.kid)) {
      this.#checkTimes(known.claims, known.nbf);
      return known.claims;
    }
    const header = decodeHeader(token);
    if (header?.alg !== 'HS256' || typeof header.kid !== 'string') {
      throw new GatehouseError('TOKEN_INVALID', 'The token is not a Gatehouse session token.');
    }
    let key = this.#keyring.sessionKey(header.kid);
    if (!key && (await this.#keyring.reloadIfStale())) key = this.#keyring.sessionKey(header.kid);
    if (!key)
      throw new GatehouseError('TOKEN_INVALID', 'The token was signed with an unknown or retired key.');

    let verifier = this.#verifiers.get(key.kid);
    if (!verifier) {
      verifier = createVerifier({
        key: key.secret,
        algorithms: ['HS256'],
        // Time is checked below against the injected clock.
        ignoreExpiration: true,
        ignoreNotBefore: true,
      }) as SyncVerifier;
      this.#verifiers.set(key.kid, verifier);
    }
    let payload: Record<string, unknown>;
    try {
      payload = verifier(token);
    } catch {
      throw new GatehouseError('TOKEN_INVALID', 'The token signature or claims are not valid.');
    }
    const { username, sid, iat, exp, nbf, iss, aud, gen = 0 } = payload;
    if (
      typeof username !== 'string' ||
      typeof sid !== 'string' ||
      typeof exp !== 'number' ||
      typeof iat !== 'number' ||
      (nbf !== undefined && typeof nbf !== 'number') ||
      // JSON's 1e400 reads as Infinity: a token that never expires.
      !Number.isFinite(exp) ||
      !Number.isFinite(iat) ||
      (nbf !== undefined && !Number.isFinite(nbf)) ||
      typeof gen !== 'number' ||
      !Number.isSafeInteger(gen) ||
      gen < 0
    ) {
      throw new GatehouseError('TOKEN_INVALID', 'The token lacks required claims.');
    }
    // fast-jwt's allowedIss lets a token without `iss` through: ours always carry it.
    if (iss !== this.#issuer)
      throw new GatehouseError('TOKEN_INVALID', 'The token was issued by someone else.');
    // A session token has no audience; one with an audience was minted for another service.
    if (aud !== undefined)
      throw new GatehouseError('TOKEN_INVALID', 'The token is meant for another audience.');
    const claims = { username, sid, gen, iat, exp };
    this.#checkTimes(claims, nbf);
    this.#verified.set(token, { claims, nbf, kid: key.kid });
    return claims;
  }

  #checkTimes(claims: SessionTokenClaims, nbf: number | undefined): void {
    const problem = this.#timesProblem(claims, nbf);
    if (problem) throw problem;
  }

  /** Why the token's times refuse it now, if they do. */
  #timesProblem(claims: SessionTokenClaims, nbf: number | undefined): GatehouseError | undefined {
    const nowSeconds = this.#clock.now() / 1000;
    if (claims.exp + CLOCK_SKEW_SECONDS <= nowSeconds) return new GatehouseError('TOKEN_EXPIRED');
    if (
      claims.iat - CLOCK_SKEW_SECONDS > nowSeconds ||
      (nbf !== undefined && nbf - CLOCK_SKEW_SECONDS > nowSeconds)
    ) {
      return new GatehouseError('TOKEN_INVALID', 'The token is not valid yet.');
    }
    return undefined;
  }

  /** A short-lived, audience-scoped ES256 token that a downstream service checks against our JWKS. */
  async signEndpointsToken(claims: {
    audience: string;
    /** The principal's id: what a downstream service keys on (a user's and a node's names may be alike). */
    subject: string;
    /** Whether `subject` is a user or a backup node. */
    kind: 'user' | 'node';
    name: string;
    sid: string;
    /** Epoch ms; never past the session's own end. */
    expiresAt: number;
  }): Promise<string> {
    await this.#keyring.refreshIfDue();
    const key = this.#keyring.currentEndpointsKey;
    const signerKey = `es:${key.kid}`;
    let signer = this.#signers.get(signerKey);
    if (!signer) {
      signer = createSigner({
        key: key.privateKeyPem,
        algorithm: 'ES256',
        kid: key.kid,
      }) as SyncSigner;
      this.#signers.set(signerKey, signer);
    }
    const now = Math.floor(this.#clock.now() / 1000);
    return signer({
      iss: this.#issuer,
      aud: claims.audience,
      sub: claims.subject,
      kind: claims.kind,
      name: claims.name,
      sid: claims.sid,
      jti: randomUUID(),
      iat: now,
      nbf: now,
      exp: Math.floor(claims.expiresAt / 1000),
    });
  }
}
