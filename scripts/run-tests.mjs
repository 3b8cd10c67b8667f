// Runs every test/**/*.test.ts with node's test runner (TypeScript through tsx), after telling
// plainly whether the PostgreSQL half will run. Extra arguments are passed to `node --test`.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';

const adminUrl = process.env.GATEHOUSE_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const required = process.env.GATEHOUSE_TEST_REQUIRE_POSTGRES === '1';

async function postgresReason() {
  const client = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: 2000 });
  try {
    await client.connect();
    await client.query('select 1');
    return undefined;
  } catch (error) {
    return error.message;
  } finally {
    await client.end().catch(() => {});
  }
}

const reason = await postgresReason();
if (reason) {
  const message = `PostgreSQL at ${adminUrl.replace(/\/\/[^@]*@/, '//')} is unreachable (${reason}).`;
  if (required) {
    console.error(`${message} GATEHOUSE_TEST_REQUIRE_POSTGRES=1: failing.`);
    process.exit(1);
  }
  console.log(`${message}\nRunning the SQLite half only: every PostgreSQL suite is SKIPPED.\n`);
} else {
  console.log('Stores under test: SQLite and PostgreSQL.\n');
}

const args = process.argv.slice(2);
const explicit = args.filter((a) => a.endsWith('.ts'));
const files = explicit.length
  ? explicit
  : readdirSync('test', { recursive: true })
      .map(String)
      .filter((f) => f.endsWith('.test.ts'))
      .map((f) => path.join('test', f))
      .sort();
// Suites that compare the times of two code paths run afterwards, alone: beside other test files
// (the runner runs them in parallel) the scheduler's noise is larger than what they look for.
const RUN_ALONE = [path.join('test', 'security', 'timing.test.ts')];
const run = (batch) =>
  batch.length === 0
    ? 0
    : (spawnSync(
        process.execPath,
        ['--import', 'tsx', '--test', ...args.filter((a) => !a.endsWith('.ts')), ...batch],
        { stdio: 'inherit', env: { ...process.env, GATEHOUSE_TEST_POSTGRES_SKIPPED: reason ? '1' : '' } },
      ).status ?? 1);
const together = run(files.filter((f) => !RUN_ALONE.includes(path.normalize(f))));
const alone = run(files.filter((f) => RUN_ALONE.includes(path.normalize(f))));
if (reason && !required) console.log('\nNote: PostgreSQL was skipped; only SQLite was tested.');
process.exit(together !== 0 ? together : alone);
