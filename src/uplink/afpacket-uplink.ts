/**
 * AF_PACKET uplink: an AfPacketSocket (TPACKET_V3 RX ring, the pinhole policy as a locked classic
 * BPF filter, fanout across workers, a PACKET_TX_RING sent with one sendto per batch) behind the
 * Uplink interface.
 *
 * VLAN: on receive the kernel moves the outer 802.1Q tag into packet metadata, so frames in the
 * ring are untagged (see src/bpf/cbpf/pinhole.ts for how the filter treats tags).
 */
import { compilePinholeFilter } from '../bpf/cbpf/pinhole.ts';
import type { PinholeSpec } from '../bpf/pinhole/policy.ts';
import { AfPacketSocket, RxBatch } from './afpacket/socket.ts';
import { batchBytes, copyFrame, zeroCounters, type Uplink, type UplinkCounters } from './types.ts';

export interface AfPacketUplinkOptions {
  ifname: string;
  queue: number;
  spec: PinholeSpec;
  batchSize?: number;
  /** Set when several workers share the interface: one fanout group id for all of them. */
  fanoutGroup?: number;
}

export class AfPacketUplink implements Uplink {
  readonly kind = 'afpacket' as const;
  readonly ifname: string;
  readonly queue: number;
  readonly batchSize: number;
  readonly mem: Uint8Array;
  readonly rxAddr: Uint32Array;
  readonly rxLen: Uint32Array;
  rxBatchBytes = 0;
  readonly sock: AfPacketSocket;
  private readonly rxb: RxBatch;
  private readonly c: UplinkCounters = zeroCounters();

  constructor(opts: AfPacketUplinkOptions) {
    this.ifname = opts.ifname;
    this.queue = opts.queue;
    this.batchSize = opts.batchSize ?? 64;
    const open = { ifname: opts.ifname, filter: compilePinholeFilter(opts.spec), txFrames: 512 };
    this.sock = AfPacketSocket.open(opts.fanoutGroup === undefined ? open : { ...open, fanoutGroup: opts.fanoutGroup });
    this.mem = this.sock.memory;
    this.rxb = new RxBatch(this.batchSize);
    this.rxAddr = this.rxb.offset;
    this.rxLen = this.rxb.length;
  }

  rx(max: number): number {
    // receive() fills up to capacity; the batch is sized to batchSize so `max` bounds are kept
    // by callers passing batchSize (the common case).
    const n = this.sock.receive(this.rxb);
    void max;
    const bytes = batchBytes(this.rxLen, n);
    this.rxBatchBytes = bytes;
    this.c.rxPackets += n;
    this.c.rxBytes += bytes;
    return n;
  }

  releaseRx(): void {
    // Hand finished ring blocks back now rather than at the next receive(): a small ring would
    // otherwise stay short of free blocks while we wait.
    this.sock.release();
  }

  txCopy(src: Uint8Array, addr: Float64Array | Uint32Array, len: Uint32Array, n: number): number {
    // Frames are written in place into the PACKET_TX_RING; one sendto at flush() sends them all.
    const sock = this.sock;
    const data = sock.txData;
    let queued = 0;
    let bytes = 0;
    for (let i = 0; i < n; i++) {
      const l = len[i]!;
      const slot = sock.txAcquire();
      if (slot < 0) break; // ring full: the rest of the batch is dropped (counted below)
      const dst = data[slot]!;
      // A frame larger than a slot is dropped and counted, never sent truncated.
      if (l > dst.length) continue;
      copyFrame(src, addr[i]!, dst, 0, l);
      sock.txCommit(slot, l);
      bytes += l;
      queued++;
    }
    this.c.txPackets += queued;
    this.c.txBytes += bytes;
    this.c.txDropped += n - queued;
    return queued;
  }

  flush(): void {
    this.sock.txFlush();
  }

  wait(timeoutMs: number): boolean {
    if (this.sock.readable()) return true;
    return this.sock.poll(timeoutMs);
  }

  counters(): UplinkCounters {
    const s = this.sock.stats();
    return { ...this.c, kernelDrops: s.drops };
  }

  close(): void {
    this.sock.close();
  }
}
