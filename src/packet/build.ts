/**
 * Frame builders for tests, the CLI and dataplane tests: one options object describes a whole frame,
 * outermost layer first, and is written in a single pass.
 *
 *   buildFrame({
 *     vlans: [{ tpid: 0x88a8, vid: 100 }, { tpid: 0x8100, vid: 10 }],
 *     ipv4: { src: '198.18.0.1', dst: '198.18.0.2', options: new Uint8Array([1, 1, 1, 1]) },
 *     udp: { sport: 40000, dport: 4789 },
 *     payload: vxlanBytes,
 *   })
 *
 *   +------------------+--------------------+------+---------------------------+-----+---------+
 *   | dst MAC, src MAC | TPID TCI (×vlans)  | type | IPv4 / IPv6 (+ext) / ARP  | L4  | payload |
 *   +------------------+--------------------+------+---------------------------+-----+---------+
 *    0                  12                   l3-2   l3                          l4    payload
 *
 * Layers:
 *   Ethernet II (IEEE 802.3), VLAN tags 802.1Q (TPID 0x8100) / 802.1ad (0x88a8), any number;
 *   ARP (RFC 826) for IPv4 over Ethernet; IPv4 (RFC 791) with options; IPv6 (RFC 8200) with
 *   extension headers; UDP (RFC 768); TCP (RFC 9293, 20-byte header); ICMP echo (RFC 792);
 *   ICMPv6 (RFC 4443) echo and neighbour solicitation (RFC 4861 §4.3).
 *
 * Defaults make a well-formed frame: lengths, the ethertype, IPv4 protocol / IPv6 next-header
 * chain, the IPv4 header checksum and the L4 checksums are computed. Every computed field can be
 * overridden to build deliberately broken frames (the classifier corpus needs them); overrides are
 * written as given and nothing else is adjusted to match them. No Ethernet padding is added unless
 * `padTo` asks for it (60 is the minimum frame without FCS), so lengths stay exact for boundary tests.
 *
 * Allocation: `buildFrame` allocates the frame once; `writeFrame` writes into a caller's buffer.
 * Addresses may be passed as bytes to avoid parsing text per call.
 */
import { finishChecksum, pseudoHeaderSumV4, pseudoHeaderSumV6, sumWords } from './checksum.ts';
import { PacketError } from './errors.ts';
import { parseIPv4, parseIPv6 } from './ip.ts';
import { parseMac } from './mac.ts';

export type MacInput = string | Uint8Array;
export type IPv4Input = string | Uint8Array;
export type IPv6Input = string | Uint8Array;

export const ETHERTYPE_IPV4 = 0x0800;
export const ETHERTYPE_ARP = 0x0806;
export const ETHERTYPE_IPV6 = 0x86dd;
export const TPID_8021Q = 0x8100;
export const TPID_8021AD = 0x88a8;

export const DEFAULT_SRC_MAC = '02:00:00:00:00:01';
export const DEFAULT_DST_MAC = '02:00:00:00:00:02';

export interface EthernetSpec {
  dst?: MacInput; // default 02:00:00:00:00:02, ff:ff:ff:ff:ff:ff for ARP
  src?: MacInput; // default 02:00:00:00:00:01
  /** The innermost ethertype; default from the L3 layer (required when there is none). */
  type?: number;
}

export interface VlanSpec {
  tpid?: number; // default 0x8100
  vid?: number; // 12 bits, default 0
  pcp?: number; // 3 bits, default 0
  dei?: boolean;
}

export interface ArpSpec {
  op?: number; // default 1 (request)
  senderMac?: MacInput; // default the Ethernet source
  senderIp: IPv4Input;
  targetMac?: MacInput; // default 00:00:00:00:00:00
  targetIp: IPv4Input;
}

