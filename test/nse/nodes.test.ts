import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { sql } from 'kysely';
import { createTestContext, type TestContext } from '../helpers/context.js';
import { forEachDialect } from '../helpers/dialects.js';
import { bearer, json, nseSignIn } from '../helpers/http.js';

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
const UNKNOWN_ID = '01890000-0000-7000-8000-000000000000';

forEachDialect('NSE backup nodes', (dialect) => {
  let ctx: TestContext;
  let root: string;
  let alice: string;

  const call = (
    token: string,
    method: 'GET' | 'POST' | 'PUT' | 'DELETE',
    url: string,
    payload?: Record<string, unknown>,
  ) =>
    ctx.inject({ method, url: `/api/v2.1${url}`, headers: bearer(token), ...(payload ? { payload } : {}) });
  const register = async (login: string, password: string) => {
    const response = await call(root, 'POST', '/nodes', { login, password });
    assert.equal(response.statusCode, 201, response.body);
    return json(response).result.records[0] as Record<string, any>;
  };
  const nodeLogin = (login: string, password: string, version = '6.1.0') =>
    ctx.inject({ method: 'POST', url: '/api/session/node/login', payload: { login, password, version } });
  const nodeCookie = async (login: string, password: string) => {
    const response = await nodeLogin(login, password);
    assert.equal(response.statusCode, 201, response.body);
    return response.cookies.find((c) => c.name === 'gatehouse_session')!.value;
  };
  const cookieStatus = async (cookie: string) =>
    (await ctx.inject({ method: 'GET', url: '/api/session', cookies: { gatehouse_session: cookie } }))
      .statusCode;
  const nodeEvents = async () =>
    (
      await sql<{ action: string; target_id: string; reason: string; actor_name: string }>`
        select action, target_id, reason, actor_name from audit_events where action like 'node.%' order by id`.execute(
        ctx.store.db,
      )
    ).rows;

  before(async () => {
    ctx = await createTestContext(dialect);
    await ctx.core.tenants.create({ code: 'acme', name: 'Acme' });
    await ctx.core.accounts.createUser({
      username: 'alice',
      password: 'rabbit-hole-wonder-1',
      tenantCode: 'acme',
      role: 'admin',
    });
    root = await nseSignIn(ctx);
    alice = await nseSignIn(ctx, 'alice', 'rabbit-hole-wonder-1');
  });
  after(() => ctx.close());

  test('root registers a node (201); the node logs in and reports its version', async () => {
    const response = await call(root, 'POST', '/nodes', {
      login: 'node-01',
      password: 'backup-agent-pass-1',
    });
    assert.equal(response.statusCode, 201);
    const body = json(response);
    assert.equal(body.status.user_message, 'Okay. New resource created.');
    const record = body.result.records[0];
    assert.deepEqual(Object.keys(record).sort(), [
      'active',
      'created',
      'id',
      'last_seen',
      'login',
      'version',
    ]);
    assert.equal(record.login, 'node-01');
    assert.equal(record.active, true);
    assert.equal(record.version, null);
    assert.equal(record.last_seen, null);
    assert.match(record.created, ISO);
    assert.ok(!response.body.includes('backup-agent-pass-1'), 'the password is not echoed');

    ctx.clock.advance(1000);
    await nodeCookie('node-01', 'backup-agent-pass-1');
    const fetched = json(await call(root, 'GET', `/nodes/${record.id}`));
    assert.equal(fetched.result.returned_records, 1);
    assert.equal(fetched.result.records[0].version, '6.1.0');
    assert.match(fetched.result.records[0].last_seen, ISO);

    const [event] = (await nodeEvents()).filter((e) => e.target_id === record.id);
    assert.equal(event?.action, 'node.create');
    assert.equal(event?.actor_name, 'admin');
  });

  test('bad registrations answer 400 or 409 and register nothing', async () => {
    const before = json(await call(root, 'GET', '/nodes')).result.total_records;
    const cases: [Record<string, unknown>, number, string][] = [
      [{ login: 'NODE-01', password: 'backup-agent-pass-2' }, 409, 'ALREADY_EXISTS'],
      [{ login: '', password: 'backup-agent-pass-2' }, 400, 'VALIDATION_FAILED'],
      [{ login: 'bad login', password: 'backup-agent-pass-2' }, 400, 'VALIDATION_FAILED'],
      [{ login: 'x'.repeat(129), password: 'backup-agent-pass-2' }, 400, 'VALIDATION_FAILED'],
      [{ login: 'node-02' }, 400, 'VALIDATION_FAILED'],
      [{ login: 'node-02', password: 12345678901234 }, 400, 'VALIDATION_FAILED'],
      [{ login: 'node-02', password: 'short' }, 400, 'PASSWORD_POLICY'],
      [{ login: 'node-02', password: 'node-02-is-my-password' }, 400, 'PASSWORD_POLICY'],
    ];
    for (const [payload, status, code] of cases) {
      const response = await call(root, 'POST', '/nodes', payload);
      assert.equal(response.statusCode, status, JSON.stringify(payload));
      assert.match(json(response).status.verbose_message, new RegExp(`^${code}`), JSON.stringify(payload));
    }
    assert.equal(json(await call(root, 'GET', '/nodes')).result.total_records, before);
  });

  test('the list pages and sorts', async () => {
    for (const login of ['node-b', 'Node-A', 'node-c']) await register(login, 'listed-agent-secret-9');
    const byLogin = json(await call(root, 'GET', '/nodes?sort_by=login&order_by=asc'));
    assert.deepEqual(
      byLogin.result.records.map((n: any) => n.login),
      ['node-01', 'Node-A', 'node-b', 'node-c'],
    );
    const page = json(await call(root, 'GET', '/nodes?limit=2&offset=1&sort_by=login&order_by=asc'));
    assert.equal(page.result.returned_records, 2);
    assert.equal(page.result.total_records, 4);
    assert.equal(page.result.limit, 2);
    assert.equal(page.result.offset, 1);
    assert.deepEqual(
      page.result.records.map((n: any) => n.login),
      ['Node-A', 'node-b'],
    );
    const bySeen = json(await call(root, 'GET', '/nodes?sort_by=last_seen&order_by=desc'));
    assert.equal(bySeen.result.records[0].login, 'node-01', 'the node seen last first; never seen last');
    for (const query of ['?sort_by=password', '?limit=0', '?order_by=up']) {
      assert.equal((await call(root, 'GET', `/nodes${query}`)).statusCode, 400, query);
    }
  });

  test('deactivating ends the node session at once and refuses its login; activating lets it in again', async () => {
    const node = await register('node-d', 'deactivate-me-please-1');
    const cookie = await nodeCookie('node-d', 'deactivate-me-please-1');
    assert.equal(await cookieStatus(cookie), 204);

    const response = await call(root, 'PUT', `/nodes/${node.id}`, { active: false });
    assert.equal(response.statusCode, 200);
    assert.equal(json(response).status.user_message, 'Okay. Returned 1 record.');
    assert.equal(json(response).result.records[0].active, false);
    assert.equal(await cookieStatus(cookie), 401);
    const refused = await nodeLogin('node-d', 'deactivate-me-please-1');
    assert.equal(refused.statusCode, 400);

    const back = await call(root, 'PUT', `/nodes/${node.id}`, { active: true });
    assert.equal(json(back).result.records[0].active, true);
    assert.equal(await cookieStatus(cookie), 401, 'reactivation does not revive the old session');
    await nodeCookie('node-d', 'deactivate-me-please-1');

    const events = (await nodeEvents()).filter((e) => e.target_id === node.id && e.action === 'node.update');
    assert.deepEqual(
      events.map((e) => e.reason),
      ['deactivated; 1 session ended', 'activated; 0 sessions ended'],
    );
  });

  test('a new password ends the sessions; the old one no longer logs in', async () => {
    const node = await register('node-p', 'first-password-abc-1');
    const cookie = await nodeCookie('node-p', 'first-password-abc-1');
    const response = await call(root, 'PUT', `/nodes/${node.id}`, { password: 'second-password-abc-2' });
    assert.equal(response.statusCode, 200);
    assert.equal(json(response).result.records[0].active, true);
    assert.equal(await cookieStatus(cookie), 401);
    assert.equal((await nodeLogin('node-p', 'first-password-abc-1')).statusCode, 400);
    await nodeCookie('node-p', 'second-password-abc-2');

    for (const [payload, code] of [
      [{}, 'VALIDATION_FAILED'],
      [{ password: 'short' }, 'PASSWORD_POLICY'],
      [{ password: 'node-p-password-123' }, 'PASSWORD_POLICY'],
      [{ active: 'no' }, 'VALIDATION_FAILED'],
    ] as const) {
      const refused = await call(root, 'PUT', `/nodes/${node.id}`, payload);
      assert.equal(refused.statusCode, 400, JSON.stringify(payload));
      assert.match(json(refused).status.verbose_message, new RegExp(`^${code}`));
    }
    await nodeCookie('node-p', 'second-password-abc-2');
    const dump = JSON.stringify(await nodeEvents());
    assert.ok(
      !dump.includes('first-password-abc-1') && !dump.includes('second-password-abc-2'),
      'no password in the audit log',
    );
  });

  test('delete answers 204 and ends its sessions; then it is gone', async () => {
    const node = await register('node-x', 'delete-me-soon-123');
    const cookie = await nodeCookie('node-x', 'delete-me-soon-123');
    const response = await call(root, 'DELETE', `/nodes/${node.id}`);
    assert.equal(response.statusCode, 204);
    assert.equal(response.body, '');
    assert.equal(await cookieStatus(cookie), 401);
    assert.equal((await nodeLogin('node-x', 'delete-me-soon-123')).statusCode, 400);
    assert.equal((await call(root, 'GET', `/nodes/${node.id}`)).statusCode, 404);
    assert.equal((await call(root, 'DELETE', `/nodes/${node.id}`)).statusCode, 404);
    const [event] = (await nodeEvents()).filter((e) => e.target_id === node.id && e.action === 'node.delete');
    assert.equal(event?.reason, '1 session ended');
  });

  test('unknown and malformed ids answer 404', async () => {
    for (const id of [UNKNOWN_ID, 'not-a-node-id']) {
      assert.equal((await call(root, 'GET', `/nodes/${id}`)).statusCode, 404);
      assert.equal((await call(root, 'PUT', `/nodes/${id}`, { active: false })).statusCode, 404);
      assert.equal((await call(root, 'DELETE', `/nodes/${id}`)).statusCode, 404);
    }
    assert.equal((await call(root, 'GET', `/nodes/${'x'.repeat(65)}`)).statusCode, 400);
  });

  test('only root: a tenant admin and a node get 403 on every route, and nothing changes', async () => {
    const node = await register('node-r', 'root-only-node-pass-1');
    const cookie = await nodeCookie('node-r', 'root-only-node-pass-1');
    const eventsBefore = (await nodeEvents()).length;
    for (const token of [alice, cookie]) {
      for (const [method, url, payload] of [
        ['GET', '/nodes', undefined],
        ['GET', `/nodes/${node.id}`, undefined],
        ['GET', `/nodes/${UNKNOWN_ID}`, undefined],
        ['POST', '/nodes', { login: 'node-evil', password: 'evil-agent-pass-666' }],
        ['PUT', `/nodes/${node.id}`, { active: false }],
        ['PUT', `/nodes/${UNKNOWN_ID}`, { active: false }],
        ['DELETE', `/nodes/${node.id}`, undefined],
      ] as const) {
        const response = await call(token, method, url, payload);
        assert.equal(response.statusCode, 403, `${method} ${url}`);
        assert.match(json(response).status.verbose_message, /^FORBIDDEN/);
      }
    }
    assert.equal(await cookieStatus(cookie), 204, 'the node still works');
    assert.equal(json(await call(root, 'GET', `/nodes/${node.id}`)).result.records[0].active, true);
    assert.equal((await nodeLogin('node-evil', 'evil-agent-pass-666')).statusCode, 400);
    assert.equal((await nodeEvents()).length, eventsBefore);

    for (const [method, url, payload] of [
      ['GET', '/nodes', undefined],
      ['POST', '/nodes', { login: 'node-anon', password: 'anonymous-agent-pass-1' }],
      ['PUT', `/nodes/${node.id}`, { active: false }],
      ['DELETE', `/nodes/${node.id}`, undefined],
    ] as const) {
      const response = await ctx.inject({ method, url: `/api/v2.1${url}`, ...(payload ? { payload } : {}) });
      assert.equal(response.statusCode, 401, `${method} ${url}`);
    }
  });
});
