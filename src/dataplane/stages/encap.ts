/**
 * VXLAN encapsulation: frames from the workload links → the nexthop stage.
 *
 * In place: the outer headers (50 bytes over IPv4, 70 over IPv6) are written into the headroom
 * in front of the received inner frame (every port keeps at least 82 bytes there, see
 * ports/afpacket.ts and ports/xsk.ts), and the descriptor is widened to cover them. The outer
 * UDP source port comes from a hash of the inner flow (packet/vxlan.ts flowHash), inside the
 * kernel's default range, so one flow keeps one outer 5-tuple (no reordering across ECMP paths
 * or RSS queues) and different flows spread. An inner frame that would not fit the uplink MTU
 * once encapsulated is a counted drop (we never fragment the outer packet: DF is set).
 *
 * The destination MAC is left for the nexthop stage (the template's is a placeholder).
 *
 * A GSO train (Link.gso ≠ 0, built by an offload workload port: inner frames TRAIN_GAP bytes
 * apart) gets the outer headers once, a VXLAN header in every gap and the outer UDP checksum as
 * a pseudo-header sum (VxlanEncapTemplate.writeTrain), and stays one entry; its counters count
 * the packets it becomes (see train()).
 */
import { parseMac } from '../../packet/mac.ts';
import { completeChecksum } from '../../packet/offload.ts';
import { flowHash, sourcePortOf, TRAIN_GAP, VxlanEncapTemplate } from '../../packet/vxlan.ts';
import type { Link } from '../link.ts';
import type { PacketMemory } from '../memory.ts';
import { CONNECTION_COUNTERS, ENCAP_COUNTERS, type VxlanConnectionPlan } from '../plan.ts';

const E_FRAMES = ENCAP_COUNTERS.indexOf('frames');
const E_TOO_BIG = ENCAP_COUNTERS.indexOf('drop:too-big');
const E_NO_HEADROOM = ENCAP_COUNTERS.indexOf('drop:no-headroom');
const E_LINK_FULL = ENCAP_COUNTERS.indexOf('drop:link-full');
const CC_ENCAP_FRAMES = CONNECTION_COUNTERS.indexOf('encap_frames');
const CC_ENCAP_BYTES = CONNECTION_COUNTERS.indexOf('encap_bytes');
const CC_TOO_BIG = CONNECTION_COUNTERS.indexOf('drop_too_big');

export class EncapStage {
  private readonly tmpl: VxlanEncapTemplate[];
  private readonly maxInner: Int32Array;

  constructor(
    conns: readonly VxlanConnectionPlan[],
    private readonly output: Link,
    private readonly memory: PacketMemory,
    private readonly c: Float64Array,
    private readonly base: number,
    private readonly connBase: Int32Array,
  ) {
    this.tmpl = conns.map(
      (k) => new VxlanEncapTemplate({ srcMac: parseMac(k.srcMac), src: k.local, dst: k.remote, dstPort: k.port, vni: k.vni, ttl: k.ttl }),
    );
    this.maxInner = Int32Array.from(conns.map((k) => k.maxInnerFrame));
  }

  push(input: Link): void {
    const n = input.n;
    const c = this.c;
    const base = this.base;
    const out = this.output;
    for (let i = 0; i < n; i++) {
      const k = input.aux[i]!;
      const len = input.len[i]!;
      const addr = input.addr[i]!;
      const cb = this.connBase[k]!;
      const g = input.gso[i]!;
      if (g !== 0) {
        this.train(input, i, k, cb);
        continue;
      }
      if (len > this.maxInner[k]!) {
        c[base + E_TOO_BIG]++;
        c[cb + CC_TOO_BIG]++;
        continue;
      }
      const t = this.tmpl[k]!;
      const h = t.headerBytes;
      if (addr < h) {
        c[base + E_NO_HEADROOM]++;
        continue;
      }
      const m = input.mem[i]!;
      const u8 = this.memory.u8[m]!;
      let cs = input.csum[i]!;
      if (cs !== 0 && ((cs >>> 16) & 1) !== 0) {
        // An odd checksum start (no real header stack has one): complete it here.
        completeChecksum(u8, addr, len, cs >>> 16, cs & 0xffff);
        cs = 0;
      }
      const total = t.write(u8, addr - h, len, sourcePortOf(flowHash(u8, addr, len)), cs);
      // A pending inner checksum moves with the frame's start (outer headers in front).
      if (!out.push(m, addr - h, total, k, cs === 0 ? 0 : cs + (h << 16))) {
        c[base + E_LINK_FULL]++;
        continue;
      }
      c[base + E_FRAMES]++;
      c[cb + CC_ENCAP_FRAMES]++;
      c[cb + CC_ENCAP_BYTES] += len;
    }
    input.clear();
  }

  /**
   * A GSO train (Link.gso: inner frames `gso - 8` bytes apart from the next one's start, gaps
   * for VXLAN headers; ports/afpacket.ts trainUp): the outer headers go in front of the first
   * inner frame as for any frame, a VXLAN header into every gap, and the train leaves as one
   * entry for the uplink to send whole (ports/train.ts). Counters count the packets it becomes.
   */
  private train(input: Link, i: number, k: number, cb: number): void {
    const c = this.c;
    const base = this.base;
    const len = input.len[i]!;
    const addr = input.addr[i]!;
    const g = input.gso[i]!;
    const packets = Math.ceil((len + TRAIN_GAP) / g);
    if (g - TRAIN_GAP > this.maxInner[k]!) {
      c[base + E_TOO_BIG] += packets;
      c[cb + CC_TOO_BIG] += packets;
      return;
    }
    const t = this.tmpl[k]!;
    const h = t.headerBytes;
    if (addr < h) {
      c[base + E_NO_HEADROOM] += packets;
      return;
    }
    const m = input.mem[i]!;
    const u8 = this.memory.u8[m]!;
    const total = t.writeTrain(u8, addr - h, len, g, sourcePortOf(flowHash(u8, addr, g - TRAIN_GAP)));
    if (!this.output.push(m, addr - h, total, k, 0, g)) {
      c[base + E_LINK_FULL] += packets;
      return;
    }
    c[base + E_FRAMES] += packets;
    c[cb + CC_ENCAP_FRAMES] += packets;
    c[cb + CC_ENCAP_BYTES] += len - (packets - 1) * TRAIN_GAP;
  }
}
