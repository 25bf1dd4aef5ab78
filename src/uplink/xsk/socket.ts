/**
 * One AF_XDP socket bound to one (interface, queue), with its own UMEM
 * (Documentation/networking/af_xdp.rst; include/uapi/linux/if_xdp.h; net/xdp/xsk.c).
 *
 * Setup order (the kernel requires the UMEM and the fill/completion rings before bind):
 *   socket(AF_XDP) → mmap UMEM → XDP_UMEM_REG → ring sizes (fill, completion, rx, tx)
 *   → XDP_MMAP_OFFSETS → mmap the four rings → pre-fill → bind(sockaddr_xdp)
 *
 * bind: XDP_USE_NEED_WAKEUP always; XDP_ZEROCOPY first (unless mode 'copy'), then XDP_COPY when
 * the driver cannot do zero-copy (EOPNOTSUPP and kin). A failed bind leaves the socket reusable,
 * so retries rebind the same socket. EBUSY means another socket holds the queue — or a socket
 * that just closed: XSK teardown is asynchronous — so it is retried with a short backoff before
 * it becomes ERR_XSK_BUSY. The mode actually obtained is read back with XDP_OPTIONS.
 *
 * Shared UMEM (`sharedUmem`): no XDP_UMEM_REG; bind with XDP_SHARED_UMEM and the owner's fd, no
 * mode flags (the owner's mode and need_wakeup apply). On another (interface, queue) than the
 * owner's the socket sets up fill and completion rings of its own (Linux ≥ 5.10). Its frames are
 * then managed by the caller (dataplane/frame-pool.ts), as with `externalFrames`.
 *
 * UMEM frames: `frameCount` chunks of `frameSize` bytes; a frame is named by its byte offset in
 * the UMEM (its "address"). On receive the kernel writes the packet at
 *   chunk + XDP_PACKET_HEADROOM (256) + headroom
 * and reports that address in the RX descriptor; `headroom` is room we reserve in front of every
 * received packet for encapsulation headers. Frames not in a ring sit on a free stack owned by
 * this object. Ownership: free stack → fill ring → (kernel) → rx → caller → releaseRx/tx →
 * fill ring or tx ring → (kernel) → completion ring → free stack.
 *
 * TX checksum (`txChecksum`, Documentation/networking/xsk-tx-metadata.rst, Linux ≥ 6.11): the
 * UMEM is registered with XDP_UMEM_TX_METADATA_LEN and room for a struct xsk_tx_metadata in front
 * of every transmitted packet, and with XDP_UMEM_TX_SW_CSUM: a descriptor with the XDP_TX_METADATA
 * option and XDP_TXMD_FLAGS_CHECKSUM in that metadata has the kernel compute the L4 checksum from
 * csum_start into csum_start + csum_offset while it builds the skb, in copy mode (what a
 * CHECKSUM_PARTIAL skb would get from skb_checksum_help). A kernel without it refuses the flags
 * (EINVAL) and the UMEM is registered without them (`txChecksum` false). In zero-copy mode the
 * request would go to the driver, which may not honour it: `txChecksum` is true only in copy mode,
 * and only from Linux 6.18 on (txMetadataHonoured: before it, some devices ignored the request).
 *
 *   chunk: │ … │ xsk_tx_metadata (24) │ packet ────────── │      descriptor addr = packet start
 *                 flags (u64) = XDP_TXMD_FLAGS_CHECKSUM, csum_start (u16), csum_offset (u16)
 *
 * Hot path (rx, releaseRx, fill, tx, completions, kick): no allocation, no closures, one native
 * call at most per batch (and only when the kernel says it needs one).
 */
import { release } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { lockedMemoryBudget, releaseAtLeast, umemFailureMessage } from '../../kernel/features.ts';
import { alloc, errnoCodeOf, getSys, PinholeError, type Mapping, type Sys } from '../../sys/index.ts';
import {
  AF_XDP,
  SOCK_RAW,
  SOL_XDP,
  SockaddrXdp,
  XDP_ADDR_SIZE,
  XDP_COPY,
  XDP_DESC_SIZE,
  XDP_MMAP_OFFSETS,
  XDP_OPTIONS,
  XDP_OPTIONS_ZEROCOPY,
  XDP_PACKET_HEADROOM,
  XDP_PGOFF_RX_RING,
  XDP_PGOFF_TX_RING,
  XDP_RING_NEED_WAKEUP,
  XDP_RX_RING,
  XDP_SHARED_UMEM,
  XDP_STATISTICS,
  XDP_TX_RING,
  XDP_UMEM_COMPLETION_RING,
  XDP_UMEM_FILL_RING,
  XDP_UMEM_PGOFF_COMPLETION_RING,
  XDP_UMEM_PGOFF_FILL_RING,
  XDP_UMEM_REG,
  XDP_USE_NEED_WAKEUP,
  XDP_ZEROCOPY,
  XdpMmapOffsets,
  XdpOptions,
  XdpStatistics,
  XdpUmemReg,
} from './abi.ts';
import { ConsumerRing, ProducerRing, type RingOffsets } from './ring.ts';

