import assert from 'node:assert/strict';
import {
  createHmac,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  sign,
  verify,
} from 'node:crypto';
import { after, before, test } from 'node:test';
import { createSigner } from 'fast-jwt';
import type { LightMyRequestResponse } from 'fastify';
import { createCore } from '../../src/core/index.js';
import { CLOCK_SKEW_SECONDS, TokenService } from '../../src/core/tokens.js';
import { connectStore } from '../../src/store/connect.js';
import { createTestContext, type TestContext } from '../helpers/context.js';
import { forEachDialect } from '../helpers/dialects.js';
import { bearer, json, nseSignIn } from '../helpers/http.js';

const PASSWORD = 'rabbit-hole-wonder-1';

const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');

type Header = Record<string, unknown>;
type Claims = Record<string, unknown>;

function hs256(header: Header, claims: Claims, secret: Buffer | string): string {
  const input = `${b64(header)}.${b64(claims)}`;
  return `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`;
}

/** JOSE signatures: ECDSA as raw r||s (IEEE P1363), not DER. */
function asymmetric(header: Header & { alg: 'ES256' | 'RS256' }, claims: Claims, key: KeyObject | string) {
  const input = `${b64(header)}.${b64(claims)}`;
  const privateKey = typeof key === 'string' ? createPrivateKey(key) : key;
  const signature = sign('sha256', Buffer.from(input), { key: privateKey, dsaEncoding: 'ieee-p1363' });
  return `${input}.${signature.toString('base64url')}`;
}

const claimsOf = (token: string) =>
  JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString()) as Claims & { sid: string };
const kidOf = (token: string) =>
  (JSON.parse(Buffer.from(token.split('.')[0] ?? '', 'base64url').toString()) as { kid: string }).kid;

