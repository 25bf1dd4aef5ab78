/**
 * `pinhole uplink`: the uplink on its own, served by one dataplane worker per queue running the
 * cross-connect graph (dataplane/worker.ts): receive the tunnel traffic, count it, and with
 * `to` forward every frame unchanged out of another interface (tests and benchmarks use it).
 * Host setup and fallback are uplink/host.ts; worker supervision is dataplane/supervisor.ts; this
 * file joins them and presents the totals.
 */
import type { Reason } from '../bpf/pinhole/policy.ts';
import { requireInterface, type IfaceInfo } from '../kernel/iface.ts';
import type { PortPlan, WorkerPlan } from '../dataplane/plan.ts';
import { Supervisor } from '../dataplane/supervisor.ts';
import { PinholeError } from '../sys/index.ts';
import type { DecisionReason } from './decide.ts';
import { startOnUplink, type RequestedMode, type UplinkHost } from './host.ts';
import { txOnlyRings, umemFrames, xskRings } from './xsk/sizing.ts';
import { watchInterfaces, type LinkWatch, type WatchTarget } from './watch.ts';

export type { RequestedMode } from './host.ts';

export interface StartUplinkOptions {
  iface: string;
  mode: RequestedMode;
  ports: number[];
  addresses?: string[];
  /** L2 cross-connect: forward every received tunnel frame unchanged out of this interface. */
  to?: string;
  /** Worker count; default: the interface's RX queue count (AF_XDP) or 1 (AF_PACKET), max 64. */
  queues?: number;
  batchSize?: number;
  /**
   * AF_XDP ring sizes of the uplink (powers of two 64..32768): `rx` also sizes the fill ring,
   * `tx` the completion ring; defaults XSK_DEFAULT_RX_RING / XSK_DEFAULT_TX_RING (xsk/sizing.ts).
   * AF_PACKET has a ring of its own and ignores them.
   */
  rings?: { rx?: number; tx?: number };
  /** CPUs of the workers, worker i on cpus[i mod n] (WorkerPlan.cpu); absent: anywhere. */
  cpus?: number[];
  replaceForeign?: boolean;
  log?: (event: Record<string, unknown>) => void;
  /** How long workers may take to open their sockets. */
  readyTimeoutMs?: number;
  /** Called when a worker dies after it was ready (its queue is no longer served). */
  onWorkerDeath?: (queue: number, why: string) => void;
  /**
   * Called once when the uplink (or `to`) is deleted, moved to another namespace, or loses our
   * XDP program (uplink/watch.ts). The runner keeps running; the caller decides (stop).
   */
  onLost?: (code: string, message: string) => void;
  /** Link down/up of a watched interface. */
  onLinkState?: (iface: string, state: 'up' | 'down') => void;
}

/** The uplink's counters added up over the workers, plus the per-queue split. */
export interface UplinkTotals {
  rxPackets: number;
  rxBytes: number;
  /** Frames sent out of `to`. */
  txPackets: number;
  txBytes: number;
  /** Frames we could not queue for transmission (TX ring or device queue full). */
  txDropped: number;
  /** Frames larger than a TX slot of `to` (AF_PACKET: 2,000 bytes), never sent truncated. */
  txTooBig: number;
  /** Frames the kernel dropped before we saw them (ring full, no fill buffers, ...), refreshed about once a second. */
  kernelDrops: number;
  /** AF_XDP: frames sent out of `to` by copying them (0 when the worker's sockets share one UMEM). */
  txCopies: number;
  perQueue: { queue: number; rxPackets: number; txPackets: number }[];
}

/** `toMtu`: the MTU of opts.to when the plan is made (PortPlan.mtu; the watch keeps it). */
function crossConnectPlans(host: UplinkHost, opts: StartUplinkOptions, toMtu: number | undefined): WorkerPlan[] {
  const plans: WorkerPlan[] = [];
  // AF_XDP: the uplink receives into deep rings; `to` only sends (its UMEM holds its TX ring).
  const rings = xskRings(opts.rings);
  const upRings = host.mode === 'afxdp' ? { rings, frameCount: umemFrames(rings) } : {};
  const txOnly = txOnlyRings(rings.tx);
  const toRings = host.mode === 'afxdp' ? { rings: txOnly, frameCount: umemFrames(txOnly) } : {};
  for (let q = 0; q < host.queues; q++) {
    const uplink: PortPlan = {
      name: 'uplink',
      role: 'uplink',
      ifname: host.iface.name,
      mtu: host.iface.mtu,
      queue: q,
      driver: host.mode,
      rx: true,
      ...(host.xsksMapFd !== undefined ? { xsksMapFd: host.xsksMapFd } : {}),
      ...(host.mode === 'afpacket' ? { filter: host.spec } : {}),
      ...(host.fanoutGroup !== undefined ? { fanoutGroup: host.fanoutGroup } : {}),
      ...upRings,
    };
    const ports: PortPlan[] = [uplink];
    if (opts.to) {
      ports.push({ name: 'to', role: 'to', ifname: opts.to, mtu: toMtu!, queue: q, driver: host.mode, rx: false, ...toRings });
    }
    plans.push({
      worker: q,
      ...(opts.cpus ? { cpu: opts.cpus[q % opts.cpus.length]! } : {}),
      graph: 'cross-connect',
      ports,
      connections: [],
      batchSize: opts.batchSize ?? 64,
      waitQueue: { frames: 0, timeoutMs: 0 },
    });
  }
  return plans;
}

