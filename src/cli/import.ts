import { createReadStream } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import path from 'node:path';
import { type Command, Option } from 'commander';
import { IMPORT_COLUMNS, type ImportFormat } from '../core/user-import.js';
import { type CliIo, usageError, withCore } from './context.js';

interface ImportOptions {
  readonly as: string;
  readonly format?: ImportFormat;
}

const FORMAT_OF_EXTENSION: Record<string, ImportFormat> = {
  '.csv': 'csv',
  '.ndjson': 'ndjson',
  '.jsonl': 'ndjson',
  '.json': 'json',
};

const BAR_WIDTH = 30;

/** `[#########---------------------]  30% 3,000 of 10,000 users imported` */
function progressBar(progress: number, detail: string): string {
  const filled = Math.round((Math.max(0, Math.min(100, progress)) / 100) * BAR_WIDTH);
  return `[${'#'.repeat(filled)}${'-'.repeat(BAR_WIDTH - filled)}] ${String(Math.round(progress)).padStart(3)}% ${detail}`;
}

/** Failed rows printed after the summary; the job keeps the first 1,000, the database all of them. */
const PRINTED_FAILURES = 20;

export function registerImportCommand(program: Command, io: CliIo): void {
  program
    .command('import')
    .description(
      `import users from a CSV file (header row naming the columns ${IMPORT_COLUMNS.join(',')}), a JSON array or an NDJSON file, as the server import job does`,
    )
    .argument('<file>', 'the file to import (.csv, .json, .ndjson or .jsonl; otherwise give --format)')
    .option('--as <username>', 'run with the rights of this user (the audit log names it)', 'admin')
    .addOption(new Option('--format <format>', 'the file format').choices(['csv', 'json', 'ndjson']))
    .action(async (file: string, options: ImportOptions, command: Command) => {
      const format = options.format ?? FORMAT_OF_EXTENSION[path.extname(file).toLowerCase()];
      if (format === undefined)
        usageError(command, 'cannot tell the format from the file name: give --format');
      const location = path.resolve(io.cwd, file);
      await access(location).catch(() => usageError(command, `cannot read ${file}`));
      if (!(await stat(location)).isFile()) usageError(command, `${file} is not a file`);
      const job = await withCore(io, async (core) => {
        const submitted = await core.userImport.submitAs(options.as, createReadStream(location), format);
        // For a person watching, hence stderr: a bar redrawn in place on a terminal, a line per
        // step of progress when the output goes to a file or a pipe.
        const terminal = (io.stderr as { isTTY?: boolean }).isTTY === true;
        // Ctrl-C (or a SIGTERM) stops the job at its next batch, which records how far it came, and
        // the command reports it as it would any end: killed outright, it left the job running
        // until a server's recovery failed it a lease later. A second signal gets the default
        // action (the process ends by it), as a person pressing Ctrl-C again expects.
        let interrupted = false;
        const interrupt = (signal: NodeJS.Signals) => {
          if (interrupted) {
            process.off('SIGINT', interrupt);
            process.off('SIGTERM', interrupt);
            process.kill(process.pid, signal);
            return;
          }
          interrupted = true;
          io.stderr.write(
            `\ngatehouse: ${signal}: stopping the import after the rows in hand (again to quit at once, leaving the job for a server to fail)\n`,
          );
          void core.jobRunner.drain();
        };
        process.on('SIGINT', interrupt);
        process.on('SIGTERM', interrupt);
        try {
          const done = await core.userImport.follow(submitted.id, (job) => {
            const bar = progressBar(job.progress, job.status_detail);
            io.stderr.write(terminal ? `\r${bar}` : `${bar}\n`);
          });
          if (terminal) io.stderr.write('\n');
          return done;
        } finally {
          process.off('SIGINT', interrupt);
          process.off('SIGTERM', interrupt);
        }
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
