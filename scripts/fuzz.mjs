// The long run of the OpenAPI fuzz suite (test/fuzz/openapi-fuzz.test.ts), on SQLite and PostgreSQL:
//   npm run fuzz -- --cases 5000 [--seed some-text]
// --cases: generated cases per store, spread over every operation, each sent anonymously and as
// root (default 5000); --seed: the PRNG seed (default: a new one, printed, to replay a failure).
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: { cases: { type: 'string', default: '5000' }, seed: { type: 'string' } },
});
const cases = Number(values.cases);
if (!Number.isInteger(cases) || cases < 1) {
  console.error(`--cases: expected a positive integer, got "${values.cases}"`);
  process.exit(2);
}
const seed = values.seed ?? `fuzz-${randomBytes(4).toString('hex')}`;
console.log(
  `Fuzzing with ${cases} cases per store, seed ${seed} (replay: npm run fuzz -- --cases ${cases} --seed ${seed})`,
);
const result = spawnSync(process.execPath, ['scripts/run-tests.mjs', 'test/fuzz/openapi-fuzz.test.ts'], {
  stdio: 'inherit',
  env: { ...process.env, GATEHOUSE_FUZZ_CASES: String(cases), GATEHOUSE_FUZZ_SEED: seed },
});
process.exit(result.status ?? 1);
