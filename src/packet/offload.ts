/**
 * Checksum and segmentation offload for frames read from a workload interface (the host side of a
 * pod's veth) through an AF_PACKET socket with PACKET_VNET_HDR: what the kernel leaves undone for a
 * device that claims checksum offload and GSO, done here in software the way the kernel itself
 * would (skb_checksum_help, tcp_gso_segment, __udp_gso_segment, inet_gso_segment, ipv6_gso_segment).
 *
 * The virtio_net_hdr (include/uapi/linux/virtio_net.h) in front of each received frame, in host
 * byte order (af_packet's vio_le() is true on little-endian hosts, the only ones we run on):
 *
 *    0        1         2        4          6            8             10
 *   +--------+---------+--------+----------+------------+-------------+
 *   | flags  | gso_type| hdr_len| gso_size | csum_start | csum_offset |  u8 u8 u16 u16 u16 u16
 *   +--------+---------+--------+----------+------------+-------------+
 *
 *   flags:    NEEDS_CSUM (1): CHECKSUM_PARTIAL, the 16-bit field at csum_start + csum_offset holds
 *             only the pseudo-header sum; the sum of everything from csum_start to the end of the
 *             frame must be folded, complemented and stored there. DATA_VALID (2): nothing to do.
 *   gso_type: NONE (0), TCPV4 (1), TCPV6 (4), UDP_L4 (5), possibly | ECN (0x80: CWR is set in the
 *             super-frame). UFO (3) is never reported by af_packet (virtio_net_hdr_from_skb refuses
 *             it); other bits (tunnel GSO, the proposed AccECN flag, whose segments keep CWR) are
 *             refused here, as are encapsulated super-frames reported with their inner type (veth
 *             has NETIF_F_GSO_ENCAP_ALL): TCP in a tunnel has an outer protocol other than TCP
 *             (protocol-mismatch), UDP in a UDP tunnel has csum_start at the inner header
 *             (bad-checksum-offset when begin() is given csum_start), so the outer payload is never
 *             cut at the wrong places.
 *   gso_size: the MSS, payload bytes per segment (TCP: after the TCP header with its options; UDP_L4:
 *             after the 8-byte UDP header).
 *   csum_start is counted from the first byte of the Ethernet frame: tpacket_rcv/packet_rcv push the
 *   skb back to its MAC header for SOCK_RAW, and virtio_net_hdr_from_skb stores
 *   skb_checksum_start_offset() (from skb->data) plus a vlan_hlen that af_packet passes as 0. A VLAN
 *   tag that is in the frame bytes is therefore counted; one kept aside in skb->vlan_tci (veth
 *   offloads VLAN insertion) is not in the frame at all. hdr_len is a hint (skb_headlen in older
 *   kernels, the header length or 0 in newer ones) and is not used.
 *
 * A GSO super-frame (up to ~64 KiB; BIG TCP IPv4 beyond that, with total length 0):
 *
 *   +-----+--------+---------------------+----------------------+---------------------------------+
 *   | Eth | [VLAN] | IPv4 (IHL*4) / IPv6 | TCP (doff*4) / UDP 8 | payload: mss, mss, ..., the rest |
 *   +-----+--------+---------------------+----------------------+---------------------------------+
 *    0     12       l3 (14 or 18)         l4                     hdrLen
 *
 * Segment i is the same headers followed by payload [i*mss, min((i+1)*mss, payload)), with
 *   IPv4: total length of the segment, id = first id + i (mod 2^16; the kernel keeps ids fixed only
 *         for SKB_GSO_TCP_FIXEDID, which the vnet header cannot carry), header checksum recomputed;
 *   IPv6: payload length of the segment;
 *   TCP:  seq = first seq + i*mss, FIN and PSH only on the last segment, CWR only on the first
 *         (tcp_gso_segment), checksum over the segment;
 *   UDP:  length of the segment, checksum over the segment, 0 sent as 0xffff (CSUM_MANGLED_0).
 * A super-frame whose payload fits one segment yields that one frame with its checksums completed.
 * IPv4 options and TCP options (timestamps, SACK) are copied into every segment, as skb_segment does.
 *
 * Refused, with a negative result naming the reason (OFFLOAD_DROP_REASONS, code = -(index + 1)):
 * more than one VLAN tag, IPv6 extension headers, IPv4 fragments, a GSO type that does not match the
 * IP version or protocol, length fields that disagree with the frame, csum_start/csum_offset outside
 * the frame. Nothing here throws, whatever the bytes.
 *
 * SCTP: veth offloads SCTP's CRC32c too (NETIF_F_SCTP_CRC), and af_packet reports it as NEEDS_CSUM
 * like any other partial checksum. completeChecksum recognises SCTP (protocol 132, csum_start at its
 * header, csum_offset 8) and stores the CRC32c (RFC 9260 §6.8, RFC 3309) instead of an Internet checksum.
 *
 * Hot path (completeChecksum, Segmenter.begin/write/segmentLength run per frame): no allocation,
 * closures, try, for..of or object literals; results are numbers; Segmenter keeps its parse in
 * fields. Checksums use sumWordsFast / copySumWords (src/packet/checksum.ts), which copy and sum
 * 32-bit words: writing a segment at an offset congruent (mod 4) to the super-frame's own offset in
 * its buffer saves the word shifting (about 0.6 µs instead of 1 µs per 1400-byte segment, bench/offload.ts).
 */
