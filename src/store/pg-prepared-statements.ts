import { createHash } from 'node:crypto';
import type { PostgresPool, PostgresPoolClient, PostgresQueryResult } from 'kysely';
import type pg from 'pg';

/** Distinct statements this process names (prepares once per connection); the rest run unnamed. */
const PREPARED_STATEMENT_LIMIT = 500;

/**
 * A statement's name once it has been seen twice. Run unnamed, PostgreSQL parses, analyses and
 * plans a statement on every execution; for the short indexed statements the core runs, that is
 * most of the server's work (pgbench here: a primary-key select 25,000/s unnamed against
 * 40,000/s prepared, docs/performance-log.md). Named, each connection prepares it once and then only binds
 * and executes it. A statement seen once (an administrator's list with a rare filter) is not
 * named, so the servers' memory holds only the shapes that repeat, at most PREPARED_STATEMENT_LIMIT.
 *
 * A name is a digest of the statement's text (and of how often this process had to prepare it
 * anew, see `rename`), never a counter: the same name means the same statement in every process.
 * Behind a pooler that hands one server connection to many processes in turn, a statement bound
 * where another process prepared the name therefore runs that same statement, or fails for want of
 * it (and `isLostStatement` turns naming off); a counter's `gatehouse_1` would have run whatever
 * another process had prepared under it.
 */
class StatementNames {
  /** Per statement: its name, null while seen once; and how often it was renamed. */
  readonly #seen = new Map<string, { name: string | null; renamed: number }>();
  #named = 0;
  #off = false;

  /** No statement is named from now on (see `isLostStatement`); answers whether any was till now. */
  turnOff(): boolean {
    const wasOn = !this.#off;
    this.#off = true;
    return wasOn;
  }

  nameOf(sql: string): string | undefined {
    if (this.#off) return undefined;
    const known = this.#seen.get(sql);
    if (known !== undefined) return known.name ?? this.#name(sql, known);
    // Statements seen once are only remembered: forget them all when there are too many.
    if (this.#seen.size >= PREPARED_STATEMENT_LIMIT * 4) {
      for (const [text, entry] of this.#seen) if (entry.name === null) this.#seen.delete(text);
    }
    this.#seen.set(sql, { name: null, renamed: 0 });
    return undefined;
  }

  /**
   * Another process changed a table under a prepared statement so that its rows no longer have the
   * type it was planned for (a migration during a rolling deploy): the connections that prepared
   * it keep it under the old name, unused; the next use prepares it again under a new one.
   */
  rename(sql: string): void {
    const known = this.#seen.get(sql);
    if (known?.name) this.#seen.set(sql, { name: null, renamed: known.renamed + 1 });
  }

  #name(sql: string, entry: { renamed: number }): string | undefined {
    if (this.#named >= PREPARED_STATEMENT_LIMIT) return undefined;
    this.#named += 1;
    // 96 bits of SHA-256: PostgreSQL keeps 63 bytes of a name.
    const digest = createHash('sha256').update(sql).digest('hex').slice(0, 24);
    const name = `gatehouse_${digest}_${entry.renamed}`;
    this.#seen.set(sql, { name, renamed: entry.renamed });
    return name;
  }
}

/**
 * PostgreSQL's answer when a prepared statement's result type changed under it: "cached plan must
 * not change result type", SQLSTATE 0A000. Judged by the code alone, since the message is in the
 * server's language; another 0A000 fails the same way when tried again, and is thrown then.
 */
function isStalePlan(error: unknown): boolean {
  return (error as { code?: unknown } | null)?.code === '0A000';
}

/**
 * A prepared statement this connection named is gone ("does not exist", SQLSTATE 26000) or one it
 * never named is there ("already exists", 42P05): the statements are not reaching the server
 * session they were prepared in, as behind a pooler in transaction mode (PgBouncer before 1.21, or
 * later ones without max_prepared_statements). Both fail before anything runs.
 */
function isLostStatement(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === '26000' || code === '42P05';
}

const TRANSACTION_START = /^\s*(begin|start\s+transaction)\b/i;
const TRANSACTION_END = /^\s*(commit|rollback|end|abort)\b/i;

/**
 * The pool as Kysely takes it, running the statements that repeat as named prepared statements.
 * Behind a pooler that moves a session's statements between server connections (PgBouncer in
 * transaction mode before 1.21), turn this off: GATEHOUSE_PG_PREPARED_STATEMENTS=false. Left on
 * there, the first statement that misses its preparation turns naming off for the process
 * (`onLost` tells why, once): a few requests inside transactions fail, not one in ten for good.
 */
export function preparingPool(pool: pg.Pool, onLost: () => void = () => {}): PostgresPool {
  const names = new StatementNames();
  // Kysely keeps its own state per client object: hand out the same wrapper for the same client.
  const wrappers = new WeakMap<pg.PoolClient, PostgresPoolClient>();
  const wrap = (client: pg.PoolClient): PostgresPoolClient => {
    let inTransaction = false;
    const run = async (sql: string, parameters: readonly unknown[]) => {
      const name = names.nameOf(sql);
      if (name === undefined) return client.query(sql, parameters as unknown[]);
      try {
        return await client.query({ name, text: sql, values: parameters as unknown[] });
      } catch (error) {
        if (isLostStatement(error)) {
          if (names.turnOff()) onLost();
          if (inTransaction) throw error;
          return client.query(sql, parameters as unknown[]);
        }
        if (!isStalePlan(error)) throw error;
        names.rename(sql);
        // The failed statement did nothing; outside a transaction it can simply run again. Inside
        // one the transaction is aborted already, and the caller's retry will prepare it afresh.
        if (inTransaction) throw error;
        return client.query(sql, parameters as unknown[]);
      }
    };
    return {
      query: ((sqlOrCursor: unknown, parameters?: readonly unknown[]) => {
        if (typeof sqlOrCursor !== 'string') return client.query(sqlOrCursor as pg.Submittable);
        if (TRANSACTION_START.test(sqlOrCursor)) inTransaction = true;
        else if (TRANSACTION_END.test(sqlOrCursor)) inTransaction = false;
        return run(sqlOrCursor, parameters ?? []) as Promise<PostgresQueryResult<unknown>>;
      }) as PostgresPoolClient['query'],
      release: () => {
        inTransaction = false;
        client.release();
      },
    };
  };
  return {
    async connect() {
      const client = await pool.connect();
      let wrapper = wrappers.get(client);
      if (!wrapper) {
        wrapper = wrap(client);
        wrappers.set(client, wrapper);
      }
      return wrapper;
    },
    end: () => pool.end(),
  };
}
