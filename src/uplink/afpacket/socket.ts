/**
 * The AF_PACKET core: one raw packet socket on one interface, with a locked classic BPF filter
 * (the pinhole policy on an uplink; accept-all on a workload interface), a receive ring —
 * TPACKET_V3 (below), or TPACKET_V2 with large frames through the receive queue (see
 * AfPacketOptions.version) — read with peek()/skip() or receive(), and transmit that bypasses the qdisc
 * layer — either one sendto(2) per frame (`transmit`) or an optional PACKET_TX_RING where frames
 * are written in place and one sendto kicks a whole batch (`txAcquire/txCommit/txFlush`). See Documentation/networking/packet_mmap.rst and linux/if_packet.h.
 *
 * Open order (each step before the next, so no unfiltered frame is ever queued):
 *   1. socket(AF_PACKET, SOCK_RAW, 0) — protocol 0 registers no packet hook: the socket receives
 *      nothing until bind() names a protocol. (socket(..., htons(ETH_P_ALL)) would start
 *      receiving from *every* interface at once, before the filter is attached.)
 *   2. SO_ATTACH_FILTER (the compiled pinhole) and SO_LOCK_FILTER.
 *   3. [PACKET_VNET_HDR], PACKET_VERSION = TPACKET_V3 (or V2, [PACKET_COPY_THRESH]), [SO_RCVBUF],
 *      PACKET_RX_RING (tpacket_req3), [PACKET_TX_RING], one mmap (RX ring first, then TX ring).
 *   4. PACKET_QDISC_BYPASS (TX skips qdiscs), PACKET_IGNORE_OUTGOING (no copies of the host's own
 *      transmissions, nor of ours).
 *   5. bind(sockaddr_ll{ ETH_P_ALL, ifindex }).
 *   6. PACKET_FANOUT (hash) when several sockets share the interface (it needs a bound socket).
 *
 * Filter changes: a locked filter cannot be replaced. When ports or addresses change, open a new
 * socket with the new filter in the same fanout group, then close the old one; in the group each
 * frame goes to exactly one member, so the switch neither loses nor duplicates frames.
 *
 * TPACKET_V3 RX ring (one mmap, `blockCount` blocks of `blockSize` bytes):
 *
 *   block 0                         block 1               block n-1
 *   ┌───────────────────────────────┬─────────────────────┬──── ··· ───┐
 *   │ tpacket_block_desc (48 B)     │                     │            │
 *   │  +8  block_status ◄── owner: TP_STATUS_KERNEL (0) / TP_STATUS_USER (1)
 *   │  +12 num_pkts                 │                     │            │
 *   │  +16 offset_to_first_pkt ──┐  │                     │            │
 *   │  +24 seq_num               │  │                     │            │
 *   │ ┌──────────────────────────▼┐ │                     │            │
 *   │ │ tpacket3_hdr (48 B)       │ │  +0 tp_next_offset ─► next packet in the block (0: last)
 *   │ │  tp_snaplen tp_len tp_status tp_mac (frame = hdr + tp_mac) hv1.tp_vlan_tci
 *   │ ├───────────────────────────┤ │                     │            │
 *   │ │ frame bytes (tp_snaplen)  │ │                     │            │
 *   │ └───────────────────────────┘ │                     │            │
 *   │ next tpacket3_hdr ...         │                     │            │
 *   └───────────────────────────────┴─────────────────────┴────────────┘
 *
 * The kernel fills one block at a time and hands it over whole (block_status |= TP_STATUS_USER)
 * when it is full or `retireMs` after its first packet. The consumer walks blocks in ring order,
 * reads every packet in place, and gives the block back by storing TP_STATUS_KERNEL. Status words
 * are read and written with Atomics (the kernel orders its writes with smp_wmb before the status).
 *
 * Hot path: `receive()` and `transmit()` allocate nothing and create no closures; they fill and
 * read preallocated typed arrays (batches). A received frame stays valid until the next
 * `receive()`, which returns the blocks the previous batch used.
 *
 * Link state (net/packet/af_packet.c, packet_notifier and packet_do_bind):
 *
 *   event                     what the kernel does to the socket             linkState
 *   ───────────────────────── ────────────────────────────────────────────── ─────────
 *   bind on an admin-down IF  hook not registered; sk_err = ENETDOWN         down
 *   NETDEV_DOWN (link down)   hook unregistered;  sk_err = ENETDOWN          down
 *   NETDEV_UP                 hook registered again: frames flow again       up
 *   NETDEV_UNREGISTER         (deleted, or moved to another namespace)       gone
 *                             socket unbound for good (po->ifindex = -1);
 *                             sk_err = ENETDOWN only if the link was up
 *
 * A pending sk_err makes poll(2) report POLLERR at once, every time, until someone reads it:
 * a ring-only socket never calls recvmsg (which would), so without reading SO_ERROR a poll
 * loop spins at 100% CPU from the first link down on — also after the link is back. `poll()`
 * therefore reads and clears it (`clearError()`), counts it (`counters.linkErrors`), and looks
 * the interface up by index on this socket (SIOCGIFNAME/SIOCGIFFLAGS, in the socket's own
 * namespace) to tell down from gone. A gone socket never receives again: its owner must
 * report the uplink down and open a new socket when the interface is back. Owners that poll
 * the fd themselves call `clearError()` on POLLERR and `checkLink()` now and then while the
 * state is not `up` (a link deleted while already down raises no error).
 */
