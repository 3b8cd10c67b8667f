import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { passwordPolicyProblem } from './core/password-policy.js';

/**
 * Every setting Gatehouse reads, parsed once. Nothing else reads `process.env`.
 * A bad value stops start-up with one message that names every problem.
 */
export interface Config {
  readonly host: string;
  readonly port: number;
  readonly dataDir: string;
  /** Absent: SQLite in the data dir. */
  readonly databaseUrl: string | undefined;
  /** The change feed's listening connection (default: databaseUrl), e.g. past a transaction-mode pooler. */
  readonly databaseListenUrl: string | undefined;
  /** PostgreSQL: run the statements that repeat as named prepared statements (off behind a pooler that cannot). */
  readonly pgPreparedStatements: boolean;
  /** PostgreSQL: connections each process's pool may open (its change-feed listener is one more). */
  readonly pgPoolSize: number;
  /** PostgreSQL cancels a request's statement past this; no answer by a little later drops the connection. */
  readonly pgStatementTimeoutMs: number;
  readonly adminPassword: string | undefined;
  /** 32-byte key that encrypts signing keys at rest; absent: `<dataDir>/master.key`. */
  readonly masterKey: Buffer | undefined;
  readonly sessionIdleTimeoutMs: number;
  readonly sessionMaxLifetimeMs: number;
  readonly tokenLifetimeMs: number;
  readonly endpointsTokenLifetimeMs: number;
  /** How long a refreshed NSE token's predecessor keeps working (concurrent requests in flight). */
  readonly refreshGraceMs: number;
  /** How long a replaced signing key keeps verifying after `gatehouse keys rotate`. */
  readonly keyOverlapMs: number;
  /** Per-process cache of sessions read for authentication: entry lifetime, 0 = off (safety net of the change feed). */
  readonly sessionCacheTtlMs: number;
  /** Privileges, UI settings and the region/zone catalog, cached per process (0: off). */
  readonly readCacheTtlMs: number;
  /** Per-process cache of verified HTTP Basic credentials (keyed hash, never the password): lifetime, 0 = off. */
  readonly credentialCacheTtlMs: number;
  readonly jobLeaseMs: number;
  /** How long a session's row is kept after its expiry; undefined: kept for ever. */
  readonly sessionRetentionMs: number | undefined;
  /** How long a finished job (with an import's failed rows and Idempotency-Key) is kept; undefined: for ever. */
  readonly jobRetentionMs: number | undefined;
  readonly lockoutThreshold: number;
  readonly lockoutDurationMs: number;
  /** Failures of one account from all addresses together that lock the account itself. */
  readonly lockoutAccountThreshold: number;
  /** Failures from one address, against any accounts, that lock that address's sign-ins. */
  readonly lockoutIpThreshold: number;
  /** First step of the progressive sign-in delay (0: none), and its cap. */
  readonly loginDelayMs: number;
  readonly loginDelayMaxMs: number;
  /** Per-address request limits; undefined: not limited. */
  readonly rateLimits: {
    readonly signin: RateLimit | undefined;
    readonly refresh: RateLimit | undefined;
    readonly nodeLogin: RateLimit | undefined;
    readonly tokens: RateLimit | undefined;
  };
  /** Brute-force and rate-limit counters in Redis instead of the store. */
  readonly redisUrl: string | undefined;
  readonly redisKeyPrefix: string;
  readonly passwordMinLength: number;
  /** Live (unrevoked, unexpired) API tokens a user may hold; one more is refused over HTTP. */
  readonly apiTokensPerUser: number;
  readonly argon2: { readonly memoryKiB: number; readonly iterations: number; readonly parallelism: number };
  /** Threads hashing and verifying passwords, at a lower CPU priority than the event loop. */
  readonly hashThreads: number;
  /** Whether GATEHOUSE_HASH_THREADS was set (environment or file): `serve --workers` sizes it otherwise. */
  readonly hashThreadsSet: boolean;
  /** Password operations (not an import's) that may wait for a hashing thread; more answer SERVICE_BUSY. */
  readonly hashQueueLimit: number;
  readonly nodeMinVersion: string | undefined;
  readonly storwareSessionPostStatus: 200 | 201;
  readonly bodyLimitBytes: number;
  /** After SIGTERM: how long `/readyz` answers 503 while requests are still served, before the drain. */
  readonly shutdownDelayMs: number;
  /** A request (its headers and body) must have arrived this long after its first byte, or 408. */
  readonly requestTimeoutMs: number;
  /** How long a kept-alive connection serves before an answer closes it; 0: no limit. */
  readonly connectionMaxAgeMs: number;
  /**
   * Which proxies' `X-Forwarded-*` headers to believe: none (`false`), the nearest N hops, or the
   * proxies at these addresses or CIDR ranges. Never every hop: the left end of X-Forwarded-For is
   * whatever the client wrote there.
   */
  readonly trustProxy: false | number | readonly string[];
  /** Secure flag of the session cookie; `auto`: when the request came over HTTPS (see README). */
  readonly cookieSecure: 'auto' | boolean;
  /** Origins (`scheme://host[:port]`) of other sites whose pages may send state-changing requests. */
  readonly allowedOrigins: readonly string[];
  readonly issuer: string;
  readonly tls: { readonly cert: Buffer; readonly key: Buffer } | undefined;
  readonly logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /** `GET /metrics`: served or not, and the bearer secret a scrape must send (undefined: none). */
  readonly metrics: { readonly enabled: boolean; readonly token: string | undefined };
}

