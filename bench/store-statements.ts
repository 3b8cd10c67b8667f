// `node --import tsx bench/store-statements.ts [--store postgres] [--rounds 30]`: the store work of
// each authentication operation, through the real routes (in-process injection, production argon2
// settings): statements by kind and their time, with the session and credential caches hit and
// missed; then the plain single-row insert, update and read rates of the same store on this
// machine. docs/scaling.md is written from its output.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import SQLite from 'better-sqlite3';
import pg from 'pg';
import { buildApp } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import { createCore } from '../src/core/index.js';
import { connectStore, storeOptionsOf } from '../src/store/connect.js';

const { values: args } = parseArgs({
  options: {
    store: { type: 'string', default: 'sqlite' },
    rounds: { type: 'string', default: '30' },
    seconds: { type: 'string', default: '5' },
  },
});
const dialect = args.store === 'postgres' ? 'postgres' : 'sqlite';
const ROUNDS = Number(args.rounds);
const PASSWORD = 'Statement-count-phrase-2031';
const ADMIN_URL = process.env.GATEHOUSE_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

type Kind = 'select' | 'insert' | 'update' | 'delete' | 'notify' | 'transaction' | 'other';
interface Tally {
  counts: Record<Kind, number>;
  /** Statements sent: a PostgreSQL statement of several joined writes is one. */
  sent: number;
  ms: number;
}
const KINDS: Kind[] = ['select', 'insert', 'update', 'delete', 'notify', 'transaction', 'other'];
const newTally = (): Tally => ({
  counts: Object.fromEntries(KINDS.map((k) => [k, 0])) as Record<Kind, number>,
  sent: 0,
  ms: 0,
});
let tally: Tally | undefined;

function kindOf(text: string): Kind | undefined {
  const sql = text.trim().toLowerCase();
  // The change feed's own traffic (heartbeats, SQLite polls and prunes) is not an operation's.
  if (sql.startsWith('listen')) return undefined;
  if (sql.includes('cache_invalidations') && !sql.startsWith('insert')) return undefined;
  // The change feed's publication: a NOTIFY on PostgreSQL, a row of the feed table on SQLite.
  if (sql.includes('pg_notify') || sql.includes('cache_invalidations')) return 'notify';
  const word = /^([a-z]+)/.exec(sql)?.[1] ?? '';
  if (word === 'select' || word === 'with') return 'select';
  if (word === 'insert' || word === 'update' || word === 'delete') return word;
  if (['begin', 'commit', 'rollback', 'start', 'savepoint', 'release'].includes(word)) return 'transaction';
  return 'other';
}
/**
 * The writes of a statement that joins several (Store.writeTogether: `with w0 as (insert …), w1 as
 * (update …) insert …`), each counted as its kind; none for a statement that only reads.
 */
