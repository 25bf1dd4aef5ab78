/**
 * A `pinhole run --config FILE` daemon on a lab node, started and watched the way an operator's
 * supervisor would: `ip netns exec NS <node> bin/pinhole.js run --config FILE`, in its own session
 * (so a Ctrl-C in the demo's terminal reaches only the demo, which then stops the daemons in
 * order, and so `--keep` can leave them running after the demo exits), stdout and stderr to
 * files in the lab's state directory (`node-a.out`: the JSON event lines — ready, stats, stopped;
 * `node-a.log`: the JSON log). Files rather than pipes because a pipe would close when the demo
 * exits, and a daemon whose stdout goes away stops (lifecycle.ts).
 *
 * The event lines are followed with fs.watch (inotify) on the .out file plus a final read when
 * the process exits; no polling.
 *
 * Counters of a running daemon come from one function, `readCounters`: the API (`GET /v1/status`
 * over the node's socket), or the next `stats` line when the API does not answer and the daemon
 * was started with --stats-interval.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync, readSync, watch, type FSWatcher } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { apiRequest, responseError } from '../../api/client.ts';
import type { DaemonStatus } from '../../daemon/control.ts';
import { PinholeError } from '../../sys/errors.ts';
import { settleWithin, type WaitOptions } from './traffic.ts';

/** The CLI entry a daemon runs (bin/pinhole.js of this checkout). */
export const PINHOLE_BIN = fileURLToPath(new URL('../../../bin/pinhole.js', import.meta.url));

/** One JSON line the daemon printed on stdout. */
export interface DaemonEvent {
  event: string;
  [key: string]: unknown;
}

export interface Reason {
  code: string;
  message: string;
}

/** The fields of `ready` the lab uses (see commands/run.ts and Forwarder.describe()). */
export interface ReadyEvent extends DaemonEvent {
  event: 'ready';
  mode: 'afxdp' | 'afpacket';
  xdpMode: string | null;
  reasons: Reason[];
  uplink: string;
  queues: number;
  workloads: { connection: string; iface: string; driver: 'afxdp' | 'afpacket'; reasons: Reason[]; xdp?: string }[];
  connections: { name: string; vni: number; local: string; remote: string; port: number }[];
  nextHops: { connection: string; state: string; via?: string }[];
}

/** Per-connection counters (decap_frames, decap_bytes, encap_frames, encap_bytes, drop_*). */
export type ConnectionCounters = Record<string, number>;

export interface NodeCounters {
  connections: Record<string, ConnectionCounters>;
  /** Drops by `<stage>:<reason>`, zero reasons left out. */
  drops: Record<string, number>;
  /** Where they came from. */
  source: 'api' | 'stats';
}

export interface NodeDaemonOptions {
  /** Label for messages ('node a'). */
  label: string;
  ns: string;
  config: string;
  /** Files for stdout (event lines) and stderr (log); truncated at start. */
  outFile: string;
  logFile: string;
  /** API socket from the config (for readCounters through the API). */
  socket: string;
  /** --stats-interval; 0 or absent: none. */
  statsMs?: number;
}

export class NodeDaemon {
  readonly label: string;
  readonly ns: string;
  readonly socket: string;
  readonly logFile: string;
  /** Its stdout: the JSON event lines. */
  readonly outFile: string;
  /** Started with --stats-interval. */
  readonly printsStats: boolean;
  readonly child: ChildProcess;
  readonly pid: number;
  /** Resolves when the process has exited (never rejects). */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private readonly events: DaemonEvent[] = [];
  private readonly listeners = new Set<() => void>();
  private readonly watcher: FSWatcher;
  private outFd: number;
  private offset = 0;
  private partial = '';
  private hasExited = false;