import type { CbpfProgram } from '../../bpf/cbpf/asm.ts';
import { alloc, errnoCodeOf, errnoName, getSys, PinholeError, SysError } from '../../sys/index.ts';
import type { Mapping } from '../../sys/index.ts';
import {
  AF_PACKET,
  BLK_FIRST,
  BLK_NUM_PKTS,
  BLK_STATUS,
  ETH_P_ALL_BE,
  MAP_SHARED,
  MSG_DONTWAIT,
  MSG_TRUNC,
  PACKET_FANOUT,
  PACKET_FANOUT_HASH,
  PACKET_IGNORE_OUTGOING,
  PACKET_QDISC_BYPASS,
  PACKET_RX_RING,
  PACKET_STATISTICS,
  PACKET_TX_RING,
  PACKET_VERSION,
  PACKET_VNET_HDR,
  PKT_LEN,
  PKT_MAC,
  PKT_NEXT,
  PKT_SNAPLEN,
  PKT_STATUS,
  PKT_VLAN_TCI,
  PKT_VLAN_TPID,
  PACKET_COPY_THRESH,
  TP_STATUS_COPY,
  TPACKET_V2,
  V2_LEN,
  V2_MAC,
  V2_SNAPLEN,
  V2_STATUS,
  V2_VLAN_TCI,
  V2_VLAN_TPID,
  IFF_UP,
  IFREQ_SIZE,
  POLLERR,
  POLLHUP,
  POLLIN,
  POLLNVAL,
  PROT_READ,
  PROT_WRITE,
  SOCK_CLOEXEC,
  SIOCGIFFLAGS,
  SIOCGIFNAME,
  SO_ERROR,
  SO_RCVBUF,
  SO_RCVBUFFORCE,
  SOCK_RAW,
  SOL_PACKET,
  SOL_SOCKET,
  TP_STATUS_AVAILABLE,
  TP_STATUS_KERNEL,
  TP_STATUS_SEND_REQUEST,
  TP_STATUS_USER,
  TP_STATUS_WRONG_FORMAT,
  TP_STATUS_VLAN_TPID_VALID,
  TP_STATUS_VLAN_VALID,
  TPACKET_V3,
  sockaddrLlLayout,
  tpacket3HdrLayout,
  tpacketReq3Layout,
  tpacketStatsV3Layout,
} from './abi.ts';
import { attachFilter, int32 } from './filter.ts';
import { doubleFields } from '../../util/double-fields.ts';
import { VNET_HDR_LEN } from '../../packet/offload.ts';

const ETH_P_8021Q = 0x8100;
const POLL_ERRORS = POLLERR | POLLHUP | POLLNVAL;

/**
 * The socket's view of its interface (see the file comment): `up` receives; `down` is admin
 * down (receives again by itself after link up); `gone` is deleted or moved to another
 * namespace (never receives again).
 */
export type AfPacketLinkState = 'up' | 'down' | 'gone';

export interface AfPacketOptions {
  /** Interface name (in the calling thread's network namespace). */
  ifname: string;
  /** The socket filter, e.g. compilePinholeFilter(spec). Attached and locked before bind. */
  filter: CbpfProgram;
  /** Ring block size in bytes (a multiple of the page size). Default 256 KiB. */
  blockSize?: number;
  /** Number of ring blocks. Default 16. */
  blockCount?: number;
  /** Frame slot size used for the kernel's frame_nr accounting. Default 2048. */
  frameSize?: number;
  /** Hand a partly filled block to user space this long after its first packet. Default 2 ms. */
  retireMs?: number;
  /** Join this PACKET_FANOUT group (hash mode) — for several sockets/workers on one interface. */
  fanoutGroup?: number;
  /** PACKET_QDISC_BYPASS for transmit. Default true. */
  qdiscBypass?: boolean;
  /**
   * A PACKET_TX_RING of this many frame slots (a multiple of 32), for
   * `txAcquire/txCommit/txFlush`: frames are written in place and one sendto kicks a batch.
   * Without it, only `transmit()` (one sendto per frame) is available. Slots are 2 KiB while a
   * frame of the interface's MTU fits one, else the next power of two that holds it (16 KiB at
   * MTU 9000); the count then shrinks to keep the ring's memory (`txSlotSize`, `txSlotCount`).
   */
  txFrames?: number;
  /**
   * PACKET_VNET_HDR: every received frame comes with the 10-byte struct virtio_net_hdr right in
   * front of it (at offset - 10 in the ring), which says whether the frame is a GSO super-frame
   * (TSO from a pod: up to 64 KiB in one frame) or carries a partial checksum; every transmitted
   * frame (TX ring or `transmit`) must start with one. Set before the rings (the kernel refuses
   * it after). See packet/offload.ts.
   */
  vnetHdr?: boolean;
  /**
   * Ring version. 3 (default): TPACKET_V3, variable-size frames packed into blocks handed over
   * when full or `retireMs` after their first frame — few wakeups, but a lone frame waits for
   * the timer (up to `retireMs`: the latency of a quiet link). 2: TPACKET_V2, one fixed-size
   * slot (`frameSize`) per frame, each handed over at once; with `copyLarge`, a frame larger
   * than its slot also goes whole to the socket's receive queue (PACKET_COPY_THRESH) and its slot
   * says so (TP_STATUS_COPY): `receiveCopy()` reads it.
   */
  version?: 2 | 3;
  /** TPACKET_V2: ring slots (a multiple of the slots per block). Default 2048. */
  frameCount?: number;
  /** TPACKET_V2: PACKET_COPY_THRESH (see `version`). */
  copyLarge?: boolean;
  /** SO_RCVBUF in bytes for frames that go through the receive queue (SO_RCVBUFFORCE when allowed). */
  rcvbuf?: number;
}

