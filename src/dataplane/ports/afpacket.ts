/**
 * AF_PACKET port: an AfPacketSocket (an RX ring — TPACKET_V2 with offload or gsoReceive, V3
 * otherwise — and a PACKET_TX_RING) as a dataplane port.
 * Its ring mapping is one PacketMemory; received frames are descriptors into it and stay valid
 * until release(). Transmit copies each frame into a TX ring slot (PacketMemory.copy: word copy
 * across buffers, no allocation) and one sendto per batch sends them.
 *
 * Headroom (V3 ports; V2 ports below): TPACKET_V3 places an Ethernet frame 82 bytes after its
 * tpacket3_hdr (tp_mac = TPACKET_ALIGN(68 + 16) - 14), and the header of a frame already handed
 * to us is not read again, so stages may write up to 82 bytes of encapsulation in front of a
 * received frame.
 *
 * The uplink uses the pinhole policy as its socket filter; a workload port takes every frame
 * ('all'). A transmit-only port ('to' of a cross-connect) gets a drop-all filter, so the kernel
 * queues nothing for it.
 *
 * Offload (workload ports, `offload: true`): the socket has PACKET_VNET_HDR, so a pod keeps its
 * TCP segmentation and checksum offload. The kernel then hands over what the pod's stack built:
 * GSO super-frames of up to 64 KiB and frames whose L4 checksum is only the pseudo-header sum.
 * rx() completes such checksums in place and splits super-frames into MTU-sized frames
 * (packet/offload.ts: what the kernel's software GSO would send) written into its segment memory
 * — the worker's AF_XDP area when it has one (segmentArea), so a segment reaches the uplink's
 * UMEM by memmove. A segment's L4 checksum is computed here, or, when the graph sets
 * `pendingChecksums` (VXLAN connections), left pending on the link (Link.csum: the uplink has the
 * kernel compute it, or completes it), so the rest of the graph sees ordinary frames either way.
 *
 * GSO trains (`trains`, set by the graph when the uplink sends them): a super-frame for VXLAN
 * is laid out as one or two trains instead — its segments, checksums complete, `segment + 8`
 * bytes apart, one after the other in the segment memory, one link entry each (Link.gso; trainUp(), and why in
 * ports/train.ts).
 *
 * An uplink with `gsoReceive` (the VXLAN uplink) has the same ring, read the same way: a GSO
 * train from another pinhole, which a veth delivers whole, is split like a pod's super-frame, a
 * partial checksum completed. Before, it kept a TPACKET_V3 ring (frames packed into blocks):
 * measured on the VXLAN bench in afpacket mode (two quick invocations each), V2 gave ping p50
 * 0.15 ms idle against 1.2 ms (a lone reply waited for its block's retire timer), 0.29 against
 * 1.2 ms under an upload, TCP upload 5.2–5.3 against 4.2–4.4 Gbit/s, download 3.7 against 3.9–4.1
 * (its one cost), 64-byte rate and CPU per packet equal. The cross-connect uplink and the
 * WireGuard port keep TPACKET_V3.
 *
 * Flow queueing (sparseFirst): with a super-frame at the head of the ring, ordinary frames of
 * flows with nothing waiting before them are taken ahead of it (counter rx_sparse_first) and
 * leave in a breath of their own; a breath splits at most SUPER_PER_BREATH (one) super-frame
 * (ordinary frames behind it still come in the same breath).
 *
 * Its ring is TPACKET_V2, not V3: a V2 slot is handed over as soon as it is filled, where a V3
 * block waits until it is full or its retire timer fires, which a pod pinging or opening a
 * connection meets as a millisecond of latency per packet (measured: ping p50 0.9 ms through a
 * V3 workload ring, 0.15 ms through V2). Slots are 2 KiB; a larger frame (a super-frame, a
 * jumbo frame: MTU 9000 works, test/lab/jumbo.test.ts) also goes whole to the socket's receive queue (PACKET_COPY_THRESH) and its slot,
 * cut short, says so (TP_STATUS_COPY): rx() reads it from there into a copy slot.
 *
 *   ring slot:  │ tpacket2_hdr │ … │ virtio_net_hdr (10) │ frame (76 bytes in) │
 *   copy slot:  │ headroom 118 │ virtio_net_hdr (10) │ whole frame, up to 64 KiB │
 *                 gso_type, gso_size ──► Segmenter ──► segment memory:
 *   │ headroom 128 │ segment 0 │ pad │ headroom 128 │ segment 1 │ pad │ …   (each at a 64-byte stride)
 *
 * Segments are packed at their own size (segStride), so one memory serves 1500-byte segments and
 * jumbo ones alike; a port's transmit slots are sized from its interface's MTU (socket.ts
 * txSlotSize). A frame is taken only when all of its segments fit in this breath (link room and
 * segment memory);
 * otherwise it waits for the next breath, which starts with room for at least
 * MAX_GSO_SEGMENTS (the graph sizes the link for it). One super-frame costs the kernel and the
 * pod one frame's work instead of one per segment; splitting it costs pinhole a header copy and
 * a payload copy per segment (and a checksum, unless it is left pending). Frames sent to the pod carry an all-zero header (no offload). Stages
 * may write up to 76 bytes in front of a frame in a ring slot (the header was read first).
 */
