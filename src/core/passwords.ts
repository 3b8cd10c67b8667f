import { timingSafeEqual } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { parseOptions as parseArgon2 } from '@node-rs/argon2';
import { GatehouseError } from '../errors.js';
import {
  HashPool,
  HashPoolBusy,
  HashPoolUnavailable,
  HashTaskAbandoned,
  type HashTaskOptions,
} from './hash-pool.js';
import type { HashOperation } from './metrics.js';
import { type PasswordPolicy, passwordPolicyProblem } from './password-policy.js';

export {
  loadCommonPasswords,
  PASSWORD_MAX_LENGTH,
  type PasswordPolicy,
  passwordPolicyProblem,
} from './password-policy.js';

const BCRYPT_MCF = /^\$2[abxy]\$\d{2}\$[./A-Za-z0-9]{53}$/;

export interface Argon2Settings {
  readonly memoryKiB: number;
  readonly iterations: number;
  readonly parallelism: number;
}

/**
 * The most work one imported hash may ask of the server per sign-in (each about 1.5-2.5 s of one
 * core here), so that a crafted hash cannot stall it. A stored hash past these caps (or past the
 * configured argon2 settings, if those are higher) never verifies.
 */
export const IMPORTED_HASH_CAPS = {
  argon2: { memoryKiB: 262_144, iterations: 10, parallelism: 16 },
  bcryptCost: 14,
  /** scrypt: N ≤ 2^20, r ≤ 32, p ≤ 16, memory 128·N·r ≤ 256 MiB, work N·r·p ≤ 2^21. */
  scrypt: { log2N: 20, r: 32, p: 16, memoryBytes: 256 * 1024 * 1024, work: 2 ** 21 },
} as const;

export type HashScheme = 'argon2id' | 'argon2i' | 'argon2d' | 'bcrypt' | 'scrypt';

/** Algorithm numbers of @node-rs/argon2 (a const enum, which isolated modules cannot import). */
const ARGON2 = { d: 0, i: 1, id: 2 } as const;
const ARGON2_VERSION_19 = 1;

const B64 = '[A-Za-z0-9+/]+={0,2}';
const ARGON2_PHC = new RegExp(
  `^\\$(argon2id|argon2i|argon2d)\\$v=(\\d{1,3})\\$m=(\\d{1,10}),t=(\\d{1,10}),p=(\\d{1,10})\\$(${B64})\\$(${B64})$`,
);
const BCRYPT = /^\$2[aby]\$(\d{2})\$[./A-Za-z0-9]{53}$/;
const SCRYPT_PHC = new RegExp(
  `^\\$scrypt\\$ln=(\\d{1,3}),r=(\\d{1,10}),p=(\\d{1,10})\\$(${B64})\\$(${B64})$`,
);

interface ScryptHash {
  readonly log2N: number;
  readonly r: number;
  readonly p: number;
  readonly salt: Buffer;
  readonly key: Buffer;
}

/** `$scrypt$ln=<log2 N>,r=<r>,p=<p>$<salt>$<key>`, base64 with or without padding (as in PHC). */
function parseScrypt(text: string): ScryptHash | undefined {
  const match = SCRYPT_PHC.exec(text);
  if (!match) return undefined;
  return {
    log2N: Number(match[1]),
    r: Number(match[2]),
    p: Number(match[3]),
    salt: Buffer.from(match[4] ?? '', 'base64'),
    key: Buffer.from(match[5] ?? '', 'base64'),
  };
}

function schemeOf(storedHash: string): HashScheme | undefined {
  if (storedHash.startsWith('$argon2id$')) return 'argon2id';
  if (storedHash.startsWith('$argon2i$')) return 'argon2i';
  if (storedHash.startsWith('$argon2d$')) return 'argon2d';
  if (/^\$2[aby]\$/.test(storedHash)) return 'bcrypt';
  if (storedHash.startsWith('$scrypt$')) return 'scrypt';
  return undefined;
}

