import type { Config } from '../config.js';
import type { Store } from '../store/connect.js';
import { endUnbackedLentSessionsInUse } from './authorization.js';
import type { Clock } from './clock.js';
import { firstIdAt } from './ids.js';
import type { Metrics } from './metrics.js';

/** The statuses a job ends in. A job in any other (`running`) is never deleted. */
export const ENDED_JOB_STATUSES: readonly string[] = ['successful', 'failed', 'partially_failed'];

/**
 * Rows deleted per statement, and how a backlog is paced. On SQLite a delete holds the file's
 * write lock and this process's event loop while it runs (3-5 ms for 200 sessions with their six
 * indexes) and writes ~900 KiB of WAL (about a page a session: the token index is in random
 * order). So each step is followed by a pause four times its length and takes 100 ms at least:
 * the sweep uses a fifth of the process at most, and the WAL checkpointer (every second) keeps up;
 * unpaced, the WAL reached SQLite's own checkpoint every ~40 steps, ~125 ms inside a delete.
 * That is 2,000 sessions a second at most: twenty times what 100 sign-ins a second leave.
 */
const SESSIONS_PER_DELETE = 200;
const JOBS_PER_DELETE = 100;
const PAUSE_PER_DELETE_TIME = 4;
const MIN_STEP_MS = 100;

/** How often a serving process sweeps (each time ±10 %, so that the nodes' sweeps spread out). */
export const SWEEP_INTERVAL_MS = 10 * 60_000;
/** The first sweep comes this long after start at the earliest, and within the first interval. */
const FIRST_SWEEP_MIN_MS = 60_000;

/**
 * How often a serving process checks that the lent API tokens in use are still backed by their
 * makers' authority (`endUnbackedLentSessionsInUse`), each time ±10 %: the longest a session opened
 * with such a token outlives its maker's authority when that was changed outside Gatehouse.
 */
export const LENT_TOKEN_CHECK_INTERVAL_MS = 60_000;

/** What one sweep deleted. */
export interface SweepResult {
  readonly sessions: number;
  readonly jobs: number;
}

export interface HousekeepingOptions {
  /** Between sweeps (default SWEEP_INTERVAL_MS); the first comes at a random point of the first. */
  readonly intervalMs?: number;
  /** Told of each sweep's result, once it has deleted something. */
  readonly onSweep?: (result: SweepResult) => void;
  /** Told of a sweep or check that failed (the store unreachable, say); the next one tries again. */
  readonly onError?: (error: unknown, task: 'sweep' | 'lent-tokens') => void;
  /** Between checks of the lent tokens in use (default LENT_TOKEN_CHECK_INTERVAL_MS). */
  readonly lentTokenCheckIntervalMs?: number;
  /** Told how many lent tokens a check found unbacked, once it found some (their sessions ended). */
  readonly onLentTokensEnded?: (tokens: number) => void;
}

/**
 * Deletes what the store no longer needs, by the retention settings: sessions long expired
 * (GATEHOUSE_SESSION_RETENTION) and jobs long finished, with an import's failed rows and
 * Idempotency-Key (GATEHOUSE_JOB_RETENTION). Without it both tables grow by every sign-in and job
 * for ever. The audit log is append-only and never swept (store/repositories/audit-events.ts).
 *
 * Every serving process sweeps on its own timer: a delete is idempotent, so two processes sweeping
 * at once only find less to do, and no process needs to be elected.
 */
export class HousekeepingService {
  readonly #store: Store;
  readonly #clock: Clock;
  readonly #config: Config;
  readonly #metrics: Metrics;
  #timer: NodeJS.Timeout | undefined;
  #lentTokenTimer: NodeJS.Timeout | undefined;
  #sweeping: Promise<unknown> | undefined;
  #checkingLentTokens: Promise<unknown> | undefined;
  #closed = false;

  constructor(store: Store, clock: Clock, config: Config, metrics: Metrics) {
    this.#store = store;
    this.#clock = clock;
    this.#config = config;
    this.#metrics = metrics;
  }

  /** One sweep now; answers what it deleted. Stops between two deletes once `close` is called. */
  async sweep(): Promise<SweepResult> {
    const sweeping = this.#sweep();
    this.#sweeping = sweeping.catch(() => {});
    return sweeping;
  }

