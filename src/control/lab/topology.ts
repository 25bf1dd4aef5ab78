/**
 * Lab topology: two "nodes" (network namespaces) joined by an uplink, each with one workload
 * ("pod") namespace per connection, and optionally the Linux kernel's own vxlan device on a node as
 * the reference peer. It backs the VXLAN lab tests, the benchmarks and (later) `pinhole lab up|down`
 * and `pinhole demo`. Setup is not a hot path: it shells out to iproute2 (`ip`), `sysctl` and
 * `ethtool` with execFileSync, one command at a time, so a failure names the exact command.
 *
 * Direct (default):
 *
 *   [pA0] eth0 ──veth── wl0 [node a] up0 ══════veth══════ up0 [node b] wl0 ──veth── eth0 [pB0]
 *   [pA1] eth0 ──veth── wl1                                     wl1 ──veth── eth0 [pB1]
 *
 * With `router: true` the uplink goes through a router namespace that forwards IPv4 and IPv6:
 *
 *   [node a] up0 ══veth══ ra0 [router] rb0 ══veth══ up0 [node b]
 *
 * Address plan (only 198.18.0.0/15 and 2001:db8::/32; i = connection index 0..255, hex in IPv6):
 *
 *   what                      direct                       router
 *   ─────────────────────     ──────────────────────────   ───────────────────────────────────────
 *   node a up0 (underlay)     198.18.0.1/24 2001:db8::1/64  198.18.1.2/24 2001:db8:1::2/64 gw .1/::1
 *   node b up0 (underlay)     198.18.0.2/24 2001:db8::2/64  198.18.2.2/24 2001:db8:2::2/64 gw .1/::1
 *   router ra0 / rb0          -                            198.18.1.1 2001:db8:1::1 / 198.18.2.1 2001:db8:2::1
 *   pod pA<i> eth0 (overlay)  198.19.<i>.1/24 2001:db8:100:<i>::1/64
 *   pod pB<i> eth0 (overlay)  198.19.<i>.2/24 2001:db8:100:<i>::2/64
 *
 * The underlay addresses double as the nodes' own "host traffic" addresses (ping, TCP between the
 * nodes outside the tunnel). MACs are fixed so tests can build frames: up0 of a/b 02:00:00:00:00:01/02,
 * router ra0/rb0 02:00:00:00:01:01 / 02:00:00:00:02:01, pod eth0 02:00:00:01:<i>:01/02, host side
 * wl<i> 02:00:00:02:<i>:01/02, kernel vx<i> 02:00:00:03:<i>:01/02.
 *
 * Each node has a role:
 *  - 'pinhole': wl<i> has no address (and IPv6 off, so the kernel sends nothing into it); pinhole
 *    cross-connects it to the tunnel.
 *  - 'kernel': the node gets `vx<i>` (kernel vxlan, id VNI, local/remote = the nodes' underlay
 *    addresses of the chosen family, dstport 4789, dev up0) and a bridge `br<i>` enslaving vx<i>
 *    and wl<i>, so the pod talks through the kernel's VXLAN — the reference peer.
 *
 * MTU: uplink 1500 by default; workloads (wl, eth0, vx, br) uplink − 70 by default, which fits the
 * IPv6 VXLAN overhead (outer Ethernet 14 + IPv6 40 + UDP 8 + VXLAN 8). IPv6 DAD is off everywhere
 * (sysctl accept_dad=0 before links exist, and `nodad` on addresses), so addresses work at once.
 * GRO is on for every veth: frames an XDP program or AF_XDP socket sends into a veth are dropped
 * unless its peer runs XDP or has GRO on. Pods have TX checksum offload off by default, so frames
 * leaving a pod carry complete checksums, as a userspace forwarder capturing on wl<i> needs.
 *
 * Cleanup: every namespace created is recorded; a failing build deletes what it made and rethrows;
 * `close()` deletes them all (deleting a namespace deletes its veths). `cleanupLab(prefix)` removes
 * every namespace whose name starts with a prefix, for `pinhole lab down` after a crash.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { PinholeError } from '../../sys/errors.ts';

export type LabRole = 'pinhole' | 'kernel';

export interface LabConnection {
  /** VXLAN network identifier, 0..2^24-1, unique in the lab. */
  vni: number;
}

