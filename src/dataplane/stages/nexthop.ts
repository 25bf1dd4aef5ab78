/**
 * Next hop: writes the outer destination MAC of encapsulated frames and passes them to the
 * uplink, or holds them while the kernel resolves the next hop.
 *
 * Where the MAC comes from: the main thread publishes each connection's next hop (the remote
 * itself when it is on the uplink's subnet, else the route's gateway) in the NextHopTable; this
 * stage looks the next hop up in the shared neighbour table, which the rtnetlink mirror keeps
 * equal to the kernel's. Lookups happen once per connection per breathe (cached by breathe
 * number), not per frame. A neighbour or route change therefore takes effect on the next
 * breathe, without a restart.
 *
 * Miss: no usable entry (missing, INCOMPLETE, FAILED). The frame is copied into the
 * connection's small wait queue (bounded: `frames` slots; overflow is a counted drop) and the
 * worker asks the main thread, once per miss episode, to have the kernel resolve it
 * (RTM_NEWNEIGH + NTF_USE: the kernel sends the ARP request / neighbour solicitation itself).
 * When the entry appears the queue is sent, in order; after `timeoutMs` it is dropped and
 * counted. STALE entries are used (as the kernel does) but, because the kernel never sees our
 * traffic and so never re-confirms them, the worker asks for a refresh at most once a second
 * while a connection sends through a STALE entry — this is how a next hop whose MAC changed
 * is noticed.
 *
 * Both tables are seqlocks the main thread writes. A read that finds one busy through all its
 * retries is no answer, never a miss: the connection keeps its last MAC and state. Only a next
 * hop with no answer of its own yet (never resolved, or another address than before) waits.
 * Stopping or replacing the graph counts what still waits (`drop:stopped`, `drop:reconfigured`).
 */
import { completeChecksum } from '../../packet/offload.ts';
import { NEIGH_BUSY, NeighbourTableReader } from '../../netlink/neigh-table.ts';
import { trainPackets } from '../../packet/vxlan.ts';
import type { DisposeReason } from '../engine.ts';
import type { Link } from '../link.ts';
import type { PacketMemory } from '../memory.ts';
import { NH_OK, NH_UNKNOWN, type NextHopTable } from '../nexthop-table.ts';
import { CONNECTION_COUNTERS, NEXTHOP_COUNTERS, type VxlanConnectionPlan } from '../plan.ts';

const NUD_STALE = 0x04;
/** NUD_VALID in include/net/neighbour.h: PERMANENT | NOARP | REACHABLE | PROBE | STALE | DELAY. */
const NUD_VALID = 0x80 | 0x40 | 0x02 | 0x10 | 0x04 | 0x08;

const N = (name: (typeof NEXTHOP_COUNTERS)[number]): number => NEXTHOP_COUNTERS.indexOf(name);
const N_FRAMES = N('frames');
const N_MISSES = N('misses');
const N_QUEUED = N('queued');
const N_FLUSHED = N('flushed');
const N_QUEUE_FULL = N('drop:queue-full');
const N_TIMEOUT = N('drop:timeout');
const N_NO_ROUTE = N('drop:no-route');
const N_LINK_FULL = N('drop:link-full');
const N_STALE = N('stale-refreshes');
const N_RECONFIGURED = N('drop:reconfigured');
const N_STOPPED = N('drop:stopped');
const N_REQUESTS = N('resolve-requests');
const CC_DROP_NEXTHOP = CONNECTION_COUNTERS.indexOf('drop_nexthop');

/** Why the worker asks the main thread about a connection's next hop. */
export const ASK_RESOLVE = 1;
export const ASK_REFRESH = 2;

