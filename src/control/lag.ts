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

export function startLagMonitor(intervalMs = 10, keep = 60_000): { stop: () => LagSummary } {
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
    stop() {
      clearInterval(timer);
      const m = Math.min(n, keep);
      const s = Array.from(samples.subarray(0, m)).sort((a, b) => a - b);
      const at = (q: number): number => (m ? s[Math.min(m - 1, Math.floor(q * m))]! : 0);
      return { samples: m, p50: at(0.5), p99: at(0.99), max: m ? s[m - 1]! : 0 };
    },
  };
}
