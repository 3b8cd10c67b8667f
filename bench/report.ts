import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ROOT } from './processes.js';

export interface ScenarioResult {
  readonly name: string;
  readonly label: string;
  readonly unit: 'req/s' | 'rows/s';
  /** Throughput of the scenario. */
  readonly value: number;
  readonly p50Ms?: number;
  readonly p99Ms?: number;
  readonly requests?: number;
  /** Requests that failed or answered an unexpected status. */
  readonly failures?: number;
  readonly baseline: { readonly label: string; readonly value: number; readonly p99Ms?: number };
  /**
   * What the machine gives a server doing nothing but the scenario's unavoidable work, in the same
   * run (the sign-in's: a bare route that only verifies): how far below the baseline any server
   * answering over HTTP, with the load generator on the same cores, stays.
   */
  readonly floor?: { readonly label: string; readonly value: number; readonly failures: number };
  readonly ratio: number;
  /** `maxRatio`: "within 10 %" is both ways; `p99Ms` is compared with autocannon's whole milliseconds. */
  readonly target: { readonly ratio?: number; readonly maxRatio?: number; readonly p99Ms?: number };
}

export interface BenchReport {
  readonly time: string;
  /** `partial`: a run of some scenarios (`--only`) or of another duration than the default. */
  readonly mode: 'smoke' | 'full' | 'partial';
  readonly store: 'sqlite' | 'postgres';
  readonly machine: Record<string, string | number>;
  readonly settings: Record<string, string | number>;
  readonly results: readonly ScenarioResult[];
}

export function machineFacts(): Record<string, string | number> {
  const cpus = os.cpus();
  return {
    cpus: cpus.length,
    cpuModel: cpus[0]?.model ?? 'unknown',
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    os: `${os.type()} ${os.release()}`,
  };
}

/** Whether a result meets its target; undefined when the scenario failed requests. */
export function meetsTarget(result: ScenarioResult): boolean {
  if ((result.failures ?? 0) > 0) return false;
  const ratioOk =
    (result.target.ratio === undefined || result.ratio >= result.target.ratio) &&
    (result.target.maxRatio === undefined || result.ratio <= result.target.maxRatio);
  // autocannon records whole milliseconds, cut down: a p99 it reports as 10 was 10 to 11 ms, so
  // only a report below the target proves the target (found by review: 10.95 ms passed as 10).
  const p99Ok =
    result.target.p99Ms === undefined || (result.p99Ms ?? Number.POSITIVE_INFINITY) < result.target.p99Ms;
  return ratioOk && p99Ok;
}

const number = (value: number) =>
  value >= 100 ? Math.round(value).toLocaleString('en-US') : value.toFixed(value >= 10 ? 1 : 2);
/** Latencies: autocannon's are whole milliseconds; a median averaged over turns is shown to 0.1 ms below 10 ms. */
const milliseconds = (value: number) => String(value < 10 ? Math.round(value * 10) / 10 : Math.round(value));
const targetText = (result: ScenarioResult) =>
  [
    result.target.ratio === undefined
      ? ''
      : result.target.maxRatio === undefined
        ? `≥ ${result.target.ratio} ×`
        : `${result.target.ratio}–${result.target.maxRatio} ×`,
    result.target.p99Ms === undefined ? '' : `p99 ≤ ${result.target.p99Ms} ms`,
  ]
    .filter(Boolean)
    .join(', ');

export function tableLines(report: BenchReport): string[] {
  const lines = [
    '| scenario | throughput | p50 / p99 ms | baseline | ratio | target | met |',
    '|---|---|---|---|---|---|---|',
  ];
  for (const r of report.results) {
    const latency =
      r.p99Ms === undefined
        ? '–'
        : `${r.p50Ms === undefined ? '–' : milliseconds(r.p50Ms)} / ${milliseconds(r.p99Ms)}`;
    const failures = r.failures ? ` (${r.failures} failed)` : '';
    const floor = r.floor
      ? `; floor, ${r.floor.label}: ${number(r.floor.value)} req/s${r.floor.failures ? ` (${r.floor.failures} failed)` : ''}, ${(r.floor.value / r.baseline.value).toFixed(2)} of the baseline`
      : '';
    lines.push(
      `| ${r.label} | ${number(r.value)} ${r.unit}${failures} | ${latency} | ${r.baseline.label}: ${number(r.baseline.value)}${r.baseline.p99Ms === undefined ? '' : ` (p99 ${milliseconds(r.baseline.p99Ms)} ms)`}${floor} | ${r.ratio.toFixed(2)} | ${targetText(r)} | ${meetsTarget(r) ? 'yes' : '**no**'} |`,
    );
  }
  return lines;
}

