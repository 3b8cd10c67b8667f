import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import Fastify from 'fastify';
import { requestMeta } from '../../src/surfaces/request-meta.js';

// No store here: what is tested is how a request sees its client leave, on Node's own sockets.
test('a client that has sent its FIN counts as gone at once, before its socket is destroyed', async () => {
  const app = Fastify({ forceCloseConnections: true });
  const seen: { before?: boolean; atEnd?: boolean; destroyedAtEnd?: boolean } = {};
  let handled: () => void = () => {};
  const inHandler = new Promise<void>((resolve) => (handled = resolve));
  let ended: () => void = () => {};
  const atEnd = new Promise<void>((resolve) => (ended = resolve));
  app.post('/wait', (request) => {
    const meta = requestMeta(request);
    seen.before = meta.clientGone?.();
    request.raw.socket.once('end', () => {
      seen.destroyedAtEnd = request.raw.socket.destroyed;
      seen.atEnd = meta.clientGone?.();
      ended();
    });
    handled();
    // Never answers: the client leaves first, as a sign-in's client that stops waiting.
    return new Promise(() => {});
  });
  const address = new URL(await app.listen({ host: '127.0.0.1', port: 0 }));
  const client = net.connect(Number(address.port), address.hostname);
  client.on('error', () => {});
  try {
    client.write(`POST /wait HTTP/1.1\r\nHost: ${address.host}\r\nContent-Length: 0\r\n\r\n`);
    await inHandler;
    client.end();
    await atEnd;
    assert.equal(seen.before, false, 'a client still connected is not gone');
    assert.equal(seen.destroyedAtEnd, false, 'when its FIN is read the socket is not destroyed yet');
    assert.equal(seen.atEnd, true, 'yet the client is gone: no answer would reach it');
  } finally {
    client.destroy();
    await app.close();
  }
});
