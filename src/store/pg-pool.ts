import pg from 'pg';

export interface PgPoolOptions {
  readonly max: number;
  /**
   * PostgreSQL cancels a statement (or a transaction left idle) past this, and a connection held
   * a little longer is closed; absent: neither, as for the migrations, which may rewrite a large
   * table.
   */
  readonly statementTimeoutMs?: number;
}

/**
 * What to do about a connection refused for the timeouts the pool sets at connect (startup
 * parameters), as PgBouncer refuses parameters it does not know; undefined for any other error.
 */
export function startupParameterAdvice(error: unknown): string | undefined {
  const message = error instanceof Error ? error.message : '';
  if (!/unsupported startup parameter/i.test(message)) return undefined;
  return 'a pooler (PgBouncer) refuses the timeouts each connection sets: add statement_timeout and idle_in_transaction_session_timeout to its ignore_startup_parameters and set them on the database role instead (README, PostgreSQL)';
}

export function createPgPool(connectionString: string, options: PgPoolOptions): pg.Pool {
  const timeoutMs = options.statementTimeoutMs;
  const pool = new pg.Pool({
    connectionString,
    max: options.max,
    connectionTimeoutMillis: 3000,
    ...(timeoutMs === undefined
      ? {}
      : { statement_timeout: timeoutMs, idle_in_transaction_session_timeout: timeoutMs }),
    // bigint columns hold epoch milliseconds, well inside Number's exact range.
    types: {
      getTypeParser: ((oid: number, format?: string) =>
        oid === pg.types.builtins.INT8
          ? (value: string) => Number(value)
          : pg.types.getTypeParser(oid, format as 'text')) as typeof pg.types.getTypeParser,
    },
  });
  // A client losing its server (restart, failover) must not crash the process: the query in
  // flight rejects (and becomes a 503), and the pool replaces the client on the next checkout.
  pool.on('error', () => {});
  pool.on('connect', (client) => client.on('error', () => {}));
  if (timeoutMs !== undefined) closeSilentConnections(pool, timeoutMs + Math.min(timeoutMs, 5000));
  return pool;
}

/**
 * A server that goes away without a word (a failover, a partition that drops packets) leaves its
 * connections open and silent: until the kernel gave up on them (~15 minutes of retransmissions
 * on Linux) every statement sent on one waited, and once the pool's connections all waited,
 * every request that needed the store failed after 3 s of waiting for a connection, long after a
 * failover had brought a new server up. PostgreSQL itself cancels a statement at the statement
 * timeout (and ends a transaction left idle that long), so a connection whose latest statement
 * began longer ago than that plus a grace, still checked out, is taken for dead and ended. pg
 * ends a connection with a statement in flight by destroying its socket: the statement fails
 * ("Connection terminated", a 503), those sent after it fail at once, and the pool drops the
 * client when it is handed back.
 *
 * No timer per statement (pg's own read timeout cost ~10 % of a primary-key read's client CPU
 * here): each statement stamps its start, and one check a second looks at the connections out.
 */
function closeSilentConnections(pool: pg.Pool, deadAfterMs: number): void {
  // Checked-out clients, and when their checkout or their latest statement began, by a clock the
  // checks advance (statements read it, no call to the system's clock each).
  const busySince = new Map<pg.PoolClient, number>();
  let clock = performance.now();
  let timer: NodeJS.Timeout | undefined;
  const checkEveryMs = Math.min(1000, deadAfterMs / 4);
  const check = () => {
    clock = performance.now();
    for (const [client, since] of busySince) {
      // A stamp may be one check old: it is dead only if past the limit by that too.
      if (clock - since < deadAfterMs + checkEveryMs) continue;
      busySince.delete(client);
      client.end().catch(() => {});
    }
    if (busySince.size === 0) {
      clearInterval(timer);
      timer = undefined;
    }
  };
  pool.on('connect', (client) => {
    const query = client.query as (this: pg.PoolClient, a?: unknown, b?: unknown, c?: unknown) => unknown;
    client.query = function (this: pg.PoolClient, a?: unknown, b?: unknown, c?: unknown) {
      if (busySince.has(this)) busySince.set(this, clock);
      return query.call(this, a, b, c);
    } as typeof client.query;
  });
  pool.on('acquire', (client) => {
    clock = performance.now();
    busySince.set(client, clock);
    if (!timer) {
      timer = setInterval(check, checkEveryMs);
      timer.unref();
    }
  });
  pool.on('release', (_error, client) => {
    busySince.delete(client);
  });
}