import { cbpf } from '../../bpf/cbpf/asm.ts';
import { compilePinholeFilter, PINHOLE_SNAP_LEN } from '../../bpf/cbpf/pinhole.ts';
import type { PinholeSpec } from '../../bpf/pinhole/policy.ts';
import {
  completeChecksum,
  Segmenter,
  VNET_F_NEEDS_CSUM,
  VNET_GSO_ECN,
  VNET_GSO_NONE,
  VNET_HDR_LEN,
  vnetCsumOffset,
  vnetCsumStart,
  vnetFlags,
  vnetGsoSize,
  vnetGsoType,
} from '../../packet/offload.ts';
import { flowHash, TRAIN_GAP } from '../../packet/vxlan.ts';
import { alloc, PinholeError } from '../../sys/index.ts';
import { AfPacketSocket, RxBatch } from '../../uplink/afpacket/socket.ts';
import type { Link } from '../link.ts';
import type { PacketMemory } from '../memory.ts';
import { MAX_GSO_SEGMENTS, mtuFrameMax, PC, type Port, type PortOptions } from '../port.ts';

export interface AfPacketPortOptions extends PortOptions {
  /** Receive filter: the pinhole policy, every frame, or nothing (transmit-only). */
  filter: PinholeSpec | 'all' | 'none';
  fanoutGroup?: number;
  /** PACKET_VNET_HDR with GSO splitting and checksum completion (see the file comment). */
  offload?: boolean;
  /** TPACKET_V3 (ports without offload or gsoReceive): block retire timeout in ms (socket default 2). */
  retireMs?: number;
  /**
   * Offload: where the segment and copy slots live (offloadMemoryBytes() bytes at `offset` of
   * `buffer`), else a buffer of the port's own. The worker puts them in its AF_XDP area, the
   * buffer of the AF_XDP ports' UMEM: a segment sent on to an AF_XDP port is then copied within
   * one buffer (copyWithin, the runtime's memmove) instead of by a word loop across two
   * (measured: the cross-buffer copy was 19% of a worker forwarding iperf3 TCP to the uplink).
   */
  segmentArea?: { buffer: ArrayBufferLike; offset: number };
  /**
   * Ports without offload (the VXLAN uplink): the offload port's ring (TPACKET_V2 with
   * PACKET_VNET_HDR), so a frame the sender left to be segmented or checksummed arrives with its
   * virtio_net_hdr and is finished here: a GSO train from another pinhole, which a veth delivers
   * whole (as it does any GSO skb when the receiver runs no XDP), is split into its VXLAN
   * packets; a partial checksum is completed. Segment memory of its own.
   */
  gsoReceive?: boolean;
}

/**
 * Segment memory: SEG_BYTES_PER_FRAME bytes per frame of a breath (a batch plus the largest
 * split). Segments are packed in it one after the other, each behind SEG_HEADROOM bytes (the
 * outer headers the encapsulation writes in place) and at a 64-byte stride, so a breath holds as
 * many 1500-MTU segments as it has frames and jumbo ones (9 KB at MTU 9000) alike.
 */
