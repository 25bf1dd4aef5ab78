/**
 * bpffs: where pinhole pins maps and programs so a restarted forwarder and operators' tools
 * (bpftool) find them. We use an existing bpf mount if there is one; otherwise mount one at
 * /sys/fs/bpf when that path is not itself a mount point. We never mount over, or unmount, a
 * mount we did not make.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { getSys, PinholeError } from '../sys/index.ts';

export const DEFAULT_BPFFS = '/sys/fs/bpf';

interface MountEntry {
  mountPoint: string;
  fsType: string;
}

function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
}

export function readMounts(): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    if (!line) continue;
    // id parent major:minor root mountpoint options [optional...] - fstype source superoptions
    const [left, right] = line.split(' - ');
    const lf = left!.split(' ');
    const rf = (right ?? '').split(' ');
    out.push({ mountPoint: unescapeMount(lf[4] ?? ''), fsType: rf[0] ?? '' });
  }
  return out;
}

/** The first bpf filesystem mounted, if any (preferring `preferred`). */
export function findBpffs(preferred = DEFAULT_BPFFS): string | undefined {
  const bpf = readMounts().filter((m) => m.fsType === 'bpf');
  return bpf.find((m) => m.mountPoint === preferred)?.mountPoint ?? bpf[0]?.mountPoint;
}

export interface BpffsResult {
  path: string;
  /** True when this call mounted it. */
  mounted: boolean;
}

export function ensureBpffs(preferred = DEFAULT_BPFFS): BpffsResult {
  const found = findBpffs(preferred);
  if (found) return { path: found, mounted: false };
  const occupied = readMounts().find((m) => m.mountPoint === preferred);
  if (occupied) {
    throw new PinholeError(
      'ERR_BPFFS_UNAVAILABLE',
      `no bpf filesystem is mounted and ${preferred} already holds a ${occupied.fsType} mount; mount bpffs somewhere (mount -t bpf bpf /sys/fs/bpf)`,
    );
  }
  try {
    if (!existsSync(preferred)) mkdirSync(preferred, { recursive: true });
    getSys().mount('bpf', preferred, 'bpf', 0, 'mode=0700');
  } catch (err) {
    throw new PinholeError('ERR_BPFFS_UNAVAILABLE', `mount bpffs at ${preferred}: ${(err as Error).message}`, { cause: err });
  }
  return { path: preferred, mounted: true };
}
