import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, test } from 'node:test';
import { hash } from '@node-rs/argon2';
import { hash as bcryptHash } from '@node-rs/bcrypt';
import { createTestContext, type TestContext } from '../helpers/context.js';
import { forEachDialect } from '../helpers/dialects.js';
import { json } from '../helpers/http.js';

const PASSWORD = 'correct-horse-staple-9';
const STORM_ADDRESS = '203.0.113.80';

/**
 * One hashing thread, one check allowed to wait, and argon2 slow enough (tens of ms a check) that
 * a burst of sign-ins all reach the pool while its first check runs. The pair lock is at 10
 * failures: the burst's refused attempts would pass it if they counted.
 */
const SETTINGS = {
  GATEHOUSE_HASH_THREADS: '1',
  GATEHOUSE_HASH_QUEUE_LIMIT: '1',
  GATEHOUSE_ARGON2_MEMORY_KIB: '32768',
  GATEHOUSE_ARGON2_ITERATIONS: '3',
  GATEHOUSE_LOCKOUT_THRESHOLD: '10',
  GATEHOUSE_LOCKOUT_ACCOUNT_THRESHOLD: '20',
  GATEHOUSE_LOCKOUT_IP_THRESHOLD: '40',
  GATEHOUSE_LOGIN_DELAY: '0ms',
};