const PROT_RW = 0x1 | 0x2;
const MAP_SHARED = 0x01;
const MAP_PRIVATE = 0x02;
const MAP_ANONYMOUS = 0x20;
const MAP_POPULATE = 0x8000;
const MSG_DONTWAIT = 0x40;
const POLLIN = 0x0001;
const EAGAIN = 11;
const EBUSY = 16;
const ENOBUFS = 105;
const ENETDOWN = 100;

export type XskMode = 'zerocopy' | 'copy';

export interface XskOptions {
  /** Interface name or ifindex (in the calling thread's network namespace). */
  iface: string | number;
  queue: number;
  /** UMEM chunk size: 2048 or 4096 (default 4096, one frame per page). */
  frameSize?: 2048 | 4096;
  /** UMEM frames (default 4096). */
  frameCount?: number;
  /** Bytes reserved in front of each received packet (default 0), e.g. for encapsulation. */
  headroom?: number;
  /** Ring sizes (powers of two). Defaults: fill/completion 2048, rx/tx 2048. */
  rxSize?: number;
  txSize?: number;
  fillSize?: number;
  compSize?: number;
  /** 'auto' (default): zero-copy if the driver offers it, copy otherwise. */
  mode?: 'auto' | XskMode;
  /**
   * Put the UMEM inside memory the caller mapped (page-aligned `offset`), instead of a mapping
   * of its own. Two sockets whose UMEMs share one mapping share one ArrayBuffer, so frames move
   * between them with copyWithin (no per-packet allocation). The caller unmaps it after close().
   */
  area?: { mapping: Mapping; offset: number };
  /** Copy mode: frames per TX kick (XDP_MAX_TX_SKB_BUDGET, kernel ≥ 6.17); default XSK_TX_BUDGET. */
  txBudget?: number;
  /** Ask for TX checksum metadata (file comment); the socket's `txChecksum` says if it got it. */
  txChecksum?: boolean;
  /** EBUSY retries before ERR_XSK_BUSY (default 5) and the first delay (default 10 ms, doubling). */
  busyRetries?: number;
  busyDelayMs?: number;
  /**
   * Share the UMEM of this bound socket instead of registering one (bind with XDP_SHARED_UMEM and
   * its fd): a frame received on either socket may be sent by the other by its address, without
   * a copy. The new socket must be on another (interface, queue) than the owner: it gets fill and
   * completion rings of its own (kernel ≥ 5.10; older kernels refuse the fill ring's size on a
   * socket without a UMEM — ERR_XSK_SETUP, step 'ring sizes', EINVAL — or the bind). Frame
   * size and count, headroom and mode (zero-copy or copy) are the owner's; `mode`, `frameSize`,
   * `frameCount`, `headroom` and `area` are ignored. Implies `externalFrames`.
   */
  sharedUmem?: XskSocket;
  /**
   * The caller manages the UMEM's frames (a frame pool shared by several sockets): the socket
   * keeps no free stack and puts nothing in its fill ring; use its rings directly, not fill(),
   * releaseRx(), allocTx() or completions().
   */
  externalFrames?: boolean;
}

/**
 * XDP_STATISTICS (net/xdp/xsk.c). A frame the kernel drops on its way into the socket is counted
 * once, in `rxDropped` (no fill-ring buffer; larger than a frame) or in `rxRingFull` (RX ring
 * full): their sum is the socket's drop count. `rxFillRingEmptyDescs` counts the times a buffer
 * was wanted and the fill ring was empty — in copy mode the same event as an `rxDropped`, in
 * zero-copy mode a driver refill attempt — so adding it to the drops counts them twice.
 */
export interface XskStats {
  rxDropped: bigint;
  rxInvalidDescs: bigint;
  txInvalidDescs: bigint;
  rxRingFull: bigint;
  rxFillRingEmptyDescs: bigint;
  txRingEmptyDescs: bigint;
}

/** A socket's kernel drop count: rxDropped + rxRingFull, each dropped frame once (see XskStats). */
export function kernelDropsOf(s: XskStats): bigint {
  return s.rxDropped + s.rxRingFull;
}

/**
 * A batch of frames: parallel arrays of UMEM addresses and lengths, preallocated by the caller
 * and reused for every call. Float64Array addresses are allowed for callers that share one
 * array type with other uplinks; values are always integers < 2^32.
 */
