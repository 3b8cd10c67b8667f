import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { type Kysely, sql } from 'kysely';
import pg from 'pg';
import type { Database } from './schema.js';

/**
 * What changed, as the caches index their entries: a session, everything of a user, of a node or
 * of an API token, or `*` (everything). Ids never hold a space, so tags travel space-separated.
 */
export const changeTags = {
  session: (id: string) => `session:${id}`,
  /**
   * A session's token line advanced to `generation` (a refresh): nothing else of it changed, so a
   * cache drops only copies older than that generation (SessionCache).
   */
  sessionToken: (id: string, generation: number) => `session-token:${id}:${generation}`,
  user: (id: string) => `user:${id}`,
  node: (id: string) => `node:${id}`,
  /** A tenant's name or code, or its memberships as a whole (users' profiles list their tenants). */
  tenant: (id: string) => `tenant:${id}`,
  apiToken: (id: string) => `api-token:${id}`,
  /** Any role, group or role-privilege change: every principal's privileges may differ. */
  rbac: 'rbac',
  /** Any region or zone change. */
  catalog: 'catalog',
  /** A signing key made or retired. */
  signingKeys: 'signing-keys',
  /** A failed sign-in counted against a sign-in counter subject (an account's keyed hash, an address). */
  throttle: (subject: string) => `throttle:${subject}`,
  all: '*',
} as const;

/**
 * The tags a failed sign-in announces: its account's and its address's counters. Caches file
 * what they remember of a sign-in under both (credential-cache.ts); an account+address counter
 * ("pair") is covered by its account's.
 */
export const failureTags = (keys: readonly { readonly scope: string; readonly subject: string }[]) =>
  keys.filter((key) => key.scope !== 'pair').map((key) => changeTags.throttle(key.subject));

export type ChangeListener = (tags: readonly string[]) => void;

/**
 * The per-process caches' view of changes made by every process sharing the store (other nodes,
 * other workers, the CLI): PostgreSQL LISTEN/NOTIFY, or on SQLite a table polled every 100 ms.
 * A change reaches every listener within FEED_BOUND_MS of its commit while the feed is live; a
 * cache must not be trusted while it is not (`isLive()`), and everything is dropped (`*`) each
 * time the feed becomes live again, since changes made meanwhile were not heard.
 */
export interface ChangeFeed {
  /** Starts the feed on first use (a CLI command that caches nothing never opens it). */
  isLive(): boolean;
  subscribe(listener: ChangeListener): () => void;
  close(): Promise<void>;
}

/** The writing side, used by the store's repositories in the transaction of the change. */
export interface ChangePublisher {
  publish(tags: readonly string[]): Promise<void>;
}

/** Upper bound, while the feed is live, from a commit to every process having heard of it. */
export const FEED_BOUND_MS = 1000;
/**
 * The feed counts as live only if it heard something this recently: with a heartbeat every
 * HEARTBEAT_MS, a connection that silently stopped delivering is distrusted before FEED_BOUND_MS.
 */
const LIVE_WINDOW_MS = 800;
const HEARTBEAT_MS = 200;
/** A listening connection that delivered nothing for this long is dropped and opened anew. */
const STALL_MS = 3000;
/** A listener must hear a notification sent through the pool this often (see PostgresFeed). */
const PROOF_EVERY_MS = 5000;
/** A feed not proven this long is reported (once an episode). */
const UNPROVEN_WARNING_MS = 10_000;
/** The wait before a new listening connection after one found unfit (see PostgresFeed). */
const UNFIT_RETRY_MS = 30_000;
/** NOTIFY payloads are limited to 8000 bytes. */
const MAX_PAYLOAD = 7000;
const CHANNEL = 'gatehouse_invalidate';
const PING = '~ping';
/** Payloads of the feed's own (heartbeat, proof) start with this; no change's tag does. */
const FEED_OWN = '~';
/** SQLite feed rows older than this are deleted (a process this far behind is not live anyway). */
const SQLITE_RETENTION_MS = 60_000;
const SQLITE_PRUNE_EVERY_MS = 30_000;
const SQLITE_BATCH = 1000;
const SQLITE_BATCHES_PER_POLL = 20;

