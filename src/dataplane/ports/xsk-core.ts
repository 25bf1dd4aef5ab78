/**
 * What the two AF_XDP ports have in common — with a UMEM of its own (ports/xsk.ts) and over a
 * shared UMEM (ports/xsk-shared.ts): receiving a batch from the RX ring into a link, kicking the
 * TX ring until it is drained, readiness, kernel statistics and the counter block. Each port owns
 * one XskCore and delegates to it (composition, not a base class: every call site here sees one
 * class, so the hot path stays monomorphic). Where frames come from and go back to (the socket's
 * free stack, or the worker's frame pool) stays in the ports.
 */
import { kernelDropsOf, type XskSocket } from '../../uplink/xsk/socket.ts';
import type { Link } from '../link.ts';
import { PC, type PortOptions } from '../port.ts';

export class XskCore {
  readonly sock: XskSocket;
  /** The memory id descriptors of this port carry (PacketMemory). */
  readonly memId: number;
  /** Frames per rx() at most. */
  readonly batch: number;
  /** The last rx() batch (UMEM addresses, lengths): the port's until its release(). */
  readonly rxb: { addr: Uint32Array; len: Uint32Array };
  rxN = 0;
  /** Set when the device refused a TX kick for good: nothing more is sent or received. */
  dead = false;
  /** The worker's counters and this port's PORT_COUNTERS block. */
  c: Float64Array;
  b: number;
  /** kernelDrops when the port opened: a port reopened under the same name continues its counter. */
  private readonly kdBase: number;

  constructor(sock: XskSocket, memId: number, o: PortOptions) {
    this.sock = sock;
    this.memId = memId;
    this.batch = o.batchSize;
    this.rxb = { addr: new Uint32Array(o.batchSize), len: new Uint32Array(o.batchSize) };
    this.c = o.counters;
    this.b = o.base;
    this.kdBase = o.counters[o.base + PC.kernelDrops]!;
  }

  /**
   * One receive per breathe: up to a batch (and the link's room) from the RX ring into `out`,
   * each descriptor at `off` + its UMEM address; the frames stay the port's until release().
   */
  rx(out: Link, tag: number, off: number): number {
    if (this.rxN > 0 || this.dead) return 0;
    let max = out.capacity - out.n;
    if (max > this.batch) max = this.batch;
    if (max <= 0) return 0;
    const n = this.sock.rx(this.rxb, max);
    const addr = this.rxb.addr;
    const len = this.rxb.len;
    const id = this.memId;
    let bytes = 0;
    for (let i = 0; i < n; i++) {
      const l = len[i]!;
      bytes += l;
      out.push(id, off + addr[i]!, l, tag);
    }
    this.rxN = n;
    this.c[this.b + PC.rxFrames] += n;
    this.c[this.b + PC.rxBytes] += bytes;
    return n;
  }

  /**
   * Kicks the TX ring until it is drained. Copy mode sends at most a budget of frames per kick
   * (32 before Linux 6.17, net/xdp/xsk.c, then EAGAIN), so a batch never waits for the next one.
   * Bounded; a kick that makes no progress (device busy) ends the loop and the next flush carries
   * on. A kick the device refused for good (ENXIO: deleted) is counted and the port stops: the
   * main thread sees the link go and takes the port out of the plan.
   */
  kick(): void {
    const s = this.sock;
    let pending = s.txRing.pending();
    for (let i = 0; i < 8 && pending > 0; i++) {
      if (!s.kick(i > 0)) break;
      const left = s.txRing.pending();
      if (left >= pending) break;
      pending = left;
    }
    if (s.kickErrno !== 0) {
      this.c[this.b + PC.errors]++;
      s.kickErrno = 0;
      this.dead = true;
    }
  }

  readable(): boolean {
    return this.sock.rxRing.available(1) > 0;
  }

  pollError(): void {
    this.c[this.b + PC.errors]++;
  }

  /** Kernel drops (kernelDropsOf) and ring levels; once a second, off the hot path. */
  refreshStats(): void {
    const s = this.sock;
    this.c[this.b + PC.kernelDrops] = this.kdBase + Number(kernelDropsOf(s.stats()));
    this.c[this.b + PC.rxRingUsed] = s.rxRing.available(s.rxRing.size);
    this.c[this.b + PC.rxRingSize] = s.rxRing.size;
    this.c[this.b + PC.txRingUsed] = s.txRing.pending();
    this.c[this.b + PC.txRingSize] = s.txRing.size;
  }

  setCounters(c: Float64Array, base: number): void {
    this.c = c;
    this.b = base;
  }
}
