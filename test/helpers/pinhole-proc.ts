/**
 * A `pinhole uplink` process inside a test namespace, driven like an operator would: wait for
 * its ready line, signal it, read its final counters.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { PINHOLE_BIN } from './cli.ts';
import { outputUntil } from './output.ts';

export interface ReadyLine {
  event: 'ready';
  mode: 'afxdp' | 'afpacket';
  xdpMode: string | null;
  detail: string;
  reason: string | null;
  reasons: { code: string; message: string }[];
  queues: number;
}

export interface StoppedLine {
  event: 'stopped';
  mode: string;
  rxPackets: number;
  rxBytes: number;
  txPackets: number;
  txDropped: number;
  kernelDrops: number;
  perQueue: { queue: number; rxPackets: number; txPackets: number }[];
  pinhole: Record<string, number> | null;
  eventLoopLagMs: { samples: number; p50: number; p99: number; max: number };
}

export interface PinholeProc {
  child: ChildProcess;
  ready: Promise<ReadyLine>;
  /** Resolves with the exit code and everything printed. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>;
  stop(signal?: NodeJS.Signals): Promise<StoppedLine>;
  /** How many `stats` lines were printed so far. */
  statsCount(): number;
  /** The most recent `stats` line printed so far (needs --stats-interval), if any. */
  latestStats(): StoppedLine | undefined;
  /** Waits for a `stats` line (needs --stats-interval) that satisfies `pred`. */
  statsUntil(pred: (s: StoppedLine) => boolean, timeoutMs?: number): Promise<StoppedLine>;
}

const live = new Set<ChildProcess>();

/** SIGKILLs every pinhole process a test started that is still running (call in `finally`). */
export function killLeftoverPinholes(): void {
  for (const c of live) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  live.clear();
}

/** `wrap`: a command line the process runs under (e.g. setpriv, prlimit), before node. */
export function startPinhole(
  netns: string,
  args: readonly string[],
  timeoutMs = 20_000,
  command = 'uplink',
  wrap: readonly string[] = [],
): PinholeProc {
  const child = spawn('ip', ['netns', 'exec', netns, ...wrap, process.execPath, PINHOLE_BIN, command, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  live.add(child);
  child.once('exit', () => live.delete(child));
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  // 'close', not 'exit': the process may exit before its last output is read from the pipes.
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>((resolve) => {
    child.once('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  /** The first JSON line on stdout of event `event` that satisfies `pred`, once it is printed. */
  const lineWith = (event: string, ms: number, pred: (j: never) => boolean = () => true): Promise<unknown> =>
    outputUntil(
      child,
      'stdout',
      () => {
        for (const l of stdout.split('\n')) {
          if (!l.trim()) continue;
          try {
            const j = JSON.parse(l) as { event?: string };
            if (j.event === event && pred(j as never)) return j;
          } catch {
            // partial line
          }
        }
        return undefined;
      },
      `pinhole printing "${event}"`,
      () => `stdout ${stdout}\nstderr:\n${stderr}`,
      ms,
    );
  const ready = lineWith('ready', timeoutMs) as Promise<ReadyLine>;
  ready.catch(() => undefined);
  return {
    child,
    ready,
    exited,
    statsCount() {
      return stdout.split('\n').filter((l) => l.startsWith('{"event":"stats"')).length;
    },
    latestStats() {
      const lines = stdout.split('\n');
      for (let i = lines.length - 1; i >= 0; i--) {
        try {
          const j = JSON.parse(lines[i]!) as StoppedLine & { event: string };
          if ((j.event as string) === 'stats') return j;
        } catch {
          // partial or empty line
        }
      }
      return undefined;
    },
    statsUntil(pred, ms = timeoutMs) {
      return lineWith('stats', ms, pred as (j: never) => boolean) as Promise<StoppedLine>;
    },
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      const stopped = lineWith('stopped', timeoutMs) as Promise<StoppedLine>;
      child.kill(signal);
      const s = await stopped;
      await exited;
      return s;
    },
  };
}

/**
 * Resolves when the most recent stats line's `state` (pinhole run: running, recovering) satisfies
 * `pred`, checked on every output chunk. (statsUntil searches every line printed so far, so it
 * would find a `running` from before a fault.)
 */
export function stateUntil(p: PinholeProc, pred: (state: string) => boolean, timeoutMs = 20_000): Promise<true> {
  const state = (): string | undefined => (p.latestStats() as unknown as { state?: string } | undefined)?.state;
  return outputUntil(
    p.child,
    'stdout',
    () => {
      const st = state();
      return st !== undefined && pred(st) ? true : undefined;
    },
    'such a state',
    () => `latest stats: ${JSON.stringify(p.latestStats())}`,
    timeoutMs,
  );
}
