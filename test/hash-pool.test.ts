import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { test } from 'node:test';
import {
  HASH_THREAD_NICE,
  HashPool,
  HashPoolBusy,
  HashPoolUnavailable,
  HashTaskAbandoned,
} from '../src/core/hash-pool.js';
import { PasswordHasher } from '../src/core/passwords.js';
import { isGatehouseError } from '../src/errors.js';

const FAST = { memoryKiB: 1024, iterations: 1, parallelism: 1 };
const FAST_ARGON2 = { memoryCost: 1024, timeCost: 1 };

/** The nice value of each thread of this process (Linux: field 19 of /proc/self/task/<tid>/stat). */
function threadNiceValues(): number[] {
  return readdirSync('/proc/self/task').flatMap((tid) => {
    let stat: string;
    try {
      stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
    } catch {
      return []; // a thread that ended meanwhile
    }
    // The command name may hold spaces: fields are counted after its closing parenthesis.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return [Number(fields[16])];
  });
}

test('hashing threads run at a lower CPU priority than the event loop', {
  skip: process.platform !== 'linux' && 'thread priorities are read from /proc (Linux)',
}, async () => {
  const hasher = new PasswordHasher(FAST, undefined, 2);
  try {
    const before = threadNiceValues().filter((nice) => nice === HASH_THREAD_NICE).length;
    const hashes = await Promise.all([
      hasher.hash('Orchid-lantern-5521'),
      hasher.hash('Orchid-lantern-5522'),
    ]);
    assert.equal(await hasher.verify(hashes[0] ?? '', 'Orchid-lantern-5521'), true, 'a hash verifies');
    assert.equal(await hasher.verify(hashes[0] ?? '', 'Orchid-lantern-5522'), false, 'a wrong one does not');
    const niced = threadNiceValues().filter((nice) => nice === HASH_THREAD_NICE).length;
    assert.equal(niced - before, 2, 'two threads at the lowered priority');
    assert.ok(
      threadNiceValues().some((nice) => nice === 0),
      'the event loop keeps the normal priority',
    );
  } finally {
    await hasher.close();
  }
});

test('closing lets the tasks already given finish, then refuses new ones', async () => {
  const pool = new HashPool(1);
  const task = {
    op: 'argon2-hash',
    password: 'Orchid-lantern-5523',
    options: { memoryCost: 4096, timeCost: 2 },
  } as const;
  const running = pool.run<string>(task);
  const queued = pool.run<string>(task);
  await pool.close();
  assert.match(await running, /^\$argon2id\$/, 'the running task finished');
  assert.match(await queued, /^\$argon2id\$/, 'the queued task finished');
  await assert.rejects(pool.run(task), HashPoolUnavailable, 'a new task is refused');
});

test('a pool that cannot answer is an error, never a wrong password', async () => {
  const hasher = new PasswordHasher(FAST, undefined, 1);
  const stored = await hasher.hash('Orchid-lantern-5524');
  await hasher.close();
  // A sign-in that would count this as a failure could lock its account out during a restart.
  await assert.rejects(hasher.verify(stored, 'Orchid-lantern-5524'), HashPoolUnavailable);
  await assert.rejects(hasher.verify(stored, 'a-wrong-password-1'), HashPoolUnavailable);
});

