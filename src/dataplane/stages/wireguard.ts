/**
 * WireGuard connections in the dataplane (worker 0 only: one owner for every handshake, session
 * and replay window). Two inputs, run once per breathe:
 *
 *   from the uplink (the 'wg' port: UDP to the WireGuard listen ports)
 *     parse Ethernet / IPv4 or IPv6 / UDP → the connection by destination port → Device.consume
 *     (decrypts in place) → the decrypted packet's source must be one of the peer's allowed IPs
 *     (cryptokey routing) → an Ethernet header written over the 16-byte transport header in
 *     front of it (to the pod's MAC, from the workload interface's MAC) → the workload link.
 *     Handshake messages, cookie replies and keepalives are consumed; replies leave through
 *     the connection's WgOutput (below).
 *
 *   from the workload ports (Ethernet frames from the pod; pinhole is its layer-3 gateway)
 *     the pod's MAC is learned from every frame it sends; ARP requests and IPv6 neighbour
 *     solicitations for any address but the pod's own are answered with the workload interface's
 *     MAC (packet/neighbour-reply.ts); other neighbour discovery and multicast stay on the link;
 *     an IP packet whose destination no allowed IP covers is a counted drop; the rest is copied
 *     into a slot of this stage's slab, encrypted in place there (Peer.encrypt: header in front,
 *     padding and tag behind — never written into the receive ring, whose next frame follows),
 *     given outer Ethernet/IP/UDP headers towards the peer's current endpoint, and passed to the
 *     nexthop stage, which writes the destination MAC.
 *
 *   slot (slotBytes, 64-aligned):
 *   0      2          16         22       36        56      64          80
 *   |      | Ethernet | IPv6 (40)          | UDP (8) | WG hdr | IP packet ... padding, tag |
 *   |             ...        | Ethernet | IPv4 (20) | UDP    | WG hdr | ...
 *
 * Control messages (handshake, cookie reply, keepalive, packets that waited for a session)
 * leave through WgOutput.send, which copies them into a slot the same way. Slots are reused
 * every breathe: the uplink copies them within the breathe that filled them (and the nexthop
 * stage copies what it must hold).
 *
 * Timers: each peer's `tick` runs when its earliest deadline has passed (checked every breathe;
 * the engine breathes at least every 50 ms). Counters: the devices' own drop counts and
 * handshake counts are added to the 'wireguard' block as deltas, once per breathe.
 *
 * The Devices outlive the graph: a WgRegistry (one per worker) keeps them across re-plans, so a
 * connection whose settings did not change keeps its sessions when another one is added.
 */
import { completeChecksum } from '../../packet/offload.ts';
import { createHash } from 'node:crypto';
import { parseIP } from '../../packet/ip.ts';
import { parseMac } from '../../packet/mac.ts';
import {
  answerArp,
  answerNeighbourSolicitation,
  isNeighbourDiscovery,
  writeArpRequest,
  writeNeighbourSolicitation,
} from '../../packet/neighbour-reply.ts';
import { AllowedIps } from '../../tunnel/wireguard/allowed-ips.ts';
import type { DataAead } from '../../tunnel/wireguard/crypto.ts';
import { ConsumeResult, Device, DROP_NO_ROOM, DROP_REASONS, Peer, WG_DELIVER, type WgOutput } from '../../tunnel/wireguard/device.ts';
import { decodeKey } from '../../tunnel/wireguard/keys.ts';
import { Endpoint } from '../../tunnel/wireguard/messages.ts';
import type { Link } from '../link.ts';
import type { PacketMemory } from '../memory.ts';
import { CONNECTION_COUNTERS, WG_COUNTERS, type WgConnectionPlan } from '../plan.ts';

