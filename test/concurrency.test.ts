import assert from 'node:assert/strict';
import { test } from 'node:test';
import { EventLoopTurns } from '../src/core/concurrency.js';

/** Steps whose awaits resolve at once, each busy for about `stepMs`: a batch of row checks. */
async function busyLoop(steps: number, stepMs: number, turns?: EventLoopTurns): Promise<void> {
  for (let step = 0; step < steps; step += 1) {
    await turns?.take();
    const until = performance.now() + stepMs;
    while (performance.now() < until) {}
    await Promise.resolve();
  }
}

/** How long a callback set for the next turn of the event loop waited while `work` ran. */
async function waitOfNextTurn(work: () => Promise<void>): Promise<number> {
  const asked = performance.now();
  let waited = Number.POSITIVE_INFINITY;
  setImmediate(() => {
    waited = performance.now() - asked;
  });
  await work();
  await new Promise((resolve) => setImmediate(resolve));
  return waited;
}

test('a long loop of quick steps lets the event loop turn within its slice when it takes turns', async () => {
  const held = await waitOfNextTurn(() => busyLoop(200, 0.25));
  assert.ok(held >= 45, `without turns the loop holds the event loop to its end (${held.toFixed(1)} ms)`);
  const shared = await waitOfNextTurn(() => busyLoop(200, 0.25, new EventLoopTurns(1)));
  assert.ok(shared < 20, `with turns a callback runs long before the loop ends (${shared.toFixed(1)} ms)`);
});

test('every caller waiting on one due turn goes on after the same turn', async () => {
  // A slice long enough that the take after the turn falls within it even on a loaded machine (a
  // 5 ms slice failed there: the process was off the core between the turn and the take).
  const turns = new EventLoopTurns(100);
  assert.equal(turns.take(), undefined, 'within the slice: no turn');
  const busyUntil = performance.now() + 101;
  while (performance.now() < busyUntil) {}
  const first = turns.take();
  const second = turns.take();
  assert.ok(first instanceof Promise, 'the slice is used up: a turn is due');
  assert.equal(second, first, 'a second caller waits on the same turn');
  await first;
  assert.equal(turns.take(), undefined, 'a new slice begins after the turn');
});
