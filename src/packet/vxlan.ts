/**
 * VXLAN (RFC 7348) on the wire: parsing an outer frame down to the inner Ethernet frame
 * (decapsulation), writing outer headers in front of an inner frame (encapsulation), and the
 * inner-flow hash that picks the outer UDP source port.
 *
 *   outer frame (untagged uplink)
 *   +----------+-------------------------+--------+--------+----------------------+
 *   | Ethernet | IPv4 (IHL*4) / IPv6 (40) | UDP 8  | VXLAN 8 | inner Ethernet frame |
 *   +----------+-------------------------+--------+--------+----------------------+
 *    off        ipOff                     udpOff            innerOff (innerLen = UDP length - 16)
 *
 *   VXLAN header (RFC 7348 §5), as the Linux vxlan driver accepts it without extensions (no GBP,
 *   GPE or remote checksum offload):
 *    0                   1                   2                   3
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *   |0 0 0 0 1 0 0 0|            reserved (0)                        |  word 0 = 0x08000000 exactly
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *   |                 VNI (24 bits)                 | reserved (0)  |
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *
 * parseVxlan checks, in this order (the first failing check names the reason; the reference decoder
 * in test/support/vxlan-reference.ts follows the same order):
 *   1. Ethernet: < 14 bytes → truncated; type 0x8100/0x88a8 → vlan (the uplink is untagged for
 *      now); neither 0x0800 nor 0x86dd → not-ip.
 *   2a. IPv4 (RFC 791): < 20 bytes → truncated; version ≠ 4 or IHL < 5 → ip-header; < IHL*4 bytes →
 *      truncated; header checksum → ip-checksum; total length > bytes present → truncated; total
 *      length < IHL*4 + 16 → ip-header; MF or fragment offset → fragment; protocol ≠ 17 → not-udp.
 *      The IP payload is total length - IHL*4; bytes after it (Ethernet padding) are ignored.
 *   2b. IPv6 (RFC 8200): < 40 bytes → truncated; version ≠ 6 → ip-header; payload length > bytes
 *      present → truncated; payload length < 16 → ip-header; next header 0/43/60/44 →
 *      ipv6-ext-header (no extension headers on a tunnel we terminate); ≠ 17 → not-udp.
 *   3. UDP (RFC 768): length < 16 or > the IP payload → udp-length. The UDP checksum is not
 *      verified: the inner frame carries its own checks (inner IP/TCP/UDP checksums, the inner
 *      receiver verifies them), and frames from a veth or a NIC with checksum offload arrive with
 *      CHECKSUM_PARTIAL checksums that only cover the pseudo-header, so verifying would drop good
 *      traffic. The Linux vxlan device does not require it either (udp6zerocsumrx aside).
 *   4. VXLAN: word 0 ≠ 0x08000000 or the VNI word's low byte ≠ 0 → vxlan-flags; inner frame
 *      (UDP length - 16) < 14 → inner-truncated.
 * "truncated" means the frame ends before what a header (or a length field) says is there;
 * "ip-header" means the header contradicts itself.
 *
 * Hot path rules (parseVxlan, VxlanEncapTemplate.write, flowHash, sourcePortOf run per packet):
 * no allocation, closures, try, for..of, spread or object literals; results go into preallocated
 * objects and typed arrays; fields are read byte by byte from the caller's Uint8Array (no DataView,
 * no subarray). Errors are reported as numbers, never thrown; only the template constructor throws.
 */
import { foldSum, pseudoHeaderSumV4, pseudoHeaderSumV6, sumWords, verifyChecksum } from './checksum.ts';
import { parseIP } from './ip.ts';
import type { ParsedIP } from './ip.ts';
import { PinholeError } from '../sys/errors.ts';
import {
  ETH_HLEN,
  ETH_P_IP,
  ETH_P_IPV6,
  ETH_P_8021Q,
  ETH_P_8021AD,
  IPPROTO_HOPOPTS,
  IPPROTO_TCP,
  IPPROTO_UDP,
  IPPROTO_ROUTING,
  IPPROTO_FRAGMENT,
  IPPROTO_DSTOPTS,
  IPPROTO_SCTP,
} from './proto.ts';

