/**
 * The accept-all classic BPF socket filter, for AF_PACKET sockets on workload interfaces (the
 * host side of a pod's veth): every frame there belongs to the dataplane, so nothing is filtered.
 *
 * It exists because the AF_PACKET socket (uplink/afpacket/socket.ts) always attaches and locks a
 * filter before bind — the open order that guarantees no unfiltered frame is ever queued on the
 * uplink. A workload socket goes through the same code with this one-instruction program:
 *
 *   0: ret #0x40000        keep the whole frame (256 KiB: more than any frame or GSO packet)
 *
 * A cBPF filter's result is the number of bytes to keep, not a verdict: returning the frame
 * length would work too, but a constant larger than any frame is one instruction and is what
 * the pinhole filter returns for the frames it keeps.
 */
import { cbpf, type CbpfProgram } from './asm.ts';

/** Bytes an accepted frame keeps: larger than any frame, so frames are never truncated. */
export const ACCEPT_ALL_SNAP_LEN = 0x40000;

/** A socket filter that keeps every frame whole. */
export function compileAcceptAllFilter(): CbpfProgram {
  return cbpf().ret.k(ACCEPT_ALL_SNAP_LEN).assemble();
}
