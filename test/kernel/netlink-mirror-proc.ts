/**
 * A mirror running in a child process inside a test namespace (netlink-child.ts `mirror`),
 * driven by JSON lines (see netlink-mirror-child.ts for the commands). Tests may stop and
 * continue the child (SIGSTOP/SIGCONT) to let the kernel overflow its subscription.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { Netns } from '../helpers/netns.ts';

const CHILD = fileURLToPath(new URL('./netlink-child.ts', import.meta.url));
export const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export class MirrorChild {
  private readonly proc: ChildProcess;
  private readonly lines: AsyncIterator<string>;
  private stderr = '';

  constructor(ns: Netns, rcvbuf?: number) {
    // `ip netns exec` execs node itself, so `proc.pid` is the mirror's process.
    this.proc = spawn(
      'ip',
      ['netns', 'exec', ns.name, process.execPath, '--import', 'tsx', CHILD, 'mirror', ...(rcvbuf ? [String(rcvbuf)] : [])],
      { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] },
    );
    this.proc.stderr!.on('data', (d: Buffer) => {
      this.stderr += d.toString();
    });
    this.lines = createInterface({ input: this.proc.stdout! })[Symbol.asyncIterator]();
  }

  async next(): Promise<any> {
    const r = await this.lines.next();
    if (r.done) throw new Error(`mirror child exited: ${this.stderr}`);
    return JSON.parse(r.value);
  }

  async ask(cmd: Record<string, unknown>): Promise<any> {
    this.proc.stdin!.write(`${JSON.stringify(cmd)}\n`);
    const a = await this.next();
    if (a && a.error === 'child') throw new Error(`child: ${a.message}\n${this.stderr}`);
    return a;
  }

  /** Stops the child and returns once the kernel reports it stopped (no reads happen after this). */
  async stop(): Promise<void> {
    await stopProcess(this.proc);
  }

  resume(): void {
    this.proc.kill('SIGCONT');
  }

  async close(): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    this.proc.kill('SIGCONT');
    const done = new Promise((r) => this.proc.once('exit', r));
    this.proc.stdin!.end(`${JSON.stringify({ cmd: 'exit' })}\n`);
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), 10_000);
    await done;
    clearTimeout(timer);
  }
}

/** SIGSTOPs `proc` and waits until /proc shows it stopped (state T). */
export async function stopProcess(proc: ChildProcess): Promise<void> {
  proc.kill('SIGSTOP');
  // Signal delivery is asynchronous; the state flips within microseconds. Poll /proc briefly.
  for (let i = 0; i < 1000; i++) {
    const stat = readFileSync(`/proc/${proc.pid}/stat`, 'utf8');
    if (/^\d+ \(.*\) T /.test(stat)) return;
    await new Promise((r) => setImmediate(r));
  }
  throw new Error(`process ${proc.pid} did not stop`);
}

export async function withMirror<T>(ns: Netns, rcvbuf: number | undefined, fn: (m: MirrorChild) => Promise<T>): Promise<T> {
  const m = new MirrorChild(ns, rcvbuf);
  try {
    const hello = await m.next();
    assert.equal(hello.ready, true);
    return await fn(m);
  } finally {
    await m.close();
  }
}

export function noDad(...ns: Netns[]): void {
  for (const n of ns) {
    n.exec('sysctl', ['-qw', 'net.ipv6.conf.all.accept_dad=0']);
    n.exec('sysctl', ['-qw', 'net.ipv6.conf.default.accept_dad=0']);
  }
}

/**
 * Keeps the kernel from adding neighbours on its own in `ns` (call before creating links): links
 * get no IPv6 link-local address, so no DAD, router solicitation or MLD traffic creates
 * multicast NOARP entries at unpredictable times. IPv6 neighbours can still be added by hand.
 */
export function quietNeighbours(ns: Netns): void {
  ns.exec('sysctl', ['-qw', 'net.ipv6.conf.default.addr_gen_mode=1']);
}

export interface KernelNeighbour {
  dev: string;
  ip: string;
  mac: string | null;
  state: string;
}

/** The kernel's neighbour table in `ns` as iproute2 shows it (`ip -j neigh show nud all`). */
export function kernelNeighbours(ns: Netns): KernelNeighbour[] {
  const rows = JSON.parse(ns.ip('-j', 'neigh', 'show', 'nud', 'all')) as {
    dst: string;
    dev: string;
    lladdr?: string;
    state?: string[];
  }[];
  return rows.map((r) => ({ dev: r.dev, ip: r.dst, mac: r.lladdr ?? null, state: (r.state ?? ['NONE']).join('|') }));
}

export const neighLine = (n: KernelNeighbour): string => `${n.dev}|${n.ip}|${n.mac ?? '-'}|${n.state}`;
