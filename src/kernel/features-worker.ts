/**
 * Worker-thread side of feature probes that must attach something: the thread moves itself into
 * a fresh network namespace (unshare(CLONE_NEWNET) affects only the calling thread), attaches to
 * that namespace's loopback, and exits — the namespace dies with the thread.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { errnoCodeOf, getSys } from '../sys/index.ts';
import { BPF_LINK_CREATE, BPF_XDP, LinkCreateAttr } from './bpf-attr.ts';
import { XDP_PASS_INSNS } from './pass-program.ts';
import { loadProgram } from './program.ts';

const CLONE_NEWNET = 0x40000000;

function probeBpfLinkXdp(): void {
  const sys = getSys();
  sys.unshare(CLONE_NEWNET);
  const lo = sys.ifNameToIndex('lo');
  const prog = loadProgram({ name: 'ph_probe_link', type: 'xdp', insns: XDP_PASS_INSNS, expectedAttachType: BPF_XDP });
  try {
    const link = sys.bpf(BPF_LINK_CREATE, LinkCreateAttr.encode({ prog_fd: prog.fd, target_ifindex: lo, attach_type: BPF_XDP }));
    sys.close(link);
  } finally {
    prog.close();
  }
}

const { probe } = workerData as { probe: string };
try {
  if (probe === 'bpfLinkXdp') probeBpfLinkXdp();
  else throw new Error(`unknown probe ${probe}`);
  parentPort!.postMessage({ ok: true });
} catch (err) {
  parentPort!.postMessage({ ok: false, code: errnoCodeOf(err) ?? (err as { code?: string }).code, message: (err as Error).message });
}
