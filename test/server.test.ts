import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import https from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { forEachDialect } from './helpers/dialects.js';
import { createFreshDatabase } from './helpers/postgres.js';
import { freePort, generatedPassword, startServerProcess, waitFor } from './helpers/server-process.js';

forEachDialect('npm start: a real server', (dialect) => {
  let cwd: string;
  let database: Awaited<ReturnType<typeof createFreshDatabase>> | undefined;
  before(async () => {
    cwd = mkdtempSync(path.join(tmpdir(), 'gatehouse-start-'));
    database = dialect === 'postgres' ? await createFreshDatabase() : undefined;
  });
  after(async () => {
    await database?.drop();
    rmSync(cwd, { recursive: true, force: true });
  });

  test('first start creates the admin with a generated password, left in a file of the data dir; both surfaces answer over HTTP; SIGTERM closes cleanly', async () => {
    const port = await freePort();
    const server = startServerProcess(
      {
        GATEHOUSE_PORT: String(port),
        GATEHOUSE_ARGON2_MEMORY_KIB: '1024',
        GATEHOUSE_ARGON2_ITERATIONS: '1',
        ...(database ? { GATEHOUSE_DATABASE_URL: database.url } : {}),
      },
      cwd,
    );
    try {
      // Not on a terminal (the output is a pipe, as under systemd or in a container): the password
      // is in a file of the data dir that only its owner reads, never in the output.
      const password = await waitFor(() => generatedPassword(server.output()), 'the admin password');
      const file = path.join(cwd, 'data', 'initial-admin-password');
      assert.equal(statSync(file).mode & 0o777, 0o600);
      assert.ok(!server.output().includes(password), 'the password is not in the output');
      const base = `http://127.0.0.1:${port}`;
      await waitFor(
        async () => ((await fetch(`${base}/readyz`).catch(() => undefined))?.ok ? true : undefined),
        'readiness',
      );

      const signin = await fetch(`${base}/api/v2.1/auth/signin`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ username: 'admin', password }),
      });
      assert.equal(signin.status, 200);
      const login = await fetch(`${base}/api/session/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ login: 'admin', password }),
      });
      assert.equal(login.status, 201);
      const cookie = login.headers.get('set-cookie') ?? '';
      assert.match(cookie, /^gatehouse_session=gss_[\w-]+; Path=\/api; HttpOnly; SameSite=Strict$/);
      const user = await fetch(`${base}/api/session/user`, { headers: { cookie: cookie.split(';')[0]! } });
      assert.equal(user.status, 200);
      assert.equal(((await user.json()) as { requester: { name: string } }).requester.name, 'admin');
      assert.ok(
        !server.output().includes(cookie.split(';')[0]!.split('=')[1]!),
        'the session secret is not logged',
      );
      if (dialect === 'sqlite') assert.ok(server.output().length > 0);
    } finally {
      server.child.kill('SIGTERM');
    }
    assert.equal(await server.exited, 0);
    assert.match(server.output(), /shutting down/);

    // A second start finds the admin and prints no password.
    const again = startServerProcess(
      { GATEHOUSE_PORT: String(port), ...(database ? { GATEHOUSE_DATABASE_URL: database.url } : {}) },
      cwd,
    );
    try {
      await waitFor(() => (/Server listening/.test(again.output()) ? true : undefined), 'the second start');
      assert.doesNotMatch(again.output(), /generated password/);
    } finally {
      again.child.kill('SIGTERM');
    }
    assert.equal(await again.exited, 0);
  });

  test('a SIGTERM during start-up closes the server once it has started: exit 0, not killed', async () => {
    const fresh = mkdtempSync(path.join(tmpdir(), 'gatehouse-early-signal-'));
    const early = database ? await createFreshDatabase() : undefined;
    try {
      const server = startServerProcess(
        {
          GATEHOUSE_PORT: String(await freePort()),
          GATEHOUSE_ARGON2_MEMORY_KIB: '1024',
          GATEHOUSE_ARGON2_ITERATIONS: '1',
          ...(early ? { GATEHOUSE_DATABASE_URL: early.url } : {}),
        },
        fresh,
      );
      // The admin's password is printed while the server starts, before it listens.
      const signalled = new Promise<void>((resolve) => {
        const watch = () => {
          if (!/generated password/.test(server.output())) return;
          server.child.stdout?.off('data', watch);
          server.child.kill('SIGTERM');
          resolve();
        };
        server.child.stdout?.on('data', watch);
      });
      await signalled;
      // Before: the signal came before the handlers, and ended the process at once (no code).
      assert.equal(await server.exited, 0, server.output());
      assert.match(server.output(), /shutting down/);
    } finally {
      await early?.drop();
      rmSync(fresh, { recursive: true, force: true });
    }
  });

  test('with GATEHOUSE_TLS_CERT and GATEHOUSE_TLS_KEY it serves HTTPS and the session cookie is Secure', async () => {
    execFileSync(
      'openssl',
      [
        ...'req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1'.split(' '),
        ...['-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'],
        ...['-keyout', path.join(cwd, 'key.pem'), '-out', path.join(cwd, 'cert.pem')],
      ],
      { stdio: 'ignore' },
    );
    const port = await freePort();
    const tlsDatabase = dialect === 'postgres' ? await createFreshDatabase() : undefined;
    const server = startServerProcess(
      {
        GATEHOUSE_PORT: String(port),
        GATEHOUSE_TLS_CERT: 'cert.pem',
        GATEHOUSE_TLS_KEY: 'key.pem',
        GATEHOUSE_ADMIN_PASSWORD: 'Correct-horse-battery-9',
        GATEHOUSE_ARGON2_MEMORY_KIB: '1024',
        GATEHOUSE_ARGON2_ITERATIONS: '1',
        // An empty store of its own, so that the admin password above is the one that applies.
        GATEHOUSE_DATA_DIR: 'tls-data',
        ...(tlsDatabase ? { GATEHOUSE_DATABASE_URL: tlsDatabase.url } : {}),
      },
      cwd,
    );
    const request = (method: string, url: string, body?: string) =>
      new Promise<{ status: number; cookie: string }>((resolve, reject) => {
        const req = https.request(
          `https://127.0.0.1:${port}${url}`,
          {
            method,
            headers: { 'content-type': 'application/json' },
            ca: readFileSync(path.join(cwd, 'cert.pem')),
          },
          (res) => {
            res.resume();
            res.on('end', () =>
              resolve({ status: res.statusCode ?? 0, cookie: String(res.headers['set-cookie'] ?? '') }),
            );
          },
        );
        req.on('error', reject);
        req.end(body);
      });
    try {
      await waitFor(
        async () =>
          (await request('GET', '/readyz').catch(() => undefined))?.status === 200 ? true : undefined,
        'HTTPS readiness',
      );
      const login = await request(
        'POST',
        '/api/session/login',
        JSON.stringify({ login: 'admin', password: 'Correct-horse-battery-9' }),
      );
      assert.equal(login.status, 201);
      assert.match(login.cookie, /; Secure/);
    } finally {
      server.child.kill('SIGTERM');
    }
    assert.equal(await server.exited, 0);
    await tlsDatabase?.drop();
  });

  test('a bad setting stops start-up with one message naming every problem', async () => {
    const server = startServerProcess(
      { GATEHOUSE_PORT: 'eighty', GATEHOUSE_LOCKOUT_DURATION: 'a while' },
      cwd,
    );
    assert.equal(await server.exited, 2);
    assert.match(server.output(), /GATEHOUSE_PORT/);
    assert.match(server.output(), /GATEHOUSE_LOCKOUT_DURATION/);
  });
});
