/**
 * The reference documents' own response examples, checked against what Gatehouse answers.
 *
 * The examples are parsed out of ../shared/reference at run time (not copied here), so a change
 * to the reference shows up as a failure. For each example the corresponding real request is
 * made (on both stores) and every key of the example, recursively and into the first element of
 * arrays, must be in our answer with the same JSON type. Our answers may carry more keys.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { LightMyRequestResponse } from 'fastify';
import { ADMIN_PASSWORD, createTestContext, type TestContext } from './helpers/context.js';
import { forEachDialect } from './helpers/dialects.js';
import { bearer, json, nseSignIn, storwareLogin } from './helpers/http.js';

// The reference sits beside the repository (../shared), as on the project's machines and in CI.
// A clone made elsewhere has no reference: the comparison is then skipped, naming the path
// (`.ci/run` says so at its start too), rather than failing the rest of the suite.
const REFERENCE = new URL('../../shared/reference/', import.meta.url);
const REFERENCE_PRESENT = existsSync(fileURLToPath(new URL('storware/session-api.txt', REFERENCE)));
const referenceText = (file: string) => readFileSync(new URL(file, REFERENCE), 'utf8');

interface Example {
  /** Where it came from, for the test name. */
  readonly source: string;
  /** Method and path as the reference writes them, e.g. "GET /v2.1/regions/{name}". */
  readonly endpoint: string;
  readonly body: unknown;
}

/** From the first `{` at or after `start`, the text up to its matching `}` (strings respected). */
function balancedObject(text: string, start: number): string | undefined {
  const open = text.indexOf('{', start);
  if (open < 0) return undefined;
  let depth = 0;
  let inString = false;
  for (let i = open; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === '{') depth++;
    else if (c === '}' && --depth === 0) return text.slice(open, i + 1);
  }
  return undefined;
}

/**
 * session-api.txt: each request line (`POST /session/login`) is followed by its example answer,
 * `HTTP/1.1 201 Created` or `HTTP/1.1 200 OK`, a Content-Type line and (if it has one) a JSON body.
 * Answers without a JSON body (`...`, or nothing) are not examples of a body and are left out.
 */
function storwareExamples(): Example[] {
  const lines = referenceText('storware/session-api.txt').split('\n');
  const examples: Example[] = [];
  let request: string | undefined;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (/^(GET|POST|PUT|DELETE) \/session\S*$/.test(line)) request = line;
    if (!/^HTTP\/1\.1 (201 Created|200 OK)$/.test(line)) continue;
    let j = i + 1;
    while (j < lines.length && /^Content-Type:/i.test(lines[j]!.trim())) j++;
    if (lines[j]?.trim() !== '{' || !request) continue;
    const offset = lines.slice(0, j).join('\n').length;
    const text = balancedObject(lines.join('\n'), offset);
    assert.ok(text, `session-api.txt: unterminated JSON after line ${i + 1}`);
    examples.push({ source: `session-api.txt ${line}`, endpoint: request, body: JSON.parse(text) });
  }
  return examples;
}

/**
 * The NSE .adoc files: per `==`/`===` section, the method and path from its table and the
 * "*Response body example:*" block between `....` lines.
 */