export class NexthopStage {
  private readonly count: number;
  private readonly slot = new Int32Array(7);
  private readonly seen: Int32Array;
  private readonly checked: Float64Array;
  /** Per connection: 1 when the MAC in `macs` is usable this breathe. */
  private readonly ok: Uint8Array;
  private readonly stale: Uint8Array;
  private readonly routeOk: Uint8Array;
  /** 1 once the main thread has published the next hop (NH_OK). */
  private readonly known: Uint8Array;
  private readonly family: Int32Array;
  private readonly ifindex: Int32Array;
  private readonly v6: Uint8Array;
  /** The next-hop address as the slot holds it (4 big-endian words per connection; IPv4 in the first). */
  private readonly words: Int32Array;
  private readonly macs: Uint8Array;
  private readonly mac = new Uint8Array(6);
  private readonly lastAsk: Float64Array;
  // Wait queues: `frames` slots of `slotBytes` per connection, in one buffer.
  private readonly waitMem: number;
  private readonly waitU8: Uint8Array;
  private readonly slotBytes: number;
  private readonly frames: number;
  private readonly waitLen: Uint32Array;
  private readonly waitN: Int32Array;
  private readonly waitSince: Float64Array;
  private breath = 0;
  private waiting = 0;

  /** `conns`: one entry per connection index (VXLAN, then WireGuard); only their largest frame matters here. */
  constructor(
    conns: readonly Pick<VxlanConnectionPlan, 'maxInnerFrame'>[],
    private readonly output: Link,
    private readonly memory: PacketMemory,
    private readonly nexthops: NextHopTable,
    private readonly neighbours: NeighbourTableReader,
    private readonly c: Float64Array,
    private readonly base: number,
    private readonly connBase: Int32Array,
    opts: { frames: number; timeoutMs: number },
    /** Called (rarely: once per miss episode, ≤ 1/s for refreshes) to ask the main thread. */
    private readonly ask: (connection: number, why: number) => void,
  ) {
    const n = conns.length;
    this.count = n;
    this.timeoutMs = opts.timeoutMs;
    this.seen = new Int32Array(n).fill(-1);
    this.checked = new Float64Array(n).fill(-1);
    this.ok = new Uint8Array(n);
    this.stale = new Uint8Array(n);
    // Before the first read a next hop is "not computed yet" (NH_UNKNOWN): frames wait, and a
    // first read the writer keeps busy holds them too instead of dropping them as unroutable.
    this.routeOk = new Uint8Array(n).fill(1);
    this.known = new Uint8Array(n);
    this.family = new Int32Array(n);
    this.ifindex = new Int32Array(n);
    this.v6 = new Uint8Array(16 * n);
    this.words = new Int32Array(4 * n);
    this.macs = new Uint8Array(6 * n);
    this.lastAsk = new Float64Array(n).fill(-Infinity);
    this.frames = opts.frames;
    let biggest = 64;
    for (const k of conns) biggest = Math.max(biggest, k.maxInnerFrame + 70);
    this.slotBytes = (biggest + 63) & ~63;
    const buf = new ArrayBuffer(Math.max(1, n * this.frames * this.slotBytes));
    this.waitMem = memory.register(buf);
    this.waitU8 = new Uint8Array(buf);
    this.waitLen = new Uint32Array(Math.max(1, n * this.frames));
    this.waitN = new Int32Array(n);
    this.waitSince = new Float64Array(n);
  }

  private readonly timeoutMs: number;

  /**
   * The graph is replaced (a connection change) or the worker stops: frames still waiting for a
   * next hop are dropped — counted under that reason, never lost silently — and the wait buffer
   * goes back to packet memory.
   */
  dispose(why: DisposeReason): void {
    for (let k = 0; k < this.count; k++) {
      const q = this.waitN[k]!;
      if (q === 0) continue;
      this.c[this.base + (why === 'stopped' ? N_STOPPED : N_RECONFIGURED)] += q;
      this.c[this.connBase[k]! + CC_DROP_NEXTHOP] += q;
      this.waitN[k] = 0;
    }
    this.waiting = 0;
    this.memory.release(this.waitMem);
  }

  /** Frames held in wait queues (the engine polls with a short timeout while any wait). */
  get held(): number {
    return this.waiting;
  }

