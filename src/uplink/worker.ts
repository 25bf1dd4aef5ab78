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
import { getSys, type Mapping } from '../sys/index.ts';
import { AfPacketUplink } from './afpacket-uplink.ts';
import type { Uplink } from './types.ts';
import { SLOT, type WorkerConfig, type WorkerMessage } from './worker-abi.ts';
import { runLoop } from './forward.ts';
import { XskUplink } from './xsk-uplink.ts';

const FRAME_SIZE = 4096;
const FRAME_COUNT = 4096;
const UMEM_BYTES = FRAME_SIZE * FRAME_COUNT;
const PROT_RW = 3;
const MAP_PRIVATE = 0x02;
const MAP_ANONYMOUS = 0x20;

async function openUplink(
  cfg: WorkerConfig,
  ifname: string,
  queue: number,
  rx: boolean,
  area?: { mapping: Mapping; offset: number },
): Promise<Uplink> {
  if (cfg.kind === 'afxdp') {
    const o = {
      ifname,
      queue,
      batchSize: cfg.batchSize,
      frameSize: FRAME_SIZE as 4096,
      frameCount: FRAME_COUNT,
      ...(area ? { area } : {}),
    };
    return XskUplink.open(rx && cfg.xsksMapFd !== undefined ? { ...o, xsksMapFd: cfg.xsksMapFd } : o);
  }
  const o = { ifname, queue, spec: rx ? cfg.spec : { ports: [], addresses: [] }, batchSize: cfg.batchSize };
  return new AfPacketUplink(cfg.fanoutGroup !== undefined && rx ? { ...o, fanoutGroup: cfg.fanoutGroup } : o);
}

async function main(): Promise<void> {
  const cfg = workerData as WorkerConfig;
  const c = new Float64Array(cfg.counters);
  const ctrl = new Int32Array(cfg.control);
  let up: Uplink | undefined;
  let to: Uplink | undefined;
  // AF_XDP cross-connect: both UMEMs in one mapping, so frames move with copyWithin.
  let area: Mapping | undefined;
  try {
    if (cfg.kind === 'afxdp' && cfg.to) area = getSys().mmap(2 * UMEM_BYTES, PROT_RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    up = await openUplink(cfg, cfg.ifname, cfg.queue, true, area ? { mapping: area, offset: 0 } : undefined);
    if (cfg.to) to = await openUplink(cfg, cfg.to, cfg.queue, false, area ? { mapping: area, offset: UMEM_BYTES } : undefined);
  } catch (err) {
    up?.close();
    if (area) getSys().munmap(area);
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
    runLoop(up, to, c, ctrl);
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
    try {
      c[SLOT.kernelDrops] = up.counters().kernelDrops;
    } catch {
      // statistics are best effort; closing is not
    }
    to?.close();
    up.close();
    if (area) getSys().munmap(area);
    parentPort!.postMessage({ type: 'stopped', queue: cfg.queue } satisfies WorkerMessage);
  }
}

await main();