  /**
   * Ends the sessions of lent tokens in use whose maker no longer manages their user; answers how
   * many tokens it found so.
   */
  async checkLentTokens(): Promise<number> {
    const checking = endUnbackedLentSessionsInUse(this.#store, this.#clock.now());
    this.#checkingLentTokens = checking.catch(() => {});
    return checking;
  }

  /**
   * Sweeps now and then, and checks the lent tokens in use every minute, from now on until `close`
   * (a serving process calls it).
   */
  watch(options: HousekeepingOptions = {}): void {
    if (this.#timer || this.#closed) return;
    const intervalMs = options.intervalMs ?? SWEEP_INTERVAL_MS;
    const next = (delayMs: number) => {
      this.#timer = setTimeout(async () => {
        try {
          const result = await this.sweep();
          if (result.sessions + result.jobs > 0) options.onSweep?.(result);
        } catch (error) {
          if (!this.#closed) {
            this.#metrics.recordHousekeepingFailure('sweep');
            options.onError?.(error, 'sweep');
          }
        }
        if (!this.#closed) next(intervalMs * (0.9 + 0.2 * Math.random()));
      }, delayMs);
      this.#timer.unref();
    };
    const earliest = Math.min(FIRST_SWEEP_MIN_MS, intervalMs);
    next(earliest + Math.random() * (intervalMs - earliest));
    const checkEveryMs = options.lentTokenCheckIntervalMs ?? LENT_TOKEN_CHECK_INTERVAL_MS;
    const nextCheck = () => {
      this.#lentTokenTimer = setTimeout(
        async () => {
          try {
            const ended = await this.checkLentTokens();
            if (ended > 0) options.onLentTokensEnded?.(ended);
          } catch (error) {
            if (!this.#closed) {
              this.#metrics.recordHousekeepingFailure('lent-tokens');
              options.onError?.(error, 'lent-tokens');
            }
          }
          if (!this.#closed) nextCheck();
        },
        checkEveryMs * (0.9 + 0.2 * Math.random()),
      );
      this.#lentTokenTimer.unref();
    };
    nextCheck();
  }

  /** Stops the timers and waits for a sweep under way to stop at its next delete, and for a check. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
    if (this.#lentTokenTimer) clearTimeout(this.#lentTokenTimer);
    this.#timer = undefined;
    this.#lentTokenTimer = undefined;
    await Promise.all([this.#sweeping, this.#checkingLentTokens]);
  }

  async #sweep(): Promise<SweepResult> {
    const now = this.#clock.now();
    const { sessionRetentionMs, sessionMaxLifetimeMs, jobRetentionMs } = this.#config;
    let sessions = 0;
    if (sessionRetentionMs !== undefined) {
      const expiredBefore = now - sessionRetentionMs;
      // A session created before this expired before `expiredBefore` (it lives at most the max
      // lifetime): the ids below it are a range of the primary key with nothing but such sessions,
      // as long as the max lifetime has not grown. One that outlives the range is kept by its expiry.
      const idBelow = firstIdAt(expiredBefore - sessionMaxLifetimeMs);
      sessions = await this.#inSteps('sessions', async () => {
        const deleted = await this.#store.sessions.deleteExpired(idBelow, expiredBefore, SESSIONS_PER_DELETE);
        return { deleted, more: deleted === SESSIONS_PER_DELETE };
      });
    }
    let jobs = 0;
    if (jobRetentionMs !== undefined) {
      const endedBefore = now - jobRetentionMs;
      jobs = await this.#inSteps('jobs', async () => {
        const ids = await this.#store.jobs.findEndedBefore(ENDED_JOB_STATUSES, endedBefore, JOBS_PER_DELETE);
        if (ids.length === 0) return { deleted: 0, more: false };
        // Another process sweeping at the same moment may have deleted some of them already.
        const deleted = await this.#store.transaction(async (tx) => {
          await tx.imports.deleteOfJobs(ids);
          return tx.jobs.deleteByIds(ids);
        });
        return { deleted, more: ids.length === JOBS_PER_DELETE };
      });
    }
    return { sessions, jobs };
  }

  /** Runs `deleteSome` while it finds a full step's worth, until the service closes. */
  async #inSteps(
    table: 'sessions' | 'jobs',
    deleteSome: () => Promise<{ deleted: number; more: boolean }>,
  ): Promise<number> {
    let total = 0;
    while (!this.#closed) {
      const started = performance.now();
      const { deleted, more } = await deleteSome();
      total += deleted;
      this.#metrics.recordDeletedRows(table, deleted);
      if (!more) break;
      const tookMs = performance.now() - started;
      const pauseMs = Math.max(MIN_STEP_MS - tookMs, PAUSE_PER_DELETE_TIME * tookMs);
      await new Promise((resolve) => setTimeout(resolve, pauseMs));
    }
    return total;
  }
}