export const VXLAN_HEADER_BYTES = 8;
export const OUTER_V4_BYTES = 50; // eth 14 + ipv4 20 + udp 8 + vxlan 8
export const OUTER_V6_BYTES = 70; // eth 14 + ipv6 40 + udp 8 + vxlan 8
export const VXLAN_DEFAULT_PORT = 4789; // IANA (RFC 7348 §5)
export const VXLAN_SPORT_MIN = 32768; // the kernel's default ip_local_port_range
export const VXLAN_SPORT_MAX = 60999;

/** parseVxlan result 0 = ok; otherwise 1 + index into DECAP_PARSE_REASONS. */
export const DECAP_OK = 0;
export const DECAP_PARSE_REASONS = [
  'truncated',
  'vlan',
  'not-ip',
  'ip-header',
  'ip-checksum',
  'fragment',
  'ipv6-ext-header',
  'not-udp',
  'udp-length',
  'vxlan-flags',
  'inner-truncated',
] as const;
export type DecapParseReason = (typeof DECAP_PARSE_REASONS)[number];

const R_TRUNCATED = 1;
const R_VLAN = 2;
const R_NOT_IP = 3;
const R_IP_HEADER = 4;
const R_IP_CHECKSUM = 5;
const R_FRAGMENT = 6;
const R_IPV6_EXT = 7;
const R_NOT_UDP = 8;
const R_UDP_LENGTH = 9;
const R_VXLAN_FLAGS = 10;
const R_INNER_TRUNCATED = 11;

const UDP_VXLAN_BYTES = 16; // UDP header + VXLAN header
const VXLAN_FLAGS_WORD = 0x08000000; // I flag only

/** The reason name of a parseVxlan result (undefined for DECAP_OK). Not for the hot path's inner loop. */
export function decapReasonOf(code: number): DecapParseReason | undefined {
  return code === DECAP_OK ? undefined : DECAP_PARSE_REASONS[code - 1];
}

/**
 * Preallocated, reused result of parseVxlan (no allocation per packet). Fields are meaningful only
 * after parseVxlan returned DECAP_OK. Offsets are absolute indexes into the parsed buffer.
 */
export class VxlanParse {
  family: 4 | 6 = 4;
  ipOff = 0;
  udpOff = 0;
  innerOff = 0;
  innerLen = 0;
  vni = 0;
  srcPort = 0;
  dstPort = 0;
  /** Outer addresses as big-endian 32-bit words (| 0 signed ints); IPv4 in word 0, words 1..3 = 0. */
  readonly src = new Int32Array(4);
  readonly dst = new Int32Array(4);
}

function word32(mem: Uint8Array, at: number): number {
  return (mem[at] << 24) | (mem[at + 1] << 16) | (mem[at + 2] << 8) | mem[at + 3];
}

function word16(mem: Uint8Array, at: number): number {
  return (mem[at] << 8) | mem[at + 1];
}

/**
 * Parses an outer frame mem[off..off+len) = Ethernet (untagged) / IPv4|IPv6 / UDP / VXLAN / inner
 * Ethernet. Returns DECAP_OK or a reason code (1 + index into DECAP_PARSE_REASONS). Never throws,
 * never allocates. A `len` reaching past the buffer is cut to the buffer.
 */
