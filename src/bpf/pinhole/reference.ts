/**
 * The reference classifier: the pinhole policy of policy.ts in plain TypeScript. The XDP program
 * and the AF_PACKET socket filter are checked against it frame by frame, so it follows the walk in
 * policy.ts literally — same order of checks, same "need N" against the real frame length — rather
 * than what a well-formed packet would allow.
 *
 * `classifyAt` is the hot-path form: it reads buf[off, off+len) in place, returns the reason's
 * counter index (REASONS order), and allocates nothing. `classifyFrame` wraps it and returns a
 * shared, frozen Classification per reason.
 *
 * Address sets are searched linearly with a hoisted callback: a node has a handful of tunnel
 * addresses, and building a lookup key (a 32-character string for IPv6; a heap number for IPv4
 * values ≥ 2^30 in V8) would allocate per frame.
 */
import { PacketError } from '../../packet/errors.ts';
import { parseIP } from '../../packet/ip.ts';
import {
  ETH_P_8021AD,
  ETH_P_8021Q,
  ETH_P_ARP,
  ETH_P_IP,
  ETH_P_IPV6,
  IPPROTO_DSTOPTS,
  IPPROTO_FRAGMENT,
  IPPROTO_HOPOPTS,
  IPPROTO_ICMP,
  IPPROTO_ICMPV6,
  IPPROTO_ROUTING,
  IPPROTO_TCP,
  IPPROTO_UDP,
  MAX_IPV6_EXT_HEADERS,
  MAX_VLAN_TAGS,
  REASON_INDEX,
  REASONS,
  verdictOf,
} from './policy.ts';
import type { Classification, PinholeSpec, PolicyState } from './policy.ts';

const TUNNEL = REASON_INDEX['tunnel'];
const TRUNCATED = REASON_INDEX['truncated'];
const VLAN_DEPTH = REASON_INDEX['vlan-depth'];
const ARP = REASON_INDEX['arp'];
const NON_IP = REASON_INDEX['non-ip'];
const BAD_HEADER = REASON_INDEX['bad-header'];
const FRAGMENT = REASON_INDEX['fragment'];
const ICMP = REASON_INDEX['icmp'];
const ICMPV6 = REASON_INDEX['icmpv6'];
const TCP = REASON_INDEX['tcp'];
const OTHER_L4 = REASON_INDEX['other-l4'];
const EXT_LIMIT = REASON_INDEX['ext-limit'];
const UDP_PORT = REASON_INDEX['udp-port'];
const ADDRESS = REASON_INDEX['address'];

/** One frozen Classification per reason, indexed like REASONS. */
export const CLASSIFICATIONS: readonly Readonly<Classification>[] = REASONS.map((reason) =>
  Object.freeze({ verdict: verdictOf(reason), reason }),
);

/**
 * The run-time sets for `spec`: ports validated as integers 0..65535 (ERR_INVALID_PORT), addresses
 * parsed by family (ERR_INVALID_ADDRESS). An IPv4-mapped IPv6 address stays IPv6.
 */
export function policyState(spec: PinholeSpec): PolicyState {
  const ports = new Set<number>();
  for (const p of spec.ports) {
    if (!Number.isInteger(p) || p < 0 || p > 0xffff) {
      throw new PacketError('ERR_INVALID_PORT', `build pinhole policy: port ${String(p)} is not an integer in 0..65535`);
    }
    ports.add(p);
  }
  const ipv4 = new Set<number>();
  const ipv6 = new Set<string>();
  for (const text of spec.addresses) {
    const { family, bytes } = parseIP(text);
    if (family === 4) ipv4.add(((bytes[0] << 24) | (bytes[1] << 16) | (bytes[2] << 8) | bytes[3]) >>> 0);
    else ipv6.add(toHex(bytes));
  }
  return { ports, filterAddresses: spec.filterAddresses ?? spec.addresses.length > 0, ipv4, ipv6 };
}

function toHex(bytes: Uint8Array): string {
  let out = '';
  for (let i = 0; i < bytes.length; i++) out += bytes[i].toString(16).padStart(2, '0');
  return out;
}

/** Classifies a whole frame. The result is shared and frozen: do not mutate it. */
export function classifyFrame(frame: Uint8Array, state: PolicyState): Classification {
  return CLASSIFICATIONS[classifyAt(frame, 0, frame.length, state)];
}

/**
 * Classifies the frame buf[off, off+len) and returns its reason index (REASONS order; 0 is the only
 * `xsk` verdict). Allocation-free. Throws RangeError if the range is outside buf.
 */
export function classifyAt(buf: Uint8Array, off: number, len: number, state: PolicyState): number {
  if (!(off >= 0 && len >= 0 && off + len <= buf.length)) {
    throw new RangeError(`classify ${len} bytes at ${off} of a ${buf.length}-byte buffer`);
  }
  const end = off + len;

  // Ethernet: need 14.
  if (len < 14) return TRUNCATED;
  let type = (buf[off + 12] << 8) | buf[off + 13];
  let p = off + 14;

  // VLAN tags. The depth check comes before the need check: a third TPID is refused even when
  // the frame ends right after it.
  let tags = 0;
  while (type === ETH_P_8021Q || type === ETH_P_8021AD) {
    if (tags === MAX_VLAN_TAGS) return VLAN_DEPTH;
    if (end - p < 4) return TRUNCATED;
    type = (buf[p + 2] << 8) | buf[p + 3];
    p += 4;
    tags++;
  }

  if (type === ETH_P_ARP) return ARP;
  if (type === ETH_P_IP) return classifyIPv4(buf, p, end, state);
  if (type === ETH_P_IPV6) return classifyIPv6(buf, p, end, state);
  return NON_IP;
}

