/**
 * `pinhole demo`: the lab (commands.ts), pinhole on both nodes as real daemons started from the
 * config files `lab up` writes, real traffic, one table of what happened, and everything removed.
 *
 * Steps (one progress line each, with the time since start and the step's duration):
 *   0. (before anything, no line) the programs it runs are installed: ip, ping, iperf3
 *      (ERR_LAB_TOOLS_MISSING naming them and their Debian packages, tools.ts);
 *   1. clean up what an earlier run left (`lab down`; refused while a demo or pinhole runs in it);
 *   2. build the lab and write node-a.yaml / node-b.yaml;
 *   3. start `pinhole run --config` on both nodes, wait for their `ready` lines;
 *   4. check the tunnel: pod A reaches pod B over IPv4 and IPv6 (ARP and ND cross the tunnel);
 *   5. traffic, while the nodes' own traffic flows outside the tunnel the whole time (ping over
 *      the underlay IPv4 and IPv6, a TCP stream paced at HOST_TCP_RATE between the nodes):
 *      ping pod A → pod B over IPv4 and IPv6 (in parallel), then iperf3 TCP, then iperf3 UDP;
 *   6. read each node's per-connection counters (node-daemon.ts `readCounters`);
 *   7. stop both daemons (SIGTERM; their `stopped` lines confirm a clean stop) and remove the lab —
 *      or, with `keep`, leave both running and print the commands to look around.
 * Then the table. On failure or interrupt (the AbortSignal: SIGINT/SIGTERM in the command), every
 * tool is killed, the daemons are stopped and the lab removed before the error propagates.
 *
 * All numbers in the table come from this run.
 */
import { rmSync, writeFileSync } from 'node:fs';
import { table } from '../io.ts';
import { PinholeError } from '../../sys/errors.ts';
import {
  DEMO_PID_FILE,
  LAB_CONNECTION,
  LAB_VNI,
  labBusy,
  labDown,
  labUp,
  nodeFiles,
  pinholeCommand,
  type LabDownResult,
} from './commands.ts';
import { NodeDaemon, readCounters, type NodeCounters, type ReadyEvent } from './node-daemon.ts';
import {
  iperf,
  killAllTools,
  ping,
  startIperf,
  startIperfServer,
  startPing,
  type IperfResult,
  type IperfServer,
  type PingResult,
} from './traffic.ts';
import type { LabPlan } from './topology.ts';
import { DEMO_TOOLS, requireTools } from './tools.ts';

export const PING_COUNT = 20;
export const PING_INTERVAL_S = 0.05;
export const TCP_SECONDS = 2;
export const UDP_SECONDS = 2;
export const UDP_LENGTH = 1400;
export const UDP_RATE = '500M';
export const HOST_TCP_RATE = '200M';
const IPERF_PORT = 5201;
const READY_TIMEOUT_MS = 30_000;
const STATS_INTERVAL_MS = 500;

export interface DemoOptions {
  /** Leave the lab and the daemons running. */
  keep?: boolean;
  /** One progress line per step. */
  progress: (line: string) => void;
  /** Abort (Ctrl-C): tear down and reject with ERR_DEMO_INTERRUPTED. */
  signal?: AbortSignal;
}

export interface DemoNode {
  node: 'a' | 'b';
  ns: string;
  pid: number;
  config: string;
  socket: string;
  ready: ReadyEvent;
  counters: NodeCounters;
  /** The final `stopped` line (absent with keep). */
  stopped?: Record<string, unknown>;
}

export interface DemoResults {
  plan: LabPlan;
  nodes: DemoNode[];
  pods: { ping4: PingResult; ping6: PingResult; tcp: IperfResult; udp: IperfResult };
  host: { ping4: PingResult; ping6: PingResult; tcp: IperfResult };
  kept: boolean;
  elapsedMs: number;
}

const secs = (ms: number): string => `${(ms / 1000).toFixed(1)}s`;
const gbps = (bps: number | undefined): string => (bps === undefined ? '-' : `${(bps / 1e9).toFixed(2)} Gbit/s`);

