import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { ConfigError, loadConfig, parseDuration, SETTINGS } from '../src/config.js';

const readme = await import('node:fs').then((fs) =>
  fs.readFileSync(new URL('../README.md', import.meta.url), 'utf8'),
);

test('defaults: 127.0.0.1:8080, SQLite under ./data, 201 for Storware POSTs', () => {
  const config = loadConfig({}, '/srv/gatehouse');
  assert.equal(config.host, '127.0.0.1');
  assert.equal(config.port, 8080);
  assert.equal(config.dataDir, '/srv/gatehouse/data');
  assert.equal(config.databaseUrl, undefined);
  assert.equal(config.storwareSessionPostStatus, 201);
  assert.deepEqual(config.argon2, { memoryKiB: 19456, iterations: 2, parallelism: 1 });
  assert.ok(Object.isFrozen(config));
});

test('one message names every bad setting at once', () => {
  const error = (() => {
    try {
      loadConfig({
        GATEHOUSE_PORT: 'eighty',
        GATEHOUSE_DATABASE_URL: 'mysql://x',
        GATEHOUSE_SESSION_IDLE_TIMEOUT: 'forever',
        GATEHOUSE_LOCKOUT_THRESHOLD: '0',
        GATEHOUSE_LOG_LEVEL: 'loud',
        GATEHOUSE_TLS_CERT: '/nonexistent/cert.pem',
        GATEHOUSE_STORWARE_SESSION_POST_STATUS: '202',
        GATEHOUSE_NODE_MIN_VERSION: 'v5',
      });
    } catch (e) {
      return e;
    }
    return undefined;
  })();
  assert.ok(error instanceof ConfigError);
  for (const name of [
    'GATEHOUSE_PORT',
    'GATEHOUSE_DATABASE_URL',
    'GATEHOUSE_SESSION_IDLE_TIMEOUT',
    'GATEHOUSE_LOCKOUT_THRESHOLD',
    'GATEHOUSE_LOG_LEVEL',
    'GATEHOUSE_TLS_CERT',
    'GATEHOUSE_STORWARE_SESSION_POST_STATUS',
    'GATEHOUSE_NODE_MIN_VERSION',
  ]) {
    assert.match(error.message, new RegExp(name), `message should name ${name}`);
  }
});

test('GATEHOUSE_DATABASE_LISTEN_URL: a PostgreSQL URL, only beside GATEHOUSE_DATABASE_URL, not quoted in a refusal', () => {
  const problems = (settings: Record<string, string>) => {
    try {
      loadConfig(settings);
    } catch (e) {
      return (e as ConfigError).problems;
    }
    return [];
  };
  assert.deepEqual(problems({ GATEHOUSE_DATABASE_LISTEN_URL: 'postgres://gatehouse:s3cret@db/gatehouse' }), [
    'GATEHOUSE_DATABASE_LISTEN_URL: only with GATEHOUSE_DATABASE_URL (SQLite needs none)',
  ]);
  assert.deepEqual(
    problems({
      GATEHOUSE_DATABASE_URL: 'postgres://db/gatehouse',
      GATEHOUSE_DATABASE_LISTEN_URL: 'mysql://gatehouse:s3cret@db/gatehouse',
    }),
    ['GATEHOUSE_DATABASE_LISTEN_URL: expected a postgres:// or postgresql:// URL'],
  );
  const config = loadConfig({
    GATEHOUSE_DATABASE_URL: 'postgres://pgbouncer:6432/gatehouse',
    GATEHOUSE_DATABASE_LISTEN_URL: 'postgres://db:5432/gatehouse',
  });
  assert.equal(config.databaseListenUrl, 'postgres://db:5432/gatehouse');
  assert.equal(loadConfig({}).databaseListenUrl, undefined);
});

test('a short admin password is refused without being echoed', () => {
  assert.throws(
    () => loadConfig({ GATEHOUSE_ADMIN_PASSWORD: 'hunter2' }),
    (e: Error) => /GATEHOUSE_ADMIN_PASSWORD/.test(e.message) && !e.message.includes('hunter2'),
  );
});