const SEG_BYTES_PER_FRAME = 2048;
const SEG_HEADROOM = 128;
/** Bytes a segment or train of `len` bytes takes in the segment memory. */
const segStride = (len: number): number => (SEG_HEADROOM + len + 63) & ~63;
/** Most header bytes of one segment (Ethernet, tags, IP with options or extension headers, TCP with options): bounds a copy's split. */
const SEG_MAX_HEADERS = 256;
/**
 * Frames larger than a ring slot (super-frames, jumbo frames) come whole through the receive
 * queue into one of these: up to COPY_SLOTS per breath, each a 64 KiB frame behind headroom.
 */
const COPY_SLOTS = 8;
const COPY_HEADROOM = 128;
const COPY_SLOT = COPY_HEADROOM + 65536 + 512;
/** Bytes an offload port's segment and copy slots take (AfPacketPortOptions.segmentArea). */
export const offloadMemoryBytes = (batchSize: number): number =>
  (batchSize + MAX_GSO_SEGMENTS) * SEG_BYTES_PER_FRAME + COPY_SLOTS * COPY_SLOT;
/** Receive queue for copies: room for a burst of super-frames (SO_RCVBUFFORCE; root). */
const COPY_RCVBUF = 8 << 20;
/**
 * Ring slots of a TPACKET_V2 port (2 KiB each: 8 MiB). Measured on the VXLAN bench (64-byte bursts
 * of the live-frame generator): 2,048 slots delivered 0.24 Mpps, 8,192 0.34, a 4 MiB V3 ring 0.37;
 * steady rates alike. 4,096 is the middle: memory is per workload interface and worker.
 */
const V2_RING_SLOTS = 4096;
/**
 * Most bytes of a train after its outer headers (first segment to last): the outer IPv4 total
 * length, 20 + 8 + 8 + TRAIN_BYTES, must fit 16 bits (IPv6: 8 + 8 + TRAIN_BYTES).
 */
const TRAIN_BYTES = 65535 - 36;
/**
 * Most segments in one train: the kernel refuses UDP_L4 GSO of more than UDP_MAX_SEGMENTS
 * gso_size pieces (virtio_net_hdr_to_skb; 128 on Linux 6.18, 64 on older kernels).
 */
const TRAIN_MAX_SEGMENTS = 64;
/** Slots past the head sparseFirst() looks at. */
const SPARSE_SCAN = 256;
/**
 * Super-frames one breath splits at most (up to 64 KiB of a pod's TCP). A breath's work is what
 * a frame that arrives meanwhile waits for, ahead of it in the ring or not — a ping's reply from
 * the uplink included. Measured (ping every 10 ms under iperf3 TCP pod to pod, `auto`, one worker
 * on a CPU of its own, the first second left out, three alternated runs each): 1 per breath p99
 * 0.49–0.57 ms, p50 0.19–0.20, TCP 4.9–5.1 Gbit/s; 2: 0.60–0.94 ms, 0.28–0.32, 4.8–5.2; 4:
 * 1.2–1.7 ms, 0.42–0.46, 5.2–5.3. Before that, 4 against 8 (the copy slots) measured p99 0.89–0.97
 * against 1.26–1.73 ms, where tcpdump against the worker's breath log had shown breaths of 1–3 ms
 * in front of the waiting pings. A few percent of TCP for half the latency under load.
 */
const SUPER_PER_BREATH = 1;
const TAKE_SENT = 0;
const TAKE_SPLIT = 1;
const TAKE_DROPPED = 2;
const TAKE_LATER = 3;