function scrypt(
  pool: HashPool,
  password: string,
  hashToCheck: ScryptHash,
  options: HashTaskOptions,
): Promise<Uint8Array> {
  const N = 2 ** hashToCheck.log2N;
  return pool.run(
    {
      op: 'scrypt',
      password,
      salt: hashToCheck.salt,
      keyLength: hashToCheck.key.length,
      // OpenSSL needs 128·r·(N+p+2) bytes; the caps keep this at most a little over 256 MiB.
      options: {
        N,
        r: hashToCheck.r,
        p: hashToCheck.p,
        maxmem: 128 * hashToCheck.r * (N + hashToCheck.p + 2) + 1024,
      },
    },
    options,
  );
}

/** Seconds a caller refused by the full hash pool is asked to wait (Retry-After). */
export const BUSY_RETRY_AFTER_S = 1;

/**
 * The pool's refusals as the caller answers them. Full: 503 with Retry-After, the same for every
 * account (the pool refuses by its queue alone, before any account is looked at in a hash). A
 * task whose client left: an answer nobody reads, kept apart in the logs and metrics.
 */
async function refusalsAsErrors<T>(operation: Promise<T>): Promise<T> {
  try {
    return await operation;
  } catch (error) {
    if (error instanceof HashPoolBusy) throw serviceBusy();
    if (error instanceof HashTaskAbandoned) {
      throw new GatehouseError('CLIENT_CLOSED_REQUEST', 'the client left before its password was checked');
    }
    throw error;
  }
}

const serviceBusy = () =>
  new GatehouseError(
    'SERVICE_BUSY',
    'too many password checks are waiting for a hashing thread (GATEHOUSE_HASH_QUEUE_LIMIT)',
    { 'Retry-After': String(BUSY_RETRY_AFTER_S) },
  );

/** Runs a password operation; the metrics count it as queued or running while it does, and time it. */
export interface HashTimer {
  timeHash<T>(operation: HashOperation, work: () => Promise<T>): Promise<T>;
  /** Counts a wait for a turn to check a password as queued while it lasts (not timed). */
  countWaiting<T>(wait: () => Promise<T>): Promise<T>;
}

const untimed: HashTimer = { timeHash: (_operation, work) => work(), countWaiting: (wait) => wait() };

/**
 * New hashes are argon2id through @node-rs/argon2. Every hash and verification runs on the hash
 * pool (src/core/hash-pool.ts): off the event loop, at a lower CPU priority than it. Stored hashes may also be imported argon2i/argon2d, bcrypt or scrypt ones; each is
 * verified by its own scheme and replaced by an argon2id hash at the next sign-in (`needsRehash`).
 * A dummy hash made with the current settings lets unknown users cost the same work as known ones.
 */
export class PasswordHasher {
  readonly #settings: Argon2Settings;
  readonly #options;
  /** The caps, never below what the service itself is configured to produce. */
  readonly #argon2Caps: Argon2Settings;
  #dummyHash: Promise<string> | undefined;
  readonly #timed: HashTimer;
  readonly #pool: HashPool;

