/**
 * The forwarder: VXLAN connections between workload interfaces and remote nodes, over the
 * uplink shared with the kernel. This is `pinhole run` minus the command line.
 *
 * Start, in order (anything failing undoes what was done before it):
 *   1. every interface named by the config exists (ERR_IFACE_NOT_FOUND before anything changes);
 *   2. the rtnetlink mirror (links, addresses, routes, neighbours; live);
 *   3. tunnel addresses: `tunnelAddress`/`tunnelAddress6`, else the uplink's first global
 *      address of each family a connection needs (ERR_TUNNEL_NO_ADDRESS);
 *   4. the uplink host side with its fallback (uplink/host.ts): the pinhole opens exactly the
 *      connections' UDP ports, to our tunnel addresses only; then, inside that, the workload
 *      interfaces and the workers — so a failure there in `auto` also falls back to AF_PACKET:
 *        workload interfaces follow the uplink's driver: AF_XDP (the redirect-all program via
 *        bpf_link, one socket per queue) when the uplink runs AF_XDP and the workload interface
 *        has exactly as many RX queues as there are workers; AF_PACKET otherwise, with a reason;
 *   5. next hops published to the workers (NextHopTable) and kept current from mirror events;
 *      a worker's miss asks the kernel to resolve (NTF_USE through the mirror).
 *
 * How frames find their worker. Worker w serves uplink RX queue w (AF_XDP: the pinhole
 * redirects queue w's tunnel frames to worker w's socket; AF_PACKET: a fanout group hashes
 * flows over the workers) and, on each workload interface, queue w (AF_XDP: the redirect-all
 * program redirects queue w to worker w; AF_PACKET: a fanout group per interface). A frame is
 * transmitted by the worker that received it: decapsulated frames leave through that worker's
 * socket on the workload interface, encapsulated frames through its uplink socket.
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
import { attachPassThrough, attachRedirectAll, loadRedirectAll, type LoadedRedirectAll } from '../kernel/workload.ts';
import type { XdpAttachment } from '../kernel/xdp-attach.ts';
import { tunnelPorts, type ConnectionConfig, type PinholeConfig } from '../config/index.ts';
import { PinholeError } from '../sys/index.ts';
import { startOnUplink, type UplinkHost } from '../uplink/host.ts';
import type { DecisionReason } from '../uplink/decide.ts';
import type { CounterValues } from '../dataplane/counters.ts';
import { addressWords, NH_NO_ROUTE, NH_OK, NextHopTable, nextHopTableBytes, type NextHopValue } from '../dataplane/nexthop-table.ts';
import type { PortPlan, VxlanConnectionPlan, WorkerPlan } from '../dataplane/plan.ts';
import { Supervisor } from '../dataplane/supervisor.ts';
import { OUTER_V4_BYTES, OUTER_V6_BYTES } from '../packet/vxlan.ts';

export type Log = (event: Record<string, unknown>) => void;

export interface WorkloadState {
  connection: string;
  iface: string;
  driver: 'afxdp' | 'afpacket';
  reasons: DecisionReason[];
  /** AF_XDP: how the redirect-all program is attached. */
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
  loaded?: LoadedRedirectAll;
  attachment?: XdpAttachment;
  passThrough?: { close(): void };
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
}

const RESOLVE_TIMEOUT_MS = 3000;

function firstGlobalAddress(mirror: Mirror, ifindex: number, family: 4 | 6): string | undefined {
  for (const a of mirror.tables.addrs.values()) {
    if (a.ifindex !== ifindex || a.family !== family || a.scope !== 0) continue;
    if (family === 6 && a.address.toLowerCase().startsWith('fe80')) continue;
    return a.address;
  }
  return undefined;
}

function closeWorkloads(ws: readonly WorkloadSetup[]): void {
  for (const w of ws) {
    try {
      w.attachment?.close();
      w.passThrough?.close();
    } finally {
      w.loaded?.close();
    }
  }
}

