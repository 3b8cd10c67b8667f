import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { hash as bcryptHash } from '@node-rs/bcrypt';
import type { FastifyInstance, InjectOptions } from 'fastify';
import { createTestContext, startAnotherNode, type TestContext } from '../helpers/context.js';
import { forEachDialect } from '../helpers/dialects.js';
import { json } from '../helpers/http.js';
import { passwordVerifications } from '../helpers/metrics.js';

const ATTACKER = '203.0.113.66';
const HOME = '198.51.100.7';
const PASSWORD = 'correct-horse-staple-9';

/** Thresholds small enough to reach in a test: pair 3, account 8 (at least twice the pair), address 12. */
const SETTINGS = {
  GATEHOUSE_LOCKOUT_THRESHOLD: '3',
  GATEHOUSE_LOCKOUT_ACCOUNT_THRESHOLD: '8',
  GATEHOUSE_LOCKOUT_IP_THRESHOLD: '12',
  GATEHOUSE_LOCKOUT_DURATION: '10m',
  GATEHOUSE_LOGIN_DELAY: '100ms',
  GATEHOUSE_LOGIN_DELAY_MAX: '1s',
};

forEachDialect('Brute force: throttle shared by every node', (dialect) => {
  let ctx: TestContext;
  const signin = (username: string, password: string, remoteAddress: string) =>
    ctx.inject({
      method: 'POST',
      url: '/api/v2.1/auth/signin',
      payload: { username, password },
      remoteAddress,
    });
  const storwareLogin = (login: string, password: string, remoteAddress: string) =>
    ctx.inject({ method: 'POST', url: '/api/session/login', payload: { login, password }, remoteAddress });
  const lockouts = async (name: string) =>
    (
      await ctx.store.db.selectFrom('audit_events').selectAll().where('action', '=', 'lockout').execute()
    ).filter((e) => e.target_name === name);

  before(async () => {
    ctx = await createTestContext(dialect, SETTINGS);
    for (const username of ['alice', 'bob', 'carol', 'dave', 'erin']) {
      await ctx.core.accounts.createUser({ username, password: PASSWORD });
    }
  });
  after(() => ctx.close());

  test('one address hammering one account locks only that address for it: the real user signs in from its own', async () => {
    for (let i = 0; i < 3; i++) {
      assert.equal((await signin('alice', `wrong-guess-${i}-xx`, ATTACKER)).statusCode, 401);
    }
    // The right password from the attacker's address is refused like any failure.
    const refused = await signin('alice', PASSWORD, ATTACKER);
    assert.equal(refused.statusCode, 401);
    assert.equal(json(refused).status.verbose_message, 'INVALID_CREDENTIALS');
    assert.equal((await storwareLogin('alice', PASSWORD, ATTACKER)).statusCode, 400);
    // However long the attacker goes on, its locked attempts are not counted towards the account.
    for (let i = 0; i < 25; i++) await signin('alice', `more-guesses-${i}-xx`, ATTACKER);
    assert.equal((await signin('alice', PASSWORD, HOME)).statusCode, 200);
    assert.equal((await storwareLogin('alice', PASSWORD, HOME)).statusCode, 201);

    const [lockout, ...others] = await lockouts('alice');
    assert.equal(others.length, 0, 'one lockout event');
    assert.equal(lockout?.ip, ATTACKER);
    assert.equal(lockout?.reason, '3 consecutive failures');

    // The lock runs out after GATEHOUSE_LOCKOUT_DURATION.
    ctx.clock.advance(10 * 60_000 + 1);
    assert.equal((await signin('alice', PASSWORD, ATTACKER)).statusCode, 200);
  });

  test('guesses sent all at once are checked against the failures of those before them: the right one late in the burst is refused', async () => {
    await ctx.core.accounts.createUser({ username: 'heidi', password: PASSWORD });
    const burst = '203.0.113.99';
    const guesses = Array.from({ length: 30 }, (_, i) => (i === 29 ? PASSWORD : `burst-guess-${i}-xx`));
    const answers = await Promise.all(guesses.map((password) => signin('heidi', password, burst)));
    assert.deepEqual(
      answers.map((answer) => answer.statusCode),
      guesses.map(() => 401),
      'every guess refused, the right one too: the pair was locked before its turn came',
    );
    const [lockout, ...others] = await lockouts('heidi');
    assert.equal(others.length, 0, 'one lockout event');
    assert.equal(lockout?.reason, '3 consecutive failures');
    // The real user, from its own address, is not held up by the burst.
    assert.equal((await signin('heidi', PASSWORD, HOME)).statusCode, 200);
  });

  test('a spread attack (one or two tries from each of many addresses) locks the account for every address', async () => {
    for (let i = 0; i < 8; i++) {
      assert.equal((await signin('bob', `spread-guess-${i}-xx`, `192.0.2.${10 + i}`)).statusCode, 401);
    }
    assert.equal((await signin('bob', PASSWORD, HOME)).statusCode, 401, 'locked at home too');
    assert.equal((await storwareLogin('bob', PASSWORD, '192.0.2.200')).statusCode, 400);
    const reasons = (await lockouts('bob')).map((e) => e.reason);
    assert.deepEqual(reasons, ['8 failures from several addresses: the account is locked for every address']);
    ctx.clock.advance(10 * 60_000 + 1);
    assert.equal((await signin('bob', PASSWORD, HOME)).statusCode, 200);
  });

  test('the answers slow down progressively per account+address; other addresses and a success start again', async () => {
    const waits = () => ctx.clock.sleeps.splice(0);
    waits();
    const answers: number[] = [];
    for (let i = 0; i < 4; i++) {
      answers.push((await signin('carol', `slow-guess-${i}-xx`, '203.0.113.67')).statusCode);
    }
    assert.deepEqual(answers, [401, 401, 401, 401]);
    // No wait before the first attempt; then 100 ms doubling: 100, 200, then 400 while locked.
    assert.deepEqual(waits(), [100, 200, 400]);
    assert.equal((await signin('carol', 'another-guess-xx', HOME)).statusCode, 401);
    assert.deepEqual(waits(), [], 'another address is not slowed down');
    assert.equal((await signin('carol', PASSWORD, HOME)).statusCode, 200);
    assert.deepEqual(waits(), [100], 'its own earlier failure');
    assert.equal((await signin('carol', 'after-success-xx', HOME)).statusCode, 401);
    assert.deepEqual(waits(), [], 'a success clears the pair');
  });

  test('unknown names are counted, slowed and locked exactly like real ones', async () => {
    const waits = () => ctx.clock.sleeps.splice(0);
    const run = async (username: string, address: string) => {
      waits();
      const bodies: string[] = [];
      for (let i = 0; i < 5; i++) bodies.push((await signin(username, `unknown-or-not-${i}`, address)).body);
      return { bodies, waits: waits() };
    };
    const real = await run('dave', '203.0.113.90');
    const unknown = await run('nobody-by-this-name', '203.0.113.91');
    assert.deepEqual(unknown.waits, real.waits);
    assert.deepEqual(unknown.bodies, real.bodies);
    assert.equal(new Set(real.bodies).size, 1, 'every refusal has the same body');
    // Both are locked now: a correct password of dave from that address is refused.
    assert.equal((await signin('dave', PASSWORD, '203.0.113.90')).statusCode, 401);
    const unknownLocks = await ctx.store.db
      .selectFrom('audit_events')
      .selectAll()
      .where('action', '=', 'lockout')
      .where('ip', '=', '203.0.113.91')
      .execute();
    assert.equal(unknownLocks.length, 1);
    assert.equal(unknownLocks[0]?.target_name, '', 'an unknown name is never written down');
  });

  test('one address failing against many accounts (spraying) is locked for all of them', async () => {
    const sprayer = '203.0.113.150';
    for (let i = 0; i < 12; i++) {
      assert.equal((await signin(`spray-target-${i}`, 'Summer2024-guess', sprayer)).statusCode, 401);
    }
    assert.equal((await signin('erin', PASSWORD, sprayer)).statusCode, 401);
    assert.equal((await signin('erin', PASSWORD, HOME)).statusCode, 200);
    const addressLock = await ctx.store.db
      .selectFrom('audit_events')
      .selectAll()
      .where('action', '=', 'lockout')
      .where('ip', '=', sprayer)
      .execute();
    assert.deepEqual(
      addressLock.map((e) => e.reason),
      ['12 failures from this address: its sign-ins are locked'],
    );
  });

  test('a locked attempt costs no argon2 work: an HTTP Basic flood of new names from a locked address is refused without hashing', async () => {
    const verifications = () => passwordVerifications(ctx);
    const flooder = '203.0.113.151';
    const basic = (name: string) =>
      ctx.inject({
        method: 'GET',
        url: '/api/v2.1/auth/regions',
        headers: { authorization: `Basic ${Buffer.from(`${name}:Flood-guess-2024`).toString('base64')}` },
        remoteAddress: flooder,
      });
    const before = await verifications();
    for (let i = 0; i < 12; i++) assert.equal((await basic(`flood-name-${i}`)).statusCode, 401);
    assert.equal((await verifications()) - before, 12, 'each failure until the address lock was checked');
    const locked = await verifications();
    const refusalsRecorded = async () =>
      (
        await ctx.store.db
          .selectFrom('audit_events')
          .select('reason')
          .where('action', '=', 'signin')
          .where('ip', '=', flooder)
          .execute()
      ).filter((e) => e.reason === 'locked: too many failures from this address').length;
    for (let i = 12; i < 40; i++) assert.equal((await basic(`flood-name-${i}`)).statusCode, 401);
    assert.equal((await verifications()) - locked, 0, 'no argon2 work once the address is locked');
    // Nor a row each: one refusal under the lock is recorded a minute, not every one of the flood.
    assert.equal(await refusalsRecorded(), 1);
    ctx.clock.advance(60_000);
    assert.equal((await basic('flood-name-40')).statusCode, 401);
    assert.equal(await refusalsRecorded(), 2);
    // The right password of a real account from that address is refused the same way.
    const refused = await ctx.inject({
      method: 'GET',
      url: '/api/v2.1/auth/regions',
      headers: { authorization: `Basic ${Buffer.from(`erin:${PASSWORD}`).toString('base64')}` },
      remoteAddress: flooder,
    });
    assert.equal(refused.statusCode, 401);
    assert.equal(json(refused).status.verbose_message, 'INVALID_CREDENTIALS');
  });

  test("under an account lock each address's refusals are recorded: one address's flood hides no other's", async () => {
    await ctx.core.accounts.createUser({ username: 'frieda', password: PASSWORD });
    // Failures from eight addresses reach the account threshold: locked for every address.
    for (let i = 0; i < 8; i++) await signin('frieda', `spread-guess-${i}-xx`, `198.51.100.${200 + i}`);
    const flooder = '203.0.113.170';
    const owner = '192.0.2.170';
    const recorded = async (ip: string) =>
      (
        await ctx.store.db
          .selectFrom('audit_events')
          .select('reason')
          .where('action', '=', 'signin')
          .where('ip', '=', ip)
          .execute()
      ).filter((e) => e.reason?.startsWith('locked')).length;
    for (let i = 0; i < 5; i++)
      assert.equal((await signin('frieda', `flood-${i}-xx`, flooder)).statusCode, 401);
    assert.equal((await signin('frieda', PASSWORD, owner)).statusCode, 401, 'the account is locked');
    assert.equal(await recorded(flooder), 1, "the flood's refusals are recorded once a minute");
    assert.equal(await recorded(owner), 1, "the owner's refused attempt is recorded all the same");
  });

  test("a deactivated account's right password is counted as a failure: the next attempt waits as after a wrong one", async () => {
    const gone = await ctx.core.accounts.createUser({ username: 'gone-away', password: PASSWORD });
    await ctx.store.users.update(gone.id, { active: 0, updated_at: ctx.clock.now() });
    const waits = () => ctx.clock.sleeps.splice(0);
    waits();
    assert.equal((await signin('gone-away', PASSWORD, '203.0.113.152')).statusCode, 401);
    assert.equal((await signin('gone-away', 'surely-wrong-guess', '203.0.113.152')).statusCode, 401);
    assert.deepEqual(waits(), [100]);
    assert.equal((await ctx.store.users.findById(gone.id))?.failed_count, 2);
  });

  test('a wrong guess at an imported hash is counted even when its client leaves during the check', async () => {
    // A hash due for replacement (bcrypt here) is followed on a miss by the dummy's work, so that
    // its quicker "no" does not tell the account apart; a client leaving after the stored hash was
    // checked must not take the count with that padding, or it could guess without limit.
    const ivy = await ctx.core.accounts.createUser({ username: 'imported-ivy', password: PASSWORD });
    assert.ok(ivy.password_hash);
    const imported = await bcryptHash(PASSWORD, 4);
    assert.ok(await ctx.store.users.replacePasswordHash(ivy.id, ivy.password_hash, imported));
    const LEAVER = '203.0.113.99';
    for (let i = 0; i < 3; i++) {
      let dispatched = 0;
      // Asked when each hashing task is about to start: there for the stored hash, gone after it.
      const meta = { ip: LEAVER, userAgent: 'test', clientGone: () => ++dispatched > 1 };
      await assert.rejects(
        ctx.core.authentication.signIn('imported-ivy', `wrong-guess-${i}-xx`, meta, 'nse'),
      );
      assert.ok(dispatched >= 1, 'the stored hash was checked');
    }
    assert.equal((await signin('imported-ivy', PASSWORD, LEAVER)).statusCode, 401, 'the pair is locked');
    assert.equal((await signin('imported-ivy', PASSWORD, HOME)).statusCode, 200);
  });

  test('node logins are throttled the same way, keyed apart from user names', async () => {
    await ctx.core.accounts.createNode({ login: 'node-7', password: 'agent-seven-passphrase' });
    await ctx.core.accounts.createUser({ username: 'node-7', password: 'a-user-named-like-it-1' });
    const nodeLogin = (password: string, remoteAddress: string) =>
      ctx.inject({
        method: 'POST',
        url: '/api/session/node/login',
        payload: { login: 'node-7', password, version: '5.1.0' },
        remoteAddress,
      });
    const attacker = '203.0.113.68';
    for (let i = 0; i < 3; i++)
      assert.equal((await nodeLogin(`bad-node-pw-${i}x`, attacker)).statusCode, 400);
    assert.equal((await nodeLogin('agent-seven-passphrase', attacker)).statusCode, 400, 'pair locked');
    assert.equal((await nodeLogin('agent-seven-passphrase', HOME)).statusCode, 201);
    // The user of the same name is not locked by the node's failures.
    assert.equal((await signin('node-7', 'a-user-named-like-it-1', attacker)).statusCode, 200);
  });

  test('failed_count and last-failure history still describe the account; the lock columns are not used', async () => {
    await ctx.core.accounts.createUser({ username: 'frank', password: PASSWORD });
    await signin('frank', 'history-guess-1x', '203.0.113.5');
    await signin('frank', 'history-guess-2x', '203.0.113.6');
    const row = await ctx.store.users.findByUsernameKey('frank');
    assert.equal(row?.failed_count, 2);
    assert.equal(row?.last_failed_ip, '203.0.113.6');
    assert.equal(row?.locked_until, null);
    assert.equal((await signin('frank', PASSWORD, '203.0.113.6')).statusCode, 200);
    assert.equal((await ctx.store.users.findByUsernameKey('frank'))?.failed_count, 0);
  });

  test('a second node over the same database sees the same counts and locks', async () => {
    // Another process: its own connection to the store, its own core, its own app.
    const other = await startAnotherNode(ctx);
    const otherApp = other.app;
    try {
      await ctx.core.accounts.createUser({ username: 'grace', password: PASSWORD });
      const on = (app: FastifyInstance, options: InjectOptions) => app.inject(options);
      const attempt = (app: FastifyInstance, password: string) =>
        on(app, {
          method: 'POST',
          url: '/api/v2.1/auth/signin',
          payload: { username: 'grace', password },
          remoteAddress: '203.0.113.69',
        });
      assert.equal((await attempt(ctx.app, 'two-nodes-guess-1')).statusCode, 401);
      assert.equal((await attempt(otherApp, 'two-nodes-guess-2')).statusCode, 401);
      assert.equal((await attempt(ctx.app, 'two-nodes-guess-3')).statusCode, 401);
      // Locked on both nodes, whichever node counted which failure.
      assert.equal((await attempt(otherApp, PASSWORD)).statusCode, 401);
      assert.equal((await attempt(ctx.app, PASSWORD)).statusCode, 401);
      // A restart of a node forgets nothing: the counters are in the store.
      ctx = await ctx.restart();
      assert.equal((await attempt(ctx.app, PASSWORD)).statusCode, 401);
    } finally {
      await other.close();
    }
  });

  test('an attempt waiting out its delay holds no turn: with every turn taken by delayed guesses, a sign-in goes through', async () => {
    await ctx.core.accounts.createUser({ username: 'ivan', password: PASSWORD });
    // As many delayed guesses as a process lets checks be under way (threads + 1), each at a name
    // and from an address of its own with one failure behind it: each is due a delay, none is locked.
    const delayed = ctx.config.hashThreads + 1;
    const name = (i: number) => `held-${i}`;
    const address = (i: number) => `203.0.113.${120 + i}`;
    for (let i = 0; i < delayed; i += 1) {
      assert.equal((await signin(name(i), `held-guess-${i}-xx`, address(i))).statusCode, 401);
    }
    ctx.clock.sleeps.splice(0);
    ctx.clock.holdSleeps();
    let waiting: Promise<{ statusCode: number }>[] = [];
    try {
      waiting = Array.from({ length: delayed }, (_, i) => signin(name(i), `held-again-${i}-xx`, address(i)));
      for (let tries = 0; ctx.clock.sleeps.length < delayed; tries += 1) {
        assert.ok(tries < 500, `only ${ctx.clock.sleeps.length} of ${delayed} guesses reached their delay`);
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      assert.deepEqual(ctx.clock.sleeps, Array(delayed).fill(100));
      // Were a delay waited out with a turn held, this would wait for one until the delays end.
      const other = await Promise.race([
        signin('ivan', PASSWORD, HOME),
        new Promise<'stuck'>((resolve) => setTimeout(() => resolve('stuck'), 10_000)),
      ]);
      assert.notEqual(other, 'stuck', 'a sign-in waited behind the delayed guesses');
      assert.equal(other !== 'stuck' && other.statusCode, 200);
    } finally {
      ctx.clock.releaseSleeps();
    }
    assert.deepEqual(
      (await Promise.all(waiting)).map((answer) => answer.statusCode),
      Array(delayed).fill(401),
    );
  });
});

forEachDialect('Brute force: a wrong guess is counted before the work that pads its refusal', (dialect) => {
  let ctx: TestContext;
  before(async () => {
    // One hashing thread and a queue of one: a few other sign-ins fill it.
    ctx = await createTestContext(dialect, {
      ...SETTINGS,
      GATEHOUSE_HASH_THREADS: '1',
      GATEHOUSE_HASH_QUEUE_LIMIT: '1',
      GATEHOUSE_LOCKOUT_IP_THRESHOLD: '1000',
      GATEHOUSE_LOGIN_DELAY: '0ms',
    });
  });
  after(() => ctx.close());

  test('with the pool too busy for the padding after an imported hash said no, the guess still counts', async () => {
    const ivy = await ctx.core.accounts.createUser({ username: 'busy-ivy', password: PASSWORD });
    assert.ok(ivy.password_hash);
    assert.ok(
      await ctx.store.users.replacePasswordHash(ivy.id, ivy.password_hash, await bcryptHash(PASSWORD, 10)),
    );
    // As many guesses as the pair threshold (3), each checked.
    for (let i = 0; i < 3; i++) {
      // Once the stored hash's check has started, other sign-ins keep the pool's queue full.
      let storming = false;
      let started = false;
      const storm: Promise<unknown>[] = [];
      const pump = () => {
        if (!storming) return;
        const n = storm.length;
        const other = { ip: `198.51.100.${n % 250}`, userAgent: 'test' };
        storm.push(
          ctx.core.authentication.signIn(`nobody-${i}-${n}`, 'whatever-xx', other, 'nse').catch(() => {}),
        );
        setImmediate(pump);
      };
      const meta = {
        ip: ATTACKER,
        userAgent: 'test',
        clientGone: () => {
          if (!started) {
            started = true;
            storming = true;
            setImmediate(pump);
          }
          return false;
        },
      };
      await assert.rejects(ctx.core.authentication.signIn('busy-ivy', `wrong-guess-${i}-xx`, meta, 'nse'));
      storming = false;
      await Promise.all(storm);
      assert.ok(started, 'the stored hash was checked');
    }
    // Every checked guess was counted: the pair is locked, the right password refused from there.
    const right = await ctx.core.authentication
      .signIn('busy-ivy', PASSWORD, { ip: ATTACKER, userAgent: 'test' }, 'nse')
      .then(
        () => 'signed in',
        (error: { code?: string }) => error.code,
      );
    assert.equal(right, 'INVALID_CREDENTIALS');
  });
});

forEachDialect(
  'Brute force: the delay after a miss does not tell an imported hash from an unknown name',
  (dialect) => {
    let ctx: TestContext;
    before(async () => {
      // Argon2 dear enough (tens of ms) that a second guess sent 15 ms after the first finds it
      // still hashing, and two threads so that the second takes its turn at once.
      ctx = await createTestContext(dialect, {
        ...SETTINGS,
        GATEHOUSE_LOCKOUT_THRESHOLD: '5',
        GATEHOUSE_LOCKOUT_ACCOUNT_THRESHOLD: '20',
        GATEHOUSE_LOCKOUT_IP_THRESHOLD: '1000',
        GATEHOUSE_ARGON2_MEMORY_KIB: '65536',
        GATEHOUSE_ARGON2_ITERATIONS: '3',
        GATEHOUSE_HASH_THREADS: '2',
      });
    });
    after(() => ctx.close());

    test('a miss against an imported bcrypt hash is counted no sooner than an unknown name’s', async () => {
      const lee = await ctx.core.accounts.createUser({ username: 'legacy-lee', password: PASSWORD });
      assert.ok(lee.password_hash);
      assert.ok(
        await ctx.store.users.replacePasswordHash(lee.id, lee.password_hash, await bcryptHash(PASSWORD, 4)),
      );
      const delayOfSecondGuess = async (name: string, ip: string) => {
        const meta = { ip, userAgent: 'test' };
        const first = ctx.core.authentication.signIn(name, 'wrong-guess-a-xx', meta, 'nse').catch(() => {});
        await new Promise((resolve) => setTimeout(resolve, 15));
        ctx.clock.sleeps.splice(0);
        await ctx.core.authentication.signIn(name, 'wrong-guess-b-xx', meta, 'nse').catch(() => {});
        const delays = ctx.clock.sleeps.splice(0);
        await first;
        return delays;
      };
      // The bcrypt check says no in a millisecond; counted then, the second guess would wait for the
      // delay its failure set, where an unknown name's (counted after the dummy's argon2) does not.
      assert.deepEqual(await delayOfSecondGuess('nobody-here', '198.51.100.71'), []);
      assert.deepEqual(await delayOfSecondGuess('legacy-lee', '198.51.100.72'), []);
    });
  },
);