class Listeners {
  readonly #set = new Set<ChangeListener>();
  add(listener: ChangeListener): () => void {
    this.#set.add(listener);
    return () => this.#set.delete(listener);
  }
  dispatch(tags: readonly string[]): void {
    if (tags.length === 0) return;
    for (const listener of this.#set) listener(tags);
  }
}

/**
 * A store's feed and its publishers. Local listeners hear this process's own changes at once when
 * they commit (`committed`), and every process's changes through the shared channel.
 */
export interface StoreChanges {
  readonly feed: ChangeFeed;
  /**
   * The publisher for `executor`; `committed` hears the tags once the change is committed (at once
   * outside a transaction, where each statement commits by itself).
   */
  publisher(executor: Kysely<Database>, committed: (tags: readonly string[]) => void): ChangePublisher;
  /** Tells this process's caches of changes it committed itself. */
  dispatchLocal(tags: readonly string[]): void;
}

export function createStoreChanges(
  dialect: 'sqlite' | 'postgres',
  db: Kysely<Database>,
  connection: {
    /** The pool's URL (PostgreSQL). */
    readonly databaseUrl: string | undefined;
    /** The listener's, if it has one of its own. */
    readonly listenUrl?: string | undefined;
    /** Tells the operator of a listener that does not hear the pool (see PostgresFeed). */
    readonly warn?: (message: string) => void;
  },
): StoreChanges {
  const listeners = new Listeners();
  let lastPruned = Number.NEGATIVE_INFINITY;
  const { databaseUrl, listenUrl, warn = () => {} } = connection;
  const feed =
    dialect === 'postgres' && databaseUrl
      ? new PostgresFeed(listenUrl ?? databaseUrl, listeners, { pool: db, warn })
      : new SqliteFeed(db, listeners);
  return {
    feed,
    dispatchLocal: (tags) => listeners.dispatch(tags),
    publisher: (executor, committed) => ({
      async publish(tags) {
        if (tags.length === 0) return;
        // First this process (outside a transaction the change has committed already; inside one,
        // `committed` holds the tags until it has), then the others.
        committed(tags);
        if (dialect === 'postgres') {
          // NOTIFY is transactional: delivered to every listener when (and only if) this commits.
          for (const payload of payloads(tags)) {
            await sql`select pg_notify(${CHANNEL}, ${payload})`.execute(executor);
          }
        } else {
          const now = Date.now();
          await executor
            .insertInto('cache_invalidations')
            .values(tags.map((tag) => ({ tag, created_at: now })))
            .execute();
          // The writers prune, so that the table stays small even where no process listens.
          if (now - lastPruned >= SQLITE_PRUNE_EVERY_MS) {
            lastPruned = now;
            // The newest row stays: the next rowid must never go back to a value already seen.
            await executor
              .deleteFrom('cache_invalidations')
              .where('created_at', '<', now - SQLITE_RETENTION_MS)
              .where('seq', '<', (eb) =>
                eb.selectFrom('cache_invalidations').select(eb.fn.max('seq').as('seq')),
              )
              .execute();
          }
        }
      },
    }),
  };
}

function payloads(tags: readonly string[]): string[] {
  const out: string[] = [];
  let current = '';
  for (const tag of tags) {
    if (current.length > 0 && current.length + tag.length + 1 > MAX_PAYLOAD) {
      out.push(current);
      current = '';
    }
    current = current.length === 0 ? tag : `${current} ${tag}`;
  }
  if (current.length > 0) out.push(current);
  return out;
}

/**
 * LISTEN on a connection of its own (the pool's connections come and go). A heartbeat NOTIFY every
 * HEARTBEAT_MS comes back through the same channel, so "heard lately" proves that notifications
 * are being delivered, not merely that a socket is open. A lost connection is re-opened with
 * back-off; each return to live drops every cached entry.
 *
 * The heartbeat proves only the listener's own channel. Changes are sent through the pool, maybe
 * by another URL (GATEHOUSE_DATABASE_LISTEN_URL), maybe through a pooler: so the listener must
 * also hear a notification sent through the pool (a proof), on connecting (it counts for nothing
 * until then) and every PROOF_EVERY_MS after, before any heartbeat sent after the proof committed
 * (PostgreSQL delivers notifications in commit order) and while no heartbeat is under way (a pooler
 * in transaction mode passes one on only then); and every heartbeat must run in the server
 * session that LISTENs (its backend's pid). One behind a pooler in transaction mode, whose
 * notifications the pooler drops while no statement of it is under way, soon misses a proof or
 * changes session, and is dropped; one on another database or a replica (NOTIFY is not
 * replicated) never hears a proof. The operator is told, once an episode, when either happens or
 * the feed has not been proven for UNPROVEN_WARNING_MS. A proof waits for the pool as any
 * statement does: a busy pool delays it, and fails nothing.
 */
class PostgresFeed implements ChangeFeed {
  readonly #connectionString: string;
  readonly #listeners: Listeners;
  readonly #pool: Kysely<Database>;
  readonly #warn: (message: string) => void;
  #client: pg.Client | undefined;
  /** The server session (backend pid) the current connection LISTENs in. */
  #listenPid: number | undefined;
  /** Whether the current connection has heard a proof sent through the pool. */
  #proven = false;
  /**
   * The proof sent and not heard yet, and the first heartbeat sent after its statement committed
   * (undefined: not committed yet), which must not be heard before it.
   */
  #proof: { readonly payload: string; heardBeforePing: number | undefined } | undefined;
  #lastProofHeard = Number.NEGATIVE_INFINITY;
  /** Heartbeats sent on the current connection, numbered, and the connection's own mark in them. */
  #pings = 0;
  #pingMark = '';
  #startedAt = Number.NEGATIVE_INFINITY;
  /** When the feed was last proven and hearing (for the warning). */
  #provenAt = Number.NEGATIVE_INFINITY;
  #warned = false;
  /** Ends the current connection as lost (and schedules the next). */
  #drop: (() => void) | undefined;
  #connectedAt = Number.NEGATIVE_INFINITY;
  #pinging = false;
  #started = false;
  #closed = false;
  /** When a notification of the channel was last heard on a proven connection. */
  #lastHeard = Number.NEGATIVE_INFINITY;
  /** Anything heard on the current connection, its own heartbeat included (for stalls). */
  #lastHeardAny = Number.NEGATIVE_INFINITY;
  #heartbeat: NodeJS.Timeout | undefined;
  #retry: NodeJS.Timeout | undefined;
  #backoffMs = 100;

