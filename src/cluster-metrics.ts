import cluster from 'node:cluster';
import { AggregatorRegistry, type Registry } from 'prom-client';

/**
 * `/metrics` of `gatehouse serve --workers N`: a scrape lands on one worker (the kernel picks), but
 * must describe the whole node. That worker asks the primary over the cluster's IPC channel; the
 * primary collects every worker's registry with prom-client's AggregatorRegistry (counters and
 * histograms summed, gauges as each declares) and answers with the text.
 */
const REQUEST = 'gatehouse:metrics-request';
const ANSWER = 'gatehouse:metrics-answer';

/** The primary waits up to 5 s for the workers (prom-client's own limit); a worker a little longer. */
const WORKER_WAIT_MS = 6000;

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

function isMessage<T extends { type: string }>(message: unknown, type: T['type']): message is T {
  return typeof message === 'object' && message !== null && (message as { type?: unknown }).type === type;
}

/** In the primary, before forking: answers each worker's request with every worker's metrics. */
export function serveClusterMetrics(): void {
  const aggregator = new AggregatorRegistry();
  cluster.on('message', (worker, message: unknown) => {
    if (!isMessage<MetricsRequest>(message, REQUEST)) return;
    const answer = (body: Omit<MetricsAnswer, 'type' | 'id'>) => {
      // The asking worker may have stopped meanwhile.
      if (worker.isConnected()) worker.send({ type: ANSWER, id: message.id, ...body });
    };
    aggregator.clusterMetrics().then(
      (text) => answer({ text }),
      (error: unknown) => answer({ error: error instanceof Error ? error.message : String(error) }),
    );
  });
}

/**
 * In a worker: lets the primary read `registry` (prom-client answers its requests), and returns
 * the function that fetches the whole node's metrics text from the primary.
 */
export function clusterMetricsClient(registry: Registry): () => Promise<string> {
  AggregatorRegistry.setRegistries(registry);
  // Constructing one in a worker installs prom-client's listener that answers the primary.
  new AggregatorRegistry();
  const pending = new Map<
    number,
    { resolve: (text: string) => void; reject: (error: Error) => void; timer: NodeJS.Timeout }
  >();
  let nextId = 0;
  process.on('message', (message: unknown) => {
    if (!isMessage<MetricsAnswer>(message, ANSWER)) return;
    const waiting = pending.get(message.id);
    if (!waiting) return;
    pending.delete(message.id);
    clearTimeout(waiting.timer);
    if (message.text !== undefined) waiting.resolve(message.text);
    else
      waiting.reject(new Error(`the primary could not collect the metrics: ${message.error ?? 'no answer'}`));
  });
  return () =>
    new Promise<string>((resolve, reject) => {
      const send = process.send?.bind(process);
      if (!send) {
        reject(new Error('not a cluster worker'));
        return;
      }
      const id = nextId++;
      const timer = setTimeout(() => {
        pending.delete(id);
        reject(new Error(`no metrics from the primary within ${WORKER_WAIT_MS} ms`));
      }, WORKER_WAIT_MS);
      pending.set(id, { resolve, reject, timer });
      send({ type: REQUEST, id } satisfies MetricsRequest);
    });
}
