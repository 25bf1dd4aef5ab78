/**
 * Running the uplink: choose the mode (probe + decision, or forced), set up the kernel side
 * (pinhole XDP program + XSKMAP for AF_XDP; a port guard for AF_PACKET), start one worker thread
 * per queue, and tear it all down on stop. In `auto`, any failure while bringing AF_XDP up
 * (attach refused, bind failure, busy queue...) undoes what was done and falls back to AF_PACKET,
 * keeping the reason; a forced mode fails with a stable code instead.
 *
 * Crash safety: the XDP program is attached through netlink (it outlives the process). After a
 * SIGKILL its XSKMAP entries vanish with the dead sockets, so bpf_redirect_map(..., XDP_PASS)
 * passes every frame to the kernel; the next start recognises its own stale program by name
 * and replaces it atomically. A clean stop detaches it and restores the interface.
 */
import type { Worker } from 'node:worker_threads';
import { REASONS, type PinholeSpec, type Reason } from '../bpf/pinhole/policy.ts';
import { probeFeatures } from '../kernel/features.ts';
import { requireInterface, type IfaceInfo } from '../kernel/iface.ts';
import { loadPinhole, type LoadedPinhole } from '../kernel/pinhole.ts';
import { attachXdp, type XdpAttachment } from '../kernel/xdp-attach.ts';
import { PinholeError } from '../sys/index.ts';
import { startWorker } from '../worker/spawn.ts';
import { openPortGuard, type PortGuard } from './afpacket/port-guard.ts';
import { decideUplink, type DecisionReason } from './decide.ts';
import type { UplinkCounters } from './types.ts';
import { lockInterface } from './lock.ts';
import { CTRL_STOP, SLOT, SLOTS, type WorkerConfig, type WorkerMessage } from './worker-abi.ts';

export type RequestedMode = 'auto' | 'afxdp' | 'afpacket';

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
  replaceForeign?: boolean;
  log?: (event: Record<string, unknown>) => void;
  /** How long workers may take to open their sockets. */
  readyTimeoutMs?: number;
  /** Called when a worker dies after it was ready (its queue is no longer served). */
  onWorkerDeath?: (queue: number, why: string) => void;
}

/** Every worker's counters added up, plus the per-queue split. */
export interface UplinkTotals extends UplinkCounters {
  perQueue: { queue: number; rxPackets: number; txPackets: number }[];
}

interface WorkerHandle {
  /** Set when we asked it to stop: an exit after that is not a death. */
  stopping: boolean;
  worker: Worker;
  queue: number;
  counters: Float64Array;
  control: Int32Array;
  stopped: Promise<void>;
}

const WORKER_URL = new URL('./worker.ts', import.meta.url);

export class UplinkRunner {
  readonly mode: 'afxdp' | 'afpacket';
  readonly xdpMode: string | undefined;
  readonly reasons: DecisionReason[];
  readonly iface: IfaceInfo;
  readonly workers: WorkerHandle[];
  readonly detail: string;
  private readonly teardown: () => void;
  private readonly extraTeardown: (() => void)[] = [];
  private readonly pinhole: LoadedPinhole | undefined;
  private stopping: Promise<UplinkTotals> | undefined;
  private finalPinhole: Record<Reason, number> | undefined;

  constructor(init: {
    mode: 'afxdp' | 'afpacket';
    xdpMode?: string;
    reasons: DecisionReason[];
    iface: IfaceInfo;
    workers: WorkerHandle[];
    detail: string;
    teardown: () => void;
    pinhole?: LoadedPinhole;
  }) {
    this.mode = init.mode;
    this.xdpMode = init.xdpMode;
    this.reasons = init.reasons;
    this.iface = init.iface;
    this.workers = init.workers;
    this.detail = init.detail;
    this.teardown = init.teardown;
    this.pinhole = init.pinhole;
  }

  totals(): UplinkTotals {
    const t: UplinkTotals = { rxPackets: 0, rxBytes: 0, txPackets: 0, txBytes: 0, txDropped: 0, kernelDrops: 0, perQueue: [] };
    for (const w of this.workers) {
      const c = w.counters;
      t.rxPackets += c[SLOT.rxPackets]!;
      t.rxBytes += c[SLOT.rxBytes]!;
      t.txPackets += c[SLOT.txPackets]!;
      t.txBytes += c[SLOT.txBytes]!;
      t.txDropped += c[SLOT.txDropped]!;
      t.kernelDrops += c[SLOT.kernelDrops]!;
      t.perQueue.push({ queue: w.queue, rxPackets: c[SLOT.rxPackets]!, txPackets: c[SLOT.txPackets]! });
    }
    return t;
  }

  /** The pinhole program's verdict counters (AF_XDP mode). */
  pinholeCounters(): Record<Reason, number> | undefined {
    if (this.finalPinhole || !this.pinhole) return this.finalPinhole;
    const by = this.pinhole.counters().byReason;
    return Object.fromEntries(REASONS.map((r) => [r, Number(by[r])])) as Record<Reason, number>;
  }

