/**
 * Two forwarders on the uplink bench's cross-connect (netns.ts buildCrossConnect: [gen] g0 → up0
 * [mid] out0 → s0 [sink], veth, 2 queues, copy-mode AF_XDP), alternated within each run so that
 * a noisy neighbour hits both alike:
 *
 *   --compare umem    (default) `pinhole uplink --mode afxdp --to out0` with the worker's two
 *                     sockets on one UMEM, frames sent by descriptor (PINHOLE_XSK_UMEM=shared;
 *                     without it a copy-mode worker no longer does, see
 *                     src/dataplane/ports/xsk-shared.ts, which this bench decided) against
 *                     PINHOLE_XSK_UMEM=own (one copy per frame)
 *   --compare frame   2 KiB UMEM frames (what a worker whose AF_XDP interfaces have MTUs up to
 *                     1770 uses) against 4 KiB (PINHOLE_XSK_FRAME=4096)
 *   --compare c       pinhole as configured by default against the C reference (bench/c/xdp-fwd.c
 *                     with pinhole's rings and frame size, as `pinhole bench` runs it)
 *   --compare env     pinhole with the environment `--a` against pinhole with `--b` (each a
 *                     space-separated list of NAME=value): a change behind a variable, measured
 *
 *   --compare env --a-bin PATH --b-bin PATH   the same with bin/pinhole.js of other checkouts
 *                     (a `git worktree` of another commit, node_modules linked): a code change, measured
 *
 *   node --import tsx bench/xsk-umem.ts [--compare umem|frame|c|env] [--a ENV] [--b ENV] [--a-bin PATH] [--b-bin PATH]
 *     [--runs 5] [--samples 1] [--seconds 1.5] [--steady-only] [--perf [--symbols N]]
 *
 * Each run starts both forwarders afresh; `--samples` measurements per start and case.
 * `--steady-only` measures 64-byte steady frames alone (no bursty, no 1500-byte case).
 *
 * `--perf` adds user-space CPU per packet measured with perf (Debian linux-perf): `perf record
 * -C` samples the forwarder's CPU during each measurement, and the forwarder threads' user-space
 * share of the samples times its CPU per packet is the figure. On a shared VM throughput moves
 * ±20% from one second to the next; the user-space share of a change made in TypeScript is what
 * the change moves, and the samples measure it to a few nanoseconds where /proc's 10 ms ticks
 * cannot. Without `--perf` the user-space figure comes from /proc (utime). `--symbols N` then
 * prints, per variant, the N symbols that took most of the forwarder threads' samples, kernel and
 * user space, with their ns per packet (pinhole runs with --perf-basic-prof, so V8's compiled
 * functions have names: jitNames).
 *
 * Prints min/median/max and mean ± standard error per variant and figure, and the ratio of the
 * medians (first ÷ second). Root.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { cpus } from 'node:os';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import '../src/sys/index.ts';
import { buildFrame } from '../src/packet/build.ts';
import { buildCForwarder } from '../src/control/bench/cref.ts';
import { ForwarderProcess, PINHOLE_BIN } from '../src/control/bench/forwarder.ts';
import { BENCH_NICE, Cleanup, measureRate, settle, sleep } from '../src/control/bench/measure.ts';
import { buildCrossConnect } from '../src/control/bench/netns.ts';
import { GeneratorProcess, type TrafficShape } from '../src/control/bench/trafficgen.ts';
import { cForwarderSetup } from '../src/control/bench/uplink.ts';
import { attachIn, loadCounting } from '../src/control/bench/xdp.ts';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '5' },
    samples: { type: 'string', default: '1' },
    seconds: { type: 'string', default: '1.5' },
    compare: { type: 'string', default: 'umem' },
    a: { type: 'string', default: '' },
    b: { type: 'string', default: '' },
    'steady-only': { type: 'boolean', default: false },
    perf: { type: 'boolean', default: false },
    symbols: { type: 'string', default: '0' },
    'a-bin': { type: 'string' },
    'b-bin': { type: 'string' },
  },
});
const runs = Number(values.runs);
const samplesPerStart = Number(values.samples);
const seconds = Number(values.seconds);
interface Variant {
  name: string;
  /** `pinhole`: `pinhole uplink` with `env`; `c`: the C reference. */
  kind: 'pinhole' | 'c';
  /** NAME=value settings for pinhole. */
  env: string[];
  /** What pinhole's ready line's detail must say, if anything. */
  detail?: string;
  label: string;
  /** bin/pinhole.js to run (--a-bin/--b-bin: another checkout, to compare code); this checkout's by default. */
  bin: string;
}
const pinhole = (name: string, env: string, label: string, detail?: string, bin?: string): Variant => ({
  name,
  kind: 'pinhole',
  env: env.split(' ').filter(Boolean),
  label: bin ? `${label} [${bin}]` : label,
  ...(detail !== undefined ? { detail } : {}),
  bin: bin ?? PINHOLE_BIN,
});
if ((values['a-bin'] || values['b-bin']) && values.compare !== 'env') throw new Error('--a-bin and --b-bin go with --compare env');
for (const k of ['a-bin', 'b-bin'] as const) {
  const p = values[k];
  if (p === undefined) continue;
  values[k] = resolve(p);
  if (!existsSync(values[k])) throw new Error(`--${k} ${p}: no such file (bin/pinhole.js of another checkout)`);
}
const COMPARISONS: Record<string, [Variant, Variant]> = {
  umem: [
    pinhole('shared', 'PINHOLE_XSK_UMEM=shared', 'shared UMEM', 'shared UMEM'),
    pinhole('own', 'PINHOLE_XSK_UMEM=own', 'own UMEM, one copy', 'own UMEM'),
  ],
  frame: [
    pinhole('2048', '', '2 KiB frames', '2048-byte frames'),
    pinhole('4096', 'PINHOLE_XSK_FRAME=4096', '4 KiB frames', '4096-byte frames'),
  ],
  c: [pinhole('pinhole', '', 'pinhole'), { name: 'c', kind: 'c', env: [], label: 'C reference', bin: '' }],
  env: [
    pinhole('a', values.a, `pinhole ${values.a || '(no change)'}`, undefined, values['a-bin']),
    pinhole('b', values.b, `pinhole ${values.b || '(no change)'}`, undefined, values['b-bin']),
  ],
};
const VARIANTS = COMPARISONS[values.compare];
if (!VARIANTS) throw new Error(`--compare umem, frame, c or env, not ${values.compare}`);
const topSymbols = Number(values.symbols);
if (!Number.isInteger(topSymbols) || topSymbols < 0) throw new Error(`--symbols takes a count, not ${values.symbols}`);
if (topSymbols > 0 && !values.perf) throw new Error('--symbols needs --perf');
// V8 names its compiled code in /tmp/perf-PID.map (a V8 flag NODE_OPTIONS allows; workers write
// to it too), added to a NODE_OPTIONS given in --a/--b. The C reference needs no map.
if (topSymbols > 0) {
  for (const v of VARIANTS) {
    if (v.kind !== 'pinhole') continue;
    const i = v.env.findIndex((e) => e.startsWith('NODE_OPTIONS='));
    if (i >= 0) v.env[i] = `${v.env[i]} --perf-basic-prof`;
    else v.env.push('NODE_OPTIONS=--perf-basic-prof');
  }
}
const ALL_CASES: { size: 64 | 1500; shape: TrafficShape; metric: string; unit: 'Mpps' | 'Gbit/s' }[] = [
  { size: 64, shape: 'steady', metric: '64 B steady', unit: 'Mpps' },
  { size: 64, shape: 'bursty', metric: '64 B bursty', unit: 'Mpps' },
  { size: 1500, shape: 'steady', metric: '1500 B steady', unit: 'Gbit/s' },
];
const CASES = values['steady-only'] ? ALL_CASES.slice(0, 1) : ALL_CASES;

