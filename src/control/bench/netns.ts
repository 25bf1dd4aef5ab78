/**
 * Namespaces for the benchmarks: commands inside them, counters read from them, kernel objects
 * attached inside them from this process, and the three-node cross-connect topology.
 *
 *   [gen] g0 ──veth── up0 [mid] out0 ──veth── s0 [sink]
 *         198.18.0.2      198.18.0.1  198.19.0.1     198.19.0.2
 *
 * `inNetns` runs a synchronous function with the calling thread inside another network
 * namespace (setns(2) affects only the calling thread) and always switches back: it lets the
 * bench attach XDP programs through bpf_link in a lab namespace while it keeps the link fds, so
 * every attachment ends with the bench, even on SIGKILL. Only synchronous code may run inside:
 * an `await` would let other work run in the wrong namespace.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { getSys, PinholeError } from '../../sys/index.ts';

const CLONE_NEWNET = 0x40000000;

export function inNetns<T>(ns: string, fn: () => T): T {
  const sys = getSys();
  const self = openSync('/proc/thread-self/ns/net', 'r');
  let target: number;
  try {
    target = openSync(`/run/netns/${ns}`, 'r');
  } catch (err) {
    closeSync(self);
    throw new PinholeError('ERR_BENCH_NETNS', `no network namespace ${ns}`, { cause: err });
  }
  try {
    sys.setns(target, CLONE_NEWNET);
    try {
      return fn();
    } finally {
      sys.setns(self, CLONE_NEWNET);
    }
  } finally {
    closeSync(target);
    closeSync(self);
  }
}

/** Runs `cmd args` in `ns` (`ip netns exec`) and returns stdout; throws ERR_BENCH_COMMAND with stderr. */
export function nsExec(ns: string, cmd: string, args: readonly string[], timeoutMs = 30_000): string {
  try {
    return execFileSync('ip', ['netns', 'exec', ns, cmd, ...args], {
      encoding: 'utf8',
      timeout: timeoutMs,
      maxBuffer: 16 << 20,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new PinholeError('ERR_BENCH_COMMAND', `${ns}: ${cmd} ${args.join(' ')}: ${(e.stderr ?? e.message).trim()}`, { cause: err });
  }
}

/** `ip ARGS` (not inside a namespace; use `-n NS`). */
export function ip(...args: string[]): void {
  try {
    execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'], timeout: 15_000 });
  } catch (err) {
    const e = err as { stderr?: Buffer; message: string };
    throw new PinholeError('ERR_BENCH_COMMAND', `ip ${args.join(' ')}: ${(e.stderr?.toString() ?? e.message).trim()}`, { cause: err });
  }
}

/** An interface counter (/sys/class/net/DEV/statistics/NAME) as seen inside `ns`. */
export function linkCounter(ns: string, dev: string, name: string): number {
  return Number(nsExec(ns, 'cat', [`/sys/class/net/${dev}/statistics/${name}`]).trim());
}

/** A value of /sys/class/net/DEV/FILE inside `ns` (ifindex, address, ...). */
export function linkAttr(ns: string, dev: string, file: string): string {
  return nsExec(ns, 'cat', [`/sys/class/net/${dev}/${file}`]).trim();
}

/**
 * Receive Packet Steering: every RX queue of `dev` in `ns` hands its frames to `cpu`'s backlog
 * (/sys/class/net/DEV/queues/rx-N/rps_cpus), so their receive processing runs there instead of
 * on the CPU that delivered them. On veth that is the transmitting CPU (see vxlan.ts).
 */
export function steerReceive(ns: string, dev: string, cpu: number): void {
  // A hex CPU mask, in comma-separated groups of 32 bits (the kernel's cpumask format).
  const mask = (1n << BigInt(cpu)).toString(16).replace(/\B(?=(?:[0-9a-f]{8})+$)/g, ',');
  nsExec(ns, 'sh', ['-c', `for q in /sys/class/net/${dev}/queues/rx-*; do echo ${mask} > $q/rps_cpus; done`]);
}

/** A counter of the kernel's UDP MIB in `ns` (/proc/net/snmp `Udp:`: NoPorts, RcvbufErrors, ...). */
export function udpCounter(ns: string, name: string): number {
  return parseUdpMib(nsExec(ns, 'cat', ['/proc/net/snmp']), name, ns);
}

/** `name` from the `Udp:` header and value lines of /proc/net/snmp's text. */
export function parseUdpMib(text: string, name: string, where = '/proc/net/snmp'): number {
  const lines = text.split('\n').filter((l) => l.startsWith('Udp:'));
  const names = lines[0]?.split(/\s+/) ?? [];
  const values = lines[1]?.split(/\s+/) ?? [];
  const i = names.indexOf(name);
  const v = i < 0 ? NaN : Number(values[i]);
  if (!Number.isFinite(v)) throw new PinholeError('ERR_BENCH_COMMAND', `${where}: no Udp ${name} in /proc/net/snmp`);
  return v;
}

/** The kernel's UDP NoPorts counter in `ns` (datagrams that reached UDP with no socket). */
export const udpNoPorts = (ns: string): number => udpCounter(ns, 'NoPorts');

export function deleteNetns(ns: string): void {
  try {
    execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore', timeout: 15_000 });
  } catch {
    // already gone
  }
}

export interface CrossConnect {
  gen: string;
  mid: string;
  sink: string;
  mac: { g0: string; up0: string; out0: string; s0: string };
  addr: { gen: string; up0: string; out0: string; sink: string };
  /** Deletes the namespaces (their veths go with them). Idempotent. */
  close(): void;
}

/**
 * The three-node topology: veths with `queues` RX/TX queues, fixed MACs, GRO on (frames an XDP
 * program or AF_XDP socket sends into a veth are dropped unless the peer runs XDP or GRO) and IPv6
 * off (the only traffic is what the bench sends), addresses for the kernel's IP forwarding with
 * a permanent neighbour for the sink. IP forwarding stays off until the kernel case turns it on.
 */
export function buildCrossConnect(prefix: string, queues: number): CrossConnect {
  const t: CrossConnect = {
    gen: `${prefix}-g`,
    mid: `${prefix}-m`,
    sink: `${prefix}-s`,
    mac: { g0: '02:00:00:10:00:01', up0: '02:00:00:10:00:02', out0: '02:00:00:10:00:03', s0: '02:00:00:10:00:04' },
    addr: { gen: '198.18.0.2', up0: '198.18.0.1', out0: '198.19.0.1', sink: '198.19.0.2' },
    close: () => {
      for (const ns of made.reverse()) deleteNetns(ns);
      made.length = 0;
    },
  };
  const made: string[] = [];
  try {
    for (const ns of [t.gen, t.mid, t.sink]) {
      ip('netns', 'add', ns);
      made.push(ns);
      ip('-n', ns, 'link', 'set', 'lo', 'up');
    }
    const q = ['numtxqueues', String(queues), 'numrxqueues', String(queues)];
    ip('link', 'add', 'g0', 'netns', t.gen, ...q, 'type', 'veth', 'peer', 'up0', 'netns', t.mid, ...q);
    ip('link', 'add', 'out0', 'netns', t.mid, ...q, 'type', 'veth', 'peer', 's0', 'netns', t.sink, ...q);
    const links: [string, 'g0' | 'up0' | 'out0' | 's0'][] = [
      [t.gen, 'g0'],
      [t.mid, 'up0'],
      [t.mid, 'out0'],
      [t.sink, 's0'],
    ];
    for (const [ns, dev] of links) {
      ip('-n', ns, 'link', 'set', 'dev', dev, 'address', t.mac[dev]);
      nsExec(ns, 'sysctl', ['-qw', `net.ipv6.conf.${dev}.disable_ipv6=1`]);
      ip('-n', ns, 'link', 'set', 'dev', dev, 'up');
      nsExec(ns, 'ethtool', ['-K', dev, 'gro', 'on']);
    }
    ip('-n', t.gen, 'addr', 'add', `${t.addr.gen}/24`, 'dev', 'g0');
    ip('-n', t.mid, 'addr', 'add', `${t.addr.up0}/24`, 'dev', 'up0');
    ip('-n', t.mid, 'addr', 'add', `${t.addr.out0}/24`, 'dev', 'out0');
    ip('-n', t.sink, 'addr', 'add', `${t.addr.sink}/24`, 'dev', 's0');
    ip('-n', t.mid, 'neigh', 'replace', t.addr.sink, 'lladdr', t.mac.s0, 'dev', 'out0', 'nud', 'permanent');
    nsExec(t.mid, 'sysctl', ['-qw', 'net.ipv4.ip_forward=0']);
    return t;
  } catch (err) {
    t.close();
    throw err;
  }
}
