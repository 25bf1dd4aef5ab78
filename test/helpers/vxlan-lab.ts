/**
 * Shared pieces of the VXLAN lab tests (test/lab/vxlan*.test.ts): a lab per test or per group,
 * `pinhole run` configs written for a node, the daemon with a feed of its `stats` lines, ping and
 * iperf3 between pods, interface counters read from sysfs, and the two things exact counter
 * checks need: quiet pods (no frames of their own between two readings) and a reading taken while
 * pinhole's counters stand still.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApiClient } from '../../src/api/client.ts';
import type { DaemonStatus, NeighbourStatus } from '../../src/daemon/control.ts';
import { buildLab, type Lab, type LabNode, type LabOptions, type LabWorkload } from '../../src/control/lab/topology.ts';
import { iperf as runIperf, startIperfServer } from '../../src/control/lab/traffic.ts';
import { killLeftoverPinholes, startPinhole, type PinholeProc } from './pinhole-proc.ts';

/** A `ready`, `stats` or `stopped` line of `pinhole run`, as far as the tests read it. */
export interface RunLine {
  event: string;
  mode: string;
  workloads: { connection: string; driver: string; reasons: { code: string }[] }[];
  tunnelAddresses?: string[];
  connections: Record<string, Record<string, number>>;
  drops: Record<string, number>;
  ports: Record<string, Record<string, number>>;
  nextHops?: { connection: string; state: string; via?: string }[];
  /** The next-hop stage's counters (stats and stopped lines). */
  nexthop?: Record<string, number>;
}

let counter = 0;
const dir = mkdtempSync(join(tmpdir(), 'ph-vxlan-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));

/** Builds a lab with a unique prefix, runs `fn`, and always kills our pinholes and removes the lab. */
export async function withLab(tag: string, o: Omit<LabOptions, 'prefix'>, fn: (lab: Lab) => Promise<void>): Promise<void> {
  const lab = buildLab({ prefix: `ph-${process.pid}-${++counter}-${tag}`, ...o });
  try {
    await fn(lab);
  } finally {
    killLeftoverPinholes();
    lab.close();
  }
}

export function remoteOf(node: LabNode, family: 4 | 6): string {
  return family === 4 ? node.underlay4 : node.underlay6;
}

/** The API socket configFor gives `node`'s daemon. */
export function socketOf(node: LabNode): string {
  return join(dir, `${node.ns}.sock`);
}

/**
 * Writes a config for `node` with one connection per workload, towards `peer`, connection i
 * over the underlay family families[i % n]. `uplinkExtra`: more keys of the uplink mapping
 * (e.g. `tunnelAddress: 198.18.0.11`).
 */
export function configFor(
  node: LabNode,
  peer: LabNode,
  mode: string,
  families: (4 | 6)[],
  extra = '',
  localMode?: string,
  uplinkExtra = '',
): string {
  const lines = [
    `uplink: { interface: ${node.uplink}, mode: ${mode}${uplinkExtra ? `, ${uplinkExtra}` : ''} }`,
    `api: { socket: ${socketOf(node)} }`,
    'connections:',
  ];
  node.workloads.forEach((w, i) => {
    const fam = families[i % families.length]!;
    const local = localMode ? `{ interface: ${w.iface}, mode: ${localMode} }` : `{ interface: ${w.iface} }`;
    lines.push(`  - { name: c${i}, local: ${local}, vxlan: { vni: ${w.vni}, remote: "${remoteOf(peer, fam)}" } }`);
  });
  const file = join(dir, `${node.ns}.yaml`);
  writeFileSync(file, lines.join('\n') + '\n' + extra);
  return file;
}

export interface RunProc extends PinholeProc {
  /** Resolves with the first `stats` line printed after the call (the newest, if several arrive at once). */
  nextStats(timeoutMs?: number): Promise<RunLine>;
}

/** `pinhole run --config FILE --stats-interval 100` in `node`'s namespace. */
export function startRun(node: LabNode, file: string, wrap: readonly string[] = []): RunProc {
  const p = startPinhole(node.ns, ['--config', file, '--stats-interval', '100'], 20_000, 'run', wrap);
  const seen: RunLine[] = [];
  const waiters = new Set<() => void>();
  let buf = '';
  p.child.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      if (!line.startsWith('{"event":"stats"')) continue;
      seen.push(JSON.parse(line) as RunLine);
    }
    for (const w of [...waiters]) w();
  });
  return Object.assign(p, {
    nextStats(timeoutMs = 10_000): Promise<RunLine> {
      const n = seen.length;
      return new Promise<RunLine>((resolve, reject) => {
        const done = (): void => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        const check = (): void => {
          if (seen.length > n) {
            done();
            resolve(seen[seen.length - 1]!);
          } else if (p.child.exitCode !== null || p.child.signalCode !== null) {
            done();
            reject(new Error('pinhole exited while a stats line was awaited'));
          }
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`no stats line within ${timeoutMs} ms`));
        }, timeoutMs);
        waiters.add(check);
      });
    },
  });
}