  /** Refreshes connection k's next hop for this breathe. */
  private check(k: number, now: number): void {
    this.checked[k] = this.breath;
    const seq = this.nexthops.seq(k);
    let moved = false;
    if (seq !== this.seen[k]) {
      const s = this.slot;
      // The writer kept the slot busy: nothing new is known, so the connection keeps what it
      // had (a next hop that worked keeps working) and the read is tried again next breath.
      const got = this.nexthops.read(k, s);
      if (got < 0) return;
      this.seen[k] = got;
      // Another next hop than the one the MAC was looked up for (a slot rewritten with the same
      // one, as the main thread may do, is not a move).
      const o = 16 * k;
      const words = this.words;
      moved = this.known[k] === 0 || s[1] !== this.family[k] || s[2] !== this.ifindex[k];
      for (let w = 0; w < 4; w++) {
        if (words[4 * k + w] !== s[3 + w]) moved = true;
        words[4 * k + w] = s[3 + w]!;
      }
      // Not computed yet (the first moments after a start or a change): hold, don't drop.
      this.routeOk[k] = s[0] === NH_OK || s[0] === NH_UNKNOWN ? 1 : 0;
      this.known[k] = s[0] === NH_OK ? 1 : 0;
      this.family[k] = s[1]!;
      this.ifindex[k] = s[2]!;
      for (let w = 0; w < 4; w++) {
        const v = s[3 + w]!;
        this.v6[o + 4 * w] = v >>> 24;
        this.v6[o + 4 * w + 1] = (v >>> 16) & 0xff;
        this.v6[o + 4 * w + 2] = (v >>> 8) & 0xff;
        this.v6[o + 4 * w + 3] = v & 0xff;
      }
    }
    if (this.routeOk[k] === 0 || this.known[k] === 0) {
      this.ok[k] = 0;
      return;
    }
    // Looked up into a scratch MAC: a lookup the mirror kept busy (NEIGH_BUSY: it was writing
    // through every retry) may leave a torn MAC there, and it says nothing about the next hop,
    // so the connection keeps its last MAC and state. Treating it as a miss held or dropped
    // frames (a GSO train is not held) whenever a neighbour changed under traffic. Only a next
    // hop read in this same check has no answer of its own to keep: its frames wait.
    const mac = this.mac;
    const st =
      this.family[k] === 4
        ? this.neighbours.lookupV4(this.ifindex[k]!, this.words[4 * k]!, mac, 0)
        : this.neighbours.lookupV6(this.ifindex[k]!, this.v6, 16 * k, mac, 0);
    if (st === NEIGH_BUSY) {
      if (moved) this.ok[k] = 0;
      return;
    }
    const valid = st > 0 && (st & NUD_VALID) !== 0;
    if (valid) {
      const o = 6 * k;
      for (let b = 0; b < 6; b++) this.macs[o + b] = mac[b]!;
    }
    this.ok[k] = valid ? 1 : 0;
    this.stale[k] = valid && (st & NUD_STALE) !== 0 ? 1 : 0;
    if (!valid && now - this.lastAsk[k]! > 1000) {
      this.lastAsk[k] = now;
      this.c[this.base + N_REQUESTS]++;
      this.ask(k, ASK_RESOLVE);
    } else if (this.stale[k] === 1 && now - this.lastAsk[k]! > 1000) {
      this.lastAsk[k] = now;
      this.c[this.base + N_STALE]++;
      this.ask(k, ASK_REFRESH);
    }
  }

