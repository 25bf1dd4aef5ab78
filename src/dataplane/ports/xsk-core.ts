/**
 * What the two AF_XDP ports have in common — with a UMEM of its own (ports/xsk.ts) and over a
 * shared UMEM (ports/xsk-shared.ts): receiving a batch from the RX ring into a link, kicking the
 * TX ring until it is drained, readiness, kernel statistics and the counter block. Each port owns
 * one XskCore and delegates to it (composition, not a base class: every call site here sees one
 * class, so the hot path stays monomorphic). Where frames come from and go back to (the socket's
 * free stack, or the worker's frame pool) stays in the ports.
 *
 * Flow queueing (`flowQueueing`: the ports of tunnel graphs, worker.ts): a pod's bulk TCP keeps
 * hundreds of MTU-sized frames waiting in the RX ring of its workload port (measured under iperf3:
 * 200–1,200 entries, a ping behind them waiting 1–5 ms), a download as many in the uplink's, and
 * the ring is FIFO. But its entries are an array the kernel does not touch between our consumer
 * index and its producer index, so they can be read ahead without being consumed. When more is
 * waiting than one breath takes, rx() first looks at the entries it has not looked at before
 * (each frame's flow hashed once, into one of FQ_BUCKETS buckets; on the uplink the outer headers,
 * whose UDP source port a VXLAN sender derives from the inner flow) and takes ahead every frame
 * whose flow has nothing left waiting in the ring before it and has not had a frame taken ahead
 * in this breath — fq_codel's new-flow queue — then reads the ring in order, passing over the
 * entries taken ahead:
 *
 *   RX ring:  cons ─► │ A │ A │ A │ … │ A │ P │ A │ A │ ◄─ prod     A: bulk flow, P: a ping
 *   breath:   P (taken ahead) then A A A … in order; P's entry is consumed, unread, when the
 *             consumer index passes it
 *
 * Order within a flow is kept: a frame of a flow with a frame waiting in place before it stays in
 * place (two flows in one bucket count as one: at worst a frame is not taken ahead). A bulk flow
 * has at most one frame per breath taken ahead. Counted `rx_sparse_first`. Per frame the cost is
 * one hash of its headers, only while a backlog is waiting.
 */
import { flowHash } from '../../packet/vxlan.ts';
import { kernelDropsOf, type XskSocket } from '../../uplink/xsk/socket.ts';
import type { Link } from '../link.ts';
import { PC, type PortOptions } from '../port.ts';

/** Flow buckets of flow queueing (a power of two). */
const FQ_BUCKETS = 1024;
/** slotFlow of an entry taken ahead. */
const TAKEN = -1;

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
  /** Flow queueing (see the file comment): the frames' memory, or undefined when off. */
  private readonly fqMem: Uint8Array | undefined;
  /** Per RX ring entry looked at: the flow bucket of a frame waiting in place, or TAKEN. */
  private readonly slotFlow: Int32Array;
  /** Per bucket: frames waiting in place in the ring (looked at, not yet consumed). */
  private readonly waiting: Int32Array;
  /** Per bucket: the breath in which a frame of it was last taken ahead. */
  private readonly aheadIn: Int32Array;
  /** Entries from the consumer index on that were looked at. */
  private scanned = 0;
  private breath = 0;

  constructor(sock: XskSocket, memId: number, o: PortOptions & { flowQueueing?: boolean }) {
    this.sock = sock;
    this.memId = memId;
    this.batch = o.batchSize;
    this.rxb = { addr: new Uint32Array(o.batchSize), len: new Uint32Array(o.batchSize) };
    this.c = o.counters;
    this.b = o.base;
    this.kdBase = o.counters[o.base + PC.kernelDrops]!;
    const fq = o.flowQueueing === true;
    this.fqMem = fq ? o.memory.u8[memId] : undefined;
    this.slotFlow = new Int32Array(fq ? sock.rxRing.size : 0);
    this.waiting = new Int32Array(fq ? FQ_BUCKETS : 0);
    this.aheadIn = new Int32Array(fq ? FQ_BUCKETS : 0);
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
    if (this.fqMem !== undefined) return this.rxQueued(out, tag, off, max);
    // One pass over the RX ring: each descriptor into the batch (the port's until release())
    // and into the link, whose room `max` already accounts for (Link.push's fields, written here
    // without its per-frame room check).
    const ring = this.sock.rxRing;
    let n = ring.available(max);
    if (n > max) n = max;
    const addr = this.rxb.addr;
    const len = this.rxb.len;
    const id = this.memId;
    const at = out.n;
    const oMem = out.mem;
    const oAddr = out.addr;
    const oLen = out.len;
    const oAux = out.aux;
    const oCsum = out.csum;
    const oGso = out.gso;
    let bytes = 0;
    for (let i = 0; i < n; i++) {
      const a = ring.addrAt(i);
      const l = ring.lenAt(i);
      addr[i] = a;
      len[i] = l;
      bytes += l;
      const j = at + i;
      oMem[j] = id;
      oAddr[j] = off + a;
      oLen[j] = l;
      oAux[j] = tag;
      oCsum[j] = 0;
      oGso[j] = 0;
    }
    ring.release(n);
    out.n = at + n;
    this.rxN = n;
    this.c[this.b + PC.rxFrames] += n;
    this.c[this.b + PC.rxBytes] += bytes;
    return n;
  }

  /**
   * rx() with flow queueing (see the file comment): when more than `max` entries wait, the
   * entries not looked at before are hashed and sparse flows' frames taken ahead; then the ring
   * is read in order up to `max` frames in all, entries taken ahead passed over.
   */
  private rxQueued(out: Link, tag: number, off: number, max: number): number {
    const ring = this.sock.rxRing;
    const mask = ring.mask;
    const cons = ring.consumerIndex();
    const slotFlow = this.slotFlow;
    const waiting = this.waiting;
    const addr = this.rxb.addr;
    const len = this.rxb.len;
    const id = this.memId;
    const avail = ring.available(ring.size);
    let n = 0;
    let bytes = 0;
    if (avail > max) {
      const mem = this.fqMem!;
      const aheadIn = this.aheadIn;
      const breath = (this.breath = (this.breath + 1) & 0x3fffffff);
      for (let k = this.scanned; k < avail; k++) {
        const a = ring.addrAt(k);
        const l = ring.lenAt(k);
        const f = flowHash(mem, off + a, l) & (FQ_BUCKETS - 1);
        if (waiting[f] === 0 && aheadIn[f] !== breath && n < max) {
          aheadIn[f] = breath;
          slotFlow[(cons + k) & mask] = TAKEN;
          addr[n] = a;
          len[n++] = l;
          bytes += l;
          out.push(id, off + a, l, tag);
        } else {
          waiting[f]++;
          slotFlow[(cons + k) & mask] = f;
        }
      }
      this.c[this.b + PC.rxSparseFirst] += n;
      this.scanned = avail;
    }
    const scanned = this.scanned;
    let i = 0;
    for (; i < avail && n < max; i++) {
      if (i < scanned) {
        const f = slotFlow[(cons + i) & mask]!;
        if (f === TAKEN) continue;
        waiting[f]--;
      }
      const a = ring.addrAt(i);
      const l = ring.lenAt(i);
      addr[n] = a;
      len[n++] = l;
      bytes += l;
      out.push(id, off + a, l, tag);
    }
    // Entries taken ahead right behind the last one read are consumed with it.
    while (i < scanned && slotFlow[(cons + i) & mask] === TAKEN) i++;
    ring.release(i);
    this.scanned = scanned > i ? scanned - i : 0;
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
