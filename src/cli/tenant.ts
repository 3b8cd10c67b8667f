import type { Command } from 'commander';
import { auditCliChange, type CliIo, withCore } from './context.js';

interface TenantCreateOptions {
  readonly code: string;
  readonly name: string;
}

export function registerTenantCommands(program: Command, io: CliIo): void {
  const tenant = program.command('tenant').description('manage tenants');
  tenant
    .command('create')
    .description('create a tenant')
    .requiredOption('--code <code>', 'tenant code: lower-case letters, digits and _')
    .requiredOption('--name <name>', 'display name')
    .action(async (options: TenantCreateOptions) => {
      const row = await withCore(io, async (core) => {
        const created = await core.tenants.create({ code: options.code, name: options.name });
        await auditCliChange(
          core,
          'tenant.create',
          { type: 'tenant', id: created.id, name: created.code },
          created.id,
        );
        return created;
      });
      io.stdout.write(`Created tenant ${row.code} "${row.name}" (id ${row.id})\n`);
    });
}
