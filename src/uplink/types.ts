/**
 * The Uplink interface: one RX/TX queue of the host's uplink, served by one worker thread.
 * Three implementations: AF_XDP (xsk-uplink.ts), AF_PACKET (afpacket-uplink.ts) and an
 * in-memory one for tests (memory-uplink.ts).
 *
 * Frames are never objects: an uplink owns preallocated arrays `rxAddr`/`rxLen` that `rx()`
 * fills with offsets into `mem` (the UMEM or the packet ring). The caller reads or forwards
 * `mem[rxAddr[i] .. rxAddr[i] + rxLen[i])`, then gives the frames back with `releaseRx(n)`.
 * Transmission copies from any memory into the uplink's own TX buffers (`txCopy`) and `flush()`
 * makes them go with at most one syscall per batch.
 */
export type UplinkKind = 'afxdp' | 'afpacket' | 'memory';

export interface UplinkCounters {
  rxPackets: number;
  rxBytes: number;
  txPackets: number;
  txBytes: number;
  /** Frames we could not queue for transmission (TX ring or device queue full). */
  txDropped: number;
  /** Frames the kernel dropped before we saw them (ring full, no fill buffers, ...). */
  kernelDrops: number;
}

export interface Uplink {
  readonly kind: UplinkKind;
  readonly ifname: string;
  readonly queue: number;
  /** Max frames per rx(). */
  readonly batchSize: number;
  /** The memory received frames live in. */
  readonly mem: Uint8Array;
  readonly rxAddr: Float64Array | Uint32Array;
  readonly rxLen: Uint32Array;
  /** Bytes of the frames the last rx() returned (summed once there, so callers need not loop). */
  readonly rxBatchBytes: number;
  /** Receives up to `max` (≤ batchSize) frames without blocking; returns how many. */
  rx(max: number): number;
  /** Gives the `n` frames of the last rx() back to the kernel. */
  releaseRx(n: number): void;
  /** Copies `n` frames from `src` into transmit buffers and queues them; returns how many were queued. */
  txCopy(src: Uint8Array, addr: Float64Array | Uint32Array, len: Uint32Array, n: number): number;
  /** Makes queued frames go and reclaims sent buffers (at most one syscall). */
  flush(): void;
  /** Blocks the calling (worker) thread until frames arrive or `timeoutMs` passes. */
  wait(timeoutMs: number): boolean;
  counters(): UplinkCounters;
  close(): void;
}

/** A view over a whole ArrayBuffer, cached for the last buffer seen (no allocation per frame). */
let wholeBuffer: ArrayBufferLike | undefined;
let wholeView: Uint8Array = new Uint8Array(0);

/**
 * Copies one frame between memories. When both live in one ArrayBuffer (e.g. two UMEMs carved
 * out of one mapping, see XskOptions.area) `copyWithin` on a view of the whole buffer moves the
 * bytes with no allocation. Across buffers `subarray` costs one small object per frame — the one
 * allocation left on a forwarding path, and only when RX and TX memory are separate mappings.
 */
export function copyFrame(src: Uint8Array, from: number, dst: Uint8Array, to: number, len: number): void {
  if (src.buffer === dst.buffer) {
    if (wholeBuffer !== src.buffer) {
      wholeBuffer = src.buffer;
      wholeView = new Uint8Array(src.buffer);
    }
    const s = src.byteOffset + from;
    wholeView.copyWithin(dst.byteOffset + to, s, s + len);
  } else {
    dst.set(src.subarray(from, from + len), to);
  }
}

/** Sum of the first `n` lengths: the bytes of a received batch (once per batch, in rx()). */
export function batchBytes(len: Uint32Array, n: number): number {
  let bytes = 0;
  for (let i = 0; i < n; i++) bytes += len[i]!;
  return bytes;
}

export function zeroCounters(): UplinkCounters {
  return { rxPackets: 0, rxBytes: 0, txPackets: 0, txBytes: 0, txDropped: 0, kernelDrops: 0 };
}
