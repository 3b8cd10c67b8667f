import { createReadStream } from 'node:fs';
import { access } from 'node:fs/promises';
import path from 'node:path';
import { type Command, Option } from 'commander';
import type { ImportFormat } from '../core/user-import.js';
import { type CliIo, usageError, withCore } from './context.js';

interface ImportOptions {
  readonly as: string;
  readonly format?: ImportFormat;
}

const FORMAT_OF_EXTENSION: Record<string, ImportFormat> = {
  '.csv': 'csv',
  '.ndjson': 'ndjson',
  '.jsonl': 'ndjson',
};

/** Failed rows printed after the summary; the job keeps the first 1,000, the database all of them. */
const PRINTED_FAILURES = 20;

export function registerImportCommand(program: Command, io: CliIo): void {
  program
    .command('import')
    .description(
      'import users from a CSV file (header row: username,password,firstName,lastName,displayName,email,phone,tenant_code,role) or an NDJSON file, as the server import job does',
    )
    .argument('<file>', 'the file to import (.csv, .ndjson or .jsonl; otherwise give --format)')
    .option('--as <username>', 'run with the rights of this user (the audit log names it)', 'admin')
    .addOption(new Option('--format <format>', 'the file format').choices(['csv', 'ndjson']))
    .action(async (file: string, options: ImportOptions, command: Command) => {
      const format = options.format ?? FORMAT_OF_EXTENSION[path.extname(file).toLowerCase()];
      if (format === undefined)
        usageError(command, 'cannot tell the format from the file name: give --format');
      const location = path.resolve(io.cwd, file);
      await access(location).catch(() => usageError(command, `cannot read ${file}`));
      const job = await withCore(io, async (core) => {
        const submitted = await core.userImport.submitAs(options.as, createReadStream(location), format);
        // A progress line rewritten in place: for a person watching, hence stderr.
        const done = await core.userImport.follow(submitted.id, (detail) => io.stderr.write(`\r${detail}`));
        io.stderr.write('\n');
        return done;
      });
      for (const task of job.job_tasks.slice(0, PRINTED_FAILURES)) io.stderr.write(`${task.status_detail}\n`);
      if (job.job_tasks.length > PRINTED_FAILURES) {
        io.stderr.write(`... see GET /api/v2.1/jobs/${job.id} for the others\n`);
      }
      io.stdout.write(`job ${job.id}: ${job.status}: ${job.status_detail}\n`);
      if (job.status !== 'successful') {
        throw new Error(job.last_error || `the import ended ${job.status}`);
      }
    });
}
