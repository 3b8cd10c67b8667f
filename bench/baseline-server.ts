// The baseline of the HTTP scenarios: bare Fastify routes answering JSON objects of given sizes, in
// as many processes sharing the port as Gatehouse runs (node:cluster, as `gatehouse serve` does).
// Run: node --import tsx baseline-server.ts PORT WORKERS BYTES... (route /json/<i> answers BYTES[i] bytes)
import cluster from 'node:cluster';
import Fastify from 'fastify';

const [port = '0', workers = '1', ...sizes] = process.argv.slice(2);

if (cluster.isPrimary && Number(workers) > 1) {
  for (let i = 0; i < Number(workers); i += 1) cluster.fork();
  process.once('SIGTERM', () => {
    for (const worker of Object.values(cluster.workers ?? {})) worker?.kill('SIGTERM');
    process.exit(0);
  });
} else {
  const app = Fastify({ logger: false });
  sizes.forEach((bytes, index) => {
    // A flat object whose JSON is `bytes` long: {"data":"xxx…"} is 11 characters plus the x's.
    const payload = { data: 'x'.repeat(Math.max(0, Number(bytes) - 11)) };
    app.get(`/json/${index}`, async () => payload);
    app.post(`/json/${index}`, async () => payload);
  });
  await app.listen({ host: '127.0.0.1', port: Number(port) });
}
