/**
 * The host side of the uplink: choose the mode (probe + decision, or forced), make the kernel
 * changes that mode needs, and undo them. AF_XDP: load the pinhole program, attach it (netlink,
 * so it outlives a crash and passes traffic to the kernel after one), and a port guard;
 * AF_PACKET: the port guard only (the workers open their own filtered sockets). Workers are
 * not started here (dataplane/supervisor.ts); `startOnUplink` joins the two and implements the
 * fallback: in `auto`, any failure while bringing AF_XDP up — attach refused, a worker's bind
 * failing, a busy queue — undoes everything and starts again on AF_PACKET, keeping the reason; a
 * forced mode fails with a stable code instead.
 *
 * Crash safety: after a SIGKILL the program's XSKMAP entries vanish with the dead sockets, so
 * bpf_redirect_map(..., XDP_PASS) passes every frame to the kernel; the next start recognises its
 * own stale program (by tag and map shapes, kernel/pinhole.ts; not by name) and takes it over:
 * atomically when it is attached in the mode we attach in, else (e.g. native, but the MTU now
 * needs generic) it is detached first (kernel/xdp-attach.ts). If AF_XDP is not used after all,
 * the stale program is detached anyway: a clean stop leaves nothing attached.
 *
 * A foreign program replaced with --replace-foreign is kept (an fd) and put back on a clean stop,
 * atomically over ours.
 *
 * A tunnel port another UDP socket already receives on (a kernel vxlan device, say) rules AF_XDP
 * out: the pinhole would redirect that socket's datagrams away from it. The check binds the
 * addresses the pinhole takes (the wildcards, or the --address list) and sees EADDRINUSE; a socket
 * bound to another address than pinhole's --address ones does not conflict.
 */
import { REASONS, type PinholeSpec, type Reason } from '../bpf/pinhole/policy.ts';
import { probeFeatures } from '../kernel/features.ts';
import { requireInterface, type IfaceInfo } from '../kernel/iface.ts';
import { loadPinhole, type LoadedPinhole } from '../kernel/pinhole.ts';
import { attachXdp, detachXdpProgram, type XdpAttachment } from '../kernel/xdp-attach.ts';
import { PinholeError } from '../sys/index.ts';
import { openPortGuard, type BusyPort, type PortGuard } from './afpacket/port-guard.ts';
import { decideUplink, type DecisionReason } from './decide.ts';
import { lockInterface } from './lock.ts';

export type RequestedMode = 'auto' | 'afxdp' | 'afpacket';

export interface UplinkHostOptions {
  iface: string;
  mode: RequestedMode;
  ports: number[];
  addresses?: string[];
  /** Workers; default: the interface's RX queue count (AF_XDP) or 1 (AF_PACKET), max 64. */
  queues?: number;
  replaceForeign?: boolean;
  log?: (event: Record<string, unknown>) => void;
}

/** The kernel side of a running uplink, whatever the mode. */
export interface UplinkHost {
  readonly mode: 'afxdp' | 'afpacket';
  readonly xdpMode: string | undefined;
  readonly reasons: DecisionReason[];
  readonly iface: IfaceInfo;
  readonly queues: number;
  /** The tunnel ports and addresses in force (changed by setSpec). */
  readonly spec: PinholeSpec;
  /** AF_XDP: the pinhole's XSKMAP fd (process-wide, so workers use it directly). */
  readonly xsksMapFd: number | undefined;
  /** AF_PACKET with several workers: their fanout group. */
  readonly fanoutGroup: number | undefined;
  /** e.g. 'native XDP via netlink'. */
  readonly attachDetail: string;
  /** The pinhole program's verdict counters (AF_XDP), while it is loaded. */
  pinholeCounters(): Record<Reason, number> | undefined;
  /**
   * Changes the tunnel ports and addresses at runtime: AF_XDP updates the pinhole's maps (no
   * reload); both modes open guard sockets for new ports and close those of removed ones.
   * AF_PACKET workers must reopen their uplink sockets with the new filter (a locked socket
   * filter cannot change): the caller does that through the workers' plans.
   */
  setSpec(spec: PinholeSpec): void;
  /** Undoes every kernel change (detach, unload, guard). Every step runs; errors are collected. */
  close(): void;
}

function workerCount(requested: number | undefined, iface: IfaceInfo, mode: 'afxdp' | 'afpacket'): number {
  if (requested !== undefined) {
    if (!Number.isInteger(requested) || requested < 1 || requested > 64)
      throw new PinholeError('ERR_CONFIG_QUEUES', `queues must be 1..64, got ${requested}`);
    return requested;
  }
  return mode === 'afxdp' ? Math.min(64, Math.max(1, iface.rxQueues ?? 1)) : 1;
}

