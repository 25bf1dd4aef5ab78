/**
 * `pinhole bench` results as data, and the three ways they are shown: JSON (the data itself), a
 * markdown table (one row per scenario and metric, the modes side by side, median with the
 * min–max range, and how AF_XDP compares with every other mode), and an SVG chart (one panel per
 * scenario and metric, a bar per mode at the median with a min–max whisker). Pure: no I/O, so the
 * unit tier checks it (test/unit/bench-report.test.ts).
 *
 * The SVG is written by hand as text — no charting library — and is plain SVG 1.1 that browsers,
 * rsvg and ImageMagick render alike.
 */

/**
 * Who forwarded: pinhole's two drivers, pinhole as configured by default (`auto`: VXLAN with an
 * AF_XDP uplink and GSO-aware AF_PACKET workload interfaces), the kernel's own datapath, the
 * in-kernel ceiling, the C reference.
 */
export type BenchMode = 'afxdp' | 'auto' | 'afpacket' | 'kernel' | 'ceiling' | 'c';
export const BENCH_MODES: readonly BenchMode[] = ['afxdp', 'auto', 'afpacket', 'kernel', 'ceiling', 'c'];

export interface Summary {
  min: number;
  median: number;
  max: number;
  runs: number[];
}

/** One figure: a scenario, a mode, a metric, summarised over the runs. */
/** Which direction of a figure is good. */
export type Better = 'higher' | 'lower' | 'neither';

export interface BenchResult {
  scenario: string;
  mode: BenchMode;
  metric: string;
  unit: string;
  /**
   * Which direction is good (throughput: higher; latency, CPU, memory, loss: lower); `neither`
   * for a reading that is not a score (how busy a CPU was).
   */
  better: Better;
  /** null when skipped. */
  min: number | null;
  median: number | null;
  max: number | null;
  runs: number[];
  /** Why this figure has no numbers (e.g. no C compiler). */
  skipped?: string;
}

export interface Machine {
  cpuModel: string;
  cpus: number;
  kernel: string;
  node: string;
  date: string;
  /** 1-minute load average when the run started (the machine may be shared). */
  loadAverage: number;
  memoryGiB: number;
}

export interface BenchReport {
  machine: Machine;
  quick: boolean;
  runs: number;
  elapsedSeconds: number;
  /** What each mode is in each scenario, and anything a reader must know (failed steps too). */
  notes: string[];
  /** Steps that failed; their figures have fewer runs, or none. */
  failures?: number;
  results: BenchResult[];
}