export interface FrameBatch {
  addr: Uint32Array | Float64Array;
  len: Uint32Array;
}

function pow2(n: number, what: string): number {
  if (!Number.isInteger(n) || n < 1 || (n & (n - 1)) !== 0) {
    throw new PinholeError('ERR_XSK_CONFIG', `${what} must be a power of two, got ${n}`);
  }
  return n;
}

function ringOffsets(v: Record<string, unknown>): RingOffsets {
  return {
    producer: Number(v.producer),
    consumer: Number(v.consumer),
    desc: Number(v.desc),
    flags: Number(v.flags),
  };
}

function u32buf(v: number): Uint8Array {
  const b = alloc(4);
  new DataView(b.buffer).setUint32(0, v, true);
  return b;
}

export class XskSocket {
  readonly fd: number;
  readonly ifindex: number;
  readonly queue: number;
  readonly mode: XskMode;
  readonly frameSize: number;
  readonly frameCount: number;
  readonly headroom: number;
  /** The whole UMEM as bytes: a frame at address `a` of length `l` is `umem[a .. a+l)`. */
  readonly umem: Uint8Array;
  readonly fillRing: ProducerRing;
  readonly compRing: ConsumerRing;
  readonly rxRing: ConsumerRing;
  readonly txRing: ProducerRing;

  private readonly sys: Sys;
  private readonly area: Mapping | undefined;
  private readonly mappings: Mapping[];
  /** Free frames (base addresses), a stack. */
  private readonly freeStack: Uint32Array;
  private freeTop = 0;
  private readonly frameMask: number;
  private readonly pollfd = alloc(8);
  private readonly empty = alloc(0);
  private readonly statsBuf = alloc(XdpStatistics.size);
  private closed = false;
  /** The last kick's errno when it was not a "busy" answer (e.g. ENXIO: the device is gone), else 0. */
  kickErrno = 0;
  /** Descriptors may carry XDP_TX_METADATA with a checksum request the kernel computes (file comment). */
  txChecksum = false;

  /** @internal use openXsk */
  constructor(init: {
    sys: Sys;
    fd: number;
    ifindex: number;
    queue: number;
    mode: XskMode;
    frameSize: number;
    frameCount: number;
    headroom: number;
    area: Mapping | undefined;
    umem: Uint8Array;
    mappings: Mapping[];
    fill: ProducerRing;
    comp: ConsumerRing;
    rx: ConsumerRing;
    tx: ProducerRing;
    freeStack: Uint32Array;
    freeTop: number;
  }) {
    this.sys = init.sys;
    this.fd = init.fd;
    this.ifindex = init.ifindex;
    this.queue = init.queue;
    this.mode = init.mode;
    this.frameSize = init.frameSize;
    this.frameCount = init.frameCount;
    this.headroom = init.headroom;
    this.area = init.area;
    this.umem = init.umem;
    this.mappings = init.mappings;
    this.fillRing = init.fill;
    this.compRing = init.comp;
    this.rxRing = init.rx;
    this.txRing = init.tx;
    this.freeStack = init.freeStack;
    this.freeTop = init.freeTop;
    this.frameMask = ~(init.frameSize - 1) >>> 0;
    new DataView(this.pollfd.buffer).setInt32(0, init.fd, true);
  }

  /** Frames on the free stack (neither in a ring nor held by the caller). */
  get freeFrames(): number {
    return this.freeTop;
  }

  /** Offset in a frame where a packet to transmit may start (after the reserved headroom). */
  get txOffset(): number {
    return XDP_PACKET_HEADROOM + this.headroom;
  }

  /** Moves up to `max` free frames to the fill ring; returns how many. */
  fill(max: number = this.freeTop): number {
    let n = max < this.freeTop ? max : this.freeTop;
    if (n === 0) return 0;
    const room = this.fillRing.free(n);
    if (n > room) n = room;
    for (let i = 0; i < n; i++) this.fillRing.setAddr(i, this.freeStack[--this.freeTop]!);
    this.fillRing.submit(n);
    return n;
  }

  /**
   * Takes up to `max` received frames: `batch.addr[i]` is the packet's UMEM address (read
   * `umem[addr .. addr+len)`), `batch.len[i]` its length. The frames are the caller's until
   * `releaseRx` or `tx`.
   */
  rx(batch: FrameBatch, max: number): number {
    let n = this.rxRing.available(max);
    if (n > max) n = max;
    const addr = batch.addr;
    const len = batch.len;
    for (let i = 0; i < n; i++) {
      addr[i] = this.rxRing.addrAt(i);
      len[i] = this.rxRing.lenAt(i);
    }
    this.rxRing.release(n);
    return n;
  }

