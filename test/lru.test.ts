import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Lru, OldestFirst } from '../src/core/lru.js';

test('OldestFirst takes entries oldest first, past deletions and entries set again', () => {
  const map = new Map([
    ['a', 1],
    ['b', 2],
    ['c', 3],
  ]);
  const oldest = new OldestFirst(map);
  assert.deepEqual(oldest.take(), ['a', 1]);
  map.set('a', 4); // back in, at the back
  map.delete('b');
  assert.deepEqual(oldest.take(), ['c', 3]);
  assert.deepEqual(oldest.take(), ['a', 4]);
  assert.equal(oldest.take(), undefined, 'empty');
  assert.equal(map.size, 0);
  map.set('x', 5);
  assert.deepEqual(oldest.take(), ['x', 5], 'an entry set after the map ran empty is found');
});

test('an LRU that evicts on every insertion forgets the oldest, in order, and keeps the newest', () => {
  const evicted: number[] = [];
  const lru = new Lru<number, string>(1000, (key) => evicted.push(key));
  let sets = 0;
  for (let key = 0; key < 50_000; key += 1) {
    lru.set(key, `v${key}`);
    sets += 1;
    // Reads of old entries and rewrites leave holes in the map behind the eviction.
    if (key % 7 === 0 && key > 800) lru.get(key - 800);
    if (key % 11 === 0 && key > 500) {
      lru.set(key - 500, `again${key - 500}`);
      sets += 1;
    }
  }
  assert.equal(lru.size, 1000);
  assert.equal(lru.get(49_999), 'v49999', 'the newest is kept');
  assert.equal(lru.get(0), undefined, 'the oldest is gone');
  // Every value put in is still there or was heard leaving, exactly once.
  assert.equal(evicted.length, sets - lru.size);
  // A thousand new keys push out every older one, whatever the churn left behind.
  for (let key = 100_000; key < 101_000; key += 1) lru.set(key, `n${key}`);
  assert.equal(lru.size, 1000);
  for (let key = 100_000; key < 101_000; key += 1) assert.equal(lru.get(key), `n${key}`);
  assert.equal(evicted.length, sets + 1000 - lru.size);
});

test('an LRU moves an old entry that is read to the young end, and evicts the least recently used', () => {
  const evicted: string[] = [];
  const lru = new Lru<string, number>(4, (key) => evicted.push(key));
  for (const [index, key] of ['a', 'b', 'c', 'd'].entries()) lru.set(key, index);
  assert.equal(lru.get('a'), 0); // the oldest, read: now the youngest
  lru.set('e', 4);
  assert.deepEqual(evicted, ['b']);
  lru.set('f', 5);
  assert.deepEqual(evicted, ['b', 'c']);
  lru.set('a', 9); // a rewrite is one entry, not two; the value it replaces is heard leaving
  lru.set('g', 6);
  assert.deepEqual(evicted, ['b', 'c', 'a', 'd']);
  assert.equal(lru.get('a'), 9);
  assert.equal(lru.size, 4);
});
