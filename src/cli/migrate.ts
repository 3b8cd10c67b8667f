import path from 'node:path';
import type { Command } from 'commander';
import type { Config } from '../config.js';
import { type CliIo, openCore, withStore } from './context.js';

/** Where the data lives, without the credentials a database URL may carry. */
function describeStore(config: Config): string {
  if (!config.databaseUrl) return `SQLite database ${path.join(config.dataDir, 'gatehouse.db')}`;
  const url = new URL(config.databaseUrl);
  return `PostgreSQL database ${url.pathname.replace(/^\//, '')} on ${url.host}`;
}

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
