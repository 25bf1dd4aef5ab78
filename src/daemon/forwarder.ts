/**
 * The forwarder: VXLAN connections between workload interfaces and remote nodes, over the
 * uplink shared with the kernel. This is `pinhole run` minus the command line, the API and the
 * recovery loop (daemon.ts).
 *
 * Start, in order (anything failing undoes what was done before it):
 *   1. every interface named by the config exists (ERR_IFACE_NOT_FOUND before anything changes);
 *   2. the rtnetlink mirror (links, addresses, routes, neighbours; live);
 *   3. tunnel addresses: `tunnelAddress`/`tunnelAddress6`, else the uplink's first global
 *      address of each family a connection needs (ERR_TUNNEL_NO_ADDRESS);
 *   4. the uplink host side with its fallback (uplink/host.ts): the pinhole opens exactly the
 *      connections' UDP ports, to our tunnel addresses only; then, inside that, the workload
 *      interfaces and the workers — so a failure there in `auto` also falls back to AF_PACKET:
 *        a workload interface is AF_PACKET with GSO and checksum offload (PACKET_VNET_HDR: the
 *        pod keeps its offloads) unless its connection says `local.mode: afxdp`: then AF_XDP
 *        (the redirect-all program via bpf_link, one socket per queue), which needs the uplink
 *        on AF_XDP, as many RX queues as workers, and the pod's TX checksum offload off;
 *   5. next hops published to the workers (NextHopTable) and kept current from mirror events;
 *      a worker's miss asks the kernel to resolve (NTF_USE through the mirror).
 *
 * Changes at runtime (`apply`): connections added, removed or changed are the only ones
 * touched. New workload interfaces are set up and new ports/addresses opened first; then every
 * worker gets its new plan (ports whose plan is unchanged stay open, so untouched connections
 * never stop); only then is what the old set alone needed closed. If any step fails, everything
 * done so far is undone and the running state is exactly what it was.
 *
 * How frames find their worker. Worker w serves uplink RX queue w (AF_XDP: the pinhole
 * redirects queue w's tunnel frames to worker w's socket; AF_PACKET: a fanout group hashes
 * flows over the workers) and, on each workload interface, queue w (AF_XDP: the redirect-all
 * program redirects queue w to worker w; AF_PACKET: a fanout group per interface). A frame is
 * transmitted by the worker that received it.
 *
 * WireGuard connections are the exception: their state (handshakes, sessions, replay windows)
 * has one owner, worker 0, and every frame of theirs goes there without a hand-off between
 * workers. Their listen ports are not in the pinhole's redirect map: the kernel receives those
 * datagrams (a port guard, as for AF_PACKET, keeps it from answering them) and worker 0 reads
 * them from its own AF_PACKET socket on the uplink, filtered to the listen ports and our tunnel
 * addresses and in no fanout group, so it sees every RX queue. Their workload interfaces are
 * opened by worker 0 alone, with AF_PACKET and no fanout (one socket sees every queue). Worker 0
 * transmits through its own uplink port.
 *
 * Watching: the uplink disappearing (deleted, moved to another namespace), its XDP program
 * being detached behind our back or its MTU changing (the mode, slot sizes and encapsulation
 * limit follow from it) is reported through `onUplinkLost`; the owner (daemon.ts) stops this
 * forwarder and starts a new one when the interface is back. Link down and up are
 * not losses (sockets and program survive them): they are logged (`link-down`, `link-up`) and
 * shown by `uplinkLink`. Workload interfaces are followed too: one that goes stops its
 * connections (waiting), one that comes back starts them, and one whose MTU changes has its
 * connections changed so that their ports open again for it (`workload-mtu`; an MTU AF_XDP
 * cannot serve is refused once, `workload-mtu-refused`).
 *
 * Stop: workers first (sockets closed: the pinhole passes tunnel frames to the kernel again),
 * then workload programs detached, the uplink restored (uplink/host.ts), the mirror closed.
 */
import { parseIP } from '../packet/ip.ts';
import { canonicalIp } from '../netlink/ip.ts';
import { nextHopOf, Mirror } from '../netlink/mirror.ts';
import { neighUseRequest, RTN_UNICAST } from '../netlink/rtnl.ts';
import { rtnlRequest } from '../netlink/socket.ts';
import { requireInterface, type IfaceInfo } from '../kernel/iface.ts';
import { attachRedirectAll, loadRedirectAll, type LoadedRedirectAll } from '../kernel/workload.ts';
import type { XdpAttachment } from '../kernel/xdp-attach.ts';
import { readKeyFile, workerSpinUs, tunnelPortOf, type ConnectionConfig, type PinholeConfig, type UplinkConfig } from '../config/index.ts';
import { openPortGuard, type PortGuard } from '../uplink/afpacket/port-guard.ts';
import { wgGeneration } from '../dataplane/stages/wireguard.ts';
import { Endpoint } from '../tunnel/wireguard/messages.ts';
import { encodeKey, publicKeyOf } from '../tunnel/wireguard/keys.ts';
import { PinholeError } from '../sys/index.ts';
import type { PinholeSpec } from '../bpf/pinhole/policy.ts';
import { startOnUplink, type UplinkHost } from '../uplink/host.ts';
import { AFXDP_MAX_MTU, type DecisionReason } from '../uplink/decide.ts';
import type { CounterValues } from '../dataplane/counters.ts';
import {
  addressWords,
  NH_NO_ROUTE,
  NH_OK,
  NH_UNKNOWN,
  NextHopTable,
  nextHopTableBytes,
  type NextHopValue,
} from '../dataplane/nexthop-table.ts';
import type { PortPlan, VxlanConnectionPlan, WgConnectionPlan, WorkerPlan } from '../dataplane/plan.ts';
import { Supervisor } from '../dataplane/supervisor.ts';
import { OUTER_V4_BYTES, OUTER_V6_BYTES } from '../packet/vxlan.ts';
import { umemFrames, xskRings } from '../uplink/xsk/sizing.ts';

export type Log = (event: Record<string, unknown>) => void;

export interface WorkloadState {
  connection: string;
  iface: string;
  driver: 'afxdp' | 'afpacket';
  reasons: DecisionReason[];
  /** How the redirect-all XDP program is attached to it (AF_XDP). */
  xdp?: string;
}

export interface NextHopState {
  connection: string;
  state: 'ok' | 'no-route' | 'unknown';
  via?: string;
  ifindex?: number;
  reason?: string;
}

interface WorkloadSetup extends WorkloadState {
  /** The interface's MTU when it was set up (PortPlan.mtu). */
  mtu: number;
  /** Set up for a WireGuard connection (worker 0 only, AF_PACKET without fanout). */
  wireguard: boolean;
  loaded?: LoadedRedirectAll;
  attachment?: XdpAttachment;
  fanoutGroup?: number;
}