const W = (name: (typeof WG_COUNTERS)[number]): number => WG_COUNTERS.indexOf(name);
const W_RX = W('rx_datagrams');
const W_TX = W('tx_datagrams');
const W_DELIVERED = W('delivered');
const W_SENT = W('sent');
const W_HANDSHAKES = W('handshakes');
const W_INITIATIONS = W('initiations_sent');
const W_RESPONSES = W('responses_sent');
const W_COOKIES = W('cookie_replies_sent');
const W_KEEPALIVES = W('keepalives_sent');
const W_ARP = W('arp_replies');
const W_ND = W('nd_replies');
const W_NEIGH_REQ = W('neighbour_requests');
const W_POD_MAC = W('pod_mac_changes');
const W_ENDPOINT = W('endpoint_changes');
const W_DEVICE_DROPS = W_ENDPOINT + 1;
const D = (r: string): number => WG_COUNTERS.indexOf(`drop:${r}` as (typeof WG_COUNTERS)[number]);
const D_BAD_HEADER = D('bad-header');
const D_WRONG_PORT = D('wrong-port');
const D_NOT_ALLOWED_SOURCE = D('not-allowed-source');
const D_NO_ALLOWED_IP = D('no-allowed-ip');
const D_TOO_BIG = D('too-big');
const D_POD_MAC = D('pod-mac-unknown');
const D_NON_IP = D('non-ip');
const D_MULTICAST = D('multicast');
const D_NO_LOCAL = D('no-local-address');
const D_NO_SLOT = D('no-slot');
const D_LINK_FULL = D('link-full');
const CC_DECAP_FRAMES = CONNECTION_COUNTERS.indexOf('decap_frames');
const CC_DECAP_BYTES = CONNECTION_COUNTERS.indexOf('decap_bytes');
const CC_ENCAP_FRAMES = CONNECTION_COUNTERS.indexOf('encap_frames');
const CC_ENCAP_BYTES = CONNECTION_COUNTERS.indexOf('encap_bytes');
const CC_TOO_BIG = CONNECTION_COUNTERS.indexOf('drop_too_big');

/** Where the IP packet starts in a slot, and the WireGuard message (16 bytes before it). */
const DATA_AT = 80;
const MSG_AT = DATA_AT - 16;
/** IPv4 / IPv6 + UDP + WireGuard transport overhead on top of the inner IP packet. */
const WG_OVERHEAD_V4 = 20 + 8 + 32;
const WG_OVERHEAD_V6 = 40 + 8 + 32;
const NEIGH_REQUEST_INTERVAL_MS = 1000;

/** A connection's output: control messages go to whichever stage currently serves it. */
class ConnOutput implements WgOutput {
  stage: WireguardStage | null = null;
  j = 0;
  send(buf: Uint8Array, off: number, len: number, to: Endpoint): void {
    this.stage?.control(this.j, buf, off, len, to);
  }
}

/** One WireGuard connection's lasting state: its Device and peer, and what the stage learned. */
export class WgConn {
  readonly device: Device;
  readonly peer: Peer;
  readonly output = new ConnOutput();
  readonly allowed: AllowedIps;
  readonly podMac = new Uint8Array(6);
  podMacKnown = false;
  readonly wlMac: Uint8Array;
  readonly srcMac: Uint8Array;
  readonly local4 = new Uint8Array(4);
  readonly local6 = new Uint8Array(16);
  readonly has4: boolean;
  readonly has6: boolean;
  readonly maxIp4: number;
  readonly maxIp6: number;
  readonly listenPort: number;
  readonly ttl: number;
  readonly lastEndpoint = new Endpoint();
  lastNeighRequest = -Infinity;
  readonly seenDrops = new Float64Array(DROP_REASONS.length);
  seenHandshakes = 0;
  seenInitiations = 0;
  seenResponses = 0;
  seenKeepalives = 0;
  seenCookies = 0;

