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
  // The handlers come before the start: a signal between the listening socket and them would
  // otherwise end the process at once (seen in CI: a SIGTERM right after "Server listening").
  let server: Awaited<ReturnType<typeof startServer>> | undefined;
  let stopSignal: string | undefined;
  const close = (started: NonNullable<typeof server>, signal: string) => {
    started.app.log.info({ signal }, 'shutting down');
    started.close().then(
      () => process.exit(0),
      (error: unknown) => {
        started.app.log.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  const shutdown = (signal: string) => {
    // A second signal (a second Ctrl-C, an orchestrator repeating itself) must not cut the drain
    // short and drop the requests in flight: it is ignored, as `gatehouse serve` does; SIGKILL forces.
    if (stopSignal) return;
    stopSignal = signal;
    // Before the server has started, it is closed as soon as it has.
    if (server) close(server, signal);
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
  server = await startServer(config);
  if (stopSignal) close(server, stopSignal);
}

main().catch((error: unknown) => {
  const advice = startupParameterAdvice(error);
  process.stderr.write(
    `gatehouse: cannot start: ${(error as Error).message}${advice ? `: ${advice}` : ''}\n`,
  );
  process.exit(1);
});
