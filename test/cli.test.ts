import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { hostname, tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import { firstIdAt } from '../src/core/ids.js';
import { type Core, createCore } from '../src/core/index.js';
import { hashSecret } from '../src/core/secrets.js';
import { isGatehouseError } from '../src/errors.js';
import { connectStore, type Store } from '../src/store/connect.js';
import { ADMIN_PASSWORD } from './helpers/context.js';
import { forEachDialect } from './helpers/dialects.js';
import { createFreshDatabase } from './helpers/postgres.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const META = { ip: '127.0.0.1', userAgent: 't' };

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** The settings the CLI sees: none inherited from the shell running the tests. */
function cliEnv(settings: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.startsWith('GATEHOUSE_') && !key.startsWith('NODE_TEST')) env[key] = value;
  }
  return {
    ...env,
    GATEHOUSE_ARGON2_MEMORY_KIB: '1024',
    GATEHOUSE_ARGON2_ITERATIONS: '1',
    GATEHOUSE_ADMIN_PASSWORD: ADMIN_PASSWORD,
    GATEHOUSE_LOG_LEVEL: 'silent',
    ...settings,
  };
}

function startCli(args: readonly string[], env: NodeJS.ProcessEnv): ChildProcess {
  // Through tsx, so that the test does not depend on a build.
  return spawn(process.execPath, ['--import', 'tsx', 'src/cli/index.ts', ...args], {
    cwd: ROOT,
    env,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
}

/** Runs `gatehouse <args>` as a real process, feeding `stdin`, and collects what it printed. */
function gatehouse(args: readonly string[], env: NodeJS.ProcessEnv, stdin = ''): Promise<Run> {
  const child = startCli(args, env);
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk;
  });
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
  });
  child.stdin?.end(stdin);
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

/** Fails with what the CLI said when it did not succeed. */
function assertOk(run: Run, args: string): void {
  assert.equal(run.code, 0, `gatehouse ${args} exited ${run.code}: ${run.stderr}`);
}

async function rejectsWith(promise: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(promise, (error) => isGatehouseError(error) && error.code === code);
}

