import type { Command } from 'commander';
import { type CliIo, withCore } from './context.js';

interface RegionCreateOptions {
  readonly name: string;
  readonly description?: string;
}

export function registerRegionCommands(program: Command, io: CliIo): void {
  const region = program.command('region').description('manage regions (sites)');
  region
    .command('create')
    .description('create a region')
    .requiredOption('--name <name>', 'region name, such as au-east1')
    .option('--description <text>', 'description, such as Sydney')
    .action(async (options: RegionCreateOptions) => {
      const created = await withCore(io, (core) =>
        core.catalog.createRegion({ name: options.name, description: options.description }),
      );
      io.stdout.write(`Created region ${created.name} (id ${created.id})\n`);
    });
}