  constructor(
    connectionString: string,
    listeners: Listeners,
    options: { pool: Kysely<Database>; warn: (message: string) => void },
  ) {
    this.#connectionString = connectionString;
    this.#listeners = listeners;
    this.#pool = options.pool;
    this.#warn = options.warn;
  }

  isLive(): boolean {
    this.#start();
    return this.#client !== undefined && this.#proven && performance.now() - this.#lastHeard < LIVE_WINDOW_MS;
  }

  subscribe(listener: ChangeListener): () => void {
    this.#start();
    return this.#listeners.add(listener);
  }

  #start(): void {
    if (this.#started || this.#closed) return;
    this.#started = true;
    this.#startedAt = performance.now();
    this.#heartbeat = setInterval(() => this.#tick(), HEARTBEAT_MS);
    this.#heartbeat.unref();
    void this.#connect();
  }

  #tick(): void {
    const now = performance.now();
    if (!this.#proven && now - Math.max(this.#provenAt, this.#startedAt) > UNPROVEN_WARNING_MS) {
      this.#tell(`has not heard a notification sent through the pool for ${UNPROVEN_WARNING_MS / 1000} s`);
    }
    const client = this.#client;
    if (!client) return;
    // A connection cut without a word (a partition) raises no error: silence is the sign.
    if (now - Math.max(this.#lastHeardAny, this.#connectedAt) > STALL_MS) {
      this.#drop?.();
      return;
    }
    this.#ping(client);
  }

