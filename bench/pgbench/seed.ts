// `node --import tsx bench/pgbench/seed.ts [DATABASE]`: a fresh PostgreSQL database (default
// gatehouse_pgbench) with Gatehouse's migrations and 1,000 users user0..user999 made by its own
// code, for the sign-in scripts beside this file (bench/pgbench/run.sh). Drops the database first.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { loadConfig } from '../../src/config.js';
import { createCore } from '../../src/core/index.js';
import { connectStore, storeOptionsOf } from '../../src/store/connect.js';

const name = process.argv[2] ?? 'gatehouse_pgbench';
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
rmSync(work, { recursive: true, force: true });
console.log(`${name}: 1,001 users`);