function classifyIPv4(buf: Uint8Array, l3: number, end: number, state: PolicyState): number {
  if (end - l3 < 20) return TRUNCATED;
  const vihl = buf[l3];
  const ihl = vihl & 0x0f;
  if (vihl >> 4 !== 4 || ihl < 5) return BAD_HEADER;
  const hlen = ihl * 4;
  if (end - l3 < hlen) return TRUNCATED;
  // MF or a non-zero offset; DF (0x4000) and the reserved bit (0x8000) do not make a fragment.
  if ((((buf[l3 + 6] << 8) | buf[l3 + 7]) & 0x3fff) !== 0) return FRAGMENT;
  const proto = buf[l3 + 9];
  if (proto === IPPROTO_ICMP) return ICMP;
  if (proto === IPPROTO_TCP) return TCP;
  if (proto !== IPPROTO_UDP) return OTHER_L4;
  const l4 = l3 + hlen;
  if (end - l4 < 8) return TRUNCATED;
  if (!state.ports.has((buf[l4 + 2] << 8) | buf[l4 + 3])) return UDP_PORT;
  if (state.filterAddresses && !hasIPv4(state.ipv4, buf, l3 + 16)) return ADDRESS;
  return TUNNEL;
}

function classifyIPv6(buf: Uint8Array, l3: number, end: number, state: PolicyState): number {
  if (end - l3 < 40) return TRUNCATED;
  if (buf[l3] >> 4 !== 6) return BAD_HEADER;
  let nh = buf[l3 + 6];
  let p = l3 + 40;
  let walked = 0;
  while (nh === IPPROTO_HOPOPTS || nh === IPPROTO_ROUTING || nh === IPPROTO_DSTOPTS) {
    if (walked === MAX_IPV6_EXT_HEADERS) return EXT_LIMIT;
    // Only the two bytes read are checked; a header running past the end is caught by the next
    // need check (another extension header's or UDP's) — or by none, for e.g. an ICMPv6 verdict.
    if (end - p < 2) return TRUNCATED;
    nh = buf[p];
    p += (buf[p + 1] + 1) * 8;
    walked++;
  }
  if (nh === IPPROTO_FRAGMENT) return FRAGMENT;
  if (nh === IPPROTO_ICMPV6) return ICMPV6;
  if (nh === IPPROTO_TCP) return TCP;
  if (nh !== IPPROTO_UDP) return OTHER_L4;
  if (end - p < 8) return TRUNCATED;
  if (!state.ports.has((buf[p + 2] << 8) | buf[p + 3])) return UDP_PORT;
  if (state.filterAddresses && !hasIPv6(state.ipv6, buf, l3 + 24)) return ADDRESS;
  return TUNNEL;
}

// Scratch for the set searches: module-level so the hoisted callbacks need no closure per frame.
const EMPTY = new Uint8Array(0);
const scratchV4 = new Uint32Array(1);
let scratchBuf: Uint8Array = EMPTY;
let scratchAt = 0;
let found = false;

function matchV4(value: number): void {
  if (value === scratchV4[0]) found = true;
}

function hasIPv4(set: ReadonlySet<number>, buf: Uint8Array, at: number): boolean {
  if (set.size === 0) return false;
  scratchV4[0] = (buf[at] << 24) | (buf[at + 1] << 16) | (buf[at + 2] << 8) | buf[at + 3];
  found = false;
  set.forEach(matchV4);
  return found;
}

/** Nibble value of an ASCII hex digit (either case), -1 otherwise. */
const HEX = new Int8Array(128).fill(-1);
for (let i = 0; i < 10; i++) HEX[0x30 + i] = i;
for (let i = 0; i < 6; i++) HEX[0x61 + i] = HEX[0x41 + i] = 10 + i;

function matchV6(hex: string): void {
  if (found || hex.length !== 32) return;
  for (let i = 0; i < 16; i++) {
    const c1 = hex.charCodeAt(2 * i);
    const c2 = hex.charCodeAt(2 * i + 1);
    const hi = c1 < 128 ? HEX[c1] : -1;
    const lo = c2 < 128 ? HEX[c2] : -1;
    if (hi < 0 || lo < 0 || ((hi << 4) | lo) !== scratchBuf[scratchAt + i]) return;
  }
  found = true;
}

function hasIPv6(set: ReadonlySet<string>, buf: Uint8Array, at: number): boolean {
  if (set.size === 0) return false;
  scratchBuf = buf;
  scratchAt = at;
  found = false;
  set.forEach(matchV6);
  scratchBuf = EMPTY; // do not keep the caller's buffer alive
  return found;
}
