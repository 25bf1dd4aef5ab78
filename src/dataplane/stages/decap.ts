/**
 * VXLAN decapsulation: frames from the uplink → the workload link of their connection.
 *
 * For each frame: parse the outer headers (packet/vxlan.ts: Ethernet, IPv4/IPv6, UDP, VXLAN
 * flags), then find the connection by VNI and check, in this order, the UDP destination port,
 * the outer source (the connection's remote) and the outer destination (our tunnel address).
 * The first check that fails names the drop reason; every frame is either forwarded or counted
 * under exactly one reason (DECAP_REASONS). Forwarding is in place: the descriptor is narrowed to
 * the inner frame (innerOff, an absolute offset, and innerLen), no byte moves.
 *
 * Connections are few (one per workload interface), so the lookup is a linear scan over typed
 * arrays — no hashing, no allocation.
 */
import { parseVxlan, VxlanParse } from '../../packet/vxlan.ts';
import { parseIP } from '../../packet/ip.ts';
import type { Link } from '../link.ts';
import type { PacketMemory } from '../memory.ts';
import { CONNECTION_COUNTERS, DECAP_REASONS, type DecapReason, type VxlanConnectionPlan } from '../plan.ts';
import { addressWords } from '../nexthop-table.ts';

const R = (r: DecapReason): number => 1 + DECAP_REASONS.indexOf(r);
const R_UNKNOWN_VNI = R('unknown-vni');
const R_WRONG_PORT = R('wrong-port');
const R_WRONG_SOURCE = R('wrong-source');
const R_WRONG_DESTINATION = R('wrong-destination');
const R_LINK_FULL = R('link-full');
const CC_DECAP_FRAMES = CONNECTION_COUNTERS.indexOf('decap_frames');
const CC_DECAP_BYTES = CONNECTION_COUNTERS.indexOf('decap_bytes');

export class DecapStage {
  private readonly p = new VxlanParse();
  private readonly count: number;
  private readonly vni: Int32Array;
  private readonly family: Int32Array;
  private readonly port: Int32Array;
  private readonly remote: Int32Array;
  private readonly local: Int32Array;

  /**
   * @param outputs one link per connection (index = connection index): where its inner frames go
   * @param base    slot of the 'decap' counter block ('frames', then one 'drop:<reason>' per reason)
   * @param connBase slot of each connection's CONNECTION_COUNTERS block
   */
  constructor(
    conns: readonly VxlanConnectionPlan[],
    private readonly outputs: readonly Link[],
    private readonly memory: PacketMemory,
    private readonly c: Float64Array,
    private readonly base: number,
    private readonly connBase: Int32Array,
  ) {
    const n = conns.length;
    this.count = n;
    this.vni = new Int32Array(n);
    this.family = new Int32Array(n);
    this.port = new Int32Array(n);
    this.remote = new Int32Array(4 * n);
    this.local = new Int32Array(4 * n);
    for (let i = 0; i < n; i++) {
      const k = conns[i]!;
      this.vni[i] = k.vni;
      this.family[i] = k.family;
      this.port[i] = k.port;
      this.remote.set(addressWords(parseIP(k.remote).bytes), 4 * i);
      this.local.set(addressWords(parseIP(k.local).bytes), 4 * i);
    }
  }

  push(input: Link): void {
    const n = input.n;
    const p = this.p;
    const c = this.c;
    const base = this.base;
    for (let i = 0; i < n; i++) {
      const m = input.mem[i]!;
      const r = parseVxlan(this.memory.u8[m]!, input.addr[i]!, input.len[i]!, p);
      if (r !== 0) {
        c[base + r]++;
        continue;
      }
      const k = this.match(p);
      if (k < 0) {
        c[base - k]++;
        continue;
      }
      if (!this.outputs[k]!.push(m, p.innerOff, p.innerLen, k)) {
        c[base + R_LINK_FULL]++;
        continue;
      }
      c[base]++;
      const cb = this.connBase[k]!;
      c[cb + CC_DECAP_FRAMES]++;
      c[cb + CC_DECAP_BYTES] += p.innerLen;
    }
    input.clear();
  }

  /** The connection index, or minus the drop reason code. */
  private match(p: VxlanParse): number {
    let reason = R_UNKNOWN_VNI;
    const src = p.src;
    const dst = p.dst;
    for (let k = 0; k < this.count; k++) {
      if (this.vni[k] !== p.vni || this.family[k] !== p.family) continue;
      if (this.port[k] !== p.dstPort) {
        if (reason === R_UNKNOWN_VNI) reason = R_WRONG_PORT;
        continue;
      }
      const o = 4 * k;
      const rm = this.remote;
      if (rm[o] !== src[0] || rm[o + 1] !== src[1] || rm[o + 2] !== src[2] || rm[o + 3] !== src[3]) {
        if (reason !== R_WRONG_DESTINATION) reason = R_WRONG_SOURCE;
        continue;
      }
      const lc = this.local;
      if (lc[o] !== dst[0] || lc[o + 1] !== dst[1] || lc[o + 2] !== dst[2] || lc[o + 3] !== dst[3]) {
        reason = R_WRONG_DESTINATION;
        continue;
      }
      return k;
    }
    return -reason;
  }
}