  constructor(
    readonly plan: WgConnectionPlan,
    aead: DataAead,
  ) {
    this.device = new Device({ privateKey: plan.keys.privateKey, output: this.output, aead });
    const endpoint = plan.peer.endpoint ? Endpoint.parseHostPort(plan.peer.endpoint) : undefined;
    this.peer = this.device.addPeer({
      publicKey: decodeKey(plan.peer.publicKey, 'peer public key'),
      ...(plan.keys.presharedKey ? { presharedKey: plan.keys.presharedKey } : {}),
      ...(endpoint ? { endpoint } : {}),
      ...(plan.peer.persistentKeepalive ? { persistentKeepalive: plan.peer.persistentKeepalive } : {}),
      // Padding stops at the largest packet the uplink carries (a full-sized packet still fits).
      maxPacket4: plan.uplinkMtu - WG_OVERHEAD_V4,
      maxPacket6: plan.uplinkMtu - WG_OVERHEAD_V6,
    });
    if (endpoint) this.lastEndpoint.copyFrom(endpoint);
    this.allowed = new AllowedIps(plan.peer.allowedIPs);
    this.wlMac = parseMac(plan.workloadMac);
    this.srcMac = parseMac(plan.srcMac);
    this.has4 = plan.local4 !== '';
    this.has6 = plan.local6 !== '';
    if (this.has4) this.local4.set(parseIP(plan.local4).bytes);
    if (this.has6) this.local6.set(parseIP(plan.local6).bytes);
    this.maxIp4 = plan.uplinkMtu - WG_OVERHEAD_V4;
    this.maxIp6 = plan.uplinkMtu - WG_OVERHEAD_V6;
    this.listenPort = plan.listenPort;
    this.ttl = plan.ttl;
  }

  /** Our public key (base64), for status. */
  get publicKey(): Uint8Array {
    return this.device.publicKey;
  }
}

/** The worker's WireGuard connections, kept across graph rebuilds (see the file comment). */
export class WgRegistry {
  private readonly conns = new Map<string, WgConn>();
  private aead: DataAead | undefined;

  constructor(
    private readonly makeAead: () => DataAead,
    /** Test-only: how fast the WireGuard clock runs relative to real time (PINHOLE_TEST_CLOCK_RATE). */
    readonly clockRate = 1,
  ) {}

  /** The connection for `plan`: the existing one when its generation is unchanged, else a new one. */
  obtain(plan: WgConnectionPlan): WgConn {
    const have = this.conns.get(plan.name);
    if (have && have.plan.generation === plan.generation) return have;
    if (have) have.peer.zeroKeys();
    this.aead ??= this.makeAead();
    const c = new WgConn(plan, this.aead);
    this.conns.set(plan.name, c);
    return c;
  }

  /** Forgets (and erases the keys of) every connection not named. */
  retain(names: ReadonlySet<string>): void {
    for (const [name, c] of this.conns) {
      if (names.has(name)) continue;
      c.peer.zeroKeys();
      this.conns.delete(name);
    }
  }

  get(name: string): WgConn | undefined {
    return this.conns.get(name);
  }
}

/** A plan's generation: what must stay equal for its Device (and sessions) to be kept. */
export function wgGeneration(settings: unknown, keys: { privateKey: Uint8Array; presharedKey?: Uint8Array }): string {
  const h = createHash('sha256');
  h.update(JSON.stringify(settings));
  h.update(keys.privateKey);
  if (keys.presharedKey) h.update(keys.presharedKey);
  return h.digest('hex').slice(0, 32);
}

export interface WireguardStageOptions {
  /** Slots in the stage's slab (frames it builds per breathe). */
  slots: number;
  /** A peer's endpoint changed (roamed, or learned): tell the main thread. */
  onEndpoint?: (connection: number, endpoint: string) => void;
}

export class WireguardStage {
  private readonly conns: WgConn[];
  private readonly count: number;
  private readonly ports: Int32Array;
  private readonly indexOf: Int32Array;
  /** Connection index → j (position here), -1 when not ours. */
  private readonly jOf: Int32Array;
  private readonly slab: Uint8Array;
  private readonly slabMem: number;
  private readonly slotBytes: number;
  private readonly slots: number;
  private nextSlot = 0;
  private readonly res = new ConsumeResult();
  private readonly from = new Endpoint();
  private readonly rate: number;

