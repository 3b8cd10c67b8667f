import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import { type Core, createCore } from '../src/core/index.js';
import { connectStore, type Store } from '../src/store/connect.js';
import { ADMIN_PASSWORD, ManualClock } from './helpers/context.js';
import { forEachDialect } from './helpers/dialects.js';
import { bearer, json } from './helpers/http.js';
import { createFreshDatabase } from './helpers/postgres.js';
import { waitFor } from './helpers/server-process.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const DAY_MS = 24 * 3_600_000;

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `gatehouse <args>` as a real process (through tsx) with exactly these settings. */
function gatehouse(args: readonly string[], settings: Record<string, string>): Promise<Run> {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.startsWith('GATEHOUSE_') && !key.startsWith('NODE_TEST')) env[key] = value;
  }
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/index.ts', ...args], {
    cwd: ROOT,
    env: {
      ...env,
      GATEHOUSE_ARGON2_MEMORY_KIB: '1024',
      GATEHOUSE_ARGON2_ITERATIONS: '1',
      GATEHOUSE_ADMIN_PASSWORD: ADMIN_PASSWORD,
      GATEHOUSE_LOG_LEVEL: 'silent',
      ...settings,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk;
  });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`gatehouse ${args.join(' ')} did not finish:\n${stderr}`));
    }, 30_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** `keys list` as records: one per key. */
function parseList(stdout: string) {
  const [header, ...lines] = stdout.trimEnd().split('\n');
  assert.match(header ?? '', /^KID\s+PURPOSE\s+ALG\s+CREATED\s+STATE$/);
  return lines.map((line) => {
    const [kid, purpose, algorithm, created, ...state] = line.split(/\s+/);
    return { kid, purpose, algorithm, created, state: state.join(' ') };
  });
}