/** min/median/max of the runs (the median of an even count is the mean of the middle two). */
export function summarise(runs: readonly number[]): Summary {
  if (runs.length === 0) throw new RangeError('summarise: no runs');
  const s = [...runs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  const median = s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
  return { min: s[0]!, median, max: s[s.length - 1]!, runs: [...runs] };
}

/** A result from its runs, or a skipped one when `runs` is a reason. */
export function result(
  key: { scenario: string; mode: BenchMode; metric: string; unit: string; better: Better },
  runs: readonly number[] | { skipped: string },
): BenchResult {
  if (!Array.isArray(runs)) {
    return { ...key, min: null, median: null, max: null, runs: [], skipped: (runs as { skipped: string }).skipped };
  }
  const s = summarise(runs as number[]);
  return { ...key, min: s.min, median: s.median, max: s.max, runs: s.runs };
}

/** The direction mark after a unit: ' ↑', ' ↓', or nothing for a reading. */
const arrowOf = (b: Better): string => (b === 'higher' ? ' ↑' : b === 'lower' ? ' ↓' : '');

/** CPU busy figures of the 64-byte steady runs (measure.ts addCpuBusy, cpu-busy.ts). */
export const GEN_BUSY_METRIC = "CPU busy, generator's CPU, 64 B steady";
export const FWD_BUSY_METRIC = "CPU busy, forwarder's CPU, 64 B steady";
/** A forwarder's CPU less busy than this (median, %) while a rate was measured had room to spare. */
export const BUSY_PERCENT = 90;
/** Modes whose forwarding runs in softirq on the generator's CPU (veth), not on the forwarder's. */
const NO_FORWARDER: readonly BenchMode[] = ['kernel', 'ceiling'];

/**
 * The note naming the runs whose forwarder's CPU had room to spare (below BUSY_PERCENT, its
 * polling left out) while the generator's was saturated (at least BUSY_PERCENT) as the 64-byte
 * steady rate was measured; undefined when there were none. Such a rate was bounded by the
 * sending CPU — the generator runs flat out there, and on veth the first hop's receive path,
 * part of each mode's cost, runs on it too (cpu-busy.ts) — not by the forwarder's: CPU per
 * packet says what the forwarder itself cost.
 */
export function headroomNote(results: readonly BenchResult[]): string | undefined {
  const gen = (scenario: string, mode: BenchMode): number | null | undefined =>
    results.find((r) => r.scenario === scenario && r.mode === mode && r.metric === GEN_BUSY_METRIC)?.median;
  const hits: string[] = [];
  for (const r of results) {
    if (r.metric !== FWD_BUSY_METRIC || r.median === null || r.median >= BUSY_PERCENT || NO_FORWARDER.includes(r.mode)) continue;
    // Only where the generator's CPU was the busy one: with both below, nothing here says what bounded the rate.
    const g = gen(r.scenario, r.mode);
    if (g == null || g < BUSY_PERCENT) continue;
    hits.push(`${r.scenario} ${r.mode} (forwarder's CPU ${formatNumber(r.median)}% busy, generator's ${formatNumber(g)}%)`);
  }
  if (!hits.length) return undefined;
  return (
    `The forwarder's CPU had room to spare (median below ${BUSY_PERCENT}% busy, polling left out) while the generator's was saturated during the 64 B steady runs of ${hits.join('; ')}. ` +
    "Those rates were bounded by the sending CPU, not by the forwarder's: the generator runs flat out there, and on veth that CPU also carries each frame's first receive path, where part of each mode's own cost lands (an XDP program and its copy into an AF_XDP ring, AF_PACKET's skb, the kernel's forwarding or vxlan), and, in the vxlan scenario, node B's receive path and the pods. " +
    "The forwarder's own cost is its CPU per packet. The busy share is the whole CPU's: whatever else ran there counts too (the kernel and ceiling modes forward on the generator's CPU, so their forwarder's CPU shows only that)."
  );
}

/** Three significant figures, no exponent: 1234 → "1234", 12.34 → "12.3", 0.1234 → "0.12", 0.01234 → "0.0123". */
export function formatNumber(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  const a = Math.abs(n);
  if (a === 0) return '0';
  if (a >= 100) return n.toFixed(0);
  if (a >= 10) return n.toFixed(1);
  if (a >= 0.1) return n.toFixed(2);
  return Number(n.toPrecision(3)).toString();
}

interface Row {
  scenario: string;
  metric: string;
  unit: string;
  better: Better;
  byMode: Map<BenchMode, BenchResult>;
}

/** Where a metric goes within its scenario: rates, TCP, UDP, latency, CPU, memory, the rest. */
function metricRank(metric: string): number {
  if (/^\d+ B /.test(metric)) return 0;
  if (metric.startsWith('TCP')) return 1;
  if (metric.startsWith('UDP')) return 2;
  if (metric.startsWith('latency')) return 3;
  if (metric.startsWith('CPU')) return 4;
  if (metric.startsWith('resident')) return 5;
  return 6;
}

/**
 * Results grouped into rows (scenario, metric, unit): scenarios in first-seen order, metrics by
 * kind (metricRank) then first seen; modes in BENCH_MODES order.
 */
export function rowsOf(results: readonly BenchResult[]): Row[] {
  const rows = new Map<string, Row>();
  for (const r of results) {
    const key = `${r.scenario}\u0000${r.metric}\u0000${r.unit}`;
    let row = rows.get(key);
    if (!row) {
      row = { scenario: r.scenario, metric: r.metric, unit: r.unit, better: r.better, byMode: new Map() };
      rows.set(key, row);
    }
    row.byMode.set(r.mode, r);
  }
  const scenarios = [...new Set(results.map((r) => r.scenario))];
  return [...rows.values()]
    .map((row, i) => ({ row, i }))
    .sort(
      (a, b) =>
        scenarios.indexOf(a.row.scenario) - scenarios.indexOf(b.row.scenario) ||
        metricRank(a.row.metric) - metricRank(b.row.metric) ||
        a.i - b.i,
    )
    .map((x) => x.row);
}

/** Modes that appear in any result, in BENCH_MODES order. */
function modesOf(results: readonly BenchResult[]): BenchMode[] {
  const seen = new Set(results.map((r) => r.mode));
  return BENCH_MODES.filter((m) => seen.has(m));
}

/**
 * "afxdp ÷ X" for every other mode with a number: how pinhole AF_XDP compares (not for the CPU
 * busy rows). A row without
 * AF_XDP (vxlan-jumbo: AF_XDP cannot serve its MTU) compares pinhole's `auto` instead, and says so.
 */
function ratios(row: Row): string {
  // A ratio of busy shares says nothing: which CPU was busy is the figure (headroomNote).
  if (row.metric === GEN_BUSY_METRIC || row.metric === FWD_BUSY_METRIC) return '';
  const base = row.byMode.get('afxdp')?.median != null ? 'afxdp' : 'auto';
  const a = row.byMode.get(base);
  if (!a || a.median === null) return '';
  const parts: string[] = [];
  for (const m of BENCH_MODES) {
    if (m === base) continue;
    const o = row.byMode.get(m);
    if (!o || o.median === null || o.median === 0) continue;
    parts.push(`${(a.median / o.median).toFixed(2)}× ${m}`);
  }
  return base === 'afxdp' || parts.length === 0 ? parts.join(', ') : `auto: ${parts.join(', ')}`;
}

function cell(r: BenchResult | undefined): string {
  if (!r) return '';
  if (r.median === null) return 'skipped';
  return `${formatNumber(r.median)} (${formatNumber(r.min!)}–${formatNumber(r.max!)})`;
}

function machineLine(m: Machine): string {
  return `${m.cpuModel}, ${m.cpus} CPUs, ${m.memoryGiB.toFixed(0)} GiB, Linux ${m.kernel}, Node ${m.node}, load ${m.loadAverage.toFixed(2)} at start`;
}

/** The report as markdown: a heading, where it ran, the table, the skipped figures and the notes. */
export function renderMarkdown(report: BenchReport): string {
  const modes = modesOf(report.results);
  const rows = rowsOf(report.results);
  const head = ['scenario', 'metric', 'unit', ...modes, 'afxdp ÷ other'];
  const body = rows.map((row) => [
    row.scenario,
    row.metric,
    `${row.unit}${arrowOf(row.better)}`,
    ...modes.map((m) => cell(row.byMode.get(m))),
    ratios(row),
  ]);
  const esc = (s: string): string => s.replace(/\|/g, '\\|');
  const line = (cells: string[]): string => `| ${cells.map(esc).join(' | ')} |`;
  const skipped = report.results.filter((r) => r.skipped);
  const reasons = [...new Set(skipped.map((r) => `${r.mode}: ${r.skipped}`))];
  const out = [
    `## pinhole bench (${report.quick ? 'quick' : 'full'}, ${report.runs} runs per figure)`,
    '',
    `Ran ${report.machine.date} on ${machineLine(report.machine)}; ${Math.round(report.elapsedSeconds)} s in all.`,
    'Each cell: median (min–max) over the runs; ↑ higher is better, ↓ lower is better, no arrow: a reading, not a score.',
    '',
    line(head),
    line(head.map((_h, i) => (i >= 3 && i < 3 + modes.length ? '---:' : '---'))),
    ...body.map(line),
  ];
  if (reasons.length) out.push('', 'Skipped:', ...reasons.map((r) => `- ${r}`));
  if (report.notes.length) out.push('', ...report.notes.map((n) => `- ${n}`));
  return out.join('\n') + '\n';
}

/** The report as pretty JSON (the `--json` file). */
export function renderJson(report: BenchReport): string {
  return JSON.stringify(report, null, 2) + '\n';
}

// ---- SVG ---------------------------------------------------------------------------------------

/** One colour per mode (colour-blind-safe palette), fixed so charts from different runs compare. */
export const MODE_COLOURS: Record<BenchMode, string> = {
  afxdp: '#0072b2',
  auto: '#cc79a7',
  afpacket: '#56b4e9',
  kernel: '#e69f00',
  ceiling: '#999999',
  c: '#009e73',
};

export function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

const PANEL_W = 300;
const PANEL_H = 190;
const COLUMNS = 4;
const TOP = 70;
const PLOT_TOP = 44; // inside a panel: title lines and the median label above the plot
const PLOT_BOTTOM = 30; // mode labels below
const PLOT_LEFT = 44; // axis labels

/** A round axis maximum ≥ v: 1, 2, 2.5, 5 × 10^k. */
export function niceMax(v: number): number {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

const f1 = (n: number): string => (Math.round(n * 10) / 10).toString();

/**
 * The chart: a grid of panels, one per (scenario, metric), each with its own y axis from 0; a bar
 * per mode at the median (class "bar"), a whisker from min to max (class "whisker"), the median
 * written above it; a skipped figure is a grey "skipped" where its bar would be.
 */
export function renderSvg(report: BenchReport): string {
  const rows = rowsOf(report.results);
  const modes = modesOf(report.results);
  const panelRows = Math.max(1, Math.ceil(rows.length / COLUMNS));
  const width = COLUMNS * PANEL_W + 20;
  const height = TOP + panelRows * PANEL_H + 20;
  const o: string[] = [];
  o.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`,
    `<rect x="0" y="0" width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="10" y="20" font-size="15" font-weight="bold">${escapeXml(
      `pinhole bench (${report.quick ? 'quick' : 'full'}): bars median of ${report.runs} runs, whiskers min–max, zigzag: bar cut to fit the others`,
    )}</text>`,
    `<text x="10" y="38" fill="#444444">${escapeXml(`${report.machine.date} · ${machineLine(report.machine)}`)}</text>`,
  );
  // Legend.
  let lx = 10;
  for (const m of modes) {
    o.push(`<rect x="${lx}" y="48" width="12" height="12" fill="${MODE_COLOURS[m]}"/>`);
    o.push(`<text x="${lx + 16}" y="58">${escapeXml(m)}</text>`);
    lx += 24 + m.length * 7;
  }
  rows.forEach((row, i) => {
    const px = 10 + (i % COLUMNS) * PANEL_W;
    const py = TOP + Math.floor(i / COLUMNS) * PANEL_H;
    o.push(`<g transform="translate(${px},${py})">`);
    o.push(`<text x="4" y="13" font-weight="bold">${escapeXml(row.scenario)}</text>`);
    o.push(`<text x="4" y="26">${escapeXml(`${row.metric} (${row.unit}${arrowOf(row.better)})`)}</text>`);
    const present = modes.filter((m) => row.byMode.has(m));
    const values = present.map((m) => row.byMode.get(m)!).filter((r) => r.max !== null);
    // One figure far above the rest (the in-kernel ceiling, often) would flatten every other
    // bar: then the axis fits the others and that bar is drawn broken, its number written.
    const maxes = values.map((r) => r.max!).sort((a, b) => b - a);
    const broken = maxes.length >= 2 && maxes[1]! > 0 && maxes[0]! > 3 * maxes[1]!;
    const top = niceMax(broken ? maxes[1]! * 1.2 : Math.max(0, maxes[0] ?? 0));
    const plotH = PANEL_H - PLOT_TOP - PLOT_BOTTOM - 10;
    const plotW = PANEL_W - PLOT_LEFT - 16;
    const y = (v: number): number => PLOT_TOP + plotH - (Math.min(v, top) / top) * plotH;
    // Axis with 0, half and top.
    o.push(`<line x1="${PLOT_LEFT}" y1="${PLOT_TOP}" x2="${PLOT_LEFT}" y2="${PLOT_TOP + plotH}" stroke="#000000"/>`);
    o.push(`<line x1="${PLOT_LEFT}" y1="${PLOT_TOP + plotH}" x2="${PLOT_LEFT + plotW}" y2="${PLOT_TOP + plotH}" stroke="#000000"/>`);
    for (const t of [0, top / 2, top]) {
      const ty = f1(y(t));
      o.push(`<line x1="${PLOT_LEFT - 3}" y1="${ty}" x2="${PLOT_LEFT + plotW}" y2="${ty}" stroke="#e0e0e0"/>`);
      o.push(`<text x="${PLOT_LEFT - 5}" y="${f1(y(t) + 4)}" text-anchor="end" fill="#444444">${escapeXml(formatNumber(t))}</text>`);
    }
    const slot = plotW / Math.max(1, present.length);
    const barW = Math.min(36, slot * 0.6);
    present.forEach((m, k) => {
      const r = row.byMode.get(m)!;
      const cx = PLOT_LEFT + slot * (k + 0.5);
      o.push(`<text x="${f1(cx)}" y="${PLOT_TOP + plotH + 14}" text-anchor="middle">${escapeXml(m)}</text>`);
      if (r.median === null) {
        o.push(
          `<text x="${f1(cx)}" y="${f1(PLOT_TOP + plotH - 6)}" text-anchor="middle" fill="#999999" font-style="italic">skipped</text>`,
        );
        return;
      }
      const tip = `${m}: median ${formatNumber(r.median)} ${r.unit} (min ${formatNumber(r.min!)}, max ${formatNumber(r.max!)}, ${r.runs.length} runs)`;
      const by = y(r.median);
      const clipped = r.median > top;
      o.push(
        `<rect class="bar" x="${f1(cx - barW / 2)}" y="${f1(by)}" width="${f1(barW)}" height="${f1(PLOT_TOP + plotH - by)}" fill="${MODE_COLOURS[m]}"${clipped ? ' data-clipped="true"' : ''}><title>${escapeXml(tip)}</title></rect>`,
      );
      const y0 = f1(y(r.min!));
      const y1 = f1(y(r.max!));
      const cap = barW / 4;
      // A cap only where the whisker really ends (not where the axis cut it).
      const caps = `M${f1(cx - cap)} ${y0}H${f1(cx + cap)}${r.max! > top ? '' : `M${f1(cx - cap)} ${y1}H${f1(cx + cap)}`}`;
      o.push(`<path class="whisker" d="M${f1(cx)} ${y0}V${y1}${caps}" stroke="#000000" fill="none"/>`);
      if (clipped) {
        // The break: a white zigzag across the bar near its top.
        const zy = PLOT_TOP + 10;
        const x0 = cx - barW / 2 - 2;
        const w = barW + 4;
        o.push(
          `<path d="M${f1(x0)} ${zy}l${f1(w / 4)} -4l${f1(w / 4)} 8l${f1(w / 4)} -8l${f1(w / 4)} 4" stroke="#ffffff" stroke-width="3" fill="none"/>`,
        );
      }
      o.push(
        `<text x="${f1(cx)}" y="${f1(y(r.max!) - 4)}" text-anchor="middle" font-size="10">${escapeXml(formatNumber(r.median))}</text>`,
      );
    });
    o.push('</g>');
  });
  o.push('</svg>');
  return o.join('\n') + '\n';
}

export interface MetricKey {
  scenario: string;
  mode: BenchMode;
  metric: string;
  unit: string;
  better: Better;
}

/** Collects run values per figure while a benchmark runs, then summarises them. */
export class SampleSet {
  private readonly entries = new Map<string, { key: MetricKey; runs: number[]; skipped?: string }>();

  private entry(k: MetricKey): { key: MetricKey; runs: number[]; skipped?: string } {
    const id = `${k.scenario}\u0000${k.metric}\u0000${k.unit}\u0000${k.mode}`;
    let e = this.entries.get(id);
    if (!e) {
      e = { key: { ...k }, runs: [] };
      this.entries.set(id, e);
    }
    return e;
  }

  add(k: MetricKey, value: number): void {
    if (Number.isFinite(value)) this.entry(k).runs.push(value);
  }

  /** Marks a figure skipped (kept only if it never gets a value). */
  skip(k: MetricKey, reason: string): void {
    this.entry(k).skipped ??= reason;
  }

  results(): BenchResult[] {
    return [...this.entries.values()].map((e) =>
      e.runs.length > 0 ? result(e.key, e.runs) : result(e.key, { skipped: e.skipped ?? 'no successful run' }),
    );
  }
}
