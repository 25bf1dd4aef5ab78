/**
 * Workload interfaces (the host side of a pod's veth), live: the redirect-all program
 * (bpf/programs/redirect-all.ts) loaded with its two maps, and attached through bpf_link.
 *
 * Attachment differs from the uplink on purpose:
 *  - uplink (kernel/pinhole.ts + netlink attach with `persist`): if pinhole crashes the pinhole
 *    program stays and passes everything to the kernel, so the host keeps its network.
 *  - workload interface (here, bpf_link only, never netlink): the attachment lives exactly as
 *    long as the link fd, so if pinhole dies (even SIGKILL) the kernel detaches the program and
 *    the veth is the kernel's again, as it was before pinhole started. A drop-everything program
 *    left behind would black-hole the pod with nobody owning it; with bpf_link there is no stale
 *    program to find or take over, and a restart attaches afresh. A kernel without bpf_link for
 *    XDP (< 5.9) gets ERR_XDP_ATTACH rather than a silent netlink attachment that would outlive us.
 *
 * Another program on the interface is never replaced: ERR_XDP_FOREIGN_PROGRAM (xdp-attach.ts).
 *
 * While running, frames on a queue with no registered socket are dropped and counted as
 * `noSocket` (see the program's header for why it is DROP and not PASS).
 */
import { assemble } from '../bpf/asm/index.ts';
import {
  buildRedirectAll,
  DEFAULT_WORKLOAD_QUEUES,
  REDIRECT_ALL_COUNTERS,
  REDIRECT_ALL_INDEX,
  REDIRECT_ALL_PROGRAM_NAME,
  redirectAllMapSpecs,
  type RedirectAllMaps,
} from '../bpf/programs/redirect-all.ts';
import { alloc, PinholeError } from '../sys/index.ts';
import { createMap, possibleCpus, type BpfMap } from './map.ts';
import { loadProgram, type Program } from './program.ts';
import { attachXdp, type XdpAttachment, type XdpMode } from './xdp-attach.ts';

export type RedirectAllMapSet = { [K in keyof RedirectAllMaps]: BpfMap };

export interface RedirectAllCounters {
  /** Frames handed to a socket (bpf_redirect_map returned XDP_REDIRECT), summed over CPUs. */
  redirected: bigint;
  /** Frames dropped because no socket was registered on their RX queue. */
  noSocket: bigint;
}

/** The largest XSKMAP accepted (veth allows 4096 queues; real NICs have far fewer). */
const MAX_QUEUES = 4096;

export class LoadedRedirectAll {
  readonly program: Program;
  readonly maps: RedirectAllMapSet;
  /** Queues 0..queues-1 can have a socket (the XSKMAP's size). */
  readonly queues: number;
  private readonly counterVals: Uint8Array;
  private readonly counterKeys: Uint8Array;
  private readonly key = alloc(4);
  private readonly value = alloc(4);

  constructor(program: Program, maps: RedirectAllMapSet, queues: number) {
    this.program = program;
    this.maps = maps;
    this.queues = queues;
    this.counterVals = alloc(REDIRECT_ALL_COUNTERS.length * maps.counters.valueBytes);
    this.counterKeys = alloc(REDIRECT_ALL_COUNTERS.length * 4);
  }

  private queueKey(queue: number): Uint8Array {
    if (!Number.isInteger(queue) || queue < 0 || queue >= this.queues) {
      throw new PinholeError('ERR_WORKLOAD_QUEUE', `queue ${queue} is outside the XSKMAP (0..${this.queues - 1})`, {
        details: { queue, queues: this.queues },
      });
    }
    new DataView(this.key.buffer).setUint32(0, queue, true);
    return this.key;
  }

  /** Registers the AF_XDP socket `xskFd` (bound to this interface's `queue`) for that queue. */
  bindQueue(queue: number, xskFd: number): void {
    const key = this.queueKey(queue);
    new DataView(this.value.buffer).setUint32(0, xskFd, true);
    this.maps.xsks.update(key, this.value);
  }

  /**
   * Removes the socket of `queue` (if any); its frames are dropped from now on. There is no
   * "was it set" answer: an XSKMAP deletes absent entries without ENOENT and cannot be read
   * from user space (lookup is EOPNOTSUPP).
   */
  unbindQueue(queue: number): void {
    this.maps.xsks.delete(this.queueKey(queue));
  }

  /** Counters summed over CPUs, read in one batch syscall. */
  counters(): RedirectAllCounters {
    this.maps.counters.lookupAllArray(this.counterVals, this.counterKeys);
    const dv = new DataView(this.counterVals.buffer);
    const kv = new DataView(this.counterKeys.buffer);
    const stride = this.maps.counters.valueBytes;
    const cpus = possibleCpus();
    const out: RedirectAllCounters = { redirected: 0n, noSocket: 0n };
    // The batch returns keys in map order; index by the returned key, not the position.
    for (let i = 0; i < REDIRECT_ALL_COUNTERS.length; i++) {
      let sum = 0n;
      for (let c = 0; c < cpus; c++) sum += dv.getBigUint64(i * stride + c * 8, true);
      const key = kv.getUint32(i * 4, true);
      if (key === REDIRECT_ALL_INDEX.redirected) out.redirected = sum;
      else if (key === REDIRECT_ALL_INDEX['no-socket']) out.noSocket = sum;
    }
    return out;
  }

  close(): void {
    this.program.close();
    for (const m of Object.values(this.maps)) m.close();
  }
}

export interface LoadRedirectAllOptions {
  /** Size of the XSKMAP (queues 0..queues-1). Default 64. */
  queues?: number;
}

/** Creates the maps and loads the redirect-all program through the verifier. */
export function loadRedirectAll(opts: LoadRedirectAllOptions = {}): LoadedRedirectAll {
  const queues = opts.queues ?? DEFAULT_WORKLOAD_QUEUES;
  if (!Number.isInteger(queues) || queues < 1 || queues > MAX_QUEUES) {
    throw new PinholeError('ERR_CONFIG_QUEUES', `queues must be an integer in 1..${MAX_QUEUES}, got ${queues}`);
  }
  const specs = redirectAllMapSpecs(queues);
  const made: BpfMap[] = [];
  try {
    const xsks = createMap(specs.xsks);
    made.push(xsks);
    const counters = createMap(specs.counters);
    made.push(counters);
    const insns = assemble(buildRedirectAll(), { maps: { [xsks.spec.name]: xsks.fd, [counters.spec.name]: counters.fd } });
    const program = loadProgram({ name: REDIRECT_ALL_PROGRAM_NAME, type: 'xdp', insns });
    return new LoadedRedirectAll(program, { xsks, counters }, queues);
  } catch (err) {
    for (const m of made) m.close();
    throw err;
  }
}

/**
 * Attaches `loaded` to the workload interface `ifname` (in the calling thread's network
 * namespace) through bpf_link only — see the file comment. `mode` 'auto' tries native, then
 * generic; the returned attachment says which one was obtained (`mode`, and `fallbacks` for the
 * refused attempts) and detaches on `close()`.
 *
 * Throws ERR_XDP_FOREIGN_PROGRAM if the interface already has an XDP program (any owner,
 * including another redirect-all), ERR_IFACE_NOT_FOUND if there is no such interface, and
 * ERR_XDP_ATTACH if no mode could be attached through bpf_link.
 */
export function attachRedirectAll(loaded: LoadedRedirectAll, ifname: string, mode: 'auto' | XdpMode = 'auto'): XdpAttachment {
  return attachXdp(loaded.program.fd, { iface: ifname, mode, via: 'bpf_link', persist: false, replace: false });
}
