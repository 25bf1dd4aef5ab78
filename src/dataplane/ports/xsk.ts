/**
 * AF_XDP port with a UMEM of its own: one XskSocket whose UMEM lives inside the worker's AF_XDP
 * area (one anonymous mapping holding every UMEM of the worker), so a frame received on one AF_XDP
 * port and sent on another moves with one copyWithin, no allocation (`tx_copies` counts them).
 * Ports a worker opens together share one UMEM instead, and in zero-copy mode send each other's
 * frames without a copy (ports/xsk-shared.ts); this port is what a worker opens alone, with the
 * shared UMEM switched off, or when the kernel refuses the shared bind (`note` says why, in
 * `detail`). A frame whose L4 checksum is pending (Link.csum) goes out with a TX metadata request
 * when the socket has them (XskSocket.txChecksum: copy mode, Linux ≥ 6.18; it then starts
 * 8-aligned, as the metadata in front of it must be), else its checksum is completed in the copy.
 * Descriptors carry area offsets:
 *
 *   area:  [ UMEM of port 0 | UMEM of port 1 | ... ]      descriptor addr = umemOffset + UMEM addr
 *
 * A received frame keeps 256 bytes (XDP_PACKET_HEADROOM) of its chunk in front of it: stages
 * may write encapsulation headers there in place. On receive the port registers its socket in
 * the XSKMAP (`xsksMapFd`) under its queue, so the XDP program starts redirecting to it.
 */
import { BpfMap } from '../../kernel/map.ts';
import { alloc, type Mapping } from '../../sys/index.ts';
import type { XskRings } from '../../uplink/xsk/sizing.ts';
import { completeChecksum } from '../../packet/offload.ts';
import { openXsk, XDP_TX_METADATA, type XskSocket } from '../../uplink/xsk/socket.ts';
import { XskCore } from './xsk-core.ts';
import type { Link } from '../link.ts';
import type { PacketMemory } from '../memory.ts';
import { mtuFrameMax, PC, type Port, type PortOptions } from '../port.ts';

export interface XskPortOptions extends PortOptions {
  queue: number;
  area: Mapping;
  /** Page-aligned offset of this port's UMEM in the area. */
  areaOffset: number;
  frameCount: number;
  /** Ring sizes (default: openXsk's, 2048 each). */
  rings?: XskRings;
  xsksMapFd?: number;
  /** Appended to `detail` (e.g. why this port has a UMEM of its own). */
  note?: string;
  /** False for a port that only transmits: over a shared UMEM its fill ring stays empty (default true). */
  rx?: boolean;
  /** Sparse flows' frames are taken ahead of a backlog in the RX ring (ports of tunnel graphs: worker.ts, ports/xsk-core.ts). */
  flowQueueing?: boolean;
  /** The interface's MTU (PortPlan.mtu): larger frames are counted too-big, not sent. Absent: no check. */
  mtu?: number;
  /** UMEM frame size (uplink/xsk/sizing.ts xskFrameSize; default XSK_FRAME_SIZE). */
  frameSize?: 2048 | 4096;
}

/** Puts socket `sockFd` in the XSKMAP `mapFd` under `queue`, so the XDP program redirects there. */
export function registerXsk(mapFd: number, queue: number, sockFd: number): void {
  // A BpfMap over the shared fd; never closed here (the loaded program owns the fd).
  const xsks = new BpfMap(mapFd, { name: 'xsks', type: 'xskmap', keySize: 4, valueSize: 4, maxEntries: 1 });
  const key = alloc(4);
  const val = alloc(4);
  new DataView(key.buffer).setUint32(0, queue, true);
  new DataView(val.buffer).setUint32(0, sockFd, true);
  xsks.update(key, val);
}

export const XSK_FRAME_SIZE = 4096;

export class XskPort implements Port {
  readonly name: string;
  readonly driver = 'afxdp' as const;
  readonly detail: string;
  readonly fd: number;
  readonly sock: XskSocket;
  /** Receive, kick, statistics and counters (shared with SharedXskPort). */
  private readonly core: XskCore;
  private readonly off: number;
  private readonly txb: { addr: Uint32Array; len: Uint32Array };
  private readonly spare: { addr: Uint32Array; len: Uint32Array };
  /** Descriptor options per TX batch entry (XDP_TX_METADATA for a checksum the kernel computes). */
  private readonly txo: Uint32Array;
  /** Port.pendingChecksums: only offload AF_PACKET ports act on it; declared so every port has one shape. */
  pendingChecksums = false;
  private readonly maxFrame: number;
  /** mtuFrameMax of the interface. */
  private readonly mtuMax: number;
  private readonly memory: PacketMemory;

  private constructor(sock: XskSocket, o: XskPortOptions) {
    this.sock = sock;
    this.name = o.name;
    this.fd = sock.fd;
    this.detail = `${sock.mode} mode, rx ring ${sock.rxRing.size}, tx ring ${sock.txRing.size}, ${sock.frameSize}-byte frames${o.note ? `, ${o.note}` : ''}`;
    this.memory = o.memory;
    this.core = new XskCore(sock, o.memory.register(o.area.buffer), o);
    this.off = o.areaOffset;
    this.txb = { addr: new Uint32Array(o.batchSize), len: new Uint32Array(o.batchSize) };
    this.spare = { addr: new Uint32Array(o.batchSize), len: new Uint32Array(o.batchSize) };
    this.txo = new Uint32Array(o.batchSize);
    this.maxFrame = sock.frameSize - sock.txOffset;
    this.mtuMax = mtuFrameMax(o.mtu);
  }

