/**
 * The pinhole policy: which frames the dataplane takes (verdict `xsk`) and which stay with the
 * kernel (verdict `kernel`). Three implementations must agree on every frame:
 *   - the XDP program assembled by `buildPinhole()` (kernel, verifier-checked),
 *   - the pure TypeScript reference classifier `classifyFrame()` (reference.ts),
 *   - the classic BPF socket filter used by the AF_PACKET uplink (bpf/cbpf/pinhole.ts).
 *
 * Walk, in order (offsets relative to the start of the frame; "need N" means: if fewer than N
 * bytes remain from the current offset, the verdict is kernel/`truncated`):
 *
 *   Ethernet: need 14. ethertype at 12.
 *   VLAN: while ethertype is 0x8100 (802.1Q) or 0x88a8 (802.1ad):
 *         if 2 tags were already consumed → kernel/`vlan-depth`;
 *         need 4 more; the inner ethertype is at tag+2; consume the tag.
 *   ethertype 0x0806 → kernel/`arp`; 0x0800 → IPv4; 0x86dd → IPv6; else → kernel/`non-ip`.
 *
 *   IPv4 (l3 = start of header): need 20. version (high nibble of byte 0) ≠ 4 or IHL < 5
 *         → kernel/`bad-header`. need IHL*4 → else `truncated`.
 *         (frag_off & 0x3fff) ≠ 0 (MF set or offset ≠ 0) → kernel/`fragment`.
 *         protocol: 1 → `icmp`, 6 → `tcp`, 17 → UDP at l3 + IHL*4, else → `other-l4`.
 *
 *   IPv6: need 40. version ≠ 6 → kernel/`bad-header`. nh = byte 6, off = l3 + 40.
 *         Extension walk, at most MAX_IPV6_EXT_HEADERS headers:
 *           nh ∈ {0 hop-by-hop, 43 routing, 60 destination options}:
 *               if MAX_IPV6_EXT_HEADERS were already consumed → kernel/`ext-limit`;
 *               need 2 at off; nh = byte off; off += (byte off+1 + 1) * 8.
 *           nh = 44 (fragment) → kernel/`fragment`.
 *         nh: 58 → `icmpv6`, 6 → `tcp`, 17 → UDP at off, else → `other-l4`.
 *
 *   UDP: need 8. destination port (big-endian, at +2) not in the port set → kernel/`udp-port`.
 *        If the spec filters addresses: the IPv4 destination (l3+16, 4 bytes) or IPv6 destination
 *        (l3+24, 16 bytes) not in the address set → kernel/`address`.
 *        Otherwise → xsk/`tunnel`: bpf_redirect_map(xsks_map, rx_queue_index, XDP_PASS).
 *
 * Ports and addresses live in BPF hash maps, so they change at runtime without a reload.
 * Every frame increments exactly one per-CPU counter, indexed by its reason.
 *
 * Clarifications (where the walk above could be read two ways, the reading that is simplest in
 * BPF; the reference classifier and the corpus in this directory follow them):
 *   - The frame is [data, data_end) as delivered (no FCS). Every "need N" compares against that
 *     length; IPv4 total length, IPv6 payload length and UDP length are never read, so trailing
 *     bytes (Ethernet padding) change nothing. Checksums, TTL/hop limit, source addresses, the
 *     source port and the destination MAC are not read either.
 *   - There are no need checks beyond those written: `arp`, `fragment`, `icmp`, `icmpv6`, `tcp` and
 *     `other-l4` are decided on the ethertype / flag / protocol bytes alone, even when the rest of
 *     the header is missing.
 *   - VLAN: "need 4 more" is counted from the end of the previous ethertype field (14 + 4·tags).
 *     The TCI (VID, PCP, DEI) is not read; VID 0 priority tags count as tags. 0x8100 and 0x88a8 are
 *     interchangeable at every depth; 0x9100 is not a tag (→ `non-ip`). The depth check happens when
 *     a third TPID is read, before any need check: a 22-byte frame whose bytes 20..21 are a TPID
 *     after two tags is `vlan-depth`.
 *   - IPv4: one check gives `bad-header` for version ≠ 4 or IHL < 5, after need 20 and before need
 *     IHL·4. The fragment test ignores DF (0x4000) and the reserved bit (0x8000); it comes before
 *     the protocol, so a fragment of any protocol is `fragment`.
 *   - IPv6: 0, 43 and 60 are walked wherever they appear and however often (hop-by-hop need not be
 *     first). Only their first two bytes are checked ("need 2"); a header whose length runs past
 *     the end is caught by the next need check (the next walked header's need 2, or UDP's need 8)
 *     — or by none: a too-long header followed by next header 58 is `icmpv6`. A fragment header is
 *     `fragment` whatever its offset and M flag (atomic fragments included), after up to
 *     MAX_IPV6_EXT_HEADERS walked headers. `ext-limit` is given on reading a walked type when
 *     MAX_IPV6_EXT_HEADERS were already consumed, before its need check. Other extension headers
 *     (AH 51, ESP 50, mobility 135, HIP 139, shim6 140, ...) are not walked: `other-l4`.
 *   - UDP: the port is checked before the address. Addresses are compared as raw bytes per family;
 *     an IPv4-mapped IPv6 address (::ffff:a.b.c.d) in `addresses` is an IPv6 address and matches only
 *     IPv6 frames. An empty port set means no frame is `tunnel`; with `filterAddresses` and no
 *     address of a family, no frame of that family is `tunnel`.
 */

