/**
 * A port: one queue of one interface, as the dataplane sees it — the uplink, a workload
 * interface, or (tests, benchmarks) the out side of a cross-connect. Receive and transmit are
 * both optional uses of one object, over descriptors in the worker's PacketMemory:
 *
 *   rx(out)     pushes up to out.capacity received frames into a link; the frames stay the
 *               port's until release(), which the engine calls at the end of the breathe
 *   tx(input)   copies every frame of a link into the port's own transmit buffers (the one copy
 *               on a forwarding path) and queues it; frames that do not fit are counted drops
 *   flush()     makes queued frames go (at most one syscall per batch) and reclaims sent buffers
 *
 * Counters are the PORT_COUNTERS block of the plan's layout, written in place (see counters.ts).
 */
import type { Link } from './link.ts';
import type { PacketMemory } from './memory.ts';

export interface Port {
  readonly name: string;
  readonly driver: 'afxdp' | 'afpacket' | 'memory';
  /** What the port got from the kernel (e.g. 'copy mode', 'TPACKET_V3 ring'). */
  readonly detail: string;
  /** The file descriptor to poll for received frames, or -1. */
  readonly fd: number;
  /** Receives up to `out.capacity - out.n` frames into `out`, each tagged with `tag`. */
  rx(out: Link, tag: number): number;
  /** Returns the frames of the last rx() to the kernel. */
  release(): void;
  /** Queues the frames of `input` for transmission (copied); returns how many were queued. */
  tx(input: Link): number;
  flush(): void;
  /** Frames waiting to be read without a syscall. */
  readable(): boolean;
  /** Called when poll() reported an error condition on `fd` (clears it; counts it). */
  pollError(): void;
  /** Refreshes counters that need a syscall (kernel drop statistics). Not per batch. */
  refreshStats(): void;
  /** Moves the port's counters to another block (the worker's plan changed: new layout). */
  setCounters(c: Float64Array, base: number): void;
  close(): void;
  /**
   * Ports that split GSO super-frames (offload AF_PACKET ports) leave the segments' L4 checksums
   * pending (Link.csum) while this is true: the graph sets it for a port that feeds the VXLAN
   * encapsulation, whose uplink has the kernel compute them, and clears it for one that feeds
   * WireGuard. Other ports ignore it.
   */
  pendingChecksums?: boolean;
  /**
   * Offload AF_PACKET ports build GSO trains from super-frames (Link.gso) while this is true: the
   * graph sets it for a port that feeds the VXLAN encapsulation through an uplink that sends
   * trains (`sendsTrains`, ports/train.ts). Other ports ignore it.
   */
  trains?: boolean;
  /** An uplink that sends GSO trains (ports/train.ts). */
  readonly sendsTrains?: boolean;
}

/** What every port is opened with, whatever its driver. */
export interface PortOptions {
  /** Unique in the worker; its counters are the `port:<name>` block. */
  name: string;
  ifname: string;
  memory: PacketMemory;
  batchSize: number;
  /** The worker's counters and the slot of this port's PORT_COUNTERS block. */
  counters: Float64Array;
  base: number;
}

/**
 * Largest untagged frame a port sends on an interface of `mtu`: 4 bytes more are allowed for a
 * frame with an 802.1Q tag (PacketMemory.overMtu), as the kernel allows an AF_PACKET sender; no
 * limit without an MTU. The kernel does not check what an AF_XDP socket sends (a veth peer drops
 * an oversized frame without a trace), and refuses an oversized AF_PACKET frame in the TX ring
 * (TP_STATUS_WRONG_FORMAT): both count it as `tx_too_big` instead.
 */
export const mtuFrameMax = (mtu: number | undefined): number => (mtu === undefined ? 0x7fffffff : mtu + 14);

/**
 * Most frames one GSO super-frame from a workload may split into (an MSS of 256 bytes or more at
 * 64 KiB); more is a counted drop. Links out of workload ports leave room for one such split.
 */
export const MAX_GSO_SEGMENTS = 256;

/** Slot offsets inside a port's PORT_COUNTERS block (plan.ts); a unit test holds them together. */
export const PC = {
  rxFrames: 0,
  rxBytes: 1,
  txFrames: 2,
  txBytes: 3,
  txDropped: 4,
  txTooBig: 5,
  kernelDrops: 6,
  errors: 7,
  rxRingUsed: 8,
  rxRingSize: 9,
  txRingUsed: 10,
  txRingSize: 11,
  /** GSO super-frames received and split into MTU-sized frames (offload ports). */
  rxGsoFrames: 12,
  /** Received frames whose offload metadata could not be honoured (counted drops). */
  rxOffloadDrops: 13,
  /** AF_XDP: frames transmitted by copying them into one of the port's UMEM frames (the rest went by descriptor). */
  txCopies: 14,
  /** AF_XDP, shared UMEM: times the worker's frame pool could not refill the fill ring or give a frame to copy into. */
  poolEmpty: 15,
  /** AF_XDP: frames whose pending L4 checksum (Link.csum) the kernel computed from TX metadata. */
  txCsumOffload: 16,
  /** Frames taken ahead of others waiting in the receive ring (flow queueing: offload AF_PACKET ports, AF_XDP ports of tunnel graphs). */
  rxSparseFirst: 17,
  /** Offload AF_PACKET ports: GSO trains built from super-frames (each one skb for the kernel). */
  rxGsoTrains: 18,
  /** Uplinks: GSO trains sent (their packets are in tx_frames). */
  txGsoTrains: 19,
} as const;