export function parseVxlan(mem: Uint8Array, off: number, len: number, out: VxlanParse): number {
  if (off < 0 || off > mem.length) return R_TRUNCATED;
  const end = len < mem.length - off ? off + len : mem.length;
  if (end - off < ETH_HLEN) return R_TRUNCATED;
  const type = word16(mem, off + 12);
  const ip = off + ETH_HLEN;
  let udp: number;
  let ipPayload: number;
  let family: 4 | 6;
  if (type === ETH_P_IP) {
    if (end - ip < 20) return R_TRUNCATED;
    const vihl = mem[ip];
    const hlen = (vihl & 0x0f) << 2;
    if (vihl >> 4 !== 4 || hlen < 20) return R_IP_HEADER;
    if (end - ip < hlen) return R_TRUNCATED;
    if (!verifyChecksum(mem, ip, hlen, 0)) return R_IP_CHECKSUM;
    const total = word16(mem, ip + 2);
    if (total > end - ip) return R_TRUNCATED;
    if (total < hlen + UDP_VXLAN_BYTES) return R_IP_HEADER;
    if ((word16(mem, ip + 6) & 0x3fff) !== 0) return R_FRAGMENT; // MF | fragment offset
    if (mem[ip + 9] !== IPPROTO_UDP) return R_NOT_UDP;
    family = 4;
    udp = ip + hlen;
    ipPayload = total - hlen;
  } else if (type === ETH_P_IPV6) {
    if (end - ip < 40) return R_TRUNCATED;
    if (mem[ip] >> 4 !== 6) return R_IP_HEADER;
    const plen = word16(mem, ip + 4);
    if (plen > end - ip - 40) return R_TRUNCATED;
    if (plen < UDP_VXLAN_BYTES) return R_IP_HEADER;
    const nh = mem[ip + 6];
    if (nh === IPPROTO_HOPOPTS || nh === IPPROTO_ROUTING || nh === IPPROTO_DSTOPTS || nh === IPPROTO_FRAGMENT) return R_IPV6_EXT;
    if (nh !== IPPROTO_UDP) return R_NOT_UDP;
    family = 6;
    udp = ip + 40;
    ipPayload = plen;
  } else if (type === ETH_P_8021Q || type === ETH_P_8021AD) {
    return R_VLAN;
  } else {
    return R_NOT_IP;
  }

  // From here on the IP payload holds at least UDP + VXLAN headers, all inside the frame.
  const ulen = word16(mem, udp + 4);
  if (ulen < UDP_VXLAN_BYTES || ulen > ipPayload) return R_UDP_LENGTH;
  const vx = udp + 8;
  if (word32(mem, vx) !== VXLAN_FLAGS_WORD || mem[vx + 7] !== 0) return R_VXLAN_FLAGS;
  const innerLen = ulen - UDP_VXLAN_BYTES;
  if (innerLen < ETH_HLEN) return R_INNER_TRUNCATED;

  out.family = family;
  out.ipOff = ip;
  out.udpOff = udp;
  out.innerOff = vx + VXLAN_HEADER_BYTES;
  out.innerLen = innerLen;
  out.vni = (mem[vx + 4] << 16) | (mem[vx + 5] << 8) | mem[vx + 6];
  out.srcPort = word16(mem, udp);
  out.dstPort = word16(mem, udp + 2);
  const src = out.src;
  const dst = out.dst;
  if (family === 4) {
    src[0] = word32(mem, ip + 12);
    dst[0] = word32(mem, ip + 16);
    src[1] = src[2] = src[3] = 0;
    dst[1] = dst[2] = dst[3] = 0;
  } else {
    for (let i = 0; i < 4; i++) {
      src[i] = word32(mem, ip + 8 + 4 * i);
      dst[i] = word32(mem, ip + 24 + 4 * i);
    }
  }
  return DECAP_OK;
}

export interface VxlanEncapOptions {
  srcMac: Uint8Array;
  /** Next hop's MAC; zeros until setDstMac when absent. */
  dstMac?: Uint8Array;
  /** Outer source and destination addresses (text), both IPv4 or both IPv6. */
  src: string;
  dst: string;
  /** UDP destination port, usually VXLAN_DEFAULT_PORT. */
  dstPort: number;
  /** 24-bit VXLAN network identifier. */
  vni: number;
  /** IPv4 TTL / IPv6 hop limit, 1..255; default 64. */
  ttl?: number;
}