test('a JSON config file adds settings; the environment wins over it', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-config-'));
  const file = path.join(dir, 'gatehouse.json');
  writeFileSync(file, JSON.stringify({ GATEHOUSE_PORT: 9090, GATEHOUSE_HOST: '0.0.0.0' }));
  const config = loadConfig({ GATEHOUSE_CONFIG_FILE: file, GATEHOUSE_HOST: '127.0.0.2' });
  assert.equal(config.port, 9090);
  assert.equal(config.host, '127.0.0.2');
  // A variable set to nothing (`VAR=${UNSET}` in a compose file) is unset: the file's value holds,
  // where it gave the built-in default before.
  assert.equal(
    loadConfig({ GATEHOUSE_CONFIG_FILE: file, GATEHOUSE_PORT: '', GATEHOUSE_HOST: ' ' }).port,
    9090,
  );
  assert.equal(loadConfig({ GATEHOUSE_CONFIG_FILE: file, GATEHOUSE_HOST: '' }).host, '0.0.0.0');
  // A mistake next to a secret: the message does not quote the file.
  writeFileSync(file, '{"GATEHOUSE_MASTER_KEY": abababababababababab}');
  assert.throws(
    () => loadConfig({ GATEHOUSE_CONFIG_FILE: file }),
    (e: Error) => /cannot read .* as JSON \(not valid JSON\)/.test(e.message) && !/abab/.test(e.message),
  );
  writeFileSync(file, JSON.stringify({ GATEHOUSE_PROT: 1 }));
  assert.throws(() => loadConfig({ GATEHOUSE_CONFIG_FILE: file }), /unknown setting GATEHOUSE_PROT/);
  for (const text of ['null', '[]', '"x"']) {
    writeFileSync(file, text);
    assert.throws(
      () => loadConfig({ GATEHOUSE_CONFIG_FILE: file }),
      (e: Error) => e instanceof ConfigError && /must hold a JSON object of settings/.test(e.message),
      text,
    );
  }
  // A setting given in the file counts as given (serve --workers then leaves the hashing threads be).
  writeFileSync(file, JSON.stringify({ GATEHOUSE_HASH_THREADS: 2 }));
  assert.equal(loadConfig({ GATEHOUSE_CONFIG_FILE: file }).hashThreadsSet, true);
  assert.equal(loadConfig({}).hashThreadsSet, false);
});

test('a setting mistyped in the environment stops start-up, naming the setting meant', () => {
  assert.throws(
    () =>
      loadConfig({
        GATEHOUSE_LOCKOUT_TRESHOLD: '3',
        GATEHOUSE_DATABSE_URL: 'postgres://db/x',
        gatehouse_port: '1',
      }),
    (e: Error) =>
      e instanceof ConfigError &&
      e.problems.includes(
        'GATEHOUSE_LOCKOUT_TRESHOLD: not a setting; did you mean GATEHOUSE_LOCKOUT_THRESHOLD?',
      ) &&
      e.problems.includes('GATEHOUSE_DATABSE_URL: not a setting; did you mean GATEHOUSE_DATABASE_URL?') &&
      e.problems.includes('gatehouse_port: not a setting; did you mean GATEHOUSE_PORT?'),
  );
  // Names of a deployment's own (or of this test suite) that are no setting's near miss are left alone.
  const config = loadConfig({ GATEHOUSE_TEST_POSTGRES_URL: 'postgres://x', GATEHOUSE_VERSION: '1.2.3' });
  assert.equal(config.port, 8080);
  const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-config-'));
  const file = path.join(dir, 'gatehouse.json');
  writeFileSync(file, JSON.stringify({ GATEHOUSE_METRIC: 'off' }));
  assert.throws(
    () => loadConfig({ GATEHOUSE_CONFIG_FILE: file }),
    /unknown setting GATEHOUSE_METRIC; did you mean GATEHOUSE_METRICS\?/,
  );
});