export interface ForwarderOptions {
  log?: Log;
  /** Frames held per connection while its next hop resolves (default 32), and how long (3000 ms). */
  waitFrames?: number;
  waitTimeoutMs?: number;
  batchSize?: number;
  readyTimeoutMs?: number;
  /** A worker died: the forwarder can no longer serve its queue (the caller decides: stop). */
  onWorkerDeath?: (worker: number, why: string) => void;
  /** The uplink went away or lost its program; `code` says which. */
  onUplinkLost?: (code: string, message: string) => void;
  /** The mirror's subscription died (fatal: the next hops can no longer be followed). */
  onMirrorFailed?: (err: Error) => void;
}

export interface ApplyResult {
  added: string[];
  removed: string[];
  changed: string[];
}

const RESOLVE_TIMEOUT_MS = 3000;
let fanoutSeq = 0;

/** The first global (scope 0, not link-local) address of `family` on `ifindex`: the default tunnel source. */
export function firstGlobalAddress(mirror: Mirror, ifindex: number, family: 4 | 6): string | undefined {
  for (const a of mirror.tables.addrs.values()) {
    if (a.ifindex !== ifindex || a.family !== family || a.scope !== 0) continue;
    if (family === 6 && a.address.toLowerCase().startsWith('fe80')) continue;
    return a.address;
  }
  return undefined;
}

function closeWorkloads(ws: Iterable<WorkloadSetup>): void {
  for (const w of ws) {
    try {
      w.attachment?.close();
    } finally {
      w.loaded?.close();
    }
  }
}

const sameConfig = (a: ConnectionConfig, b: ConnectionConfig): boolean => JSON.stringify(a) === JSON.stringify(b);

/** Whether an interface of that name exists in this namespace, as the mirror sees it. */
function hasLink(mirror: Mirror, name: string): boolean {
  for (const l of mirror.tables.links.values()) if (l.name === name) return true;
  return false;
}

/** Interfaces' MTUs by name, from the mirror's link table (links that reported one). */
function linkMtus(mirror: Mirror): Map<string, number> {
  const mtus = new Map<string, number>();
  for (const l of mirror.tables.links.values()) if (l.mtu !== 0) mtus.set(l.name, l.mtu);
  return mtus;
}

export class Forwarder {
  private stopping: Promise<CounterValues> | undefined;
  private readonly resolving = new Set<number>();
  private nh: NextHopTable;
  private nhState: NextHopState[];
  private readonly unsubscribe: (() => void)[] = [];
  private finalCounters: CounterValues | undefined;
  /** Changes run one at a time. */
  private chain: Promise<unknown> = Promise.resolve();
  private lost = false;
  private following = false;
  /** Every configured connection (the running ones are `config.connections`; see waiting()). */
  desired: ConnectionConfig[] = [];
  /** Our XDP program on the uplink (AF_XDP), to notice it detached or replaced. */
  uplinkProgId: number | undefined;
  /** The uplink's operational state as last seen; a change is logged (`link-down`, `link-up`). */
  private linkUp = true;

  private constructor(
    public config: PinholeConfig,
    readonly uplink: IfaceInfo,
    readonly host: UplinkHost,
    /** One per connection: VXLAN connections, then WireGuard ones (connection index order). */
    public workloads: WorkloadSetup[],
    public connections: VxlanConnectionPlan[],
    public wireguard: WgConnectionPlan[],
    readonly supervisor: Supervisor,
    readonly mirror: Mirror,
    nhBuffer: SharedArrayBuffer,
    private readonly release: () => void,
    private readonly opts: ForwarderOptions,
  ) {
    this.nh = new NextHopTable(nhBuffer);
    if (mirror.tables.links.get(uplink.index)?.operUp === false) {
      this.linkUp = false;
      this.log({ level: 'warn', event: 'link-down', iface: uplink.name, message: `${uplink.name} is down` });
    }
    this.nhState = targetsOf(connections, wireguard, this.learned).map((k) => ({ connection: k.name, state: 'unknown' }));
    this.wgGuards = new WgGuards(wireguard, opts.log ?? (() => undefined));
    this.unsubscribe.push(
      mirror.onChange((e) => {
        if (e.table === 'link' || e.table === 'resync') {
          this.watchUplink();
          this.followWorkloads();
        }
        if (e.table === 'route' || e.table === 'resync' || e.table === 'link' || e.table === 'addr') this.updateNextHops();
      }),
      mirror.onError((err, fatal) => {
        this.log({ level: fatal ? 'error' : 'warn', event: 'mirror', code: (err as { code?: string }).code, message: err.message });
        if (fatal) opts.onMirrorFailed?.(err);
      }),
    );
    this.updateNextHops();
    // Warm the neighbour entries now rather than on the first frame.
    for (const k of this.targets()) this.resolve(k.index);
    // A change while we started (the MTU read for the plans, the program attached) sent no event
    // we subscribed to: look once, after the owner has this forwarder (it handles a loss).
    setImmediate(() => this.watchUplink()).unref();
  }

  /** WireGuard peers' endpoints learned from the dataplane (roaming), by connection name. */
  private readonly learned = new Map<string, string>();
  private wgGuards: WgGuards;

  /** Every connection as the next-hop logic sees it (VXLAN, then WireGuard). */
  private targets(): Target[] {
    return targetsOf(this.connections, this.wireguard, this.learned);
  }

  /** Worker 0 saw a WireGuard peer's endpoint change: follow it with the next hop. */
  endpointChanged(index: number, endpoint: string): void {
    const k = this.wireguard.find((w) => w.index === index);
    if (!k || this.stopping) return;
    if (this.learned.get(k.name) === endpoint) return;
    this.learned.set(k.name, endpoint);
    this.log({ level: 'info', event: 'wireguard-endpoint', connection: k.name, endpoint });
    const t = this.targets().find((x) => x.index === index);
    if (t && this.publishNextHop(t, this.nh, this.nhState) && this.nhState[index]!.state === 'ok') this.resolve(index);
  }

  /** Every UDP port pinhole receives tunnel traffic on (VXLAN in the pinhole's map, WireGuard guarded). */
  get ports(): number[] {
    return [...new Set([...this.host.spec.ports, ...this.wireguard.map((k) => k.listenPort)])].sort((a, b) => a - b);
  }

  private get log(): Log {
    return this.opts.log ?? (() => undefined);
  }

