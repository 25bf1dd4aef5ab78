/**
 * A forwarder process under test — `pinhole uplink`, `pinhole run` or the C reference — started
 * inside a lab namespace, optionally pinned to one CPU (`taskset -c N`; `ip netns exec` and
 * taskset both exec, so the child's pid is the forwarder's own and /proc/PID is its). It speaks
 * JSON lines on stdout: `ready` once, `stats` every --stats-interval, `stopped` after SIGTERM.
 *
 * What the bench reads from it: its counters (the latest `stats` line printed after a given
 * moment) and, from /proc, the CPU time it has used (utime + stime of all its threads, which on
 * veth includes the receiving peer's softirq work done in its sendto calls) and its resident
 * memory (VmRSS).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { PinholeError } from '../../sys/index.ts';

/** bin/pinhole.js of this checkout. */
export const PINHOLE_BIN = fileURLToPath(new URL('../../../bin/pinhole.js', import.meta.url));

/** Clock ticks per second of /proc/PID/stat times (USER_HZ: 100 on every Linux ABI in use). */
const USER_HZ = 100;

/** CPU seconds `pid` has used (all threads: utime + stime, /proc/PID/stat fields 14 and 15). */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name (field 2) may hold spaces and parentheses: fields after the last ')'.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / USER_HZ;
}

/** Resident memory of `pid` in MiB (VmRSS of /proc/PID/status). */
export function rssMiB(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : 0;
}

export interface ForwarderStats {
  rxPackets: number;
  txPackets: number;
  [key: string]: unknown;
}

export interface ForwarderOptions {
  label: string;
  ns: string;
  cpu?: number;
  argv: readonly string[];
  /** Scheduling niceness (nice -n), e.g. -10 so other work on a shared machine disturbs it less. */
  nice?: number;
  /** File descriptors the child inherits as fd 3, 4, ... */
  fds?: readonly number[];
  readyTimeoutMs?: number;
}

export class ForwarderProcess {
  readonly label: string;
  readonly child: ChildProcess;
  readonly pid: number;
  readonly ready: Promise<Record<string, unknown>>;
  private stdout = '';
  private stderr = '';
  private partial = '';
  private statsSeen = 0;
  private latest: ForwarderStats | undefined;
  private stopped: Record<string, unknown> | undefined;
  private readonly listeners = new Set<() => void>();
  private exited = false;

  private constructor(o: ForwarderOptions) {
    this.label = o.label;
    const pin = [...(o.cpu === undefined ? [] : ['taskset', '-c', String(o.cpu)]), ...(o.nice ? ['nice', '-n', String(o.nice)] : [])];
    this.child = spawn('ip', ['netns', 'exec', o.ns, ...pin, ...o.argv], {
      stdio: ['ignore', 'pipe', 'pipe', ...(o.fds ?? [])],
    });
    if (this.child.pid === undefined) throw new PinholeError('ERR_BENCH_FORWARDER', `${o.label}: could not start ${o.argv[0]}`);
    this.pid = this.child.pid;
    this.child.stdout!.on('data', (d: Buffer) => this.onStdout(d.toString()));
    this.child.stderr!.on('data', (d: Buffer) => {
      // Keep the tail: enough to say why it died.
      this.stderr = (this.stderr + d.toString()).slice(-8192);
    });
    this.child.once('exit', () => {
      this.exited = true;
      this.notify();
    });
    let readyLine: Record<string, unknown> | undefined;
    this.ready = this.until(o.readyTimeoutMs ?? 30_000, 'ready', () => {
      if (!readyLine) {
        for (const l of this.stdout.split('\n')) {
          if (l.startsWith('{"event":"ready"')) readyLine = JSON.parse(l) as Record<string, unknown>;
        }
      }
      return readyLine;
    });
    this.ready.catch(() => undefined);
  }

  static start(o: ForwarderOptions): ForwarderProcess {
    return new ForwarderProcess(o);
  }

  private onStdout(s: string): void {
    if (this.stdout.length < 1 << 16) this.stdout += s;
    this.partial += s;
    let nl: number;
    while ((nl = this.partial.indexOf('\n')) >= 0) {
      const line = this.partial.slice(0, nl);
      this.partial = this.partial.slice(nl + 1);
      if (line.startsWith('{"event":"stats"')) {
        try {
          this.latest = JSON.parse(line) as ForwarderStats;
          this.statsSeen++;
        } catch {
          // not ours to judge: a malformed line is skipped
        }
      } else if (line.startsWith('{"event":"stopped"')) {
        try {
          this.stopped = JSON.parse(line) as Record<string, unknown>;
        } catch {
          this.stopped = {};
        }
      }
    }
    this.notify();
  }

  private notify(): void {
    for (const fn of [...this.listeners]) fn();
  }

  /** Resolves with `check()` once it returns a value; rejects on exit or after `ms`. */
  private until<T>(ms: number, what: string, check: () => T | undefined): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const done = (): void => {
        clearTimeout(timer);
        this.listeners.delete(onChange);
      };
      const onChange = (): void => {
        const v = check();
        if (v !== undefined) {
          done();
          resolve(v);
        } else if (this.exited) {
          done();
          reject(this.failure(`exited before "${what}"`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(this.failure(`no "${what}" within ${ms} ms`));
      }, ms);
      this.listeners.add(onChange);
      onChange();
    });
  }

  private failure(what: string): PinholeError {
    return new PinholeError('ERR_BENCH_FORWARDER', `${this.label}: ${what}; stderr: ${this.stderr.trim().slice(-2000)}`);
  }

  /** Counters from a `stats` line computed after this call (the second line from now). */
  freshStats(timeoutMs = 5000): Promise<ForwarderStats> {
    const mark = this.statsSeen + 2;
    return this.until(timeoutMs, 'stats', () => (this.statsSeen >= mark ? this.latest : undefined));
  }

  cpuSeconds(): number {
    return cpuSeconds(this.pid);
  }

  rssMiB(): number {
    return rssMiB(this.pid);
  }

  /** SIGTERM, then the `stopped` line (SIGKILL if it does not come within `timeoutMs`). */
  async stop(timeoutMs = 15_000): Promise<Record<string, unknown>> {
    if (!this.exited) this.child.kill('SIGTERM');
    try {
      const s = await this.until(timeoutMs, 'stopped', () => this.stopped);
      await this.until(timeoutMs, 'exit', () => (this.exited ? true : undefined)).catch(() => undefined);
      return s;
    } finally {
      this.kill();
    }
  }

  kill(): void {
    if (!this.exited && this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }
}
