// The baseline of the HTTP scenarios: bare Fastify routes answering JSON objects of given sizes, in
// as many processes sharing the port as Gatehouse runs (node:cluster, as `gatehouse serve` does).
// Run: node --import tsx baseline-server.ts PORT WORKERS BYTES... (route /json/<i> answers BYTES[i] bytes)
//
// POST /verify/<i> is the floor of the sign-in: it parses the JSON body, verifies its `password`
// against the argon2id hash of BENCH_PASSWORD (the parameters of BENCH_ARGON2,
// "memoryKiB,iterations,parallelism", on libuv's pool of UV_THREADPOOL_SIZE threads, as @node-rs/argon2 does by default) and answers
// BYTES[i] bytes: what any server answering a password sign-in must at least do.
import cluster from 'node:cluster';
import { hash, verify } from '@node-rs/argon2';
import Fastify from 'fastify';

const [port = '0', workers = '1', ...sizes] = process.argv.slice(2);

if (cluster.isPrimary && Number(workers) > 1) {
  // Node's cluster policy, as `gatehouse serve` has it (src/workers.ts): round robin on Linux.
  for (let i = 0; i < Number(workers); i += 1) cluster.fork();
  process.once('SIGTERM', () => {
    for (const worker of Object.values(cluster.workers ?? {})) worker?.kill('SIGTERM');
    process.exit(0);
  });
} else {
  const [memoryCost = 19456, timeCost = 2, parallelism = 1] = (process.env.BENCH_ARGON2 ?? '')
    .split(',')
    .filter(Boolean)
    .map(Number);
  // Algorithm.Argon2id: a const enum, which isolated modules cannot import.
  const stored = await hash(process.env.BENCH_PASSWORD ?? '', {
    algorithm: 2,
    memoryCost,
    timeCost,
    parallelism,
  });
  const app = Fastify({ logger: false });
  sizes.forEach((bytes, index) => {
    // A flat object whose JSON is `bytes` long: {"data":"xxx…"} is 11 characters plus the x's.
    const payload = { data: 'x'.repeat(Math.max(0, Number(bytes) - 11)) };
    app.get(`/json/${index}`, async () => payload);
    app.post(`/json/${index}`, async () => payload);
    app.post(`/verify/${index}`, async (request, reply) => {
      const { password } = request.body as { password?: unknown };
      if (typeof password !== 'string' || !(await verify(stored, password))) {
        return reply.code(401).send({ error: 'wrong password' });
      }
      return payload;
    });
  });
  await app.listen({ host: '127.0.0.1', port: Number(port) });
}
