/**
 * `pinhole bench` reporting without privileges: min/median/max, the sample collector, number
 * formatting, the markdown table (modes side by side, ratios, skipped figures), the SVG chart
 * (well-formed XML checked by a small independent parser, one bar and one whisker per figure
 * with numbers, text escaped), ping percentiles and the progress line.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parsePingTimes, percentile } from '../../src/control/bench/latency.ts';
import { Progress } from '../../src/control/bench/progress.ts';
import {
  formatNumber,
  niceMax,
  renderJson,
  renderMarkdown,
  renderSvg,
  result,
  rowsOf,
  SampleSet,
  summarise,
  type BenchReport,
  type BenchResult,
} from '../../src/control/bench/report.ts';

const MACHINE = {
  cpuModel: 'Test CPU <v2> & co',
  cpus: 2,
  kernel: '6.18.0',
  node: 'v20.0.0',
  date: '2026-01-01T00:00:00.000Z',
  loadAverage: 0.5,
  memoryGiB: 8,
};

function report(results: BenchResult[]): BenchReport {
  return { machine: MACHINE, quick: true, runs: 2, elapsedSeconds: 123.4, notes: ['a note'], results };
}

const k = (scenario: string, mode: BenchResult['mode'], metric = '64 B steady', unit = 'Mpps') => ({
  scenario,
  mode,
  metric,
  unit,
  better: 'higher' as const,
});

const SAMPLE: BenchResult[] = [
  result(k('cross-connect', 'afxdp'), [1.1, 1.13, 1.12]),
  result(k('cross-connect', 'afpacket'), [0.9, 0.93]),
  result(k('cross-connect', 'kernel'), [0.6]),
  result(k('cross-connect', 'ceiling'), [7, 7.2]),
  result(k('cross-connect', 'c'), [1.6, 1.62, 1.59]),
  result(k('cross-connect', 'afxdp', 'CPU per packet, 64 B steady', 'ns'), [850, 900]),
  result(k('vxlan <&>', 'afxdp', 'TCP', 'Gbit/s'), [2]),
  result(k('vxlan <&>', 'kernel', 'TCP', 'Gbit/s'), [6, 7]),
  result(k('vxlan <&>', 'c', 'TCP', 'Gbit/s'), { skipped: 'no C compiler (cc) on PATH' }),
];

test('summarise: min, median (odd and even counts), max; runs kept in the order given', () => {
  assert.deepEqual(summarise([3, 1, 2]), { min: 1, median: 2, max: 3, runs: [3, 1, 2] });
  assert.deepEqual(summarise([4, 1, 3, 2]), { min: 1, median: 2.5, max: 4, runs: [4, 1, 3, 2] });
  assert.deepEqual(summarise([5]), { min: 5, median: 5, max: 5, runs: [5] });
  assert.throws(() => summarise([]), RangeError);
});

test('result: numbers from runs, or a skipped figure with nulls and the reason', () => {
  const r = result(k('s', 'afxdp'), [2, 1]);
  assert.equal(r.min, 1);
  assert.equal(r.median, 1.5);
  assert.equal(r.max, 2);
  const s = result(k('s', 'c'), { skipped: 'why' });
  assert.deepEqual([s.min, s.median, s.max, s.runs, s.skipped], [null, null, null, [], 'why']);
});

test('SampleSet: collects runs per figure; a skip only stands when no run succeeded', () => {
  const set = new SampleSet();
  set.add(k('s', 'afxdp'), 1);
  set.add(k('s', 'afxdp'), 3);
  set.add(k('s', 'afxdp'), NaN); // a failed computation is not a run
  set.skip(k('s', 'c'), 'no cc');
  set.skip(k('s', 'afpacket'), 'flaky');
  set.add(k('s', 'afpacket'), 2);
  const byMode = Object.fromEntries(set.results().map((r) => [r.mode, r]));
  assert.deepEqual(byMode.afxdp!.runs, [1, 3]);
  assert.equal(byMode.afxdp!.median, 2);
  assert.equal(byMode.c!.skipped, 'no cc');
  assert.equal(byMode.c!.median, null);
  assert.equal(byMode.afpacket!.skipped, undefined);
  assert.equal(byMode.afpacket!.median, 2);
});

test('formatNumber: three significant figures, no exponent', () => {
  assert.equal(formatNumber(0), '0');
  assert.equal(formatNumber(1234.5), '1235');
  assert.equal(formatNumber(12.345), '12.3');
  assert.equal(formatNumber(1.2345), '1.23');
  assert.equal(formatNumber(0.1234), '0.12');
  assert.equal(formatNumber(0.012345), '0.0123');
  assert.equal(formatNumber(0.00001234), '0.0000123');
  assert.equal(niceMax(7.2), 10);
  assert.equal(niceMax(1.62), 2);
  assert.equal(niceMax(0.3), 0.5);
  assert.equal(niceMax(0), 1);
});

test('rows: one per scenario and metric, scenarios in order, rates before CPU', () => {
  const rows = rowsOf([
    result(k('b', 'afxdp', 'CPU per packet, 64 B steady', 'ns'), [1]),
    result(k('b', 'afxdp', 'latency p50 idle', 'µs'), [1]),
    result(k('a', 'afxdp'), [1]),
    result(k('b', 'afxdp', '64 B steady'), [1]),
    result(k('b', 'kernel', '64 B steady'), [1]),
  ]);
  assert.deepEqual(
    rows.map((r) => `${r.scenario}/${r.metric}`),
    ['b/64 B steady', 'b/latency p50 idle', 'b/CPU per packet, 64 B steady', 'a/64 B steady'],
  );
  assert.deepEqual([...rows[0]!.byMode.keys()].sort(), ['afxdp', 'kernel']);
});

test('markdown: modes side by side as median (min–max), ratios to AF_XDP, skipped figures and notes', () => {
  const md = renderMarkdown(report(SAMPLE));
  const lines = md.split('\n');
  const head = lines.find((l) => l.startsWith('| scenario'))!;
  assert.equal(head, '| scenario | metric | unit | afxdp | afpacket | kernel | ceiling | c | afxdp ÷ other |');
  const row = lines.find((l) => l.startsWith('| cross-connect | 64 B steady'))!;
  const cells = row.split(' | ');
  assert.equal(cells[2], 'Mpps ↑');
  assert.equal(cells[3], '1.12 (1.10–1.13)');
  assert.equal(cells[4], '0.92 (0.90–0.93)');
  assert.equal(cells[7], '1.60 (1.59–1.62)');
  assert.match(row, /0\.70× c/);
  assert.match(row, /1\.22× afpacket/);
  const vx = lines.find((l) => l.startsWith('| vxlan <&> | TCP'))!;
  assert.match(vx, /\| skipped \|/);
  assert.match(md, /^- c: no C compiler \(cc\) on PATH$/m);
  assert.match(md, /^- a note$/m);
  assert.match(md, /Test CPU <v2> & co, 2 CPUs/);
  // Every data row has as many cells as the header.
  const width = head.split(' | ').length;
  for (const l of lines.filter((x) => x.startsWith('| ') && !x.startsWith('| ---'))) assert.equal(l.split(' | ').length, width, l);
  // One row per (scenario, metric).
  assert.equal(lines.filter((l) => l.startsWith('| cross-connect') || l.startsWith('| vxlan')).length, 3);
});

test('markdown: a row without AF_XDP (vxlan-jumbo) compares pinhole auto instead, and says so', () => {
  const md = renderMarkdown(
    report([
      ...SAMPLE,
      result(k('vxlan-jumbo', 'auto', 'TCP', 'Gbit/s'), [7.2, 7.5]),
      result(k('vxlan-jumbo', 'kernel', 'TCP', 'Gbit/s'), [11.5, 11.8]),
    ]),
  );
  const row = md.split('\n').find((l) => l.startsWith('| vxlan-jumbo | TCP'))!;
  assert.match(row, /\| auto: 0\.63× kernel \|$/);
  // With AF_XDP in the row, auto is one of the others.
  const cc = md.split('\n').find((l) => l.startsWith('| cross-connect | 64 B steady'))!;
  assert.doesNotMatch(cc, /auto:/);
});

test('json: machine, results with scenario, mode, metric, unit, min, median, max, runs', () => {
  const j = JSON.parse(renderJson(report(SAMPLE))) as BenchReport;
  assert.equal(j.machine.kernel, '6.18.0');
  assert.equal(j.results.length, SAMPLE.length);
  for (const key of ['scenario', 'mode', 'metric', 'unit', 'min', 'median', 'max', 'runs']) assert.ok(key in j.results[0]!, key);
});

// ---- a small XML well-formedness checker (elements, attributes, text, entities) -------------

function checkXml(xml: string): { root: string; elements: { name: string; attrs: Record<string, string>; text: string }[] } {
  const token =
    /<!--[\s\S]*?-->|<\/([A-Za-z][\w:.-]*)\s*>|<([A-Za-z][\w:.-]*)((?:\s+[A-Za-z_:][\w:.-]*\s*=\s*"[^"]*")*)\s*(\/?)>|([^<]+)/gy;
  const entity = /&(?:amp|lt|gt|quot|apos|#\d+|#x[0-9a-fA-F]+);/g;
  const stack: { name: string; attrs: Record<string, string>; text: string }[] = [];
  const all: { name: string; attrs: Record<string, string>; text: string }[] = [];
  let root = '';
  let pos = 0;
  const body = xml.trim();
  while (pos < body.length) {
    token.lastIndex = pos;
    const m = token.exec(body);
    if (!m || m.index !== pos) throw new Error(`not well-formed at ${pos}: ${body.slice(pos, pos + 60)}`);
    pos = token.lastIndex;
    if (m[0].startsWith('<!--')) continue;
    if (m[1]) {
      const open = stack.pop();
      if (!open || open.name !== m[1]) throw new Error(`</${m[1]}> closes <${open?.name}>`);
    } else if (m[2]) {
      const attrs: Record<string, string> = {};
      for (const a of m[3]!.matchAll(/([A-Za-z_:][\w:.-]*)\s*=\s*"([^"]*)"/g)) {
        if (a[1]! in attrs) throw new Error(`duplicate attribute ${a[1]}`);
        if (a[2]!.includes('<') || a[2]!.replace(entity, '').includes('&')) throw new Error(`bad attribute value ${a[2]}`);
        attrs[a[1]!] = a[2]!;
      }
      if (stack.length === 0) {
        if (root) throw new Error('more than one root element');
        root = m[2];
      }
      const el = { name: m[2], attrs, text: '' };
      all.push(el);
      if (!m[4]) stack.push(el);
    } else {
      const text = m[5]!;
      if (text.replace(entity, '').includes('&')) throw new Error(`unescaped & in ${text}`);
      if (stack.length === 0 && text.trim()) throw new Error(`text outside the root: ${text}`);
      if (stack.length) stack[stack.length - 1]!.text += text;
    }
  }
  if (stack.length) throw new Error(`unclosed <${stack[stack.length - 1]!.name}>`);
  return { root, elements: all };
}

test('the XML checker rejects what is not well-formed', () => {
  assert.throws(() => checkXml('<a><b></a></b>'));
  assert.throws(() => checkXml('<a>x & y</a>'));
  assert.throws(() => checkXml('<a x="1" x="2"/>'));
  assert.throws(() => checkXml('<a>'));
  assert.throws(() => checkXml('<a/><b/>'));
  assert.doesNotThrow(() => checkXml('<a x="&amp;"><b/>t &lt; u</a>'));
});

test('svg: well-formed XML, one bar and one whisker per figure with numbers, skipped ones marked, text escaped', () => {
  const svg = renderSvg(report(SAMPLE));
  const { root, elements } = checkXml(svg);
  assert.equal(root, 'svg');
  const bars = elements.filter((e) => e.name === 'rect' && e.attrs.class === 'bar');
  const withNumbers = SAMPLE.filter((r) => r.median !== null);
  assert.equal(bars.length, withNumbers.length);
  assert.equal(elements.filter((e) => e.name === 'path' && e.attrs.class === 'whisker').length, withNumbers.length);
  assert.equal(elements.filter((e) => e.name === 'text' && e.text === 'skipped').length, 1);
  // Bars have a size.
  for (const b of bars) {
    assert.ok(Number(b.attrs.height) >= 0 && Number(b.attrs.width) > 0, JSON.stringify(b.attrs));
  }
  const titles = elements.filter((e) => e.name === 'title').map((e) => e.text);
  assert.ok(titles.includes('afxdp: median 1.12 Mpps (min 1.10, max 1.13, 3 runs)'), titles.join('\n'));
  assert.ok(elements.some((e) => e.name === 'text' && e.text === 'vxlan &lt;&amp;&gt;'));
  assert.match(svg, /Test CPU &lt;v2&gt; &amp; co/);
});

test('svg of an empty report is still a well-formed chart', () => {
  assert.equal(checkXml(renderSvg(report([]))).root, 'svg');
});

test('ping: per-reply times, nearest-rank percentiles', () => {
  const text = [
    'PING 198.19.0.2 (198.19.0.2) 56(84) bytes of data.',
    '64 bytes from 198.19.0.2: icmp_seq=1 ttl=64 time=0.050 ms',
    '64 bytes from 198.19.0.2: icmp_seq=2 ttl=64 time=1.25 ms',
    '64 bytes from 198.19.0.2: icmp_seq=3 ttl=64 time=0.075 ms',
    '3 packets transmitted, 3 received, 0% packet loss, time 2ms',
  ].join('\n');
  assert.deepEqual(parsePingTimes(text), [0.05, 1.25, 0.075]);
  const v = Array.from({ length: 200 }, (_, i) => i + 1);
  assert.equal(percentile(v, 50), 100);
  assert.equal(percentile(v, 99), 198);
  assert.equal(percentile(v, 100), 200);
  assert.equal(percentile([7], 99), 7);
  assert.ok(Number.isNaN(percentile([], 50)));
});

test('ping: with -D timestamps, replies before the warm-up ends are left out', () => {
  const text = [
    'PING 198.19.0.2 (198.19.0.2) 56(84) bytes of data.',
    '[1796045820.460446] 64 bytes from 198.19.0.2: icmp_seq=1 ttl=64 time=9.50 ms',
    '[1796045820.999999] 64 bytes from 198.19.0.2: icmp_seq=2 ttl=64 time=7.25 ms',
    '[1796045821.000000] 64 bytes from 198.19.0.2: icmp_seq=3 ttl=64 time=0.075 ms',
    '[1796045821.200000] 64 bytes from 198.19.0.2: icmp_seq=4 ttl=64 time=0.125 ms',
    '4 packets transmitted, 4 received, 0% packet loss, time 3ms',
  ].join('\n');
  assert.deepEqual(parsePingTimes(text), [9.5, 7.25, 0.075, 0.125], 'no cut-off: every reply');
  assert.deepEqual(parsePingTimes(text, 1796045821), [0.075, 0.125], 'from the cut-off on');
  assert.deepEqual(parsePingTimes('64 bytes from 198.19.0.2: icmp_seq=1 ttl=64 time=0.05 ms', 1), [], 'no timestamp: not counted');
});

test('progress: one line per step with the elapsed seconds', () => {
  const lines: string[] = [];
  let now = 1000;
  const p = new Progress(
    (l) => lines.push(l),
    () => now,
  );
  now = 84_400;
  p.step('cross-connect afxdp 64 B steady run 1/5: 1.12 Mpps');
  assert.deepEqual(lines, ['[  83.4s] cross-connect afxdp 64 B steady run 1/5: 1.12 Mpps']);
  assert.equal(p.elapsed(), 83.4);
});
