import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { combineWorkerMetrics } from '../src/cluster-metrics.js';
import { ConfigError, loadConfig } from '../src/config.js';
import { ADMIN_PASSWORD, createTestContext, type TestContext } from './helpers/context.js';
import { forEachDialect } from './helpers/dialects.js';
import { basic, bearer, json } from './helpers/http.js';
import { createFreshDatabase } from './helpers/postgres.js';
import { freePort, waitFor } from './helpers/server-process.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const METRICS_TOKEN = 'scrape-secret-0123456789abcdef';
const WATCHER = 'metrics-watcher-olga';
const WATCHER_PASSWORD = 'Lantern-over-the-fen-42';
const HTTP = 'gatehouse_http_request_duration_seconds';

interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

interface Exposition {
  readonly samples: readonly Sample[];
  /** Family name → its TYPE. */
  readonly types: ReadonlyMap<string, string>;
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)/gy;

/** Parses the Prometheus text format (0.0.4) strictly: every line a comment, a sample or empty. */
function parseExposition(text: string): Exposition {
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const type = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line);
    if (type) {
      types.set(type[1] ?? '', type[2] ?? '');
      continue;
    }
    if (/^# HELP [a-zA-Z_:][a-zA-Z0-9_:]* .*$/.test(line)) continue;
    const match = SAMPLE.exec(line);
    assert.ok(match, `not a Prometheus text line: ${line}`);
    const labels: Record<string, string> = {};
    const labelText = match[2] ?? '';
    LABEL.lastIndex = 0;
    let consumed = 0;
    for (let label = LABEL.exec(labelText); label; label = LABEL.exec(labelText)) {
      labels[label[1] ?? ''] = (label[2] ?? '').replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
      consumed = LABEL.lastIndex;
    }
    assert.equal(consumed, labelText.length, `malformed labels: ${line}`);
    // prom-client writes NaN as `Nan`; Prometheus reads it case-insensitively (Go's ParseFloat).
    const valueText = match[3] ?? '';
    const value = valueText === '+Inf' ? Infinity : valueText === '-Inf' ? -Infinity : Number(valueText);
    assert.ok(/^nan$/i.test(valueText) || !Number.isNaN(value), `not a number: ${line}`);
    const name = match[1] ?? '';
    const family = name.replace(/_(bucket|count|sum)$/, '');
    assert.ok(types.has(name) || types.has(family), `a sample before its TYPE line: ${line}`);
    samples.push({ name, labels, value });
  }
  return { samples, types };
}

/** The value of the one sample named `name` whose labels are exactly `labels`; undefined if none. */
function sampleValue(
  exposition: Exposition,
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  const wanted = Object.entries(labels);
  const found = exposition.samples.filter(
    (s) =>
      s.name === name &&
      Object.keys(s.labels).length === wanted.length &&
      wanted.every(([k, v]) => s.labels[k] === v),
  );
  assert.ok(found.length <= 1, `${name} ${JSON.stringify(labels)}: more than one sample`);
  return found[0]?.value;
}

/** The sum of every sample named `name` whose labels include `labels`. */
function sumOf(exposition: Exposition, name: string, labels: Record<string, string> = {}): number {
  return exposition.samples
    .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
    .reduce((sum, s) => sum + s.value, 0);
}