export class AfPacketPort implements Port {
  readonly name: string;
  readonly driver = 'afpacket' as const;
  readonly detail: string;
  readonly fd: number;
  readonly sock: AfPacketSocket;
  private readonly memId: number;
  private readonly rxb: RxBatch;
  private readonly txOff: Uint32Array;
  private readonly txMax: number;
  private readonly memory: PacketMemory;
  private c: Float64Array;
  private b: number;
  private lastErrors = 0;
  private readonly kdBase: number;
  /**
   * Offload or gsoReceive: a TPACKET_V2 ring with virtio_net_hdr, read by rxOffload (GSO frames
   * split into the segment memory, partial checksums completed).
   */
  private readonly offload: boolean;
  private readonly seg: Segmenter | undefined;
  private readonly segId: number = -1;
  /** A view of the whole buffer the slots are in; positions below are offsets in it. */
  private readonly segMem: Uint8Array | undefined;
  /** Where the segment memory starts in segMem. */
  private readonly segAt: number = 0;
  /** Bytes of segment memory (from segAt), and how many this breath used. */
  private readonly segBytes: number = 0;
  private segUsed = 0;
  /** Frames one breath takes at most: a batch plus the largest split. */
  private readonly breathFrames: number;
  private readonly ring: Uint8Array;
  /** Bytes in front of each TX frame: the virtio_net_hdr with offload, else none. */
  private readonly txHead: number;
  /** Offload: where the copy slots start in the segment memory; a preallocated recv view per slot. */
  private readonly copyAt: number = 0;
  private readonly copyViews: Uint8Array[] = [];
  /**
   * Offload: segments leave with their L4 checksum pending (Link.csum) instead of computed here.
   * Set by the graph for a port whose frames go to the VXLAN encapsulation, where the uplink has
   * the kernel checksum them (AF_XDP TX metadata) or completes them; frames for WireGuard are
   * sealed, so they are checksummed here.
   */
  pendingChecksums = false;
  /**
   * Offload: a super-frame becomes GSO trains (Link.gso) instead of separate segments. Set by the
   * graph for a port whose frames go to the VXLAN encapsulation through an uplink that sends
   * trains (ports/train.ts); see trainUp().
   */
  trains = false;
  /** sparseFirst(): hashes of the flows with a frame waiting in place, this breath. */
  private readonly waitingFlows = new Int32Array(64);
  /** rxOffload's running totals for the breath (fields, so take() adds to them without objects). */
  private room = 0;
  /** The last breath ended after sparseFirst(): this one reads the ring in order (no starving). */
  private sparseOnly = false;
  private frames = 0;
  private bytes = 0;

  constructor(o: AfPacketPortOptions) {
    this.name = o.name;
    const filter =
      o.filter === 'all'
        ? cbpf().ret.k(PINHOLE_SNAP_LEN).assemble()
        : o.filter === 'none'
          ? cbpf().ret.k(0).assemble()
          : compilePinholeFilter(o.filter);
    this.offload = o.offload === true || o.gsoReceive === true;
    this.breathFrames = o.batchSize + MAX_GSO_SEGMENTS;
    const segments = o.segmentArea ? "in the AF_XDP ports' area" : 'in memory of their own';
    this.detail =
      o.offload === true
        ? `TPACKET_V2 ring, GSO and checksum offload (PACKET_VNET_HDR), segments ${segments}`
        : this.offload
          ? 'TPACKET_V2 ring, GSO frames split (PACKET_VNET_HDR)'
          : 'TPACKET_V3 ring';
    // Offload and gsoReceive: TPACKET_V2, so a frame is handed over at once (a V3 block waits for
    // its retire timer when traffic is light: a millisecond of latency per frame); frames above a
    // slot come whole through the receive queue.
    const open = {
      ifname: o.ifname,
      filter,
      txFrames: 512,
      ...(o.retireMs !== undefined ? { retireMs: o.retireMs } : {}),
      ...(this.offload ? { vnetHdr: true, version: 2 as const, frameCount: V2_RING_SLOTS, copyLarge: true, rcvbuf: COPY_RCVBUF } : {}),
    };
    this.sock = AfPacketSocket.open(o.fanoutGroup === undefined ? open : { ...open, fanoutGroup: o.fanoutGroup });
    this.fd = this.sock.fd;
    this.memory = o.memory;
    this.ring = this.sock.memory;
    this.memId = -1;
    try {
      this.memId = o.memory.register(this.sock.memory.buffer);
      if (this.offload) {
        // Room for one breath: a batch of ordinary frames plus the largest super-frame.
        // One buffer (one packet-memory id) for the segment memory, then the copy slots.
        this.segBytes = (o.batchSize + MAX_GSO_SEGMENTS) * SEG_BYTES_PER_FRAME;
        const area = o.segmentArea;
        this.segMem = area ? new Uint8Array(area.buffer) : alloc(offloadMemoryBytes(o.batchSize));
        this.segAt = area ? area.offset : 0;
        if (this.segAt + offloadMemoryBytes(o.batchSize) > this.segMem.length) {
          throw new PinholeError('ERR_DATAPLANE_MEMORY', `${o.name}: segment area too small`);
        }
        this.copyAt = this.segAt + this.segBytes;
        this.seg = new Segmenter(MAX_GSO_SEGMENTS);
        this.segId = o.memory.register(this.segMem.buffer);
        for (let i = 0; i < COPY_SLOTS; i++) {
          const at = this.copyAt + i * COPY_SLOT;
          this.copyViews.push(this.segMem.subarray(at + COPY_HEADROOM - VNET_HDR_LEN, at + COPY_SLOT));
        }
      }
    } catch (err) {
      if (this.memId >= 0) o.memory.release(this.memId);
      if (this.segId >= 0) o.memory.release(this.segId);
      this.sock.close();
      throw err;
    }
    this.txHead = this.offload ? VNET_HDR_LEN : 0;
    this.rxb = new RxBatch(o.batchSize);
    // Absolute offsets of each TX slot's data area, read once (no view per frame).
    this.txOff = new Uint32Array(this.sock.txFrames);
    for (let i = 0; i < this.sock.txFrames; i++) this.txOff[i] = this.sock.txData[i]!.byteOffset;
    // What the kernel sends on this interface (its MTU when the socket opened): larger frames are
    // counted too-big here instead of refused in the ring (TP_STATUS_WRONG_FORMAT, txErrors).
    this.txMax = this.sock.txFrames > 0 ? Math.min(this.sock.txData[0]!.length - this.txHead, mtuFrameMax(this.sock.mtu)) : 0;
    this.c = o.counters;
    this.b = o.base;
    // A port reopened under the same name continues the counter it inherits (never backwards).
    this.kdBase = o.counters[o.base + PC.kernelDrops]!;
  }