  /**
   * @param toWorkload one link per WireGuard connection (same order as `plans`)
   * @param toNexthop  where encrypted datagrams go (the nexthop stage's input)
   * @param base       slot of the 'wireguard' counter block
   * @param connBase   slot of each connection's CONNECTION_COUNTERS block (same order as `plans`)
   */
  constructor(
    plans: readonly WgConnectionPlan[],
    registry: WgRegistry,
    private readonly toWorkload: readonly Link[],
    private readonly toNexthop: Link,
    private readonly memory: PacketMemory,
    private readonly c: Float64Array,
    private readonly base: number,
    private readonly connBase: Int32Array,
    private readonly opts: WireguardStageOptions,
  ) {
    this.conns = plans.map((p) => registry.obtain(p));
    this.count = plans.length;
    this.rate = registry.clockRate;
    this.ports = Int32Array.from(plans.map((p) => p.listenPort));
    this.indexOf = Int32Array.from(plans.map((p) => p.index));
    let maxIndex = 0;
    for (const p of plans) maxIndex = Math.max(maxIndex, p.index);
    this.jOf = new Int32Array(maxIndex + 1).fill(-1);
    plans.forEach((p, j) => (this.jOf[p.index] = j));
    this.conns.forEach((k, j) => {
      k.output.stage = this;
      k.output.j = j;
    });
    let mtu = 1500;
    for (const p of plans) mtu = Math.max(mtu, p.uplinkMtu);
    this.slotBytes = (DATA_AT + mtu + 64 + 63) & ~63;
    this.slots = Math.max(16, opts.slots);
    const buf = new ArrayBuffer(this.slotBytes * this.slots);
    this.slab = new Uint8Array(buf);
    this.slabMem = memory.register(buf);
  }

  /** The connection at position j (tests, status). */
  conn(j: number): WgConn {
    return this.conns[j]!;
  }

  /** The graph is replaced or the worker stops: give the stage's buffer back to the worker's packet memory. */
  dispose(): void {
    this.memory.release(this.slabMem);
  }

  /** Runs one breathe: datagrams from the uplink, frames from the workloads, due timers. */
  push(fromUplink: Link | null, fromWorkload: Link | null, now: number): void {
    this.nextSlot = 0;
    const t = now * this.rate;
    if (fromUplink !== null) this.fromUplink(fromUplink, t);
    if (fromWorkload !== null) this.fromWorkload(fromWorkload, t);
    const n = this.count;
    for (let j = 0; j < n; j++) {
      const k = this.conns[j]!;
      if (t >= k.peer.timers.nextDeadline()) k.peer.tick(t);
      this.sync(j, k);
    }
  }

  private slot(): number {
    if (this.nextSlot >= this.slots) return -1;
    return this.nextSlot++ * this.slotBytes;
  }

  // --- uplink → workload ---

