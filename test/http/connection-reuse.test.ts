import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { loadConfig } from '../../src/config.js';
import type { RunningServer } from '../../src/server.js';
import { ADMIN_PASSWORD } from '../helpers/context.js';
import { forEachDialect } from '../helpers/dialects.js';
import { type FreshStore, freshStore, startTestServer } from '../helpers/server.js';

/** A client of one kept-alive connection at a time: each answer's `Connection` header and connection. */
function keptAliveClient(url: string) {
  const { hostname, port } = new URL(url);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const connections: unknown[] = [];
  const get = () =>
    new Promise<{ connection: string; over: number }>((resolve, reject) => {
      http
        .get({ host: hostname, port, path: '/healthz', agent }, (answer) => {
          if (!connections.includes(answer.socket)) connections.push(answer.socket);
          const seen = {
            connection: String(answer.headers.connection),
            over: connections.indexOf(answer.socket),
          };
          answer.resume();
          answer.on('end', () =>
            answer.statusCode === 200 ? resolve(seen) : reject(new Error(`${answer.statusCode}`)),
          );
        })
        .on('error', reject);
    });
  return { get, close: () => agent.destroy() };
}

/**
 * A raw connection: `send` writes requests as they are, several at once when given several
 * (pipelined); `answers` waits for that many answers or the server's close, and gives each
 * answer's status and `Connection` header; `ended` is the server's close.
 */
async function rawConnection(url: string) {
  const { hostname, port } = new URL(url);
  const socket = net.connect(Number(port), hostname);
  await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  let text = '';
  socket.setEncoding('utf8').on('data', (chunk: string) => {
    text += chunk;
  });
  let closed = false;
  const ended = new Promise<void>((resolve) =>
    socket.once('end', () => {
      closed = true;
      resolve();
    }),
  );
  return {
    send: (...requests: string[]) => socket.write(requests.join('')),
    answers: async (count: number) => {
      const deadline = Date.now() + 5000;
      while (!closed && (text.match(/HTTP\/1\.1 \d{3} /g)?.length ?? 0) < count) {
        if (Date.now() > deadline) throw new Error(`${count} answers awaited, got: ${text}`);
        await sleep(10);
      }
      return (
        text
          // An answer's body ends where the next status line begins, on the same line.
          .split(/(?=HTTP\/1\.1 \d{3} )/)
          .filter((answer) => answer.startsWith('HTTP/1.1 '))
          .map((answer) => [
            /^HTTP\/1\.1 (\d+)/.exec(answer)?.[1],
            /^connection: (\S+)\r$/im.exec(answer)?.[1]?.toLowerCase(),
          ])
      );
    },
    ended,
    destroy: () => socket.destroy(),
  };
}

const get = (path: string) => `GET ${path} HTTP/1.1\r\nHost: gatehouse\r\n\r\n`;
/** A tenant's creation, with an admin's token: a write with nothing to wait for. */
const createTenant = (token: string, code: string) => {
  const body = JSON.stringify({ code, name: code, zuora_account_name: code, zuora_account_number: code });
  return `POST /api/v2.1/tenants HTTP/1.1\r\nHost: gatehouse\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
};

async function adminToken(url: string): Promise<string> {
  const answer = await fetch(`${url}/api/v2.1/auth/signin`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username: 'admin', password: ADMIN_PASSWORD }),
  });
  return ((await answer.json()) as { result: { records: [{ token: string }] } }).result.records[0].token;
}

/** Which of the tenants `codes` exist. */
async function existing(url: string, token: string, codes: readonly string[]): Promise<string[]> {
  const text = await (
    await fetch(`${url}/api/v2.1/tenants?limit=1000`, { headers: { authorization: `Bearer ${token}` } })
  ).text();
  return codes.filter((code) => text.includes(`"code":"${code}"`));
}

test('GATEHOUSE_CONNECTION_MAX_AGE: 60 s unless set; off or 0, or a duration from 1 s to 24 h', () => {
  const maxAge = (value?: string) =>
    loadConfig(value === undefined ? {} : { GATEHOUSE_CONNECTION_MAX_AGE: value }, '/srv/gatehouse')
      .connectionMaxAgeMs;
  assert.equal(maxAge(), 60_000);
  assert.equal(maxAge('off'), 0);
  assert.equal(maxAge('0'), 0);
  assert.equal(maxAge('5m'), 300_000);
  for (const bad of ['500ms', '25h', 'soon', '-1'])
    assert.throws(() => maxAge(bad), /GATEHOUSE_CONNECTION_MAX_AGE: .*or off/);
});

forEachDialect('Kept-alive connections (GATEHOUSE_CONNECTION_MAX_AGE)', (dialect) => {
  let store: FreshStore;
  let aging: RunningServer;
  let unlimited: RunningServer;
  before(async () => {
    store = await freshStore(dialect);
    aging = await startTestServer(store, { GATEHOUSE_CONNECTION_MAX_AGE: '2s' });
    unlimited = await startTestServer(store, { GATEHOUSE_CONNECTION_MAX_AGE: 'off' });
  });
  after(async () => {
    await aging.close();
    await unlimited.close();
    await store.dispose();
  });

  // A client that keeps its connections alive would otherwise stay on the process and node it
  // first reached: after a worker is replaced, or a node added, it never spread to the new one.
  test('the first answer after the connection has served its age closes it, saying so, and the client goes on over a new one', async () => {
    const client = keptAliveClient(aging.url);
    try {
      assert.deepEqual(await client.get(), { connection: 'keep-alive', over: 0 });
      assert.deepEqual(await client.get(), { connection: 'keep-alive', over: 0 });
      await sleep(2100);
      assert.deepEqual(await client.get(), { connection: 'close', over: 0 });
      assert.deepEqual(
        await client.get(),
        { connection: 'keep-alive', over: 1 },
        'a new connection, aged anew',
      );
    } finally {
      client.close();
    }
  });

  test('the server closes it (not only the client); requests pipelined behind each other are answered in full or, arriving after the closing answer, not processed at all', async () => {
    const token = await adminToken(aging.url);
    for (const round of [1, 2, 3]) {
      const connection = await rawConnection(aging.url);
      try {
        connection.send(get('/healthz'));
        assert.deepEqual(await connection.answers(1), [['200', 'keep-alive']]);
        await sleep(2100);
        // Before, the first answer said close, and both tenants behind it were made but never
        // answered: their client could not know.
        const codes = [`piped_${dialect}_${round}_a`, `piped_${dialect}_${round}_b`];
        connection.send(get('/healthz'), ...codes.map((code) => createTenant(token, code)));
        await connection.ended;
        const answers = await connection.answers(4);
        const expected = ['200', '200', '201', '201']
          .slice(0, answers.length)
          .map((status, i) => [status, i === answers.length - 1 ? 'close' : 'keep-alive']);
        assert.deepEqual(answers, expected, 'in order, the last answer, and only it, closing');
        assert.deepEqual(
          await existing(aging.url, token, codes),
          codes.slice(0, answers.length - 2),
          'every tenant made was answered, and none answered is missing',
        );
      } finally {
        connection.destroy();
      }
    }
  });

  test('off: a connection serves for as long as the client keeps it', async () => {
    const client = keptAliveClient(unlimited.url);
    try {
      assert.deepEqual(await client.get(), { connection: 'keep-alive', over: 0 });
      await sleep(2100);
      assert.deepEqual(await client.get(), { connection: 'keep-alive', over: 0 });
    } finally {
      client.close();
    }
  });
});
