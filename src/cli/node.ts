import type { Command } from 'commander';
import {
  auditCliChange,
  type CliIo,
  PASSWORD_HELP,
  type PasswordOptions,
  readPassword,
  withCore,
} from './context.js';

interface NodeCreateOptions extends PasswordOptions {
  readonly login: string;
}

export function registerNodeCommands(program: Command, io: CliIo): void {
  const node = program.command('node').description('manage backup-node agent accounts');
  node
    .command('create')
    .description('create a backup-node account')
    .requiredOption('--login <login>', 'login name of the node (unique, case-insensitive)')
    .option('--password <password>', PASSWORD_HELP.password)
    .option('--password-stdin', PASSWORD_HELP.passwordStdin)
    .action(async (options: NodeCreateOptions, command: Command) => {
      const password = await readPassword(command, io, options);
      const created = await withCore(io, async (core) => {
        const node = await core.accounts.createNode({ login: options.login, password });
        await auditCliChange(core, 'node.create', { type: 'node', id: node.id, name: node.login });
        return node;
      });
      io.stdout.write(`Created node ${created.login} (id ${created.id})\n`);
    });
}