/** Reasons, in counter-index order. Index 0 is the only `xsk` verdict. Do not reorder: pinned
 *  counter maps outlive processes. Append only. */
export const REASONS = [
  'tunnel',
  'truncated',
  'vlan-depth',
  'arp',
  'non-ip',
  'bad-header',
  'fragment',
  'icmp',
  'icmpv6',
  'tcp',
  'other-l4',
  'ext-limit',
  'udp-port',
  'address',
] as const;

export type Reason = (typeof REASONS)[number];
export type Verdict = 'xsk' | 'kernel';

export const REASON_INDEX: Readonly<Record<Reason, number>> = Object.fromEntries(REASONS.map((r, i) => [r, i])) as Record<Reason, number>;

export function verdictOf(reason: Reason): Verdict {
  return reason === 'tunnel' ? 'xsk' : 'kernel';
}

export const MAX_VLAN_TAGS = 2;
export const MAX_IPV6_EXT_HEADERS = 6;

export const ETH_P_IP = 0x0800;
export const ETH_P_ARP = 0x0806;
export const ETH_P_IPV6 = 0x86dd;
export const ETH_P_8021Q = 0x8100;
export const ETH_P_8021AD = 0x88a8;

export const IPPROTO_HOPOPTS = 0;
export const IPPROTO_ICMP = 1;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;
export const IPPROTO_ROUTING = 43;
export const IPPROTO_FRAGMENT = 44;
export const IPPROTO_ICMPV6 = 58;
export const IPPROTO_DSTOPTS = 60;

/** What the pinhole program is built from. Plain data: serialisable, comparable. */
export interface PinholeSpec {
  /** UDP destination ports redirected to the dataplane (initial content of the port map). */
  ports: number[];
  /**
   * Tunnel addresses of this node (IPv4 dotted or IPv6 text). When `filterAddresses` is true, a
   * UDP frame is redirected only if its destination is in this set (IPv4 and IPv6 separately:
   * an empty IPv6 set means no IPv6 frame is redirected).
   */
  addresses: string[];
  /** Compile in the destination-address check. Defaults to `addresses.length > 0`. */
  filterAddresses?: boolean;
}

/** The run-time sets a classifier consults: ports and addresses as the maps hold them. */
export interface PolicyState {
  ports: ReadonlySet<number>;
  filterAddresses: boolean;
  /** IPv4 destinations as 32-bit unsigned integers (big-endian interpretation of the 4 bytes). */
  ipv4: ReadonlySet<number>;
  /** IPv6 destinations as 32 lowercase hex characters (the 16 bytes, no separators). */
  ipv6: ReadonlySet<string>;
}

export interface Classification {
  verdict: Verdict;
  reason: Reason;
}