/** Smallest TX ring slot, and slots per block (a block is 32 slots: 64 KiB of 2 KiB slots). */
const TX_FRAME_SIZE = 2048;
const TX_FRAMES_PER_BLOCK = 32;
/** Fewest TX slots a ring of large slots keeps (two batches of 64). */
const TX_MIN_LARGE_SLOTS = 128;
/** Frame data starts here in a TX slot: TPACKET3_HDRLEN - sizeof(struct sockaddr_ll) = 68 - 20. */
export const TX_DATA_OFFSET = 48;
/** TPACKET_V2: TPACKET2_HDRLEN - sizeof(struct sockaddr_ll) = 52 - 20. */
const TX_DATA_OFFSET_V2 = 32;
/**
 * Largest frame the kernel sends on an interface of `mtu` (packet_snd, tpacket_snd): the MTU plus
 * the Ethernet header, and 4 bytes more for a frame that carries an 802.1Q tag.
 */
export const maxTxFrame = (mtu: number): number => mtu + 14 + 4;
/**
 * TX ring slot size for an interface of `mtu`: 2 KiB, or the power of two that holds the header,
 * a virtio_net_hdr (`head` bytes) and the largest frame (tp_frame_size must divide the block and
 * be 16-aligned; a power of two keeps slots contiguous in blocks of 32).
 */
export function txSlotSize(mtu: number, head: number, version: 2 | 3): number {
  const need = (version === 2 ? TX_DATA_OFFSET_V2 : TX_DATA_OFFSET) + head + maxTxFrame(mtu);
  let size = TX_FRAME_SIZE;
  while (size < need) size *= 2;
  return size;
}
/** TX slots for `frames` asked at 2 KiB each, in slots of `slotSize`: the same memory, ≥ 128. */
export function txSlotCount(frames: number, slotSize: number): number {
  if (slotSize === TX_FRAME_SIZE || frames === 0) return frames;
  const same = Math.floor((frames * TX_FRAME_SIZE) / slotSize / TX_FRAMES_PER_BLOCK) * TX_FRAMES_PER_BLOCK;
  return Math.max(TX_MIN_LARGE_SLOTS, same);
}
/** Interface MTU ioctl (linux/sockios.h); ifr_mtu is the int at offset 16 of struct ifreq. */
const SIOCGIFMTU = 0x8921;
/** RX ring slots per block with TPACKET_V2 (64 KiB blocks of 2 KiB slots). */
const V2_SLOTS_PER_BLOCK = 32;

/** Received frames of one `receive()` call: frame i is `memory[offset[i], offset[i]+length[i])`. */
export class RxBatch {
  readonly capacity: number;
  readonly offset: Uint32Array;
  /** Bytes captured (tp_snaplen). */
  readonly length: Uint32Array;
  /** Bytes on the wire (tp_len), ≥ length. */
  readonly wireLength: Uint32Array;
  /** 802.1Q TCI the kernel took out of the frame, or -1 (no tag). */
  readonly vlanTci: Int32Array;
  /** TPID of that tag (0x8100 / 0x88a8), valid when vlanTci ≥ 0. */
  readonly vlanTpid: Uint16Array;
  /** 1 when the slot holds a cut copy and the whole frame waits in the receive queue (TP_STATUS_COPY). */
  readonly copied: Uint8Array;
  count = 0;

  constructor(capacity: number) {
    this.capacity = capacity;
    this.offset = new Uint32Array(capacity);
    this.length = new Uint32Array(capacity);
    this.wireLength = new Uint32Array(capacity);
    this.vlanTci = new Int32Array(capacity);
    this.vlanTpid = new Uint16Array(capacity);
    this.copied = new Uint8Array(capacity);
  }
}

/**
 * Frames to send: the caller writes frame i into `slot[i]` (preallocated, off-heap views of
 * `slotSize` bytes) and sets `length[i]`, then `count`.
 */
export class TxBatch {
  readonly capacity: number;
  readonly slotSize: number;
  readonly memory: Uint8Array;
  readonly slot: readonly Uint8Array[];
  readonly length: Uint32Array;
  count = 0;

  constructor(capacity: number, slotSize = 2048) {
    this.capacity = capacity;
    this.slotSize = slotSize;
    this.memory = alloc(capacity * slotSize);
    const slots: Uint8Array[] = [];
    for (let i = 0; i < capacity; i++) slots.push(this.memory.subarray(i * slotSize, (i + 1) * slotSize));
    this.slot = slots;
    this.length = new Uint32Array(capacity);
  }
}

export interface AfPacketStats {
  /** Frames the socket accepted (passed the filter), cumulative. */
  packets: number;
  /** Frames dropped because the ring was full, cumulative. */
  drops: number;
  /** Times the ring froze because no block was free, cumulative. */
  freezes: number;
}

/** Counters kept by the socket object itself. */
export interface AfPacketCounters {
  rxFrames: number;
  rxBlocks: number;
  txFrames: number;
  /** sendto calls that failed (EAGAIN/ENOBUFS when the device queue is full, or other errors). */
  txErrors: number;
  /** Socket errors read and cleared (SO_ERROR), e.g. ENETDOWN at each link down. */
  linkErrors: number;
}

export class AfPacketSocket {
  readonly fd: number;
  readonly ifindex: number;
  readonly ifname: string;
  readonly blockSize: number;
  readonly blockCount: number;
  /** The mapped RX ring; RxBatch offsets point into it. */
  readonly memory: Uint8Array;
  readonly counters: AfPacketCounters = doubleFields(
    { rxFrames: 0, rxBlocks: 0, txFrames: 0, txErrors: 0, linkErrors: 0 },
    'rxFrames',
    'rxBlocks',
    'txFrames',
  );
  /** The last transmit error (a SysError), if any. */
  lastTxError: unknown = undefined;
  /** errno of the last failed TX ring flush (0: none). */
  lastTxErrno = 0;
  /** The interface as this socket last saw it (updated by poll, clearError, checkLink). */
  linkState: AfPacketLinkState = 'up';
  /** The last socket error read (errno code, e.g. 'ENETDOWN'), if any. */
  lastLinkError: string | undefined = undefined;

