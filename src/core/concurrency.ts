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