export interface IPv4Spec {
  src: IPv4Input;
  dst: IPv4Input;
  version?: number; // default 4
  /** Header length field in 32-bit words; default 5 + padded options / 4. Does not change what is written. */
  ihl?: number;
  /** Raw option bytes, written after the fixed header and zero-padded (End of Options) to 4 bytes. */
  options?: Uint8Array;
  tos?: number;
  totalLength?: number; // default: the real length from the IPv4 header on
  id?: number;
  reservedFlag?: boolean; // the "evil bit", 0x8000
  dontFragment?: boolean; // 0x4000
  moreFragments?: boolean; // 0x2000
  fragOffset?: number; // in 8-byte units, 13 bits
  ttl?: number; // default 64
  protocol?: number; // default from the L4 layer, 253 (RFC 3692 experimentation) without one
  checksum?: number; // default computed over the header as written
}

/**
 * An IPv6 extension header. Types other than 44 are written as (hdrExtLen + 1) * 8 bytes:
 * next header, hdrExtLen, then for 0 (hop-by-hop) and 60 (destination options) a PadN option
 * filling the rest, for 43 (routing) routing type and segments left followed by zeros, for anything
 * else zeros. Type 44 (fragment) is always 8 bytes.
 */
export interface IPv6ExtSpec {
  type: number;
  nextHeader?: number; // default: the following header's type
  hdrExtLen?: number; // 8-octet units beyond the first 8, default 0 (not for fragment)
  routingType?: number; // routing only, default 0
  segmentsLeft?: number; // routing only, default 0 (receivers ignore the header, RFC 5095)
  fragOffset?: number; // fragment only, 8-byte units
  moreFragments?: boolean; // fragment only
  id?: number; // fragment only
}

export interface IPv6Spec {
  src: IPv6Input;
  dst: IPv6Input;
  version?: number; // default 6
  trafficClass?: number;
  flowLabel?: number;
  payloadLength?: number; // default: the real length after the fixed header
  nextHeader?: number; // default: first extension, L4 layer, or 59 (no next header)
  hopLimit?: number; // default 64
  extensions?: IPv6ExtSpec[];
}

export type ChecksumInput = number | 'auto' | 'none';

export interface UdpSpec {
  sport: number;
  dport: number;
  length?: number; // default 8 + payload
  /** 'auto' (default): computed over the pseudo-header; 'none': 0 (allowed for IPv4 only by RFC 768). */
  checksum?: ChecksumInput;
}

export interface TcpSpec {
  sport: number;
  dport: number;
  seq?: number;
  ack?: number;
  flags?: number; // default 0x02 (SYN)
  window?: number; // default 65535
  checksum?: ChecksumInput;
}

export interface IcmpSpec {
  type?: number; // default 8 (echo request); 0 is echo reply
  code?: number;
  id?: number;
  seq?: number;
  checksum?: number;
}

/** ICMPv6 type 135 writes a neighbour solicitation, 128/129 an echo, other types 4 zero bytes. */
export interface Icmpv6Spec {
  type?: number; // default 135 (neighbour solicitation)
  code?: number;
  target?: IPv6Input; // NS: the address being resolved (default the IPv6 destination)
  sourceMac?: MacInput; // NS: adds a source link-layer address option
  id?: number; // echo
  seq?: number; // echo
  checksum?: number;
}

export interface FrameSpec {
  eth?: EthernetSpec;
  vlans?: VlanSpec[];
  arp?: ArpSpec;
  ipv4?: IPv4Spec;
  ipv6?: IPv6Spec;
  udp?: UdpSpec;
  tcp?: TcpSpec;
  icmp?: IcmpSpec;
  icmpv6?: Icmpv6Spec;
  /** Bytes after the innermost header. */
  payload?: Uint8Array;
  /** Zero-pad the frame to at least this many bytes. */
  padTo?: number;
}

/** Byte offsets of each layer in a built frame. Absent layers have zero length. */
export interface FrameLayout {
  length: number;
  /** Offset of the innermost ethertype field (after the VLAN tags). */
  ethertype: number;
  /** Offsets of the VLAN tags' TPID fields, outermost first. */
  vlans: number[];
  l3: number;
  /** Offsets of the IPv6 extension headers. */
  extensions: number[];
  l4: number;
  payload: number;
}