export interface LabOptions {
  /** Namespace name prefix, unique per run (tests: `ph-<pid>-<n>-<tag>`). Letters, digits, `._-`. */
  prefix: string;
  /** Address family of the tunnel endpoints (vxlan local/remote). Default 4. */
  underlay?: 4 | 6;
  /** Route the uplink through a router namespace instead of a direct veth. Default false. */
  router?: boolean;
  /** Role of each node. Default `{ a: 'pinhole', b: 'kernel' }`. */
  sides?: { a: LabRole; b: LabRole };
  /** One workload veth and pod per node per connection. Default `[{ vni: 100 }]`. */
  connections?: LabConnection[];
  /** RX and TX queues of the uplink veths. Default 2. */
  uplinkQueues?: number;
  /** RX and TX queues of the workload veths. Default 1. */
  workloadQueues?: number;
  /** Default 1500. */
  uplinkMtu?: number;
  /** Default uplinkMtu − 70 (the IPv6 VXLAN overhead). */
  workloadMtu?: number;
  /** GRO on every veth (needed to receive XDP-transmitted frames). Default true. */
  gro?: boolean;
  /**
   * Keep TX checksum offload (and with it TSO) on in pods: frames leave with partial checksums,
   * TCP in 64 KiB super-frames. Default false. (A kernel node's uplink has TX checksum offload off
   * either way, as a wire would: see addNode.)
   */
  podChecksumOffload?: boolean;
}

export interface LabWorkload {
  /** Connection index (overlay subnet number). */
  index: number;
  vni: number;
  /** Host side of the pod's veth, in the node namespace (wl<i>). */
  iface: string;
  ifaceMac: string;
  podNs: string;
  podIface: string;
  podMac: string;
  podAddr4: string;
  podAddr6: string;
  mtu: number;
  /** Kernel role only: the vxlan device (and its MAC) and the bridge joining it to `iface`. */
  vxlan?: string;
  vxlanMac?: string;
  bridge?: string;
}

export interface LabNode {
  name: 'a' | 'b';
  role: LabRole;
  ns: string;
  uplink: string;
  uplinkMac: string;
  underlay4: string;
  underlay6: string;
  /** Router mode: the default gateways. */
  gateway4?: string;
  gateway6?: string;
  /** The tunnel endpoint address of this node (underlay4 or underlay6, per `underlay`). */
  tunnelAddr: string;
  workloads: LabWorkload[];
}

export interface LabRouter {
  ns: string;
  /** Interface toward node a / node b and its addresses. */
  toA: { iface: string; mac: string; addr4: string; addr6: string };
  toB: { iface: string; mac: string; addr4: string; addr6: string };
}

/** The whole lab as data: what `buildLab` creates and what `lab status` prints. */
export interface LabPlan {
  prefix: string;
  underlay: 4 | 6;
  vxlanPort: number;
  uplinkMtu: number;
  workloadMtu: number;
  uplinkQueues: number;
  workloadQueues: number;
  gro: boolean;
  podChecksumOffload: boolean;
  a: LabNode;
  b: LabNode;
  router?: LabRouter;
  /** Every namespace, in creation order. */
  namespaces: string[];
}

export interface Lab {
  readonly a: LabNode;
  readonly b: LabNode;
  readonly router?: LabRouter;
  /** Every namespace this lab created. */
  readonly namespaces: readonly string[];
  readonly plan: LabPlan;
  /** Runs `cmd args` inside namespace `ns` and returns stdout; throws ERR_LAB_COMMAND with stderr. */
  exec(ns: string, cmd: string, args: readonly string[], opts?: { input?: string }): string;
  /** Spawns a long-running `cmd args` inside namespace `ns` (stdout and stderr piped). */
  spawn(ns: string, cmd: string, args: readonly string[]): ChildProcess;
  /** Deletes every namespace of the lab. Idempotent; never throws. */
  close(): void;
  /** JSON-ready description, for `pinhole lab status`. */
  describe(): LabPlan;
}