import { copyWithin } from '../util/copy-within.ts';
import { copySumWords, finishChecksum, foldSum, sumWords, sumWordsFast } from './checksum.ts';
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
  IPPROTO_ESP,
  IPPROTO_AH,
  IPPROTO_DSTOPTS,
  IPPROTO_SCTP,
} from './proto.ts';

export const VNET_HDR_LEN = 10;
export const VNET_F_NEEDS_CSUM = 1;
export const VNET_F_DATA_VALID = 2;
export const VNET_GSO_NONE = 0;
export const VNET_GSO_TCPV4 = 1;
export const VNET_GSO_UDP = 3;
export const VNET_GSO_TCPV6 = 4;
export const VNET_GSO_UDP_L4 = 5;
export const VNET_GSO_ECN = 0x80;

/** Why a frame was refused; the result code of reason index n is -(n + 1). Names suit counter labels. */
export const OFFLOAD_DROP_REASONS = [
  'truncated', // the frame ends before a header, a length field's end or the checksum field
  'bad-checksum-offset', // csum_start/csum_offset outside the frame, csum_offset odd; GSO: csum_start not at L4
  'unsupported-gso', // gso_type other than TCPV4, TCPV6, UDP_L4 (| ECN)
  'bad-gso-size', // gso_size 0, or so large that a segment's IP length would not fit 16 bits
  'not-ip', // GSO frame whose ethertype (after at most one VLAN tag) is not IPv4/IPv6
  'bad-ip-header', // IP version, IHL, or a length field that disagrees with the frame
  'ip-fragment', // GSO on an IPv4 fragment
  'ipv6-ext-header', // GSO on IPv6 with an extension header
  'protocol-mismatch', // gso_type does not match the IP version or the L4 protocol
  'bad-l4-header', // TCP data offset < 5, UDP length ≠ the datagram
  'too-many-segments', // more segments than the Segmenter was sized for
  'bad-segment', // write/segmentLength: index outside [0, count) (or no successful begin)
  'no-room', // write: the destination is too small for the segment
] as const;
export type OffloadDropReason = (typeof OFFLOAD_DROP_REASONS)[number];

export const OFFLOAD_TRUNCATED = -1;
export const OFFLOAD_BAD_CHECKSUM_OFFSET = -2;
export const OFFLOAD_UNSUPPORTED_GSO = -3;
export const OFFLOAD_BAD_GSO_SIZE = -4;
export const OFFLOAD_NOT_IP = -5;
export const OFFLOAD_BAD_IP_HEADER = -6;
export const OFFLOAD_IP_FRAGMENT = -7;
export const OFFLOAD_IPV6_EXT_HEADER = -8;
export const OFFLOAD_PROTOCOL_MISMATCH = -9;
export const OFFLOAD_BAD_L4_HEADER = -10;
export const OFFLOAD_TOO_MANY_SEGMENTS = -11;
export const OFFLOAD_BAD_SEGMENT = -12;
export const OFFLOAD_NO_ROOM = -13;

/** The reason name of a negative result (undefined for results ≥ 0). Not for the per-packet path. */
export function offloadDropReason(code: number): OffloadDropReason | undefined {
  return code < 0 ? OFFLOAD_DROP_REASONS[-code - 1] : undefined;
}

const IPPROTO_MH = 135;
const TCP_FIN = 0x01;
const TCP_PSH = 0x08;
const TCP_CWR = 0x80;
const SCTP_CSUM_OFFSET = 8;

// ---- virtio_net_hdr fields (host order = little-endian) ----

