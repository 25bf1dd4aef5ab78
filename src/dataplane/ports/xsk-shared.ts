/**
 * AF_XDP ports of one worker over one shared UMEM (XDP_SHARED_UMEM): a frame received on any of
 * them is sent on any other by its descriptor (address, length) — no copy in user space. The
 * UMEM is the worker's whole AF_XDP area, registered by the group's first socket (the owner);
 * every other socket binds with XDP_SHARED_UMEM and the owner's fd, and since each sits on
 * another (interface, queue), it has its own fill and completion rings (Linux ≥ 5.10,
 * Documentation/networking/af_xdp.rst). One FramePool (frame-pool.ts) per group holds the frames:
 *
 *   rx        the RX ring's descriptors go into the link as they are (area offset = UMEM address)
 *   tx        a frame of this UMEM still on a receive side is queued by its descriptor and
 *             changes owner; anything else (AF_PACKET memory, the next-hop wait queue, a
 *             WireGuard slab, a frame already queued) is copied into a pool frame (`tx_copies`)
 *   release   received frames no TX took go back to the fill ring; the ring is topped up from the
 *             pool (above the pool's reserve); a pool that cannot is counted (`pool_empty`)
 *   flush     kicks the TX ring, then completions go back to the pool
 *
 * A frame's headroom is the kernel's XDP_PACKET_HEADROOM (256 bytes) in front of the packet in
 * its 4 KiB chunk: the encap stage writes its 50 or 70 bytes of outer headers there, and the
 * widened descriptor still lies inside the chunk, as the kernel requires of a TX descriptor
 * (checked per frame; a descriptor that would cross its chunk is copied instead).
 *
 * When the shared bind is refused — kernels before 5.10 (EINVAL for another device or queue), or
 * a zero-copy owner and a device without zero-copy (EOPNOTSUPP: the UMEM's mode is the owner's)
 * — the port opens with its own UMEM in its slice of the area (ports/xsk.ts, one copy per
 * forwarded frame) and says why in its `detail`.
 */
import { errnoCodeOf, type Mapping } from '../../sys/index.ts';
import { XDP_PACKET_HEADROOM } from '../../uplink/xsk/abi.ts';
import type { XskRings } from '../../uplink/xsk/sizing.ts';
import { openXsk, type XskSocket } from '../../uplink/xsk/socket.ts';
import { FramePool } from '../frame-pool.ts';
import type { Link } from '../link.ts';
import type { PacketMemory } from '../memory.ts';
import { PC, type Port, type PortOptions } from '../port.ts';
import { registerXsk, XSK_FRAME_SIZE, XskPort, type XskPortOptions } from './xsk.ts';

/** The AF_XDP ports a worker opens together: one UMEM (the whole area), one frame pool. */
export class XskGroup {
  readonly pool: FramePool;
  /** The socket that registered the UMEM; set when the first port opens. */
  owner: XskSocket | undefined;
  constructor(readonly area: Mapping) {
    this.pool = new FramePool(area.length, XSK_FRAME_SIZE);
  }
}

/** Errnos of a shared bind the kernel refuses for good (not EBUSY): fall back to an own UMEM. */
const REFUSED = new Set(['EINVAL', 'EOPNOTSUPP', 'ENOTSUP', 'EPROTONOSUPPORT', 'ENOPROTOOPT']);

/** Whether a failed shared-UMEM open means "this kernel or device cannot share", not a fault. */
export function sharedBindRefused(err: unknown): string | undefined {
  const e = err as { code?: string; details?: { errno?: string } };
  if (e?.code !== 'ERR_XSK_BIND') return undefined;
  const errno = e.details?.errno ?? errnoCodeOf(err);
  return errno !== undefined && REFUSED.has(errno) ? errno : undefined;
}

/**
 * Opens an AF_XDP port of `group`: the UMEM owner if it is the first, a shared socket otherwise,
 * or — the shared bind refused — an XskPort with its own UMEM in its slice of the area.
 */
