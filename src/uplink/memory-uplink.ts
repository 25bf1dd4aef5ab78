/**
 * An in-memory uplink for unit tests of everything above the uplinks: frames injected with
 * `inject()` are received, transmitted frames are collected in `sent`. Same contract as the real
 * ones (preallocated arrays, bounded batches, counted drops when the RX queue is full).
 */
import { copyFrame, zeroCounters, type Uplink, type UplinkCounters } from './types.ts';

export class MemoryUplink implements Uplink {
  readonly kind = 'memory' as const;
  readonly ifname: string;
  readonly queue: number;
  readonly batchSize: number;
  readonly mem: Uint8Array;
  readonly rxAddr: Float64Array;
  readonly rxLen: Uint32Array;
  rxBatchBytes = 0;
  /** Copies of transmitted frames, in order. */
  readonly sent: Uint8Array[] = [];
  private readonly slots: number;
  private readonly slotSize: number;
  private readonly pendingLen: Uint32Array;
  private head = 0;
  private tail = 0;
  private readonly c: UplinkCounters = zeroCounters();

  constructor(opts: { ifname?: string; queue?: number; batchSize?: number; slots?: number; slotSize?: number } = {}) {
    this.ifname = opts.ifname ?? 'mem0';
    this.queue = opts.queue ?? 0;
    this.batchSize = opts.batchSize ?? 64;
    this.slots = opts.slots ?? 256;
    this.slotSize = opts.slotSize ?? 2048;
    this.mem = new Uint8Array(this.slots * this.slotSize);
    this.pendingLen = new Uint32Array(this.slots);
    this.rxAddr = new Float64Array(this.batchSize);
    this.rxLen = new Uint32Array(this.batchSize);
  }

  /** Queues a frame for reception; false (and a counted kernel drop) when the queue is full. */
  inject(frame: Uint8Array): boolean {
    if (this.tail - this.head === this.slots || frame.length > this.slotSize) {
      this.c.kernelDrops++;
      return false;
    }
    const slot = this.tail % this.slots;
    this.mem.set(frame, slot * this.slotSize);
    this.pendingLen[slot] = frame.length;
    this.tail++;
    return true;
  }

  rx(max: number): number {
    let n = 0;
    let bytes = 0;
    const lim = max < this.batchSize ? max : this.batchSize;
    while (n < lim && this.head + n < this.tail) {
      const slot = (this.head + n) % this.slots;
      this.rxAddr[n] = slot * this.slotSize;
      this.rxLen[n] = this.pendingLen[slot]!;
      bytes += this.pendingLen[slot]!;
      n++;
    }
    this.rxBatchBytes = bytes;
    this.c.rxPackets += n;
    this.c.rxBytes += bytes;
    return n;
  }

  releaseRx(n: number): void {
    this.head += n;
  }

  txCopy(src: Uint8Array, addr: Float64Array | Uint32Array, len: Uint32Array, n: number): number {
    for (let i = 0; i < n; i++) {
      const out = new Uint8Array(len[i]!);
      copyFrame(src, addr[i]!, out, 0, len[i]!);
      this.sent.push(out);
      this.c.txBytes += len[i]!;
    }
    this.c.txPackets += n;
    return n;
  }

  flush(): void {}

  wait(): boolean {
    return this.tail > this.head;
  }

  counters(): UplinkCounters {
    return { ...this.c };
  }

  close(): void {}
}
