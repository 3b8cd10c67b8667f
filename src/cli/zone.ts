import type { Command } from 'commander';
import { type CliIo, withCore } from './context.js';

interface ZoneCreateOptions {
  readonly name: string;
  readonly region: string;
  readonly description?: string;
}

export function registerZoneCommands(program: Command, io: CliIo): void {
  const zone = program.command('zone').description('manage zones (clusters inside a region)');
  zone
    .command('create')
    .description('create a zone in an existing region')
    .requiredOption('--name <name>', 'zone name, such as au-east1-a')
    .requiredOption('--region <name>', 'the region it belongs to')
    .option('--description <text>', 'description')
    .action(async (options: ZoneCreateOptions) => {
      const created = await withCore(io, (core) =>
        core.catalog.createZone({
          name: options.name,
          regionName: options.region,
          description: options.description,
        }),
      );
      io.stdout.write(`Created zone ${created.name} in region ${created.region} (id ${created.id})\n`);
    });
}
