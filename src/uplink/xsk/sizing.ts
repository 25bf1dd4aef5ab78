/**
 * AF_XDP ring and UMEM sizes for a port: what the CLI (`--ring-size`), the config file
 * (`uplink.rings`) and the worker plans agree on. Pure: no I/O.
 *
 *   rx    kernel → us   received descriptors waiting for the worker     = fill
 *   fill  us → kernel   empty frames the kernel receives into            = rx
 *   tx    us → kernel   frames queued for sending
 *   comp  kernel → us   sent frames coming back                          = tx
 *
 * A burst is absorbed by the RX ring only if the fill ring held as many empty frames when it
 * arrived, so fill follows rx; completions can never outnumber what was queued, so comp
 * follows tx. The UMEM holds a full fill ring plus a full TX ring: frameCount is the next power
 * of two ≥ fill + tx (4096 frames of 4 KiB for 2048 + 2048).
 *
 * Why the RX default is deeper than libbpf's 2048: on veth a traffic generator sends in short
 * multi-Mpps bursts, and a 2048-entry RX ring overflows in every one of them while AF_PACKET's
 * 4 MiB ring (~26k frames) absorbs them (design.md §4). The default was chosen by measurement
 * (`pinhole bench --only uplink --ring-size N`, RX 2048..16384, 6 runs each; README, performance):
 * 8192 took the bursty 64-byte cross-connect from 0.42 to ~0.6 Mpps with steady rates unchanged;
 * 16384 reached 0.89 but halved 1500-byte receive (a 64 MiB fill-ring working set per queue, in
 * 4 KiB frames then, misses the cache; C the same) and doubles the memory. Memory is the price:
 * 2 KiB per frame at MTUs up to 1770, 4 KiB above (xskFrameSize), pinned — 32 or 64 MiB per queue
 * by default.
 */
import { PinholeError } from '../../sys/index.ts';
import { XDP_PACKET_HEADROOM } from './abi.ts';

export interface XskRings {
  rx: number;
  tx: number;
  fill: number;
  comp: number;
}

/** Smallest and largest ring size accepted from users (the kernel only asks for a power of two). */
export const XSK_RING_MIN = 64;
export const XSK_RING_MAX = 32768;

/** The uplink's RX (and fill) ring by default: chosen by measurement (file comment). */
export const XSK_DEFAULT_RX_RING = 8192;
/** The TX (and completion) ring by default. */
export const XSK_DEFAULT_TX_RING = 2048;

/** Bytes per UMEM frame of a dataplane port at most (ports/xsk.ts XSK_FRAME_SIZE): one page. */
export const XSK_UMEM_FRAME = 4096;
/** The smaller UMEM frame, for MTUs up to XSK_SMALL_FRAME_MAX_MTU. */
export const XSK_SMALL_FRAME = 2048;
/**
 * What a UMEM frame holds besides the MTU: XDP_PACKET_HEADROOM in front, the Ethernet header, an
 * 802.1Q tag, and the 4-byte FCS some zero-copy drivers count in the frame they need (mlx5: MTU +
 * 22 bytes behind the headroom).
 */
const XSK_FRAME_OVERHEAD = XDP_PACKET_HEADROOM + 14 + 4 + 4;
/** Largest MTU a UMEM frame of `frameSize` bytes serves: 3818 for 4 KiB, 1770 for 2 KiB. */
export const xskMaxMtu = (frameSize: number): number => frameSize - XSK_FRAME_OVERHEAD;
/** Largest MTU a 2 KiB frame serves (xskMaxMtu). */
export const XSK_SMALL_FRAME_MAX_MTU = xskMaxMtu(XSK_SMALL_FRAME);

/**
 * UMEM frame size for AF_XDP ports of these MTUs (one shared UMEM has one chunk size): 2 KiB when
 * every one fits it (1500 and the like), else 4 KiB; 4 KiB when an MTU is unknown. Half the pinned
 * memory of a deep ring, and faster: bench/xsk-umem.ts --compare frame (cross-connect, 5
 * alternated runs) 64 B steady and bursty 1.04×, 1500 B 1.11×, CPU per packet 0.90–0.99× (README,
 * performance): the fill ring cycles through half the memory.
 */
export function xskFrameSize(mtus: readonly (number | undefined)[]): 2048 | 4096 {
  return mtus.length > 0 && mtus.every((m) => m !== undefined && m <= XSK_SMALL_FRAME_MAX_MTU) ? XSK_SMALL_FRAME : XSK_UMEM_FRAME;
}

/** Whether `n` is a ring size users may ask for: a power of two in XSK_RING_MIN..XSK_RING_MAX. */
export function isRingSize(n: number): boolean {
  return Number.isInteger(n) && n >= XSK_RING_MIN && n <= XSK_RING_MAX && (n & (n - 1)) === 0;
}

/** Why `n` is not a ring size (for messages), or undefined. */
export function ringSizeProblem(n: number): string | undefined {
  return isRingSize(n) ? undefined : `must be a power of two ${XSK_RING_MIN}..${XSK_RING_MAX}`;
}

/**
 * The four ring sizes of a receiving port from the two a user chooses (defaults where absent).
 * Throws ERR_XSK_CONFIG for a size that is not a power of two in range.
 */
export function xskRings(o: { rx?: number | undefined; tx?: number | undefined } = {}): XskRings {
  const rx = o.rx ?? XSK_DEFAULT_RX_RING;
  const tx = o.tx ?? XSK_DEFAULT_TX_RING;
  for (const [what, n] of [
    ['rx', rx],
    ['tx', tx],
  ] as const) {
    const problem = ringSizeProblem(n);
    if (problem) throw new PinholeError('ERR_XSK_CONFIG', `${what} ring size ${problem}, got ${n}`);
  }
  return { rx, tx, fill: rx, comp: tx };
}

/**
 * The rings of a port that only transmits (never in an XSKMAP): the smallest RX and fill
 * rings (the kernel wants a fill ring on every UMEM), `tx` for sending.
 */
export function txOnlyRings(tx: number = XSK_DEFAULT_TX_RING): XskRings {
  return xskRings({ rx: XSK_RING_MIN, tx });
}

/** UMEM frames for `rings`: the next power of two ≥ fill + tx. */
export function umemFrames(rings: XskRings): number {
  const need = rings.fill + rings.tx;
  let n = 1;
  while (n < need) n *= 2;
  return n;
}

/** UMEM bytes of one port with `rings` (4 KiB frames unless told). */
export function umemBytes(rings: XskRings, frameSize: number = XSK_UMEM_FRAME): number {
  return umemFrames(rings) * frameSize;
}