function pingSummary(p: PingResult): string {
  return `${p.received}/${p.sent}`;
}

/** Runs the demo (see the file comment). */
export async function runDemo(o: DemoOptions): Promise<DemoResults> {
  const t0 = Date.now();
  const signal = o.signal;
  const withSignal = signal ? { signal } : {};
  const step = async <T>(what: string, fn: () => Promise<T>, detail: (v: T) => string): Promise<T> => {
    if (signal?.aborted) throw interrupted();
    const s = Date.now();
    const v = await fn();
    o.progress(`[${secs(Date.now() - t0).padStart(5)}] ${what}: ${detail(v)} (${secs(Date.now() - s)})`);
    return v;
  };

  const daemons: NodeDaemon[] = [];
  const servers: IperfServer[] = [];
  const streams: { kill(): void }[] = [];
  // Before anything is touched: the programs the demo runs (a fresh machine may lack iperf3),
  // and a lab in use (a kept demo, a pinhole started by hand) is not ours to remove.
  requireTools('the demo', DEMO_TOOLS);
  const busy = labBusy(process.pid);
  if (busy) throw new PinholeError('ERR_LAB_BUSY', `the lab is in use: ${busy}; run \`pinhole lab down\` first`);
  o.progress(
    `pinhole demo: two nodes with a pod each, joined by pinhole over VXLAN; ping and iperf3 between the pods while the nodes' own traffic flows`,
  );
  try {
    await step('clean up', () => labDown({ exceptPid: process.pid }), describeDown);
    const up = await step(
      'build the lab',
      () => labUp({ exceptPid: process.pid }),
      (u) =>
        `${u.plan.namespaces.length} namespaces (${u.plan.namespaces.join(', ')}), config files ${u.nodes.map((n) => n.config).join(', ')}`,
    );
    writeFileSync(DEMO_PID_FILE, `${process.pid}\n`);
    const plan = up.plan;

    // Stats lines back up the API for the counters; a kept daemon has only the API (its stdout
    // file would grow for as long as it runs).
    const statsMs = o.keep ? 0 : STATS_INTERVAL_MS;
    const readies = await step(
      'start pinhole',
      async () => {
        for (const n of ['a', 'b'] as const) {
          const f = nodeFiles(n);
          daemons.push(
            NodeDaemon.start({ label: `node ${n}`, ns: f.ns, config: f.config, outFile: f.out, logFile: f.log, socket: f.socket, statsMs }),
          );
        }
        return (await Promise.all(daemons.map((d) => d.waitFor('ready', { timeoutMs: READY_TIMEOUT_MS, ...withSignal })))) as ReadyEvent[];
      },
      (r) => r.map((x, i) => `node ${i === 0 ? 'a' : 'b'} ${x.mode} (pid ${daemons[i]!.pid})`).join(', '),
    );

    const podA = plan.a.workloads[0]!;
    const podB = plan.b.workloads[0]!;
    await step(
      'tunnel check',
      async () => {
        for (const dst of [podB.podAddr4, podB.podAddr6]) {
          let r: PingResult | undefined;
          for (let i = 0; i < 5 && !(r && r.received > 0); i++) r = await ping(podA.podNs, dst, { count: 1, waitS: 1, ...withSignal });
          if (!r || r.received === 0) {
            throw new PinholeError('ERR_DEMO_TUNNEL', `pod A (${podA.podNs}) cannot reach pod B at ${dst} through the tunnel`);
          }
        }
      },
      () => `pod A ${podA.podAddr4} reaches pod B ${podB.podAddr4} and ${podB.podAddr6}`,
    );

    // The nodes' own traffic, outside the tunnel, for the whole measurement.
    const hostServer = await startIperfServer(plan.b.ns, { port: IPERF_PORT, bind: plan.b.underlay4, timeoutMs: 5000, ...withSignal });
    servers.push(hostServer);
    const podServer = await startIperfServer(podB.podNs, { port: IPERF_PORT, timeoutMs: 5000, ...withSignal });
    servers.push(podServer);
    const hostPing4 = startPing(plan.a.ns, plan.b.underlay4, { intervalS: PING_INTERVAL_S });
    const hostPing6 = startPing(plan.a.ns, plan.b.underlay6, { intervalS: PING_INTERVAL_S });
    const hostTcp = startIperf(plan.a.ns, { server: plan.b.underlay4, port: IPERF_PORT, seconds: 60, bitrate: HOST_TCP_RATE });
    streams.push(hostPing4, hostPing6, hostTcp);

    const [ping4, ping6] = await step(
      'ping pod A → pod B',
      () =>
        Promise.all([
          ping(podA.podNs, podB.podAddr4, { count: PING_COUNT, intervalS: PING_INTERVAL_S, ...withSignal }),
          ping(podA.podNs, podB.podAddr6, { count: PING_COUNT, intervalS: PING_INTERVAL_S, ...withSignal }),
        ]),
      ([a, b]) => `IPv4 ${pingSummary(a)}, IPv6 ${pingSummary(b)} replies`,
    );
    const tcp = await step(
      `iperf3 TCP pod A → pod B, ${TCP_SECONDS} s`,
      () => iperf(podA.podNs, { server: podB.podAddr4, port: IPERF_PORT, seconds: TCP_SECONDS, ...withSignal }),
      (r) => `${gbps(r.receivedBps)}, ${r.retransmits ?? 0} retransmits`,
    );
    const udp = await step(
      `iperf3 UDP pod A → pod B, ${UDP_SECONDS} s`,
      () =>
        iperf(podA.podNs, {
          server: podB.podAddr4,
          port: IPERF_PORT,
          seconds: UDP_SECONDS,
          udp: true,
          bitrate: UDP_RATE,
          length: UDP_LENGTH,
          ...withSignal,
        }),
      (r) => `${gbps(r.receivedBps)} delivered, ${(r.lostPct ?? 0).toFixed(2)}% loss`,
    );
    const host = await step(
      'host traffic node a → node b',
      async () => {
        const [p4, p6, t] = await Promise.all([hostPing4.stop(), hostPing6.stop(), hostTcp.stop()]);
        return { ping4: p4, ping6: p6, tcp: t };
      },
      (h) => `ping IPv4 ${pingSummary(h.ping4)}, IPv6 ${pingSummary(h.ping6)}, TCP ${gbps(h.tcp.sentBps)} — all during the run`,
    );
    for (const s of servers) s.stop();

    for (const d of daemons) {
      if (d.done) throw new PinholeError('ERR_LAB_DAEMON', `pinhole on ${d.label} exited during the run; its log ends:\n${d.logTail()}`);
    }
    const counters = await step(
      'read counters',
      () => Promise.all(daemons.map((d) => readCounters(d, { timeoutMs: 5000, ...withSignal }))),
      (c) =>
        c
          .map((x, i) => {
            const k = x.connections[LAB_CONNECTION] ?? {};
            return `node ${i === 0 ? 'a' : 'b'} encap ${k.encap_frames ?? 0} / decap ${k.decap_frames ?? 0} frames`;
          })
          .join(', ') + ` (from ${c[0]!.source === 'api' ? 'the API' : 'stats lines'})`,
    );

    const nodes: DemoNode[] = (['a', 'b'] as const).map((n, i) => {
      const f = nodeFiles(n);
      return { node: n, ns: f.ns, pid: daemons[i]!.pid, config: f.config, socket: f.socket, ready: readies[i]!, counters: counters[i]! };
    });

    if (o.keep) {
      for (const d of daemons) d.detach();
      daemons.length = 0;
      rmSync(DEMO_PID_FILE, { force: true });
    } else {
      const stopped = await step(
        'stop pinhole',
        () => Promise.all(daemons.map((d) => d.stop())),
        (s) => s.map((x, i) => `node ${i === 0 ? 'a' : 'b'} ${x ? 'stopped cleanly' : 'had to be killed'}`).join(', '),
      );
      daemons.length = 0;
      stopped.forEach((s, i) => {
        if (s) nodes[i]!.stopped = s;
      });
      if (stopped.some((s) => !s)) throw new PinholeError('ERR_LAB_DAEMON', 'a pinhole daemon did not stop cleanly on SIGTERM');
      await step('remove the lab', () => labDown({ exceptPid: process.pid }), describeDown);
    }
    return { plan, nodes, pods: { ping4, ping6, tcp, udp }, host, kept: !!o.keep, elapsedMs: Date.now() - t0 };
  } catch (err) {
    for (const s of streams) s.kill();
    for (const s of servers) s.stop();
    killAllTools();
    const why = signal?.aborted ? 'interrupted' : `failed (${(err as { code?: string }).code ?? 'error'})`;
    o.progress(`[${secs(Date.now() - t0).padStart(5)}] ${why}: stopping pinhole and removing the lab`);
    await Promise.all(daemons.map((d) => d.stop(5000)));
    await labDown({ exceptPid: process.pid }).catch((e: unknown) => {
      o.progress(`lab down failed: ${(e as Error).message}; run \`pinhole lab down\``);
    });
    if (signal?.aborted) throw interrupted();
    throw err;
  }
}

