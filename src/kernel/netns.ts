/**
 * Reaching an interface after it was moved to another network namespace (`ip link set IF netns
 * X`), to take our XDP program off it. A netlink-attached program moves with the device and the
 * kernel offers no way to address it from here: RTM_SETLINK ignores IFLA_TARGET_NETNSID (ENODEV,
 * measured on 6.18), and a network namespace cannot be opened from the id the move's RTM_DELLINK
 * carries. So the namespaces this host can name are searched, by the program's id (unique on the
 * machine): those bind-mounted (`ip netns add` under /run/netns, container runtimes elsewhere:
 * every nsfs mount in /proc/self/mountinfo) and those of running processes (/proc/PID/ns/net),
 * each looked at once (by inode). A namespace held only by an open file descriptor is not found.
 *
 * Entering one: the calling thread joins the namespace (setns(2) moves only the calling thread),
 * opens an rtnetlink socket there — a socket belongs to the namespace it was created in, for
 * its whole life — and returns to its own namespace at once, all synchronously, so nothing else
 * runs on this thread meanwhile. The requests then go through that socket from here.
 */
import { closeSync, openSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { getSys } from '../sys/index.ts';
import { dumpRequest, parseLink, RTM_GETLINK, RTM_NEWLINK, type LinkInfo } from '../netlink/rtnl.ts';
import { RtnlSocket } from '../netlink/socket.ts';

const CLONE_NEWNET = 0x40000000;

/** nsfs mount points (fifth field of mountinfo, octal escapes undone). */
function nsfsMounts(): string[] {
  let text: string;
  try {
    text = readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep < 0 || !line.slice(sep + 3).startsWith('nsfs ')) continue;
    const mountPoint = line.split(' ')[4];
    if (mountPoint) out.push(mountPoint.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))));
  }
  return out;
}

/**
 * Paths naming the network namespaces other than the calling thread's, one per namespace:
 * bind mounts first (named namespaces), then processes'.
 */
export function otherNetnsPaths(): string[] {
  const seen = new Set<string>();
  const key = (p: string): string | undefined => {
    try {
      const s = statSync(p);
      return `${s.dev}:${s.ino}`;
    } catch {
      return undefined;
    }
  };
  const own = key('/proc/thread-self/ns/net');
  if (own) seen.add(own);
  const candidates: string[] = [];
  for (const dir of ['/run/netns', '/var/run/netns']) {
    try {
      for (const n of readdirSync(dir)) candidates.push(`${dir}/${n}`);
    } catch {
      // no such directory
    }
  }
  candidates.push(...nsfsMounts());
  try {
    for (const pid of readdirSync('/proc')) if (/^\d+$/.test(pid)) candidates.push(`/proc/${pid}/ns/net`);
  } catch {
    // no /proc
  }
  const out: string[] = [];
  for (const p of candidates) {
    const k = key(p);
    if (k === undefined || seen.has(k)) continue;
    seen.add(k);
    out.push(p);
  }
  return out;
}

/** An rtnetlink socket of the network namespace at `path` (the calling thread stays where it is). */
export function rtnlSocketIn(path: string): RtnlSocket {
  const sys = getSys();
  const home = openSync('/proc/thread-self/ns/net', 'r');
  try {
    const target = openSync(path, 'r');
    try {
      sys.setns(target, CLONE_NEWNET);
    } finally {
      closeSync(target);
    }
    try {
      return RtnlSocket.open();
    } finally {
      try {
        sys.setns(home, CLONE_NEWNET);
      } catch (err) {
        // Never expected (our own namespace, and we could leave it): carrying on in another
        // namespace would send every later socket of this thread there.
        process.stderr.write(`pinhole: fatal: could not return to the own network namespace: ${(err as Error).message}\n`);
        process.exit(70);
      }
    }
  } finally {
    closeSync(home);
  }
}

export interface FoundLink {
  /** The namespace's path (e.g. /run/netns/NAME or /proc/PID/ns/net). */
  netns: string;
  link: LinkInfo;
  /** A socket of that namespace; the caller closes it. */
  socket: RtnlSocket;
}

/**
 * Looks for the interface that carries XDP program `progId` in another network namespace.
 * Namespaces that cannot be entered (EPERM, gone meanwhile) are skipped.
 */
export function findXdpProgramElsewhere(progId: number): FoundLink | undefined {
  for (const path of otherNetnsPaths()) {
    let socket: RtnlSocket;
    try {
      socket = rtnlSocketIn(path);
    } catch {
      continue;
    }
    try {
      const links = socket
        .dumpSync(dumpRequest(RTM_GETLINK), { what: `dump links in ${path}` })
        .filter((m) => m.type === RTM_NEWLINK)
        .map(parseLink);
      const link = links.find((l) => l.xdp && [l.xdp.progId, l.xdp.driveProgId, l.xdp.skbProgId].includes(progId));
      if (link) return { netns: path, link, socket };
    } catch {
      // the namespace went away while we looked
    }
    socket.close();
  }
  return undefined;
}
