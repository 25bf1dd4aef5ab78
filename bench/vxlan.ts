/**
 * VXLAN benchmark: pod-to-pod throughput through pinhole's VXLAN path against the kernel's own
 * vxlan, on the same lab topology (src/control/lab/topology.ts), every case in one run, repeated.
 *
 *   [pA0] eth0 ──veth── wl0 [node a] up0 ══veth══ up0 [node b] wl0 ──veth── eth0 [pB0]
 *
 * Node b is always the kernel reference peer (vx0 + br0). Node a is, per case:
 *   - kernel            — vx0 + br0 too: the kernel on both ends (the reference);
 *   - pinhole afxdp     — `pinhole run`, uplink mode afxdp, workload veths with as many queues as
 *                         the uplink, so the workload side is AF_XDP as well;
 *   - pinhole afpacket  — `pinhole run`, uplink mode afpacket (everything AF_PACKET).
 * Every case uses the same topology (2 uplink and 2 workload queues), a fresh lab per case.
 *
 * Metrics, pod a → pod b, each run once per repetition:
 *   - TCP: iperf3, one stream, receiver's Gbit/s and the sender's retransmits;
 *   - UDP: iperf3, 1400-byte datagrams offered as fast as iperf3's sender can (-b 0 would be
 *     unlimited too; we give a 20G cap), delivered Gbit/s (datagrams received × 1400 × 8 / time)
 *     and loss %. iperf3's sender is one thread, so the offered rate is a CPU limit, not a line rate;
 *   - small frames: iperf3 cannot offer them fast enough (~60 kpps with `-l 18` here, its own
 *     sender is the bottleneck), so pod a's eth0 sends 64-byte UDP frames with the kernel's live
 *     frame generator (bench/lib/trafficgen.ts, XDP_TX, ~2 Mpps) and we count what arrives on pod
 *     b's eth0 (rx_packets), divided by the generator's send time: delivered packets per second.
 *
 * Prints min/median/max per case and metric, writes bench/results/vxlan.json. Root;
 * `node --import tsx bench/vxlan.ts [--repeat 5] [--seconds 3] [--frames 1000000] [--underlay 4|6]`.
 * Everything (pinhole, iperf3 servers, namespaces) is removed on exit, failure or SIGINT.
 */
import { execFileSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { buildLab, type Lab, type LabRole } from '../src/control/lab/topology.ts';
import { buildFrame } from '../src/packet/build.ts';
import { killLeftoverPinholes, startPinhole, type PinholeProc } from '../test/helpers/pinhole-proc.ts';
import { printTable, summarise, type Summary } from './stats.ts';

const { values } = parseArgs({
  options: {
    repeat: { type: 'string', default: '5' },
    seconds: { type: 'string', default: '3' },
    frames: { type: 'string', default: '1000000' },
    underlay: { type: 'string', default: '4' },
  },
});
const REPEAT = Number(values.repeat);
const SECONDS = Number(values.seconds);
const FRAMES = Number(values.frames);
const UNDERLAY = Number(values.underlay) as 4 | 6;
if (!(REPEAT >= 1) || !(SECONDS >= 1) || !(FRAMES >= 1) || (UNDERLAY !== 4 && UNDERLAY !== 6)) {
  console.error('usage: bench/vxlan.ts [--repeat N>=1] [--seconds S>=1] [--frames N>=1] [--underlay 4|6]');
  process.exit(2);
}
const UDP_LEN = 1400;
const SMALL_FRAME = 64;
const TRAFFICGEN = fileURLToPath(new URL('./lib/trafficgen.ts', import.meta.url));

interface Case {
  name: string;
  a: LabRole;
  mode?: 'afxdp' | 'afpacket';
}
const CASES: Case[] = [
  { name: 'kernel', a: 'kernel' },
  { name: 'pinhole afxdp', a: 'pinhole', mode: 'afxdp' },
  { name: 'pinhole afpacket', a: 'pinhole', mode: 'afpacket' },
];

/** One repetition's numbers. */
interface Sample {
  tcpGbps: number;
  tcpRetransmits: number;
  udpOfferedGbps: number;
  udpDeliveredGbps: number;
  udpLossPct: number;
  smallPps: number;
}

// Live resources, so a SIGINT or a failure anywhere tears them down.
let lab: Lab | undefined;
const children = new Set<ChildProcess>();
const tmp = mkdtempSync(join(tmpdir(), 'ph-bench-vxlan-'));
function teardown(): void {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  children.clear();
  killLeftoverPinholes();
  lab?.close();
  lab = undefined;
}
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    teardown();
    rmSync(tmp, { recursive: true, force: true });
    process.exit(sig === 'SIGINT' ? 130 : 143);
  });
}