  rx(out: Link, tag: number): number {
    if (this.offload) return this.rxOffload(out, tag);
    const room = out.capacity - out.n;
    if (room < this.rxb.capacity) return 0; // never split a ring batch across breathes
    const n = this.sock.receive(this.rxb);
    const off = this.rxb.offset;
    const len = this.rxb.length;
    const id = this.memId;
    let bytes = 0;
    for (let i = 0; i < n; i++) {
      const l = len[i]!;
      bytes += l;
      out.push(id, off[i]!, l, tag);
    }
    this.c[this.b + PC.rxFrames] += n;
    this.c[this.b + PC.rxBytes] += bytes;
    return n;
  }

  /** Adds a breath's receive totals (rxOffload) to the counters; returns the frames. */
  private countRx(gso: number, drops: number): number {
    this.c[this.b + PC.rxFrames] += this.frames;
    this.c[this.b + PC.rxBytes] += this.bytes;
    this.c[this.b + PC.rxGsoFrames] += gso;
    this.c[this.b + PC.rxOffloadDrops] += drops;
    return this.frames;
  }

  /**
   * rx() with PACKET_VNET_HDR (see the file comment). Up to a batch of ring slots; a frame is
   * taken only when everything it becomes fits in this breath.
   */
  private rxOffload(out: Link, tag: number): number {
    const sock = this.sock;
    const rxb = this.rxb;
    const ring = this.ring;
    this.room = Math.min(out.capacity - out.n, this.breathFrames);
    this.segUsed = 0;
    this.frames = 0;
    this.bytes = 0;
    let copies = 0;
    let taken = 0;
    let gso = 0;
    let drops = 0;
    // A super-frame at the head: first take the frames behind it whose flows have nothing waiting,
    // and if there were any, end this breath with them: they leave now, not after the
    // super-frames' work. Every other breath at most, so that a stream of sparse frames cannot
    // hold the super-frames back.
    if (sock.peek(rxb, 0) && !this.ordinary(0)) {
      taken = this.sparseFirst(out, tag);
      this.sparseOnly = taken > 0 && !this.sparseOnly;
      if (this.sparseOnly) return this.countRx(0, 0);
    } else this.sparseOnly = false;
    while (taken < rxb.capacity && this.room > 0 && sock.peek(rxb, 0)) {
      const len = rxb.length[0]!;
      const v = rxb.offset[0]! - VNET_HDR_LEN;
      const type = vnetGsoType(ring, v) & ~VNET_GSO_ECN;
      // The breath's super-frames are split: the next one waits (ordinary frames still come).
      if (gso >= SUPER_PER_BREATH && (type !== VNET_GSO_NONE || rxb.copied[0] !== 0)) break;
      if (rxb.copied[0] === 0) {
        if (len !== rxb.wireLength[0]!) {
          // Cut short and not queued whole (the receive queue was full): nothing sensible to send.
          sock.skip();
          taken++;
          drops++;
          continue;
        }
        const r = this.take(ring, this.memId, v, len, type, out, tag);
        if (r === TAKE_LATER) break;
        sock.skip();
        taken++;
        if (r === TAKE_DROPPED) drops++;
        else if (r === TAKE_SPLIT) gso++;
        continue;
      }
      // Larger than a slot: the whole frame waits in the receive queue (TP_STATUS_COPY). Wait
      // for a breath with room for every segment it may become (segments ≤ length / MSS).
      const gs = vnetGsoSize(ring, v);
      const bound = type !== VNET_GSO_NONE && gs > 0 ? Math.ceil(rxb.wireLength[0]! / gs) : 1;
      // Bytes, an upper bound of what take() reserves: per segment its headroom, headers, a
      // train's gap, stride padding and a full gso_size (take() charges every segment at the
      // first one's stride).
      const need = type !== VNET_GSO_NONE && gs > 0 ? bound * (SEG_HEADROOM + SEG_MAX_HEADERS + TRAIN_GAP + 63 + gs) : 0;
      const later = bound > this.room || this.segUsed + need > this.segBytes;
      if ((later && need <= this.segBytes) || copies === COPY_SLOTS) break;
      const got = sock.receiveCopy(this.copyViews[copies]!);
      sock.skip();
      taken++;
      if (got < VNET_HDR_LEN || got > this.copyViews[copies]!.length) {
        drops++; // lost (no room in the queue after all) or too large for a copy slot
        continue;
      }
      const mem = this.segMem!;
      const cv = this.copyAt + copies * COPY_SLOT + COPY_HEADROOM - VNET_HDR_LEN;
      const r = this.take(mem, this.segId, cv, got - VNET_HDR_LEN, vnetGsoType(mem, cv) & ~VNET_GSO_ECN, out, tag);
      if (r === TAKE_LATER || r === TAKE_DROPPED) drops++;
      else if (r === TAKE_SPLIT) gso++;
      else copies++; // an ordinary frame stays in its copy slot until the breath ends
    }
    return this.countRx(gso, drops);
  }