export class Forwarder {
  private stopping: Promise<CounterValues> | undefined;
  private readonly resolving = new Set<number>();
  private readonly nh: NextHopTable;
  private readonly nhState: NextHopState[];
  private readonly unsubscribe: () => void;
  private finalCounters: CounterValues | undefined;

  private constructor(
    readonly config: PinholeConfig,
    readonly uplink: IfaceInfo,
    readonly host: UplinkHost,
    readonly workloads: WorkloadSetup[],
    readonly connections: VxlanConnectionPlan[],
    readonly supervisor: Supervisor,
    private readonly mirror: Mirror,
    nhBuffer: SharedArrayBuffer,
    private readonly release: () => void,
    private readonly log: Log,
  ) {
    this.nh = new NextHopTable(nhBuffer);
    this.nhState = connections.map((k) => ({ connection: k.name, state: 'unknown' }));
    this.unsubscribe = mirror.onChange((e) => {
      if (e.table === 'route' || e.table === 'resync' || e.table === 'link' || e.table === 'addr') this.updateNextHops();
    });
    this.updateNextHops();
    // Warm the neighbour entries now rather than on the first frame.
    for (const k of connections) this.resolve(k.index);
  }

  static async start(config: PinholeConfig, opts: ForwarderOptions = {}): Promise<Forwarder> {
    const log = opts.log ?? (() => undefined);
    if (config.connections.length === 0)
      throw new PinholeError('ERR_CONFIG_INVALID', 'connections: at least one connection is needed to run');
    const uplink = requireInterface(config.uplink.interface);
    const locals = config.connections.map((k) => requireInterface(k.local.interface));
    const mirror = await Mirror.open();
    try {
      const link = mirror.tables.links.get(uplink.index);
      if (!link?.mac) throw new PinholeError('ERR_UPLINK_NO_MAC', `${uplink.name} has no Ethernet address`);
      const tunnel = { 4: config.uplink.tunnelAddress, 6: config.uplink.tunnelAddress6 } as Record<4 | 6, string | undefined>;
      for (const fam of [4, 6] as const) {
        if (!config.connections.some((k) => k.vxlan.family === fam)) continue;
        tunnel[fam] ??= firstGlobalAddress(mirror, uplink.index, fam);
        if (!tunnel[fam]) {
          throw new PinholeError(
            'ERR_TUNNEL_NO_ADDRESS',
            `${uplink.name} has no global IPv${fam} address for the IPv${fam} connections; set uplink.tunnelAddress${fam === 6 ? '6' : ''}`,
          );
        }
      }
      const connections: VxlanConnectionPlan[] = config.connections.map((k, index) => ({
        index,
        name: k.name,
        vni: k.vxlan.vni,
        family: k.vxlan.family,
        local: canonicalIp(tunnel[k.vxlan.family]!),
        remote: k.vxlan.remote,
        port: k.vxlan.port,
        ttl: k.vxlan.ttl,
        srcMac: link.mac!,
        maxInnerFrame: uplink.mtu + 14 - (k.vxlan.family === 4 ? OUTER_V4_BYTES : OUTER_V6_BYTES),
        workloadPort: `wl:${k.name}`,
      }));
      const addresses = [...new Set(connections.map((k) => k.local))];
      const nhBuffer = new SharedArrayBuffer(nextHopTableBytes(connections.length));
      let supOnMiss: (conn: number) => void = () => undefined;
      const { host, started, release } = await startOnUplink(
        {
          iface: uplink.name,
          mode: config.uplink.mode,
          ports: tunnelPorts(config).map((p) => p.port),
          addresses,
          ...(config.uplink.queues !== undefined ? { queues: config.uplink.queues } : {}),
          log,
        },
        async (h) => {
          const workloads = setUpWorkloads(h, config, locals, log);
          try {
            const plans = vxlanPlans(h, workloads, connections, opts);
            const sup = await Supervisor.start(plans, {
              neighbours: mirror.sharedNeighbours,
              nexthops: nhBuffer,
              readyTimeoutMs: opts.readyTimeoutMs ?? 15_000,
              onMiss: (_w, conn) => supOnMiss(conn),
              onDeath: (w, why) => opts.onWorkerDeath?.(w, why),
            });
            // Ports that really opened AF_PACKET (e.g. the driver) are what the workers say.
            return { workloads, sup };
          } catch (err) {
            closeWorkloads(workloads);
            throw err;
          }
        },
      );
      const f = new Forwarder(config, uplink, host, started.workloads, connections, started.sup, mirror, nhBuffer, release, log);
      supOnMiss = (conn) => f.resolve(conn);
      return f;
    } catch (err) {
      await mirror.close();
      throw err;
    }
  }

