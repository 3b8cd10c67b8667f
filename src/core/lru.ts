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
      const oldest = this.#map.keys().next();
      if (oldest.done) break;
      this.delete(oldest.value);
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