  static async start(config: PinholeConfig, opts: ForwarderOptions = {}): Promise<Forwarder> {
    const log = opts.log ?? (() => undefined);
    const uplink = requireInterface(config.uplink.interface);
    const mirror = await Mirror.open();
    const desired = config.connections;
    // A workload interface that does not exist (yet, or any more: a pod being replaced) does not
    // keep the others from running: its connection waits, and starts when the interface appears.
    config = { ...config, connections: desired.filter((k) => hasLink(mirror, k.local.interface)) };
    for (const k of desired) {
      if (!config.connections.includes(k)) {
        log({
          level: 'warn',
          event: 'connection-waiting',
          connection: k.name,
          iface: k.local.interface,
          message: `interface ${k.local.interface} not found; the connection starts when it appears`,
        });
      }
    }
    try {
      const locals = config.connections.map((k) => requireInterface(k.local.interface));
      const link = mirror.tables.links.get(uplink.index);
      if (!link?.mac) throw new PinholeError('ERR_UPLINK_NO_MAC', `${uplink.name} has no Ethernet address`);
      const connections = connectionPlans(config, mirror, uplink, link.mac);
      const wireguard = wireguardPlans(config, mirror, uplink, link.mac, connections.length);
      const nhBuffer = new SharedArrayBuffer(nextHopTableBytes(connections.length + wireguard.length));
      let onMiss: (conn: number) => void = () => undefined;
      let onEndpoint: (conn: number, endpoint: string) => void = () => undefined;
      const ordered = orderedConnections(config);
      const { host, started, release } = await startOnUplink(
        {
          iface: uplink.name,
          mode: config.uplink.mode,
          ports: vxlanPorts(config),
          addresses: specOf(connections).addresses,
          ...(config.uplink.queues !== undefined ? { queues: config.uplink.queues } : {}),
          log,
        },
        async (h) => {
          const cpus = config.uplink.cpus;
          if (cpus && cpus.length < h.queues) {
            // Worker i runs on cpus[i mod n]: some share a CPU, and a woken one waits for the other's time slice.
            log({
              level: 'warn',
              event: 'workers-share-cpus',
              queues: h.queues,
              cpus,
              message: `${h.queues} workers (one per queue) on ${cpus.length} CPU${cpus.length === 1 ? '' : 's'} (uplink.cpus): workers sharing a CPU wait for each other; give each its own, or as many RX queues as CPUs`,
            });
          }
          const spinUs = workerSpinUs(config.uplink, h.queues);
          if (spinUs > 0) {
            // Polling costs CPU between bursts of traffic: say so, and whether it was asked for.
            log({
              level: 'info',
              event: 'workers-poll',
              spinUs,
              configured: config.uplink.spinUs !== undefined,
              message: `workers poll their rings ${spinUs} µs after their last frame before they sleep (uplink.spinUs${config.uplink.spinUs === undefined ? ': the default when uplink.cpus gives each worker a CPU' : ''}); pinhole_engine_spin_seconds_total counts the CPU it takes`,
            });
          }
          const workloads = setUpWorkloads(
            h,
            ordered,
            ordered.map((k) => locals[config.connections.indexOf(k)]!),
          );
          try {
            const sup = await Supervisor.start(vxlanPlans(h, h.spec, workloads, connections, wireguard, opts, config.uplink), {
              neighbours: mirror.sharedNeighbours,
              nexthops: nhBuffer,
              readyTimeoutMs: opts.readyTimeoutMs ?? 15_000,
              onMiss: (_w, conn) => onMiss(conn),
              onEndpoint: (_w, conn, endpoint) => onEndpoint(conn, endpoint),
              onDeath: (w, why) => opts.onWorkerDeath?.(w, why),
            });
            return { workloads, sup };
          } catch (err) {
            closeWorkloads(workloads);
            throw err;
          }
        },
      );
      let f: Forwarder;
      try {
        f = new Forwarder(config, uplink, host, started.workloads, connections, wireguard, started.sup, mirror, nhBuffer, release, opts);
      } catch (err) {
        await started.sup.stop();
        closeWorkloads(started.workloads);
        host.close();
        release();
        throw err;
      }
      onMiss = (conn) => f.resolve(conn);
      onEndpoint = (conn, endpoint) => f.endpointChanged(conn, endpoint);
      f.desired = [...desired];
      if (host.mode === 'afxdp') f.uplinkProgId = requireInterface(uplink.name).xdp.progId;
      return f;
    } catch (err) {
      await mirror.close();
      throw err;
    }
  }

  /**
   * Replaces the connection set with `next` (validated by the caller: names, interfaces and
   * (remote, port, vni) unique). Only what differs is touched; on failure nothing changes.
   */
  apply(next: readonly ConnectionConfig[]): Promise<ApplyResult> {
    const run = this.chain.then(async () => {
      const before = this.desired;
      this.desired = [...next];
      try {
        return await this.applyNow(this.present(next));
      } catch (err) {
        // Refused: the set stays what it was. A refused connection left in `desired` would be
        // tried again at the next link event, and could start later although its caller was told no.
        this.desired = before;
        throw err;
      }
    });
    this.chain = run.catch(() => undefined);
    return run;
  }

  /**
   * Workload interfaces (one set-up each) whose MTU is no longer the one their ports opened with.
   * A port caps what it sends at its interface's MTU (tx_too_big) and an AF_XDP port's frame size
   * follows from it: such a connection is changed like any other (its ports open again, the
   * worker's port key holds the MTU), the others are not touched.
   */
  private mtuMoved(): { w: WorkloadSetup; mtu: number }[] {
    if (this.workloads.length === 0) return [];
    // One pass over the links (every link event of a node with many pods calls this).
    const mtus = linkMtus(this.mirror);
    const seen = new Set<string>();
    const out: { w: WorkloadSetup; mtu: number }[] = [];
    for (const w of this.workloads) {
      if (seen.has(w.iface)) continue;
      seen.add(w.iface);
      const mtu = mtus.get(w.iface);
      if (mtu === undefined || mtu === w.mtu) {
        this.refusedMtu.delete(w.iface);
        continue;
      }
      if (w.driver === 'afxdp' && mtu > AFXDP_MAX_MTU) {
        // AF_XDP cannot serve it (only generic XDP lets a veth go there): the connection keeps
        // its ports and their cap; said once per refused MTU, and no change is made for it, so
        // that the other connections' changes still apply.
        if (this.refusedMtu.get(w.iface) !== mtu) {
          this.refusedMtu.set(w.iface, mtu);
          this.log({
            level: 'warn',
            event: 'workload-mtu-refused',
            code: 'ERR_WORKLOAD_MTU',
            iface: w.iface,
            from: w.mtu,
            to: mtu,
            message: `${w.iface} has MTU ${mtu}; local.mode afxdp serves MTUs up to ${AFXDP_MAX_MTU}: its ports keep the cap of ${w.mtu} (use local.mode auto)`,
          });
        }
        continue;
      }
      out.push({ w, mtu });
    }
    return out;
  }

