import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import type { BenchReport } from '../bench/report.js';
import { forEachDialect } from './helpers/dialects.js';

const root = path.resolve(import.meta.dirname, '..');
const run = promisify(execFile);

/**
 * Keeps `npm run bench` working: every scenario runs for a moment against a real server and
 * writes its JSON. No timing is asserted (a test machine's speed proves nothing); what is asserted
 * is that each scenario produced a measurement with its baseline and no failed request.
 */
forEachDialect('npm run bench --smoke', (dialect) => {
  test('every scenario runs against a real server and writes its result with its baseline', async () => {
    const out = mkdtempSync(path.join(tmpdir(), 'gatehouse-bench-smoke-'));
    try {
      await run(
        process.execPath,
        ['--import', 'tsx', 'bench/run.ts', '--smoke', '--store', dialect, '--out', out],
        { cwd: root, timeout: 300_000, maxBuffer: 16 * 1024 * 1024 },
      );
      const [file] = readdirSync(out);
      assert.ok(file, 'a result file is written');
      const report = JSON.parse(readFileSync(path.join(out, file), 'utf8')) as BenchReport;
      assert.equal(report.mode, 'smoke');
      assert.equal(report.store, dialect);
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
        ],
      );
      for (const result of report.results) {
        assert.ok(result.value > 0, `${result.name} measured something`);
        assert.ok(result.baseline.value > 0, `${result.name} has a baseline`);
        assert.equal(result.failures ?? 0, 0, `${result.name}: no request failed`);
        assert.ok(Number.isFinite(result.ratio), `${result.name} has a ratio`);
      }
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
});