forEachDialect('Metrics (/metrics)', (dialect) => {
  let ctx: TestContext;
  let root: string;
  before(async () => {
    ctx = await createTestContext(dialect);
    const signin = await ctx.inject({
      method: 'POST',
      url: '/api/v2.1/auth/signin',
      payload: { username: 'admin', password: ADMIN_PASSWORD },
    });
    root = json(signin).result.records[0].token;
    const tenant = await ctx.core.tenants.create({ code: 'metrics', name: 'Metrics' });
    const created = await ctx.inject({
      method: 'POST',
      url: '/api/v2.1/users',
      headers: bearer(root),
      payload: {
        username: WATCHER,
        password: WATCHER_PASSWORD,
        tenancies: [{ tenant_id: tenant.id, role_name: 'read' }],
      },
    });
    assert.equal(created.statusCode, 201, created.body);
  });
  after(() => ctx.close());

  const scrape = async (target: TestContext = ctx, headers: Record<string, string> = {}) => {
    const response = await target.inject({ method: 'GET', url: '/metrics', headers });
    assert.equal(response.statusCode, 200, response.body);
    return { response, exposition: parseExposition(response.body) };
  };

  test('after sign-ins, reads and a 404, every family is there with its labels and exact counts; no name, secret or address', async () => {
    const before = (await scrape()).exposition;
    const signIn = (password: string, remoteAddress: string) =>
      ctx.inject({
        method: 'POST',
        url: '/api/v2.1/auth/signin',
        remoteAddress,
        payload: { username: WATCHER, password },
      });
    const good = await signIn(WATCHER_PASSWORD, '198.51.100.7');
    assert.equal(good.statusCode, 200);
    const token: string = json(good).result.records[0].token;
    for (const _ of [1, 2])
      assert.equal((await signIn('Not-the-password-1', '198.51.100.8')).statusCode, 401);
    const login = await ctx.inject({
      method: 'POST',
      url: '/api/session/login',
      remoteAddress: '198.51.100.9',
      payload: { login: WATCHER, password: WATCHER_PASSWORD },
    });
    assert.equal(login.statusCode, 201);
    const cookie = login.cookies.find((c) => c.name === 'gatehouse_session')?.value ?? '';
    const badToken = await ctx.inject({
      method: 'POST',
      url: '/api/session/login-with-token',
      payload: { token: 'gh_not-a-real-token-value' },
    });
    assert.equal(badToken.statusCode, 400);
    const node = await ctx.inject({
      method: 'POST',
      url: '/api/session/node/login',
      payload: { login: 'no-such-node', password: 'Node-password-123', version: '9.0.0' },
    });
    assert.equal(node.statusCode, 400);
    for (const _ of [1, 2, 3]) {
      assert.equal(
        (await ctx.inject({ method: 'GET', url: '/api/v2.1/auth/regions', headers: bearer(token) }))
          .statusCode,
        200,
      );
    }
    // Once remembered, a Basic pair is answered by the credential cache: a cache hit, no sign-in.
    // Usually the second request is; on a loaded machine the change feed may drop the caches in
    // between (a late poll drops everything), and the pair is checked in full again, counted.
    const credentialHits = () => ctx.core.caches.stats().credentials.hits;
    const hitsBefore = credentialHits();
    let basicChecks = 0;
    for (let attempt = 0; credentialHits() === hitsBefore; attempt += 1) {
      assert.ok(attempt < 20, 'no Basic request was answered by the credential cache');
      const viaBasic = await ctx.inject({
        method: 'GET',
        url: '/api/v2.1/auth/regions',
        headers: basic(WATCHER, WATCHER_PASSWORD),
      });
      assert.equal(viaBasic.statusCode, 200);
      if (credentialHits() === hitsBefore) basicChecks += 1;
    }
    const self = await ctx.inject({
      method: 'GET',
      url: `/api/v2.1/users/${WATCHER}`,
      headers: bearer(token),
    });
    assert.equal(self.statusCode, 200);
    const lost = await ctx.inject({ method: 'GET', url: `/no/such/${WATCHER}/page` });
    assert.equal(lost.statusCode, 404);
    const wrongMethod = await ctx.inject({ method: 'DELETE', url: '/api/v2.1/auth/regions' });
    // A method no route takes (WebDAV's, say) is one label value, not one each.
    for (const method of ['PROPFIND', 'MKCOL'] as const) {
      assert.equal((await ctx.inject({ method, url: `/no/such/${WATCHER}/dav` })).statusCode, 404);
    }
    assert.equal(wrongMethod.statusCode, 405);

    // Past the 5 s the live-session count is cached for.
    ctx.clock.advance(5_000);
    const { response, exposition } = await scrape();
    assert.equal(response.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8');

    const signins = (surface: string, outcome: string) =>
      (sampleValue(exposition, 'gatehouse_signins_total', { surface, outcome }) ?? 0) -
      (sampleValue(before, 'gatehouse_signins_total', { surface, outcome }) ?? 0);
    assert.equal(exposition.types.get('gatehouse_signins_total'), 'counter');
    assert.equal(signins('nse', 'success'), 1);
    assert.equal(signins('nse', 'invalid_credentials'), 2);
    assert.equal(signins('storware', 'success'), 1);
    assert.equal(signins('token', 'invalid_credentials'), 1);
    assert.equal(signins('node', 'invalid_credentials'), 1);
    assert.equal(signins('basic', 'success'), basicChecks, 'only the Basic requests checked in full');
    assert.equal(
      (sampleValue(exposition, 'gatehouse_cache_requests_total', { cache: 'credentials', result: 'hit' }) ??
        0) -
        (sampleValue(before, 'gatehouse_cache_requests_total', { cache: 'credentials', result: 'hit' }) ?? 0),
      1,
    );
    assert.equal(
      sumOf(exposition, 'gatehouse_signins_total') - sumOf(before, 'gatehouse_signins_total'),
      6 + basicChecks,
      'nothing else counted as a sign-in',
    );

    assert.equal(exposition.types.get(HTTP), 'histogram');
    const requests = (route: string, status: string, method = 'GET') =>
      sampleValue(exposition, `${HTTP}_count`, { method, route, status });
    // Three by Bearer, then the Basic ones: those checked in full and the one the cache answered.
    assert.equal(requests('/api/v2.1/auth/regions', '200'), 3 + basicChecks + 1);
    assert.equal(requests('/api/v2.1/users/:id', '200'), 1, 'the route pattern, not the URL');
    assert.equal(requests('/api/v2.1/auth/signin', '401', 'POST'), 2);
    assert.equal(requests('not_found', '404'), 1);
    assert.equal(requests('method_not_allowed', '405', 'DELETE'), 1);
    assert.equal(requests('not_found', '404', 'other'), 2);
    assert.equal(exposition.samples.filter((s) => s.labels.method === 'PROPFIND').length, 0);
    const regionBuckets = exposition.samples.filter(
      (s) =>
        s.name === `${HTTP}_bucket` &&
        s.labels.route === '/api/v2.1/auth/regions' &&
        s.labels.status === '200',
    );
    assert.deepEqual(
      regionBuckets.map((s) => s.labels.le),
      [
        '0.001',
        '0.0025',
        '0.005',
        '0.01',
        '0.025',
        '0.05',
        '0.1',
        '0.25',
        '0.5',
        '1',
        '2.5',
        '5',
        '10',
        '30',
        '60',
        '+Inf',
      ],
    );
    // Every one of them, as counted above (the Basic ones checked in full vary on a loaded machine).
    assert.equal(regionBuckets.at(-1)?.value, 3 + basicChecks + 1);

    assert.equal(exposition.types.get('gatehouse_active_sessions'), 'gauge');
    assert.equal(sampleValue(exposition, 'gatehouse_active_sessions'), 3, 'root, NSE and Storware sessions');

    assert.equal(exposition.types.get('gatehouse_password_hash_queue_depth'), 'gauge');
    assert.equal(sampleValue(exposition, 'gatehouse_password_hash_queue_depth'), 0, 'nothing hashing now');
    const verifies =
      (sampleValue(exposition, 'gatehouse_password_hash_duration_seconds_count', { operation: 'verify' }) ??
        0) -
      (sampleValue(before, 'gatehouse_password_hash_duration_seconds_count', { operation: 'verify' }) ?? 0);
    assert.equal(
      verifies,
      5 + basicChecks,
      'four password checks, the unknown node (a dummy verify), and the Basic ones checked in full',
    );

    const storeCount = sampleValue(exposition, 'gatehouse_store_query_duration_seconds_count', {
      dialect,
      statement: 'select',
    });
    assert.ok((storeCount ?? 0) > 0, `select statements timed on ${dialect}: ${storeCount}`);
    assert.ok(
      (sampleValue(exposition, 'gatehouse_store_query_duration_seconds_count', {
        dialect,
        statement: 'insert',
      }) ?? 0) > 0,
      'inserts timed',
    );
    for (const s of exposition.samples.filter((s) => s.name.startsWith('gatehouse_store_query'))) {
      assert.match(s.labels.statement ?? '', /^(select|insert|update|delete|transaction|other)$/);
    }

    assert.equal(exposition.types.get('gatehouse_cache_requests_total'), 'counter');
    for (const family of [
      'gatehouse_process_cpu_user_seconds_total',
      'gatehouse_process_resident_memory_bytes',
      'gatehouse_nodejs_eventloop_lag_seconds',
      'gatehouse_nodejs_heap_size_used_bytes',
    ]) {
      assert.ok(exposition.types.has(family), `default metric ${family}`);
    }

    // Nothing that names a person, proves an identity or locates a client.
    const text = response.body;
    for (const secret of [WATCHER, WATCHER_PASSWORD, ADMIN_PASSWORD, token, root, cookie, 'gh_not-a-real']) {
      assert.ok(!text.includes(secret), `the metrics must not contain ${secret.slice(0, 12)}…`);
    }
    for (const address of ['198.51.100', '127.0.0.1', 'no-such-node', '/no/such']) {
      assert.ok(!text.includes(address), `the metrics must not contain ${address}`);
    }
    const labelValues = new Set(exposition.samples.flatMap((s) => Object.values(s.labels)));
    assert.ok(!labelValues.has('admin'), 'no user name as a label value');
  });

  test('cache lookups are counted by cache and result, as the caches count them', async () => {
    const before = (await scrape()).exposition;
    const stats = ctx.core.caches.stats();
    for (let i = 0; i < 3; i += 1) {
      const read = await ctx.inject({
        method: 'GET',
        url: '/api/v2.1/auth/regions',
        headers: basic(WATCHER, WATCHER_PASSWORD),
      });
      assert.equal(read.statusCode, 200);
    }
    const { exposition } = await scrape();
    const delta = (cache: string, result: string) =>
      (sampleValue(exposition, 'gatehouse_cache_requests_total', { cache, result }) ?? 0) -
      (sampleValue(before, 'gatehouse_cache_requests_total', { cache, result }) ?? 0);
    const now = ctx.core.caches.stats();
    assert.equal(
      delta('credentials', 'hit') + delta('credentials', 'miss'),
      3,
      'one lookup per Basic request',
    );
    assert.equal(delta('credentials', 'hit'), now.credentials.hits - stats.credentials.hits);
    assert.equal(delta('credentials', 'miss'), now.credentials.misses - stats.credentials.misses);
    assert.equal(delta('session', 'hit'), now.sessions.hits - stats.sessions.hits);
    assert.equal(delta('session', 'miss'), now.sessions.misses - stats.sessions.misses);
  });

  test('the old password of a password change is counted as a sign-in check, surface password', async () => {
    const signins = async (outcome: string) =>
      sampleValue((await scrape()).exposition, 'gatehouse_signins_total', { surface: 'password', outcome }) ??
      0;
    const tenant = await ctx.core.tenants.create({ code: 'metrics_pw', name: 'Metrics password' });
    const created = await ctx.inject({
      method: 'POST',
      url: '/api/v2.1/users',
      headers: bearer(root),
      payload: {
        username: 'metrics-changer-ivo',
        password: 'Copper-kettle-on-the-hob-7',
        tenancies: [{ tenant_id: tenant.id, role_name: 'user' }],
      },
    });
    assert.equal(created.statusCode, 201, created.body);
    const change = (oldPassword: string) =>
      ctx.inject({
        method: 'POST',
        url: '/api/v2.1/auth/password',
        payload: {
          username: 'metrics-changer-ivo',
          old_password: oldPassword,
          new_password: 'Walnut-drawer-in-the-hall-8',
        },
      });
    const [wrongBefore, rightBefore] = [await signins('invalid_credentials'), await signins('success')];
    assert.equal((await change('Not-the-password-000')).statusCode, 401);
    assert.equal(
      await signins('invalid_credentials'),
      wrongBefore + 1,
      'a wrong old password is a failed check',
    );
    assert.equal((await change('Copper-kettle-on-the-hob-7')).statusCode, 200);
    assert.equal(await signins('success'), rightBefore + 1);
  });

  test("the store's histogram times the requests' statements, not the change feed's polls", async () => {
    const selects = async () =>
      sampleValue((await scrape()).exposition, 'gatehouse_store_query_duration_seconds_count', {
        dialect,
        statement: 'select',
      }) ?? 0;
    // A scrape may count the live sessions from the store (at most every 5 s): settled first.
    await selects();
    const before = await selects();
    // The SQLite feed polls every 100 ms: seven polls at least while nothing else reads.
    await sleep(800);
    assert.equal(await selects(), before, 'no request, no select timed');
    // Past the session copy's lifetime (5 s): the read takes its session from the store.
    ctx.clock.advance(10_000);
    const uncached = await ctx.inject({
      method: 'GET',
      url: '/api/v2.1/auth/regions',
      headers: bearer(root),
    });
    assert.equal(uncached.statusCode, 200);
    assert.ok((await selects()) > before, 'a read from the store is timed');
  });

  test('active sessions: live ones only, counted from the store at most every 5 s', async () => {
    const active = async () => sampleValue((await scrape()).exposition, 'gatehouse_active_sessions');
    ctx.clock.advance(10_000);
    const live = await ctx.store.sessions.countLive(ctx.core.sessions.liveBounds());
    assert.equal(await active(), live);
    const signin = await ctx.inject({
      method: 'POST',
      url: '/api/v2.1/auth/signin',
      payload: { username: WATCHER, password: WATCHER_PASSWORD },
    });
    const token: string = json(signin).result.records[0].token;
    assert.equal(await active(), live, 'within 5 s a scrape reads the cached count, not the store');
    ctx.clock.advance(5_000);
    assert.equal(await active(), live + 1);
    const logout = await ctx.inject({ method: 'POST', url: '/api/session/logout', headers: bearer(token) });
    assert.ok(logout.statusCode < 300, `logout: ${logout.statusCode}`);
    ctx.clock.advance(5_000);
    assert.equal(await active(), live, 'a revoked session is not live');
    // Idle past the timeout (30 min by default): every session ends.
    ctx.clock.advance(31 * 60_000);
    assert.equal(await active(), 0, 'idle sessions are not live');
  });
});

forEachDialect('Metrics access and settings', (dialect) => {
  let guarded: TestContext;
  before(async () => {
    guarded = await createTestContext(dialect, {
      GATEHOUSE_METRICS_TOKEN: METRICS_TOKEN,
      GATEHOUSE_RATE_LIMIT_SIGNIN: '6/min',
      GATEHOUSE_NODE_MIN_VERSION: '5.0.0',
    });
  });
  after(() => guarded.close());

  test('the sign-in and housekeeping counters have every series from the start, at 0', async () => {
    const response = await guarded.inject({ method: 'GET', url: '/metrics', headers: bearer(METRICS_TOKEN) });
    const exposition = parseExposition(response.body);
    // Before any sign-in: the first failed one is then an increase from 0 that rate() sees.
    for (const surface of ['nse', 'storware', 'basic', 'node', 'token', 'password'])
      for (const outcome of ['success', 'invalid_credentials', 'locked', 'rate_limited', 'busy'])
        assert.equal(
          sampleValue(exposition, 'gatehouse_signins_total', { surface, outcome }),
          0,
          `${surface} ${outcome}`,
        );
    for (const table of ['sessions', 'jobs'])
      assert.equal(sampleValue(exposition, 'gatehouse_housekeeping_deleted_rows_total', { table }), 0);
    for (const task of ['sweep', 'counters', 'lent-tokens'])
      assert.equal(sampleValue(exposition, 'gatehouse_housekeeping_failures_total', { task }), 0);
  });

  test('GATEHOUSE_METRICS_TOKEN: a scrape without the bearer secret is refused', async () => {
    const without = await guarded.inject({ method: 'GET', url: '/metrics' });
    assert.equal(without.statusCode, 401, without.body);
    assert.equal(json(without).status.code, 401);
    assert.match(String(without.headers['www-authenticate']), /^Bearer/);
    assert.ok(!without.body.includes('gatehouse_'), 'no metrics in the refusal');
    const wrong = await guarded.inject({
      method: 'GET',
      url: '/metrics',
      headers: bearer(`${METRICS_TOKEN}x`),
    });
    assert.equal(wrong.statusCode, 401);
    const viaBasic = await guarded.inject({
      method: 'GET',
      url: '/metrics',
      headers: basic('admin', ADMIN_PASSWORD),
    });
    assert.equal(viaBasic.statusCode, 401, 'the metrics secret is not an account');
    const right = await guarded.inject({ method: 'GET', url: '/metrics', headers: bearer(METRICS_TOKEN) });
    assert.equal(right.statusCode, 200);
    assert.match(right.body, /^# TYPE gatehouse_signins_total counter$/m);
    assert.ok(!right.body.includes(METRICS_TOKEN), 'the secret is not in the metrics');
    const spec = json(await guarded.inject({ method: 'GET', url: '/openapi.json' }));
    assert.deepEqual(spec.paths['/metrics'].get.security, [{ bearer: [] }]);
  });

  test('locked, rate-limited and refused-version sign-ins are counted by outcome', async () => {
    const count = async (surface: string, outcome: string) => {
      const response = await guarded.inject({
        method: 'GET',
        url: '/metrics',
        headers: bearer(METRICS_TOKEN),
      });
      return (
        sampleValue(parseExposition(response.body), 'gatehouse_signins_total', { surface, outcome }) ?? 0
      );
    };
    // Five failures of a pair lock it (GATEHOUSE_LOCKOUT_THRESHOLD); the sixth attempt is refused as locked.
    const attempt = () =>
      guarded.inject({
        method: 'POST',
        url: '/api/v2.1/auth/signin',
        remoteAddress: '203.0.113.5',
        payload: { username: 'admin', password: 'Wrong-password-000' },
      });
    for (let i = 0; i < 6; i += 1) assert.equal((await attempt()).statusCode, 401);
    assert.equal(await count('nse', 'invalid_credentials'), 5);
    assert.equal(await count('nse', 'locked'), 1);
    // 6 sign-in requests per minute from one address: the next ones are refused before any check.
    for (let i = 0; i < 2; i += 1) assert.equal((await attempt()).statusCode, 429);
    assert.equal(await count('nse', 'rate_limited'), 2);
    assert.equal(await count('nse', 'locked'), 1, 'a rate-limited attempt is not also counted as locked');
    await guarded.core.accounts.createNode({ login: 'node-x', password: 'Node-password-123' });
    const old = await guarded.inject({
      method: 'POST',
      url: '/api/session/node/login',
      payload: { login: 'node-x', password: 'Node-password-123', version: '4.9' },
    });
    assert.equal(old.statusCode, 400);
    assert.equal(await count('node', 'unsupported_version'), 1);
  });

  test('GATEHOUSE_METRICS=off: no /metrics route and no request histogram', async () => {
    const off = await createTestContext(dialect, { GATEHOUSE_METRICS: 'off' });
    try {
      const response = await off.inject({ method: 'GET', url: '/metrics' });
      assert.equal(response.statusCode, 404);
      const spec = json(await off.inject({ method: 'GET', url: '/openapi.json' }));
      assert.equal(spec.paths['/metrics'], undefined);
      assert.doesNotMatch(await off.core.metrics.text(), new RegExp(`^${HTTP}_count`, 'm'));
    } finally {
      await off.close();
    }
  });
});

test('GATEHOUSE_METRICS and GATEHOUSE_METRICS_TOKEN are validated', () => {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'gatehouse-metrics-config-'));
  try {
    assert.deepEqual(loadConfig({ GATEHOUSE_DATA_DIR: dataDir }).metrics, {
      enabled: true,
      token: undefined,
    });
    assert.deepEqual(
      loadConfig({
        GATEHOUSE_DATA_DIR: dataDir,
        GATEHOUSE_METRICS: 'off',
        GATEHOUSE_METRICS_TOKEN: METRICS_TOKEN,
      }).metrics,
      { enabled: false, token: METRICS_TOKEN },
    );
    assert.throws(
      () =>
        loadConfig({
          GATEHOUSE_DATA_DIR: dataDir,
          GATEHOUSE_METRICS: 'yes',
          GATEHOUSE_METRICS_TOKEN: 'short',
        }),
      (error: unknown) =>
        error instanceof ConfigError &&
        error.problems.some((p) => p.startsWith('GATEHOUSE_METRICS: expected one of on, off')) &&
        error.problems.some((p) => p.startsWith('GATEHOUSE_METRICS_TOKEN: expected 16 to 256')) &&
        !error.message.includes('short'),
    );
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
});

forEachDialect('Metrics of serve --workers 2', (dialect) => {
  test('a scrape on any worker answers for the whole node, a series per worker that a replaced worker starts again, and the primary counts the exits it did not ask for; the idle primary sleeps', async () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), 'gatehouse-metrics-cluster-'));
    const database = dialect === 'postgres' ? await createFreshDatabase() : undefined;
    const port = await freePort();
    const env: NodeJS.ProcessEnv = { PATH: process.env.PATH ?? '' };
    Object.assign(env, {
      GATEHOUSE_PORT: String(port),
      GATEHOUSE_DATA_DIR: dataDir,
      ...(database ? { GATEHOUSE_DATABASE_URL: database.url } : {}),
      GATEHOUSE_ADMIN_PASSWORD: ADMIN_PASSWORD,
      GATEHOUSE_ARGON2_MEMORY_KIB: '1024',
      GATEHOUSE_ARGON2_ITERATIONS: '1',
      // The primary's lines (workers serving, a worker replaced) are at info.
      GATEHOUSE_LOG_LEVEL: 'info',
    });
    const child: ChildProcess = spawn(
      process.execPath,
      ['--import', 'tsx', 'src/cli/index.ts', 'serve', '--workers', '2'],
      {
        cwd: ROOT,
        env,
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let output = '';
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      output += chunk;
    });
    let stderr = '';
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
    });
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    const base = `http://127.0.0.1:${port}`;
    try {
      await waitFor(
        () =>
          fetch(`${base}/readyz`).then(
            (r) => (r.ok && /"msg":"2 workers serving"/.test(output) ? true : undefined),
            () => undefined,
          ),
        'the workers',
        60_000,
      );
      if (child.pid !== undefined && existsSync(`/proc/${child.pid}/task/${child.pid}/status`)) {
        // The primary only forks and waits: no process metrics, whose event-loop monitor would
        // wake it every 10 ms (about 100 context switches a second; its workers' are theirs).
        const switches = () => {
          const status = readFileSync(`/proc/${child.pid}/task/${child.pid}/status`, 'utf8');
          return [...status.matchAll(/ctxt_switches:\s+(\d+)/g)].reduce((sum, m) => sum + Number(m[1]), 0);
        };
        await sleep(300);
        const before = switches();
        await sleep(1000);
        const woken = switches() - before;
        assert.ok(woken < 20, `the idle primary was switched to ${woken} times in 1 s`);
      }
      // Each request on its own connection: the primary hands connections to the workers in turn.
      const HEALTH_CHECKS = 10;
      for (let i = 0; i < HEALTH_CHECKS; i += 1) {
        const health = await fetch(`${base}/healthz`, { headers: { connection: 'close' } });
        assert.equal(health.status, 200);
        await health.arrayBuffer();
      }
      for (let i = 0; i < 2; i += 1) {
        const signin = await fetch(`${base}/api/v2.1/auth/signin`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', connection: 'close' },
          body: JSON.stringify({ username: 'admin', password: ADMIN_PASSWORD }),
        });
        assert.equal(signin.status, 200);
        await signin.arrayBuffer();
      }
      const scrape = async () => {
        const response = await fetch(`${base}/metrics`, { headers: { connection: 'close' } });
        assert.equal(response.status, 200, stderr);
        return parseExposition(await response.text());
      };
      const healthChecks = { method: 'GET', route: '/healthz', status: '200' };
      const startTimes = (exposition: Exposition) =>
        ['1', '2'].map((worker) =>
          sampleValue(exposition, 'gatehouse_process_start_time_seconds', { worker }),
        );
      // Several scrapes land on both workers; each answers for the node, a series per worker.
      let exposition = await scrape();
      for (let i = 0; i < 4; i += 1) {
        exposition = await scrape();
        assert.equal(
          sumOf(exposition, `${HTTP}_count`, healthChecks),
          HEALTH_CHECKS,
          'the health checks of both workers',
        );
        assert.deepEqual(
          new Set(exposition.samples.filter((s) => s.name === `${HTTP}_count`).map((s) => s.labels.worker)),
          new Set(['1', '2']),
        );
        assert.equal(sumOf(exposition, 'gatehouse_signins_total', { surface: 'nse', outcome: 'success' }), 2);
        assert.equal(
          sampleValue(exposition, 'gatehouse_active_sessions'),
          2,
          'one count of the shared store, not one per worker',
        );
        assert.deepEqual(
          new Set(exposition.samples.filter((s) => s.labels.worker === undefined).map((s) => s.name)),
          new Set(['gatehouse_active_sessions', 'gatehouse_worker_exits_total']),
          "every other series is one worker's (the event-loop lag's max included)",
        );
        // The primary's own: no worker has stopped yet, and every reason is there at 0.
        for (const reason of ['crashed', 'failed_at_start', 'stopped'])
          assert.equal(sampleValue(exposition, 'gatehouse_worker_exits_total', { reason }), 0, reason);
        for (const worker of ['1', '2']) {
          assert.ok(
            (sampleValue(exposition, 'gatehouse_process_resident_memory_bytes', { worker }) ?? 0) > 0,
          );
          assert.ok((sampleValue(exposition, 'gatehouse_process_max_fds', { worker }) ?? 0) > 0);
        }
      }

      // A worker killed and replaced: the other's series go on as they were (a sum over both
      // dropped by the killed one's counts, which Prometheus reads as a reset); the new worker
      // takes the slot, with a later start time.
      const before = startTimes(exposition);
      const survivorCounts = new Map(
        ['1', '2'].map((worker) => [
          worker,
          sampleValue(exposition, `${HTTP}_count`, { ...healthChecks, worker }),
        ]),
      );
      const workerPids = readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8')
        .trim()
        .split(/\s+/);
      process.kill(Number(workerPids[0]), 'SIGKILL');
      await waitFor(
        async () => {
          // Told by the primary, as one that stopped or (young) one that failed at start.
          if (!output.includes(`"workerPid":${workerPids[0]},"exit":"SIGKILL"`)) return undefined;
          const after = startTimes(await scrape().catch(() => exposition));
          return after.every((t) => t !== undefined) && after.some((t, i) => t !== before[i])
            ? after
            : undefined;
        },
        'the replaced worker',
        60_000,
      );
      exposition = await scrape();
      const after = startTimes(exposition);
      const replaced = after.findIndex((t, i) => t !== before[i]);
      const kept = replaced === 0 ? '2' : '1';
      assert.equal(after.filter((t, i) => t !== before[i]).length, 1, 'one worker replaced');
      assert.ok((after[replaced] ?? 0) > (before[replaced] ?? 0));
      assert.equal(
        sampleValue(exposition, `${HTTP}_count`, { ...healthChecks, worker: kept }),
        survivorCounts.get(kept),
      );
      assert.equal(
        sampleValue(exposition, `${HTTP}_count`, { ...healthChecks, worker: String(replaced + 1) }),
        undefined,
      );
      // The primary counted the kill: a crash, or a failed start if the worker was that young.
      assert.equal(
        (sampleValue(exposition, 'gatehouse_worker_exits_total', { reason: 'crashed' }) ?? 0) +
          (sampleValue(exposition, 'gatehouse_worker_exits_total', { reason: 'failed_at_start' }) ?? 0),
        1,
      );
      assert.equal(sampleValue(exposition, 'gatehouse_worker_exits_total', { reason: 'stopped' }), 0);
    } finally {
      child.kill('SIGTERM');
      assert.equal(await exited, 0, stderr);
      await database?.drop();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

test("a node's metrics from its workers': the live-session count once, NaN when a worker could not read it; the rest a series per worker", async () => {
  // What the primary receives: each worker's registry as JSON, NaN arriving as null.
  const worker = (slot: number, liveSessions: number | null, signIns: number) => ({
    slot,
    metrics: [
      {
        name: 'gatehouse_active_sessions',
        help: 'live sessions',
        type: 'gauge',
        aggregator: 'max',
        values: [{ value: liveSessions, labels: {} }],
      },
      {
        name: 'gatehouse_signins_total',
        help: 'sign-ins',
        type: 'counter',
        aggregator: 'sum',
        values: [{ value: signIns, labels: { surface: 'nse', outcome: 'success' } }],
      },
      {
        name: 'gatehouse_process_start_time_seconds',
        help: 'start time',
        type: 'gauge',
        aggregator: 'omit',
        values: [{ value: 1_700_000_000 + slot, labels: {} }],
      },
    ] as unknown as Parameters<typeof combineWorkerMetrics>[0][number]['metrics'],
  });
  const read = async (workers: ReturnType<typeof worker>[]) =>
    parseExposition(await combineWorkerMetrics(workers).metrics());

  const both = await read([worker(1, 7, 3), worker(2, 7, 4)]);
  assert.equal(sampleValue(both, 'gatehouse_active_sessions'), 7);
  assert.equal(
    sampleValue(both, 'gatehouse_signins_total', { surface: 'nse', outcome: 'success', worker: '1' }),
    3,
  );
  assert.equal(
    sampleValue(both, 'gatehouse_signins_total', { surface: 'nse', outcome: 'success', worker: '2' }),
    4,
  );
  assert.equal(sampleValue(both, 'gatehouse_process_start_time_seconds', { worker: '2' }), 1_700_000_002);

  const outage = await read([worker(1, null, 3), worker(2, null, 4)]);
  assert.ok(Number.isNaN(sampleValue(outage, 'gatehouse_active_sessions')), 'unknown, not 0');
});