  /** Workload interfaces whose MTU AF_XDP cannot serve, and that MTU (logged once each). */
  private readonly refusedMtu = new Map<string, number>();

  /** The connections of `all` whose workload interface exists now. */
  private present(all: readonly ConnectionConfig[]): ConnectionConfig[] {
    return all.filter((k) => hasLink(this.mirror, k.local.interface));
  }

  /** Why a waiting connection whose interface exists could not start (its last attempt), by name. */
  private readonly failed = new Map<string, string>();

  /** Why connection `name` is waiting: its last failed start, or undefined (no interface yet). */
  waitingReason(name: string): string | undefined {
    return this.failed.get(name);
  }

  /** Connections configured but waiting for their workload interface. */
  waiting(): ConnectionConfig[] {
    const active = new Set(this.config.connections.map((k) => k.name));
    return this.desired.filter((k) => !active.has(k.name));
  }

  /**
   * A link appeared or went: when the set of connections whose workload interface exists
   * changes, apply it (a pod's veth deleted stops only its connection; re-created, it starts
   * again). Runs through the same queue as every other change.
   */
  private followWorkloads(): void {
    if (this.stopping) return;
    const want = this.present(this.desired)
      .map((k) => k.name)
      .join('\0');
    const have = this.config.connections.map((k) => k.name).join('\0');
    if ((want === have && this.mtuMoved().length === 0) || this.following) return;
    this.following = true;
    const run = this.chain.then(async () => {
      this.following = false;
      const next = this.present(this.desired);
      // By name: an applied change replaces the objects, not the connection.
      const gone = this.config.connections.filter((k) => !next.some((x) => x.name === k.name)).map((k) => k.name);
      const back = next.filter((k) => !this.config.connections.some((x) => x.name === k.name)).map((k) => k.name);
      if (gone.length) this.log({ level: 'warn', event: 'connection-down', connections: gone, message: 'workload interface gone' });
      for (const { w, mtu: to } of this.mtuMoved()) {
        this.log({
          level: 'info',
          event: 'workload-mtu',
          iface: w.iface,
          from: w.mtu,
          to,
          connections: this.workloads.filter((x) => x.iface === w.iface).map((x) => x.connection),
          message: `${w.iface}'s MTU changed from ${w.mtu} to ${to}: its ports open again for the new MTU`,
        });
      }
      try {
        await this.applyNow(next);
        for (const k of next) this.failed.delete(k.name);
        if (back.length) this.log({ level: 'info', event: 'connection-up', connections: back });
      } catch (err) {
        const e = err as { code?: string; message: string };
        this.log({ level: 'error', event: 'connection-change-failed', code: e.code, message: e.message });
        await this.followOneByOne(next);
      }
    });
    this.chain = run.catch(() => undefined);
  }

  /**
   * The whole set could not be applied (one returning connection cannot start: `local.mode:
   * afxdp` on a re-created veth with too few queues, say): apply what went away and what stays,
   * then bring each returning connection back on its own, so that one pod never holds up the
   * others. A connection that still fails stays waiting, with the reason in its status; the next
   * link event tries it again.
   */
  private async followOneByOne(next: readonly ConnectionConfig[]): Promise<void> {
    const running = (k: ConnectionConfig): boolean => this.config.connections.some((x) => x.name === k.name);
    try {
      await this.applyNow(next.filter(running));
    } catch (err) {
      const e = err as { code?: string; message: string };
      this.log({ level: 'error', event: 'connection-change-failed', code: e.code, message: e.message });
      return;
    }
    for (const k of next) {
      if (running(k)) continue;
      try {
        await this.applyNow([...this.config.connections, k]);
        this.failed.delete(k.name);
        this.log({ level: 'info', event: 'connection-up', connections: [k.name] });
      } catch (err) {
        const e = err as { code?: string; message: string };
        this.failed.set(k.name, `${e.code ?? 'error'}: ${e.message}`);
        this.log({ level: 'error', event: 'connection-failed', connection: k.name, code: e.code, message: e.message });
      }
    }
  }

  private async applyNow(next: readonly ConnectionConfig[]): Promise<ApplyResult> {
    if (this.stopping) throw new PinholeError('ERR_API_BUSY', 'the forwarder is stopping');
    const before = new Map(this.config.connections.map((k) => [k.name, k]));
    const after = new Map(next.map((k) => [k.name, k]));
    const result: ApplyResult = { added: [], removed: [], changed: [] };
    const moved = new Map(this.mtuMoved().map(({ w, mtu }) => [w.iface, mtu]));
    const mtuOnly = new Set<string>();
    for (const k of next) {
      const old = before.get(k.name);
      if (!old) result.added.push(k.name);
      else if (!sameConfig(old, k)) result.changed.push(k.name);
      else if (moved.has(k.local.interface)) {
        // Only its interface's MTU: its ports open again, its peer state (a learned endpoint) stays.
        result.changed.push(k.name);
        mtuOnly.add(k.name);
      }
    }
    for (const name of before.keys()) if (!after.has(name)) result.removed.push(name);
    if (result.added.length + result.removed.length + result.changed.length === 0) return result;

    const config: PinholeConfig = { ...this.config, connections: [...next] };
    const link = this.mirror.tables.links.get(this.uplink.index);
    const mac = link?.mac ?? this.connections[0]?.srcMac ?? this.wireguard[0]?.srcMac ?? '00:00:00:00:00:00';
    const connections = connectionPlans(config, this.mirror, this.uplink, mac);
    const wireguard = wireguardPlans(config, this.mirror, this.uplink, mac, connections.length);
    // Workload set-ups are per interface: one whose interface stays in use by the same tunnel kind,
    // opened the same way (AF_XDP or not: local.mode), is kept as it is.
    const byIface = new Map(this.workloads.map((w) => [w.iface, w]));
    const kept = new Set<WorkloadSetup>();
    const fresh: WorkloadSetup[] = [];
    const workloads: WorkloadSetup[] = [];
    try {
      for (const k of orderedConnections(config)) {
        const have = byIface.get(k.local.interface);
        if (have && have.wireguard === Boolean(k.wireguard) && (have.driver === 'afxdp') === (k.local.mode === 'afxdp')) {
          // Its MTU as it is now: the ports open again if it changed (mtuMoved leaves out an
          // MTU AF_XDP cannot serve, refusedMtu: those ports stay as they are).
          const mtu = moved.get(have.iface) ?? have.mtu;
          kept.add(have);
          workloads.push({ ...have, connection: k.name, mtu });
          continue;
        }
        const [w] = setUpWorkloads(this.host, [k], [requireInterface(k.local.interface)]);
        fresh.push(w!);
        workloads.push(w!);
      }
    } catch (err) {
      closeWorkloads(fresh);
      throw err;
    }
    const oldSpec = this.host.spec;
    const spec = specOf(connections, vxlanPorts(config));
    // Learned endpoints stay for the connections that keep their peer.
    const learned = new Map(
      [...this.learned].filter(([name]) => wireguard.some((w) => w.name === name && (!result.changed.includes(name) || mtuOnly.has(name)))),
    );
    const targets = targetsOf(connections, wireguard, learned);
    const nhBuffer = new SharedArrayBuffer(nextHopTableBytes(targets.length));
    const nh = new NextHopTable(nhBuffer);
    const nhState: NextHopState[] = targets.map((k) => ({ connection: k.name, state: 'unknown' }));
    let wgGuards: WgGuards | undefined;
    try {
      wgGuards = new WgGuards(wireguard, this.log, this.wgGuards);
      // Union first: old and new traffic both enter while the workers switch.
      this.host.setSpec({
        ports: [...new Set([...oldSpec.ports, ...spec.ports])],
        addresses: [...new Set([...oldSpec.addresses, ...spec.addresses])],
      });
      for (const k of targets) this.publishNextHop(k, nh, nhState);
      await this.supervisor.reconfigure(vxlanPlans(this.host, spec, workloads, connections, wireguard, this.opts, this.config.uplink), {
        nexthops: nhBuffer,
      });
    } catch (err) {
      try {
        this.host.setSpec(oldSpec);
        wgGuards?.closeExcept(this.wgGuards);
      } finally {
        closeWorkloads(fresh);
      }
      throw err;
    }
    this.host.setSpec(spec);
    this.wgGuards.closeExcept(wgGuards);
    this.wgGuards = wgGuards;
    closeWorkloads(this.workloads.filter((w) => !kept.has(w)));
    this.config = config;
    this.connections = connections;
    this.wireguard = wireguard;
    this.learned.clear();
    for (const [k, v] of learned) this.learned.set(k, v);
    this.workloads = workloads;
    this.nh = nh;
    this.nhState = nhState;
    // Route changes that arrived while the workers switched went to the old table.
    this.updateNextHops();
    for (const k of targets) this.resolve(k.index);
    this.log({ level: 'info', event: 'connections-changed', ...result });
    return result;
  }

