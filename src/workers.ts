import cluster, { type Worker } from 'node:cluster';
import type { Logger } from 'pino';
import { PrimaryMetrics, serveClusterMetrics } from './cluster-metrics.js';
import type { Config } from './config.js';
import { createCore } from './core/index.js';
import { handOverGeneratedPassword } from './generated-password.js';
import { connectStore, storeOptionsOf } from './store/connect.js';

/**
 * A worker that dies sooner than this after its start failed at start: it is started again after
 * a wait that doubles each time (RETRY_FIRST_MS up to RETRY_MAX_MS) while another worker serves,
 * since what stopped it may pass (the store down for a moment); not at all once none does.
 */
const MIN_UPTIME_MS = 5000;
const RETRY_FIRST_MS = 1000;
const RETRY_MAX_MS = 60_000;

/**
 * The primary of `gatehouse serve --workers N`: migrates and bootstraps the store once (so that a
 * generated admin password is printed once, not N times), then runs N server processes that
 * share one port (node:cluster) and one store; on SQLite they share the file (WAL, waiting for the
 * write lock without stopping the event loop: store/sqlite-lock-wait.ts), on PostgreSQL each has
 * its own pool. A worker that crashes is replaced (one that fails at start, after a wait, while
 * another serves); SIGTERM or SIGINT stops every worker
 * gracefully, then the primary. Resolves when all workers have stopped on request;
 * rejects when they all stopped by themselves.
 */
