/**
 * VXLAN workload-to-workload and host-cost scenarios on the two-node lab (lab/topology.ts):
 *
 *   [pA0] eth0 ──veth── wl0 [node a] up0 ══veth══ up0 [node b] wl0 ──veth── eth0 [pB0]
 *
 * Node b is always the kernel's vxlan (vx0 + br0), the reference peer. Node a is, per mode:
 *   kernel    vx0 + br0 too: the kernel on both ends;
 *   afxdp     `pinhole run`, uplink and workload interfaces AF_XDP (`local.mode: afxdp`), the
 *             pods' TX checksum offload off, as AF_XDP workload interfaces need;
 *   auto      `pinhole run` as configured by default: uplink AF_XDP, the workload interface
 *             AF_PACKET with GSO and checksum offload;
 *   afpacket  `pinhole run`, everything AF_PACKET.
 * Except in afxdp mode, pods keep their TX checksum offload and TSO on (as pods come).
 *
 * Node b is another machine in this picture, and a veth runs the receiving side's path on the
 * CPU that transmitted (drivers/net/veth.c): without help, node b's whole receive path (vxlan
 * decap, bridge, pod b's TCP and the ACKs it sends back) would run inside pinhole's sendto on
 * pinhole's CPU, charging another machine's work to the forwarder under test, while in kernel
 * mode it runs on the sender's CPU. So node b's uplink steers its receive processing (RPS) to
 * the CPU the forwarder is not pinned to, in every mode — as node b's own CPUs would do it.
 * Measured (iperf3 TCP, auto mode, one run each): 2.0 Gbit/s with node b's path on pinhole's
 * CPU, 3.6 with it steered; the kernel mode 9.2 and 8.8 (noise).
 *
 * Placement with pinhole: its dataplane worker alone on the forwarder's CPU (`uplink.cpus`), its
 * main thread and the runtime's threads, the pods' iperf3 and ping and the generator on the
 * other one — the worker's CPU is a dedicated dataplane core, as a deployment that cares about
 * latency gives it (Kubernetes: exclusive CPUs for the forwarder's pod). Whatever else ran there
 * took the CPU from the worker mid-breath for a scheduler tick (4 ms here) at a time, and every
 * frame waited (measured with perf sched: the compiler and GC threads, the main thread, iperf3).
 * With the kernel's vxlan the pods run anywhere: the kernel forwards in their context.
 * One uplink and one workload queue, so one worker (one per queue) for that one CPU, as NIC
 * queues are matched to dataplane cores: two workers sharing the CPU made a woken worker wait
 * for the other's time slice (three runs each, ping under TCP with the first second left out:
 * p99 1.4–1.7 ms with two queues against 0.9–1.0 ms with one; TCP 4.4–4.8 against 5.2–5.4
 * Gbit/s). A fresh lab per run and mode (~0.2 s to build); uplink MTU 1570 so the pods have a
 * standard 1500 MTU and 1500-byte frames fit through the tunnel.
 *
 * vxlan-jumbo: iperf3 TCP both ways (with ping) at an uplink MTU of 9000, kernel against pinhole
 *   as configured by default (auto, which is AF_PACKET at that MTU).
 * vxlan (pod a → pod b):
 *   - 64-byte frames steady and bursty (Mpps) and 1500-byte frames (Gbit/s) from the kernel's
 *     live-frame generator on pod a's eth0 (iperf3's own sender tops out near 60 kpps here),
 *     counted as they arrive on pod b's eth0; pinhole's CPU per packet (less its workers'
 *     polling, uplink.spinUs: measure.ts) and memory over the 64-byte steady run;
 *   - iperf3 TCP (Gbit/s, retransmits) with ping running alongside (latency under load), both
 *     counted after a warm-up second (tcpUnderPing); the same with pod a downloading from pod b
 *     (iperf3 -R: the replies to pod a's pings share node a's uplink receive ring with it);
 *   - iperf3 UDP, 1400-byte datagrams offered at 20 Gbit/s (far above what one iperf3 sender
 *     can produce, so the offered rate is iperf3's limit): delivered Gbit/s and loss, and the
 *     datagrams pod b's socket had no room for (its RcvbufErrors, % of those sent: lost at the
 *     receiver, whose iperf3 shares a CPU with node b's receive path and pod a's sender);
 *   - idle round-trip latency (ping, p50/p99/max).
 * host (node b → node a over the underlay, outside the tunnel: what pinhole costs the host's own
 * traffic): iperf3 TCP and latency idle and under that load, with node a on the kernel (nothing
 * attached), on pinhole AF_XDP (the pinhole XDP program on up0), on pinhole AF_PACKET (a socket
 * filter), and as `ceiling` a bare XDP_PASS program on node a's up0 — what attaching any XDP
 * program costs on veth (the peer loses TSO, drivers/net/veth.c), separated from what pinhole's
 * program adds.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildFrame } from '../../packet/build.ts';
import { apiRequest } from '../../api/client.ts';
import { PinholeError } from '../../sys/index.ts';
import { buildLab, type Lab } from '../lab/topology.ts';
import { iperf, startIperfServer, type IperfResult, type IperfServer } from '../lab/traffic.ts';
import { ForwarderProcess, PINHOLE_BIN } from './forwarder.ts';
import { measureLatency, startLatency, type LatencySample } from './latency.ts';
import { addCpuBusy, checkAborted, measureRate, recordFailure, sleep, type ScenarioContext } from './measure.ts';
import { linkCounter, steerReceive, udpCounter } from './netns.ts';
import { formatNumber, type BenchMode, type Better, type MetricKey } from './report.ts';
import { GeneratorProcess, type TrafficShape } from './trafficgen.ts';
import { attachIn, loadPass } from './xdp.ts';

const VXLAN_MODES = ['kernel', 'afxdp', 'auto', 'afpacket'] as const;
type VxlanMode = (typeof VXLAN_MODES)[number];
export const VXLAN_SCENARIO = 'vxlan';
export const HOST_SCENARIO = 'host';
export const VXLAN_JUMBO_SCENARIO = 'vxlan-jumbo';
/** The vxlan-jumbo scenario's uplink MTU (clouds: AWS 9001, GCP 8896). */
const JUMBO_MTU = 9000;
const UDP_LEN = 1400;
const POD_PORT = 5201;
const HOST_PORT = 5202;