test('durations accept s, m, h, d and bare seconds, up to 100 years; a lease up to an hour', () => {
  assert.equal(parseDuration('36500d'), 36_500 * 86_400_000);
  assert.equal(parseDuration('36501d'), undefined);
  assert.equal(parseDuration('999999999999d'), undefined);
  assert.throws(
    () => loadConfig({ GATEHOUSE_SESSION_MAX_LIFETIME: '999999999d' }),
    /GATEHOUSE_SESSION_MAX_LIFETIME/,
  );
  assert.throws(
    () => loadConfig({ GATEHOUSE_JOB_LEASE: '100d' }),
    /GATEHOUSE_JOB_LEASE: must not be longer than 1h/,
  );
  assert.equal(loadConfig({ GATEHOUSE_JOB_LEASE: '1h' }).jobLeaseMs, 3_600_000);
  assert.equal(parseDuration('90'), 90_000);
  assert.equal(parseDuration('15m'), 900_000);
  assert.equal(parseDuration('12h'), 43_200_000);
  assert.equal(parseDuration('30d'), 2_592_000_000);
  assert.equal(parseDuration('soon'), undefined);
});

test('the README documents every setting', () => {
  for (const name of SETTINGS)
    assert.match(readme, new RegExp(`\`${name}\``), `README should document ${name}`);
});

test('refresh grace defaults to 30s (at most 5m); key overlap to 24h, never shorter than a token lives', () => {
  const defaults = loadConfig({});
  assert.equal(defaults.refreshGraceMs, 30_000);
  assert.equal(defaults.keyOverlapMs, 86_400_000);
  assert.equal(loadConfig({ GATEHOUSE_REFRESH_GRACE: '0' }).refreshGraceMs, 0);
  assert.throws(() => loadConfig({ GATEHOUSE_REFRESH_GRACE: '10m' }), /GATEHOUSE_REFRESH_GRACE/);
  // Replaced keys must verify every token they signed until it expires.
  assert.throws(
    () => loadConfig({ GATEHOUSE_KEY_OVERLAP: '1h', GATEHOUSE_TOKEN_LIFETIME: '1h' }),
    /GATEHOUSE_KEY_OVERLAP: must be at least/,
  );
  assert.equal(loadConfig({ GATEHOUSE_KEY_OVERLAP: '2h' }).keyOverlapMs, 7_200_000);
  assert.equal(loadConfig({ GATEHOUSE_TOKEN_LIFETIME: '2d' }).keyOverlapMs, 2 * 86_400_000 + 60_000);
});

test('the hash queue limit: 256 per hashing thread by default, a number, or off', () => {
  assert.equal(loadConfig({ GATEHOUSE_HASH_THREADS: '3' }).hashQueueLimit, 768);
  assert.equal(loadConfig({ GATEHOUSE_HASH_QUEUE_LIMIT: '40' }).hashQueueLimit, 40);
  assert.equal(loadConfig({ GATEHOUSE_HASH_QUEUE_LIMIT: 'off' }).hashQueueLimit, Number.POSITIVE_INFINITY);
  for (const bad of ['0', 'many', '-5']) {
    assert.throws(() => loadConfig({ GATEHOUSE_HASH_QUEUE_LIMIT: bad }), /GATEHOUSE_HASH_QUEUE_LIMIT/);
  }
});

test('retention: sessions 7d after expiry and finished jobs 30d by default, a duration, or off', () => {
  const defaults = loadConfig({});
  assert.equal(defaults.sessionRetentionMs, 7 * 86_400_000);
  assert.equal(defaults.jobRetentionMs, 30 * 86_400_000);
  const set = loadConfig({ GATEHOUSE_SESSION_RETENTION: '0s', GATEHOUSE_JOB_RETENTION: 'OFF' });
  assert.equal(set.sessionRetentionMs, 0);
  assert.equal(set.jobRetentionMs, undefined);
  assert.throws(
    () => loadConfig({ GATEHOUSE_SESSION_RETENTION: 'a week', GATEHOUSE_JOB_RETENTION: '10m' }),
    (e: ConfigError) =>
      e.problems.length === 2 &&
      /^GATEHOUSE_SESSION_RETENTION: .*or off, got "a week"$/.test(e.problems[0] ?? '') &&
      // A client polls its job after the 202: one deleted minutes after it ended would vanish.
      /^GATEHOUSE_JOB_RETENTION: .*\(at least 1h\), or off, got "10m"$/.test(e.problems[1] ?? ''),
  );
});

