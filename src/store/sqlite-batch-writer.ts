import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import { WRITERS_WAL_AUTOCHECKPOINT } from './sqlite-checkpointer.js';

/** One statement of a batch: its SQL and its positional parameters. */
export interface BatchStatement {
  readonly sql: string;
  readonly parameters: readonly unknown[];
}

/** A batch's failure as SQLite told it, with its code (`SQLITE_CONSTRAINT_UNIQUE` and so on). */
export class SqliteBatchError extends Error {
  readonly code: string | undefined;

  constructor(message: string, code: string | undefined) {
    super(message);
    this.name = 'SqliteBatchError';
    this.code = code;
  }
}

/** Prepared statements the writer thread keeps: an import uses a handful of shapes. */
const WRITER_STATEMENT_CACHE = 100;

interface Pending {
  readonly resolve: () => void;
  readonly reject: (error: Error) => void;
}

// CommonJS, evaluated in the thread: better-sqlite3 is required by the path resolved here.
const WRITER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const SQLite = require(workerData.betterSqlite3);
const db = new SQLite(workerData.file);
// This thread does nothing but write: waiting for another connection's lock inside the call
// holds no event loop up.
db.pragma('busy_timeout = ' + workerData.lockWaitMs);
db.pragma('synchronous = NORMAL');
db.pragma('foreign_keys = ON');
// The batches' pages are copied into the database by the checkpointer's thread, beside the next
// batch (sqlite-checkpointer.ts), not by this thread between batches.
db.pragma('wal_autocheckpoint = ${WRITERS_WAL_AUTOCHECKPOINT}');
const statements = new Map();
function prepared(sql) {
  let statement = statements.get(sql);
  if (statement === undefined) {
    if (statements.size >= ${WRITER_STATEMENT_CACHE}) statements.clear();
    statement = db.prepare(sql);
    statements.set(sql, statement);
  }
  return statement;
}
const writeAll = db.transaction((batch) => {
  for (const { sql, parameters } of batch) prepared(sql).run(parameters);
});
parentPort.on('message', ({ id, batch }) => {
  try {
    // IMMEDIATE: the write lock is taken before the first statement, never upgraded midway.
    writeAll.immediate(batch);
  } catch (error) {
    parentPort.postMessage({ id, error: { message: String(error && error.message), code: error && error.code } });
    return;
  }
  parentPort.postMessage({ id });
});
`;

/**
 * Writes batches of statements into a SQLite file, each as one transaction, on a thread of its
 * own with its own connection. better-sqlite3 runs a statement inside the call, on the calling
 * thread: an import's inserts written on the event loop held it for about half of the import, and
 * the next batch could not be checked meanwhile. Here the event loop hands over one message per
 * batch and goes on; the thread writes batches one after another, in the order given.
 *
 * One message a batch, not one a statement: a thread answering each statement kept both threads
 * waiting on each other (docs/performance-log.md).
 */
interface Thread {
  readonly worker: Worker;
  /** The batches given to this thread, by id, until it answers them. */
  readonly pending: Map<number, Pending>;
}

export class SqliteBatchWriter {
  readonly #workerData: { betterSqlite3: string; file: string; lockWaitMs: number };
  readonly #inFlight = new Set<Promise<void>>();
  #thread: Thread | undefined;
  #nextId = 0;
  #closed = false;

  constructor(file: string, lockWaitMs: number) {
    const require = createRequire(import.meta.url);
    this.#workerData = { betterSqlite3: require.resolve('better-sqlite3'), file, lockWaitMs };
  }

  /**
   * Runs `batch` as one transaction: all of it or, when a statement fails, none of it (the
   * failure keeps SQLite's code).
   */
  write(batch: readonly BatchStatement[]): Promise<void> {
    if (this.#closed) return Promise.reject(new Error('the SQLite batch writer is closed'));
    const { worker, pending } = this.#started();
    const id = this.#nextId++;
    const written = new Promise<void>((resolve, reject) => {
      pending.set(id, { resolve, reject });
      // Held open only while a batch is in flight: an idle writer keeps no process alive.
      worker.ref();
      worker.postMessage({ id, batch });
    });
    this.#inFlight.add(written);
    const settled = () => this.#inFlight.delete(written);
    written.then(settled, settled);
    return written;
  }

  /** Lets the batches given finish, then stops the thread. */
  async close(): Promise<void> {
    this.#closed = true;
    await Promise.allSettled(this.#inFlight);
    const thread = this.#thread;
    this.#thread = undefined;
    await thread?.worker.terminate();
  }

  #started(): Thread {
    if (this.#thread) return this.#thread;
    const worker = new Worker(WRITER_SOURCE, { eval: true, workerData: this.#workerData });
    const thread: Thread = { worker, pending: new Map() };
    worker.unref();
    worker.on('message', (message: { id: number; error?: { message: string; code?: string } }) => {
      const pending = thread.pending.get(message.id);
      if (!pending) return;
      thread.pending.delete(message.id);
      if (thread.pending.size === 0) worker.unref();
      if (message.error) pending.reject(new SqliteBatchError(message.error.message, message.error.code));
      else pending.resolve();
    });
    // A thread that dies takes its batches with it: each is told, and the next write starts another.
    const failAll = (error: Error) => {
      if (this.#thread === thread) this.#thread = undefined;
      for (const pending of thread.pending.values()) pending.reject(error);
      thread.pending.clear();
    };
    worker.on('error', (error) => failAll(error));
    worker.on('exit', (code) => failAll(new Error(`the SQLite writer thread stopped (exit code ${code})`)));
    this.#thread = thread;
    return thread;
  }
}