export const VXLAN_PORT = 4789;
/** Outer Ethernet + IPv6 + UDP + VXLAN header bytes: the default uplink − workload MTU gap. */
export const VXLAN_IPV6_OVERHEAD = 14 + 40 + 8 + 8;
const MAX_CONNECTIONS = 256;
const PREFIX_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$/;
const CMD_TIMEOUT_MS = 15_000;

function optionError(message: string): PinholeError {
  return new PinholeError('ERR_LAB_OPTIONS', message);
}

function checkInt(name: string, v: number, min: number, max: number): number {
  if (!Number.isInteger(v) || v < min || v > max) throw optionError(`${name}: ${v}: expected an integer ${min}..${max}`);
  return v;
}

const hex2 = (n: number): string => n.toString(16).padStart(2, '0');

/** 2001:db8:100:<i>::<host>, canonical (no `:0:` group for i = 0). */
function overlay6(i: number, host: number): string {
  return i === 0 ? `2001:db8:100::${host}` : `2001:db8:100:${i.toString(16)}::${host}`;
}

/**
 * Validates the options and computes names, addresses and MACs. Pure: no kernel access.
 * The kernel checks what only it knows (e.g. the largest MTU a veth accepts).
 */
export function planLab(o: LabOptions): LabPlan {
  if (typeof o.prefix !== 'string' || !PREFIX_RE.test(o.prefix)) {
    throw optionError(`prefix ${JSON.stringify(o.prefix)}: expected 1..200 letters, digits, '.', '_' or '-', not starting with a symbol`);
  }
  const underlay = o.underlay ?? 4;
  if (underlay !== 4 && underlay !== 6) throw optionError(`underlay: ${String(underlay)}: expected 4 or 6`);
  const sides = o.sides ?? { a: 'pinhole', b: 'kernel' };
  for (const s of [sides.a, sides.b]) {
    if (s !== 'pinhole' && s !== 'kernel') throw optionError(`sides: ${String(s)}: expected 'pinhole' or 'kernel'`);
  }
  const connections = o.connections ?? [{ vni: 100 }];
  if (connections.length < 1 || connections.length > MAX_CONNECTIONS) {
    throw optionError(`connections: ${connections.length}: expected 1..${MAX_CONNECTIONS}`);
  }
  const vnis = new Set<number>();
  for (const c of connections) {
    checkInt('connections[].vni', c.vni, 0, 0xffffff);
    if (vnis.has(c.vni)) throw optionError(`connections: vni ${c.vni} appears twice`);
    vnis.add(c.vni);
  }
  const uplinkQueues = checkInt('uplinkQueues', o.uplinkQueues ?? 2, 1, 256);
  const workloadQueues = checkInt('workloadQueues', o.workloadQueues ?? 1, 1, 256);
  // Only the lower bounds are ours: IPv6 needs 1280 on every link. The kernel refuses what is too big.
  const uplinkMtu = checkInt('uplinkMtu', o.uplinkMtu ?? 1500, 1280, 0x7fffffff);
  const workloadMtu = checkInt('workloadMtu', o.workloadMtu ?? uplinkMtu - VXLAN_IPV6_OVERHEAD, 1280, 0x7fffffff);
  const router = o.router ?? false;
  const p = o.prefix;

  const node = (name: 'a' | 'b', role: LabRole): LabNode => {
    const host = name === 'a' ? 1 : 2;
    const side = name === 'a' ? 'A' : 'B';
    const underlay4 = router ? `198.18.${host}.2` : `198.18.0.${host}`;
    const underlay6 = router ? `2001:db8:${host}::2` : `2001:db8::${host}`;
    const workloads = connections.map((c, i): LabWorkload => ({
      index: i,
      vni: c.vni,
      iface: `wl${i}`,
      ifaceMac: `02:00:00:02:${hex2(i)}:${hex2(host)}`,
      podNs: `${p}-p${side}${i}`,
      podIface: 'eth0',
      podMac: `02:00:00:01:${hex2(i)}:${hex2(host)}`,
      podAddr4: `198.19.${i}.${host}`,
      podAddr6: overlay6(i, host),
      mtu: workloadMtu,
      ...(role === 'kernel' ? { vxlan: `vx${i}`, vxlanMac: `02:00:00:03:${hex2(i)}:${hex2(host)}`, bridge: `br${i}` } : {}),
    }));
    return {
      name,
      role,
      ns: `${p}-${name}`,
      uplink: 'up0',
      uplinkMac: `02:00:00:00:00:${hex2(host)}`,
      underlay4,
      underlay6,
      ...(router ? { gateway4: `198.18.${host}.1`, gateway6: `2001:db8:${host}::1` } : {}),
      tunnelAddr: underlay === 4 ? underlay4 : underlay6,
      workloads,
    };
  };
  const a = node('a', sides.a);
  const b = node('b', sides.b);
  const r: LabRouter | undefined = router
    ? {
        ns: `${p}-r`,
        toA: { iface: 'ra0', mac: '02:00:00:00:01:01', addr4: '198.18.1.1', addr6: '2001:db8:1::1' },
        toB: { iface: 'rb0', mac: '02:00:00:00:02:01', addr4: '198.18.2.1', addr6: '2001:db8:2::1' },
      }
    : undefined;
  const namespaces = [a.ns, b.ns, ...(r ? [r.ns] : []), ...a.workloads.map((w) => w.podNs), ...b.workloads.map((w) => w.podNs)];
  return {
    prefix: p,
    underlay,
    vxlanPort: VXLAN_PORT,
    uplinkMtu,
    workloadMtu,
    uplinkQueues,
    workloadQueues,
    gro: o.gro ?? true,
    podChecksumOffload: o.podChecksumOffload ?? false,
    a,
    b,
    ...(r ? { router: r } : {}),
    namespaces,
  };
}

