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
import { alloc, errnoCodeOf, getSys } from '../sys/index.ts';
import { findBpffs } from './bpffs.ts';
import { createMap } from './map.ts';
import { loadProgram } from './program.ts';
import { runWorkerOnce } from '../worker/spawn.ts';

export type FeatureStatus = 'ok' | 'missing' | 'not-permitted' | 'error';

export interface FeatureResult {
  name: string;
  status: FeatureStatus;
  minKernel: string;
  detail?: string;
}

const NOT_PERMITTED = new Set(['EPERM', 'EACCES']);
const MISSING = new Set(['EINVAL', 'EOPNOTSUPP', 'ENOTSUPP', 'EAFNOSUPPORT', 'ENOSYS', 'EPROTONOSUPPORT', 'ENOENT']);

export function classifyProbeError(name: string, minKernel: string, err: unknown): FeatureResult {
  const code = errnoCodeOf(err) ?? (err as { code?: string }).code;
  const detail = (err as Error).message;
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

// r0 = XDP_PASS; exit
const XDP_PASS_INSNS = new Uint8Array([0xb7, 0, 0, 0, 2, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0]);

export const AF_XDP = 44;
export const SOCK_RAW = 3;
export const SOL_XDP = 283;
export const XDP_UMEM_REG = 4;

export function probeBpf(): Promise<FeatureResult> {
  return featureProbe('bpf', '4.8', () => {
    loadProgram({ name: 'ph_probe', type: 'xdp', insns: XDP_PASS_INSNS }).close();
  });
}

export function probeXdpSockets(): Promise<FeatureResult> {
  return featureProbe('xdpSockets', '4.18', () => {
    const sys = getSys();
    const fd = sys.socket(AF_XDP, SOCK_RAW, 0);
    try {
      // Register a one-frame UMEM: proves the socket family is usable, not just present.
      const area = sys.mmap(4096, 3, 0x22, -1, 0);
      try {
        const reg = alloc(32);
        const dv = new DataView(reg.buffer);
        dv.setBigUint64(0, area.address, true); // addr
        dv.setBigUint64(8, 4096n, true); // len
        dv.setUint32(16, 2048, true); // chunk_size
        dv.setUint32(20, 0, true); // headroom
        sys.setsockopt(fd, SOL_XDP, XDP_UMEM_REG, reg.subarray(0, 24));
        // XSKMAP creation is the other half of the path.
        createMap({ name: 'ph_probe_xsk', type: 'xskmap', keySize: 4, valueSize: 4, maxEntries: 1 }).close();
      } finally {
        sys.munmap(area);
      }
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
