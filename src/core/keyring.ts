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
import type { Store } from '../store/connect.js';
import type { SigningKeyRow } from '../store/repositories/signing-keys.js';
import type { Clock } from './clock.js';

/**
 * Signing keys live in the store so that every node of a deployment signs and verifies with the
 * same keys. Their private material is sealed (AES-256-GCM) with a master key that never enters
 * the store: GATEHOUSE_MASTER_KEY, or a key file created in the data dir on first start.
 */
export interface SessionKey {
  readonly kid: string;
  readonly secret: Buffer;
}

export interface EndpointsKey {
  readonly kid: string;
  readonly privateKeyPem: string;
  readonly publicJwk: JsonWebKey;
}

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

export class Keyring {
  readonly #store: Store;
  readonly #clock: Clock;
  readonly #masterKey: Buffer;
  #sessionKeys = new Map<string, SessionKey>();
  #endpointsKeys = new Map<string, EndpointsKey>();
  #currentSessionKid = '';
  #currentEndpointsKid = '';
  #lastReload = 0;

  constructor(store: Store, clock: Clock, masterKey: Buffer) {
    this.#store = store;
    this.#clock = clock;
    this.#masterKey = masterKey;
  }

  /** Loads the keys, creating the first of each kind on an empty store. */
  async load(): Promise<void> {
    let rows = await this.#store.signingKeys.listUnretired();
    if (!rows.some((r) => r.purpose === 'session')) {
      await this.#insert('session');
    }
    if (!rows.some((r) => r.purpose === 'endpoints')) {
      await this.#insert('endpoints');
    }
    rows = await this.#store.signingKeys.listUnretired();
    this.#apply(rows);
  }

  /**
   * Another node may have created or rotated a key since we loaded; an unknown kid triggers at
   * most one reload per second (so forged kids cannot turn into a query flood).
   */
  async reloadIfStale(): Promise<boolean> {
    const now = this.#clock.now();
    if (now - this.#lastReload < 1000) return false;
    this.#lastReload = now;
    this.#apply(await this.#store.signingKeys.listUnretired());
    return true;
  }

  get currentSessionKey(): SessionKey {
    const key = this.#sessionKeys.get(this.#currentSessionKid);
    if (!key) throw new Error('keyring not loaded');
    return key;
  }

  sessionKey(kid: string): SessionKey | undefined {
    return this.#sessionKeys.get(kid);
  }

  get currentEndpointsKey(): EndpointsKey {
    const key = this.#endpointsKeys.get(this.#currentEndpointsKid);
    if (!key) throw new Error('keyring not loaded');
    return key;
  }

  /** Public keys for /.well-known/jwks.json. */
  publicJwks(): JsonWebKey[] {
    return [...this.#endpointsKeys.values()].map((k) => k.publicJwk);
  }

  async #insert(purpose: 'session' | 'endpoints'): Promise<void> {
    const kid = randomBytes(12).toString('base64url');
    const now = this.#clock.now();
    if (purpose === 'session') {
      await this.#store.signingKeys.insert({
        kid,
        purpose,
        algorithm: 'HS256',
        sealed_material: seal(this.#masterKey, randomBytes(32), kid),
        public_jwk: null,
        created_at: now,
        retired_at: null,
      });
      return;
    }
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const pem = privateKey.export({ format: 'pem', type: 'pkcs8' });
    const jwk = { ...publicKey.export({ format: 'jwk' }), kid, alg: 'ES256', use: 'sig' };
    await this.#store.signingKeys.insert({
      kid,
      purpose,
      algorithm: 'ES256',
      sealed_material: seal(this.#masterKey, Buffer.from(pem), kid),
      public_jwk: JSON.stringify(jwk),
      created_at: now,
      retired_at: null,
    });
  }

  #apply(rows: SigningKeyRow[]): void {
    const sessionKeys = new Map<string, SessionKey>();
    const endpointsKeys = new Map<string, EndpointsKey>();
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
        sessionKeys.set(row.kid, { kid: row.kid, secret: material });
        this.#currentSessionKid = row.kid;
      } else if (row.purpose === 'endpoints' && row.algorithm === 'ES256') {
        const privateKeyPem = material.toString('utf8');
        const publicJwk = row.public_jwk
          ? (JSON.parse(row.public_jwk) as JsonWebKey)
          : { ...createPublicKey(createPrivateKey(privateKeyPem)).export({ format: 'jwk' }), kid: row.kid };
        endpointsKeys.set(row.kid, { kid: row.kid, privateKeyPem, publicJwk });
        this.#currentEndpointsKid = row.kid;
      }
    }
    // Rows come oldest first, so the last of each purpose (the newest) signs.
    this.#sessionKeys = sessionKeys;
    this.#endpointsKeys = endpointsKeys;
    this.#lastReload = this.#clock.now();
  }
}
