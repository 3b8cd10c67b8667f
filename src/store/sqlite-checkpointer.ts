import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

/**
 * The automatic checkpoint of the connections that write (in WAL pages). SQLite's default, 1,000,
 * put the copying inside whichever commit passed it: on the event loop, or between an import's
 * batches. The checkpointer below copies the pages within CHECKPOINT_DELAY_MS of any write, so
 * what is left to a commit that passes this mark is little; but under steady traffic the WAL file
 * itself grows to this size (~40 MiB) and stays there (found by review: 40 MB after 20 s at 250
 * requests a second, flat for the next 6 minutes): SQLite writes from the file's start again only
 * when a writer finds every page copied and no reader in the WAL, which reads and writes arriving
 * all the time seldom allow. The file is reused, not grown further.
 */
export const WRITERS_WAL_AUTOCHECKPOINT = 10_000;

/**
 * How long after a write the WAL is checkpointed (`SqliteCheckpointer.soon`): the pages not yet in
 * the database are then about this long's writes, a few hundred at a hundred sign-ins a second.
 */
export const CHECKPOINT_DELAY_MS = 1000;

// CommonJS, evaluated in the thread: better-sqlite3 is required by the path resolved here.
const CHECKPOINTER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const SQLite = require(workerData.betterSqlite3);
const db = new SQLite(workerData.file);
parentPort.on('message', () => {
  try {
    // As many of the WAL's pages as no reader still needs, copied without waiting for anyone.
    // Another process's checkpoint running at the same moment makes this one give up: it copies
    // the same pages, and the next one catches up.
    db.pragma('wal_checkpoint(PASSIVE)');
  } catch {
    // A checkpoint that cannot run now is made up by a later one; nothing written is lost.
  }
});
`;

/**
 * Checkpoints a SQLite file's WAL (copies its pages into the database) on a thread of its own,
 * with its own connection. Left to SQLite's automatic checkpoint, the copying and its two fsyncs
 * fall inside the commit that takes the WAL past 1,000 pages: on the event loop, every hundredth
 * sign-in or so stalled its process for 5–20 ms, and checkpoints were ~60 % of the commits' time;
 * in an import, the writer thread stopped between batches to copy the last one (docs/performance-log.md).
 *
 * The thread is started by the first request and never holds the process open.
 */
export class SqliteCheckpointer {
  readonly #workerData: { betterSqlite3: string; file: string };
  #worker: Worker | undefined;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(file: string) {
    const require = createRequire(import.meta.url);
    this.#workerData = { betterSqlite3: require.resolve('better-sqlite3'), file };
  }

  /** Checkpoints within CHECKPOINT_DELAY_MS: after small writes, so that a busy process asks once a delay. */
  soon(): void {
    if (this.#timer !== undefined || this.#closed) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.now();
    }, CHECKPOINT_DELAY_MS);
    this.#timer.unref();
  }

  /** Checkpoints as soon as the thread is free: after an import's batch, beside the next one. */
  now(): void {
    if (this.#closed) return;
    this.#started().postMessage(undefined);
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const worker = this.#worker;
    this.#worker = undefined;
    await worker?.terminate();
  }

  #started(): Worker {
    if (this.#worker) return this.#worker;
    const worker = new Worker(CHECKPOINTER_SOURCE, { eval: true, workerData: this.#workerData });
    worker.unref();
    // A thread that cannot open the file, or dies, is replaced at the next request; meanwhile the
    // writers' own automatic checkpoint (WRITERS_WAL_AUTOCHECKPOINT) bounds the WAL.
    const forget = () => {
      if (this.#worker === worker) this.#worker = undefined;
    };
    worker.on('error', forget);
    worker.on('exit', forget);
    this.#worker = worker;
    return worker;
  }
}