/** Runs a program and returns stdout; a failure becomes ERR_LAB_COMMAND carrying stderr. */
function run(cmd: string, args: readonly string[], opts: { input?: string } = {}): string {
  try {
    return execFileSync(cmd, args, {
      encoding: 'utf8',
      input: opts.input,
      stdio: ['pipe', 'pipe', 'pipe'],
      timeout: CMD_TIMEOUT_MS,
    });
  } catch (err) {
    const e = err as { stderr?: string | Buffer; message: string };
    const stderr = String(e.stderr ?? '').trim();
    throw new PinholeError('ERR_LAB_COMMAND', `${cmd} ${args.join(' ')}: ${stderr || e.message}`, {
      cause: err,
      details: { cmd, args: [...args], stderr },
    });
  }
}

function nsExec(ns: string, cmd: string, args: readonly string[], opts: { input?: string } = {}): string {
  return run('ip', ['netns', 'exec', ns, cmd, ...args], opts);
}

/** `ip -n NS ...`: iproute2 enters the namespace itself, cheaper than `ip netns exec NS ip`. */
function ipIn(ns: string, ...args: string[]): string {
  return run('ip', ['-n', ns, ...args]);
}

/** Names of all named network namespaces (`ip netns list` prints `name (id: N)` or `name`). */
export function listNetns(): string[] {
  return run('ip', ['netns', 'list'])
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0] ?? '')
    .filter((n) => n !== '');
}

function deleteNetns(name: string): boolean {
  try {
    run('ip', ['netns', 'del', name]);
    return true;
  } catch {
    return false; // already gone
  }
}

/** A veth pair from `aNs` to `bNs` with explicit queue counts, MTU and MACs, both ends up. */
function addVeth(
  aNs: string,
  aName: string,
  aMac: string,
  bNs: string,
  bName: string,
  bMac: string,
  o: { queues: number; mtu: number; gro: boolean },
): void {
  const q = String(o.queues);
  ipIn(
    aNs,
    'link',
    'add',
    aName,
    'numtxqueues',
    q,
    'numrxqueues',
    q,
    'type',
    'veth',
    'peer',
    'name',
    bName,
    'netns',
    bNs,
    'numtxqueues',
    q,
    'numrxqueues',
    q,
  );
  for (const [ns, dev, mac] of [
    [aNs, aName, aMac],
    [bNs, bName, bMac],
  ] as const) {
    ipIn(ns, 'link', 'set', 'dev', dev, 'address', mac, 'mtu', String(o.mtu));
    nsExec(ns, 'sysctl', ['-qw', `net.ipv6.conf.${dev}.accept_dad=0`]);
    if (o.gro) nsExec(ns, 'ethtool', ['-K', dev, 'gro', 'on']);
    ipIn(ns, 'link', 'set', 'dev', dev, 'up');
  }
}

