import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createTestContext, type TestContext } from '../helpers/context.js';
import { forEachDialect } from '../helpers/dialects.js';
import { basic, bearer, json, nseSignIn, sidOf, storwareLogin } from '../helpers/http.js';

const PASSWORDS: Record<string, string> = {
  alice: 'rabbit-hole-wonder-1',
  bob: 'builder-can-fix-it-2',
  rita: 'reads-every-page-33',
  carol: 'singing-in-winter-4',
  gary: 'globex-boss-of-all-5',
  dave: 'quiet-as-a-mouse-66',
};
const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
const UNKNOWN_ID = '01890000-0000-7000-8000-000000000000';

forEachDialect('NSE sessions', (dialect) => {
  let ctx: TestContext;
  const ids: Record<string, string> = {};

  const signIn = (who: string, userAgent = 'test-agent/1') =>
    ctx
      .inject({
        method: 'POST',
        url: '/api/v2.1/auth/signin',
        headers: { 'user-agent': userAgent },
        payload: { username: who, password: PASSWORDS[who] },
      })
      .then((r) => json(r).result.records[0].token as string);
  const list = (token: string, query = '') =>
    ctx.inject({ method: 'GET', url: `/api/v2.1/sessions${query}`, headers: bearer(token) });
  const end = (token: string, id: string) =>
    ctx.inject({ method: 'DELETE', url: `/api/v2.1/sessions/${id}`, headers: bearer(token) });
  const endAll = (token: string, query = '') =>
    ctx.inject({ method: 'DELETE', url: `/api/v2.1/sessions${query}`, headers: bearer(token) });
  /** Whether a token or session secret still works on the NSE API and on the Storware API. */
  const works = async (token: string) => {
    const nse = (await list(token)).statusCode;
    const storware = (await ctx.inject({ method: 'GET', url: '/api/session', headers: bearer(token) }))
      .statusCode;
    assert.equal(nse === 200, storware === 204, `both APIs must agree (${nse}, ${storware})`);
    return nse === 200;
  };
  const cookieWorks = async (cookie: string) =>
    (await ctx.inject({ method: 'GET', url: '/api/session', cookies: { gatehouse_session: cookie } }))
      .statusCode === 204;
  const sessionEnds = async () =>
    (
      await ctx.store.auditEvents.list(
        { offset: 0, limit: 1000, sortBy: 'created', order: 'asc' },
        { visibleTenantIds: undefined, action: 'session.end' },
      )
    ).rows;

  before(async () => {
    ctx = await createTestContext(dialect);
    await ctx.core.tenants.create({ code: 'acme', name: 'Acme' });
    await ctx.core.tenants.create({ code: 'globex', name: 'Globex' });
    const members: [string, string, 'admin' | 'user' | 'read'][] = [
      ['alice', 'acme', 'admin'],
      ['bob', 'acme', 'user'],
      ['rita', 'acme', 'read'],
      ['dave', 'acme', 'user'],
      ['carol', 'globex', 'user'],
      ['gary', 'globex', 'admin'],
    ];
    for (const [username, tenantCode, role] of members) {
      const user = await ctx.core.accounts.createUser({
        username,
        password: PASSWORDS[username],
        tenantCode,
        role,
      });
      ids[username] = user.id;
    }
    ids.admin = (await ctx.store.users.findByUsernameKey('admin'))!.id;
  });
  after(() => ctx.close());

  test("lists the caller's live sessions, the one of this request marked current", async () => {
    const first = await signIn('dave', 'first-agent/1.0');
    const second = await signIn('dave', 'second-agent/2.0');
    const cookie = await storwareLogin(ctx, 'dave', PASSWORDS.dave);

    const response = await list(first);
    assert.equal(response.statusCode, 200);
    const body = json(response);
    assert.equal(body.status.user_message, 'Okay. Returned 3 records.');
    assert.equal(body.result.total_records, 3);
    assert.equal(body.result.returned_records, 3);
    assert.equal(body.result.sort_by, 'created');
    assert.equal(body.result.order_by, 'desc');
    const records = body.result.records as Record<string, any>[];
    assert.deepEqual(
      records.map((r) => r.current),
      [false, false, true],
      'newest first; only the session of this request is current',
    );
    const current = records[2]!;
    assert.equal(current.id, sidOf(first));
    assert.deepEqual(Object.keys(current).sort(), [
      'created',
      'current',
      'expires',
      'id',
      'ip',
      'kind',
      'last_seen',
      'user_agent',
    ]);
    assert.equal(current.kind, 'user');
    assert.equal(current.user_agent, 'first-agent/1.0');
    assert.equal(current.ip, '127.0.0.1');
    for (const field of ['created', 'last_seen', 'expires']) assert.match(current[field], ISO);
    assert.ok(Date.parse(current.expires) > Date.parse(current.created), 'expires after it was created');

    const fromSecond = json(await list(second)).result.records as Record<string, any>[];
    assert.deepEqual(
      fromSecond.filter((r) => r.current).map((r) => r.id),
      [sidOf(second)],
    );
    // The Storware session secret is a bearer token on NSE too.
    const fromCookie = json(await list(cookie)).result.records as Record<string, any>[];
    assert.equal(fromCookie.filter((r) => r.current).length, 1);
    assert.ok(
      ![sidOf(first), sidOf(second)].includes(fromCookie.find((r) => r.current)!.id),
      'the Storware session is a session of its own',
    );

    const paged = json(await list(first, '?limit=1&offset=1&sort_by=created&order_by=asc'));
    assert.equal(paged.result.returned_records, 1);
    assert.equal(paged.result.total_records, 3);
    assert.equal(paged.result.records[0].id, sidOf(second));
    await endAll(first);
    await end(first, sidOf(first));
  });

  test('sessions idle too long or logged out are not listed', async () => {
    const stale = await signIn('dave');
    ctx.clock.advance(ctx.config.sessionIdleTimeoutMs - 60_000);
    const fresh = await signIn('dave');
    const loggedOut = await storwareLogin(ctx, 'dave', PASSWORDS.dave);
    await ctx.inject({
      method: 'POST',
      url: '/api/session/logout',
      cookies: { gatehouse_session: loggedOut },
    });
    ctx.clock.advance(120_000);
    const listed = json(await list(fresh)).result.records as Record<string, any>[];
    assert.deepEqual(
      listed.map((r) => r.id),
      [sidOf(fresh)],
    );
    assert.equal(await works(stale), false, 'the idle session is dead, as the list says');
    await end(fresh, sidOf(fresh));
  });

  test('ending one session kills its token and cookie on both APIs, and nothing else', async () => {
    const keeper = await signIn('bob');
    const jwt = await signIn('bob');
    const cookie = await storwareLogin(ctx, 'bob', PASSWORDS.bob);
    assert.equal(await works(jwt), true);
    assert.equal(await cookieWorks(cookie), true);
    assert.equal(await works(cookie), true);

    // The NSE session: its JWT stops working on NSE and on Storware.
    assert.equal((await end(keeper, sidOf(jwt))).statusCode, 204);
    assert.equal(await works(jwt), false);

    // The Storware session: its cookie stops working as a cookie and as an NSE bearer token.
    const cookieSession = (json(await list(cookie)).result.records as Record<string, any>[]).find(
      (r) => r.current,
    )!.id as string;
    const ended = await end(keeper, cookieSession);
    assert.equal(ended.statusCode, 204);
    assert.equal(ended.body, '');
    assert.equal(await cookieWorks(cookie), false);
    assert.equal(await works(cookie), false);

    assert.equal(await works(keeper), true);
    // An ended session is gone from the list, and ending it again finds nothing.
    assert.equal((await end(keeper, cookieSession)).statusCode, 404);
    assert.deepEqual(
      (json(await list(keeper)).result.records as Record<string, any>[]).map((r) => r.id),
      [sidOf(keeper)],
    );

    // One's own current session too: it is a sign-out.
    assert.equal((await end(keeper, sidOf(keeper))).statusCode, 204);
    assert.equal(await works(keeper), false);
  });

  test('DELETE /sessions ends all but the current one, which keeps working', async () => {
    const current = await signIn('bob');
    const other = await signIn('bob');
    const cookie = await storwareLogin(ctx, 'bob', PASSWORDS.bob);
    const before = (await sessionEnds()).length;

    const response = await endAll(current);
    assert.equal(response.statusCode, 204);
    assert.equal(response.body, '');
    assert.equal(await works(current), true);
    assert.equal(await works(other), false);
    assert.equal(await cookieWorks(cookie), false);
    assert.deepEqual(
      (json(await list(current)).result.records as Record<string, any>[]).map((r) => [r.id, r.current]),
      [[sidOf(current), true]],
    );
    const events = (await sessionEnds()).slice(before);
    assert.equal(events.length, 1);
    assert.equal(events[0]!.actor_id, ids.bob);
    assert.equal(events[0]!.target_id, ids.bob);
    assert.match(events[0]!.reason, /2 sessions ended, the current one kept/);

    // Nothing left to end: no change, no event.
    assert.equal((await endAll(current)).statusCode, 204);
    assert.equal((await sessionEnds()).length, before + 1);
    await end(current, sidOf(current));
  });

  test('HTTP Basic has no current session: the list marks none, and DELETE /sessions ends them all', async () => {
    const jwt = await signIn('bob');
    const cookie = await storwareLogin(ctx, 'bob', PASSWORDS.bob);
    const credentials = basic('bob', PASSWORDS.bob!);
    const listedBasic = json(
      await ctx.inject({ method: 'GET', url: '/api/v2.1/sessions', headers: credentials }),
    );
    assert.equal(listedBasic.result.total_records, 2);
    assert.ok(
      (listedBasic.result.records as Record<string, any>[]).every((r) => r.current === false),
      'no session is current for HTTP Basic',
    );

    const response = await ctx.inject({ method: 'DELETE', url: '/api/v2.1/sessions', headers: credentials });
    assert.equal(response.statusCode, 204);
    assert.equal(await works(jwt), false);
    assert.equal(await cookieWorks(cookie), false);
    const after = json(await ctx.inject({ method: 'GET', url: '/api/v2.1/sessions', headers: credentials }));
    assert.equal(after.result.total_records, 0);
  });

  test('an admin lists and ends the sessions of a user it manages, one or all', async () => {
    const admin = await signIn('alice');
    const bob1 = await signIn('bob', 'bob-laptop/1');
    const bob2 = await signIn('bob', 'bob-phone/1');

    const listed = json(await list(admin, `?user_id=${ids.bob}`));
    assert.equal(listed.result.total_records, 2);
    const records = listed.result.records as Record<string, any>[];
    assert.ok(
      records.every((r) => r.current === false),
      "an admin's own session is never in another's list",
    );
    assert.deepEqual(records.map((r) => r.user_agent).sort(), ['bob-laptop/1', 'bob-phone/1']);

    const before = (await sessionEnds()).length;
    assert.equal((await end(admin, sidOf(bob1))).statusCode, 204);
    assert.equal(await works(bob1), false);
    assert.equal(await works(bob2), true);
    const [event] = (await sessionEnds()).slice(before);
    assert.equal(event?.actor_id, ids.alice);
    assert.equal(event?.target_type, 'session');
    assert.equal(event?.target_id, sidOf(bob1));
    assert.equal(event?.target_name, 'bob');
    assert.equal(event?.outcome, 'success');

    const bob3 = await signIn('bob');
    assert.equal((await endAll(admin, `?user_id=${ids.bob}`)).statusCode, 204);
    assert.equal(await works(bob2), false);
    assert.equal(await works(bob3), false);
    assert.equal(await works(admin), true, "ending a user's sessions leaves the admin's alone");
    assert.equal(json(await list(admin, `?user_id=${ids.bob}`)).result.total_records, 0);

    // With their own id, an admin gets the self-service rules: all but the current one.
    const adminOther = await signIn('alice');
    assert.equal((await endAll(admin, `?user_id=${ids.alice}`)).statusCode, 204);
    assert.equal(await works(admin), true);
    assert.equal(await works(adminOther), false);

    // Root manages every user.
    const root = await nseSignIn(ctx);
    const bob4 = await signIn('bob');
    assert.equal(json(await list(root, `?user_id=${ids.bob}`)).result.total_records, 1);
    assert.equal((await end(root, sidOf(bob4))).statusCode, 204);
    assert.equal(await works(bob4), false);
    await end(admin, sidOf(admin));
    await end(root, sidOf(root));
  });

  test("another tenant's admin cannot list or end a user's sessions: 404 as for an unknown user, nothing changes", async () => {
    const bob = await signIn('bob');
    const gary = await signIn('gary');
    const unknownUser = json(await list(gary, `?user_id=${UNKNOWN_ID}`));
    assert.equal(unknownUser.status.code, 404);

    for (const response of [
      await list(gary, `?user_id=${ids.bob}`),
      await list(gary, '?user_id=not-a-user-id'),
      await endAll(gary, `?user_id=${ids.bob}`),
    ]) {
      assert.equal(response.statusCode, 404);
      assert.deepEqual(json(response), unknownUser);
    }
    const unknownSession = await end(gary, UNKNOWN_ID);
    assert.equal(unknownSession.statusCode, 404);
    const foreignSession = await end(gary, sidOf(bob));
    assert.equal(foreignSession.statusCode, 404);
    assert.deepEqual(json(foreignSession), json(unknownSession));
    assert.equal((await end(gary, 'not-a-session-id')).statusCode, 404);
    assert.equal(await works(bob), true, 'nothing changed');
    assert.equal(json(await list(bob)).result.total_records, 1);

    // Going the other way: an acme admin and a globex user.
    const alice = await signIn('alice');
    const carol = await signIn('carol');
    assert.equal((await list(alice, `?user_id=${ids.carol}`)).statusCode, 404);
    assert.equal((await end(alice, sidOf(carol))).statusCode, 404);
    assert.equal(await works(carol), true);
    for (const token of [bob, gary, alice, carol]) await end(token, sidOf(token));
  });

  test("a plain user sees and ends no one else's sessions; a reader sees the user but may not manage it", async () => {
    const bob = await signIn('bob');
    const alice = await signIn('alice');
    const dave = await signIn('dave');
    for (const response of [
      await list(bob, `?user_id=${ids.alice}`),
      await list(bob, `?user_id=${ids.dave}`),
      await endAll(bob, `?user_id=${ids.dave}`),
      await end(bob, sidOf(alice)),
      await end(bob, sidOf(dave)),
    ]) {
      assert.equal(response.statusCode, 404);
    }
    assert.equal(await works(alice), true);
    assert.equal(await works(dave), true);

    // A tenant reader can see bob exists (as GET /users shows it) but changes nothing.
    const rita = await signIn('rita');
    const forbidden = await list(rita, `?user_id=${ids.bob}`);
    assert.equal(forbidden.statusCode, 403);
    assert.match(json(forbidden).status.verbose_message, /^FORBIDDEN/);
    assert.equal((await endAll(rita, `?user_id=${ids.bob}`)).statusCode, 403);
    assert.equal((await end(rita, sidOf(bob))).statusCode, 404);
    assert.equal(await works(bob), true);
    // An admin does not manage a root user.
    const root = await nseSignIn(ctx);
    assert.equal((await list(alice, `?user_id=${ids.admin}`)).statusCode, 404);
    for (const token of [bob, alice, dave, rita, root]) await end(token, sidOf(token));
  });

  test('a node lists its own sessions; only root ends them', async () => {
    await ctx.core.accounts.createNode({ login: 'node-07', password: 'backup-agent-pass-7' });
    const login = await ctx.inject({
      method: 'POST',
      url: '/api/session/node/login',
      headers: { 'user-agent': 'vprotect-node/6.1' },
      payload: { login: 'node-07', password: 'backup-agent-pass-7', version: '6.1.0' },
    });
    const cookie = login.cookies.find((c) => c.name === 'gatehouse_session')!.value;
    const own = json(await list(cookie)).result.records as Record<string, any>[];
    assert.equal(own.length, 1);
    assert.equal(own[0]!.kind, 'node');
    assert.equal(own[0]!.current, true);
    assert.equal(own[0]!.user_agent, 'vprotect-node/6.1');

    const alice = await signIn('alice');
    assert.equal((await end(alice, own[0]!.id)).statusCode, 404);
    assert.equal(await cookieWorks(cookie), true);
    const root = await nseSignIn(ctx);
    assert.equal((await end(root, own[0]!.id)).statusCode, 204);
    assert.equal(await cookieWorks(cookie), false);
    await end(alice, sidOf(alice));
    await end(root, sidOf(root));
  });

  test('bad input and missing credentials', async () => {
    const bob = await signIn('bob');
    for (const query of [
      '?sort_by=ip',
      '?order_by=up',
      '?limit=0',
      '?offset=-1',
      `?user_id=${'x'.repeat(65)}`,
    ]) {
      const response = await list(bob, query);
      assert.equal(response.statusCode, 400, query);
      assert.match(json(response).status.verbose_message, /^VALIDATION_FAILED/);
    }
    assert.equal((await end(bob, 'x'.repeat(65))).statusCode, 400);
    for (const request of [
      { method: 'GET' as const, url: '/api/v2.1/sessions' },
      { method: 'DELETE' as const, url: '/api/v2.1/sessions' },
      { method: 'DELETE' as const, url: `/api/v2.1/sessions/${sidOf(bob)}` },
    ]) {
      assert.equal((await ctx.inject(request)).statusCode, 401);
    }
    assert.equal(
      (await ctx.inject({ method: 'PUT', url: '/api/v2.1/sessions', headers: bearer(bob) })).statusCode,
      405,
    );
    assert.equal(await works(bob), true);
    await end(bob, sidOf(bob));
  });

  test('no session event carries a secret', async () => {
    const dump = JSON.stringify(await sessionEnds());
    assert.doesNotMatch(dump, /gss_|eyJ/);
  });
});