  private constructor(o: NodeDaemonOptions) {
    this.label = o.label;
    this.ns = o.ns;
    this.socket = o.socket;
    this.logFile = o.logFile;
    this.outFile = o.outFile;
    this.printsStats = (o.statsMs ?? 0) > 0;
    const out = openSync(o.outFile, 'w');
    const log = openSync(o.logFile, 'w');
    this.outFd = openSync(o.outFile, 'r');
    // Watch before the daemon can write, so no change goes unnoticed.
    this.watcher = watch(o.outFile, () => this.readNew());
    this.watcher.on('error', () => undefined);
    const args = ['netns', 'exec', o.ns, process.execPath, PINHOLE_BIN, 'run', '--config', o.config];
    if (o.statsMs) args.push('--stats-interval', String(o.statsMs));
    try {
      this.child = spawn('ip', args, { stdio: ['ignore', out, log], detached: true });
    } finally {
      closeSync(out);
      closeSync(log);
    }
    if (this.child.pid === undefined) {
      this.close();
      throw new PinholeError('ERR_LAB_DAEMON', `${o.label}: could not start pinhole (ip netns exec ${o.ns})`);
    }
    this.pid = this.child.pid;
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        this.hasExited = true;
        this.readNew();
        for (const fn of [...this.listeners]) fn();
        resolve({ code, signal });
      });
    });
  }

  /** Starts the daemon (returns at once; await `waitFor('ready')`). */
  static start(o: NodeDaemonOptions): NodeDaemon {
    return new NodeDaemon(o);
  }

  private readNew(): void {
    if (this.outFd < 0) return;
    const buf = Buffer.allocUnsafe(65536);
    for (;;) {
      const n = readSync(this.outFd, buf, 0, buf.length, this.offset);
      if (n <= 0) break;
      this.offset += n;
      this.partial += buf.toString('utf8', 0, n);
    }
    const lines = this.partial.split('\n');
    this.partial = lines.pop() ?? '';
    let added = false;
    for (const l of lines) {
      if (!l.trim()) continue;
      try {
        const j = JSON.parse(l) as DaemonEvent;
        if (j && typeof j.event === 'string') {
          this.events.push(j);
          added = true;
        }
      } catch {
        // not an event line
      }
    }
    if (added) for (const fn of [...this.listeners]) fn();
  }

  /** How many `event` lines were printed so far. */
  count(event: string): number {
    this.readNew();
    return this.events.filter((e) => e.event === event).length;
  }

  /** Whether the process has exited. */
  get done(): boolean {
    return this.hasExited;
  }

  /** The last lines of its log (stderr), for error messages. */
  logTail(lines = 15): string {
    try {
      return readFileSync(this.logFile, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
    } catch {
      return '';
    }
  }

  /**
   * Resolves with the `index`-th (0-based) line of `event` (default: the first), once printed.
   * Rejects when the daemon exits first (naming its log's last lines), on timeout or abort.
   */
  waitFor(event: string, o: WaitOptions & { index?: number }): Promise<DaemonEvent> {
    const index = o.index ?? 0;
    const found = new Promise<DaemonEvent>((resolve, reject) => {
      const check = (): void => {
        const hits = this.events.filter((e) => e.event === event);
        if (hits.length > index) {
          this.listeners.delete(check);
          resolve(hits[index]!);
        } else if (this.hasExited) {
          this.listeners.delete(check);
          const how = this.child.signalCode ? `killed by ${this.child.signalCode}` : `exit ${this.child.exitCode}`;
          reject(
            new PinholeError(
              'ERR_LAB_DAEMON',
              `pinhole on ${this.label} exited (${how}) before "${event}"; its log ends:\n${this.logTail()}`,
            ),
          );
        }
      };
      this.listeners.add(check);
      this.readNew();
      check();
    });
    return settleWithin(found, `pinhole on ${this.label}: waiting for "${event}"`, o).catch((err: unknown) => {
      const e = err as PinholeError;
      if (e.code === 'ERR_LAB_TIMEOUT') {
        throw new PinholeError('ERR_LAB_TIMEOUT', `${e.message}; its log ends:\n${this.logTail()}`, { cause: err });
      }
      throw err;
    });
  }

  /**
   * SIGTERM, then waits for the `stopped` line and the exit; SIGKILL when it does not come within
   * `timeoutMs`. Resolves with the stopped line (undefined when it had to be killed or had died).
   */
  async stop(timeoutMs = 10_000): Promise<DaemonEvent | undefined> {
    if (!this.hasExited) this.child.kill('SIGTERM');
    let stopped: DaemonEvent | undefined;
    try {
      stopped = await this.waitFor('stopped', { timeoutMs });
      await settleWithin(this.exited, `pinhole on ${this.label}: exit`, { timeoutMs });
    } catch {
      if (!this.hasExited) this.child.kill('SIGKILL');
      await this.exited;
    } finally {
      this.close();
    }
    return stopped;
  }

  /** SIGKILL (teardown after a failure; the lab's removal cleans up after it). */
  kill(): void {
    if (!this.hasExited) this.child.kill('SIGKILL');
  }

  /** Stops watching and lets this process exit without it (`--keep`). The daemon runs on. */
  detach(): void {
    this.close();
    this.child.unref();
  }

  private close(): void {
    this.watcher.close();
    if (this.outFd >= 0) {
      closeSync(this.outFd);
      this.outFd = -1;
    }
    this.listeners.clear();
  }
}

// ---- counters: the one switch between the API and stats lines ----------------------------------

/**
 * The counters of a running daemon, read after everything sent so far: through its API
 * (`GET /v1/status`: connections[].counters, drops). When the API does not answer and the daemon
 * prints stats lines (started with --stats-interval), from the next `stats` line printed after
 * this call instead — the fallback for a daemon without the API server.
 */
export async function readCounters(d: NodeDaemon, o: WaitOptions): Promise<NodeCounters> {
  try {
    const res = await settleWithin(
      apiRequest<DaemonStatus>(d.socket, 'GET', '/v1/status', undefined, { timeoutMs: o.timeoutMs }),
      `GET /v1/status on ${d.label}`,
      o,
    );
    if (res.status !== 200) throw responseError(res);
    const connections: Record<string, ConnectionCounters> = {};
    for (const c of res.body.connections) connections[c.name] = { ...c.counters };
    return { connections, drops: { ...res.body.drops }, source: 'api' };
  } catch (err) {
    if (!d.printsStats || (err as { code?: string }).code === 'ERR_LAB_ABORTED') throw err;
  }
  const s = await d.waitFor('stats', { ...o, index: d.count('stats') });
  return {
    connections: (s.connections ?? {}) as Record<string, ConnectionCounters>,
    drops: (s.drops ?? {}) as Record<string, number>,
    source: 'stats',
  };
}