function nseExamples(file: string): Example[] {
  const examples: Example[] = [];
  const sections = referenceText(`nse-v2.1/${file}`).split(/\n(?==+ )/);
  for (const section of sections) {
    const heading = section.split('\n', 1)[0]!.replace(/^=+ /, '');
    const route = /^\|`(GET|POST|PUT|DELETE)`\n\|`(\/v2\.1\/[^`]*)`/m.exec(section);
    const marker = section.indexOf('*Response body example:*');
    if (!route || marker < 0) continue;
    const block = /^\.\.\.\.\n([\s\S]*?)\n\.\.\.\.$/m.exec(section.slice(marker));
    if (!block || !block[1]!.trim().startsWith('{')) continue; // e.g. "No content for succesful delete"
    let body: unknown;
    try {
      body = JSON.parse(block[1]!);
    } catch {
      // Reference defect: the "Retrieve all zones" example in zones.adoc lacks the final closing
      // brace of the envelope. Complete it rather than skip the example.
      body = JSON.parse(`${block[1]!}\n}`);
    }
    examples.push({ source: `${file}: ${heading}`, endpoint: `${route[1]} ${route[2]}`, body });
  }
  return examples;
}

/**
 * Reference examples for endpoints that Gatehouse does not serve (yet). Listed so that every
 * example parsed is either checked or knowingly left out.
 */
const NOT_SERVED = new Set<string>([]);

/**
 * Reference fields not compared:
 * - regions.adoc "Retrieve a region by name" shows `"code": "string"`; the status code is the
 *   HTTP status as a number everywhere else in the reference (and in DESIGN.md).
 * - tenants.adoc shows a tenant's `usage` (consumed and committed capacity per service level):
 *   Gatehouse keeps no usage data and answers `usage: null` (a choice the README writes down).
 */
const SKIPPED_FIELDS: Record<string, readonly string[]> = {
  'GET /v2.1/regions/{name}': ['status.code'],
  'GET /v2.1/tenants': ['result.records[0].usage'],
  'GET /v2.1/tenants/{id}': ['result.records[0].usage'],
};

/** Arrays whose first element is not compared: our jobs have no tasks to show (none can be created yet). */
const UNCOMPARED_ELEMENTS = new Set(['result.records[0].job_tasks']);

const typeOf = (value: unknown) => (value === null ? 'null' : Array.isArray(value) ? 'array' : typeof value);

/** Every key of `reference` present in `ours` with the same JSON type; problems as readable lines. */
function compareShape(
  reference: unknown,
  ours: unknown,
  path: string,
  skip: readonly string[],
  problems: string[],
) {
  if (skip.includes(path)) return;
  const where = path || '(body)';
  // session-api.txt writes "..." for values it does not show: any string, or null (an absent value).
  if (reference === '...') {
    if (typeof ours !== 'string' && ours !== null)
      problems.push(`${where}: expected string or null, got ${typeOf(ours)}`);
    return;
  }
  if (reference === null) return; // the reference says nothing about the type
  if (typeOf(reference) !== typeOf(ours)) {
    problems.push(`${where}: expected ${typeOf(reference)}, got ${typeOf(ours)} (${JSON.stringify(ours)})`);
    return;
  }
  if (Array.isArray(reference)) {
    if (reference.length === 0 || UNCOMPARED_ELEMENTS.has(path)) return;
    const list = ours as unknown[];
    if (list.length === 0) {
      problems.push(`${where}: empty, so the reference's element cannot be compared (set up data)`);
      return;
    }
    compareShape(reference[0], list[0], `${path}[0]`, skip, problems);
    return;
  }
  if (typeof reference === 'object') {
    const record = ours as Record<string, unknown>;
    for (const [key, value] of Object.entries(reference as Record<string, unknown>)) {
      const child = path ? `${path}.${key}` : key;
      if (skip.includes(child)) continue;
      if (!(key in record)) problems.push(`${child}: missing`);
      else compareShape(value, record[key], child, skip, problems);
    }
  }
}

const EXAMPLES: Example[] = REFERENCE_PRESENT
  ? [
      ...storwareExamples(),
      ...[
        'consumer_administration_apis.adoc',
        'regions.adoc',
        'zones.adoc',
        'jobs.adoc',
        'users.adoc',
        'tenants.adoc',
        'subtenants.adoc',
      ].flatMap(nseExamples),
    ]
  : [];

/** What the app serves for each documented endpoint. */
type Request = (ctx: TestContext, data: Fixtures) => Promise<LightMyRequestResponse>;

interface Fixtures {
  token: string;
  cookie: string;
  apiToken: string;
  jobId: string;
  tenantId: string;
  subtenantId: string;
  userId: string;
}

const nseGet = (url: string) => (ctx: TestContext, data: Fixtures) =>
  ctx.inject({ method: 'GET', url, headers: bearer(data.token) });
const nseWrite =
  (method: 'POST' | 'PUT', url: string, payload: Record<string, unknown>) =>
  (ctx: TestContext, data: Fixtures) =>
    ctx.inject({ method, url, payload, headers: bearer(data.token) });
const withCookie = (method: 'GET' | 'POST', url: string) => (ctx: TestContext, data: Fixtures) =>
  ctx.inject({ method, url, cookies: { gatehouse_session: data.cookie } });

