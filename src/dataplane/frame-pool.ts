/**
 * The frames of one shared UMEM (XDP_SHARED_UMEM): one pool per group of AF_XDP ports of a
 * worker, so a frame received on any of them can be sent on any other by its address, without a
 * copy (ports/xsk-shared.ts). Pure bookkeeping: no I/O; nothing allocated after construction but a
 * small record per member that leaves.
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
 *   QUARANTINED    was in the kernel's hands when its member's socket closed (below)
 *   NOT_POOLED     not the pool's (the slice of a port that could not share the UMEM)
 * so that release() returns to the fill ring only the frames still on its receive side (a TX took
 * the others), a frame is never queued twice, and a member that leaves gives back every frame it
 * held (`leave`; the frames in its rings after a grace period, below). Accounting: free + Σ held(m) + quarantined = frames, always
 * (test/unit/frame-pool.test.ts).
 *
 * Quarantine: close() of a socket does not mean the kernel is done with its frames. A zero-copy
 * driver lets go of the UMEM pages of a closed socket's fill ring later, from deferred work; in
 * copy mode a device that takes TX skbs without a linear part (virtio_net) keeps pointing into
 * UMEM pages until the skb is freed. So the frames a leaving member had in its rings (fill, RX,
 * TX, completion) wait `graceMs` (1 s) before they are handed out again; `expire()` (called once
 * a second from the ports' refreshStats, and by take() when the stack is short) frees them.
 * Frames the member held in user space are put back at once by its port before it leaves.
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
/** Waiting out the grace period after its member left; even, like NOT_POOLED. */
export const QUARANTINED = 0xfffc;
/** Members per pool at most (owner codes 2m+1, 2m+2 stay below QUARANTINED). */
export const MAX_POOL_MEMBERS = 0x7ff0;
/** How long frames a closed socket had in its rings stay out of use (ms). */
export const QUARANTINE_MS = 1000;

export interface FramePoolOptions {
  /** Grace period of quarantined frames (default QUARANTINE_MS). */
  graceMs?: number;
  /** Clock in ms (default performance.now). */
  now?: () => number;
}

export class FramePool {
  readonly frameSize: number;
  /** log2(frameSize): frame index = address >>> shift. */
  readonly shift: number;
  /**
   * Clears the offset inside a frame: base = (address & mask) >>> 0. Kept as a negative int32
   * (-frameSize), not as the unsigned 0xfffff800: V8 keeps a number above 2^31 - 1 boxed, and
   * every use loaded and converted a heap number (seen in the transmit flush's machine code).
   */
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
  /** Quarantined frames, a FIFO ring of base addresses: `qring[qHead .. qTail)` mod capacity. */
  private readonly qring: Uint32Array;
  private qHead = 0;
  private qTail = 0;
  /** One entry per leave() that quarantined frames, oldest first: frames up to `end` are free from `until`. */
  private readonly qBatches: { end: number; until: number }[] = [];
  private readonly graceMs: number;
  private readonly now: () => number;

  constructor(bytes: number, frameSize: number, o: FramePoolOptions = {}) {
    if (frameSize < 2048 || (frameSize & (frameSize - 1)) !== 0) throw new PinholeError('ERR_DATAPLANE_POOL', `frame size ${frameSize}`);
    this.frameSize = frameSize;
    this.shift = 31 - Math.clz32(frameSize);
    this.mask = ~(frameSize - 1);
    this.capacity = Math.floor(bytes / frameSize);
    this.owner = new Uint16Array(this.capacity).fill(NOT_POOLED);
    this.stack = new Uint32Array(this.capacity);
    this.active = new Uint8Array(MAX_POOL_MEMBERS);
    this.qring = new Uint32Array(this.capacity);
    this.graceMs = o.graceMs ?? QUARANTINE_MS;
    this.now = o.now ?? (() => performance.now());
  }

  /** Frames on the free stack. */
  get available(): number {
    return this.top;
  }

  /** Frames waiting out the grace period after their member left. */
  get quarantined(): number {
    return this.qTail - this.qHead;
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

  /**
   * Member `m` is gone (its socket closed). Every frame it still holds was in its rings, so in
   * the kernel's hands: quarantined, free again after the grace period (file comment). Its port
   * puts the frames it held in user space back (put) before it leaves. Returns how many were
   * quarantined.
   */
  leave(m: number, reserve: number): number {
    if (this.active[m] !== 1) return 0;
    this.active[m] = 0;
    this.reserve -= reserve;
    const rx = FramePool.rxSide(m);
    const tx = FramePool.txSide(m);
    const cap = this.capacity;
    let n = 0;
    for (let f = 0; f < cap; f++) {
      const o = this.owner[f]!;
      if (o === rx || o === tx) {
        this.owner[f] = QUARANTINED;
        this.qring[this.qTail++ % cap] = f << this.shift;
        n++;
      }
    }
    if (n > 0) this.qBatches.push({ end: this.qTail, until: this.now() + this.graceMs });
    return n;
  }

  /** Frees the quarantined frames whose grace period is over (at `now`); returns how many. */
  expire(now: number = this.now()): number {
    const batches = this.qBatches;
    const cap = this.capacity;
    let n = 0;
    while (batches.length > 0 && batches[0]!.until <= now) {
      const end = batches.shift()!.end;
      while (this.qHead < end) {
        const base = this.qring[this.qHead++ % cap]!;
        this.owner[base >>> this.shift] = FREE;
        this.stack[this.top++] = base;
        n++;
      }
    }
    if (this.qHead === this.qTail) this.qHead = this.qTail = 0;
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
    // Short: quarantined frames whose grace period is over are free again (rare, one clock read).
    if (this.top <= floor && (this.qTail === this.qHead || this.expire() === 0 || this.top <= floor)) return -1;
    const a = this.stack[--this.top]!;
    this.owner[a >>> this.shift] = who;
    return a;
  }

  /** Puts a frame (any address inside it) back on the free stack. */
  put(addr: number): void {
    const base = (addr & this.mask) >>> 0;
    const f = base >>> this.shift;
    const o = this.owner[f];
    if (o === FREE || o === NOT_POOLED || o === QUARANTINED || o === undefined) {
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
