/**
 * The benchmarks' traffic generator: the kernel itself. BPF_PROG_TEST_RUN with
 * BPF_F_TEST_XDP_LIVE_FRAMES runs a tiny XDP program on a crafted frame `repeat` times and
 * transmits every result (XDP_TX) out of the interface named in the context: several million
 * frames per second from one core, far beyond what a userspace sender reaches (iperf3 manages
 * ~60 kpps here, design.md §4).
 *
 * The kernel recycles live-frame pages, and a receiver that forwards in place (IP forwarding
 * rewrites MACs and TTL) changes them: so the program rewrites the frame's first bytes (the
 * headers, up to 64) from constants on every run, then returns XDP_TX.
 *
 * Traffic shape (design.md §4, issue 10): one call with a huge repeat count is a *steady* stream;
 * 65,536 frames per call is *bursty* — between calls the kernel tears the run down and waits in
 * synchronize_rcu, then sends a short multi-Mpps burst, which overflows a 2,048-entry AF_XDP RX
 * ring. Both are measured.
 *
 * Two ways to run it inside a namespace (the frames leave through an interface of the calling
 * thread's namespace): `sendFrames` in a process started with `ip netns exec` (bench/lib/
 * trafficgen.ts), or a long-lived `GeneratorProcess` that takes one JSON request per line on
 * stdin (gen-child.ts), so a benchmark pays Node's start-up once, not once per run.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { alu64, assemble, exit, jmp, ldx, R0, R1, R2, R3, st, type Insn } from '../../bpf/asm/index.ts';
import { XDP_TX } from '../../kernel/bpf-attr.ts';
import { LiveFrameGenerator, loadProgram, type Program } from '../../kernel/program.ts';
import { getSys, PinholeError } from '../../sys/index.ts';

export type TrafficShape = 'steady' | 'bursty';

/** Frames per BPF_PROG_TEST_RUN call: bursty as measured in design.md §4; steady one long call. */
export const SHAPE_CHUNK: Record<TrafficShape, number> = { steady: 1 << 24, bursty: 65_536 };

/** The generator program for `frame`: restore the headers, XDP_TX. */
export function generatorProgram(frame: Uint8Array): Program {
  const restore = Math.min(64, frame.length) & ~1;
  const dv = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  const rewrite: Insn[] = [];
  for (let o = 0; o + 4 <= restore; o += 4) rewrite.push(st.w(R2, o, dv.getInt32(o, true)));
  if (restore % 4) rewrite.push(st.h(R2, restore - 2, dv.getInt16(restore - 2, true)));
  return loadProgram({
    name: 'ph_trafficgen',
    type: 'xdp',
    insns: assemble([
      ldx.w(R2, R1, 0),
      ldx.w(R3, R1, 4),
      alu64.mov.reg(R0, R2),
      alu64.add.imm(R0, restore),
      jmp.jgt.reg(R0, R3, 'tx'),
      ...rewrite,
      alu64.mov.imm(R0, XDP_TX).sym('tx'),
      exit(),
    ]),
  });
}

export interface SendRequest {
  iface: string;
  frame: Uint8Array;
  /** Send this many frames, in calls of `chunk` (default: SHAPE_CHUNK.steady)... */
  count?: number;
  chunk?: number;
  /** ... or send for about this long in the given shape (see below). */
  seconds?: number;
  shape?: TrafficShape;
  /** Frames per kernel batch inside a call (≤ 256). Default 64. */
  batch?: number;
}

export interface SendResult {
  sent: number;
  seconds: number;
}

/** First call of a timed steady send; later calls are sized from the rate it measured. */
const FIRST_STEADY_CALL = 1 << 19;
const MIN_STEADY_CALL = 1 << 18;

/**
 * Sends copies of `frame` out of `iface` (this thread's namespace); blocks until done.
 *
 * Timed sends (`seconds`): the generator's own rate depends on what the receiver does on the
 * generator's CPU (an XDP_DROP costs nothing, the kernel's stack a lot), from ~1 to ~8 Mpps, so
 * a fixed frame count would measure for wildly different times. Steady: a first call of 2^19
 * frames measures the rate, then each call sends what the remaining time holds (one or two long
 * calls). Bursty: calls of 65,536 frames until the time is up.
 */
