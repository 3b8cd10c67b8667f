import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { forEachDialect } from '../helpers/dialects.js';
import { createFreshDatabase } from '../helpers/postgres.js';
import { freePort, type ServerProcess, startServerProcess, waitFor } from '../helpers/server-process.js';

const ADMIN_PASSWORD = 'Kill-switch-phrase-31';
const ROWS = 3000;

/**
 * The import is cut short by SIGKILL (no drain, no goodbye), and a new process over the same
 * store must end the job as failed with the interrupted reason, leave no half-created user and no
 * spool file, and a re-run of the same request must complete the import.
 */
forEachDialect('users import killed mid-way', (dialect) => {
  let cwd: string;
  let database: Awaited<ReturnType<typeof createFreshDatabase>> | undefined;
  let env: Record<string, string>;
  let base: string;
  let server: ServerProcess | undefined;

  const start = async () => {
    const started = startServerProcess(env, cwd);
    server = started;
    await waitFor(
      async () => ((await fetch(`${base}/readyz`).catch(() => undefined))?.ok ? true : undefined),
      'readiness',
    ).catch((error: Error) => {
      throw new Error(`${error.message}; the server said:\n${started.output()}`);
    });
  };
  const call = async (token: string, method: string, url: string, body?: string, type?: string) => {
    const response = await fetch(`${base}${url}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(type ? { 'content-type': type } : {}) },
      body,
    });
    return { status: response.status, body: (await response.json()) as Record<string, any> };
  };
  const signIn = async () => {
    const response = await fetch(`${base}/api/v2.1/auth/signin`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: 'admin', password: ADMIN_PASSWORD }),
    });
    assert.equal(response.status, 200);
    return ((await response.json()) as { result: { records: [{ token: string }] } }).result.records[0].token;
  };

  before(async () => {
    cwd = mkdtempSync(path.join(tmpdir(), 'gatehouse-kill-'));
    database = dialect === 'postgres' ? await createFreshDatabase() : undefined;
    base = `http://127.0.0.1:${await freePort()}`;
    env = {
      GATEHOUSE_PORT: new URL(base).port,
      GATEHOUSE_ADMIN_PASSWORD: ADMIN_PASSWORD,
      GATEHOUSE_ARGON2_MEMORY_KIB: '1024',
      GATEHOUSE_ARGON2_ITERATIONS: '1',
      GATEHOUSE_JOB_LEASE: '3s',
      GATEHOUSE_LOG_LEVEL: 'warn',
      ...(database ? { GATEHOUSE_DATABASE_URL: database.url } : {}),
    };
  });
  after(async () => {
    server?.child.kill('SIGKILL');
    await server?.exited;
    await database?.drop();
    rmSync(cwd, { recursive: true, force: true });
  });

  test('SIGKILL during an import: the job ends failed (interrupted) after a restart, no half user, no spool; a re-run completes it', async () => {
    await start();
    let token = await signIn();
    const tenant = await call(
      token,
      'POST',
      '/api/v2.1/tenants',
      JSON.stringify({ code: 'acme', name: 'Acme', zuora_account_name: '', zuora_account_number: '' }),
      'application/json',
    );
    assert.equal(tenant.status, 201, JSON.stringify(tenant.body));
    const acme = tenant.body.result.records[0].id as string;
    const lines = ['username,password,tenant_code,role'];
    for (let i = 1; i <= ROWS; i += 1) lines.push(`killed${i},Strong-pass-phrase-${i},acme,user`);
    const csv = `${lines.join('\n')}\n`;

    const accepted = await call(token, 'POST', '/api/v2.1/users/import', csv, 'text/csv');
    assert.equal(accepted.status, 202, JSON.stringify(accepted.body));
    const jobId = accepted.body.result.records[0].id as string;
    const job = async () => (await call(token, 'GET', `/api/v2.1/jobs/${jobId}`)).body.result.records[0];
    const midway = await waitFor(
      async () => {
        const seen = await job();
        return seen.status === 'running' && !seen.status_detail.startsWith('0 of') ? seen : undefined;
      },
      'the first progress report',
      60_000,
    );
    server?.child.kill('SIGKILL');
    await server?.exited;
    assert.match(midway.status_detail, /^[\d,]+ of 3,000 users imported$/);
    assert.deepEqual(
      readdirSync(path.join(cwd, 'data/imports')),
      [`${jobId}.csv`],
      'the crash left the spool',
    );

    await start();
    token = await signIn();
    // Within a lease and a third, the new process finds the job of the dead one.
    const ended = await waitFor(
      async () => {
        const seen = await job();
        return seen.status === 'running' ? undefined : seen;
      },
      'the interrupted job to end',
      15_000,
    );
    assert.equal(ended.status, 'failed');
    assert.match(ended.last_error, /^interrupted: .*run the request again$/);
    assert.match(ended.status_detail, /^[\d,]+ of 3,000 users imported$/);
    // The sweep follows the recovery that marked the job failed: it may land a moment later.
    await waitFor(
      () => (readdirSync(path.join(cwd, 'data/imports')).length === 0 ? true : undefined),
      'the spool of the dead job to be removed',
      5000,
    );

    // Every user created has its tenancy: a row is all or nothing.
    const everyone = (await call(token, 'GET', '/api/v2.1/users?limit=1')).body.result
      .total_records as number;
    const inAcme = (await call(token, 'GET', `/api/v2.1/users?limit=1&tenant_id=${acme}`)).body.result
      .total_records as number;
    assert.equal(inAcme, everyone - 1, 'every imported user is in acme (admin is not)');
    assert.ok(inAcme > 0 && inAcme < ROWS, `part of the file was imported (${inAcme})`);

    // The same request again: the rows already there fail as existing, the rest are imported.
    const again = await call(token, 'POST', '/api/v2.1/users/import', csv, 'text/csv');
    assert.equal(again.status, 202);
    const rerunId = again.body.result.records[0].id as string;
    const rerun = await waitFor(
      async () => {
        const seen = (await call(token, 'GET', `/api/v2.1/jobs/${rerunId}`)).body.result.records[0];
        return seen.status === 'running' ? undefined : seen;
      },
      'the re-run',
      120_000,
    );
    assert.equal(rerun.status, 'partially_failed');
    assert.equal(
      rerun.status_detail,
      `${(ROWS - inAcme).toLocaleString('en-US')} of 3,000 users imported; ${inAcme.toLocaleString('en-US')} rows failed`,
    );
    const total = (await call(token, 'GET', `/api/v2.1/users?limit=1&tenant_id=${acme}`)).body.result
      .total_records;
    assert.equal(total, ROWS);
  });
});
