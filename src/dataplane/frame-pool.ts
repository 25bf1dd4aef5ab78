/**
 * The frames of one shared UMEM (XDP_SHARED_UMEM): one pool per group of AF_XDP ports of a
 * worker, so a frame received on any of them can be sent on any other by its address, without a
 * copy (ports/xsk-shared.ts). Pure bookkeeping: no I/O, nothing allocated after construction.
 *
 *   UMEM = the worker's whole AF_XDP area; a frame is a 4 KiB chunk named by its base address
 *
 *              take()                   (kernel)              rx        tx by descriptor
 *   free stack ──────► fill ring of m ──────────► RX ring of m ──► m ──────────────────► TX ring of t
 *       ▲                    ▲                                     │ release()              │
 *       │                    └─────────────────────────────────────┘ (not sent)           │ (kernel)
 *       └──────────────── put() ◄──── completion ring of t ◄───────────────────────────────┘
 *
 * Every frame has one owner at a time, in `owner` (by frame index = address >>> shift):
 *   FREE           on the free stack
 *   2m + 1         member m's receive side: in its fill ring, its RX ring, or lent to the graph
 *                  after rx() until release() (odd: a received frame may still be taken by a TX)
 *   2m + 2         member m's transmit side: in its TX ring or completion ring (even)
 *   NOT_POOLED     not the pool's (the slice of a port that could not share the UMEM)
 * so that release() returns to the fill ring only the frames still on its receive side (a TX took
 * the others), a frame is never queued twice, and a member that leaves gives back every frame it
 * held (`leave`). Accounting: free + Σ held(m) = frames, always (test/unit/frame-pool.test.ts).
 *
 * Fill rings are topped up only above `reserve` (what the members set aside when they joined: a
 * few batches each), so frames that must be copied into a TX frame (from AF_PACKET ports, the
 * next-hop wait queue, the WireGuard slab) still find one while receive rings are full. A request
 * the pool cannot satisfy is counted (`shortfalls`): an overload signal, like a kernel ring-full
 * drop. A put() of a frame the pool does not hold as taken (a kernel bug, or ours) is refused and
 * counted (`invalid`) rather than corrupting the stack.
 */
import { PinholeError } from '../sys/errors.ts';

export const FREE = 0;
/** Even, so that it never reads as a receive side (odd codes). */
export const NOT_POOLED = 0xfffe;
/** Members per pool at most (owner codes 2m+1, 2m+2 stay below NOT_POOLED). */
export const MAX_POOL_MEMBERS = 0x7ff0;

export class FramePool {
  readonly frameSize: number;
  /** log2(frameSize): frame index = address >>> shift. */
  readonly shift: number;
  /** Clears the offset inside a frame: base = (address & mask) >>> 0. */
  readonly mask: number;
  /** Frames the UMEM holds (pooled or not). */
  readonly capacity: number;
  /** Owner code per frame (file comment). */
  readonly owner: Uint16Array;
  /** Free frames (base addresses), a stack: `stack[0 .. top)`. */
  private readonly stack: Uint32Array;
  private top = 0;
  /** Frames given to the pool by add(). */
  frames = 0;
  /** Frames fill-ring top-ups leave on the stack for transmit copies. */
  reserve = 0;
  /** Requests (a fill top-up, a TX copy) that found too few frames. */
  shortfalls = 0;
  /** put() of a frame that was free or not the pool's: refused. */
  invalid = 0;
  private readonly active: Uint8Array;

  constructor(bytes: number, frameSize: number) {
    if (frameSize < 2048 || (frameSize & (frameSize - 1)) !== 0) throw new PinholeError('ERR_DATAPLANE_POOL', `frame size ${frameSize}`);
    this.frameSize = frameSize;
    this.shift = 31 - Math.clz32(frameSize);
    this.mask = ~(frameSize - 1) >>> 0;
    this.capacity = Math.floor(bytes / frameSize);
    this.owner = new Uint16Array(this.capacity).fill(NOT_POOLED);
    this.stack = new Uint32Array(this.capacity);
    this.active = new Uint8Array(MAX_POOL_MEMBERS);
  }

  /** Frames on the free stack. */
  get available(): number {
    return this.top;
  }

  /** Receive-side and transmit-side owner codes of member `m`. */
  static rxSide(m: number): number {
    return 2 * m + 1;
  }
  static txSide(m: number): number {
    return 2 * m + 2;
  }

  /** A new member that sets `reserve` frames aside for transmit copies; returns its index. */
  join(reserve: number): number {
    const m = this.active.indexOf(0);
    if (m < 0) throw new PinholeError('ERR_DATAPLANE_POOL', `more than ${MAX_POOL_MEMBERS} ports on one frame pool`);
    this.active[m] = 1;
    this.reserve += reserve;
    return m;
  }

  /** Member `m` is gone (its socket closed): every frame it held is free again. Returns how many. */
  leave(m: number, reserve: number): number {
    if (this.active[m] !== 1) return 0;
    this.active[m] = 0;
    this.reserve -= reserve;
    const rx = FramePool.rxSide(m);
    const tx = FramePool.txSide(m);
    let n = 0;
    for (let f = 0; f < this.capacity; f++) {
      const o = this.owner[f]!;
      if (o === rx || o === tx) {
        this.put(f << this.shift);
        n++;
      }
    }
    return n;
  }

  /** Gives frames [offset, offset + count × frameSize) of the UMEM to the pool (free). */
  add(offset: number, count: number): void {
    const first = offset >>> this.shift;
    if (offset % this.frameSize !== 0 || first + count > this.capacity)
      throw new PinholeError('ERR_DATAPLANE_POOL', `frames ${first}+${count} outside a ${this.capacity}-frame UMEM`);
    // Highest first, so the lowest addresses are handed out first.
    for (let f = first + count - 1; f >= first; f--) {
      if (this.owner[f] !== NOT_POOLED) throw new PinholeError('ERR_DATAPLANE_POOL', `frame ${f} added twice`);
      this.owner[f] = FREE;
      this.stack[this.top++] = f << this.shift;
    }
    this.frames += count;
  }

  /** Pops a free frame for owner code `who`; its base address, or -1 when the stack is at `floor`. */
  take(who: number, floor: number): number {
    if (this.top <= floor) return -1;
    const a = this.stack[--this.top]!;
    this.owner[a >>> this.shift] = who;
    return a;
  }

  /** Puts a frame (any address inside it) back on the free stack. */
  put(addr: number): void {
    const base = (addr & this.mask) >>> 0;
    const f = base >>> this.shift;
    const o = this.owner[f];
    if (o === FREE || o === NOT_POOLED || o === undefined) {
      this.invalid++;
      return;
    }
    this.owner[f] = FREE;
    this.stack[this.top++] = base;
  }

  /** Frames whose owner code is `who` (diagnostics, tests; scans the pool). */
  held(who: number): number {
    let n = 0;
    for (let f = 0; f < this.capacity; f++) if (this.owner[f] === who) n++;
    return n;
  }
}
