/**
 * A deterministic frame corpus for the differential test between the XDP pinhole program, the
 * reference classifier (reference.ts) and the classic BPF socket filter (bpf/cbpf/pinhole.ts). `corpus()` yields, in order:
 *
 *   (a) the named edge cases of `edgeCases()`: every reason of policy.ts reached several ways and
 *       every boundary of the walk (VLAN depth, IHL, fragment bits, extension-header limit, ...);
 *   (b) every proper prefix of every edge case (lengths 0 .. len-1; the full frame is in (a));
 *   (c) random frames from a seeded PRNG: valid tunnel frames, mutated (byte flips, truncation,
 *       extension, ethertype / protocol / next-header swaps, header-field rewrites, VLAN tag
 *       insertion and removal), plus other traffic and raw noise.
 *
 * It stops after exactly `count` frames: (a) and (b) come first (`fixedCorpusSize()` tells how many
 * there are for given options), the rest is (c). Equal options give an identical sequence. Frames
 * are at most 1514 bytes, except a few long IPv6 extension-header cases and about 1% of the random
 * ones (up to ~3000 bytes).
 *
 * To reach every reason the options need at least one port, and `address` is only reachable when
 * addresses are filtered (by default: when `addresses` is not empty).
 */
import { buildFrame, TPID_8021AD, TPID_8021Q } from '../../src/packet/build.ts';
import type { FrameSpec, IPv4Spec, IPv6ExtSpec, IPv6Spec, VlanSpec } from '../../src/packet/build.ts';
import { formatIPv4, formatIPv6, parseIP } from '../../src/packet/ip.ts';
import { policyState } from '../../src/bpf/pinhole/reference.ts';
import type { PinholeSpec, PolicyState, Reason } from '../../src/bpf/pinhole/policy.ts';

export interface CorpusOptions extends PinholeSpec {
  seed: number;
  /** Total number of frames yielded. */
  count: number;
}

export interface EdgeCase {
  name: string;
  frame: Uint8Array;
  /** The reason policy.ts gives, when the case was built to reach one. */
  expected?: Reason;
}

/** A small, fast, seedable PRNG: a SplitMix-style counter with a murmur3-style finaliser. */
export class Rng {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** Uniform uint32. */
  next(): number {
    this.state = (this.state + 0x9e3779b9) >>> 0;
    let z = this.state;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return (z ^ (z >>> 16)) >>> 0;
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor((this.next() / 0x1_0000_0000) * n);
  }

