/**
 * AF_XDP ports of one worker over one shared UMEM (XDP_SHARED_UMEM): in zero-copy mode a frame
 * received on any of them is sent on any other by its descriptor (address, length) — no copy in
 * user space; in copy mode it is copied into a pool frame (copiesFrames, below, says why). The
 * UMEM is the worker's whole AF_XDP area, registered by the group's first socket (the owner);
 * every other socket binds with XDP_SHARED_UMEM and the owner's fd, and since each sits on
 * another (interface, queue), it has its own fill and completion rings (Linux ≥ 5.10,
 * Documentation/networking/af_xdp.rst). One FramePool (frame-pool.ts) per group holds the frames:
 *
 *   rx        the RX ring's descriptors go into the link as they are (area offset = UMEM address)
 *   tx        a frame of this UMEM still on a receive side is queued by its descriptor and
 *             changes owner (zero-copy mode); anything else (copy mode, AF_PACKET memory, the
 *             next-hop wait queue, a WireGuard slab, a frame already queued) is copied into a
 *             pool frame (`tx_copies`), with a TX metadata checksum request for a frame whose
 *             checksum is pending when the socket has them (`tx_csum_offload`)
 *   release   received frames no TX took go back to the fill ring; the ring is topped up from the
 *             pool (above the pool's reserve); a pool that cannot is counted (`pool_empty`)
 *   flush     kicks the TX ring, then completions go back to the pool
 *
 * A frame's headroom is the kernel's XDP_PACKET_HEADROOM (256 bytes) in front of the packet in
 * its 4 KiB chunk: the encap stage writes its 50 or 70 bytes of outer headers there, and the
 * widened descriptor still lies inside the chunk, as the kernel requires of a TX descriptor
 * (checked per frame; a descriptor that would cross its chunk is copied instead).
 *
 * When the kernel refuses to share — before Linux 5.10 a socket without a UMEM of its own may not
 * size a fill ring (setsockopt EINVAL, before the bind) and a shared bind to another device or
 * queue fails with EINVAL; a zero-copy owner and a device without zero-copy fail the bind with
 * EOPNOTSUPP (the UMEM's mode is the owner's) — the port opens with its own UMEM in its slice of
 * the area (ports/xsk.ts, one copy per forwarded frame) and says why in its `detail`.
 *
 * Closing a port puts the frames it held in user space back in the pool at once; those still in
 * its rings are quarantined for a grace period first (frame-pool.ts): the kernel may not be done
 * with them when close() returns.
 */
import { completeChecksum } from '../../packet/offload.ts';
import { copyWithin } from '../../util/copy-within.ts';
import { errnoCodeOf, type Mapping } from '../../sys/index.ts';
import { XDP_PACKET_HEADROOM } from '../../uplink/xsk/abi.ts';
import type { XskRings } from '../../uplink/xsk/sizing.ts';
import { openXsk, XDP_TX_METADATA, type XskSocket } from '../../uplink/xsk/socket.ts';
import { FramePool } from '../frame-pool.ts';
import type { Link } from '../link.ts';
import type { PacketMemory } from '../memory.ts';
import { mtuFrameMax, PC, type Port } from '../port.ts';
import { XskCore } from './xsk-core.ts';
import { registerXsk, XSK_FRAME_SIZE, XskPort, type XskPortOptions } from './xsk.ts';

/** The AF_XDP ports a worker opens together: one UMEM (the whole area), one frame pool. */
export class XskGroup {
  readonly pool: FramePool;
  /** The socket that registered the UMEM; set once the first port opened. */
  owner: XskSocket | undefined;
  constructor(
    readonly area: Mapping,
    frameSize: 2048 | 4096 = XSK_FRAME_SIZE,
  ) {
    this.pool = new FramePool(area.length, frameSize);
  }
}

/** Errnos of a shared bind the kernel refuses for good (not EBUSY): fall back to an own UMEM. */
const BIND_REFUSED = new Set(['EINVAL', 'EOPNOTSUPP', 'ENOTSUP', 'EPROTONOSUPPORT', 'ENOPROTOOPT']);
/** Errnos of a ring-size setsockopt on a socket with no UMEM of its own: the kernel cannot share (< 5.10). */
const RINGS_REFUSED = new Set(['EINVAL', 'ENOPROTOOPT', 'EOPNOTSUPP', 'ENOTSUP']);