  /**
   * Gives `n` frames (from `rx` or `allocTx`) back: straight onto the fill ring while it has
   * room, the rest onto the free stack. The kernel publishes its fill-ring consumer index lazily
   * (only when it has used up the entries it cached), so the ring can look full for a while:
   * a receive loop should also call `fill()` when `freeFrames` is non-zero, or those frames
   * stay parked on the free stack.
   */
  releaseRx(batch: FrameBatch, n: number): void {
    const room = this.fillRing.free(n);
    const direct = n < room ? n : room;
    const addr = batch.addr;
    const mask = this.frameMask;
    for (let i = 0; i < direct; i++) this.fillRing.setAddr(i, (addr[i]! & mask) >>> 0);
    if (direct > 0) this.fillRing.submit(direct);
    for (let i = direct; i < n; i++) this.freeStack[this.freeTop++] = (addr[i]! & mask) >>> 0;
  }

  /**
   * Takes up to `max` free frames for transmission: `batch.addr[i]` is where to write the
   * packet (frame base + txOffset). Returns how many.
   */
  allocTx(batch: FrameBatch, max: number): number {
    const n = max < this.freeTop ? max : this.freeTop;
    const addr = batch.addr;
    const off = XDP_PACKET_HEADROOM + this.headroom;
    for (let i = 0; i < n; i++) addr[i] = this.freeStack[--this.freeTop]! + off;
    return n;
  }

  /**
   * Queues `n` frames for transmission (`batch.addr[i]`, `batch.len[i]`); returns how many fit
   * in the TX ring. Frames not queued stay the caller's. Call `kick()` after a batch.
   */
  tx(batch: FrameBatch, n: number, options?: Uint32Array): number {
    const room = this.txRing.free(n);
    if (n > room) n = room;
    const addr = batch.addr;
    const len = batch.len;
    if (options === undefined) for (let i = 0; i < n; i++) this.txRing.setDesc(i, addr[i]!, len[i]!);
    else for (let i = 0; i < n; i++) this.txRing.setDesc(i, addr[i]!, len[i]!, options[i]!);
    if (n > 0) this.txRing.submit(n);
    return n;
  }

  /**
   * Writes the TX metadata of a packet that starts at UMEM address `addr`: the kernel computes its
   * L4 checksum (csumStart: bytes from the packet's start to where summing starts; csumOffset: from
   * there to the 16-bit field, which holds the pseudo-header sum). Its descriptor then needs the
   * XDP_TX_METADATA option. Only when `txChecksum`.
   */
  setTxChecksum(addr: number, csumStart: number, csumOffset: number): void {
    const u = this.umem;
    const m = addr - XSK_TX_METADATA_LEN;
    u[m] = XDP_TXMD_FLAGS_CHECKSUM;
    for (let i = 1; i < 8; i++) u[m + i] = 0;
    u[m + 8] = csumStart & 0xff;
    u[m + 9] = csumStart >>> 8;
    u[m + 10] = csumOffset & 0xff;
    u[m + 11] = csumOffset >>> 8;
  }

  /** Reaps the completion ring: sent frames go back to the free stack. Returns how many. */
  completions(max: number = this.compRing.size): number {
    let n = this.compRing.available(max);
    if (n > max) n = max;
    const mask = this.frameMask;
    for (let i = 0; i < n; i++) this.freeStack[this.freeTop++] = (this.compRing.addrAt(i) & mask) >>> 0;
    this.compRing.release(n);
    return n;
  }

  /** Whether the kernel asked for a wakeup to process the TX ring. */
  txNeedsWakeup(): boolean {
    return (this.txRing.flags() & XDP_RING_NEED_WAKEUP) !== 0;
  }

  /** Whether the kernel asked for a wakeup to refill from the fill ring (RX stalls otherwise). */
  rxNeedsWakeup(): boolean {
    return (this.fillRing.flags() & XDP_RING_NEED_WAKEUP) !== 0;
  }

