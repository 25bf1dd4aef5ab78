/**
 * WireGuard benchmark: pinhole against wireguard-go on the same topology, in one run.
 *
 *   [pod A] ── wl0 [node A: X] up0 ══════ up0 [node B: X] wl0 ── [pod B]
 *
 * X is the implementation under test on both nodes, so each case measures one implementation's
 * throughput end to end (encryption on one node, decryption on the other):
 *   - wireguard-go: its tun on each node, the kernel forwarding between wl0 and the tun (proxy ARP
 *     on wl0, so a pod's view is the same as with pinhole: one /24, its gateway answers ARP);
 *   - pinhole: `pinhole run` with one WireGuard connection on wl0 on each node (uplink mode auto,
 *     the workload interface AF_PACKET with GSO and checksum offload).
 * Pods keep their TX checksum offload and TSO on, as pods come (`--pod-offload off`: off).
 *
 * Measured per case, min/median/max over --repeat runs (default 3):
 *   TCP      iperf3 pod A → pod B, 4 s, Gbit/s (and retransmits)
 *   64 B     64-byte UDP frames from a kernel live-frame generator in pod A (bench/lib/trafficgen.ts),
 *            delivered packets per second counted on pod B's eth0
 *   ping     idle round trip pod A → pod B (median of 20 pings), µs
 *   CPU/pkt  node A's forwarder process CPU time (user + system, /proc/PID/stat) per delivered
 *            64-byte packet, in µs (the kernel's softirq work on veths is not in it, for either)
 *
 * Root; `node --import tsx bench/wireguard.ts [--repeat 3] [--frames 2000000] [--pod-offload on|off]`. Results: a table
 * on stdout and bench/results/wireguard.json.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { buildLab, type Lab } from '../src/control/lab/topology.ts';
import { buildFrame } from '../src/packet/build.ts';
import { encodeKey, generatePrivateKey, publicKeyOf } from '../src/tunnel/wireguard/keys.ts';
import { printTable, summarise, type Summary } from './stats.ts';

const REPO = fileURLToPath(new URL('..', import.meta.url));
const BIN = join(REPO, 'bin', 'pinhole.js');
const GEN = join(REPO, 'bench', 'lib', 'trafficgen.ts');
const { values } = parseArgs({
  options: {
    repeat: { type: 'string', default: '3' },
    frames: { type: 'string', default: '2000000' },
    'pod-offload': { type: 'string', default: 'on' },
  },
});
const REPEAT = Number(values.repeat);
const FRAMES = Number(values.frames);
const MTU = 1420;
const dir = mkdtempSync(join(tmpdir(), 'ph-wgbench-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));

interface Keys {
  pub: string;
  file: string;
}
function keys(name: string): Keys {
  const k = generatePrivateKey();
  const file = join(dir, `${name}.key`);
  writeFileSync(file, `${encodeKey(k)}\n`, { mode: 0o600 });
  return { pub: encodeKey(publicKeyOf(k)), file };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function wgGo(
  lab: Lab,
  ns: string,
  ifname: string,
  own: Keys,
  peer: { pub: string; allowed: string; endpoint: string },
): Promise<ChildProcess> {
  const p = lab.spawn(ns, 'wireguard-go', ['-f', ifname]);
  for (let i = 0; !existsSync(`/var/run/wireguard/${ifname}.sock`); i++) {
    if (i > 500 || p.exitCode !== null) throw new Error(`wireguard-go ${ifname} did not start`);
    await sleep(20);
  }
  lab.exec(ns, 'wg', [
    'set',
    ifname,
    'listen-port',
    '51820',
    'private-key',
    own.file,
    'peer',
    peer.pub,
    'allowed-ips',
    peer.allowed,
    'endpoint',
    peer.endpoint,
  ]);
  lab.exec(ns, 'ip', ['link', 'set', ifname, 'mtu', String(MTU), 'up']);
  return p;
}

function cpuSeconds(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(rest[11]) + Number(rest[12])) / 100; // utime, stime in clock ticks (USER_HZ 100)
}

/** Every process in the namespace's process group we started (node A's forwarder). */
interface Forwarder {
  pid: number;
  stop(): Promise<void>;
}

