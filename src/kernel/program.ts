/**
 * BPF programs: load (verifier log captured into VerifierError), pin, info, and
 * BPF_PROG_TEST_RUN. Loading first runs with no log (fast path); on failure it loads again with
 * a verbose log so the error carries what the verifier said.
 */
import { alloc, getSys, PinholeError, SysError } from '../sys/index.ts';
import {
  BPF_F_TEST_XDP_LIVE_FRAMES,
  BPF_PROG_LOAD,
  BPF_PROG_TEST_RUN,
  BPF_PROG_TYPE_SOCKET_FILTER,
  BPF_PROG_TYPE_XDP,
  ProgInfo,
  ProgLoadAttr,
  TestRunAttr,
  XdpMd,
} from './bpf-attr.ts';
import { objName } from './map.ts';
import { decodeName, objectInfo, pinObject } from './object.ts';

export type ProgramType = 'xdp' | 'socket_filter';

const PROG_TYPES: Record<ProgramType, number> = {
  xdp: BPF_PROG_TYPE_XDP,
  socket_filter: BPF_PROG_TYPE_SOCKET_FILTER,
};

export interface ProgramSpec {
  name: string;
  type: ProgramType;
  /** Encoded instructions (8 bytes per slot). */
  insns: Uint8Array;
  license?: string;
  expectedAttachType?: number;
}

export class VerifierError extends PinholeError {
  readonly log: string;
  readonly errno: string;

  constructor(name: string, cause: SysError, log: string) {
    const tail = log.trim().split('\n').slice(-12).join('\n');
    super('ERR_BPF_VERIFIER', `the kernel rejected program ${name} (${cause.code})${tail ? `; verifier log tail:\n${tail}` : ''}`, {
      cause,
    });
    this.log = log;
    this.errno = cause.code;
  }
}

export class Program {
  readonly fd: number;
  readonly spec: ProgramSpec;
  private closed = false;

  constructor(fd: number, spec: ProgramSpec) {
    this.fd = fd;
    this.spec = spec;
  }

  info(): { id: number; name: string; tag: string; xlatedLen: number; jitedLen: number } {
    const i = objectInfo(this.fd, ProgInfo);
    return {
      id: Number(i.id),
      name: decodeName(i.name as Uint8Array),
      tag: Buffer.from(i.tag as Uint8Array).toString('hex'),
      xlatedLen: Number(i.xlated_prog_len),
      jitedLen: Number(i.jited_prog_len),
    };
  }

  pin(path: string): void {
    pinObject(this.fd, path, `program ${this.spec.name}`);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    getSys().close(this.fd);
  }
}

function load(spec: ProgramSpec, logLevel: number, log: Uint8Array | null): number {
  const sys = getSys();
  const license = alloc(64);
  license.set(new TextEncoder().encode(spec.license ?? 'GPL'));
  const attr = ProgLoadAttr.encode({
    prog_type: PROG_TYPES[spec.type],
    insn_cnt: spec.insns.byteLength / 8,
    insns: sys.addressOf(spec.insns),
    license: sys.addressOf(license),
    log_level: logLevel,
    log_size: log ? log.byteLength : 0,
    log_buf: log ? sys.addressOf(log) : 0n,
    prog_name: objName(spec.name),
    expected_attach_type: spec.expectedAttachType ?? 0,
  });
  return sys.bpf(BPF_PROG_LOAD, attr, log ? [spec.insns, license, log] : [spec.insns, license]);
}

/**
 * The verifier stops with EAGAIN when a signal is pending for the loading thread (it checks
 * between instructions so a long verification can be interrupted): a profiler's SIGPROF, a
 * SIGCHLD, an operator's SIGHUP. The real Sys blocks the thread's signals for the load
 * (sys/libc.ts), so this is the second line: load again, a few times (as libbpf does), before
 * calling it a failure.
 */
function loadRetrying(spec: ProgramSpec, logLevel: number, log: Uint8Array | null): number {
  for (let attempt = 1; ; attempt++) {
    try {
      return load(spec, logLevel, log);
    } catch (err) {
      if (!(err instanceof SysError) || err.code !== 'EAGAIN' || attempt >= 8) throw err;
    }
  }
}

export function loadProgram(spec: ProgramSpec): Program {
  if (spec.insns.byteLength === 0 || spec.insns.byteLength % 8 !== 0) {
    throw new PinholeError('ERR_BPF_PROGRAM', `program ${spec.name}: instructions must be a non-empty multiple of 8 bytes`);
  }
  // The kernel reads insns through a pointer: make sure they live off-heap.
  const insns = alloc(spec.insns.byteLength);
  insns.set(spec.insns);
  const s = { ...spec, insns };
  try {
    return new Program(loadRetrying(s, 0, null), spec);
  } catch (err) {
    if (!(err instanceof SysError)) throw err;
    if (err.code === 'EPERM') {
      throw new PinholeError('ERR_PERMISSION', `load BPF program ${spec.name}: not permitted (needs CAP_BPF and CAP_NET_ADMIN, or root)`, {
        cause: err,
      });
    }
    const log = alloc(4 << 20);
    try {
      // Loaded fine with a log? Then the first failure was transient (e.g. EAGAIN): keep it.
      return new Program(loadRetrying(s, 1, log), spec);
    } catch (err2) {
      const text = new TextDecoder().decode(log.subarray(0, Math.max(0, log.indexOf(0))));
      throw new VerifierError(spec.name, err2 instanceof SysError ? err2 : err, text);
    }
  }
}

export interface TestRunResult {
  retval: number;
  /** Mean nanoseconds per run as measured by the kernel. */
  duration: number;
  dataOut: Uint8Array;
}