/**
 * Whether a failed shared-UMEM open means "this kernel or device cannot share", not a fault; if
 * so, why (for the fallback port's `detail`). Two places refuse: before Linux 5.10 setting the
 * ring sizes of a socket without a registered UMEM (ERR_XSK_SETUP, step 'ring sizes'), and the
 * bind (ERR_XSK_BIND).
 */
export function sharedUmemRefused(err: unknown): string | undefined {
  const e = err as { code?: string; details?: { errno?: string; step?: string } };
  const errno = e?.details?.errno ?? errnoCodeOf(err);
  if (errno === undefined) return undefined;
  if (e?.code === 'ERR_XSK_BIND' && BIND_REFUSED.has(errno)) return `the shared bind was refused (${errno})`;
  if (e?.code === 'ERR_XSK_SETUP' && e.details?.step === 'ring sizes' && RINGS_REFUSED.has(errno))
    return `the kernel refused rings of its own to a socket sharing a UMEM (${errno}; Linux < 5.10)`;
  return undefined;
}

/**
 * Opens an AF_XDP port of `group`: the UMEM owner if it is the first, a shared socket otherwise,
 * or — the kernel refusing to share (sharedUmemRefused) — an XskPort with its own UMEM in its
 * slice of the area.
 */
export async function openGroupPort(o: XskPortOptions, group: XskGroup): Promise<Port> {
  if (!group.owner) {
    const sock = await openXsk({
      iface: o.ifname,
      queue: o.queue,
      frameSize: group.pool.frameSize as 2048 | 4096,
      frameCount: group.pool.capacity,
      ...ringOptions(o.rings),
      area: { mapping: group.area, offset: 0 },
      externalFrames: true,
      txChecksum: true,
    });
    // wrap() closes the socket if it fails: only a port that opened becomes the owner.
    const port = SharedXskPort.wrap(sock, o, group.pool, noteOf(sock));
    group.owner = sock;
    return port;
  }
  let sock: XskSocket;
  try {
    sock = await openXsk({ iface: o.ifname, queue: o.queue, ...ringOptions(o.rings), sharedUmem: group.owner });
  } catch (err) {
    const why = sharedUmemRefused(err);
    if (!why) throw err;
    return XskPort.open({ ...o, note: `own UMEM: ${why}, frames to and from it are copied` });
  }
  return SharedXskPort.wrap(sock, o, group.pool, noteOf(sock));
}

const noteOf = (sock: XskSocket): string => (copiesFrames(sock) ? COPY_MODE_NOTE : 'shared UMEM');
/** Whether the ports of this socket's group copy frames between them (copy mode; see below). */
const copiesFrames = (sock: XskSocket): boolean => sock.mode === 'copy' && !sharedInCopyMode();

/**
 * In copy mode the kernel copies every frame into an skb anyway, and measured on veth
 * (bench/xsk-umem.ts, 5 runs alternated) a frame sent by descriptor costs more there than our
 * own copy does: the kernel reads a frame last written on the CPU that received it, one of the
 * thousands cycling through the fill ring, while a copy reads it once and hands the kernel a
 * frame just written on this CPU from the top of a free stack. 64-byte cross-connect: shared ÷
 * own 0.94× steady, 0.96× bursty; 1500 bytes 1.03×. So in copy mode the sockets still share one
 * UMEM (one registration: the pages are pinned and charged to RLIMIT_MEMLOCK once) but every frame
 * is copied into a pool frame (SMALL_COPY, below: word blocks or memmove) instead of sent by
 * descriptor; sending by descriptor stays for zero-copy sockets, where it removes the only copy.
 * PINHOLE_XSK_UMEM=shared sends by descriptor in copy mode too (to compare).
 */
const sharedInCopyMode = (): boolean => process.env.PINHOLE_XSK_UMEM === 'shared';
const COPY_MODE_NOTE = 'shared UMEM, copy mode: frames between ports are copied (a copy costs less than the kernel sending a shared frame)';

/**
 * Frames up to this many bytes within the UMEM are copied by tx() in unrolled word blocks rather
 * than by the runtime's `copyWithin` (util/copy-within.ts), whose C++ entry costs about 20 ns per
 * call before its memmove. 64-byte cross-connect, alternated (bench/xsk-umem.ts --compare env):
 * user space 102 against 135 ns per frame, rate 1.14×; a 16-word block costs ~8 ns, so two
 * blocks still cost less than the entry. A loop of single words measured slower than the builtin.
 * PINHOLE_XSK_SMALL_COPY=0 turns it off (to compare).
 */
