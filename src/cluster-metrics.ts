import cluster, { type Worker } from 'node:cluster';
import {
  AggregatorRegistry,
  Counter,
  type MetricObjectWithValues,
  type MetricValue,
  Registry,
} from 'prom-client';

/**
 * `/metrics` of `gatehouse serve --workers N`: a scrape lands on one worker (the one the primary
 * hands its connection to; under NODE_CLUSTER_SCHED_POLICY=none, the one that accepts it), but
 * must describe the whole node. That worker asks the primary over the cluster's IPC channel; the
 * primary asks every worker for its registry and answers with the text of them all.
 *
 * Each worker's series carry a `worker` label, its slot (1 to N; the worker that replaces one
 * takes its slot), rather than being summed into one series as prom-client's cluster aggregation
 * does: a sum drops when a worker is replaced (found by review: 20 failures counted read 10 after
 * one worker was killed, which Prometheus takes for a counter reset and `increase()` for 10 new
 * failures), and it added up facts of a process that are not amounts (the file-descriptor limit)
 * or hid one worker's among others' (event-loop lag, start time). A replaced worker's counters
 * start again from 0 in their own series, which `rate()` and `increase()` handle. Series of the
 * shared store (the live-session count), the same in every worker, stay one series.
 */
const REQUEST = 'gatehouse:metrics-request';
const ANSWER = 'gatehouse:metrics-answer';
const COLLECT = 'gatehouse:metrics-collect';
const COLLECTED = 'gatehouse:metrics-collected';
const READY = 'gatehouse:metrics-ready';

/** The primary waits up to 5 s for the workers; a worker waits for the primary a little longer. */
const PRIMARY_WAIT_MS = 5000;
const WORKER_WAIT_MS = 6000;

type Metrics = MetricObjectWithValues<MetricValue<string>>[];

interface MetricsRequest {
  readonly type: typeof REQUEST;
  readonly id: number;
}

interface MetricsAnswer {
  readonly type: typeof ANSWER;
  readonly id: number;
  readonly text?: string;
  readonly error?: string;
}

interface CollectRequest {
  readonly type: typeof COLLECT;
  readonly id: number;
}

interface Collected {
  readonly type: typeof COLLECTED;
  readonly id: number;
  readonly metrics?: Metrics;
  readonly error?: string;
}

function isMessage<T extends { type: string }>(message: unknown, type: T['type']): message is T {
  return typeof message === 'object' && message !== null && (message as { type?: unknown }).type === type;
}

/**
 * Facts of the store every worker shares, the same in each: one series, the largest value any
 * worker read, or NaN when one could not read it (NaN crosses the IPC channel as null, which
 * prom-client's `max` read as 0: an outage showed as no live session; found by review).
 */
const OF_THE_STORE: ReadonlySet<string> = new Set(['gatehouse_active_sessions']);

/**
 * The primary's own series: the workers that stopped without its asking, by how. Each was
 * replaced (one that failed at start after a wait), so only this tells a crash loop that the
 * workers' series, a slot's counters starting again from 0, hide between scrapes.
 */
export const WORKER_EXIT_REASONS = ['crashed', 'failed_at_start', 'stopped'] as const;
export type WorkerExitReason = (typeof WORKER_EXIT_REASONS)[number];

export class PrimaryMetrics {
  readonly registry = new Registry();
  readonly #exits = new Counter({
    name: 'gatehouse_worker_exits_total',
    help: 'Worker processes that stopped without the primary asking, by reason: crashed (after its start), failed_at_start (within 5 s of it), stopped (exit 0, as on a signal the primary did not send); each is replaced',
    labelNames: ['reason'],
    registers: [this.registry],
  });

  constructor() {
    // Every series from the start, at 0, so that rate() and increase() see the first exit.
    for (const reason of WORKER_EXIT_REASONS) this.#exits.inc({ reason }, 0);
  }

  workerExited(reason: WorkerExitReason): void {
    this.#exits.inc({ reason });
  }
}

/**
 * One registry's text from the workers' metrics, each with its slot, and the primary's own
 * (`primary`: its series carry no `worker` label).
 */
export function combineWorkerMetrics(
  workers: readonly { slot: number; metrics: Metrics }[],
  primary: Metrics = [],
): Registry {
  const asNumber = (value: MetricValue<string>): MetricValue<string> =>
    typeof value.value === 'number' ? value : { ...value, value: Number.NaN };
  return AggregatorRegistry.aggregate([
    ...workers.map(({ slot, metrics }) =>
      metrics.map((metric) =>
        OF_THE_STORE.has(metric.name)
          ? { ...metric, aggregator: 'max' as const, values: metric.values.map(asNumber) }
          : {
              ...metric,
              // One value per series: a sum of one is the value (prom-client's `omit`, say for the
              // start time, would drop what tells a restart).
              aggregator: 'sum' as const,
              values: metric.values.map((value) => ({
                ...asNumber(value),
                labels: { ...value.labels, worker: String(slot) },
              })),
            },
      ),
    ),
    primary.map((metric) => ({ ...metric, aggregator: 'sum' as const })),
  ]);
}

