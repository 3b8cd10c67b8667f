import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, test } from 'node:test';
import { sql } from 'kysely';
import { createTestContext, type TestContext } from '../helpers/context.js';
import { forEachDialect } from '../helpers/dialects.js';
import { basic, bearer, json, nseSignIn } from '../helpers/http.js';
import { holdRow, untilWaitingForLocks } from '../helpers/postgres.js';

const PASSWORDS: Record<string, string> = {
  alice: 'rabbit-hole-wonder-1',
  bob: 'builder-can-fix-it-2',
  dave: 'quiet-as-a-mouse-66',
  gary: 'globex-boss-of-all-5',
};
const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
const UNKNOWN_ID = '01890000-0000-7000-8000-000000000000';
const HOUR = 3_600_000;

forEachDialect('NSE API tokens', (dialect) => {
  let ctx: TestContext;
  let logs = '';
  const ids: Record<string, string> = {};
  const sessions: Record<string, string> = {};
  const secrets: string[] = [];

  const create = (who: string, payload: Record<string, unknown>) =>
    ctx.inject({ method: 'POST', url: '/api/v2.1/tokens', headers: bearer(sessions[who]!), payload });
  const list = (who: string, query = '') =>
    ctx.inject({ method: 'GET', url: `/api/v2.1/tokens${query}`, headers: bearer(sessions[who]!) });
  const getOne = (who: string, id: string) =>
    ctx.inject({ method: 'GET', url: `/api/v2.1/tokens/${id}`, headers: bearer(sessions[who]!) });
  const revoke = (who: string, id: string) =>
    ctx.inject({ method: 'DELETE', url: `/api/v2.1/tokens/${id}`, headers: bearer(sessions[who]!) });
  const loginWithToken = (token: string) =>
    ctx.inject({ method: 'POST', url: '/api/session/login-with-token', payload: { token } });
  const cookieOf = (response: Awaited<ReturnType<typeof loginWithToken>>) =>
    response.cookies.find((c) => c.name === 'gatehouse_session')!.value;
  const cookieWorks = async (cookie: string) =>
    (await ctx.inject({ method: 'GET', url: '/api/session', cookies: { gatehouse_session: cookie } }))
      .statusCode === 204;
  /** Creates a token and keeps its secret to search for later. */
  const issue = async (who: string, payload: Record<string, unknown>) => {
    const response = await create(who, payload);
    assert.equal(response.statusCode, 201, response.body);
    const record = json(response).result.records[0] as Record<string, any>;
    secrets.push(record.token);
    return record;
  };
  const auditRows = async (action: string) =>
    (
      await ctx.store.auditEvents.list(
        { offset: 0, limit: 1000, sortBy: 'created', order: 'asc' },
        { visibleTenantIds: undefined, action },
      )
    ).rows;

  const signInAll = async () => {
    for (const username of Object.keys(PASSWORDS)) {
      sessions[username] = await nseSignIn(ctx, username, PASSWORDS[username]);
    }
    sessions.root = await nseSignIn(ctx);
  };

  before(async () => {
    const stream = new Writable({
      write(chunk, _encoding, done) {
        logs += chunk.toString();
        done();
      },
    });
    ctx = await createTestContext(dialect, {}, { logger: { level: 'trace', stream } });
    await ctx.core.tenants.create({ code: 'acme', name: 'Acme' });
    await ctx.core.tenants.create({ code: 'globex', name: 'Globex' });
    const members: [string, string, 'admin' | 'user'][] = [
      ['alice', 'acme', 'admin'],
      ['bob', 'acme', 'user'],
      ['dave', 'acme', 'user'],
      ['gary', 'globex', 'admin'],
    ];
    for (const [username, tenantCode, role] of members) {
      ids[username] = (
        await ctx.core.accounts.createUser({ username, password: PASSWORDS[username], tenantCode, role })
      ).id;
    }
    await signInAll();
  });
  after(() => ctx.close());

  test('create answers 201 with the record and the secret, once; the secret signs in', async () => {
    const response = await create('bob', { name: 'backup script', expires_in: '30d' });
    assert.equal(response.statusCode, 201);
    assert.equal(response.headers['cache-control'], 'no-store');
    const body = json(response);
    assert.equal(body.status.user_message, 'Okay. New resource created.');
    assert.equal(body.status.code, 201);
    const record = body.result.records[0] as Record<string, any>;
    secrets.push(record.token);
    assert.deepEqual(Object.keys(record).sort(), [
      'created',
      'created_by',
      'expires',
      'id',
      'last_used',
      'name',
      'revoked',
      'token',
      'user_id',
    ]);
    assert.match(record.token, /^gtk_[A-Za-z0-9_-]{43}$/);
    assert.equal(record.name, 'backup script');
    assert.equal(record.user_id, ids.bob);
    assert.match(record.created, ISO);
    assert.equal(Date.parse(record.expires) - Date.parse(record.created), 30 * 24 * HOUR);
    assert.equal(record.last_used, null);
    assert.equal(record.revoked, false);

    const login = await loginWithToken(record.token);
    assert.equal(login.statusCode, 201);
    assert.deepEqual(json(login).requester, { guid: ids.bob, name: 'bob' });

    // Listed and fetched without the secret; last_used now set.
    const listed = await list('bob');
    assert.equal(listed.statusCode, 200);
    const inList = (json(listed).result.records as Record<string, any>[]).find((t) => t.id === record.id)!;
    assert.equal(inList.token, undefined);
    assert.match(inList.last_used, ISO);
    const fetched = await getOne('bob', record.id);
    assert.equal(fetched.statusCode, 200);
    assert.equal(json(fetched).result.records[0].token, undefined);
    assert.ok(
      !listed.body.includes(record.token) && !fetched.body.includes(record.token),
      'the secret is shown once only',
    );
  });

  test('an expiry given as an ISO time; no expiry at all; the list pages and sorts', async () => {
    const at = new Date(ctx.clock.now() + 7 * 24 * HOUR).toISOString();
    const dated = await issue('dave', { name: 'dated', expires_at: at });
    assert.equal(dated.expires, at);
    const forever = await issue('dave', { name: 'forever' });
    assert.equal(forever.expires, null);
    const day = await issue('dave', { name: 'daily', expires_in: '1d', unknown_field: 'ignored' });

    const byName = json(await list('dave', '?sort_by=name&order_by=asc'));
    assert.deepEqual(
      byName.result.records.map((t: any) => t.name),
      ['daily', 'dated', 'forever'],
    );
    const byExpiry = json(await list('dave', '?sort_by=expires&order_by=asc'));
    assert.deepEqual(
      byExpiry.result.records.map((t: any) => t.id),
      [day.id, dated.id, forever.id],
      'a token that never expires sorts last',
    );
    const page = json(await list('dave', '?limit=1&offset=1&sort_by=created&order_by=asc'));
    assert.equal(page.result.returned_records, 1);
    assert.equal(page.result.total_records, 3);
    assert.equal(page.result.records[0].id, forever.id, 'made in the same millisecond: in the order made');
  });

  test('a user holds at most GATEHOUSE_API_TOKENS_PER_USER live tokens: one more answers 409, even all at once', async () => {
    const limited = await createTestContext(dialect, { GATEHOUSE_API_TOKENS_PER_USER: '3' });
    try {
      await limited.core.tenants.create({ code: 'acme', name: 'Acme' });
      for (const [username, role] of [
        ['hoarder', 'user'],
        ['lender', 'admin'],
      ] as const) {
        await limited.core.accounts.createUser({
          username,
          password: PASSWORDS.alice!,
          tenantCode: 'acme',
          role,
        });
      }
      const hoarder = await nseSignIn(limited, 'hoarder', PASSWORDS.alice);
      const lender = await nseSignIn(limited, 'lender', PASSWORDS.alice);
      const hoarderId = (await limited.store.users.findByUsernameKey('hoarder'))!.id;
      const make = (session: string, payload: Record<string, unknown>) =>
        limited.inject({ method: 'POST', url: '/api/v2.1/tokens', headers: bearer(session), payload });

      // Found by review: a plain user made 500 in 1.6 s, each a row and an audit event kept for ever.
      // All at once: counted with the user's row taken, two cannot both pass the last place.
      const burst = await Promise.all(
        Array.from({ length: 6 }, (_, i) => make(hoarder, { name: `burst ${i}` })),
      );
      assert.deepEqual(burst.map((r) => r.statusCode).sort(), [201, 201, 201, 409, 409, 409]);
      const refused = burst.find((r) => r.statusCode === 409)!;
      assert.match(json(refused).status.verbose_message, /^API_TOKEN_LIMIT/);
      assert.deepEqual(json(refused).result, { total_records: 0, records: [] });
      // A token lent to the user counts toward the user's own limit.
      assert.equal((await make(lender, { name: 'lent', user_id: hoarderId })).statusCode, 409);
      assert.equal(await limited.store.apiTokens.countLiveOfUser(hoarderId, limited.clock.now()), 3);

      // Revoked or expired ones do not count.
      const first = json(burst.find((r) => r.statusCode === 201)!).result.records[0].id;
      const revoked = await limited.inject({
        method: 'DELETE',
        url: `/api/v2.1/tokens/${first}`,
        headers: bearer(hoarder),
      });
      assert.equal(revoked.statusCode, 204);
      const brief = await make(hoarder, { name: 'brief', expires_in: '1h' });
      assert.equal(brief.statusCode, 201, brief.body);
      assert.equal((await make(hoarder, { name: 'one too many' })).statusCode, 409);
      limited.clock.advance(HOUR + 1000);
      const lenderLater = await nseSignIn(limited, 'lender', PASSWORDS.alice);
      const lent = await make(lenderLater, { name: 'lent once the brief one expired', user_id: hoarderId });
      assert.equal(lent.statusCode, 201, lent.body);
    } finally {
      await limited.close();
    }
  });

  test('bad bodies answer 400 and create nothing', async () => {
    const before = json(await list('dave')).result.total_records;
    const bad: Record<string, unknown>[] = [
      {},
      { name: '' },
      { name: '   ' },
      { name: 'x'.repeat(129) },
      { name: 42 },
      { name: 'both', expires_in: '1d', expires_at: '2099-01-01T00:00:00Z' },
      { name: 'word', expires_in: 'soon' },
      { name: 'zero', expires_in: '0s' },
      { name: 'negative', expires_in: '-5m' },
      { name: 'too long', expires_in: '3651d' },
      { name: 'huge', expires_in: '99999999999999999999d' },
      { name: 'not a date', expires_at: 'tomorrow' },
      { name: 'no zone', expires_at: '2099-01-01T00:00:00' },
      { name: 'past', expires_at: '2001-01-01T00:00:00Z' },
      { name: 'impossible', expires_at: '2099-02-30T00:00:00Z' },
      { name: 'number', expires_at: 1_900_000_000_000 },
    ];
    for (const payload of bad) {
      const response = await create('dave', payload);
      assert.equal(response.statusCode, 400, JSON.stringify(payload));
      assert.match(json(response).status.verbose_message, /^VALIDATION_FAILED/, JSON.stringify(payload));
    }
    assert.equal(json(await list('dave')).result.total_records, before);
    for (const query of ['?sort_by=token', '?limit=0', '?order_by=sideways']) {
      assert.equal((await list('dave', query)).statusCode, 400, query);
    }
  });

  test('an expired token no longer signs in, and the sessions it opened end with it', async () => {
    // Shorter than the idle timeout, so that only the token's expiry can end the session.
    const record = await issue('dave', { name: 'short', expires_in: '20m' });
    const early = await loginWithToken(record.token);
    assert.equal(early.statusCode, 201);
    const cookie = cookieOf(early);
    ctx.clock.advance(20 * 60_000 - 1000);
    assert.equal(await cookieWorks(cookie), true);
    ctx.clock.advance(1000);
    const late = await loginWithToken(record.token);
    assert.equal(late.statusCode, 400);
    assert.equal(json(late).errorCode, 'INVALID_API_TOKEN');
    assert.equal(
      await cookieWorks(cookie),
      false,
      'a session opened with the token ends when the token does',
    );
    // Twenty minutes went by for every session of this suite.
    await signInAll();
  });

  test('revoking answers 204, stops the token signing in and ends the sessions it opened', async () => {
    const record = await issue('bob', { name: 'to revoke' });
    const cookies = [
      cookieOf(await loginWithToken(record.token)),
      cookieOf(await loginWithToken(record.token)),
    ];
    const other = await issue('bob', { name: 'kept' });
    const otherCookie = cookieOf(await loginWithToken(other.token));
    const eventsBefore = (await auditRows('token.revoke')).length;

    const response = await revoke('bob', record.id);
    assert.equal(response.statusCode, 204);
    assert.equal(response.body, '');
    assert.equal((await loginWithToken(record.token)).statusCode, 400);
    for (const cookie of cookies) assert.equal(await cookieWorks(cookie), false);
    assert.equal(await cookieWorks(otherCookie), true, 'another token and its session are untouched');
    assert.equal((await list('bob')).statusCode, 200, "the caller's own password session is untouched");
    assert.equal(json(await getOne('bob', record.id)).result.records[0].revoked, true);

    const events = (await auditRows('token.revoke')).slice(eventsBefore);
    assert.equal(events.length, 1);
    assert.equal(events[0]!.target_id, record.id);
    assert.equal(events[0]!.actor_id, ids.bob);
    assert.match(events[0]!.reason, /2 sessions ended/);

    // Again: nothing left to do, no second event.
    assert.equal((await revoke('bob', record.id)).statusCode, 204);
    assert.equal((await auditRows('token.revoke')).length, eventsBefore + 1);
  });

  test('an admin creates, lists and revokes the tokens of a user it manages', async () => {
    const record = await issue('alice', { name: 'for bob', user_id: ids.bob, expires_in: '12h' });
    assert.equal(record.user_id, ids.bob);
    const login = await loginWithToken(record.token);
    assert.equal(login.statusCode, 201);
    const who = await ctx.inject({
      method: 'GET',
      url: '/api/session/user',
      cookies: { gatehouse_session: cookieOf(login) },
    });
    assert.deepEqual(json(who).requester, { guid: ids.bob, name: 'bob' });

    const listed = json(await list('alice', `?user_id=${ids.bob}`));
    assert.ok(
      listed.result.records.some((t: any) => t.id === record.id),
      "in bob's list",
    );
    assert.ok(
      !(json(await list('alice')).result.records as any[]).some((t) => t.id === record.id),
      "not in alice's own list",
    );
    assert.equal((await getOne('alice', record.id)).statusCode, 200);
    assert.equal((await revoke('alice', record.id)).statusCode, 204);
    assert.equal((await loginWithToken(record.token)).statusCode, 400);

    const created = (await auditRows('token.create')).find((e) => e.target_id === record.id)!;
    assert.equal(created.actor_id, ids.alice);
    assert.match(created.reason, /for user bob/);
    // Root manages everyone.
    const byRoot = await issue('root', { name: 'root for gary', user_id: ids.gary });
    assert.equal(byRoot.user_id, ids.gary);
  });

  test("a password change, or a password set by an administrator, revokes the user's API tokens", async () => {
    const first = 'early-riser-morning-11';
    await ctx.core.accounts.createUser({
      username: 'erin',
      password: first,
      tenantCode: 'acme',
      role: 'user',
    });
    sessions.erin = await nseSignIn(ctx, 'erin', first);
    // Minted by whoever held erin's password: gone with the change.
    const minted = await issue('erin', { name: 'left behind' });
    assert.equal((await loginWithToken(minted.token)).statusCode, 201);
    const second = 'changed-by-herself-222';
    const changed = await ctx.inject({
      method: 'POST',
      url: '/api/v2.1/auth/password',
      payload: { username: 'erin', old_password: first, new_password: second },
    });
    assert.equal(changed.statusCode, 200, changed.body);
    assert.equal((await loginWithToken(minted.token)).statusCode, 400);
    sessions.erin = json(changed).result.records[0].token;
    const next = await issue('erin', { name: 'after the change' });
    assert.equal((await loginWithToken(next.token)).statusCode, 201);
    const reset = await ctx.inject({
      method: 'PUT',
      url: '/api/v2.1/users/erin',
      headers: bearer(sessions.alice!),
      payload: { password: 'reset-by-alice-3333' },
    });
    assert.equal(reset.statusCode, 200, reset.body);
    assert.equal((await loginWithToken(next.token)).statusCode, 400);
    const set = (await auditRows('password.set')).at(-1);
    assert.match(set?.reason ?? '', /1 API token\(s\) revoked/);
  });

  test('the tokens an admin lent end with its password: changed by itself, set by root, set on the command line', async () => {
    let password = 'lender-first-phrase-41';
    await ctx.core.accounts.createUser({ username: 'fran', password, tenantCode: 'acme', role: 'admin' });
    const davesOwn = await issue('dave', { name: "dave's own, beside fran's" });
    /** fran lends dave a token; dave opens a session with it. */
    const lend = async () => {
      sessions.fran = await nseSignIn(ctx, 'fran', password);
      const lent = await issue('fran', { name: 'lent by fran', user_id: ids.dave });
      const cookie = cookieOf(await loginWithToken(lent.token));
      assert.equal(await cookieWorks(cookie), true);
      return { lent, cookie };
    };
    const endedWithIt = async ({ lent, cookie }: Awaited<ReturnType<typeof lend>>, how: string) => {
      assert.equal(
        (await loginWithToken(lent.token)).statusCode,
        400,
        `${how}: the lent token signs in no more`,
      );
      assert.equal(await cookieWorks(cookie), false, `${how}: the session opened with it ended`);
      assert.equal(
        json(await getOne('dave', lent.id)).result.records[0].revoked,
        true,
        `${how}: shown revoked`,
      );
    };

    // Found by review: each of these left the lent token signing in, and administering acme as dave.
    const before = await lend();
    const changed = await ctx.inject({
      method: 'POST',
      url: '/api/v2.1/auth/password',
      payload: { username: 'fran', old_password: password, new_password: 'lender-second-phrase-42' },
    });
    assert.equal(changed.statusCode, 200, changed.body);
    password = 'lender-second-phrase-42';
    await endedWithIt(before, 'changed by fran');
    const change = (await auditRows('password.change')).at(-1);
    assert.match(change?.reason ?? '', /1 API token\(s\) revoked, 1 of them lent to other users/);

    const beforeReset = await lend();
    const reset = await ctx.inject({
      method: 'PUT',
      url: '/api/v2.1/users/fran',
      headers: bearer(sessions.root!),
      payload: { password: 'lender-third-phrase-43' },
    });
    assert.equal(reset.statusCode, 200, reset.body);
    password = 'lender-third-phrase-43';
    await endedWithIt(beforeReset, 'set by root');
    const set = (await auditRows('password.set')).at(-1);
    assert.match(set?.reason ?? '', /1 API token\(s\) revoked, 1 of them lent to other users/);

    const beforeCli = await lend();
    await ctx.core.accounts.setPassword('fran', 'lender-fourth-phrase-44');
    await endedWithIt(beforeCli, 'set on the command line');

    // dave's own token and dave's own session are not fran's to end.
    assert.equal((await loginWithToken(davesOwn.token)).statusCode, 201);
    assert.equal((await list('dave')).statusCode, 200);
  });

  test('a token an admin made for a user works only while the admin still manages that user', async () => {
    const record = await issue('alice', { name: 'lent by alice', user_id: ids.dave });
    assert.equal(record.created_by, ids.alice);
    const opened = cookieOf(await loginWithToken(record.token));
    assert.equal(await cookieWorks(opened), true);
    const acme = (await ctx.store.tenants.findByCode('acme'))!.id;
    const setAlice = (role: string) =>
      ctx.inject({
        method: 'PUT',
        url: `/api/v2.1/users/${ids.alice}`,
        headers: bearer(sessions.root!),
        payload: { tenancies: [{ tenant_id: acme, role_name: role }] },
      });
    // alice demoted: the token she made for dave stops working, and the session it opened ends.
    assert.equal((await setAlice('user')).statusCode, 200);
    assert.equal((await loginWithToken(record.token)).statusCode, 400);
    assert.equal(await cookieWorks(opened), false, 'the session opened with the lent token ended');
    assert.equal((await setAlice('admin')).statusCode, 200);
    // Deactivated, the same: the sessions dave opened with her token end with her.
    const reopened = cookieOf(await loginWithToken(record.token));
    const setActive = (active: boolean) =>
      ctx.inject({
        method: 'PUT',
        url: `/api/v2.1/users/${ids.alice}`,
        headers: bearer(sessions.root!),
        payload: { active },
      });
    assert.equal((await setActive(false)).statusCode, 200);
    assert.equal(await cookieWorks(reopened), false, 'ended with its maker deactivated');
    assert.equal((await setActive(true)).statusCode, 200);
    await signInAll(); // alice's own sessions ended too
    assert.equal((await loginWithToken(record.token)).statusCode, 201);
    // dave raised above alice (a member of Global Administrators): her token is not his way in.
    const groups = json(
      await ctx.inject({
        method: 'GET',
        url: '/api/v2.1/groups?limit=1000',
        headers: bearer(sessions.root!),
      }),
    ).result.records as { id: string; name: string }[];
    const globalAdmins = groups.find((g) => g.name === 'Global Administrators')!.id;
    const member = (method: 'POST' | 'DELETE') =>
      ctx.inject({
        method,
        url: `/api/v2.1/groups/${globalAdmins}/members/${ids.dave}`,
        headers: bearer(sessions.root!),
      });
    const beforeRaise = cookieOf(await loginWithToken(record.token));
    assert.equal(await cookieWorks(beforeRaise), true);
    assert.equal((await member('POST')).statusCode, 200);
    assert.equal((await loginWithToken(record.token)).statusCode, 400);
    assert.equal(await cookieWorks(beforeRaise), false, 'the session opened before the raise ended with it');
    assert.equal((await member('DELETE')).statusCode, 204);
    // dave raised by a role given to a group he is in: the sessions of alice's token end with it.
    const asRoot = (method: 'POST' | 'PUT', url: string, payload: object) =>
      ctx.inject({ method, url: `/api/v2.1${url}`, headers: bearer(sessions.root!), payload });
    const role = json(
      await asRoot('POST', '/roles', { name: 'Report readers', privileges: ['REPORTING_REPORT_READ'] }),
    ).result.records[0];
    const group = json(await asRoot('POST', '/groups', { name: 'Readers of reports' })).result.records[0];
    assert.equal((await asRoot('POST', `/groups/${group.id}/members/${ids.dave}`, {})).statusCode, 200);
    const beforeRole = cookieOf(await loginWithToken(record.token));
    assert.equal(await cookieWorks(beforeRole), true, 'a group without roles raises no one');
    const given = await asRoot('PUT', `/groups/${group.id}`, { roles: [role.id] });
    assert.equal(given.statusCode, 200, given.body);
    assert.equal(await cookieWorks(beforeRole), false, 'ended with the role given to his group');
    assert.equal((await loginWithToken(record.token)).statusCode, 400);
    assert.equal((await asRoot('PUT', `/groups/${group.id}`, { roles: [] })).statusCode, 200);
    assert.equal((await loginWithToken(record.token)).statusCode, 201);
    // A token of one's own is not lent: it does not depend on anyone's role.
    const own = await issue('dave', { name: 'my own' });
    assert.equal(own.created_by, ids.dave);
    assert.equal((await loginWithToken(own.token)).statusCode, 201);
  });

  test('created_by lists the tokens a user made, whoever holds them, to the maker and to those who manage it', async () => {
    const password = 'Maker-listing-2031';
    const made: Record<string, string> = {};
    for (const [username, role] of [
      ['maker-m', 'admin'],
      ['held-1', 'user'],
      ['held-2', 'user'],
    ] as const) {
      made[username] = (
        await ctx.core.accounts.createUser({ username, password, tenantCode: 'acme', role })
      ).id;
    }
    sessions['maker-m'] = await nseSignIn(ctx, 'maker-m', password);
    sessions['held-1'] = await nseSignIn(ctx, 'held-1', password);
    const own = await issue('maker-m', { name: 'its own' });
    const first = await issue('maker-m', { name: 'for held-1', user_id: made['held-1'] });
    const second = await issue('maker-m', { name: 'for held-2', user_id: made['held-2'] });
    await issue('held-1', { name: 'held-1 made it' });
    const ids = async (who: string, query: string) => {
      const response = await list(who, query);
      assert.equal(response.statusCode, 200, response.body);
      return (json(response).result.records as { id: string }[]).map((r) => r.id).sort();
    };
    const everyOne = [own.id, first.id, second.id].sort();
    assert.deepEqual(await ids('maker-m', `?created_by=${made['maker-m']}`), everyOne, 'the maker');
    assert.deepEqual(await ids('root', `?created_by=${made['maker-m']}`), everyOne, 'root');
    assert.deepEqual(
      await ids('root', `?created_by=${made['maker-m']}&user_id=${made['held-1']}`),
      [first.id],
      'both filters',
    );
    // Not to those who do not manage the maker: another tenant's admin, a user it lent to.
    assert.equal((await list('gary', `?created_by=${made['maker-m']}`)).statusCode, 404);
    assert.equal((await list('held-1', `?created_by=${made['maker-m']}`)).statusCode, 404);
  });

  test("another tenant's admin cannot create, list, read or revoke a user's tokens: 404 as for an unknown one", async () => {
    const record = await issue('bob', { name: 'bob only' });
    const unknownUser = json(await list('gary', `?user_id=${UNKNOWN_ID}`));
    assert.equal(unknownUser.status.code, 404);
    for (const response of [
      await list('gary', `?user_id=${ids.bob}`),
      await create('gary', { name: 'sneaky', user_id: ids.bob }),
      await create('gary', { name: 'sneaky', user_id: UNKNOWN_ID }),
    ]) {
      assert.equal(response.statusCode, 404);
      assert.deepEqual(json(response), unknownUser);
    }
    const unknownToken = json(await getOne('gary', UNKNOWN_ID));
    assert.equal(unknownToken.status.code, 404);
    for (const response of [
      await getOne('gary', record.id),
      await revoke('gary', record.id),
      await revoke('gary', UNKNOWN_ID),
      await revoke('gary', 'not-a-token-id'),
    ]) {
      assert.equal(response.statusCode, 404);
      assert.deepEqual(json(response), unknownToken);
    }
    assert.equal((await loginWithToken(record.token)).statusCode, 201, 'the token still works');
    assert.equal(json(await getOne('bob', record.id)).result.records[0].revoked, false);
    assert.ok(
      !(json(await list('gary')).result.records as any[]).some((t) => t.user_id === ids.bob),
      "gary's own list holds only gary's tokens",
    );
    // The other way round.
    assert.equal((await list('alice', `?user_id=${ids.gary}`)).statusCode, 404);
    assert.equal((await create('alice', { name: 'x', user_id: ids.gary })).statusCode, 404);
  });

  test("a plain user sees and revokes no one else's tokens, and issues none for others", async () => {
    const alices = await issue('alice', { name: 'alice own' });
    const daves = await issue('dave', { name: 'dave own' });
    for (const response of [
      await list('bob', `?user_id=${ids.alice}`),
      await list('bob', `?user_id=${ids.dave}`),
      await create('bob', { name: 'for dave', user_id: ids.dave }),
      await getOne('bob', daves.id),
      await revoke('bob', alices.id),
      await revoke('bob', daves.id),
    ]) {
      assert.equal(response.statusCode, 404);
    }
    assert.equal((await loginWithToken(alices.token)).statusCode, 201);
    assert.equal((await loginWithToken(daves.token)).statusCode, 201);
    // Its own id is the self-service path.
    assert.equal((await list('bob', `?user_id=${ids.bob}`)).statusCode, 200);
  });

  test('a session opened with a token cannot mint tokens; a node has none; Basic and no credentials', async () => {
    const record = await issue('bob', { name: 'script' });
    const cookie = cookieOf(await loginWithToken(record.token));
    const minted = await ctx.inject({
      method: 'POST',
      url: '/api/v2.1/tokens',
      headers: bearer(cookie),
      payload: { name: 'child' },
    });
    assert.equal(minted.statusCode, 403);
    assert.equal(
      (await ctx.inject({ method: 'GET', url: '/api/v2.1/tokens', headers: bearer(cookie) })).statusCode,
      200,
    );

    await ctx.core.accounts.createNode({ login: 'node-09', password: 'backup-agent-pass-9' });
    const node = await ctx.inject({
      method: 'POST',
      url: '/api/session/node/login',
      payload: { login: 'node-09', password: 'backup-agent-pass-9', version: '6.0.0' },
    });
    const nodeCookie = cookieOf(node);
    const byNode = await ctx.inject({
      method: 'POST',
      url: '/api/v2.1/tokens',
      headers: bearer(nodeCookie),
      payload: { name: 'node token' },
    });
    assert.equal(byNode.statusCode, 403);
    const nodeList = json(
      await ctx.inject({ method: 'GET', url: '/api/v2.1/tokens', headers: bearer(nodeCookie) }),
    );
    assert.equal(nodeList.result.total_records, 0);

    const viaBasic = await ctx.inject({
      method: 'POST',
      url: '/api/v2.1/tokens',
      headers: basic('bob', PASSWORDS.bob!),
      payload: { name: 'via basic' },
    });
    assert.equal(viaBasic.statusCode, 201);
    secrets.push(json(viaBasic).result.records[0].token);

    for (const request of [
      { method: 'GET' as const, url: '/api/v2.1/tokens' },
      { method: 'POST' as const, url: '/api/v2.1/tokens', payload: { name: 'anonymous' } },
      { method: 'DELETE' as const, url: `/api/v2.1/tokens/${record.id}` },
    ]) {
      assert.equal((await ctx.inject(request)).statusCode, 401);
    }
  });

  test('the secret is nowhere but the create answer: not in the store, an audit row or a log line', async () => {
    assert.ok(secrets.length >= 10, `only ${secrets.length} secrets collected`);
    const dump: string[] = [];
    for (const table of ['api_tokens', 'sessions', 'audit_events']) {
      const rows = await sql<Record<string, unknown>>`select * from ${sql.table(table)}`.execute(
        ctx.store.db,
      );
      dump.push(JSON.stringify(rows.rows));
    }
    const everything = dump.join('\n');
    assert.ok(logs.length > 0, 'the logger should have written something');
    for (const secret of secrets) {
      assert.ok(!everything.includes(secret), 'a token secret is in the store or the audit log');
      assert.ok(!logs.includes(secret), 'a token secret reached the log');
    }
    const creates = await auditRows('token.create');
    assert.ok(creates.length >= 10, `only ${creates.length} token.create events`);
    assert.ok(
      creates.every((e) => e.target_type === 'api_token' && e.outcome === 'success'),
      'token.create events name the token',
    );
  });

  test('a change of access rights checks only the lent tokens it may concern, not every one in use', async () => {
    // Twenty users of acme, each with a session opened with a token alice lent them.
    for (let i = 0; i < 20; i += 1) {
      const user = await ctx.core.accounts.createUser({
        username: `lent${i}`,
        password: 'Borrowed-key-2031',
        tenantCode: 'acme',
        role: 'user',
      });
      const lent = await issue('alice', { name: `for lent${i}`, user_id: user.id });
      assert.equal((await loginWithToken(lent.token)).statusCode, 201);
    }
    const frank = await ctx.core.accounts.createUser({
      username: 'frank',
      password: 'Harbour-gate-2031',
      tenantCode: 'acme',
      role: 'user',
    });
    const group = json(
      await ctx.inject({
        method: 'POST',
        url: '/api/v2.1/groups',
        headers: bearer(sessions.root!),
        payload: { name: 'Frank alone' },
      }),
    ).result.records[0];
    let statements = 0;
    ctx.store.observeQueries(() => {
      statements += 1;
    });
    try {
      const added = await ctx.inject({
        method: 'POST',
        url: `/api/v2.1/groups/${group.id}/members/${frank.id}`,
        headers: bearer(sessions.root!),
      });
      assert.equal(added.statusCode, 200, added.body);
    } finally {
      ctx.store.observeQueries(undefined);
    }
    // Checking each of the twenty would take four reads apiece.
    assert.ok(statements < 40, `${statements} statements`);
  });

  test('a change concerning many lent tokens checks them and ends their sessions in a few statements, not a few apiece', async () => {
    const asRoot = (method: 'POST' | 'PUT', url: string, payload?: object) =>
      ctx.inject({
        method,
        url: `/api/v2.1${url}`,
        headers: bearer(sessions.root!),
        ...(payload ? { payload } : {}),
      });
    const group = json(await asRoot('POST', '/groups', { name: 'Borrowers' })).result.records[0];
    const borrowers = 20;
    for (let i = 0; i < borrowers; i += 1) {
      const user = await ctx.core.accounts.createUser({
        username: `borrower${i}`,
        password: 'Borrowed-key-2031',
        tenantCode: 'acme',
        role: 'user',
      });
      const lent = await issue('alice', { name: `for borrower${i}`, user_id: user.id });
      assert.equal((await loginWithToken(lent.token)).statusCode, 201);
      assert.equal((await asRoot('POST', `/groups/${group.id}/members/${user.id}`)).statusCode, 200);
    }
    const role = json(
      await asRoot('POST', '/roles', { name: 'Borrowed reading', privileges: ['REPORTING_REPORT_READ'] }),
    ).result.records[0];
    let statements = 0;
    ctx.store.observeQueries(() => {
      statements += 1;
    });
    try {
      // Every borrower raised above alice: every token checked, and every session ended.
      const given = await asRoot('PUT', `/groups/${group.id}`, { roles: [role.id] });
      assert.equal(given.statusCode, 200, given.body);
    } finally {
      ctx.store.observeQueries(undefined);
    }
    const live = await ctx.store.db
      .selectFrom('sessions')
      .innerJoin('users', 'users.id', 'sessions.user_id')
      .select('sessions.id')
      .where('users.username', 'like', 'borrower%')
      .where('sessions.revoked_at', 'is', null)
      .execute();
    assert.deepEqual(live, []);
    // The same thirty or so whatever the number of tokens. Before: each token's user's tenancies,
    // privileges and sessions read and ended apart, four statements apiece (107 for twenty).
    assert.ok(statements < 2 * borrowers, `${statements} statements`);
  });

  test('the sessions opened with a token end when its maker is deleted', async () => {
    const maker = await ctx.core.accounts.createUser({
      username: 'mia',
      password: 'Lighthouse-key-2031',
      tenantCode: 'acme',
      role: 'admin',
    });
    sessions.mia = await nseSignIn(ctx, 'mia', 'Lighthouse-key-2031');
    const lent = await issue('mia', { name: 'for dave, by mia', user_id: ids.dave });
    const opened = cookieOf(await loginWithToken(lent.token));
    assert.equal(await cookieWorks(opened), true);
    const deleted = await ctx.inject({
      method: 'DELETE',
      url: `/api/v2.1/users/${maker.id}`,
      headers: bearer(sessions.root!),
    });
    assert.equal(deleted.statusCode, 204, deleted.body);
    assert.equal(await cookieWorks(opened), false, 'ended with its maker');
    assert.equal((await loginWithToken(lent.token)).statusCode, 400);
  });

  test('two admins who lent each other tokens, given new passwords and tenancies at the same moment: both changes go through', async () => {
    const root = bearer(sessions.root!);
    const acme = (await ctx.store.tenants.findByCode('acme'))!;
    const other = await ctx.core.tenants.create({ code: 'mutual', name: 'Mutual' });
    const failed: string[] = [];
    for (let pair = 0; pair < 16; pair += 1) {
      const names = [`mutual-a${pair}`, `mutual-b${pair}`] as const;
      const [first, second] = await Promise.all(
        names.map((username) =>
          ctx.core.accounts.createUser({
            username,
            password: 'Lighthouse-key-2031',
            tenantCode: 'acme',
            role: 'admin',
          }),
        ),
      );
      for (const [maker, user] of [
        [names[0], second!.id],
        [names[1], first!.id],
      ] as const) {
        sessions[maker] = await nseSignIn(ctx, maker, 'Lighthouse-key-2031');
        await loginWithToken((await issue(maker, { name: `for ${user}`, user_id: user })).token);
      }
      const answers = await Promise.all(
        [first!, second!].map((admin) =>
          ctx.inject({
            method: 'PUT',
            url: `/api/v2.1/users/${admin.id}`,
            headers: root,
            payload: {
              password: `Harbour-light-${pair}-2031`,
              tenancies: [
                { tenant_id: acme.id, role_name: 'admin' },
                { tenant_id: other.id, role_name: 'user' },
              ],
            },
          }),
        ),
      );
      for (const answer of answers)
        if (answer.statusCode !== 200) failed.push(`${pair}: ${answer.statusCode}`);
    }
    // Before (on PostgreSQL): each revoked its own user's tokens, then took the lent ones, the
    // other's first: deadlocks, answered 500 (6 or more of 16 pairs in each of two runs).
    assert.deepEqual(failed, []);
  });

  test("an admin deleted while the admin it lent a token to, and had one from, is given new tenancies: no deadlock, the lent token's session ended", async () => {
    const root = bearer(sessions.root!);
    const acme = (await ctx.store.tenants.findByCode('acme'))!;
    const other =
      (await ctx.store.tenants.findByCode('mutual')) ??
      (await ctx.core.tenants.create({ code: 'mutual', name: 'Mutual' }));
    const deadlocks: string[] = [];
    ctx.store.observeWarnings((message) => {
      if (message.includes('deadlock')) deadlocks.push(message);
    });
    const failed: string[] = [];
    const stillOpen: string[] = [];
    for (let pair = 0; pair < 16; pair += 1) {
      const names = [`leaving-${pair}`, `staying-${pair}`] as const;
      const [leaving, staying] = await Promise.all(
        names.map((username) =>
          ctx.core.accounts.createUser({
            username,
            password: 'Lighthouse-key-2031',
            tenantCode: 'acme',
            role: 'admin',
          }),
        ),
      );
      // The leaving admin's token first: its id is the lower, the one a change takes first.
      const opened: string[] = [];
      for (const [maker, user] of [
        [names[0], staying!.id],
        [names[1], leaving!.id],
      ] as const) {
        sessions[maker] = await nseSignIn(ctx, maker, 'Lighthouse-key-2031');
        const lent = await issue(maker, { name: `for ${user}`, user_id: user });
        opened.push(cookieOf(await loginWithToken(lent.token)));
      }
      const [deleted, changed] = await Promise.all([
        ctx.inject({ method: 'DELETE', url: `/api/v2.1/users/${leaving!.id}`, headers: root }),
        ctx.inject({
          method: 'PUT',
          url: `/api/v2.1/users/${staying!.id}`,
          headers: root,
          payload: {
            tenancies: [
              { tenant_id: acme.id, role_name: 'admin' },
              { tenant_id: other.id, role_name: 'user' },
            ],
          },
        }),
      ]);
      if (deleted.statusCode !== 204) failed.push(`${pair} delete: ${deleted.statusCode}`);
      if (changed.statusCode !== 200) failed.push(`${pair} change: ${changed.statusCode}`);
      if (await cookieWorks(opened[0]!)) stillOpen.push(`${pair}`);
    }
    assert.deepEqual(failed, []);
    assert.deepEqual(stillOpen, [], "the deleted maker's token's session ended");
    // Before (on PostgreSQL): the deletion took the tokens in the order its cascade found them,
    // the change in id order, and PostgreSQL broke a deadlock between the two (run again after 1 s).
    assert.deepEqual(deadlocks, []);
  });

  test("a maker's password change while the user of two tokens it lent, one expired, is deleted: no deadlock", {
    skip: dialect !== 'postgres' && 'row locks are PostgreSQL’s',
  }, async () => {
    const password = 'Expired-lender-2031';
    await ctx.core.accounts.createUser({ username: 'xavier', password, tenantCode: 'acme', role: 'admin' });
    const yolanda = await ctx.core.accounts.createUser({
      username: 'yolanda',
      password,
      tenantCode: 'acme',
      role: 'user',
    });
    sessions.xavier = await nseSignIn(ctx, 'xavier', password);
    // The expired one first: the lower id.
    await issue('xavier', { name: 'expires soon', user_id: yolanda.id, expires_in: '1h' });
    const live = await issue('xavier', { name: 'lives on', user_id: yolanda.id });
    ctx.clock.advance(HOUR + 1000);
    const root = await nseSignIn(ctx);
    const deadlocks: string[] = [];
    ctx.store.observeWarnings((message) => {
      if (message.includes('deadlock')) deadlocks.push(message);
    });
    // The deletion's check of the lent tokens waits at the live one; the password change then
    // comes. Before, it took the expired one (the deletion's cascade takes it later) and waited
    // for the live one: PostgreSQL broke the deadlock, and the transaction ran again.
    const { release } = await holdRow(ctx.store.db, 'api_tokens', live.id);
    let deleted: Promise<{ statusCode: number }> | undefined;
    let changed: Promise<{ statusCode: number }> | undefined;
    try {
      deleted = ctx.inject({ method: 'DELETE', url: `/api/v2.1/users/${yolanda.id}`, headers: bearer(root) });
      await untilWaitingForLocks(ctx.store.db, 1);
      changed = ctx.inject({
        method: 'POST',
        url: '/api/v2.1/auth/password',
        payload: { username: 'xavier', old_password: password, new_password: 'Expired-lender-2032' },
      });
      await untilWaitingForLocks(ctx.store.db, 2);
    } finally {
      await release();
    }
    assert.equal((await deleted)?.statusCode, 204);
    assert.equal((await changed)?.statusCode, 200);
    assert.deepEqual(deadlocks, []);
  });
});
