/**
 * Port guard: keeps the kernel from answering tunnel packets that the AF_PACKET uplink takes.
 *
 * An AF_PACKET socket gets a *copy* of each frame; the original still climbs the host's stack.
 * A UDP datagram to a port no kernel socket is bound to makes the host reply with ICMP port
 * unreachable (ICMPv6 port unreachable) — which tells the remote tunnel endpoint that this node
 * is gone, and leaks the node's existence to scanners.
 *
 * The guard binds one kernel UDP socket per tunnel port and family (0.0.0.0:port and, with
 * IPV6_V6ONLY, [::]:port), each with a classic BPF filter `ret #0`. The kernel's UDP receive path
 * then finds a socket (so it sends no ICMP) and runs its filter, which drops the datagram before
 * it is queued (counted in the socket's drops; no receive memory is ever used, no one has to
 * read). A tiny SO_RCVBUF backs that up.
 *
 * Alternatives considered: an nftables/iptables rule dropping the datagrams in INPUT (needs the
 * netfilter tooling and global firewall state, and must be removed on exit — a crash leaves it);
 * a sysctl or rate limit for ICMP (affects all ICMP of the host). The sockets vanish with the
 * process, so a crash cannot leave anything behind.
 *
 * With tunnel `addresses` the guard binds exactly those (IP_FREEBIND/IPV6_FREEBIND, so an
 * address not configured yet is fine) instead of the wildcards: the pinhole takes only datagrams
 * to those addresses, and the kernel keeps answering the rest as it always did.
 *
 * If another socket already holds the port on an address the guard binds (e.g. the kernel's own
 * vxlan device, which binds the wildcard), bind fails with EADDRINUSE: that pair is reported as
 * `busy`, with who holds it (from /proc/net/udp{,6}, best effort) — the kernel will not answer it
 * with ICMP either, but that owner receives the same traffic. With AF_PACKET it gets a copy of
 * it; with AF_XDP it would get nothing (uplink/decide.ts refuses AF_XDP then).
 */
import { cbpf } from '../../bpf/cbpf/asm.ts';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { formatIPv4, formatIPv6, parseIP } from '../../packet/ip.ts';
import { alloc, getSys, PinholeError, SysError } from '../../sys/index.ts';
import { AF_INET, AF_INET6, IPPROTO_IPV6, IPV6_V6ONLY, SO_RCVBUF, SOCK_CLOEXEC, SOCK_DGRAM, SOL_SOCKET } from './abi.ts';
import { attachFilter, int32 } from './filter.ts';

const DROP_ALL = cbpf().ret.k(0).assemble();

const IPPROTO_IP = 0;
const IP_FREEBIND = 15;
const IPV6_FREEBIND = 78;

export interface PortGuardOptions {
  ports: readonly number[];
  /** Tunnel addresses: guard only these (default: every address, i.e. the wildcards). */
  addresses?: readonly string[];
  ipv4?: boolean;
  ipv6?: boolean;
}

export interface GuardedPort {
  family: 4 | 6;
  port: number;
  /** The address bound; absent for the wildcard. */
  address?: string;
}

export interface BusyPort extends GuardedPort {
  /** Who holds it, e.g. `0.0.0.0:4789, no process (a kernel socket, e.g. a vxlan device)`. */
  holder?: string;
}

export interface PortGuard {
  /** Guarded (family, port[, address]) triples. */
  readonly guarded: readonly GuardedPort[];
  /** Those some other socket already holds (EADDRINUSE). */
  readonly busy: readonly BusyPort[];
  close(): void;
}