export async function openGroupPort(o: XskPortOptions, group: XskGroup): Promise<Port> {
  if (!group.owner) {
    const sock = await openXsk({
      iface: o.ifname,
      queue: o.queue,
      frameSize: XSK_FRAME_SIZE,
      frameCount: group.pool.capacity,
      ...ringOptions(o.rings),
      area: { mapping: group.area, offset: 0 },
      externalFrames: true,
    });
    group.owner = sock;
    return SharedXskPort.wrap(sock, o, group.pool, 'shared UMEM');
  }
  let sock: XskSocket;
  try {
    sock = await openXsk({ iface: o.ifname, queue: o.queue, ...ringOptions(o.rings), sharedUmem: group.owner });
  } catch (err) {
    const refused = sharedBindRefused(err);
    if (!refused) throw err;
    return XskPort.open({ ...o, note: `own UMEM: the shared bind was refused (${refused}), frames to and from it are copied` });
  }
  return SharedXskPort.wrap(sock, o, group.pool, 'shared UMEM');
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
  private readonly rxSide: number;
  private readonly txSide: number;
  private readonly reserve: number;
  private readonly memId: number;
  private readonly memory: PacketMemory;
  private readonly rxb: { addr: Uint32Array; len: Uint32Array };
  private rxN = 0;
  /** Set when the device refused a TX kick for good: nothing more is sent or received. */
  dead = false;
  private c: Float64Array;
  private b: number;
  private readonly kdBase: number;
  private readonly batch: number;
  /** Largest frame a copy fits in (a chunk less the headroom in front). */
  private readonly maxCopy: number;
  /** Receives frames (a transmit-only port keeps no frames in its fill ring). */
  private readonly receives: boolean;
  private closed = false;

  private constructor(sock: XskSocket, o: PortOptions & { rx?: boolean }, pool: FramePool, note: string) {
    this.sock = sock;
    this.name = o.name;
    this.fd = sock.fd;
    this.detail = `${sock.mode} mode, rx ring ${sock.rxRing.size}, tx ring ${sock.txRing.size}, ${note}`;
    this.pool = pool;
    this.memory = o.memory;
    this.batch = o.batchSize;
    this.rxb = { addr: new Uint32Array(o.batchSize), len: new Uint32Array(o.batchSize) };
    this.c = o.counters;
    this.b = o.base;
    this.kdBase = o.counters[o.base + PC.kernelDrops]!;
    this.maxCopy = pool.frameSize - XDP_PACKET_HEADROOM;
    this.receives = o.rx !== false;
    // A few batches of copies per member, however full the receive rings are.
    this.reserve = Math.min(sock.txRing.size, 4 * o.batchSize);
    this.memId = o.memory.register(sock.umem.buffer);
    try {
      this.member = pool.join(this.reserve);
    } catch (err) {
      o.memory.release(this.memId);
      throw err;
    }
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
    // One receive per breathe: the frames stay ours until release().
    if (this.rxN > 0 || this.dead) return 0;
    let max = out.capacity - out.n;
    if (max > this.batch) max = this.batch;
    if (max <= 0) return 0;
    const n = this.sock.rx(this.rxb, max);
    const addr = this.rxb.addr;
    const len = this.rxb.len;
    const id = this.memId;
    let bytes = 0;
    for (let i = 0; i < n; i++) {
      const l = len[i]!;
      bytes += l;
      out.push(id, addr[i]!, l, tag);
    }
    this.rxN = n;
    this.c[this.b + PC.rxFrames] += n;
    this.c[this.b + PC.rxBytes] += bytes;
    return n;
  }

  release(): void {
    const n = this.rxN;
    const pool = this.pool;
    const fill = this.sock.fillRing;
    const room = fill.free(fill.size);
    let k = 0;
    if (n > 0) {
      // Frames a TX took changed owner; the rest go straight back to the fill ring.
      const owner = pool.owner;
      const shift = pool.shift;
      const mask = pool.mask;
      const me = this.rxSide;
      const addr = this.rxb.addr;
      for (let i = 0; i < n; i++) {
        const a = addr[i]!;
        if (owner[a >>> shift] !== me) continue;
        if (k < room) fill.setAddr(k++, (a & mask) >>> 0);
        else pool.put(a);
      }
      this.rxN = 0;
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
      if (fill.size - room + k < this.batch) {
        // Less than a batch left to receive into and the pool at its floor: drops are near.
        this.c[this.b + PC.poolEmpty]++;
        pool.shortfalls++;
      }
    }
    if (k > 0) fill.submit(k);
  }

  tx(input: Link): number {
    const n = input.n;
    if (n === 0) return 0;
    if (this.dead) {
      this.c[this.b + PC.txDropped] += n;
      return 0;
    }
    const ring = this.sock.txRing;
    const pool = this.pool;
    const owner = pool.owner;
    const shift = pool.shift;
    const inFrame = pool.frameSize - 1;
    const fs = pool.frameSize;
    const id = this.memId;
    const me = this.txSide;
    const mem = this.memory;
    const maxCopy = this.maxCopy;
    const room = ring.free(n);
    const imem = input.mem;
    const iaddr = input.addr;
    const ilen = input.len;
    let k = 0;
    let bytes = 0;
    let copies = 0;
    let tooBig = 0;
    let empty = 0;
    for (let j = 0; j < n && k < room; j++) {
      const a = iaddr[j]!;
      const l = ilen[j]!;
      const m = imem[j]!;
      let d: number;
      if (m === id && (owner[a >>> shift]! & 1) === 1 && (a & inFrame) + l <= fs) {
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
        // Start 0..3 bytes in so that source and destination share their alignment (xsk.ts).
        const at = base + XDP_PACKET_HEADROOM;
        const sh = (a - at) & 3;
        if (l > maxCopy - sh) {
          pool.put(base);
          tooBig++;
          continue;
        }
        d = at + sh;
        mem.copy(m, a, id, d, l);
        copies++;
      }
      ring.setDesc(k++, d, l);
      bytes += l;
    }
    // One producer update for the batch.
    if (k > 0) ring.submit(k);
    const c = this.c;
    const b = this.b;
    c[b + PC.txFrames] += k;
    c[b + PC.txBytes] += bytes;
    c[b + PC.txCopies] += copies;
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
    const s = this.sock;
    // As ports/xsk.ts: copy mode sends at most a budget of frames per kick; kick until drained.
    let pending = s.txRing.pending();
    for (let i = 0; i < 8 && pending > 0; i++) {
      if (!s.kick(i > 0)) break;
      const left = s.txRing.pending();
      if (left >= pending) break;
      pending = left;
    }
    if (s.kickErrno !== 0) {
      this.c[this.b + PC.errors]++;
      s.kickErrno = 0;
      this.dead = true;
    }
    // Sent frames go back to the pool; the completion ring's consumer moves once.
    const cr = s.compRing;
    const n = cr.available(cr.size);
    if (n > 0) {
      const pool = this.pool;
      for (let i = 0; i < n; i++) pool.put(cr.addrAt(i));
      cr.release(n);
    }
  }

  readable(): boolean {
    return this.sock.rxRing.available(1) > 0;
  }

  pollError(): void {
    this.c[this.b + PC.errors]++;
  }

  refreshStats(): void {
    const st = this.sock.stats();
    this.c[this.b + PC.kernelDrops] = this.kdBase + Number(st.rxDropped + st.rxRingFull);
    const s = this.sock;
    this.c[this.b + PC.rxRingUsed] = s.rxRing.available(s.rxRing.size);
    this.c[this.b + PC.rxRingSize] = s.rxRing.size;
    this.c[this.b + PC.txRingUsed] = s.txRing.pending();
    this.c[this.b + PC.txRingSize] = s.txRing.size;
  }

  setCounters(c: Float64Array, base: number): void {
    this.c = c;
    this.b = base;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    // The kernel lets go of every frame in this socket's rings when it closes: they are free again.
    this.sock.close();
    this.pool.leave(this.member, this.reserve);
    this.memory.release(this.memId);
  }
}
