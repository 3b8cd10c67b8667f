// `node --import tsx bench/pgbench/seed.ts [DATABASE]`: a fresh PostgreSQL database (default
// gatehouse_pgbench) with Gatehouse's migrations and 1,000 users user0..user999 made by its own
// code, and 300,000 live sessions of theirs (bench-session-0..299999) for the logout script, for
// the scripts beside this file (bench/pgbench/run.sh). Drops the database first.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { loadConfig } from '../../src/config.js';
import { createCore } from '../../src/core/index.js';
import { connectStore, storeOptionsOf } from '../../src/store/connect.js';

const name = process.argv[2] ?? 'gatehouse_pgbench';
const LOGOUT_SESSIONS = 300_000;
if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`not a plain database name: ${name}`);
const server = process.env.GATEHOUSE_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const admin = new pg.Client({ connectionString: server });
await admin.connect();
await admin.query(`drop database if exists ${name} with (force)`);
await admin.query(`create database ${name}`);
await admin.end();
const url = new URL(server);
url.pathname = `/${name}`;
const work = mkdtempSync(path.join(tmpdir(), 'gatehouse-pgbench-'));
const config = loadConfig({
  GATEHOUSE_DATA_DIR: work,
  GATEHOUSE_DATABASE_URL: url.toString(),
  GATEHOUSE_ADMIN_PASSWORD: 'Pgbench-seed-phrase-2031',
  GATEHOUSE_LOG_LEVEL: 'silent',
  // The passwords are never checked: the scripts only send the sign-in's statements.
  GATEHOUSE_ARGON2_MEMORY_KIB: '1024',
  GATEHOUSE_ARGON2_ITERATIONS: '1',
});
const store = connectStore(storeOptionsOf(config));
await store.migrate();
const core = await createCore({ config, store });
await core.bootstrap();
await core.tenants.create({ code: 'acme', name: 'Acme' });
for (let i = 0; i < 1000; i += 1) {
  await core.accounts.createUser({
    username: `user${i}`,
    password: 'Pgbench-seed-phrase-2031',
    tenantCode: 'acme',
    role: 'user',
  });
}
await core.close();
await store.destroy();
// The logout script ends a random one each time: enough that a round seldom finds one ended.
const seeded = new pg.Client({ connectionString: url.toString() });
await seeded.connect();
const now = Date.now();
await seeded.query(
  `insert into sessions (id, kind, user_id, secret_hash, created_at, last_seen_at, expires_at, ip, user_agent)
   select 'bench-session-' || g, 'user', u.id, md5('bench-session-' || g), $1::bigint, $1::bigint, $1::bigint + 30::bigint * 86400000, '127.0.0.1', 'pgbench'
   from generate_series(0, ${LOGOUT_SESSIONS - 1}) g join users u on u.username_key = 'user' || (g % 1000)`,
  [now],
);
await seeded.query('vacuum analyze sessions');
await seeded.end();
rmSync(work, { recursive: true, force: true });
console.log(`${name}: 1,001 users, ${LOGOUT_SESSIONS.toLocaleString('en-US')} sessions`);