/**
 * Precomputed outer headers for one tunnel (one source, destination, port, VNI). write() copies
 * the template in front of an inner frame and fills in the per-packet fields:
 *
 *   IPv4: total length, identification (per-template 16-bit counter), header checksum (the static
 *         part is summed once here), UDP length and source port. UDP checksum 0 (RFC 7348 §5,
 *         as the Linux vxlan device sends by default). DF set, DSCP/ECN 0.
 *   IPv6: payload length, UDP length and source port, and the UDP checksum over pseudo-header +
 *         UDP + VXLAN + inner frame — IPv6 tunnels must send it (RFC 6935/6936 allow zero only by
 *         configuration, which we do not do); the constant part (addresses, next header, ports,
 *         VXLAN header) is summed once here. A computed 0 is sent as 0xffff (RFC 8200 §8.1).
 *         Traffic class 0 and flow label 0, as the Linux vxlan device sends by default (its
 *         `flowlabel` option defaults to a fixed 0); entropy for ECMP is in the UDP source port.
 *
 * The caller guarantees room: mem[off .. off + headerBytes + innerLen) lies inside mem, and
 * innerLen keeps the IP length fields within 16 bits (always true for an MTU-sized frame).
 */
/**
 * Where the outer UDP header of an encapsulated frame at mem[off] starts: after Ethernet and
 * IPv4 without options (ours) or IPv6 (VxlanEncapTemplate writes both).
 */
export function outerUdpOffset(mem: Uint8Array, off: number): number {
  return ETH_HLEN + (((mem[off + 12]! << 8) | mem[off + 13]!) === ETH_P_IP ? 20 : 40);
}

/** Bytes in front of every inner frame of a GSO train but the first: its VXLAN header (writeTrain). */
export const TRAIN_GAP = 8;

/** The packets a GSO train of `len` bytes at mem[off] (writeTrain, pieces of `gso` bytes) is cut into. */
export function trainPackets(mem: Uint8Array, off: number, len: number, gso: number): number {
  return Math.ceil((len - outerUdpOffset(mem, off) - 8) / gso);
}

export class VxlanEncapTemplate {
  readonly family: 4 | 6;
  readonly headerBytes: 50 | 70;
  private readonly hdr: Uint8Array;
  /** IPv4: sum of the header words that do not change per packet. */
  private readonly ipSum: number;
  /** IPv6: sum of the UDP checksum's constant inputs. */
  private readonly udpSum: number;
  /** The UDP pseudo-header sum without its length (trains: the partial checksum). */
  private readonly pseudoSum: number;
  private id = 0;

  constructor(o: VxlanEncapOptions) {
    const { src, dst, ttl } = checkEncapOptions(o);
    this.family = src.family;
    this.headerBytes = src.family === 4 ? OUTER_V4_BYTES : OUTER_V6_BYTES;
    const h = new Uint8Array(this.headerBytes);
    this.hdr = h;
    if (o.dstMac !== undefined) h.set(o.dstMac, 0);
    h.set(o.srcMac, 6);
    const ip = ETH_HLEN;
    let udp: number;
    let ipSum = 0;
    let udpSum = 0;
    if (src.family === 4) {
      put16(h, 12, ETH_P_IP);
      h[ip] = 0x45; // version 4, IHL 5
      h[ip + 1] = 0; // DSCP 0, ECN 0
      // ip+2 total length, ip+4 identification: per packet
      put16(h, ip + 6, 0x4000); // DF, offset 0
      h[ip + 8] = ttl;
      h[ip + 9] = IPPROTO_UDP;
      // ip+10 checksum: per packet
      h.set(src.bytes, ip + 12);
      h.set(dst.bytes, ip + 16);
      ipSum = sumWords(h, ip, 20, 0); // length, id and checksum are still zero
      udp = ip + 20;
    } else {
      put16(h, 12, ETH_P_IPV6);
      h[ip] = 0x60; // version 6, traffic class 0, flow label 0
      // ip+4 payload length: per packet
      h[ip + 6] = IPPROTO_UDP;
      h[ip + 7] = ttl;
      h.set(src.bytes, ip + 8);
      h.set(dst.bytes, ip + 24);
      udp = ip + 40;
    }
    // udp+0 source port, udp+4 length, udp+6 checksum: per packet
    put16(h, udp + 2, o.dstPort);
    put16(h, udp + 8, VXLAN_FLAGS_WORD >>> 16);
    h[udp + 12] = (o.vni >>> 16) & 0xff;
    h[udp + 13] = (o.vni >>> 8) & 0xff;
    h[udp + 14] = o.vni & 0xff;
    if (src.family === 6) {
      // Pseudo-header without its length + destination port + VXLAN header (source port,
      // length and checksum are zero in the template).
      udpSum = pseudoHeaderSumV6(src.bytes, dst.bytes, IPPROTO_UDP, 0) + sumWords(h, udp, 16, 0);
    }
    this.ipSum = ipSum;
    this.udpSum = udpSum;
    this.pseudoSum =
      src.family === 4 ? pseudoHeaderSumV4(src.bytes, dst.bytes, IPPROTO_UDP, 0) : pseudoHeaderSumV6(src.bytes, dst.bytes, IPPROTO_UDP, 0);
  }