  /**
   * Sends a proof if one is due: unproven (again at once if the last could not be sent), or
   * PROOF_EVERY_MS after the last. Called as a heartbeat ends, so that the proof arrives between
   * two of them, not during one (where it would prove nothing and be sent again).
   */
  #proveIfDue(): void {
    if (this.#proof || !this.#client) return;
    const sinceLast = performance.now() - Math.max(this.#lastProofHeard, this.#connectedAt);
    if (!this.#proven || sinceLast >= PROOF_EVERY_MS) this.#prove();
  }

  /** Tells the operator why no cache is used, once until the feed is proven again. */
  #tell(why: string): void {
    if (this.#warned) return;
    this.#warned = true;
    this.#warn(
      `PostgreSQL: the change feed's listener ${why} (the database down, or a listen URL that reaches another database, a replica or a pooler in transaction mode): no cache is used meanwhile; GATEHOUSE_DATABASE_LISTEN_URL must reach the database of GATEHOUSE_DATABASE_URL itself, or a pooler in session mode`,
    );
  }

  /**
   * Drops a connection that does not hear what the pool sends, and waits UNFIT_RETRY_MS before the
   * next: a misconfiguration does not mend itself, and each try costs a server session.
   */
  #unfit(why: string): void {
    this.#tell(why);
    this.#backoffMs = Math.max(this.#backoffMs, UNFIT_RETRY_MS);
    this.#drop?.();
  }

