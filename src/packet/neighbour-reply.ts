/**
 * Answering the workload's neighbour resolution when pinhole is its layer-3 gateway (WireGuard
 * connections carry IP packets, the workload's veth carries Ethernet frames): an ARP request
 * (RFC 826) or an IPv6 neighbour solicitation (RFC 4861 §7.2.3) for any address other than the
 * requester's own gets a reply saying "that address is at <our MAC>", so every packet the
 * workload sends off its own address comes to us. Also the opposite direction: an ARP request or
 * a solicitation *from* us, to learn the workload's MAC when it is not known yet.
 *
 * Pure functions over caller buffers; no allocation. Each returns the length of the frame it
 * wrote into `out` at `outOff` (0: nothing to answer).
 *
 *   ARP over Ethernet (28 bytes after the 14-byte header)
 *    0 htype=1  2 ptype=0x0800  4 hlen=6  5 plen=4  6 op (1 request, 2 reply)
 *    8 sender MAC  14 sender IP  18 target MAC  24 target IP
 *
 *   Neighbour solicitation / advertisement (ICMPv6 135 / 136, after a 40-byte IPv6 header)
 *    0 type  1 code=0  2 checksum  4 reserved / NA flags (R S O)  8 target (16)  24 options:
 *    type 1 source link-layer address / type 2 target link-layer address, length 1 (8 bytes)
 */
import { finishChecksum, sumWords } from './checksum.ts';

export const ETH_ARP = 0x0806;
export const ETH_IPV4 = 0x0800;
export const ETH_IPV6 = 0x86dd;
const ICMPV6 = 58;
const ND_NS = 135;
const ND_NA = 136;
export const ARP_FRAME_LEN = 42;
export const NA_FRAME_LEN = 86;
export const NS_FRAME_LEN = 86;

function copy6(src: Uint8Array, s: number, dst: Uint8Array, d: number): void {
  for (let i = 0; i < 6; i++) dst[d + i] = src[s + i]!;
}

function equal(a: Uint8Array, ao: number, b: Uint8Array, bo: number, n: number): boolean {
  for (let i = 0; i < n; i++) if (a[ao + i] !== b[bo + i]) return false;
  return true;
}

function zero(a: Uint8Array, o: number, n: number): boolean {
  for (let i = 0; i < n; i++) if (a[o + i] !== 0) return false;
  return true;
}

/** ICMPv6 checksum over the IPv6 pseudo-header and the message at ip + 40 (length `n`). */
function icmp6Checksum(b: Uint8Array, ip: number, n: number): number {
  let s = sumWords(b, ip + 8, 32); // source and destination
  s += n + ICMPV6;
  s = sumWords(b, ip + 40, n, s);
  return finishChecksum(s);
}

/**
 * An ARP request in buf[off, off + len) → the reply from `mac` into out[outOff]. No answer for
 * replies, probes (sender IP 0.0.0.0), gratuitous ARP (target = sender) or malformed frames.
 */
export function answerArp(buf: Uint8Array, off: number, len: number, mac: Uint8Array, out: Uint8Array, outOff: number): number {
  if (len < ARP_FRAME_LEN || ((buf[off + 12]! << 8) | buf[off + 13]!) !== ETH_ARP) return 0;
  const a = off + 14;
  if (buf[a] !== 0 || buf[a + 1] !== 1 || buf[a + 2] !== 0x08 || buf[a + 3] !== 0 || buf[a + 4] !== 6 || buf[a + 5] !== 4) return 0;
  if (buf[a + 6] !== 0 || buf[a + 7] !== 1) return 0;
  if (zero(buf, a + 14, 4) || equal(buf, a + 14, buf, a + 24, 4)) return 0;
  const o = outOff;
  copy6(buf, a + 8, out, o); // to the requester
  copy6(mac, 0, out, o + 6);
  out[o + 12] = 0x08;
  out[o + 13] = 0x06;
  const r = o + 14;
  out[r] = 0;
  out[r + 1] = 1;
  out[r + 2] = 0x08;
  out[r + 3] = 0;
  out[r + 4] = 6;
  out[r + 5] = 4;
  out[r + 6] = 0;
  out[r + 7] = 2;
  // Read the request's addresses before writing (buf and out may be the same buffer elsewhere).
  for (let i = 0; i < 4; i++) {
    const spa = buf[a + 14 + i]!;
    const tpa = buf[a + 24 + i]!;
    out[r + 14 + i] = tpa;
    out[r + 24 + i] = spa;
  }
  copy6(buf, a + 8, out, r + 18);
  copy6(mac, 0, out, r + 8);
  return ARP_FRAME_LEN;
}

