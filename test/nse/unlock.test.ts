import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { after, before, test } from 'node:test';
import { runCli } from '../../src/cli/index.js';
import type { Role } from '../../src/store/repositories/users.js';
import { ADMIN_PASSWORD, createTestContext, type TestContext } from '../helpers/context.js';
import { forEachDialect } from '../helpers/dialects.js';
import { bearer, json, nseSignIn } from '../helpers/http.js';

const PASSWORD = 'Tulip-meadow-2024!';
const USERS = '/api/v2.1/users';
const ATTACKER = '203.0.113.99';
const HOME = '198.51.100.20';

forEachDialect('NSE user unlock', (dialect) => {
  let ctx: TestContext;
  const ids: Record<string, string> = {};
  const tokens: Record<string, string> = {};

  const signin = (username: string, password: string, remoteAddress: string) =>
    ctx.inject({
      method: 'POST',
      url: '/api/v2.1/auth/signin',
      payload: { username, password },
      remoteAddress,
    });
  const unlock = (who: string, reference: string) =>
    ctx.inject({ method: 'POST', url: `${USERS}/${reference}/unlock`, headers: bearer(tokens[who] ?? '') });
  /** Locks the account for every address (a spread attack) and the attacker's pair. */
  const lockOut = async (username: string) => {
    for (let i = 0; i < 3; i++) await signin(username, `pair-guess-${i}-x`, ATTACKER);
    for (let i = 0; i < 3; i++) await signin(username, `spread-guess-${i}-x`, `192.0.2.${50 + i}`);
    assert.equal((await signin(username, PASSWORD, HOME)).statusCode, 401, `${username} is locked out`);
  };
  const isError = (response: { statusCode: number; body: string }, status: number, code: string) => {
    assert.equal(response.statusCode, status, response.body);
    assert.match(json(response as never).status.verbose_message, new RegExp(`^${code}`));
  };
  const makeUser = async (username: string, tenancies: Array<[string, Role]>) => {
    const user = await ctx.core.accounts.createUser({ username, password: PASSWORD });
    for (const [tenantId, role] of tenancies) {
      await ctx.store.users.addTenancy({
        user_id: user.id,
        tenant_id: tenantId,
        role,
        created_at: Date.now(),
      });
    }
    ids[username] = user.id;
  };

  before(async () => {
    ctx = await createTestContext(dialect, {
      GATEHOUSE_LOCKOUT_THRESHOLD: '3',
      GATEHOUSE_LOCKOUT_ACCOUNT_THRESHOLD: '6',
      GATEHOUSE_LOCKOUT_DURATION: '1h',
    });
    const acme = (await ctx.core.tenants.create({ code: 'acme', name: 'Acme' })).id;
    const globex = (await ctx.core.tenants.create({ code: 'globex', name: 'Globex' })).id;
    await makeUser('alice', [[acme, 'admin']]);
    await makeUser('rita', [[acme, 'read']]);
    await makeUser('bob', [[acme, 'user']]);
    await makeUser('gus', [[globex, 'admin']]);
    await makeUser('carl', [[acme, 'user']]);
    tokens.admin = await nseSignIn(ctx, 'admin', ADMIN_PASSWORD);
    for (const name of ['alice', 'rita', 'gus']) tokens[name] = await nseSignIn(ctx, name, PASSWORD);
  });
  after(() => ctx.close());

  test("an admin of the user's tenant unlocks it: the account and the attacker's address both sign in again", async () => {
    await lockOut('bob');
    const response = await unlock('alice', ids.bob ?? '');
    assert.equal(response.statusCode, 200, response.body);
    const body = json(response);
    assert.equal(body.status.code, 200);
    assert.equal(body.result.records[0].username, 'bob');
    assert.equal((await signin('bob', PASSWORD, HOME)).statusCode, 200);
    assert.equal((await signin('bob', PASSWORD, ATTACKER)).statusCode, 200, 'the pair lock is cleared too');

    const events = await ctx.store.db
      .selectFrom('audit_events')
      .selectAll()
      .where('action', '=', 'user.unlock')
      .where('outcome', '=', 'success')
      .execute();
    assert.equal(events.length, 1);
    assert.equal(events[0]?.actor_name, 'alice');
    assert.equal(events[0]?.target_name, 'bob');
    assert.equal(events[0]?.reason, 'account lock cleared; 4 address counters cleared');
  });

  test('a reader of the tenant may not unlock (403), another tenant admin does not see the user (404), like an unknown one', async () => {
    await lockOut('carl');
    isError(await unlock('rita', 'carl'), 403, 'FORBIDDEN');
    const hidden = await unlock('gus', 'carl');
    isError(hidden, 404, 'NOT_FOUND');
    assert.equal(hidden.body, (await unlock('gus', 'nobody-at-all')).body);
    isError(
      await ctx.inject({ method: 'POST', url: `${USERS}/carl/unlock` }),
      401,
      'AUTHENTICATION_REQUIRED',
    );
    assert.equal((await signin('carl', PASSWORD, HOME)).statusCode, 401, 'still locked');
    const refusals = await ctx.store.db
      .selectFrom('audit_events')
      .select(['actor_name', 'reason'])
      .where('action', '=', 'user.unlock')
      .where('outcome', '=', 'failure')
      .execute();
    assert.deepEqual(refusals.map((r) => r.actor_name).sort(), ['gus', 'gus', 'rita']);
    // Root unlocks anyone, by name.
    assert.equal((await unlock('admin', 'CARL')).statusCode, 200);
    assert.equal((await signin('carl', PASSWORD, HOME)).statusCode, 200);
  });

  test('a password set by an administrator unlocks the account as well', async () => {
    await makeUser('dora', []);
    await lockOut('dora');
    const set = await ctx.inject({
      method: 'PUT',
      url: `${USERS}/${ids.dora}`,
      headers: bearer(tokens.admin ?? ''),
      payload: { password: 'A-brand-new-passphrase-5' },
    });
    assert.equal(set.statusCode, 200, set.body);
    assert.equal((await signin('dora', 'A-brand-new-passphrase-5', HOME)).statusCode, 200);
    assert.equal((await signin('dora', 'A-brand-new-passphrase-5', ATTACKER)).statusCode, 200);
  });

  test('gatehouse user unlock --username clears the locks from the command line', async () => {
    await makeUser('erik', []);
    await lockOut('erik');
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    let out = '';
    let err = '';
    stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
    });
    stderr.on('data', (chunk: Buffer) => {
      err += chunk.toString();
    });
    const env = {
      GATEHOUSE_DATA_DIR: ctx.config.dataDir,
      ...(ctx.config.databaseUrl ? { GATEHOUSE_DATABASE_URL: ctx.config.databaseUrl } : {}),
      GATEHOUSE_ADMIN_PASSWORD: ADMIN_PASSWORD,
      GATEHOUSE_LOG_LEVEL: 'silent',
    };
    const io = { stdin: new PassThrough(), stdout, stderr, cwd: ctx.config.dataDir, env };
    assert.equal(await runCli(['user', 'unlock', '--username', 'Erik'], io), 0, err);
    assert.match(out, /^Unlocked user erik: account lock cleared; 4 address counters cleared\n$/);
    assert.equal((await signin('erik', PASSWORD, HOME)).statusCode, 200);
    assert.equal(await runCli(['user', 'unlock', '--username', 'no-such-user'], io), 1);
    assert.match(err, /no user named "no-such-user"/);
  });
});