/**
 * ping count/loss from `ns` to `dst` (`size`: payload bytes; with it, DF is set). Replies are
 * awaited until `deadline` seconds (default: the sending time + 5 s), not two round-trip times
 * as `-W` does once a reply came back: on a loaded machine a late reply is not a lost one. A
 * ping expected to fail should pass a short deadline.
 */
export function ping(
  lab: Lab,
  ns: string,
  dst: string,
  count = 5,
  interval = 0.1,
  size?: number,
  deadline = Math.ceil(count * interval) + 5,
): { sent: number; received: number } {
  let out: string;
  const extra = size === undefined ? [] : ['-s', String(size), '-M', 'do'];
  try {
    out = lab.exec(ns, 'ping', ['-n', '-c', String(count), '-w', String(deadline), '-i', String(interval), ...extra, dst]);
  } catch (err) {
    // ping exits 1 when a reply is missing: its summary is in the failed command's stdout.
    const e = err as Error & { cause?: { stdout?: string | Buffer } };
    out = `${String(e.cause?.stdout ?? '')}\n${e.message}`;
  }
  const m = /(\d+) packets transmitted, (\d+) received/.exec(out);
  return { sent: Number(m?.[1] ?? count), received: Number(m?.[2] ?? 0) };
}

/**
 * A ping running in the background: `replies(n)` resolves once n replies were printed (so a test
 * can change something mid-stream), `done` with the summary.
 */
export function backgroundPing(
  lab: Lab,
  ns: string,
  dst: string,
  count: number,
  interval: number,
): { replies(n: number): Promise<void>; done: Promise<{ sent: number; received: number; raw: string }>; stop(): void } {
  const child = lab.spawn(ns, 'ping', [
    '-n',
    '-c',
    String(count),
    '-i',
    String(interval),
    '-w',
    String(Math.ceil(count * interval) + 5),
    dst,
  ]);
  let out = '';
  const waiters = new Set<() => void>();
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
    for (const w of [...waiters]) w();
  });
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const done = new Promise<{ sent: number; received: number; raw: string }>((resolve) => {
    child.once('close', () => {
      for (const w of [...waiters]) w();
      const m = /(\d+) packets transmitted, (\d+) received/.exec(out);
      resolve({ sent: Number(m?.[1] ?? 0), received: Number(m?.[2] ?? 0), raw: out });
    });
  });
  const repliesSeen = (): number => out.split('\n').filter((l) => l.includes(' bytes from ')).length;
  return {
    replies: (n) =>
      new Promise<void>((resolve, reject) => {
        const check = (): void => {
          if (repliesSeen() >= n) {
            waiters.delete(check);
            resolve();
          } else if (child.exitCode !== null || child.signalCode !== null) {
            waiters.delete(check);
            reject(new Error(`ping ended before ${n} replies:\n${out}`));
          }
        };
        waiters.add(check);
        check();
      }),
    done,
    stop: () => void child.kill(),
  };
}

