import type { Command } from 'commander';
import { loadConfig } from '../config.js';
import type { CliIo } from './context.js';

export function registerServeCommand(program: Command, io: CliIo): void {
  program
    .command('serve')
    .description('run the HTTP server (same as npm start); stops gracefully on SIGTERM or SIGINT')
    .action(async () => {
      const config = loadConfig(io.env, io.cwd);
      // Loaded on use: the admin commands and `--help` do without the HTTP stack.
      const { startServer } = await import('../server.js');
      const server = await startServer(config);
      // Resolves once a signal has drained the server and closed the store, so the CLI exits 0.
      await new Promise<void>((resolve, reject) => {
        const shutdown = (signal: NodeJS.Signals) => {
          process.off('SIGTERM', shutdown);
          process.off('SIGINT', shutdown);
          server.app.log.info({ signal }, 'shutting down');
          server.close().then(resolve, reject);
        };
        process.once('SIGTERM', shutdown);
        process.once('SIGINT', shutdown);
      });
    });
}