/**
 * Where an IPv6 frame is a neighbour-discovery message (router/neighbour solicitation or
 * advertisement, redirect: ICMPv6 133..137 straight after the IPv6 header): link-scope traffic
 * that never enters the tunnel.
 */
export function isNeighbourDiscovery(buf: Uint8Array, off: number, len: number): boolean {
  if (len < 14 + 40 + 4 || buf[off + 14 + 6] !== ICMPV6) return false;
  const t = buf[off + 54]!;
  return t >= 133 && t <= 137;
}

/**
 * A neighbour solicitation in buf[off, off + len) → the advertisement from `mac` into
 * out[outOff]. No answer for duplicate address detection (source ::), a target that is the
 * sender's own address, a multicast target, or anything malformed (hop limit ≠ 255, code ≠ 0,
 * short).
 */
export function answerNeighbourSolicitation(
  buf: Uint8Array,
  off: number,
  len: number,
  mac: Uint8Array,
  out: Uint8Array,
  outOff: number,
): number {
  if (len < 14 + 40 + 24 || ((buf[off + 12]! << 8) | buf[off + 13]!) !== ETH_IPV6) return 0;
  const ip = off + 14;
  if (buf[ip]! >> 4 !== 6 || buf[ip + 6] !== ICMPV6 || buf[ip + 7] !== 255) return 0;
  const m = ip + 40;
  if (buf[m] !== ND_NS || buf[m + 1] !== 0) return 0;
  const plen = (buf[ip + 4]! << 8) | buf[ip + 5]!;
  if (plen < 24 || 14 + 40 + plen > len) return 0;
  if (zero(buf, ip + 8, 16) || buf[m + 8] === 0xff || equal(buf, ip + 8, buf, m + 8, 16)) return 0;
  // The requester's MAC: its source link-layer address option, else the frame's source.
  let reqMac = off + 6;
  for (let p = m + 24; p + 8 <= m + plen;) {
    const olen = buf[p + 1]! * 8;
    if (olen === 0) return 0; // RFC 4861 §4.6: a zero-length option is invalid
    if (buf[p] === 1 && olen >= 8) reqMac = p + 2;
    p += olen;
  }
  const o = outOff;
  const oip = o + 14;
  const om = oip + 40;
  // Addresses first (out may alias buf only if the caller chooses so; we never do).
  for (let i = 0; i < 16; i++) {
    out[oip + 8 + i] = buf[m + 8 + i]!; // source = the target asked about
    out[oip + 24 + i] = buf[ip + 8 + i]!; // destination = the solicitor
    out[om + 8 + i] = buf[m + 8 + i]!;
  }
  copy6(buf, reqMac, out, o);
  copy6(mac, 0, out, o + 6);
  out[o + 12] = 0x86;
  out[o + 13] = 0xdd;
  out[oip] = 0x60;
  out[oip + 1] = 0;
  out[oip + 2] = 0;
  out[oip + 3] = 0;
  out[oip + 4] = 0;
  out[oip + 5] = 32;
  out[oip + 6] = ICMPV6;
  out[oip + 7] = 255;
  out[om] = ND_NA;
  out[om + 1] = 0;
  out[om + 2] = 0;
  out[om + 3] = 0;
  out[om + 4] = 0x60; // Solicited, Override (not a router)
  out[om + 5] = 0;
  out[om + 6] = 0;
  out[om + 7] = 0;
  out[om + 24] = 2; // target link-layer address
  out[om + 25] = 1;
  copy6(mac, 0, out, om + 26);
  const ck = icmp6Checksum(out, oip, 32);
  out[om + 2] = ck >> 8;
  out[om + 3] = ck & 0xff;
  return NA_FRAME_LEN;
}

