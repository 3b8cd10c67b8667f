import { readFileSync } from 'node:fs';
import path from 'node:path';

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
  readonly adminPassword: string | undefined;
  /** 32-byte key that encrypts signing keys at rest; absent: `<dataDir>/master.key`. */
  readonly masterKey: Buffer | undefined;
  readonly sessionIdleTimeoutMs: number;
  readonly sessionMaxLifetimeMs: number;
  readonly tokenLifetimeMs: number;
  readonly endpointsTokenLifetimeMs: number;
  readonly lockoutThreshold: number;
  readonly lockoutDurationMs: number;
  readonly passwordMinLength: number;
  readonly argon2: { readonly memoryKiB: number; readonly iterations: number; readonly parallelism: number };
  readonly nodeMinVersion: string | undefined;
  readonly storwareSessionPostStatus: 200 | 201;
  readonly bodyLimitBytes: number;
  readonly trustProxy: boolean;
  readonly issuer: string;
  readonly tls: { readonly cert: Buffer; readonly key: Buffer } | undefined;
  readonly logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
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
  'GATEHOUSE_ADMIN_PASSWORD',
  'GATEHOUSE_MASTER_KEY',
  'GATEHOUSE_SESSION_IDLE_TIMEOUT',
  'GATEHOUSE_SESSION_MAX_LIFETIME',
  'GATEHOUSE_TOKEN_LIFETIME',
  'GATEHOUSE_ENDPOINTS_TOKEN_LIFETIME',
  'GATEHOUSE_LOCKOUT_THRESHOLD',
  'GATEHOUSE_LOCKOUT_DURATION',
  'GATEHOUSE_PASSWORD_MIN_LENGTH',
  'GATEHOUSE_ARGON2_MEMORY_KIB',
  'GATEHOUSE_ARGON2_ITERATIONS',
  'GATEHOUSE_ARGON2_PARALLELISM',
  'GATEHOUSE_NODE_MIN_VERSION',
  'GATEHOUSE_STORWARE_SESSION_POST_STATUS',
  'GATEHOUSE_BODY_LIMIT',
  'GATEHOUSE_TRUST_PROXY',
  'GATEHOUSE_ISSUER',
  'GATEHOUSE_TLS_CERT',
  'GATEHOUSE_TLS_KEY',
  'GATEHOUSE_LOG_LEVEL',
] as const;

const DURATION = /^(\d+)\s*(ms|s|m|h|d)?$/;
const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** "90", "90s", "15m", "12h", "30d" → milliseconds. A bare number is seconds. */
export function parseDuration(text: string): number | undefined {
  const match = DURATION.exec(text.trim());
  if (!match) return undefined;
  const unit = (match[2] ?? 's') as keyof typeof UNIT_MS;
  return Number(match[1]) * UNIT_MS[unit];
}

const SIZE = /^(\d+)\s*(b|kb|kib|mb|mib)?$/i;
function parseSize(text: string): number | undefined {
  const match = SIZE.exec(text.trim());
  if (!match) return undefined;
  const unit = (match[2] ?? 'b').toLowerCase();
  const factor = unit === 'b' ? 1 : unit.startsWith('k') ? 1024 : 1024 * 1024;
  return Number(match[1]) * factor;
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
    problems.push(`GATEHOUSE_CONFIG_FILE: cannot read ${file} as JSON (${(error as Error).message})`);
    return env;
  }
  const merged: Record<string, string | undefined> = {};
  for (const [key, value] of Object.entries(fromFile)) {
    if (!(SETTINGS as readonly string[]).includes(key)) {
      problems.push(`${file}: unknown setting ${key}`);
      continue;
    }
    if (value !== null && typeof value === 'object') {
      problems.push(`${file}: ${key} must be a string, number or boolean`);
      continue;
    }
    merged[key] = value === null ? undefined : String(value);
  }
  return { ...merged, ...Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined)) };
}

export function loadConfig(env: Source = process.env, cwd: string = process.cwd()): Config {
  const problems: string[] = [];
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

  const passwordMinLength = integer('GATEHOUSE_PASSWORD_MIN_LENGTH', 12, 8, 128);
  const adminPassword = source.GATEHOUSE_ADMIN_PASSWORD || undefined;
  if (adminPassword !== undefined && adminPassword.length < passwordMinLength) {
    problems.push(`GATEHOUSE_ADMIN_PASSWORD: must be at least ${passwordMinLength} characters`);
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
  const lockoutThreshold = integer('GATEHOUSE_LOCKOUT_THRESHOLD', 5, 1, 1000);
  const lockoutDurationMs = duration('GATEHOUSE_LOCKOUT_DURATION', '15m', 1000);

  const argon2 = {
    memoryKiB: integer('GATEHOUSE_ARGON2_MEMORY_KIB', 19456, 1024, 4 * 1024 * 1024),
    iterations: integer('GATEHOUSE_ARGON2_ITERATIONS', 2, 1, 100),
    parallelism: integer('GATEHOUSE_ARGON2_PARALLELISM', 1, 1, 16),
  };

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

  const trustProxy = oneOf('GATEHOUSE_TRUST_PROXY', ['true', 'false'], 'false') === 'true';
  const issuer = raw('GATEHOUSE_ISSUER') ?? 'gatehouse';

  const cert = file('GATEHOUSE_TLS_CERT');
  const key = file('GATEHOUSE_TLS_KEY');
  if ((raw('GATEHOUSE_TLS_CERT') === undefined) !== (raw('GATEHOUSE_TLS_KEY') === undefined)) {
    problems.push('GATEHOUSE_TLS_CERT and GATEHOUSE_TLS_KEY: set both or neither');
  }

  const logLevel = oneOf(
    'GATEHOUSE_LOG_LEVEL',
    ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const,
    'info',
  );

  if (problems.length > 0) throw new ConfigError(problems);

  return Object.freeze({
    host,
    port,
    dataDir,
    databaseUrl,
    adminPassword,
    masterKey,
    sessionIdleTimeoutMs,
    sessionMaxLifetimeMs,
    tokenLifetimeMs,
    endpointsTokenLifetimeMs,
    lockoutThreshold,
    lockoutDurationMs,
    passwordMinLength,
    argon2: Object.freeze(argon2),
    nodeMinVersion,
    storwareSessionPostStatus,
    bodyLimitBytes: bodyLimitBytes ?? 65536,
    trustProxy,
    issuer,
    tls: cert && key ? Object.freeze({ cert, key }) : undefined,
    logLevel,
  });
}