export const VXLAN_NOTES = [
  'vxlan: pod A → node A ⇒ node B → pod B (veth); node B is always the kernel’s vxlan, its receive path steered (RPS) to the CPU the forwarder is not pinned to, as another machine’s CPU would run it (veth would otherwise run it inside the forwarder’s transmit on the forwarder’s CPU); node A is the kernel’s vxlan (kernel) or `pinhole run`: afxdp = AF_XDP uplink and workload interface (`local.mode: afxdp`, the pods’ TX checksum offload off, as it needs), auto = the default configuration (AF_XDP uplink, GSO-aware AF_PACKET workload interface), afpacket = AF_PACKET everywhere; in every pinhole mode the worker polls 500 µs after traffic before it sleeps (uplink.spinUs: the default when uplink.cpus gives the worker a CPU of its own), and its CPU per packet leaves that polling out. Except in afxdp, pods keep TSO and checksum offload on; node B’s uplink has TX checksum offload off, as a wire would. Frames from the live-frame generator in pod A, counted on pod B’s eth0; iperf3 UDP offers 20 Gbit/s (its sender is the limit); latency = ping RTT from pod A: under TCP = during the TCP test after its first second (iperf3 -O 1: TCP counts from then on too), under TCP download = the same while pod A downloads from pod B (iperf3 -R).',
  'vxlan-jumbo: the vxlan topology at an uplink MTU of 9000 (pods 8930, TSO and checksum offload on), iperf3 TCP both ways with ping alongside; node A is the kernel’s vxlan or `pinhole run` as configured by default (auto), which chooses AF_PACKET there: a 9 KB frame does not fit a 4 KiB AF_XDP UMEM frame (MTU_TOO_LARGE_FOR_AF_XDP).',
  'host: TCP and ping from node B to node A’s own address, outside the tunnel, while node A runs nothing (kernel), pinhole (afxdp: the pinhole XDP program on the uplink; afpacket: a socket filter), or only a bare XDP_PASS program (ceiling: the cost of having any XDP program on a veth, whose peer then loses TSO). Node B’s uplink sends without TSO in every mode (its TX checksum offload is off).',
];

