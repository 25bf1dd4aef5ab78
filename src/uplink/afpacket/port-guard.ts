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
 * If another socket already holds the port (e.g. the kernel's own vxlan device), bind fails with
 * EADDRINUSE: that port is reported as `busy` — the kernel will not answer it with ICMP either, but
 * that owner also receives the traffic, which the caller should surface.
 */
import { cbpf } from '../../bpf/cbpf/asm.ts';
import { alloc, getSys, PinholeError, SysError } from '../../sys/index.ts';
import { AF_INET, AF_INET6, IPPROTO_IPV6, IPV6_V6ONLY, SO_RCVBUF, SOCK_CLOEXEC, SOCK_DGRAM, SOL_SOCKET } from './abi.ts';
import { attachFilter, int32 } from './filter.ts';

const DROP_ALL = cbpf().ret.k(0).assemble();

export interface PortGuardOptions {
  ports: readonly number[];
  ipv4?: boolean;
  ipv6?: boolean;
}

export interface PortGuard {
  /** Guarded (family, port) pairs. */
  readonly guarded: readonly { family: 4 | 6; port: number }[];
  /** Pairs some other socket already holds (EADDRINUSE). */
  readonly busy: readonly { family: 4 | 6; port: number }[];
  close(): void;
}

/** Opens the guard sockets in the calling thread's network namespace. Throws ERR_AFPACKET_GUARD. */
export function openPortGuard(opts: PortGuardOptions): PortGuard {
  const sys = getSys();
  const fds: number[] = [];
  const guarded: { family: 4 | 6; port: number }[] = [];
  const busy: { family: 4 | 6; port: number }[] = [];
  const families: (4 | 6)[] = [];
  if (opts.ipv4 ?? true) families.push(4);
  if (opts.ipv6 ?? true) families.push(6);
  const closeAll = (): void => {
    for (const fd of fds.splice(0)) sys.close(fd);
  };
  for (const port of [...new Set(opts.ports)]) {
    for (const family of families) {
      let fd = -1;
      try {
        fd = sys.socket(family === 4 ? AF_INET : AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        attachFilter(fd, DROP_ALL, { lock: true });
        sys.setsockopt(fd, SOL_SOCKET, SO_RCVBUF, int32(1)); // the kernel rounds up to its minimum
        if (family === 6) sys.setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, int32(1));
        sys.bind(fd, family === 4 ? sockaddrIn(port) : sockaddrIn6(port));
        fds.push(fd);
        guarded.push({ family, port });
      } catch (err) {
        if (fd >= 0) sys.close(fd);
        if (err instanceof SysError && err.code === 'EADDRINUSE') {
          busy.push({ family, port });
          continue;
        }
        closeAll();
        throw new PinholeError('ERR_AFPACKET_GUARD', `guard UDP port ${port} (IPv${family}) against ICMP replies`, { cause: err });
      }
    }
  }
  return { guarded, busy, close: closeAll };
}

/** struct sockaddr_in for INADDR_ANY:port. */
function sockaddrIn(port: number): Uint8Array {
  const b = alloc(16);
  const dv = new DataView(b.buffer);
  dv.setUint16(0, AF_INET, true);
  dv.setUint16(2, port, false);
  return b;
}

/** struct sockaddr_in6 for [::]:port. */
function sockaddrIn6(port: number): Uint8Array {
  const b = alloc(28);
  const dv = new DataView(b.buffer);
  dv.setUint16(0, AF_INET6, true);
  dv.setUint16(2, port, false);
  return b;
}