const SMALL_COPY = smallCopyBytes(process.env.PINHOLE_XSK_SMALL_COPY);
/** SMALL_COPY from the environment: whole 64-byte blocks, 0..128 (the bounds check in tx() covers 128). */
function smallCopyBytes(v: string | undefined): number {
  const n = v === undefined || v === '' ? 128 : Number(v);
  return Number.isFinite(n) ? Math.max(0, Math.min(128, Math.floor(n / 64) * 64)) : 128;
}

function ringOptions(r: XskRings | undefined): { rxSize?: number; txSize?: number; fillSize?: number; compSize?: number } {
  return r ? { rxSize: r.rx, txSize: r.tx, fillSize: r.fill, compSize: r.comp } : {};
}

export class SharedXskPort implements Port {
  readonly name: string;
  readonly driver = 'afxdp' as const;
  readonly detail: string;
  readonly fd: number;
  readonly sock: XskSocket;
  readonly pool: FramePool;
  /** This port's member index in the pool, and its owner codes. */
  readonly member: number;
  /** Receive, kick, statistics and counters (shared with XskPort). */
  private readonly core: XskCore;
  private readonly rxSide: number;
  private readonly txSide: number;
  private readonly reserve: number;
  private readonly memory: PacketMemory;
  /** Largest frame a copy fits in (a chunk less the headroom in front). */
  private readonly maxCopy: number;
  /** mtuFrameMax of the interface. */
  private readonly mtuMax: number;
  /** tx()'s pre-touch result, kept so the loads are not optimised away. */
  touched = 0;
  /** Receives frames (a transmit-only port keeps no frames in its fill ring). */
  private readonly receives: boolean;
  /** Frames of the pool go out by descriptor; in copy mode they are copied (copiesFrames). */
  private readonly byDescriptor: boolean;
  /** Port.pendingChecksums: only offload AF_PACKET ports act on it; declared so every port has one shape. */
  pendingChecksums = false;
  private closed = false;

  private constructor(sock: XskSocket, o: XskPortOptions, pool: FramePool, note: string) {
    this.sock = sock;
    this.name = o.name;
    this.fd = sock.fd;
    this.detail = `${sock.mode} mode, rx ring ${sock.rxRing.size}, tx ring ${sock.txRing.size}, ${pool.frameSize}-byte frames, ${note}`;
    this.pool = pool;
    this.memory = o.memory;
    this.maxCopy = pool.frameSize - XDP_PACKET_HEADROOM;
    this.mtuMax = mtuFrameMax(o.mtu);
    this.receives = o.rx !== false;
    this.byDescriptor = !copiesFrames(sock);
    // A few batches of copies per member, however full the receive rings are.
    this.reserve = Math.min(sock.txRing.size, 4 * o.batchSize);
    const memId = o.memory.register(sock.umem.buffer);
    try {
      this.member = pool.join(this.reserve);
    } catch (err) {
      o.memory.release(memId);
      throw err;
    }
    this.core = new XskCore(sock, memId, o);
    this.rxSide = FramePool.rxSide(this.member);
    this.txSide = FramePool.txSide(this.member);
  }

  /**
   * Makes a port of an opened socket: its slice of the area joins the pool, its fill ring is
   * filled, and (receiving ports) it enters the XSKMAP. Closes the socket if any step fails.
   */
  static wrap(sock: XskSocket, o: XskPortOptions, pool: FramePool, note: string): SharedXskPort {
    let port: SharedXskPort | undefined;
    try {
      port = new SharedXskPort(sock, o, pool, note);
      pool.add(o.areaOffset, o.frameCount);
      // Frames for the fill ring before the XSKMAP sends traffic (the first breathe tops it up too).
      if (port.receives) port.release();
      if (o.xsksMapFd !== undefined) registerXsk(o.xsksMapFd, o.queue, sock.fd);
      return port;
    } catch (err) {
      if (port) port.close();
      else sock.close();
      throw err;
    }
  }

  rx(out: Link, tag: number): number {
    // Descriptor address = UMEM address: the UMEM is the whole area.
    return this.core.rx(out, tag, 0);
  }

