/**
 * AF_PACKET port: an AfPacketSocket (TPACKET_V3 RX ring, PACKET_TX_RING) as a dataplane port.
 * Its ring mapping is one PacketMemory; received frames are descriptors into it and stay valid
 * until release(). Transmit copies each frame into a TX ring slot (PacketMemory.copy: word copy
 * across buffers, no allocation) and one sendto per batch sends them.
 *
 * Headroom: TPACKET_V3 places an Ethernet frame 82 bytes after its tpacket3_hdr (tp_mac =
 * TPACKET_ALIGN(68 + 16) - 14), and the header of a frame already handed to us is not read
 * again, so stages may write up to 82 bytes of encapsulation in front of a received frame.
 *
 * The uplink uses the pinhole policy as its socket filter; a workload port takes every frame
 * ('all'). A transmit-only port ('to' of a cross-connect) gets a drop-all filter, so the kernel
 * queues nothing for it.
 */
import { cbpf } from '../../bpf/cbpf/asm.ts';
import { compilePinholeFilter, PINHOLE_SNAP_LEN } from '../../bpf/cbpf/pinhole.ts';
import type { PinholeSpec } from '../../bpf/pinhole/policy.ts';
import { AfPacketSocket, RxBatch } from '../../uplink/afpacket/socket.ts';
import type { Link } from '../link.ts';
import type { PacketMemory } from '../memory.ts';
import { PC, type Port, type PortOptions } from '../port.ts';

export interface AfPacketPortOptions extends PortOptions {
  /** Receive filter: the pinhole policy, every frame, or nothing (transmit-only). */
  filter: PinholeSpec | 'all' | 'none';
  fanoutGroup?: number;
}

/** Bytes in front of a received frame that stages may overwrite (see the file comment). */
export const AFPACKET_HEADROOM = 82;

export class AfPacketPort implements Port {
  readonly name: string;
  readonly driver = 'afpacket' as const;
  readonly detail = 'TPACKET_V3 ring';
  readonly fd: number;
  readonly sock: AfPacketSocket;
  private readonly memId: number;
  private readonly rxb: RxBatch;
  private readonly txOff: Uint32Array;
  private readonly txMax: number;
  private readonly memory: PacketMemory;
  private c: Float64Array;
  private b: number;
  private lastErrors = 0;
  private readonly kdBase: number;

  constructor(o: AfPacketPortOptions) {
    this.name = o.name;
    const filter =
      o.filter === 'all'
        ? cbpf().ret.k(PINHOLE_SNAP_LEN).assemble()
        : o.filter === 'none'
          ? cbpf().ret.k(0).assemble()
          : compilePinholeFilter(o.filter);
    const open = { ifname: o.ifname, filter, txFrames: 512 };
    this.sock = AfPacketSocket.open(o.fanoutGroup === undefined ? open : { ...open, fanoutGroup: o.fanoutGroup });
    this.fd = this.sock.fd;
    this.memory = o.memory;
    try {
      this.memId = o.memory.register(this.sock.memory.buffer);
    } catch (err) {
      this.sock.close();
      throw err;
    }
    this.rxb = new RxBatch(o.batchSize);
    // Absolute offsets of each TX slot's data area, read once (no view per frame).
    this.txOff = new Uint32Array(this.sock.txFrames);
    for (let i = 0; i < this.sock.txFrames; i++) this.txOff[i] = this.sock.txData[i]!.byteOffset;
    this.txMax = this.sock.txFrames > 0 ? this.sock.txData[0]!.length : 0;
    this.c = o.counters;
    this.b = o.base;
    // A port reopened under the same name continues the counter it inherits (never backwards).
    this.kdBase = o.counters[o.base + PC.kernelDrops]!;
  }

  rx(out: Link, tag: number): number {
    const room = out.capacity - out.n;
    if (room < this.rxb.capacity) return 0; // never split a ring batch across breathes
    const n = this.sock.receive(this.rxb);
    const off = this.rxb.offset;
    const len = this.rxb.length;
    const id = this.memId;
    let bytes = 0;
    for (let i = 0; i < n; i++) {
      const l = len[i]!;
      bytes += l;
      out.push(id, off[i]!, l, tag);
    }
    this.c[this.b + PC.rxFrames] += n;
    this.c[this.b + PC.rxBytes] += bytes;
    return n;
  }

  release(): void {
    // Hand finished blocks back now rather than at the next receive().
    this.sock.release();
  }

  tx(input: Link): number {
    const sock = this.sock;
    const mem = this.memory;
    const id = this.memId;
    const n = input.n;
    let queued = 0;
    let bytes = 0;
    let tooBig = 0;
    for (let i = 0; i < n; i++) {
      const l = input.len[i]!;
      if (l > this.txMax) {
        tooBig++;
        continue;
      }
      const slot = sock.txAcquire();
      if (slot < 0) break; // ring full: the rest of the batch is dropped (counted below)
      mem.copy(input.mem[i]!, input.addr[i]!, id, this.txOff[slot]!, l);
      sock.txCommit(slot, l);
      bytes += l;
      queued++;
    }
    this.c[this.b + PC.txFrames] += queued;
    this.c[this.b + PC.txBytes] += bytes;
    this.c[this.b + PC.txDropped] += n - queued - tooBig;
    this.c[this.b + PC.txTooBig] += tooBig;
    return queued;
  }

  flush(): void {
    this.sock.txFlush();
    const e = this.sock.counters.txErrors;
    if (e !== this.lastErrors) {
      this.c[this.b + PC.errors] += e - this.lastErrors;
      this.lastErrors = e;
    }
  }

  readable(): boolean {
    return this.sock.readable();
  }

  pollError(): void {
    // Link down, a bind on a down link, the interface deleted: the kernel set sk_err, and poll
    // reports POLLERR until it is read. Reading it (SO_ERROR) keeps the engine from spinning.
    this.c[this.b + PC.errors]++;
    this.sock.clearError();
  }

  refreshStats(): void {
    // A link deleted while already down raises no socket error: look again while not up.
    if (this.sock.linkState !== 'up') this.sock.checkLink();
    if (this.sock.linkState === 'gone') return;
    this.c[this.b + PC.kernelDrops] = this.kdBase + this.sock.stats().drops;
    const r = this.sock.ringUsage();
    this.c[this.b + PC.rxRingUsed] = r.rxUsed;
    this.c[this.b + PC.rxRingSize] = r.rxSize;
    this.c[this.b + PC.txRingUsed] = r.txUsed;
    this.c[this.b + PC.txRingSize] = r.txSize;
  }

  setCounters(c: Float64Array, base: number): void {
    this.c = c;
    this.b = base;
  }

  close(): void {
    this.sock.close();
    this.memory.release(this.memId);
  }
}