/** AF_XDP must serve every RX queue: the program redirects all of them. */
function afxdpQueues(requested: number | undefined, iface: IfaceInfo): number {
  const n = workerCount(requested, iface, 'afxdp');
  if (iface.rxQueues !== undefined && n !== iface.rxQueues) {
    throw new PinholeError(
      'ERR_CONFIG_QUEUES',
      `AF_XDP serves every RX queue: ${iface.name} has ${iface.rxQueues}, --queues asked for ${n} (the others' tunnel traffic would go unserved)`,
    );
  }
  return n;
}

/** One guard per tunnel port, changeable at runtime. */
class PortGuards {
  private readonly byPort = new Map<number, PortGuard>();
  readonly busy: BusyPort[] = [];
  /** The tunnel addresses guarded (none: the wildcards), fixed per guard socket at open. */
  private addresses: readonly string[];

  constructor(ports: readonly number[], addresses: readonly string[] = []) {
    this.addresses = addresses;
    try {
      this.set(ports, addresses);
    } catch (err) {
      this.close();
      throw err;
    }
  }

  /** Guards exactly `ports` on `addresses`; returns the ports newly found held by another socket. */
  set(ports: readonly number[], addresses: readonly string[] = this.addresses): BusyPort[] {
    // A changed address set means new guard sockets for every port.
    if (addresses.join(',') !== this.addresses.join(',')) {
      this.close();
      this.busy.length = 0;
      this.addresses = addresses;
    }
    const want = new Set(ports);
    const fresh: BusyPort[] = [];
    for (const p of want) {
      if (this.byPort.has(p)) continue;
      const g = openPortGuard({ ports: [p], ...(addresses.length > 0 ? { addresses } : {}) });
      this.byPort.set(p, g);
      this.busy.push(...g.busy);
      fresh.push(...g.busy);
    }
    for (const [p, g] of this.byPort) {
      if (want.has(p)) continue;
      g.close();
      this.byPort.delete(p);
      for (let i = this.busy.length - 1; i >= 0; i--) if (this.busy[i]!.port === p) this.busy.splice(i, 1);
    }
    return fresh;
  }

  close(): void {
    for (const g of this.byPort.values()) g.close();
    this.byPort.clear();
  }
}

function runAll(steps: (() => void)[], what: string): void {
  const errors: unknown[] = [];
  for (const s of steps) {
    try {
      s();
    } catch (err) {
      errors.push(err);
    }
  }
  if (errors.length > 0) {
    throw new PinholeError('ERR_UPLINK_TEARDOWN', `${what}: ${errors.map((e) => (e as Error).message).join('; ')}`, { cause: errors[0] });
  }
}