function interrupted(): PinholeError {
  return new PinholeError('ERR_DEMO_INTERRUPTED', 'interrupted; the lab was removed');
}

function describeDown(d: LabDownResult): string {
  const parts: string[] = [];
  if (d.demo !== null) parts.push(`stopped demo pid ${d.demo}`);
  if (d.processes.length) parts.push(`ended ${d.processes.length} processes`);
  if (d.namespaces.length) parts.push(`removed ${d.namespaces.length} namespaces`);
  if (d.xdp.length) parts.push(`${d.xdp.length} XDP programs detached`);
  if (d.pins.length) parts.push(`${d.pins.length} pins removed`);
  if (d.files.length) parts.push(`${d.files.length} files removed`);
  return parts.length ? parts.join(', ') : 'nothing left from an earlier run';
}

// ---- output ----------------------------------------------------------------------------------

const num = (n: number | undefined): string => (n ?? 0).toLocaleString('en-US');

function bytes(n: number | undefined): string {
  const v = n ?? 0;
  if (v >= 1e9) return `${(v / 1e9).toFixed(2)} GB`;
  if (v >= 1e6) return `${(v / 1e6).toFixed(1)} MB`;
  if (v >= 1e3) return `${(v / 1e3).toFixed(1)} kB`;
  return `${v} B`;
}