  private fromUplink(input: Link, t: number): void {
    const n = input.n;
    const c = this.c;
    const base = this.base;
    const res = this.res;
    const from = this.from;
    c[base + W_RX] += n;
    for (let i = 0; i < n; i++) {
      const m = input.mem[i]!;
      const u8 = this.memory.u8[m]!;
      const a = input.addr[i]!;
      const len = input.len[i]!;
      const end = a + len;
      if (len < 14 + 20 + 8) {
        c[base + D_BAD_HEADER]++;
        continue;
      }
      const et = (u8[a + 12]! << 8) | u8[a + 13]!;
      const ip = a + 14;
      let udp = -1;
      if (et === 0x0800) {
        const ihl = (u8[ip]! & 15) << 2;
        const tot = (u8[ip + 2]! << 8) | u8[ip + 3]!;
        if (u8[ip]! >> 4 === 4 && ihl >= 20 && u8[ip + 9] === 17 && ((u8[ip + 6]! & 0x3f) | u8[ip + 7]!) === 0 && ip + tot <= end) {
          udp = ip + ihl;
          from.family = 4;
          for (let b = 0; b < 4; b++) from.addr[b] = u8[ip + 12 + b]!;
        }
      } else if (et === 0x86dd && len >= 14 + 40 + 8) {
        if (u8[ip]! >> 4 === 6 && u8[ip + 6] === 17) {
          udp = ip + 40;
          from.family = 6;
          for (let b = 0; b < 16; b++) from.addr[b] = u8[ip + 8 + b]!;
        }
      }
      if (udp < 0 || udp + 8 > end) {
        c[base + D_BAD_HEADER]++;
        continue;
      }
      const ulen = (u8[udp + 4]! << 8) | u8[udp + 5]!;
      if (ulen < 8 || udp + ulen > end) {
        c[base + D_BAD_HEADER]++;
        continue;
      }
      const dport = (u8[udp + 2]! << 8) | u8[udp + 3]!;
      let j = -1;
      for (let x = 0; x < this.count; x++) {
        if (this.ports[x] === dport) {
          j = x;
          break;
        }
      }
      if (j < 0) {
        c[base + D_WRONG_PORT]++;
        continue;
      }
      from.port = (u8[udp]! << 8) | u8[udp + 1]!;
      const k = this.conns[j]!;
      // Drops inside consume are counted by the device (synced below, by reason).
      if (k.device.consume(u8, udp + 8, ulen - 8, from, t, res) !== WG_DELIVER) continue;
      const p = res.offset;
      const pl = res.length;
      c[base + W_DELIVERED]++;
      if (!k.allowed.matchPacket(u8, p, true)) {
        c[base + D_NOT_ALLOWED_SOURCE]++;
        continue;
      }
      if (!k.podMacKnown) {
        this.askPodMac(j, k, u8, p, t);
        c[base + D_POD_MAC]++;
        continue;
      }
      // The Ethernet header goes over the end of the 16-byte transport header.
      const e = p - 14;
      for (let b = 0; b < 6; b++) {
        u8[e + b] = k.podMac[b]!;
        u8[e + 6 + b] = k.wlMac[b]!;
      }
      if (u8[p]! >> 4 === 4) {
        u8[e + 12] = 0x08;
        u8[e + 13] = 0x00;
      } else {
        u8[e + 12] = 0x86;
        u8[e + 13] = 0xdd;
      }
      if (!this.toWorkload[j]!.push(m, e, pl + 14, this.indexOf[j]!)) {
        c[base + D_LINK_FULL]++;
        continue;
      }
      const cb = this.connBase[j]!;
      c[cb + CC_DECAP_FRAMES]++;
      c[cb + CC_DECAP_BYTES] += pl + 14;
    }
    input.clear();
  }

  /** The pod's MAC is not known yet: ask the pod (ARP / solicitation for the packet's destination), at most once a second. */
  private askPodMac(j: number, k: WgConn, u8: Uint8Array, p: number, t: number): void {
    if (t - k.lastNeighRequest < NEIGH_REQUEST_INTERVAL_MS * this.rate) return;
    const s = this.slot();
    if (s < 0) return;
    k.lastNeighRequest = t;
    const v4 = u8[p]! >> 4 === 4;
    const n = v4
      ? writeArpRequest(k.wlMac, u8, p + 12, p + 16, this.slab, s)
      : writeNeighbourSolicitation(k.wlMac, u8, p + 8, p + 24, this.slab, s);
    if (this.toWorkload[j]!.push(this.slabMem, s, n, this.indexOf[j]!)) this.c[this.base + W_NEIGH_REQ]++;
  }

  // --- workload → uplink ---

