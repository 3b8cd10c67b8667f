import type { Command } from 'commander';
import { type CliIo, describeStore, openCore, withStore } from './context.js';

export function registerMigrateCommand(program: Command, io: CliIo): void {
  program
    .command('migrate')
    .description('bring the store schema up to date and create the built-ins (and the first admin)')
    .action(async () => {
      await withStore(io, async (store, config) => {
        const out = (line: string) => io.stdout.write(`${line}\n`);
        out(`Store: ${describeStore(config)}`);
        const applied = await store.migrate();
        out(applied.length ? `Applied migrations: ${applied.join(', ')}` : 'Schema already up to date');
        const { boot } = await openCore(io, store, config);
        out('Built-in roles and groups are in place');
        out(
          boot.createdAdmin
            ? 'Created tenant "system" and its root user "admin"'
            : 'Users exist already: no admin created',
        );
      });
    });
}