test('bulk tasks may use the burst of threads; the pool shrinks back to its size afterwards', {
  skip: process.platform !== 'linux' && 'threads are counted in /proc (Linux)',
}, async () => {
  const niced = () => threadNiceValues().filter((nice) => nice === HASH_THREAD_NICE).length;
  const before = niced();
  const pool = new HashPool(1, 3);
  const task = {
    op: 'argon2-hash',
    password: 'Orchid-lantern-5525',
    options: { memoryCost: 8192, timeCost: 3 },
  } as const;
  try {
    await Promise.all([pool.run(task), pool.run(task), pool.run(task)]);
    assert.equal(niced() - before, 1, 'ordinary tasks share the one thread of the pool');
    // Sampled while the bulk tasks run: how many threads hash at once (a thread's start is slow on
    // a loaded machine, so the burst is asserted as more than the size, never past the burst).
    let most = 0;
    const sampler = setInterval(() => {
      most = Math.max(most, niced() - before);
    }, 5);
    // Longer tasks than above: each burst thread stays niced for at least one of them, long enough
    // to be sampled even when the test files running beside this one hold the cores.
    const bulkTask = { ...task, options: { memoryCost: 8192, timeCost: 24 } };
    try {
      await Promise.all(Array.from({ length: 9 }, () => pool.run(bulkTask, { bulk: true })));
    } finally {
      clearInterval(sampler);
    }
    assert.ok(most > 1 && most <= 3, `bulk tasks ran on ${most} threads at most: more than 1, at most 3`);
    const deadline = Date.now() + 5000;
    while (niced() - before > 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.equal(niced() - before, 1, 'back to one thread');
  } finally {
    await pool.close();
  }
});

test('past its queue limit the pool refuses a task at once; bulk tasks still wait their turn', async () => {
  const pool = new HashPool(1, 1, 2);
  const task = {
    op: 'argon2-hash',
    password: 'Orchid-lantern-5526',
    options: { memoryCost: 8192, timeCost: 4 },
  } as const;
  try {
    const given = [pool.run<string>(task), pool.run<string>(task), pool.run<string>(task)];
    const refusedAt = performance.now();
    await assert.rejects(pool.run(task), HashPoolBusy, 'one running and two waiting: a fourth is refused');
    assert.ok(performance.now() - refusedAt < 50, 'refused at once, not after the queue');
    const bulk = pool.run<string>(task, { bulk: true });
    for (const hash of [...(await Promise.all(given)), await bulk]) assert.match(hash, /^\$argon2id\$/);
    assert.match(await pool.run<string>(task), /^\$argon2id\$/, 'accepted again once the queue ran down');
  } finally {
    await pool.close();
  }
});

test('a password operation refused by a full pool is SERVICE_BUSY with Retry-After; a check, admitted by its turn, is not refused', async () => {
  const hasher = new PasswordHasher({ memoryKiB: 8192, iterations: 4, parallelism: 1 }, undefined, 1, 1);
  try {
    const hashes = await Promise.allSettled(
      Array.from({ length: 4 }, () => hasher.hash('Orchid-lantern-5527')),
    );
    const made = hashes.flatMap((result) => (result.status === 'fulfilled' ? [result.value] : []));
    const refusals = hashes.flatMap((result) => (result.status === 'rejected' ? [result.reason] : []));
    assert.equal(made.length, 2, 'the running and the waiting hash are made');
    assert.equal(refusals.length, 2);
    for (const refusal of refusals) {
      assert.ok(isGatehouseError(refusal) && refusal.code === 'SERVICE_BUSY', String(refusal));
      assert.equal(refusal.status, 503);
      assert.deepEqual(refusal.headers, { 'Retry-After': '1' });
    }
    // A sign-in's check is made within its turn, which was its admission (src/core/passwords.ts):
    // refused after the account was read, the refusal would depend on the account.
    const stored = made[0] as string;
    const checks = await Promise.all(
      Array.from({ length: 4 }, () => hasher.verify(stored, 'Orchid-lantern-5527')),
    );
    assert.deepEqual(checks, [true, true, true, true]);
  } finally {
    await hasher.close();
  }
});

test('a waiting task whose caller left is dropped when its turn comes, not computed', async () => {
  const pool = new HashPool(1);
  const task = {
    op: 'argon2-hash',
    password: 'Orchid-lantern-5528',
    options: { memoryCost: 8192, timeCost: 4 },
  } as const;
  let left = false;
  let asked = 0;
  const running = pool.run<string>(task, { abandoned: () => left });
  const waiting = pool.run<string>(task, {
    abandoned: () => {
      asked += 1;
      return left;
    },
  });
  const staying = pool.run<string>(task, { abandoned: () => false });
  left = true;
  await assert.rejects(waiting, HashTaskAbandoned, 'dropped at its turn');
  assert.equal(asked, 1, 'asked once, when a thread was free for it');
  assert.match(await running, /^\$argon2id\$/, 'a task already running finishes all the same');
  assert.match(await staying, /^\$argon2id\$/, 'the next one runs');
  const dropped = [1, 2].map(() =>
    assert.rejects(pool.run(task, { abandoned: () => true }), HashTaskAbandoned, 'nobody awaits it'),
  );
  await pool.close(); // would never end if the pool waited for tasks it dropped
  await Promise.all(dropped);
});

test('turns to check a password: one more than the threads at once, in order; waiting ones count toward the limit', async () => {
  const pool = new HashPool(1, 1, 2);
  try {
    const first = await pool.turn();
    const second = await pool.turn();
    const given: string[] = [];
    let left = false;
    const third = pool.turn().then((end) => {
      given.push('third');
      return end;
    });
    const leaving = pool.turn(() => left);
    await assert.rejects(pool.turn(), HashPoolBusy, 'two turns out, two waiting: a fifth is refused');
    assert.ok(pool.full(), 'a task given now would be refused too');
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(given, [], 'no third turn while size + 1 are out');
    first();
    first(); // ending a turn twice ends it once
    const endThird = await third;
    assert.deepEqual(given, ['third']);
    left = true;
    second();
    await assert.rejects(leaving, HashTaskAbandoned, 'its caller left before its turn came');
    // Closing waits for the turns still out: their checks get their real answers.
    let closed = false;
    const closing = pool.close().then(() => {
      closed = true;
    });
    await assert.rejects(pool.turn(), HashPoolUnavailable, 'no new turn once closing');
    assert.match(
      await pool.run<string>({ op: 'argon2-hash', password: 'Orchid-lantern-5529', options: FAST_ARGON2 }),
      /^\$argon2id\$/,
      'a turn holder still gets its hash while the pool closes',
    );
    assert.equal(closed, false);
    endThird();
    await closing;
  } finally {
    await pool.close();
  }
});

test('a check waiting for its turn is counted in the queue depth the metrics show', async () => {
  let depth = 0;
  const counted = async <T>(work: () => Promise<T>): Promise<T> => {
    depth += 1;
    try {
      return await work();
    } finally {
      depth -= 1;
    }
  };
  const hasher = new PasswordHasher(
    FAST,
    { timeHash: (_operation, work) => counted(work), countWaiting: counted },
    1,
  );
  try {
    const [first, second] = [await hasher.turn(), await hasher.turn()];
    assert.equal(depth, 0, 'turns given at once are not waiting');
    const third = hasher.turn();
    assert.equal(depth, 1, 'the third waits for a turn, counted');
    first();
    (await third)();
    second();
    assert.equal(depth, 0);
  } finally {
    await hasher.close();
  }
});
