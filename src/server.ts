import cluster from 'node:cluster';
import type { FastifyInstance } from 'fastify';
import { buildApp } from './app.js';
import { clusterMetricsClient } from './cluster-metrics.js';
import type { Config } from './config.js';
import { createCore } from './core/index.js';
import { connectStore, storeOptionsOf } from './store/connect.js';

export interface RunningServer {
  readonly app: FastifyInstance;
  readonly url: string;
  close(): Promise<void>;
}

/** config → store (migrated) → core (bootstrapped) → app → listen. */
export async function startServer(config: Config): Promise<RunningServer> {
  const store = connectStore(storeOptionsOf(config));
  try {
    await store.migrate();
    const core = await createCore({ config, store });
    const boot = await core.bootstrap();
    if (boot.generatedAdminPassword) {
      // Printed once, straight to the terminal and never through the logger.
      process.stdout.write(
        `\nCreated user "admin" (root of tenant "system") with the generated password:\n\n    ${boot.generatedAdminPassword}\n\nIt is not shown again; change it with \`gatehouse user passwd --username admin\`.\n\n`,
      );
    }
    // A worker of `serve --workers N` answers /metrics for the whole node, through its primary.
    const app = await buildApp(
      cluster.isWorker ? { core, metricsText: clusterMetricsClient(core.metrics.registry) } : { core },
    );
    const url = await app.listen({ host: config.host, port: config.port });
    core.jobRunner.watch();
    core.housekeeping.watch({
      onSweep: (deleted) =>
        app.log.info({ deleted }, 'housekeeping: expired sessions and finished jobs deleted'),
      onError: (error) => app.log.warn({ err: error }, 'housekeeping: sweep failed; trying again later'),
    });
    let closing: Promise<void> | undefined;
    return {
      app,
      url,
      close: () => {
        // Drain in-flight requests, then running jobs, then release the store.
        closing ??= app
          .close()
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