async function startPinhole(lab: Lab, node: 'a' | 'b', own: Keys, peer: Keys): Promise<Forwarder> {
  const n = lab[node];
  const other = lab[node === 'a' ? 'b' : 'a'];
  const cfg = join(dir, `${node}.yaml`);
  writeFileSync(
    cfg,
    [
      `uplink: { interface: ${n.uplink} }`,
      `api: { socket: ${join(dir, `${node}.sock`)} }`,
      'connections:',
      '  - name: wg0',
      `    local: { interface: ${n.workloads[0]!.iface} }`,
      `    wireguard: { privateKeyFile: ${own.file}, listenPort: 51820, peer: { publicKey: "${peer.pub}", endpoint: "${other.underlay4}:51820", allowedIPs: [${other.workloads[0]!.podAddr4}/32] } }`,
      '',
    ].join('\n'),
  );
  const p = spawn('ip', ['netns', 'exec', n.ns, process.execPath, BIN, 'run', '--config', cfg], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  p.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  p.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  for (let i = 0; !out.includes('"event":"ready"'); i++) {
    if (i > 400 || p.exitCode !== null) throw new Error(`pinhole did not start: ${err}`);
    await sleep(50);
  }
  return {
    pid: p.pid!,
    stop: async () => {
      p.kill('SIGTERM');
      await new Promise((r) => (p.exitCode !== null ? r(null) : p.once('exit', r)));
    },
  };
}

async function startWgGo(lab: Lab, node: 'a' | 'b', own: Keys, peer: Keys): Promise<Forwarder> {
  const n = lab[node];
  const other = lab[node === 'a' ? 'b' : 'a'];
  const ns = n.ns;
  const wl = n.workloads[0]!.iface;
  const tun = `phb${node.toUpperCase()}${process.pid % 10000}`;
  const p = await wgGo(lab, ns, tun, own, {
    pub: peer.pub,
    allowed: `${other.workloads[0]!.podAddr4}/32`,
    endpoint: `${other.underlay4}:51820`,
  });
  lab.exec(ns, 'ip', ['route', 'add', `${other.workloads[0]!.podAddr4}/32`, 'dev', tun]);
  lab.exec(ns, 'ip', ['route', 'add', `${n.workloads[0]!.podAddr4}/32`, 'dev', wl]);
  lab.exec(ns, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1', `net.ipv4.conf.${wl}.proxy_arp=1`]);
  return {
    pid: p.pid!,
    stop: async () => {
      p.kill('SIGTERM');
      await new Promise((r) => (p.exitCode !== null ? r(null) : p.once('exit', r)));
    },
  };
}

function podRx(lab: Lab): number {
  const pb = lab.b.workloads[0]!;
  return Number(lab.exec(pb.podNs, 'cat', [`/sys/class/net/${pb.podIface}/statistics/rx_packets`]).trim());
}

function tcp(lab: Lab): { gbps: number; retransmits: number } {
  const pb = lab.b.workloads[0]!;
  const srv = lab.spawn(pb.podNs, 'iperf3', ['-s', '-1', '-B', pb.podAddr4]);
  try {
    for (let i = 0; ; i++) {
      try {
        const j = JSON.parse(lab.exec(lab.a.workloads[0]!.podNs, 'iperf3', ['-c', pb.podAddr4, '-t', '4', '-J'])) as {
          end: { sum_received: { bits_per_second: number }; sum_sent: { retransmits: number } };
        };
        return { gbps: j.end.sum_received.bits_per_second / 1e9, retransmits: j.end.sum_sent.retransmits };
      } catch (err) {
        if (i > 20) throw err;
        lab.exec(lab.a.ns, 'sleep', ['0.1']);
      }
    }
  } finally {
    srv.kill('SIGKILL');
  }
}

/** 64-byte frames from pod A's generator; returns delivered pps and µs of forwarder CPU per packet. */
function small(lab: Lab, fwd: Forwarder): { pps: number; cpuUs: number } {
  const w = lab.a.workloads[0]!;
  const frame = buildFrame({
    eth: { src: w.podMac, dst: w.ifaceMac },
    ipv4: { src: w.podAddr4, dst: lab.b.workloads[0]!.podAddr4, ttl: 64 },
    udp: { sport: 9999, dport: 9 },
    payload: new Uint8Array(18),
  });
  const rx0 = podRx(lab);
  const cpu0 = cpuSeconds(fwd.pid);
  const r = JSON.parse(
    lab.exec(w.podNs, process.execPath, [
      '--import',
      'tsx',
      GEN,
      '--iface',
      w.podIface,
      '--frame',
      Buffer.from(frame).toString('hex'),
      '--count',
      String(FRAMES),
    ]),
  ) as { sent: number; seconds: number };
  lab.exec(lab.a.ns, 'sleep', ['0.3']); // the queues drain
  const delivered = podRx(lab) - rx0;
  const cpu = cpuSeconds(fwd.pid) - cpu0;
  return { pps: delivered / r.seconds, cpuUs: delivered > 0 ? (cpu / delivered) * 1e6 : NaN };
}

interface CaseResult {
  tcpGbps: number[];
  retransmits: number[];
  pps: number[];
  cpuUs: number[];
  pingUs: number[];
}

/** Median round-trip time pod A → pod B over 20 pings 50 ms apart (idle), in µs. */
function pingMedian(lab: Lab): number {
  const out = lab.exec(lab.a.workloads[0]!.podNs, 'ping', ['-n', '-c', '20', '-i', '0.05', '-W', '1', lab.b.workloads[0]!.podAddr4]);
  const rtts = [...out.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1]) * 1000).sort((a, b) => a - b);
  return rtts.length > 0 ? rtts[Math.floor(rtts.length / 2)]! : NaN;
}