const IPPROTO_UDP = 17;
const IPPROTO_TCP = 6;
const IPPROTO_ICMP = 1;
const IPPROTO_ICMPV6 = 58;
const IPPROTO_FRAGMENT = 44;
const IPPROTO_NONE = 59;
const IPPROTO_EXPERIMENT = 253;

/** Builds the frame described by `spec` in a new Uint8Array of exactly the right length. */
export function buildFrame(spec: FrameSpec): Uint8Array {
  const layout = layoutFrame(spec);
  const frame = new Uint8Array(layout.length);
  writeAt(spec, frame, 0, layout);
  return frame;
}

/** Writes the frame into buf at `off` and returns its length. Throws RangeError if it does not fit. */
export function writeFrame(spec: FrameSpec, buf: Uint8Array, off = 0): number {
  const layout = layoutFrame(spec);
  if (off < 0 || off + layout.length > buf.length) {
    throw new RangeError(`write a ${layout.length}-byte frame at ${off} into a ${buf.length}-byte buffer`);
  }
  buf.fill(0, off, off + layout.length); // fields not written explicitly are zero
  writeAt(spec, buf, off, layout);
  return layout.length;
}

/** The length `buildFrame(spec)` would produce. */
export function frameLength(spec: FrameSpec): number {
  return layoutFrame(spec).length;
}

/** Where each layer of `spec` lands; validates the layer combination. */
export function layoutFrame(spec: FrameSpec): FrameLayout {
  const l3count = (spec.arp ? 1 : 0) + (spec.ipv4 ? 1 : 0) + (spec.ipv6 ? 1 : 0);
  const l4count = (spec.udp ? 1 : 0) + (spec.tcp ? 1 : 0) + (spec.icmp ? 1 : 0) + (spec.icmpv6 ? 1 : 0);
  if (l3count > 1) badSpec('at most one of arp, ipv4, ipv6');
  if (l4count > 1) badSpec('at most one of udp, tcp, icmp, icmpv6');
  if (l4count > 0 && !spec.ipv4 && !spec.ipv6) badSpec('an L4 header needs ipv4 or ipv6');
  if (spec.icmpv6 && !spec.ipv6) badSpec('icmpv6 needs ipv6 (its checksum covers the IPv6 pseudo-header)');
  if (l3count === 0 && spec.eth?.type === undefined) badSpec('eth.type is required without an L3 layer');

  const vlans: number[] = [];
  let off = 12;
  for (let i = 0; i < (spec.vlans?.length ?? 0); i++) {
    vlans.push(off);
    off += 4;
  }
  const ethertype = off;
  const l3 = off + 2;
  const extensions: number[] = [];
  let l4 = l3;
  if (spec.arp) l4 += 28;
  else if (spec.ipv4) l4 += ipv4HeaderBytes(spec.ipv4);
  else if (spec.ipv6) {
    l4 += 40;
    for (const ext of spec.ipv6.extensions ?? []) {
      extensions.push(l4);
      l4 += extBytes(ext);
    }
  }
  const payload = l4 + l4Bytes(spec);
  const length = Math.max(payload + (spec.payload?.length ?? 0), spec.padTo ?? 0);
  return { length, ethertype, vlans, l3, extensions, l4, payload };
}

/** The solicited-node multicast address ff02::1:ffXX:XXXX of an IPv6 address (RFC 4291 §2.7.1). */
export function solicitedNodeAddress(addr: IPv6Input): Uint8Array {
  const a = v6(addr);
  const out = new Uint8Array(16);
  out.set([0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff]);
  out.set(a.subarray(13, 16), 13);
  return out;
}

