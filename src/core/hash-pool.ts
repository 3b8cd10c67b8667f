import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

/** What the pool's threads compute: each is a blocking call of the named library, in the thread. */
export type HashTask =
  | { readonly op: 'argon2-hash'; readonly password: string; readonly options: Record<string, number> }
  | { readonly op: 'argon2-verify'; readonly hash: string; readonly password: string }
  | { readonly op: 'bcrypt-verify'; readonly hash: string; readonly password: string }
  | {
      readonly op: 'scrypt';
      readonly password: string;
      readonly salt: Uint8Array;
      readonly keyLength: number;
      readonly options: { N: number; r: number; p: number; maxmem: number };
    };

/**
 * The pool could not compute a task: it is closing, or the thread computing it died. Not an answer
 * about the password: callers must not count it as a wrong one.
 */
export class HashPoolUnavailable extends Error {}

/**
 * The pool refused a task because too many wait already (its `queueLimit`): answered at once,
 * before any work, so that an overload is told to the caller instead of growing a queue no client
 * waits out.
 */
export class HashPoolBusy extends HashPoolUnavailable {}

/** The task's caller left (its client closed the connection) before a thread took it: not computed. */
export class HashTaskAbandoned extends HashPoolUnavailable {}

export interface HashTaskOptions {
  /** One of many tasks of one job (an import): may use the pool's burst of threads, never refused. */
  readonly bulk?: boolean;
  /** Asked when a thread is about to take the task: true if nobody awaits its answer any more. */
  readonly abandoned?: () => boolean;
  /**
   * Given by the holder of a turn (`turn`), which was its admission: never refused for the queue.
   * A turn's holder has looked at the account by then; refused at this point, one check would be
   * answered 503 and another, whose task came before the queue filled, 401, by what the account is.
   */
  readonly admitted?: boolean;
}

/** How much the pool's threads yield to the event loop: the nice value they run at (Linux). */
export const HASH_THREAD_NICE = 10;

/**
 * The body of every pool thread, as CommonJS source (an `eval` worker): it loads the hashing
 * libraries by the paths resolved here, so it needs no loader and no build step of its own.
 * It first lowers its own CPU priority: Linux schedules threads one by one, so a thread can nice
 * itself by its thread id. Elsewhere (or if refused) it runs at the normal priority.
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { readlinkSync } = require('node:fs');
const { setPriority } = require('node:os');
const { scryptSync } = require('node:crypto');
const argon2 = require(workerData.argon2);
const bcrypt = require(workerData.bcrypt);
try {
  setPriority(Number(readlinkSync('/proc/thread-self').split('/').pop()), workerData.nice);
} catch {}
const run = (task) => {
  switch (task.op) {
    case 'argon2-hash': return argon2.hashSync(task.password, task.options);
    case 'argon2-verify': return argon2.verifySync(task.hash, task.password);
    case 'bcrypt-verify': return bcrypt.verifySync(task.password, task.hash);
    case 'scrypt': return scryptSync(task.password, task.salt, task.keyLength, task.options);
    default: throw new Error('unknown task');
  }
};
parentPort.on('message', ({ id, task }) => {
  try {
    parentPort.postMessage({ id, value: run(task) });
  } catch (error) {
    parentPort.postMessage({ id, error: String(error && error.message) });
  }
});
`;

interface Pending {
  readonly task: HashTask;
  /** Part of a bulk job (an import): may use up to the pool's burst of threads. */
  readonly bulk: boolean;
  readonly abandoned: (() => boolean) | undefined;
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: Error) => void;
}

interface TurnWaiter {
  readonly abandoned: (() => boolean) | undefined;
  readonly resolve: (end: () => void) => void;
  readonly reject: (error: Error) => void;
}

interface Thread {
  readonly worker: Worker;
  /** The task it is computing (one at a time: each call blocks the thread). */
  current: { readonly id: number; readonly pending: Pending } | undefined;
}

