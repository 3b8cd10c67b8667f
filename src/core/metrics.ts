import { performance } from 'node:perf_hooks';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { StatementKind } from '../store/connect.js';
import type { Clock } from './clock.js';

const SIGN_IN_SURFACES = ['nse', 'storware', 'basic', 'node', 'token', 'password'] as const;
/**
 * Where a sign-in came from: the API, or the kind of credential when that says more; `password`,
 * the old password of a password change (`POST /api/v2.1/auth/password`), checked as a sign-in's.
 */
export type SignInSurface = (typeof SIGN_IN_SURFACES)[number];

/** The methods the request histogram names; any other is `other` (see `observeRequest`). */
const COUNTED_METHODS: ReadonlySet<string> = new Set([
  'GET',
  'HEAD',
  'POST',
  'PUT',
  'DELETE',
  'PATCH',
  'OPTIONS',
]);

/**
 * How a sign-in ended. An inactive account counts as `invalid_credentials`, as it answers: a
 * separate outcome would tell whoever can read the metrics that a password was right.
 */
const SIGN_IN_OUTCOMES = [
  'success',
  'invalid_credentials',
  'locked',
  'rate_limited',
  'busy',
  'abandoned',
  'unsupported_version',
  'error',
] as const;
export type SignInOutcome = (typeof SIGN_IN_OUTCOMES)[number];
const HOUSEKEEPING_TABLES = ['sessions', 'jobs'] as const;
const HOUSEKEEPING_TASKS = ['sweep', 'counters', 'lent-tokens'] as const;

export type CacheName = 'session' | 'credentials' | 'privileges' | 'settings' | 'catalog' | 'profiles';
export type HashOperation = 'hash' | 'verify';

/** The Prometheus text format's content type (`text/plain; version=0.0.4; charset=utf-8`). */
export const METRICS_CONTENT_TYPE = Registry.PROMETHEUS_CONTENT_TYPE;

/** The live-session count is read at most this often: scrapes of several Prometheus servers share one. */
export const ACTIVE_SESSIONS_CACHE_MS = 5000;

/**
 * A service answering in 1-50 ms; sign-ins (argon2) reach the upper buckets, and the waits a
 * request may meet the top ones: a failed sign-in's delay (up to 3 s), a statement held up to
 * the PostgreSQL statement timeout (30 s by default), a body arriving within the request timeout.
 */
const HTTP_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
/** Up to the PostgreSQL statement timeout (30 s by default): a statement waiting on a lock shows where it ends. */
const STORE_BUCKETS = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 2.5, 5, 10, 30,
];
const HASH_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

let processRegistry: Registry | undefined;

/**
 * CPU, memory, event-loop lag, GC: facts of the process, not of one core. prom-client starts an
 * event-loop monitor and a GC observer per call and never stops them, so they are made once per
 * process and shared by every core it runs (tests run many).
 */
function processMetrics(): Registry {
  if (!processRegistry) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry, prefix: 'gatehouse_' });
  }
  return processRegistry;
}

export interface MetricsOptions {
  readonly clock: Clock;
  /**
   * Include the process's metrics (CPU, memory, event-loop lag, GC). Their event-loop monitor wakes
   * the process every 10 ms until it exits: only a process that serves should start it, not a
   * primary that only forks and waits, nor a command of the CLI.
   */
  readonly processMetrics: boolean;
  /** Live sessions in the store now (one count query); read on scrape, at most every few seconds. */
  readonly countLiveSessions: () => Promise<number>;
}

/**
 * The service's Prometheus instruments, in one registry per core. Labels are fixed sets (route
 * patterns, surfaces, outcomes, statement kinds): never a name, an address, a URL or SQL text.
 * Recording costs a label lookup and an addition; the only store work is the live-session count,
 * done on scrape and cached.
 */