/** At most `limit` requests per `windowMs` from one client address. */
export interface RateLimit {
  readonly limit: number;
  readonly windowMs: number;
}

export class ConfigError extends Error {
  readonly problems: readonly string[];
  constructor(problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

type Source = Readonly<Record<string, string | undefined>>;

/** The documented settings; the README table lists exactly these (a test checks it). */
export const SETTINGS = [
  'GATEHOUSE_CONFIG_FILE',
  'GATEHOUSE_HOST',
  'GATEHOUSE_PORT',
  'GATEHOUSE_DATA_DIR',
  'GATEHOUSE_DATABASE_URL',
  'GATEHOUSE_DATABASE_LISTEN_URL',
  'GATEHOUSE_ADMIN_PASSWORD',
  'GATEHOUSE_MASTER_KEY',
  'GATEHOUSE_SESSION_IDLE_TIMEOUT',
  'GATEHOUSE_SESSION_MAX_LIFETIME',
  'GATEHOUSE_TOKEN_LIFETIME',
  'GATEHOUSE_ENDPOINTS_TOKEN_LIFETIME',
  'GATEHOUSE_REFRESH_GRACE',
  'GATEHOUSE_SESSION_CACHE_TTL',
  'GATEHOUSE_READ_CACHE_TTL',
  'GATEHOUSE_CREDENTIAL_CACHE_TTL',
  'GATEHOUSE_KEY_OVERLAP',
  'GATEHOUSE_JOB_LEASE',
  'GATEHOUSE_SESSION_RETENTION',
  'GATEHOUSE_JOB_RETENTION',
  'GATEHOUSE_LOCKOUT_THRESHOLD',
  'GATEHOUSE_LOCKOUT_DURATION',
  'GATEHOUSE_LOCKOUT_ACCOUNT_THRESHOLD',
  'GATEHOUSE_LOCKOUT_IP_THRESHOLD',
  'GATEHOUSE_LOGIN_DELAY',
  'GATEHOUSE_LOGIN_DELAY_MAX',
  'GATEHOUSE_RATE_LIMIT_SIGNIN',
  'GATEHOUSE_RATE_LIMIT_REFRESH',
  'GATEHOUSE_RATE_LIMIT_NODE_LOGIN',
  'GATEHOUSE_RATE_LIMIT_TOKENS',
  'GATEHOUSE_REDIS_URL',
  'GATEHOUSE_REDIS_KEY_PREFIX',
  'GATEHOUSE_PASSWORD_MIN_LENGTH',
  'GATEHOUSE_API_TOKENS_PER_USER',
  'GATEHOUSE_ARGON2_MEMORY_KIB',
  'GATEHOUSE_ARGON2_ITERATIONS',
  'GATEHOUSE_ARGON2_PARALLELISM',
  'GATEHOUSE_HASH_THREADS',
  'GATEHOUSE_HASH_QUEUE_LIMIT',
  'GATEHOUSE_NODE_MIN_VERSION',
  'GATEHOUSE_STORWARE_SESSION_POST_STATUS',
  'GATEHOUSE_BODY_LIMIT',
  'GATEHOUSE_SHUTDOWN_DELAY',
  'GATEHOUSE_REQUEST_TIMEOUT',
  'GATEHOUSE_CONNECTION_MAX_AGE',
  'GATEHOUSE_PG_PREPARED_STATEMENTS',
  'GATEHOUSE_PG_POOL_SIZE',
  'GATEHOUSE_PG_STATEMENT_TIMEOUT',
  'GATEHOUSE_TRUST_PROXY',
  'GATEHOUSE_COOKIE_SECURE',
  'GATEHOUSE_ALLOWED_ORIGINS',
  'GATEHOUSE_ISSUER',
  'GATEHOUSE_TLS_CERT',
  'GATEHOUSE_TLS_KEY',
  'GATEHOUSE_LOG_LEVEL',
  'GATEHOUSE_METRICS',
  'GATEHOUSE_METRICS_TOKEN',
] as const;

/** GATEHOUSE_HASH_QUEUE_LIMIT's default, per hashing thread. */
export const HASH_QUEUE_PER_THREAD = 256;

const DURATION = /^(\d+)\s*(ms|s|m|h|d)?$/;
const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** "90", "90s", "15m", "12h", "30d" → milliseconds. A bare number is seconds. */
/**
 * The longest duration taken anywhere (settings, CLI options, `expires_in`): 100 years. Longer ones
 * are typing mistakes, and a time that far ahead no longer fits a Date (a session lifetime of a
 * billion days made every session listing a 500).
 */
export const MAX_DURATION_MS = 36_500 * 86_400_000;

export function parseDuration(text: string): number | undefined {
  const match = DURATION.exec(text.trim());
  if (!match) return undefined;
  const unit = (match[2] ?? 's') as keyof typeof UNIT_MS;
  const ms = Number(match[1]) * UNIT_MS[unit];
  return ms <= MAX_DURATION_MS ? ms : undefined;
}

const SIZE = /^(\d+)\s*(b|kb|kib|mb|mib)?$/i;
function parseSize(text: string): number | undefined {
  const match = SIZE.exec(text.trim());
  if (!match) return undefined;
  const unit = (match[2] ?? 'b').toLowerCase();
  const factor = unit === 'b' ? 1 : unit.startsWith('k') ? 1024 : 1024 * 1024;
  return Number(match[1]) * factor;
}

/** "https://Console.example.com:443" → "https://console.example.com"; undefined unless a bare http(s) origin. */
function parseOrigin(text: string): string | undefined {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return undefined;
  }
  const bare = url.pathname === '/' && url.search === '' && url.hash === '';
  if (!bare || (url.protocol !== 'http:' && url.protocol !== 'https:') || url.username || url.password)
    return undefined;
  return url.origin;
}

const RATE_UNITS: Readonly<Record<string, number>> = {
  s: 1000,
  sec: 1000,
  second: 1000,
  m: 60_000,
  min: 60_000,
  minute: 60_000,
  h: 3_600_000,
  hour: 3_600_000,
};

/** "20/min", "20/1m", "100/15m" → a limit; "off" → null; anything else → undefined. */
export function parseRate(text: string): RateLimit | null | undefined {
  const trimmed = text.trim();
  if (trimmed.toLowerCase() === 'off') return null;
  const match = /^(\d+)\s*\/\s*(\S+)$/.exec(trimmed);
  if (!match?.[1] || !match[2]) return undefined;
  const unit = match[2].toLowerCase();
  const windowMs = RATE_UNITS[unit] ?? parseDuration(unit);
  const limit = Number(match[1]);
  if (windowMs === undefined || windowMs < 1000 || limit < 1) return undefined;
  return { limit, windowMs };
}

const VERSION = /^\d+(\.\d+){0,3}$/;
export function isVersion(text: string): boolean {
  return VERSION.test(text);
}

/**
 * Reads the optional JSON config file named by GATEHOUSE_CONFIG_FILE (keys are the same
 * GATEHOUSE_* names); the environment wins over the file.
 */
function mergeSources(env: Source, problems: string[]): Source {
  const file = env.GATEHOUSE_CONFIG_FILE;
  if (!file) return env;
  let fromFile: Record<string, unknown>;
  try {
    fromFile = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch (error) {
    // Not the parser's message: it quotes the text around the mistake, a secret's value among it.
    const reason =
      error instanceof SyntaxError
        ? 'not valid JSON'
        : ((error as NodeJS.ErrnoException).code ?? 'unreadable');
    problems.push(`GATEHOUSE_CONFIG_FILE: cannot read ${file} as JSON (${reason})`);
    return env;
  }
  if (fromFile === null || typeof fromFile !== 'object' || Array.isArray(fromFile)) {
    problems.push(`GATEHOUSE_CONFIG_FILE: ${file} must hold a JSON object of settings`);
    return env;
  }
  const merged: Record<string, string | undefined> = {};
  for (const [key, value] of Object.entries(fromFile)) {
    if (!(SETTINGS as readonly string[]).includes(key)) {
      const nearest = nearestSetting(key);
      problems.push(`${file}: unknown setting ${key}${nearest ? `; did you mean ${nearest}?` : ''}`);
      continue;
    }
    if (value !== null && typeof value === 'object') {
      problems.push(`${file}: ${key} must be a string, number or boolean`);
      continue;
    }
    merged[key] = value === null ? undefined : String(value);
  }
  // A blank variable is an unset one, as everywhere else here (`raw`): it must not hide the file's
  // value (`VAR=${UNSET}` in a compose file would otherwise switch the store or drop a token).
  return {
    ...merged,
    ...Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v.trim() !== '')),
  };
}