export function vnetFlags(b: Uint8Array, off: number): number {
  return b[off];
}
export function vnetGsoType(b: Uint8Array, off: number): number {
  return b[off + 1];
}
export function vnetHdrLen(b: Uint8Array, off: number): number {
  return b[off + 2] | (b[off + 3] << 8);
}
export function vnetGsoSize(b: Uint8Array, off: number): number {
  return b[off + 4] | (b[off + 5] << 8);
}
export function vnetCsumStart(b: Uint8Array, off: number): number {
  return b[off + 6] | (b[off + 7] << 8);
}
export function vnetCsumOffset(b: Uint8Array, off: number): number {
  return b[off + 8] | (b[off + 9] << 8);
}

/** Writes a virtio_net_hdr at b[off, off+10) (for TX with PACKET_VNET_HDR, and tests). */
export function writeVnetHeader(
  b: Uint8Array,
  off: number,
  flags: number,
  gsoType: number,
  hdrLen: number,
  gsoSize: number,
  csumStart: number,
  csumOffset: number,
): void {
  b[off] = flags;
  b[off + 1] = gsoType;
  b[off + 2] = hdrLen & 0xff;
  b[off + 3] = (hdrLen >>> 8) & 0xff;
  b[off + 4] = gsoSize & 0xff;
  b[off + 5] = (gsoSize >>> 8) & 0xff;
  b[off + 6] = csumStart & 0xff;
  b[off + 7] = (csumStart >>> 8) & 0xff;
  b[off + 8] = csumOffset & 0xff;
  b[off + 9] = (csumOffset >>> 8) & 0xff;
}

// ---- CHECKSUM_PARTIAL ----

/**
 * Completes a CHECKSUM_PARTIAL frame b[frame, frame+len) in place, as skb_checksum_help does: the
 * sum of bytes [csumStart, len) (the checksum field holds the pseudo-header sum) is folded,
 * complemented and stored at csumStart + csumOffset, 0 as 0xffff. SCTP gets its CRC32c (see the
 * header comment). Returns 0 or a negative drop code.
 */
export function completeChecksum(b: Uint8Array, frame: number, len: number, csumStart: number, csumOffset: number): number {
  if (!(frame >= 0 && len >= 0 && frame + len <= b.length)) return OFFLOAD_TRUNCATED;
  if (!(csumStart >= 0 && csumOffset >= 0) || (csumOffset & 1) !== 0 || csumStart + csumOffset + 2 > len) {
    return OFFLOAD_BAD_CHECKSUM_OFFSET;
  }
  const start = frame + csumStart;
  const field = start + csumOffset;
  if (csumOffset === SCTP_CSUM_OFFSET && csumStart + 12 <= len && l4ProtocolAt(b, frame, len, csumStart) === IPPROTO_SCTP) {
    b[field] = 0;
    b[field + 1] = 0;
    b[field + 2] = 0;
    b[field + 3] = 0;
    const crc = crc32c(b, start, frame + len);
    b[field] = crc & 0xff;
    b[field + 1] = (crc >>> 8) & 0xff;
    b[field + 2] = (crc >>> 16) & 0xff;
    b[field + 3] = crc >>> 24;
    return 0;
  }
  let c = finishChecksum(sumWordsFast(b, start, len - csumStart));
  if (c === 0) c = 0xffff;
  b[field] = c >>> 8;
  b[field + 1] = c & 0xff;
  return 0;
}

/** The IP protocol of the L4 header if it starts exactly at frame + l4 (no IPv6 extension headers), else -1. */
function l4ProtocolAt(b: Uint8Array, frame: number, len: number, l4: number): number {
  if (len < ETH_HLEN) return -1;
  let type = (b[frame + 12] << 8) | b[frame + 13];
  let l3 = ETH_HLEN;
  if (type === ETH_P_8021Q || type === ETH_P_8021AD) {
    if (len < ETH_HLEN + 4) return -1;
    type = (b[frame + 16] << 8) | b[frame + 17];
    l3 = ETH_HLEN + 4;
  }
  if (type === ETH_P_IP) {
    if (len < l3 + 20 || b[frame + l3] >>> 4 !== 4) return -1;
    return l3 + (b[frame + l3] & 0x0f) * 4 === l4 ? b[frame + l3 + 9] : -1;
  }
  if (type === ETH_P_IPV6) {
    if (len < l3 + 40 || b[frame + l3] >>> 4 !== 6) return -1;
    return l3 + 40 === l4 ? b[frame + l3 + 6] : -1;
  }
  return -1;
}

