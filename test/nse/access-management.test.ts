import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createTestContext, type TestContext } from '../helpers/context.js';
import { forEachDialect } from '../helpers/dialects.js';
import { bearer, json, nseSignIn, storwareLogin } from '../helpers/http.js';

const PASSWORDS = {
  alice: 'rabbit-hole-wonder-1',
  bob: 'builder-of-things-22',
  carol: 'christmas-song-333',
  gus: 'fring-chicken-88x',
} as const;
type Who = 'admin' | keyof typeof PASSWORDS;

forEachDialect('NSE access management', (dialect) => {
  let ctx: TestContext;
  const tokens: Partial<Record<Who, string>> = {};
  const ids: Partial<Record<Who, string>> = {};
  let globalAdmins: string;
  let administratorRole: string;

  const send = (who: Who, method: 'GET' | 'POST' | 'PUT' | 'DELETE', url: string, payload?: object) =>
    ctx.inject({
      method,
      url: `/api/v2.1${url}`,
      headers: bearer(tokens[who] ?? ''),
      ...(payload === undefined ? {} : { payload }),
    });
  const record = async (response: Awaited<ReturnType<typeof send>>) => json(response).result.records[0];
  const memberNames = async (groupId: string) =>
    (await record(await send('admin', 'GET', `/groups/${groupId}`))).members.map(
      (m: { username: string }) => m.username,
    );
  const sessionPrivileges = async (cookie: string): Promise<string[]> => {
    const response = await ctx.inject({
      method: 'GET',
      url: '/api/session/user',
      cookies: { gatehouse_session: cookie },
    });
    assert.equal(response.statusCode, 200, response.body);
    return json(response).privileges;
  };

  before(async () => {
    ctx = await createTestContext(dialect);
    await ctx.core.tenants.create({ code: 'acme', name: 'Acme' });
    await ctx.core.tenants.create({ code: 'globex', name: 'Globex' });
    const users = [
      ['alice', 'acme', 'admin'],
      ['bob', 'acme', 'user'],
      ['carol', 'acme', 'user'],
      ['gus', 'globex', 'read'],
    ] as const;
    for (const [username, tenantCode, role] of users) {
      ids[username] = (
        await ctx.core.accounts.createUser({ username, password: PASSWORDS[username], tenantCode, role })
      ).id;
      tokens[username] = await nseSignIn(ctx, username, PASSWORDS[username]);
    }
    tokens.admin = await nseSignIn(ctx);
    ids.admin = (await ctx.store.users.findByUsernameKey('admin'))?.id;
    const groups = json(await send('admin', 'GET', '/groups?sort_by=name&order_by=asc')).result.records;
    globalAdmins = groups.find((g: { name: string }) => g.name === 'Global Administrators').id;
    const roles = json(await send('admin', 'GET', '/roles?sort_by=name&order_by=asc')).result.records;
    administratorRole = roles.find((r: { name: string }) => r.name === 'Administrator').id;
  });

  after(async () => {
    await ctx.close();
  });

  test('the privilege catalog is readable by any signed-in user, and by nobody else', async () => {
    const response = await send('bob', 'GET', '/privileges');
    assert.equal(response.statusCode, 200);
    const records = json(response).result.records as { code: string; section: string; description: string }[];
    const write = records.find((p) => p.code === 'ACCESS_MANAGEMENT_WRITE');
    assert.ok(write?.section && write.description);
    assert.equal(json(response).result.total_records, records.length);
    const anonymous = await ctx.inject({ method: 'GET', url: '/api/v2.1/privileges' });
    assert.equal(anonymous.statusCode, 401);
  });

  test('roles: create, read, list, replace privileges, rename, delete', async () => {
    const created = await send('admin', 'POST', '/roles', {
      name: 'Auditors',
      description: 'Read the audit log',
      privileges: ['REPORTING_AUDIT_LOG_READ', 'REPORTING_REPORT_READ'],
    });
    assert.equal(created.statusCode, 201, created.body);
    assert.equal(json(created).status.user_message, 'Okay. New resource created.');
    const role = await record(created);
    assert.deepEqual(role.privileges, ['REPORTING_AUDIT_LOG_READ', 'REPORTING_REPORT_READ']);
    assert.equal(role.builtin, false);

    const fetched = await record(await send('admin', 'GET', `/roles/${role.id}`));
    assert.deepEqual(fetched, role);

    const list = json(await send('admin', 'GET', '/roles?sort_by=name&order_by=asc&limit=2'));
    assert.equal(list.result.returned_records, 2);
    assert.equal(list.result.total_records, 4);
    assert.deepEqual(
      list.result.records.map((r: { name: string }) => r.name),
      ['Administrator', 'Auditors'],
    );

    const changed = await send('admin', 'PUT', `/roles/${role.id}`, {
      name: 'Log readers',
      privileges: ['REPORTING_AUDIT_LOG_READ'],
    });
    assert.equal(changed.statusCode, 200, changed.body);
    const updated = await record(changed);
    assert.equal(updated.name, 'Log readers');
    assert.equal(updated.description, 'Read the audit log');
    assert.deepEqual(updated.privileges, ['REPORTING_AUDIT_LOG_READ']);

    assert.equal((await send('admin', 'DELETE', `/roles/${role.id}`)).statusCode, 204);
    assert.equal((await send('admin', 'GET', `/roles/${role.id}`)).statusCode, 404);
    assert.equal((await send('admin', 'DELETE', `/roles/${role.id}`)).statusCode, 404);
    assert.equal((await send('admin', 'GET', '/roles/not-an-id')).statusCode, 404);
  });

  test('roles: an unknown privilege code is named in a 400; a taken name is a 409', async () => {
    const unknown = await send('admin', 'POST', '/roles', {
      name: 'Wizards',
      privileges: ['NODE_READ', 'CAST_SPELLS'],
    });
    assert.equal(unknown.statusCode, 400);
    assert.match(json(unknown).status.verbose_message, /CAST_SPELLS/);
    const taken = await send('admin', 'POST', '/roles', { name: 'Operator', privileges: [] });
    assert.equal(taken.statusCode, 409);
    const roles = json(await send('admin', 'GET', '/roles')).result.records;
    assert.ok(!roles.some((r: { name: string }) => r.name === 'Wizards'));
    // No forged audit lines, no look-alikes of another name.
    for (const name of [
      'ops\r\n2026-01-01 signin success admin',
      'Global Administrators\u200b',
      'red\u001b[31m',
    ]) {
      for (const [url, body] of [
        ['/roles', { name, privileges: [] }],
        ['/groups', { name }],
      ] as const) {
        const refused = await send('admin', 'POST', url, body);
        assert.equal(refused.statusCode, 400, `${url} ${JSON.stringify(name)}`);
        assert.match(json(refused).status.verbose_message, /control or invisible/);
      }
    }
  });

  test('built-in roles and groups cannot be deleted, renamed or given other privileges', async () => {
    const before = await record(await send('admin', 'GET', `/roles/${administratorRole}`));
    const auditorsRole = (
      await record(await send('admin', 'POST', '/roles', { name: 'Extra for a built-in', privileges: [] }))
    ).id as string;
    const attempts = [
      await send('admin', 'DELETE', `/roles/${administratorRole}`),
      await send('admin', 'PUT', `/roles/${administratorRole}`, { privileges: ['NODE_READ'] }),
      await send('admin', 'PUT', `/roles/${administratorRole}`, { name: 'Boss' }),
      await send('admin', 'DELETE', `/groups/${globalAdmins}`),
      await send('admin', 'PUT', `/groups/${globalAdmins}`, { roles: [] }),
      // Nor given more roles: one added to "Operator" would reach every directory user.
      await send('admin', 'PUT', `/groups/${globalAdmins}`, { roles: [administratorRole, auditorsRole] }),
    ];
    for (const response of attempts) {
      assert.equal(response.statusCode, 412, response.body);
      assert.equal(json(response).status.code, 412);
    }
    assert.deepEqual(await record(await send('admin', 'GET', `/roles/${administratorRole}`)), before);
    const described = await send('admin', 'PUT', `/roles/${administratorRole}`, {
      description: 'Everything',
      privileges: before.privileges,
    });
    assert.equal(described.statusCode, 200, described.body);
    assert.equal((await record(described)).description, 'Everything');
  });

  test('groups: create with roles, change, delete; a deleted role is detached from its groups', async () => {
    const role = await record(
      await send('admin', 'POST', '/roles', { name: 'Node watchers', privileges: ['NODE_READ'] }),
    );
    const unknownRole = await send('admin', 'POST', '/groups', { name: 'Watchers', roles: ['nope'] });
    assert.equal(unknownRole.statusCode, 400);
    const created = await send('admin', 'POST', '/groups', {
      name: 'Watchers',
      description: 'Watch nodes',
      roles: [role.id],
    });
    assert.equal(created.statusCode, 201, created.body);
    const group = await record(created);
    assert.deepEqual(group.roles, [{ id: role.id, name: 'Node watchers' }]);
    assert.deepEqual(group.members, []);
    assert.equal(group.builtin, false);
    assert.equal((await send('admin', 'POST', '/groups', { name: 'Watchers' })).statusCode, 409);

    const renamed = await record(await send('admin', 'PUT', `/groups/${group.id}`, { name: 'Lookouts' }));
    assert.equal(renamed.name, 'Lookouts');
    assert.equal(renamed.roles.length, 1);

    assert.equal((await send('admin', 'DELETE', `/roles/${role.id}`)).statusCode, 204);
    assert.deepEqual((await record(await send('admin', 'GET', `/groups/${group.id}`))).roles, []);

    assert.equal((await send('admin', 'DELETE', `/groups/${group.id}`)).statusCode, 204);
    assert.equal((await send('admin', 'GET', `/groups/${group.id}`)).statusCode, 404);
  });

  test('a user without the access-management privileges gets 403 and changes nothing', async () => {
    const before = json(await send('admin', 'GET', '/groups')).result.total_records;
    const attempts = [
      await send('bob', 'GET', '/roles'),
      await send('bob', 'GET', `/groups/${globalAdmins}`),
      await send('bob', 'POST', '/roles', { name: 'Sneaky', privileges: ['ACCESS_MANAGEMENT_WRITE'] }),
      await send('bob', 'POST', '/groups', { name: 'Sneaky' }),
      await send('bob', 'POST', `/groups/${globalAdmins}/members/${ids.bob}`),
      await send('bob', 'PUT', `/groups/${globalAdmins}/members`, { user_ids: [ids.bob] }),
      await send('bob', 'DELETE', `/groups/${globalAdmins}/members/${ids.admin}`),
    ];
    for (const response of attempts) assert.equal(response.statusCode, 403, response.body);
    assert.equal(json(await send('admin', 'GET', '/groups')).result.total_records, before);
    assert.deepEqual(await memberNames(globalAdmins), ['admin']);
  });

  test("membership changes show at once in the member's session privileges", async () => {
    const role = await record(
      await send('admin', 'POST', '/roles', {
        name: 'Access readers',
        privileges: ['ACCESS_MANAGEMENT_READ', 'REPORTING_AUDIT_LOG_READ'],
      }),
    );
    const group = await record(await send('admin', 'POST', '/groups', { name: 'Readers', roles: [role.id] }));
    const cookie = await storwareLogin(ctx, 'carol', PASSWORDS.carol);
    assert.ok(!(await sessionPrivileges(cookie)).includes('ACCESS_MANAGEMENT_READ'));
    assert.equal((await send('carol', 'GET', '/roles')).statusCode, 403);

    const added = await send('admin', 'POST', `/groups/${group.id}/members/${ids.carol}`);
    assert.equal(added.statusCode, 200, added.body);
    assert.deepEqual((await record(added)).members, [{ id: ids.carol, username: 'carol' }]);
    assert.ok((await sessionPrivileges(cookie)).includes('ACCESS_MANAGEMENT_READ'));
    assert.equal((await send('carol', 'GET', '/roles')).statusCode, 200);
    assert.equal((await send('carol', 'POST', '/roles', { name: 'Nope' })).statusCode, 403);

    // Changing the role's privileges counts at once too.
    await send('admin', 'PUT', `/roles/${role.id}`, { privileges: ['ACCESS_MANAGEMENT_READ'] });
    assert.ok(!(await sessionPrivileges(cookie)).includes('REPORTING_AUDIT_LOG_READ'));

    assert.equal((await send('admin', 'DELETE', `/groups/${group.id}/members/${ids.carol}`)).statusCode, 204);
    assert.ok(!(await sessionPrivileges(cookie)).includes('ACCESS_MANAGEMENT_READ'));
    assert.equal((await send('admin', 'DELETE', `/groups/${group.id}/members/${ids.carol}`)).statusCode, 404);

    const replaced = await send('admin', 'PUT', `/groups/${group.id}/members`, {
      user_ids: [ids.carol, ids.bob],
    });
    assert.equal(replaced.statusCode, 200, replaced.body);
    assert.deepEqual(await memberNames(group.id), ['bob', 'carol']);
    assert.ok((await sessionPrivileges(cookie)).includes('ACCESS_MANAGEMENT_READ'));
    await send('admin', 'PUT', `/groups/${group.id}/members`, { user_ids: [] });
    assert.ok(!(await sessionPrivileges(cookie)).includes('ACCESS_MANAGEMENT_READ'));

    const actions = (
      await ctx.store.auditEvents.list(
        { offset: 0, limit: 100, sortBy: 'created', order: 'asc' },
        { visibleTenantIds: undefined },
      )
    ).rows.map((e) => e.action);
    for (const action of ['role.create', 'role.update', 'group.create', 'group.members']) {
      assert.ok(actions.includes(action), action);
    }
  });

  test('the last user holding ACCESS_MANAGEMENT_WRITE cannot be taken away, by any path', async () => {
    const refused = async (response: Awaited<ReturnType<typeof send>>) => {
      assert.equal(response.statusCode, 412, response.body);
      assert.match(json(response).status.verbose_message, /ACCESS_MANAGEMENT_WRITE/);
    };
    // admin is the only member of Global Administrators.
    await refused(await send('admin', 'DELETE', `/groups/${globalAdmins}/members/${ids.admin}`));
    await refused(await send('admin', 'PUT', `/groups/${globalAdmins}/members`, { user_ids: [] }));
    assert.deepEqual(await memberNames(globalAdmins), ['admin']);

    // Hand the privilege over to alice through a custom role and group; now admin may leave.
    const keymaster = await record(
      await send('admin', 'POST', '/roles', {
        name: 'Keymaster',
        privileges: ['ACCESS_MANAGEMENT_READ', 'ACCESS_MANAGEMENT_WRITE'],
      }),
    );
    const keepers = await record(
      await send('admin', 'POST', '/groups', { name: 'Keepers', roles: [keymaster.id] }),
    );
    assert.equal((await send('admin', 'POST', `/groups/${keepers.id}/members/${ids.alice}`)).statusCode, 200);
    assert.equal(
      (await send('admin', 'DELETE', `/groups/${globalAdmins}/members/${ids.admin}`)).statusCode,
      204,
    );
    assert.deepEqual(await memberNames(globalAdmins), []);

    // alice is now the last one: every path that would take it from her is refused.
    await refused(await send('admin', 'DELETE', `/groups/${keepers.id}/members/${ids.alice}`));
    await refused(await send('admin', 'PUT', `/groups/${keepers.id}/members`, { user_ids: [] }));
    await refused(await send('admin', 'DELETE', `/groups/${keepers.id}`));
    await refused(await send('admin', 'PUT', `/groups/${keepers.id}`, { roles: [] }));
    await refused(
      await send('admin', 'PUT', `/roles/${keymaster.id}`, { privileges: ['ACCESS_MANAGEMENT_READ'] }),
    );
    await refused(await send('admin', 'DELETE', `/roles/${keymaster.id}`));
    await refused(await send('admin', 'DELETE', `/users/${ids.alice}`));
    // Nothing changed.
    assert.deepEqual(await memberNames(keepers.id), ['alice']);
    const group = await record(await send('admin', 'GET', `/groups/${keepers.id}`));
    assert.deepEqual(group.roles, [{ id: keymaster.id, name: 'Keymaster' }]);
    const role = await record(await send('admin', 'GET', `/roles/${keymaster.id}`));
    assert.deepEqual(role.privileges, ['ACCESS_MANAGEMENT_READ', 'ACCESS_MANAGEMENT_WRITE']);
    assert.ok(await ctx.store.users.findById(ids.alice ?? ''));

    // The root admin is no user of acme: to alice it does not exist.
    assert.equal(
      (await send('alice', 'POST', `/groups/${globalAdmins}/members/${ids.admin}`)).statusCode,
      404,
    );
    // With a second holder (root may grant everything), the same change goes through.
    assert.equal(
      (await send('admin', 'POST', `/groups/${globalAdmins}/members/${ids.carol}`)).statusCode,
      200,
    );
    assert.equal(
      (await send('admin', 'DELETE', `/groups/${keepers.id}/members/${ids.alice}`)).statusCode,
      204,
    );
    assert.deepEqual(await memberNames(keepers.id), []);
    assert.equal((await send('admin', 'DELETE', `/groups/${keepers.id}`)).statusCode, 204);
    assert.equal((await send('admin', 'DELETE', `/roles/${keymaster.id}`)).statusCode, 204);
  });

  test('no escalation: an access manager who is not root grants only privileges it holds', async () => {
    const manager = await record(
      await send('admin', 'POST', '/roles', {
        name: 'Bob manages access',
        privileges: ['ACCESS_MANAGEMENT_READ', 'ACCESS_MANAGEMENT_WRITE'],
      }),
    );
    const managers = await record(
      await send('admin', 'POST', '/groups', { name: 'Bob managers', roles: [manager.id] }),
    );
    assert.equal((await send('admin', 'POST', `/groups/${managers.id}/members/${ids.bob}`)).statusCode, 200);

    const before = await memberNames(globalAdmins);
    const selfPromotion = await send('bob', 'POST', `/groups/${globalAdmins}/members/${ids.bob}`);
    assert.equal(selfPromotion.statusCode, 403, selfPromotion.body);
    assert.match(json(selfPromotion).status.verbose_message, /do not hold: /);
    assert.deepEqual(await memberNames(globalAdmins), before);
    const bigRole = await send('bob', 'POST', '/roles', { name: 'Too big', privileges: ['NODE_DELETE'] });
    assert.equal(bigRole.statusCode, 403);
    const bigGroup = await send('bob', 'POST', '/groups', { name: 'Too big', roles: [administratorRole] });
    assert.equal(bigGroup.statusCode, 403);
    const grow = await send('bob', 'PUT', `/roles/${manager.id}`, {
      privileges: ['ACCESS_MANAGEMENT_WRITE', 'SETTINGS_WRITE'],
    });
    assert.equal(grow.statusCode, 403);

    const small = await send('bob', 'POST', '/roles', {
      name: 'Readers of access',
      privileges: ['ACCESS_MANAGEMENT_READ'],
    });
    assert.equal(small.statusCode, 201, small.body);
    const smallGroup = await send('bob', 'POST', '/groups', {
      name: 'Access readers',
      roles: [json(small).result.records[0].id],
    });
    assert.equal(smallGroup.statusCode, 201, smallGroup.body);
  });

  test('no escalation through another account: a tenant admin cannot set the password of, mint tokens for, end, unlock, deactivate or delete a member of its tenant who holds privileges it does not', async () => {
    const davePassword = 'underground-caves-4471';
    const dave = await ctx.core.accounts.createUser({
      username: 'dave',
      password: davePassword,
      tenantCode: 'acme',
      role: 'user',
    });
    const daveSession = await storwareLogin(ctx, 'dave', davePassword);
    assert.equal((await send('admin', 'POST', `/groups/${globalAdmins}/members/${dave.id}`)).statusCode, 200);

    const attempts = [
      send('alice', 'PUT', '/users/dave', { password: 'taken-over-by-alice-1' }),
      send('alice', 'PUT', '/users/dave', { active: false }),
      send('alice', 'PUT', '/users/dave', { email: 'alice@acme.example' }),
      send('alice', 'POST', '/tokens', { name: 'a way in', user_id: dave.id }),
      send('alice', 'DELETE', `/sessions?user_id=${dave.id}`),
      send('alice', 'POST', '/users/dave/unlock'),
      send('alice', 'DELETE', '/users/dave'),
    ];
    for (const refused of await Promise.all(attempts)) {
      assert.equal(refused.statusCode, 403, refused.body);
      assert.match(json(refused).status.verbose_message, /privileges/);
    }
    const mine = await send('alice', 'GET', `/sessions?user_id=${dave.id}`);
    assert.equal(mine.statusCode, 403, mine.body);
    const listed = await send('admin', 'GET', `/sessions?user_id=${dave.id}`);
    const daveSessionId = json(listed).result.records[0].id as string;
    assert.equal((await send('alice', 'DELETE', `/sessions/${daveSessionId}`)).statusCode, 404);
    // Nothing changed: dave signs in with his own password, his session lives, he is still active.
    assert.ok((await sessionPrivileges(daveSession)).includes('ACCESS_MANAGEMENT_WRITE'));
    assert.ok(await nseSignIn(ctx, 'dave', davePassword));

    // Out of the group he is worth no more than alice, who manages him again.
    assert.equal(
      (await send('admin', 'DELETE', `/groups/${globalAdmins}/members/${dave.id}`)).statusCode,
      204,
    );
    const reset = await send('alice', 'PUT', '/users/dave', { password: 'reset-by-alice-77x' });
    assert.equal(reset.statusCode, 200, reset.body);
    assert.equal((await send('alice', 'DELETE', '/users/dave')).statusCode, 204);
  });

  test('no escalation by taking away: an access manager cannot remove a member from, empty or delete a group, nor strip or delete a role, worth more than itself', async () => {
    const accessOnly = await record(
      await send('admin', 'POST', '/roles', {
        name: 'Access only',
        privileges: ['ACCESS_MANAGEMENT_READ', 'ACCESS_MANAGEMENT_WRITE'],
      }),
    );
    const accessGroup = await record(
      await send('admin', 'POST', '/groups', { name: 'Access only', roles: [accessOnly.id] }),
    );
    const keeper = await ctx.core.accounts.createUser({
      username: 'keeper',
      password: 'watchful-gate-of-acme-9',
      tenantCode: 'acme',
      role: 'admin',
    });
    const victim = await ctx.core.accounts.createUser({
      username: 'victim',
      password: 'powerful-one-of-acme-9',
      tenantCode: 'acme',
      role: 'user',
    });
    assert.equal(
      (await send('admin', 'POST', `/groups/${accessGroup.id}/members/${keeper.id}`)).statusCode,
      200,
    );
    assert.equal(
      (await send('admin', 'POST', `/groups/${globalAdmins}/members/${victim.id}`)).statusCode,
      200,
    );
    const big = await record(
      await send('admin', 'POST', '/roles', { name: 'Big', privileges: ['NODE_DELETE'] }),
    );
    const bigGroup = await record(await send('admin', 'POST', '/groups', { name: 'Big', roles: [big.id] }));
    const as = async (method: 'PUT' | 'DELETE', url: string, payload?: object) =>
      ctx.inject({
        method,
        url: `/api/v2.1${url}`,
        headers: bearer(await nseSignIn(ctx, 'keeper', 'watchful-gate-of-acme-9')),
        ...(payload === undefined ? {} : { payload }),
      });
    for (const [method, url, payload] of [
      ['DELETE', `/groups/${globalAdmins}/members/${victim.id}`],
      ['PUT', `/roles/${big.id}`, { privileges: [] }],
      ['DELETE', `/roles/${big.id}`],
      ['PUT', `/groups/${bigGroup.id}`, { roles: [] }],
      ['DELETE', `/groups/${bigGroup.id}`],
    ] as const) {
      const refused = await as(method, url, payload);
      assert.equal(refused.statusCode, 403, `${method} ${url}: ${refused.body}`);
      assert.match(json(refused).status.verbose_message, /do not hold/);
    }
    assert.ok((await memberNames(globalAdmins)).includes('victim'));
    assert.deepEqual((await record(await send('admin', 'GET', `/roles/${big.id}`))).privileges, [
      'NODE_DELETE',
    ]);
    assert.equal((await send('admin', 'GET', `/groups/${bigGroup.id}`)).statusCode, 200);
    // A group of its own worth, with a member of another tenant it cannot see: not deleted either.
    const own = await record(
      await send('admin', 'POST', '/groups', { name: 'Own worth', roles: [accessOnly.id] }),
    );
    assert.equal((await send('admin', 'POST', `/groups/${own.id}/members/${ids.gus}`)).statusCode, 200);
    const hidden = await as('DELETE', `/groups/${own.id}`);
    assert.equal(hidden.statusCode, 403, hidden.body);
    assert.match(json(hidden).status.verbose_message, /members you cannot see/);
    assert.equal((await send('admin', 'DELETE', `/groups/${own.id}/members/${ids.gus}`)).statusCode, 204);
    assert.equal((await as('DELETE', `/groups/${own.id}`)).statusCode, 204);
    // Who was put in or taken out is in the audit trail.
    const replaced = await send('admin', 'PUT', `/groups/${bigGroup.id}/members`, { user_ids: [victim.id] });
    assert.equal(replaced.statusCode, 200, replaced.body);
    const events = json(await send('admin', 'GET', '/audit-events?action=group.members&limit=1000')).result
      .records;
    assert.ok(
      events.some((e: { reason: string }) => e.reason === `added 1 (${victim.id}), removed 0`),
      JSON.stringify(events.map((e: { reason: string }) => e.reason)),
    );
    for (const id of [victim.id, keeper.id])
      assert.equal((await send('admin', 'DELETE', `/users/${id}`)).statusCode, 204);
  });

  test("an access manager cannot change what users it cannot see may do: a group's roles, a role's privileges, a role's deletion", async () => {
    const wardenRole = await record(
      await send('admin', 'POST', '/roles', {
        name: 'Warden',
        privileges: ['ACCESS_MANAGEMENT_READ', 'ACCESS_MANAGEMENT_WRITE', 'REPORTING_REPORT_READ'],
      }),
    );
    await record(await send('admin', 'POST', '/groups', { name: 'Wardens', roles: [wardenRole.id] }));
    await ctx.core.accounts.createUser({
      username: 'warden',
      password: 'keeper-of-acme-keys-9',
      tenantCode: 'acme',
      role: 'admin',
      groups: ['Wardens'],
    });
    const reports = await record(
      await send('admin', 'POST', '/roles', { name: 'Reports', privileges: ['REPORTING_REPORT_READ'] }),
    );
    const readers = await record(
      await send('admin', 'POST', '/groups', { name: 'Report readers', roles: [reports.id] }),
    );
    // bob is of acme, which warden manages; gus is of globex, which warden cannot see.
    await send('admin', 'PUT', `/groups/${readers.id}/members`, { user_ids: [ids.bob, ids.gus] });
    const warden = bearer(await nseSignIn(ctx, 'warden', 'keeper-of-acme-keys-9'));
    const as = (method: 'PUT' | 'DELETE', url: string, payload?: object) =>
      ctx.inject({
        method,
        url: `/api/v2.1${url}`,
        headers: warden,
        ...(payload === undefined ? {} : { payload }),
      });

    for (const [method, url, payload, refusal] of [
      ['PUT', `/groups/${readers.id}`, { roles: [] }, /group "Report readers" has members you cannot see/],
      ['PUT', `/roles/${reports.id}`, { privileges: [] }, /role "Reports" is held by users you cannot see/],
      ['DELETE', `/roles/${reports.id}`, undefined, /role "Reports" is held by users you cannot see/],
      ['DELETE', `/groups/${readers.id}`, undefined, /members you cannot see/],
    ] as const) {
      const refused = await as(method, url, payload);
      assert.equal(refused.statusCode, 403, `${method} ${url}: ${refused.body}`);
      assert.match(json(refused).status.verbose_message, refusal);
    }
    const unchanged = await record(await send('admin', 'GET', `/groups/${readers.id}`));
    assert.deepEqual(
      unchanged.roles.map((r: { id: string }) => r.id),
      [reports.id],
    );
    assert.deepEqual((await record(await send('admin', 'GET', `/roles/${reports.id}`))).privileges, [
      'REPORTING_REPORT_READ',
    ]);
    // What changes nobody's privileges stays open: a description, the same roles again.
    const described = await as('PUT', `/groups/${readers.id}`, {
      description: 'Read reports',
      roles: [reports.id],
    });
    assert.equal(described.statusCode, 200, described.body);

    // Once every holder is one it sees, the same changes go through.
    assert.equal((await send('admin', 'DELETE', `/groups/${readers.id}/members/${ids.gus}`)).statusCode, 204);
    assert.equal((await as('PUT', `/roles/${reports.id}`, { privileges: [] })).statusCode, 200);
    assert.equal((await as('PUT', `/groups/${readers.id}`, { roles: [] })).statusCode, 200);
    assert.equal((await as('DELETE', `/roles/${reports.id}`)).statusCode, 204);
    assert.equal((await as('DELETE', `/groups/${readers.id}`)).statusCode, 204);
  });

  test('an access manager cannot change the groups of a user of two tenants it reads only one of, nor what such a member may do', async () => {
    const keeperRole = await record(
      await send('admin', 'POST', '/roles', {
        name: 'Keeper',
        privileges: ['ACCESS_MANAGEMENT_READ', 'ACCESS_MANAGEMENT_WRITE', 'REPORTING_REPORT_READ'],
      }),
    );
    await record(await send('admin', 'POST', '/groups', { name: 'Keepers', roles: [keeperRole.id] }));
    await ctx.core.accounts.createUser({
      username: 'keeper',
      password: 'warder-of-acme-locks-9',
      tenantCode: 'acme',
      role: 'admin',
      groups: ['Keepers'],
    });
    const acme = (await ctx.store.tenants.findByCode('acme'))?.id;
    const globex = (await ctx.store.tenants.findByCode('globex'))?.id;
    const created = await send('admin', 'POST', '/users', {
      username: 'dora-both',
      password: 'explorer-of-two-lands-7',
      tenancies: [
        { tenant_id: acme, role_name: 'user' },
        { tenant_id: globex, role_name: 'user' },
      ],
    });
    assert.equal(created.statusCode, 201, created.body);
    const dora = json(created).result.records[0].id;
    const reports = await record(
      await send('admin', 'POST', '/roles', { name: 'Dora reports', privileges: ['REPORTING_REPORT_READ'] }),
    );
    const readers = await record(
      await send('admin', 'POST', '/groups', { name: 'Dora readers', roles: [reports.id] }),
    );
    const keeper = bearer(await nseSignIn(ctx, 'keeper', 'warder-of-acme-locks-9'));
    const as = (method: 'GET' | 'POST' | 'PUT' | 'DELETE', url: string, payload?: object) =>
      ctx.inject({
        method,
        url: `/api/v2.1${url}`,
        headers: keeper,
        ...(payload === undefined ? {} : { payload }),
      });
    // keeper sees dora (through acme) but not her globex tenancy: it may not give her privileges
    // that would hold in globex too, where globex's admins could no longer manage her.
    assert.equal((await as('GET', `/users/${dora}`)).statusCode, 200);
    for (const [method, url, payload] of [
      ['POST', `/groups/${readers.id}/members/${dora}`, undefined],
      ['PUT', `/groups/${readers.id}/members`, { user_ids: [dora] }],
    ] as const) {
      const refused = await as(method, url, payload);
      assert.equal(refused.statusCode, 403, `${method} ${url}: ${refused.body}`);
      assert.match(json(refused).status.verbose_message, /belongs to tenants you cannot read/);
      assert.doesNotMatch(refused.body, /globex/i);
    }
    assert.deepEqual(await memberNames(readers.id), []);

    // Nor take them away, nor change what a group or role holding her gives.
    assert.equal((await send('admin', 'POST', `/groups/${readers.id}/members/${dora}`)).statusCode, 200);
    for (const [method, url, payload] of [
      ['DELETE', `/groups/${readers.id}/members/${dora}`, undefined],
      ['PUT', `/groups/${readers.id}/members`, { user_ids: [] }],
      ['PUT', `/groups/${readers.id}`, { roles: [] }],
      ['PUT', `/roles/${reports.id}`, { privileges: [] }],
      ['DELETE', `/roles/${reports.id}`, undefined],
      ['DELETE', `/groups/${readers.id}`, undefined],
    ] as const) {
      const refused = await as(method, url, payload);
      assert.equal(refused.statusCode, 403, `${method} ${url}: ${refused.body}`);
    }
    assert.deepEqual(await memberNames(readers.id), ['dora-both']);

    // Once she is of acme alone, the same changes go through.
    const moved = await send('admin', 'PUT', `/users/${dora}`, {
      tenancies: [{ tenant_id: acme, role_name: 'user' }],
    });
    assert.equal(moved.statusCode, 200, moved.body);
    assert.equal((await as('DELETE', `/groups/${readers.id}/members/${dora}`)).statusCode, 204);
    assert.equal((await as('POST', `/groups/${readers.id}/members/${dora}`)).statusCode, 200);
    assert.equal((await as('PUT', `/groups/${readers.id}`, { roles: [] })).statusCode, 200);
    assert.equal((await as('DELETE', `/groups/${readers.id}`)).statusCode, 204);
  });

  test('a tenant admin cannot see or add users of a tenant it cannot read', async () => {
    const keymaster = await record(
      await send('admin', 'POST', '/roles', {
        name: 'Acme keymaster',
        privileges: ['ACCESS_MANAGEMENT_WRITE'],
      }),
    );
    const group = await record(
      await send('admin', 'POST', '/groups', { name: 'Acme keepers', roles: [keymaster.id] }),
    );
    await send('admin', 'PUT', `/groups/${group.id}/members`, { user_ids: [ids.alice, ids.gus] });
    assert.deepEqual(await memberNames(group.id), ['alice', 'gus']);

    // alice (admin of acme) sees only acme members.
    const seen = await record(await send('alice', 'GET', `/groups/${group.id}`));
    assert.deepEqual(
      seen.members.map((m: { username: string }) => m.username),
      ['alice'],
    );
    const other = await send('alice', 'POST', `/groups/${group.id}/members/${ids.gus}`);
    const missing = await send(
      'alice',
      'POST',
      `/groups/${group.id}/members/00000000-0000-7000-8000-000000000000`,
    );
    assert.equal(other.statusCode, 404);
    assert.equal(missing.statusCode, 404);
    assert.equal(json(other).status.user_message, json(missing).status.user_message);
    assert.equal((await send('alice', 'DELETE', `/groups/${group.id}/members/${ids.gus}`)).statusCode, 404);
    assert.equal(
      (await send('alice', 'PUT', `/groups/${group.id}/members`, { user_ids: [ids.alice, ids.gus] }))
        .statusCode,
      404,
    );
    // Replacing the members she sees leaves the ones she cannot see alone.
    const replaced = await send('alice', 'PUT', `/groups/${group.id}/members`, {
      user_ids: [ids.alice, ids.bob],
    });
    assert.equal(replaced.statusCode, 200, replaced.body);
    assert.deepEqual(await memberNames(group.id), ['alice', 'bob', 'gus']);
  });

  test('a group record shows its first 100 members and their count; /groups/{id}/members pages through all of them', async () => {
    const crew = await record(await send('admin', 'POST', '/groups', { name: 'Big crew' }));
    for (let i = 0; i < 150; i++) {
      await ctx.core.accounts.createUser({
        username: `crew-${String(i).padStart(3, '0')}`,
        password: 'crew-member-password-1',
        tenantCode: i < 140 ? 'acme' : 'globex',
        role: 'user',
        groups: ['Big crew'],
      });
    }
    const whole = await record(await send('admin', 'GET', `/groups/${crew.id}`));
    assert.equal(whole.member_count, 150);
    assert.equal(whole.members.length, 100);
    assert.equal(whole.members[0].username, 'crew-000');
    assert.equal(whole.members[99].username, 'crew-099');
    const listedGroup = json(await send('admin', 'GET', '/groups?limit=1000')).result.records.find(
      (g: { id: string }) => g.id === crew.id,
    );
    assert.equal(listedGroup.member_count, 150);
    assert.equal(listedGroup.members.length, 100);

    const page = json(
      await send(
        'admin',
        'GET',
        `/groups/${crew.id}/members?sort_by=username&order_by=asc&offset=120&limit=20`,
      ),
    ).result;
    assert.equal(page.total_records, 150);
    assert.equal(page.returned_records, 20);
    assert.deepEqual(
      page.records.map((m: { username: string }) => m.username),
      Array.from({ length: 20 }, (_, i) => `crew-${120 + i}`),
    );
    assert.deepEqual(Object.keys(page.records[0]).sort(), ['id', 'username']);
    const newest = json(await send('admin', 'GET', `/groups/${crew.id}/members?limit=1`)).result.records;
    assert.equal(newest[0].username, 'crew-149');

    // alice administers acme: she counts and pages through the acme members only.
    const hers = await record(await send('alice', 'GET', `/groups/${crew.id}`));
    assert.equal(hers.member_count, 140);
    const herPage = json(
      await send('alice', 'GET', `/groups/${crew.id}/members?sort_by=username&order_by=desc&limit=5`),
    ).result;
    assert.equal(herPage.total_records, 140);
    assert.equal(herPage.records[0].username, 'crew-139');

    // A member without the access-management privileges reads neither the group nor its members.
    const member = await nseSignIn(ctx, 'crew-000', 'crew-member-password-1');
    for (const url of [`/groups/${crew.id}`, `/groups/${crew.id}/members`]) {
      const refused = await ctx.inject({ method: 'GET', url: `/api/v2.1${url}`, headers: bearer(member) });
      assert.equal(refused.statusCode, 403, url);
    }
    assert.equal(
      (await send('admin', 'GET', '/groups/00000000-0000-7000-8000-000000000000/members')).statusCode,
      404,
    );
  });

  test('a tenant admin makes a directory user (an "Operator") only while it holds the Operator privileges itself', async () => {
    const operators = (json(await send('admin', 'GET', '/groups?limit=1000')).result.records as any[]).find(
      (g) => g.name === 'Operator',
    ).id as string;
    const acme = (await ctx.store.tenants.findByCode('acme'))!.id;
    const directoryUser = (username: string) =>
      send('alice', 'POST', '/users', {
        username,
        provider: 'activeDirectory',
        tenancies: [{ tenant_id: acme, role_name: 'user' }],
      });
    assert.equal((await directoryUser('ad-one@corp.example')).statusCode, 403);
    assert.equal((await send('admin', 'POST', `/groups/${operators}/members/${ids.alice}`)).statusCode, 200);
    const made = await directoryUser('ad-two@corp.example');
    assert.equal(made.statusCode, 201, made.body);
    assert.equal(
      (await send('admin', 'DELETE', `/groups/${operators}/members/${ids.alice}`)).statusCode,
      204,
    );
  });
});