  private readonly mapping: Mapping;
  private readonly u32: Uint32Array;
  private readonly u16: Uint16Array;
  private readonly pollfd: Uint8Array;
  /** pollfd as int16s: [2] events, [3] revents. */
  private readonly pollfd16: Int16Array;
  /** An empty pollfd array: poll(2) with no fds is a sleep that never spins. */
  private readonly noFds = alloc(8);
  private readonly errBuf = alloc(4);
  private readonly ifreq = alloc(IFREQ_SIZE);
  private readonly statsBuf = alloc(tpacketStatsV3Layout.size);
  private readonly totals: AfPacketStats = doubleFields({ packets: 0, drops: 0, freezes: 0 }, 'packets', 'drops');
  /** Block being read, packets left in it, offset of the next packet header. */
  private block = 0;
  private left = 0;
  private next = 0;
  private inBlock = false;
  /** Blocks fully read by the last batch, returned to the kernel at the next receive(). */
  private releaseFrom = 0;
  private releaseCount = 0;
  private closed = false;
  /** TPACKET_V2 or V3 (see AfPacketOptions.version). */
  readonly version: 2 | 3;
  /** TPACKET_V2: slot size, slot count, next slot to read. */
  private readonly slotSize: number;
  private readonly slots: number;
  private slot = 0;
  /** TPACKET_V2: slots taken out of order (takeAhead), passed over when the head reaches them. */
  private readonly taken: Uint8Array;
  /** Header field offsets in a TX slot (per version), and where its frame data starts. */
  private readonly txStatusAt: number;
  private readonly txLenAt: number;
  private readonly txSnapAt: number;
  private readonly txDataAt: number;
  /** TX ring: slot count (0 = none), byte offset of slot 0 in the mapping, next slot to fill. */
  readonly txFrames: number;
  private readonly txBase: number;
  private txHead = 0;
  private txPending = 0;
  /** Preallocated views of each TX slot's data area (the slot less its header). */
  readonly txData: readonly Uint8Array[];
  /** TX ring slot size (txSlotSize of the interface's MTU at open). */
  readonly txSlot: number;
  /** The interface's MTU when the socket was opened (SIOCGIFMTU). */
  readonly mtu: number;
  private readonly kick = alloc(1);

  private constructor(
    fd: number,
    ifindex: number,
    ifname: string,
    mapping: Mapping,
    blockSize: number,
    blockCount: number,
    txFrames: number,
    version: 2 | 3,
    tx: { slot: number; mtu: number },
  ) {
    this.fd = fd;
    this.txSlot = tx.slot;
    this.mtu = tx.mtu;
    this.version = version;
    this.slotSize = version === 2 ? blockSize / V2_SLOTS_PER_BLOCK : 0;
    this.slots = version === 2 ? blockCount * V2_SLOTS_PER_BLOCK : 0;
    this.taken = new Uint8Array(this.slots);
    this.txStatusAt = version === 2 ? V2_STATUS : PKT_STATUS;
    this.txLenAt = version === 2 ? V2_LEN : PKT_LEN;
    this.txSnapAt = version === 2 ? V2_SNAPLEN : PKT_SNAPLEN;
    this.txDataAt = version === 2 ? TX_DATA_OFFSET_V2 : TX_DATA_OFFSET;
    this.ifindex = ifindex;
    this.ifname = ifname;
    this.mapping = mapping;
    this.blockSize = blockSize;
    this.blockCount = blockCount;
    this.memory = new Uint8Array(mapping.buffer, 0, mapping.length);
    this.u32 = new Uint32Array(mapping.buffer, 0, mapping.length >>> 2);
    this.u16 = new Uint16Array(mapping.buffer, 0, mapping.length >>> 1);
    this.pollfd = alloc(8);
    const dv = new DataView(this.pollfd.buffer);
    dv.setInt32(0, fd, true);
    dv.setInt16(4, POLLIN, true);
    this.pollfd16 = new Int16Array(this.pollfd.buffer, 0, 4);
    this.txFrames = txFrames;
    this.txBase = blockSize * blockCount;
    const views: Uint8Array[] = [];
    for (let i = 0; i < txFrames; i++) {
      const at = this.txBase + i * tx.slot + this.txDataAt;
      views.push(this.memory.subarray(at, at + tx.slot - this.txDataAt));
    }
    this.txData = views;
  }