  /** Integer in [lo, hi]. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }

  chance(p: number): boolean {
    return this.next() / 0x1_0000_0000 < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }

  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.next() & 0xff;
    return out;
  }
}

/** How many frames parts (a) and (b) contribute for these options. */
export function fixedCorpusSize(opts: PinholeSpec): number {
  let n = 0;
  for (const c of edgeCases(opts)) n += 1 + c.frame.length;
  return n;
}

export function* corpus(opts: CorpusOptions): Generator<Uint8Array> {
  let left = opts.count;
  if (left <= 0) return;
  const cases = edgeCases(opts);
  for (const c of cases) {
    yield c.frame;
    if (--left === 0) return;
  }
  for (const c of cases) {
    for (let len = 0; len < c.frame.length; len++) {
      yield c.frame.slice(0, len);
      if (--left === 0) return;
    }
  }
  const ctx = context(opts);
  const rng = new Rng(opts.seed);
  while (left > 0) {
    yield randomFrame(rng, ctx);
    left--;
  }
}

// ---------------------------------------------------------------------------------------------
// Shared context: which ports and addresses are in or out of the sets, and what UDP gets.

interface Context {
  state: PolicyState;
  ports: number[];
  /** A port in the set (or, with an empty set, one that is not: such frames get `udp-port`). */
  port: number;
  /** A port not in the set. */
  otherPort: number;
  v4In: string;
  v4Out: string;
  v6In: string;
  v6Out: string;
  v4Addresses: string[];
  v6Addresses: string[];
}

const SRC4 = '198.18.0.100';
const SRC6 = '2001:db8::100';

function context(opts: PinholeSpec): Context {
  const state = policyState(opts);
  const ports = [...state.ports].sort((a, b) => a - b);
  let otherPort = 9; // discard; moved along until it is outside the set
  while (state.ports.has(otherPort)) otherPort++;
  const v4Addresses: string[] = [];
  const v6Addresses: string[] = [];
  for (const a of opts.addresses) {
    const p = parseIP(a);
    if (p.family === 4) v4Addresses.push(formatIPv4(p.bytes));
    else v6Addresses.push(formatIPv6(p.bytes));
  }
  return {
    state,
    ports,
    port: ports.length > 0 ? ports[0] : otherPort,
    otherPort,
    v4In: v4Addresses[0] ?? '198.18.0.1',
    v4Out: outside(state, 4, '198.19.255.254'),
    v6In: v6Addresses[0] ?? '2001:db8::1',
    v6Out: outside(state, 6, '2001:db8:ffff::fffe'),
    v4Addresses,
    v6Addresses,
  };
}

/** An address near `start` that is not in the state's set of that family. */
function outside(state: PolicyState, family: 4 | 6, start: string): string {
  const bytes = parseIP(start).bytes;
  for (;;) {
    const text = family === 4 ? formatIPv4(bytes) : formatIPv6(bytes);
    if (!inSet(state, family, bytes)) return text;
    bytes[bytes.length - 1]--;
  }
}

function inSet(state: PolicyState, family: 4 | 6, bytes: Uint8Array): boolean {
  if (family === 4) return state.ipv4.has(((bytes[0] << 24) | (bytes[1] << 16) | (bytes[2] << 8) | bytes[3]) >>> 0);
  let hex = '';
  for (const b of bytes) hex += b.toString(16).padStart(2, '0');
  return state.ipv6.has(hex);
}

/** The reason policy.ts gives a complete UDP datagram with this port and destination. */
function udpReason(ctx: Context, family: 4 | 6, dport: number, dst: string): Reason {
  if (!ctx.state.ports.has(dport)) return 'udp-port';
  if (ctx.state.filterAddresses && !inSet(ctx.state, family, parseIP(dst).bytes)) return 'address';
  return 'tunnel';
}

// ---------------------------------------------------------------------------------------------
// (a) Edge cases.

/** A VXLAN header (RFC 7348: flags with I set, VNI 42) and a few bytes of inner frame. */
const VXLAN_PAYLOAD = Uint8Array.of(0x08, 0, 0, 0, 0, 0, 42, 0, 0x02, 0, 0, 0, 0, 0x0a, 0x02, 0, 0, 0, 0, 0x0b);

function udp4(ctx: Context, over: { ipv4?: Partial<IPv4Spec>; dport?: number; dst?: string } = {}): FrameSpec {
  return {
    ipv4: { src: SRC4, dst: over.dst ?? ctx.v4In, id: 0x1234, ...over.ipv4 },
    udp: { sport: 40000, dport: over.dport ?? ctx.port },
    payload: VXLAN_PAYLOAD,
  };
}

function udp6(ctx: Context, over: { ipv6?: Partial<IPv6Spec>; dport?: number; dst?: string } = {}): FrameSpec {
  return {
    ipv6: { src: SRC6, dst: over.dst ?? ctx.v6In, flowLabel: 0x12345, ...over.ipv6 },
    udp: { sport: 40000, dport: over.dport ?? ctx.port },
    payload: VXLAN_PAYLOAD,
  };
}

/** IPv4 option bytes of exactly n (a multiple of 4): router alert, then NOPs, then End of Options. */
function ipv4Options(n: number): Uint8Array {
  const out = new Uint8Array(n).fill(1); // NOP
  if (n >= 4) out.set([0x94, 0x04, 0, 0]); // router alert (RFC 2113)
  if (n >= 8) out.set([0x07, 0x03, 0x04], 4); // empty record route (RFC 791)
  if (n > 0) out[n - 1] = 0; // end of options
  return out;
}

const EXT_KINDS = [0, 43, 60] as const;
const EXT_NAMES: Record<number, string> = { 0: 'hbh', 43: 'rt', 60: 'dst' };

/** Named frames, each built to reach a known reason of policy.ts for these options. */
export function edgeCases(opts: PinholeSpec): EdgeCase[] {
  const ctx = context(opts);
  const cases: EdgeCase[] = [];
  const add = (name: string, frame: Uint8Array, expected?: Reason): void => {
    cases.push(expected === undefined ? { name, frame } : { name, frame, expected });
  };
  const build = (name: string, spec: FrameSpec, expected?: Reason): Uint8Array => {
    const frame = buildFrame(spec);
    add(name, frame, expected);
    return frame;
  };
  /** Adds the first `len` bytes of the frame built from spec. */
  const cut = (name: string, spec: FrameSpec, len: number, expected: Reason): void => {
    add(name, buildFrame(spec).slice(0, len), expected);
  };
  const tunnel4 = udpReason(ctx, 4, ctx.port, ctx.v4In);
  const tunnel6 = udpReason(ctx, 6, ctx.port, ctx.v6In);

  // Ethernet.
  add('eth/empty', new Uint8Array(0), 'truncated');
  cut('eth/13-bytes', udp4(ctx), 13, 'truncated');
  cut('eth/14-bytes-ipv4', udp4(ctx), 14, 'truncated');
  cut('eth/14-bytes-ipv6', udp6(ctx), 14, 'truncated');
  build('eth/14-bytes-arp', { eth: { type: 0x0806 } }, 'arp');
  build('eth/14-bytes-experimental', { eth: { type: 0x88b5 } }, 'non-ip');
  for (const type of [0x0000, 0x05dc, 0x0801, 0x0805, 0x0842, 0x86dc, 0x86de, 0x8847, 0x88cc, 0x88e5, 0x8906, 0x9100, 0xffff]) {
    build(`eth/ethertype-${hex4(type)}`, { eth: { type }, payload: new Uint8Array(46).fill(0x45) }, 'non-ip');
  }
  // An IPv4 packet behind a non-IP ethertype is still non-IP.
  build('eth/ipv4-behind-0x0801', { ...udp4(ctx), eth: { type: 0x0801 } }, 'non-ip');

  // VLAN tags: every combination of 0..3 tags with both TPIDs, over several inner frames.
  const inners: Array<[string, FrameSpec, Reason]> = [
    ['udp4', udp4(ctx), tunnel4],
    ['udp6', udp6(ctx), tunnel6],
    ['arp', { arp: { senderIp: SRC4, targetIp: ctx.v4In } }, 'arp'],
    ['tcp4', { ipv4: { src: SRC4, dst: ctx.v4In }, tcp: { sport: 40000, dport: 22 } }, 'tcp'],
    ['other', { eth: { type: 0x88cc }, payload: new Uint8Array(30) }, 'non-ip'],
  ];
  for (let depth = 0; depth <= 3; depth++) {
    for (let mask = 0; mask < 1 << depth; mask++) {
      const vlans: VlanSpec[] = [];
      let label = '';
      for (let i = 0; i < depth; i++) {
        const ad = (mask >> i) & 1;
        vlans.push({ tpid: ad ? TPID_8021AD : TPID_8021Q, vid: 10 * (i + 1), pcp: i });
        label += ad ? '-ad' : '-q';
      }
      for (const [innerName, inner, reason] of inners) {
        build(`vlan/${depth}${label}/${innerName}`, { ...inner, vlans }, depth > 2 ? 'vlan-depth' : reason);
      }
    }
  }
  const q = (vid: number, tpid = TPID_8021Q): VlanSpec => ({ tpid, vid });
  build('vlan/vid-0-priority-tag', { ...udp4(ctx), vlans: [{ vid: 0, pcp: 5 }] }, tunnel4);
  build('vlan/vid-4095-dei', { ...udp4(ctx), vlans: [{ vid: 4095, dei: true, pcp: 7 }] }, tunnel4);
  build('vlan/4-tags', { ...udp4(ctx), vlans: [q(1), q(2), q(3), q(4)] }, 'vlan-depth');
  build('vlan/9100-outer-is-not-a-tag', { ...udp4(ctx), vlans: [q(1, 0x9100)] }, 'non-ip');
  cut('vlan/1-tag-cut-in-tci', { ...udp4(ctx), vlans: [q(1)] }, 16, 'truncated');
  cut('vlan/1-tag-cut-before-inner-type', { ...udp4(ctx), vlans: [q(1)] }, 17, 'truncated');
  cut('vlan/1-tag-arp-18-bytes', { arp: { senderIp: SRC4, targetIp: ctx.v4In }, vlans: [q(1)] }, 18, 'arp');
  cut('vlan/1-tag-ipv4-18-bytes', { ...udp4(ctx), vlans: [q(1)] }, 18, 'truncated');
  cut('vlan/2-tags-cut-in-second', { ...udp4(ctx), vlans: [q(1), q(2)] }, 21, 'truncated');
  // Depth is checked before length: 22 bytes ending with a third TPID are refused as too deep.
  cut('vlan/3rd-tpid-at-frame-end', { ...udp4(ctx), vlans: [q(1), q(2), q(3)] }, 22, 'vlan-depth');
  cut('vlan/3rd-tpid-ad-at-frame-end', { ...udp4(ctx), vlans: [q(1), q(2), q(3, TPID_8021AD)] }, 22, 'vlan-depth');

  // ARP.
  build('arp/request', { arp: { senderIp: SRC4, targetIp: ctx.v4In } }, 'arp');
  build('arp/reply', { arp: { op: 2, senderIp: ctx.v4In, targetIp: SRC4, targetMac: '02:00:00:00:00:01' } }, 'arp');
  build('arp/gratuitous-padded', { arp: { senderIp: SRC4, targetIp: SRC4 }, padTo: 60 }, 'arp');
  cut('arp/cut-body', { arp: { senderIp: SRC4, targetIp: ctx.v4In } }, 20, 'arp');

  // IPv4 header: version and IHL, checked after need 20 and before need IHL*4.
  for (const version of [0, 1, 3, 5, 6, 7, 15]) {
    build(`ipv4/version-${version}`, udp4(ctx, { ipv4: { version } }), 'bad-header');
  }
  for (let ihl = 0; ihl < 5; ihl++) build(`ipv4/ihl-${ihl}`, udp4(ctx, { ipv4: { ihl } }), 'bad-header');
  cut('ipv4/ihl-0-exactly-20-bytes', udp4(ctx, { ipv4: { ihl: 0 } }), 34, 'bad-header');
  cut('ipv4/19-bytes', udp4(ctx), 33, 'truncated');
  cut('ipv4/bad-version-19-bytes', udp4(ctx, { ipv4: { version: 6 } }), 33, 'truncated');
  build('ipv4/ipv6-packet-behind-0x0800', { ...udp6(ctx), eth: { type: 0x0800 } }, 'bad-header');
  for (let ihl = 5; ihl <= 15; ihl++) {
    const options = ipv4Options((ihl - 5) * 4);
    build(`ipv4/ihl-${ihl}/udp`, udp4(ctx, { ipv4: { options } }), tunnel4);
    build(`ipv4/ihl-${ihl}/udp-other-port`, udp4(ctx, { ipv4: { options }, dport: ctx.otherPort }), 'udp-port');
    build(`ipv4/ihl-${ihl}/icmp`, { ipv4: { src: SRC4, dst: ctx.v4In, options }, icmp: { id: 7, seq: ihl } }, 'icmp');
    // The header ends exactly at the frame end: need IHL*4 passes, UDP's need 8 fails.
    cut(`ipv4/ihl-${ihl}/header-only`, udp4(ctx, { ipv4: { options } }), 14 + ihl * 4, 'truncated');
    if (ihl > 5) cut(`ipv4/ihl-${ihl}/cut-in-options`, udp4(ctx, { ipv4: { options } }), 14 + ihl * 4 - 1, 'truncated');
    cut(`ipv4/ihl-${ihl}/udp-7-bytes`, udp4(ctx, { ipv4: { options } }), 14 + ihl * 4 + 7, 'truncated');
    cut(`ipv4/ihl-${ihl}/udp-header-only`, udp4(ctx, { ipv4: { options } }), 14 + ihl * 4 + 8, tunnel4);
  }
  // IHL says 15 but no options were written: the frame ends before 60 bytes of header.
  cut('ipv4/ihl-15-past-end', udp4(ctx, { ipv4: { ihl: 15 } }), 14 + 20 + 8, 'truncated');
  build('ipv4/ihl-6-past-end-fragment', { ipv4: { src: SRC4, dst: ctx.v4In, ihl: 6, moreFragments: true, protocol: 17 } }, 'truncated');
  // IHL says 15, options absent, enough bytes follow: UDP is read 40 bytes later, inside the
  // payload, whose zero destination port is (normally) not a tunnel port.
  build(
    'ipv4/ihl-15-udp-read-from-payload',
    { ...udp4(ctx, { ipv4: { ihl: 15 } }), payload: new Uint8Array(60) },
    ctx.state.ports.has(0) ? udpReason(ctx, 4, 0, ctx.v4In) : 'udp-port',
  );

  // Fragments: MF or offset; DF and the reserved bit are not fragments. Checked after need IHL*4,
  // before the protocol.
  build('ipv4/df', udp4(ctx, { ipv4: { dontFragment: true } }), tunnel4);
  build('ipv4/reserved-flag', udp4(ctx, { ipv4: { reservedFlag: true } }), tunnel4);
  build('ipv4/reserved-and-df', udp4(ctx, { ipv4: { reservedFlag: true, dontFragment: true } }), tunnel4);
  build('ipv4/df-tcp', { ipv4: { src: SRC4, dst: ctx.v4In, dontFragment: true }, tcp: { sport: 1, dport: 2 } }, 'tcp');
  build('ipv4/mf', udp4(ctx, { ipv4: { moreFragments: true } }), 'fragment');
  build('ipv4/mf-df', udp4(ctx, { ipv4: { moreFragments: true, dontFragment: true } }), 'fragment');
  build('ipv4/offset-1', udp4(ctx, { ipv4: { fragOffset: 1 } }), 'fragment');
  build('ipv4/offset-185-last', udp4(ctx, { ipv4: { fragOffset: 185 } }), 'fragment');
  build('ipv4/offset-max', udp4(ctx, { ipv4: { fragOffset: 0x1fff, moreFragments: true } }), 'fragment');
  build('ipv4/offset-1-with-options', udp4(ctx, { ipv4: { fragOffset: 1, options: ipv4Options(12) } }), 'fragment');
  build('ipv4/mf-icmp', { ipv4: { src: SRC4, dst: ctx.v4In, moreFragments: true }, icmp: {} }, 'fragment');
  build('ipv4/mf-tcp', { ipv4: { src: SRC4, dst: ctx.v4In, moreFragments: true }, tcp: { sport: 1, dport: 2 } }, 'fragment');
  cut('ipv4/mf-no-udp-header', udp4(ctx, { ipv4: { moreFragments: true } }), 34, 'fragment');
  build('ipv4/mf-bad-version', udp4(ctx, { ipv4: { moreFragments: true, version: 5 } }), 'bad-header');

  // Protocols. Only UDP needs its header; the others are decided on the protocol byte alone.
  build('ipv4/icmp-echo', { ipv4: { src: SRC4, dst: ctx.v4In }, icmp: { id: 1, seq: 1 }, payload: new Uint8Array(56) }, 'icmp');
  build('ipv4/icmp-no-header', { ipv4: { src: SRC4, dst: ctx.v4In, protocol: 1 } }, 'icmp');
  build('ipv4/tcp-syn', { ipv4: { src: SRC4, dst: ctx.v4In }, tcp: { sport: 40000, dport: ctx.port } }, 'tcp');
  build('ipv4/tcp-no-header', { ipv4: { src: SRC4, dst: ctx.v4In, protocol: 6 } }, 'tcp');
  for (const protocol of [0, 2, 4, 41, 43, 44, 47, 50, 51, 58, 60, 89, 103, 132, 136, 253, 255]) {
    build(`ipv4/protocol-${protocol}`, { ipv4: { src: SRC4, dst: ctx.v4In, protocol }, payload: VXLAN_PAYLOAD }, 'other-l4');
  }

  // UDP over IPv4: ports, then addresses. Length and checksum fields are not consulted.
  for (const port of ctx.ports) build(`ipv4/udp-port-${port}`, udp4(ctx, { dport: port }), udpReason(ctx, 4, port, ctx.v4In));
  for (const port of new Set([0, 65535, ctx.port - 1, ctx.port + 1, ctx.otherPort])) {
    if (port < 0 || port > 65535) continue;
    build(`ipv4/udp-dport-${port}`, udp4(ctx, { dport: port }), udpReason(ctx, 4, port, ctx.v4In));
  }
  build(
    'ipv4/udp-sport-is-tunnel-port',
    { ...udp4(ctx, { dport: ctx.otherPort }), udp: { sport: ctx.port, dport: ctx.otherPort } },
    'udp-port',
  );
  for (const dst of new Set([...ctx.v4Addresses, ctx.v4Out, '255.255.255.255', '224.0.0.1', '0.0.0.0', '127.0.0.1'])) {
    build(`ipv4/udp-to-${dst}`, udp4(ctx, { dst }), udpReason(ctx, 4, ctx.port, dst));
  }
  build('ipv4/udp-other-port-other-address', udp4(ctx, { dst: ctx.v4Out, dport: ctx.otherPort }), 'udp-port');
  build('ipv4/udp-no-checksum', { ...udp4(ctx), udp: { sport: 1, dport: ctx.port, checksum: 'none' } }, tunnel4);
  build(
    'ipv4/udp-bad-lengths',
    { ...udp4(ctx, { ipv4: { totalLength: 20, checksum: 0xdead, ttl: 0 } }), udp: { sport: 1, dport: ctx.port, length: 3, checksum: 1 } },
    tunnel4,
  );
  build('ipv4/udp-total-length-65535', udp4(ctx, { ipv4: { totalLength: 65535 } }), tunnel4);
  build('ipv4/udp-padded-to-60', { ...udp4(ctx), payload: undefined, padTo: 60 }, tunnel4);
  build('ipv4/udp-1514', { ...udp4(ctx), payload: new Uint8Array(1514 - 42).fill(0xa5) }, tunnel4);

  // IPv6 fixed header: need 40, then version.
  cut('ipv6/39-bytes', udp6(ctx), 14 + 39, 'truncated');
  for (const version of [0, 4, 5, 7, 15]) build(`ipv6/version-${version}`, udp6(ctx, { ipv6: { version } }), 'bad-header');
  cut('ipv6/bad-version-39-bytes', udp6(ctx, { ipv6: { version: 4 } }), 14 + 39, 'truncated');
  build('ipv6/ipv4-packet-behind-0x86dd', { ...udp4(ctx), eth: { type: 0x86dd } }, 'bad-header');
  const bare6 = (nextHeader: number): FrameSpec => ({ ipv6: { src: SRC6, dst: ctx.v6In, nextHeader } });
  build('ipv6/40-bytes-udp', bare6(17), 'truncated');
  build('ipv6/40-bytes-hbh', bare6(0), 'truncated');
  build('ipv6/40-bytes-routing', bare6(43), 'truncated');
  build('ipv6/40-bytes-dstopts', bare6(60), 'truncated');
  build('ipv6/40-bytes-fragment', bare6(44), 'fragment');
  build('ipv6/40-bytes-icmpv6', bare6(58), 'icmpv6');
  build('ipv6/40-bytes-tcp', bare6(6), 'tcp');
  build('ipv6/40-bytes-no-next', bare6(59), 'other-l4');
  cut('ipv6/hbh-1-byte', { ...udp6(ctx, { ipv6: { extensions: [{ type: 0 }] } }) }, 14 + 41, 'truncated');
  cut('ipv6/hbh-2-bytes', { ...udp6(ctx, { ipv6: { extensions: [{ type: 0 }] } }) }, 14 + 42, 'truncated');
  cut('ipv6/hbh-2-bytes-to-icmpv6', { ipv6: { src: SRC6, dst: ctx.v6In, extensions: [{ type: 0 }] }, icmpv6: {} }, 14 + 42, 'icmpv6');

  // Neighbour discovery and other ICMPv6; TCP; other next headers.
  build(
    'ipv6/neighbour-solicitation',
    {
      eth: { dst: '33:33:ff:00:00:01' },
      ipv6: { src: SRC6, dst: 'ff02::1:ff00:1', hopLimit: 255 },
      icmpv6: { target: ctx.v6In, sourceMac: '02:00:00:00:00:01' },
    },
    'icmpv6',
  );
  build(
    'ipv6/echo-request',
    { ipv6: { src: SRC6, dst: ctx.v6In }, icmpv6: { type: 128, id: 1, seq: 1 }, payload: new Uint8Array(56) },
    'icmpv6',
  );
  build(
    'ipv6/mld-report-behind-hbh',
    {
      ipv6: { src: 'fe80::1', dst: 'ff02::16', hopLimit: 1, extensions: [{ type: 0 }] },
      icmpv6: { type: 143 },
    },
    'icmpv6',
  );
  build('ipv6/tcp-syn', { ipv6: { src: SRC6, dst: ctx.v6In }, tcp: { sport: 40000, dport: ctx.port } }, 'tcp');
  for (const nh of [1, 2, 4, 41, 47, 50, 51, 59, 89, 103, 132, 135, 139, 140, 253, 255]) {
    build(`ipv6/next-header-${nh}`, { ipv6: { src: SRC6, dst: ctx.v6In, nextHeader: nh }, payload: VXLAN_PAYLOAD }, 'other-l4');
  }
  // Headers outside {0, 43, 60} are not walked, even when a UDP header follows them.
  for (const type of [51, 135, 139, 140, 253]) {
    build(`ipv6/unwalked-ext-${type}-then-udp`, udp6(ctx, { ipv6: { extensions: [{ type }] } }), 'other-l4');
  }

  // Extension-header walk: 0..8 headers of rotating kinds and lengths; the 7th is refused.
  for (let n = 0; n <= 8; n++) {
    for (let rot = 0; rot < (n === 0 ? 1 : 3); rot++) {
      const extensions: IPv6ExtSpec[] = [];
      let label = '';
      for (let i = 0; i < n; i++) {
        const type = EXT_KINDS[(i + rot) % 3];
        extensions.push({ type, hdrExtLen: (i + rot) % 3, segmentsLeft: type === 43 ? i % 2 : undefined });
        label += `-${EXT_NAMES[type]}`;
      }
      const tail = n > 6 ? 'ext-limit' : undefined;
      build(`ipv6/ext-${n}${label}/udp`, udp6(ctx, { ipv6: { extensions } }), tail ?? tunnel6);
      build(`ipv6/ext-${n}${label}/udp-other-port`, udp6(ctx, { ipv6: { extensions }, dport: ctx.otherPort }), tail ?? 'udp-port');
      build(
        `ipv6/ext-${n}${label}/fragment`,
        udp6(ctx, { ipv6: { extensions: [...extensions, { type: 44, id: n, moreFragments: true }] } }),
        tail ?? 'fragment',
      );
      if (rot === 0) {
        build(`ipv6/ext-${n}${label}/icmpv6`, { ipv6: { src: SRC6, dst: ctx.v6In, extensions }, icmpv6: { type: 128 } }, tail ?? 'icmpv6');
        build(`ipv6/ext-${n}${label}/tcp`, { ipv6: { src: SRC6, dst: ctx.v6In, extensions }, tcp: { sport: 1, dport: 2 } }, tail ?? 'tcp');
        build(`ipv6/ext-${n}${label}/no-next`, { ipv6: { src: SRC6, dst: ctx.v6In, extensions } }, tail ?? 'other-l4');
        // The frame ends exactly after the last extension header.
        if (n > 0)
          cut(`ipv6/ext-${n}${label}/udp-missing`, udp6(ctx, { ipv6: { extensions } }), frameEnd(n, extensions), tail ?? 'truncated');
      }
    }
  }
  // Exactly six headers whose last points at a seventh that is not there: depth before length.
  const six: IPv6ExtSpec[] = [0, 60, 43, 60, 43, 60].map((type) => ({ type }));
  const sevenOpen = [...six.slice(0, 5), { type: 60, nextHeader: 0 }];
  add('ipv6/ext-6-then-7th-missing', buildFrame({ ipv6: { src: SRC6, dst: ctx.v6In, extensions: sevenOpen } }), 'ext-limit');
  build('ipv6/ext-6-then-fragment', udp6(ctx, { ipv6: { extensions: [...six, { type: 44 }] } }), 'fragment');
  build('ipv6/ext-7-then-fragment', udp6(ctx, { ipv6: { extensions: [...six, { type: 0 }, { type: 44 }] } }), 'ext-limit');
  build('ipv6/ext-6-then-unwalked-51', udp6(ctx, { ipv6: { extensions: [...six, { type: 51 }] } }), 'other-l4');
  // Hop-by-hop is walked wherever it appears (RFC 8200 wants it first; the policy does not care).
  build('ipv6/hbh-not-first', udp6(ctx, { ipv6: { extensions: [{ type: 60 }, { type: 0 }, { type: 0 }] } }), tunnel6);
  build(
    'ipv6/routing-segments-left-3',
    udp6(ctx, { ipv6: { extensions: [{ type: 43, routingType: 4, segmentsLeft: 3, hdrExtLen: 6 }] } }),
    tunnel6,
  );
  build('ipv6/fragment-first', udp6(ctx, { ipv6: { extensions: [{ type: 44, moreFragments: true }] } }), 'fragment');
  build('ipv6/atomic-fragment', udp6(ctx, { ipv6: { extensions: [{ type: 44 }] } }), 'fragment');
  build(
    'ipv6/fragment-offset-not-first',
    { ipv6: { src: SRC6, dst: ctx.v6In, extensions: [{ type: 44, fragOffset: 181, nextHeader: 17 }] }, payload: VXLAN_PAYLOAD },
    'fragment',
  );
  build('ipv6/fragment-then-hbh', udp6(ctx, { ipv6: { extensions: [{ type: 44 }, { type: 0 }] } }), 'fragment');

  // Long extension headers (up to 2048 bytes each): the frames run past 1514 bytes.
  for (const type of EXT_KINDS) {
    build(`ipv6/long-${EXT_NAMES[type]}-255/udp`, udp6(ctx, { ipv6: { extensions: [{ type, hdrExtLen: 255 }] } }), tunnel6);
  }
  build(
    'ipv6/long-hbh-100-rt-30/udp',
    udp6(ctx, {
      ipv6: {
        extensions: [
          { type: 0, hdrExtLen: 100 },
          { type: 43, hdrExtLen: 30 },
        ],
      },
    }),
    tunnel6,
  );

  // A header claiming more bytes than the frame holds: only the next need check notices.
  const longHbh = (nextHeader: number): FrameSpec => ({
    ipv6: { src: SRC6, dst: ctx.v6In, extensions: [{ type: 0, hdrExtLen: 10, nextHeader }] },
  });
  const past = 14 + 40 + 16; // 16 of the hop-by-hop header's 88 bytes
  cut('ipv6/ext-past-end/udp', longHbh(17), past, 'truncated');
  cut('ipv6/ext-past-end/dstopts', longHbh(60), past, 'truncated');
  cut('ipv6/ext-past-end/icmpv6', longHbh(58), past, 'icmpv6');
  cut('ipv6/ext-past-end/tcp', longHbh(6), past, 'tcp');
  cut('ipv6/ext-past-end/fragment', longHbh(44), past, 'fragment');
  cut('ipv6/ext-past-end/no-next', longHbh(59), past, 'other-l4');
  cut('ipv6/ext-ends-at-frame-end/udp', longHbh(17), 14 + 40 + 88, 'truncated');
  cut('ipv6/ext-then-udp-7-bytes', udp6(ctx, { ipv6: { extensions: [{ type: 43, hdrExtLen: 1 }] } }), 14 + 40 + 16 + 7, 'truncated');
  cut('ipv6/ext-then-udp-header-only', udp6(ctx, { ipv6: { extensions: [{ type: 43, hdrExtLen: 1 }] } }), 14 + 40 + 16 + 8, tunnel6);

  // UDP over IPv6: ports, then addresses.
  for (const port of ctx.ports) build(`ipv6/udp-port-${port}`, udp6(ctx, { dport: port }), udpReason(ctx, 6, port, ctx.v6In));
  for (const port of new Set([0, 65535, ctx.port - 1, ctx.port + 1, ctx.otherPort])) {
    if (port < 0 || port > 65535) continue;
    build(`ipv6/udp-dport-${port}`, udp6(ctx, { dport: port }), udpReason(ctx, 6, port, ctx.v6In));
  }
  cut('ipv6/udp-7-bytes', udp6(ctx), 14 + 40 + 7, 'truncated');
  cut('ipv6/udp-header-only', udp6(ctx), 14 + 40 + 8, tunnel6);
  const mapped = `::ffff:${ctx.v4In}`; // an IPv4 tunnel address written as IPv6 is a different address
  for (const dst of new Set([...ctx.v6Addresses, ctx.v6Out, 'ff02::1', '::1', '::', mapped])) {
    build(`ipv6/udp-to-${dst}`, udp6(ctx, { dst }), udpReason(ctx, 6, ctx.port, dst));
  }
  build('ipv6/udp-other-port-other-address', udp6(ctx, { dst: ctx.v6Out, dport: ctx.otherPort }), 'udp-port');
  build(
    'ipv6/udp-bad-lengths',
    { ...udp6(ctx, { ipv6: { payloadLength: 0, hopLimit: 0 } }), udp: { sport: 1, dport: ctx.port, length: 0, checksum: 0 } },
    tunnel6,
  );
  build('ipv6/udp-1514', { ...udp6(ctx), payload: new Uint8Array(1514 - 62).fill(0x5a) }, tunnel6);
  build(
    'ipv6/udp-2-tags-2-ext',
    { ...udp6(ctx, { ipv6: { extensions: [{ type: 0 }, { type: 60, hdrExtLen: 1 }] } }), vlans: [q(100, TPID_8021AD), q(10)] },
    tunnel6,
  );

  return cases;
}

/** Frame length up to the end of the given extension headers (no VLANs). */
function frameEnd(n: number, extensions: IPv6ExtSpec[]): number {
  let len = 14 + 40;
  for (let i = 0; i < n; i++) len += ((extensions[i].hdrExtLen ?? 0) + 1) * 8;
  return len;
}

function hex4(n: number): string {
  return n.toString(16).padStart(4, '0');
}

// ---------------------------------------------------------------------------------------------
// (c) Random frames.

const MAX_FRAME = 1514;
const MAX_LONG_FRAME = 3000;
const ETHERTYPES = [0x0800, 0x86dd, 0x0806, 0x8100, 0x88a8, 0x9100, 0x0801, 0x88cc];
const PROTOCOLS = [0, 1, 4, 6, 17, 41, 43, 44, 47, 50, 51, 58, 59, 60, 132, 135, 255];

/** A frame plus where its fields are, so mutations can aim at them. */
interface Shaped {
  frame: Uint8Array;
  family: 4 | 6;
  vlans: number;
  l3: number;
  exts: number[];
  l4: number;
}

function randomFrame(rng: Rng, ctx: Context): Uint8Array {
  const roll = rng.int(100);
  if (roll < 3) return noise(rng);
  if (roll < 13) return otherTraffic(rng, ctx);
  const shaped = tunnelFrame(rng, ctx);
  if (roll < 28) return shaped.frame; // unmutated
  return mutate(rng, ctx, shaped);
}

function randomVlans(rng: Rng): VlanSpec[] {
  const n = rng.pick([0, 0, 0, 0, 1, 1, 2, 2, 3]);
  const out: VlanSpec[] = [];
  for (let i = 0; i < n; i++) out.push({ tpid: rng.chance(0.5) ? TPID_8021Q : TPID_8021AD, vid: rng.int(4096), pcp: rng.int(8) });
  return out;
}

function randomV4(rng: Rng): string {
  return `198.${rng.range(18, 19)}.${rng.int(256)}.${rng.int(256)}`;
}

function randomV6(rng: Rng): string {
  return `2001:db8:${rng.int(0x10000).toString(16)}::${rng.int(0x10000).toString(16)}`;
}

function tunnelFrame(rng: Rng, ctx: Context): Shaped {
  const vlans = randomVlans(rng);
  const family: 4 | 6 = rng.chance(0.55) ? 4 : 6;
  const dport = ctx.ports.length > 0 && rng.chance(0.9) ? rng.pick(ctx.ports) : rng.int(0x10000);
  const long = rng.chance(0.01);
  let spec: FrameSpec;
  let headers = 14 + 4 * vlans.length + 8;
  if (family === 4) {
    const dst = ctx.v4Addresses.length > 0 && rng.chance(0.9) ? rng.pick(ctx.v4Addresses) : randomV4(rng);
    const options = rng.chance(0.3) ? rng.bytes(4 * rng.range(1, 10)) : undefined;
    headers += 20 + (options?.length ?? 0);
    spec = {
      vlans,
      ipv4: {
        src: randomV4(rng),
        dst,
        options,
        dontFragment: rng.chance(0.5),
        id: rng.int(0x10000),
        ttl: rng.range(1, 255),
        tos: rng.int(256),
      },
      udp: { sport: rng.int(0x10000), dport, checksum: rng.chance(0.2) ? 'none' : 'auto' },
    };
  } else {
    const dst = ctx.v6Addresses.length > 0 && rng.chance(0.9) ? rng.pick(ctx.v6Addresses) : randomV6(rng);
    const extensions: IPv6ExtSpec[] = [];
    const n = rng.chance(0.5) ? 0 : rng.range(1, 7);
    const cap = long ? MAX_LONG_FRAME : MAX_FRAME;
    for (let i = 0; i < n; i++) {
      // Leave room for the rest of the headers (≤ 7 more extension headers of 8 bytes, IPv6, UDP).
      const most = Math.max(0, Math.floor((cap - headers - 40 - 8 * (n - i)) / 8) - 1);
      const hdrExtLen = Math.min(most, rng.chance(0.9) ? rng.int(4) : rng.int(long ? 300 : 40));
      extensions.push({ type: rng.pick(EXT_KINDS), hdrExtLen });
      headers += (hdrExtLen + 1) * 8;
    }
    headers += 40;
    spec = {
      vlans,
      ipv6: { src: randomV6(rng), dst, extensions, flowLabel: rng.int(0x100000), hopLimit: rng.range(1, 255) },
      udp: { sport: rng.int(0x10000), dport },
    };
  }
  const room = Math.max(0, (long ? MAX_LONG_FRAME : MAX_FRAME) - headers);
  const size = rng.chance(0.5) ? rng.int(Math.min(room, 64) + 1) : rng.int(room + 1);
  spec.payload = rng.bytes(size);
  const frame = buildFrame(spec);
  const l3 = 14 + 4 * vlans.length;
  const exts: number[] = [];
  let l4 = l3 + (family === 4 ? 20 + (spec.ipv4?.options?.length ?? 0) : 40);
  for (const e of spec.ipv6?.extensions ?? []) {
    exts.push(l4);
    l4 += ((e.hdrExtLen ?? 0) + 1) * 8;
  }
  return { frame, family, vlans: vlans.length, l3, exts, l4 };
}

function otherTraffic(rng: Rng, ctx: Context): Uint8Array {
  const vlans = randomVlans(rng);
  const src4 = randomV4(rng);
  const dst4 = rng.chance(0.5) ? ctx.v4In : randomV4(rng);
  const dst6 = rng.chance(0.5) ? ctx.v6In : randomV6(rng);
  const payload = rng.bytes(rng.int(200));
  switch (rng.int(8)) {
    case 0:
      return buildFrame({ vlans, arp: { op: rng.range(1, 2), senderIp: src4, targetIp: dst4 } });
    case 1:
      return buildFrame({
        vlans,
        ipv4: { src: src4, dst: dst4 },
        tcp: { sport: rng.int(0x10000), dport: rng.int(0x10000), flags: rng.int(256) },
        payload,
      });
    case 2:
      return buildFrame({ vlans, ipv4: { src: src4, dst: dst4 }, icmp: { type: rng.pick([0, 8]), id: rng.int(0x10000) }, payload });
    case 3:
      return buildFrame({ vlans, ipv6: { src: randomV6(rng), dst: 'ff02::1:ff00:1', hopLimit: 255 }, icmpv6: { target: dst6 } });
    case 4:
      return buildFrame({
        vlans,
        ipv6: { src: randomV6(rng), dst: dst6 },
        tcp: { sport: rng.int(0x10000), dport: rng.int(0x10000) },
        payload,
      });
    case 5:
      return buildFrame({ vlans, ipv4: { src: src4, dst: dst4, protocol: rng.pick(PROTOCOLS) }, payload });
    case 6:
      return buildFrame({ vlans, ipv6: { src: randomV6(rng), dst: dst6, nextHeader: rng.pick(PROTOCOLS) }, payload });
    default:
      return buildFrame({ vlans, eth: { type: rng.int(0x10000) }, payload });
  }
}

/** Raw bytes, half of them with an IP ethertype so the walk gets past Ethernet. */
function noise(rng: Rng): Uint8Array {
  const frame = rng.bytes(rng.int(160));
  if (frame.length >= 14 && rng.chance(0.5)) {
    const type = rng.pick([0x0800, 0x86dd, 0x8100]);
    frame[12] = type >> 8;
    frame[13] = type & 0xff;
  }
  return frame;
}

function mutate(rng: Rng, ctx: Context, s: Shaped): Uint8Array {
  let frame = s.frame;
  // Mutations keep a frame within 1514 bytes unless it was already longer.
  const limit = Math.max(MAX_FRAME, frame.length);
  const set8 = (at: number, v: number): void => {
    if (at >= 0 && at < frame.length) frame[at] = v & 0xff;
  };
  const set16 = (at: number, v: number): void => {
    set8(at, v >> 8);
    set8(at + 1, v);
  };
  const n = rng.range(1, 3);
  for (let i = 0; i < n; i++) {
    switch (rng.int(12)) {
      case 0: {
        // Byte flips, mostly in the headers.
        const flips = rng.range(1, 3);
        for (let f = 0; f < flips; f++) {
          const span = rng.chance(0.8) ? Math.min(frame.length, s.l4 + 8) : frame.length;
          const at = rng.int(span);
          if (span > 0) set8(at, frame[at] ^ rng.range(1, 255));
        }
        break;
      }
      case 1: // truncate
        frame = frame.slice(0, rng.int(frame.length + 1));
        break;
      case 2: {
        // extend with random bytes
        const len = Math.min(frame.length + rng.range(1, 64), limit);
        if (len <= frame.length) break;
        const grown = new Uint8Array(len);
        grown.set(frame);
        grown.set(rng.bytes(len - frame.length), frame.length);
        frame = grown;
        break;
      }
      case 3: // an ethertype or TPID
        set16(12 + 4 * rng.int(s.vlans + 1), rng.chance(0.8) ? rng.pick(ETHERTYPES) : rng.int(0x10000));
        break;
      case 4: {
        // IPv4 protocol, IPv6 next header, or an extension header's next header
        const v = rng.chance(0.85) ? rng.pick(PROTOCOLS) : rng.int(256);
        if (s.family === 4) set8(s.l3 + 9, v);
        else if (s.exts.length > 0 && rng.chance(0.6)) set8(rng.pick(s.exts), v);
        else set8(s.l3 + 6, v);
        break;
      }
      case 5: // IHL or version nibble
        if (s.l3 < frame.length) {
          if (rng.chance(0.6)) set8(s.l3, (frame[s.l3] & 0xf0) | rng.int(16));
          else set8(s.l3, ((rng.chance(0.5) ? rng.int(16) : s.family === 4 ? 6 : 4) << 4) | (frame[s.l3] & 0x0f));
        }
        break;
      case 6: // fragment bits (IPv4) or an extension header's length (IPv6)
        if (s.family === 4) set16(s.l3 + 6, rng.pick([0x2000, 0x4000, 0x8000, 0x6000, 0x0001, 0x1fff, rng.int(0x10000)]));
        else if (s.exts.length > 0) set8(rng.pick(s.exts) + 1, rng.chance(0.7) ? rng.int(8) : rng.int(256));
        else set8(s.l3 + 6, rng.pick([0, 43, 60, 44]));
        break;
      case 7: // destination port
        set16(s.l4 + 2, rng.pick([ctx.port, ctx.otherPort, ctx.port + 1, ctx.port - 1, rng.int(0x10000)]));
        break;
      case 8: {
        // destination address: another set member or one byte off
        const at = s.family === 4 ? s.l3 + 16 : s.l3 + 24;
        const size = s.family === 4 ? 4 : 16;
        if (rng.chance(0.5)) set8(at + rng.int(size), rng.int(256));
        else {
          const bytes = parseIP(s.family === 4 ? rng.pick([ctx.v4In, ctx.v4Out]) : rng.pick([ctx.v6In, ctx.v6Out])).bytes;
          for (let b = 0; b < size; b++) set8(at + b, bytes[b]);
        }
        break;
      }
      case 9: {
        // insert a VLAN tag after the MACs (may make a third)
        if (frame.length < 12) break;
        const grown = new Uint8Array(frame.length + 4);
        grown.set(frame.subarray(0, 12));
        const tpid = rng.chance(0.5) ? TPID_8021Q : TPID_8021AD;
        grown.set([tpid >> 8, tpid & 0xff, rng.int(256), rng.int(256)], 12);
        grown.set(frame.subarray(12), 16);
        frame = grown.length > limit ? grown.slice(0, limit) : grown;
        break;
      }
      case 10: {
        // remove the outermost VLAN tag
        if (s.vlans === 0 || frame.length < 16) break;
        const shrunk = new Uint8Array(frame.length - 4);
        shrunk.set(frame.subarray(0, 12));
        shrunk.set(frame.subarray(16), 12);
        frame = shrunk;
        break;
      }
      default: {
        // IPv6 only: make a walked header the seventh by re-pointing the last one at hop-by-hop
        if (s.family === 6 && s.exts.length > 0) set8(s.exts[s.exts.length - 1], rng.pick([0, 43, 60]));
        else set16(s.l3 + 6, rng.int(0x10000));
        break;
      }
    }
  }
  return frame;
}