async function runCase(name: 'wireguard-go' | 'pinhole'): Promise<CaseResult> {
  const lab = buildLab({
    prefix: `ph-wgb-${process.pid}-${name === 'pinhole' ? 'p' : 'g'}`,
    sides: { a: 'pinhole', b: 'pinhole' },
    workloadMtu: MTU,
    // Pods as they come: TX checksum offload and TSO on (pinhole splits their super-frames;
    // wireguard-go's node has the kernel segment them before its tun).
    podChecksumOffload: values['pod-offload'] !== 'off',
  });
  const ka = keys(`a-${name}`);
  const kb = keys(`b-${name}`);
  const fwds: Forwarder[] = [];
  try {
    const start = name === 'pinhole' ? startPinhole : startWgGo;
    fwds.push(await start(lab, 'b', kb, ka));
    const fwd = await start(lab, 'a', ka, kb);
    fwds.push(fwd);
    const to = lab.b.workloads[0]!.podAddr4;
    for (let i = 0; i < 20; i++) {
      try {
        lab.exec(lab.a.workloads[0]!.podNs, 'ping', ['-c', '1', '-W', '1', to]);
        break;
      } catch {
        if (i === 19) throw new Error(`${name}: no ping through the tunnel`);
      }
    }
    const out: CaseResult = { tcpGbps: [], retransmits: [], pps: [], cpuUs: [], pingUs: [] };
    for (let r = 0; r < REPEAT; r++) {
      out.pingUs.push(pingMedian(lab));
      const t = tcp(lab);
      out.tcpGbps.push(t.gbps);
      out.retransmits.push(t.retransmits);
      const s = small(lab, fwd);
      out.pps.push(s.pps);
      out.cpuUs.push(s.cpuUs);
      process.stderr.write(
        `${name} run ${r + 1}/${REPEAT}: ping p50 ${out.pingUs[r]!.toFixed(0)} µs, TCP ${t.gbps.toFixed(2)} Gbit/s, 64 B ${(s.pps / 1e3).toFixed(0)} kpps, ${s.cpuUs.toFixed(2)} µs/pkt\n`,
      );
    }
    return out;
  } finally {
    for (const f of fwds) await f.stop().catch(() => undefined);
    lab.close();
  }
}

const results: Record<string, CaseResult> = {};
for (const name of ['wireguard-go', 'pinhole'] as const) results[name] = await runCase(name);

const rows = (pick: (r: CaseResult) => number[], scale = 1): { name: string; summary: Summary }[] =>
  Object.entries(results).map(([name, r]) => ({ name, summary: summarise(pick(r).map((x) => x * scale)) }));
printTable(
  'iperf3 TCP pod A → pod B (4 s)',
  'Gbit/s',
  rows((r) => r.tcpGbps),
);
printTable(
  '64-byte UDP frames delivered',
  'kpps',
  rows((r) => r.pps, 1e-3),
);
printTable(
  'ping pod A → pod B, idle (median of 20)',
  'µs',
  rows((r) => r.pingUs),
);
printTable(
  'node A forwarder CPU per 64-byte packet (process time, softirq excluded)',
  'µs',
  rows((r) => r.cpuUs),
);
const med = (xs: number[]): number => summarise(xs).median;
const ratio = (f: (r: CaseResult) => number[]): number => med(f(results.pinhole!)) / med(f(results['wireguard-go']!));
console.log(
  `\npinhole / wireguard-go (medians): TCP ${ratio((r) => r.tcpGbps).toFixed(2)}×, 64 B ${ratio((r) => r.pps).toFixed(2)}×, CPU per packet ${ratio((r) => r.cpuUs).toFixed(2)}×`,
);
mkdirSync(join(REPO, 'bench', 'results'), { recursive: true });
writeFileSync(
  join(REPO, 'bench', 'results', 'wireguard.json'),
  JSON.stringify(
    {
      date: new Date().toISOString(),
      cpus: cpus().length,
      cpu: cpus()[0]?.model,
      repeat: REPEAT,
      frames: FRAMES,
      podOffload: values['pod-offload'],
      results,
    },
    null,
    2,
  ),
);