  /**
   * Tells the kernel to process the TX ring, only if it asked (need_wakeup) and there is
   * something queued: one sendto(MSG_DONTWAIT) per batch. Copy mode sends at most 32 frames per
   * call (net/xdp/xsk.c TX_BATCH_SIZE), so a caller with more queued kicks again after
   * `completions()`. `force` kicks even without the wakeup flag (copy mode may clear it while
   * frames are still queued after a 32-frame pass). Returns whether a syscall was made.
   */
  kick(force = false): boolean {
    if ((!force && !this.txNeedsWakeup()) || this.txRing.pending() === 0) return false;
    // One call per batch (not per packet). EAGAIN/EBUSY/ENOBUFS/ENETDOWN mean "busy, try again"
    // (libbpf treats them so); they are results here, not exceptions: a thrown error on every
    // second copy-mode kick cost ~11% of a forwarder's CPU (design.md). Anything else (ENXIO:
    // the device went away) is kept in `kickErrno` for the owner to act on; kick never throws.
    const r = this.sys.trySendto(this.fd, this.empty, 0, MSG_DONTWAIT);
    if (r < 0) {
      const e = -r;
      if (e !== EAGAIN && e !== EBUSY && e !== ENOBUFS && e !== ENETDOWN) this.kickErrno = e;
    }
    return true;
  }

  /**
   * If the kernel asked for it, wakes the driver to refill from the fill ring (poll, no wait).
   * Called after every refill of a receiving port: a zero-copy driver whose fill ring ran dry
   * sets the flag and waits for this (Documentation/networking/af_xdp.rst, XDP_USE_NEED_WAKEUP);
   * the engine's poll(2) when idle used to be the only wake-up, and a worker that polls its rings
   * (uplink.spinUs) makes none. One load per breath; in copy mode (veth here) the kernel did not
   * set the flag (perf stat: no poll from a worker forwarding 1.4 Mpps).
   */
  wakeRx(): boolean {
    if (!this.rxNeedsWakeup()) return false;
    this.sys.tryPoll(this.pollfd, 1, 0);
    return true;
  }

  /** Waits (off the event loop) up to `timeoutMs` for received frames; true if there are some. */
  async waitRx(timeoutMs: number): Promise<boolean> {
    if (this.rxRing.available(1) > 0) return true;
    const dv = new DataView(this.pollfd.buffer);
    dv.setInt16(4, POLLIN, true);
    dv.setInt16(6, 0, true);
    const r = await this.sys.pollAsync(this.pollfd, 1, timeoutMs);
    dv.setInt16(4, 0, true);
    return r > 0 && this.rxRing.available(1) > 0;
  }

  stats(): XskStats {
    this.statsBuf.fill(0);
    this.sys.getsockopt(this.fd, SOL_XDP, XDP_STATISTICS, this.statsBuf);
    const s = XdpStatistics.decode(this.statsBuf);
    return {
      rxDropped: s.rx_dropped as bigint,
      rxInvalidDescs: s.rx_invalid_descs as bigint,
      txInvalidDescs: s.tx_invalid_descs as bigint,
      rxRingFull: s.rx_ring_full as bigint,
      rxFillRingEmptyDescs: s.rx_fill_ring_empty_descs as bigint,
      txRingEmptyDescs: s.tx_ring_empty_descs as bigint,
    };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const m of this.mappings) this.sys.munmap(m);
    this.sys.close(this.fd);
    if (this.area) this.sys.munmap(this.area);
  }
}

function isZeroCopyUnsupported(code: string | undefined): boolean {
  return code === 'EOPNOTSUPP' || code === 'ENOTSUP' || code === 'EINVAL' || code === 'EPROTONOSUPPORT';
}

/**
 * Opens an AF_XDP socket on (iface, queue). Errors: ERR_XSK_BUSY (queue held by another socket
 * after the retries), ERR_XSK_BIND (any other bind failure, errno in the cause),
 * ERR_XSK_UMEM (UMEM registration refused: the locked-memory limit without CAP_IPC_LOCK, or
 * out of memory), ERR_PERMISSION (no CAP_NET_RAW), ERR_XSK_SETUP (any other socket/ring setup
 * failure, errno in the message), ERR_XSK_CONFIG (bad options).
 */
