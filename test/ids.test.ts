import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isId, newId } from '../src/core/ids.js';

test('ids are UUIDv7 and increase within one millisecond and across them', () => {
  const now = Date.now() + 10_000;
  const ids = [...Array.from({ length: 5000 }, () => newId(now)), newId(now + 1), newId(now - 5)];
  for (const id of ids) {
    assert.ok(isId(id), id);
    assert.equal(id[14], '7', 'version 7');
    assert.match(id[19] ?? '', /[89ab]/, 'RFC 9562 variant');
  }
  const sorted = [...ids].sort();
  assert.deepEqual(ids, sorted, 'ids made later sort later, even with a clock that steps back');
  assert.equal(new Set(ids).size, ids.length);
});

test('the random part differs between ids across many refills of the random pool', () => {
  // 100,000 ids draw 1.6 MB of randomness: hundreds of refills of the 4 KiB pool.
  const tails = new Set(Array.from({ length: 100_000 }, (_, i) => newId(1_000_000 + i).slice(19)));
  assert.equal(tails.size, 100_000, 'no repeated random part');
});