  /**
   * Writes the outer headers of a GSO train (UDP segmentation offload, gso_type UDP_L4) at
   * mem[off .. off+headerBytes) for inner frames already laid out behind them:
   *
   *   off       +headerBytes
   *   │ outer eth│ip│udp│vxlan │ inner 0 │ vxlan │ inner 1 │ vxlan │ … │ inner k (≤ the others) │
   *                       └──────── chunk ──────┘└──── chunk ────┘
   *
   * `trainLen` bytes from off+headerBytes; every inner frame but the last is `chunk - 8` bytes.
   * The kernel (or the NIC) cuts the UDP payload every `chunk` bytes and gives each piece a copy
   * of the outer eth/IP/UDP headers, so each piece is one VXLAN packet: this writes the VXLAN
   * header in front of every inner frame, the lengths of the whole train, and the UDP checksum
   * field as CHECKSUM_PARTIAL wants it (the pseudo-header sum, completed per segment by the
   * kernel). Returns the train's outer length (headerBytes + trainLen). No allocation.
   */
  writeTrain(mem: Uint8Array, off: number, trainLen: number, chunk: number, srcPort: number): number {
    const total = this.write(mem, off, trainLen, srcPort, 0, false);
    const h = this.hdr;
    const vx = this.headerBytes - 8;
    // The first inner frame's VXLAN header came with the outer headers; the others get a copy.
    for (let at = off + vx + chunk; at < off + total; at += chunk) {
      for (let b = 0; b < 8; b++) mem[at + b] = h[vx + b]!;
    }
    const udp = off + vx - 8;
    put16(mem, udp + 6, foldSum(this.pseudoSum + trainLen + UDP_VXLAN_BYTES) & 0xffff);
    return total;
  }

  /**
   * Writes the outer headers at mem[off .. off+headerBytes) for an inner frame already at
   * mem[off+headerBytes .. +innerLen). Returns the outer frame length. No allocation.
   *
   * `innerCsum` ≠ 0: the inner frame's L4 checksum is still pending (Link.csum: csumStart << 16 |
   * csumOffset, from the inner frame's start; the field holds the pseudo-header sum). An IPv6
   * outer UDP checksum, which covers the inner frame, is then computed the way the kernel's local
   * checksum offload does (lco_csum): once the inner checksum is filled in, its L4 region sums to
   * the complement of the pseudo-header sum in the field, so only the bytes in front of it are
   * read. csumStart must be even (Ethernet, VLAN and IP headers are; the caller completes the
   * checksum of any other frame first).
   */
  write(mem: Uint8Array, off: number, innerLen: number, srcPort: number, innerCsum = 0, udpCsum = true): number {
    const h = this.hdr;
    mem.set(h, off);
    const ip = off + ETH_HLEN;
    const udpLen = innerLen + UDP_VXLAN_BYTES;
    const sport = srcPort & 0xffff;
    if (this.family === 4) {
      const total = udpLen + 20;
      const id = this.id;
      this.id = (id + 1) & 0xffff;
      put16(mem, ip + 2, total);
      put16(mem, ip + 4, id);
      put16(mem, ip + 10, ~foldSum(this.ipSum + total + id) & 0xffff);
      const udp = ip + 20;
      put16(mem, udp, sport);
      put16(mem, udp + 4, udpLen);
      // udp+6: checksum 0 from the template
      return OUTER_V4_BYTES + innerLen;
    }
    put16(mem, ip + 4, udpLen);
    const udp = ip + 40;
    put16(mem, udp, sport);
    put16(mem, udp + 4, udpLen);
    if (!udpCsum) return OUTER_V6_BYTES + innerLen; // a train's (writeTrain)
    // The length appears twice: in the pseudo-header and in the UDP header.
    const acc = this.udpSum + udpLen + udpLen + sport;
    const inner = off + OUTER_V6_BYTES;
    let sum: number;
    if (innerCsum === 0) {
      sum = sumWords(mem, inner, innerLen, acc);
    } else {
      const start = innerCsum >>> 16;
      const field = inner + start + (innerCsum & 0xffff);
      sum = sumWords(mem, inner, start, acc) + (~((mem[field]! << 8) | mem[field + 1]!) & 0xffff);
    }
    const ck = ~foldSum(sum) & 0xffff;
    put16(mem, udp + 6, ck === 0 ? 0xffff : ck);
    return OUTER_V6_BYTES + innerLen;
  }