const REQUESTS: Record<string, Request> = {
  // Storware: the reference's /session/... is served under /api/session/...
  'POST /session/login': (ctx) =>
    ctx.inject({
      method: 'POST',
      url: '/api/session/login',
      payload: { login: 'admin', password: ADMIN_PASSWORD },
    }),
  'POST /session/login-with-token': (ctx, data) =>
    ctx.inject({ method: 'POST', url: '/api/session/login-with-token', payload: { token: data.apiToken } }),
  'POST /session/refresh-endpoints-tokens': withCookie('POST', '/api/session/refresh-endpoints-tokens'),
  'GET /session/user': withCookie('GET', '/api/session/user'),
  'POST /session/node/login': (ctx) =>
    ctx.inject({
      method: 'POST',
      url: '/api/session/node/login',
      payload: { login: 'node-01', password: 'backup-agent-pass-1', version: '5.1.0' },
    }),
  'GET /session/user/details': withCookie('GET', '/api/session/user/details'),

  // NSE: the reference's /v2.1/... is served under /api/v2.1/...
  'POST /v2.1/auth/password': (ctx) =>
    ctx.inject({
      method: 'POST',
      url: '/api/v2.1/auth/password',
      payload: {
        username: 'resetme',
        old_password: 'old-secret-words-1',
        new_password: 'new-secret-words-2',
      },
    }),
  'POST /v2.1/auth/refresh': (ctx, data) =>
    ctx.inject({ method: 'POST', url: '/api/v2.1/auth/refresh', headers: bearer(data.token) }),
  'POST /v2.1/auth/signin': (ctx) =>
    ctx.inject({
      method: 'POST',
      url: '/api/v2.1/auth/signin',
      payload: { username: 'admin', password: ADMIN_PASSWORD },
    }),
  // Reference inconsistency: regions.adoc documents GET /v2.1/regions[/{name}], while
  // consumer_administration_apis.adoc (which regions.adoc and zones.adoc defer to for retrieval)
  // documents GET /v2.1/auth/regions[/{name}] and /v2.1/auth/zones[/{name}]. Gatehouse serves
  // both with the same records; the examples are checked at the paths they are written under.
  'GET /v2.1/regions': nseGet('/api/v2.1/regions'),
  'GET /v2.1/regions/{name}': nseGet('/api/v2.1/regions/au-east1'),
  'GET /v2.1/zones': nseGet('/api/v2.1/zones'),
  'GET /v2.1/zones/{name}': nseGet('/api/v2.1/zones/au-east1-a'),
  'POST /v2.1/regions': nseWrite('POST', '/api/v2.1/regions', {
    name: 'ref-region',
    description: 'Reference',
  }),
  'PUT /v2.1/regions/{name}': nseWrite('PUT', '/api/v2.1/regions/au-east1', { description: 'Sydney' }),
  'POST /v2.1/zones': nseWrite('POST', '/api/v2.1/zones', {
    name: 'ref-zone',
    description: 'Reference',
    region_name: 'ref-region',
  }),
  // sic: the reference writes the path without a slash before {name}.
  'PUT /v2.1/zones{name}': nseWrite('PUT', '/api/v2.1/zones/au-east1-a', { description: 'Sydney A' }),
  'GET /v2.1/jobs': nseGet('/api/v2.1/jobs'),
  'GET /v2.1/jobs/{id}': (ctx, data) => nseGet(`/api/v2.1/jobs/${data.jobId}`)(ctx, data),
  // users.adoc writes "Retrieve all users", "a user by ID" and "by user name" all as GET /v2.1/users.
  'GET /v2.1/users': (ctx, data) => nseGet(`/api/v2.1/users?id=${data.userId}`)(ctx, data),
  'POST /v2.1/users': (ctx, data) =>
    nseWrite('POST', '/api/v2.1/users', {
      username: 'ref-user',
      password: 'reference-example-pw-1',
      firstName: 'My',
      lastName: 'User',
      displayName: 'CallMeMyUser',
      email: 'user@example.com',
      tenant_id: data.tenantId,
      tenancies: [{ tenant_id: data.tenantId, role_name: 'admin' }],
    })(ctx, data),
  'PUT /v2.1/users/{id}': (ctx, data) =>
    nseWrite('PUT', `/api/v2.1/users/${data.userId}`, { firstName: 'MyFirstName' })(ctx, data),
  'GET /v2.1/tenants': nseGet('/api/v2.1/tenants'),
  'GET /v2.1/tenants/{id}': (ctx, data) => nseGet(`/api/v2.1/tenants/${data.tenantId}`)(ctx, data),
  'POST /v2.1/tenants': nseWrite('POST', '/api/v2.1/tenants', {
    code: 'reftenant',
    name: 'Reference',
    zuora_account_name: '',
    zuora_account_number: '',
  }),
  'PUT /v2.1/tenants/{id}': (ctx, data) =>
    nseWrite('PUT', `/api/v2.1/tenants/${data.tenantId}`, { description: 'Changed' })(ctx, data),
  'GET /v2.1/subtenants': nseGet('/api/v2.1/subtenants'),
  'GET /v2.1/subtenants/{id}': (ctx, data) => nseGet(`/api/v2.1/subtenants/${data.subtenantId}`)(ctx, data),
  'POST /v2.1/subtenants': (ctx, data) =>
    nseWrite('POST', '/api/v2.1/subtenants', { tenant_id: data.tenantId, code: 'refsub', name: 'Ref' })(
      ctx,
      data,
    ),
  'PUT /v2.1/subtenants/{id}': (ctx, data) =>
    nseWrite('PUT', `/api/v2.1/subtenants/${data.subtenantId}`, { name: 'Renamed' })(ctx, data),
};