const n = cpus().length;
const genCpu = n >= 2 ? 0 : undefined;
const fwdCpu = n >= 2 ? n - 1 : undefined;
if (values.perf && fwdCpu === undefined) throw new Error('--perf needs a CPU of its own for the forwarder (2 or more CPUs)');
const cleanup = new Cleanup();
process.on('SIGINT', () => {
  cleanup.runAll();
  process.exit(130);
});
const samples = new Map<string, number[]>();
const add = (k: string, v: number): void => void samples.set(k, [...(samples.get(k) ?? []), v]);

const cRef = VARIANTS.some((v) => v.kind === 'c') ? buildCForwarder() : undefined;
if (cRef && !('path' in cRef)) throw new Error(`the C reference: ${cRef.skipped}`);
if (values.perf && spawnSync('perf', ['--version']).status !== 0) throw new Error('--perf needs perf (Debian: linux-perf)');
const perfFile = `/tmp/ph-xsk-umem-${process.pid}.perf`;
const t = buildCrossConnect(`phu-${process.pid}`, 2);
cleanup.add(() => t.close());
const gen = GeneratorProcess.start(t.gen, genCpu, BENCH_NICE);
cleanup.add(() => gen.close());
const sink = loadCounting('ph_bench_sink', { kind: 'drop' });
cleanup.add(() => sink.close());
const att = attachIn(t.sink, 's0', sink.program.fd);
cleanup.add(() => att.close());
if (cRef) cleanup.add(() => cRef.close());
cleanup.add(() => {
  // perf keeps the file before as FILE.old.
  for (const f of [perfFile, `${perfFile}.old`, ...perfMaps]) rmSync(f, { force: true });
});
const frame = (size: number): Uint8Array =>
  buildFrame({
    eth: { dst: t.mac.up0, src: t.mac.g0 },
    ipv4: { src: t.addr.gen, dst: t.addr.sink },
    udp: { sport: 40000, dport: 4789 },
    payload: new Uint8Array(size - 14 - 20 - 8),
  });