function pingCell(p: PingResult): string {
  const rtt = p.rttMs ? `, rtt min/avg/max ${p.rttMs.min.toFixed(3)}/${p.rttMs.avg.toFixed(3)}/${p.rttMs.max.toFixed(3)} ms` : '';
  return `${p.received}/${p.sent} replies, ${p.lossPct.toFixed(1)}% loss${rtt}`;
}

function modeCell(r: ReadyEvent): string {
  const how = [r.xdpMode ? `${r.xdpMode} XDP` : null, `${r.queues} queues`].filter(Boolean).join(', ');
  const why = r.reasons.length ? `; ${r.reasons.map((x) => x.code).join(', ')}` : '';
  return `${r.mode} (${how}${why})`;
}

function workloadCell(r: ReadyEvent): string {
  const w = r.workloads.find((x) => x.connection === LAB_CONNECTION) ?? r.workloads[0];
  if (!w) return '-';
  const why = w.reasons.length ? `; ${w.reasons.map((x) => x.code).join(', ')}` : '';
  return `${w.driver} on ${w.iface}${w.xdp ? ` (${w.xdp}${why})` : why ? ` (${why.slice(2)})` : ''}`;
}

function countersCell(c: NodeCounters): string {
  const k = c.connections[LAB_CONNECTION] ?? {};
  return `encap ${num(k.encap_frames)} frames (${bytes(k.encap_bytes)}), decap ${num(k.decap_frames)} frames (${bytes(k.decap_bytes)})`;
}

