import { createHmac } from 'node:crypto';
import { isIPv4, isIPv6 } from 'node:net';
import { failureTags } from '../store/change-feed.js';
import type { CounterKey, CounterState, FailureHit, HitRule } from '../store/repositories/login-throttle.js';
import type { Clock } from './clock.js';
import { accountKey } from './secrets.js';

/**
 * Where the counters live. Both implementations are shared by every node of a deployment: the
 * store's login_throttle table (default) and Redis (GATEHOUSE_REDIS_URL).
 */
export interface CounterBackend {
  read(keys: readonly CounterKey[]): Promise<(CounterState | undefined)[]>;
  /** Counts `count` (default 1) hits atomically; undefined while the counter locks its subject (nothing counted). */
  hit(key: CounterKey, now: number, rule: HitRule, count?: number): Promise<CounterState | undefined>;
  /**
   * Counts a failed sign-in in each of its counters (as `hit`) and announces it to the caches of
   * every process (the change feed, `failureTags`). On the store both commit in one transaction:
   * no lock is placed that another node's cached credentials would not hear of.
   */
  countFailure(hits: readonly FailureHit[], now: number): Promise<(CounterState | undefined)[]>;
  clear(keys: readonly CounterKey[]): Promise<void>;
  clearOwned(owner: string): Promise<number>;
  prune(now: number): Promise<number>;
  close(): Promise<void>;
}

export interface ThrottlePolicy {
  /** Failures of one account from one address that lock that pair (GATEHOUSE_LOCKOUT_THRESHOLD). */
  readonly pairThreshold: number;
  /** Failures of one account from all addresses that lock the account itself. */
  readonly accountThreshold: number;
  /** Failures from one address, whatever the accounts, that lock the address. */
  readonly addressThreshold: number;
  /** How long a lock lasts, and the window failures are counted in (GATEHOUSE_LOCKOUT_DURATION). */
  readonly lockMs: number;
  /** First step of the progressive delay; 0 turns the delay off. */
  readonly delayBaseMs: number;
  readonly delayMaxMs: number;
}

/** What a lock stops: one account from one address, the account from everywhere, or one address. */
export type LockScope = 'pair' | 'account' | 'address';

export interface SignInAttempt {
  readonly kind: 'user' | 'node';
  /** The name as typed: it is normalized, and kept only as a keyed hash. */
  readonly name: string;
  readonly ip: string;
}

export interface Admission {
  /** The lock that refuses this attempt, if any. */
  readonly locked: LockScope | undefined;
  /** How long the attempt was held before its answer. */
  readonly delayMs: number;
  /** Failures of this account from this address in the current window. */
  readonly pairFailures: number;
}

export interface PlacedLock {
  readonly scope: LockScope;
  readonly failures: number;
  readonly until: number;
}

const PRUNE_INTERVAL_MS = 60_000;

/**
 * The client's address as the counters key it: IPv4 as it is (also when IPv4-mapped), IPv6 by its
 * /64, since one host commonly holds a whole /64 and would otherwise get a fresh budget per address.
 */
export function addressKey(ip: string): string {
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(ip);
  if (mapped?.[1]) return mapped[1];
  if (isIPv4(ip)) return ip;
  const bare = ip.split('%')[0] ?? ip;
  if (isIPv6(bare)) return `${ipv6Groups(bare).slice(0, 4).join(':')}::/64`;
  return ip.slice(0, 64);
}