/** The Ethernet multicast MAC 33:33:XX:XX:XX:XX of an IPv6 multicast address (RFC 2464 §7). */
export function ipv6MulticastMac(addr: IPv6Input): Uint8Array {
  const a = v6(addr);
  return Uint8Array.of(0x33, 0x33, a[12], a[13], a[14], a[15]);
}

function badSpec(what: string): never {
  throw new PacketError('ERR_INVALID_FRAME_SPEC', `build frame: ${what}`);
}

function mac(m: MacInput): Uint8Array {
  if (typeof m === 'string') return parseMac(m);
  if (m.length !== 6) badSpec(`a MAC address needs 6 bytes, got ${m.length}`);
  return m;
}

function v4(a: IPv4Input): Uint8Array {
  if (typeof a === 'string') return parseIPv4(a);
  if (a.length !== 4) badSpec(`an IPv4 address needs 4 bytes, got ${a.length}`);
  return a;
}

function v6(a: IPv6Input): Uint8Array {
  if (typeof a === 'string') return parseIPv6(a);
  if (a.length !== 16) badSpec(`an IPv6 address needs 16 bytes, got ${a.length}`);
  return a;
}

function ipv4HeaderBytes(ip: IPv4Spec): number {
  const opts = ip.options?.length ?? 0;
  return 20 + ((opts + 3) & ~3);
}

function extBytes(ext: IPv6ExtSpec): number {
  if (ext.type === IPPROTO_FRAGMENT) return 8;
  return ((ext.hdrExtLen ?? 0) + 1) * 8;
}

function l4Bytes(spec: FrameSpec): number {
  if (spec.udp) return 8;
  if (spec.tcp) return 20;
  if (spec.icmp) return 8;
  if (spec.icmpv6) {
    const type = spec.icmpv6.type ?? 135;
    if (type === 135) return 24 + (spec.icmpv6.sourceMac ? 8 : 0);
    return 8;
  }
  return 0;
}

function l4Protocol(spec: FrameSpec): number {
  if (spec.udp) return IPPROTO_UDP;
  if (spec.tcp) return IPPROTO_TCP;
  if (spec.icmp) return IPPROTO_ICMP;
  if (spec.icmpv6) return IPPROTO_ICMPV6;
  return -1;
}

function put16(buf: Uint8Array, at: number, v: number): void {
  buf[at] = (v >>> 8) & 0xff;
  buf[at + 1] = v & 0xff;
}

function put32(buf: Uint8Array, at: number, v: number): void {
  buf[at] = (v >>> 24) & 0xff;
  buf[at + 1] = (v >>> 16) & 0xff;
  buf[at + 2] = (v >>> 8) & 0xff;
  buf[at + 3] = v & 0xff;
}