/** Edits (insertions, deletions, substitutions, swaps of neighbours) between two names. */
function editDistance(a: string, b: string): number {
  const rows: number[][] = Array.from({ length: a.length + 1 }, (_, i) =>
    Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  const at = (i: number, j: number): number => rows[i]?.[j] ?? Number.POSITIVE_INFINITY;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(at(i - 1, j) + 1, at(i, j - 1) + 1, at(i - 1, j - 1) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1])
        best = Math.min(best, at(i - 2, j - 2) + 1);
      (rows[i] as number[])[j] = best;
    }
  }
  return at(a.length, b.length);
}

/** The setting a letter or two away from `name` (or `name` in the wrong case), if there is one. */
function nearestSetting(name: string): string | undefined {
  const upper = name.toUpperCase();
  let nearest: string | undefined;
  let nearestDistance = 3;
  for (const setting of SETTINGS) {
    const distance = editDistance(upper, setting);
    if (distance < nearestDistance) [nearest, nearestDistance] = [setting, distance];
  }
  return nearest;
}

/**
 * An environment variable a letter or two away from a setting (or a setting in the wrong case) is
 * a setting mistyped: ignored, it would leave a lockout threshold or a database URL at its default
 * without a word. Other GATEHOUSE_* names (a deployment's own, the test suite's) are left alone.
 */
