import autocannon from 'autocannon';

export interface LoadRequest {
  readonly method?: 'GET' | 'POST';
  readonly path: string;
  readonly headers?: Record<string, string>;
  readonly body?: string;
  /** Builds each send anew (autocannon's setupRequest), e.g. with the connection's newest token. */
  readonly setupRequest?: (request: autocannon.Request) => autocannon.Request;
  /** Hears each answer; state kept here, in a closure of `perConnection`, outlives autocannon's context. */
  readonly onResponse?: (status: number, body: string) => void;
}

export interface LoadOptions {
  readonly url: string;
  readonly connections: number;
  readonly durationS: number;
  /** Requests sent in turn on each connection. */
  readonly requests: readonly LoadRequest[];
  /**
   * Gives each connection its own request sequence (e.g. its own user), so that a scenario does
   * not hammer one account; called with the connection's index.
   */
  readonly perConnection?: (index: number) => readonly LoadRequest[];
  /** Statuses that count as success (default: 2xx). */
  readonly expect?: (status: number) => boolean;
}

export interface LoadResult {
  readonly requests: number;
  readonly rps: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly errors: number;
  readonly unexpected: number;
}

/** Drives one HTTP load with autocannon over loopback and returns what it measured. */
export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  let unexpected = 0;
  const expect = options.expect ?? ((status: number) => status >= 200 && status < 300);
  let nextConnection = 0;
  let settle: (outcome: { error: unknown; result: autocannon.Result | undefined }) => void = () => {};
  const finished = new Promise<{ error: unknown; result: autocannon.Result | undefined }>((resolve) => {
    settle = resolve;
  });
  const instance = autocannon(
    {
      url: options.url,
      connections: options.connections,
      duration: options.durationS,
      // autocannon notices its duration has passed only when it next samples: at its default of
      // every second, a turn of 2.5 s ran 3.0 s. Sampled every 100 ms, a turn ends within 0.1 s of
      // its time. The samples are not read here: rates are answers over the turn's own duration.
      sampleInt: 100,
      pipelining: 1,
      requests: options.requests.map((request) => ({ ...request })),
      ...(options.perConnection
        ? {
            setupClient: (client: autocannon.Client) => {
              const own = options.perConnection?.(nextConnection++) ?? options.requests;
              client.setRequests(own.map((request) => ({ ...request })));
            },
          }
        : {}),
    },
    (error: unknown, result: autocannon.Result) => settle({ error, result }),
  );
  instance.on('response', (_client: unknown, statusCode: number) => {
    if (!expect(statusCode)) unexpected += 1;
  });
  const { error, result } = await finished;
  if (error || !result) throw error ?? new Error('autocannon gave no result');
  return {
    requests: result.requests.total,
    // Answers over the time they took: autocannon's average is over whole seconds only, which
    // weighs on the few-second turns of an interleaved measurement.
    rps: result.duration > 0 ? result.requests.total / result.duration : result.requests.average,
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
    errors: result.errors + result.timeouts,
    unexpected,
  };
}
