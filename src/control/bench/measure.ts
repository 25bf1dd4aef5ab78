/**
 * What the scenarios share: the suite profile (full or quick), where processes run (CPUs), the
 * cleanup registry that a signal can run synchronously, and the one way a rate is measured:
 *
 *   count before → the generator sends for a while (timed by the generator) → wait until the
 *   counter stops moving (frames in rings and backlogs land) → delivered / send time.
 *
 * Delivered frames are counted where they land, never where they were sent, so drops anywhere
 * on the way lower the rate. The forwarder's CPU time (utime + stime) and resident memory are
 * read around the same window; less, for `pinhole run`, the time its workers spent polling with
 * nothing to do (engine spin_ms, uplink.spinUs): CPU per packet is the work, not the waiting.
 * How busy the generator's and the forwarder's CPUs were is read around the send itself
 * (cpu-busy.ts): which of the two bounded the rate.
 */
import { busyShare, readCpuTicks } from './cpu-busy.ts';
import type { CForwarder } from './cref.ts';
import type { ForwarderProcess } from './forwarder.ts';
import type { Progress } from './progress.ts';
import { FWD_BUSY_METRIC, GEN_BUSY_METRIC, formatNumber, type Better, type MetricKey, type SampleSet } from './report.ts';
import type { GeneratorProcess, SendRequest } from './trafficgen.ts';

export interface Profile {
  runs: number;
  /** How long the generator sends in one run of a rate measurement. */
  sendSeconds: number;
  /** iperf3 test length. */
  iperfSeconds: number;
  /**
   * Seconds of the TCP test run before it is measured (iperf3 -O) and before ping replies count as
   * latency under load: TCP slow start and the dataplane's JIT warm-up are not the steady load.
   */
  warmupSeconds: number;
  /** Echo requests for an idle latency sample, and the interval between them. */
  pingCount: number;
  pingIntervalS: number;
}

export const PROFILES: Record<'full' | 'quick', Profile> = {
  full: {
    runs: 5,
    sendSeconds: 1.5,
    iperfSeconds: 3,
    warmupSeconds: 1,
    pingCount: 200,
    pingIntervalS: 0.005,
  },
  quick: {
    runs: 2,
    sendSeconds: 0.75,
    iperfSeconds: 1,
    warmupSeconds: 1,
    pingCount: 100,
    pingIntervalS: 0.005,
  },
};

/** Synchronous teardown steps, run in reverse order by `runAll` (also from a signal handler). */
export class Cleanup {
  private readonly fns: (() => void)[] = [];

  /** Registers `fn`; the returned function runs it now and unregisters it. */
  add(fn: () => void): () => void {
    this.fns.push(fn);
    return () => {
      const i = this.fns.lastIndexOf(fn);
      if (i >= 0) this.fns.splice(i, 1);
      fn();
    };
  }

  runAll(): void {
    while (this.fns.length) {
      try {
        this.fns.pop()!();
      } catch {
        // teardown goes on: each step is independent
      }
    }
  }
}

export interface ScenarioContext {
  profile: Profile;
  /** Namespace name prefix of this bench run (unique per process). */
  prefix: string;
  /** A private temporary directory (config files). */
  tmp: string;
  /** CPU for the traffic generator and for the forwarder (undefined: not pinned). */
  genCpu: number | undefined;
  fwdCpu: number | undefined;
  /** Niceness of the generator and the forwarders (BENCH_NICE). */
  nice: number;
  c: CForwarder;
  progress: Progress;
  cleanup: Cleanup;
  samples: SampleSet;
  /** Steps that failed (the suite goes on with the next mode or run; the command exits 1). */
  failures: string[];
  signal?: AbortSignal;
  /** AF_XDP RX (and fill) ring size for the uplink forwarders (pinhole and C); default: pinhole's. */
  ringSize?: number;
}

/** Records a failed step (unless the run was interrupted, which ends the suite). */
export function recordFailure(ctx: ScenarioContext, what: string, err: unknown): void {
  if (ctx.signal?.aborted) throw ctx.signal.reason;
  const e = err as { code?: string; message?: string };
  const message = (e.message ?? String(err)).replace(/\s+/g, ' ').slice(0, 400);
  const line = `${what}: ${e.code ? `${e.code}: ` : ''}${message}`;
  ctx.failures.push(line);
  ctx.progress.step(`FAILED ${line}`);
}