/**
 * Password hashing off the event loop, on threads of lower CPU priority than the event loop.
 *
 * A sign-in storm saturates every core with argon2; on libuv's pool (normal priority) the event
 * loop then competes for a core with the hashing, and every other request (reads by token or
 * cookie, which need no hashing) waits behind it. Here the hashing threads run niced
 * (HASH_THREAD_NICE): they still use every idle cycle, so sign-in throughput is what the cores
 * give, but the event loop (and the store's processes) get a core the moment they need one.
 *
 * A bulk job (an import, hashing thousands of passwords in one process) may use up to `burst`
 * threads, so that under `serve --workers N` (each process sized cores/N) one import still uses
 * every core; a thread above `size` stops as soon as no bulk task waits for it.
 *
 * Past `queueLimit` tasks waiting (bulk ones not counted), a new task is refused at once
 * (HashPoolBusy): in a sustained storm each sign-in waits a bounded time or is told to come back,
 * where an unbounded queue would make every client wait until it gave up, the work spent on it
 * lost. Bulk tasks are never refused.
 *
 * Threads start on first use, are kept referenced only while they compute (an idle pool never
 * holds a process open), and a thread that dies fails its task (HashPoolUnavailable) and is
 * replaced. Closing lets every task already given finish first: a sign-in in flight when the
 * server stops gets its real answer, never a made-up failure.
 */
export class HashPool {
  readonly #size: number;
  readonly #burst: number;
  readonly #threads: Thread[] = [];
  readonly #queue: Pending[] = [];
  readonly #workerData: { argon2: string; bcrypt: string; nice: number };
  /** Tasks other than bulk ones that may wait for a thread; more are refused (HashPoolBusy). */
  readonly #queueLimit: number;
  /** Tasks other than bulk ones waiting for a thread. */
  #waiting = 0;
  /** Turns to check a password (`turn`) given and not yet ended. */
  #turnsOut = 0;
  /** Callers waiting for a turn, in order of arrival. */
  readonly #turnQueue: TurnWaiter[] = [];
  /** Set by `close`: no new turns. */
  #turnsClosed = false;
  /** Resolved when the last turn has ended (set while closing). */
  #turnsEnded: (() => void) | undefined;
  #nextId = 0;
  #closed = false;
  /** Resolved when the last task given has finished (set while closing). */
  #drained: (() => void) | undefined;