forEachDialect('CLI keys', (dialect) => {
  let dataDir: string;
  let database: { url: string; drop: () => Promise<void> } | undefined;
  let settings: Record<string, string>;
  let store: Store;
  let core: Core;
  let app: FastifyInstance;
  const clock = new ManualClock();
  const run = async (args: readonly string[]) => {
    const result = await gatehouse(args, settings);
    return result;
  };
  const ok = async (args: readonly string[]) => {
    const result = await run(args);
    assert.equal(result.code, 0, `gatehouse ${args.join(' ')} exited ${result.code}: ${result.stderr}`);
    return result.stdout;
  };
  const signIn = async () => {
    const response = await app.inject({
      method: 'POST',
      url: '/api/v2.1/auth/signin',
      payload: { username: 'admin', password: ADMIN_PASSWORD },
    });
    assert.equal(response.statusCode, 200, response.body);
    return json(response).result.records[0].token as string;
  };
  const kidOf = (token: string) =>
    (JSON.parse(Buffer.from(token.split('.')[0] ?? '', 'base64url').toString()) as { kid: string }).kid;
  const jwksKids = async () =>
    (json(await app.inject({ method: 'GET', url: '/.well-known/jwks.json' })).keys as Array<{ kid: string }>)
      .map((k) => k.kid)
      .sort();

  before(async () => {
    dataDir = mkdtempSync(path.join(tmpdir(), 'gatehouse-cli-keys-'));
    database = dialect === 'postgres' ? await createFreshDatabase() : undefined;
    settings = { GATEHOUSE_DATA_DIR: dataDir, ...(database ? { GATEHOUSE_DATABASE_URL: database.url } : {}) };
    // The server the CLI works beside: same settings, same store, a clock the test moves.
    const config = loadConfig({
      ...settings,
      GATEHOUSE_ADMIN_PASSWORD: ADMIN_PASSWORD,
      GATEHOUSE_ARGON2_MEMORY_KIB: '1024',
      GATEHOUSE_ARGON2_ITERATIONS: '1',
      GATEHOUSE_LOG_LEVEL: 'silent',
    });
    store = connectStore({ databaseUrl: config.databaseUrl, dataDir: config.dataDir });
    await store.migrate();
    core = await createCore({ config, store, clock });
    await core.bootstrap();
    app = await buildApp({ core });
    await app.ready();
  });
  after(async () => {
    await app.close();
    await core.close();
    await store.destroy();
    await database?.drop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test('keys list shows every key with its purpose, algorithm and state, and never key material', async () => {
    const stdout = await ok(['keys', 'list']);
    const keys = parseList(stdout);
    assert.deepEqual(
      keys.map((k) => [k.kid, k.purpose, k.algorithm, k.state]).sort(),
      [
        [core.keyring.currentEndpointsKey.kid, 'endpoints', 'ES256', 'active'],
        [core.keyring.currentSessionKey.kid, 'session', 'HS256', 'active'],
      ].sort(),
    );
    for (const row of await store.signingKeys.listAll()) {
      const ciphertext = row.sealed_material.split('.').at(-1) ?? '';
      assert.ok(ciphertext.length > 20 && !stdout.includes(ciphertext), 'no sealed material');
    }
    assert.ok(!stdout.includes(core.keyring.currentSessionKey.secret.toString('base64url')), 'no secret');
    assert.doesNotMatch(stdout, /PRIVATE KEY|"d":/);
  });

  test('keys rotate --purpose session: the new key signs, the old one verifies through the overlap', async () => {
    const before = await signIn();
    const oldKid = kidOf(before);
    const endpointsKid = core.keyring.currentEndpointsKey.kid;
    const stdout = await ok(['keys', 'rotate', '--purpose', 'session']);
    const match = /^Rotated the session key: (\S+) signs now; (\S+) verifies until (\S+)\n$/.exec(stdout);
    assert.ok(match, stdout);
    const [, newKid, replaced, until] = match;
    assert.equal(replaced, oldKid);
    assert.notEqual(newKid, oldKid);
    // The default overlap, GATEHOUSE_KEY_OVERLAP: 24h from the rotation.
    assert.ok(Math.abs(Date.parse(until ?? '') - (Date.now() + DAY_MS)) < 60_000, until);

    // The token of the replaced key keeps working; the server signs with the new key within a minute.
    assert.equal(
      (await app.inject({ method: 'GET', url: '/api/v2.1/jobs', headers: bearer(before) })).statusCode,
      200,
    );
    clock.advance(61_000);
    const after = await signIn();
    assert.equal(kidOf(after), newKid);
    assert.equal(
      (await app.inject({ method: 'GET', url: '/api/v2.1/jobs', headers: bearer(before) })).statusCode,
      200,
    );

    const keys = parseList(await ok(['keys', 'list']));
    const state = (kid: string | undefined) => keys.find((k) => k.kid === kid)?.state;
    assert.equal(state(newKid), 'active');
    assert.equal(state(oldKid), `verifying until ${until}`);
    assert.equal(state(endpointsKid), 'active', 'the Endpoints key was left alone');

    const events = json(
      await app.inject({
        method: 'GET',
        url: '/api/v2.1/audit-events?action=key.rotate',
        headers: bearer(after),
      }),
    ).result.records as Array<Record<string, string>>;
    assert.equal(events.length, 1);
    assert.equal(events[0]?.actor_type, 'system');
    assert.equal(events[0]?.target_id, newKid);
    assert.match(events[0]?.reason ?? '', new RegExp(`replaces ${oldKid}`));
  });

  test('keys rotate --purpose endpoints --overlap 0 retires the old key at once: it leaves the JWKS', async () => {
    const oldKid = core.keyring.currentEndpointsKey.kid;
    assert.deepEqual(await jwksKids(), [oldKid]);
    const stdout = await ok(['keys', 'rotate', '--purpose', 'endpoints', '--overlap', '0']);
    const match = /^Rotated the endpoints key: (\S+) signs now; (\S+) is retired\n$/.exec(stdout);
    assert.ok(match, stdout);
    assert.equal(match[2], oldKid);
    // Past the server's reload interval (and well past the rotation on the real clock).
    clock.advance(5 * 60_000);
    assert.deepEqual(await jwksKids(), [match[1]]);
    const keys = parseList(await ok(['keys', 'list']));
    assert.match(keys.find((k) => k.kid === oldKid)?.state ?? '', /^retired \d{4}-/);
  });

  test('keys rotate without --purpose rotates both; bad arguments are usage errors', async () => {
    const stdout = await ok(['keys', 'rotate']);
    assert.match(
      stdout,
      /^Rotated the session key: \S+ signs now; .+\nRotated the endpoints key: \S+ signs now; .+\n$/,
    );
    const [badPurpose, badOverlap, help] = await Promise.all([
      run(['keys', 'rotate', '--purpose', 'everything']),
      run(['keys', 'rotate', '--overlap', 'a-while']),
      run(['keys', 'rotate', '--help']),
    ]);
    assert.equal(badPurpose.code, 2, badPurpose.stderr);
    assert.match(badPurpose.stderr, /session, endpoints, all|"session", "endpoints", "all"/);
    assert.equal(badOverlap.code, 2, badOverlap.stderr);
    assert.match(badOverlap.stderr, /duration/);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /^Usage: gatehouse keys rotate /);
    const keys = parseList(await ok(['keys', 'list']));
    assert.equal(keys.filter((k) => k.state === 'active').length, 2, 'one active key per purpose');
    assert.equal(keys.length, 6);
  });

  test('a key rotated by another process reaches this one within a second, with nothing signed in between: a key retired at once verifies no more', async () => {
    const token = await signIn();
    const read = async () =>
      (await app.inject({ method: 'GET', url: '/api/v2.1/jobs', headers: bearer(token) })).statusCode;
    assert.equal(await read(), 200);
    const retiredEndpointsKid = core.keyring.currentEndpointsKey.kid;
    assert.ok((await jwksKids()).includes(retiredEndpointsKid));
    const rotated = await ok(['keys', 'rotate', '--overlap', '0']);
    const newEndpointsKid = /^Rotated the endpoints key: (\S+) signs now/m.exec(rotated)?.[1];
    // The server's clock at least the CLI's, so that "retired at once" is already past for it.
    clock.advance(Math.max(0, Date.now() - clock.now()) + 1000);
    const heardAt = Date.now();
    await waitFor(async () => ((await read()) === 401 ? true : undefined), 'the retired key refused', 1500);
    assert.ok(Date.now() - heardAt <= 1500);
    // The JWKS too, without waiting for the minute after which a server reloads anyway.
    const published = await jwksKids();
    assert.ok(published.includes(newEndpointsKid ?? ''), `${newEndpointsKid} in ${published}`);
    assert.ok(!published.includes(retiredEndpointsKid));
  });

  test('keys rotate --overlap 0 retires the keys replaced by earlier rotations too: their tokens are refused at once', async () => {
    const token = await signIn();
    const leakedKid = kidOf(token);
    const read = async () =>
      (await app.inject({ method: 'GET', url: '/api/v2.1/jobs', headers: bearer(token) })).statusCode;
    // A routine rotation: the key verifies for a day more.
    assert.match(
      await ok(['keys', 'rotate', '--purpose', 'session']),
      new RegExp(`${leakedKid} verifies until`),
    );
    clock.advance(Math.max(0, Date.now() - clock.now()) + 1000);
    assert.equal(await read(), 200);
    // Then the leak is found: every key but the new one must stop verifying, the one replaced
    // yesterday too. Before, only the key signing at that moment was retired.
    const stdout = await ok(['keys', 'rotate', '--purpose', 'session', '--overlap', '0']);
    assert.match(stdout, new RegExp(`${leakedKid} is retired`));
    clock.advance(Math.max(0, Date.now() - clock.now()) + 1000);
    await waitFor(
      async () => ((await read()) === 401 ? true : undefined),
      'the key replaced earlier refused',
      1500,
    );
    const keys = parseList(await ok(['keys', 'list']));
    assert.match(keys.find((k) => k.kid === leakedKid)?.state ?? '', /^retired \d{4}-/);
    assert.deepEqual(
      keys.filter((k) => k.purpose === 'session' && k.state !== 'active' && !k.state.startsWith('retired')),
      [],
      'no session key but the new one verifies',
    );
  });

  test('keys rotate --overlap shorter than the tokens live (but not 0) is a usage error', async () => {
    const short = await run(['keys', 'rotate', '--overlap', '5m']);
    assert.equal(short.code, 2, short.stderr);
    assert.match(short.stderr, /--overlap: 0 .* or at least 1h1m/);
  });
});