forEachDialect('CLI', (dialect) => {
  let dataDir: string;
  let database: { url: string; drop: () => Promise<void> } | undefined;
  let env: NodeJS.ProcessEnv;
  let service: { store: Store; core: Core; app: FastifyInstance } | undefined;
  const run = (args: readonly string[], stdin?: string) => gatehouse(args, env, stdin);

  /** What the server sees over the same store, opened once the CLI has migrated it. */
  const server = async () => {
    if (!service) {
      const config = loadConfig(env);
      const store = connectStore({ databaseUrl: config.databaseUrl, dataDir: config.dataDir });
      const core = await createCore({ config, store });
      const app = await buildApp({ core });
      await app.ready();
      service = { store, core, app };
    }
    return service;
  };
  const signin = async (username: string, password: string) =>
    (await server()).app.inject({
      method: 'POST',
      url: '/api/v2.1/auth/signin',
      payload: { username, password },
    });

  before(async () => {
    dataDir = mkdtempSync(path.join(tmpdir(), 'gatehouse-cli-'));
    database = dialect === 'postgres' ? await createFreshDatabase() : undefined;
    env = cliEnv({
      GATEHOUSE_DATA_DIR: dataDir,
      ...(database ? { GATEHOUSE_DATABASE_URL: database.url } : {}),
    });
  });
  after(async () => {
    if (service) {
      await service.app.close();
      await service.store.destroy();
    }
    await database?.drop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test('before migrate, a command on a store that is not there exits 1 naming where it looked, and makes no store', async () => {
    for (const args of [
      ['user', 'create', '--username', 'dave', '--password', 'Winter-Orchard-Lamp-77'],
      ['keys', 'rotate', '--overlap', '0'],
      ['tenant', 'create', '--code', 'acme', '--name', 'Acme'],
    ]) {
      const refused = await run(args);
      assert.equal(refused.code, 1, `${args.join(' ')}: ${refused.stderr}`);
      assert.match(
        refused.stderr,
        dialect === 'sqlite'
          ? /^gatehouse: no Gatehouse store in SQLite database .*gatehouse\.db: run the command where the server runs/
          : /^gatehouse: no Gatehouse store in PostgreSQL database gatehouse_test_\w+ on 127\.0\.0\.1:5432:/,
      );
      assert.equal(refused.stdout, '');
    }
    if (dialect === 'sqlite')
      assert.ok(!existsSync(path.join(dataDir, 'gatehouse.db')), 'no SQLite file made');
    // The next test's migrate finds the store empty: it applies every migration and makes the admin.
  });

  test('migrate creates the schema and the admin once; a second run changes nothing', async () => {
    const first = await run(['migrate']);
    assertOk(first, 'migrate');
    assert.match(
      first.stdout,
      dialect === 'sqlite' ? /SQLite database .*gatehouse\.db/ : /PostgreSQL database gatehouse_test_/,
    );
    assert.match(first.stdout, /Applied migrations: 0001-initial/);
    assert.match(first.stdout, /Created tenant "system" and its root user "admin"/);
    // The admin password was configured, so nothing was generated to show.
    assert.equal(first.stderr, '');

    const second = await run(['migrate']);
    assertOk(second, 'migrate');
    assert.match(second.stdout, /Schema already up to date/);
    assert.match(second.stdout, /no admin created/);
    assert.equal((await signin('admin', ADMIN_PASSWORD)).statusCode, 200);
  });

  test('a reader that closes the pipe early does not crash the command: it finishes and exits 0', async () => {
    const child = startCli(['migrate'], env);
    // As `gatehouse migrate | head -0` does: nothing of the output is read.
    child.stdout?.destroy();
    let stderr = '';
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
    });
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    assert.equal(code, 0, stderr);
    assert.doesNotMatch(stderr, /EPIPE|Unhandled/);
  });

  test('tenant create makes the tenant; the same code again exits 1 saying it exists', async () => {
    const created = await run(['tenant', 'create', '--code', 'acme', '--name', 'Acme Corp']);
    assertOk(created, 'tenant create');
    assert.match(created.stdout, /^Created tenant acme "Acme Corp" \(id [\w-]+\)\n$/);
    assert.equal((await (await server()).store.tenants.findByCode('acme'))?.name, 'Acme Corp');

    const again = await run(['tenant', 'create', '--code', 'acme', '--name', 'Acme again']);
    assert.equal(again.code, 1);
    assert.equal(again.stdout, '');
    assert.equal(
      again.stderr,
      'gatehouse: A resource with this name already exists. a tenant with code "acme" already exists\n',
    );
  });

  test('user create: the user signs in through the API with its names, tenant role and groups', async () => {
    const password = 'Wonderland-rabbit-1';
    const created = await run([
      'user',
      'create',
      '--username',
      'alice',
      '--password',
      password,
      '--tenant',
      'acme',
      '--role',
      'admin',
      '--first-name',
      'Alice',
      '--last-name',
      'Liddell',
      '--display-name',
      'Al',
      '--email',
      'alice@example.com',
      '--group',
      'Operator',
      '--group',
      'Global Administrators',
    ]);
    assertOk(created, 'user create');
    assert.match(
      created.stdout,
      /^Created user alice \(id [\w-]+, admin of tenant acme, in "Operator", "Global Administrators"\)\n$/,
    );
    assert.doesNotMatch(created.stdout + created.stderr, new RegExp(password));

    const response = await signin('alice', password);
    assert.equal(response.statusCode, 200);
    const { user } = response.json().result.records[0];
    assert.equal(user.firstName, 'Alice');
    assert.equal(user.lastName, 'Liddell');
    assert.equal(user.displayName, 'Al');
    assert.equal(user.email, 'alice@example.com');
    assert.deepEqual(
      user.tenancies.map((t: { code: string; role: string }) => [t.code, t.role]),
      [['acme', 'admin']],
    );
    const { store } = await server();
    const row = await store.users.findByUsernameKey('alice');
    assert.deepEqual(
      (await store.rbac.groupsOfUser(row!.id)).map((g) => g.name),
      ['Global Administrators', 'Operator'],
    );
  });

  test('--password-stdin reads the password from standard input, less one trailing newline', async () => {
    const created = await run(
      ['user', 'create', '--username', 'bob', '--password-stdin'],
      'Hidden-secret-pass-2\n',
    );
    assertOk(created, 'user create --password-stdin');
    assert.equal((await signin('bob', 'Hidden-secret-pass-2')).statusCode, 200);
    assert.equal((await signin('bob', 'Hidden-secret-pass-2\n')).statusCode, 401);
  });

  test('a weak password is refused (exit 1, naming the rule) and no user is created', async () => {
    const short = await run(['user', 'create', '--username', 'carol', '--password', 'Short-1']);
    assert.equal(short.code, 1);
    assert.match(
      short.stderr,
      /^gatehouse: The new password does not meet the password policy\. .*at least 12 characters/,
    );
    const withName = await run(
      ['user', 'create', '--username', 'carol', '--password-stdin'],
      'my-name-is-Carol-1',
    );
    assert.equal(withName.code, 1);
    assert.match(withName.stderr, /must not contain the username/);
    assert.equal(withName.stdout, '');
    assert.equal(await (await server()).store.users.findByUsernameKey('carol'), undefined);
    // The profile rules of the API hold here too.
    for (const [flag, value, rule] of [
      ['--email', 'not-an-email', /e-mail address/],
      ['--display-name', 'evil\u001b[2J\nline', /control characters/],
      ['--first-name', 'a'.repeat(300), /at most 255 characters/],
    ] as const) {
      const refused = await run([
        'user',
        'create',
        '--username',
        'carol',
        '--password',
        'Long-enough-pw-1',
        flag,
        value,
      ]);
      assert.equal(refused.code, 1, `${flag}: ${refused.stderr}`);
      assert.match(refused.stderr, rule);
    }
    assert.equal(await (await server()).store.users.findByUsernameKey('carol'), undefined);
  });

  test('region create and zone create: the API lists the zone in its region', async () => {
    assertOk(
      await run(['region', 'create', '--name', 'au-east1', '--description', 'Sydney']),
      'region create',
    );
    const zone = await run([
      'zone',
      'create',
      '--name',
      'au-east1-a',
      '--region',
      'au-east1',
      '--description',
      'Sydney A',
    ]);
    assertOk(zone, 'zone create');
    assert.match(zone.stdout, /^Created zone au-east1-a in region au-east1 \(id [\w-]+\)\n$/);

    const token = (await signin('admin', ADMIN_PASSWORD)).json().result.records[0].token as string;
    const get = async (url: string) =>
      (
        await (
          await server()
        ).app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${token}` } })
      ).json();
    const region = (await get('/api/v2.1/auth/regions/au-east1')).result.records[0];
    assert.equal(region.description, 'Sydney');
    assert.deepEqual(region.zones, ['au-east1-a']);
    const record = (await get('/api/v2.1/auth/zones/au-east1-a')).result.records[0];
    assert.equal(record.region, 'au-east1');
    assert.equal(record.description, 'Sydney A');

    const orphan = await run(['zone', 'create', '--name', 'x-1', '--region', 'nowhere']);
    assert.equal(orphan.code, 1);
    assert.match(orphan.stderr, /no region named "nowhere"/);
  });

  test('node create: the node signs in with its password', async () => {
    const created = await run(
      ['node', 'create', '--login', 'node1', '--password-stdin'],
      'Node-password-123\n',
    );
    assertOk(created, 'node create');
    assert.match(created.stdout, /^Created node node1 \(id [\w-]+\)\n$/);
    const { core } = await server();
    const session = await core.authentication.nodeSignIn('node1', 'Node-password-123', '5.0.0', META);
    assert.equal(session.auth.principal.kind, 'node');
    assert.equal(session.auth.principal.name, 'node1');
  });

  test('token create prints the token alone on stdout, and the token signs in', async () => {
    const created = await run(['token', 'create', '--user', 'alice', '--name', 'ci', '--expires-in', '30d']);
    assertOk(created, 'token create');
    assert.match(created.stdout, /^gtk_[A-Za-z0-9_-]{43}\n$/);
    assert.match(created.stderr, /expires \d{4}-\d\d-\d\dT/);
    const token = created.stdout.trim();
    assert.doesNotMatch(created.stderr, new RegExp(token));

    const { core, store } = await server();
    const session = await core.authentication.tokenSignIn(token, META);
    assert.equal(session.auth.principal.name, 'alice');
    const row = await store.apiTokens.findBySecretHash(hashSecret(token));
    assert.equal(row?.name, 'ci');
    const thirtyDays = 30 * 86_400_000;
    assert.ok(Math.abs((row?.expires_at ?? 0) - (Date.now() + thirtyDays)) < 120_000, 'expires in 30 days');

    const nobody = await run(['token', 'create', '--user', 'nobody']);
    assert.equal(nobody.code, 1);
    assert.equal(nobody.stdout, '');
    assert.equal(nobody.stderr, 'gatehouse: The resource was not found. no user named "nobody"\n');
  });

  test('user passwd ends the sessions: the old password and session stop working, the new one works', async () => {
    const { core } = await server();
    const old = 'Wonderland-rabbit-1';
    const session = await core.authentication.signIn('alice', old, META, 'nse');
    await core.sessions.authenticateSecret(session.secret);

    const changed = await run(
      ['user', 'passwd', '--username', 'alice', '--password-stdin'],
      'Looking-glass-42\n',
    );
    assertOk(changed, 'user passwd');
    assert.match(changed.stdout, /^Set the password of user alice/);
    // The server is another process: it hears of the change through the store's change feed
    // within a second (until then it may answer from its session cache).
    const changedAt = performance.now();
    while (
      (await core.sessions.authenticateSecret(session.secret).then(
        () => true,
        () => false,
      )) &&
      performance.now() - changedAt < 1000
    ) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await rejectsWith(core.sessions.authenticateSecret(session.secret), 'SESSION_ENDED');
    await rejectsWith(core.authentication.signIn('alice', old, META, 'nse'), 'INVALID_CREDENTIALS');
    assert.equal((await signin('alice', 'Looking-glass-42')).statusCode, 200);

    const weak = await run(['user', 'passwd', '--username', 'alice', '--password', 'alice-in-wonderland']);
    assert.equal(weak.code, 1);
    assert.match(weak.stderr, /must not contain the username/);

    // A directory user has no local password, here as in the API.
    await core.accounts.createUser({ username: 'dir-person', provider: 'activeDirectory' });
    const directory = await run([
      'user',
      'passwd',
      '--username',
      'dir-person',
      '--password',
      'Directory-pw-123',
    ]);
    assert.equal(directory.code, 1);
    assert.match(directory.stderr, /has no local password/);
    assert.equal((await core.store.users.findByUsernameKey('dir-person'))?.password_hash, null);
  });

  test('housekeeping deletes the sessions long expired and says how many; a live session stays', async () => {
    const { store } = await server();
    const live = await signin('admin', ADMIN_PASSWORD);
    assert.equal(live.statusCode, 200);
    const admin = await store.users.findByUsernameKey('admin');
    assert.ok(admin);
    // Signed in 30 days ago: its id carries that time, as the ids of every session do (core/ids.ts).
    const at = Date.now() - 30 * 24 * 3_600_000;
    const id = `${firstIdAt(at).slice(0, 14)}7123-8123-${randomBytes(6).toString('hex')}`;
    await store.sessions.insert({
      id,
      kind: 'user',
      user_id: admin.id,
      node_id: null,
      api_token_id: null,
      secret_hash: hashSecret(`old-session-${id}`),
      created_at: at,
      last_seen_at: at,
      expires_at: at + 12 * 3_600_000,
      revoked_at: null,
      revoke_reason: null,
      ip: '127.0.0.1',
      user_agent: 'cli test',
      prev_success_at: null,
      prev_failed_at: null,
      prev_failed_ip: null,
      token_generation: 0,
      prior_token_valid_until: null,
    });

    const swept = await run(['housekeeping']);
    assertOk(swept, 'housekeeping');
    assert.equal(swept.stdout, 'Sessions: 1 deleted\nJobs: 0 deleted\n');
    assert.equal(await store.sessions.findById(id), undefined);
    const token: string = live.json().result.records[0].token;
    const regions = await (await server()).app.inject({
      method: 'GET',
      url: '/api/v2.1/auth/regions',
      headers: { authorization: `Bearer ${token}` },
    });
    assert.equal(regions.statusCode, 200, 'the live session is untouched');

    const off = await gatehouse(['housekeeping'], { ...env, GATEHOUSE_SESSION_RETENTION: 'off' });
    assertOk(off, 'housekeeping');
    assert.equal(off.stdout, 'Sessions: kept for ever (GATEHOUSE_SESSION_RETENTION=off)\nJobs: 0 deleted\n');
  });

  test('every change made from the command line is in the audit log, as the system, with no secret', async () => {
    const { store } = await server();
    const events = await store.db
      .selectFrom('audit_events')
      .selectAll()
      .where('actor_type', '=', 'system')
      .orderBy('id')
      .execute();
    const seen = events.map((e) => `${e.action} ${e.target_type}:${e.target_name}`);
    for (const expected of [
      'tenant.create tenant:acme',
      'user.create user:alice',
      'region.create region:au-east1',
      'node.create node:node1',
      'token.create api_token:ci',
      'password.set user:alice',
    ]) {
      assert.ok(seen.includes(expected), `${expected} in ${seen.join(', ')}`);
    }
    assert.ok(
      events
        .filter((e) => !e.action.startsWith('region.') && !e.action.startsWith('zone.'))
        .every((e) => e.reason === 'from the command line'),
      'CLI events say where they came from',
    );
    const everything = JSON.stringify(events);
    assert.ok(!/Wonderland-rabbit-1|Looking-glass-42|gtk_/.test(everything), 'no secret in the events');
  });
});

describe('CLI usage', () => {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'gatehouse-cli-usage-'));
  const env = cliEnv({ GATEHOUSE_DATA_DIR: dataDir });
  after(() => rmSync(dataDir, { recursive: true, force: true }));

  test('--help works on every command and subcommand', async () => {
    const commands = [
      [],
      ['serve'],
      ['migrate'],
      ['tenant'],
      ['tenant', 'create'],
      ['user'],
      ['user', 'create'],
      ['user', 'passwd'],
      ['region'],
      ['region', 'create'],
      ['zone'],
      ['zone', 'create'],
      ['node'],
      ['node', 'create'],
      ['token'],
      ['token', 'create'],
      ['housekeeping'],
    ];
    const runs = await Promise.all(commands.map((command) => gatehouse([...command, '--help'], env)));
    commands.forEach((command, i) => {
      const help = runs[i]!;
      const name = ['gatehouse', ...command].join(' ');
      assert.equal(help.code, 0, name);
      assert.equal(help.stderr, '', name);
      assert.ok(help.stdout.startsWith(`Usage: ${name} `), `${name}: ${help.stdout}`);
    });
    const byName = (name: string) => runs[commands.findIndex((c) => c.join(' ') === name)]!.stdout;
    for (const name of ['user create', 'user passwd', 'node create']) {
      assert.match(byName(name), /--password <password>/, name);
      assert.match(byName(name), /--password-stdin/, name);
    }
    assert.match(byName('token create'), /--expires-in <duration>/);
    assert.match(byName(''), /GATEHOUSE_\*/);
  });

  test('a bad setting exits 2 naming the setting, before touching the store', async () => {
    const result = await gatehouse(['tenant', 'create', '--code', 'acme', '--name', 'Acme'], {
      ...env,
      GATEHOUSE_PORT: 'abc',
    });
    assert.equal(result.code, 2);
    assert.equal(result.stdout, '');
    assert.match(result.stderr, /^gatehouse: Invalid configuration:\n {2}- GATEHOUSE_PORT: .*"abc"/);
    assert.deepEqual(readdirSync(dataDir), []);
  });

  test('a pooler that refuses the connection timeouts (PgBouncer) gets advice, not only its words', async () => {
    // PgBouncer's answer to a startup parameter it does not know, before any authentication.
    const refuse = (socket: net.Socket) => {
      const fields = Buffer.from(
        'SFATAL\0C08P01\0Munsupported startup parameter: statement_timeout\0\0',
        'latin1',
      );
      const header = Buffer.alloc(5);
      header.write('E', 0, 'latin1');
      header.writeInt32BE(fields.length + 4, 1);
      socket.once('data', () => socket.end(Buffer.concat([header, fields])));
      socket.on('error', () => {});
    };
    const pooler = net.createServer(refuse);
    await new Promise<void>((resolve) => pooler.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = pooler.address() as net.AddressInfo;
      const result = await gatehouse(['keys', 'list'], {
        ...env,
        GATEHOUSE_DATABASE_URL: `postgres://gatehouse@127.0.0.1:${port}/gatehouse`,
      });
      assert.equal(result.code, 1, result.stderr);
      assert.match(result.stderr, /unsupported startup parameter: statement_timeout/);
      assert.match(result.stderr, /ignore_startup_parameters/);
    } finally {
      await new Promise((resolve) => pooler.close(resolve));
    }
  });

  test('usage errors exit 2 with a message, before touching the store', async () => {
    const cases: [string[], RegExp][] = [
      [
        ['user', 'create', '--username', 'dave', '--password', 'Long-enough-pw-1', '--password-stdin'],
        /not both/,
      ],
      [['user', 'create', '--username', 'dave'], /a password is required/],
      [['user', 'passwd', '--username', 'dave'], /a password is required/],
      [['node', 'create', '--login', 'n2', '--password', 'x', '--password-stdin'], /not both/],
      [
        ['user', 'create', '--username', 'dave', '--password', 'Long-enough-pw-1', '--tenant', 'acme'],
        /--tenant and --role go together/,
      ],
      [
        [
          'user',
          'create',
          '--username',
          'dave',
          '--password',
          'Long-enough-pw-1',
          '--tenant',
          'acme',
          '--role',
          'boss',
        ],
        /Allowed choices are root, partner, admin, user, read/,
      ],
      [['token', 'create', '--user', 'alice', '--expires-in', 'soon'], /Expected a duration/],
      [['token', 'create', '--user', 'alice', '--expires-in', '3651d'], /at most 3650 days/],
      [['token', 'create', '--user', 'alice', '--expires-in', '999999999999d'], /Expected a duration/],
      [['keys', 'rotate', '--overlap', '999999999999d'], /Expected a duration/],
      [['tenant', 'create', '--code', 'acme'], /required option '--name <name>' not specified/],
      [['tenant', 'remove'], /unknown command 'remove'/],
      [['frobnicate'], /unknown command 'frobnicate'/],
      [['user'], /Usage: gatehouse user/],
    ];
    const runs = await Promise.all(cases.map(([args]) => gatehouse(args, env, 'Long-enough-pw-1\n')));
    cases.forEach(([args, message], i) => {
      const result = runs[i]!;
      assert.equal(result.code, 2, args.join(' '));
      assert.equal(result.stdout, '', args.join(' '));
      assert.match(result.stderr, message, args.join(' '));
    });
    assert.deepEqual(readdirSync(dataDir), []);
  });

  test('serve listens with the settings and stops cleanly on SIGTERM', async () => {
    const port = await freePort();
    const child = startCli(['serve'], { ...env, GATEHOUSE_PORT: String(port) });
    let stderr = '';
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
    });
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    try {
      const health = await poll(`http://127.0.0.1:${port}/healthz`, 20_000);
      assert.equal(health.status, 200, stderr);
    } finally {
      child.kill('SIGTERM');
    }
    assert.equal(await exited, 0, stderr);
    assert.ok(existsSync(path.join(dataDir, 'gatehouse.db')));
  });

  test('serve, one process or several: a SIGTERM during start-up stops it cleanly (exit 0, not killed)', async () => {
    for (const workers of ['1', '2']) {
      const fresh = mkdtempSync(path.join(tmpdir(), 'gatehouse-serve-early-'));
      try {
        // No admin password given: the generated one is printed while the server starts, before
        // it listens; the server logs its stop.
        const { GATEHOUSE_ADMIN_PASSWORD: _, ...settings } = env;
        const child = startCli(['serve', '--workers', workers], {
          ...settings,
          GATEHOUSE_LOG_LEVEL: 'info',
          GATEHOUSE_DATA_DIR: fresh,
          GATEHOUSE_PORT: String(await freePort()),
        });
        let output = '';
        const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
        const watch = (chunk: Buffer) => {
          output += chunk;
          if (/generated password/.test(output) && !child.killed) child.kill('SIGTERM');
        };
        child.stdout?.on('data', watch);
        child.stderr?.on('data', watch);
        // Before: the signal came before the handlers, and ended the process at once (no code).
        assert.equal(await exited, 0, `--workers ${workers}: ${output}`);
        assert.match(
          output,
          workers === '1' ? /shutting down/ : /"role":"primary","signal":"SIGTERM","msg":"stopping/,
        );
      } finally {
        rmSync(fresh, { recursive: true, force: true });
      }
    }
  });

  test('serve --workers 2: two processes on one port over one store; a token from one works on the other; SIGTERM stops all, a second one during the drain changes nothing', async () => {
    const port = await freePort();
    const child = startCli(['serve', '--workers', '2'], {
      ...env,
      GATEHOUSE_PORT: String(port),
      GATEHOUSE_SHUTDOWN_DELAY: '1s',
      GATEHOUSE_LOG_LEVEL: 'info',
    });
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
    const serving = () => primaryLines(output).find((line) => line.msg === '2 workers serving');
    try {
      await poll(`${base}/readyz`, 30_000);
      // Said once both listen: the second may still be starting when the first answers.
      for (const deadline = Date.now() + 20_000; !serving(); ) {
        assert.ok(Date.now() < deadline, `never said serving:\n${output}\n${stderr}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      // New connections are spread over the workers: a token issued by either works on both.
      const tokens: string[] = [];
      for (let i = 0; i < 6; i += 1) {
        const signin = await fetch(`${base}/api/v2.1/auth/signin`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', connection: 'close' },
          body: JSON.stringify({ username: 'admin', password: ADMIN_PASSWORD }),
        });
        assert.equal(signin.status, 200);
        tokens.push(((await signin.json()) as any).result.records[0].token);
      }
      for (const token of tokens) {
        for (let i = 0; i < 4; i += 1) {
          const read = await fetch(`${base}/api/v2.1/auth/regions`, {
            headers: { authorization: `Bearer ${token}`, connection: 'close' },
          });
          assert.equal(read.status, 200);
        }
      }
    } finally {
      child.kill('SIGTERM');
    }
    // Draining (readiness says so for GATEHOUSE_SHUTDOWN_DELAY): a repeated signal must not kill it.
    await new Promise((resolve) => setTimeout(resolve, 300));
    child.kill('SIGTERM');
    assert.equal(await exited, 0, stderr);
    // The primary's lines are log lines like its workers' (before: plain text on stderr, which a
    // pipeline parsing JSON dropped): level, time, pid, host, and what happened as fields.
    const lines = primaryLines(output);
    assert.deepEqual(
      lines.map((line) => line.msg),
      ['2 workers serving', 'stopping the workers', 'every worker has stopped'],
    );
    assert.deepEqual(
      { ...serving(), time: undefined },
      {
        level: 30,
        time: undefined,
        pid: child.pid,
        hostname: hostname(),
        role: 'primary',
        workers: 2,
        host: '127.0.0.1',
        port,
        msg: '2 workers serving',
      },
    );
    assert.equal(typeof serving()?.time, 'number');
    assert.equal(lines[1]?.signal, 'SIGTERM');
    assert.equal(stderr, '');
  });

  test('serve --workers 2 on a port another program holds: says why, never that it serves, and exits 1', async () => {
    const holder = net.createServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    const { port } = holder.address() as net.AddressInfo;
    try {
      const child = startCli(['serve', '--workers', '2'], {
        ...env,
        GATEHOUSE_HOST: '127.0.0.1',
        GATEHOUSE_PORT: String(port),
        GATEHOUSE_LOG_LEVEL: 'info',
      });
      let output = '';
      child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
        output += chunk;
      });
      let stderr = '';
      child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
        stderr += chunk;
      });
      const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
      assert.equal(code, 1, stderr);
      assert.match(stderr, /cannot listen on 127\.0\.0\.1:\d+: another program holds that port/);
      // Before: "2 workers serving" came first, said as the workers were started.
      assert.doesNotMatch(stderr, /serving/);
      assert.doesNotMatch(output, /serving/);
      assert.ok(
        primaryLines(output).some((line) => line.level === 60 && /no worker runs/.test(String(line.msg))),
        output,
      );
    } finally {
      holder.close();
    }
  });

  test('serve --workers 2: a worker that dies at start is started again after a wait while the other serves', async () => {
    const { port, child, exited, workers, until, output, stderr } = await serveWorkers(env, 'error');
    try {
      await poll(`http://127.0.0.1:${port}/readyz`, 30_000);
      await until('two workers run', () => workers().length === 2);
      // Killed once, a worker is replaced at once (or, if it was young, after a wait); the
      // replacement, killed the moment it shows, has surely failed at start.
      const original = workers();
      const victim = original[0] ?? '';
      process.kill(Number(victim), 'SIGKILL');
      await until('a replacement runs', () => workers().some((pid) => !original.includes(pid)));
      const replacement = workers().find((pid) => !original.includes(pid)) ?? '';
      process.kill(Number(replacement), 'SIGKILL');
      await until('the failure at start is told', () =>
        primaryLines(output()).some(
          (line) =>
            line.level === 50 &&
            line.msg === 'worker failed at start; trying again' &&
            line.workerPid === Number(replacement) &&
            line.exit === 'SIGKILL' &&
            typeof line.retryInSeconds === 'number',
        ),
      );
      // Before, such a worker was never started again: the node stayed at one worker, ready all the same.
      await until(
        'a worker is started again',
        () => workers().length === 2 && !workers().includes(victim) && !workers().includes(replacement),
      );
      const read = await fetch(`http://127.0.0.1:${port}/readyz`);
      assert.equal(read.status, 200);
    } finally {
      child.kill('SIGTERM');
    }
    assert.equal(await exited, 0, stderr());
  });
  // Node's round robin (its default on Linux), and the workers accepting by themselves, which an
  // operator may choose with Node's NODE_CLUSTER_SCHED_POLICY=none (README, Scale-out).
  for (const policy of ['rr', 'none'] as const)
    test(`serve --workers 2, cluster policy ${policy}: while a worker is killed, requests on new connections are answered or reset, ${policy === 'rr' ? 'but for at most the one being handed to it' : 'none left waiting'}`, async () => {
      const { port, child, exited, workers, until, stderr } = await serveWorkers(
        { ...env, NODE_CLUSTER_SCHED_POLICY: policy },
        'error',
      );
      const outcomes = new Map<string, number>();
      try {
        await poll(`http://127.0.0.1:${port}/readyz`, 30_000);
        await until('two workers run', () => workers().length === 2);
        const descriptors = () => readdirSync(`/proc/${child.pid}/fd`).length;
        const before = descriptors();
        // Each request on a connection of its own, as clients behind a balancer open them.
        const request = () =>
          new Promise<string>((resolve) => {
            const sent = http.get(
              { host: '127.0.0.1', port, path: '/healthz', agent: false, headers: { connection: 'close' } },
              (answer) => {
                answer.resume();
                answer.on('end', () => resolve(String(answer.statusCode)));
              },
            );
            sent.setTimeout(5000, () => {
              sent.destroy();
              resolve('no answer within 5 s');
            });
            sent.on('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
          });
        let stop = false;
        const loops = Array.from({ length: 12 }, async () => {
          while (!stop) {
            const outcome = await request();
            outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
          }
        });
        await new Promise((resolve) => setTimeout(resolve, 700));
        const original = workers();
        process.kill(Number(original[0]), 'SIGKILL');
        await new Promise((resolve) => setTimeout(resolve, 1500));
        stop = true;
        await Promise.all(loops);
        await until('a worker takes its place', () => workers().length === 2);
        // Round robin: the primary hands each connection to a worker and waits for its word before
        // handing it the next; one handed to it as it died is neither answered nor closed, and the
        // primary keeps its socket (Node closes its copy only on the worker's word). At most that
        // one: every other is answered, or reset at once. With `none` there is no hand-over, and
        // none waits.
        const waiting = outcomes.get('no answer within 5 s') ?? 0;
        assert.ok(waiting <= (policy === 'rr' ? 1 : 0), JSON.stringify([...outcomes]));
        assert.ok((outcomes.get('200') ?? 0) > 100, JSON.stringify([...outcomes]));
        for (const outcome of outcomes.keys())
          assert.ok(['200', 'ECONNRESET', 'no answer within 5 s'].includes(outcome), outcome);
        assert.ok(descriptors() <= before + waiting, 'the primary holds no socket but that one');
      } finally {
        child.kill('SIGTERM');
      }
      assert.equal(await exited, 0, stderr());
    });

  test('serve --workers 4: connections opened one after another, as a balancer fills its pool, are spread evenly over the workers', async () => {
    const { port, child, exited, workers, until, output, stderr } = await serveWorkers(env, 'info', 4);
    const agents: http.Agent[] = [];
    try {
      // Round robin hands connections only to workers that listen.
      // Four processes starting under tsx on two cores: longer than two take.
      await until(
        'four workers listen',
        () => primaryLines(output()).some((line) => line.msg === '4 workers serving'),
        60_000,
      );
      const heldBefore = workers().map((pid) => connectionsHeld(Number(pid), port));
      // Each on an agent of its own, kept alive after its answer.
      for (let i = 0; i < 20; i += 1) {
        const agent = new http.Agent({ keepAlive: true });
        agents.push(agent);
        await new Promise<void>((resolve, reject) => {
          http
            .get({ host: '127.0.0.1', port, path: '/healthz', agent }, (answer) => {
              answer.resume();
              answer.on('end', resolve);
            })
            .on('error', reject);
        });
      }
      const held = workers().map((pid, i) => connectionsHeld(Number(pid), port) - (heldBefore[i] ?? 0));
      assert.equal(
        held.reduce((sum, count) => sum + count, 0),
        20,
        `every connection is a worker's: ${held}`,
      );
      // Round robin hands each new connection to the worker that has waited longest since its
      // last: opened one after another, 5 each. Workers accepting by themselves
      // (NODE_CLUSTER_SCHED_POLICY=none) held 6/6/5/3, 6/5/5/4 and 8/6/5/1.
      assert.deepEqual(held, [5, 5, 5, 5], `connections per worker: ${held}`);
    } finally {
      for (const agent of agents) agent.destroy();
      child.kill('SIGTERM');
    }
    assert.equal(await exited, 0, stderr());
  });

  test('serve --workers 2: a worker stopped by a signal the primary did not send is replaced, and the primary says so', async () => {
    const { port, child, exited, workers, until, output, stderr } = await serveWorkers(env, 'info');
    try {
      await poll(`http://127.0.0.1:${port}/readyz`, 30_000);
      await until('two workers run', () => workers().length === 2);
      const original = workers();
      const victim = original[0] ?? '';
      // A SIGTERM to the worker alone: it drains and exits 0, as if asked to stop.
      process.kill(Number(victim), 'SIGTERM');
      await until('the stop is told', () =>
        primaryLines(output()).some(
          (line) =>
            line.level === 40 &&
            line.msg === 'worker stopped by a signal; starting another' &&
            line.workerPid === Number(victim) &&
            line.exit === 0,
        ),
      );
      // Before, the node went on with one worker, and said nothing.
      await until('a worker takes its place', () => workers().length === 2 && !workers().includes(victim));
      const replacement = workers().find((pid) => !original.includes(pid)) ?? '';
      await until('it listens', () =>
        output().includes(`"pid":${replacement},"hostname":"${hostname()}","msg":"Server listening`),
      );
      const ready = await fetch(`http://127.0.0.1:${port}/readyz`);
      assert.equal(ready.status, 200);
      // Both stopped that way, and the primary told to stop before their replacements start: it
      // stops at once (no worker's exit is left to wait for).
      const both = workers();
      for (const pid of both) process.kill(Number(pid), 'SIGTERM');
      await until('both stops are told', () =>
        both.every((pid) =>
          primaryLines(output()).some((line) => line.level === 40 && line.workerPid === Number(pid)),
        ),
      );
    } finally {
      child.kill('SIGTERM');
    }
    const stopped = await Promise.race([
      exited,
      new Promise<string>((resolve) => setTimeout(() => resolve('still running after 10 s'), 10_000)),
    ]);
    if (stopped !== 0) child.kill('SIGKILL');
    assert.equal(stopped, 0, `${output()}\n${stderr()}`);
  });
});

/**
 * `gatehouse serve --workers N` (2 unless said) as a process, with what it printed so far, its
 * worker processes (Linux: the kernel lists a process's children), and a wait for a condition that
 * names both outputs when it times out.
 */
async function serveWorkers(env: NodeJS.ProcessEnv, logLevel: string, count = 2) {
  const port = await freePort();
  const child = startCli(['serve', '--workers', String(count)], {
    ...env,
    GATEHOUSE_PORT: String(port),
    GATEHOUSE_LOG_LEVEL: logLevel,
  });
  let out = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    out += chunk;
  });
  let err = '';
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    err += chunk;
  });
  const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
  const workers = () =>
    readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
  const until = async (what: string, holds: () => boolean, timeoutMs = 20_000) => {
    const deadline = Date.now() + timeoutMs;
    while (!holds()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}:\n${out}\n${err}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  };
  return { port, child, exited, workers, until, output: () => out, stderr: () => err };
}