test('the PostgreSQL pool: 10 connections a process by default, 1 to 1000', () => {
  assert.equal(loadConfig({}).pgPoolSize, 10);
  assert.equal(loadConfig({ GATEHOUSE_PG_POOL_SIZE: '2' }).pgPoolSize, 2);
  for (const bad of ['0', '1001', 'ten']) {
    assert.throws(
      () => loadConfig({ GATEHOUSE_PG_POOL_SIZE: bad }),
      (e: ConfigError) =>
        e.problems.length === 1 &&
        e.problems[0] === `GATEHOUSE_PG_POOL_SIZE: expected an integer from 1 to 1000, got "${bad}"`,
    );
  }
});

test('the shutdown delay: none by default, at most 5m', () => {
  assert.equal(loadConfig({}).shutdownDelayMs, 0);
  assert.equal(loadConfig({ GATEHOUSE_SHUTDOWN_DELAY: '15s' }).shutdownDelayMs, 15_000);
  assert.throws(
    () => loadConfig({ GATEHOUSE_SHUTDOWN_DELAY: '10m' }),
    (e: ConfigError) => e.problems.join() === 'GATEHOUSE_SHUTDOWN_DELAY: must not be longer than 5m',
  );
});

for (const { name, field, defaultMs } of [
  { name: 'GATEHOUSE_REQUEST_TIMEOUT', field: 'requestTimeoutMs', defaultMs: 60_000 },
  { name: 'GATEHOUSE_PG_STATEMENT_TIMEOUT', field: 'pgStatementTimeoutMs', defaultMs: 30_000 },
] as const) {
  test(`${name}: ${defaultMs / 1000}s by default, from 1s to 1h`, () => {
    assert.equal(loadConfig({})[field], defaultMs);
    assert.equal(loadConfig({ [name]: '2m' })[field], 120_000);
    for (const [bad, problem] of [
      ['500ms', `${name}: expected a duration such as 90s, 15m, 12h or 30d (at least 1s), got "500ms"`],
      ['90m', `${name}: must not be longer than 1h`],
    ]) {
      assert.throws(
        () => loadConfig({ [name]: bad }),
        (e: ConfigError) => e.problems.join() === problem,
      );
    }
  });
}

test('a TLS certificate and key are checked at start, by setting: swapped or not a pair is one of the problems listed', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-tls-'));
  execFileSync(
    'openssl',
    [
      ...'req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost'.split(
        ' ',
      ),
      ...['-keyout', path.join(dir, 'key.pem'), '-out', path.join(dir, 'cert.pem')],
    ],
    { stdio: 'ignore' },
  );
  const other = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({
    type: 'pkcs8',
    format: 'pem',
  });
  writeFileSync(path.join(dir, 'other-key.pem'), other);
  const tls = (cert: string, key: string) => ({ GATEHOUSE_TLS_CERT: cert, GATEHOUSE_TLS_KEY: key });
  assert.ok(loadConfig(tls('cert.pem', 'key.pem'), dir).tls);
  // Before, a swapped pair stopped the start on OpenSSL's "no start line", naming neither setting.
  assert.throws(
    () => loadConfig({ ...tls('key.pem', 'cert.pem'), GATEHOUSE_PORT: 'x' }, dir),
    (e: Error) =>
      /GATEHOUSE_TLS_CERT: not a PEM certificate/.test(e.message) && /GATEHOUSE_PORT/.test(e.message),
  );
  assert.throws(
    () => loadConfig(tls('cert.pem', 'cert.pem'), dir),
    /GATEHOUSE_TLS_KEY: not a PEM private key/,
  );
  assert.throws(
    () => loadConfig(tls('cert.pem', 'other-key.pem'), dir),
    /GATEHOUSE_TLS_KEY: not the private key of GATEHOUSE_TLS_CERT's certificate/,
  );
});
