import { readFileSync, realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError } from 'commander';
import { ConfigError } from '../config.js';
import { isGatehouseError } from '../errors.js';
import type { CliIo } from './context.js';
import { registerHousekeepingCommand } from './housekeeping.js';
import { registerImportCommand } from './import.js';
import { registerKeysCommands } from './keys.js';
import { registerMigrateCommand } from './migrate.js';
import { registerNodeCommands } from './node.js';
import { registerRegionCommands } from './region.js';
import { registerServeCommand } from './serve.js';
import { registerTenantCommands } from './tenant.js';
import { registerTokenCommands } from './token.js';
import { registerUserCommands } from './user.js';
import { registerZoneCommands } from './zone.js';

export type { CliIo } from './context.js';

/** Exit statuses scripts can rely on. */
export const EXIT = { ok: 0, failed: 1, usage: 2 } as const;

function packageVersion(): string {
  // Same relative place from src/cli and from dist/cli.
  const file = new URL('../../package.json', import.meta.url);
  return (JSON.parse(readFileSync(file, 'utf8')) as { version: string }).version;
}

function buildProgram(io: CliIo): Command {
  const program = new Command('gatehouse')
    .description('Gatehouse identity and session service: run the server and administer it')
    .version(packageVersion(), '-V, --version')
    // Settings set here are copied to every subcommand created after them (commander's inheritance).
    .exitOverride()
    .configureOutput({
      writeOut: (text) => io.stdout.write(text),
      writeErr: (text) => io.stderr.write(text),
      outputError: (text, write) => write(`gatehouse: ${text.replace(/^error: /, '')}`),
    })
    .showHelpAfterError('(add --help for usage)')
    .addHelpText(
      'after',
      '\nSettings come from the GATEHOUSE_* environment variables, as for the server.\n' +
        'Exit status: 0 done, 1 refused or failed, 2 usage or configuration error.',
    );
  registerServeCommand(program, io);
  registerMigrateCommand(program, io);
  registerTenantCommands(program, io);
  registerUserCommands(program, io);
  registerRegionCommands(program, io);
  registerZoneCommands(program, io);
  registerNodeCommands(program, io);
  registerTokenCommands(program, io);
  registerKeysCommands(program, io);
  registerImportCommand(program, io);
  registerHousekeepingCommand(program, io);
  return program;
}

async function describeUnexpected(error: unknown): Promise<string> {
  if (!(error instanceof Error)) return String(error);
  const { isStoreUnavailable } = await import('../store/connect.js');
  const { startupParameterAdvice } = await import('../store/pg-pool.js');
  // A refused TCP connect to localhost is an AggregateError with an empty message.
  const text = error.message || (error as { code?: string }).code || error.name;
  const advice = startupParameterAdvice(error);
  if (advice) return `${text}: ${advice}`;
  return isStoreUnavailable(error) ? `cannot reach the store: ${text}` : text;
}

/**
 * Runs one command line (without `node` and the script) and answers its exit status; never calls
 * process.exit, so that it can run inside a test.
 */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  const program = buildProgram(io);
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return EXIT.ok;
  } catch (error) {
    if (error instanceof CommanderError) {
      // Commander has printed the message or the help already; --help and --version end with 0.
      return error.exitCode === 0 ? EXIT.ok : EXIT.usage;
    }
    if (error instanceof ConfigError) {
      io.stderr.write(`gatehouse: ${error.message}\n`);
      return EXIT.usage;
    }
    if (isGatehouseError(error)) {
      io.stderr.write(`gatehouse: ${error.userMessage}${error.detail ? ` ${error.detail}` : ''}\n`);
      return EXIT.failed;
    }
    io.stderr.write(`gatehouse: ${await describeUnexpected(error)}\n`);
    return EXIT.failed;
  }
}

/** The process entry: `bin/gatehouse.js`, or this file run directly. */
export async function main(): Promise<void> {
  // A reader that stops early (`gatehouse migrate | head -1`) closes the pipe: the command still
  // finishes its work (a migration stopped half-way helps nobody), and what it would have printed
  // goes nowhere, instead of the process dying on EPIPE with a stack trace.
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code !== 'EPIPE') throw error;
    });
  }
  const code = await runCli(process.argv.slice(2), {
    stdin: process.stdin,
    stdout: process.stdout,
    stderr: process.stderr,
    env: process.env,
    cwd: process.cwd(),
  });
  // Let piped output drain before leaving; exiting explicitly means a stray handle cannot hang a script.
  const drained = (stream: NodeJS.WriteStream) =>
    new Promise<void>((resolve) => stream.write('', () => resolve()));
  await Promise.all([drained(process.stdout), drained(process.stderr)]);
  process.exit(code);
}

/** True when Node was started on this file (`node --import tsx src/cli/index.ts`), not importing it. */
function isEntryPoint(): boolean {
  const entry = process.argv[1];
  if (!entry) return false;
  try {
    return realpathSync(entry) === fileURLToPath(import.meta.url);
  } catch {
    return false;
  }
}

if (isEntryPoint()) await main();