  push(input: Link, now: number): void {
    // Wraps below 2^30: stays a small integer (util/double-fields.ts) and never meets the -1 of 'never checked'.
    this.breath = (this.breath + 1) & 0x3fffffff;
    if (this.waiting > 0) this.service(now);
    const n = input.n;
    const c = this.c;
    const base = this.base;
    const out = this.output;
    for (let i = 0; i < n; i++) {
      const k = input.aux[i]!;
      if (this.checked[k] !== this.breath) this.check(k, now);
      const m = input.mem[i]!;
      const addr = input.addr[i]!;
      const len = input.len[i]!;
      const g = input.gso[i]!;
      // Counters count packets: a GSO train counts those it will be cut into.
      const packets = g === 0 ? 1 : trainPackets(this.memory.u8[m]!, addr, len, g);
      if (this.routeOk[k] === 0) {
        c[base + N_NO_ROUTE] += packets;
        c[this.connBase[k]! + CC_DROP_NEXTHOP] += packets;
        continue;
      }
      if (this.ok[k] === 0) {
        c[base + N_MISSES] += packets;
        if (g !== 0) {
          // A GSO train is not held (a wait slot takes one packet): it is dropped, counted, and
          // its flow retransmits once the next hop resolves. Trains only follow a flow's first
          // packets, which found the next hop resolved or waited here.
          c[base + N_QUEUE_FULL] += packets;
          c[this.connBase[k]! + CC_DROP_NEXTHOP] += packets;
          continue;
        }
        this.hold(k, m, addr, len, input.csum[i]!, now);
        continue;
      }
      const u8 = this.memory.u8[m]!;
      const mo = 6 * k;
      const macs = this.macs;
      u8[addr] = macs[mo]!;
      u8[addr + 1] = macs[mo + 1]!;
      u8[addr + 2] = macs[mo + 2]!;
      u8[addr + 3] = macs[mo + 3]!;
      u8[addr + 4] = macs[mo + 4]!;
      u8[addr + 5] = macs[mo + 5]!;
      if (!out.push(m, addr, len, k, input.csum[i]!, g)) {
        c[base + N_LINK_FULL] += packets;
        continue;
      }
      c[base + N_FRAMES] += packets;
    }
    input.clear();
  }

  /** Keeps a copy of the frame until its next hop resolves; a pending checksum is completed in the copy. */
  private hold(k: number, m: number, addr: number, len: number, csum: number, now: number): void {
    const c = this.c;
    const q = this.waitN[k]!;
    if (q >= this.frames || len > this.slotBytes) {
      c[this.base + N_QUEUE_FULL]++;
      c[this.connBase[k]! + CC_DROP_NEXTHOP]++;
      return;
    }
    if (q === 0) this.waitSince[k] = now;
    const s = k * this.frames + q;
    this.memory.copy(m, addr, this.waitMem, s * this.slotBytes, len);
    if (csum !== 0) completeChecksum(this.waitU8, s * this.slotBytes, len, csum >>> 16, csum & 0xffff);
    this.waitLen[s] = len;
    this.waitN[k] = q + 1;
    this.waiting++;
    c[this.base + N_QUEUED]++;
  }

  /** Sends held frames whose next hop resolved; drops those that waited too long. */
  service(now: number): void {
    for (let k = 0; k < this.count; k++) {
      const q = this.waitN[k]!;
      if (q === 0) continue;
      if (this.checked[k] !== this.breath) this.check(k, now);
      const c = this.c;
      if (this.ok[k] === 1) {
        const mo = 6 * k;
        for (let j = 0; j < q; j++) {
          const s = k * this.frames + j;
          const at = s * this.slotBytes;
          const u8 = this.waitU8;
          for (let b = 0; b < 6; b++) u8[at + b] = this.macs[mo + b]!;
          // The slots are read by the uplink's tx() later in this breathe and reused only
          // after the next hop fails again (a later breathe).
          if (this.output.push(this.waitMem, at, this.waitLen[s]!, k)) c[this.base + N_FLUSHED]++;
          else c[this.base + N_LINK_FULL]++;
        }
        this.waitN[k] = 0;
        this.waiting -= q;
      } else if (now - this.waitSince[k]! > this.timeoutMs || this.routeOk[k] === 0) {
        // The route went away while they waited: that is why they are dropped.
        c[this.base + (this.routeOk[k] === 0 ? N_NO_ROUTE : N_TIMEOUT)] += q;
        c[this.connBase[k]! + CC_DROP_NEXTHOP] += q;
        this.waitN[k] = 0;
        this.waiting -= q;
      }
    }
  }
}
