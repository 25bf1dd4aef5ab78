/**
 * Round-trip latency with percentiles: iputils ping prints one `time=X ms` line per reply; the
 * summary line has only min/avg/max/mdev, so the replies are collected and ranked here.
 * Nearest-rank percentiles (p99 of 200 samples is the 198th smallest).
 */
import { finish, spawnIn, type NsProcess } from '../lab/traffic.ts';
import { PinholeError } from '../../sys/index.ts';

export interface LatencySample {
  sent: number;
  received: number;
  p50: number;
  p99: number;
  max: number;
}

/**
 * `time=` values (ms) of ping's per-reply lines. With `since` (seconds since the epoch), only
 * replies whose `-D` timestamp (`[1700000000.123456] 64 bytes from …`) is at or after it; a
 * line without a timestamp then does not count.
 */
export function parsePingTimes(text: string, since?: number): number[] {
  const out: number[] = [];
  const re = /^(?:\[(\d+(?:\.\d+)?)\] )?.*time[=<]([\d.]+) ?ms/gm;
  let m: RegExpExecArray | null;
  while ((m = re.exec(text))) {
    if (since !== undefined && (m[1] === undefined || Number(m[1]) < since)) continue;
    out.push(Number(m[2]));
  }
  return out;
}

/** Nearest-rank percentile of unsorted values (p in 0..100). */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * s.length));
  return s[rank - 1]!;
}

function summarisePing(text: string, since?: number): LatencySample {
  const times = parsePingTimes(text, since);
  const m = /(\d+) packets transmitted/.exec(text);
  return {
    // Counted from the summary: with `since`, replies before it are sent but not sampled.
    sent: m && since === undefined ? Number(m[1]) : times.length,
    received: times.length,
    p50: percentile(times, 50),
    p99: percentile(times, 99),
    max: times.length ? Math.max(...times) : NaN,
  };
}

function pingArgs(target: string, intervalS: number, count?: number): string[] {
  return ['-n', '-D', '-i', String(intervalS), '-W', '1', ...(count === undefined ? [] : ['-c', String(count)]), target];
}

/** `count` echo requests from `ns` to `target`, `intervalS` apart (`cpu`: ping runs there only). */
export async function measureLatency(ns: string, target: string, count: number, intervalS: number, cpu?: number): Promise<LatencySample> {
  const p = spawnIn(ns, 'ping', pingArgs(target, intervalS, count), cpu);
  const r = await finish(p, `ping ${target} from ${ns}`, { timeoutMs: Math.ceil(count * intervalS * 1000) + 10_000 });
  const s = summarisePing(r.stdout);
  if (s.received === 0) throw new PinholeError('ERR_BENCH_LATENCY', `ping ${target} from ${ns}: no reply (${r.stderr.trim()})`);
  return s;
}

/**
 * A ping stream running until `stop()` (SIGINT), for latency under load. `omitS`: replies in the
 * first seconds are left out of the sample (the load's warm-up: TCP slow start, the dataplane's
 * JIT compiling the paths the load takes), as iperf3 -O leaves them out of the throughput;
 * `cpu`: ping runs there only.
 */
export function startLatency(
  ns: string,
  target: string,
  intervalS: number,
  o: { omitS?: number; cpu?: number } = {},
): { stop(): Promise<LatencySample>; kill(): void } {
  const omitS = o.omitS ?? 0;
  const since = Date.now() / 1000 + omitS;
  const p: NsProcess = spawnIn(ns, 'ping', pingArgs(target, intervalS), o.cpu);
  return {
    kill: () => p.kill('SIGKILL'),
    async stop() {
      p.kill('SIGINT');
      const r = await finish(p, `ping ${target} from ${ns}`, { timeoutMs: 5000 });
      return summarisePing(r.stdout, omitS > 0 ? since : undefined);
    },
  };
}