forEachDialect('Sign-in storms: a bounded queue for the hashing threads', (dialect) => {
  let ctx: TestContext;
  before(async () => {
    ctx = await createTestContext(dialect, SETTINGS);
    await ctx.core.accounts.createUser({ username: 'storm', password: PASSWORD });
    await ctx.core.accounts.createNode({ login: 'node-storm', password: PASSWORD });
    // An account whose stored hash takes several times longer to check than the settings' (its
    // own parameters are in it): the check that holds the thread while another waits behind it.
    await ctx.core.accounts.createUser({ username: 'slow', password: PASSWORD });
    const slow = await ctx.store.users.findByUsernameKey('slow');
    assert.ok(slow);
    const slowHash = await hash(PASSWORD, { algorithm: 2, memoryCost: 65536, timeCost: 10, parallelism: 1 });
    await ctx.store.users.update(slow.id, { password_hash: slowHash });
  });
  after(() => ctx.close());

  /** A sample of this process's metrics, by its name and labels as printed. */
  const sample = async (series: string) => {
    const line = (await ctx.core.metrics.text()).split('\n').find((l) => l.startsWith(`${series} `));
    return Number(line?.slice(series.length + 1) ?? 0);
  };
  const until = async (what: string, holds: () => Promise<boolean>) => {
    const deadline = Date.now() + 5000;
    while (!(await holds())) {
      if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  };

  const signIns = async (surface: 'nse' | 'storware' | 'node') => {
    const metrics = await ctx.core.metrics.text();
    const line = new RegExp(
      `^gatehouse_signins_total\\{surface="${surface}",outcome="(\\w+)"\\} (\\d+)$`,
      'gm',
    );
    return Object.fromEntries([...metrics.matchAll(line)].map((match) => [match[1], Number(match[2])]));
  };

  test('past the limit a sign-in is refused with 503 on both surfaces after its Retry-After, counted as busy and toward no lock', async () => {
    const attempts = Array.from({ length: 24 }, (_, i) =>
      i % 2 === 0
        ? ctx.inject({
            method: 'POST',
            url: '/api/v2.1/auth/signin',
            payload: { username: 'storm', password: `a-wrong-guess-${i}` },
            remoteAddress: STORM_ADDRESS,
          })
        : ctx.inject({
            method: 'POST',
            url: '/api/session/login',
            payload: { login: 'storm', password: `a-wrong-guess-${i}` },
            remoteAddress: STORM_ADDRESS,
          }),
    );
    const sleepsBefore = ctx.clock.sleeps.length;
    const answers = await Promise.all(attempts);
    const busy = answers.filter((answer) => answer.statusCode === 503);
    const checked = answers.filter((answer) => answer.statusCode !== 503);
    assert.ok(busy.length >= 12, `most of the burst is refused (${busy.length} of 24)`);
    for (const [i, answer] of answers.entries()) {
      if (answer.statusCode !== 503) {
        assert.equal(
          answer.statusCode,
          i % 2 === 0 ? 401 : 400,
          'a checked wrong password is refused as usual',
        );
        continue;
      }
      assert.equal(answer.headers['retry-after'], '1');
      if (i % 2 === 0) {
        assert.equal(json(answer).status.code, 503);
        assert.equal(json(answer).status.verbose_message.split(':')[0], 'SERVICE_BUSY');
        assert.deepEqual(json(answer).result, { total_records: 0, records: [] });
      } else {
        assert.equal(json(answer).errorCode, 'SERVICE_BUSY');
      }
    }

    // Each refusal waited its Retry-After before it was told (a test clock records the wait).
    assert.deepEqual(
      ctx.clock.sleeps.slice(sleepsBefore),
      busy.map(() => 1000),
      'one wait of 1 s per refusal, and no other',
    );

    const nse = await signIns('nse');
    const storware = await signIns('storware');
    assert.equal((nse.busy ?? 0) + (storware.busy ?? 0), busy.length, 'each refusal counted as busy');
    assert.equal(
      (nse.invalid_credentials ?? 0) + (storware.invalid_credentials ?? 0),
      checked.length,
      'each checked attempt counted as a wrong password',
    );

    // Fewer than 10 attempts were checked: the pair is not locked, whatever the burst's size.
    const signIn = await ctx.inject({
      method: 'POST',
      url: '/api/v2.1/auth/signin',
      payload: { username: 'storm', password: PASSWORD },
      remoteAddress: STORM_ADDRESS,
    });
    assert.equal(signIn.statusCode, 200, 'the right password from the same address still signs in');
  });

  test('a sign-in whose client leaves while it waits for a thread is not checked, and counts as abandoned', async () => {
    const url = new URL(await ctx.app.listen({ host: '127.0.0.1', port: 0 }));
    const verified = () => sample('gatehouse_password_hash_duration_seconds_count{operation="verify"}');
    const depth = () => sample('gatehouse_password_hash_queue_depth');
    const before = { verified: await verified(), ...(await signIns('nse')) };

    // One slow sign-in takes the thread; another waits behind it, then its client hangs up.
    const first = fetch(new URL('/api/v2.1/auth/signin', url), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: 'slow', password: PASSWORD }),
    });
    await until('the first sign-in is being checked', async () => (await depth()) >= 1);
    const body = JSON.stringify({ username: 'storm', password: 'a-wrong-guess-left' });
    const accepted: net.Socket[] = [];
    ctx.app.server.on('connection', (socket: net.Socket) => accepted.push(socket));
    const leaving = net.connect(Number(url.port), url.hostname);
    leaving.on('error', () => {});
    leaving.write(
      `POST /api/v2.1/auth/signin HTTP/1.1\r\nHost: ${url.host}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
    );
    await until('the second sign-in waits for the thread', async () => (await depth()) >= 2);
    // Once the server has read the client's FIN, the event loop is held, as in a storm, past the
    // end of the slow check: the FIN is then all the server has seen of its leaving when the
    // thread comes free (its socket is destroyed only a loop turn or more later). Held from the
    // hang-up instead, the FIN and the thread's news would share a turn, in either order.
    const serverSide = accepted.find((socket) => socket.remotePort === leaving.localPort);
    assert.ok(serverSide, "the server's side of the leaving client");
    serverSide.once('end', () => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1000));
    leaving.destroy();

    assert.equal((await first).status, 200, 'the sign-in that stayed is answered');
    const settled = (now: Record<string, number>) =>
      (now.abandoned ?? 0) > (before.abandoned ?? 0) ||
      (now.invalid_credentials ?? 0) > (before.invalid_credentials ?? 0);
    await until('the one that left is settled', async () => settled(await signIns('nse')));
    const after = await signIns('nse');
    assert.equal(after.abandoned, (before.abandoned ?? 0) + 1, 'counted as abandoned');
    assert.equal(
      after.invalid_credentials,
      before.invalid_credentials,
      'its wrong password was never checked',
    );
    assert.equal(await verified(), before.verified + 1, 'one verification ran: the first sign-in');
  });

  test('backup nodes signing in all at once meet the same limit', async () => {
    const before = await signIns('node');
    const answers = await Promise.all(
      Array.from({ length: 12 }, () =>
        ctx.inject({
          method: 'POST',
          url: '/api/session/node/login',
          payload: { login: 'node-storm', password: PASSWORD, version: '5.1.0' },
        }),
      ),
    );
    const busy = answers.filter((answer) => answer.statusCode === 503);
    assert.ok(busy.length >= 6, `most of the burst is refused (${busy.length} of 12)`);
    for (const answer of busy) {
      assert.equal(json(answer).errorCode, 'SERVICE_BUSY');
      assert.equal(answer.headers['retry-after'], '1');
    }
    for (const answer of answers.filter((a) => a.statusCode !== 503)) {
      assert.equal(answer.statusCode, 201, 'the nodes checked sign in');
    }
    const after = await signIns('node');
    assert.equal((after.busy ?? 0) - (before.busy ?? 0), busy.length, 'each refusal counted as busy');
  });
});

forEachDialect('Sign-in storms: a check given its turn is answered, whatever the account', (dialect) => {
  let ctx: TestContext;
  before(async () => {
    // One thread and a queue of one: three sign-ins at once are two turns out and one waiting for
    // a turn, which fills the queue while the two holding a turn read their accounts.
    ctx = await createTestContext(dialect, {
      GATEHOUSE_HASH_THREADS: '1',
      GATEHOUSE_HASH_QUEUE_LIMIT: '1',
      GATEHOUSE_LOCKOUT_THRESHOLD: '10',
      GATEHOUSE_LOCKOUT_ACCOUNT_THRESHOLD: '20',
      GATEHOUSE_LOCKOUT_IP_THRESHOLD: '40',
      GATEHOUSE_LOGIN_DELAY: '0ms',
    });
    const imported = await ctx.core.accounts.createUser({ username: 'turn-imported', password: PASSWORD });
    assert.ok(imported.password_hash);
    assert.ok(
      await ctx.store.users.replacePasswordHash(
        imported.id,
        imported.password_hash,
        await bcryptHash(PASSWORD, 4),
      ),
    );
    await ctx.core.accounts.createUser({ username: 'turn-current', password: PASSWORD });
  });
  after(() => ctx.close());

  /** Signs in with each (name, password) at once, in one tick; each one's error code, or 'signed in'. */
  const atOnce = (attempts: [string, string][]) =>
    Promise.all(
      attempts.map(([name, password], i) =>
        ctx.core.authentication
          .signIn(name, password, { ip: `198.51.100.${20 + i}`, userAgent: 'test' }, 'nse')
          .then(
            () => 'signed in',
            (error: { code?: string }) => error.code,
          ),
      ),
    );

  test('unknown names at once, before any dummy hash was made, are each refused as wrong, and so are the next', async () => {
    // Before: the two given a turn were refused 503 for the queue the third filled, and the dummy
    // hash whose making was refused stayed a refusal: every unknown name was answered 503 from then
    // on, while a known account was answered 401.
    assert.deepEqual(
      await atOnce([
        ['nobody-1', 'x-wrong-1'],
        ['nobody-2', 'x-wrong-2'],
        ['nobody-3', 'x-wrong-3'],
      ]),
      ['INVALID_CREDENTIALS', 'INVALID_CREDENTIALS', 'INVALID_CREDENTIALS'],
    );
    assert.deepEqual(await atOnce([['nobody-4', 'x-wrong-4']]), ['INVALID_CREDENTIALS']);
  });

  test('wrong guesses at once at an imported hash, a current one and an unknown name get the same answer, each counted', async () => {
    const before = (await signInCounts(ctx)).invalid_credentials ?? 0;
    const orders: [string, string][][] = [
      [
        ['turn-imported', 'guess-a-1'],
        ['turn-current', 'guess-b-1'],
        ['nobody-5', 'guess-c-1'],
      ],
      [
        ['nobody-6', 'guess-c-2'],
        ['turn-imported', 'guess-a-2'],
        ['turn-current', 'guess-b-2'],
      ],
      [
        ['turn-current', 'guess-b-3'],
        ['nobody-7', 'guess-c-3'],
        ['turn-imported', 'guess-a-3'],
      ],
    ];
    for (const attempts of orders) {
      assert.deepEqual(await atOnce(attempts), [
        'INVALID_CREDENTIALS',
        'INVALID_CREDENTIALS',
        'INVALID_CREDENTIALS',
      ]);
    }
    assert.equal((await signInCounts(ctx)).invalid_credentials, before + 9);
    assert.deepEqual(
      await atOnce([
        ['turn-imported', PASSWORD],
        ['turn-current', PASSWORD],
      ]),
      ['signed in', 'signed in'],
    );
  });
});

/** The NSE sign-ins counted by outcome. */
async function signInCounts(ctx: TestContext): Promise<Record<string, number>> {
  const line = /^gatehouse_signins_total\{surface="nse",outcome="(\w+)"\} (\d+)$/gm;
  return Object.fromEntries(
    [...(await ctx.core.metrics.text()).matchAll(line)].map((match) => [match[1], Number(match[2])]),
  );
}
