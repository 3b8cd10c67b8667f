// Raw argon2id throughput with Gatehouse's parameters and thread pool, in a process of its own:
// the baseline of the sign-in and import scenarios. Prints one JSON line.
// Run: node --import tsx argon2-baseline.ts verify|hash SECONDS MEMORY_KIB ITERATIONS PARALLELISM
import { hash, verify } from '@node-rs/argon2';

const [mode = 'verify', seconds = '5', memoryCost = '19456', timeCost = '2', parallelism = '1'] =
  process.argv.slice(2);
const options = {
  // Algorithm.Argon2id: a const enum, which isolated modules cannot import (as in src/core/passwords.ts).
  algorithm: 2,
  memoryCost: Number(memoryCost),
  timeCost: Number(timeCost),
  parallelism: Number(parallelism),
};
const password = 'Baseline-password-0001';
const stored = await hash(password, options);
// As many in flight as libuv has threads (UV_THREADPOOL_SIZE, set by run.ts to Gatehouse's hash
// threads; 4 by default), twice over.
const inFlight = 2 * Number(process.env.UV_THREADPOOL_SIZE ?? 4);
const deadline = Date.now() + Number(seconds) * 1000;
let done = 0;
const started = Date.now();
await Promise.all(
  Array.from({ length: inFlight }, async () => {
    while (Date.now() < deadline) {
      if (mode === 'hash') await hash(password, options);
      else await verify(stored, password);
      done += 1;
    }
  }),
);
process.stdout.write(
  `${JSON.stringify({ mode, perSecond: done / ((Date.now() - started) / 1000), done })}\n`,
);