export class UplinkRunner {
  readonly mode: 'afxdp' | 'afpacket';
  readonly xdpMode: string | undefined;
  readonly reasons: DecisionReason[];
  readonly iface: IfaceInfo;
  readonly detail: string;
  private stopping: Promise<UplinkTotals> | undefined;

  private watch: LinkWatch | undefined;

  constructor(
    private readonly host: UplinkHost,
    private readonly sup: Supervisor,
    private readonly release: () => void,
  ) {
    this.mode = host.mode;
    this.xdpMode = host.xdpMode;
    this.reasons = host.reasons;
    this.iface = host.iface;
    const portDetail = sup.workers[0]?.ports[0]?.detail ?? '';
    this.detail = host.attachDetail ? `${portDetail}, ${host.attachDetail}` : portDetail;
  }

  get workers(): readonly unknown[] {
    return this.sup.workers;
  }

  totals(): UplinkTotals {
    const t: UplinkTotals = {
      rxPackets: 0,
      rxBytes: 0,
      txPackets: 0,
      txBytes: 0,
      txDropped: 0,
      txTooBig: 0,
      kernelDrops: 0,
      txCopies: 0,
      perQueue: [],
    };
    this.sup.perWorker().forEach((v, q) => {
      const up = v['port:uplink']!;
      const to = v['port:to'];
      t.rxPackets += up.rx_frames!;
      t.rxBytes += up.rx_bytes!;
      t.kernelDrops += up.kernel_drops!;
      if (to) {
        t.txPackets += to.tx_frames!;
        t.txBytes += to.tx_bytes!;
        t.txDropped += to.tx_dropped!;
        t.txTooBig += to.tx_too_big!;
        t.txCopies += to.tx_copies!;
      }
      t.perQueue.push({ queue: q, rxPackets: up.rx_frames!, txPackets: to?.tx_frames ?? 0 });
    });
    return t;
  }

  /** @internal starts watching the uplink (and `to`): see uplink/watch.ts. */
  startWatch(opts: StartUplinkOptions, toMtu?: number): void {
    const targets: WatchTarget[] = [];
    const up = requireInterface(this.iface.name);
    targets.push({
      ifindex: up.index,
      name: up.name,
      role: 'the uplink',
      mtu: this.iface.mtu,
      ...(this.mode === 'afxdp' && up.xdp.progId !== undefined ? { xdpProgId: up.xdp.progId } : {}),
    });
    if (opts.to) {
      const to = requireInterface(opts.to);
      targets.push({ ifindex: to.index, name: to.name, role: 'the --to interface', mtu: toMtu ?? to.mtu });
    }
    this.watch = watchInterfaces(targets, {
      onLost: (code, message) => opts.onLost?.(code, message),
      onState: (state, t) => opts.onLinkState?.(t.name, state),
      onError: (err) => opts.onLost?.('ERR_NETLINK_SUBSCRIPTION', `watching ${this.iface.name}: ${err.message}`),
    });
  }

  /** The pinhole program's verdict counters (AF_XDP mode). */
  pinholeCounters(): Record<Reason, number> | undefined {
    return this.host.pinholeCounters();
  }

  /** Stops the workers, then undoes every kernel change. Idempotent. */
  stop(): Promise<UplinkTotals> {
    this.stopping ??= (async () => {
      await this.watch?.close();
      await this.sup.stop();
      const totals = this.totals();
      try {
        this.host.close();
      } finally {
        this.release();
      }
      return totals;
    })();
    return this.stopping;
  }
}

export async function startUplink(opts: StartUplinkOptions): Promise<UplinkRunner> {
  if (opts.ports.length === 0) throw new PinholeError('ERR_CONFIG_PORT', 'at least one tunnel port is needed (--port)');
  xskRings(opts.rings); // bad ring sizes fail here, before the host is touched
  const toMtu = opts.to ? requireInterface(opts.to).mtu : undefined;
  if (opts.to) {
    if (opts.to === opts.iface) throw new PinholeError('ERR_CLI_USAGE', `--to must name another interface than --iface (${opts.iface})`);
  }
  const { host, started, release } = await startOnUplink(opts, (h) =>
    Supervisor.start(crossConnectPlans(h, opts, toMtu), {
      readyTimeoutMs: opts.readyTimeoutMs ?? 15_000,
      onDeath: (w, why) => opts.onWorkerDeath?.(w, why),
    }),
  );
  const runner = new UplinkRunner(host, started, release);
  try {
    runner.startWatch(opts, toMtu);
  } catch (err) {
    await runner.stop();
    throw err;
  }
  return runner;
}
