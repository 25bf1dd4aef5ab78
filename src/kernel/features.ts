/**
 * Feature probes: real attempts, not version guesses. Each probe is memoised and answers
 *   ok            — the feature works here;
 *   missing       — the kernel does not have it (EINVAL/EOPNOTSUPP/EAFNOSUPPORT/ENOSYS...);
 *   not-permitted — we could not test it (EPERM/EACCES): run as root or grant capabilities;
 *   error         — something else failed (detail says what).
 * The minimum kernel is informative only: it is necessary, not sufficient.
 */
import { existsSync, readFileSync } from 'node:fs';
import { release } from 'node:os';
import { AF_XDP, alloc, errnoCodeOf, getSys, SOCK_RAW } from '../sys/index.ts';
import { SOL_XDP, XDP_UMEM_REG } from '../uplink/xsk/abi.ts';
import { XDP_PASS_INSNS } from './pass-program.ts';
import { findBpffs } from './bpffs.ts';
import { createMap } from './map.ts';
import { loadProgram } from './program.ts';
import { runWorkerOnce } from '../worker/spawn.ts';
import { umemBytes, xskRings } from '../uplink/xsk/sizing.ts';

export type FeatureStatus = 'ok' | 'missing' | 'not-permitted' | 'error';

export interface FeatureResult {
  name: string;
  status: FeatureStatus;
  minKernel: string;
  detail?: string;
}

const NOT_PERMITTED = new Set(['EPERM', 'EACCES']);
const MISSING = new Set(['EINVAL', 'EOPNOTSUPP', 'ENOTSUPP', 'EAFNOSUPPORT', 'ENOSYS', 'EPROTONOSUPPORT', 'ENOENT']);