export async function openXsk(opts: XskOptions): Promise<XskSocket> {
  const sys = getSys();
  const owner = opts.sharedUmem;
  const external = owner !== undefined || opts.externalFrames === true;
  const frameSize = owner ? owner.frameSize : (opts.frameSize ?? 4096);
  if (frameSize !== 2048 && frameSize !== 4096)
    throw new PinholeError('ERR_XSK_CONFIG', `frameSize must be 2048 or 4096, got ${frameSize}`);
  const frameCount = owner ? owner.frameCount : (opts.frameCount ?? 4096);
  const headroom = owner ? owner.headroom : (opts.headroom ?? 0);
  if (!Number.isInteger(frameCount) || frameCount < 2)
    throw new PinholeError('ERR_XSK_CONFIG', `frameCount must be an integer ≥ 2, got ${frameCount}`);
  if (frameCount * frameSize > 0x80000000) throw new PinholeError('ERR_XSK_CONFIG', 'UMEM larger than 2 GiB');
  if (!Number.isInteger(headroom) || headroom < 0 || headroom + XDP_PACKET_HEADROOM + 128 > frameSize) {
    throw new PinholeError('ERR_XSK_CONFIG', `headroom ${headroom} leaves no room for a packet in a ${frameSize}-byte frame`);
  }
  const fillSize = pow2(opts.fillSize ?? 2048, 'fillSize');
  const compSize = pow2(opts.compSize ?? 2048, 'compSize');
  const rxSize = pow2(opts.rxSize ?? 2048, 'rxSize');
  const txSize = pow2(opts.txSize ?? 2048, 'txSize');
  const ifindex = typeof opts.iface === 'number' ? opts.iface : sys.ifNameToIndex(opts.iface);
  const where = `ifindex ${ifindex}${typeof opts.iface === 'string' ? ` (${opts.iface})` : ''} queue ${opts.queue}`;
  if (owner && owner.ifindex === ifindex && owner.queue === opts.queue) {
    // Same queue: the kernel shares the owner's fill and completion rings instead; not used here.
    throw new PinholeError('ERR_XSK_CONFIG', `a shared UMEM socket must be on another queue than its owner (${where})`);
  }

  let fd = -1;
  let csumReg = false;
  let area: Mapping | undefined;
  let umemAddr = 0n;
  let umem: Uint8Array | undefined;
  const mappings: Mapping[] = [];
  try {
    let step = 'socket(AF_XDP)';
    try {
      fd = sys.socket(AF_XDP, SOCK_RAW, 0);
      step = 'mmap UMEM';
      const size = frameSize * frameCount;
      if (owner) {
        umem = owner.umem;
      } else if (opts.area) {
        const { mapping, offset } = opts.area;
        if (offset % 4096 !== 0 || offset + size > mapping.length) {
          throw new PinholeError(
            'ERR_XSK_CONFIG',
            `UMEM area offset ${offset} (+${size}) does not fit a ${mapping.length}-byte mapping page-aligned`,
          );
        }
        umemAddr = mapping.address + BigInt(offset);
        umem = new Uint8Array(mapping.buffer, offset, size);
      } else {
        area = sys.mmap(size, PROT_RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
        umemAddr = area.address;
        umem = new Uint8Array(area.buffer, 0, size);
      }
      step = 'XDP_UMEM_REG';
      // The UMEM address is in `reg`; `area` stays reachable (we keep it) for the socket's life.
      // A socket sharing another's UMEM registers none (bind names the owner).
      if (!owner) {
        const reg = (flags: number): void => {
          const b = XdpUmemReg.encode(
            { addr: umemAddr, len: BigInt(frameSize * frameCount), chunk_size: frameSize, headroom, flags },
            alloc(XdpUmemReg.size),
          );
          // tx_metadata_len: the u32 after flags, in what older headers call padding.
          if (flags !== 0) new DataView(b.buffer).setUint32(XDP_UMEM_REG_TX_METADATA_LEN_OFFSET, XSK_TX_METADATA_LEN, true);
          sys.setsockopt(fd, SOL_XDP, XDP_UMEM_REG, b);
        };
        if (opts.txChecksum) {
          try {
            reg(XDP_UMEM_TX_SW_CSUM | XDP_UMEM_TX_METADATA_LEN);
            csumReg = true;
          } catch (err) {
            // Before 6.11 the flags are unknown: EINVAL. Anything else is a real failure.
            if (errnoCodeOf(err) !== 'EINVAL') throw err;
            reg(0);
          }
        } else {
          reg(0);
        }
      }
      step = 'ring sizes';
      sys.setsockopt(fd, SOL_XDP, XDP_UMEM_FILL_RING, u32buf(fillSize));
      sys.setsockopt(fd, SOL_XDP, XDP_UMEM_COMPLETION_RING, u32buf(compSize));
      sys.setsockopt(fd, SOL_XDP, XDP_RX_RING, u32buf(rxSize));
      sys.setsockopt(fd, SOL_XDP, XDP_TX_RING, u32buf(txSize));
    } catch (err) {
      throw setupError(err, step, where, frameSize * frameCount);
    }
    const offBuf = alloc(XdpMmapOffsets.size);
    sys.getsockopt(fd, SOL_XDP, XDP_MMAP_OFFSETS, offBuf);
    const off = XdpMmapOffsets.decode(offBuf) as Record<'rx' | 'tx' | 'fr' | 'cr', Record<string, unknown>>;
    const mapRing = (o: RingOffsets, entries: number, entrySize: number, pgoff: number): Mapping => {
      const m = sys.mmap(o.desc + entries * entrySize, PROT_RW, MAP_SHARED | MAP_POPULATE, fd, pgoff);
      mappings.push(m);
      return m;
    };
    const frO = ringOffsets(off.fr);
    const crO = ringOffsets(off.cr);
    const rxO = ringOffsets(off.rx);
    const txO = ringOffsets(off.tx);
    const fill = new ProducerRing(mapRing(frO, fillSize, XDP_ADDR_SIZE, XDP_UMEM_PGOFF_FILL_RING), frO, fillSize, 2);
    const comp = new ConsumerRing(mapRing(crO, compSize, XDP_ADDR_SIZE, XDP_UMEM_PGOFF_COMPLETION_RING), crO, compSize, 2);
    const rx = new ConsumerRing(mapRing(rxO, rxSize, XDP_DESC_SIZE, XDP_PGOFF_RX_RING), rxO, rxSize, 4);
    const tx = new ProducerRing(mapRing(txO, txSize, XDP_DESC_SIZE, XDP_PGOFF_TX_RING), txO, txSize, 4);

    // Frames managed by the caller (a shared pool): no free stack here.
    const freeStack = new Uint32Array(external ? 0 : frameCount);
    // Highest addresses at the bottom so the first frames handed out are the lowest.
    for (let i = 0; i < freeStack.length; i++) freeStack[i] = (frameCount - 1 - i) * frameSize;

    const mode = await bindWithRetry(sys, fd, ifindex, opts, where);
    if (mode === 'copy') raiseTxBudget(sys, fd, opts.txBudget ?? XSK_TX_BUDGET);
    const sock = new XskSocket({
      sys,
      fd,
      ifindex,
      queue: opts.queue,
      mode,
      frameSize,
      frameCount,
      headroom,
      area,
      umem: umem!,
      mappings,
      fill,
      comp,
      rx,
      tx,
      freeStack,
      freeTop: freeStack.length,
    });
    // A socket sharing a UMEM has the owner's registration (and its flags).
    sock.txChecksum = mode === 'copy' && (owner ? owner.txChecksum : csumReg) && txMetadataHonoured(release());
    // Half the frames wait in the fill ring for traffic; the rest are for TX.
    if (!external) sock.fill(Math.min(fillSize, frameCount >>> 1));
    return sock;
  } catch (err) {
    for (const m of mappings) sys.munmap(m);
    if (fd >= 0) sys.close(fd);
    if (area) sys.munmap(area);
    throw err;
  }
}

/**
 * The error for a failed setup step, with the errno in the message and, where the cause is a
 * missing privilege or limit, its name: socket(AF_XDP) needs CAP_NET_RAW; XDP_UMEM_REG charges
 * the UMEM to RLIMIT_MEMLOCK unless the process has CAP_IPC_LOCK (ENOBUFS beyond it).
 */
function setupError(err: unknown, step: string, where: string, umemBytes: number): PinholeError {
  if (err instanceof PinholeError) return err;
  const errno = errnoCodeOf(err);
  const details = { step, errno, where };
  if (step === 'socket(AF_XDP)' && (errno === 'EPERM' || errno === 'EACCES')) {
    return new PinholeError('ERR_PERMISSION', `set up xsk for ${where}: socket(AF_XDP) failed (${errno}): needs CAP_NET_RAW`, {
      cause: err,
      details,
    });
  }
  if (step === 'XDP_UMEM_REG' && (errno === 'ENOBUFS' || errno === 'ENOMEM' || errno === 'EPERM')) {
    const budget = lockedMemoryBudget();
    return new PinholeError('ERR_XSK_UMEM', `set up xsk for ${where}: ${umemFailureMessage(errno, umemBytes, budget)}`, {
      cause: err,
      details: { ...details, bytes: umemBytes, capIpcLock: budget.capIpcLock, memlockLimit: budget.limit },
    });
  }
  return new PinholeError('ERR_XSK_SETUP', `set up xsk for ${where}: ${step} failed${errno ? ` (${errno})` : ''}`, { cause: err, details });
}

/**
 * Whether copy-mode TX honours TX metadata on every device in this kernel release. Before 6.18
 * (commit "xsk: wrap generic metadata handling onto separate function") the metadata was read only
 * on the path that copies a frame into a linear skb: a device that takes frames as page fragments
 * (IFF_TX_SKB_NO_LINEAR: virtio_net) silently sent them without the checksum — a wrong checksum on
 * the wire, which the kernel does not report. So before 6.18 the checksum is completed in user
 * space instead (correct everywhere; the register flags alone do not tell).
 */
export function txMetadataHonoured(kernelRelease: string): boolean {
  return releaseAtLeast(kernelRelease, 6, 18);
}

/** UMEM flags and layout of TX metadata (include/uapi/linux/if_xdp.h, Linux ≥ 6.8; the _LEN flag ≥ 6.11). */
const XDP_UMEM_TX_SW_CSUM = 1 << 1;
const XDP_UMEM_TX_METADATA_LEN = 1 << 2;
/** struct xdp_umem_reg: tx_metadata_len follows flags (u32 at 28; the struct is 32 bytes either way). */
const XDP_UMEM_REG_TX_METADATA_LEN_OFFSET = 28;
/** sizeof(struct xsk_tx_metadata): flags (u64) and a 16-byte union (csum_start, csum_offset, launch_time). */
export const XSK_TX_METADATA_LEN = 24;
/** xdp_desc.options: the packet's metadata is valid. */
export const XDP_TX_METADATA = 1 << 1;
const XDP_TXMD_FLAGS_CHECKSUM = 1 << 1;

/** Frames copy-mode TX may send per sendto kick (XDP_MAX_TX_SKB_BUDGET); the kernel's default is 32. */
export const XSK_TX_BUDGET = 256;
/** SOL_XDP optname XDP_MAX_TX_SKB_BUDGET (include/uapi/linux/if_xdp.h, kernel ≥ 6.17). */
const XDP_MAX_TX_SKB_BUDGET = 9;

/**
 * Copy-mode TX sends at most 32 frames per kick and answers EAGAIN when more are queued, so a
 * 64-frame batch costs two syscalls. Kernels ≥ 6.17 let the socket raise that budget. Best
 * effort: older kernels answer ENOPROTOOPT and keep 32 (the flush loop kicks again).
 */
function raiseTxBudget(sys: Sys, fd: number, budget: number): boolean {
  try {
    sys.setsockopt(fd, SOL_XDP, XDP_MAX_TX_SKB_BUDGET, u32buf(budget));
    return true;
  } catch {
    return false;
  }
}

async function bindWithRetry(sys: Sys, fd: number, ifindex: number, opts: XskOptions, where: string): Promise<XskMode> {
  const addr = alloc(SockaddrXdp.size);
  const retries = opts.busyRetries ?? 5;
  let delay = opts.busyDelayMs ?? 10;
  const want = opts.mode ?? 'auto';
  const tryModes: XskMode[] = want === 'auto' ? ['zerocopy', 'copy'] : [want];
  // A shared-UMEM bind takes no mode flags (the kernel answers EINVAL): the owner's mode and
  // need_wakeup setting apply. One attempt per round, as for a forced mode.
  const shared = opts.sharedUmem;
  if (shared) tryModes.splice(0, tryModes.length, shared.mode);
  let zcError: unknown;
  for (let attempt = 0; ; attempt++) {
    let busy: unknown;
    for (const m of tryModes) {
      SockaddrXdp.encode(
        {
          sxdp_family: AF_XDP,
          sxdp_flags: shared ? XDP_SHARED_UMEM : XDP_USE_NEED_WAKEUP | (m === 'zerocopy' ? XDP_ZEROCOPY : XDP_COPY),
          sxdp_ifindex: ifindex,
          sxdp_queue_id: opts.queue,
          sxdp_shared_umem_fd: shared ? shared.fd : 0,
        },
        addr,
      );
      try {
        sys.bind(fd, addr);
        return readMode(sys, fd);
      } catch (err) {
        const code = errnoCodeOf(err);
        if (code === 'EBUSY') {
          busy = err;
          break; // the queue is taken whatever the mode
        }
        if (!shared && m === 'zerocopy' && want === 'auto' && isZeroCopyUnsupported(code)) {
          zcError = err;
          continue;
        }
        throw new PinholeError('ERR_XSK_BIND', `bind xsk to ${where} (${m}${shared ? ', shared UMEM' : ''})`, {
          cause: err,
          details: { errno: code, zeroCopyError: errnoCodeOf(zcError) },
        });
      }
    }
    if (busy === undefined) throw new PinholeError('ERR_XSK_BIND', `bind xsk to ${where}: no mode left to try`, { cause: zcError });
    if (attempt >= retries) {
      throw new PinholeError(
        'ERR_XSK_BUSY',
        `bind xsk to ${where}: the queue is in use by another AF_XDP socket (EBUSY after ${retries} retries)`,
        {
          cause: busy,
          details: { ifindex, queue: opts.queue },
        },
      );
    }
    await sleep(delay);
    delay *= 2;
  }
}

function readMode(sys: Sys, fd: number): XskMode {
  const b = alloc(XdpOptions.size);
  sys.getsockopt(fd, SOL_XDP, XDP_OPTIONS, b);
  return (Number(XdpOptions.decode(b).flags) & XDP_OPTIONS_ZEROCOPY) !== 0 ? 'zerocopy' : 'copy';
}
