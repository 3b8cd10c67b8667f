import {
  createCipheriv,
  createDecipheriv,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type JsonWebKey,
  randomBytes,
} from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { type ChangeFeed, changeTags, FEED_BOUND_MS } from '../store/change-feed.js';
import type { Store } from '../store/connect.js';
import type { SigningKeyPurpose, SigningKeyRow } from '../store/repositories/signing-keys.js';
import type { AuditService } from './audit.js';
import type { Clock } from './clock.js';

/**
 * Signing keys live in the store so that every node of a deployment signs and verifies with the
 * same keys. Their private material is sealed (AES-256-GCM) with a master key that never enters
 * the store: GATEHOUSE_MASTER_KEY, or a key file created in the data dir on first start.
 */
export interface SessionKey {
  readonly kid: string;
  readonly secret: Buffer;
  /** Epoch ms from which the key no longer verifies; null: not replaced. */
  readonly retiresAt: number | null;
}

export interface EndpointsKey {
  readonly kid: string;
  readonly privateKeyPem: string;
  readonly publicJwk: JsonWebKey;
  readonly retiresAt: number | null;
}

export type KeyPurpose = SigningKeyPurpose;
export const KEY_PURPOSES: readonly KeyPurpose[] = ['session', 'endpoints'];

/** What `gatehouse keys list` shows of a key: never its material. */
export interface KeyView {
  readonly kid: string;
  readonly purpose: KeyPurpose;
  readonly algorithm: string;
  readonly createdAt: number;
  /** active: signs (and verifies); verifying: replaced, verifies until retiresAt; retired: refused. */
  readonly state: 'active' | 'verifying' | 'retired';
  readonly retiresAt: number | null;
}

export interface RotatedKey {
  readonly purpose: KeyPurpose;
  readonly kid: string;
  /** The keys it replaced, and when they stop verifying. */
  readonly replaced: readonly { readonly kid: string; readonly retiresAt: number }[];
}

/**
 * A node that did not make a new key learns of it on its next reload: at the latest this long
 * after its previous one (so every node signs with the new key within a minute of a rotation;
 * config requires GATEHOUSE_KEY_OVERLAP to cover it), or at once on a token with an unknown kid.
 */
export const KEY_RELOAD_INTERVAL_MS = 60_000;
/** Unknown kids reload the keys at most this often, so forged kids cannot turn into a query flood. */
const UNKNOWN_KID_RELOAD_MS = 1000;

const isVerifying = (retiresAt: number | null, now: number) => retiresAt === null || retiresAt > now;

export function loadMasterKey(configured: Buffer | undefined, dataDir: string): Buffer {
  if (configured) return configured;
  const file = path.join(dataDir, 'master.key');
  if (!existsSync(file)) {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    try {
      // 'wx': if another process made it first, keep theirs.
      writeFileSync(file, randomBytes(32).toString('hex'), { mode: 0o600, flag: 'wx' });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
  }
  const key = Buffer.from(readFileSync(file, 'utf8').trim(), 'hex');
  if (key.length !== 32) throw new Error(`${file} does not hold a 32-byte hex key`);
  return key;
}

function seal(masterKey: Buffer, plaintext: Buffer, kid: string): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', masterKey, iv);
  // The kid is bound as associated data, so sealed material cannot be swapped between rows.
  cipher.setAAD(Buffer.from(kid));
  const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return ['v1', iv, cipher.getAuthTag(), ciphertext]
    .map((p) => (typeof p === 'string' ? p : p.toString('base64url')))
    .join('.');
}

function unseal(masterKey: Buffer, sealed: string, kid: string): Buffer {
  const [version, iv, tag, ciphertext] = sealed.split('.');
  if (version !== 'v1' || !iv || !tag || ciphertext === undefined) throw new Error('unknown sealed format');
  const decipher = createDecipheriv('aes-256-gcm', masterKey, Buffer.from(iv, 'base64url'));
  decipher.setAAD(Buffer.from(kid));
  decipher.setAuthTag(Buffer.from(tag, 'base64url'));
  return Buffer.concat([decipher.update(Buffer.from(ciphertext, 'base64url')), decipher.final()]);
}

