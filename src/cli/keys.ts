import { type Command, InvalidArgumentError, Option } from 'commander';
import { loadConfig, minimumKeyOverlapMs, parseDuration } from '../config.js';
import { type CliIo, usageError, withCore } from './context.js';

/** Spelled out rather than imported from core/keyring, which would load the store for `--help`. */
const PURPOSES = ['session', 'endpoints'] as const;
type Purpose = (typeof PURPOSES)[number];

interface RotateOptions {
  readonly purpose: Purpose | 'all';
  readonly overlap?: number;
}

function overlapArgument(text: string): number {
  const ms = parseDuration(text);
  if (ms === undefined) throw new InvalidArgumentError('Expected a duration such as 0, 90s, 12h or 1d.');
  return ms;
}

const iso = (ms: number) => new Date(ms).toISOString();

/** A duration as the settings write it: 1h1m, 90s, 1d. */
function spelled(ms: number): string {
  const parts: string[] = [];
  let rest = Math.ceil(ms / 1000);
  for (const [unit, seconds] of [
    ['d', 86_400],
    ['h', 3_600],
    ['m', 60],
    ['s', 1],
  ] as const) {
    if (rest >= seconds) parts.push(`${Math.floor(rest / seconds)}${unit}`);
    rest %= seconds;
  }
  return parts.join('') || '0';
}

export function registerKeysCommands(program: Command, io: CliIo): void {
  const keys = program
    .command('keys')
    .description('signing keys of the session tokens (HS256) and the Endpoints tokens (ES256)');

  keys
    .command('list')
    .description('every signing key with its state; never key material')
    .action(async () => {
      const views = await withCore(io, (core) => core.keyring.list());
      const rows = [
        ['KID', 'PURPOSE', 'ALG', 'CREATED', 'STATE'],
        ...views.map((key) => [
          key.kid,
          key.purpose,
          key.algorithm,
          iso(key.createdAt),
          key.state === 'active'
            ? 'active'
            : key.retiresAt === null
              ? 'verifying'
              : `${key.state === 'verifying' ? 'verifying until' : 'retired'} ${iso(key.retiresAt)}`,
        ]),
      ];
      const widths = rows.reduce<number[]>(
        (max, row) => row.map((cell, column) => Math.max(max[column] ?? 0, cell.length)),
        [],
      );
      for (const row of rows) {
        const line = row.map((cell, column) => cell.padEnd(widths[column] ?? 0)).join('  ');
        io.stdout.write(`${line.trimEnd()}\n`);
      }
    });

  keys
    .command('rotate')
    .description(
      'make a new signing key; the ones it replaces keep verifying for the overlap, then are retired. ' +
        'Running servers sign with the new key within a second.',
    )
    .addOption(
      new Option('--purpose <purpose>', 'which keys to rotate').choices([...PURPOSES, 'all']).default('all'),
    )
    .option(
      '--overlap <duration>',
      'how long the replaced keys (those replaced earlier too) keep verifying (default ' +
        'GATEHOUSE_KEY_OVERLAP, at least the longest token lifetime plus 1m); 0 retires them at once ' +
        'and so ends every token they signed (for a leaked key)',
      overlapArgument,
    )
    .action(async (options: RotateOptions, command: Command) => {
      const shortest = minimumKeyOverlapMs(loadConfig(io.env, io.cwd));
      if (options.overlap !== undefined && options.overlap > 0 && options.overlap < shortest) {
        // Tokens signed just before the rotation would die before their time, as with a setting
        // GATEHOUSE_KEY_OVERLAP refuses: say so rather than end them quietly.
        usageError(
          command,
          `--overlap: 0 (retire the old keys at once, for a leaked key) or at least ${spelled(shortest)} (the longest token lifetime plus 1m)`,
        );
      }
      const purposes = options.purpose === 'all' ? [...PURPOSES] : [options.purpose];
      const { rotated, now } = await withCore(io, async (core) => ({
        rotated: await core.keyring.rotate(purposes, options.overlap),
        now: core.clock.now(),
      }));
      for (const key of rotated) {
        const replaced = key.replaced.length
          ? key.replaced
              .map(
                (old) =>
                  `${old.kid} ${old.retiresAt > now ? `verifies until ${iso(old.retiresAt)}` : 'is retired'}`,
              )
              .join('; ')
          : 'it replaces no key';
        io.stdout.write(`Rotated the ${key.purpose} key: ${key.kid} signs now; ${replaced}\n`);
      }
    });
}
