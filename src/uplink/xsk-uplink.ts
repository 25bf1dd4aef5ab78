/**
 * AF_XDP uplink: one XskSocket (src/uplink/xsk/socket.ts) behind the Uplink interface, registered
 * in the pinhole's XSKMAP under its queue index so the XDP program redirects that queue's tunnel
 * frames to it. Closing the socket removes it from the map (the kernel does that), after which
 * bpf_redirect_map falls back to XDP_PASS: an uplink going away never blackholes its queue.
 */
import { BpfMap } from '../kernel/map.ts';
import { alloc, getSys } from '../sys/index.ts';
import { openXsk, type XskOptions, type XskSocket } from './xsk/socket.ts';
import { batchBytes, copyFrame, zeroCounters, type Uplink, type UplinkCounters } from './types.ts';

const POLLIN = 1;

export interface XskUplinkOptions extends Omit<XskOptions, 'iface'> {
  ifname: string;
  batchSize?: number;
  /** fd of the pinhole's XSKMAP (process-wide, so a worker can use the main thread's fd). */
  xsksMapFd?: number;
}

export class XskUplink implements Uplink {
  readonly kind = 'afxdp' as const;
  readonly ifname: string;
  readonly queue: number;
  readonly batchSize: number;
  readonly mem: Uint8Array;
  readonly rxAddr: Float64Array;
  readonly rxLen: Uint32Array;
  rxBatchBytes = 0;
  readonly sock: XskSocket;
  private readonly rxBatch: { addr: Float64Array; len: Uint32Array };
  private readonly txBatch: { addr: Float64Array; len: Uint32Array };
  private readonly pollfd = alloc(8);
  private readonly c: UplinkCounters = zeroCounters();

  private constructor(sock: XskSocket, ifname: string, batchSize: number) {
    this.sock = sock;
    this.ifname = ifname;
    this.queue = sock.queue;
    this.batchSize = batchSize;
    this.mem = sock.umem;
    this.rxAddr = new Float64Array(batchSize);
    this.rxLen = new Uint32Array(batchSize);
    this.rxBatch = { addr: this.rxAddr, len: this.rxLen };
    this.txBatch = { addr: new Float64Array(batchSize), len: new Uint32Array(batchSize) };
    const dv = new DataView(this.pollfd.buffer);
    dv.setInt32(0, sock.fd, true);
    dv.setInt16(4, POLLIN, true);
  }

  static async open(opts: XskUplinkOptions): Promise<XskUplink> {
    const batchSize = opts.batchSize ?? 64;
    const sock = await openXsk({ ...opts, iface: opts.ifname });
    try {
      if (opts.xsksMapFd !== undefined) {
        // A BpfMap over the shared fd; never closed here (the pinhole owns the fd).
        const xsks = new BpfMap(opts.xsksMapFd, { name: 'ph_xsks', type: 'xskmap', keySize: 4, valueSize: 4, maxEntries: 1 });
        const key = alloc(4);
        const val = alloc(4);
        new DataView(key.buffer).setUint32(0, opts.queue, true);
        new DataView(val.buffer).setUint32(0, sock.fd, true);
        xsks.update(key, val);
      }
    } catch (err) {
      sock.close();
      throw err;
    }
    return new XskUplink(sock, opts.ifname, batchSize);
  }

  rx(max: number): number {
    const n = this.sock.rx(this.rxBatch, max < this.batchSize ? max : this.batchSize);
    const bytes = batchBytes(this.rxLen, n);
    this.rxBatchBytes = bytes;
    this.c.rxPackets += n;
    this.c.rxBytes += bytes;
    return n;
  }

  releaseRx(n: number): void {
    this.sock.releaseRx(this.rxBatch, n);
    // The kernel publishes fill-ring progress lazily: keep parked frames flowing back.
    if (this.sock.freeFrames > 0) this.sock.fill();
  }

  txCopy(src: Uint8Array, addr: Float64Array | Uint32Array, len: Uint32Array, n: number): number {
    const s = this.sock;
    const tb = this.txBatch;
    const got = s.allocTx(tb, n < this.batchSize ? n : this.batchSize);
    let bytes = 0;
    for (let i = 0; i < got; i++) {
      copyFrame(src, addr[i]!, this.mem, tb.addr[i]!, len[i]!);
      tb.len[i] = len[i]!;
      bytes += len[i]!;
    }
    const queued = s.tx(tb, got);
    if (queued < got) {
      // Ring full: hand the unqueued buffers back and count the frames as dropped.
      for (let i = queued; i < got; i++) tb.addr[i - queued] = tb.addr[i]!;
      s.releaseRx(tb, got - queued);
    }
    this.c.txPackets += queued;
    this.c.txBytes += bytes;
    this.c.txDropped += n - queued;
    return queued;
  }

  flush(): void {
    const s = this.sock;
    // Copy mode sends at most 32 frames per kick (net/xdp/xsk.c, then EAGAIN): kick until the
    // ring is drained, so a batch never waits for the next one. Bounded: a 64-frame batch needs
    // two kicks; a kick that makes no progress (device busy) ends the loop, the next flush
    // carries on.
    let pending = s.txRing.pending();
    for (let i = 0; i < 8 && pending > 0; i++) {
      if (!s.kick(i > 0)) break;
      const left = s.txRing.pending();
      if (left >= pending) break;
      pending = left;
    }
    s.completions();
  }

  wait(timeoutMs: number): boolean {
    if (this.sock.rxRing.available(1) > 0) return true;
    return getSys().poll(this.pollfd, 1, timeoutMs) > 0;
  }

  counters(): UplinkCounters {
    const s = this.sock.stats();
    return { ...this.c, kernelDrops: Number(s.rxDropped + s.rxRingFull + s.rxFillRingEmptyDescs) };
  }

  close(): void {
    this.sock.close();
  }
}