  release(): void {
    const core = this.core;
    const n = core.rxN;
    const pool = this.pool;
    const fill = this.sock.fillRing;
    const room = fill.free(fill.size);
    let k = 0;
    if (n > 0) {
      // Frames a TX took changed owner; the rest go straight back to the fill ring. Without
      // sending by descriptor (copy mode, the mode of every socket of the group: the UMEM's)
      // no TX takes one, and the owner array — one load per frame that missed the cache in a
      // profile of the cross-connect — need not be read.
      const owner = pool.owner;
      const shift = pool.shift;
      const mask = pool.mask;
      const me = this.rxSide;
      const addr = core.rxb.addr;
      const taken = this.byDescriptor;
      for (let i = 0; i < n; i++) {
        const a = addr[i]!;
        if (taken && owner[a >>> shift] !== me) continue;
        if (k < room) fill.setAddr(k++, (a & mask) >>> 0);
        else pool.put(a);
      }
      core.rxN = 0;
    }
    // Top up from the pool, leaving its reserve for transmit copies.
    const floor = pool.reserve;
    const me = this.rxSide;
    if (k < room) {
      while (k < room) {
        const f = pool.take(me, floor);
        if (f < 0) break;
        fill.setAddr(k++, f);
      }
      if (fill.size - room + k < core.batch) {
        // Less than a batch left to receive into and the pool at its floor: drops are near.
        core.c[core.b + PC.poolEmpty]++;
        pool.shortfalls++;
      }
    }
    if (k > 0) fill.submit(k);
    this.sock.wakeRx();
  }