  /** Changes the destination MAC the template writes (next hop changed). */
  setDstMac(mac: Uint8Array, macOff: number): void {
    const h = this.hdr;
    for (let i = 0; i < 6; i++) h[i] = mac[macOff + i];
  }
}

/** Validates the template options (constructor only); throws ERR_VXLAN_ENCAP. */
function checkEncapOptions(o: VxlanEncapOptions): { src: ParsedIP; dst: ParsedIP; ttl: number } {
  const fail = (what: string, cause?: unknown): never => {
    throw new PinholeError('ERR_VXLAN_ENCAP', `build a VXLAN encapsulation template: ${what}`, { cause });
  };
  if (typeof o !== 'object' || o === null) fail('options must be an object');
  const macOk = (m: unknown): boolean => m instanceof Uint8Array && m.length === 6;
  if (!macOk(o.srcMac)) fail('srcMac must be 6 bytes');
  if (o.dstMac !== undefined && !macOk(o.dstMac)) fail('dstMac must be 6 bytes');
  if (!Number.isInteger(o.dstPort) || o.dstPort < 1 || o.dstPort > 0xffff) fail(`dstPort ${o.dstPort} is not a port 1..65535`);
  if (!Number.isInteger(o.vni) || o.vni < 0 || o.vni > 0xffffff) fail(`vni ${o.vni} is not a 24-bit integer`);
  const ttl = o.ttl ?? 64;
  if (!Number.isInteger(ttl) || ttl < 1 || ttl > 255) fail(`ttl ${ttl} is not 1..255`);
  let src: ParsedIP;
  let dst: ParsedIP;
  try {
    src = parseIP(o.src);
    dst = parseIP(o.dst);
  } catch (e) {
    return fail(`bad address (src ${JSON.stringify(o.src)}, dst ${JSON.stringify(o.dst)})`, e);
  }
  if (src.family !== dst.family) fail(`src ${o.src} and dst ${o.dst} are of different families`);
  return { src, dst, ttl };
}

function put16(buf: Uint8Array, at: number, v: number): void {
  buf[at] = (v >>> 8) & 0xff;
  buf[at + 1] = v & 0xff;
}

// Flow hash: murmur3-style word mixing (each step is a bijection of the word being mixed, so two
// frames that differ only in one mixed word — e.g. their ports — never collide), then a finaliser
// that spreads every input bit over the 32 output bits.
const HASH_SEED = 0x5eed_7348;

function mixWord(h: number, word: number): number {
  let k = Math.imul(word, 0xcc9e2d51);
  k = (k << 15) | (k >>> 17);
  k = Math.imul(k, 0x1b873593);
  let x = h ^ k;
  x = (x << 13) | (x >>> 19);
  return (Math.imul(x, 5) + 0xe6546b64) | 0;
}