function openAfxdpHost(
  opts: UplinkHostOptions,
  iface: IfaceInfo,
  xdpMode: 'native' | 'generic',
  replaceOwn: boolean,
  reasons: DecisionReason[],
): UplinkHost {
  const spec: PinholeSpec = { ports: opts.ports, addresses: opts.addresses ?? [] };
  // Tunnel frames reach the kernel whenever a queue has no socket (between attach and bind,
  // during stop, if a worker dies): the guard keeps it from answering them with ICMP errors.
  const guard = new PortGuards(opts.ports, opts.addresses ?? []);
  let ph: LoadedPinhole | undefined;
  let attachment: XdpAttachment | undefined;
  try {
    const queues = afxdpQueues(opts.queues, iface);
    ph = loadPinhole(spec);
    const replace = replaceOwn || (opts.replaceForeign ?? false);
    const attached = iface.xdp.progId;
    attachment = attachXdp(ph.program.fd, {
      iface: iface.name,
      mode: xdpMode === 'generic' ? 'generic' : 'auto',
      persist: true,
      replace,
      // Replace exactly the program we inspected; if anything else got attached meanwhile the
      // kernel refuses (EEXIST) and we report a foreign program. Another owner's is put back on stop.
      ...(replace && attached !== undefined ? { expectedProgId: attached, restoreReplaced: !replaceOwn } : {}),
    });
    const r = attachment.replaced;
    if (r) {
      reasons.push({
        code: replaceOwn ? 'STALE_PINHOLE_PROGRAM_REPLACED' : 'FOREIGN_XDP_PROGRAM_KEPT',
        message: `program id ${r.progId} (${r.mode}) ${r.how === 'atomic' ? 'replaced atomically' : `detached, pinhole attached in ${attachment.mode} mode`}${r.restoreOnClose ? '; it is put back on a clean stop' : ''}`,
      });
    }
    for (const f of attachment.fallbacks) {
      reasons.push({
        code: 'XDP_ATTACH_FALLBACK',
        message: `${f.via} ${f.mode} attach refused (${f.errno ?? f.message}); using ${attachment.via} ${attachment.mode}`,
      });
    }
    const att = attachment;
    const loaded = ph;
    let final: Record<Reason, number> | undefined;
    let closed = false;
    let current: PinholeSpec = spec;
    return {
      mode: 'afxdp',
      xdpMode: att.mode,
      reasons,
      iface,
      queues,
      get spec() {
        return current;
      },
      setSpec(next: PinholeSpec) {
        // A new port another socket already receives on would lose that socket its traffic to
        // AF_XDP (issue 7, item 6): refuse it before anything changes.
        const held = guard.set([...new Set([...current.ports, ...next.ports])], next.addresses);
        if (held.length > 0) {
          guard.set(current.ports, current.addresses);
          throw new PinholeError(
            'ERR_UPLINK_PORT_HELD',
            `UDP port ${held[0]!.port} (IPv${held[0]!.family}) is bound by another socket${held[0]!.holder ? ` (${held[0]!.holder})` : ''}; AF_XDP would take its traffic away`,
            { details: { field: 'port', held } },
          );
        }
        // New ports and addresses first, so nothing in use is ever missing from the maps.
        for (const p of next.ports) if (!current.ports.includes(p)) loaded.addPort(p);
        for (const a of next.addresses) if (!current.addresses.includes(a)) loaded.addAddress(a);
        for (const p of current.ports) if (!next.ports.includes(p)) loaded.removePort(p);
        for (const a of current.addresses) if (!next.addresses.includes(a)) loaded.removeAddress(a);
        guard.set(next.ports, next.addresses);
        current = { ports: [...next.ports], addresses: [...next.addresses] };
      },
      xsksMapFd: loaded.maps.xsks.fd,
      fanoutGroup: undefined,
      attachDetail: `${att.mode} XDP via ${att.via}`,
      pinholeCounters() {
        if (closed) return final;
        const by = loaded.counters().byReason;
        return Object.fromEntries(REASONS.map((r) => [r, Number(by[r])])) as Record<Reason, number>;
      },
      close() {
        if (closed) return;
        runAll(
          [
            () => (final = this.pinholeCounters()),
            () => {
              att.close();
              // The uplink had been moved to another namespace: the program was followed there.
              if (att.detachedIn) {
                opts.log?.({
                  level: 'warn',
                  event: 'xdp-detached-elsewhere',
                  iface: iface.name,
                  netns: att.detachedIn,
                  message: `${iface.name} had been moved to the network namespace ${att.detachedIn}; the pinhole program was detached there${att.replaced?.restoreOnClose ? ` and program ${att.replaced.progId} put back` : ''}`,
                });
              }
            },
            () => {
              closed = true;
              loaded.close();
            },
            () => guard.close(),
          ],
          'stopping the uplink',
        );
      },
    };
  } catch (err) {
    try {
      attachment?.close();
    } finally {
      ph?.close();
      guard.close();
    }
    throw err;
  }
}

function openAfpacketHost(opts: UplinkHostOptions, iface: IfaceInfo, reasons: DecisionReason[]): UplinkHost {
  const spec: PinholeSpec = { ports: opts.ports, addresses: opts.addresses ?? [] };
  // The kernel sees the tunnel frames too: keep it from answering them (ICMP port unreachable).
  const guard = new PortGuards(opts.ports, opts.addresses ?? []);
  for (const b of guard.busy) {
    const what = `UDP port ${b.port} (IPv${b.family}) is bound by another socket`;
    // Already named by the decision (the reason AF_XDP was ruled out).
    if (reasons.some((r) => r.code === 'PORT_HELD_BY_KERNEL_SOCKET' && r.message.startsWith(what))) continue;
    reasons.push({
      code: 'PORT_HELD_BY_KERNEL_SOCKET',
      message: `${what}${b.holder ? ` (${b.holder})` : ''}, which also receives this traffic`,
    });
  }
  try {
    const queues = workerCount(opts.queues, iface, 'afpacket');
    let current: PinholeSpec = spec;
    return {
      mode: 'afpacket',
      xdpMode: undefined,
      reasons,
      iface,
      queues,
      get spec() {
        return current;
      },
      setSpec(next: PinholeSpec) {
        guard.set(next.ports, next.addresses);
        current = { ports: [...next.ports], addresses: [...next.addresses] };
      },
      xsksMapFd: undefined,
      fanoutGroup: queues > 1 ? (process.pid & 0xfff) | 0x7000 : undefined,
      attachDetail: '',
      pinholeCounters: () => undefined,
      close: () => guard.close(),
    };
  } catch (err) {
    guard.close();
    throw err;
  }
}