function publicJwkOf(privateKeyPem: string, kid: string): JsonWebKey {
  const jwk = createPublicKey(createPrivateKey(privateKeyPem)).export({ format: 'jwk' });
  return { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y, kid, alg: 'ES256', use: 'sig' };
}

export class Keyring {
  readonly #store: Store;
  readonly #clock: Clock;
  readonly #masterKey: Buffer;
  readonly #overlapMs: number;
  readonly #audit: AuditService;
  #sessionKeys = new Map<string, SessionKey>();
  #endpointsKeys = new Map<string, EndpointsKey>();
  #currentSessionKid = '';
  #currentEndpointsKid = '';
  #lastReload = 0;
  /** The reload in flight: callers arriving meanwhile wait for it instead of being refused. */
  #reloading: Promise<void> | undefined;
  /** The change feed this process hears key changes on, once `watch` ran (a serving process). */
  #feed: ChangeFeed | undefined;
  /** A key change was heard after the last reload began. */
  #changed = false;

  constructor(
    store: Store,
    clock: Clock,
    masterKey: Buffer,
    options: { readonly overlapMs: number; readonly audit: AuditService },
  ) {
    this.#store = store;
    this.#clock = clock;
    this.#masterKey = masterKey;
    this.#overlapMs = options.overlapMs;
    this.#audit = options.audit;
  }

