import { hash, verify } from '@node-rs/argon2';
import { GatehouseError } from '../errors.js';

export interface Argon2Settings {
  readonly memoryKiB: number;
  readonly iterations: number;
  readonly parallelism: number;
}

export interface PasswordPolicy {
  readonly minLength: number;
}

/** NIST SP 800-63B asks verifiers to accept at least 64 characters; hashing a megabyte is a DoS. */
export const PASSWORD_MAX_LENGTH = 1024;

/**
 * argon2id through @node-rs/argon2, which hashes on libuv's thread pool, off the event loop.
 * A dummy hash made with the same settings lets unknown users cost the same work as known ones.
 */
export class PasswordHasher {
  readonly #options;
  #dummyHash: Promise<string> | undefined;

  constructor(settings: Argon2Settings) {
    this.#options = {
      // Algorithm.Argon2id: a const enum, which isolated modules cannot import.
      algorithm: 2,
      memoryCost: settings.memoryKiB,
      timeCost: settings.iterations,
      parallelism: settings.parallelism,
    };
  }

  hash(password: string): Promise<string> {
    return hash(password, this.#options);
  }

  async verify(passwordHash: string, password: string): Promise<boolean> {
    try {
      return await verify(passwordHash, password);
    } catch {
      // A malformed stored hash must read as "wrong password", never as a 500 that tells apart
      // accounts.
      return false;
    }
  }

  /** Spends the same work as a real verification, for callers that must not reveal a miss. */
  async verifyDummy(password: string): Promise<false> {
    this.#dummyHash ??= this.hash('gatehouse-dummy-password-for-unknown-accounts');
    await this.verify(await this.#dummyHash, password);
    return false;
  }
}

/** Checks a new password; the message names the rule, never the password. */
export function checkPasswordPolicy(password: string, username: string, policy: PasswordPolicy): void {
  const length = [...password].length;
  if (length < policy.minLength) {
    throw new GatehouseError(
      'PASSWORD_POLICY',
      `The password must be at least ${policy.minLength} characters long.`,
    );
  }
  if (length > PASSWORD_MAX_LENGTH) {
    throw new GatehouseError(
      'PASSWORD_POLICY',
      `The password must be at most ${PASSWORD_MAX_LENGTH} characters long.`,
    );
  }
  if (
    username !== '' &&
    password.normalize('NFKC').toLowerCase().includes(username.normalize('NFKC').toLowerCase())
  ) {
    throw new GatehouseError('PASSWORD_POLICY', 'The password must not contain the username.');
  }
}
