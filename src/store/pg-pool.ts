import type { PostgresPool, PostgresPoolClient } from 'kysely';
import pg from 'pg';
import { preparingPool } from './pg-prepared-statements.js';

/** What a statement that got no answer at all fails with (pg's own message for its read timeout). */
export const NO_ANSWER_MESSAGE = 'Query read timeout';

export interface PgPoolOptions {
  readonly max: number;
  /**
   * PostgreSQL cancels a statement (or a transaction left idle) past this; absent: never, as for
   * the migrations, which may rewrite a large table.
   */
  readonly statementTimeoutMs?: number;
}

/**
 * How long past the statement timeout the client waits for any answer before it takes the
 * connection for dead: PostgreSQL cancels a slow statement itself and says so, so only a server
 * that is gone (a failover, a partition that drops packets) stays silent this long.
 */
export const noAnswerAfterMs = (statementTimeoutMs: number) =>
  statementTimeoutMs + Math.min(statementTimeoutMs, 5000);

export function createPgPool(connectionString: string, options: PgPoolOptions): pg.Pool {
  const timeoutMs = options.statementTimeoutMs;
  const pool = new pg.Pool({
    connectionString,
    max: options.max,
    connectionTimeoutMillis: 3000,
    ...(timeoutMs === undefined
      ? {}
      : {
          statement_timeout: timeoutMs,
          idle_in_transaction_session_timeout: timeoutMs,
          query_timeout: noAnswerAfterMs(timeoutMs),
        }),
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
  return pool;
}

/**
 * The pool as Kysely gets it: statements that repeat named (`preparedStatements`), and a client
 * whose statement got no answer taken out of the pool.
 *
 * A server that goes away without a word leaves its connections open and silent: until the
 * kernel gives up on them (~15 minutes of retransmissions on Linux) every statement sent on one
 * waited, and once the pool's connections were all waiting, every request that needed the store
 * failed after waiting 3 s for a connection, long after a failover had brought a new server up.
 * pg's read timeout rejects the statement; the client is then handed back with the error, which
 * makes the pool close it and connect anew; what is sent on it meanwhile (a transaction's
 * rollback) fails at once instead of queueing behind the silent statement.
 */
export function kyselyPool(pool: pg.Pool, options: { readonly preparedStatements: boolean }): PostgresPool {
  const inner: PostgresPool = options.preparedStatements ? preparingPool(pool) : pool;
  // Kysely keeps its own state per client object: the same wrapper for the same client.
  const wrappers = new WeakMap<PostgresPoolClient, PostgresPoolClient>();
  const wrap = (client: PostgresPoolClient): PostgresPoolClient => {
    let unanswered: Error | undefined;
    return {
      query: ((sqlOrCursor: string, parameters: readonly unknown[]) => {
        if (typeof sqlOrCursor !== 'string') return client.query(sqlOrCursor);
        if (unanswered) return Promise.reject(new Error(NO_ANSWER_MESSAGE, { cause: unanswered }));
        return client.query(sqlOrCursor, parameters).catch((error: unknown) => {
          if (error instanceof Error && error.message === NO_ANSWER_MESSAGE) unanswered = error;
          throw error;
        });
      }) as PostgresPoolClient['query'],
      // Looked up at each release: pg's pool gives a client a new release function at each checkout.
      release: () => (client as { release(error?: Error): void }).release(unanswered),
    };
  };
  return {
    async connect() {
      const client = await inner.connect();
      let wrapper = wrappers.get(client);
      if (!wrapper) {
        wrapper = wrap(client);
        wrappers.set(client, wrapper);
      }
      return wrapper;
    },
    end: () => inner.end(),
  };
}
