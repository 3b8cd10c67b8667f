import { randomBytes } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { isGatehouseError } from '../errors.js';
import { isStoreUnavailable, type Store } from '../store/connect.js';
import type { JobRow } from '../store/repositories/jobs.js';
import type { Clock } from './clock.js';
import { newId } from './ids.js';
import { type JobTask, type JobView, jobView, type NewJob } from './jobs.js';

/**
 * What a job whose process stopped (crash, restart, shutdown) ends with, written by another
 * process once its lease has lapsed; or whose process could not write its outcome for as long.
 */
export const INTERRUPTED_JOB_ERROR =
  'interrupted: the process running the job stopped, or lost the database, before it ended; run the request again';

/**
 * What a job whose store failed under it ends with: "interrupted" too, since nothing in the
 * request caused it, so that the same request with its idempotency key runs it again (found by
 * review: an import whose connections were ended answered every retry with its failed job).
 */
const STORE_LOST_JOB_ERROR = 'interrupted: the database could not be reached; run the request again';

/** How often a job's outcome is tried again while the store cannot take it. */
const OUTCOME_RETRY_MS = 1000;

/** A job's outcome as written to its row. */
interface EndedJob {
  readonly status: string;
  readonly last_error: string;
  readonly status_detail?: string;
  readonly progress?: number;
  readonly tasks_json?: string;
}

/**
 * Whether a job ended interrupted: by this release's words or an earlier one's ("interrupted: the
 * server stopped while …"), since a job interrupted by an upgrade's restart carries the old ones.
 */
export const wasInterrupted = (lastError: string): boolean => lastError.startsWith('interrupted: ');

/** What the work of a job gets: where to report progress, and when to stop. */
export interface JobControl {
  readonly jobId: string;
  /** Aborted when this process shuts down; `report` throws once it is. */
  readonly signal: AbortSignal;
  /**
   * Records how far the work has come (`status_detail` for people, `progress` 0-100). Call it
   * between steps: it throws when the process is stopping, or when the job is no longer this
   * process's (its lease lapsed and it was marked failed), so that the work stops there.
   */
  report(statusDetail: string, progress: number): Promise<void>;
  /** Throws as `report` does once the process is stopping: for work about to start a long step. */
  throwIfStopping(): void;
}

/**
 * How a job that ran to its end turned out, when that is more than "successful": for example an
 * import whose bad rows failed (`partially_failed`) with one task per failed row.
 */
export interface JobOutcome {
  readonly status: string;
  readonly statusDetail: string;
  readonly lastError: string;
  readonly tasks?: readonly JobTask[];
}

/**
 * The work of a job; resolves with the final `status_detail` (status `successful`) or a whole
 * outcome. A throw fails the job.
 */
export type JobWork = (control: JobControl) => Promise<string | JobOutcome>;

export interface JobRunnerOptions {
  /** How long a lease lasts without renewal; the runner renews it every third of this. */
  readonly leaseMs?: number;
  /** Names this process in `lease_owner`; unique per process unless given. */
  readonly owner?: string;
}

class JobStopped extends Error {
  constructor(readonly lastError: string | undefined) {
    super(lastError ?? 'job taken over');
  }
}

const DEFAULT_LEASE_MS = 60_000;

/**
 * Runs jobs' work in the background of this process. While a job runs, its row carries a lease
 * (owner, expiry) that a timer renews; a job whose lease has expired belongs to a process that
 * died, and `recoverInterrupted` marks it failed. Leases, not "every running job", because on
 * PostgreSQL several nodes share the jobs table and each runs its own jobs.
 */
export class JobRunner {
  readonly owner: string;
  readonly #store: Store;
  readonly #clock: Clock;
  readonly #leaseMs: number;
  readonly #running = new Map<string, Promise<void>>();
  readonly #stopping = new AbortController();
  #timer: NodeJS.Timeout | undefined;
  #ticking = false;
  #watching = false;
  readonly #afterRecovery: (() => Promise<unknown>)[] = [];
  #unexpectedFailure:
    | ((job: { readonly id: string; readonly action: string }, error: unknown) => void)
    | undefined;