/**
 * One second of iperf3 from `client` to a server in `serverNs` bound to `server` (started first,
 * awaited until it listens): the rate the receiver saw, and for UDP the share lost.
 */
export async function iperf(
  client: string,
  serverNs: string,
  server: string,
  o: { udp?: boolean; reverse?: boolean; bitrate?: string } = {},
): Promise<{ bps: number; lost?: number }> {
  const srv = await startIperfServer(serverNs, { bind: server, timeoutMs: 5000 });
  try {
    const r = await runIperf(client, {
      server,
      seconds: 1,
      ...(o.reverse ? { reverse: true } : {}),
      ...(o.udp ? { udp: true, bitrate: o.bitrate ?? '200M', length: 1200 } : {}),
    });
    assert.ok(r.receivedBps !== undefined, `iperf3 ${client} → ${server}: no receiver total`);
    if (r.connectRetries)
      console.log(`# iperf3 UDP ${client} → ${server}: its stream never connected, started again (${r.connectRetries})`);
    return o.udp ? { bps: r.receivedBps, lost: r.lostPct ?? 0 } : { bps: r.receivedBps };
  } catch (err) {
    // The server's side of a run that failed (its log is flushed line by line).
    if (err instanceof Error) err.message += `\n--- iperf3 server (${serverNs}):\n${srv.output().trim().slice(-1500)}`;
    throw err;
  } finally {
    srv.stop();
  }
}

export function noXdp(lab: Lab, ns: string, iface: string): void {
  const link = lab.exec(ns, 'ip', ['-d', 'link', 'show', iface]);
  assert.doesNotMatch(link, /xdp|prog\/xdp/, `${iface} in ${ns} still has an XDP program:\n${link}`);
}

/** Packet counters of interfaces in one namespace, from sysfs (one command). */
export function ifStats(lab: Lab, ns: string, devs: readonly string[]): Record<string, { rx: number; tx: number }> {
  const files = devs.flatMap((d) => [`/sys/class/net/${d}/statistics/rx_packets`, `/sys/class/net/${d}/statistics/tx_packets`]);
  const v = lab.exec(ns, 'cat', files).trim().split('\n').map(Number);
  const out: Record<string, { rx: number; tx: number }> = {};
  devs.forEach((d, i) => (out[d] = { rx: v[2 * i]!, tx: v[2 * i + 1]! }));
  return out;
}

/** One line of /proc/net/snmp in `ns` as name → value (e.g. snmp(lab, ns, 'Udp').NoPorts). */
export function snmp(lab: Lab, ns: string, proto: string): Record<string, number> {
  const rows = lab
    .exec(ns, 'cat', ['/proc/net/snmp'])
    .split('\n')
    .filter((l) => l.startsWith(`${proto}: `));
  const names = rows[0]!.split(/\s+/).slice(1);
  const values = rows[1]!.split(/\s+/).slice(1).map(Number);
  return Object.fromEntries(names.map((n, i) => [n, values[i]!]));
}

/**
 * Makes pods send nothing of their own: no IPv6 router solicitations (accept_ra 0 stops the
 * kernel's RS timer) and permanent ARP/ND entries for each other, so no neighbour probes either.
 * Every frame a pod sends from then on is one the test asked for. `pairs`: pods that talk.
 */
export function quietPods(lab: Lab, pairs: readonly (readonly [LabWorkload, LabWorkload])[]): void {
  for (const [x, y] of pairs) {
    for (const [me, other] of [
      [x, y],
      [y, x],
    ] as const) {
      lab.exec(me.podNs, 'sysctl', ['-qw', `net.ipv6.conf.${me.podIface}.accept_ra=0`]);
      for (const addr of [other.podAddr4, other.podAddr6]) {
        lab.exec(me.podNs, 'ip', ['neigh', 'replace', addr, 'lladdr', other.podMac, 'dev', me.podIface, 'nud', 'permanent']);
      }
    }
  }
}