interface VxlanCase {
  size: 64 | 1500;
  shape: TrafficShape;
  metric: string;
  unit: 'Mpps' | 'Gbit/s';
}
const CASES: VxlanCase[] = [
  { size: 64, shape: 'steady', metric: '64 B steady', unit: 'Mpps' },
  { size: 64, shape: 'bursty', metric: '64 B bursty', unit: 'Mpps' },
  { size: 1500, shape: 'steady', metric: '1500 B steady', unit: 'Gbit/s' },
];

/**
 * The two-node lab of a run: node a the kernel's vxlan or pinhole, node b the kernel's; one queue
 * each — one dataplane worker for the one CPU it has (see the file comment).
 */
function benchLab(ctx: ScenarioContext, tag: string, mode: VxlanMode, uplinkMtu: number, podChecksumOffload: boolean): Lab {
  return buildLab({
    prefix: `${ctx.prefix}-${tag}${mode.slice(0, 3)}`,
    underlay: 4,
    sides: { a: mode === 'kernel' ? 'kernel' : 'pinhole', b: 'kernel' },
    uplinkQueues: 1,
    workloadQueues: 1,
    uplinkMtu,
    podChecksumOffload,
  });
}

/** The MetricKey maker of one scenario and mode. */
function keyOf(scenario: string, mode: BenchMode): (metric: string, unit: string, better?: Better) => MetricKey {
  return (metric, unit, better = 'higher') => ({ scenario, mode, metric, unit, better });
}

/** Pings until the overlay answers (ARP, the kernel peer's FDB learning, pinhole's next hop). */
async function waitReachable(ns: string, to: string): Promise<void> {
  let last: unknown;
  for (let i = 0; i < 40; i++) {
    try {
      await measureLatency(ns, to, 1, 0.2);
      return;
    } catch (err) {
      last = err;
      await sleep(100);
    }
  }
  throw new PinholeError('ERR_BENCH_LAB', `${ns} cannot reach ${to}`, { cause: last });
}

/** `pinhole run`'s API socket in the bench's directory: a daemon already running on the default one must not stop the bench. */
const apiSocketOf = (ctx: ScenarioContext, lab: Lab): string => join(ctx.tmp, `${lab.plan.prefix}.sock`);

/** Seconds pinhole's workers have spent polling with nothing to do (engine spin_ms, from its API). */
async function spinSeconds(socket: string): Promise<number> {
  const r = await apiRequest<{ uplink?: { perQueue?: { counters: Record<string, number> }[] } | null }>(socket, 'GET', '/v1/status');
  return (r.body.uplink?.perQueue ?? []).reduce((s, q) => s + (q.counters['engine.spin_ms'] ?? 0), 0) / 1000;
}

/**
 * The config of node a's `pinhole run`: `auto` is the default configuration with the uplink
 * forced to AF_XDP (the vxlan scenario measures that), unless `uplinkMode` says otherwise.
 */
function writeConfig(
  ctx: ScenarioContext,
  lab: Lab,
  mode: Exclude<VxlanMode, 'kernel'>,
  uplinkMode: string = mode === 'auto' ? 'afxdp' : mode,
): string {
  const wl = lab.a.workloads[0]!;
  const local = mode === 'afxdp' ? `{ interface: ${wl.iface}, mode: afxdp }` : `{ interface: ${wl.iface} }`;
  mkdirSync(ctx.tmp, { recursive: true, mode: 0o700 });
  const file = join(ctx.tmp, `${lab.plan.prefix}.yaml`);
  writeFileSync(
    file,
    [
      `uplink: { interface: ${lab.a.uplink}, mode: ${uplinkMode}${ctx.fwdCpu === undefined ? '' : `, cpus: [${ctx.fwdCpu}]`} }`,
      `api: { socket: ${apiSocketOf(ctx, lab)} }`,
      'connections:',
      `  - { name: pod-a, local: ${local}, vxlan: { vni: ${wl.vni}, remote: "${lab.b.tunnelAddr}" } }`,
      '',
    ].join('\n'),
  );
  return file;
}