export async function runPrimary(
  config: Config,
  workers: number,
  /**
   * The primary's events (workers serving, crashed, replaced, stopping) as JSON lines in the same
   * stream and format as its workers' (found by review: plain text on stderr beside JSON on
   * stdout, which a log pipeline parsing JSON dropped or filed without a level, a crash among them).
   */
  log: Logger,
  /** Settings of the workers that differ from the primary's environment. */
  workerEnv: Record<string, string> = {},
): Promise<void> {
  // The signals' handlers come first: one during the migration and bootstrap (the generated
  // password just printed, say) would otherwise end the primary at once. It stops the start
  // before any worker, or the workers once they run.
  let stopping = false;
  let stopWorkers: ((signal: NodeJS.Signals) => void) | undefined;
  const stop = (signal: NodeJS.Signals) => {
    // `on`, not `once`: a repeated signal is ignored (stop returns at once) rather than killing the
    // primary, and with it the workers, in the middle of their drain.
    if (stopping) return;
    stopping = true;
    if (stopWorkers) stopWorkers(signal);
    else log.info({ signal }, 'stopping before any worker has started');
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  const store = connectStore(storeOptionsOf(config));
  try {
    await store.migrate();
    const core = await createCore({ config, store, serving: false });
    const boot = await core.bootstrap();
    if (boot.generatedAdminPassword)
      handOverGeneratedPassword(boot.generatedAdminPassword, config.dataDir, process.stdout);
    await core.close();
  } finally {
    await store.destroy();
  }
  if (stopping) return;

  const started = new Map<Worker, number>();
  // Each worker's place, 1 to N, which the one that replaces it takes: its metrics' `worker` label.
  const slots = new Map<Worker, number>();
  const retries = new Set<NodeJS.Timeout>();
  let retryMs = RETRY_FIRST_MS;
  /** Workers that stopped cleanly on a signal not the primary's, to be replaced (`later`). */
  let replacementsDue = 0;
  /** Starts a worker in `slot` after `ms`, unless the primary stops first. */
  const later = (slot: number, ms: number, starting: () => void = () => {}) => {
    const retry = setTimeout(() => {
      retries.delete(retry);
      starting();
      if (!stopping) fork(slot);
    }, ms);
    retries.add(retry);
  };
  const fork = (slot: number) => {
    const worker = cluster.fork(workerEnv);
    slots.set(worker, slot);
    started.set(worker, Date.now());
    // One that lives past its start ends the backoff: the next failure waits from the start again.
    setTimeout(() => {
      if (started.has(worker)) retryMs = RETRY_FIRST_MS;
    }, MIN_UPTIME_MS).unref();
  };
  // Node's cluster on Linux: the primary accepts each connection and hands it to the workers in
  // turn (round robin), unless the operator sets NODE_CLUSTER_SCHED_POLICY=none, when the workers
  // accept from the shared socket themselves. Round robin spreads the connections a balancer opens
  // evenly (20 opened one after another over 4 workers: 5 each in three runs of three, against
  // 6/6/5/3, 6/5/5/4 and 8/6/5/1 with `none`; README, Scale-out). Its price is in Node's
  // round_robin_handle: the primary closes its copy of a connection handed to a worker only on
  // the worker's word, so one being handed to a worker as it is SIGKILLed is neither answered nor
  // closed, and the primary keeps its socket; at most one a killed worker, since the primary hands
  // a worker one connection at a time and waits for its word before the next. With
  // `none`, a connection a dead worker had accepted is reset, and one it had not goes to another.
  const metrics = new PrimaryMetrics();
  serveClusterMetrics((worker) => slots.get(worker), metrics);
  // Said once every worker listens, not when they are started: one that cannot listen (the port
  // taken) says so and stops, and "serving" before that was a false report.
  let listening = 0;
  cluster.on('listening', () => {
    listening += 1;
    if (listening === workers) {
      log.info({ workers, host: config.host, port: config.port }, `${workers} workers serving`);
    }
  });
  for (let slot = 1; slot <= workers; slot += 1) fork(slot);

  const stoppedOnRequest = await new Promise<boolean>((resolve) => {
    cluster.on('exit', (worker, code, signal) => {
      const since = started.get(worker) ?? 0;
      const slot = slots.get(worker) ?? 0;
      started.delete(worker);
      slots.delete(worker);
      if (!stopping) {
        const exit = { worker: slot, workerPid: worker.process.pid, exit: signal ?? code };
        if (code === 0 && signal === null) {
          metrics.workerExited('stopped');
          // It drained and left on a signal the primary did not send (a kill of its pid, a
          // supervisor signalling processes one by one; found by review: the node went on with
          // one worker fewer, saying nothing). Replaced after a moment, unless the primary is told
          // to stop meanwhile: a signal to the whole process group reaches the workers too, and
          // one may be done before the primary's handler runs.
          log.warn(
            { ...exit, retryInSeconds: RETRY_FIRST_MS / 1000 },
            'worker stopped by a signal; starting another',
          );
          replacementsDue += 1;
          later(slot, RETRY_FIRST_MS, () => {
            replacementsDue -= 1;
          });
        } else if (Date.now() - since >= MIN_UPTIME_MS) {
          metrics.workerExited('crashed');
          log.error(exit, 'worker stopped; starting another');
          fork(slot);
        } else if (started.size > 0) {
          metrics.workerExited('failed_at_start');
          log.error({ ...exit, retryInSeconds: retryMs / 1000 }, 'worker failed at start; trying again');
          later(slot, retryMs);
          retryMs = Math.min(retryMs * 2, RETRY_MAX_MS);
        } else {
          log.fatal(exit, 'worker failed at start; no worker runs: not restarting it');
        }
      }
      // Done when none runs, unless one that stopped cleanly is yet to be replaced.
      if (started.size === 0 && (stopping || replacementsDue === 0)) {
        for (const retry of retries) clearTimeout(retry);
        resolve(stopping);
      }
    });
    stopWorkers = (signal) => {
      for (const retry of retries) clearTimeout(retry);
      log.info({ signal }, 'stopping the workers');
      for (const worker of started.keys()) worker.process.kill('SIGTERM');
      // None runs (each stopped by a signal of its own, its replacement not yet started): no exit
      // is left to end the wait.
      if (started.size === 0) resolve(true);
    };
  });
  if (!stoppedOnRequest) throw new Error('every worker stopped; see the log above');
  log.info('every worker has stopped');
}