  /** Recomputes every connection's next hop from the mirror's routes; publishes changes. */
  private updateNextHops(): void {
    for (const k of this.connections) {
      const v = this.computeNextHop(k);
      const prev = this.nhState[k.index]!;
      const next: NextHopState =
        v.state === NH_OK
          ? { connection: k.name, state: 'ok', via: v.via!, ifindex: v.value.ifindex }
          : { connection: k.name, state: 'no-route', reason: v.reason! };
      if (prev.state === next.state && prev.via === next.via && prev.ifindex === next.ifindex && prev.reason === next.reason) continue;
      this.nh.write(k.index, v.value);
      this.nhState[k.index] = next;
      this.log({ level: next.state === 'ok' ? 'info' : 'warn', event: 'nexthop', ...next });
      if (next.state === 'ok') this.resolve(k.index);
    }
  }

  private computeNextHop(k: VxlanConnectionPlan): { state: number; value: NextHopValue; via?: string; reason?: string } {
    const none = (reason: string) => ({
      state: NH_NO_ROUTE,
      reason,
      value: { state: NH_NO_ROUTE, family: k.family, ifindex: 0, words: [0, 0, 0, 0] as [number, number, number, number] },
    });
    const route = this.mirror.tables.lookupRoute(k.remote);
    if (!route) return none(`no route to ${k.remote}`);
    if (route.type !== RTN_UNICAST) return none(`the route to ${k.remote} is not unicast (type ${route.type})`);
    const hop = nextHopOf(route, k.remote);
    if (!hop) return none(`the route to ${k.remote} has no output interface`);
    if (hop.ifindex !== this.uplink.index)
      return none(`the route to ${k.remote} leaves through ifindex ${hop.ifindex}, not the uplink ${this.uplink.name}`);
    return {
      state: NH_OK,
      via: hop.ip,
      value: { state: NH_OK, family: hop.family, ifindex: hop.ifindex, words: addressWords(parseIP(hop.ip).bytes) },
    };
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
    this.resolving.add(i);
    const k = this.connections[i]!;
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
      ports: this.host.spec.ports,
      tunnelAddresses: this.host.spec.addresses,
      workloads: this.workloads.map((w) => ({
        connection: w.connection,
        iface: w.iface,
        driver: w.driver,
        reasons: w.reasons,
        ...(w.xdp ? { xdp: w.xdp } : {}),
      })),
      connections: this.connections.map((k) => ({ name: k.name, vni: k.vni, local: k.local, remote: k.remote, port: k.port })),
    };
  }

  /** Stops workers, then undoes every host change. Idempotent; returns the final counters. */
  stop(): Promise<CounterValues> {
    this.stopping ??= (async () => {
      this.unsubscribe();
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

function setUpWorkloads(host: UplinkHost, config: PinholeConfig, locals: readonly IfaceInfo[], log: Log): WorkloadSetup[] {
  const out: WorkloadSetup[] = [];
  try {
    config.connections.forEach((k: ConnectionConfig, i) => {
      const iface = locals[i]!;
      const base = { connection: k.name, iface: iface.name };
      const afpacket = (reason: DecisionReason): void => {
        const reasons = [reason];
        let passThrough: { close(): void; detail: string } | undefined;
        if (iface.kind === 'veth') {
          // Keeps the pod's TSO super-frames off the AF_PACKET socket (see attachPassThrough).
          try {
            passThrough = attachPassThrough(iface.name);
          } catch (err) {
            const e = err as { code?: string; message: string };
            reasons.push({
              code: 'WORKLOAD_TSO',
              message: `no pass-through XDP program on ${iface.name} (${e.code ?? 'error'}: ${e.message}): the pod's TCP segmentation offload stays on and frames above the tunnel MTU are dropped`,
            });
          }
        }
        out.push({
          ...base,
          driver: 'afpacket',
          reasons,
          ...(passThrough ? { passThrough, xdp: passThrough.detail } : {}),
          ...(host.queues > 1 ? { fanoutGroup: (((process.pid + i + 1) & 0xfff) | 0x6000) >>> 0 } : {}),
        });
      };
      if (host.mode !== 'afxdp') {
        afpacket({ code: 'UPLINK_AFPACKET', message: 'the uplink runs AF_PACKET; workload interfaces follow it' });
        return;
      }
      if (iface.rxQueues !== host.queues) {
        const reason = {
          code: 'WORKLOAD_QUEUES',
          message: `${iface.name} has ${iface.rxQueues ?? '?'} RX queues and the uplink ${host.queues} workers; AF_XDP needs one queue per worker (create the veth with numrxqueues/numtxqueues ${host.queues})`,
        };
        if (config.uplink.mode === 'afxdp') throw new PinholeError('ERR_WORKLOAD_QUEUES', reason.message);
        afpacket(reason);
        return;
      }
      let loaded: LoadedRedirectAll | undefined;
      try {
        loaded = loadRedirectAll({ queues: host.queues });
        const attachment = attachRedirectAll(loaded, iface.name, 'auto');
        out.push({ ...base, driver: 'afxdp', reasons: [], loaded, attachment, xdp: `${attachment.mode} XDP via ${attachment.via}` });
      } catch (err) {
        loaded?.close();
        if (config.uplink.mode === 'afxdp') throw err;
        const e = err as { code?: string; message: string };
        log({ level: 'warn', event: 'fallback', iface: iface.name, from: 'afxdp', to: 'afpacket', code: e.code, message: e.message });
        afpacket({ code: 'WORKLOAD_AFXDP_FAILED', message: `${e.code ?? 'error'}: ${e.message}` });
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
  workloads: readonly WorkloadSetup[],
  connections: readonly VxlanConnectionPlan[],
  opts: ForwarderOptions,
): WorkerPlan[] {
  const plans: WorkerPlan[] = [];
  for (let w = 0; w < host.queues; w++) {
    const ports: PortPlan[] = [
      {
        name: 'uplink',
        role: 'uplink',
        ifname: host.iface.name,
        queue: w,
        driver: host.mode,
        rx: true,
        ...(host.xsksMapFd !== undefined ? { xsksMapFd: host.xsksMapFd } : {}),
        ...(host.mode === 'afpacket' ? { filter: host.spec } : {}),
        ...(host.fanoutGroup !== undefined ? { fanoutGroup: host.fanoutGroup } : {}),
      },
    ];
    workloads.forEach((wl, i) => {
      ports.push({
        name: connections[i]!.workloadPort,
        role: 'workload',
        ifname: wl.iface,
        queue: w,
        driver: wl.driver,
        rx: true,
        connection: i,
        ...(wl.loaded ? { xsksMapFd: wl.loaded.maps.xsks.fd } : { filter: 'all' as const }),
        ...(wl.fanoutGroup !== undefined ? { fanoutGroup: wl.fanoutGroup } : {}),
      });
    });
    plans.push({
      worker: w,
      graph: 'vxlan',
      ports,
      connections: [...connections],
      batchSize: opts.batchSize ?? 64,
      waitQueue: { frames: opts.waitFrames ?? 32, timeoutMs: opts.waitTimeoutMs ?? 3000 },
    });
  }
  return plans;
}