/** A horizontal bar per scenario: its ratio to the baseline, with the target marked. */
export function chartSvg(report: BenchReport): string {
  const rows = report.results.filter((r) => r.target.ratio !== undefined || r.name === 'read-during-storm');
  const width = 760;
  const labelWidth = 330;
  const barArea = width - labelWidth - 60;
  const rowHeight = 26;
  const height = 40 + rows.length * rowHeight + 20;
  const max = Math.max(1.2, ...rows.map((r) => r.ratio));
  const x = (ratio: number) => labelWidth + (Math.min(ratio, max) / max) * barArea;
  const escapeXml = (text: string) => text.replace(/&/g, '&amp;').replace(/</g, '&lt;');
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">`,
    `<text x="10" y="20" font-size="14" font-weight="bold">Gatehouse / baseline (same run, ${escapeXml(report.store)}, ${escapeXml(String(report.machine.cpus))} CPUs)</text>`,
  ];
  rows.forEach((r, i) => {
    const y = 40 + i * rowHeight;
    const met = meetsTarget(r);
    parts.push(
      `<text x="${labelWidth - 8}" y="${y + 14}" text-anchor="end">${escapeXml(r.label.slice(0, 52))}</text>`,
      `<rect x="${labelWidth}" y="${y + 3}" width="${Math.max(1, x(r.ratio) - labelWidth).toFixed(1)}" height="16" fill="${met ? '#3a7d44' : '#c0392b'}"/>`,
      `<text x="${(x(r.ratio) + 4).toFixed(1)}" y="${y + 15}">${r.ratio.toFixed(2)}</text>`,
    );
    if (r.floor) {
      const fx = x(r.floor.value / r.baseline.value).toFixed(1);
      parts.push(`<line x1="${fx}" x2="${fx}" y1="${y}" y2="${y + 22}" stroke="#888" stroke-width="3"/>`);
    }
    if (r.target.ratio !== undefined) {
      const tx = x(r.target.ratio).toFixed(1);
      parts.push(
        `<line x1="${tx}" x2="${tx}" y1="${y}" y2="${y + 22}" stroke="#000" stroke-dasharray="3,2"/>`,
      );
    }
  });
  parts.push(
    `<text x="${labelWidth}" y="${height - 6}" fill="#555">bars: ratio to the baseline; dashed line: target; grey line: the floor's ratio; red: target not met</text>`,
    '</svg>',
  );
  return `${parts.join('\n')}\n`;
}

const START = '<!-- bench:results:start -->';
const END = '<!-- bench:results:end -->';

/**
 * Writes the JSON of the run; a full run also becomes `latest-<store>.json`, the chart, and the
 * table between the store's markers of BENCHMARKS.md (`markdownFile`: the smoke run renders into a
 * copy of its own).
 */
export function writeReport(
  report: BenchReport,
  options: { outDir?: string | undefined; updateMarkdown: boolean; markdownFile?: string | undefined },
): { json: string; table: string[] } {
  const directory = options.outDir ?? path.join(ROOT, 'bench/results');
  mkdirSync(directory, { recursive: true });
  const stamp = report.time.replace(/[:.]/g, '-');
  const json = path.join(directory, `${stamp}-${report.mode}-${report.store}.json`);
  writeFileSync(json, `${JSON.stringify(report, null, 2)}\n`);
  const table = tableLines(report);
  if (options.updateMarkdown) {
    writeFileSync(
      path.join(directory, `latest-${report.store}.json`),
      `${JSON.stringify(report, null, 2)}\n`,
    );
    writeFileSync(path.join(directory, `chart-${report.store}.svg`), chartSvg(report));
    const file = options.markdownFile ?? path.join(ROOT, 'BENCHMARKS.md');
    const markdown = readFileSync(file, 'utf8');
    const sectionStart = `${START.slice(0, -4)}:${report.store} -->`;
    const sectionEnd = `${END.slice(0, -4)}:${report.store} -->`;
    const body = [
      sectionStart,
      `Run ${report.time} on ${report.machine.cpus} × ${report.machine.cpuModel}, ${report.machine.memoryGiB} GiB, Node ${report.machine.node}; ${report.store}; ${report.settings.connections} connections, ${report.settings.durationS} s per measurement; server processes: ${report.settings.processes ?? 1}; ${report.settings.argon2}; log level ${report.settings.logLevel}; rate limits ${report.settings.rateLimits}${report.settings.connectionMaxAge ? `; kept-alive connections' age limit ${report.settings.connectionMaxAge}` : ''}.`,
      '',
      ...table,
      '',
      `![ratios to the baselines](bench/results/chart-${report.store}.svg)`,
      sectionEnd,
    ].join('\n');
    const pattern = new RegExp(`${escapeRegExp(sectionStart)}[\\s\\S]*?${escapeRegExp(sectionEnd)}`);
    writeFileSync(
      file,
      pattern.test(markdown) ? markdown.replace(pattern, body) : `${markdown.trimEnd()}\n\n${body}\n`,
    );
  }
  return { json, table };
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