  /**
   * Flow queueing, the part that keeps latency low under a bulk transfer: a pod's TCP stream keeps
   * tens of super-frames waiting in the ring (measured: about 30, ~10 ms of work), and a ping, a
   * DNS query or another connection's ACK behind them would wait for all of them. So before the
   * ring is read in order, the slots behind the head are scanned (up to SPARSE_SCAN, stopping at
   * the first empty one) and every ordinary frame whose flow (flowHash: addresses, protocol,
   * ports) has no frame waiting before it in the ring is taken at once, out of order — what
   * fq_codel's new-flow queue does for sparse flows. Order within a flow is kept: a frame of a flow
   * with a super-frame (or any frame left in place) before it stays in place. Super-frames,
   * frames cut short and GSO frames are never taken ahead. Returns the slots taken.
   */
  private sparseFirst(out: Link, tag: number): number {
    const sock = this.sock;
    const rxb = this.rxb;
    const ring = this.ring;
    const waiting = this.waitingFlows;
    // The head (described in rxb by the caller's peek) waits in place: so does its flow.
    waiting[0] = flowHash(ring, rxb.offset[0]!, rxb.length[0]!) | 0;
    let nWaiting = 1;
    let taken = 0;
    let drops = 0;
    for (let k = 1; k < SPARSE_SCAN && this.room > 0 && taken < rxb.capacity; k++) {
      if (sock.takenAhead(k)) continue;
      if (!sock.peekAhead(rxb, 0, k)) break;
      const h = flowHash(ring, rxb.offset[0]!, rxb.length[0]!) | 0;
      let seen = false;
      for (let j = 0; j < nWaiting && !seen; j++) seen = waiting[j] === h;
      if (seen || !this.ordinary(0)) {
        // Stays in place, and so does everything of its flow behind it.
        if (!seen) {
          if (nWaiting === waiting.length) break;
          waiting[nWaiting++] = h;
        }
        continue;
      }
      const v = rxb.offset[0]! - VNET_HDR_LEN;
      const r = this.take(ring, this.memId, v, rxb.length[0]!, VNET_GSO_NONE, out, tag);
      if (r === TAKE_LATER) break;
      sock.takeAhead(k);
      taken++;
      if (r === TAKE_DROPPED) drops++;
    }
    this.c[this.b + PC.rxOffloadDrops] += drops;
    this.c[this.b + PC.rxSparseFirst] += taken;
    return taken;
  }