/**
 * The generator and the forwarders run at nice -10: on a shared machine other work then takes
 * much less of their CPUs (measured here: without it one run in three lost half its rate to a
 * compiler on the forwarder's CPU). The kernel's own softirq work is not affected either way.
 */
export const BENCH_NICE = -10;

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Reads `count` every 20 ms until two readings agree (at most ~1 s); returns the last. */
export async function settle(count: () => number | Promise<number>): Promise<number> {
  let last = await count();
  for (let k = 0; k < 50; k++) {
    await sleep(20);
    const now = await count();
    if (now === last) break;
    last = now;
  }
  return last;
}

export interface RateSample {
  delivered: number;
  seconds: number;
  pps: number;
  /** Forwarder CPU nanoseconds per delivered frame (with a forwarder process), polling excluded. */
  cpuNsPerPacket?: number;
  /** Forwarder resident memory right after the send, MiB. */
  rssMiB?: number;
  /**
   * How busy the generator's and the forwarder's CPUs were while the generator sent, 0..1
   * (cpu-busy.ts), the forwarder's less its workers' polling with nothing to do.
   */
  genBusy?: number;
  fwdBusy?: number;
}

export interface MeasureOptions {
  /** The forwarder process: its CPU time and memory are read around the send. */
  proc?: ForwarderProcess | undefined;
  /** Seconds the forwarder's workers have spent polling with nothing to do (subtracted from its CPU). */
  spinSeconds?: (() => Promise<number>) | undefined;
  /** The generator's and the forwarder's CPUs, whose busy shares are read around the send. */
  cpus?: { gen: number | undefined; fwd: number | undefined } | undefined;
}

export async function measureRate(
  gen: GeneratorProcess,
  req: SendRequest,
  count: () => number | Promise<number>,
  o: MeasureOptions = {},
): Promise<RateSample> {
  const { proc, spinSeconds, cpus } = o;
  const before = await count();
  const spin0 = (await spinSeconds?.()) ?? 0;
  const cpu0 = proc?.cpuSeconds();
  const ticks0 = cpus ? readCpuTicks() : undefined;
  const t0 = performance.now();
  const { seconds } = await gen.send(req);
  const window = (performance.now() - t0) / 1000;
  const ticks1 = cpus ? readCpuTicks() : undefined;
  const rss = proc?.rssMiB();
  const after = await settle(count);
  const cpu1 = proc?.cpuSeconds();
  const spin1 = (await spinSeconds?.()) ?? 0;
  const delivered = after - before;
  const s: RateSample = { delivered, seconds, pps: seconds > 0 ? delivered / seconds : 0 };
  if (proc && delivered > 0) s.cpuNsPerPacket = ((cpu1! - cpu0! - (spin1 - spin0)) * 1e9) / delivered;
  if (rss !== undefined) s.rssMiB = rss;
  if (cpus && ticks0 && ticks1) {
    const g = cpus.gen === undefined ? undefined : busyShare(ticks0, ticks1, cpus.gen);
    // Polling is read around a longer span than the send; after traffic a worker polls for at
    // most uplink.spinUs before it sleeps, so nearly all of it fell inside the send.
    const f = cpus.fwd === undefined ? undefined : busyShare(ticks0, ticks1, cpus.fwd, { seconds: window, lessSeconds: spin1 - spin0 });
    if (g !== undefined) s.genBusy = g;
    if (f !== undefined) s.fwdBusy = f;
  }
  return s;
}

/**
 * Records a sample's CPU busy shares (%) under `key` (GEN_BUSY_METRIC, FWD_BUSY_METRIC); returns
 * them for the progress line.
 */
export function addCpuBusy(samples: SampleSet, key: (metric: string, unit: string, better?: Better) => MetricKey, s: RateSample): string {
  const parts: string[] = [];
  if (s.genBusy !== undefined) {
    samples.add(key(GEN_BUSY_METRIC, '%', 'neither'), 100 * s.genBusy);
    parts.push(`generator's CPU ${formatNumber(100 * s.genBusy)}%`);
  }
  if (s.fwdBusy !== undefined) {
    samples.add(key(FWD_BUSY_METRIC, '%', 'neither'), 100 * s.fwdBusy);
    parts.push(`forwarder's ${formatNumber(100 * s.fwdBusy)}%`);
  }
  return parts.length ? `, busy: ${parts.join(', ')}` : '';
}

/** Throws if the run was interrupted. */
export function checkAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw signal.reason instanceof Error ? signal.reason : new Error('interrupted');
}