/**
 * In the primary, before forking: answers each worker's request with the metrics of every worker
 * that can answer. Only workers that said they are ready are asked (one just forked is still
 * opening its store); one that does not answer within 5 s (its event loop stuck) is left out of
 * that scrape, and its series go stale, rather than failing the node's scrape: the series of
 * `gatehouse_process_start_time_seconds` and the others tell which worker is missing.
 */
export function serveClusterMetrics(
  slotOf: (worker: Worker) => number | undefined,
  primary: PrimaryMetrics,
): void {
  const ready = new Set<Worker>();
  cluster.on('exit', (worker) => ready.delete(worker));
  const pending = new Map<number, (collected: Collected) => void>();
  let nextId = 0;
  const collectFrom = (worker: Worker) =>
    new Promise<Metrics>((resolve, reject) => {
      const id = nextId++;
      const timer = setTimeout(() => {
        pending.delete(id);
        reject(
          new Error(`worker ${slotOf(worker) ?? worker.id} did not answer within ${PRIMARY_WAIT_MS} ms`),
        );
      }, PRIMARY_WAIT_MS);
      pending.set(id, (collected) => {
        clearTimeout(timer);
        if (collected.metrics) resolve(collected.metrics);
        else reject(new Error(collected.error ?? 'no metrics'));
      });
      worker.send({ type: COLLECT, id } satisfies CollectRequest);
    });
  const nodeMetrics = async () => {
    const workers = [...ready].filter((worker) => worker.isConnected() && slotOf(worker) !== undefined);
    const settled = await Promise.allSettled(
      workers.map(async (worker) => ({ slot: slotOf(worker) as number, metrics: await collectFrom(worker) })),
    );
    const collected = settled.flatMap((result) => (result.status === 'fulfilled' ? [result.value] : []));
    if (collected.length === 0) throw new Error('no worker answered');
    return combineWorkerMetrics(collected, await primary.registry.getMetricsAsJSON()).metrics();
  };
  cluster.on('message', (worker, message: unknown) => {
    if (isMessage<{ type: typeof READY }>(message, READY)) {
      ready.add(worker);
      return;
    }
    if (isMessage<Collected>(message, COLLECTED)) {
      const settle = pending.get(message.id);
      pending.delete(message.id);
      settle?.(message);
      return;
    }
    if (!isMessage<MetricsRequest>(message, REQUEST)) return;
    const answer = (body: Omit<MetricsAnswer, 'type' | 'id'>) => {
      // The asking worker may have stopped meanwhile.
      if (worker.isConnected()) worker.send({ type: ANSWER, id: message.id, ...body });
    };
    nodeMetrics().then(
      (text) => answer({ text }),
      (error: unknown) => answer({ error: error instanceof Error ? error.message : String(error) }),
    );
  });
}

/**
 * In a worker: hands the primary `registry` when it asks, and returns the function that fetches
 * the whole node's metrics text from the primary.
 */
export function clusterMetricsClient(registry: Registry): () => Promise<string> {
  const pending = new Map<
    number,
    { resolve: (text: string) => void; reject: (error: Error) => void; timer: NodeJS.Timeout }
  >();
  let nextId = 0;
  const send = (message: MetricsRequest | Collected) => process.send?.(message);
  process.on('message', (message: unknown) => {
    if (isMessage<CollectRequest>(message, COLLECT)) {
      registry.getMetricsAsJSON().then(
        (metrics) => send({ type: COLLECTED, id: message.id, metrics }),
        (error: unknown) =>
          send({
            type: COLLECTED,
            id: message.id,
            error: error instanceof Error ? error.message : String(error),
          }),
      );
      return;
    }
    if (!isMessage<MetricsAnswer>(message, ANSWER)) return;
    const waiting = pending.get(message.id);
    if (!waiting) return;
    pending.delete(message.id);
    clearTimeout(waiting.timer);
    if (message.text !== undefined) waiting.resolve(message.text);
    else
      waiting.reject(new Error(`the primary could not collect the metrics: ${message.error ?? 'no answer'}`));
  });
  process.send?.({ type: READY });
  return () =>
    new Promise<string>((resolve, reject) => {
      if (!process.send) {
        reject(new Error('not a cluster worker'));
        return;
      }
      const id = nextId++;
      const timer = setTimeout(() => {
        pending.delete(id);
        reject(new Error(`no metrics from the primary within ${WORKER_WAIT_MS} ms`));
      }, WORKER_WAIT_MS);
      pending.set(id, { resolve, reject, timer });
      send({ type: REQUEST, id });
    });
}