function addLatency(ctx: ScenarioContext, key: (m: string, u: string, b?: Better) => MetricKey, when: string, s: LatencySample): void {
  ctx.samples.add(key(`latency p50 ${when}`, 'µs', 'lower'), s.p50 * 1000);
  ctx.samples.add(key(`latency p99 ${when}`, 'µs', 'lower'), s.p99 * 1000);
  ctx.samples.add(key(`latency max ${when}`, 'µs', 'lower'), s.max * 1000);
}

/**
 * iperf3 TCP from `ns` to `server` (`reverse`: from `server` to `ns`, a download) with ping from
 * `ns` alongside: the TCP result, and ping's sample as the latency `when`. Both leave out the
 * first profile.warmupSeconds (iperf3 -O; ping replies from before then are not counted). `cpu`:
 * where the client and ping run (undefined: anywhere).
 */
async function tcpUnderPing(
  ctx: ScenarioContext,
  key: (metric: string, unit: string, better?: Better) => MetricKey,
  ns: string,
  server: string,
  port: number,
  cpu: number | undefined,
  o: { reverse?: boolean; when?: string } = {},
): Promise<IperfResult> {
  const { profile } = ctx;
  const ping = startLatency(ns, server, profile.pingIntervalS, { omitS: profile.warmupSeconds, ...(cpu === undefined ? {} : { cpu }) });
  const stopPing = ctx.cleanup.add(() => ping.kill());
  try {
    return await iperf(ns, {
      server,
      port,
      seconds: profile.iperfSeconds,
      omit: profile.warmupSeconds,
      ...(cpu === undefined ? {} : { cpu }),
      ...(o.reverse ? { reverse: true } : {}),
    });
  } finally {
    const loaded = await ping.stop().catch(() => undefined);
    stopPing();
    if (loaded && loaded.received > 0) addLatency(ctx, key, o.when ?? 'under TCP', loaded);
  }
}

/** Host TCP node b → node a with ping alongside, then idle ping: the `host` figures of `mode`. */
async function hostFigures(ctx: ScenarioContext, lab: Lab, mode: BenchMode, run: number): Promise<void> {
  const key = keyOf(HOST_SCENARIO, mode);
  const { profile } = ctx;
  const idle = await measureLatency(lab.b.ns, lab.a.underlay4, profile.pingCount, profile.pingIntervalS);
  addLatency(ctx, key, 'idle', idle);
  const tcp = await tcpUnderPing(ctx, key, lab.b.ns, lab.a.underlay4, HOST_PORT, undefined);
  const gbps = (tcp.receivedBps ?? tcp.sentBps) / 1e9;
  ctx.samples.add(key('TCP', 'Gbit/s'), gbps);
  ctx.samples.add(key('TCP retransmits', 'segments', 'lower'), tcp.retransmits ?? 0);
  ctx.progress.step(
    `host ${mode} run ${run}/${profile.runs}: TCP ${formatNumber(gbps)} Gbit/s, ping p99 idle ${formatNumber(idle.p99 * 1000)} µs`,
  );
}