function addAddrs(ns: string, dev: string, addr4: string, len4: number, addr6: string, len6: number): void {
  ipIn(ns, 'addr', 'add', `${addr4}/${len4}`, 'dev', dev);
  ipIn(ns, '-6', 'addr', 'add', `${addr6}/${len6}`, 'dev', dev, 'nodad');
}

/**
 * Workload `w`'s veth pair, host side in `n`'s namespace and pod side in the pod's, addressed
 * and up: as the lab builds it, and again after a test deleted it (a kernel node's bridge is
 * not joined here).
 */
export function addWorkloadVeth(plan: LabPlan, n: LabNode, w: LabWorkload): void {
  // GRO on the host side of a pinhole node's workload veth hands an AF_PACKET socket merged
  // super-frames, which its offload port splits again (dataplane/ports/afpacket.ts).
  addVeth(n.ns, w.iface, w.ifaceMac, w.podNs, w.podIface, w.podMac, { queues: plan.workloadQueues, mtu: w.mtu, gro: plan.gro });
  // The host side is layer 2 only (a bridge port or pinhole's cross-connect): no IPv6 of its own,
  // so the kernel sends no router solicitations or MLD reports into the pod.
  nsExec(n.ns, 'sysctl', ['-qw', `net.ipv6.conf.${w.iface}.disable_ipv6=1`]);
  addAddrs(w.podNs, w.podIface, w.podAddr4, 24, w.podAddr6, 64);
  if (!plan.podChecksumOffload) nsExec(w.podNs, 'ethtool', ['-K', w.podIface, 'tx', 'off']);
}

function addNode(plan: LabPlan, n: LabNode, peer: LabNode): void {
  const ns = n.ns;
  addAddrs(ns, n.uplink, n.underlay4, 24, n.underlay6, 64);
  // A kernel node's uplink completes every checksum, as a wire would: with TX checksum offload on,
  // its vxlan sends through the veth frames whose inner checksum is still partial — a pod's
  // super-frame, or the pod's segments GRO merged on the node's veths and split again at the
  // uplink — which no receiver but a kernel (and no XDP program) can tell (measured: a download
  // to a pod through an AF_XDP uplink arrived with TCP checksums of the pseudo-header only).
  if (n.role === 'kernel') nsExec(ns, 'ethtool', ['-K', n.uplink, 'tx', 'off']);
  if (n.gateway4 && n.gateway6) {
    ipIn(ns, 'route', 'add', 'default', 'via', n.gateway4, 'dev', n.uplink);
    ipIn(ns, '-6', 'route', 'add', 'default', 'via', n.gateway6, 'dev', n.uplink);
  }
  for (const w of n.workloads) {
    addWorkloadVeth(plan, n, w);
    if (n.role === 'kernel' && w.vxlan && w.bridge) {
      const remote = peer.tunnelAddr;
      ipIn(
        ns,
        'link',
        'add',
        w.vxlan,
        'type',
        'vxlan',
        'id',
        String(w.vni),
        'local',
        n.tunnelAddr,
        'remote',
        remote,
        'dstport',
        String(plan.vxlanPort),
        'dev',
        n.uplink,
      );
      if (w.vxlanMac) ipIn(ns, 'link', 'set', 'dev', w.vxlan, 'address', w.vxlanMac);
      ipIn(ns, 'link', 'add', w.bridge, 'type', 'bridge');
      for (const dev of [w.vxlan, w.bridge]) {
        nsExec(ns, 'sysctl', ['-qw', `net.ipv6.conf.${dev}.disable_ipv6=1`]);
        ipIn(ns, 'link', 'set', 'dev', dev, 'mtu', String(w.mtu));
      }
      ipIn(ns, 'link', 'set', 'dev', w.vxlan, 'master', w.bridge);
      ipIn(ns, 'link', 'set', 'dev', w.iface, 'master', w.bridge);
      ipIn(ns, 'link', 'set', 'dev', w.vxlan, 'up');
      ipIn(ns, 'link', 'set', 'dev', w.bridge, 'up');
    }
  }
}