function dropsCell(c: NodeCounters): string {
  const e = Object.entries(c.drops).filter(([, n]) => n > 0);
  return e.length ? e.map(([k, n]) => `${k} ${num(n)}`).join(', ') : 'none';
}

/** The one results table. */
export function renderTable(r: DemoResults): string {
  const [a, b] = r.nodes as [DemoNode, DemoNode];
  const ua = r.plan.a;
  const ub = r.plan.b;
  const { ping4, ping6, tcp, udp } = r.pods;
  const rows: string[][] = [
    ['uplink mode, node a', modeCell(a.ready)],
    ['uplink mode, node b', modeCell(b.ready)],
    ['workload, node a', workloadCell(a.ready)],
    ['workload, node b', workloadCell(b.ready)],
    ['ping pod A → pod B, IPv4', pingCell(ping4)],
    ['ping pod A → pod B, IPv6', pingCell(ping6)],
    [`TCP pod A → pod B, ${TCP_SECONDS} s`, `${gbps(tcp.receivedBps)}, ${num(tcp.retransmits)} retransmits`],
    [
      `UDP pod A → pod B, ${UDP_SECONDS} s, ${UDP_LENGTH} B at ${UDP_RATE}`,
      `${gbps(udp.receivedBps)} delivered of ${gbps(udp.sentBps)} sent, ${(udp.lostPct ?? 0).toFixed(2)}% loss (${num(udp.lostPackets)}/${num(udp.packets)})`,
    ],
    [`connection ${LAB_CONNECTION} (VNI ${LAB_VNI}), node a`, countersCell(a.counters)],
    [`connection ${LAB_CONNECTION} (VNI ${LAB_VNI}), node b`, countersCell(b.counters)],
    ['drops, node a', dropsCell(a.counters)],
    ['drops, node b', dropsCell(b.counters)],
    [`host ping node a → node b, IPv4`, `${pingCell(r.host.ping4)}`],
    [`host ping node a → node b, IPv6`, `${pingCell(r.host.ping6)}`],
    [
      `host TCP node a → node b, paced ${HOST_TCP_RATE}`,
      `${gbps(r.host.tcp.sentBps)}, ${num(r.host.tcp.retransmits)} retransmits, ${r.host.tcp.seconds.toFixed(1)} s`,
    ],
  ];
  const title =
    `pinhole demo: pod A (${ua.workloads[0]!.podAddr4}) ⇄ node a ${ua.underlay4} ══ VXLAN ${LAB_VNI} ══ ` +
    `node b ${ub.underlay4} ⇄ pod B (${ub.workloads[0]!.podAddr4}); host traffic between the nodes during the run; ${secs(r.elapsedMs)}`;
  return `${title}\n\n${table(['measurement', 'result'], rows)}`;
}

/** What to run next when the lab was kept. */
export function keepHints(r: DemoResults): string {
  const cli = pinholeCommand();
  const [a, b] = r.nodes as [DemoNode, DemoNode];
  const podA = r.plan.a.workloads[0]!;
  const podB = r.plan.b.workloads[0]!;
  return [
    `The lab is up; pinhole runs on node a (pid ${a.pid}) and node b (pid ${b.pid}). Look around (as root):`,
    `  ${cli} status --socket ${a.socket}`,
    `  ${cli} status --socket ${b.socket}`,
    `  ip netns exec ${podA.podNs} ping ${podB.podAddr4}`,
    `  ip netns exec ${podA.podNs} ping ${podB.podAddr6}`,
    `  ip netns exec ${r.plan.a.ns} ip -d link show ${r.plan.a.uplink}      # the pinhole XDP program`,
    `  ${cli} lab status`,
    `  cat ${a.config}; tail -f ${nodeFiles('a').log}`,
    `Remove everything:`,
    `  ${cli} lab down`,
  ].join('\n');
}