  constructor(size: number, burst = size, queueLimit = Number.POSITIVE_INFINITY) {
    this.#size = Math.max(1, size);
    this.#burst = Math.max(this.#size, burst);
    this.#queueLimit = queueLimit;
    const require = createRequire(import.meta.url);
    this.#workerData = {
      argon2: require.resolve('@node-rs/argon2'),
      bcrypt: require.resolve('@node-rs/bcrypt'),
      nice: HASH_THREAD_NICE,
    };
  }

  run<T>(task: HashTask, options: HashTaskOptions = {}): Promise<T> {
    if (this.#closed) return Promise.reject(new HashPoolUnavailable('the hash pool is closed'));
    const bulk = options.bulk === true;
    // A bulk task (an import's) is never refused: its job holds few in flight and waits its turn.
    // Nor is a turn's: at most size + 1 turns are out, each with a task or two.
    if (!bulk && options.admitted !== true && this.full()) {
      return Promise.reject(this.#busy());
    }
    return new Promise<T>((resolve, reject) => {
      this.#queue.push({
        task,
        bulk,
        abandoned: options.abandoned,
        resolve: resolve as (value: unknown) => void,
        reject,
      });
      if (!bulk) this.#waiting += 1;
      this.#dispatch();
    });
  }

  /**
   * Waits for a turn to check a password, and answers the function that ends it (once; later calls
   * do nothing). At most `size + 1` turns are out at once: a turn's holder reads what decides its
   * check (the brute-force counters, the account) only when a thread is about to be free for it,
   * and one turn more than the threads keeps a task waiting whenever a thread finishes one. Waiting
   * for a turn counts toward `queueLimit` as waiting for a thread does; a caller that left before
   * its turn came is refused then (HashTaskAbandoned), its turn passed on.
   */
  turn(abandoned?: () => boolean): Promise<() => void> {
    if (this.#turnsClosed) return Promise.reject(new HashPoolUnavailable('the hash pool is closed'));
    if (this.#turnsOut <= this.#size && this.#turnQueue.length === 0)
      return Promise.resolve(this.#giveTurn());
    if (this.full()) {
      return Promise.reject(this.#busy());
    }
    return new Promise((resolve, reject) => this.#turnQueue.push({ abandoned, resolve, reject }));
  }

  #busy(): HashPoolBusy {
    return new HashPoolBusy(`${this.#waiting + this.#turnQueue.length} password operations wait already`);
  }

  #giveTurn(): () => void {
    this.#turnsOut += 1;
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      this.#turnsOut -= 1;
      this.#nextTurn();
    };
  }

  #nextTurn(): void {
    while (this.#turnsOut <= this.#size) {
      const waiter = this.#turnQueue.shift();
      if (!waiter) break;
      if (waiter.abandoned?.()) {
        waiter.reject(new HashTaskAbandoned('its caller left before its turn came'));
        continue;
      }
      waiter.resolve(this.#giveTurn());
    }
    if (this.#turnsOut === 0 && this.#turnQueue.length === 0) this.#turnsEnded?.();
  }

  /** A task other than a bulk one, or a turn, asked for now would be refused (HashPoolBusy). */
  full(): boolean {
    return this.#waiting + this.#turnQueue.length >= this.#queueLimit;
  }

  /** Takes no new tasks, waits for those given to finish, then stops the threads. */
  async close(): Promise<void> {
    // Checks that have or wait for a turn get their real answer too: no new turn, then theirs end.
    this.#turnsClosed = true;
    if (this.#turnsOut > 0 || this.#turnQueue.length > 0) {
      await new Promise<void>((resolve) => (this.#turnsEnded = resolve));
    }
    this.#closed = true;
    if (!this.#idle()) await new Promise<void>((resolve) => (this.#drained = resolve));
    await Promise.all(this.#threads.splice(0).map((thread) => thread.worker.terminate()));
  }

  #idle(): boolean {
    return this.#queue.length === 0 && this.#threads.every((thread) => thread.current === undefined);
  }

  #dispatch(): void {
    if (this.#drained && this.#idle()) this.#drained();
    while (this.#queue.length > 0) {
      const limit = this.#queue[0]?.bulk ? this.#burst : this.#size;
      let thread = this.#threads.find((candidate) => candidate.current === undefined);
      if (!thread && this.#threads.length < limit) thread = this.#spawn();
      if (!thread) return;
      const pending = this.#queue.shift();
      if (!pending) return;
      if (!pending.bulk) this.#waiting -= 1;
      // A sign-in whose client gave up waiting costs no hash: in a storm, clients that time out
      // would otherwise take a thread from those still waiting.
      if (pending.abandoned?.()) {
        pending.reject(new HashTaskAbandoned('its caller left before a thread took it'));
        continue;
      }
      const id = this.#nextId++;
      thread.current = { id, pending };
      thread.worker.ref();
      thread.worker.postMessage({ id, task: pending.task });
    }
    // The last tasks may have been abandoned rather than run: closing waits for nothing more.
    if (this.#drained && this.#idle()) this.#drained();
  }

  #spawn(): Thread {
    const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: this.#workerData });
    const thread: Thread = { worker, current: undefined };
    worker.unref();
    worker.on('message', (message: { id: number; value?: unknown; error?: string }) => {
      const current = thread.current;
      if (!current || current.id !== message.id) return;
      thread.current = undefined;
      worker.unref();
      if (message.error !== undefined) current.pending.reject(new Error(message.error));
      else current.pending.resolve(message.value);
      // A burst thread leaves once no bulk task waits: the pool shrinks back to its size.
      if (this.#threads.length > this.#size && !this.#queue[0]?.bulk) {
        this.#threads.splice(this.#threads.indexOf(thread), 1);
        void worker.terminate();
      }
      this.#dispatch();
    });
    const lost = (error: Error) => {
      const index = this.#threads.indexOf(thread);
      if (index < 0) return;
      this.#threads.splice(index, 1);
      thread.current?.pending.reject(
        error instanceof HashPoolUnavailable
          ? error
          : new HashPoolUnavailable(`a hashing thread failed: ${error.message}`),
      );
      thread.current = undefined;
      this.#dispatch();
    };
    worker.on('error', lost);
    worker.on('exit', (code) =>
      lost(new HashPoolUnavailable(`a hashing thread stopped (exit code ${code})`)),
    );
    this.#threads.push(thread);
    return thread;
  }
}