/** Opens the guard sockets in the calling thread's network namespace. Throws ERR_AFPACKET_GUARD. */
export function openPortGuard(opts: PortGuardOptions): PortGuard {
  const sys = getSys();
  const fds: number[] = [];
  const guarded: GuardedPort[] = [];
  const busy: BusyPort[] = [];
  const targets: { family: 4 | 6; bytes?: Uint8Array; address?: string }[] = [];
  if (opts.addresses && opts.addresses.length > 0) {
    for (const a of new Set(opts.addresses)) {
      const ip = parseIP(a);
      if (ip.family === 4 ? opts.ipv4 !== false : opts.ipv6 !== false) targets.push({ family: ip.family, bytes: ip.bytes, address: a });
    }
  } else {
    if (opts.ipv4 ?? true) targets.push({ family: 4 });
    if (opts.ipv6 ?? true) targets.push({ family: 6 });
  }
  const closeAll = (): void => {
    for (const fd of fds.splice(0)) sys.close(fd);
  };
  for (const port of [...new Set(opts.ports)]) {
    for (const t of targets) {
      const { family } = t;
      const what: GuardedPort = t.address !== undefined ? { family, port, address: t.address } : { family, port };
      let fd = -1;
      try {
        fd = sys.socket(family === 4 ? AF_INET : AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        attachFilter(fd, DROP_ALL, { lock: true });
        sys.setsockopt(fd, SOL_SOCKET, SO_RCVBUF, int32(1)); // the kernel rounds up to its minimum
        if (family === 6) sys.setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, int32(1));
        if (t.bytes) sys.setsockopt(fd, family === 4 ? IPPROTO_IP : IPPROTO_IPV6, family === 4 ? IP_FREEBIND : IPV6_FREEBIND, int32(1));
        sys.bind(fd, family === 4 ? sockaddrIn(port, t.bytes) : sockaddrIn6(port, t.bytes));
        fds.push(fd);
        guarded.push(what);
      } catch (err) {
        if (fd >= 0) sys.close(fd);
        if (err instanceof SysError && err.code === 'EADDRINUSE') {
          const holder = describeHolders(family, port);
          busy.push(holder ? { ...what, holder } : what);
          continue;
        }
        closeAll();
        const where = t.address !== undefined ? `${t.address} ` : '';
        throw new PinholeError('ERR_AFPACKET_GUARD', `guard UDP port ${where}${port} (IPv${family}) against ICMP replies`, { cause: err });
      }
    }
  }
  return { guarded, busy, close: closeAll };
}

/**
 * The sockets bound to UDP `port` in this network namespace, as text: `ADDR:PORT` and who holds
 * it (a pid, or no process: a kernel socket). Best effort, for messages: undefined if unknown.
 */
export function describeHolders(family: 4 | 6, port: number): string | undefined {
  let text: string;
  try {
    text = readFileSync(family === 4 ? '/proc/net/udp' : '/proc/net/udp6', 'utf8');
  } catch {
    return undefined;
  }
  const found: { addr: string; inode: string }[] = [];
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    const local = f[1];
    if (!local || f.length < 10) continue;
    const [hex, portHex] = local.split(':');
    if (!hex || Number.parseInt(portHex ?? '', 16) !== port) continue;
    found.push({ addr: procAddress(hex), inode: f[9]! });
  }
  if (found.length === 0) return undefined;
  const pids = socketOwners(new Set(found.map((x) => x.inode)));
  return found
    .map((x) => {
      const owner = pids.get(x.inode);
      const at = family === 6 ? `[${x.addr}]:${port}` : `${x.addr}:${port}`;
      return owner ? `${at}, pid ${owner.pid} (${owner.comm})` : `${at}, no process: a kernel socket, e.g. a vxlan device`;
    })
    .join('; ');
}

/** /proc/net/udp{,6} addresses: 32-bit words in host byte order (little-endian here). */
function procAddress(hex: string): string {
  const b = new Uint8Array(hex.length / 2);
  for (let w = 0; w < hex.length / 8; w++) {
    const v = Number.parseInt(hex.slice(w * 8, w * 8 + 8), 16);
    new DataView(b.buffer).setUint32(w * 4, v, true);
  }
  return b.length === 4 ? formatIPv4(b) : formatIPv6(b);
}

/** Socket inode → owning process, by scanning /proc/<pid>/fd (best effort). */
function socketOwners(inodes: Set<string>): Map<string, { pid: number; comm: string }> {
  const out = new Map<string, { pid: number; comm: string }>();
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((p) => /^\d+$/.test(p));
  } catch {
    return out;
  }
  for (const pid of pids) {
    try {
      for (const fd of readdirSync(`/proc/${pid}/fd`)) {
        const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
        if (m && inodes.has(m[1]!) && !out.has(m[1]!)) {
          out.set(m[1]!, { pid: Number(pid), comm: readFileSync(`/proc/${pid}/comm`, 'utf8').trim() });
        }
      }
    } catch {
      // gone, or not ours to read
    }
    if (out.size === inodes.size) break;
  }
  return out;
}

/** struct sockaddr_in for ADDR:port (INADDR_ANY without an address). */
function sockaddrIn(port: number, addr?: Uint8Array): Uint8Array {
  const b = alloc(16);
  const dv = new DataView(b.buffer);
  dv.setUint16(0, AF_INET, true);
  dv.setUint16(2, port, false);
  if (addr) b.set(addr, 4);
  return b;
}

/** struct sockaddr_in6 for [ADDR]:port ([::] without an address). */
function sockaddrIn6(port: number, addr?: Uint8Array): Uint8Array {
  const b = alloc(28);
  const dv = new DataView(b.buffer);
  dv.setUint16(0, AF_INET6, true);
  dv.setUint16(2, port, false);
  if (addr) b.set(addr, 8);
  return b;
}
