/**
 * Calls `each` for every item, at most `limit` at a time, taking items in the order they come. The
 * first failure stops the others from taking new items and is thrown once they have finished.
 */
export async function forEachConcurrently<T>(
  items: Iterable<T> | AsyncIterable<T>,
  limit: number,
  each: (item: T) => Promise<void>,
): Promise<void> {
  const iterator: Iterator<T> | AsyncIterator<T> =
    Symbol.asyncIterator in items ? items[Symbol.asyncIterator]() : items[Symbol.iterator]();
  let failure: { error: unknown } | undefined;
  const worker = async () => {
    // An async generator queues concurrent next() calls, so the workers share it safely.
    while (failure === undefined) {
      const next = await iterator.next();
      if (next.done) return;
      try {
        await each(next.value);
      } catch (error) {
        failure ??= { error };
      }
    }
  };
  await Promise.all(Array.from({ length: limit }, worker));
  if (failure !== undefined) {
    await iterator.return?.(undefined);
    throw failure.error;
  }
}

/**
 * Group commit: calls to `run` made while a batch is being written wait and go together in the
 * next one, so that a hot write (a token refresh) costs one statement per batch instead of one per
 * request. At most one batch is in flight; one that arrives alone goes at once (on the next turn of
 * the event loop, so that the requests read off the same socket poll join it). `write` answers
 * one result per item, in order; its failure fails every item of its batch.
 */
export class GroupWriter<T, R> {
  readonly #write: (items: readonly T[]) => Promise<readonly R[]>;
  readonly #maxBatch: number;
  #queue: { item: T; resolve: (result: R) => void; reject: (error: unknown) => void }[] = [];
  #busy = false;

  constructor(write: (items: readonly T[]) => Promise<readonly R[]>, maxBatch = 256) {
    this.#write = write;
    this.#maxBatch = maxBatch;
  }

  run(item: T): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.#queue.push({ item, resolve, reject });
      if (!this.#busy) {
        this.#busy = true;
        setImmediate(() => void this.#drain());
      }
    });
  }

  async #drain(): Promise<void> {
    while (this.#queue.length > 0) {
      const batch = this.#queue.splice(0, this.#maxBatch);
      try {
        const results = await this.#write(batch.map((entry) => entry.item));
        for (const [i, entry] of batch.entries()) entry.resolve(results[i] as R);
      } catch (error) {
        for (const entry of batch) entry.reject(error);
      }
    }
    this.#busy = false;
  }
}

/**
 * Shares out the event loop in a long loop of quick awaited steps (checking an import's rows):
 * steps whose awaits resolve at once run back to back as microtasks, and nothing else (a request,
 * a timer, an answer from another thread) runs until the loop ends. `take()` answers at once
 * until the slice is used up, then makes every caller wait for one turn of the event loop.
 */
export class EventLoopTurns {
  readonly #sliceMs: number;
  #due: number;
  #turning: Promise<void> | undefined;

  /** 1 ms: a request waits at most that long behind the loop; a turn costs a few µs. */
  constructor(sliceMs = 1) {
    this.#sliceMs = sliceMs;
    this.#due = performance.now() + sliceMs;
  }

  take(): Promise<void> | undefined {
    if (this.#turning) return this.#turning;
    if (performance.now() < this.#due) return undefined;
    this.#turning = new Promise<void>((resolve) => setImmediate(resolve)).then(() => {
      this.#turning = undefined;
      this.#due = performance.now() + this.#sliceMs;
    });
    return this.#turning;
  }
}