  /** The uplink's operational state (`down`: no carrier or admin down; sockets and program stay). */
  get uplinkLink(): 'up' | 'down' {
    return this.linkUp ? 'up' : 'down';
  }

  /** Checks the uplink against the mirror's link table; reports loss once, and link down/up. */
  private watchUplink(): void {
    if (this.lost || this.stopping) return;
    const l = this.mirror.tables.links.get(this.uplink.index);
    let code: string | undefined;
    let message = '';
    if (!l || l.name !== this.uplink.name) {
      code = 'ERR_UPLINK_GONE';
      message = `${this.uplink.name} was deleted or moved to another network namespace`;
    } else if (this.host.mode === 'afxdp' && this.uplinkProgId !== undefined && l.xdp !== undefined) {
      const ids = [l.xdp.progId, l.xdp.driveProgId, l.xdp.skbProgId];
      if (!ids.includes(this.uplinkProgId)) {
        code = 'ERR_UPLINK_PROGRAM_DETACHED';
        message =
          l.xdp.attached === 'none'
            ? `the pinhole XDP program was detached from ${this.uplink.name} behind our back`
            : `the pinhole XDP program on ${this.uplink.name} was replaced behind our back (program ${l.xdp.progId ?? '?'} is attached now)`;
      }
    }
    if (!code && l && l.mtu !== 0 && l.mtu !== this.uplink.mtu) {
      // The mode (AF_XDP serves MTUs up to AFXDP_MAX_MTU), the ports' slot sizes and the
      // encapsulation's size limit all follow from the MTU at start: start again with the new one.
      code = 'ERR_UPLINK_MTU_CHANGED';
      message = `${this.uplink.name}'s MTU changed from ${this.uplink.mtu} to ${l.mtu}; starting again for the new MTU`;
    }
    if (!code) {
      if (l && l.operUp !== this.linkUp) {
        this.linkUp = l.operUp;
        this.log(
          l.operUp
            ? { level: 'info', event: 'link-up', iface: l.name }
            : { level: 'warn', event: 'link-down', iface: l.name, message: `${l.name} is down; waiting for it to come back` },
        );
      }
      return;
    }
    this.lost = true;
    this.log({ level: 'error', event: 'uplink-lost', code, message });
    this.opts.onUplinkLost?.(code, message);
  }

  private computeNextHop(k: Target): { value: NextHopValue; via?: string; reason?: string } {
    const none = (reason: string) => ({
      reason,
      value: { state: NH_NO_ROUTE, family: k.family, ifindex: 0, words: [0, 0, 0, 0] as [number, number, number, number] },
    });
    // A WireGuard peer without an endpoint yet: nothing to send to until it speaks first.
    if (k.remote === undefined) return { value: { state: NH_UNKNOWN, family: k.family, ifindex: 0, words: [0, 0, 0, 0] } };
    const route = this.mirror.tables.lookupRoute(k.remote);
    if (!route) return none(`no route to ${k.remote}`);
    if (route.type !== RTN_UNICAST) return none(`the route to ${k.remote} is not unicast (type ${route.type})`);
    const hop = nextHopOf(route, k.remote);
    if (!hop) return none(`the route to ${k.remote} has no output interface`);
    if (hop.ifindex !== this.uplink.index)
      return none(`the route to ${k.remote} leaves through ifindex ${hop.ifindex}, not the uplink ${this.uplink.name}`);
    return { via: hop.ip, value: { state: NH_OK, family: hop.family, ifindex: hop.ifindex, words: addressWords(parseIP(hop.ip).bytes) } };
  }

  /** Publishes connection k's next hop into `nh` if it changed; returns whether it did. */
  private publishNextHop(k: Target, nh: NextHopTable, states: NextHopState[]): boolean {
    const v = this.computeNextHop(k);
    const prev = states[k.index]!;
    const next: NextHopState =
      v.value.state === NH_OK
        ? { connection: k.name, state: 'ok', via: v.via!, ifindex: v.value.ifindex }
        : v.value.state === NH_UNKNOWN
          ? { connection: k.name, state: 'unknown', reason: 'no endpoint yet: waiting for the peer to send first' }
          : { connection: k.name, state: 'no-route', reason: v.reason! };
    if (prev.state === next.state && prev.via === next.via && prev.ifindex === next.ifindex && prev.reason === next.reason) return false;
    nh.write(k.index, v.value);
    states[k.index] = next;
    this.log({ level: next.state === 'ok' ? 'info' : 'warn', event: 'nexthop', ...next });
    return true;
  }