/** Runs a command in a namespace with a deadline (lab.exec has none, and iperf3 can hang). */
function nsRun(ns: string, cmd: string, args: readonly string[], timeoutMs: number): string {
  return execFileSync('ip', ['netns', 'exec', ns, cmd, ...args], {
    encoding: 'utf8',
    timeout: timeoutMs,
    maxBuffer: 64 << 20,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Pings until the overlay answers (ARP, the kernel peer's FDB learning, pinhole's next hop). */
async function waitReachable(l: Lab, from: string, to: string): Promise<void> {
  for (let i = 0; i < 20; i++) {
    try {
      l.exec(from, 'ping', ['-c', '1', '-W', '1', to]);
      return;
    } catch {
      await sleep(100);
    }
  }
  throw new Error(`pod ${from} cannot reach ${to} through the tunnel`);
}

/** Starts `iperf3 -s` in the namespace and resolves once it listens. */
function startIperfServer(l: Lab, ns: string, bind: string): Promise<ChildProcess> {
  const c = l.spawn(ns, 'iperf3', ['-s', '-B', bind, '--forceflush']);
  children.add(c);
  let out = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`iperf3 -s did not start in ${ns}: ${out}`)), 5000);
    c.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    c.stdout!.on('data', (d: Buffer) => {
      if (out.length < 4096) out += d.toString();
      if (out.includes('Server listening')) {
        clearTimeout(timer);
        resolve(c);
      }
    });
    c.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`iperf3 -s exited (${code}) in ${ns}: ${out}`));
    });
  });
}

interface IperfEnd {
  sum_sent?: { bits_per_second: number; retransmits?: number; packets?: number; seconds: number };
  sum_received?: { bits_per_second: number; packets?: number; lost_packets?: number; seconds: number };
  sum?: { bits_per_second: number; packets: number; lost_packets: number; lost_percent: number; seconds: number };
}

function iperf(ns: string, server: string, extra: string[]): IperfEnd {
  const out = nsRun(
    ns,
    'iperf3',
    ['-c', server, '-t', String(SECONDS), '-J', '--connect-timeout', '3000', ...extra],
    SECONDS * 1000 + 20_000,
  );
  const j = JSON.parse(out) as { end: IperfEnd; error?: string };
  if (j.error) throw new Error(`iperf3 ${extra.join(' ')}: ${j.error}`);
  return j.end;
}

function rxPackets(l: Lab, ns: string, dev: string): number {
  return Number(l.exec(ns, 'cat', [`/sys/class/net/${dev}/statistics/rx_packets`]).trim());
}

/** Small frames: the kernel's live-frame generator on pod a's eth0, counted on pod b's eth0. */
async function smallPps(l: Lab): Promise<number> {
  const wa = l.a.workloads[0]!;
  const wb = l.b.workloads[0]!;
  const frame = buildFrame({
    eth: { dst: wb.podMac, src: wa.podMac },
    ipv4: { src: wa.podAddr4, dst: wb.podAddr4 },
    udp: { sport: 40000, dport: 9 },
    payload: new Uint8Array(SMALL_FRAME - 14 - 20 - 8),
  });
  const before = rxPackets(l, wb.podNs, wb.podIface);
  const out = JSON.parse(
    nsRun(
      wa.podNs,
      process.execPath,
      ['--import', 'tsx', TRAFFICGEN, '--iface', wa.podIface, '--frame', Buffer.from(frame).toString('hex'), '--count', String(FRAMES)],
      120_000,
    ),
  ) as { seconds: number };
  // Let in-flight frames land (pinhole's rings, the kernel's backlogs): wait until the counter stops.
  let last = rxPackets(l, wb.podNs, wb.podIface);
  for (let k = 0; k < 50; k++) {
    await sleep(20);
    const now = rxPackets(l, wb.podNs, wb.podIface);
    if (now === last) break;
    last = now;
  }
  return (last - before) / out.seconds;
}

function writeConfig(l: Lab, mode: string): string {
  const wl = l.a.workloads[0]!;
  const file = join(tmp, `${l.plan.prefix}.yaml`);
  writeFileSync(
    file,
    [
      `uplink: { interface: ${l.a.uplink}, mode: ${mode} }`,
      'connections:',
      `  - { name: pod-a, local: { interface: ${wl.iface} }, vxlan: { vni: ${wl.vni}, remote: "${l.b.tunnelAddr}" } }`,
      '',
    ].join('\n'),
  );
  return file;
}

interface CaseResult {
  samples: Sample[];
  pinhole?: { ready: unknown; stopped: unknown };
}

