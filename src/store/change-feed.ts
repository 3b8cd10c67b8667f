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
/** A listener with a URL of its own that has not heard the pool this long is reported, once. */
const UNPROVEN_WARNING_MS = 10_000;
/** An unheard proof is sent again this often (every listening process hears each one). */
const PROOF_RESEND_MS = 1000;
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
      ? new PostgresFeed(listenUrl ?? databaseUrl, listeners, {
          pool: db,
          proveThroughPool: listenUrl !== undefined && listenUrl !== databaseUrl,
          warn,
        })
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
 * The listener may reach PostgreSQL by a URL of its own (GATEHOUSE_DATABASE_LISTEN_URL), and then
 * its heartbeat proves only its own channel: so each new listening connection counts for nothing
 * until it has heard a notification sent through the pool, the way every change is sent (sent
 * again each heartbeat until heard: a busy pool delays it, and the connection is kept meanwhile).
 * One that listens to another database, a replica (NOTIFY is not replicated) or through a pooler
 * in transaction mode never hears it: the caches are not trusted, and the operator is told.
 */
class PostgresFeed implements ChangeFeed {
  readonly #connectionString: string;
  readonly #listeners: Listeners;
  readonly #pool: Kysely<Database>;
  readonly #proveThroughPool: boolean;
  readonly #warn: (message: string) => void;
  #client: pg.Client | undefined;
  /** The proof the current connection waits to hear from the pool; undefined once heard. */
  #proof: string | undefined;
  #proving = false;
  #lastProofSent = Number.NEGATIVE_INFINITY;
  #warnedUnproven = false;
  /** Anything heard on the current connection, its own heartbeat included (for stalls). */
  #lastHeardAny = Number.NEGATIVE_INFINITY;
  /** Ends the current connection as lost (and schedules the next). */
  #drop: (() => void) | undefined;
  #connectedAt = Number.NEGATIVE_INFINITY;
  #pinging = false;
  #started = false;
  #closed = false;
  #lastHeard = Number.NEGATIVE_INFINITY;
  #heartbeat: NodeJS.Timeout | undefined;
  #retry: NodeJS.Timeout | undefined;
  #backoffMs = 100;

  constructor(
    connectionString: string,
    listeners: Listeners,
    options: { pool: Kysely<Database>; proveThroughPool: boolean; warn: (message: string) => void },
  ) {
    this.#connectionString = connectionString;
    this.#listeners = listeners;
    this.#pool = options.pool;
    this.#proveThroughPool = options.proveThroughPool;
    this.#warn = options.warn;
  }

  isLive(): boolean {
    this.#start();
    return (
      this.#client !== undefined &&
      this.#proof === undefined &&
      performance.now() - this.#lastHeard < LIVE_WINDOW_MS
    );
  }

  subscribe(listener: ChangeListener): () => void {
    this.#start();
    return this.#listeners.add(listener);
  }

  #start(): void {
    if (this.#started || this.#closed) return;
    this.#started = true;
    this.#heartbeat = setInterval(() => this.#tick(), HEARTBEAT_MS);
    this.#heartbeat.unref();
    void this.#connect();
  }

  #tick(): void {
    const client = this.#client;
    if (!client) return;
    const now = performance.now();
    // A connection cut without a word (a partition) raises no error: silence is the sign.
    if (now - Math.max(this.#lastHeardAny, this.#connectedAt) > STALL_MS) {
      this.#drop?.();
      return;
    }
    this.#ping(client);
    if (this.#proof !== undefined) {
      this.#prove(this.#proof);
      if (!this.#warnedUnproven && now - this.#connectedAt > UNPROVEN_WARNING_MS) {
        this.#warnedUnproven = true;
        this.#warn(
          `PostgreSQL: the change feed's listener has not heard a notification sent through the pool in ${UNPROVEN_WARNING_MS / 1000} s, so no cache is used: GATEHOUSE_DATABASE_LISTEN_URL must reach the database of GATEHOUSE_DATABASE_URL itself (not a replica, not a pooler in transaction mode)`,
        );
      }
    }
  }

  /** Sends the proof the current connection waits for through the pool (one at a time, once a second). */
  #prove(proof: string): void {
    const now = performance.now();
    if (this.#proving || now - this.#lastProofSent < PROOF_RESEND_MS) return;
    this.#proving = true;
    this.#lastProofSent = now;
    sql`select pg_notify(${CHANNEL}, ${proof})`
      .execute(this.#pool)
      .catch(() => {})
      .finally(() => {
        this.#proving = false;
      });
  }

  #ping(client: pg.Client): void {
    if (this.#pinging) return;
    this.#pinging = true;
    client
      .query('select pg_notify($1, $2)', [CHANNEL, PING])
      .catch(() => {})
      .finally(() => {
        this.#pinging = false;
      });
  }

  #heard(payload: string | undefined): void {
    const now = performance.now();
    this.#lastHeardAny = now;
    if (this.#proof !== undefined) {
      if (payload !== this.#proof) return;
      this.#proof = undefined;
    }
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
    try {
      await client.connect();
      await client.query(`listen ${CHANNEL}`);
    } catch {
      onLost();
      return;
    }
    if (this.#closed || lost) {
      await client.end().catch(() => {});
      return;
    }
    this.#proof = this.#proveThroughPool ? `${FEED_OWN}proof ${randomUUID()}` : undefined;
    this.#lastProofSent = Number.NEGATIVE_INFINITY;
    this.#client = client;
    this.#drop = onLost;
    this.#connectedAt = performance.now();
    this.#backoffMs = 100;
    this.#ping(client);
    if (this.#proof !== undefined) this.#prove(this.#proof);
  }

  #scheduleReconnect(): void {
    if (this.#closed || this.#retry) return;
    this.#retry = setTimeout(() => {
      this.#retry = undefined;
      void this.#connect();
    }, this.#backoffMs);
    this.#retry.unref();
    this.#backoffMs = Math.min(this.#backoffMs * 2, 5000);
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