  /** Recomputes every connection's next hop from the mirror's routes; publishes changes. */
  private updateNextHops(): void {
    for (const k of this.targets())
      if (this.publishNextHop(k, this.nh, this.nhState) && this.nhState[k.index]!.state === 'ok') this.resolve(k.index);
  }

  /**
   * A worker asked about connection `i`: its next hop has no usable neighbour entry, or the
   * entry is STALE (the kernel never sees our traffic, so it never re-confirms it). Either way
   * one NTF_USE request makes the kernel (re)resolve it; the mirror sees the result and the
   * worker picks it up from the shared neighbour table.
   */
  resolve(i: number): void {
    const st = this.nhState[i];
    if (!st || st.state !== 'ok' || this.resolving.has(i) || this.stopping) return;
    const k = this.targets()[i];
    if (!k || k.remote === undefined) return;
    this.resolving.add(i);
    const known = this.mirror.tables.getNeighbour(st.ifindex!, st.via!);
    const work =
      known && known.mac
        ? rtnlRequest(neighUseRequest(parseIP(st.via!).family, st.ifindex!, st.via!)).then(() => undefined)
        : this.mirror.resolve(k.remote, { timeoutMs: RESOLVE_TIMEOUT_MS }).then((r) => {
            this.log({ level: 'info', event: 'resolved', connection: k.name, via: r.nexthop.ip, mac: r.mac, source: r.source });
          });
    work
      .catch((err: { code?: string; message: string }) =>
        this.log({ level: 'warn', event: 'resolve', connection: k.name, code: err.code, message: err.message }),
      )
      .finally(() => this.resolving.delete(i));
  }

  nextHops(): NextHopState[] {
    return this.nhState.map((s) => ({ ...s }));
  }

  /** Counters added up over the workers (`conn:<name>`, `decap`, `encap`, `nexthop`, `port:*`, `engine`). */
  counters(): CounterValues {
    return this.finalCounters ?? this.supervisor.totals();
  }

  describe(): Record<string, unknown> {
    return {
      mode: this.host.mode,
      xdpMode: this.host.xdpMode ?? null,
      reasons: this.host.reasons,
      uplink: this.uplink.name,
      queues: this.host.queues,
      ports: this.ports,
      tunnelAddresses: [...new Set([...this.host.spec.addresses, ...this.wireguard.flatMap((k) => [k.local4, k.local6].filter(Boolean))])],
      workloads: this.workloads.map((w) => ({
        connection: w.connection,
        iface: w.iface,
        driver: w.driver,
        reasons: w.reasons,
        ...(w.xdp ? { xdp: w.xdp } : {}),
      })),
      connections: this.connections.map((k) => ({ name: k.name, vni: k.vni, local: k.local, remote: k.remote, port: k.port })),
      // Public keys only: private and preshared keys never leave the worker plan.
      wireguard: this.wireguard.map((k) => this.wireguardStatus(k)),
    };
  }

  /** What an operator may see of a WireGuard connection (no secrets). */
  wireguardStatus(k: WgConnectionPlan): Record<string, unknown> {
    const endpoint = this.learned.get(k.name) ?? k.peer.endpoint;
    return {
      name: k.name,
      listenPort: k.listenPort,
      publicKey: encodeKey(publicKeyOf(k.keys.privateKey)),
      peer: { publicKey: k.peer.publicKey, endpoint: endpoint ?? null, allowedIPs: k.peer.allowedIPs },
      local: [k.local4, k.local6].filter(Boolean),
    };
  }

  /** Stops workers, then undoes every host change. Idempotent; returns the final counters. */
  stop(): Promise<CounterValues> {
    this.stopping ??= (async () => {
      await this.chain;
      for (const u of this.unsubscribe) u();
      const errors: unknown[] = [];
      const step = async (fn: () => unknown): Promise<void> => {
        try {
          await fn();
        } catch (err) {
          errors.push(err);
        }
      };
      await step(() => this.supervisor.stop());
      await step(() => (this.finalCounters = this.supervisor.totals()));
      await step(() => closeWorkloads(this.workloads));
      await step(() => this.wgGuards.closeExcept(undefined));
      await step(() => this.host.close());
      await step(() => this.release());
      await step(() => this.mirror.close());
      if (errors.length > 0) {
        throw new PinholeError('ERR_FORWARDER_TEARDOWN', `stopping: ${errors.map((e) => (e as Error).message).join('; ')}`, {
          cause: errors[0],
        });
      }
      return this.finalCounters ?? {};
    })();
    return this.stopping;
  }
}

/** The connections as the workers see them; throws ERR_TUNNEL_NO_ADDRESS. */
function connectionPlans(config: PinholeConfig, mirror: Mirror, uplink: IfaceInfo, mac: string): VxlanConnectionPlan[] {
  const tunnel = { 4: config.uplink.tunnelAddress, 6: config.uplink.tunnelAddress6 } as Record<4 | 6, string | undefined>;
  const vx = config.connections.filter((k) => k.vxlan).map((k) => ({ name: k.name, local: k.local, vxlan: k.vxlan! }));
  for (const fam of [4, 6] as const) {
    if (!vx.some((k) => k.vxlan.family === fam)) continue;
    tunnel[fam] ??= firstGlobalAddress(mirror, uplink.index, fam);
    if (!tunnel[fam]) {
      throw new PinholeError(
        'ERR_TUNNEL_NO_ADDRESS',
        `${uplink.name} has no global IPv${fam} address for the IPv${fam} connections; set uplink.tunnelAddress${fam === 6 ? '6' : ''}`,
      );
    }
  }
  return vx.map((k, index) => ({
    index,
    name: k.name,
    vni: k.vxlan.vni,
    family: k.vxlan.family,
    local: canonicalIp(tunnel[k.vxlan.family]!),
    remote: k.vxlan.remote,
    port: k.vxlan.port,
    ttl: k.vxlan.ttl,
    srcMac: mac,
    maxInnerFrame: uplink.mtu + 14 - (k.vxlan.family === 4 ? OUTER_V4_BYTES : OUTER_V6_BYTES),
    workloadPort: `wl:${k.name}`,
  }));
}

/** A connection as the next-hop logic sees it: where its tunnel packets go. */
interface Target {
  index: number;
  name: string;
  /** Absent: a WireGuard peer with no endpoint yet. */
  remote?: string;
  family: 4 | 6;
}

