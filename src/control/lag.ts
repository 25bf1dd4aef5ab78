/**
 * Event-loop lag: a timer scheduled every `intervalMs` records how late it fires. Lateness is
 * what a blocked or starved main thread looks like to everything else on it (API, metrics,
 * netlink). Samples are kept in a bounded ring.
 */
export interface LagSummary {
  samples: number;
  p50: number;
  p99: number;
  max: number;
}

export interface LagMonitor {
  /** The summary of the most recent `window` samples (default 1,000: ~10 s at 10 ms), still running. */
  snapshot(window?: number): LagSummary;
  stop(): LagSummary;
}

function summarize(values: number[]): LagSummary {
  const s = values.sort((a, b) => a - b);
  const m = s.length;
  const at = (q: number): number => (m ? s[Math.min(m - 1, Math.floor(q * m))]! : 0);
  return { samples: m, p50: at(0.5), p99: at(0.99), max: m ? s[m - 1]! : 0 };
}

export function startLagMonitor(intervalMs = 10, keep = 60_000): LagMonitor {
  const samples = new Float64Array(keep);
  let n = 0;
  let expected = performance.now() + intervalMs;
  const timer = setInterval(() => {
    const now = performance.now();
    samples[n % keep] = Math.max(0, now - expected);
    n++;
    expected = now + intervalMs;
  }, intervalMs);
  timer.unref();
  return {
    snapshot(window = 1000) {
      const m = Math.min(n, keep, window);
      const out: number[] = [];
      for (let i = n - m; i < n; i++) out.push(samples[i % keep]!);
      return summarize(out);
    },
    stop() {
      clearInterval(timer);
      return summarize(Array.from(samples.subarray(0, Math.min(n, keep))));
    },
  };
}
