import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { after, before, test } from 'node:test';
import type { RunningServer } from '../../src/server.js';
import { ADMIN_PASSWORD } from '../helpers/context.js';
import { forEachDialect } from '../helpers/dialects.js';
import { type FreshStore, freshStore, startTestServer } from '../helpers/server.js';

/** What a raw connection received until the server closed it, and when it closed. */
function rawExchange(url: string, send: (socket: net.Socket) => void): Promise<{ text: string; ms: number }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const socket = net.connect(Number(port), hostname);
    let text = '';
    socket.on('data', (chunk) => {
      text += chunk;
    });
    socket.on('error', reject);
    socket.on('close', () => resolve({ text, ms: performance.now() - started }));
    socket.on('connect', () => send(socket));
  });
}

const SIGNIN_HEAD = (length: number) =>
  `POST /api/v2.1/auth/signin HTTP/1.1\r\nHost: gatehouse\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: ${length}\r\n\r\n`;

forEachDialect('A request that does not arrive within GATEHOUSE_REQUEST_TIMEOUT', (dialect) => {
  let store: FreshStore;
  let server: RunningServer;
  before(async () => {
    store = await freshStore(dialect);
    server = await startTestServer(store, { GATEHOUSE_REQUEST_TIMEOUT: '2s' });
  });
  after(async () => {
    await server.close();
    await store.dispose();
  });

  test('a body trickled a byte at a time is answered 408 and its connection closed', async () => {
    let trickle: NodeJS.Timeout | undefined;
    const { text, ms } = await rawExchange(server.url, (socket) => {
      socket.write(`${SIGNIN_HEAD(200)}{`);
      // Never idle, never done: only a limit on the whole request ends it.
      trickle = setInterval(() => socket.write(' '), 200);
    });
    clearInterval(trickle);
    assert.match(text, /^HTTP\/1\.1 408 /);
    assert.ok(ms >= 2000 && ms < 5000, `closed after ${Math.round(ms)} ms`);
    // In the envelope of the surface, as every other error.
    assert.equal(JSON.parse(text.split('\r\n\r\n')[1] ?? '').status.verbose_message, 'REQUEST_TIMEOUT');
  });

  test('headers that never end are refused the same way', async () => {
    let trickle: NodeJS.Timeout | undefined;
    const { text, ms } = await rawExchange(server.url, (socket) => {
      socket.write('GET /api/v2.1/auth/regions HTTP/1.1\r\nHost: gatehouse\r\n');
      trickle = setInterval(() => socket.write('X-Slow: 1\r\n'), 200);
    });
    clearInterval(trickle);
    assert.match(text, /^HTTP\/1\.1 408 /);
    assert.ok(ms < 5000, `closed after ${Math.round(ms)} ms`);
  });

  test('a keep-alive connection used for longer than the timeout keeps serving: the limit is per request', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const { port } = new URL(server.url);
    const sockets = new Set<unknown>();
    const statuses: (number | undefined)[] = [];
    try {
      for (let i = 0; i < 4; i += 1) {
        statuses.push(
          await new Promise<number | undefined>((resolve, reject) => {
            const request = http.get({ host: '127.0.0.1', port, path: '/healthz', agent }, (response) => {
              sockets.add(request.socket);
              response.resume();
              response.on('end', () => resolve(response.statusCode));
            });
            request.on('error', reject);
          }),
        );
        await new Promise((resolve) => setTimeout(resolve, 1000));
      }
    } finally {
      agent.destroy();
    }
    assert.deepEqual(statuses, [200, 200, 200, 200]);
    assert.equal(sockets.size, 1, 'one connection for the four requests');
  });

  test('a slow request that arrives within the timeout is served', async () => {
    const body = JSON.stringify({ username: 'admin', password: ADMIN_PASSWORD });
    const { text } = await rawExchange(server.url, (socket) => {
      socket.write(SIGNIN_HEAD(Buffer.byteLength(body)));
      let sent = 0;
      const parts = 5;
      const step = Math.ceil(body.length / parts);
      const trickle = setInterval(() => {
        socket.write(body.slice(sent, sent + step));
        sent += step;
        if (sent >= body.length) clearInterval(trickle);
      }, 200);
    });
    assert.match(text, /^HTTP\/1\.1 200 /);
    assert.match(text, /"token":"/);
  });
});