function targetsOf(vx: readonly VxlanConnectionPlan[], wg: readonly WgConnectionPlan[], learned: ReadonlyMap<string, string>): Target[] {
  const out: Target[] = vx.map((k) => ({ index: k.index, name: k.name, remote: k.remote, family: k.family }));
  for (const k of wg) {
    const ep = learned.get(k.name) ?? k.peer.endpoint;
    if (ep === undefined) {
      out.push({ index: k.index, name: k.name, family: 4 });
      continue;
    }
    const e = Endpoint.parseHostPort(ep);
    out.push({ index: k.index, name: k.name, remote: canonicalIp(e.address), family: e.family });
  }
  return out;
}

/** Connections in connection-index order: VXLAN ones first, then WireGuard ones (each in file order). */
function orderedConnections(config: PinholeConfig): ConnectionConfig[] {
  return [...config.connections.filter((k) => !k.wireguard), ...config.connections.filter((k) => k.wireguard)];
}

/** The UDP ports the pinhole redirects to the workers: the VXLAN ones (WireGuard's go to worker 0's own socket). */
function vxlanPorts(config: PinholeConfig): number[] {
  return [...new Set(config.connections.filter((k) => k.vxlan).map((k) => tunnelPortOf(k)))].sort((a, b) => a - b);
}

/**
 * The WireGuard connections as worker 0 sees them (indexes after the `first` VXLAN ones). Reads
 * the key files (ERR_WG_KEY_FILE_MODE and friends) and the local tunnel addresses of both
 * families; a configured endpoint needs one of its family (ERR_TUNNEL_NO_ADDRESS).
 */
function wireguardPlans(config: PinholeConfig, mirror: Mirror, uplink: IfaceInfo, mac: string, first: number): WgConnectionPlan[] {
  const wg = config.connections.filter((k) => k.wireguard);
  if (wg.length === 0) return [];
  const local = {
    4: config.uplink.tunnelAddress ?? firstGlobalAddress(mirror, uplink.index, 4),
    6: config.uplink.tunnelAddress6 ?? firstGlobalAddress(mirror, uplink.index, 6),
  };
  return wg.map((k, i) => {
    const w = k.wireguard!;
    if (w.peer.endpoint) {
      const fam = Endpoint.parseHostPort(w.peer.endpoint).family;
      if (!local[fam]) {
        throw new PinholeError(
          'ERR_TUNNEL_NO_ADDRESS',
          `${uplink.name} has no global IPv${fam} address for connection ${k.name} (endpoint ${w.peer.endpoint}); set uplink.tunnelAddress${fam === 6 ? '6' : ''}`,
        );
      }
    }
    const keys: WgConnectionPlan['keys'] = { privateKey: readKeyFile(w.privateKeyFile, `connection ${k.name}: private key`) };
    if (w.peer.presharedKeyFile) keys.presharedKey = readKeyFile(w.peer.presharedKeyFile, `connection ${k.name}: preshared key`);
    const wl = requireInterface(k.local.interface);
    const wlMac = mirror.tables.links.get(wl.index)?.mac;
    if (!wlMac)
      throw new PinholeError('ERR_WORKLOAD_NO_MAC', `${wl.name} has no Ethernet address (a WireGuard workload interface needs one)`);
    const peer: WgConnectionPlan['peer'] = { publicKey: w.peer.publicKey, allowedIPs: [...w.peer.allowedIPs] };
    if (w.peer.endpoint) peer.endpoint = w.peer.endpoint;
    if (w.peer.persistentKeepalive) peer.persistentKeepalive = w.peer.persistentKeepalive;
    return {
      index: first + i,
      name: k.name,
      listenPort: w.listenPort,
      local4: local[4] ? canonicalIp(local[4]) : '',
      local6: local[6] ? canonicalIp(local[6]) : '',
      srcMac: mac,
      uplinkMtu: uplink.mtu,
      ttl: 64,
      workloadPort: `wl:${k.name}`,
      workloadMac: wlMac,
      peer,
      keys,
      generation: wgGeneration({ w, iface: k.local.interface, mac, mtu: uplink.mtu, local }, keys),
    };
  });
}

/**
 * Port guards for the WireGuard listen ports (the kernel receives those datagrams: see "How
 * frames find their worker"), one per port, bound to our tunnel addresses. A new set takes over
 * the guards of ports it shares with the old one.
 */
class WgGuards {
  readonly byPort = new Map<number, PortGuard>();

  constructor(wg: readonly WgConnectionPlan[], log: Log, old?: WgGuards) {
    try {
      for (const k of wg) {
        if (this.byPort.has(k.listenPort)) continue;
        const have = old?.byPort.get(k.listenPort);
        if (have) {
          this.byPort.set(k.listenPort, have);
          continue;
        }
        const addresses = [k.local4, k.local6].filter(Boolean);
        const g = openPortGuard({ ports: [k.listenPort], addresses });
        this.byPort.set(k.listenPort, g);
        for (const b of g.busy) {
          log({
            level: 'warn',
            event: 'port-busy',
            port: b.port,
            family: b.family,
            holder: b.holder,
            message: `another socket receives on WireGuard port ${b.port}: it gets a copy of this connection's datagrams`,
          });
        }
      }
    } catch (err) {
      this.closeExcept(old);
      throw err;
    }
  }

  /** Closes the guards that `keep` does not hold too. */
  closeExcept(keep: WgGuards | undefined): void {
    for (const [port, g] of this.byPort) if (keep?.byPort.get(port) !== g) g.close();
  }
}

function specOf(connections: readonly VxlanConnectionPlan[], ports: number[] = []): PinholeSpec {
  return { ports, addresses: [...new Set(connections.map((k) => k.local))] };
}