const CRC32C_TABLE = new Int32Array(256);
for (let n = 0; n < 256; n++) {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
  CRC32C_TABLE[n] = c;
}

/** CRC32c (Castagnoli, reflected 0x82f63b78) of b[start, end); SCTP stores it least significant byte first. */
export function crc32c(b: Uint8Array, start: number, end: number): number {
  let c = -1;
  for (let i = start; i < end; i++) c = CRC32C_TABLE[(c ^ b[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

// ---- GSO ----

/**
 * Software GSO for one super-frame at a time. begin() parses and validates it and keeps the layout
 * in fields; write(i) builds segment i. The super-frame must stay unchanged until the last write.
 */
export class Segmenter {
  readonly maxSegments: number;
  /** Segments of the current super-frame (0 after a failed begin). */
  count = 0;

  private src: Uint8Array = new Uint8Array(0);
  private frame = 0;
  private hdrLen = 0; // Ethernet through L4 header, relative to the frame
  private l3 = 0;
  private l4 = 0;
  private ihl = 0; // IPv4 header bytes; 0 for IPv6
  private tcp = false;
  private mss = 0;
  private payload = 0;
  private pseudo = 0; // addresses + protocol of the pseudo-header (length added per segment)
  private ipId = 0;
  private seq = 0;
  private tcpFlags = 0;

  constructor(maxSegments = 128) {
    this.maxSegments = maxSegments;
  }

  /**
   * Parses the super-frame b[frame, frame+len) with the vnet header's gsoType and gsoSize. Returns
   * the number of segments (≥ 1) or a negative drop code. Pass the vnet header's csum_start too
   * (when NEEDS_CSUM is set): like tcp_gso_segment and __udp_gso_segment, a checksum start other
   * than the L4 header is refused (bad-checksum-offset). That is what tells an encapsulated UDP_L4
   * super-frame (outer UDP, csum_start at the inner header) from a plain one; -1 skips the check.
   */
  begin(b: Uint8Array, frame: number, len: number, gsoType: number, gsoSize: number, csumStart = -1): number {
    this.count = 0;
    if (!(frame >= 0 && len >= 0 && frame + len <= b.length)) return OFFLOAD_TRUNCATED;
    const base = gsoType & ~VNET_GSO_ECN;
    if (base !== VNET_GSO_TCPV4 && base !== VNET_GSO_TCPV6 && base !== VNET_GSO_UDP_L4) return OFFLOAD_UNSUPPORTED_GSO;
    if (!(gsoSize > 0)) return OFFLOAD_BAD_GSO_SIZE;
    if (len < ETH_HLEN) return OFFLOAD_TRUNCATED;
    let type = (b[frame + 12] << 8) | b[frame + 13];
    let l3 = ETH_HLEN;
    if (type === ETH_P_8021Q || type === ETH_P_8021AD) {
      if (len < ETH_HLEN + 4) return OFFLOAD_TRUNCATED;
      type = (b[frame + 16] << 8) | b[frame + 17];
      l3 = ETH_HLEN + 4;
    }
    let l4: number;
    let proto: number;
    let pseudo: number;
    let ihl = 0;
    if (type === ETH_P_IP) {
      if (base === VNET_GSO_TCPV6) return OFFLOAD_PROTOCOL_MISMATCH;
      const ip = frame + l3;
      if (len < l3 + 20) return OFFLOAD_TRUNCATED;
      ihl = (b[ip] & 0x0f) * 4;
      if (b[ip] >>> 4 !== 4 || ihl < 20) return OFFLOAD_BAD_IP_HEADER;
      if (len < l3 + ihl) return OFFLOAD_TRUNCATED;
      const totLen = (b[ip + 2] << 8) | b[ip + 3];
      const have = len - l3;
      // BIG TCP (IPv4 GSO beyond 64 KiB) sends total length 0; otherwise it must be the frame.
      if (totLen !== have && !(totLen === 0 && have > 0xffff)) return totLen > have ? OFFLOAD_TRUNCATED : OFFLOAD_BAD_IP_HEADER;
      if ((((b[ip + 6] << 8) | b[ip + 7]) & 0x3fff) !== 0) return OFFLOAD_IP_FRAGMENT;
      proto = b[ip + 9];
      l4 = l3 + ihl;
      pseudo = sumWords(b, ip + 12, 8, proto);
      this.ipId = (b[ip + 4] << 8) | b[ip + 5];
    } else if (type === ETH_P_IPV6) {
      if (base === VNET_GSO_TCPV4) return OFFLOAD_PROTOCOL_MISMATCH;
      const ip = frame + l3;
      if (len < l3 + 40) return OFFLOAD_TRUNCATED;
      if (b[ip] >>> 4 !== 6) return OFFLOAD_BAD_IP_HEADER;
      proto = b[ip + 6];
      if (isIPv6ExtensionHeader(proto)) return OFFLOAD_IPV6_EXT_HEADER;
      const payloadLen = (b[ip + 4] << 8) | b[ip + 5];
      const have = len - l3 - 40;
      if (payloadLen !== have) return payloadLen > have ? OFFLOAD_TRUNCATED : OFFLOAD_BAD_IP_HEADER;
      l4 = l3 + 40;
      pseudo = sumWords(b, ip + 8, 32, proto);
    } else {
      return OFFLOAD_NOT_IP;
    }
    const th = frame + l4;
    let hdrLen: number;
    if (base === VNET_GSO_UDP_L4) {
      if (proto !== IPPROTO_UDP) return OFFLOAD_PROTOCOL_MISMATCH;
      if (len < l4 + 8) return OFFLOAD_TRUNCATED;
      const udpLen = (b[th + 4] << 8) | b[th + 5];
      if (udpLen !== len - l4) return udpLen > len - l4 ? OFFLOAD_TRUNCATED : OFFLOAD_BAD_L4_HEADER;
      hdrLen = l4 + 8;
      this.tcp = false;
    } else {
      if (proto !== IPPROTO_TCP) return OFFLOAD_PROTOCOL_MISMATCH;
      if (len < l4 + 20) return OFFLOAD_TRUNCATED;
      const doff = (b[th + 12] >>> 4) * 4;
      if (doff < 20) return OFFLOAD_BAD_L4_HEADER;
      if (len < l4 + doff) return OFFLOAD_TRUNCATED;
      hdrLen = l4 + doff;
      this.tcp = true;
      this.seq = ((b[th + 4] << 24) | (b[th + 5] << 16) | (b[th + 6] << 8) | b[th + 7]) >>> 0;
      this.tcpFlags = b[th + 13];
    }
    if (csumStart >= 0 && csumStart !== l4) return OFFLOAD_BAD_CHECKSUM_OFFSET;
    const payload = len - hdrLen;
    // The IPv4 total length / IPv6 payload length of the largest segment must fit 16 bits.
    if (hdrLen - l3 - (ihl === 0 ? 40 : 0) + Math.min(payload, gsoSize) > 0xffff) return OFFLOAD_BAD_GSO_SIZE;
    const count = payload <= gsoSize ? 1 : Math.ceil(payload / gsoSize);
    if (count > this.maxSegments) return OFFLOAD_TOO_MANY_SEGMENTS;
    this.src = b;
    this.frame = frame;
    this.hdrLen = hdrLen;
    this.l3 = l3;
    this.l4 = l4;
    this.ihl = ihl;
    this.mss = gsoSize;
    this.payload = payload;
    this.pseudo = pseudo;
    this.count = count;
    return count;
  }

  /** Length segment i will have, or OFFLOAD_BAD_SEGMENT. */
  segmentLength(i: number): number {
    if (!(i >= 0 && i < this.count) || i !== Math.floor(i)) return OFFLOAD_BAD_SEGMENT;
    return this.hdrLen + (i === this.count - 1 ? this.payload - i * this.mss : this.mss);
  }

  /**
   * Writes segment i (0 ≤ i < count, any order) as a complete Ethernet frame at d[off]; returns its
   * length or a negative drop code. d may be the super-frame's own buffer if the regions do not
   * overlap, except that segment 0 may be written in place over the super-frame's first bytes
   * (off === frame in the same array): every field a segment changes is rebuilt from begin()'s parse.
   */
  write(i: number, d: Uint8Array, off: number): number {
    return this.emit(i, d, off, false);
  }

  /**
   * write() without the L4 checksum: the field gets the pseudo-header sum instead (the kernel's
   * CHECKSUM_PARTIAL convention; `partialCsum` says where summing starts and the field lies), for a
   * sender that has the kernel checksum the segment (AF_XDP TX metadata) or completes it itself
   * (completeChecksum). The payload is then a plain copy: copyWithin, the runtime's memmove, when
   * d and the super-frame are the same view of one buffer.
   */
  writePartial(i: number, d: Uint8Array, off: number): number {
    return this.emit(i, d, off, true);
  }

  /** Of the last super-frame begun: csumStart << 16 | csumOffset, relative to a segment's first byte. */
  get partialCsum(): number {
    return (this.l4 << 16) | (this.tcp ? 16 : 6);
  }

  private emit(i: number, d: Uint8Array, off: number, partial: boolean): number {
    if (!(i >= 0 && i < this.count) || i !== Math.floor(i)) return OFFLOAD_BAD_SEGMENT;
    const last = i === this.count - 1;
    const segPayload = last ? this.payload - i * this.mss : this.mss;
    const hdrLen = this.hdrLen;
    const segLen = hdrLen + segPayload;
    if (!(off >= 0 && off + segLen <= d.length)) return OFFLOAD_NO_ROOM;
    const src = this.src;
    const frame = this.frame;
    for (let k = 0; k < hdrLen; k++) d[off + k] = src[frame + k];

    const ip = off + this.l3;
    const ihl = this.ihl;
    if (ihl !== 0) {
      const totLen = segLen - this.l3;
      const id = (this.ipId + i) & 0xffff;
      d[ip + 2] = totLen >>> 8;
      d[ip + 3] = totLen & 0xff;
      d[ip + 4] = id >>> 8;
      d[ip + 5] = id & 0xff;
      d[ip + 10] = 0;
      d[ip + 11] = 0;
      const c = finishChecksum(sumWords(d, ip, ihl));
      d[ip + 10] = c >>> 8;
      d[ip + 11] = c & 0xff;
    } else {
      const payloadLen = segLen - this.l3 - 40;
      d[ip + 4] = payloadLen >>> 8;
      d[ip + 5] = payloadLen & 0xff;
    }

    const th = off + this.l4;
    const l4Len = segLen - this.l4;
    let field: number;
    if (this.tcp) {
      const seq = (this.seq + i * this.mss) >>> 0;
      d[th + 4] = seq >>> 24;
      d[th + 5] = (seq >>> 16) & 0xff;
      d[th + 6] = (seq >>> 8) & 0xff;
      d[th + 7] = seq & 0xff;
      let flags = this.tcpFlags;
      if (!last) flags &= ~(TCP_FIN | TCP_PSH);
      if (i !== 0) flags &= ~TCP_CWR;
      d[th + 13] = flags;
      field = th + 16;
    } else {
      d[th + 4] = l4Len >>> 8;
      d[th + 5] = l4Len & 0xff;
      field = th + 6;
    }
    if (partial) {
      const p = foldSum(this.pseudo + l4Len);
      d[field] = p >>> 8;
      d[field + 1] = p & 0xff;
      const from = frame + hdrLen + i * this.mss;
      const to = off + hdrLen;
      if (src === d) copyWithin.call(d, to, from, from + segPayload);
      else for (let k = 0; k < segPayload; k++) d[to + k] = src[from + k]!;
      return segLen;
    }
    d[field] = 0;
    d[field + 1] = 0;
    let sum = sumWords(d, th, hdrLen - this.l4, this.pseudo + l4Len);
    const from = frame + hdrLen + i * this.mss;
    const to = off + hdrLen;
    if (src === d) {
      // One buffer (a super-frame in a copy slot): memmove, then a word sum — measured 1.7–2.9×
      // faster than the combined copy-and-sum loop, which must shift when the two are not
      // 4-byte aligned alike (train segments alternate).
      copyWithin.call(d, to, from, from + segPayload);
      sum = sumWordsFast(d, to, segPayload, sum);
    } else {
      sum = copySumWords(src, from, d, to, segPayload, sum);
    }
    let c = finishChecksum(sum);
    if (c === 0 && !this.tcp) c = 0xffff;
    d[field] = c >>> 8;
    d[field + 1] = c & 0xff;
    return segLen;
  }
}

function isIPv6ExtensionHeader(nh: number): boolean {
  return (
    nh === IPPROTO_HOPOPTS ||
    nh === IPPROTO_ROUTING ||
    nh === IPPROTO_FRAGMENT ||
    nh === IPPROTO_DSTOPTS ||
    nh === IPPROTO_AH ||
    nh === IPPROTO_ESP ||
    nh === IPPROTO_MH ||
    nh === 139 || // HIP
    nh === 140 || // shim6
    nh === 253 ||
    nh === 254 // experimental (RFC 3692)
  );
}
