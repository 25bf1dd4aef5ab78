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

/** `time=` values (ms) of ping's per-reply lines. */
export function parsePingTimes(text: string): number[] {
  const out: number[] = [];
  const re = /time[=<]([\d.]+) ?ms/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(text))) out.push(Number(m[1]));
  return out;
}

/** Nearest-rank percentile of unsorted values (p in 0..100). */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * s.length));
  return s[rank - 1]!;
}

function summarisePing(text: string): LatencySample {
  const times = parsePingTimes(text);
  const m = /(\d+) packets transmitted/.exec(text);
  return {
    sent: m ? Number(m[1]) : times.length,
    received: times.length,
    p50: percentile(times, 50),
    p99: percentile(times, 99),
    max: times.length ? Math.max(...times) : NaN,
  };
}

function pingArgs(target: string, intervalS: number, count?: number): string[] {
  return ['-n', '-i', String(intervalS), '-W', '1', ...(count === undefined ? [] : ['-c', String(count)]), target];
}

/** `count` echo requests from `ns` to `target`, `intervalS` apart. */
export async function measureLatency(ns: string, target: string, count: number, intervalS: number): Promise<LatencySample> {
  const p = spawnIn(ns, 'ping', pingArgs(target, intervalS, count));
  const r = await finish(p, `ping ${target} from ${ns}`, { timeoutMs: Math.ceil(count * intervalS * 1000) + 10_000 });
  const s = summarisePing(r.stdout);
  if (s.received === 0) throw new PinholeError('ERR_BENCH_LATENCY', `ping ${target} from ${ns}: no reply (${r.stderr.trim()})`);
  return s;
}

/** A ping stream running until `stop()` (SIGINT), for latency under load. */
export function startLatency(ns: string, target: string, intervalS: number): { stop(): Promise<LatencySample>; kill(): void } {
  const p: NsProcess = spawnIn(ns, 'ping', pingArgs(target, intervalS));
  return {
    kill: () => p.kill('SIGKILL'),
    async stop() {
      p.kill('SIGINT');
      const r = await finish(p, `ping ${target} from ${ns}`, { timeoutMs: 5000 });
      return summarisePing(r.stdout);
    },
  };
}