/** Tunnel ports another socket receives on, at an address the pinhole would take (see file comment). */
function portsHeldElsewhere(opts: UplinkHostOptions): { family: 4 | 6; port: number; holder?: string }[] {
  const trial = openPortGuard({ ports: opts.ports, addresses: opts.addresses ?? [] });
  trial.close();
  return trial.busy.map((b) => ({
    family: b.family,
    port: b.port,
    holder: `${b.address !== undefined ? `bound over ${b.address}: ` : ''}${b.holder ?? 'holder unknown'}`,
  }));
}

/** Our stale program, still attached when AF_XDP is not used: detach it (exactly it). */
function removeStaleProgram(iface: IfaceInfo, reasons: DecisionReason[], log: (event: Record<string, unknown>) => void): void {
  const id = iface.xdp.progId;
  if (id === undefined) return;
  try {
    if (detachXdpProgram(iface.index, id)) {
      reasons.push({
        code: 'STALE_PINHOLE_PROGRAM_REMOVED',
        message: `program id ${id} (${iface.xdp.mode}) detached; AF_PACKET does not use it`,
      });
    }
  } catch (err) {
    const e = err as { code?: string; message: string };
    reasons.push({ code: 'STALE_PINHOLE_PROGRAM_LEFT', message: `could not detach program id ${id}: ${e.message}` });
    log({ level: 'warn', event: 'stale-program-left', progId: id, code: e.code, message: e.message });
  }
}

/**
 * Opens the host side and starts what runs on it (`start`, e.g. the workers) with the fallback
 * described in the file comment. `start` must clean up after itself when it throws. Returns
 * both; the caller stops its part first, then calls `host.close()` and `release()` (the
 * one-pinhole-per-interface lock).
 */
export async function startOnUplink<T>(
  opts: UplinkHostOptions,
  start: (host: UplinkHost) => Promise<T>,
): Promise<{ host: UplinkHost; started: T; release: () => void }> {
  const log = opts.log ?? (() => undefined);
  const iface = requireInterface(opts.iface);
  // Held until stop; a live pinhole on this interface makes this fail with ERR_UPLINK_BUSY.
  const lock = lockInterface(iface.name, iface.index);
  try {
    const features = await probeFeatures();
    const heldPorts = opts.mode === 'afpacket' ? [] : portsHeldElsewhere(opts);
    const decision = decideUplink(features, iface, { replaceForeign: opts.replaceForeign ?? false, heldPorts });
    const reasons = [...decision.reasons];
    const replaceOwn = decision.reasons.some((r) => r.code === 'STALE_PINHOLE_PROGRAM');
    if (opts.mode === 'afxdp' && decision.mode !== 'afxdp') {
      throw new PinholeError(
        'ERR_UPLINK_AFXDP_UNAVAILABLE',
        `AF_XDP cannot work on ${iface.name}: ${reasons.map((r) => `${r.code}: ${r.message}`).join('; ')}`,
        { details: { reasons } },
      );
    }
    if (opts.mode !== 'afpacket' && decision.mode === 'afxdp') {
      // A configuration error is not a reason to fall back: refuse before touching anything.
      if (opts.queues !== undefined) afxdpQueues(opts.queues, iface);
      let host: UplinkHost | undefined;
      try {
        host = openAfxdpHost(opts, iface, decision.xdpMode ?? 'native', replaceOwn, reasons);
        const started = await start(host);
        return { host, started, release: () => lock.release() };
      } catch (err) {
        host?.close();
        const e = err as { code?: string; message: string };
        // A workload interface that was asked for AF_XDP and cannot have it (ERR_WORKLOAD_*) is
        // not the uplink's failure: falling back would only hide the cause behind another error.
        if (opts.mode === 'afxdp' || e.code?.startsWith('ERR_WORKLOAD_')) throw err;
        reasons.push({ code: 'AFXDP_FAILED', message: `${e.code ?? 'error'}: ${e.message}` });
        log({ level: 'warn', event: 'fallback', from: 'afxdp', to: 'afpacket', code: e.code, message: e.message });
      }
    } else if (opts.mode === 'afpacket') {
      reasons.push({ code: 'MODE_FORCED', message: 'AF_PACKET requested with --mode afpacket' });
    }
    if (replaceOwn) removeStaleProgram(iface, reasons, log);
    const host = openAfpacketHost(opts, iface, reasons);
    try {
      const started = await start(host);
      return { host, started, release: () => lock.release() };
    } catch (err) {
      host.close();
      throw err;
    }
  } catch (err) {
    lock.release();
    throw err;
  }
}