  constructor(store: Store, clock: Clock, options: JobRunnerOptions = {}) {
    // Every job waiting to write its outcome listens for the stop: more than Node's warning's 10.
    setMaxListeners(0, this.#stopping.signal);
    this.#store = store;
    this.#clock = clock;
    this.#leaseMs = options.leaseMs ?? DEFAULT_LEASE_MS;
    this.owner = options.owner ?? `${hostname()}/${process.pid}/${randomBytes(4).toString('hex')}`;
  }

  /** Jobs this process is running now. */
  get runningCount(): number {
    return this.#running.size;
  }

  /**
   * Stores the job as running under this process's lease, starts `work` after the caller has its
   * answer, and returns the job as stored (status `running`, progress 0).
   */
  async submit(input: Omit<NewJob, 'status'>, work: JobWork): Promise<JobView> {
    if (this.#stopping.signal.aborted) throw new Error('the job runner has been stopped');
    const now = this.#clock.now();
    const row: JobRow = {
      id: newId(now),
      action: input.action,
      job_summary: input.summary,
      object_id: input.objectId ?? '',
      object_type: input.objectType ?? '',
      object_name: input.objectName ?? '',
      status: 'running',
      status_detail: input.statusDetail ?? '',
      last_error: '',
      progress: 0,
      user_id: input.userId ?? null,
      tenant_id: input.tenantId ?? null,
      tasks_json: '[]',
      created_at: now,
      updated_at: now,
      lease_owner: this.owner,
      lease_expires_at: now + this.#leaseMs,
    };
    await this.#store.jobs.insert(row);
    const done = this.#run(row.id, row.action, work).finally(() => {
      this.#running.delete(row.id);
      if (this.#running.size === 0 && !this.#watching) this.#stopTimer();
    });
    this.#running.set(row.id, done);
    this.#startTimer();
    return jobView(row);
  }

  /**
   * Marks failed every running job whose lease has expired: its process stopped without
   * finishing it. Jobs of live processes (lease still valid) are left alone. Runs at start-up
   * and, while this process runs jobs, with every lease renewal.
   */
  async recoverInterrupted(): Promise<number> {
    const failed = await this.#store.jobs.failExpired(this.#clock.now(), INTERRUPTED_JOB_ERROR, this.owner);
    if (failed > 0) for (const cleanUp of this.#afterRecovery) await cleanUp();
    return failed;
  }

  /**
   * Tells `listener` of each job that failed on an error nobody expected (not a refusal, a stop or
   * an unreachable store): its record says only "an internal error stopped the job", and the
   * operator needs the error itself (a server logs it).
   */
  observeUnexpectedFailures(
    listener: (job: { readonly id: string; readonly action: string }, error: unknown) => void,
  ): void {
    this.#unexpectedFailure = listener;
  }

  /** Runs `cleanUp` whenever jobs of a stopped process have been marked failed (e.g. their files). */
  afterRecovery(cleanUp: () => Promise<unknown>): void {
    this.#afterRecovery.push(cleanUp);
  }

  /**
   * For a server process: looks for jobs of stopped processes every third of a lease, whether or
   * not this process runs jobs, so that a job whose node died is marked failed within about a
   * lease and a third even when the node that restarts has nothing to run.
   */
  watch(): void {
    this.#watching = true;
    this.#startTimer();
  }

  /**
   * Stops taking jobs, tells running work to stop at its next report, and waits until every
   * job has written its outcome: after this the store may be closed.
   */
  async drain(): Promise<void> {
    this.#stopping.abort();
    this.#stopTimer();
    await Promise.allSettled([...this.#running.values()]);
  }

  async #run(id: string, action: string, work: JobWork): Promise<void> {
    // Let the request that submitted the job answer first.
    await new Promise((resolve) => setImmediate(resolve));
    // The last progress the work reported, recorded or not: a job interrupted between two
    // recordings (its writes finishing after the stop) still tells how far it came.
    let latest: { readonly status_detail: string; readonly progress: number } | undefined;
    const control: JobControl = {
      jobId: id,
      signal: this.#stopping.signal,
      throwIfStopping: () => {
        if (this.#stopping.signal.aborted) throw new JobStopped(INTERRUPTED_JOB_ERROR);
      },
      report: async (statusDetail, progress) => {
        latest = { status_detail: statusDetail, progress: Math.max(0, Math.min(100, Math.round(progress))) };
        if (this.#stopping.signal.aborted) throw new JobStopped(INTERRUPTED_JOB_ERROR);
        const held = await this.#store.jobs.recordProgress(id, this.owner, {
          ...latest,
          updated_at: this.#clock.now(),
        });
        if (!held) throw new JobStopped(undefined);
      },
    };
    let ended: EndedJob;
    try {
      if (this.#stopping.signal.aborted) throw new JobStopped(INTERRUPTED_JOB_ERROR);
      const result = await work(control);
      const outcome: JobOutcome =
        typeof result === 'string' ? { status: 'successful', statusDetail: result, lastError: '' } : result;
      ended = {
        status: outcome.status,
        status_detail: outcome.statusDetail,
        last_error: outcome.lastError,
        progress: 100,
        ...(outcome.tasks ? { tasks_json: JSON.stringify(outcome.tasks) } : {}),
      };
    } catch (error) {
      // Taken over: another process already wrote the outcome.
      if (error instanceof JobStopped && error.lastError === undefined) return;
      if (!(error instanceof JobStopped) && !isGatehouseError(error) && !isStoreUnavailable(error)) {
        this.#unexpectedFailure?.({ id, action }, error);
      }
      // The detail and the progress of one report: "2,000 of 4,000" beside 50, not 25.
      ended = { status: 'failed', ...latest, last_error: failureText(error) };
    }
    await this.#record({ id, action }, ended);
  }

  /**
   * Writes a job's outcome. When the store cannot take it (its outage may be what failed the
   * job), it is tried again every second, the job still this process's and its lease renewed by
   * the timer once the store is back, until it is written. Before, a failed job read `running`
   * with no progress until its lease lapsed (a minute by default) and then blamed a stopped
   * process (found by review); and a job whose work had succeeded must not be written as failed
   * because its outcome met the outage (found by review of the first fix: its import would have
   * been run again). Gives up when the process stops, or when the job is no longer this
   * process's: its lease lapsed meanwhile and another process marked it.
   */
  async #record(job: { readonly id: string; readonly action: string }, ended: EndedJob): Promise<void> {
    for (;;) {
      try {
        await this.#store.jobs.finish(job.id, this.owner, { ...ended, updated_at: this.#clock.now() });
        return;
      } catch (error) {
        if (!isStoreUnavailable(error)) {
          // The lease lapses and another process marks the job interrupted.
          this.#unexpectedFailure?.(job, error);
          return;
        }
        try {
          await sleep(OUTCOME_RETRY_MS, undefined, { signal: this.#stopping.signal });
        } catch {
          return;
        }
      }
    }
  }

  #startTimer(): void {
    if (this.#timer || this.#stopping.signal.aborted) return;
    this.#timer = setInterval(() => void this.#tick(), Math.max(1, Math.floor(this.#leaseMs / 3)));
    this.#timer.unref();
  }

  #stopTimer(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  async #tick(): Promise<void> {
    if (this.#ticking) return;
    this.#ticking = true;
    try {
      if (this.#running.size > 0) {
        await this.#store.jobs.renewLeases(
          this.owner,
          [...this.#running.keys()],
          this.#clock.now() + this.#leaseMs,
        );
      }
      await this.recoverInterrupted();
    } catch {
      // The store is unreachable for now: try again at the next tick.
    } finally {
      this.#ticking = false;
    }
  }
}

/** The job's `last_error`: shown to callers, so it names the cause without internals. */
function failureText(error: unknown): string {
  if (error instanceof JobStopped && error.lastError) return error.lastError;
  if (isGatehouseError(error)) return error.detail || error.userMessage;
  if (isStoreUnavailable(error)) return STORE_LOST_JOB_ERROR;
  return 'an internal error stopped the job; run the request again';
}
