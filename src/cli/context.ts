import { existsSync } from 'node:fs';
import path from 'node:path';
import type { Readable, Writable } from 'node:stream';
import type { Command } from 'commander';
import { type Config, loadConfig } from '../config.js';
import type { AuditAction } from '../core/audit.js';
import type { BootstrapResult } from '../core/bootstrap.js';
import type { Core } from '../core/index.js';
import { handOverGeneratedPassword } from '../generated-password.js';
import type { Store } from '../store/connect.js';

/** Everything the CLI touches of its process, so that a test can run it in-process. */
export interface CliIo {
  readonly stdin: Readable;
  readonly stdout: Writable;
  readonly stderr: Writable;
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly cwd: string;
}

/** Stops the command as a usage error (exit 2), printed the same way as commander's own. */
export function usageError(command: Command, message: string): never {
  return command.error(message, { exitCode: 2, code: 'gatehouse.usage' });
}

/**
 * Opens the store with the server's settings, runs `work`, and always releases the store, so that
 * a failed command neither hangs on an open pool nor leaves SQLite's WAL unmerged.
 */
export async function withStore<T>(
  io: CliIo,
  work: (store: Store, config: Config) => Promise<T>,
): Promise<T> {
  const config = loadConfig(io.env, io.cwd);
  // Loaded on use: `--help` and usage errors should not pay for the database drivers.
  const { connectStore, storeOptionsOf } = await import('../store/connect.js');
  // A command runs a statement or two at a time: two connections, whatever the servers use.
  const store = connectStore({ ...storeOptionsOf(config), poolSize: Math.min(2, config.pgPoolSize) });
  let result: T;
  try {
    result = await work(store, config);
  } catch (error) {
    // The work's error is the one worth reporting, not a failure to close after it.
    await store.destroy().catch(() => {});
    throw error;
  }
  await store.destroy();
  return result;
}

/**
 * Builds the core over a migrated store and bootstraps it, as the server does at start: a command
 * run on an empty store must leave it in the same state a first `serve` would.
 */
export async function openCore(
  io: CliIo,
  store: Store,
  config: Config,
): Promise<{ core: Core; boot: BootstrapResult }> {
  const { createCore } = await import('../core/index.js');
  const core = await createCore({ config, store, serving: false });
  const boot = await core.bootstrap();
  if (boot.generatedAdminPassword) {
    // stderr: stdout may be piped into another program (token create), and this is for a person.
    handOverGeneratedPassword(boot.generatedAdminPassword, config.dataDir, io.stderr);
  }
  return { core, boot };
}

/**
 * Records a change made from the command line in the audit log, as the system (no signed-in
 * caller), so that the log also shows what an operator did on the machine.
 */
export function auditCliChange(
  core: Core,
  action: AuditAction,
  target: { type: string; id: string; name: string },
  tenantId?: string | null,
): Promise<void> {
  return core.audit.record({
    action,
    actor: undefined,
    target,
    tenantId: tenantId ?? null,
    meta: { ip: '', userAgent: 'gatehouse cli' },
    outcome: 'success',
    reason: 'from the command line',
  });
}

/** Where the data lives, without the credentials a database URL may carry. */
export function describeStore(config: Config): string {
  if (!config.databaseUrl) return `SQLite database ${path.join(config.dataDir, 'gatehouse.db')}`;
  const url = new URL(config.databaseUrl);
  return `PostgreSQL database ${url.pathname.replace(/^\//, '')} on ${url.host}`;
}

/**
 * A command other than `migrate` (and `serve`) works on a store that exists. `GATEHOUSE_DATA_DIR`
 * is relative to the directory the command runs in: run from another one (or with a mistyped
 * database URL), a command made a new store with a new admin and reported success for a change
 * the real store never saw, a password reset or an emergency key rotation among them (found by
 * review).
 */
class NoStoreHere extends Error {
  constructor(config: Config) {
    super(
      `no Gatehouse store in ${describeStore(config)}: run the command where the server runs ` +
        '(GATEHOUSE_DATA_DIR is relative to the current directory) or with its GATEHOUSE_DATABASE_URL; ' +
        '`gatehouse migrate` makes a new store on purpose',
    );
  }
}

/** Config → store (one that exists) → migrations → core → bootstrap → `work` → store closed. */
export function withCore<T>(io: CliIo, work: (core: Core) => Promise<T>): Promise<T> {
  // Checked before connecting: opening a SQLite file that is not there creates it.
  const config = loadConfig(io.env, io.cwd);
  if (!config.databaseUrl && !existsSync(path.join(config.dataDir, 'gatehouse.db'))) {
    return Promise.reject(new NoStoreHere(config));
  }
  return withStore(io, async (store, config) => {
    if (!(await store.initialized())) throw new NoStoreHere(config);
    await store.migrate();
    const { core } = await openCore(io, store, config);
    try {
      return await work(core);
    } finally {
      // Jobs the command started write their outcome before the store closes.
      await core.close();
    }
  });
}

export interface PasswordOptions {
  readonly password?: string | undefined;
  readonly passwordStdin?: boolean | undefined;
}

/**
 * The password from `--password` or, so that it stays out of the process list and shell history,
 * from standard input with `--password-stdin`. One trailing newline is what `echo` and here-strings
 * add; anything else on stdin is part of the password.
 */
export async function readPassword(command: Command, io: CliIo, options: PasswordOptions): Promise<string> {
  if (options.password !== undefined && options.passwordStdin) {
    usageError(command, 'give the password with --password or --password-stdin, not both');
  }
  if (options.password !== undefined) return options.password;
  if (!options.passwordStdin) {
    usageError(command, 'a password is required: give --password <password> or --password-stdin');
  }
  const chunks: Buffer[] = [];
  for await (const chunk of io.stdin) {
    chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer));
  }
  return Buffer.concat(chunks)
    .toString('utf8')
    .replace(/\r?\n$/, '');
}

/** Shared help text of the two password options. */
export const PASSWORD_HELP = {
  password: 'the password (visible in the process list: prefer --password-stdin)',
  passwordStdin: 'read the password from standard input (one trailing newline is removed)',
} as const;