function misspelledSettings(env: Source, problems: string[]): void {
  for (const name of Object.keys(env)) {
    if (env[name] === undefined || (SETTINGS as readonly string[]).includes(name)) continue;
    if (!name.toUpperCase().startsWith('GATEHOUSE_')) continue;
    const nearest = nearestSetting(name);
    if (nearest !== undefined) problems.push(`${name}: not a setting; did you mean ${nearest}?`);
  }
}

/**
 * What is wrong with a TLS certificate and key read from their files, named by setting, before
 * the server starts: swapped or mismatched, OpenSSL's own words at start named neither.
 */
function certificateAndKeyProblem(cert: Buffer, key: Buffer): string | undefined {
  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(cert);
  } catch {
    return 'GATEHOUSE_TLS_CERT: not a PEM certificate';
  }
  let privateKey: ReturnType<typeof createPrivateKey>;
  try {
    privateKey = createPrivateKey(key);
  } catch {
    return 'GATEHOUSE_TLS_KEY: not a PEM private key (without a passphrase)';
  }
  return certificate.checkPrivateKey(privateKey)
    ? undefined
    : "GATEHOUSE_TLS_KEY: not the private key of GATEHOUSE_TLS_CERT's certificate";
}

/**
 * The shortest overlap that lets every token signed by a replaced key live out its lifetime: the
 * longest token lifetime plus a minute for the processes to hear of the new key.
 */
export function minimumKeyOverlapMs(
  config: Pick<Config, 'tokenLifetimeMs' | 'endpointsTokenLifetimeMs'>,
): number {
  return Math.max(config.tokenLifetimeMs, config.endpointsTokenLifetimeMs) + 60_000;
}