  tx(input: Link): number {
    const n = input.n;
    if (n === 0) return 0;
    const core = this.core;
    const c = core.c;
    const b = core.b;
    if (core.dead) {
      c[b + PC.txDropped] += n;
      return 0;
    }
    const ring = this.sock.txRing;
    const pool = this.pool;
    const owner = pool.owner;
    const shift = pool.shift;
    const inFrame = pool.frameSize - 1;
    const fs = pool.frameSize;
    const id = core.memId;
    const me = this.txSide;
    const mem = this.memory;
    const maxCopy = this.maxCopy;
    const mtuMax = this.mtuMax;
    const room = ring.free(n);
    const imem = input.mem;
    const iaddr = input.addr;
    const ilen = input.len;
    let k = 0;
    let bytes = 0;
    let copies = 0;
    let tooBig = 0;
    let empty = 0;
    let offloaded = 0;
    const byDescriptor = this.byDescriptor;
    const sumInKernel = this.sock.txChecksum;
    // Touch every frame's first byte before copying any: the kernel wrote them on another CPU,
    // and independent loads in a row wait for those cache misses together, where one memmove
    // after another waits for them one by one.
    const u8s = mem.u8;
    const own8 = u8s[id]!;
    const w32 = mem.i32[id]!;
    let touch = 0;
    for (let j = 0; j < n; j++) touch ^= u8s[imem[j]!]![iaddr[j]!]!;
    this.touched = touch;
    for (let j = 0; j < n && k < room; j++) {
      const a = iaddr[j]!;
      const l = ilen[j]!;
      const m = imem[j]!;
      let d: number;
      let opt = 0;
      if (mem.overMtu(m, a, l, mtuMax)) {
        tooBig++; // above the interface's MTU (mtuFrameMax)
        continue;
      }
      if (byDescriptor && m === id && (owner[a >>> shift]! & 1) === 1 && (a & inFrame) + l <= fs) {
        // Ours and on a receive side: queued as it is; the receiving port will not refill it.
        owner[a >>> shift] = me;
        d = a;
      } else {
        if (l > maxCopy) {
          tooBig++;
          continue;
        }
        const base = pool.take(me, 0);
        if (base < 0) {
          empty++;
          continue;
        }
        // Start 0..3 bytes in so that source and destination share their alignment (xsk.ts);
        // a frame with TX metadata starts 8-aligned, as the metadata in front of it must be.
        const cs = input.csum[j]!;
        const at = base + XDP_PACKET_HEADROOM;
        const sh = cs !== 0 && sumInKernel ? 0 : (a - at) & 3;
        if (l > maxCopy - sh) {
          pool.put(base);
          tooBig++;
          continue;
        }
        d = at + sh;
        if (m === id && l <= SMALL_COPY && (a & 3) === 0 && (a & inFrame) + SMALL_COPY <= fs) {
          // A small frame of this UMEM, word-aligned (then so is d: same alignment, above): whole
          // 64-byte blocks of unrolled word copies, the last one possibly past the frame's end but
          // inside both chunks (checked for the source; the destination starts 256..259 bytes
          // into a chunk of at least 2 KiB). No call: the runtime's copy builtin is a C++ entry
          // that cost more than the copy itself (SMALL_COPY says how much).
          let s = a >>> 2;
          let t = d >>> 2;
          const end = s + (((l + 63) >>> 6) << 4);
          do {
            w32[t] = w32[s]!;
            w32[t + 1] = w32[s + 1]!;
            w32[t + 2] = w32[s + 2]!;
            w32[t + 3] = w32[s + 3]!;
            w32[t + 4] = w32[s + 4]!;
            w32[t + 5] = w32[s + 5]!;
            w32[t + 6] = w32[s + 6]!;
            w32[t + 7] = w32[s + 7]!;
            w32[t + 8] = w32[s + 8]!;
            w32[t + 9] = w32[s + 9]!;
            w32[t + 10] = w32[s + 10]!;
            w32[t + 11] = w32[s + 11]!;
            w32[t + 12] = w32[s + 12]!;
            w32[t + 13] = w32[s + 13]!;
            w32[t + 14] = w32[s + 14]!;
            w32[t + 15] = w32[s + 15]!;
            s += 16;
            t += 16;
          } while (s < end);
        } else if (m === id) {
          // Any other frame of this UMEM (every received frame of the group): the builtin, called
          // here rather than through mem.copy, which the compiler does not inline into this loop.
          copyWithin.call(own8, d, a, a + l);
        } else mem.copy(m, a, id, d, l);
        // A pending checksum (Link.csum; only frames of offload AF_PACKET ports have one, so
        // never one that came by descriptor): the kernel computes it, or we do.
        if (cs !== 0) {
          if (sumInKernel) {
            this.sock.setTxChecksum(d, cs >>> 16, cs & 0xffff);
            opt = XDP_TX_METADATA;
            offloaded++;
          } else {
            completeChecksum(mem.u8[id]!, d, l, cs >>> 16, cs & 0xffff);
          }
        }
        copies++;
      }
      ring.setDesc(k++, d, l, opt);
      bytes += l;
    }
    // One producer update for the batch.
    if (k > 0) ring.submit(k);
    c[b + PC.txFrames] += k;
    c[b + PC.txBytes] += bytes;
    c[b + PC.txCopies] += copies;
    c[b + PC.txCsumOffload] += offloaded;
    c[b + PC.txTooBig] += tooBig;
    // Frames past the ring's room, and copies without a pool frame: drops.
    c[b + PC.txDropped] += n - k - tooBig;
    if (empty > 0) {
      c[b + PC.poolEmpty]++;
      pool.shortfalls++;
    }
    return k;
  }

  flush(): void {
    this.core.kick();
    // Sent frames go back to the pool; the completion ring's consumer moves once.
    const cr = this.sock.compRing;
    const n = cr.available(cr.size);
    if (n > 0) {
      const pool = this.pool;
      for (let i = 0; i < n; i++) pool.put(cr.addrAt(i));
      cr.release(n);
    }
  }

  readable(): boolean {
    return this.core.readable();
  }

  pollError(): void {
    this.core.pollError();
  }

  refreshStats(): void {
    // Once a second: frames quarantined by a port that closed are free again after their grace period.
    if (this.pool.quarantined > 0) this.pool.expire();
    this.core.refreshStats();
  }

  setCounters(c: Float64Array, base: number): void {
    this.core.setCounters(c, base);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    const core = this.core;
    try {
      this.sock.close();
    } finally {
      try {
        // Frames of the last rx() no TX took are in user space: free at once. Everything else the
        // member holds is in its rings, and quarantined until the kernel is surely done with it.
        const pool = this.pool;
        const addr = core.rxb.addr;
        for (let i = 0; i < core.rxN; i++) if (pool.owner[addr[i]! >>> pool.shift] === this.rxSide) pool.put(addr[i]!);
        core.rxN = 0;
        pool.leave(this.member, this.reserve);
      } finally {
        this.memory.release(core.memId);
      }
    }
  }
}
