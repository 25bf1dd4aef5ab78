/**
 * An in-memory dataplane port for tests and benchmarks: the Port contract (src/dataplane/port.ts)
 * without a kernel. Frames given to inject() wait in receive slots of one ArrayBuffer registered
 * in the worker's PacketMemory, each with `headroom` bytes in front of it (stages write
 * encapsulation headers there, as they do in an AF_XDP chunk or a TPACKET_V3 frame); transmitted
 * frames are copied out into `sent`, where a test reads them.
 *
 *   rx slots:  [ headroom | frame ...... ] [ headroom | frame ...... ] ...   slotBytes each
 *               queued (FIFO) ─► rx() lends up to batchSize ─► release() frees, poisons
 *
 * Like a real port, received frames are only lent until release() (the engine calls it at the end
 * of the breathe); release() overwrites them with POISON, so a stage that keeps a descriptor past
 * its breathe sends garbage and the test sees it. TX: up to `txCapacity` frames wait between two
 * flush() calls (a TX ring); more are counted tx_dropped, frames above `maxFrame` tx_too_big.
 * A full receive queue refuses inject() and counts kernel_drops, as a full kernel ring would.
 * There is nothing to poll: fd is -1 and readable() says whether frames are queued.
 */
import type { Link } from '../../src/dataplane/link.ts';
import type { PacketMemory } from '../../src/dataplane/memory.ts';
import { PC, type Port } from '../../src/dataplane/port.ts';

export const POISON = 0xee;

export interface MemoryPortOptions {
  name: string;
  memory: PacketMemory;
  /** The worker's counters and this port's PORT_COUNTERS block (counterBase(layout, 'port:<name>')). */
  counters: Float64Array;
  base: number;
  /** Frames received per rx() call at most (default 64). */
  batchSize?: number;
  /** Receive slots (default 256). */
  slots?: number;
  /** Bytes per receive slot, headroom included (default 2048). */
  slotBytes?: number;
  /** Bytes kept free in front of each received frame (default 128). */
  headroom?: number;
  /** Frames queued for transmission between two flushes (default: unbounded). */
  txCapacity?: number;
  /** Largest frame transmitted (default: unbounded). */
  maxFrame?: number;
}

export class MemoryPort implements Port {
  readonly name: string;
  readonly driver = 'memory' as const;
  readonly detail = 'in memory';
  readonly fd = -1;
  /** Transmitted frames (copies), in order. */
  readonly sent: Uint8Array[] = [];
  /** The receive buffer, registered in the PacketMemory as `memId`. */
  readonly buffer: ArrayBuffer;
  readonly memId: number;
  readonly headroom: number;
  readonly slotBytes: number;
  private readonly u8: Uint8Array;
  private readonly memory: PacketMemory;
  private c: Float64Array;
  private b: number;
  private readonly batch: number;
  private readonly txCapacity: number;
  private readonly maxFrame: number;
  /** Free slot indexes (a stack) and queued ones (FIFO), with their lengths. */
  private readonly free: number[] = [];
  private readonly queued: number[] = [];
  private readonly lens: Uint32Array;
  private lent: number[] = [];
  private pending: Uint8Array[] = [];
  closed = false;

  constructor(o: MemoryPortOptions) {
    this.name = o.name;
    this.memory = o.memory;
    this.c = o.counters;
    this.b = o.base;
    this.batch = o.batchSize ?? 64;
    const slots = o.slots ?? 256;
    this.slotBytes = o.slotBytes ?? 2048;
    this.headroom = o.headroom ?? 128;
    this.txCapacity = o.txCapacity ?? Infinity;
    this.maxFrame = o.maxFrame ?? Infinity;
    this.buffer = new ArrayBuffer(slots * this.slotBytes);
    this.u8 = new Uint8Array(this.buffer);
    this.memId = o.memory.register(this.buffer);
    this.lens = new Uint32Array(slots);
    for (let i = slots - 1; i >= 0; i--) this.free.push(i);
  }

  /** Queues a frame for receive; false (counted as kernel_drops) when every slot is taken or it does not fit. */
  inject(frame: Uint8Array): boolean {
    if (this.free.length === 0 || frame.length > this.slotBytes - this.headroom) {
      this.c[this.b + PC.kernelDrops]++;
      return false;
    }
    const s = this.free.pop()!;
    this.u8.set(frame, s * this.slotBytes + this.headroom);
    this.lens[s] = frame.length;
    this.queued.push(s);
    return true;
  }

  /** Frames queued and not yet received. */
  get backlog(): number {
    return this.queued.length;
  }

  /** Frames lent to the graph (received, not released). */
  get borrowed(): number {
    return this.lent.length;
  }

  rx(out: Link, tag: number): number {
    let n = 0;
    let bytes = 0;
    while (n < this.batch && this.queued.length > 0 && out.n < out.capacity) {
      const s = this.queued.shift()!;
      const len = this.lens[s]!;
      out.push(this.memId, s * this.slotBytes + this.headroom, len, tag);
      this.lent.push(s);
      bytes += len;
      n++;
    }
    this.c[this.b + PC.rxFrames] += n;
    this.c[this.b + PC.rxBytes] += bytes;
    return n;
  }

  release(): void {
    for (const s of this.lent) {
      this.u8.fill(POISON, s * this.slotBytes, (s + 1) * this.slotBytes);
      this.free.push(s);
    }
    this.lent = [];
  }

  tx(input: Link): number {
    let queued = 0;
    let bytes = 0;
    let tooBig = 0;
    let dropped = 0;
    for (let i = 0; i < input.n; i++) {
      const len = input.len[i]!;
      if (len > this.maxFrame) {
        tooBig++;
        continue;
      }
      if (this.pending.length >= this.txCapacity) {
        dropped++;
        continue;
      }
      const at = input.addr[i]!;
      this.pending.push(this.memory.u8[input.mem[i]!]!.slice(at, at + len));
      bytes += len;
      queued++;
    }
    this.c[this.b + PC.txFrames] += queued;
    this.c[this.b + PC.txBytes] += bytes;
    this.c[this.b + PC.txDropped] += dropped;
    this.c[this.b + PC.txTooBig] += tooBig;
    return queued;
  }

  flush(): void {
    for (const f of this.pending) this.sent.push(f);
    this.pending = [];
  }

  readable(): boolean {
    return this.queued.length > 0;
  }

  pollError(): void {
    this.c[this.b + PC.errors]++;
  }

  refreshStats(): void {
    // kernel_drops is counted at inject(); nothing to ask a kernel.
  }

  setCounters(c: Float64Array, base: number): void {
    this.c = c;
    this.b = base;
  }

  close(): void {
    this.closed = true;
  }

  /** Takes the transmitted frames (and forgets them). */
  take(): Uint8Array[] {
    return this.sent.splice(0);
  }
}