export function loadConfig(env: Source = process.env, cwd: string = process.cwd()): Config {
  const problems: string[] = [];
  misspelledSettings(env, problems);
  const source = mergeSources(env, problems);
  const raw = (name: string): string | undefined => {
    const value = source[name];
    return value === undefined || value.trim() === '' ? undefined : value.trim();
  };

  const integer = (name: string, fallback: number, min: number, max: number): number => {
    const text = raw(name);
    if (text === undefined) return fallback;
    const value = Number(text);
    if (!Number.isInteger(value) || value < min || value > max) {
      problems.push(`${name}: expected an integer from ${min} to ${max}, got "${text}"`);
      return fallback;
    }
    return value;
  };
  const duration = (name: string, fallback: string, minMs: number): number => {
    const text = raw(name) ?? fallback;
    const value = parseDuration(text);
    if (value === undefined || value < minMs) {
      problems.push(
        `${name}: expected a duration such as 90s, 15m, 12h or 30d (at least ${minMs / 1000}s), got "${text}"`,
      );
      return parseDuration(fallback) ?? minMs;
    }
    return value;
  };
  const oneOf = <T extends string>(name: string, allowed: readonly T[], fallback: T): T => {
    const text = raw(name);
    if (text === undefined) return fallback;
    if (!(allowed as readonly string[]).includes(text)) {
      problems.push(`${name}: expected one of ${allowed.join(', ')}, got "${text}"`);
      return fallback;
    }
    return text as T;
  };
  const file = (name: string): Buffer | undefined => {
    const text = raw(name);
    if (text === undefined) return undefined;
    try {
      return readFileSync(path.resolve(cwd, text));
    } catch (error) {
      problems.push(`${name}: cannot read ${text} (${(error as NodeJS.ErrnoException).code ?? 'error'})`);
      return undefined;
    }
  };

  const host = raw('GATEHOUSE_HOST') ?? '127.0.0.1';
  const port = integer('GATEHOUSE_PORT', 8080, 0, 65535);
  const dataDir = path.resolve(cwd, raw('GATEHOUSE_DATA_DIR') ?? 'data');

  const databaseUrl = raw('GATEHOUSE_DATABASE_URL');
  if (databaseUrl !== undefined && !/^postgres(ql)?:\/\//.test(databaseUrl)) {
    problems.push(
      'GATEHOUSE_DATABASE_URL: expected a postgres:// or postgresql:// URL (leave it unset for SQLite)',
    );
  }

  // The change feed's listener needs a server session of its own (LISTEN): a pooler in
  // transaction mode may carry the pool's statements, not the listener's.
  const databaseListenUrl = raw('GATEHOUSE_DATABASE_LISTEN_URL');
  if (databaseListenUrl !== undefined) {
    if (databaseUrl === undefined) {
      problems.push('GATEHOUSE_DATABASE_LISTEN_URL: only with GATEHOUSE_DATABASE_URL (SQLite needs none)');
    } else if (!/^postgres(ql)?:\/\//.test(databaseListenUrl)) {
      problems.push('GATEHOUSE_DATABASE_LISTEN_URL: expected a postgres:// or postgresql:// URL');
    }
  }

  const pgPreparedStatements =
    oneOf('GATEHOUSE_PG_PREPARED_STATEMENTS', ['true', 'false'], 'true') === 'true';
  const pgPoolSize = integer('GATEHOUSE_PG_POOL_SIZE', 10, 1, 1000);
  const pgStatementTimeoutMs = duration('GATEHOUSE_PG_STATEMENT_TIMEOUT', '30s', 1000);
  if (pgStatementTimeoutMs > 60 * 60_000)
    problems.push('GATEHOUSE_PG_STATEMENT_TIMEOUT: must not be longer than 1h');

  const passwordMinLength = integer('GATEHOUSE_PASSWORD_MIN_LENGTH', 12, 8, 128);
  const apiTokensPerUser = integer('GATEHOUSE_API_TOKENS_PER_USER', 100, 1, 100_000);
  const adminPassword = source.GATEHOUSE_ADMIN_PASSWORD || undefined;
  // The user it is for is the bootstrap's root user, `admin` (ADMIN_USERNAME in core/bootstrap.ts).
  const adminPasswordProblem =
    adminPassword === undefined
      ? undefined
      : passwordPolicyProblem(adminPassword, 'admin', { minLength: passwordMinLength });
  if (adminPasswordProblem !== undefined) {
    problems.push(`GATEHOUSE_ADMIN_PASSWORD: ${adminPasswordProblem}`);
  }

  let masterKey: Buffer | undefined;
  const masterKeyText = raw('GATEHOUSE_MASTER_KEY');
  if (masterKeyText !== undefined) {
    const decoded = /^[0-9a-f]{64}$/i.test(masterKeyText)
      ? Buffer.from(masterKeyText, 'hex')
      : Buffer.from(masterKeyText, 'base64');
    if (decoded.length !== 32) {
      problems.push('GATEHOUSE_MASTER_KEY: expected 32 bytes as 64 hex digits or base64');
    } else {
      masterKey = decoded;
    }
  }

  const sessionIdleTimeoutMs = duration('GATEHOUSE_SESSION_IDLE_TIMEOUT', '30m', 10_000);
  const sessionMaxLifetimeMs = duration('GATEHOUSE_SESSION_MAX_LIFETIME', '12h', 10_000);
  if (sessionMaxLifetimeMs < sessionIdleTimeoutMs) {
    problems.push('GATEHOUSE_SESSION_MAX_LIFETIME: must not be shorter than GATEHOUSE_SESSION_IDLE_TIMEOUT');
  }
  const tokenLifetimeMs = duration('GATEHOUSE_TOKEN_LIFETIME', '1h', 10_000);
  const endpointsTokenLifetimeMs = duration('GATEHOUSE_ENDPOINTS_TOKEN_LIFETIME', '5m', 10_000);
  const refreshGraceMs = duration('GATEHOUSE_REFRESH_GRACE', '30s', 0);
  if (refreshGraceMs > 5 * 60_000) {
    // A long grace lets a stolen predecessor ride along unnoticed; minutes defeat reuse detection.
    problems.push('GATEHOUSE_REFRESH_GRACE: must not be longer than 5m');
  }
  // Every token a replaced key signed must outlive its key's overlap, counting the minute other
  // nodes may take to start signing with the new key (KEY_RELOAD_INTERVAL_MS in core/keyring.ts).
  const minKeyOverlapMs = minimumKeyOverlapMs({ tokenLifetimeMs, endpointsTokenLifetimeMs });
  const keyOverlapMs =
    raw('GATEHOUSE_KEY_OVERLAP') === undefined
      ? Math.max(parseDuration('24h') ?? 0, minKeyOverlapMs)
      : duration('GATEHOUSE_KEY_OVERLAP', '24h', 0);
  if (keyOverlapMs < minKeyOverlapMs) {
    problems.push(
      'GATEHOUSE_KEY_OVERLAP: must be at least the longest token lifetime ' +
        '(GATEHOUSE_TOKEN_LIFETIME, GATEHOUSE_ENDPOINTS_TOKEN_LIFETIME) plus 1m',
    );
  }
  // The change feed tells every node of a change within a second; this bounds how long an entry
  // could outlive a change the feed missed (a node that died between its commit and its notify).
  const sessionCacheTtlMs = duration('GATEHOUSE_SESSION_CACHE_TTL', '5s', 0);
  if (sessionCacheTtlMs > 60_000) problems.push('GATEHOUSE_SESSION_CACHE_TTL: must not be longer than 60s');
  const readCacheTtlMs = duration('GATEHOUSE_READ_CACHE_TTL', '5s', 0);
  if (readCacheTtlMs > 60_000) problems.push('GATEHOUSE_READ_CACHE_TTL: must not be longer than 60s');
  const credentialCacheTtlMs = duration('GATEHOUSE_CREDENTIAL_CACHE_TTL', '60s', 0);
  if (credentialCacheTtlMs > 15 * 60_000) {
    problems.push('GATEHOUSE_CREDENTIAL_CACHE_TTL: must not be longer than 15m');
  }
  const jobLeaseMs = duration('GATEHOUSE_JOB_LEASE', '60s', 3000);
  // Renewed every third of it by a timer, which Node caps at 24.8 days; nobody waits that long anyway.
  if (jobLeaseMs > 60 * 60_000) problems.push('GATEHOUSE_JOB_LEASE: must not be longer than 1h');
  /** A duration of at least `min`, or `off` (undefined). */
  const durationOrOff = (name: string, fallback: string, min: string): number | undefined => {
    const text = raw(name) ?? fallback;
    if (text.toLowerCase() === 'off') return undefined;
    const value = parseDuration(text);
    if (value === undefined || value < (parseDuration(min) ?? 0)) {
      problems.push(
        `${name}: expected a duration such as 90s, 15m, 12h or 30d (at least ${min}), or off, got "${text}"`,
      );
      return parseDuration(fallback);
    }
    return value;
  };
  const sessionRetentionMs = durationOrOff('GATEHOUSE_SESSION_RETENTION', '7d', '0s');
  // A client polls its job after the 202: a finished job must outlive any sensible polling.
  const jobRetentionMs = durationOrOff('GATEHOUSE_JOB_RETENTION', '30d', '1h');
  const lockoutThreshold = integer('GATEHOUSE_LOCKOUT_THRESHOLD', 5, 1, 1000);
  const lockoutDurationMs = duration('GATEHOUSE_LOCKOUT_DURATION', '15m', 1000);
  // One address adds at most 2·threshold-1 failures to an account within a window (the end of
  // one window and the start of the next): below twice the pair threshold, a single-address
  // attack could lock the real user out everywhere.
  const lockoutAccountThreshold = integer(
    'GATEHOUSE_LOCKOUT_ACCOUNT_THRESHOLD',
    4 * lockoutThreshold,
    1,
    1_000_000,
  );
  if (lockoutAccountThreshold < 2 * lockoutThreshold) {
    problems.push(
      'GATEHOUSE_LOCKOUT_ACCOUNT_THRESHOLD: must be at least twice GATEHOUSE_LOCKOUT_THRESHOLD ' +
        `(${2 * lockoutThreshold}), or one address could lock the account for everyone`,
    );
  }
  const lockoutIpThreshold = integer(
    'GATEHOUSE_LOCKOUT_IP_THRESHOLD',
    Math.max(100, lockoutThreshold),
    1,
    1_000_000,
  );
  if (lockoutIpThreshold < lockoutThreshold) {
    problems.push('GATEHOUSE_LOCKOUT_IP_THRESHOLD: must not be below GATEHOUSE_LOCKOUT_THRESHOLD');
  }
  const loginDelayMs = duration('GATEHOUSE_LOGIN_DELAY', '100ms', 0);
  const loginDelayMaxMs = duration('GATEHOUSE_LOGIN_DELAY_MAX', '3s', 0);
  if (loginDelayMaxMs > 60_000) problems.push('GATEHOUSE_LOGIN_DELAY_MAX: must not be longer than 60s');
  const rate = (name: string, fallback: string): RateLimit | undefined => {
    const text = raw(name) ?? fallback;
    const parsed = parseRate(text);
    if (parsed === undefined) {
      problems.push(`${name}: expected requests per period such as 20/min, 100/15m or off, got "${text}"`);
      return parseRate(fallback) ?? undefined;
    }
    return parsed ?? undefined;
  };
  const rateLimits = Object.freeze({
    signin: rate('GATEHOUSE_RATE_LIMIT_SIGNIN', '30/min'),
    refresh: rate('GATEHOUSE_RATE_LIMIT_REFRESH', '60/min'),
    nodeLogin: rate('GATEHOUSE_RATE_LIMIT_NODE_LOGIN', '60/min'),
    tokens: rate('GATEHOUSE_RATE_LIMIT_TOKENS', '30/min'),
  });
  const redisUrl = raw('GATEHOUSE_REDIS_URL');
  if (redisUrl !== undefined && !/^rediss?:\/\//.test(redisUrl)) {
    problems.push(
      'GATEHOUSE_REDIS_URL: expected a redis:// or rediss:// URL (leave it unset to count in the store)',
    );
  }
  const redisKeyPrefix = raw('GATEHOUSE_REDIS_KEY_PREFIX') ?? 'gatehouse:';

  const argon2 = {
    memoryKiB: integer('GATEHOUSE_ARGON2_MEMORY_KIB', 19456, 1024, 4 * 1024 * 1024),
    iterations: integer('GATEHOUSE_ARGON2_ITERATIONS', 2, 1, 100),
    parallelism: integer('GATEHOUSE_ARGON2_PARALLELISM', 1, 1, 16),
  };
  const hashThreads = integer('GATEHOUSE_HASH_THREADS', availableParallelism(), 1, 256);
  const hashThreadsSet = raw('GATEHOUSE_HASH_THREADS') !== undefined;
  // ~4 s of waiting at the default argon2 settings (~15 ms a verification on a core here): within
  // the timeouts of the clients, short of an unbounded queue in a storm that does not end.
  const hashQueueLimit =
    raw('GATEHOUSE_HASH_QUEUE_LIMIT')?.trim().toLowerCase() === 'off'
      ? Number.POSITIVE_INFINITY
      : integer('GATEHOUSE_HASH_QUEUE_LIMIT', HASH_QUEUE_PER_THREAD * hashThreads, 1, 1_000_000);

  const nodeMinVersion = raw('GATEHOUSE_NODE_MIN_VERSION');
  if (nodeMinVersion !== undefined && !isVersion(nodeMinVersion)) {
    problems.push(`GATEHOUSE_NODE_MIN_VERSION: expected a version such as 5.1.0, got "${nodeMinVersion}"`);
  }

  const storwareSessionPostStatus = Number(
    oneOf('GATEHOUSE_STORWARE_SESSION_POST_STATUS', ['201', '200'], '201'),
  ) as 200 | 201;

  const bodyLimitText = raw('GATEHOUSE_BODY_LIMIT') ?? '64kib';
  const bodyLimitBytes = parseSize(bodyLimitText);
  if (bodyLimitBytes === undefined || bodyLimitBytes < 1024 || bodyLimitBytes > 64 * 1024 * 1024) {
    problems.push(
      `GATEHOUSE_BODY_LIMIT: expected a size from 1kib to 64mib such as 64kib, got "${bodyLimitText}"`,
    );
  }

  const shutdownDelayMs = duration('GATEHOUSE_SHUTDOWN_DELAY', '0s', 0);
  if (shutdownDelayMs > 5 * 60_000) problems.push('GATEHOUSE_SHUTDOWN_DELAY: must not be longer than 5m');
  const requestTimeoutMs = duration('GATEHOUSE_REQUEST_TIMEOUT', '60s', 1000);
  if (requestTimeoutMs > 60 * 60_000) problems.push('GATEHOUSE_REQUEST_TIMEOUT: must not be longer than 1h');
  // A client that keeps its connections alive (a balancer's pool, a console's agent) otherwise
  // stays for good on the process and node it first reached, and never spreads to a worker that
  // replaced one or a node added (found by a soak review: a replaced worker served 12 requests in
  // 5.5 minutes against 54,542 for the other, which held every connection). The security-headers
  // hook ends a connection this old with its next answer. 0 reads as off too: no age, no limit.
  const connectionMaxAgeMs =
    raw('GATEHOUSE_CONNECTION_MAX_AGE') === '0'
      ? 0
      : (durationOrOff('GATEHOUSE_CONNECTION_MAX_AGE', '60s', '1s') ?? 0);
  if (connectionMaxAgeMs > 24 * 3_600_000)
    problems.push('GATEHOUSE_CONNECTION_MAX_AGE: must not be longer than 24h (or off)');
  const trustProxy = parseTrustProxy(raw('GATEHOUSE_TRUST_PROXY'), problems);
  const cookieSecureText = oneOf('GATEHOUSE_COOKIE_SECURE', ['auto', 'true', 'false'], 'auto');
  const cookieSecure = cookieSecureText === 'auto' ? 'auto' : cookieSecureText === 'true';
  const allowedOrigins: string[] = [];
  for (const entry of (raw('GATEHOUSE_ALLOWED_ORIGINS') ?? '').split(',')) {
    const text = entry.trim();
    if (text === '') continue;
    const origin = parseOrigin(text);
    if (origin === undefined) {
      problems.push(
        `GATEHOUSE_ALLOWED_ORIGINS: expected origins such as https://console.example.com, got "${text}"`,
      );
    } else {
      allowedOrigins.push(origin);
    }
  }
  const issuer = raw('GATEHOUSE_ISSUER') ?? 'gatehouse';

  const cert = file('GATEHOUSE_TLS_CERT');
  const key = file('GATEHOUSE_TLS_KEY');
  if ((raw('GATEHOUSE_TLS_CERT') === undefined) !== (raw('GATEHOUSE_TLS_KEY') === undefined)) {
    problems.push('GATEHOUSE_TLS_CERT and GATEHOUSE_TLS_KEY: set both or neither');
  }
  const tlsProblem = cert && key ? certificateAndKeyProblem(cert, key) : undefined;
  if (tlsProblem) problems.push(tlsProblem);

  const logLevel = oneOf(
    'GATEHOUSE_LOG_LEVEL',
    ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const,
    'info',
  );

  const metricsEnabled = oneOf('GATEHOUSE_METRICS', ['on', 'off'], 'on') === 'on';
  const metricsToken = raw('GATEHOUSE_METRICS_TOKEN');
  if (metricsToken !== undefined && !/^[\x21-\x7e]{16,256}$/.test(metricsToken)) {
    // Sent as `Authorization: Bearer <token>`: printable, no spaces, long enough not to be guessed.
    problems.push('GATEHOUSE_METRICS_TOKEN: expected 16 to 256 printable characters without spaces');
  }

  if (problems.length > 0) throw new ConfigError(problems);

  return Object.freeze({
    host,
    port,
    dataDir,
    databaseUrl,
    databaseListenUrl,
    pgPreparedStatements,
    pgPoolSize,
    pgStatementTimeoutMs,
    adminPassword,
    masterKey,
    sessionIdleTimeoutMs,
    sessionMaxLifetimeMs,
    tokenLifetimeMs,
    endpointsTokenLifetimeMs,
    refreshGraceMs,
    keyOverlapMs,
    sessionCacheTtlMs,
    readCacheTtlMs,
    credentialCacheTtlMs,
    jobLeaseMs,
    sessionRetentionMs,
    jobRetentionMs,
    lockoutThreshold,
    lockoutDurationMs,
    lockoutAccountThreshold,
    lockoutIpThreshold,
    loginDelayMs,
    loginDelayMaxMs,
    rateLimits,
    redisUrl,
    redisKeyPrefix,
    passwordMinLength,
    apiTokensPerUser,
    argon2: Object.freeze(argon2),
    hashThreads,
    hashThreadsSet,
    hashQueueLimit,
    nodeMinVersion,
    storwareSessionPostStatus,
    bodyLimitBytes: bodyLimitBytes ?? 65536,
    shutdownDelayMs,
    requestTimeoutMs,
    connectionMaxAgeMs,
    trustProxy,
    cookieSecure,
    allowedOrigins: Object.freeze(allowedOrigins),
    issuer,
    tls: cert && key ? Object.freeze({ cert, key }) : undefined,
    logLevel,
    metrics: Object.freeze({ enabled: metricsEnabled, token: metricsToken }),
  });
}

