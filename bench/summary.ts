/**
 * Benchmark results: named metrics with their samples, the statistics of them, a target to judge
 * them by, and the table and one-line summaries the bench prints.
 */

export interface Target {
  /** The statistic judged: every run must meet a target judged on `max`. */
  stat: 'median' | 'max' | 'mean';
  /** The sample statistic must be at most this. */
  limit: number;
  /** How the target reads, e.g. "≤ 1000 ms (every run)". */
  text: string;
}

export interface Metric {
  key: string;
  label: string;
  unit: 'ms' | 'MB' | '%' | 'frames' | 'kB';
  samples: number[];
  /** Runs that did not reach the condition in time (or failed): they count against the target. */
  failures: string[];
  target?: Target;
  note?: string;
}

export interface Stats {
  n: number;
  median: number;
  mean: number;
  min: number;
  max: number;
}

export function stats(samples: number[]): Stats | undefined {
  if (samples.length === 0) return undefined;
  const sorted = [...samples].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  const median = sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  const mean = sorted.reduce((s, x) => s + x, 0) / sorted.length;
  return { n: sorted.length, median, mean, min: sorted[0]!, max: sorted[sorted.length - 1]! };
}

export type Verdict = 'PASS' | 'FAIL' | '';

export function verdict(metric: Metric): Verdict {
  if (!metric.target) return '';
  const s = stats(metric.samples);
  if (!s || metric.failures.length > 0) return 'FAIL';
  return s[metric.target.stat] <= metric.target.limit ? 'PASS' : 'FAIL';
}

function fmt(value: number | undefined, unit: Metric['unit']): string {
  if (value === undefined) return '-';
  if (unit === '%') return value.toFixed(2);
  if (unit === 'MB') return value.toFixed(1);
  return Math.abs(value) >= 100 ? value.toFixed(0) : value.toFixed(1);
}

/** The results as a fixed-width table. */
export function table(metrics: Metric[]): string {
  const header = ['metric', 'unit', 'n', 'median', 'mean', 'max', 'target', 'result'];
  const rows = metrics.map((m) => {
    const s = stats(m.samples);
    const n = m.failures.length ? `${s?.n ?? 0}+${m.failures.length}✗` : String(s?.n ?? 0);
    return [
      m.label,
      m.unit,
      n,
      fmt(s?.median, m.unit),
      fmt(s?.mean, m.unit),
      fmt(s?.max, m.unit),
      m.target?.text ?? '',
      verdict(m),
    ];
  });
  return fixedWidth(header, rows, new Set([2, 3, 4, 5]));
}

/** A header, a rule and the rows in columns as wide as their widest cell; `right`: columns of numbers. */
export function fixedWidth(header: string[], rows: string[][], right: ReadonlySet<number>): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (right.has(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

/** One line per metric, for scripts and for the end of the log. */
export function finalLine(metric: Metric): string {
  const s = stats(metric.samples);
  const figures = s
    ? `median=${fmt(s.median, metric.unit)} mean=${fmt(s.mean, metric.unit)} max=${fmt(s.max, metric.unit)} ${metric.unit} n=${s.n}`
    : 'no samples';
  const failed = metric.failures.length ? ` failed=${metric.failures.length}` : '';
  const judged = metric.target ? ` target ${metric.target.text} ${verdict(metric)}` : '';
  return `BENCH ${metric.key}: ${figures}${failed}${judged}`;
}