  static async open(o: XskPortOptions): Promise<XskPort> {
    const sock = await openXsk({
      iface: o.ifname,
      queue: o.queue,
      frameSize: o.frameSize ?? XSK_FRAME_SIZE,
      frameCount: o.frameCount,
      ...(o.rings ? { rxSize: o.rings.rx, txSize: o.rings.tx, fillSize: o.rings.fill, compSize: o.rings.comp } : {}),
      area: { mapping: o.area, offset: o.areaOffset },
      txChecksum: true,
    });
    try {
      if (o.xsksMapFd !== undefined) registerXsk(o.xsksMapFd, o.queue, sock.fd);
      // Registering the area may fail (too many memories): the socket must not leak then.
      return new XskPort(sock, o);
    } catch (err) {
      sock.close();
      throw err;
    }
  }

  rx(out: Link, tag: number): number {
    return this.core.rx(out, tag, this.off);
  }

  release(): void {
    const core = this.core;
    if (core.rxN > 0) {
      this.sock.releaseRx(core.rxb, core.rxN);
      core.rxN = 0;
    }
    // The kernel publishes fill-ring progress lazily: keep parked frames flowing back.
    if (this.sock.freeFrames > 0) this.sock.fill();
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
    const s = this.sock;
    const tb = this.txb;
    const spare = this.spare;
    const mem = this.memory;
    const id = core.memId;
    const off = this.off;
    const max = this.maxFrame;
    const mtuMax = this.mtuMax;
    const batch = core.batch;
    let done = 0;
    let queuedTotal = 0;
    let bytes = 0;
    let tooBig = 0;
    let offloaded = 0;
    const txo = this.txo;
    const sumInKernel = s.txChecksum;
    const icsum = input.csum;
    while (done < n) {
      const want = n - done < batch ? n - done : batch;
      const got = s.allocTx(tb, want);
      if (got === 0) break;
      let k = 0;
      let spareN = 0;
      let withMeta = 0;
      for (let i = 0; i < got; i++) {
        const j = done + i;
        const l = input.len[j]!;
        const src = input.addr[j]!;
        // Start the copy 0..3 bytes into the frame so that source and destination share their
        // alignment and PacketMemory.copy moves words: an encapsulated frame starts 50 or 70
        // bytes before a 4-byte-aligned payload, i.e. 2 bytes off. The kernel takes any start.
        // A frame with TX metadata starts 8-aligned, as the metadata in front of it must be.
        const cs = icsum[j]!;
        const shift = cs !== 0 && sumInKernel ? 0 : (src - off - tb.addr[i]!) & 3;
        const dst = tb.addr[i]! + shift;
        if (l > max - shift || mem.overMtu(input.mem[j]!, src, l, mtuMax)) {
          // Never sent truncated, nor above the MTU: a counted drop, its buffer goes back.
          spare.addr[spareN++] = dst;
          tooBig++;
          continue;
        }
        mem.copy(input.mem[j]!, src, id, off + dst, l);
        // A pending checksum (Link.csum): the kernel computes it from the TX metadata, or we do.
        txo[k] = 0;
        if (cs !== 0) {
          if (sumInKernel) {
            s.setTxChecksum(dst, cs >>> 16, cs & 0xffff);
            txo[k] = XDP_TX_METADATA;
            withMeta++;
          } else {
            completeChecksum(mem.u8[id]!, off + dst, l, cs >>> 16, cs & 0xffff);
          }
        }
        tb.addr[k] = dst;
        tb.len[k] = l;
        k++;
      }
      const queued = withMeta === 0 ? s.tx(tb, k) : s.tx(tb, k, txo);
      for (let i = 0; i < queued; i++) bytes += tb.len[i]!;
      if (withMeta !== 0) for (let i = 0; i < queued; i++) if (txo[i] !== 0) offloaded++;
      // TX ring full: unqueued buffers go back with the skipped ones; their frames are drops.
      for (let i = queued; i < k; i++) spare.addr[spareN++] = tb.addr[i]!;
      if (spareN > 0) s.releaseRx(spare, spareN);
      queuedTotal += queued;
      done += got;
      if (queued < k) break;
    }
    c[b + PC.txFrames] += queuedTotal;
    c[b + PC.txBytes] += bytes;
    c[b + PC.txCopies] += queuedTotal;
    c[b + PC.txCsumOffload] += offloaded;
    c[b + PC.txDropped] += n - queuedTotal - tooBig;
    c[b + PC.txTooBig] += tooBig;
    return queuedTotal;
  }

  flush(): void {
    this.core.kick();
    this.sock.completions();
  }

  readable(): boolean {
    return this.core.readable();
  }

  pollError(): void {
    this.core.pollError();
  }

  refreshStats(): void {
    this.core.refreshStats();
  }

  setCounters(c: Float64Array, base: number): void {
    this.core.setCounters(c, base);
  }

  close(): void {
    try {
      this.sock.close();
    } finally {
      this.memory.release(this.core.memId);
    }
  }
}
