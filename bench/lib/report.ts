import type { Summary } from './stats.js';

/** A target from the issue, and whether this run met it (undefined: not judged here). */
export interface Target {
  text: string;
  met: boolean | undefined;
}

/** One line of the results table. */
export interface Row {
  group: string;
  label: string;
  unit: string;
  wharf?: Summary | undefined;
  baseline?: Summary | undefined;
  /** Latencies and memory: smaller is better, so the ratio reads as "× baseline". */
  lowerIsBetter?: boolean;
  /** A difference rather than a level: a ratio of two differences means nothing. */
  noRatio?: boolean;
  target?: Target | undefined;
}

export function formatNumber(value: number): string {
  if (!Number.isFinite(value)) return String(value);
  const abs = Math.abs(value);
  const digits = abs >= 100 ? 0 : abs >= 10 ? 1 : 2;
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

function cell(summary: Summary | undefined): string {
  if (!summary) return '—';
  if (summary.values.length === 1) return formatNumber(summary.median);
  return `${formatNumber(summary.median)} (${formatNumber(summary.min)}–${formatNumber(summary.max)})`;
}

function ratio(row: Row): string {
  if (row.noRatio || !row.wharf || !row.baseline || row.baseline.median === 0) return '—';
  const r = row.wharf.median / row.baseline.median;
  return row.lowerIsBetter ? `${r.toFixed(2)}×` : `${(r * 100).toFixed(0)}%`;
}

function verdict(target: Target | undefined): string {
  if (!target || target.met === undefined) return '';
  return target.met ? 'met' : 'MISSED';
}

const HEADER = [
  'Measurement',
  'Unit',
  'Wharf median (min–max)',
  'Baseline median (min–max)',
  'Ratio',
  'Target',
  '',
];

function cells(rows: readonly Row[]): string[][] {
  return rows.map((row) => [
    `${row.group}: ${row.label}`,
    row.unit,
    cell(row.wharf),
    cell(row.baseline),
    ratio(row),
    row.target?.text ?? '',
    verdict(row.target),
  ]);
}

/** A fixed-width table for the terminal. */
export function renderText(rows: readonly Row[]): string {
  const table = [HEADER, ...cells(rows)];
  const widths = HEADER.map((_, i) => Math.max(...table.map((r) => r[i]!.length)));
  const line = (r: string[]) =>
    r
      .map((c, i) => (i >= 2 && i <= 4 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  const rule = widths.map((w) => '-'.repeat(w)).join('  ');
  return [line(HEADER), rule, ...table.slice(1).map(line)].join('\n');
}

/** The same table as Markdown, for pasting into bench/README.md. */
export function renderMarkdown(rows: readonly Row[]): string {
  const pipeSafe = (c: string) => c.replaceAll('|', '\\|');
  const out = [`| ${HEADER.map(pipeSafe).join(' | ')} |`, `|${HEADER.map(() => '---').join('|')}|`];
  for (const r of cells(rows)) out.push(`| ${r.map(pipeSafe).join(' | ')} |`);
  return out.join('\n');
}
