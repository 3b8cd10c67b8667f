import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { ADMIN_PASSWORD, createTestContext, type TestContext } from '../helpers/context.js';
import { forEachDialect } from '../helpers/dialects.js';
import { basic, bearer, json, nseSignIn, storwareLogin } from '../helpers/http.js';
import { CaseGenerator, type FuzzCase, type Operation, operationsOf, type Pools } from './generate.js';
import { Oracle, routesTo, surfaceOf } from './oracle.js';
import { Random } from './random.js';
import { differences, type Snapshot, snapshotStore } from './store-snapshot.js';

/**
 * Fuzzes every operation of the app's own /openapi.json with generated hostile requests, each
 * sent without credentials and as root. `npm test` runs a fixed, seeded number of cases;
 * `npm run fuzz -- --cases 5000 [--seed s]` runs more (scripts/fuzz.mjs sets these variables).
 */
const CASES_PER_OPERATION = 8;
const TOTAL_CASES = Number(process.env.GATEHOUSE_FUZZ_CASES) || undefined;
const SEED = process.env.GATEHOUSE_FUZZ_SEED || 'gatehouse-fuzz-1';
/** Refused requests between two comparisons of the store. */
const CHECK_EVERY = 50;
const REQUEST_TIMEOUT_MS = 15_000;
const MAX_REPORTED = 25;
const UNSAFE = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

const clip = (text: string, length: number) =>
  text.length > length ? `${text.slice(0, length)}…(${text.length})` : text;
const printable = (payload: string | Buffer | undefined) =>
  payload === undefined
    ? '-'
    : Buffer.isBuffer(payload)
      ? `<bytes ${payload.toString('hex').slice(0, 40)}>`
      : clip(payload, 300);

type Credential = 'bearer' | 'basic' | 'cookie';

