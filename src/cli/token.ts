import { type Command, InvalidArgumentError } from 'commander';
import { parseDuration } from '../config.js';
import { MAX_API_TOKEN_LIFETIME_MS } from '../core/api-token-admin.js';
import { auditCliChange, type CliIo, withCore } from './context.js';

interface TokenCreateOptions {
  readonly user: string;
  readonly name?: string;
  readonly expiresIn?: number;
}

function durationArgument(text: string): number {
  const ms = parseDuration(text);
  if (ms === undefined || ms <= 0) {
    throw new InvalidArgumentError('Expected a duration such as 90s, 15m, 12h or 30d.');
  }
  if (ms > MAX_API_TOKEN_LIFETIME_MS) {
    throw new InvalidArgumentError(
      'A token may live at most 3650 days; leave --expires-in out for one that does not expire.',
    );
  }
  return ms;
}

export function registerTokenCommands(program: Command, io: CliIo): void {
  const token = program.command('token').description('manage API tokens');
  token
    .command('create')
    .description('issue an API token for a user; prints the token alone on stdout, once')
    .requiredOption('--user <username>', 'the user the token signs in as')
    .option('--name <name>', 'a label to recognise the token by')
    .option('--expires-in <duration>', 'lifetime such as 12h or 30d (default: no expiry)', durationArgument)
    .action(async (options: TokenCreateOptions) => {
      const created = await withCore(io, async (core) => {
        const issued = await core.accounts.createApiToken({
          username: options.user,
          name: options.name,
          expiresInMs: options.expiresIn,
        });
        await auditCliChange(core, 'token.create', {
          type: 'api_token',
          id: issued.id,
          name: options.name ?? 'api token',
        });
        return issued;
      });
      // Only the token on stdout, so that `TOKEN=$(gatehouse token create ...)` captures it alone.
      io.stdout.write(`${created.token}\n`);
      const expiry =
        created.expiresAt === null
          ? 'does not expire'
          : `expires ${new Date(created.expiresAt).toISOString()}`;
      io.stderr.write(
        `Created API token ${created.id} for user ${options.user}; it ${expiry}. It is not shown again.\n`,
      );
    });
}
