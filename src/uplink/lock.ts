/**
 * One pinhole per interface: the process binds the abstract unix socket `@pinhole/<ifindex>`
 * for its whole life. Abstract socket names belong to the network namespace — the scope of an
 * ifindex — not to a mount namespace, so two containers with host networking (or a pod and an
 * operator's shell) see each other's claim; and the kernel frees the name when the process dies,
 * even by SIGKILL, leaving no file behind. A claimed name means a live pinhole; an attached
 * program named `pinhole` while the name is free is stale and may be taken over.
 *
 * The holder's pid is found through /proc/net/unix + /proc/<pid>/fd, best effort, for the error.
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { AF_UNIX, alloc, getSys, PinholeError, SOCK_CLOEXEC, SOCK_DGRAM, SysError } from '../sys/index.ts';

export interface IfaceLock {
  readonly name: string;
  release(): void;
}

export function lockName(ifindex: number): string {
  return `pinhole/${ifindex}`;
}

/** Pid of the process holding abstract socket `@name` in this netns, if it can be found. */
function holderPid(name: string): number | undefined {
  try {
    const inodes = new Set<string>();
    for (const line of readFileSync('/proc/net/unix', 'utf8').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f[7] === `@${name}`) inodes.add(f[6]!);
    }
    if (inodes.size === 0) return undefined;
    for (const pid of readdirSync('/proc')) {
      if (!/^\d+$/.test(pid)) continue;
      try {
        for (const fd of readdirSync(`/proc/${pid}/fd`)) {
          const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
          if (m && inodes.has(m[1]!)) return Number(pid);
        }
      } catch {
        // process gone or not ours to read
      }
    }
  } catch {
    // no procfs
  }
  return undefined;
}

/**
 * Whether a pinhole holds the lock of `ifindex` (read-only: /proc/net/unix of this netns, so it
 * never races a starting pinhole for the name), with its pid when it can be found. Undefined
 * when procfs cannot be read.
 */
export function lockHolder(ifindex: number): { held: boolean; pid?: number } | undefined {
  const name = lockName(ifindex);
  let text: string;
  try {
    text = readFileSync('/proc/net/unix', 'utf8');
  } catch {
    return undefined;
  }
  const held = text.split('\n').some((line) => line.trim().split(/\s+/)[7] === `@${name}`);
  if (!held) return { held };
  const pid = holderPid(name);
  return pid === undefined ? { held } : { held, pid };
}

export function lockInterface(ifname: string, ifindex: number): IfaceLock {
  const sys = getSys();
  const name = lockName(ifindex);
  const bytes = new TextEncoder().encode(name);
  // struct sockaddr_un { sa_family_t sun_family; char sun_path[108]; } — abstract: sun_path[0] = 0.
  const addr = alloc(2 + 1 + bytes.length);
  new DataView(addr.buffer).setUint16(0, AF_UNIX, true);
  addr.set(bytes, 3);
  const fd = sys.socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  try {
    sys.bind(fd, addr);
  } catch (err) {
    sys.close(fd);
    if (err instanceof SysError && err.code === 'EADDRINUSE') {
      const pid = holderPid(name);
      throw new PinholeError('ERR_UPLINK_BUSY', `another pinhole (pid ${pid ?? '?'}) is running on ${ifname}; one pinhole per interface`, {
        details: { pid, lock: `@${name}` },
      });
    }
    throw new PinholeError('ERR_UPLINK_LOCK', `claim @${name} for ${ifname}: ${(err as Error).message}`, { cause: err });
  }
  let released = false;
  return {
    name,
    release() {
      if (released) return;
      released = true;
      sys.close(fd);
    },
  };
}