export function sendFrames(r: SendRequest, prog?: Program): SendResult {
  const own = prog ? undefined : generatorProgram(r.frame);
  try {
    const gen = new LiveFrameGenerator(prog ?? own!, getSys().ifNameToIndex(r.iface), r.frame);
    const batch = r.batch ?? 64;
    const t0 = process.hrtime.bigint();
    const elapsed = (): number => Number(process.hrtime.bigint() - t0) / 1e9;
    let sent = 0;
    if (r.seconds === undefined) {
      const chunk = r.chunk ?? SHAPE_CHUNK.steady;
      for (let left = r.count ?? 0; left > 0; left -= chunk) gen.send(Math.min(chunk, left), batch);
      sent = r.count ?? 0;
    } else if (r.shape === 'bursty') {
      while (elapsed() < r.seconds) {
        gen.send(SHAPE_CHUNK.bursty, batch);
        sent += SHAPE_CHUNK.bursty;
      }
    } else {
      gen.send(FIRST_STEADY_CALL, batch);
      sent = FIRST_STEADY_CALL;
      for (let t = elapsed(); t < r.seconds; t = elapsed()) {
        const n = Math.min(SHAPE_CHUNK.steady, Math.max(MIN_STEADY_CALL, Math.round((sent / t) * (r.seconds - t))));
        gen.send(n, batch);
        sent += n;
      }
    }
    return { sent, seconds: elapsed() };
  } finally {
    own?.close();
  }
}

const CHILD = fileURLToPath(new URL('./gen-child.ts', import.meta.url));

/**
 * A generator process inside namespace `ns` (optionally pinned to `cpu` with taskset, and reniced), serving
 * requests one at a time. `close()` ends it; a SIGKILLed parent closes its stdin and it exits.
 */
export class GeneratorProcess {
  readonly child: ChildProcess;
  private buffer = '';
  private waiting: { resolve: (r: SendResult) => void; reject: (e: Error) => void } | undefined;
  private stderr = '';

  private constructor(ns: string, cpu: number | undefined, nice: number | undefined) {
    const pin = [...(cpu === undefined ? [] : ['taskset', '-c', String(cpu)]), ...(nice ? ['nice', '-n', String(nice)] : [])];
    // tsx resolved from this file, so the child finds it whatever the working directory is.
    this.child = spawn('ip', ['netns', 'exec', ns, ...pin, process.execPath, '--import', import.meta.resolve('tsx'), CHILD], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.child.stdout!.on('data', (d: Buffer) => this.onData(d.toString()));
    this.child.stderr!.on('data', (d: Buffer) => {
      if (this.stderr.length < 8192) this.stderr += d.toString();
    });
    this.child.once('exit', (code, signal) => {
      this.waiting?.reject(new PinholeError('ERR_BENCH_GENERATOR', `traffic generator exited (${code ?? signal}): ${this.stderr.trim()}`));
      this.waiting = undefined;
    });
  }

  static start(ns: string, cpu?: number, nice?: number): GeneratorProcess {
    return new GeneratorProcess(ns, cpu, nice);
  }

  private onData(s: string): void {
    this.buffer += s;
    let nl: number;
    while ((nl = this.buffer.indexOf('\n')) >= 0) {
      const line = this.buffer.slice(0, nl);
      this.buffer = this.buffer.slice(nl + 1);
      const w = this.waiting;
      this.waiting = undefined;
      if (!w) continue;
      try {
        const j = JSON.parse(line) as SendResult & { error?: string };
        if (j.error) w.reject(new PinholeError('ERR_BENCH_GENERATOR', `traffic generator: ${j.error}`));
        else w.resolve({ sent: j.sent, seconds: j.seconds });
      } catch {
        w.reject(new PinholeError('ERR_BENCH_GENERATOR', `traffic generator printed ${line.slice(0, 200)}`));
      }
    }
  }

  /** Sends frames; resolves when the kernel has sent them all. */
  send(r: SendRequest): Promise<SendResult> {
    if (this.waiting) return Promise.reject(new PinholeError('ERR_BENCH_GENERATOR', 'one request at a time'));
    if (this.child.exitCode !== null || this.child.signalCode !== null) {
      return Promise.reject(new PinholeError('ERR_BENCH_GENERATOR', `traffic generator is gone: ${this.stderr.trim()}`));
    }
    return new Promise((resolve, reject) => {
      this.waiting = { resolve, reject };
      const req = { ...r, frame: Buffer.from(r.frame).toString('hex') };
      this.child.stdin!.write(JSON.stringify(req) + '\n');
    });
  }

  close(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }
}