async function runCase(c: Case): Promise<CaseResult> {
  lab = buildLab({
    prefix: `ph-bvx-${process.pid}-${c.name.replace(/ /g, '-')}`,
    underlay: UNDERLAY,
    sides: { a: c.a, b: 'kernel' },
    uplinkQueues: 2,
    workloadQueues: 2,
  });
  const l = lab;
  let p: PinholeProc | undefined;
  const result: CaseResult = { samples: [] };
  try {
    if (c.a === 'pinhole') {
      p = startPinhole(l.a.ns, ['--config', writeConfig(l, c.mode!)], 20_000, 'run');
      const ready = (await p.ready) as unknown as { mode: string; workloads?: { driver: string }[] };
      if (ready.mode !== c.mode || (ready.workloads ?? []).some((w) => w.driver !== c.mode)) {
        throw new Error(`pinhole ${c.name}: asked for ${c.mode}, got ${JSON.stringify(ready)}`);
      }
      result.pinhole = { ready, stopped: undefined };
    }
    const wa = l.a.workloads[0]!;
    const wb = l.b.workloads[0]!;
    await waitReachable(l, wa.podNs, wb.podAddr4);
    const server = await startIperfServer(l, wb.podNs, wb.podAddr4);
    for (let r = 0; r < REPEAT; r++) {
      const tcp = iperf(wa.podNs, wb.podAddr4, []);
      const udp = iperf(wa.podNs, wb.podAddr4, ['-u', '-b', '20G', '-l', String(UDP_LEN)]);
      // iperf3 3.12 reports UDP in end.sum (packets sent, lost as seen by the receiver).
      const u = udp.sum!;
      const delivered = u.packets - u.lost_packets;
      const s: Sample = {
        tcpGbps: tcp.sum_received!.bits_per_second / 1e9,
        tcpRetransmits: tcp.sum_sent!.retransmits ?? 0,
        udpOfferedGbps: (u.packets * UDP_LEN * 8) / u.seconds / 1e9,
        udpDeliveredGbps: (delivered * UDP_LEN * 8) / u.seconds / 1e9,
        udpLossPct: u.packets ? (100 * u.lost_packets) / u.packets : 0,
        smallPps: await smallPps(l),
      };
      result.samples.push(s);
      console.error(`${c.name} run ${r + 1}/${REPEAT}: ${JSON.stringify(s)}`);
    }
    server.kill('SIGTERM');
    if (p) result.pinhole!.stopped = await p.stop();
    p = undefined;
    return result;
  } finally {
    teardown();
  }
}

const METRICS: { key: keyof Sample; label: string; unit: string; scale?: number }[] = [
  { key: 'tcpGbps', label: 'TCP', unit: 'Gbit/s' },
  { key: 'tcpRetransmits', label: 'TCP retransmits', unit: 'segments per run' },
  { key: 'udpOfferedGbps', label: `UDP ${UDP_LEN}B offered`, unit: 'Gbit/s (iperf3 sender limit)' },
  { key: 'udpDeliveredGbps', label: `UDP ${UDP_LEN}B delivered`, unit: 'Gbit/s' },
  { key: 'udpLossPct', label: `UDP ${UDP_LEN}B loss`, unit: '%' },
  { key: 'smallPps', label: `UDP ${SMALL_FRAME}B frames delivered`, unit: 'Mpps (kernel generator)', scale: 1e-6 },
];

try {
  const results: Record<string, CaseResult> = {};
  for (const c of CASES) results[c.name] = await runCase(c);
  const rows: { name: string; summary: Summary; note?: string }[] = [];
  const json: Record<string, Record<string, Summary>> = {};
  for (const m of METRICS) {
    for (const c of CASES) {
      const runs = results[c.name]!.samples.map((s) => s[m.key] * (m.scale ?? 1));
      const summary = summarise(runs);
      // pinhole's drop reasons (summed over the case's runs) next to its TCP row: they explain a collapse.
      const drops = results[c.name]!.pinhole?.stopped as { drops?: Record<string, number> } | undefined;
      const why =
        m.key === 'tcpGbps' && drops?.drops && Object.keys(drops.drops).length ? `; pinhole drops ${JSON.stringify(drops.drops)}` : '';
      rows.push({ name: `${m.label}: ${c.name}`, summary, note: m.unit + why });
      (json[c.name] ??= {})[m.key] = summarise(results[c.name]!.samples.map((s) => s[m.key]));
    }
  }
  printTable(
    `vxlan pod a → pod b (IPv${UNDERLAY} underlay, node b kernel vxlan; iperf3 ${SECONDS} s, ${FRAMES} small frames, ${REPEAT} runs; ${cpus().length} CPUs)`,
    '',
    rows,
  );
  mkdirSync('bench/results', { recursive: true });
  writeFileSync(
    'bench/results/vxlan.json',
    JSON.stringify(
      {
        date: new Date().toISOString(),
        host: { cpus: cpus().length, kernel: release() },
        repeat: REPEAT,
        seconds: SECONDS,
        frames: FRAMES,
        underlay: UNDERLAY,
        udpDatagram: UDP_LEN,
        smallFrame: SMALL_FRAME,
        results: json,
        pinhole: Object.fromEntries(Object.entries(results).flatMap(([k, v]) => (v.pinhole ? [[k, v.pinhole]] : []))),
      },
      null,
      2,
    ),
  );
  console.log('JSON: bench/results/vxlan.json');
} finally {
  teardown();
  rmSync(tmp, { recursive: true, force: true });
}