/** The eight groups of an IPv6 address, without leading zeros ("::" and a dotted tail expanded). */
function ipv6Groups(ip: string): string[] {
  let text = ip.toLowerCase();
  const dotted = /(\d{1,3}(?:\.\d{1,3}){3})$/.exec(text);
  if (dotted?.[1]) {
    const [a = 0, b = 0, c = 0, d = 0] = dotted[1].split('.').map(Number);
    text = `${text.slice(0, dotted.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const left = head === '' ? [] : head.split(':');
  const right = tail === undefined || tail === '' ? [] : tail.split(':');
  const zeros = tail === undefined ? [] : Array(8 - left.length - right.length).fill('0');
  return [...left, ...zeros, ...right].map((group) => Number.parseInt(group, 16).toString(16));
}

const isLocked = (state: CounterState | undefined, now: number) =>
  state?.lockedUntil != null && state.lockedUntil > now;

/**
 * Brute-force defence of every password sign-in (users and nodes, both surfaces, HTTP Basic).
 *
 * Failures are counted per account+address ("pair"), per account and per address, in a backend
 * every node shares. Each failure of a pair makes that pair's next answer wait longer
 * (delayBase·2^(n-1), capped); at `pairThreshold` the pair is locked: an attacker hammering one
 * account from one address locks only itself out, and the real user signs in from its own
 * address. The account itself is locked only at `accountThreshold` failures from all addresses
 * together (a spread attack); one address can add at most 2·pairThreshold-1 failures within a
 * window, so the account threshold is at least twice the pair threshold (config checks it). An
 * address failing `addressThreshold` times against any accounts (password spraying) is locked.
 *
 * Unknown names are counted exactly like real ones, so that neither the delay nor the lock tells
 * them apart. Names are kept only as an HMAC under a key derived from the master key: people type
 * passwords into the username field.
 */
export class LoginThrottle {
  readonly #backend: CounterBackend;
  readonly #clock: Clock;
  readonly #policy: ThrottlePolicy;
  readonly #subjectKey: Buffer;
  #lastPrune = Number.NEGATIVE_INFINITY;

  constructor(backend: CounterBackend, clock: Clock, policy: ThrottlePolicy, subjectKey: Buffer) {
    this.#backend = backend;
    this.#clock = clock;
    this.#policy = policy;
    this.#subjectKey = subjectKey;
  }

  /**
   * The change-feed tags of an attempt's counters (its account and its address): each counted
   * failure announces them, so that credentials remembered under them are dropped everywhere.
   */
  tagsOf(attempt: SignInAttempt): string[] {
    const { pair, account, address } = this.#keys(attempt);
    return failureTags([pair, account, address]);
  }

  get policy(): ThrottlePolicy {
    return this.#policy;
  }

  /** The counter subject of an account: a keyed hash of its kind and normalized name. */
  accountSubject(kind: 'user' | 'node', name: string): string {
    return createHmac('sha256', this.#subjectKey)
      .update(`${kind}\u0000${accountKey(name)}`)
      .digest('base64url');
  }

  /** The counter a lock of `scope` on this attempt is held in, as `scope subject` (names keyed). */
  lockKey(attempt: SignInAttempt, scope: LockScope): string {
    const key = this.#keys(attempt)[scope];
    return `${key.scope} ${key.subject}`;
  }

  #keys(attempt: SignInAttempt): { pair: CounterKey; account: CounterKey; address: CounterKey } {
    const account = this.accountSubject(attempt.kind, attempt.name);
    const address = addressKey(attempt.ip);
    return {
      pair: { scope: 'pair', subject: `${account} ${address}`, owner: account },
      account: { scope: 'account', subject: account },
      address: { scope: 'ip', subject: address },
    };
  }

  /** Failures a counter holds now: none once its window or its lock has run out. */
  #live(state: CounterState | undefined, now: number): number {
    if (!state) return 0;
    if (state.lockedUntil !== null) return state.lockedUntil > now ? state.hits : 0;
    return state.windowStart + this.#policy.lockMs > now ? state.hits : 0;
  }

  /** The wait before answering the next attempt of a pair that has failed `failures` times. */
  delayFor(failures: number): number {
    const { delayBaseMs, delayMaxMs } = this.#policy;
    if (failures <= 0 || delayBaseMs <= 0) return 0;
    return Math.min(delayBaseMs * 2 ** (failures - 1), delayMaxMs);
  }

  /**
   * Before checking a password: the lock that refuses the attempt, and the pair's progressive
   * delay it is due (waited out by the caller, AuthenticationService, without its turn).
   */
  async check(attempt: SignInAttempt): Promise<Admission> {
    const now = this.#clock.now();
    const keys = this.#keys(attempt);
    const [pair, account, address] = await this.#backend.read([keys.pair, keys.account, keys.address]);
    const locked: LockScope | undefined = isLocked(account, now)
      ? 'account'
      : isLocked(pair, now)
        ? 'pair'
        : isLocked(address, now)
          ? 'address'
          : undefined;
    const pairFailures = this.#live(pair, now);
    return { locked, delayMs: this.delayFor(pairFailures), pairFailures };
  }

  /** Counts a failed attempt in its three counters; answers the locks this very failure placed. */
  async fail(attempt: SignInAttempt): Promise<PlacedLock[]> {
    const now = this.#clock.now();
    const keys = this.#keys(attempt);
    const { pairThreshold, accountThreshold, addressThreshold, lockMs } = this.#policy;
    const rule = (lockAt: number): HitRule => ({ windowMs: lockMs, lockAt, lockMs });
    const counters: [LockScope, FailureHit][] = [
      ['pair', { key: keys.pair, rule: rule(pairThreshold) }],
      ['account', { key: keys.account, rule: rule(accountThreshold) }],
      ['address', { key: keys.address, rule: rule(addressThreshold) }],
    ];
    const states = await this.#backend.countFailure(
      counters.map(([, hit]) => hit),
      now,
    );
    await this.#prune(now);
    const placed: PlacedLock[] = [];
    counters.forEach(([scope, { rule }], at) => {
      const state = states[at];
      // The hit that reaches the threshold is the one that placed the lock; later ones are not counted.
      if (state?.lockedUntil != null && state.hits === rule.lockAt) {
        placed.push({ scope, failures: state.hits, until: state.lockedUntil });
      }
    });
    return placed;
  }

  /** A proven password clears its pair's failures; the account and address counts stay. */
  async succeed(attempt: SignInAttempt, admission: Admission): Promise<void> {
    if (admission.pairFailures > 0) await this.#backend.clear([this.#keys(attempt).pair]);
  }

  /**
   * Administrator's unlock: clears the account's own counter and every account+address counter of
   * it. Answers whether the account itself was locked and how many address counters went.
   */
  async unlockAccount(
    kind: 'user' | 'node',
    name: string,
  ): Promise<{ accountWasLocked: boolean; addressCounters: number }> {
    const account: CounterKey = { scope: 'account', subject: this.accountSubject(kind, name) };
    const [state] = await this.#backend.read([account]);
    await this.#backend.clear([account]);
    const addressCounters = await this.#backend.clearOwned(account.subject);
    return { accountWasLocked: isLocked(state, this.#clock.now()), addressCounters };
  }

  async #prune(now: number): Promise<void> {
    if (now - this.#lastPrune < PRUNE_INTERVAL_MS) return;
    this.#lastPrune = now;
    // Housekeeping: a prune that fails leaves old rows to the next one, not this attempt's answer.
    await this.#backend.prune(now).catch(() => {});
  }

  close(): Promise<void> {
    return this.#backend.close();
  }
}