  onTeardown(fn: () => void): void {
    this.extraTeardown.push(fn);
  }

  /** Stops the workers, then undoes every kernel change. Idempotent. */
  stop(): Promise<UplinkTotals> {
    this.stopping ??= (async () => {
      await stopWorkers(this.workers);
      const totals = this.totals();
      // Every step runs even if an earlier one fails: a failed detach must not keep the lock
      // held or the maps open. Failures are reported together at the end.
      const errors: unknown[] = [];
      const step = (fn: () => void): void => {
        try {
          fn();
        } catch (err) {
          errors.push(err);
        }
      };
      step(() => (this.finalPinhole = this.pinholeCounters()));
      step(() => this.teardown());
      for (const fn of this.extraTeardown) step(fn);
      if (errors.length > 0) {
        throw new PinholeError('ERR_UPLINK_TEARDOWN', `stopping the uplink: ${errors.map((e) => (e as Error).message).join('; ')}`, {
          cause: errors[0],
        });
      }
      return totals;
    })();
    return this.stopping;
  }
}

async function stopWorkers(workers: WorkerHandle[]): Promise<void> {
  for (const w of workers) {
    w.stopping = true;
    Atomics.store(w.control, CTRL_STOP, 1);
  }
  await Promise.all(workers.map((w) => Promise.race([w.stopped, new Promise<void>((r) => setTimeout(r, 5000).unref())])));
  await Promise.all(workers.map((w) => w.worker.terminate()));
}

async function spawnWorkers(
  base: Omit<WorkerConfig, 'queue' | 'counters' | 'control'>,
  queues: number,
  timeoutMs: number,
  onDeath: (queue: number, why: string) => void = () => undefined,
): Promise<{ workers: WorkerHandle[]; detail: string }> {
  const workers: WorkerHandle[] = [];
  const ready: Promise<string>[] = [];
  for (let q = 0; q < queues; q++) {
    const counters = new SharedArrayBuffer(SLOTS * 8);
    const control = new SharedArrayBuffer(8);
    const cfg: WorkerConfig = { ...base, queue: q, counters, control };
    const worker = startWorker(WORKER_URL, cfg as unknown as Record<string, unknown>);
    let onStopped!: () => void;
    const stopped = new Promise<void>((r) => (onStopped = r));
    let isReady = false;
    const handle: WorkerHandle = {
      stopping: false,
      worker,
      queue: q,
      counters: new Float64Array(counters),
      control: new Int32Array(control),
      stopped,
    };
    const died = (why: string): void => {
      if (isReady && !handle.stopping) onDeath(q, why);
    };
    worker.on('error', (e) => died(`worker error: ${e.message}`));
    worker.on('exit', (code) => died(`worker exited (code ${code})`));
    worker.on('message', (m: WorkerMessage) => {
      if (m.type === 'error') died(`${m.code}: ${m.message}`);
    });
    ready.push(
      new Promise<string>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new PinholeError('ERR_UPLINK_TIMEOUT', `queue ${q}: worker not ready within ${timeoutMs} ms`)),
          timeoutMs,
        );
        worker.on('message', (m: WorkerMessage) => {
          if (m.type === 'ready') {
            clearTimeout(timer);
            isReady = true;
            resolve(m.detail);
          } else if (m.type === 'error') {
            clearTimeout(timer);
            reject(new PinholeError(m.code, `queue ${q}: ${m.message}`));
          } else if (m.type === 'stopped') onStopped();
        });
        worker.once('error', (e) => {
          clearTimeout(timer);
          onStopped();
          reject(new PinholeError('ERR_UPLINK_WORKER', `queue ${q}: worker failed: ${e.message}`, { cause: e }));
        });
        worker.once('exit', () => {
          clearTimeout(timer);
          onStopped();
          reject(new PinholeError('ERR_UPLINK_WORKER', `queue ${q}: worker exited before it was ready`));
        });
      }),
    );
    workers.push(handle);
  }
  try {
    const details = await Promise.all(ready);
    return { workers, detail: details[0] ?? '' };
  } catch (err) {
    await stopWorkers(workers);
    throw err;
  }
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