/** The `serve --workers` primary's log lines among the JSON lines of its output, whole lines only. */
function primaryLines(output: string): Array<Record<string, unknown>> {
  return output
    .slice(0, output.lastIndexOf('\n') + 1)
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>)
    .filter((line) => line.role === 'primary');
}

/**
 * How many established TCP connections to `port` the process `pid` holds (Linux: its descriptors
 * that are sockets, matched by inode with the kernel's table of connections).
 */
function connectionsHeld(pid: number, port: number): number {
  const local = `:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  const established = new Set<string>();
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of readFileSync(table, 'utf8').split('\n').slice(1)) {
      const [, address = '', , state, , , , , , inode = ''] = line.trim().split(/\s+/);
      if (address.endsWith(local) && state === '01') established.add(inode);
    }
  }
  return readdirSync(`/proc/${pid}/fd`).filter((fd) => {
    try {
      return established.has(/^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`))?.[1] ?? '');
    } catch {
      return false; // closed since the directory was read
    }
  }).length;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}

async function poll(url: string, timeoutMs: number): Promise<Response> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await fetch(url);
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

// Where the output goes decides, not the store: SQLite only.
test('a generated admin password is shown on a terminal; otherwise it is left in a file of the data dir that only its owner reads', async () => {
  const dirs = [
    mkdtempSync(path.join(tmpdir(), 'gatehouse-tty-')),
    mkdtempSync(path.join(tmpdir(), 'gatehouse-pipe-')),
  ];
  const [onTerminal = '', piped = ''] = dirs;
  const settings = (dataDir: string) => {
    const env = cliEnv({ GATEHOUSE_DATA_DIR: dataDir });
    delete env.GATEHOUSE_ADMIN_PASSWORD;
    return env;
  };
  try {
    // `script` runs the command on a pseudo-terminal, as a person at a shell does.
    const terminal = spawn(
      'script',
      ['-qec', `${process.execPath} --import tsx src/cli/index.ts migrate`, '/dev/null'],
      {
        cwd: ROOT,
        env: settings(onTerminal),
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let shown = '';
    terminal.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      shown += chunk;
    });
    assert.equal(await new Promise((resolve) => terminal.on('close', resolve)), 0, shown);
    assert.match(shown, /generated password:\s+\S{16,}/);
    assert.ok(
      !existsSync(path.join(onTerminal, 'initial-admin-password')),
      'no file when a terminal showed it',
    );

    const run = await gatehouse(['migrate'], settings(piped));
    assertOk(run, 'migrate');
    const file = path.join(piped, 'initial-admin-password');
    assert.ok(run.stderr.includes(`written to ${file} (readable by its owner only)`), run.stderr);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    const password = readFileSync(file, 'utf8').trim();
    assert.ok(password.length >= 16);
    assert.ok(!`${run.stdout}${run.stderr}`.includes(password), 'the password is not in the output');
  } finally {
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  }
});
