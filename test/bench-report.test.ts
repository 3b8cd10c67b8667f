import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { type BenchReport, meetsTarget, type ScenarioResult, writeReport } from '../bench/report.js';

const read = (overrides: Partial<ScenarioResult>): ScenarioResult => ({
  name: 'read-bearer',
  label: 'GET /api/v2.1/auth/regions by Bearer',
  unit: 'req/s',
  value: 15_000,
  p50Ms: 3,
  p99Ms: 9,
  failures: 0,
  baseline: { label: 'bare Fastify route, 607 B JSON', value: 20_000, p99Ms: 7 },
  ratio: 0.75,
  target: { ratio: 0.7, p99Ms: 10 },
  ...overrides,
});

/** The verdicts BENCHMARKS.md prints: what a reader takes as "met". */
test('a target is met only by a ratio within it, a p99 below it and no failed request', () => {
  assert.equal(meetsTarget(read({})), true);
  assert.equal(meetsTarget(read({ ratio: 0.69 })), false);
  // autocannon's whole milliseconds, cut down: a reported 10 was 10 to 11 ms.
  assert.equal(meetsTarget(read({ p99Ms: 10 })), false);
  assert.equal(meetsTarget(read({ failures: 1 })), false);
  const within = { ratio: 0.9, maxRatio: 1.1 };
  assert.equal(meetsTarget(read({ ratio: 1.05, target: within })), true);
  assert.equal(meetsTarget(read({ ratio: 1.12, target: within })), false);
  assert.equal(meetsTarget(read({ ratio: 0.88, target: within })), false);
});

test("a full run rewrites its store's section of BENCHMARKS.md and leaves the other store's", () => {
  const out = mkdtempSync(path.join(tmpdir(), 'gatehouse-bench-report-'));
  try {
    const markdownFile = path.join(out, 'BENCHMARKS.md');
    const postgres = [
      '<!-- bench:results:start:postgres -->',
      'the PostgreSQL run, untouched',
      '<!-- bench:results:end:postgres -->',
    ].join('\n');
    writeFileSync(
      markdownFile,
      `# Benchmarks\n\n<!-- bench:results:start:sqlite -->\nan older run\n<!-- bench:results:end:sqlite -->\n\n${postgres}\n`,
    );
    const report: BenchReport = {
      time: '2026-12-07T20:00:00.000Z',
      mode: 'full',
      store: 'sqlite',
      machine: { cpus: 2, cpuModel: 'AMD EPYC', memoryGiB: 24, node: 'v20.20.2', os: 'Linux' },
      settings: { connections: 50, durationS: 10, processes: 2, argon2: 'm=19456', logLevel: 'warn' },
      results: [read({}), read({ name: 'read-cookie', label: 'GET /api/session/user by cookie', p99Ms: 10 })],
    };
    const written = writeReport(report, { outDir: out, updateMarkdown: true, markdownFile });
    const markdown = readFileSync(markdownFile, 'utf8');
    assert.doesNotMatch(markdown, /an older run/);
    assert.ok(markdown.includes(postgres), "the other store's section is kept as it was");
    assert.match(markdown, /Run 2026-12-07T20:00:00\.000Z on 2 × AMD EPYC/);
    assert.match(
      markdown,
      /\| GET \/api\/v2\.1\/auth\/regions by Bearer \| 15,000 req\/s \| 3 \/ 9 \| .* \| 0\.75 \| ≥ 0\.7 ×, p99 ≤ 10 ms \| yes \|/,
    );
    assert.match(markdown, /\| GET \/api\/session\/user by cookie \| .* \| 3 \/ 10 \| .* \| \*\*no\*\* \|/);
    assert.deepEqual(
      written.table.slice(2),
      markdown.split('\n').filter((line) => line.startsWith('| GET')),
    );
    assert.deepEqual(JSON.parse(readFileSync(path.join(out, 'latest-sqlite.json'), 'utf8')), report);
    const chart = readFileSync(path.join(out, 'chart-sqlite.svg'), 'utf8');
    // One bar per scenario, green when met, red when not.
    assert.deepEqual(
      [...chart.matchAll(/<rect [^>]*fill="(#[0-9a-f]+)"/g)].map((match) => match[1]),
      ['#3a7d44', '#c0392b'],
    );
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
