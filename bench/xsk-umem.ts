/**
 * Shared UMEM against one UMEM per socket, on the uplink bench's cross-connect (netns.ts
 * buildCrossConnect: [gen] g0 → up0 [mid] out0 → s0 [sink], veth, 2 queues, copy-mode AF_XDP):
 * `pinhole uplink --mode afxdp --to out0` with the worker's two sockets on one UMEM
 * (PINHOLE_XSK_UMEM=shared: frames go out by descriptor; without it a copy-mode worker no longer
 * shares, see src/dataplane/ports/xsk-shared.ts, which this bench decided) and with
 * PINHOLE_XSK_UMEM=own (one copy per frame), alternated within each run so that a noisy
 * neighbour hits both alike. Root.
 *
 * `--compare frame`: the UMEM frame size instead, on the same path — 2 KiB frames (what a worker
 * whose AF_XDP interfaces have MTUs up to 1774 uses) against 4 KiB (PINHOLE_XSK_FRAME=4096).
 *
 *   node --import tsx bench/xsk-umem.ts [--compare umem|frame] [--runs 5] [--seconds 1.5]
 *
 * Prints min/median/max per variant and figure, and the median ratio of the first to the second.
 */
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { parseArgs } from 'node:util';
import '../src/sys/index.ts';
import { buildFrame } from '../src/packet/build.ts';
import { ForwarderProcess, PINHOLE_BIN } from '../src/control/bench/forwarder.ts';
import { BENCH_NICE, Cleanup, measureRate, settle } from '../src/control/bench/measure.ts';
import { buildCrossConnect } from '../src/control/bench/netns.ts';
import { GeneratorProcess, type TrafficShape } from '../src/control/bench/trafficgen.ts';
import { attachIn, loadCounting } from '../src/control/bench/xdp.ts';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '5' },
    seconds: { type: 'string', default: '1.5' },
    compare: { type: 'string', default: 'umem' },
  },
});
const runs = Number(values.runs);
const seconds = Number(values.seconds);
interface Variant {
  name: string;
  /** The environment that picks it. */
  env: string;
  /** What the ready line's detail must say. */
  detail: string;
  label: string;
}
const COMPARISONS: Record<string, [Variant, Variant]> = {
  umem: [
    { name: 'shared', env: 'PINHOLE_XSK_UMEM=shared', detail: 'shared UMEM', label: 'shared UMEM' },
    { name: 'own', env: 'PINHOLE_XSK_UMEM=own', detail: 'own UMEM', label: 'own UMEM, one copy' },
  ],
  frame: [
    { name: '2048', env: 'PINHOLE_XSK_FRAME=', detail: '2048-byte frames', label: '2 KiB frames' },
    { name: '4096', env: 'PINHOLE_XSK_FRAME=4096', detail: '4096-byte frames', label: '4 KiB frames' },
  ],
};
const VARIANTS = COMPARISONS[values.compare];
if (!VARIANTS) throw new Error(`--compare umem or frame, not ${values.compare}`);
const CASES: { size: 64 | 1500; shape: TrafficShape; metric: string; unit: 'Mpps' | 'Gbit/s' }[] = [
  { size: 64, shape: 'steady', metric: '64 B steady', unit: 'Mpps' },
  { size: 64, shape: 'bursty', metric: '64 B bursty', unit: 'Mpps' },
  { size: 1500, shape: 'steady', metric: '1500 B steady', unit: 'Gbit/s' },
];

const n = cpus().length;
const genCpu = n >= 2 ? 0 : undefined;
const fwdCpu = n >= 2 ? n - 1 : undefined;
const cleanup = new Cleanup();
process.on('SIGINT', () => {
  cleanup.runAll();
  process.exit(130);
});
const samples = new Map<string, number[]>();
const add = (k: string, v: number): void => void samples.set(k, [...(samples.get(k) ?? []), v]);

const t = buildCrossConnect(`phu-${process.pid}`, 2);
cleanup.add(() => t.close());
const gen = GeneratorProcess.start(t.gen, genCpu, BENCH_NICE);
cleanup.add(() => gen.close());
const sink = loadCounting('ph_bench_sink', { kind: 'drop' });
cleanup.add(() => sink.close());
const att = attachIn(t.sink, 's0', sink.program.fd);
cleanup.add(() => att.close());
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

try {
  for (let r = 1; r <= runs; r++) {
    // Alternate which variant goes first, so neither always runs on a warmer machine.
    const order = r % 2 === 1 ? VARIANTS : [VARIANTS[1], VARIANTS[0]];
    for (const variant of order) {
      const v = variant.name;
      const argv = [
        'env',
        variant.env,
        process.execPath,
        PINHOLE_BIN,
        'uplink',
        '--iface',
        'up0',
        '--mode',
        'afxdp',
        '--port',
        '4789',
        '--to',
        'out0',
        '--stats-interval',
        '20',
      ];
      const p = ForwarderProcess.start({
        label: `pinhole uplink (${variant.label})`,
        ns: t.mid,
        argv,
        nice: BENCH_NICE,
        ...(fwdCpu !== undefined ? { cpu: fwdCpu } : {}),
      });
      const done = cleanup.add(() => p.kill());
      try {
        const ready = await p.ready;
        if (!String(ready.detail).includes(variant.detail)) throw new Error(`${v}: detail ${String(ready.detail)}`);
        await gen.send({ iface: 'g0', frame: frames[64], seconds: 0.2, shape: 'steady' });
        await settle(count);
        for (const c of CASES) {
          const u0 = userSeconds(p.pid);
          const s = await measureRate(gen, { iface: 'g0', frame: frames[c.size], seconds, shape: c.shape }, count, p);
          const user = s.delivered > 0 ? ((userSeconds(p.pid) - u0) * 1e9) / s.delivered : 0;
          const value = c.unit === 'Mpps' ? s.pps / 1e6 : (s.pps * c.size * 8) / 1e9;
          add(`${c.metric} (${c.unit})|${v}`, value);
          if (s.cpuNsPerPacket !== undefined) add(`CPU ns/packet ${c.metric}|${v}`, s.cpuNsPerPacket);
          add(`user CPU ns/packet ${c.metric}|${v}`, user);
          process.stderr.write(
            `run ${r} ${v} ${c.metric}: ${value.toFixed(3)} ${c.unit}, ${s.cpuNsPerPacket?.toFixed(0)} ns CPU/packet (${user.toFixed(0)} user)\n`,
          );
        }
        const fin = (await p.stop()) as { txCopies?: number; txPackets?: number };
        process.stderr.write(`run ${r} ${v}: txPackets ${fin.txPackets}, txCopies ${fin.txCopies}\n`);
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
const f = (x: number): string => (x >= 100 ? x.toFixed(0) : x.toFixed(3));
const [va, vb] = VARIANTS;
console.log(`| figure | ${va.label} (min/median/max) | ${vb.label} (min/median/max) | ${va.name} ÷ ${vb.name} (medians) |`);
console.log(`| --- | --- | --- | --- |`);
for (const metric of new Set([...samples.keys()].map((k) => k.split('|')[0]!))) {
  const a = samples.get(`${metric}|${va.name}`) ?? [];
  const b = samples.get(`${metric}|${vb.name}`) ?? [];
  const mm = (x: number[]): string => (x.length ? `${f(Math.min(...x))} / ${f(med(x))} / ${f(Math.max(...x))}` : '–');
  console.log(`| ${metric} | ${mm(a)} | ${mm(b)} | ${a.length && b.length ? (med(a) / med(b)).toFixed(2) : '–'} |`);
}
