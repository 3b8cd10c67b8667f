import { ConfigError, loadConfig } from './config.js';
import { startServer } from './server.js';
import { startupParameterAdvice } from './store/pg-pool.js';

/** Entry point of `npm start`: listens, and closes gracefully on SIGTERM/SIGINT. */
async function main(): Promise<void> {
  let config: ReturnType<typeof loadConfig>;
  try {
    config = loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }
  const server = await startServer(config);
  let stopping = false;
  const shutdown = (signal: string) => {
    // A second signal (a second Ctrl-C, an orchestrator repeating itself) must not cut the drain
    // short and drop the requests in flight: it is ignored, as `gatehouse serve` does; SIGKILL forces.
    if (stopping) return;
    stopping = true;
    server.app.log.info({ signal }, 'shutting down');
    server.close().then(
      () => process.exit(0),
      (error: unknown) => {
        server.app.log.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}

main().catch((error: unknown) => {
  const advice = startupParameterAdvice(error);
  process.stderr.write(
    `gatehouse: cannot start: ${(error as Error).message}${advice ? `: ${advice}` : ''}\n`,
  );
  process.exit(1);
});