async function runOne(ctx: ScenarioContext, mode: VxlanMode, run: number): Promise<void> {
  const { profile, samples, progress } = ctx;
  const key = keyOf(VXLAN_SCENARIO, mode);
  const lab = benchLab(ctx, `vx${run}`, mode, 1570, mode !== 'afxdp');
  const closeLab = ctx.cleanup.add(() => lab.close());
  const servers: IperfServer[] = [];
  const stopServers = ctx.cleanup.add(() => {
    for (const s of servers) s.stop();
  });
  let proc: ForwarderProcess | undefined;
  let stopProc: (() => void) | undefined;
  let stopGen: (() => void) | undefined;
  try {
    const wa = lab.a.workloads[0]!;
    const wb = lab.b.workloads[0]!;
    // The pods' own processes (iperf3, ping): with pinhole, on the generator's CPU, so that the
    // worker's CPU is its own, as a dedicated dataplane core is; with the kernel's vxlan, anywhere
    // (the kernel forwards in their context: there is no forwarder CPU to keep free).
    const podCpu = mode === 'kernel' ? undefined : ctx.genCpu;
    // Node b stands for another machine: its receive path runs on the CPU the forwarder is not
    // pinned to, in every mode (see the file comment).
    if (ctx.genCpu !== undefined) steerReceive(lab.b.ns, lab.b.uplink, ctx.genCpu);
    if (mode !== 'kernel') {
      const uplinkDriver = mode === 'auto' ? 'afxdp' : mode;
      ({ proc, stop: stopProc } = await startPinholeRun(ctx, lab, mode, uplinkDriver, mode === 'auto' ? 'afpacket' : mode));
    }
    await waitReachable(wa.podNs, wb.podAddr4);
    servers.push(
      await startIperfServer(wb.podNs, {
        port: POD_PORT,
        bind: wb.podAddr4,
        timeoutMs: 5000,
        ...(podCpu === undefined ? {} : { cpu: podCpu }),
      }),
    );
    servers.push(await startIperfServer(lab.a.ns, { port: HOST_PORT, bind: lab.a.underlay4, timeoutMs: 5000 }));
    const g = GeneratorProcess.start(wa.podNs, ctx.genCpu, ctx.nice);
    stopGen = ctx.cleanup.add(() => g.close());

    // Small and large frames from the generator.
    const frameOf = (size: number): Uint8Array =>
      buildFrame({
        eth: { dst: wb.podMac, src: wa.podMac },
        ipv4: { src: wa.podAddr4, dst: wb.podAddr4 },
        udp: { sport: 40000, dport: 9 },
        payload: new Uint8Array(size - 14 - 20 - 8),
      });
    const delivered = (): number => linkCounter(wb.podNs, wb.podIface, 'rx_packets');
    // Warm-up (not measured): JIT, rings, the kernel peer's FDB.
    await g.send({ iface: wa.podIface, frame: frameOf(64), seconds: 0.2, shape: 'steady' });
    for (const c of CASES) {
      checkAborted(ctx.signal);
      const s = await measureRate(
        g,
        { iface: wa.podIface, frame: frameOf(c.size), seconds: profile.sendSeconds, shape: c.shape },
        delivered,
        { proc, spinSeconds: proc ? () => spinSeconds(apiSocketOf(ctx, lab)) : undefined, cpus: { gen: ctx.genCpu, fwd: ctx.fwdCpu } },
      );
      const value = c.unit === 'Mpps' ? s.pps / 1e6 : (s.pps * c.size * 8) / 1e9;
      samples.add(key(c.metric, c.unit), value);
      let extra = '';
      if (c.size === 64 && c.shape === 'steady' && s.cpuNsPerPacket !== undefined) {
        samples.add(key('CPU per packet, 64 B steady', 'ns', 'lower'), s.cpuNsPerPacket);
        samples.add(key('resident memory', 'MiB', 'lower'), s.rssMiB ?? 0);
        extra = `, ${formatNumber(s.cpuNsPerPacket)} ns CPU/packet, ${formatNumber(s.rssMiB ?? 0)} MiB`;
      }
      if (c.size === 64 && c.shape === 'steady') extra += addCpuBusy(samples, key, s);
      progress.step(`vxlan ${mode} ${c.metric} run ${run}/${profile.runs}: ${formatNumber(value)} ${c.unit}${extra}`);
    }

    // Latency idle, TCP with latency under load, UDP.
    const idle = await measureLatency(wa.podNs, wb.podAddr4, profile.pingCount, profile.pingIntervalS, podCpu);
    addLatency(ctx, key, 'idle', idle);
    const tcp = await tcpUnderPing(ctx, key, wa.podNs, wb.podAddr4, POD_PORT, podCpu);
    const tcpGbps = (tcp.receivedBps ?? tcp.sentBps) / 1e9;
    samples.add(key('TCP', 'Gbit/s'), tcpGbps);
    samples.add(key('TCP retransmits', 'segments', 'lower'), tcp.retransmits ?? 0);
    // The other direction: pod a downloads from pod b, pinging it meanwhile (the replies share
    // node a's uplink receive ring with the download).
    const down = await tcpUnderPing(ctx, key, wa.podNs, wb.podAddr4, POD_PORT, podCpu, { reverse: true, when: 'under TCP download' });
    samples.add(key('TCP download', 'Gbit/s'), (down.receivedBps ?? down.sentBps) / 1e9);
    samples.add(key('TCP download retransmits', 'segments', 'lower'), down.retransmits ?? 0);
    // Datagrams pod b's socket had no room for (its iperf3 shares the pods' CPU with node b's
    // receive path and pod a's sender): lost at the receiver, not on the way.
    const rcvbuf0 = udpCounter(wb.podNs, 'RcvbufErrors');
    const udp = await iperf(wa.podNs, {
      server: wb.podAddr4,
      port: POD_PORT,
      seconds: profile.iperfSeconds,
      udp: true,
      bitrate: '20G',
      length: UDP_LEN,
      ...(podCpu === undefined ? {} : { cpu: podCpu }),
    });
    const packets = udp.packets ?? 0;
    const lost = udp.lostPackets ?? 0;
    const udpGbps = udp.seconds > 0 ? ((packets - lost) * UDP_LEN * 8) / udp.seconds / 1e9 : 0;
    samples.add(key(`UDP ${UDP_LEN} B delivered`, 'Gbit/s'), udpGbps);
    samples.add(key(`UDP ${UDP_LEN} B loss`, '%', 'lower'), packets > 0 ? (100 * lost) / packets : 0);
    // Not capped at iperf3's loss: the counter also sees drops iperf3 cannot (the last datagrams,
    // with no later sequence number) and any other UDP socket in pod b, so a figure above the
    // loss says the two count differently rather than hiding it.
    const atSocket = udpCounter(wb.podNs, 'RcvbufErrors') - rcvbuf0;
    samples.add(key(`UDP ${UDP_LEN} B dropped at pod B's socket`, '%', 'lower'), packets > 0 ? (100 * atSocket) / packets : 0);
    progress.step(
      `vxlan ${mode} run ${run}/${profile.runs}: TCP ${formatNumber(tcpGbps)} Gbit/s, UDP ${formatNumber(udpGbps)} Gbit/s, ping p99 idle ${formatNumber(idle.p99 * 1000)} µs`,
    );

    // The host's own traffic, with node a as it is in this mode (auto: the same uplink as afxdp)...
    if (mode !== 'auto') await hostFigures(ctx, lab, mode, run);
    // ... and, on the kernel node, with only a bare XDP_PASS attached (the ceiling).
    if (mode === 'kernel') {
      const pass = loadPass();
      const closePass = ctx.cleanup.add(() => pass.close());
      try {
        const att = attachIn(lab.a.ns, lab.a.uplink, pass.fd);
        const detach = ctx.cleanup.add(() => att.close());
        try {
          await hostFigures(ctx, lab, 'ceiling', run);
        } finally {
          detach();
        }
      } finally {
        closePass();
      }
    }
    if (proc) await proc.stop();
  } finally {
    stopGen?.();
    stopServers();
    stopProc?.();
    closeLab();
  }
}