  /**
   * Whether the frame described in rxb[i] is an ordinary one: whole in its ring slot (not a
   * TP_STATUS_COPY slot, not cut short) and not a GSO super-frame.
   */
  private ordinary(i: number): boolean {
    const rxb = this.rxb;
    return (
      rxb.copied[i] === 0 &&
      rxb.length[i] === rxb.wireLength[i] &&
      (vnetGsoType(this.ring, rxb.offset[i]! - VNET_HDR_LEN) & ~VNET_GSO_ECN) === VNET_GSO_NONE
    );
  }

  /**
   * One received frame with its virtio_net_hdr at `b[v]` and the frame right after it (memory
   * `id`): an ordinary frame goes out as it is (its partial checksum completed); a super-frame
   * is split into the segment memory. TAKE_LATER: not enough room in this breath (nothing done).
   */
  private take(b: Uint8Array, id: number, v: number, len: number, type: number, out: Link, tag: number): number {
    const off = v + VNET_HDR_LEN;
    const needsCsum = (vnetFlags(b, v) & VNET_F_NEEDS_CSUM) !== 0;
    if (type === VNET_GSO_NONE) {
      if (needsCsum && completeChecksum(b, off, len, vnetCsumStart(b, v), vnetCsumOffset(b, v)) < 0) {
        return TAKE_DROPPED;
      }
      out.push(id, off, len, tag);
      this.room--;
      this.frames++;
      this.bytes += len;
      return TAKE_SENT;
    }
    const seg = this.seg!;
    const n = seg.begin(b, off, len, vnetGsoType(b, v), vnetGsoSize(b, v), needsCsum ? vnetCsumStart(b, v) : -1);
    if (n < 0) return TAKE_DROPPED;
    if (this.trains && n > 1) return this.trainUp(n, out, tag);
    // Every segment at the first one's stride (the longest; the last may be shorter).
    const stride = segStride(seg.segmentLength(0));
    const bytes = n * stride;
    if (n > this.room || this.segUsed + bytes > this.segBytes) return bytes > this.segBytes ? TAKE_DROPPED : TAKE_LATER;
    const segMem = this.segMem!;
    // Pending checksums (Link.csum): the segment gets the pseudo-header sum and the mark.
    const partial = this.pendingChecksums;
    const csum = partial ? seg.partialCsum : 0;
    for (let i = 0; i < n; i++) {
      const at = this.segAt + this.segUsed + SEG_HEADROOM;
      const l = partial ? seg.writePartial(i, segMem, at) : seg.write(i, segMem, at);
      this.segUsed += stride;
      out.push(this.segId, at, l, tag, csum);
      this.bytes += l;
    }
    this.room -= n;
    this.frames += n;
    return TAKE_SPLIT;
  }