/**
 * An ARP request from `mac` asking who has `target` (4 bytes at buf[targetOff]), claiming to be
 * `sender` (4 bytes at buf[senderOff]), broadcast. Used to learn the workload's MAC.
 */
export function writeArpRequest(
  mac: Uint8Array,
  buf: Uint8Array,
  senderOff: number,
  targetOff: number,
  out: Uint8Array,
  outOff: number,
): number {
  const o = outOff;
  for (let i = 0; i < 6; i++) out[o + i] = 0xff;
  copy6(mac, 0, out, o + 6);
  out[o + 12] = 0x08;
  out[o + 13] = 0x06;
  const r = o + 14;
  out[r] = 0;
  out[r + 1] = 1;
  out[r + 2] = 0x08;
  out[r + 3] = 0;
  out[r + 4] = 6;
  out[r + 5] = 4;
  out[r + 6] = 0;
  out[r + 7] = 1;
  copy6(mac, 0, out, r + 8);
  for (let i = 0; i < 4; i++) {
    out[r + 14 + i] = buf[senderOff + i]!;
    out[r + 24 + i] = buf[targetOff + i]!;
  }
  for (let i = 0; i < 6; i++) out[r + 18 + i] = 0;
  return ARP_FRAME_LEN;
}

/**
 * A neighbour solicitation from `mac` for `target` (16 bytes at buf[targetOff]) with source
 * address `source` (16 bytes at buf[sourceOff]), to the target's solicited-node multicast group.
 */
export function writeNeighbourSolicitation(
  mac: Uint8Array,
  buf: Uint8Array,
  sourceOff: number,
  targetOff: number,
  out: Uint8Array,
  outOff: number,
): number {
  const o = outOff;
  const ip = o + 14;
  const m = ip + 40;
  out[o] = 0x33;
  out[o + 1] = 0x33;
  out[o + 2] = 0xff;
  out[o + 3] = buf[targetOff + 13]!;
  out[o + 4] = buf[targetOff + 14]!;
  out[o + 5] = buf[targetOff + 15]!;
  copy6(mac, 0, out, o + 6);
  out[o + 12] = 0x86;
  out[o + 13] = 0xdd;
  out[ip] = 0x60;
  out[ip + 1] = 0;
  out[ip + 2] = 0;
  out[ip + 3] = 0;
  out[ip + 4] = 0;
  out[ip + 5] = 32;
  out[ip + 6] = ICMPV6;
  out[ip + 7] = 255;
  for (let i = 0; i < 16; i++) {
    out[ip + 8 + i] = buf[sourceOff + i]!;
    out[m + 8 + i] = buf[targetOff + i]!;
  }
  // ff02::1:ffXX:XXXX
  for (let i = 0; i < 16; i++) out[ip + 24 + i] = 0;
  out[ip + 24] = 0xff;
  out[ip + 25] = 0x02;
  out[ip + 35] = 0x01;
  out[ip + 36] = 0xff;
  out[ip + 37] = buf[targetOff + 13]!;
  out[ip + 38] = buf[targetOff + 14]!;
  out[ip + 39] = buf[targetOff + 15]!;
  out[m] = ND_NS;
  for (let i = 1; i < 8; i++) out[m + i] = 0;
  out[m + 24] = 1; // source link-layer address
  out[m + 25] = 1;
  copy6(mac, 0, out, m + 26);
  const ck = icmp6Checksum(out, ip, 32);
  out[m + 2] = ck >> 8;
  out[m + 3] = ck & 0xff;
  return NS_FRAME_LEN;
}