/**
 * `pinhole run` on node a in `mode` (see the file comment for its placement), checked to have
 * the drivers expected: the process and its cleanup.
 */
async function startPinholeRun(
  ctx: ScenarioContext,
  lab: Lab,
  mode: Exclude<VxlanMode, 'kernel'>,
  uplinkDriver: string,
  workloadDriver: string,
  uplinkMode?: string,
): Promise<{ proc: ForwarderProcess; stop: () => void }> {
  const p = ForwarderProcess.start({
    label: `pinhole run ${mode}`,
    ns: lab.a.ns,
    // The worker runs on fwdCpu (uplink.cpus); the main thread and the runtime's own threads
    // with the pods, off the worker's CPU (see the file comment).
    cpu: ctx.fwdCpu === undefined ? undefined : ctx.genCpu,
    nice: ctx.nice,
    argv: [process.execPath, PINHOLE_BIN, 'run', '--config', writeConfig(ctx, lab, mode, uplinkMode)],
  });
  const stop = ctx.cleanup.add(() => p.kill());
  const ready = (await p.ready) as { mode?: string; workloads?: { driver: string }[] };
  if (ready.mode !== uplinkDriver || (ready.workloads ?? []).some((w) => w.driver !== workloadDriver)) {
    stop();
    throw new PinholeError('ERR_BENCH_FORWARDER', `pinhole run: asked for ${mode}, got ${JSON.stringify(ready)}`);
  }
  return { proc: p, stop };
}

