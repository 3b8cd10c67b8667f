import cluster from 'node:cluster';
import { setTimeout as sleep } from 'node:timers/promises';
import type { FastifyInstance } from 'fastify';
import { buildApp } from './app.js';
import { clusterMetricsClient } from './cluster-metrics.js';
import type { Config } from './config.js';
import { createCore } from './core/index.js';
import { handOverGeneratedPassword } from './generated-password.js';
import { connectStore, storeOptionsOf } from './store/connect.js';

export interface RunningServer {
  readonly app: FastifyInstance;
  readonly url: string;
  close(): Promise<void>;
}

/** During a drain, how often connections fallen idle since its start are closed. */
const IDLE_CLOSE_MS = 100;

/** config → store (migrated) → core (bootstrapped) → app → listen. */
export async function startServer(config: Config): Promise<RunningServer> {
  const store = connectStore(storeOptionsOf(config));
  try {
    await store.migrate();
    const core = await createCore({ config, store });
    const boot = await core.bootstrap();
    if (boot.generatedAdminPassword)
      handOverGeneratedPassword(boot.generatedAdminPassword, config.dataDir, process.stdout);
    let shuttingDown = false;
    // A worker of `serve --workers N` answers /metrics for the whole node, through its primary.
    const app = await buildApp({
      core,
      shuttingDown: () => shuttingDown,
      ...(cluster.isWorker ? { metricsText: clusterMetricsClient(core.metrics.registry) } : {}),
    });
    store.observeWarnings((message) => app.log.warn(message));
    const url = await app.listen({ host: config.host, port: config.port }).catch(async (error: unknown) => {
      await app.close().catch(() => {});
      await core.close().catch(() => {});
      throw listenError(config, error);
    });
    core.jobRunner.observeUnexpectedFailures((job, error) =>
      app.log.error({ err: error, jobId: job.id, action: job.action }, 'a job failed on an unexpected error'),
    );
    core.jobRunner.watch();
    core.housekeeping.watch({
      onSweep: (deleted) =>
        app.log.info({ deleted }, 'housekeeping: expired sessions and finished jobs deleted'),
      onError: (error, task) =>
        app.log.warn(
          { err: error },
          `housekeeping: ${task === 'sweep' ? 'sweep' : 'check of lent API tokens'} failed; trying again later`,
        ),
      onLentTokensEnded: (tokens) =>
        app.log.warn(
          { tokens },
          'housekeeping: sessions of API tokens whose maker no longer manages their user ended (changes made at the same moment had each left them)',
        ),
    });
    let closing: Promise<void> | undefined;
    return {
      app,
      url,
      close: () => {
        // Readiness fails at once and requests are still served for the delay, so that a load
        // balancer stops sending before the port closes; then drain in-flight requests (those
        // waiting on another change give up), then running jobs, then release the store.
        if (!shuttingDown && config.shutdownDelayMs > 0) {
          app.log.info(
            { delayMs: config.shutdownDelayMs },
            'readiness now answers 503; still serving until the shutdown delay has passed',
          );
        }
        shuttingDown = true;
        closing ??= sleep(config.shutdownDelayMs)
          .then(() => {
            core.stopWaiting();
            // Node closes the connections idle when the drain begins. One whose request is still
            // in flight stays open after its answer, kept alive (Fastify's 72 s) unless closed
            // when it falls idle, and the drain waited for it.
            const closeIdle = setInterval(() => app.server.closeIdleConnections(), IDLE_CLOSE_MS);
            return app.close().finally(() => clearInterval(closeIdle));
          })
          .then(() => core.close())
          .then(() => store.destroy());
        return closing;
      },
    };
  } catch (error) {
    await store.destroy().catch(() => {});
    throw error;
  }
}

const LISTEN_FAILURES: Record<string, string> = {
  EADDRINUSE: 'another program holds that port',
  EACCES: 'not permitted (a port below 1024 needs privileges)',
  EADDRNOTAVAIL: 'this machine has no such address',
  // Before the listen: the host's name did not resolve (not the store's, whatever the code says).
  ENOTFOUND: 'no such host name',
  EAI_AGAIN: 'the host name could not be resolved now',
};

/** Why the server cannot listen, in the operator's terms and naming the settings to change. */
function listenError(config: Config, error: unknown): unknown {
  const reason = LISTEN_FAILURES[(error as NodeJS.ErrnoException | null)?.code ?? ''];
  if (reason === undefined) return error;
  return new Error(
    `cannot listen on ${config.host}:${config.port}: ${reason} (GATEHOUSE_HOST, GATEHOUSE_PORT)`,
    { cause: error },
  );
}