function writeAt(spec: FrameSpec, buf: Uint8Array, base: number, layout: FrameLayout): void {
  const l3 = base + layout.l3;
  const l4 = base + layout.l4;
  const payloadAt = base + layout.payload;
  const payloadLen = spec.payload?.length ?? 0;
  const l4Len = layout.payload - layout.l4 + payloadLen; // L4 header + payload

  // Ethernet and VLAN tags: each TPID sits where the next ethertype would.
  const eth = spec.eth ?? {};
  buf.set(mac(eth.dst ?? (spec.arp ? 'ff:ff:ff:ff:ff:ff' : DEFAULT_DST_MAC)), base);
  const srcMac = mac(eth.src ?? DEFAULT_SRC_MAC);
  buf.set(srcMac, base + 6);
  const tags = spec.vlans ?? [];
  for (let i = 0; i < tags.length; i++) {
    const t = tags[i];
    const at = base + layout.vlans[i];
    put16(buf, at, t.tpid ?? TPID_8021Q);
    put16(buf, at + 2, ((t.pcp ?? 0) << 13) | (t.dei ? 0x1000 : 0) | ((t.vid ?? 0) & 0x0fff));
  }
  const type = eth.type ?? (spec.arp ? ETHERTYPE_ARP : spec.ipv4 ? ETHERTYPE_IPV4 : ETHERTYPE_IPV6);
  put16(buf, base + layout.ethertype, type);

  let pseudo = 0; // pseudo-header sum for the L4 checksum, without the length
  let src: Uint8Array | undefined;
  let dst: Uint8Array | undefined;
  const proto = l4Protocol(spec);

  if (spec.arp) {
    const a = spec.arp;
    put16(buf, l3, 1); // hardware type: Ethernet
    put16(buf, l3 + 2, ETHERTYPE_IPV4);
    buf[l3 + 4] = 6;
    buf[l3 + 5] = 4;
    put16(buf, l3 + 6, a.op ?? 1);
    buf.set(a.senderMac === undefined ? srcMac : mac(a.senderMac), l3 + 8);
    buf.set(v4(a.senderIp), l3 + 14);
    if (a.targetMac !== undefined) buf.set(mac(a.targetMac), l3 + 18);
    buf.set(v4(a.targetIp), l3 + 24);
  } else if (spec.ipv4) {
    const ip = spec.ipv4;
    const hlen = layout.l4 - layout.l3;
    src = v4(ip.src);
    dst = v4(ip.dst);
    buf[l3] = ((ip.version ?? 4) << 4) | ((ip.ihl ?? hlen / 4) & 0x0f);
    buf[l3 + 1] = ip.tos ?? 0;
    put16(buf, l3 + 2, ip.totalLength ?? hlen + l4Len);
    put16(buf, l3 + 4, ip.id ?? 0);
    const flags = (ip.reservedFlag ? 0x8000 : 0) | (ip.dontFragment ? 0x4000 : 0) | (ip.moreFragments ? 0x2000 : 0);
    put16(buf, l3 + 6, flags | ((ip.fragOffset ?? 0) & 0x1fff));
    buf[l3 + 8] = ip.ttl ?? 64;
    buf[l3 + 9] = ip.protocol ?? (proto >= 0 ? proto : IPPROTO_EXPERIMENT);
    buf.set(src, l3 + 12);
    buf.set(dst, l3 + 16);
    if (ip.options) buf.set(ip.options, l3 + 20);
    put16(buf, l3 + 10, ip.checksum ?? finishChecksum(sumWords(buf, l3, hlen)));
    pseudo = pseudoHeaderSumV4(src, dst, proto, 0);
  } else if (spec.ipv6) {
    const ip = spec.ipv6;
    src = v6(ip.src);
    dst = v6(ip.dst);
    const exts = ip.extensions ?? [];
    const last = proto >= 0 ? proto : IPPROTO_NONE;
    const flow = ip.flowLabel ?? 0;
    const tc = ip.trafficClass ?? 0;
    put32(buf, l3, (((ip.version ?? 6) & 0xf) << 28) | ((tc & 0xff) << 20) | (flow & 0xfffff));
    put16(buf, l3 + 4, ip.payloadLength ?? layout.payload + payloadLen - layout.l3 - 40);
    buf[l3 + 6] = ip.nextHeader ?? (exts.length > 0 ? exts[0].type : last);
    buf[l3 + 7] = ip.hopLimit ?? 64;
    buf.set(src, l3 + 8);
    buf.set(dst, l3 + 24);
    for (let i = 0; i < exts.length; i++) {
      writeExt(buf, base + layout.extensions[i], exts[i], i + 1 < exts.length ? exts[i + 1].type : last);
    }
    pseudo = pseudoHeaderSumV6(src, dst, proto, 0);
  }

  if (spec.udp) {
    const u = spec.udp;
    put16(buf, l4, u.sport);
    put16(buf, l4 + 2, u.dport);
    const len = u.length ?? l4Len;
    put16(buf, l4 + 4, len);
    if (spec.payload) buf.set(spec.payload, payloadAt);
    let ck: number;
    if (u.checksum === 'none') ck = 0;
    else if (typeof u.checksum === 'number') ck = u.checksum;
    else {
      // The pseudo-header carries the length field as written (RFC 768); in IPv6 it is 32 bits.
      ck = finishChecksum(sumWords(buf, l4, l4Len, pseudo + (len >>> 16) + (len & 0xffff)));
      if (ck === 0) ck = 0xffff; // 0 means "no checksum" (RFC 768, RFC 8200 §8.1)
    }
    put16(buf, l4 + 6, ck);
  } else if (spec.tcp) {
    const t = spec.tcp;
    put16(buf, l4, t.sport);
    put16(buf, l4 + 2, t.dport);
    put32(buf, l4 + 4, t.seq ?? 0);
    put32(buf, l4 + 8, t.ack ?? 0);
    buf[l4 + 12] = 5 << 4; // data offset: 20 bytes, no options
    buf[l4 + 13] = t.flags ?? 0x02;
    put16(buf, l4 + 14, t.window ?? 65535);
    if (spec.payload) buf.set(spec.payload, payloadAt);
    const ck =
      t.checksum === 'none' ? 0 : typeof t.checksum === 'number' ? t.checksum : finishChecksum(sumWords(buf, l4, l4Len, pseudo + l4Len));
    put16(buf, l4 + 16, ck);
  } else if (spec.icmp) {
    const c = spec.icmp;
    buf[l4] = c.type ?? 8;
    buf[l4 + 1] = c.code ?? 0;
    put16(buf, l4 + 4, c.id ?? 0);
    put16(buf, l4 + 6, c.seq ?? 0);
    if (spec.payload) buf.set(spec.payload, payloadAt);
    put16(buf, l4 + 2, c.checksum ?? finishChecksum(sumWords(buf, l4, l4Len))); // no pseudo-header in ICMPv4
  } else if (spec.icmpv6) {
    const c = spec.icmpv6;
    const t = c.type ?? 135;
    buf[l4] = t;
    buf[l4 + 1] = c.code ?? 0;
    if (t === 135) {
      buf.set(c.target === undefined ? (dst as Uint8Array) : v6(c.target), l4 + 8);
      if (c.sourceMac !== undefined) {
        buf[l4 + 24] = 1; // option: source link-layer address
        buf[l4 + 25] = 1; // length in 8-octet units
        buf.set(mac(c.sourceMac), l4 + 26);
      }
    } else if (t === 128 || t === 129) {
      put16(buf, l4 + 4, c.id ?? 0);
      put16(buf, l4 + 6, c.seq ?? 0);
    }
    if (spec.payload) buf.set(spec.payload, payloadAt);
    put16(buf, l4 + 2, c.checksum ?? finishChecksum(sumWords(buf, l4, l4Len, pseudo + l4Len)));
  } else if (spec.payload) {
    buf.set(spec.payload, payloadAt);
  }
  // Bytes up to padTo stay zero (writeFrame zeroed them; buildFrame's buffer is new).
}

function writeExt(buf: Uint8Array, at: number, ext: IPv6ExtSpec, following: number): void {
  buf[at] = ext.nextHeader ?? following;
  if (ext.type === IPPROTO_FRAGMENT) {
    put16(buf, at + 2, ((ext.fragOffset ?? 0) << 3) | (ext.moreFragments ? 1 : 0));
    put32(buf, at + 4, ext.id ?? 0);
    return;
  }
  const hdrExtLen = ext.hdrExtLen ?? 0;
  buf[at + 1] = hdrExtLen;
  const size = (hdrExtLen + 1) * 8;
  if (ext.type === 0 || ext.type === 60) {
    // Options area of size-2 bytes (≥ 6): one PadN option (RFC 8200 §4.2) keeps the header valid.
    buf[at + 2] = 1;
    buf[at + 3] = size - 4;
  } else if (ext.type === 43) {
    buf[at + 2] = ext.routingType ?? 0;
    buf[at + 3] = ext.segmentsLeft ?? 0;
  }
}
