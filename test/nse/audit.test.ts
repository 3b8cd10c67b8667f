import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { ADMIN_PASSWORD, createTestContext, type TestContext } from '../helpers/context.js';
import { forEachDialect } from '../helpers/dialects.js';
import { bearer, json, nseSignIn } from '../helpers/http.js';

const PASSWORDS = {
  alice: 'rabbit-hole-wonder-1',
  bob: 'builder-of-things-1',
  carol: 'christmas-song-1',
  gus: 'fring-chicken-88',
};

forEachDialect('NSE audit events', (dialect) => {
  let ctx: TestContext;
  let acmeId: string;
  const events = async (who: string, password: string, query = '') =>
    json(
      await ctx.inject({
        method: 'GET',
        url: `/api/v2.1/audit-events${query}`,
        headers: bearer(await nseSignIn(ctx, who, password)),
      }),
    );
  const signin = (username: string, password: string) =>
    ctx.inject({ method: 'POST', url: '/api/v2.1/auth/signin', payload: { username, password } });

  before(async () => {
    ctx = await createTestContext(dialect, { GATEHOUSE_LOCKOUT_THRESHOLD: '3' });
    acmeId = (await ctx.core.tenants.create({ code: 'acme', name: 'Acme' })).id;
    await ctx.core.tenants.create({ code: 'globex', name: 'Globex' });
    await ctx.core.accounts.createUser({
      username: 'alice',
      password: PASSWORDS.alice,
      tenantCode: 'acme',
      role: 'admin',
    });
    await ctx.core.accounts.createUser({
      username: 'bob',
      password: PASSWORDS.bob,
      tenantCode: 'acme',
      role: 'user',
    });
    await ctx.core.accounts.createUser({
      username: 'carol',
      password: PASSWORDS.carol,
      tenantCode: 'acme',
      role: 'user',
    });
    await ctx.core.accounts.createUser({
      username: 'gus',
      password: PASSWORDS.gus,
      tenantCode: 'globex',
      role: 'read',
    });

    ctx.clock.advance(1000);
    await signin('alice', 'not-the-password-1');
    await signin('typed-my-password-here', 'whatever-it-is');
    for (let i = 0; i < 3; i++) await signin('bob', `wrong-password-${i}`);
    ctx.clock.advance(1000);
    const login = await ctx.inject({
      method: 'POST',
      url: '/api/session/login',
      payload: { login: 'carol', password: PASSWORDS.carol },
    });
    const cookie = login.cookies.find((c) => c.name === 'gatehouse_session')!.value;
    await ctx.inject({ method: 'POST', url: '/api/session/logout', cookies: { gatehouse_session: cookie } });
    await ctx.inject({
      method: 'POST',
      url: '/api/v2.1/auth/password',
      payload: { username: 'carol', old_password: PASSWORDS.carol, new_password: 'new-secret-for-c-2' },
    });
    PASSWORDS.carol = 'new-secret-for-c-2';
    ctx.clock.advance(1000);
  });
  after(() => ctx.close());

  test('sign-ins, failures with their reason, lockouts, logouts and password changes are recorded', async () => {
    const body = await events('admin', ADMIN_PASSWORD, '?limit=100&sort_by=created&order_by=asc');
    const seen = body.result.records.map((e: any) => [e.action, e.target_name, e.outcome, e.reason]);
    assert.deepEqual(seen.slice(0, 7), [
      ['signin', 'alice', 'failure', 'wrong-password'],
      ['signin', '', 'failure', 'unknown-user'],
      ['signin', 'bob', 'failure', 'wrong-password'],
      ['signin', 'bob', 'failure', 'wrong-password'],
      ['lockout', 'bob', 'success', '3 consecutive failures'],
      ['signin', 'bob', 'failure', 'wrong-password'],
      ['signin', 'carol', 'success', 'password'],
    ]);
    const actions = body.result.records.map((e: any) => e.action);
    assert.ok(actions.includes('signout'));
    assert.ok(actions.includes('password.change'));
    const failure = body.result.records[0];
    assert.equal(failure.actor_type, 'anonymous');
    assert.equal(failure.tenant_id, acmeId);
    assert.equal(failure.ip, '127.0.0.1');
    assert.match(failure.time, /^\d{4}-\d\d-\d\dT/);
  });

  test('no password and no attempted unknown name is ever written into an event', async () => {
    const body = JSON.stringify(await events('admin', ADMIN_PASSWORD, '?limit=1000'));
    for (const secret of [
      ...Object.values(PASSWORDS),
      'not-the-password-1',
      'whatever-it-is',
      'typed-my-password-here',
      ADMIN_PASSWORD,
    ]) {
      assert.ok(!body.includes(secret), `an event holds ${secret.slice(0, 4)}…`);
    }
  });

  test("a tenant admin sees its tenant's events only; a reader sees none, of its own tenant or another", async () => {
    const alice = await events('alice', PASSWORDS.alice, '?limit=1000');
    assert.ok(alice.result.total_records > 0);
    for (const event of alice.result.records) assert.equal(event.tenant_id, acmeId);
    const gus = await events('gus', PASSWORDS.gus, '?limit=1000');
    assert.equal(gus.result.total_records, 0, "the trail is its administrators', not its readers'");
    const other = await events('gus', PASSWORDS.gus, `?tenant_id=${acmeId}`);
    assert.equal(other.result.total_records, 0);
    const root = await events('admin', ADMIN_PASSWORD, '?limit=1000');
    assert.ok(
      root.result.records.some((e: any) => e.tenant_id === ''),
      'root sees events of no tenant',
    );
  });

  test('filters: actor, action, target, time range; paging', async () => {
    const bySignin = await events('admin', ADMIN_PASSWORD, '?action=lockout');
    assert.equal(bySignin.result.total_records, 1);
    assert.equal(bySignin.result.records[0].target_name, 'bob');
    const byTarget = await events('admin', ADMIN_PASSWORD, '?target=bob&limit=2');
    assert.equal(byTarget.result.total_records, 4);
    assert.equal(byTarget.result.returned_records, 2);
    const byActor = await events('admin', ADMIN_PASSWORD, '?actor=carol');
    assert.ok(byActor.result.records.every((e: any) => e.actor_name === 'carol'));
    assert.ok(byActor.result.total_records >= 3);
    const start = new Date(ctx.clock.now() - 2500).toISOString();
    const end = ctx.clock.now() - 1500;
    const window = await events('admin', ADMIN_PASSWORD, `?from=${start}&to=${end}&limit=100`);
    assert.deepEqual(window.result.records.map((e: any) => e.target_name).sort(), [
      '',
      'alice',
      'bob',
      'bob',
      'bob',
      'bob',
    ]);
  });

  test('bad filters are a 400; the log cannot be changed over the API', async () => {
    const token = await nseSignIn(ctx);
    const bad = await ctx.inject({
      method: 'GET',
      url: '/api/v2.1/audit-events?from=yesterday',
      headers: bearer(token),
    });
    assert.equal(bad.statusCode, 400);
    assert.match(json(bad).status.verbose_message, /querystring\/from/);
    for (const method of ['POST', 'PUT', 'DELETE'] as const) {
      const response = await ctx.inject({ method, url: '/api/v2.1/audit-events', headers: bearer(token) });
      assert.equal(response.statusCode, 405);
    }
    assert.equal((await ctx.inject({ method: 'GET', url: '/api/v2.1/audit-events' })).statusCode, 401);
  });
});