function setUpWorkloads(host: UplinkHost, conns: readonly ConnectionConfig[], locals: readonly IfaceInfo[]): WorkloadSetup[] {
  const out: WorkloadSetup[] = [];
  try {
    conns.forEach((k, i) => {
      const iface = locals[i]!;
      const base = { connection: k.name, iface: iface.name, mtu: iface.mtu, wireguard: Boolean(k.wireguard) };
      const afpacket = (reason: DecisionReason): void => {
        // PACKET_VNET_HDR: the pod keeps TSO and checksum offload; the port splits its
        // super-frames and completes its checksums (dataplane/ports/afpacket.ts).
        out.push({
          ...base,
          driver: 'afpacket',
          reasons: [reason],
          ...(host.queues > 1 && !k.wireguard ? { fanoutGroup: (((process.pid + ++fanoutSeq) & 0xfff) | 0x6000) >>> 0 } : {}),
        });
      };
      if (k.wireguard) {
        afpacket({
          code: 'WORKLOAD_WIREGUARD',
          message: 'WireGuard connections are served by worker 0 alone: one AF_PACKET socket, in no fanout group, reads every queue',
        });
        return;
      }
      if (k.local.mode !== 'afxdp') {
        // auto and afpacket alike. AF_XDP would take the pod's frames before the kernel
        // completes their checksums: with the pod's TX checksum offload on (every pod's
        // default) TCP and UDP would leave with partial checksums and be dropped by the far end.
        afpacket(
          k.local.mode === 'afpacket'
            ? { code: 'WORKLOAD_CONFIGURED', message: 'local.mode is afpacket' }
            : {
                code: 'WORKLOAD_OFFLOAD',
                message:
                  "AF_PACKET with GSO and checksum offload: works with the pod's offloads on; local.mode afxdp is faster for pods with TX checksum offload off",
              },
        );
        return;
      }
      if (host.mode !== 'afxdp') {
        throw new PinholeError('ERR_WORKLOAD_MODE', `${iface.name}: local.mode afxdp needs the uplink in AF_XDP mode (it runs AF_PACKET)`);
      }
      if (iface.mtu > AFXDP_MAX_MTU) {
        throw new PinholeError(
          'ERR_WORKLOAD_MTU',
          `${iface.name} has MTU ${iface.mtu}; local.mode afxdp serves MTUs up to ${AFXDP_MAX_MTU} (a frame must fit one 4 KiB UMEM frame): use local.mode auto`,
        );
      }
      if (iface.rxQueues !== host.queues) {
        throw new PinholeError(
          'ERR_WORKLOAD_QUEUES',
          `${iface.name} has ${iface.rxQueues ?? '?'} RX queues and the uplink ${host.queues} workers; AF_XDP needs one queue per worker (create the veth with numrxqueues/numtxqueues ${host.queues})`,
        );
      }
      let loaded: LoadedRedirectAll | undefined;
      try {
        loaded = loadRedirectAll({ queues: host.queues });
        const attachment = attachRedirectAll(loaded, iface.name, 'auto');
        out.push({ ...base, driver: 'afxdp', reasons: [], loaded, attachment, xdp: `${attachment.mode} XDP via ${attachment.via}` });
      } catch (err) {
        loaded?.close();
        const e = err as { code?: string; message: string };
        throw new PinholeError(
          'ERR_WORKLOAD_AFXDP',
          `${iface.name}: local.mode afxdp could not be set up (${e.code ?? 'error'}: ${e.message})`,
          {
            cause: err,
          },
        );
      }
    });
  } catch (err) {
    closeWorkloads(out);
    throw err;
  }
  return out;
}

function vxlanPlans(
  host: UplinkHost,
  spec: PinholeSpec,
  workloads: readonly WorkloadSetup[],
  connections: readonly VxlanConnectionPlan[],
  wireguard: readonly WgConnectionPlan[],
  opts: ForwarderOptions,
  uplink: Pick<UplinkConfig, 'rings' | 'cpus' | 'spinUs'>,
): WorkerPlan[] {
  const plans: WorkerPlan[] = [];
  // AF_XDP uplink: the configured (or measured default) rings and a UMEM to match (xsk/sizing.ts).
  const rings = xskRings(uplink.rings);
  const cpus = uplink.cpus;
  // Workers with CPUs of their own poll a while after traffic before they sleep (schema.ts).
  const spinUs = workerSpinUs(uplink, host.queues);
  const upRings = host.mode === 'afxdp' ? { rings, frameCount: umemFrames(rings) } : {};
  for (let w = 0; w < host.queues; w++) {
    const ports: PortPlan[] = [
      {
        name: 'uplink',
        role: 'uplink',
        ifname: host.iface.name,
        mtu: host.iface.mtu,
        queue: w,
        driver: host.mode,
        rx: true,
        ...(host.xsksMapFd !== undefined ? { xsksMapFd: host.xsksMapFd } : {}),
        ...(host.mode === 'afpacket'
          ? { filter: { ports: [...spec.ports].sort((a, b) => a - b), addresses: [...spec.addresses].sort() } }
          : {}),
        ...(host.fanoutGroup !== undefined ? { fanoutGroup: host.fanoutGroup } : {}),
        ...upRings,
        // VXLAN connections send pods' super-frames as GSO trains (dataplane/ports/train.ts).
        trains: true,
      },
    ];
    workloads.forEach((wl, i) => {
      if (i >= connections.length) return;
      ports.push({
        name: connections[i]!.workloadPort,
        role: 'workload',
        ifname: wl.iface,
        mtu: wl.mtu,
        queue: w,
        driver: wl.driver,
        rx: true,
        connection: i,
        ...(wl.loaded ? { xsksMapFd: wl.loaded.maps.xsks.fd } : { filter: 'all' as const, offload: true }),
        ...(wl.fanoutGroup !== undefined ? { fanoutGroup: wl.fanoutGroup } : {}),
      });
    });
    const wg = w === 0 ? wireguard : [];
    if (wg.length > 0) {
      // Worker 0's own socket for the WireGuard listen ports (see "How frames find their worker").
      ports.push({
        name: 'wg',
        role: 'uplink',
        ifname: host.iface.name,
        queue: 0,
        driver: 'afpacket',
        rx: true,
        // A TPACKET_V3 block waits for its retire timer when traffic is light: 1 ms instead of 2
        // (measured: ping pod to pod through pinhole ↔ pinhole 2.7 → 1.8 ms, TCP unchanged). A V2
        // ring (the workload ports') hands each datagram over at once (0.4 ms) but cost 13% of
        // WireGuard TCP in per-frame wake-ups.
        retireMs: 1,
        filter: {
          ports: [...new Set(wg.map((k) => k.listenPort))].sort((a, b) => a - b),
          addresses: [...new Set(wg.flatMap((k) => [k.local4, k.local6].filter(Boolean)))].sort(),
        },
      });
      wg.forEach((k, j) => {
        const wl = workloads[connections.length + j]!;
        ports.push({
          name: k.workloadPort,
          role: 'workload',
          ifname: wl.iface,
          mtu: wl.mtu,
          queue: 0,
          driver: 'afpacket',
          rx: true,
          connection: k.index,
          filter: 'all',
          offload: true,
        });
      });
    }
    plans.push({
      worker: w,
      ...(cpus ? { cpu: cpus[w % cpus.length]! } : {}),
      graph: 'vxlan',
      ports,
      connections: [...connections],
      ...(wg.length > 0 ? { wireguard: [...wg] } : {}),
      batchSize: opts.batchSize ?? 64,
      ...(spinUs > 0 ? { spinUs } : {}),
      waitQueue: { frames: opts.waitFrames ?? 32, timeoutMs: opts.waitTimeoutMs ?? 3000 },
    });
  }
  return plans;
}