/**
 * Runs an XDP program on crafted frames with BPF_PROG_TEST_RUN. Buffers are preallocated, so
 * `run()` allocates nothing: the differential test calls it hundreds of thousands of times.
 *
 * The context (struct xdp_md) carries ingress_ifindex and rx_queue_index; the kernel requires
 * a real device whose real_num_rx_queues exceeds the queue index (loopback: queue 0).
 */
export class XdpTestRunner {
  private readonly attr = alloc(TestRunAttr.size);
  private readonly dataIn: Uint8Array;
  private readonly dataOut: Uint8Array;
  private readonly ctx = alloc(XdpMd.size);
  private readonly view = new DataView(this.attr.buffer);
  private readonly ctxView = new DataView(this.ctx.buffer);
  private readonly prog: Program;
  private readonly refs: readonly Uint8Array[];
  lastDuration = 0;
  lastDataOutLength = 0;

  constructor(prog: Program, opts: { maxFrame?: number; ingressIfindex?: number; rxQueue?: number } = {}) {
    this.prog = prog;
    const max = opts.maxFrame ?? 4096;
    this.dataIn = alloc(max);
    this.dataOut = alloc(max + 512);
    const sys = getSys();
    TestRunAttr.encode(
      {
        prog_fd: prog.fd,
        data_in: sys.addressOf(this.dataIn),
        data_out: sys.addressOf(this.dataOut),
        ctx_in: sys.addressOf(this.ctx),
        ctx_size_in: XdpMd.size,
      },
      this.attr,
    );
    XdpMd.encode({ ingress_ifindex: opts.ingressIfindex ?? 1, rx_queue_index: opts.rxQueue ?? 0 }, this.ctx);
    this.refs = [this.dataIn, this.dataOut, this.ctx];
  }

  /** Runs `frame[0..len)` `repeat` times; returns the program's return value (XDP action). */
  run(frame: Uint8Array, len: number = frame.byteLength, repeat = 1, flags = 0): number {
    if (len > this.dataIn.byteLength) throw new RangeError(`frame of ${len} bytes exceeds the runner's ${this.dataIn.byteLength}`);
    this.dataIn.set(len === frame.byteLength ? frame : frame.subarray(0, len));
    const v = this.view;
    const o = TestRunAttr.offsets;
    v.setUint32(o.retval!, 0, true);
    v.setUint32(o.data_size_in!, len, true);
    v.setUint32(o.data_size_out!, this.dataOut.byteLength, true);
    v.setUint32(o.repeat!, repeat, true);
    v.setUint32(o.duration!, 0, true);
    v.setUint32(o.flags!, flags, true);
    this.ctxView.setUint32(XdpMd.offsets.data_end!, len, true);
    this.ctxView.setUint32(XdpMd.offsets.data!, 0, true);
    try {
      getSys().bpf(BPF_PROG_TEST_RUN, this.attr, this.refs);
    } catch (err) {
      throw new PinholeError('ERR_BPF_TEST_RUN', `test run of ${this.prog.spec.name} on a ${len}-byte frame: ${(err as Error).message}`, {
        cause: err,
      });
    }
    this.lastDuration = v.getUint32(o.duration!, true);
    this.lastDataOutLength = v.getUint32(o.data_size_out!, true);
    return v.getUint32(o.retval!, true);
  }

  /** The frame as the program left it after the last run. */
  output(): Uint8Array {
    return this.dataOut.slice(0, this.lastDataOutLength);
  }
}

/** Minimum frame length BPF_PROG_TEST_RUN accepts for XDP (an Ethernet header). */
export const XDP_TEST_MIN_FRAME = 14;

/**
 * A kernel-side traffic generator: BPF_PROG_TEST_RUN with BPF_F_TEST_XDP_LIVE_FRAMES runs an XDP
 * program `count` times on copies of one frame and really transmits what it returns XDP_TX for
 * out of `ifindex` (in the caller's network namespace). Multi-Mpps on one core; used by benchmarks
 * and load tests. The kernel recycles frame pages, so a program that rewrites headers must
 * rewrite them on every run. On veth the peer must have an XDP program or GRO enabled, or the
 * frames are dropped (veth_xdp_xmit).
 */
export class LiveFrameGenerator {
  private readonly attr = alloc(TestRunAttr.size);
  private readonly dataIn: Uint8Array;
  private readonly ctx = alloc(XdpMd.size);
  private readonly prog: Program;

  constructor(prog: Program, ifindex: number, frame: Uint8Array) {
    this.prog = prog;
    this.dataIn = alloc(frame.byteLength);
    this.dataIn.set(frame);
    XdpMd.encode({ data: 0, data_end: frame.byteLength, ingress_ifindex: ifindex, rx_queue_index: 0 }, this.ctx);
  }

  /** Sends `count` frames in kernel batches of `batchSize` (≤ 256); returns the kernel's ns/frame. */
  send(count: number, batchSize = 64): number {
    const sys = getSys();
    this.attr.fill(0);
    TestRunAttr.encode(
      {
        prog_fd: this.prog.fd,
        data_in: sys.addressOf(this.dataIn),
        data_size_in: this.dataIn.byteLength,
        ctx_in: sys.addressOf(this.ctx),
        ctx_size_in: XdpMd.size,
        repeat: count,
        flags: BPF_F_TEST_XDP_LIVE_FRAMES,
        batch_size: batchSize,
      },
      this.attr,
    );
    try {
      sys.bpf(BPF_PROG_TEST_RUN, this.attr, [this.dataIn, this.ctx]);
    } catch (err) {
      throw new PinholeError('ERR_BPF_TEST_RUN', `live-frame run of ${this.prog.spec.name}: ${(err as Error).message}`, { cause: err });
    }
    return new DataView(this.attr.buffer).getUint32(TestRunAttr.offsets.duration!, true);
  }
}
