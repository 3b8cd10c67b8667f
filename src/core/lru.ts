/**
 * Takes the oldest entries (first in insertion order) out of a Map, one at a time. A Map deletes
 * by leaving a hole that stays until its table is rebuilt, and a fresh `keys().next()` steps over
 * every hole at the front: a bounded map that evicts on each insertion (a token cache under
 * refresh) would walk thousands of them every time. One live iterator, kept between calls, passes
 * each hole once. It only ever moves to take an entry out, so nothing is left behind it, and an
 * entry set again goes to the back: its next entry is always the oldest there is.
 */
export class OldestFirst<K, V> {
  readonly #map: Map<K, V>;
  #iterator: Iterator<[K, V]>;

  constructor(map: Map<K, V>) {
    this.#map = map;
    this.#iterator = map.entries();
  }

  /** Removes the oldest entry and answers it; undefined when the map is empty. */
  take(): [K, V] | undefined {
    let next = this.#iterator.next();
    if (next.done) {
      // An iterator that has reached the end stays there: start again from the front.
      this.#iterator = this.#map.entries();
      next = this.#iterator.next();
      if (next.done) return undefined;
    }
    this.#map.delete(next.value[0]);
    return next.value;
  }
}

interface Slot<V> {
  readonly value: V;
  /** When the entry was last moved to the young end (a count of moves and insertions). */
  tick: number;
}

/**
 * A bounded map that forgets the least recently used entry first (a Map keeps insertion order;
 * a hit moves its entry to the young end). A hit on an entry that is still among the youngest
 * quarter is not moved: moving costs a delete and an insert (and, in time, a rehash of the Map),
 * which a hot entry read thousands of times a second would pay on every read for nothing.
 * `onEvict` hears of every entry that leaves, however it left.
 */
export class Lru<K, V> {
  readonly #max: number;
  readonly #map = new Map<K, Slot<V>>();
  readonly #onEvict: ((key: K, value: V) => void) | undefined;
  readonly #oldest = new OldestFirst(this.#map);
  #tick = 0;

  constructor(max: number, onEvict?: (key: K, value: V) => void) {
    this.#max = max;
    this.#onEvict = onEvict;
  }

  get size(): number {
    return this.#map.size;
  }

  get(key: K): V | undefined {
    const slot = this.#map.get(key);
    if (slot === undefined) return undefined;
    if (this.#tick - slot.tick > this.#max >> 2) {
      this.#map.delete(key);
      slot.tick = ++this.#tick;
      this.#map.set(key, slot);
    }
    return slot.value;
  }

  set(key: K, value: V): void {
    this.delete(key);
    this.#map.set(key, { value, tick: ++this.#tick });
    while (this.#map.size > this.#max) {
      const oldest = this.#oldest.take();
      if (oldest === undefined) break;
      this.#onEvict?.(oldest[0], oldest[1].value);
    }
  }

  delete(key: K): void {
    const slot = this.#map.get(key);
    if (slot === undefined) return;
    this.#map.delete(key);
    this.#onEvict?.(key, slot.value);
  }

  clear(): void {
    for (const key of [...this.#map.keys()]) this.delete(key);
  }
}