/** An error a probe throws when it knows the status itself (e.g. a limit, not an errno). */
export class ProbeFailure extends Error {
  readonly status: FeatureStatus;
  constructor(status: FeatureStatus, message: string, opts: { cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'ProbeFailure';
    this.status = status;
  }
}

export function classifyProbeError(name: string, minKernel: string, err: unknown): FeatureResult {
  const detail = (err as Error).message;
  if (err instanceof ProbeFailure) return { name, status: err.status, minKernel, detail };
  const code = errnoCodeOf(err) ?? (err as { code?: string }).code;
  if (code && NOT_PERMITTED.has(code)) return { name, status: 'not-permitted', minKernel, detail };
  if (code && MISSING.has(code)) return { name, status: 'missing', minKernel, detail };
  return { name, status: 'error', minKernel, detail };
}

const cache = new Map<string, Promise<FeatureResult>>();

export function featureProbe(name: string, minKernel: string, fn: () => Promise<string | void> | string | void): Promise<FeatureResult> {
  let p = cache.get(name);
  if (!p) {
    p = (async () => {
      try {
        const detail = await fn();
        return detail ? { name, status: 'ok' as const, minKernel, detail } : { name, status: 'ok' as const, minKernel };
      } catch (err) {
        return classifyProbeError(name, minKernel, err);
      }
    })();
    cache.set(name, p);
  }
  return p;
}

/** Forget memoised results (tests). */
export function resetFeatureProbes(): void {
  cache.clear();
}

export function probeBpf(): Promise<FeatureResult> {
  return featureProbe('bpf', '4.8', () => {
    loadProgram({ name: 'ph_probe', type: 'xdp', insns: XDP_PASS_INSNS }).close();
  });
}

/**
 * Bytes of one AF_XDP UMEM as the uplink registers it with the default rings (uplink/xsk/sizing.ts:
 * a full fill ring plus a full TX ring of 4 KiB frames, 64 MiB per queue); deeper rings
 * (`uplink.rings`, `--ring-size`) need more, a cross-connect's `--to` a smaller one per queue.
 */
export const XSK_UMEM_BYTES = umemBytes(xskRings());

/**
 * What the kernel charges a UMEM against (net/xdp/xdp_umem.c, xdp_umem_account_pages): nothing
 * with CAP_IPC_LOCK; otherwise the pages count against RLIMIT_MEMLOCK together with everything
 * else this user has locked, and registration fails with ENOBUFS beyond it.
 */
export interface LockedMemoryBudget {
  capIpcLock: boolean;
  /** The soft RLIMIT_MEMLOCK in bytes; Infinity when unlimited. */
  limit: number;
}

const CAP_IPC_LOCK = 14;

/** Reads CapEff (/proc/self/status) and the soft RLIMIT_MEMLOCK (/proc/self/limits). */
export function lockedMemoryBudget(): LockedMemoryBudget {
  let capIpcLock = false;
  let limit = Number.POSITIVE_INFINITY;
  try {
    const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'));
    capIpcLock = m !== null && ((BigInt(`0x${m[1]}`) >> BigInt(CAP_IPC_LOCK)) & 1n) === 1n;
    const l = /^Max locked memory\s+(\S+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    if (l && l[1] !== 'unlimited') limit = Number(l[1]);
  } catch {
    // no procfs: unknown, assume no limit (the registration itself will tell)
  }
  return { capIpcLock, limit };
}

function mib(bytes: number): string {
  if (!Number.isFinite(bytes)) return 'unlimited';
  return bytes >= 1 << 20 ? `${+(bytes / (1 << 20)).toFixed(1)} MiB` : `${bytes} bytes`;
}

/**
 * Why registering a `bytes`-byte UMEM failed with `errno`, naming the capability or limit
 * (ENOBUFS is the locked-memory accounting; ENOMEM the pinning of the pages).
 */
export function umemFailureMessage(errno: string | undefined, bytes: number, budget: LockedMemoryBudget): string {
  const what = `registering a ${mib(bytes)} UMEM failed (${errno ?? 'error'})`;
  if (errno === 'ENOBUFS' || errno === 'EPERM') {
    return (
      `${what}: the locked-memory limit: no CAP_IPC_LOCK and RLIMIT_MEMLOCK is ${mib(budget.limit)} (shared by everything this user has locked); ` +
      `AF_XDP needs ${mib(XSK_UMEM_BYTES)} per queue with the default rings: grant CAP_IPC_LOCK or raise RLIMIT_MEMLOCK (ulimit -l, systemd LimitMEMLOCK=)`
    );
  }
  if (errno === 'ENOMEM') return `${what}: the kernel could not pin the UMEM's pages (out of memory)`;
  return what;
}

/**
 * The UMEM size the probe registers: one page when nothing limits it (CAP_IPC_LOCK, or no
 * RLIMIT_MEMLOCK), else the uplink's real size — the kernel's accounting is the only honest
 * answer, since the limit is shared with every page this user already has locked.
 */
export function umemProbeBytes(budget: LockedMemoryBudget): number {
  return budget.capIpcLock || !Number.isFinite(budget.limit) ? 4096 : XSK_UMEM_BYTES;
}

export function probeXdpSockets(): Promise<FeatureResult> {
  return featureProbe('xdpSockets', '4.18', () => {
    const sys = getSys();
    const fd = sys.socket(AF_XDP, SOCK_RAW, 0);
    try {
      // Register a UMEM: proves the socket family is usable, not just present, and that the
      // uplink's UMEM fits the locked-memory budget.
      const budget = lockedMemoryBudget();
      const bytes = umemProbeBytes(budget);
      const area = sys.mmap(bytes, 3, 0x22, -1, 0);
      try {
        const reg = alloc(32);
        const dv = new DataView(reg.buffer);
        dv.setBigUint64(0, area.address, true); // addr
        dv.setBigUint64(8, BigInt(bytes), true); // len
        dv.setUint32(16, 4096, true); // chunk_size
        dv.setUint32(20, 0, true); // headroom
        try {
          sys.setsockopt(fd, SOL_XDP, XDP_UMEM_REG, reg.subarray(0, 24));
        } catch (err) {
          const code = errnoCodeOf(err);
          if (code === 'ENOBUFS' || code === 'ENOMEM') {
            throw new ProbeFailure(code === 'ENOBUFS' ? 'not-permitted' : 'error', umemFailureMessage(code, bytes, budget), { cause: err });
          }
          throw err;
        }
        // XSKMAP creation is the other half of the path.
        createMap({ name: 'ph_probe_xsk', type: 'xskmap', keySize: 4, valueSize: 4, maxEntries: 1 }).close();
      } finally {
        sys.munmap(area);
      }
      if (bytes === XSK_UMEM_BYTES) return `no CAP_IPC_LOCK; a ${mib(bytes)} UMEM fits RLIMIT_MEMLOCK (${mib(budget.limit)}) for now`;
    } finally {
      sys.close(fd);
    }
  });
}

/**
 * XDP through bpf_link (BPF_LINK_CREATE with BPF_XDP, kernel 5.9). Tested for real on the
 * loopback device of a private network namespace owned by a short-lived worker thread, so no
 * interface of the host is touched.
 */
export function probeBpfLinkXdp(): Promise<FeatureResult> {
  return featureProbe('bpfLinkXdp', '5.9', async () => {
    const r = await runWorkerOnce<{ ok: boolean; code?: string; message?: string }>(new URL('./features-worker.ts', import.meta.url), {
      probe: 'bpfLinkXdp',
    });
    if (!r.ok) throw Object.assign(new Error(r.message ?? 'bpf_link probe failed'), { code: r.code });
  });
}

export function probeBpffs(): Promise<FeatureResult> {
  return featureProbe('bpffs', '4.4', () => {
    const path = findBpffs();
    if (path) return `mounted at ${path}`;
    // Not mounted: supported if the kernel lists the filesystem type (then it can be mounted).
    if (!/\tbpf$/m.test(readFileSync('/proc/filesystems', 'utf8'))) {
      throw Object.assign(new Error('the kernel has no bpf filesystem (not in /proc/filesystems)'), { code: 'ENOENT' });
    }
    return 'not mounted; pinhole mounts it at /sys/fs/bpf when it needs to pin';
  });
}

export function probeBtf(): Promise<FeatureResult> {
  return featureProbe('btf', '5.4', () => {
    if (!existsSync('/sys/kernel/btf/vmlinux')) throw Object.assign(new Error('no /sys/kernel/btf/vmlinux'), { code: 'ENOENT' });
  });
}

export interface FeatureSet {
  bpf: FeatureResult;
  xdpSockets: FeatureResult;
  bpfLinkXdp: FeatureResult;
  bpffs: FeatureResult;
  btf: FeatureResult;
}

export async function probeFeatures(): Promise<FeatureSet> {
  const [bpf, xdpSockets, bpfLinkXdp, bpffs, btf] = await Promise.all([
    probeBpf(),
    probeXdpSockets(),
    probeBpfLinkXdp(),
    probeBpffs(),
    probeBtf(),
  ]);
  return { bpf, xdpSockets, bpfLinkXdp, bpffs, btf };
}

export function kernelRelease(): string {
  return release();
}

/**
 * Whether a kernel release string (`uname -r`, e.g. "6.18.44-fc") is `major.minor` or later. For
 * the few behaviours a probe cannot see without side effects (TX metadata honoured on every
 * device, AF_PACKET taking UDP_L4 GSO); an unparsable release counts as older.
 */
export function releaseAtLeast(kernelRelease: string, major: number, minor: number): boolean {
  const m = /^(\d+)\.(\d+)/.exec(kernelRelease);
  if (!m) return false;
  const a = Number(m[1]);
  return a > major || (a === major && Number(m[2]) >= minor);
}