  private fromWorkload(input: Link, t: number): void {
    const n = input.n;
    const c = this.c;
    const base = this.base;
    const slab = this.slab;
    for (let i = 0; i < n; i++) {
      const j = this.jOf[input.aux[i]!]!;
      const k = this.conns[j]!;
      const m = input.mem[i]!;
      const u8 = this.memory.u8[m]!;
      const a = input.addr[i]!;
      const len = input.len[i]!;
      if (len < 14) {
        c[base + D_BAD_HEADER]++;
        continue;
      }
      // Sealed frames must be complete: a checksum left pending (Link.csum; the graph tells
      // workload ports feeding WireGuard not to, this is the guard) is computed before encryption.
      const cs = input.csum[i]!;
      if (cs !== 0) completeChecksum(u8, a, len, cs >>> 16, cs & 0xffff);
      // Learn the pod's MAC from what it sends (a unicast source only).
      if ((u8[a + 6]! & 1) === 0) {
        const pm = k.podMac;
        if (
          !k.podMacKnown ||
          pm[0] !== u8[a + 6] ||
          pm[1] !== u8[a + 7] ||
          pm[2] !== u8[a + 8] ||
          pm[3] !== u8[a + 9] ||
          pm[4] !== u8[a + 10] ||
          pm[5] !== u8[a + 11]
        ) {
          for (let b = 0; b < 6; b++) pm[b] = u8[a + 6 + b]!;
          k.podMacKnown = true;
          c[base + W_POD_MAC]++;
        }
      }
      const et = (u8[a + 12]! << 8) | u8[a + 13]!;
      const ip = a + 14;
      if (et === 0x0806) {
        const s = this.slot();
        if (s < 0) {
          c[base + D_NO_SLOT]++;
          continue;
        }
        const r = answerArp(u8, a, len, k.wlMac, slab, s);
        if (r === 0) this.nextSlot--;
        else if (this.toWorkload[j]!.push(this.slabMem, s, r, this.indexOf[j]!)) c[base + W_ARP]++;
        continue;
      }
      let ipLen: number;
      if (et === 0x86dd) {
        if (isNeighbourDiscovery(u8, a, len)) {
          const s = this.slot();
          if (s < 0) {
            c[base + D_NO_SLOT]++;
            continue;
          }
          const r = answerNeighbourSolicitation(u8, a, len, k.wlMac, slab, s);
          if (r === 0) this.nextSlot--;
          else if (this.toWorkload[j]!.push(this.slabMem, s, r, this.indexOf[j]!)) c[base + W_ND]++;
          continue;
        }
        if (len < 14 + 40 || u8[ip]! >> 4 !== 6) {
          c[base + D_BAD_HEADER]++;
          continue;
        }
        if (u8[ip + 24] === 0xff) {
          c[base + D_MULTICAST]++;
          continue;
        }
        ipLen = 40 + ((u8[ip + 4]! << 8) | u8[ip + 5]!);
      } else if (et === 0x0800) {
        if (len < 14 + 20 || u8[ip]! >> 4 !== 4) {
          c[base + D_BAD_HEADER]++;
          continue;
        }
        const d0 = u8[ip + 16]!;
        if ((d0 >= 224 && d0 <= 239) || (d0 === 255 && u8[ip + 17] === 255 && u8[ip + 18] === 255 && u8[ip + 19] === 255)) {
          c[base + D_MULTICAST]++;
          continue;
        }
        ipLen = (u8[ip + 2]! << 8) | u8[ip + 3]!;
      } else {
        c[base + D_NON_IP]++;
        continue;
      }
      if (ipLen < 20 || ipLen > len - 14) {
        c[base + D_BAD_HEADER]++;
        continue;
      }
      if (!k.allowed.matchPacket(u8, ip, false)) {
        c[base + D_NO_ALLOWED_IP]++;
        continue;
      }
      const ep = k.peer.endpoint;
      if (ipLen > (ep !== null && ep.family === 6 ? k.maxIp6 : k.maxIp4)) {
        c[base + D_TOO_BIG]++;
        c[this.connBase[j]! + CC_TOO_BIG]++;
        continue;
      }
      const s = this.slot();
      if (s < 0) {
        c[base + D_NO_SLOT]++;
        continue;
      }
      this.memory.copy(m, ip, this.slabMem, s + DATA_AT, ipLen);
      const used = this.nextSlot;
      const noRoom = k.device.drops[DROP_NO_ROOM]!;
      const mlen = k.peer.encrypt(slab, s + DATA_AT, ipLen, t);
      const cb = this.connBase[j]!;
      if (mlen < 0) {
        if (this.nextSlot === used) this.nextSlot--;
        // No room: counted by the device. Otherwise the peer keeps a copy until a session exists
        // (and sends it through the output then): it entered the tunnel.
        if (k.device.drops[DROP_NO_ROOM] === noRoom) {
          c[cb + CC_ENCAP_FRAMES]++;
          c[cb + CC_ENCAP_BYTES] += len;
        }
        continue;
      }
      c[cb + CC_ENCAP_FRAMES]++;
      c[cb + CC_ENCAP_BYTES] += len;
      c[base + W_SENT]++;
      this.emit(j, k, s, mlen, k.peer.endpoint!);
    }
    input.clear();
  }