  /**
   * `timer` (the metrics) sees every hash and verify: the queue depth and their times. `threads`:
   * the size of the hash pool (GATEHOUSE_HASH_THREADS). `queueLimit`: how many operations (other
   * than an import's) may wait for a thread; one more is refused with SERVICE_BUSY
   * (GATEHOUSE_HASH_QUEUE_LIMIT).
   */
  constructor(
    settings: Argon2Settings,
    timer: HashTimer = untimed,
    threads = availableParallelism(),
    queueLimit = Number.POSITIVE_INFINITY,
  ) {
    this.#timed = timer;
    // Bulk hashing (imports) may use a thread per core whatever this process's share.
    this.#pool = new HashPool(threads, Math.max(threads, availableParallelism()), queueLimit);
    this.#settings = settings;
    this.#options = {
      algorithm: ARGON2.id,
      memoryCost: settings.memoryKiB,
      timeCost: settings.iterations,
      parallelism: settings.parallelism,
    };
    const caps = IMPORTED_HASH_CAPS.argon2;
    this.#argon2Caps = {
      memoryKiB: Math.max(caps.memoryKiB, settings.memoryKiB),
      iterations: Math.max(caps.iterations, settings.iterations),
      parallelism: Math.max(caps.parallelism, settings.parallelism),
    };
  }

  /**
   * `bulk`: one of many hashes of one job (an import), which may use every core; `admitted`: made
   * within a sign-in's turn (the dummy), never refused for the queue.
   */
  hash(password: string, options: Pick<HashTaskOptions, 'bulk' | 'admitted'> = {}): Promise<string> {
    return refusalsAsErrors(
      this.#timed.timeHash('hash', () =>
        this.#pool.run<string>({ op: 'argon2-hash', password, options: this.#options }, options),
      ),
    );
  }

  /**
   * Throws SERVICE_BUSY when a check given now would be refused: a sign-in asks first, so that
   * in a storm a refusal costs no reads of the store (measured in docs/scaling.md).
   */
  refuseIfBusy(): void {
    if (this.#pool.full()) throw serviceBusy();
  }

  /**
   * Waits for a turn to check a password (HashPool.turn) and answers the function that ends it: a
   * throttled check reads its counters and account within the turn, when a thread is about to be
   * free. SERVICE_BUSY past the queue limit; CLIENT_CLOSED_REQUEST if the caller left meanwhile.
   */
  turn(abandoned?: () => boolean): Promise<() => void> {
    return refusalsAsErrors(this.#timed.countWaiting(() => this.#pool.turn(abandoned)));
  }

  /** Stops the hashing threads (they hold no process open while idle anyway). */
  close(): Promise<void> {
    return this.#pool.close();
  }

  /**
   * Whether `storedHash` matches `password`, by the scheme the hash names. A malformed hash, one of
   * an unknown scheme or one past the caps reads as "wrong password" (false), never as an error
   * that would tell accounts apart.
   *
   * A verification (and `verifyDummy`, `padMiss`) is a sign-in's check, made within its turn
   * (`turn`): the turn was its admission, so the pool takes it whatever its queue (refused after
   * the account was read, an unknown name's dummy was answered 503 where an account whose check
   * had started was answered 401). SERVICE_BUSY comes from `refuseIfBusy` and `turn` alone.
   */
  verify(storedHash: string, password: string, abandoned?: () => boolean): Promise<boolean> {
    return refusalsAsErrors(
      this.#timed.timeHash('verify', () => this.#verify(storedHash, password, { abandoned, admitted: true })),
    );
  }

  async #verify(storedHash: string, password: string, options: HashTaskOptions): Promise<boolean> {
    try {
      const scheme = schemeOf(storedHash);
      if (scheme === undefined || this.#capProblem(storedHash) !== undefined) return false;
      if (scheme === 'bcrypt') {
        return await this.#pool.run<boolean>({ op: 'bcrypt-verify', hash: storedHash, password }, options);
      }
      if (scheme === 'scrypt') {
        const parsed = parseScrypt(storedHash);
        if (!parsed) return false;
        return timingSafeEqual(await scrypt(this.#pool, password, parsed, options), parsed.key);
      }
      return await this.#pool.run<boolean>({ op: 'argon2-verify', hash: storedHash, password }, options);
    } catch (error) {
      // The library refusing a hash it cannot read is a "no"; the pool failing is no answer at all.
      if (error instanceof HashPoolUnavailable) throw error;
      return false;
    }
  }

  /**
   * After a sign-in's miss against `storedHash`, so that it takes as long as an unknown name's
   * (`verifyDummy`): a stored hash cheaper than the current settings (imported bcrypt, an argon2id
   * made before the settings were raised) is followed by the dummy's work too, so that its quick
   * "no" does not tell such accounts apart. (A stored hash dearer than the dummy still takes
   * longer; it is replaced at its user's next sign-in.) It never throws, and is not abandoned
   * with its client: it runs before the failure is counted (as the dummy's work of an unknown name
   * does), and thrown past the count, a pool too busy for it or a client gone had let a guess go
   * uncounted (answered 503 or not at all) while a right one signed in. Made within the turn, it
   * is not refused for the queue; a hashing thread lost only makes the refusal come sooner.
   */
  async padMiss(storedHash: string, password: string): Promise<void> {
    if (!this.needsRehash(storedHash)) return;
    await this.verifyDummy(password).catch(() => undefined);
  }

  /** Spends the same work as a real verification, for callers that must not reveal a miss. */
  async verifyDummy(password: string, abandoned?: () => boolean): Promise<false> {
    await this.verify(await this.#dummy(), password, abandoned);
    return false;
  }

  /**
   * The dummy hash, made on first use within a sign-in's turn (so never refused for the queue). A
   * failure to make it (a hashing thread lost) is not kept: kept, every unknown name would be
   * answered with it from then on, and every known account with its real answer.
   */
  #dummy(): Promise<string> {
    if (this.#dummyHash === undefined) {
      const made = this.hash('gatehouse-dummy-password-for-unknown-accounts', { admitted: true });
      this.#dummyHash = made;
      made.catch(() => {
        if (this.#dummyHash === made) this.#dummyHash = undefined;
      });
    }
    return this.#dummyHash;
  }

  /**
   * True unless `storedHash` is argon2id (v=19) with every parameter at least the configured one:
   * bcrypt, scrypt, argon2i/d and weaker argon2id hashes are replaced after the next sign-in.
   */
  needsRehash(storedHash: string): boolean {
    if (schemeOf(storedHash) !== 'argon2id') return true;
    try {
      const options = parseArgon2(storedHash);
      return (
        options.algorithm !== ARGON2.id ||
        options.version !== ARGON2_VERSION_19 ||
        options.memoryCost < this.#settings.memoryKiB ||
        options.timeCost < this.#settings.iterations ||
        options.parallelism < this.#settings.parallelism
      );
    } catch {
      return true;
    }
  }

  /**
   * After `password` verified against `storedHash`: if the hash is due for replacement, hashes the
   * password with the current settings and hands the new hash to `save` (which should replace the
   * stored hash only if it is still `storedHash`, so that a password changed meanwhile wins, and
   * answer whether it did). Answers whether it saved one. A failure is swallowed: the old hash
   * still works, and the next sign-in tries again; the sign-in itself must not fail over it.
   */
  async rehashIfNeeded(
    storedHash: string,
    password: string,
    save: (newHash: string) => Promise<boolean>,
  ): Promise<boolean> {
    if (!this.needsRehash(storedHash)) return false;
    try {
      return await save(await this.hash(password));
    } catch {
      return false;
    }
  }

  /**
   * Checks a pre-hashed password given for import: one of the accepted formats, well formed, and
   * within the caps. Throws VALIDATION_FAILED naming the problem (never quoting the hash).
   */
  checkImported(storedHash: string): HashScheme {
    const scheme = schemeOf(storedHash);
    if (scheme === undefined) {
      throw new GatehouseError(
        'VALIDATION_FAILED',
        'password_hash: not a supported hash (argon2id, argon2i or argon2d PHC string; bcrypt $2a$, $2b$ or $2y$; or $scrypt$ln=..,r=..,p=..$salt$hash)',
      );
    }
    const problem = this.#formatProblem(scheme, storedHash) ?? this.#capProblem(storedHash);
    if (problem !== undefined) throw new GatehouseError('VALIDATION_FAILED', `password_hash: ${problem}`);
    return scheme;
  }

  /** What is wrong with the shape of a hash of this scheme; undefined when nothing is. */
  #formatProblem(scheme: HashScheme, storedHash: string): string | undefined {
    if (scheme === 'bcrypt') {
      if (!BCRYPT.test(storedHash)) return 'not a well-formed bcrypt hash ($2b$<cost>$ and 53 characters)';
      const cost = Number(storedHash.slice(4, 6));
      if (cost < 4) return `bcrypt cost ${cost} is below the minimum 4`;
      // $2b$12$ then 22 characters of salt and 31 of hash, in bcrypt's own base64 alphabet.
      if (!BCRYPT_MCF.test(storedHash)) return 'not a well-formed bcrypt hash';
      return undefined;
    }
    if (scheme === 'scrypt') {
      const parsed = parseScrypt(storedHash);
      if (!parsed) return 'not a well-formed scrypt hash ($scrypt$ln=<log2 N>,r=<r>,p=<p>$<salt>$<hash>)';
      if (parsed.log2N < 1 || parsed.r < 1 || parsed.p < 1) return 'scrypt ln, r and p must be at least 1';
      if (parsed.salt.length < 8) return 'the scrypt salt must be at least 8 bytes';
      if (parsed.key.length < 16 || parsed.key.length > 64) return 'the scrypt hash must be 16 to 64 bytes';
      return undefined;
    }
    const match = ARGON2_PHC.exec(storedHash);
    if (!match) return `not a well-formed ${scheme} PHC string ($${scheme}$v=19$m=..,t=..,p=..$salt$hash)`;
    if (match[2] !== '19') return `${scheme} version ${match[2]} is not supported (only v=19)`;
    const [m, t, p] = [Number(match[3]), Number(match[4]), Number(match[5])];
    if (t < 1 || p < 1 || m < 8 * p) return `${scheme} parameters must have t ≥ 1, p ≥ 1 and m ≥ 8·p`;
    try {
      // The verifier's own parser: a hash it cannot read would refuse every password at sign-in.
      parseArgon2(storedHash);
    } catch {
      return `not a well-formed ${scheme} PHC string (salt or hash)`;
    }
    return undefined;
  }

  /** Which cap a hash exceeds; undefined when within them (or not parseable: verify says no). */
  #capProblem(storedHash: string): string | undefined {
    const scheme = schemeOf(storedHash);
    if (scheme === 'bcrypt') {
      const cost = Number(storedHash.slice(4, 6));
      const cap = IMPORTED_HASH_CAPS.bcryptCost;
      return cost > cap ? `bcrypt cost ${cost} exceeds the cap ${cap}` : undefined;
    }
    if (scheme === 'scrypt') {
      const parsed = parseScrypt(storedHash);
      if (!parsed) return 'not a well-formed scrypt hash';
      const caps = IMPORTED_HASH_CAPS.scrypt;
      if (parsed.log2N > caps.log2N) return `scrypt ln ${parsed.log2N} exceeds the cap ${caps.log2N}`;
      if (parsed.r > caps.r) return `scrypt r ${parsed.r} exceeds the cap ${caps.r}`;
      if (parsed.p > caps.p) return `scrypt p ${parsed.p} exceeds the cap ${caps.p}`;
      const N = 2 ** parsed.log2N;
      if (128 * N * parsed.r > caps.memoryBytes) {
        return `scrypt memory 128·N·r = ${(128 * N * parsed.r) / 2 ** 20} MiB exceeds the cap ${caps.memoryBytes / 2 ** 20} MiB`;
      }
      if (N * parsed.r * parsed.p > caps.work) {
        return `scrypt work N·r·p = 2^${Math.log2(N * parsed.r * parsed.p).toFixed(1)} exceeds the cap 2^${Math.log2(caps.work)}`;
      }
      return undefined;
    }
    if (scheme === undefined) return 'not a supported hash';
    const match = ARGON2_PHC.exec(storedHash);
    if (!match) return `not a well-formed ${scheme} PHC string`;
    const [m, t, p] = [Number(match[3]), Number(match[4]), Number(match[5])];
    const caps = this.#argon2Caps;
    if (m > caps.memoryKiB) return `${scheme} memory m=${m} KiB exceeds the cap ${caps.memoryKiB} KiB`;
    if (t > caps.iterations) return `${scheme} iterations t=${t} exceed the cap ${caps.iterations}`;
    if (p > caps.parallelism) return `${scheme} parallelism p=${p} exceeds the cap ${caps.parallelism}`;
    return undefined;
  }
}

/** Checks a new password; the message names the rule, never the password. */
export function checkPasswordPolicy(password: string, username: string, policy: PasswordPolicy): void {
  const problem = passwordPolicyProblem(password, username, policy);
  if (problem !== undefined) throw new GatehouseError('PASSWORD_POLICY', problem);
}