  /** Opens the socket (see the file comment for the order of steps). Throws ERR_AFPACKET_OPEN. */
  static open(opts: AfPacketOptions): AfPacketSocket {
    const sys = getSys();
    const version = opts.version ?? 3;
    const frameSize = opts.frameSize ?? 2048;
    // V2: blocks of V2_SLOTS_PER_BLOCK fixed slots; V3: blocks that frames of any size fill.
    const blockSize = version === 2 ? frameSize * V2_SLOTS_PER_BLOCK : (opts.blockSize ?? 1 << 18);
    const blockCount = version === 2 ? Math.ceil((opts.frameCount ?? 2048) / V2_SLOTS_PER_BLOCK) : (opts.blockCount ?? 16);
    let step = 'socket';
    let fd = -1;
    let mapping: Mapping | undefined;
    const fail = (cause: unknown): never => {
      if (mapping) sys.munmap(mapping);
      if (fd >= 0) sys.close(fd);
      const errno = cause instanceof SysError ? ` (${cause.code})` : '';
      throw new PinholeError('ERR_AFPACKET_OPEN', `open AF_PACKET socket on ${opts.ifname}: ${step} failed${errno}`, {
        cause,
        details: { ifname: opts.ifname, step },
      });
    };
    try {
      step = 'if_nametoindex';
      const ifindex = sys.ifNameToIndex(opts.ifname);
      step = 'socket';
      fd = sys.socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
      step = 'attach filter';
      attachFilter(fd, opts.filter, { lock: true });
      if (opts.vnetHdr) {
        step = 'PACKET_VNET_HDR';
        sys.setsockopt(fd, SOL_PACKET, PACKET_VNET_HDR, int32(1));
      }
      step = 'PACKET_VERSION';
      sys.setsockopt(fd, SOL_PACKET, PACKET_VERSION, int32(version === 2 ? TPACKET_V2 : TPACKET_V3));
      if (version === 2 && opts.copyLarge) {
        step = 'PACKET_COPY_THRESH';
        sys.setsockopt(fd, SOL_PACKET, PACKET_COPY_THRESH, int32(1));
      }
      if (opts.rcvbuf !== undefined) {
        step = 'SO_RCVBUF';
        try {
          sys.setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, int32(opts.rcvbuf));
        } catch {
          // Without CAP_NET_ADMIN: as much as net.core.rmem_max allows.
          sys.setsockopt(fd, SOL_SOCKET, SO_RCVBUF, int32(opts.rcvbuf));
        }
      }
      step = 'PACKET_RX_RING';
      // A V2 ring takes a struct tpacket_req: the first four fields of this one (the rest zero).
      const req = tpacketReq3Layout.encode(
        {
          tp_block_size: blockSize,
          tp_block_nr: blockCount,
          tp_frame_size: frameSize,
          tp_frame_nr: Math.floor(blockSize / frameSize) * blockCount,
          tp_retire_blk_tov: version === 2 ? 0 : (opts.retireMs ?? 2),
          tp_sizeof_priv: 0,
          tp_feature_req_word: 0,
        },
        alloc(tpacketReq3Layout.size),
      );
      sys.setsockopt(fd, SOL_PACKET, PACKET_RX_RING, req);
      step = 'SIOCGIFMTU';
      const ifr = alloc(IFREQ_SIZE);
      ifr.set(new TextEncoder().encode(opts.ifname).subarray(0, 15));
      sys.ioctl(fd, SIOCGIFMTU, ifr);
      const mtu = new DataView(ifr.buffer).getInt32(16, true);
      const txSlot = txSlotSize(mtu, opts.vnetHdr ? VNET_HDR_LEN : 0, version);
      if (opts.txFrames !== undefined && opts.txFrames % TX_FRAMES_PER_BLOCK !== 0)
        throw new RangeError(`txFrames ${opts.txFrames} is not a multiple of ${TX_FRAMES_PER_BLOCK}`);
      const txFrames = txSlotCount(opts.txFrames ?? 0, txSlot);
      if (txFrames > 0) {
        step = 'PACKET_TX_RING';
        // V3 TX rings are frame rings (no block retirement): timeout, priv and features must be 0.
        sys.setsockopt(
          fd,
          SOL_PACKET,
          PACKET_TX_RING,
          tpacketReq3Layout.encode(
            {
              tp_block_size: txSlot * TX_FRAMES_PER_BLOCK,
              tp_block_nr: txFrames / TX_FRAMES_PER_BLOCK,
              tp_frame_size: txSlot,
              tp_frame_nr: txFrames,
            },
            alloc(tpacketReq3Layout.size),
          ),
        );
      }
      step = 'mmap';
      // One mapping: the RX ring, then the TX ring.
      mapping = sys.mmap(blockSize * blockCount + txFrames * txSlot, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
      if (opts.qdiscBypass ?? true) {
        step = 'PACKET_QDISC_BYPASS';
        sys.setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, int32(1));
      }
      step = 'PACKET_IGNORE_OUTGOING';
      sys.setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, int32(1));
      step = 'bind';
      sys.bind(
        fd,
        sockaddrLlLayout.encode({ sll_family: AF_PACKET, sll_protocol: ETH_P_ALL_BE, sll_ifindex: ifindex }, alloc(sockaddrLlLayout.size)),
      );
      if (opts.fanoutGroup !== undefined) {
        step = 'PACKET_FANOUT';
        sys.setsockopt(fd, SOL_PACKET, PACKET_FANOUT, int32((opts.fanoutGroup & 0xffff) | (PACKET_FANOUT_HASH << 16)));
      }
      return new AfPacketSocket(fd, ifindex, opts.ifname, mapping, blockSize, blockCount, txFrames, version, { slot: txSlot, mtu });
    } catch (err) {
      return fail(err);
    }
  }

  /**
   * Fills `batch` with up to `batch.capacity` frames from the ring and returns how many. Returns
   * the blocks of the previous batch to the kernel first. Non-blocking; allocation-free.
   */
  receive(batch: RxBatch): number {
    this.release();
    let n = 0;
    const cap = batch.capacity;
    while (n < cap && this.peek(batch, n)) {
      this.skip();
      n++;
    }
    batch.count = n;
    return n;
  }

  /**
   * Describes the next frame in the ring in `batch` slot `i` without taking it: true when there
   * is one. Call skip() to take it; until then the next peek describes the same frame. Frames
   * taken stay valid until release() (receive() releases first thing; peek does not).
   */
  peek(batch: RxBatch, i: number): boolean {
    const u32 = this.u32;
    if (this.version === 2) {
      // Slots already taken ahead of the head: pass over them (they go back in ring order).
      while (this.taken[this.slot] === 1) {
        this.taken[this.slot] = 0;
        if (this.releaseCount === 0) this.releaseFrom = this.slot;
        this.releaseCount++;
        this.slot = this.slot + 1 === this.slots ? 0 : this.slot + 1;
      }
      return this.describeSlot(batch, i, this.slot);
    }
    while (true) {
      if (!this.inBlock) {
        const base = this.block * this.blockSize;
        if ((Atomics.load(u32, (base + BLK_STATUS) >>> 2) & TP_STATUS_USER) === 0) return false;
        this.inBlock = true;
        this.left = u32[(base + BLK_NUM_PKTS) >>> 2]!;
        this.next = base + u32[(base + BLK_FIRST) >>> 2]!;
        this.counters.rxBlocks++;
      }
      if (this.left > 0) break;
      this.finishBlock();
    }
    const h = this.next;
    const status = u32[(h + PKT_STATUS) >>> 2]!;
    batch.offset[i] = h + this.u16[(h + PKT_MAC) >>> 1]!;
    batch.length[i] = u32[(h + PKT_SNAPLEN) >>> 2]!;
    batch.wireLength[i] = u32[(h + PKT_LEN) >>> 2]!;
    batch.vlanTci[i] = (status & TP_STATUS_VLAN_VALID) !== 0 ? u32[(h + PKT_VLAN_TCI) >>> 2]! & 0xffff : -1;
    batch.vlanTpid[i] = (status & TP_STATUS_VLAN_TPID_VALID) !== 0 ? this.u16[(h + PKT_VLAN_TPID) >>> 1]! : ETH_P_8021Q;
    batch.copied[i] = 0;
    return true;
  }

  /**
   * TPACKET_V2: describes the frame `k` slots past the head in `batch` slot `i`, like peek():
   * true when that slot holds a frame (see takenAhead). takeAhead(k) takes it out of order; the
   * head passes over it later, and it goes back to the kernel in ring order with its neighbours.
   * Safe because the kernel fills slots strictly in order and stops at the first one user space
   * holds: it cannot reach a slot past the head before the head has passed it.
   */
  peekAhead(batch: RxBatch, i: number, k: number): boolean {
    if (this.version !== 2 || k >= this.slots) return false;
    return this.describeSlot(batch, i, this.aheadSlot(k));
  }

  /** Whether the slot `k` past the head was taken ahead already (its frame is described still). */
  takenAhead(k: number): boolean {
    return this.version === 2 && k < this.slots && this.taken[this.aheadSlot(k)] === 1;
  }

  /** The slot `k` (< slots) past the head. */
  private aheadSlot(k: number): number {
    const s = this.slot + k;
    return s >= this.slots ? s - this.slots : s;
  }

  /** Takes the frame peekAhead(…, k) described (TPACKET_V2). */
  takeAhead(k: number): void {
    this.taken[this.aheadSlot(k)] = 1;
    this.counters.rxFrames++;
  }

  private describeSlot(batch: RxBatch, i: number, slot: number): boolean {
    const u32 = this.u32;
    const h = slot * this.slotSize;
    const status = Atomics.load(u32, (h + V2_STATUS) >>> 2);
    if ((status & TP_STATUS_USER) === 0) return false;
    batch.offset[i] = h + this.u16[(h + V2_MAC) >>> 1]!;
    batch.length[i] = u32[(h + V2_SNAPLEN) >>> 2]!;
    batch.wireLength[i] = u32[(h + V2_LEN) >>> 2]!;
    batch.vlanTci[i] = (status & TP_STATUS_VLAN_VALID) !== 0 ? this.u16[(h + V2_VLAN_TCI) >>> 1]! : -1;
    batch.vlanTpid[i] = (status & TP_STATUS_VLAN_TPID_VALID) !== 0 ? this.u16[(h + V2_VLAN_TPID) >>> 1]! : ETH_P_8021Q;
    batch.copied[i] = (status & TP_STATUS_COPY) !== 0 ? 1 : 0;
    return true;
  }

  /**
   * The whole frame of a TP_STATUS_COPY slot (see AfPacketOptions.version), from the receive
   * queue into `buf` (a preallocated view; non-blocking; with PACKET_VNET_HDR the header comes
   * first). Returns its length (more than `buf` holds: cut short), or -errno (EAGAIN: nothing
   * queued). Call it for the copied slot before skip(): queued frames and marked slots are in
   * the same order.
   */
  receiveCopy(buf: Uint8Array): number {
    return getSys().tryRecv(this.fd, buf, MSG_DONTWAIT | MSG_TRUNC);
  }

  /** Takes the frame the last peek() described. */
  skip(): void {
    if (this.version === 2) {
      // Slots go back in ring order at release(): one run of consecutive slots.
      if (this.releaseCount === 0) this.releaseFrom = this.slot;
      this.releaseCount++;
      this.slot = this.slot + 1 === this.slots ? 0 : this.slot + 1;
      this.counters.rxFrames++;
      return;
    }
    this.next = this.next + this.u32[(this.next + PKT_NEXT) >>> 2]!;
    this.counters.rxFrames++;
    if (--this.left === 0) this.finishBlock();
  }

  /**
   * Returns to the kernel the blocks the last batch finished (receive() does it first thing).
   * Call it as soon as the batch's frames are no longer needed when the next receive() may be
   * a while off: a block held by user space is a block the kernel cannot fill.
   */
  release(): void {
    const u32 = this.u32;
    if (this.version === 2) {
      while (this.releaseCount > 0) {
        Atomics.store(u32, (this.releaseFrom * this.slotSize + V2_STATUS) >>> 2, TP_STATUS_KERNEL);
        this.releaseFrom = this.releaseFrom + 1 === this.slots ? 0 : this.releaseFrom + 1;
        this.releaseCount--;
      }
      return;
    }
    while (this.releaseCount > 0) {
      Atomics.store(u32, (this.releaseFrom * this.blockSize + BLK_STATUS) >>> 2, TP_STATUS_KERNEL);
      this.releaseFrom = this.releaseFrom + 1 === this.blockCount ? 0 : this.releaseFrom + 1;
      this.releaseCount--;
    }
  }

  private finishBlock(): void {
    if (this.releaseCount === 0) this.releaseFrom = this.block;
    this.releaseCount++;
    this.inBlock = false;
    this.block = this.block + 1 === this.blockCount ? 0 : this.block + 1;
  }

  /**
   * Sends `batch.count` frames, one sendto(2) each, non-blocking. Returns how many were sent;
   * stops at the first failure (device queue full: EAGAIN/ENOBUFS), counted in txErrors.
   */
  transmit(batch: TxBatch): number {
    const sys = getSys();
    let i = 0;
    // One try around the whole batch, not per frame: a failure ends the batch.
    try {
      for (; i < batch.count; i++) sys.sendto(this.fd, batch.slot[i]!, batch.length[i]!, MSG_DONTWAIT, null);
    } catch (err) {
      this.counters.txErrors++;
      this.lastTxError = err;
    }
    this.counters.txFrames += i;
    return i;
  }

  /**
   * TX ring: the next free slot's index (its data area is `txData[index]`), or -1 when the slot
   * at the head is still owned by the kernel (ring full). Slots are used strictly in ring order.
   *
   *   slot i at txBase + i·txSlot: ┌ tpacket3_hdr (tp_len, tp_status, tp_next_offset = 0) ┐
   *                               └ frame data at +48 (TPACKET3_HDRLEN − sizeof(sockaddr_ll)) ┘
   *   tp_status: AVAILABLE (0, ours) → SEND_REQUEST (1, set by txCommit) → SENDING (2) → AVAILABLE
   */
  txAcquire(): number {
    if (this.txPending === this.txFrames) return -1;
    let i = this.txHead + this.txPending;
    if (i >= this.txFrames) i -= this.txFrames;
    const st = (this.txBase + i * this.txSlot + this.txStatusAt) >>> 2;
    const status = Atomics.load(this.u32, st);
    if (status === TP_STATUS_WRONG_FORMAT) {
      // The kernel refused a frame we queued earlier (e.g. too short); count it and reuse the slot.
      this.counters.txErrors++;
      Atomics.store(this.u32, st, TP_STATUS_AVAILABLE);
    } else if (status !== TP_STATUS_AVAILABLE) {
      return -1;
    }
    return i;
  }

  /** Marks slot `index` (from txAcquire) as holding a `length`-byte frame, to go at txFlush. */
  txCommit(index: number, length: number): void {
    const h = this.txBase + index * this.txSlot;
    this.u32[(h + this.txLenAt) >>> 2] = length;
    this.u32[(h + this.txSnapAt) >>> 2] = length;
    if (this.version === 3) this.u32[(h + PKT_NEXT) >>> 2] = 0;
    Atomics.store(this.u32, (h + this.txStatusAt) >>> 2, TP_STATUS_SEND_REQUEST);
    this.txPending++;
  }

  /**
   * One sendto(2) hands every committed frame to the kernel (non-blocking). Returns how many
   * were committed since the last flush. A full device queue leaves frames queued in the ring;
   * the next flush sends them.
   */
  txFlush(): number {
    const n = this.txPending;
    if (n === 0) return 0;
    this.txHead += n;
    if (this.txHead >= this.txFrames) this.txHead -= this.txFrames;
    this.txPending = 0;
    // One call per batch; a failure is a result (counted), not an exception: frames stay in the
    // ring with TP_STATUS_SEND_REQUEST and the next flush sends them.
    const r = getSys().trySendto(this.fd, this.kick, 0, MSG_DONTWAIT);
    if (r < 0) {
      // A number, not an Error: this runs once per batch while the link is down.
      this.counters.txErrors++;
      this.lastTxErrno = -r;
    }
    this.counters.txFrames += n;
    return n;
  }

  /**
   * poll(2) for readable ring blocks, blocking the calling thread up to `timeoutMs`; true when
   * a block is ready. Never returns early without a reason: a pending socket error is read and
   * cleared (see the file comment), and while the link is down or gone the call still waits
   * its full timeout, so an idle loop around it sleeps instead of spinning.
   */
  poll(timeoutMs: number): boolean {
    if (this.linkState !== 'up') return this.pollNotUp(timeoutMs);
    if (getSys().tryPoll(this.pollfd, 1, timeoutMs) <= 0) return false; // EINTR: woke early
    if ((this.pollfd16[3]! & POLL_ERRORS) === 0) return true;
    return this.pollAfterError(timeoutMs);
  }

  /** As `poll`, on the libuv pool (the event loop keeps running). */
  async pollAsync(timeoutMs: number): Promise<boolean> {
    if (this.linkState === 'gone') {
      await getSys().pollAsync(this.noFds, 0, timeoutMs);
      return false;
    }
    if ((await getSys().pollAsync(this.pollfd, 1, timeoutMs)) <= 0) {
      if (this.linkState === 'down') this.checkLink();
      return false;
    }
    const revents = this.pollfd16[3]!;
    if ((revents & POLL_ERRORS) === 0) {
      this.linkState = 'up';
      return true;
    }
    this.clearError();
    if ((revents & POLLIN) !== 0) return true;
    // The error is cleared; wait out the timeout so callers looping on this never spin.
    await getSys().pollAsync(this.noFds, 0, timeoutMs);
    return false;
  }

  /**
   * Reads and clears the socket's pending error (SO_ERROR), counts it, and refreshes
   * `linkState`; returns the state. Call it when your own poll(2) reports POLLERR on `fd`.
   */
  clearError(): AfPacketLinkState {
    const sys = getSys();
    try {
      sys.getsockopt(this.fd, SOL_SOCKET, SO_ERROR, this.errBuf);
      const errno = this.errBuf[0]! | (this.errBuf[1]! << 8) | (this.errBuf[2]! << 16) | (this.errBuf[3]! << 24);
      if (errno !== 0) {
        this.counters.linkErrors++;
        this.lastLinkError = errnoName(errno);
      }
    } catch (err) {
      // EBADF and the like: the socket itself is unusable.
      this.counters.linkErrors++;
      this.lastLinkError = errnoCodeOf(err) ?? 'error';
    }
    return this.checkLink();
  }

  /**
   * Looks the interface up by index in the socket's namespace: `gone` when no interface has
   * that index any more (deleted or moved away), `down` when it is not administratively up,
   * else `up`. Two ioctls; not for the hot path. Once gone, always gone: the kernel unbound
   * the socket, so an interface that comes back (same name or not) needs a new socket.
   */
  checkLink(): AfPacketLinkState {
    if (this.linkState === 'gone' || this.closed) return this.linkState;
    const sys = getSys();
    const req = this.ifreq;
    req.fill(0);
    new DataView(req.buffer).setInt32(16, this.ifindex, true);
    try {
      sys.ioctl(this.fd, SIOCGIFNAME, req);
    } catch (err) {
      const code = errnoCodeOf(err);
      if (code === 'ENODEV' || code === 'ENXIO') this.linkState = 'gone';
      return this.linkState;
    }
    // ifr_name now holds the current name (it may have been renamed): ask for its flags.
    try {
      sys.ioctl(this.fd, SIOCGIFFLAGS, req);
    } catch (err) {
      const code = errnoCodeOf(err);
      if (code === 'ENODEV' || code === 'ENXIO') this.linkState = 'gone';
      return this.linkState;
    }
    this.linkState = (new DataView(req.buffer).getUint16(16, true) & IFF_UP) !== 0 ? 'up' : 'down';
    return this.linkState;
  }

  /** Whether the interface was deleted or moved to another namespace (the socket is dead). */
  get gone(): boolean {
    return this.linkState === 'gone';
  }

  /** poll() after poll(2) reported an error condition: clear it, then wait without spinning. */
  private pollAfterError(timeoutMs: number): boolean {
    const readable = (this.pollfd16[3]! & POLLIN) !== 0;
    this.clearError();
    if (readable) return true;
    return this.pollNotUp(timeoutMs);
  }

  /**
   * Link down or gone (or an error just cleared): wait up to `timeoutMs` for frames. A second
   * error within one call is cleared and the rest of the timeout slept, so even an error that
   * comes back at once cannot turn a caller's idle loop into a busy loop.
   */
  private pollNotUp(timeoutMs: number): boolean {
    const sys = getSys();
    if (this.linkState === 'gone') {
      sys.tryPoll(this.noFds, 0, timeoutMs);
      return false;
    }
    if (sys.tryPoll(this.pollfd, 1, timeoutMs) <= 0) {
      if (this.linkState === 'down') this.checkLink();
      return false;
    }
    const revents = this.pollfd16[3]!;
    if ((revents & POLL_ERRORS) === 0) {
      // Frames again: the link is back.
      this.linkState = 'up';
      return true;
    }
    this.clearError();
    if ((revents & POLLIN) !== 0) return true;
    sys.tryPoll(this.noFds, 0, timeoutMs);
    return false;
  }

  /** Whether the next block is ready without a syscall. */
  readable(): boolean {
    if (this.version === 2) return (Atomics.load(this.u32, (this.slot * this.slotSize + V2_STATUS) >>> 2) & TP_STATUS_USER) !== 0;
    if (this.inBlock) return true;
    return (Atomics.load(this.u32, (this.block * this.blockSize + BLK_STATUS) >>> 2) & TP_STATUS_USER) !== 0;
  }

  /**
   * Ring occupancy, for metrics (a scan of the block and slot status words: call it about once
   * a second, not per batch): RX blocks handed to user space and not yet returned, and TX slots
   * still owned by the kernel or waiting to be sent.
   */
  ringUsage(): { rxUsed: number; rxSize: number; txUsed: number; txSize: number } {
    let rxUsed = 0;
    if (this.version === 2) {
      for (let i = 0; i < this.slots; i++) {
        if ((Atomics.load(this.u32, (i * this.slotSize + V2_STATUS) >>> 2) & TP_STATUS_USER) !== 0) rxUsed++;
      }
      let txUsed2 = 0;
      for (let i = 0; i < this.txFrames; i++) {
        if (Atomics.load(this.u32, (this.txBase + i * this.txSlot + this.txStatusAt) >>> 2) !== TP_STATUS_AVAILABLE) txUsed2++;
      }
      return { rxUsed, rxSize: this.slots, txUsed: txUsed2, txSize: this.txFrames };
    }
    for (let b = 0; b < this.blockCount; b++) {
      if ((Atomics.load(this.u32, (b * this.blockSize + BLK_STATUS) >>> 2) & TP_STATUS_USER) !== 0) rxUsed++;
    }
    let txUsed = 0;
    for (let i = 0; i < this.txFrames; i++) {
      if (Atomics.load(this.u32, (this.txBase + i * this.txSlot + this.txStatusAt) >>> 2) !== TP_STATUS_AVAILABLE) txUsed++;
    }
    return { rxUsed, rxSize: this.blockCount, txUsed, txSize: this.txFrames };
  }

  /** PACKET_STATISTICS, accumulated (the kernel resets its counters on every read). */
  stats(): AfPacketStats {
    getSys().getsockopt(this.fd, SOL_PACKET, PACKET_STATISTICS, this.statsBuf);
    const dv = new DataView(this.statsBuf.buffer);
    this.totals.packets += dv.getUint32(0, true);
    this.totals.drops += dv.getUint32(4, true);
    this.totals.freezes += dv.getUint32(8, true);
    return { ...this.totals };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    const sys = getSys();
    sys.munmap(this.mapping);
    sys.close(this.fd);
  }
}

/** Size of the per-packet header the kernel puts before each frame (for sizing blocks). */
export const TPACKET3_HDR_SIZE = tpacket3HdrLayout.size;
