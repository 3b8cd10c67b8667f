import cluster from 'node:cluster';
import { availableParallelism } from 'node:os';
import { type Command, InvalidArgumentError } from 'commander';
import { pino } from 'pino';
import { loadConfig } from '../config.js';
import type { CliIo } from './context.js';

function workerCount(value: string): number {
  const count = Number(value);
  if (!Number.isInteger(count) || count < 1 || count > 256) {
    throw new InvalidArgumentError('Expected a whole number of processes from 1 to 256.');
  }
  return count;
}

export function registerServeCommand(program: Command, io: CliIo): void {
  program
    .command('serve')
    .description('run the HTTP server (same as npm start); stops gracefully on SIGTERM or SIGINT')
    .option(
      '--workers <n>',
      'server processes sharing the port and the store (default: the number of cores)',
      workerCount,
    )
    .action(async (options: { workers?: number }) => {
      const config = loadConfig(io.env, io.cwd);
      const workers = options.workers ?? availableParallelism();
      if (cluster.isPrimary && workers > 1) {
        const { runPrimary } = await import('../workers.js');
        // The cores' hashing is shared among the processes unless the operator sized it.
        const workerEnv: Record<string, string> = {};
        if (!config.hashThreadsSet) {
          workerEnv.GATEHOUSE_HASH_THREADS = String(
            Math.max(1, Math.round(availableParallelism() / workers)),
          );
        }
        // Its lines go where its workers' go (Fastify's pino, standard output), marked as the primary's.
        const log = pino({ level: config.logLevel }).child({ role: 'primary' });
        await runPrimary(config, workers, log, workerEnv);
        return;
      }
      // Loaded on use: the admin commands and `--help` do without the HTTP stack.
      const { startServer } = await import('../server.js');
      // The signal's handlers come before the start: a signal between the listening socket and
      // them would otherwise end the process at once; one that comes during the start closes the
      // server as soon as it has started.
      let stopSignal: NodeJS.Signals | undefined;
      let signalled: (signal: NodeJS.Signals) => void = (signal) => {
        stopSignal = signal;
      };
      const shutdown = (signal: NodeJS.Signals) => {
        // Further signals (a worker gets the terminal's SIGINT and its primary's SIGTERM) wait
        // for the same drain instead of cutting it short.
        process.off('SIGTERM', shutdown);
        process.off('SIGINT', shutdown);
        process.on('SIGTERM', () => {});
        process.on('SIGINT', () => {});
        signalled(signal);
      };
      process.once('SIGTERM', shutdown);
      process.once('SIGINT', shutdown);
      const server = await startServer(config);
      // Resolves once a signal has drained the server and closed the store, so the CLI exits 0.
      await new Promise<void>((resolve, reject) => {
        signalled = (signal) => {
          server.app.log.info({ signal }, 'shutting down');
          server.close().then(resolve, reject);
        };
        if (stopSignal) signalled(stopSignal);
      });
    });
}