async function startAfxdp(
  opts: StartUplinkOptions,
  iface: IfaceInfo,
  xdpMode: 'native' | 'generic',
  replaceOwn: boolean,
  reasons: DecisionReason[],
): Promise<UplinkRunner> {
  const spec: PinholeSpec = { ports: opts.ports, addresses: opts.addresses ?? [] };
  // Tunnel frames reach the kernel whenever a queue has no socket (between attach and bind,
  // during stop, if a worker dies): the guard keeps it from answering them with ICMP errors.
  const guard = openPortGuard({ ports: opts.ports });
  let ph: LoadedPinhole | undefined;
  let attachment: XdpAttachment | undefined;
  try {
    ph = loadPinhole(spec);
    const replace = replaceOwn || (opts.replaceForeign ?? false);
    const attached = iface.xdp.progId;
    attachment = attachXdp(ph.program.fd, {
      iface: iface.name,
      mode: xdpMode === 'generic' ? 'generic' : 'auto',
      persist: true,
      replace,
      // Replace exactly the program we inspected, atomically; if anything else got attached
      // meanwhile the kernel refuses (EEXIST) and we report a foreign program.
      ...(replace && attached !== undefined ? { expectedProgId: attached } : {}),
    });
    for (const f of attachment.fallbacks) {
      reasons.push({
        code: 'XDP_ATTACH_FALLBACK',
        message: `${f.via} ${f.mode} attach refused (${f.errno ?? f.message}); using ${attachment.via} ${attachment.mode}`,
      });
    }
    const queues = afxdpQueues(opts.queues, iface);
    const base = {
      kind: 'afxdp' as const,
      ifname: iface.name,
      spec,
      xsksMapFd: ph.maps.xsks.fd,
      batchSize: opts.batchSize ?? 64,
      ...(opts.to ? { to: opts.to } : {}),
    };
    const { workers, detail } = await spawnWorkers(base, queues, opts.readyTimeoutMs ?? 15_000, opts.onWorkerDeath);
    const att = attachment;
    const loaded = ph;
    return new UplinkRunner({
      mode: 'afxdp',
      xdpMode: att.mode,
      reasons,
      iface,
      workers,
      detail: `${detail}, ${att.mode} XDP via ${att.via}`,
      pinhole: loaded,
      teardown: () => {
        try {
          att.close();
        } finally {
          loaded.close();
          guard.close();
        }
      },
    });
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

async function startAfpacket(opts: StartUplinkOptions, iface: IfaceInfo, reasons: DecisionReason[]): Promise<UplinkRunner> {
  const spec: PinholeSpec = { ports: opts.ports, addresses: opts.addresses ?? [] };
  // The kernel sees the tunnel frames too: keep it from answering them (ICMP port unreachable).
  const guard: PortGuard = openPortGuard({ ports: opts.ports });
  for (const b of guard.busy)
    reasons.push({
      code: 'PORT_HELD_BY_KERNEL_SOCKET',
      message: `UDP port ${b.port} (IPv${b.family}) is bound by another socket, which also receives this traffic`,
    });
  try {
    const queues = workerCount(opts.queues, iface, 'afpacket');
    const base = {
      kind: 'afpacket' as const,
      ifname: iface.name,
      spec,
      batchSize: opts.batchSize ?? 64,
      ...(queues > 1 ? { fanoutGroup: (process.pid & 0xfff) | 0x7000 } : {}),
      ...(opts.to ? { to: opts.to } : {}),
    };
    const { workers, detail } = await spawnWorkers(base, queues, opts.readyTimeoutMs ?? 15_000, opts.onWorkerDeath);
    return new UplinkRunner({ mode: 'afpacket', reasons, iface, workers, detail, teardown: () => guard.close() });
  } catch (err) {
    guard.close();
    throw err;
  }
}

export async function startUplink(opts: StartUplinkOptions): Promise<UplinkRunner> {
  const log = opts.log ?? (() => undefined);
  if (opts.ports.length === 0) throw new PinholeError('ERR_CONFIG_PORT', 'at least one tunnel port is needed (--port)');
  const iface = requireInterface(opts.iface);
  if (opts.to) requireInterface(opts.to);
  // Held until stop; a live pinhole on this interface makes this fail with ERR_UPLINK_BUSY.
  const lock = lockInterface(iface.name, iface.index);
  try {
    const runner = await startLocked(opts, iface, log);
    runner.onTeardown(() => lock.release());
    return runner;
  } catch (err) {
    lock.release();
    throw err;
  }
}

async function startLocked(opts: StartUplinkOptions, iface: IfaceInfo, log: (e: Record<string, unknown>) => void): Promise<UplinkRunner> {
  const features = await probeFeatures();
  const decision = decideUplink(features, iface, { replaceForeign: opts.replaceForeign ?? false });
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
    try {
      return await startAfxdp(opts, iface, decision.xdpMode ?? 'native', replaceOwn, reasons);
    } catch (err) {
      if (opts.mode === 'afxdp') throw err;
      const e = err as { code?: string; message: string };
      reasons.push({ code: 'AFXDP_FAILED', message: `${e.code ?? 'error'}: ${e.message}` });
      log({ level: 'warn', event: 'fallback', from: 'afxdp', to: 'afpacket', code: e.code, message: e.message });
    }
  } else if (opts.mode === 'afpacket') {
    reasons.push({ code: 'MODE_FORCED', message: 'AF_PACKET requested with --mode afpacket' });
  }
  return startAfpacket(opts, iface, reasons);
}