forEachDialect('OpenAPI fuzz', (dialect) => {
  let ctx: TestContext;
  let operations: Operation[];
  let pools: Pools;
  const root = { jwt: '', cookie: '' };
  const victim = { username: 'fuzzvictim', password: 'Crimson-ladder-sways-4812' };

  const createdId = async (url: string, payload: Record<string, unknown>): Promise<string> => {
    const response = await ctx.inject({ method: 'POST', url, payload, headers: bearer(root.jwt) });
    assert.equal(response.statusCode, 201, `fixture ${url}: ${response.body}`);
    return String(json(response).result.records[0].id);
  };
  const signInRoot = async () => {
    root.jwt = await nseSignIn(ctx);
    root.cookie = await storwareLogin(ctx);
  };

  before(async () => {
    ctx = await createTestContext(dialect);
    await signInRoot();
    const document = await ctx.inject({ method: 'GET', url: '/openapi.json' });
    assert.equal(document.statusCode, 200);
    operations = operationsOf(json(document));
    assert.ok(operations.length > 30, `the document lists the operations (${operations.length})`);

    // Real records, so that generated ids and names reach handlers past their 404s.
    const tenantId = await createdId('/api/v2.1/tenants', {
      code: 'fuzzco',
      name: 'Fuzz Co',
      zuora_account_name: '',
      zuora_account_number: '',
    });
    const systemTenantId = (await ctx.store.tenants.findByCode('system'))?.id ?? tenantId;
    const userId = await createdId('/api/v2.1/users', {
      username: victim.username,
      password: victim.password,
      tenancies: [{ tenant_id: tenantId, role_name: 'admin' }],
    });
    const subtenantId = await createdId('/api/v2.1/subtenants', {
      name: 'Fuzz sub',
      code: 'fuzzsub',
      tenant_id: tenantId,
    });
    await createdId('/api/v2.1/regions', { name: 'fuzz-region', description: 'fuzz' });
    await createdId('/api/v2.1/zones', {
      name: 'fuzz-zone',
      description: 'fuzz',
      region_name: 'fuzz-region',
    });
    const nodeId = await createdId('/api/v2.1/nodes', {
      login: 'fuzz-node',
      password: 'Quiet-orchard-lantern-5527',
    });
    const tokenId = await createdId('/api/v2.1/tokens', { name: 'fuzz', user_id: userId });
    const roleId = await createdId('/api/v2.1/roles', { name: 'Fuzz role', privileges: [] });
    const groupId = await createdId('/api/v2.1/groups', { name: 'Fuzz group', roles: [roleId] });
    const goneId = await createdId('/api/v2.1/tenants', {
      code: 'fuzzgone',
      name: 'Deleted by a job',
      zuora_account_name: '',
      zuora_account_number: '',
    });
    const deletion = await ctx.inject({
      method: 'DELETE',
      url: `/api/v2.1/tenants/${goneId}`,
      headers: bearer(root.jwt),
    });
    assert.equal(deletion.statusCode, 202, deletion.body);
    const jobId = String(json(deletion).result.records[0].id);
    await settleJobs();
    const victimJwt = await nseSignIn(ctx, victim.username, victim.password);
    const sessionId = String(
      JSON.parse(Buffer.from(victimJwt.split('.')[1] ?? '', 'base64url').toString()).sid,
    );
    const ids = [
      tenantId,
      systemTenantId,
      userId,
      subtenantId,
      nodeId,
      tokenId,
      roleId,
      groupId,
      sessionId,
      jobId,
    ];
    pools = {
      byField: {
        tenant_id: [tenantId, systemTenantId],
        user_id: [userId],
        userId: [userId],
        region_name: ['fuzz-region'],
        region: ['fuzz-region'],
        roles: [roleId],
        members: [userId],
        name: ['fuzz-region', 'fuzz-zone'],
        id: ids,
        tenants: [tenantId, systemTenantId],
        users: [userId, victim.username],
        subtenants: [subtenantId],
        nodes: [nodeId],
        tokens: [tokenId],
        groups: [groupId],
        sessions: [sessionId],
        jobs: [jobId],
        regions: ['fuzz-region'],
        zones: ['fuzz-zone'],
      },
      all: [...ids, 'fuzz-region', 'fuzz-zone', victim.username],
    };
  });
  after(() => ctx.close());

  /** Background jobs (tenant deletion, imports) write after their 202: wait for them. */
  const settleJobs = async () => {
    const deadline = Date.now() + 20_000;
    for (;;) {
      const running = await ctx.store.db
        .selectFrom('jobs')
        .select((eb) => eb.fn.countAll<string | number>().as('n'))
        .where('status', '=', 'running')
        .executeTakeFirstOrThrow();
      if (Number(running.n) === 0) return;
      assert.ok(Date.now() < deadline, 'background jobs finish');
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  };

  const send = async (
    fuzzCase: FuzzCase,
    headers: Record<string, string>,
  ): Promise<LightMyRequestResponse | string> => {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<string>((resolve) => {
      timer = setTimeout(() => resolve(`no answer within ${REQUEST_TIMEOUT_MS} ms`), REQUEST_TIMEOUT_MS);
    });
    try {
      return await Promise.race([
        ctx.inject({
          method: fuzzCase.method as 'GET',
          url: fuzzCase.url,
          headers,
          ...(fuzzCase.payload !== undefined ? { payload: fuzzCase.payload } : {}),
          remoteAddress: fuzzCase.remoteAddress,
        }),
        timeout,
      ]);
    } catch (error) {
      return `the request failed: ${(error as Error).message}`;
    } finally {
      clearTimeout(timer);
    }
  };

  test('hostile requests to every operation, anonymous and as root: no 5xx, the right envelope, no trace or secret, no write by a refusal', async (t) => {
    const random = new Random(`${SEED}/${dialect}`);
    const generator = new CaseGenerator(random, pools, SEED);
    const oracle = new Oracle();
    const total = TOTAL_CASES ?? operations.length * CASES_PER_OPERATION;
    const failures: string[] = [];
    let failureCount = 0;
    const statuses = new Map<string, number>();
    const reached = new Set<string>();
    let rootAnswers = 0;
    let rootHandled = 0;
    let staleRoot = false;

    let baseline: Snapshot = await snapshotStore(ctx.store);
    let batch: string[] = [];
    const fail = (text: string) => {
      failureCount++;
      if (failures.length < MAX_REPORTED) failures.push(text);
    };
    const compareStore = async () => {
      if (batch.length === 0) return;
      const now = await snapshotStore(ctx.store);
      const changed = differences(baseline, now);
      if (changed.length > 0) {
        fail(
          `a refused request wrote to the store: ${changed.join('; ')}\n    among these refused or read-only requests:\n      ${batch.slice(-CHECK_EVERY).join('\n      ')}`,
        );
      }
      baseline = now;
      batch = [];
    };

    for (let index = 0; index < total; index++) {
      const operation = operations[index % operations.length] as Operation;
      const fuzzCase = generator.generate(operation, index);
      for (const variant of ['anonymous', 'root'] as const) {
        const headers = { ...fuzzCase.headers };
        const secrets = [...fuzzCase.secrets, ADMIN_PASSWORD, victim.password, root.jwt, root.cookie];
        let credential: Credential | undefined;
        if (variant === 'root') {
          if (staleRoot) {
            // The refused requests so far are checked before signing in again writes a session.
            await compareStore();
            await signInRoot();
            staleRoot = false;
            baseline = await snapshotStore(ctx.store);
            batch = [];
            secrets.push(root.jwt, root.cookie);
          }
          const surface = surfaceOf(operation.path, 200);
          credential = random.pick<Credential>(
            surface === 'storware' ? ['bearer', 'cookie', 'cookie'] : ['bearer', 'bearer', 'basic'],
          );
          if (credential === 'bearer') Object.assign(headers, bearer(root.jwt));
          if (credential === 'basic') Object.assign(headers, basic('admin', ADMIN_PASSWORD));
          if (credential === 'cookie') {
            headers.cookie = `gatehouse_session=${root.cookie}`;
            delete headers.authorization;
          }
        }
        const response = await send(fuzzCase, headers);
        const described = `${fuzzCase.id} [${variant}${credential ? `/${credential}` : ''}] ${fuzzCase.mutation}: ${fuzzCase.method} ${clip(fuzzCase.url, 200)} headers=${clip(JSON.stringify(fuzzCase.headers), 200)} body=${printable(fuzzCase.payload)}`;
        if (typeof response === 'string') {
          fail(`${described}\n    → ${response}`);
          continue;
        }
        const status = response.statusCode;
        statuses.set(`${status}`, (statuses.get(`${status}`) ?? 0) + 1);
        const problems: string[] = oracle.check(
          {
            method: fuzzCase.method,
            url: fuzzCase.url,
            operation: routesTo(fuzzCase.url, operation) ? operation : undefined,
            secrets,
          },
          response,
        );
        // GET and HEAD bodies are never read; any other body over the limit must be refused.
        if (
          fuzzCase.mutation === 'huge-body' &&
          UNSAFE.has(fuzzCase.method) &&
          status < 400 &&
          !operation.path.endsWith('/users/import')
        ) {
          problems.push(`a 1 MiB body was accepted (${status}); the limit is GATEHOUSE_BODY_LIMIT`);
        }
        if (Object.hasOwn(Object.prototype, 'isAdmin') || Object.hasOwn(Object.prototype, 'role')) {
          problems.push('Object.prototype was polluted');
        }
        if (problems.length > 0) {
          fail(
            `${described}\n    → ${status} ${clip(response.body, 300)}\n    problems: ${problems.join('; ')}`,
          );
        }
        if (variant === 'root') {
          rootAnswers++;
          if (status !== 401 && status !== 403 && status !== 404 && status !== 405) {
            rootHandled++;
            reached.add(`${operation.method} ${operation.path}`);
          }
          if (status === 401 && credential !== 'basic') staleRoot = true;
        }
        if (UNSAFE.has(fuzzCase.method) && status < 400) {
          // An accepted change: its writes are the point. Start a new baseline after it.
          await settleJobs();
          baseline = await snapshotStore(ctx.store);
          batch = [];
        } else {
          batch.push(`${described} → ${status}`);
          if (batch.length >= CHECK_EVERY) await compareStore();
        }
      }
    }
    await settleJobs();
    await compareStore();

    const summary = [...statuses.entries()]
      .sort()
      .map(([s, n]) => `${s}×${n}`)
      .join(' ');
    t.diagnostic(`seed ${SEED}, ${total} cases × 2 over ${operations.length} operations: ${summary}`);
    t.diagnostic(`root requests past authentication and routing: ${rootHandled}/${rootAnswers}`);
    assert.equal(
      failures.length,
      0,
      `${failureCount} problem(s) (the first ${failures.length}; replay with GATEHOUSE_FUZZ_SEED=${SEED}):\n\n${failures.join('\n\n')}`,
    );
    // The fuzzer must get past the front door, or it tests nothing but the 401 path.
    assert.ok(
      rootHandled > rootAnswers * 0.3,
      `root requests past authentication: ${rootHandled}/${rootAnswers}`,
    );
    const unreached = operations.map((o) => `${o.method} ${o.path}`).filter((name) => !reached.has(name));
    assert.ok(
      unreached.length <= operations.length * 0.1,
      `operations no root request got past authentication and routing: ${unreached.join(', ')}`,
    );
  });
});