forEachDialect('JWT attacks on the bearer token', (dialect) => {
  let ctx: TestContext;
  const nse = (token: string) => ctx.inject({ method: 'GET', url: '/api/v2.1/jobs', headers: bearer(token) });
  const storware = (token: string) =>
    ctx.inject({ method: 'GET', url: '/api/session/user', headers: bearer(token) });

  function nseRefused(response: LightMyRequestResponse, code: string, label: string): void {
    assert.equal(response.statusCode, 401, `${label}: ${response.body}`);
    const body = json(response);
    assert.equal(body.status.code, 401, label);
    assert.match(body.status.verbose_message, new RegExp(`^${code}`), label);
    assert.deepEqual(body.result, { total_records: 0, records: [] }, label);
  }
  function storwareRefused(response: LightMyRequestResponse, code: string, label: string): void {
    assert.equal(response.statusCode, 401, `${label}: ${response.body}`);
    const body = json(response);
    assert.deepEqual(Object.keys(body).sort(), ['errorCode', 'message'], label);
    assert.equal(body.errorCode, code, label);
  }
  /** Refused on both surfaces, each in its own error body. */
  async function refused(token: string, code: string, label: string): Promise<void> {
    nseRefused(await nse(token), code, label);
    storwareRefused(await storware(token), code, label);
  }
  async function accepted(token: string, label: string): Promise<void> {
    assert.equal((await nse(token)).statusCode, 200, `${label} (NSE)`);
    assert.equal((await storware(token)).statusCode, 200, `${label} (Storware)`);
  }

  /** A fresh session of alice and the claims a token of it carries, signed by nobody yet. */
  async function session(): Promise<{ token: string; claims: Claims }> {
    const token = await nseSignIn(ctx, 'alice', PASSWORD);
    const now = Math.floor(ctx.clock.now() / 1000);
    const { sid } = claimsOf(token);
    return { token, claims: { username: 'alice', sid, gen: 0, iat: now, exp: now + 600, iss: 'gatehouse' } };
  }
  const sessionKey = () => ctx.core.keyring.currentSessionKey;
  const ours = (claims: Claims, header: Header = {}) =>
    hs256({ alg: 'HS256', typ: 'JWT', kid: sessionKey().kid, ...header }, claims, sessionKey().secret);

  before(async () => {
    ctx = await createTestContext(dialect);
    await ctx.core.tenants.create({ code: 'acme', name: 'Acme Corp' });
    await ctx.core.accounts.createUser({
      username: 'alice',
      password: PASSWORD,
      tenantCode: 'acme',
      role: 'admin',
      groups: ['Global Administrators'],
    });
  });
  after(() => ctx.close());

  test('a token made here with our session key is accepted (the forgeries below differ in one thing each)', async () => {
    const { claims } = await session();
    await accepted(ours(claims), 'control');
  });

  test('a token reads back the same claims where it was signed (filed as verified) and where it never was', async () => {
    const here = new TokenService(ctx.core.keyring, ctx.clock, ctx.config.issuer);
    const elsewhere = new TokenService(ctx.core.keyring, ctx.clock, ctx.config.issuer);
    const expiresAt = ctx.clock.now() + 600_000;
    const token = await here.signSessionToken({ username: 'alice', sid: 'sid-1', generation: 3, expiresAt });
    // Session tokens are signed without fast-jwt (tokens.ts, for speed): the bytes are its signer's.
    const key = sessionKey();
    const librarySigner = createSigner({ key: key.secret, algorithm: 'HS256', kid: key.kid });
    assert.equal(
      token,
      librarySigner({
        username: 'alice',
        sid: 'sid-1',
        gen: 3,
        iat: Math.floor(ctx.clock.now() / 1000),
        exp: Math.floor(expiresAt / 1000),
        iss: ctx.config.issuer,
      }),
    );
    const verified = await elsewhere.verifySessionToken(token);
    assert.deepEqual(await here.verifySessionToken(token), verified);
    assert.deepEqual(verified, {
      username: 'alice',
      sid: 'sid-1',
      gen: 3,
      iat: Math.floor(ctx.clock.now() / 1000),
      exp: Math.floor(expiresAt / 1000),
    });
    // Filed or not, its times are checked at every use.
    ctx.clock.advance(600_000 + (CLOCK_SKEW_SECONDS + 1) * 1000);
    for (const service of [here, elsewhere]) {
      await assert.rejects(service.verifySessionToken(token), { code: 'TOKEN_EXPIRED' });
    }
  });

  test('alg none is refused, with or without a signature', async () => {
    const { claims } = await session();
    const kid = sessionKey().kid;
    const unsigned = `${b64({ alg: 'none', typ: 'JWT', kid })}.${b64(claims)}.`;
    await refused(unsigned, 'TOKEN_INVALID', 'alg none');
    const signedNone = `${b64({ alg: 'none', kid })}.${b64(claims)}.${ours(claims).split('.')[2]}`;
    await refused(signedNone, 'TOKEN_INVALID', 'alg none with a signature');
    await refused(ours(claims, { alg: 'NONE' }), 'TOKEN_INVALID', 'alg NONE');
  });

  test('algorithm confusion: HS256 keyed with our ES256 public key, and asymmetric tokens where HS256 is expected', async () => {
    const { claims } = await session();
    const endpoints = ctx.core.keyring.currentEndpointsKey;
    const publicPem = createPublicKey(endpoints.privateKeyPem).export({ format: 'pem', type: 'spki' });
    await refused(
      hs256({ alg: 'HS256', kid: endpoints.kid }, claims, publicPem),
      'TOKEN_INVALID',
      'HS256 with the public key under the endpoints kid',
    );
    await refused(
      hs256({ alg: 'HS256', kid: sessionKey().kid }, claims, publicPem),
      'TOKEN_INVALID',
      'HS256 with the public key under the session kid',
    );
    // Signed with our own (real) Endpoints private key: a valid signature, but not a session token.
    for (const kid of [endpoints.kid, sessionKey().kid]) {
      const token = asymmetric({ alg: 'ES256', kid }, claims, endpoints.privateKeyPem);
      const [h, p, sig] = token.split('.') as [string, string, string];
      assert.ok(
        verify(
          'sha256',
          Buffer.from(`${h}.${p}`),
          { key: publicPem, dsaEncoding: 'ieee-p1363' },
          Buffer.from(sig, 'base64url'),
        ),
        'the forged ES256 signature is itself valid',
      );
      await refused(
        token,
        'TOKEN_INVALID',
        `ES256 under ${kid === endpoints.kid ? 'the endpoints' : 'the session'} kid`,
      );
    }
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
    await refused(
      asymmetric({ alg: 'RS256', kid: sessionKey().kid }, claims, rsa.privateKey),
      'TOKEN_INVALID',
      'RS256',
    );
  });

  test('an Endpoints token (ES256, audience of a downstream service) is not a bearer token here', async () => {
    const login = await ctx.inject({
      method: 'POST',
      url: '/api/session/login',
      payload: { login: 'alice', password: PASSWORD },
    });
    const endpointsToken = json(login).endpointsTokens?.endpointsServerManagerToken;
    assert.equal(typeof endpointsToken, 'string', `an Endpoints token was issued: ${login.body}`);
    await refused(endpointsToken, 'TOKEN_INVALID', 'endpoints token');
    // Even carrying our session claims and our session key, an audience marks another service's token.
    const { claims } = await session();
    await refused(ours({ ...claims, aud: 'endpoints-server-manager' }), 'TOKEN_INVALID', 'aud');
  });

  test('a missing, unknown or non-string kid, and a foreign secret, are refused', async () => {
    const { claims } = await session();
    const { kid: _kid, ...noKid } = { alg: 'HS256', typ: 'JWT', kid: '' };
    await refused(hs256(noKid, claims, sessionKey().secret), 'TOKEN_INVALID', 'no kid');
    await refused(ours(claims, { kid: 'no-such-key' }), 'TOKEN_INVALID', 'unknown kid');
    await refused(ours(claims, { kid: 42 }), 'TOKEN_INVALID', 'numeric kid');
    await refused(
      hs256({ alg: 'HS256', kid: sessionKey().kid }, claims, 'a-secret-that-is-not-ours-at-all-32b'),
      'TOKEN_INVALID',
      'foreign secret',
    );
  });

  test('a wrong or missing issuer, and missing or malformed claims, are refused', async () => {
    const { claims } = await session();
    await refused(ours({ ...claims, iss: 'someone-else' }), 'TOKEN_INVALID', 'wrong iss');
    const { iss: _iss, ...noIss } = claims;
    await refused(ours(noIss), 'TOKEN_INVALID', 'missing iss');
    const { sid: _sid, ...noSid } = claims;
    await refused(ours(noSid), 'TOKEN_INVALID', 'missing sid');
    await refused(ours({ ...claims, gen: 1.5 }), 'TOKEN_INVALID', 'fractional gen');
    // A generation the session never issued: only someone holding the key could make it.
    await refused(ours({ ...claims, gen: 7 }), 'TOKEN_INVALID', 'future gen');
  });

  test(`exp, nbf and iat are checked with ${CLOCK_SKEW_SECONDS}s of clock skew, no more`, async () => {
    const { claims } = await session();
    const now = Math.floor(ctx.clock.now() / 1000);
    const within = CLOCK_SKEW_SECONDS - 10;
    const beyond = CLOCK_SKEW_SECONDS + 10;
    await accepted(ours({ ...claims, exp: now - within }), 'exp just past, within the skew');
    await refused(ours({ ...claims, exp: now - beyond }), 'TOKEN_EXPIRED', 'exp past beyond the skew');
    await accepted(ours({ ...claims, nbf: now + within }), 'nbf just ahead, within the skew');
    await refused(ours({ ...claims, nbf: now + beyond }), 'TOKEN_INVALID', 'nbf ahead beyond the skew');
    await accepted(ours({ ...claims, iat: now + within }), 'iat just ahead, within the skew');
    await refused(ours({ ...claims, iat: now + beyond }), 'TOKEN_INVALID', 'iat ahead beyond the skew');
    await refused(ours({ ...claims, exp: String(now + 600) }), 'TOKEN_INVALID', 'exp not a number');
    await refused(ours({ ...claims, nbf: String(now + beyond) }), 'TOKEN_INVALID', 'nbf not a number');
    // JSON's 1e400 reads as Infinity: a token that never expires, or was issued at the dawn of time.
    const signedText = (payload: string) => {
      const input = `${b64({ alg: 'HS256', typ: 'JWT', kid: sessionKey().kid })}.${Buffer.from(payload).toString('base64url')}`;
      return `${input}.${createHmac('sha256', sessionKey().secret).update(input).digest('base64url')}`;
    };
    for (const claim of ['exp', 'iat', 'nbf']) {
      const payload = JSON.stringify({ ...claims, [claim]: 0 }).replace(
        `"${claim}":0`,
        `"${claim}":${claim === 'exp' ? '' : '-'}1e400`,
      );
      await refused(signedText(payload), 'TOKEN_INVALID', `${claim} infinite`);
    }
  });

  test('after a rotation the replaced key verifies through its overlap, then is retired and refused', async () => {
    const { token, claims } = await session();
    const oldKid = kidOf(token);
    const overlapMs = 2 * 60_000;
    const [rotated] = await ctx.core.keyring.rotate(['session', 'endpoints'], overlapMs);
    assert.equal(rotated?.replaced[0]?.kid, oldKid);
    const oldKey = ctx.core.keyring.sessionKey(oldKid);
    assert.ok(oldKey, 'the old key still verifies');
    await accepted(token, 'token of the replaced key within the overlap');
    const fresh = await nseSignIn(ctx, 'alice', PASSWORD);
    assert.notEqual(kidOf(fresh), oldKid, 'new tokens are signed with the new key');
    const jwks = async () =>
      (
        json(await ctx.inject({ method: 'GET', url: '/.well-known/jwks.json' })).keys as Array<{
          kid: string;
        }>
      ).map((k) => k.kid);
    assert.equal((await jwks()).length, 2, 'the replaced Endpoints key is published through its overlap');

    ctx.clock.advance(overlapMs + 1);
    await refused(token, 'TOKEN_INVALID', 'token of a retired key');
    // Refused for its key alone: the same claims under the retired key's secret, freshly dated.
    const now = Math.floor(ctx.clock.now() / 1000);
    await refused(
      hs256({ alg: 'HS256', kid: oldKid }, { ...claims, iat: now, exp: now + 600 }, oldKey.secret),
      'TOKEN_INVALID',
      'retired key, fresh claims',
    );
    await accepted(fresh, 'token of the new key');
    assert.deepEqual(
      await jwks(),
      [ctx.core.keyring.currentEndpointsKey.kid],
      'the retired key is unpublished',
    );
  });

  test('a key rotated in by another process is heard here within a second; unknown kids reload the keys at most once a second', async () => {
    const other = connectStore({ databaseUrl: ctx.config.databaseUrl, dataDir: ctx.config.dataDir });
    const otherCore = await createCore({ config: ctx.config, store: other, clock: ctx.clock });
    /** Polls on the real clock: the change feed runs on it. */
    const within = async (probe: () => Promise<boolean>, what: string) => {
      const deadline = Date.now() + 1500;
      while (!(await probe())) {
        assert.ok(Date.now() < deadline, `${what} within a second`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    };
    try {
      const { token } = await session();
      const auth = await otherCore.sessions.authenticateBearer(token);
      assert.ok(auth.session, 'the other process sees the session');

      ctx.clock.advance(2000);
      // A forged kid makes this node read the keys, and spends the allowance for the second.
      await refused(ours((await session()).claims, { kid: 'forged-kid' }), 'TOKEN_INVALID', 'forged kid');
      assert.equal(
        await ctx.core.keyring.reloadIfStale(),
        false,
        'another unknown kid within the second reads nothing',
      );
      ctx.clock.advance(1001);
      assert.equal(await ctx.core.keyring.reloadIfStale(), true, 'after the second it reads the keys');

      // A key made elsewhere is heard on the change feed: its tokens verify here, and this node
      // signs with it, without a token of it or a minute's wait.
      const [rotated] = await otherCore.keyring.rotate(['session']);
      const elsewhere = await otherCore.sessions.issueToken({ ...auth, session: auth.session });
      assert.equal(kidOf(elsewhere), rotated?.kid);
      await within(async () => (await nse(elsewhere)).statusCode === 200, 'the new key verifying here');
      await accepted(elsewhere, 'token of a key rotated in on another process');
      await within(
        async () => kidOf(await nseSignIn(ctx, 'alice', PASSWORD)) === rotated?.kid,
        'this node signing with the new key',
      );
    } finally {
      await otherCore.close();
      await other.destroy();
    }
  });
});