  #ping(client: pg.Client): void {
    if (this.#pinging) return;
    this.#pinging = true;
    this.#pings += 1;
    client
      .query<{ pid: number }>('select pg_notify($1, $2), pg_backend_pid() as pid', [
        CHANNEL,
        `${PING} ${this.#pingMark} ${this.#pings}`,
      ])
      .then(({ rows }) => {
        if (this.#client === client && rows[0]?.pid !== this.#listenPid) {
          this.#unfit('runs statements in other server sessions than the one that listens');
        }
      })
      .catch(() => {})
      .finally(() => {
        this.#pinging = false;
        if (this.#client === client) this.#proveIfDue();
      });
  }

  /** Sends a proof through the pool: to be heard before any heartbeat sent after its commit. */
  #prove(): void {
    const proof = {
      payload: `${FEED_OWN}proof ${randomUUID()}`,
      heardBeforePing: undefined as number | undefined,
    };
    this.#proof = proof;
    sql`select pg_notify(${CHANNEL}, ${proof.payload})`.execute(this.#pool).then(
      () => {
        proof.heardBeforePing = this.#pings + 1;
      },
      () => {
        // Not sent (the pool failed): sent anew at the next heartbeat.
        if (this.#proof === proof) this.#proof = undefined;
      },
    );
  }

  #heard(payload: string | undefined): void {
    const now = performance.now();
    this.#lastHeardAny = now;
    const proof = this.#proof;
    if (proof !== undefined && payload === proof.payload) {
      this.#proof = undefined;
      // Heard while a heartbeat was under way, it proves nothing: a pooler in transaction mode
      // passes a notification on only then. Another proof goes at the next heartbeat.
      if (this.#pinging) return;
      this.#proven = true;
      this.#lastProofHeard = now;
      this.#warned = false;
      this.#backoffMs = 100;
    } else if (proof?.heardBeforePing !== undefined && payload?.startsWith(`${PING} ${this.#pingMark} `)) {
      // Only this connection's own heartbeats: every process's are heard, numbered by each.
      if (Number(payload.slice(PING.length + this.#pingMark.length + 2)) >= proof.heardBeforePing) {
        this.#unfit('did not hear a notification sent through the pool');
        return;
      }
    }
    if (!this.#proven) return;
    this.#provenAt = now;
    // Back after a silence: whatever changed meanwhile went unheard, so nothing cached is trusted.
    if (now - this.#lastHeard >= LIVE_WINDOW_MS) this.#listeners.dispatch([changeTags.all]);
    this.#lastHeard = now;
    if (payload && !payload.startsWith(FEED_OWN)) this.#listeners.dispatch(payload.split(' '));
  }

  async #connect(): Promise<void> {
    if (this.#closed) return;
    const client = new pg.Client({ connectionString: this.#connectionString, connectionTimeoutMillis: 3000 });
    let lost = false;
    const onLost = () => {
      if (lost) return;
      lost = true;
      if (this.#client === client) {
        this.#client = undefined;
        this.#drop = undefined;
        this.#proven = false;
        this.#proof = undefined;
      }
      this.#lastHeard = Number.NEGATIVE_INFINITY;
      this.#lastHeardAny = Number.NEGATIVE_INFINITY;
      client.end().catch(() => {});
      this.#scheduleReconnect();
    };
    client.on('error', onLost);
    client.on('end', onLost);
    client.on('notification', (message) => {
      if (this.#client === client) this.#heard(message.payload);
    });
    let listenPid: number | undefined;
    try {
      await client.connect();
      // One message, so one server session even through a pooler: the pid is the listening one.
      const results = (await client.query(
        `listen ${CHANNEL}; select pg_backend_pid() as pid`,
      )) as unknown as {
        rows: { pid?: number }[];
      }[];
      listenPid = results[1]?.rows[0]?.pid;
    } catch {
      onLost();
      return;
    }
    if (this.#closed || lost) {
      await client.end().catch(() => {});
      return;
    }
    this.#client = client;
    this.#listenPid = listenPid;
    this.#proven = false;
    this.#proof = undefined;
    this.#pings = 0;
    this.#pingMark = randomUUID().slice(0, 8);
    this.#drop = onLost;
    this.#connectedAt = performance.now();
    this.#ping(client);
  }

  #scheduleReconnect(): void {
    if (this.#closed || this.#retry) return;
    this.#retry = setTimeout(() => {
      this.#retry = undefined;
      void this.#connect();
    }, this.#backoffMs);
    this.#retry.unref();
    // Doubling to 5 s at most, unless a longer wait was set (an unfit connection's).
    this.#backoffMs = Math.max(
      Math.min(this.#backoffMs * 2, 5000),
      Math.min(this.#backoffMs, UNFIT_RETRY_MS),
    );
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#heartbeat);
    clearTimeout(this.#retry);
    const client = this.#client;
    this.#client = undefined;
    await client?.end().catch(() => {});
  }
}

/**
 * Polls `cache_invalidations` every POLL_MS for rows past the last one seen. Live only while polls
 * succeed; a return to live (first poll, or after failures or a stalled event loop) drops
 * everything cached, since rows may have been pruned meanwhile (writers delete rows older than
 * SQLITE_RETENTION_MS).
 */
class SqliteFeed implements ChangeFeed {
  static readonly POLL_MS = 100;
  readonly #db: Kysely<Database>;
  readonly #listeners: Listeners;
  #timer: NodeJS.Timeout | undefined;
  #cursor: number | undefined;
  #polling: Promise<void> | undefined;
  #lastPolled = Number.NEGATIVE_INFINITY;
  #closed = false;

  constructor(db: Kysely<Database>, listeners: Listeners) {
    this.#db = db;
    this.#listeners = listeners;
  }

  isLive(): boolean {
    this.#start();
    return performance.now() - this.#lastPolled < LIVE_WINDOW_MS;
  }

  subscribe(listener: ChangeListener): () => void {
    this.#start();
    return this.#listeners.add(listener);
  }

  #start(): void {
    if (this.#timer || this.#closed) return;
    this.#timer = setInterval(() => {
      this.#polling ??= this.#poll().finally(() => {
        this.#polling = undefined;
      });
    }, SqliteFeed.POLL_MS);
    this.#timer.unref();
  }

  async #poll(): Promise<void> {
    const started = performance.now();
    try {
      let cursor = this.#cursor;
      if (cursor === undefined) {
        const row = await this.#db
          .selectFrom('cache_invalidations')
          .select((eb) => eb.fn.max('seq').as('seq'))
          .executeTakeFirst();
        cursor = Number(row?.seq ?? 0);
      }
      const tags: string[] = [];
      let batches = 0;
      let behind = true;
      // A busy store (thousands of refreshes a second) writes more than one batch per poll.
      while (behind && batches < SQLITE_BATCHES_PER_POLL) {
        const rows = await this.#db
          .selectFrom('cache_invalidations')
          .select(['seq', 'tag'])
          .where('seq', '>', cursor)
          .orderBy('seq')
          .limit(SQLITE_BATCH)
          .execute();
        for (const row of rows) tags.push(row.tag);
        cursor = rows.at(-1)?.seq ?? cursor;
        behind = rows.length === SQLITE_BATCH;
        batches += 1;
      }
      if (this.#closed) return;
      // Unheard changes (first poll, a gap, or still behind after the batches): drop everything.
      if (started - this.#lastPolled >= LIVE_WINDOW_MS || behind) tags.push(changeTags.all);
      this.#listeners.dispatch(tags);
      this.#cursor = cursor;
      this.#lastPolled = started;
    } catch {
      // Not live until a poll succeeds again; the caches are bypassed meanwhile.
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#timer);
    await this.#polling;
  }
}