/**
 * vxlan-jumbo: iperf3 TCP both ways with ping alongside at an uplink MTU of 9000 (pods 8930, TSO
 * on), node a the kernel's vxlan or pinhole as configured by default — which chooses AF_PACKET
 * there (a 9 KB frame does not fit a 4 KiB UMEM frame).
 */
async function runJumbo(ctx: ScenarioContext, mode: 'kernel' | 'auto', run: number): Promise<void> {
  const key = keyOf(VXLAN_JUMBO_SCENARIO, mode);
  const lab = benchLab(ctx, `vj${run}`, mode, JUMBO_MTU, true);
  const closeLab = ctx.cleanup.add(() => lab.close());
  let server: IperfServer | undefined;
  let stopProc: (() => void) | undefined;
  try {
    const wa = lab.a.workloads[0]!;
    const wb = lab.b.workloads[0]!;
    const podCpu = mode === 'kernel' ? undefined : ctx.genCpu;
    if (ctx.genCpu !== undefined) steerReceive(lab.b.ns, lab.b.uplink, ctx.genCpu);
    const proc = mode === 'kernel' ? undefined : await startPinholeRun(ctx, lab, mode, 'afpacket', 'afpacket', 'auto');
    stopProc = proc?.stop;
    await waitReachable(wa.podNs, wb.podAddr4);
    server = await startIperfServer(wb.podNs, {
      port: POD_PORT,
      bind: wb.podAddr4,
      timeoutMs: 5000,
      ...(podCpu === undefined ? {} : { cpu: podCpu }),
    });
    const up = await tcpUnderPing(ctx, key, wa.podNs, wb.podAddr4, POD_PORT, podCpu);
    const down = await tcpUnderPing(ctx, key, wa.podNs, wb.podAddr4, POD_PORT, podCpu, { reverse: true, when: 'under TCP download' });
    const upGbps = (up.receivedBps ?? up.sentBps) / 1e9;
    const downGbps = (down.receivedBps ?? down.sentBps) / 1e9;
    ctx.samples.add(key('TCP', 'Gbit/s'), upGbps);
    ctx.samples.add(key('TCP retransmits', 'segments', 'lower'), up.retransmits ?? 0);
    ctx.samples.add(key('TCP download', 'Gbit/s'), downGbps);
    ctx.samples.add(key('TCP download retransmits', 'segments', 'lower'), down.retransmits ?? 0);
    ctx.progress.step(
      `vxlan-jumbo ${mode} run ${run}/${ctx.profile.runs}: TCP ${formatNumber(upGbps)} Gbit/s, download ${formatNumber(downGbps)} Gbit/s`,
    );
    if (proc) await proc.proc.stop();
  } finally {
    server?.stop();
    stopProc?.();
    closeLab();
  }
}

/** Runs the vxlan, host and vxlan-jumbo scenarios for every mode, `ctx.profile.runs` times. */
export async function runVxlanScenarios(ctx: ScenarioContext): Promise<void> {
  for (let r = 1; r <= ctx.profile.runs; r++) {
    for (const mode of VXLAN_MODES) {
      checkAborted(ctx.signal);
      try {
        await runOne(ctx, mode, r);
      } catch (err) {
        recordFailure(ctx, `vxlan ${mode} run ${r}`, err);
      }
    }
    for (const mode of ['kernel', 'auto'] as const) {
      checkAborted(ctx.signal);
      try {
        await runJumbo(ctx, mode, r);
      } catch (err) {
        recordFailure(ctx, `vxlan-jumbo ${mode} run ${r}`, err);
      }
    }
  }
}
