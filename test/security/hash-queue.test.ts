import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
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
  });
  after(() => ctx.close());

  const signIns = async (surface: 'nse' | 'storware') => {
    const metrics = await ctx.core.metrics.text();
    const line = new RegExp(
      `^gatehouse_signins_total\\{surface="${surface}",outcome="(\\w+)"\\} (\\d+)$`,
      'gm',
    );
    return Object.fromEntries([...metrics.matchAll(line)].map((match) => [match[1], Number(match[2])]));
  };

  test('past the limit a sign-in is answered 503 at once on both surfaces, counted as busy, and counts toward no lock', async () => {
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
});
