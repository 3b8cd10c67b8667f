import { type Command, Option } from 'commander';
import type { Role } from '../store/repositories/users.js';
import {
  auditCliChange,
  type CliIo,
  PASSWORD_HELP,
  type PasswordOptions,
  readPassword,
  usageError,
  withCore,
} from './context.js';

interface UserCreateOptions extends PasswordOptions {
  readonly username: string;
  readonly tenant?: string;
  readonly role?: Role;
  readonly firstName?: string;
  readonly lastName?: string;
  readonly displayName?: string;
  readonly email?: string;
  readonly group?: string[];
}

interface UserPasswdOptions extends PasswordOptions {
  readonly username: string;
}

/**
 * Spelled out rather than imported from core/accounts, which would load the database drivers for
 * `--help`; `satisfies` fails the type check if core's roles and this list part ways.
 */
const ROLES = Object.keys({ root: 0, partner: 0, admin: 0, user: 0, read: 0 } satisfies Record<Role, 0>);

const collect = (value: string, previous: string[] | undefined): string[] => [...(previous ?? []), value];

export function registerUserCommands(program: Command, io: CliIo): void {
  const user = program.command('user').description('manage users');

  user
    .command('create')
    .description('create a local user, optionally with a role in a tenant and in RBAC groups')
    .requiredOption('--username <username>', 'login name (unique, case-insensitive)')
    .option('--password <password>', PASSWORD_HELP.password)
    .option('--password-stdin', PASSWORD_HELP.passwordStdin)
    .option('--tenant <code>', 'tenant the user belongs to (needs --role)')
    .addOption(new Option('--role <role>', 'role in the tenant (needs --tenant)').choices(ROLES))
    .option('--first-name <name>', 'first name')
    .option('--last-name <name>', 'last name')
    .option('--display-name <name>', 'display name')
    .option('--email <address>', 'e-mail address')
    .option('--group <name>', 'RBAC group to join, such as "Global Administrators" (repeatable)', collect)
    .action(async (options: UserCreateOptions, command: Command) => {
      if ((options.tenant === undefined) !== (options.role === undefined)) {
        usageError(command, '--tenant and --role go together: give both or neither');
      }
      const password = await readPassword(command, io, options);
      const created = await withCore(io, async (core) => {
        const user = await core.accounts.createUser({
          username: options.username,
          password,
          firstName: options.firstName,
          lastName: options.lastName,
          displayName: options.displayName,
          email: options.email,
          tenantCode: options.tenant,
          role: options.role,
          groups: options.group,
        });
        const tenancy = (await core.store.users.tenancies(user.id))[0];
        await auditCliChange(
          core,
          'user.create',
          { type: 'user', id: user.id, name: user.username },
          tenancy?.tenantId,
        );
        return user;
      });
      const where = options.tenant ? `, ${options.role} of tenant ${options.tenant}` : '';
      const groups = options.group ? `, in ${options.group.map((g) => `"${g}"`).join(', ')}` : '';
      io.stdout.write(`Created user ${created.username} (id ${created.id}${where}${groups})\n`);
    });

  user
    .command('passwd')
    .description(
      "set a user's password; its sessions end, its API tokens are revoked and its sign-in locks cleared",
    )
    .requiredOption('--username <username>', 'the user')
    .option('--password <password>', PASSWORD_HELP.password)
    .option('--password-stdin', PASSWORD_HELP.passwordStdin)
    .action(async (options: UserPasswdOptions, command: Command) => {
      const password = await readPassword(command, io, options);
      await withCore(io, async (core) => {
        const user = await core.accounts.setPassword(options.username, password);
        await auditCliChange(core, 'password.set', { type: 'user', id: user.id, name: user.username });
      });
      io.stdout.write(
        `Set the password of user ${options.username}; their sessions have ended and their API tokens are revoked\n`,
      );
    });

  user
    .command('unlock')
    .description('clear the sign-in locks of a user: its own and those of every address that failed on it')
    .requiredOption('--username <username>', 'the user')
    .action(async (options: { readonly username: string }) => {
      const done = await withCore(io, (core) => core.lockoutAdmin.unlockUsername(options.username));
      io.stdout.write(`Unlocked user ${done.username}: ${done.description}\n`);
    });
}
