// The baseline of the HTTP scenarios: bare Fastify routes answering JSON objects of given sizes, in
// a process of their own as Gatehouse runs in its own.
// Run: node --import tsx baseline-server.ts PORT BYTES... (route /json/<i> answers BYTES[i] bytes)
import Fastify from 'fastify';

const [port = '0', ...sizes] = process.argv.slice(2);
const app = Fastify({ logger: false });
sizes.forEach((bytes, index) => {
  // A flat object whose JSON is `bytes` long: {"data":"xxx…"} is 11 characters plus the x's.
  const payload = { data: 'x'.repeat(Math.max(0, Number(bytes) - 11)) };
  app.get(`/json/${index}`, async () => payload);
  app.post(`/json/${index}`, async () => payload);
});
await app.listen({ host: '127.0.0.1', port: Number(port) });