/** proxy-addr's names for ranges, as Fastify takes them. */
const PROXY_RANGE_NAMES: ReadonlySet<string> = new Set(['loopback', 'linklocal', 'uniquelocal']);

/**
 * `GATEHOUSE_TRUST_PROXY`: `false`; `true` (the one proxy in front, as 1); a hop count; or the
 * proxies' addresses, CIDR ranges and range names, comma-separated.
 */
function parseTrustProxy(text: string | undefined, problems: string[]): false | number | readonly string[] {
  if (text === undefined || text === 'false') return false;
  if (text === 'true') return 1;
  if (/^\d+$/.test(text)) {
    const hops = Number(text);
    if (hops >= 1 && hops <= 10) return hops;
  } else {
    const entries = text.split(',').map((entry) => entry.trim());
    const bad = entries.filter((entry) => {
      if (PROXY_RANGE_NAMES.has(entry)) return false;
      const [address = '', prefix, ...rest] = entry.split('/');
      const family = isIP(address);
      if (family === 0 || rest.length > 0) return true;
      if (prefix === undefined) return false;
      return !/^\d+$/.test(prefix) || Number(prefix) > (family === 4 ? 32 : 128);
    });
    if (bad.length === 0) return entries;
    problems.push(
      `GATEHOUSE_TRUST_PROXY: not an address, a CIDR range or loopback/linklocal/uniquelocal: ${bad
        .map((entry) => `"${entry.slice(0, 64)}"`)
        .join(', ')}`,
    );
    return false;
  }
  problems.push(
    `GATEHOUSE_TRUST_PROXY: expected false, true, a hop count from 1 to 10, or proxy addresses and CIDR ranges, got "${text.slice(0, 64)}"`,
  );
  return false;
}
