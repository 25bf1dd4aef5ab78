/**
 * Dataplane worker thread: serves one queue of the uplink. It opens its uplink itself (sockets
 * and rings belong to the thread that drives them), optionally a transmit uplink on another
 * interface (`to`, an L2 cross-connect), then runs a bounded batch loop until the main thread
 * raises the stop flag:
 *
 *   rx(batch) → count → [txCopy to `to` → flush] → releaseRx → (idle: poll ≤ 50 ms)
 *
 * Counters live in a SharedArrayBuffer the main thread reads at any time (Float64 slots, see
 * SLOT_*); the loop publishes them once per batch. Control is two Int32 slots (stop, state) used
 * with Atomics, so the main thread never waits on a message the loop cannot answer.
 */
import { parentPort, workerData } from 'node:worker_threads';
import '../sys/index.ts';
import { AfPacketUplink } from './afpacket-uplink.ts';
import type { Uplink } from './types.ts';
import { CTRL_STOP, SLOT, type WorkerConfig, type WorkerMessage } from './worker-abi.ts';
import { XskUplink } from './xsk-uplink.ts';

async function openUplink(cfg: WorkerConfig, ifname: string, queue: number, rx: boolean): Promise<Uplink> {
  if (cfg.kind === 'afxdp') {
    const o = { ifname, queue, batchSize: cfg.batchSize };
    return XskUplink.open(rx && cfg.xsksMapFd !== undefined ? { ...o, xsksMapFd: cfg.xsksMapFd } : o);
  }
  const o = { ifname, queue, spec: rx ? cfg.spec : { ports: [], addresses: [] }, batchSize: cfg.batchSize };
  return new AfPacketUplink(cfg.fanoutGroup !== undefined && rx ? { ...o, fanoutGroup: cfg.fanoutGroup } : o);
}

function loop(up: Uplink, to: Uplink | undefined, c: Float64Array, ctrl: Int32Array): void {
  const max = up.batchSize;
  const addr = up.rxAddr;
  const len = up.rxLen;
  const mem = up.mem;
  while (Atomics.load(ctrl, CTRL_STOP) === 0) {
    const n = up.rx(max);
    if (n === 0) {
      // Idle: first let the transmit side finish anything still queued, then sleep in poll.
      if (to) to.flush();
      c[SLOT.idleWaits]++;
      up.wait(50);
      continue;
    }
    let bytes = 0;
    for (let i = 0; i < n; i++) bytes += len[i]!;
    if (to) {
      const q = to.txCopy(mem, addr, len, n);
      to.flush();
      c[SLOT.txPackets] += q;
      c[SLOT.txDropped] += n - q;
      if (q === n) c[SLOT.txBytes] += bytes;
    }
    up.releaseRx(n);
    c[SLOT.batches]++;
    c[SLOT.rxPackets] += n;
    c[SLOT.rxBytes] += bytes;
  }
}

async function main(): Promise<void> {
  const cfg = workerData as WorkerConfig;
  const c = new Float64Array(cfg.counters);
  const ctrl = new Int32Array(cfg.control);
  let up: Uplink | undefined;
  let to: Uplink | undefined;
  try {
    up = await openUplink(cfg, cfg.ifname, cfg.queue, true);
    if (cfg.to) to = await openUplink(cfg, cfg.to, cfg.queue, false);
  } catch (err) {
    up?.close();
    const e = err as { code?: string; message: string };
    parentPort!.postMessage({
      type: 'error',
      queue: cfg.queue,
      code: e.code ?? 'ERR_UPLINK_OPEN',
      message: e.message,
    } satisfies WorkerMessage);
    return;
  }
  const detail = up instanceof XskUplink ? `${up.sock.mode} mode` : 'TPACKET_V3 ring';
  parentPort!.postMessage({ type: 'ready', queue: cfg.queue, kind: up.kind, detail } satisfies WorkerMessage);
  try {
    loop(up, to, c, ctrl);
  } catch (err) {
    // Reported to the main thread, which treats a queue losing its socket as fatal.
    const e = err as { code?: string; message: string };
    parentPort!.postMessage({
      type: 'error',
      queue: cfg.queue,
      code: e.code ?? 'ERR_UPLINK_WORKER',
      message: e.message,
    } satisfies WorkerMessage);
  } finally {
    c[SLOT.kernelDrops] = up.counters().kernelDrops;
    to?.close();
    up.close();
    parentPort!.postMessage({ type: 'stopped', queue: cfg.queue } satisfies WorkerMessage);
  }
}

await main();
