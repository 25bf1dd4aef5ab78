/**
 * The dataplane loop of one queue, apart from the worker plumbing so it is unit-tested over
 * in-memory uplinks:
 *
 *   rx(batch) → count → [txCopy to `to` → flush] → releaseRx → (idle: flush `to`, poll ≤ 50 ms)
 *
 * Bounded work per iteration (one batch), no allocation, counters published once per batch into
 * the shared Float64Array (SLOT_* layout), stop flag read with Atomics once per iteration.
 */
import type { Uplink } from './types.ts';
import { CTRL_STOP, SLOT } from './worker-abi.ts';

/** Processes at most one batch; returns the number of frames received (0: idle). */
export function forwardBatch(up: Uplink, to: Uplink | undefined, c: Float64Array): number {
  const n = up.rx(up.batchSize);
  if (n === 0) return 0;
  const bytes = up.rxBatchBytes;
  if (to) {
    const q = to.txCopy(up.mem, up.rxAddr, up.rxLen, n);
    to.flush();
    c[SLOT.txPackets] += q;
    c[SLOT.txDropped] += n - q;
    if (q === n) c[SLOT.txBytes] += bytes;
  }
  up.releaseRx(n);
  c[SLOT.batches]++;
  c[SLOT.rxPackets] += n;
  c[SLOT.rxBytes] += bytes;
  return n;
}

/** Runs until the stop flag is raised. Blocks the calling (worker) thread between batches. */
export function runLoop(up: Uplink, to: Uplink | undefined, c: Float64Array, ctrl: Int32Array): void {
  while (Atomics.load(ctrl, CTRL_STOP) === 0) {
    if (forwardBatch(up, to, c) === 0) {
      // Idle: first let the transmit side finish anything still queued, then sleep in poll.
      if (to) to.flush();
      c[SLOT.idleWaits]++;
      up.wait(50);
    }
  }
}