function finishHash(h: number, tag: number): number {
  let x = h ^ tag;
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35);
  // Signed: a uint32 above 2^31 - 1 is no small integer to V8, and flowHash (too large to be
  // inlined) would return it in a heap number allocated per packet — a scavenge a second under
  // TCP. The same 32 bits as an int32 come back in a register.
  return x ^ (x >>> 16);
}

function hasPorts(proto: number): boolean {
  return proto === IPPROTO_TCP || proto === IPPROTO_UDP || proto === IPPROTO_SCTP;
}

/**
 * Hash of the inner frame's flow: source and destination addresses, protocol and (for TCP, UDP,
 * SCTP) the ports for IPv4/IPv6; addresses and protocol for other IP; MACs and ethertype for
 * anything else. One 802.1Q/802.1ad tag is skipped (its VID is not hashed). IPv4 fragments hash
 * without ports so all fragments of a datagram take the same path; IPv6 hop-by-hop, routing and
 * destination-options headers are skipped (at most 4) to find the ports. A truncated frame hashes
 * what is there: without ports when the L4 header is cut, as non-IP when the IP header is cut, the
 * bytes present when not even the Ethernet header is complete. Not symmetric. Returns the 32 bits
 * as a signed int32 (`>>> 0` for the unsigned value; sourcePortOf takes either).
 */
export function flowHash(mem: Uint8Array, off: number, len: number): number {
  if (off < 0 || off > mem.length) return finishHash(HASH_SEED, 0);
  const end = len < mem.length - off ? off + len : mem.length;
  let h = HASH_SEED;
  if (end - off < ETH_HLEN) {
    for (let i = off; i < end; i++) h = mixWord(h, mem[i]);
    return finishHash(h, end - off);
  }
  let type = word16(mem, off + 12);
  let l3 = off + ETH_HLEN;
  if ((type === ETH_P_8021Q || type === ETH_P_8021AD) && end - off >= 18) {
    type = word16(mem, off + 16);
    l3 = off + 18;
  }
  if (type === ETH_P_IP && end - l3 >= 20 && mem[l3] >> 4 === 4) {
    const hlen = (mem[l3] & 0x0f) << 2;
    const proto = mem[l3 + 9];
    h = mixWord(h, word32(mem, l3 + 12));
    h = mixWord(h, word32(mem, l3 + 16));
    const l4 = l3 + hlen;
    if (hlen >= 20 && (word16(mem, l3 + 6) & 0x3fff) === 0 && hasPorts(proto) && end - l4 >= 4) {
      h = mixWord(h, word32(mem, l4));
    }
    return finishHash(h, 0x0400 | proto);
  }
  if (type === ETH_P_IPV6 && end - l3 >= 40 && mem[l3] >> 4 === 6) {
    for (let i = 8; i < 40; i += 4) h = mixWord(h, word32(mem, l3 + i));
    let nh = mem[l3 + 6];
    let p = l3 + 40;
    for (let n = 0; n < 4 && (nh === IPPROTO_HOPOPTS || nh === IPPROTO_ROUTING || nh === IPPROTO_DSTOPTS) && end - p >= 8; n++) {
      nh = mem[p];
      p += (mem[p + 1] + 1) << 3;
    }
    if (hasPorts(nh) && end - p >= 4) h = mixWord(h, word32(mem, p));
    return finishHash(h, 0x0600 | nh);
  }
  // Not IP, or the IP header is cut: destination and source MACs, then the ethertype.
  h = mixWord(h, word32(mem, off));
  h = mixWord(h, word32(mem, off + 4));
  h = mixWord(h, word32(mem, off + 8));
  return finishHash(h, 0x10000 | type);
}

/**
 * Maps a hash into [min, max] like the kernel's udp_flow_src_port: min + floor(hash * (max - min + 1)
 * / 2^32). The product stays below 2^48, so the double arithmetic is exact. Hash 0 → min,
 * 0xffffffff → max.
 */
export function sourcePortOf(hash: number, min: number = VXLAN_SPORT_MIN, max: number = VXLAN_SPORT_MAX): number {
  return min + Math.floor(((hash >>> 0) * (max - min + 1)) / 0x1_0000_0000);
}
