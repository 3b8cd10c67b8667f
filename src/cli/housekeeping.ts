import type { Command } from 'commander';
import { type CliIo, withCore } from './context.js';

const counted = (n: number) => n.toLocaleString('en-US');

export function registerHousekeepingCommand(program: Command, io: CliIo): void {
  program
    .command('housekeeping')
    .description(
      'delete long-expired sessions and long-finished jobs now, as every server does every 10 minutes (GATEHOUSE_SESSION_RETENTION, GATEHOUSE_JOB_RETENTION)',
    )
    .action(async () => {
      await withCore(io, async (core) => {
        const deleted = await core.housekeeping.sweep();
        const out = (line: string) => io.stdout.write(`${line}\n`);
        out(
          core.config.sessionRetentionMs === undefined
            ? 'Sessions: kept for ever (GATEHOUSE_SESSION_RETENTION=off)'
            : `Sessions: ${counted(deleted.sessions)} deleted`,
        );
        out(
          core.config.jobRetentionMs === undefined
            ? 'Jobs: kept for ever (GATEHOUSE_JOB_RETENTION=off)'
            : `Jobs: ${counted(deleted.jobs)} deleted`,
        );
      });
    });
}
