import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { allowedCpus, cpuList } from '../bench/cpu-pinning.js';
import type { BenchReport } from '../bench/report.js';
import { forEachDialect } from './helpers/dialects.js';

const root = path.resolve(import.meta.dirname, '..');
const run = promisify(execFile);

/**
 * Keeps `npm run bench` working: every scenario runs for a moment against a real server of two
 * workers and writes its JSON, its table and its chart. No timing is asserted (a test machine's
 * speed proves nothing); what is asserted is that each scenario produced a measurement with its
 * baseline and no failed request, and that the published forms show every one.
 */
forEachDialect('npm run bench --smoke', (dialect) => {
  test('every scenario runs against a real server and writes its result with its baseline', async () => {
    const out = mkdtempSync(path.join(tmpdir(), 'gatehouse-bench-smoke-'));
    try {
      await run(
        process.execPath,
        ['--import', 'tsx', 'bench/run.ts', '--smoke', '--store', dialect, '--workers', '2', '--out', out],
        { cwd: root, timeout: 300_000, maxBuffer: 16 * 1024 * 1024 },
      );
      const file = readdirSync(out).find((name) => name.endsWith(`-smoke-${dialect}.json`));
      assert.ok(file, 'a result file is written');
      const report = JSON.parse(readFileSync(path.join(out, file), 'utf8')) as BenchReport;
      assert.equal(report.mode, 'smoke');
      assert.equal(report.store, dialect);
      // As `npm run bench` runs it: `serve --workers`, the primary sharing the port out.
      assert.match(String(report.settings.processes), /^2 \(gatehouse serve --workers 2;/);
      assert.deepEqual(
        report.results.map((r) => r.name),
        [
          'read-cookie',
          'read-bearer',
          'read-basic',
          'signin-nse',
          'signin-storware',
          'refresh-nse',
          'read-during-storm',
          'import-clear',
          'import-hashed',
          'large-store-read-cookie',
          'large-store-read-bearer',
          'large-store-signin-nse',
          'large-store-refresh-nse',
        ],
      );
      for (const result of report.results) {
        assert.ok(result.value > 0, `${result.name} measured something`);
        assert.ok(result.baseline.value > 0, `${result.name} has a baseline`);
        assert.equal(result.failures ?? 0, 0, `${result.name}: no request failed`);
        assert.ok(Number.isFinite(result.ratio), `${result.name} has a ratio`);
      }
      // The sign-in's floor: the bare route that only verifies answered every request it was sent.
      for (const name of ['signin-nse', 'signin-storware']) {
        const floor = report.results.find((r) => r.name === name)?.floor;
        assert.ok(floor && floor.value > 0, `${name} has its floor`);
        assert.equal(floor.failures, 0, `${name}: every floor request was verified`);
      }
      // The published forms, rendered from these results into the run's own copy of BENCHMARKS.md.
      const markdown = readFileSync(path.join(out, 'BENCHMARKS.md'), 'utf8');
      const section = markdown.slice(
        markdown.indexOf(`<!-- bench:results:start:${dialect} -->`),
        markdown.indexOf(`<!-- bench:results:end:${dialect} -->`),
      );
      for (const result of report.results) assert.ok(section.includes(`| ${result.label} |`), result.label);
      assert.match(section, new RegExp(`Run ${report.time.replace(/[.]/g, '\\.')} `));
      const chart = readFileSync(path.join(out, `chart-${dialect}.svg`), 'utf8');
      assert.match(chart, /^<svg [^>]*>[\s\S]*<\/svg>\n$/);
      assert.doesNotMatch(chart, /NaN|undefined|Infinity/);
      assert.equal(
        chart.match(/<rect /g)?.length,
        report.results.filter((r) => r.target.ratio !== undefined || r.name === 'read-during-storm').length,
      );
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
});

/**
 * `--hash-cpus`: the sign-in with its hashing threads on CPUs of their own. Run on SQLite only: on
 * PostgreSQL the run moves the server's processes to the other CPUs, and the test database server
 * is shared by the tests running beside this one.
 */
const canSplit = process.platform === 'linux' && hasCpus0And1() && hasTaskset();

function hasCpus0And1(): boolean {
  const allowed = allowedCpus();
  return allowed.includes(0) && allowed.includes(1);
}

function hasTaskset(): boolean {
  try {
    execFileSync('taskset', ['-p', String(process.pid)], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

test('--hash-cpus measures the sign-in with the hashing threads moved to their CPUs', {
  skip: !canSplit,
}, async () => {
  const out = mkdtempSync(path.join(tmpdir(), 'gatehouse-bench-split-'));
  try {
    const { stderr } = await run(
      process.execPath,
      [
        '--import',
        'tsx',
        'bench/run.ts',
        '--smoke',
        '--store',
        'sqlite',
        '--only',
        'signin-nse',
        '--hash-cpus',
        '1',
        '--out',
        out,
      ],
      { cwd: root, timeout: 300_000, maxBuffer: 16 * 1024 * 1024 },
    );
    // The run stops if it does not find every hashing thread to move.
    assert.match(stderr, /1 hashing threads on CPU 1; the rest on CPU 0/);
    const file = readdirSync(out).find((name) => name.endsWith('-smoke-sqlite.json'));
    assert.ok(file, 'a result file is written');
    const report = JSON.parse(readFileSync(path.join(out, file), 'utf8')) as BenchReport;
    assert.deepEqual(
      report.results.map((r) => r.name),
      ['signin-nse'],
    );
    const [result] = report.results;
    assert.ok(result && result.value > 0 && result.baseline.value > 0);
    assert.equal(result.failures ?? 0, 0);
    assert.match(String(report.settings.argon2), /on CPU 1, everything else .* on CPU 0/);
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

test('--hash-cpus refuses scenarios whose baselines it does not split', async () => {
  await assert.rejects(
    run(
      process.execPath,
      ['--import', 'tsx', 'bench/run.ts', '--smoke', '--hash-cpus', '1', '--only', 'read-bearer'],
      {
        cwd: root,
        timeout: 60_000,
      },
    ),
    (error: { stderr?: string }) => /--hash-cpus measures the sign-in only/.test(error.stderr ?? ''),
  );
});

test('a CPU list reads as taskset reads it', () => {
  assert.deepEqual(cpuList('1'), [1]);
  assert.deepEqual(cpuList('3,0-1'), [0, 1, 3]);
  assert.throws(() => cpuList('1-'), /not a CPU list/);
  assert.throws(() => cpuList('one'), /not a CPU list/);
});
