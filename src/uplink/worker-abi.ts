/**
 * What the main thread and a dataplane worker share: the worker's configuration, its messages,
 * and the layout of its SharedArrayBuffer counters and control slots. (A module of its own so
 * the main thread can import it without running the worker's entry point.)
 */
import type { PinholeSpec } from '../bpf/pinhole/policy.ts';
import type { UplinkKind } from './types.ts';

export const SLOT = { rxPackets: 0, rxBytes: 1, txPackets: 2, txBytes: 3, txDropped: 4, kernelDrops: 5, batches: 6, idleWaits: 7 } as const;
export const SLOTS = 8;
/** Int32 control slots: [0] stop flag (main → worker). */
export const CTRL_STOP = 0;

export interface WorkerConfig {
  kind: Exclude<UplinkKind, 'memory'>;
  ifname: string;
  queue: number;
  spec: PinholeSpec;
  xsksMapFd?: number;
  fanoutGroup?: number;
  to?: string;
  batchSize: number;
  counters: SharedArrayBuffer;
  control: SharedArrayBuffer;
}

export type WorkerMessage =
  | { type: 'ready'; queue: number; kind: UplinkKind; detail: string }
  | { type: 'error'; queue: number; code: string; message: string }
  | { type: 'stopped'; queue: number };
