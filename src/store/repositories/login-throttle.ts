import { type Kysely, type Selectable, sql } from 'kysely';
import type { Dialect } from '../connect.js';
import type { Database, LoginThrottleTable } from '../schema.js';
import { type StatementShape, shapeOf, standIn, withValues } from './compiled-once.js';

/** Reads of up to this many counters are compiled once per count; more are built each time. */
const READS_KEPT = 8;

/** One counter: `scope` says what is counted ("pair", "account", "ip", "rate:signin"), `subject` whose. */
export interface CounterKey {
  readonly scope: string;
  readonly subject: string;
  /** The account an account+address counter belongs to, so that unlocking the account finds it. */
  readonly owner?: string | undefined;
}

export interface CounterState {
  readonly hits: number;
  /** When the current counting window began (epoch ms). */
  readonly windowStart: number;
  /** Set while the counter locks its subject (epoch ms); null when it does not. */
  readonly lockedUntil: number | null;
}

/** One counter a failed sign-in counts in, and its rule. */
export interface FailureHit {
  readonly key: CounterKey;
  readonly rule: HitRule;
}

export interface HitRule {
  /** Hits count within this long of the first one; then counting starts again. */
  readonly windowMs: number;
  /** The hit that brings the count to this many locks the subject; 0: never locks. */
  readonly lockAt: number;
  readonly lockMs: number;
}

/**
 * Counters of the brute-force defences and the rate limits, in the store so that every node of a
 * deployment sees the same counts and a restart forgets nothing. Each hit is one atomic upsert
 * (`insert ... on conflict do update`, the same SQL on SQLite and PostgreSQL), so concurrent
 * requests on any number of nodes never lose a count.
 */
export function createLoginThrottleRepository(db: Kysely<Database>, dialect: Dialect) {
  const matching = (keys: readonly CounterKey[]) =>
    sql<boolean>`(${sql.join(
      keys.map((k) => sql`(scope = ${k.scope} and subject = ${k.subject})`),
      sql` or `,
    )})`;

  /**
   * Reads of up to READS_KEPT counters, compiled once per count (compiled-once.ts): every sign-in
   * reads three. A stand-in's key is its value's place in the keys' scopes and subjects, in turn.
   */
  const reads = new Map<number, StatementShape<number>>();
  const readOf = (count: number): StatementShape<number> => {
    const known = reads.get(count);
    if (known) return known;
    const standIns = Array.from({ length: count }, (_, i) => ({
      scope: standIn<string, number>(2 * i),
      subject: standIn<string, number>(2 * i + 1),
    }));
    const shape = shapeOf<number>(
      db
        .selectFrom('login_throttle')
        .select(['scope', 'subject', 'hits', 'window_start', 'locked_until'])
        .where(matching(standIns)),
    );
    if (count <= READS_KEPT) reads.set(count, shape);
    return shape;
  };

  /**
   * Counts `count` hits (one, unless a rate limiter reports several it admitted). A window that
   * has run out, or a lock that has, starts a new count; while the counter locks its subject
   * nothing is counted and the answer is undefined.
   */
  const hit = async (
    key: CounterKey,
    now: number,
    rule: HitRule,
    count = 1,
  ): Promise<CounterState | undefined> => {
    const locking = rule.lockAt > 0;
    // An upper bound of when the row stops mattering; pruning only needs "surely over".
    const expiresAt = now + Math.max(rule.windowMs, locking ? rule.lockMs : 0);
    const fresh = sql<boolean>`(login_throttle.locked_until is not null
      or login_throttle.window_start + ${rule.windowMs} <= ${now})`;
    const hits = sql<number>`case when ${fresh} then ${count} else login_throttle.hits + ${count} end`;
    const row = await db
      .insertInto('login_throttle')
      .values({
        scope: key.scope,
        subject: key.subject,
        owner: key.owner ?? null,
        hits: count,
        window_start: now,
        locked_until: locking && rule.lockAt <= 1 ? now + rule.lockMs : null,
        expires_at: expiresAt,
      })
      .onConflict((conflict) =>
        conflict
          .columns(['scope', 'subject'])
          .doUpdateSet({
            hits,
            window_start: sql<number>`case when ${fresh} then cast(${now} as bigint)
              else login_throttle.window_start end`,
            locked_until: locking
              ? sql<number | null>`case when (${hits}) >= ${rule.lockAt}
                  then cast(${now + rule.lockMs} as bigint) else null end`
              : null,
            expires_at: expiresAt,
          })
          .where(
            sql<boolean>`(login_throttle.locked_until is null or login_throttle.locked_until <= ${now})`,
          ),
      )
      .returning(['hits', 'window_start', 'locked_until'])
      .executeTakeFirst();
    return row && { hits: row.hits, windowStart: row.window_start, lockedUntil: row.locked_until };
  };

  return {
    async read(keys: readonly CounterKey[]): Promise<(CounterState | undefined)[]> {
      if (keys.length === 0) return [];
      const { rows } = await db.executeQuery<
        Pick<Selectable<LoginThrottleTable>, 'scope' | 'subject' | 'hits' | 'window_start' | 'locked_until'>
      >(
        withValues(readOf(keys.length), (at) => {
          const key = keys[at >> 1];
          return at % 2 === 0 ? key?.scope : key?.subject;
        }),
      );
      return keys.map((key) => {
        const row = rows.find((r) => r.scope === key.scope && r.subject === key.subject);
        return row && { hits: row.hits, windowStart: row.window_start, lockedUntil: row.locked_until };
      });
    },

    hit,

    /**
     * Counts one failed sign-in in each of its counters, in turn. Called within a transaction
     * (LoginThrottle's store backend), so that the change feed's announcement of the failure
     * (invalidating-repositories.ts) commits with the counts.
     */
    async countFailure(hits: readonly FailureHit[], now: number): Promise<(CounterState | undefined)[]> {
      const states: (CounterState | undefined)[] = [];
      for (const { key, rule } of hits) states.push(await hit(key, now, rule));
      return states;
    },

    async clear(keys: readonly CounterKey[]): Promise<void> {
      if (keys.length === 0) return;
      await db.deleteFrom('login_throttle').where(matching(keys)).execute();
    },

    /** Deletes the counters that belong to an account (its account+address counters). */
    async clearOwned(owner: string): Promise<number> {
      const result = await db.deleteFrom('login_throttle').where('owner', '=', owner).executeTakeFirst();
      return Number(result.numDeletedRows);
    },

    /**
     * Deletes counters whose window and lock are both over. On PostgreSQL it passes over rows a
     * transaction holds: a failed sign-in's counts lock three rows in turn, and a delete that
     * waited for one while holding another that transaction wants next would deadlock with it.
     */
    async prune(now: number): Promise<number> {
      const expired = db
        .selectFrom('login_throttle')
        .select(['scope', 'subject'])
        .where('expires_at', '<=', now);
      const result = await db
        .deleteFrom('login_throttle')
        .where('expires_at', '<=', now)
        .$if(dialect === 'postgres', (query) =>
          query.where(sql<boolean>`(scope, subject) in (${expired.forUpdate().skipLocked()})`),
        )
        .executeTakeFirst();
      return Number(result.numDeletedRows);
    },
  };
}

export type LoginThrottleRepository = ReturnType<typeof createLoginThrottleRepository>;