function joinedWrites(sql: string): Kind[] {
  const clauses = [...sql.matchAll(/\bw\d+ as \((insert|update|delete)\b/g)].map((m) => m[1] as Kind);
  // The statement the clauses lead to begins right after the last one closes.
  const main = [...sql.matchAll(/\) (insert into|update|delete from) "/g)].at(-1)?.[1]?.split(' ')[0];
  return clauses.length > 0 && main ? [...clauses, main as Kind] : [];
}
const record = (text: string, ms: number, values?: unknown) => {
  if (!tally) return;
  if (Array.isArray(values) && values[1] === '~ping') return;
  const kind = kindOf(text);
  if (!kind) return;
  const joined = joinedWrites(text.trim().toLowerCase());
  for (const each of joined.length > 0 ? joined : [kind]) tally.counts[each] += 1;
  tally.sent += 1;
  tally.ms += ms;
};

// Instrument the drivers themselves: every statement, with its text and its time.
const pgQuery = pg.Client.prototype.query as (...a: unknown[]) => unknown;
pg.Client.prototype.query = function (this: pg.Client, ...a: unknown[]) {
  const first = a[0];
  const text = typeof first === 'string' ? first : ((first as { text?: string })?.text ?? '');
  const values = Array.isArray(a[1]) ? a[1] : undefined;
  const started = performance.now();
  const result = pgQuery.apply(this, a);
  if (result && typeof (result as Promise<unknown>).then === 'function') {
    (result as Promise<unknown>).then(
      () => record(text, performance.now() - started, values),
      () => {},
    );
  }
  return result;
} as typeof pg.Client.prototype.query;
const sqlitePrepare = SQLite.prototype.prepare;
SQLite.prototype.prepare = function (this: SQLite.Database, source: string) {
  const started = performance.now();
  const statement = sqlitePrepare.call(this, source);
  const prepared = performance.now() - started;
  for (const method of ['all', 'get', 'run'] as const) {
    const original = statement[method].bind(statement) as (...p: unknown[]) => unknown;
    (statement as unknown as Record<string, unknown>)[method] = (...params: unknown[]) => {
      const t = performance.now();
      try {
        return original(...params);
      } finally {
        record(source, prepared + performance.now() - t);
      }
    };
  }
  return statement;
} as typeof SQLite.prototype.prepare;

async function freshPostgres() {
  const name = `gatehouse_stmts_${process.pid}_${Date.now()}`;
  const admin = new pg.Client({ connectionString: ADMIN_URL });
  await admin.connect();
  await admin.query(`create database ${name}`);
  await admin.end();
  const url = new URL(ADMIN_URL);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    async drop() {
      const again = new pg.Client({ connectionString: ADMIN_URL });
      await again.connect();
      await again.query(`drop database if exists ${name} with (force)`);
      await again.end();
    },
  };
}

const work = mkdtempSync(path.join(tmpdir(), 'gatehouse-stmts-'));
const database = dialect === 'postgres' ? await freshPostgres() : undefined;
const config = loadConfig({
  GATEHOUSE_DATA_DIR: work,
  ...(database ? { GATEHOUSE_DATABASE_URL: database.url } : {}),
  GATEHOUSE_ADMIN_PASSWORD: PASSWORD,
  GATEHOUSE_LOG_LEVEL: 'silent',
  GATEHOUSE_RATE_LIMIT_SIGNIN: 'off',
  GATEHOUSE_RATE_LIMIT_REFRESH: 'off',
});
const store = connectStore(storeOptionsOf(config));
await store.migrate();
const core = await createCore({ config, store });
await core.bootstrap();
await core.catalog.createRegion({ name: 'au-east1', description: 'Sydney' });
await core.catalog.createZone({ name: 'au-east1-a', regionName: 'au-east1', description: 'A' });
await core.tenants.create({ code: 'acme', name: 'Acme' });
for (let i = 0; i < 4; i += 1) {
  await core.accounts.createUser({
    username: `user${i}`,
    password: PASSWORD,
    tenantCode: 'acme',
    role: 'user',
  });
}
const app = await buildApp({ core });
await app.ready();

const inject = app.inject.bind(app);
const signIn = async (username = 'user0') => {
  const response = await inject({
    method: 'POST',
    url: '/api/v2.1/auth/signin',
    payload: { username, password: PASSWORD },
  });
  if (response.statusCode !== 200) throw new Error(`sign-in: ${response.statusCode} ${response.body}`);
  return (response.json() as { result: { records: [{ token: string }] } }).result.records[0].token;
};
const login = async () => {
  const response = await inject({
    method: 'POST',
    url: '/api/session/login',
    payload: { login: 'user1', password: PASSWORD },
  });
  return response.cookies.find((c) => c.name === 'gatehouse_session')?.value ?? '';
};
const feedLive = async () => {
  for (let i = 0; i < 200 && !store.changes.isLive(); i += 1) await new Promise((r) => setTimeout(r, 20));
};

interface Row {
  readonly operation: string;
  readonly tally: Tally;
  readonly wallMs: number;
}
const rows: Row[] = [];

/** Runs `setup` then `operation` ROUNDS times; only the operation is counted. */
async function measure(
  operation: string,
  run: () => Promise<unknown>,
  setup: () => Promise<unknown> = async () => {},
) {
  const total = newTally();
  let wall = 0;
  for (let i = 0; i < ROUNDS; i += 1) {
    await setup();
    // Let the previous round's fire-and-forget work (and the feed's notifications) settle.
    await new Promise((r) => setTimeout(r, 5));
    tally = newTally();
    const started = performance.now();
    await run();
    wall += performance.now() - started;
    await new Promise((r) => setTimeout(r, 5));
    for (const kind of KINDS) total.counts[kind] += tally.counts[kind];
    total.sent += tally.sent;
    total.ms += tally.ms;
    tally = undefined;
  }
  rows.push({ operation, tally: total, wallMs: wall });
}

const expectStatus = (expected: number) => (response: { statusCode: number; body: string }) => {
  if (response.statusCode !== expected) throw new Error(`${response.statusCode}: ${response.body}`);
};

await measure('NSE sign-in (POST /auth/signin)', () => signIn());
await measure('Storware login (POST /api/session/login)', () => login());
{
  let token = await signIn('user2');
  await measure('NSE refresh (POST /auth/refresh)', async () => {
    const response = await inject({
      method: 'POST',
      url: '/api/v2.1/auth/refresh',
      headers: { authorization: `Bearer ${token}` },
    });
    expectStatus(200)(response);
    token = (response.json() as { result: { records: [{ token: string }] } }).result.records[0].token;
  });
}
{
  let token = '';
  await measure(
    'logout (POST /api/session/logout, bearer)',
    async () =>
      expectStatus(201)(
        await inject({
          method: 'POST',
          url: '/api/session/logout',
          headers: { authorization: `Bearer ${token}` },
        }),
      ),
    async () => {
      token = await signIn('user3');
    },
  );
}

await feedLive();
const token = await signIn();
const cookie = await login();
const bearerHeaders = { authorization: `Bearer ${token}` };
const basicHeaders = {
  authorization: `Basic ${Buffer.from(`user0:${PASSWORD}`).toString('base64')}`,
};
const reads: [string, () => Promise<unknown>][] = [
  [
    'GET /api/session (bearer; authentication only)',
    async () =>
      expectStatus(204)(await inject({ method: 'GET', url: '/api/session', headers: bearerHeaders })),
  ],
  [
    'GET /api/v2.1/auth/regions (bearer)',
    async () =>
      expectStatus(200)(
        await inject({ method: 'GET', url: '/api/v2.1/auth/regions', headers: bearerHeaders }),
      ),
  ],
  [
    'GET /api/session/user (cookie)',
    async () =>
      expectStatus(200)(
        await inject({ method: 'GET', url: '/api/session/user', cookies: { gatehouse_session: cookie } }),
      ),
  ],
];
for (const [name, run] of reads) {
  await run();
  await measure(`${name}, session cache hit`, run);
  await measure(`${name}, session cache miss`, run, async () => core.caches.sessions.invalidate(['*']));
}
const basicRead = async () =>
  expectStatus(200)(await inject({ method: 'GET', url: '/api/v2.1/auth/regions', headers: basicHeaders }));
await basicRead();
await measure('GET /api/v2.1/auth/regions (HTTP Basic), credential cache hit', basicRead);
await measure(
  'GET /api/v2.1/auth/regions (HTTP Basic), credential cache miss (argon2)',
  basicRead,
  async () => core.caches.credentials.invalidate(['*']),
);

await app.close();
await core.close();

/** Single-row statements, `clients` at a time, for `seconds`: what this store does per second. */
async function rates(seconds: number, clients: number) {
  const db = store.db;
  const { sql } = await import('kysely');
  await sql`create table bench_rows (id text primary key, a bigint not null, b text not null)`.execute(db);
  let next = 0;
  const run = async (statement: (i: number) => Promise<unknown>) => {
    let done = 0;
    const deadline = performance.now() + seconds * 1000;
    await Promise.all(
      Array.from({ length: clients }, async () => {
        while (performance.now() < deadline) {
          await statement(next++);
          done += 1;
        }
      }),
    );
    return done / seconds;
  };
  const inserts = await run((i) =>
    db
      .insertInto('bench_rows' as never)
      .values({ id: `r${i}`, a: i, b: 'x'.repeat(100) } as never)
      .execute(),
  );
  const total = next;
  const updates = await run((i) =>
    db
      .updateTable('bench_rows' as never)
      .set({ a: i } as never)
      .where('id' as never, '=', `r${i % total}` as never)
      .execute(),
  );
  const selects = await run((i) =>
    db
      .selectFrom('bench_rows' as never)
      .selectAll()
      .where('id' as never, '=', `r${i % total}` as never)
      .execute(),
  );
  return { inserts, updates, selects, clients };
}
const measured = await rates(Number(args.seconds), dialect === 'postgres' ? 20 : 1);
await store.destroy();
await database?.drop();
rmSync(work, { recursive: true, force: true });

const lines = [
  `store: ${dialect}; ${ROUNDS} rounds each; production argon2 settings; statements of the change feed's own heartbeat and polling excluded`,
  '',
  '| operation | select | insert | update | delete | feed (notify) | begin/commit | sent | store ms/op | total ms/op |',
  '|---|---|---|---|---|---|---|---|---|---|',
  ...rows.map(({ operation, tally: t, wallMs }) => {
    const per = (n: number) => (n / ROUNDS).toFixed(n % ROUNDS === 0 ? 0 : 1);
    return `| ${operation} | ${per(t.counts.select + t.counts.other)} | ${per(t.counts.insert)} | ${per(t.counts.update)} | ${per(t.counts.delete)} | ${per(t.counts.notify)} | ${per(t.counts.transaction)} | ${per(t.sent)} | ${(t.ms / ROUNDS).toFixed(2)} | ${(wallMs / ROUNDS).toFixed(2)} |`;
  }),
  '',
  `single-row statements, ${measured.clients} at a time, ${args.seconds} s each: ` +
    `${Math.round(measured.inserts)} inserts/s, ${Math.round(measured.updates)} updates/s, ` +
    `${Math.round(measured.selects)} primary-key reads/s`,
];
process.stdout.write(`${lines.join('\n')}\n`);