export class Metrics {
  /** This core's instruments and, in a serving process, the process's default metrics. */
  readonly registry: Registry;
  readonly #httpDuration: Histogram<'method' | 'route' | 'status'>;
  readonly #signIns: Counter<'surface' | 'outcome'>;
  readonly #hashDepth: Gauge;
  readonly #hashDuration: Histogram<'operation'>;
  readonly #storeDuration: Histogram<'dialect' | 'statement'>;
  readonly #housekeepingFailures: Counter<'task'>;
  readonly #deletedRows: Counter<'table'>;
  readonly #clock: Clock;
  readonly #countLiveSessions: () => Promise<number>;
  /**
   * Cache lookups not yet added to the counter, by cache: added when the counter is read (a scrape),
   * so that a lookup, several per request, costs an addition and not a label lookup.
   */
  readonly #lookupsSinceScrape = new Map<CacheName, { hit: number; miss: number }>();
  #liveSessions: { value: number; at: number } | undefined;
  #counting: Promise<number> | undefined;

  constructor(options: MetricsOptions) {
    this.#clock = options.clock;
    this.#countLiveSessions = options.countLiveSessions;
    const own = new Registry();
    const registers = [own];
    this.#httpDuration = new Histogram({
      name: 'gatehouse_http_request_duration_seconds',
      help: 'Time from receiving a request to sending its answer, by method, route pattern and status',
      labelNames: ['method', 'route', 'status'],
      buckets: HTTP_BUCKETS,
      registers,
    });
    this.#signIns = new Counter({
      name: 'gatehouse_signins_total',
      help: 'Sign-in attempts by surface (nse, storware, basic, node, token; password: the old password of a password change) and outcome',
      labelNames: ['surface', 'outcome'],
      registers,
    });
    const metrics = this;
    new Gauge({
      name: 'gatehouse_active_sessions',
      help: `Live sessions in the store (not revoked, expired or idle), counted at most every ${ACTIVE_SESSIONS_CACHE_MS / 1000} s; NaN when the store cannot be read`,
      registers,
      // Every process of a node counts the same shared store: the node's value is one count, not their sum.
      aggregator: 'max',
      async collect() {
        this.set(await metrics.#liveSessionCount());
      },
    });
    this.#hashDepth = new Gauge({
      name: 'gatehouse_password_hash_queue_depth',
      help: 'Password hash and verify operations running or waiting for a thread, sign-ins waiting for their turn included',
      registers,
    });
    this.#hashDuration = new Histogram({
      name: 'gatehouse_password_hash_duration_seconds',
      help: "Time of a password hash or verify operation, waiting for a thread included (a sign-in's wait for its turn, before it, is not)",
      labelNames: ['operation'],
      buckets: HASH_BUCKETS,
      registers,
    });
    this.#storeDuration = new Histogram({
      name: 'gatehouse_store_query_duration_seconds',
      help: 'Time of a store statement by dialect and kind (select, insert, update, delete, transaction, other)',
      labelNames: ['dialect', 'statement'],
      buckets: STORE_BUCKETS,
      registers,
    });
    this.#deletedRows = new Counter({
      name: 'gatehouse_housekeeping_deleted_rows_total',
      help: 'Rows deleted by the retention settings, by table (sessions, jobs)',
      labelNames: ['table'],
      registers,
    });
    this.#housekeepingFailures = new Counter({
      name: 'gatehouse_housekeeping_failures_total',
      help: 'Housekeeping that failed and is left to its next run, by task (sweep: expired sessions and finished jobs; counters: old sign-in and rate-limit counters; lent-tokens: sessions of API tokens whose maker no longer manages their user)',
      labelNames: ['task'],
      registers,
    });
    new Counter({
      name: 'gatehouse_cache_requests_total',
      help: 'Lookups in the in-process caches (session, credentials, privileges, settings, catalog, profiles) by result (hit, miss)',
      labelNames: ['cache', 'result'],
      registers,
      collect() {
        for (const [cache, counts] of metrics.#lookupsSinceScrape) {
          if (counts.hit > 0) this.inc({ cache, result: 'hit' }, counts.hit);
          if (counts.miss > 0) this.inc({ cache, result: 'miss' }, counts.miss);
          counts.hit = 0;
          counts.miss = 0;
        }
      },
    });
    // Every series of the counters a process may count is there from its start, at 0: the first
    // failed sign-in or housekeeping failure is then an increase that `rate()` and `increase()`
    // see, not the first sample of a new series (found by review).
    for (const surface of SIGN_IN_SURFACES)
      for (const outcome of SIGN_IN_OUTCOMES) this.#signIns.inc({ surface, outcome }, 0);
    for (const table of HOUSEKEEPING_TABLES) this.#deletedRows.inc({ table }, 0);
    for (const task of HOUSEKEEPING_TASKS) this.#housekeepingFailures.inc({ task }, 0);
    this.registry = options.processMetrics ? Registry.merge([processMetrics(), own]) : own;
  }

  /** Rows the housekeeping deleted (long-expired sessions, long-finished jobs). */
  recordDeletedRows(table: (typeof HOUSEKEEPING_TABLES)[number], rows: number): void {
    if (rows > 0) this.#deletedRows.inc({ table }, rows);
  }

  /** Housekeeping that failed (the store unreachable, say); its next run tries again. */
  recordHousekeepingFailure(task: (typeof HOUSEKEEPING_TASKS)[number]): void {
    this.#housekeepingFailures.inc({ task });
  }

  /**
   * One answered HTTP request; `route` is the route pattern, or a fixed word such as `not_found`.
   * A method other than the common seven (Node accepts some thirty, WebDAV's among them, which no
   * route takes) is labelled `other`, so that a client cannot make a series per method (found by
   * review).
   */
  observeRequest(method: string, route: string, status: number, seconds: number): void {
    const label = COUNTED_METHODS.has(method) ? method : 'other';
    this.#httpDuration.observe({ method: label, route, status }, seconds);
  }

  recordSignIn(surface: SignInSurface, outcome: SignInOutcome): void {
    this.#signIns.inc({ surface, outcome });
  }

  /** One lookup in an in-process cache. */
  recordCacheLookup(cache: CacheName, hit: boolean): void {
    let counts = this.#lookupsSinceScrape.get(cache);
    if (counts === undefined) {
      counts = { hit: 0, miss: 0 };
      this.#lookupsSinceScrape.set(cache, counts);
    }
    if (hit) counts.hit += 1;
    else counts.miss += 1;
  }

  /** A sign-in waiting for its turn to check a password (HashPool.turn): in the queue depth meanwhile. */
  async countWaiting<T>(wait: () => Promise<T>): Promise<T> {
    this.#hashDepth.inc();
    try {
      return await wait();
    } finally {
      this.#hashDepth.dec();
    }
  }

  /** Runs one password operation, counted in the queue depth while it runs or waits, and timed. */
  async timeHash<T>(operation: HashOperation, work: () => Promise<T>): Promise<T> {
    this.#hashDepth.inc();
    const start = performance.now();
    try {
      const result = await work();
      this.#hashDuration.observe({ operation }, (performance.now() - start) / 1000);
      return result;
    } finally {
      // A refusal (the pool full or closing) took no time worth the name: not a duration.
      this.#hashDepth.dec();
    }
  }

  observeStoreQuery(dialect: string, statement: StatementKind, seconds: number): void {
    this.#storeDuration.observe({ dialect, statement }, seconds);
  }

  /** This process's metrics in the Prometheus text format. */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  /**
   * The live-session count, from the store at most every ACTIVE_SESSIONS_CACHE_MS; concurrent
   * scrapes share one query. A failed count is NaN (unknown) and is retried by the next scrape.
   */
  async #liveSessionCount(): Promise<number> {
    const now = this.#clock.now();
    const cached = this.#liveSessions;
    if (cached && now - cached.at < ACTIVE_SESSIONS_CACHE_MS) return cached.value;
    this.#counting ??= this.#countLiveSessions()
      .then((value) => {
        this.#liveSessions = { value, at: now };
        return value;
      })
      .catch(() => Number.NaN)
      .finally(() => {
        this.#counting = undefined;
      });
    return this.#counting;
  }
}