/** Empties a pod's neighbour cache (permanent entries too), so the next ping must resolve through the tunnel. */
export function flushNeighbours(lab: Lab, w: LabWorkload): void {
  for (const fam of ['-4', '-6']) lab.exec(w.podNs, 'ip', [fam, 'neigh', 'flush', 'dev', w.podIface, 'nud', 'all']);
}

/** The pod's neighbour entry for `addr` (`ip neigh show`), or '' when it has none. */
export function neighbourOf(lab: Lab, w: LabWorkload, addr: string): string {
  return lab.exec(w.podNs, 'ip', ['neigh', 'show', addr, 'dev', w.podIface]).trim();
}

/** What of a stats line must stand still for a reading to be exact: frame counters and drops. */
function frameCounters(s: RunLine): string {
  const ports: Record<string, Record<string, number>> = {};
  for (const [p, v] of Object.entries(s.ports)) ports[p] = Object.fromEntries(Object.entries(v).filter(([k]) => k.endsWith('_frames')));
  return JSON.stringify({ c: s.connections, d: s.drops, ports });
}

/**
 * Waits until the counters of every `procs` stand still for a stats interval, runs `read`
 * (e.g. interface counters), and checks they still stand still afterwards: the returned stats
 * and `read`'s result describe the same moment. Retries while traffic is still draining.
 */
export async function settled<T>(procs: readonly RunProc[], read: () => T, attempts = 25): Promise<{ stats: RunLine[]; read: T }> {
  for (let i = 0; i < attempts; i++) {
    const s0 = await Promise.all(procs.map((p) => p.nextStats()));
    const s1 = await Promise.all(procs.map((p) => p.nextStats()));
    if (s0.some((s, k) => frameCounters(s) !== frameCounters(s1[k]!))) continue;
    const r = read();
    const s2 = await Promise.all(procs.map((p) => p.nextStats()));
    if (s1.every((s, k) => frameCounters(s) === frameCounters(s2[k]!))) return { stats: s2, read: r };
  }
  throw new Error(`pinhole's counters never stood still for a reading (${attempts} attempts)`);
}

/** The difference of two counter records (b − a), key by key. */
export function delta(a: Record<string, number> | undefined, b: Record<string, number> | undefined): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of new Set([...Object.keys(a ?? {}), ...Object.keys(b ?? {})])) out[k] = (b?.[k] ?? 0) - (a?.[k] ?? 0);
  return out;
}

/** `pinhole status` and the neighbours, over the daemon's API socket. */
export async function statusOf(node: LabNode): Promise<DaemonStatus & { neighbours: NeighbourStatus[] }> {
  const api = new ApiClient(socketOf(node));
  const [status, neighbours] = await Promise.all([api.status(), api.neighbours()]);
  return { ...status, neighbours };
}

/**
 * Replaces the kernel vxlan device of workload `w` on a kernel-role node with one whose
 * endpoints are `local` and `remote` (either family), enslaved to the same bridge, same MAC/MTU.
 */
export function setKernelVxlan(lab: Lab, node: LabNode, w: LabWorkload, local: string, remote: string): void {
  const ns = node.ns;
  const vx = w.vxlan!;
  lab.exec(ns, 'ip', ['link', 'del', vx]);
  lab.exec(ns, 'ip', [
    'link',
    'add',
    vx,
    'type',
    'vxlan',
    'id',
    String(w.vni),
    'local',
    local,
    'remote',
    remote,
    'dstport',
    '4789',
    'dev',
    node.uplink,
  ]);
  lab.exec(ns, 'ip', ['link', 'set', 'dev', vx, 'address', w.vxlanMac!, 'mtu', String(w.mtu)]);
  lab.exec(ns, 'sysctl', ['-qw', `net.ipv6.conf.${vx}.disable_ipv6=1`]);
  lab.exec(ns, 'ip', ['link', 'set', 'dev', vx, 'master', w.bridge!]);
  lab.exec(ns, 'ip', ['link', 'set', 'dev', vx, 'up']);
}