const frames = { 64: frame(64), 1500: frame(1500) };
const count = (): number => sink.count();
/** User-space CPU seconds of `pid` (utime, /proc/PID/stat field 14): the forwarder's own work, without the kernel's. */
const userSeconds = (pid: number): number => {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[11]) / 100;
};

/**
 * The user-space share of the samples `perf record -C` took of process `pid`'s threads (its
 * dataplane workers on the forwarder's CPU): everything but the kernel and BPF programs.
 */
function userShare(file: string, pid: number): number {
  // Tab-separated: a thread's name may hold spaces. The last three fields are the sample count,
  // `tid:command` and the shared object.
  const r = spawnSync('perf', ['report', '-i', file, '-n', '--sort', 'pid,dso', '-g', 'none', '--stdio', '-t', '\t'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`perf report: ${r.stderr}`);
  const tids = threadsOf(pid);
  let all = 0;
  let user = 0;
  for (const line of r.stdout.split('\n')) {
    if (line.startsWith('#')) continue;
    const f = line.split('\t').map((x) => x.trim());
    if (f.length < 4) continue;
    const [count, who, dso] = f.slice(-3) as [string, string, string];
    if (!tids.has(Number(who.split(':')[0]))) continue;
    const k = Number(count);
    if (!Number.isFinite(k)) continue;
    all += k;
    if (!dso.startsWith('[kernel') && !dso.startsWith('bpf_')) user += k;
  }
  return all > 0 ? user / all : 0;
}

/** Per case and variant (`metric|variant`): ns per packet by symbol, summed over the measurements (for --symbols). */
const symbolNs = new Map<string, Map<string, number>>();
/** The forwarders' perf maps, removed at the end. */
const perfMaps = new Set<string>();

/**
 * V8's code map for `pid` (/tmp/perf-PID.map: start, size, name per line, appended as code is
 * made). Every isolate of the process (the main thread and each worker) writes to it, and an
 * address freed by one is reused by another: perf takes the first entry that covers a sample,
 * which named the worker's hot loop after a function the main thread compiled while loading.
 * Here the latest entry covering an address wins: a heuristic (a sample may be named after code
 * made after it), right for a steady loop compiled once warm, as the forwarder's is.
 */
function jitNames(pid: number): (ip: number) => string | undefined {
  let text = '';
  perfMaps.add(`/tmp/perf-${pid}.map`);
  try {
    text = readFileSync(`/tmp/perf-${pid}.map`, 'utf8');
  } catch {
    return () => undefined;
  }
  const starts: number[] = [];
  const ends: number[] = [];
  const names: string[] = [];
  for (const line of text.split('\n')) {
    const m = /^([0-9a-f]+) ([0-9a-f]+) (.*)$/.exec(line);
    if (!m) continue;
    const start = parseInt(m[1]!, 16);
    starts.push(start);
    ends.push(start + parseInt(m[2]!, 16));
    names.push(m[3]!);
  }
  const cache = new Map<number, string | undefined>();
  return (ip) => {
    if (cache.has(ip)) return cache.get(ip);
    let name: string | undefined;
    for (let k = starts.length - 1; k >= 0; k--) {
      if (starts[k]! <= ip && ip < ends[k]!) {
        name = names[k];
        break;
      }
    }
    cache.set(ip, name);
    return name;
  };
}

/** Adds each symbol's share of the forwarder threads' samples in `file`, times `nsPerPacket`, to table `key`. */
function addSymbols(file: string, pid: number, key: string, nsPerPacket: number): void {
  const r = spawnSync('perf', ['script', '-i', file, '-F', 'tid,ip,sym'], { encoding: 'utf8', maxBuffer: 256 << 20 });
  if (r.status !== 0) throw new Error(`perf script: ${r.stderr}`);
  const tids = threadsOf(pid);
  const jit = jitNames(pid);
  const counts = new Map<string, number>();
  let all = 0;
  for (const line of r.stdout.split('\n')) {
    const m = /^\s*(\d+)\s+([0-9a-f]+)\s*(.*)$/.exec(line);
    if (!m || !tids.has(Number(m[1]))) continue;
    // perf's name, unless V8's map has a later one for the address; its tier marker and source position dropped.
    const sym = (jit(parseInt(m[2]!, 16)) ?? (m[3]!.replace(/\+0x[0-9a-f]+$/, '') || '[unknown]')).replace(/ (node:|file:|\/).*$/, '');
    counts.set(sym, (counts.get(sym) ?? 0) + 1);
    all++;
  }
  const table = symbolNs.get(key) ?? new Map<string, number>();
  symbolNs.set(key, table);
  for (const [sym, k] of counts) table.set(sym, (table.get(sym) ?? 0) + (k / all) * nsPerPacket);
}

/** The thread ids of `pid` (and of its children: `ip netns exec` and `taskset` exec into it). */
function threadsOf(pid: number): Set<number> {
  const out = new Set<number>();
  const r = spawnSync('ps', ['-L', '-o', 'tid=', '--ppid', String(pid), '-p', String(pid)], { encoding: 'utf8' });
  for (const l of r.stdout.split('\n')) if (l.trim()) out.add(Number(l.trim()));
  return out;
}

function start(variant: Variant): { p: ForwarderProcess; close: () => void } {
  if (variant.kind === 'c') {
    const setup = cForwarderSetup(t, (cRef as { path: string }).path, { xc: true });
    let p: ForwarderProcess;
    try {
      p = ForwarderProcess.start({
        label: variant.label,
        ns: t.mid,
        argv: setup.argv,
        fds: setup.fds,
        nice: BENCH_NICE,
        ...(fwdCpu !== undefined ? { cpu: fwdCpu } : {}),
      });
    } catch (err) {
      setup.close();
      throw err;
    }
    return {
      p,
      close: () => {
        try {
          p.kill();
        } finally {
          setup.close();
        }
      },
    };
  }
  const argv = ['env', ...variant.env, process.execPath, variant.bin, 'uplink', '--iface', 'up0', '--mode', 'afxdp', '--port', '4789'];
  argv.push('--to', 'out0', '--stats-interval', '20');
  // As `pinhole bench` runs it: the workers alone on the forwarder's CPU, the main thread beside the generator.
  if (fwdCpu !== undefined) argv.push('--cpus', String(fwdCpu));
  const p = ForwarderProcess.start({
    label: `pinhole uplink (${variant.label})`,
    ns: t.mid,
    argv,
    nice: BENCH_NICE,
    ...(genCpu !== undefined && fwdCpu !== undefined ? { cpu: genCpu } : {}),
  });
  return { p, close: () => p.kill() };
}

/** One measurement of `c`; with --perf the send runs 3 s longer than the sampled `seconds`. */
async function measure(p: ForwarderProcess, c: (typeof CASES)[number], r: number, v: string): Promise<void> {
  const u0 = userSeconds(p.pid);
  const req = { iface: 'g0', frame: frames[c.size], seconds: values.perf ? seconds + 3 : seconds, shape: c.shape };
  const sending = measureRate(gen, req, count, { proc: p });
  let perf: ChildProcess | undefined;
  let perfEnded: Promise<unknown> = Promise.resolve();
  let stopPerf = (): void => undefined;
  if (values.perf) {
    await sleep(300);
    perf = spawn('perf', ['record', '-C', String(fwdCpu), '-F', '4999', '-o', perfFile, '--', 'sleep', String(seconds)], {
      stdio: 'ignore',
    });
    perfEnded = new Promise((res) => {
      perf!.once('exit', res);
      perf!.once('error', res);
    });
    stopPerf = cleanup.add(() => perf!.kill());
  }
  const s = await sending;
  await perfEnded;
  stopPerf();
  const value = c.unit === 'Mpps' ? s.pps / 1e6 : (s.pps * c.size * 8) / 1e9;
  add(`${c.metric} (${c.unit})|${v}`, value);
  if (s.cpuNsPerPacket !== undefined) add(`CPU ns/packet ${c.metric}|${v}`, s.cpuNsPerPacket);
  const user = perf
    ? userShare(perfFile, p.pid) * (s.cpuNsPerPacket ?? 0)
    : s.delivered > 0
      ? ((userSeconds(p.pid) - u0) * 1e9) / s.delivered
      : 0;
  add(`user CPU ns/packet ${c.metric}|${v}`, user);
  if (perf && topSymbols > 0) addSymbols(perfFile, p.pid, `${c.metric}|${v}`, s.cpuNsPerPacket ?? 0);
  process.stderr.write(
    `run ${r} ${v} ${c.metric}: ${value.toFixed(3)} ${c.unit}, ${s.cpuNsPerPacket?.toFixed(0)} ns CPU/packet (${user.toFixed(0)} user)\n`,
  );
}

try {
  for (let r = 1; r <= runs; r++) {
    // Alternate which variant goes first, so neither always runs on a warmer machine.
    const order = r % 2 === 1 ? VARIANTS : [VARIANTS[1], VARIANTS[0]];
    for (const variant of order) {
      const v = variant.name;
      const { p, close } = start(variant);
      const done = cleanup.add(close);
      try {
        const ready = await p.ready;
        if (variant.detail && !String(ready.detail).includes(variant.detail)) throw new Error(`${v}: detail ${String(ready.detail)}`);
        await gen.send({ iface: 'g0', frame: frames[64], seconds: 0.2, shape: 'steady' });
        await settle(count);
        for (const c of CASES) for (let k = 0; k < samplesPerStart; k++) await measure(p, c, r, v);
        const fin = (await p.stop()) as { txCopies?: number; txPackets?: number };
        if (variant.kind === 'pinhole') process.stderr.write(`run ${r} ${v}: txPackets ${fin.txPackets}, txCopies ${fin.txCopies}\n`);
      } finally {
        done();
      }
    }
  }
} finally {
  cleanup.runAll();
}

const med = (a: number[]): number => {
  const s = [...a].sort((x, y) => x - y);
  return s.length % 2 ? s[(s.length - 1) >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const mean = (a: number[]): number => a.reduce((x, y) => x + y, 0) / a.length;
const stderr = (a: number[]): number =>
  a.length > 1 ? Math.sqrt(a.reduce((x, y) => x + (y - mean(a)) ** 2, 0) / (a.length - 1) / a.length) : 0;
const f = (x: number): string => (x >= 100 ? x.toFixed(0) : x.toFixed(3));
const [va, vb] = VARIANTS;
console.log(
  `| figure | ${va.label} (min/median/max; mean ± s.e.) | ${vb.label} (min/median/max; mean ± s.e.) | ${va.name} ÷ ${vb.name} (medians) |`,
);
console.log(`| --- | --- | --- | --- |`);
for (const metric of new Set([...samples.keys()].map((k) => k.split('|')[0]!))) {
  const a = samples.get(`${metric}|${va.name}`) ?? [];
  const b = samples.get(`${metric}|${vb.name}`) ?? [];
  const mm = (x: number[]): string =>
    x.length ? `${f(Math.min(...x))} / ${f(med(x))} / ${f(Math.max(...x))}; ${f(mean(x))} ± ${f(stderr(x))}` : '–';
  console.log(`| ${metric} | ${mm(a)} | ${mm(b)} | ${a.length && b.length ? (med(a) / med(b)).toFixed(2) : '–'} |`);
}
for (const c of topSymbols > 0 ? CASES : []) {
  for (const v of VARIANTS) {
    const table = symbolNs.get(`${c.metric}|${v.name}`);
    if (!table) continue;
    const measured = samples.get(`CPU ns/packet ${c.metric}|${v.name}`)?.length ?? 1;
    console.log(
      `\n${v.label}, ${c.metric}: the ${topSymbols} symbols with most of the forwarder's CPU (ns per packet, mean of ${measured} measurements)`,
    );
    for (const [sym, ns] of [...table].sort((x, y) => y[1] - x[1]).slice(0, topSymbols))
      console.log(`${(ns / measured).toFixed(1).padStart(7)}  ${sym}`);
  }
}