  /**
   * The segments of the super-frame the segmenter holds, as GSO trains: each segment written
   * whole (checksums complete) at a stride of `chunk` = segment + 8 bytes, the gap left for the
   * VXLAN header the encapsulation writes there, one train after the other in the segment memory:
   *
   *   │ headroom 128 │ seg 0 │ 8 │ seg 1 │ 8 │ … │ seg k │ pad │ headroom 128 │ next train …
   *
   * A train is one link entry (gso = chunk); at most TRAIN_BYTES long, so the outer IPv4 total
   * length (and the IPv6 payload length) still fits 16 bits, and at most TRAIN_MAX_SEGMENTS
   * segments: a 64 KiB super-frame becomes one or two trains (the second may hold one segment). Why: ports/train.ts. The segments' checksums are computed here, not left pending:
   * the kernel offloads only the outer UDP checksum of a train.
   */
  private trainUp(n: number, out: Link, tag: number): number {
    const seg = this.seg!;
    const chunk = seg.segmentLength(0) + TRAIN_GAP;
    const per = Math.min(TRAIN_MAX_SEGMENTS, Math.floor((TRAIN_BYTES + TRAIN_GAP) / chunk));
    const trains = Math.ceil(n / per);
    // Slots: full trains, then the last one (its last segment may be shorter).
    const lastCount = n - (trains - 1) * per;
    const lastLen = (lastCount - 1) * chunk + seg.segmentLength(n - 1);
    const need = (trains - 1) * segStride(per * chunk - TRAIN_GAP) + segStride(lastLen);
    if (trains > this.room || this.segUsed + need > this.segBytes) return need > this.segBytes ? TAKE_DROPPED : TAKE_LATER;
    const segMem = this.segMem!;
    for (let t = 0; t < trains; t++) {
      const first = t * per;
      const count = n - first < per ? n - first : per;
      const at = this.segAt + this.segUsed + SEG_HEADROOM;
      let bytes = 0;
      for (let i = 0; i < count; i++) bytes += seg.write(first + i, segMem, at + i * chunk);
      const trainLen = bytes + (count - 1) * TRAIN_GAP;
      // A lone last segment is a train of one (the kernel sends it as a plain packet): it leaves
      // through the same socket as the train before it, so it cannot overtake it.
      out.push(this.segId, at, trainLen, tag, 0, chunk);
      this.segUsed += segStride(trainLen);
      this.bytes += bytes;
    }
    this.room -= trains;
    this.frames += n;
    this.c[this.b + PC.rxGsoTrains] += trains;
    return TAKE_SPLIT;
  }

  release(): void {
    // Hand finished blocks back now rather than at the next receive().
    this.sock.release();
  }

  tx(input: Link): number {
    const sock = this.sock;
    const mem = this.memory;
    const id = this.memId;
    const n = input.n;
    let queued = 0;
    let bytes = 0;
    let tooBig = 0;
    const head = this.txHead;
    const ring = this.ring;
    for (let i = 0; i < n; i++) {
      const l = input.len[i]!;
      if (mem.overMtu(input.mem[i]!, input.addr[i]!, l, this.txMax)) {
        tooBig++;
        continue;
      }
      const slot = sock.txAcquire();
      if (slot < 0) break; // ring full: the rest of the batch is dropped (counted below)
      const at = this.txOff[slot]!;
      if (head !== 0) ring.fill(0, at, at + head); // virtio_net_hdr: no GSO, checksum complete
      mem.copy(input.mem[i]!, input.addr[i]!, id, at + head, l);
      const cs = input.csum[i]!;
      if (cs !== 0) completeChecksum(ring, at + head, l, cs >>> 16, cs & 0xffff);
      sock.txCommit(slot, l + head);
      bytes += l;
      queued++;
    }
    this.c[this.b + PC.txFrames] += queued;
    this.c[this.b + PC.txBytes] += bytes;
    this.c[this.b + PC.txDropped] += n - queued - tooBig;
    this.c[this.b + PC.txTooBig] += tooBig;
    return queued;
  }

  flush(): void {
    this.sock.txFlush();
    const e = this.sock.counters.txErrors;
    if (e !== this.lastErrors) {
      this.c[this.b + PC.errors] += e - this.lastErrors;
      this.lastErrors = e;
    }
  }

  readable(): boolean {
    return this.sock.readable();
  }

  pollError(): void {
    // Link down, a bind on a down link, the interface deleted: the kernel set sk_err, and poll
    // reports POLLERR until it is read. Reading it (SO_ERROR) keeps the engine from spinning.
    this.c[this.b + PC.errors]++;
    this.sock.clearError();
  }

  refreshStats(): void {
    // A link deleted while already down raises no socket error: look again while not up.
    if (this.sock.linkState !== 'up') this.sock.checkLink();
    if (this.sock.linkState === 'gone') return;
    this.c[this.b + PC.kernelDrops] = this.kdBase + this.sock.stats().drops;
    const r = this.sock.ringUsage();
    this.c[this.b + PC.rxRingUsed] = r.rxUsed;
    this.c[this.b + PC.rxRingSize] = r.rxSize;
    this.c[this.b + PC.txRingUsed] = r.txUsed;
    this.c[this.b + PC.txRingSize] = r.txSize;
  }

  setCounters(c: Float64Array, base: number): void {
    this.c = c;
    this.b = base;
  }

  close(): void {
    this.sock.close();
    this.memory.release(this.memId);
    if (this.segId >= 0) this.memory.release(this.segId);
  }
}