test('the reference examples are found where expected, and each is either checked or knowingly left out', {
  skip: !REFERENCE_PRESENT && `the API reference is not at ${fileURLToPath(REFERENCE)}`,
}, () => {
  assert.ok(
    existsSync(fileURLToPath(new URL('storware/session-api.txt', REFERENCE))),
    `${REFERENCE.pathname} holds the reference`,
  );
  const endpoints = EXAMPLES.map((e) => e.endpoint);
  // The six SessionInfoResponse / AppUserDetails bodies of session-api.txt.
  assert.equal(EXAMPLES.filter((e) => e.source.startsWith('session-api.txt')).length, 6);
  for (const endpoint of Object.keys(REQUESTS)) {
    assert.ok(endpoints.includes(endpoint), `an example for ${endpoint} was parsed`);
  }
  for (const endpoint of endpoints) {
    assert.ok(
      endpoint in REQUESTS || NOT_SERVED.has(endpoint),
      `${endpoint} is checked or listed as not served`,
    );
  }
});

forEachDialect('Reference response examples', (dialect) => {
  let ctx: TestContext;
  const data = {} as Fixtures;

  before(async () => {
    ctx = await createTestContext(dialect);
    const system = await ctx.store.tenants.findByCode('system');
    assert.ok(system);
    await ctx.core.catalog.createRegion({ name: 'au-east1', description: 'Sydney' });
    await ctx.core.catalog.createZone({
      name: 'au-east1-a',
      regionName: 'au-east1',
      description: 'Sydney A',
    });
    data.jobId = (
      await ctx.core.jobs.create({
        action: 'create',
        summary: 'x',
        status: 'successful',
        tenantId: system.id,
      })
    ).id;
    data.tenantId = (await ctx.core.tenants.create({ code: 'acme', name: 'Acme Corp' })).id;
    data.userId = (
      await ctx.core.accounts.createUser({
        username: 'resetme',
        password: 'old-secret-words-1',
        tenantCode: 'acme',
        role: 'user',
      })
    ).id;
    await ctx.core.accounts.createNode({ login: 'node-01', password: 'backup-agent-pass-1' });

    // Login history, so that the examples' numbers (lastSuccessfulLogin, lastFailedLogin) are
    // numbers in our answers too rather than null: one failure, then one success, for admin and node.
    const fail = (url: string, payload: Record<string, string>) =>
      ctx.inject({ method: 'POST', url, payload }).then((r) => assert.equal(r.statusCode, 400));
    await fail('/api/session/login', { login: 'admin', password: 'not-the-password' });
    await fail('/api/session/node/login', {
      login: 'node-01',
      password: 'not-the-password',
      version: '5.1.0',
    });
    ctx.clock.advance(1000);
    await storwareLogin(ctx);
    const node = await REQUESTS['POST /session/node/login']!(ctx, data);
    assert.equal(node.statusCode, 201);
    ctx.clock.advance(1000);

    data.cookie = await storwareLogin(ctx);
    data.token = await nseSignIn(ctx);
    const subtenant = await ctx.inject({
      method: 'POST',
      url: '/api/v2.1/subtenants',
      headers: bearer(data.token),
      payload: { tenant_id: data.tenantId, code: 'east', name: 'East' },
    });
    assert.equal(subtenant.statusCode, 201, subtenant.body);
    data.subtenantId = json(subtenant).result.records[0].id;
    data.apiToken = (await ctx.core.accounts.createApiToken({ username: 'admin' })).token;
  });
  after(() => ctx.close());

  for (const example of EXAMPLES) {
    const request = REQUESTS[example.endpoint];
    if (!request) continue;
    test(`${example.source} (${example.endpoint})`, async () => {
      const response = await request(ctx, data);
      assert.ok(
        response.statusCode >= 200 && response.statusCode < 300,
        `${response.statusCode} ${response.body}`,
      );
      const problems: string[] = [];
      compareShape(example.body, json(response), '', SKIPPED_FIELDS[example.endpoint] ?? [], problems);
      assert.deepEqual(problems, [], `our answer: ${response.body}`);
    });
  }
});