  /** Loads the keys, creating the first of each kind on an empty store. */
  async load(): Promise<void> {
    const lacking = (rows: readonly SigningKeyRow[]) =>
      KEY_PURPOSES.filter((purpose) => !rows.some((r) => r.purpose === purpose));
    if (lacking(await this.#store.signingKeys.listVerifying(this.#clock.now())).length > 0) {
      // Nodes started together on an empty store would each make a first key, and one node's JWKS
      // would miss another's until its next reload: one at a time, the others find it made.
      await this.#store.transactionAlone(async (tx) => {
        for (const purpose of lacking(await tx.signingKeys.listVerifying(this.#clock.now()))) {
          await this.#insert(tx, purpose);
        }
      });
    }
    await this.#reload();
  }

  /**
   * Another node (or `gatehouse keys rotate`) may have made a key since we loaded. Called on a
   * token with an unknown kid: reloads unless a reload ran less than a second ago; true if the
   * keys are now as fresh as that rule allows.
   */
  async reloadIfStale(): Promise<boolean> {
    if (this.#reloading) {
      await this.#reloading;
      return true;
    }
    if (this.#clock.now() - this.#lastReload < UNKNOWN_KID_RELOAD_MS) return false;
    await this.#reload();
    return true;
  }

  /**
   * Reloads whenever any process (another node, `gatehouse keys rotate`) changes a key, so that a
   * key retired at once (a leaked one) stops verifying everywhere within FEED_BOUND_MS, as a
   * logout does. The CLI's processes serve no tokens and never watch.
   */
  watch(): void {
    if (this.#feed) return;
    this.#feed = this.#store.changes;
    this.#feed.subscribe((tags) => {
      if (!tags.includes(changeTags.signingKeys) && !tags.includes(changeTags.all)) return;
      this.#changed = true;
      this.freshen().catch(() => {});
    });
  }

  /**
   * Whether the keys in memory must be reloaded before they are trusted: a change was heard since
   * the last reload began, or the feed that would tell of one is not live and the last reload is
   * older than the feed's bound. Cheap enough for every verification.
   */
  get mayBeStale(): boolean {
    if (this.#changed) return true;
    const feed = this.#feed;
    return feed !== undefined && !feed.isLive() && this.#clock.now() - this.#lastReload >= FEED_BOUND_MS;
  }

  /** Reloads until no change is heard that the keys in memory might predate. */
  async freshen(): Promise<void> {
    while (this.mayBeStale) await (this.#reloading ?? this.#reload());
  }

  /**
   * Before signing: picks up a key rotated in elsewhere, heard on the feed or at the latest every
   * KEY_RELOAD_INTERVAL_MS (the safety net of a process that does not watch).
   */
  async refreshIfDue(): Promise<void> {
    if (this.mayBeStale) return this.freshen();
    if (this.#reloading) return this.#reloading;
    if (this.#clock.now() - this.#lastReload >= KEY_RELOAD_INTERVAL_MS) await this.#reload();
  }

  get currentSessionKey(): SessionKey {
    const key = this.#sessionKeys.get(this.#currentSessionKid);
    if (!key) throw new Error('keyring not loaded');
    return key;
  }

  /** A session key that verifies now; a retired or unknown kid gives undefined. */
  sessionKey(kid: string): SessionKey | undefined {
    const key = this.#sessionKeys.get(kid);
    return key && isVerifying(key.retiresAt, this.#clock.now()) ? key : undefined;
  }

  get currentEndpointsKey(): EndpointsKey {
    const key = this.#endpointsKeys.get(this.#currentEndpointsKid);
    if (!key) throw new Error('keyring not loaded');
    return key;
  }

  /** Public keys for /.well-known/jwks.json: the signing key and those still in their overlap. */
  publicJwks(): JsonWebKey[] {
    const now = this.#clock.now();
    return [...this.#endpointsKeys.values()]
      .filter((k) => isVerifying(k.retiresAt, now))
      .map((k) => k.publicJwk);
  }

  /**
   * Makes a new signing key for each purpose; the keys it replaces keep verifying for
   * `overlapMs` (default GATEHOUSE_KEY_OVERLAP), then are refused. 0 retires them at once: every
   * token they signed stops working (for a key that leaked).
   */
  async rotate(purposes: readonly KeyPurpose[], overlapMs: number = this.#overlapMs): Promise<RotatedKey[]> {
    const rotated: RotatedKey[] = [];
    for (const purpose of purposes) {
      const now = this.#clock.now();
      const retiresAt = now + overlapMs;
      const done = await this.#store.transaction(async (tx) => {
        // Exactly the keys active before this one: two rotations at once must not retire each
        // other's new key (each keeps the other's as a verifying key until the next rotation).
        const previous = await tx.signingKeys.activeKids(purpose);
        const kid = await this.#insert(tx, purpose);
        await tx.signingKeys.scheduleRetirement(previous, retiresAt);
        // Keys replaced by earlier rotations verify no longer than the ones replaced now: with
        // `--overlap 0` after a leak, a key replaced yesterday (and maybe the leaked one) would
        // otherwise verify until its own date, up to a day more.
        const earlier = await tx.signingKeys.retireReplacedBy(purpose, retiresAt);
        const replaced = [...previous, ...earlier];
        await this.#audit.record(
          {
            action: 'key.rotate',
            actor: undefined,
            target: { type: 'signing-key', id: kid, name: purpose },
            outcome: 'success',
            reason: `replaces ${replaced.join(', ') || 'none'}; they verify until ${new Date(retiresAt).toISOString()}`,
          },
          tx,
        );
        return { purpose, kid, replaced: replaced.map((k) => ({ kid: k, retiresAt })) };
      });
      rotated.push(done);
    }
    await this.#reload();
    return rotated;
  }

  /** Every key, retired ones too, with its state now; never its material. */
  async list(): Promise<KeyView[]> {
    const now = this.#clock.now();
    const rows = await this.#store.signingKeys.listAll();
    const signing = new Map<KeyPurpose, string>();
    for (const row of rows) if (row.retired_at === null) signing.set(row.purpose, row.kid);
    return rows.map((row) => ({
      kid: row.kid,
      purpose: row.purpose,
      algorithm: row.algorithm,
      createdAt: row.created_at,
      retiresAt: row.retired_at,
      state:
        signing.get(row.purpose) === row.kid
          ? 'active'
          : isVerifying(row.retired_at, now)
            ? 'verifying'
            : 'retired',
    }));
  }

  #reload(): Promise<void> {
    this.#reloading ??= (async () => {
      const heard = this.#changed;
      try {
        // Stamped first: a failing store must not be retried by every request.
        this.#lastReload = this.#clock.now();
        this.#changed = false;
        this.#apply(await this.#store.signingKeys.listVerifying(this.#clock.now()));
      } catch (error) {
        // A change heard and not yet read stays unread: the keys are not trusted until it is.
        if (heard) this.#changed = true;
        throw error;
      } finally {
        this.#reloading = undefined;
      }
    })();
    return this.#reloading;
  }

  async #insert(store: Pick<Store, 'signingKeys'>, purpose: KeyPurpose): Promise<string> {
    const kid = randomBytes(12).toString('base64url');
    const now = this.#clock.now();
    if (purpose === 'session') {
      await store.signingKeys.insert({
        kid,
        purpose,
        algorithm: 'HS256',
        sealed_material: seal(this.#masterKey, randomBytes(32), kid),
        public_jwk: null,
        created_at: now,
        retired_at: null,
      });
      return kid;
    }
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const pem = privateKey.export({ format: 'pem', type: 'pkcs8' });
    const jwk = { ...publicKey.export({ format: 'jwk' }), kid, alg: 'ES256', use: 'sig' };
    // Written for people reading the table; the keyring derives the key it publishes (#apply).
    await store.signingKeys.insert({
      kid,
      purpose,
      algorithm: 'ES256',
      sealed_material: seal(this.#masterKey, Buffer.from(pem), kid),
      public_jwk: JSON.stringify(jwk),
      created_at: now,
      retired_at: null,
    });
    return kid;
  }

  #apply(rows: SigningKeyRow[]): void {
    const sessionKeys = new Map<string, SessionKey>();
    const endpointsKeys = new Map<string, EndpointsKey>();
    // Rows come oldest first: the newest key without a retirement date signs; if every key has
    // one (a rotation elsewhere is half-seen), the newest still verifying does.
    let sessionKid = '';
    let endpointsKid = '';
    const pick = (current: string, row: SigningKeyRow, map: Map<string, { retiresAt: number | null }>) =>
      row.retired_at === null || !current || map.get(current)?.retiresAt !== null ? row.kid : current;
    for (const row of rows) {
      let material: Buffer;
      try {
        material = unseal(this.#masterKey, row.sealed_material, row.kid);
      } catch {
        throw new Error(
          `cannot unseal signing key ${row.kid}: the master key is not the one that sealed it ` +
            '(every node sharing a database needs the same GATEHOUSE_MASTER_KEY)',
        );
      }
      if (row.purpose === 'session' && row.algorithm === 'HS256') {
        sessionKeys.set(row.kid, { kid: row.kid, secret: material, retiresAt: row.retired_at });
        sessionKid = pick(sessionKid, row, sessionKeys);
      } else if (row.purpose === 'endpoints' && row.algorithm === 'ES256') {
        const privateKeyPem = material.toString('utf8');
        // Derived from the sealed private key, never read from `public_jwk`: anyone who can write
        // to the store but lacks the master key could otherwise publish a key of their own for
        // the downstream services to trust.
        const publicJwk = publicJwkOf(privateKeyPem, row.kid);
        endpointsKeys.set(row.kid, { kid: row.kid, privateKeyPem, publicJwk, retiresAt: row.retired_at });
        endpointsKid = pick(endpointsKid, row, endpointsKeys);
      }
    }
    this.#sessionKeys = sessionKeys;
    this.#endpointsKeys = endpointsKeys;
    this.#currentSessionKid = sessionKid;
    this.#currentEndpointsKid = endpointsKid;
  }
}
