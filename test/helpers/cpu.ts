/**
 * CPU time of a process (all its threads) from /proc/PID/stat, and the share of one CPU it
 * used over a window: the check that a process waiting on a fault does not spin.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { setTimeout as delay } from 'node:timers/promises';

const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());

/**
 * The most of one CPU a pinhole process may use while it waits on a fault (link down, interface
 * gone), measured over a second or two: idle, it uses 1–4% here (the main thread's 10 ms
 * event-loop-lag timer, stats lines, workers waking from poll() every 50 ms); a loop that does
 * not wait in poll() uses a whole CPU.
 */
export const MAX_IDLE_CPU_SHARE = 0.05;

/** User plus system time of `pid`, all threads (fields 14 and 15 of /proc/PID/stat), in seconds. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / CLK_TCK;
}

/** The share of one CPU `pid` used over the next `ms` (1 = a whole CPU); undefined if it exited. */
export async function cpuShare(pid: number, ms: number): Promise<number | undefined> {
  try {
    const c0 = cpuSeconds(pid);
    const t0 = performance.now();
    // A CPU share is measured over wall-clock time: there is no event to wait for.
    await delay(ms);
    return (cpuSeconds(pid) - c0) / ((performance.now() - t0) / 1000);
  } catch {
    return undefined;
  }
}