  /** @internal A control message from connection j's device (handshake, cookie reply, keepalive, flushed packet). */
  control(j: number, buf: Uint8Array, off: number, len: number, to: Endpoint): void {
    const s = this.slot();
    if (s < 0 || len > this.slotBytes - MSG_AT) {
      this.c[this.base + D_NO_SLOT]++;
      return;
    }
    const slab = this.slab;
    const d = s + MSG_AT;
    for (let i = 0; i < len; i++) slab[d + i] = buf[off + i]!;
    this.emit(j, this.conns[j]!, s, len, to);
  }

  /**
   * Writes the outer headers in front of the message at slot s (MSG_AT, `len` bytes) towards
   * `to`, and passes the frame to the nexthop stage (which writes the destination MAC).
   */
  private emit(j: number, k: WgConn, s: number, len: number, to: Endpoint): void {
    const b = this.slab;
    const c = this.c;
    const udp = s + MSG_AT - 8;
    const ulen = len + 8;
    let e: number;
    if (to.family === 4) {
      if (!k.has4) {
        c[this.base + D_NO_LOCAL]++;
        return;
      }
      const ip = udp - 20;
      e = ip - 14;
      const tot = ulen + 20;
      b[ip] = 0x45;
      b[ip + 1] = 0;
      b[ip + 2] = tot >> 8;
      b[ip + 3] = tot & 0xff;
      b[ip + 4] = 0;
      b[ip + 5] = 0;
      b[ip + 6] = 0x40; // DF: never fragmented (too-big packets were dropped above)
      b[ip + 7] = 0;
      b[ip + 8] = k.ttl;
      b[ip + 9] = 17;
      b[ip + 10] = 0;
      b[ip + 11] = 0;
      for (let x = 0; x < 4; x++) {
        b[ip + 12 + x] = k.local4[x]!;
        b[ip + 16 + x] = to.addr[x]!;
      }
      let sum = 0;
      for (let x = 0; x < 20; x += 2) sum += (b[ip + x]! << 8) | b[ip + x + 1]!;
      while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
      sum = ~sum & 0xffff;
      b[ip + 10] = sum >> 8;
      b[ip + 11] = sum & 0xff;
      b[e + 12] = 0x08;
      b[e + 13] = 0x00;
      this.udpHeader(b, udp, k.listenPort, to.port, ulen);
      b[udp + 6] = 0; // IPv4: the UDP checksum is optional (RFC 768)
      b[udp + 7] = 0;
    } else {
      if (!k.has6) {
        c[this.base + D_NO_LOCAL]++;
        return;
      }
      const ip = udp - 40;
      e = ip - 14;
      b[ip] = 0x60;
      b[ip + 1] = 0;
      b[ip + 2] = 0;
      b[ip + 3] = 0;
      b[ip + 4] = ulen >> 8;
      b[ip + 5] = ulen & 0xff;
      b[ip + 6] = 17;
      b[ip + 7] = k.ttl;
      for (let x = 0; x < 16; x++) {
        b[ip + 8 + x] = k.local6[x]!;
        b[ip + 24 + x] = to.addr[x]!;
      }
      b[e + 12] = 0x86;
      b[e + 13] = 0xdd;
      this.udpHeader(b, udp, k.listenPort, to.port, ulen);
      // IPv6 requires the UDP checksum (RFC 8200 §8.1): pseudo-header + UDP header + payload.
      let sum = ulen + 17;
      for (let x = ip + 8; x < ip + 40; x += 2) sum += (b[x]! << 8) | b[x + 1]!;
      const end = udp + ulen;
      let x = udp;
      for (; x + 1 < end; x += 2) sum += (b[x]! << 8) | b[x + 1]!;
      if (x < end) sum += b[x]! << 8;
      while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 0x10000);
      sum = ~sum & 0xffff;
      if (sum === 0) sum = 0xffff;
      b[udp + 6] = sum >> 8;
      b[udp + 7] = sum & 0xff;
    }
    for (let x = 0; x < 6; x++) {
      b[e + x] = 0; // the nexthop stage writes the destination MAC
      b[e + 6 + x] = k.srcMac[x]!;
    }
    if (!this.toNexthop.push(this.slabMem, e, udp + ulen - e, this.indexOf[j]!)) {
      c[this.base + D_LINK_FULL]++;
      return;
    }
    c[this.base + W_TX]++;
  }

  private udpHeader(b: Uint8Array, udp: number, sport: number, dport: number, ulen: number): void {
    b[udp] = sport >> 8;
    b[udp + 1] = sport & 0xff;
    b[udp + 2] = dport >> 8;
    b[udp + 3] = dport & 0xff;
    b[udp + 4] = ulen >> 8;
    b[udp + 5] = ulen & 0xff;
    b[udp + 6] = 0;
    b[udp + 7] = 0;
  }

  /** Adds the device's drop and handshake counts since the last breathe; reports endpoint changes. */
  private sync(j: number, k: WgConn): void {
    const c = this.c;
    const base = this.base;
    const d = k.device.drops;
    const seen = k.seenDrops;
    for (let r = 0; r < d.length; r++) {
      const v = d[r]!;
      if (v !== seen[r]) {
        c[base + W_DEVICE_DROPS + r] += v - seen[r]!;
        seen[r] = v;
      }
    }
    const p = k.peer;
    if (p.handshakesCompleted !== k.seenHandshakes) {
      c[base + W_HANDSHAKES] += p.handshakesCompleted - k.seenHandshakes;
      k.seenHandshakes = p.handshakesCompleted;
    }
    if (p.initiationsSent !== k.seenInitiations) {
      c[base + W_INITIATIONS] += p.initiationsSent - k.seenInitiations;
      k.seenInitiations = p.initiationsSent;
    }
    if (p.responsesSent !== k.seenResponses) {
      c[base + W_RESPONSES] += p.responsesSent - k.seenResponses;
      k.seenResponses = p.responsesSent;
    }
    if (p.keepalivesSent !== k.seenKeepalives) {
      c[base + W_KEEPALIVES] += p.keepalivesSent - k.seenKeepalives;
      k.seenKeepalives = p.keepalivesSent;
    }
    if (k.device.cookieRepliesSent !== k.seenCookies) {
      c[base + W_COOKIES] += k.device.cookieRepliesSent - k.seenCookies;
      k.seenCookies = k.device.cookieRepliesSent;
    }
    const ep = p.endpoint;
    if (ep !== null && !k.lastEndpoint.equals(ep)) {
      k.lastEndpoint.copyFrom(ep);
      c[base + W_ENDPOINT]++;
      this.opts.onEndpoint?.(this.indexOf[j]!, ep.toString());
    }
  }
}