function build(plan: LabPlan, made: string[]): void {
  for (const ns of plan.namespaces) {
    run('ip', ['netns', 'add', ns]);
    made.push(ns);
    ipIn(ns, 'link', 'set', 'lo', 'up');
    // Before any link exists, so the links (and their link-local addresses) start without DAD.
    nsExec(ns, 'sysctl', ['-qw', 'net.ipv6.conf.all.accept_dad=0', 'net.ipv6.conf.default.accept_dad=0']);
  }
  const { a, b, router } = plan;
  const uplinkOpts = { queues: plan.uplinkQueues, mtu: plan.uplinkMtu, gro: plan.gro };
  if (router) {
    nsExec(router.ns, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1']);
    addVeth(a.ns, a.uplink, a.uplinkMac, router.ns, router.toA.iface, router.toA.mac, uplinkOpts);
    addVeth(b.ns, b.uplink, b.uplinkMac, router.ns, router.toB.iface, router.toB.mac, uplinkOpts);
    addAddrs(router.ns, router.toA.iface, router.toA.addr4, 24, router.toA.addr6, 64);
    addAddrs(router.ns, router.toB.iface, router.toB.addr4, 24, router.toB.addr6, 64);
  } else {
    addVeth(a.ns, a.uplink, a.uplinkMac, b.ns, b.uplink, b.uplinkMac, uplinkOpts);
  }
  addNode(plan, a, b);
  addNode(plan, b, a);
}

/**
 * Builds the lab. On any failure it deletes every namespace it created and rethrows the error
 * (ERR_LAB_OPTIONS for bad options, before anything is created; ERR_LAB_COMMAND naming the
 * command the kernel refused).
 */
export function buildLab(o: LabOptions): Lab {
  const plan = planLab(o);
  const made: string[] = [];
  const close = (): void => {
    while (made.length) deleteNetns(made.pop()!);
  };
  try {
    build(plan, made);
  } catch (err) {
    close();
    throw err;
  }
  const namespaces = [...made];
  return {
    a: plan.a,
    b: plan.b,
    ...(plan.router ? { router: plan.router } : {}),
    namespaces,
    plan,
    exec: (ns, cmd, args, opts) => nsExec(ns, cmd, args, opts),
    spawn: (ns, cmd, args) => spawn('ip', ['netns', 'exec', ns, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'] }),
    close,
    describe: () => structuredClone(plan),
  };
}

/**
 * Removes every named network namespace whose name starts with `prefix` and returns the names
 * removed. With `kill`, processes still running inside them are sent SIGKILL first (a namespace
 * with processes in it outlives its name, and keeps its veths).
 */
export function cleanupLab(prefix: string, opts: { kill?: boolean } = {}): string[] {
  if (typeof prefix !== 'string' || !PREFIX_RE.test(prefix)) {
    throw optionError(`cleanup prefix ${JSON.stringify(prefix)}: expected letters, digits, '.', '_' or '-', not starting with a symbol`);
  }
  const removed: string[] = [];
  for (const ns of listNetns()) {
    if (!ns.startsWith(prefix)) continue;
    if (opts.kill) {
      let pids: string[] = [];
      try {
        pids = run('ip', ['netns', 'pids', ns]).split(/\s+/).filter(Boolean);
      } catch {
        // gone meanwhile
      }
      for (const pid of pids) {
        try {
          process.kill(Number(pid), 'SIGKILL');
        } catch {
          // exited meanwhile
        }
      }
    }
    if (deleteNetns(ns)) removed.push(ns);
  }
  return removed;
}
