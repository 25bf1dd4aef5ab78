// Unit tests for src/packet/vxlan.ts: encapsulation bytes field by field (checked against the
// frame builder and independent checksums), encap → parse round trips, every decapsulation drop
// reason on a hand-built frame (parseVxlan and the reference decoder must agree), the flow hash
// and the source-port mapping.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';

import {
  DECAP_OK,
  DECAP_PARSE_REASONS,
  OUTER_V4_BYTES,
  OUTER_V6_BYTES,
  VXLAN_DEFAULT_PORT,
  VXLAN_HEADER_BYTES,
  VXLAN_SPORT_MAX,
  VXLAN_SPORT_MIN,
  VxlanEncapTemplate,
  VxlanParse,
  decapReasonOf,
  flowHash,
  parseVxlan,
  sourcePortOf,
} from '../../src/packet/vxlan.ts';
import { internetChecksum, pseudoHeaderSumV6, sumWords, verifyChecksum } from '../../src/packet/checksum.ts';
import { buildFrame } from '../../src/packet/build.ts';
import type { FrameSpec, IPv4Spec, IPv6Spec, UdpSpec } from '../../src/packet/build.ts';
import { parseIPv4, parseIPv6 } from '../../src/packet/ip.ts';
import { parseMac } from '../../src/packet/mac.ts';
import { PinholeError } from '../../src/sys/errors.ts';
import { referenceDecap } from '../support/vxlan-reference.ts';

const u16 = (b: Uint8Array, at: number): number => (b[at] << 8) | b[at + 1];
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

const SRC_MAC = parseMac('02:00:00:00:00:0a');
const DST_MAC = parseMac('02:00:00:00:00:0b');

/** A VXLAN header (RFC 7348 §5) built by hand: flags byte, 3 reserved, VNI, 1 reserved. */
function vxlanHeader(vni: number, flags = 0x08, reserved1 = 0, reserved2 = 0): Uint8Array {
  return Uint8Array.of(
    flags,
    (reserved1 >>> 16) & 0xff,
    (reserved1 >>> 8) & 0xff,
    reserved1 & 0xff,
    vni >>> 16,
    (vni >>> 8) & 0xff,
    vni & 0xff,
    reserved2,
  );
}

/** An inner Ethernet frame of `len` bytes with a recognisable pattern. */
function innerFrame(len: number, seed = 1): Uint8Array {
  const f = new Uint8Array(len);
  for (let i = 0; i < len; i++) f[i] = (i * 7 + seed * 13) & 0xff;
  return f;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** The parse result's addresses in the reference decoder's text form. */
function addrText(words: Int32Array, family: 4 | 6): string {
  if (family === 4) {
    const w = words[0] >>> 0;
    return `${w >>> 24}.${(w >>> 16) & 0xff}.${(w >>> 8) & 0xff}.${w & 0xff}`;
  }
  const groups: string[] = [];
  for (let i = 0; i < 4; i++) groups.push(((words[i] >>> 16) & 0xffff).toString(16), (words[i] & 0xffff).toString(16));
  return groups.join(':');
}

/** Parses `frame` at a non-zero offset with parseVxlan and the reference; asserts they agree; returns the reason ('ok' on success). */
function decap(frame: Uint8Array, out = new VxlanParse()): string {
  const mem = new Uint8Array(frame.length + 37);
  const off = 23;
  mem.set(frame, off);
  const code = parseVxlan(mem, off, frame.length, out);
  const ref = referenceDecap(frame);
  if (!ref.ok) {
    assert.equal(decapReasonOf(code), ref.reason, 'parseVxlan and the reference disagree');
    return ref.reason;
  }
  assert.equal(code, DECAP_OK, `parseVxlan says ${decapReasonOf(code)}, the reference ok`);
  const { ok: _ok, ...want } = ref;
  assert.deepEqual(
    {
      family: out.family,
      vni: out.vni,
      src: addrText(out.src, out.family),
      dst: addrText(out.dst, out.family),
      srcPort: out.srcPort,
      dstPort: out.dstPort,
      innerOff: out.innerOff - off,
      innerLen: out.innerLen,
    },
    want,
  );
  return 'ok';
}

describe('VXLAN constants', () => {
  it('header sizes and ports', () => {
    assert.equal(VXLAN_HEADER_BYTES, 8);
    assert.equal(OUTER_V4_BYTES, 14 + 20 + 8 + 8);
    assert.equal(OUTER_V6_BYTES, 14 + 40 + 8 + 8);
    assert.equal(VXLAN_DEFAULT_PORT, 4789);
    assert.deepEqual([VXLAN_SPORT_MIN, VXLAN_SPORT_MAX], [32768, 60999]);
  });
  it('reason codes are 1 + index', () => {
    assert.equal(DECAP_OK, 0);
    assert.equal(decapReasonOf(DECAP_OK), undefined);
    DECAP_PARSE_REASONS.forEach((r, i) => assert.equal(decapReasonOf(i + 1), r));
  });
});

describe('VXLAN encapsulation, IPv4 outer', () => {
  const tpl = new VxlanEncapTemplate({
    srcMac: SRC_MAC,
    dstMac: DST_MAC,
    src: '198.18.0.1',
    dst: '198.19.2.3',
    dstPort: 4789,
    vni: 0x123456,
  });

  it('writes every field', () => {
    assert.equal(tpl.family, 4);
    assert.equal(tpl.headerBytes, 50);
    const inner = innerFrame(60);
    const off = 10;
    const mem = new Uint8Array(off + 50 + 60 + 5).fill(0xee);
    mem.set(inner, off + 50);
    const t = new VxlanEncapTemplate({
      srcMac: SRC_MAC,
      dstMac: DST_MAC,
      src: '198.18.0.1',
      dst: '198.19.2.3',
      dstPort: 4789,
      vni: 0x123456,
    });
    assert.equal(t.write(mem, off, 60, 50000), 110);
    const f = mem.subarray(off, off + 110);
    assert.equal(hex(f.subarray(0, 6)), '02000000000b', 'dst MAC');
    assert.equal(hex(f.subarray(6, 12)), '02000000000a', 'src MAC');
    assert.equal(u16(f, 12), 0x0800, 'ethertype');
    const ip = 14;
    assert.equal(f[ip], 0x45, 'version 4, IHL 5');
    assert.equal(f[ip + 1], 0, 'DSCP/ECN');
    assert.equal(u16(f, ip + 2), 20 + 8 + 8 + 60, 'total length');
    assert.equal(u16(f, ip + 4), 0, 'first identification');
    assert.equal(u16(f, ip + 6), 0x4000, 'DF, offset 0');
    assert.equal(f[ip + 8], 64, 'TTL');
    assert.equal(f[ip + 9], 17, 'protocol');
    assert.ok(verifyChecksum(f, ip, 20), 'header checksum verifies');
    const copy = f.slice(ip, ip + 20);
    copy[10] = copy[11] = 0;
    assert.equal(u16(f, ip + 10), internetChecksum(copy), 'header checksum value');
    assert.equal(hex(f.subarray(ip + 12, ip + 16)), hex(parseIPv4('198.18.0.1')));
    assert.equal(hex(f.subarray(ip + 16, ip + 20)), hex(parseIPv4('198.19.2.3')));
    const udp = 34;
    assert.equal(u16(f, udp), 50000, 'UDP source port');
    assert.equal(u16(f, udp + 2), 4789, 'UDP destination port');
    assert.equal(u16(f, udp + 4), 8 + 8 + 60, 'UDP length');
    assert.equal(u16(f, udp + 6), 0, 'UDP checksum 0');
    assert.equal(hex(f.subarray(42, 50)), '0800000012345600', 'VXLAN I flag + VNI');
    assert.equal(hex(f.subarray(50)), hex(inner), 'inner frame untouched');
    assert.ok(mem.subarray(0, off).every((b) => b === 0xee) && mem.subarray(off + 110).every((b) => b === 0xee), 'nothing outside written');
  });

  for (const innerLen of [14, 15, 60, 61, 1514]) {
    it(`matches the frame builder byte for byte (inner ${innerLen} bytes, identification counts up)`, () => {
      const t = new VxlanEncapTemplate({
        srcMac: SRC_MAC,
        dstMac: DST_MAC,
        src: '198.18.0.1',
        dst: '198.19.2.3',
        dstPort: 8472,
        vni: 77,
        ttl: 9,
      });
      const inner = innerFrame(innerLen, innerLen);
      for (let id = 0; id < 3; id++) {
        const mem = new Uint8Array(50 + innerLen);
        mem.set(inner, 50);
        t.write(mem, 0, innerLen, 40000 + id);
        const want = buildFrame({
          eth: { src: SRC_MAC, dst: DST_MAC },
          ipv4: { src: '198.18.0.1', dst: '198.19.2.3', id, dontFragment: true, ttl: 9 },
          udp: { sport: 40000 + id, dport: 8472, checksum: 'none' },
          payload: concat(vxlanHeader(77), inner),
        });
        assert.equal(hex(mem), hex(want));
      }
    });
  }

  it('identification wraps at 16 bits', () => {
    const t = new VxlanEncapTemplate({ srcMac: SRC_MAC, src: '198.18.0.1', dst: '198.18.0.2', dstPort: 4789, vni: 1 });
    const mem = new Uint8Array(50 + 14);
    for (let i = 0; i < 0xffff; i++) t.write(mem, 0, 14, 1);
    assert.equal(u16(mem, 18), 0xfffe);
    t.write(mem, 0, 14, 1);
    assert.equal(u16(mem, 18), 0xffff);
    assert.ok(verifyChecksum(mem, 14, 20));
    t.write(mem, 0, 14, 1);
    assert.equal(u16(mem, 18), 0);
    assert.ok(verifyChecksum(mem, 14, 20));
  });

  it('destination MAC is zero until set, then follows setDstMac', () => {
    const t = new VxlanEncapTemplate({ srcMac: SRC_MAC, src: '198.18.0.1', dst: '198.18.0.2', dstPort: 4789, vni: 1 });
    const mem = new Uint8Array(64);
    t.write(mem, 0, 14, 1);
    assert.equal(hex(mem.subarray(0, 6)), '000000000000');
    const holder = Uint8Array.of(9, 9, 0x02, 0x11, 0x22, 0x33, 0x44, 0x55, 9);
    t.setDstMac(holder, 2);
    t.write(mem, 0, 14, 1);
    assert.equal(hex(mem.subarray(0, 6)), '021122334455');
    assert.equal(hex(mem.subarray(6, 12)), '02000000000a');
  });

  it('VNI limits and the sport argument are written as given', () => {
    for (const vni of [0, 1, 0xffffff]) {
      const t = new VxlanEncapTemplate({ srcMac: SRC_MAC, src: '198.18.0.1', dst: '198.18.0.2', dstPort: 65535, vni });
      const mem = new Uint8Array(64);
      t.write(mem, 0, 14, 65535);
      assert.equal((mem[46] << 16) | (mem[47] << 8) | mem[48], vni);
      assert.equal(u16(mem, 34), 65535);
      assert.equal(u16(mem, 36), 65535);
    }
  });
});

describe('VXLAN encapsulation, IPv6 outer', () => {
  const SRC6 = '2001:db8::1';
  const DST6 = '2001:db8:ffff::2:3';

  it('writes every field; the UDP checksum verifies over the pseudo-header', () => {
    const t = new VxlanEncapTemplate({ srcMac: SRC_MAC, dstMac: DST_MAC, src: SRC6, dst: DST6, dstPort: 4789, vni: 0xabcdef, ttl: 200 });
    assert.equal(t.family, 6);
    assert.equal(t.headerBytes, 70);
    const inner = innerFrame(61);
    const off = 3;
    const mem = new Uint8Array(off + 70 + 61 + 4).fill(0xee);
    mem.set(inner, off + 70);
    assert.equal(t.write(mem, off, 61, 33333), 131);
    const f = mem.subarray(off, off + 131);
    assert.equal(hex(f.subarray(0, 12)), '02000000000b02000000000a');
    assert.equal(u16(f, 12), 0x86dd);
    const ip = 14;
    assert.equal(hex(f.subarray(ip, ip + 4)), '60000000', 'version 6, traffic class 0, flow label 0');
    assert.equal(u16(f, ip + 4), 8 + 8 + 61, 'payload length');
    assert.equal(f[ip + 6], 17, 'next header');
    assert.equal(f[ip + 7], 200, 'hop limit');
    assert.equal(hex(f.subarray(ip + 8, ip + 24)), hex(parseIPv6(SRC6)));
    assert.equal(hex(f.subarray(ip + 24, ip + 40)), hex(parseIPv6(DST6)));
    const udp = 54;
    assert.equal(u16(f, udp), 33333);
    assert.equal(u16(f, udp + 2), 4789);
    assert.equal(u16(f, udp + 4), 77);
    assert.notEqual(u16(f, udp + 6), 0);
    assert.ok(verifyChecksum(f, udp, 77, pseudoHeaderSumV6(parseIPv6(SRC6), parseIPv6(DST6), 17, 77)), 'UDP checksum verifies');
    assert.equal(hex(f.subarray(62, 70)), '08000000abcdef00');
    assert.equal(hex(f.subarray(70)), hex(inner));
    assert.ok(mem.subarray(0, off).every((b) => b === 0xee) && mem.subarray(off + 131).every((b) => b === 0xee));
  });

  for (const innerLen of [14, 15, 60, 61, 1514]) {
    it(`matches the frame builder byte for byte (inner ${innerLen} bytes)`, () => {
      const t = new VxlanEncapTemplate({ srcMac: SRC_MAC, dstMac: DST_MAC, src: SRC6, dst: DST6, dstPort: 4789, vni: 5000 });
      for (const sport of [32768, 45000, 60999]) {
        const inner = innerFrame(innerLen, sport);
        const mem = new Uint8Array(70 + innerLen);
        mem.set(inner, 70);
        t.write(mem, 0, innerLen, sport);
        const want = buildFrame({
          eth: { src: SRC_MAC, dst: DST_MAC },
          ipv6: { src: SRC6, dst: DST6 },
          udp: { sport, dport: 4789 },
          payload: concat(vxlanHeader(5000), inner),
        });
        assert.equal(hex(mem), hex(want));
      }
    });
  }

  it('sends a computed checksum of 0 as 0xffff', () => {
    const t = new VxlanEncapTemplate({ srcMac: SRC_MAC, src: SRC6, dst: DST6, dstPort: 4789, vni: 42 });
    const innerLen = 60;
    const mem = new Uint8Array(70 + innerLen);
    mem.set(innerFrame(innerLen), 70);
    mem[70 + innerLen - 2] = mem[70 + innerLen - 1] = 0;
    t.write(mem, 0, innerLen, 40000);
    // With the last inner word w the folded sum S + w must be 0xffff for a computed checksum of 0.
    const pseudo = pseudoHeaderSumV6(parseIPv6(SRC6), parseIPv6(DST6), 17, 76);
    mem[60] = mem[61] = 0;
    let s = sumWords(mem, 54, 76, pseudo);
    while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
    const w = 0xffff - s;
    assert.ok(w > 0 && w < 0xffff, 'choose a pattern with a usable word');
    mem[70 + innerLen - 2] = w >>> 8;
    mem[70 + innerLen - 1] = w & 0xff;
    t.write(mem, 0, innerLen, 40000);
    assert.equal(u16(mem, 60), 0xffff);
    assert.ok(verifyChecksum(mem, 54, 76, pseudo));
  });
});

describe('VXLAN encapsulation template errors', () => {
  const base = { srcMac: SRC_MAC, src: '198.18.0.1', dst: '198.18.0.2', dstPort: 4789, vni: 1 };
  const bad: Array<[string, Record<string, unknown>]> = [
    ['mixed families', { src: '198.18.0.1', dst: '2001:db8::1' }],
    ['mixed families (v6 first)', { src: '2001:db8::1', dst: '198.18.0.1' }],
    ['bad source text', { src: '198.18.0' }],
    ['bad destination text', { dst: '2001:db8::1::2' }],
    ['non-string address', { dst: 42 }],
    ['short source MAC', { srcMac: new Uint8Array(5) }],
    ['long destination MAC', { dstMac: new Uint8Array(7) }],
    ['MAC as text', { srcMac: '02:00:00:00:00:01' }],
    ['port 0', { dstPort: 0 }],
    ['port 65536', { dstPort: 65536 }],
    ['fractional port', { dstPort: 4789.5 }],
    ['VNI 2^24', { vni: 0x1000000 }],
    ['negative VNI', { vni: -1 }],
    ['TTL 0', { ttl: 0 }],
    ['TTL 256', { ttl: 256 }],
  ];
  for (const [name, patch] of bad) {
    it(`rejects ${name}`, () => {
      assert.throws(
        () => new VxlanEncapTemplate({ ...base, ...patch } as unknown as ConstructorParameters<typeof VxlanEncapTemplate>[0]),
        (e: unknown) => e instanceof PinholeError && e.code === 'ERR_VXLAN_ENCAP',
      );
    });
  }
});

describe('VXLAN encap → parse round trip', () => {
  const cases: Array<[string, string, string, number]> = [
    ['IPv4', '198.18.0.1', '198.19.255.254', 0],
    ['IPv4', '255.255.255.255', '0.0.0.0', 0xffffff],
    ['IPv6', '2001:db8::1', '2001:db8:1:2:3:4:5:6', 0x800000],
    ['IPv6', 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', '::', 1],
  ];
  for (const [name, src, dst, vni] of cases) {
    for (const innerLen of [14, 15, 64, 1514]) {
      it(`${name} ${src} → ${dst}, VNI ${vni}, inner ${innerLen}`, () => {
        const t = new VxlanEncapTemplate({ srcMac: SRC_MAC, dstMac: DST_MAC, src, dst, dstPort: 4789, vni });
        const mem = new Uint8Array(t.headerBytes + innerLen);
        mem.set(innerFrame(innerLen), t.headerBytes);
        const n = t.write(mem, 0, innerLen, 54321);
        const out = new VxlanParse();
        assert.equal(decap(mem.subarray(0, n), out), 'ok');
        assert.equal(out.family, t.family);
        assert.equal(out.vni, vni);
        assert.equal(out.srcPort, 54321);
        assert.equal(out.dstPort, 4789);
        assert.equal(out.innerLen, innerLen);
        assert.equal(out.innerOff - out.udpOff, 16);
        assert.equal(out.udpOff - out.ipOff, t.family === 4 ? 20 : 40);
        if (t.family === 4) assert.deepEqual([...out.src.subarray(1), ...out.dst.subarray(1)], [0, 0, 0, 0, 0, 0]);
      });
    }
  }

  it('a reused result object does not keep IPv6 words after an IPv4 frame', () => {
    const out = new VxlanParse();
    const t6 = new VxlanEncapTemplate({ srcMac: SRC_MAC, src: '2001:db8::1', dst: '2001:db8::2', dstPort: 4789, vni: 1 });
    const t4 = new VxlanEncapTemplate({ srcMac: SRC_MAC, src: '198.18.0.1', dst: '198.18.0.2', dstPort: 4789, vni: 2 });
    const m6 = new Uint8Array(70 + 14);
    t6.write(m6, 0, 14, 1);
    const m4 = new Uint8Array(50 + 14);
    t4.write(m4, 0, 14, 1);
    assert.equal(parseVxlan(m6, 0, m6.length, out), DECAP_OK);
    assert.equal(parseVxlan(m4, 0, m4.length, out), DECAP_OK);
    assert.deepEqual(Array.from(out.src), [(198 << 24) | (18 << 16) | 1, 0, 0, 0]);
    assert.deepEqual(Array.from(out.dst), [(198 << 24) | (18 << 16) | 2, 0, 0, 0]);
  });
});

describe('VXLAN decapsulation drop reasons', () => {
  const V4 = { src: '198.18.0.1', dst: '198.18.0.2' };
  const V6 = { src: '2001:db8::1', dst: '2001:db8::2' };
  const UDP = { sport: 40000, dport: 4789, checksum: 'none' as const };
  const PAYLOAD = concat(vxlanHeader(100), innerFrame(60));
  const v4 = (over: Partial<FrameSpec> = {}, ip: Partial<IPv4Spec> = {}, udp: Partial<UdpSpec> = {}): Uint8Array =>
    buildFrame({ ipv4: { ...V4, ...ip }, udp: { ...UDP, ...udp }, payload: PAYLOAD, ...over });
  const v6 = (over: Partial<FrameSpec> = {}, ip: Partial<IPv6Spec> = {}, udp: Partial<UdpSpec> = {}): Uint8Array =>
    buildFrame({ ipv6: { ...V6, ...ip }, udp: { ...UDP, checksum: 'auto', ...udp }, payload: PAYLOAD, ...over });
  const cut = (f: Uint8Array, n: number): Uint8Array => f.slice(0, n);
  const patch = (f: Uint8Array, at: number, ...bytes: number[]): Uint8Array => {
    const c = f.slice();
    c.set(bytes, at);
    return c;
  };

  const rows: Array<[string, Uint8Array, string]> = [
    ['IPv4 well formed', v4(), 'ok'],
    ['IPv6 well formed', v6(), 'ok'],
    ['IPv4 with 40 bytes of options (IHL 15)', v4({}, { options: new Uint8Array(40).fill(1) }), 'ok'],
    ['IPv4 with 4 bytes of options (IHL 6)', v4({}, { options: Uint8Array.of(0x94, 4, 0, 0) }), 'ok'],
    ['IPv4 padded to 200 bytes', v4({ padTo: 200 }), 'ok'],
    [
      'IPv4 minimum frame padded to 60',
      buildFrame({ ipv4: V4, udp: UDP, payload: concat(vxlanHeader(1), innerFrame(14)), padTo: 128 }),
      'ok',
    ],
    ['IPv6 padded to 300 bytes', v6({ padTo: 300 }), 'ok'],
    ['IPv4 DF and the reserved bit are not fragments', v4({}, { dontFragment: true, reservedFlag: true }), 'ok'],
    ['UDP length shorter than the IP payload (bounds the inner frame)', v4({}, {}, { length: 8 + 8 + 20 }), 'ok'],
    ['inner frame of exactly 14 bytes', v4({ payload: concat(vxlanHeader(5), innerFrame(14)) }), 'ok'],
    ['any UDP destination port', v4({}, {}, { dport: 1 }), 'ok'],
    ['UDP checksum wrong (not verified)', v6({}, {}, { checksum: 0x1234 }), 'ok'],

    ['empty frame', new Uint8Array(0), 'truncated'],
    ['13 bytes', cut(v4(), 13), 'truncated'],
    ['IPv4 header cut at 19 bytes', cut(v4(), 14 + 19), 'truncated'],
    ['IPv4 options cut', cut(v4({}, { options: new Uint8Array(8) }), 14 + 24), 'truncated'],
    ['IPv4 total length beyond the frame', v4({}, { totalLength: 20 + 16 + 60 + 1 }), 'truncated'],
    ['IPv4 frame cut inside the inner frame', cut(v4(), 100), 'truncated'],
    ['IPv6 header cut at 39 bytes', cut(v6(), 14 + 39), 'truncated'],
    ['IPv6 payload length beyond the frame', v6({}, { payloadLength: 16 + 60 + 1 }), 'truncated'],
    ['IPv6 frame cut inside the UDP header', cut(v6(), 14 + 40 + 4), 'truncated'],

    ['802.1Q tag', v4({ vlans: [{ vid: 10 }] }), 'vlan'],
    ['802.1ad tag', v6({ vlans: [{ tpid: 0x88a8, vid: 10 }, { vid: 20 }] }), 'vlan'],
    ['VLAN tag on a 14-byte frame', cut(v4({ vlans: [{ vid: 10 }] }), 14), 'vlan'],

    ['ARP', buildFrame({ arp: { senderIp: '198.18.0.1', targetIp: '198.18.0.2' } }), 'not-ip'],
    ['ethertype 0x1234', buildFrame({ eth: { type: 0x1234 }, payload: new Uint8Array(80) }), 'not-ip'],
    ['IPv4 payload under the IPv6 ethertype', patch(v4(), 12, 0x86, 0xdd), 'ip-header'],

    ['IPv4 version 5', v4({ eth: { type: 0x0800 } }, { version: 5 }), 'ip-header'],
    ['IPv4 version 6 under 0x0800', v4({}, { version: 6 }), 'ip-header'],
    ['IPv4 IHL 4', v4({}, { ihl: 4 }), 'ip-header'],
    ['IPv4 IHL 0', v4({}, { ihl: 0 }), 'ip-header'],
    ['IPv4 total length below IHL*4 + 16', v4({}, { totalLength: 35 }), 'ip-header'],
    ['IPv4 total length 0', v4({}, { totalLength: 0 }), 'ip-header'],
    ['IPv4 without VXLAN header', buildFrame({ ipv4: V4, udp: UDP, padTo: 80 }), 'ip-header'],
    ['IPv6 version 4 under 0x86dd', v6({}, { version: 4 }), 'ip-header'],
    ['IPv6 payload length 15', v6({}, { payloadLength: 15 }), 'ip-header'],

    ['IPv4 checksum wrong', v4({}, { checksum: 0x1234 }), 'ip-checksum'],
    ['IPv4 checksum 0', v4({}, { checksum: 0 }), 'ip-checksum'],
    ['IPv4 IHL 6 with the checksum of a 20-byte header', v4({}, { ihl: 6, options: undefined }), 'ip-checksum'],

    ['IPv4 more fragments', v4({}, { moreFragments: true }), 'fragment'],
    ['IPv4 fragment offset 1', v4({}, { fragOffset: 1 }), 'fragment'],
    ['IPv4 last fragment', v4({}, { fragOffset: 0x1fff, dontFragment: true }), 'fragment'],

    ['IPv6 hop-by-hop', v6({}, { extensions: [{ type: 0 }] }), 'ipv6-ext-header'],
    ['IPv6 routing', v6({}, { extensions: [{ type: 43 }] }), 'ipv6-ext-header'],
    ['IPv6 destination options', v6({}, { extensions: [{ type: 60 }] }), 'ipv6-ext-header'],
    ['IPv6 fragment', v6({}, { extensions: [{ type: 44 }] }), 'ipv6-ext-header'],

    ['IPv4 TCP', buildFrame({ ipv4: V4, tcp: { sport: 1, dport: 4789 }, payload: PAYLOAD }), 'not-udp'],
    ['IPv4 protocol 136 (UDP-Lite)', v4({}, { protocol: 136 }), 'not-udp'],
    ['IPv6 ICMPv6', buildFrame({ ipv6: V6, icmpv6: { type: 128 }, payload: PAYLOAD }), 'not-udp'],
    ['IPv6 ESP (next header 50)', v6({}, { nextHeader: 50 }), 'not-udp'],

    ['UDP length 15', v4({}, {}, { length: 15 }), 'udp-length'],
    ['UDP length 0 (IPv6 jumbogram form)', v6({}, {}, { length: 0 }), 'udp-length'],
    ['UDP length beyond the IPv4 payload', v4({}, {}, { length: 8 + 8 + 60 + 1 }), 'udp-length'],
    ['UDP length beyond the IPv6 payload (within the frame padding)', v6({ padTo: 400 }, {}, { length: 8 + 8 + 60 + 1 }), 'udp-length'],

    ['VXLAN flags 0 (I not set)', v4({ payload: concat(vxlanHeader(1, 0x00), innerFrame(60)) }), 'vxlan-flags'],
    ['VXLAN GBP flag (0x88)', v4({ payload: concat(vxlanHeader(1, 0x88), innerFrame(60)) }), 'vxlan-flags'],
    ['VXLAN GPE P flag (0x0c)', v4({ payload: concat(vxlanHeader(1, 0x0c), innerFrame(60)) }), 'vxlan-flags'],
    ['VXLAN reserved bits after flags', v4({ payload: concat(vxlanHeader(1, 0x08, 0x000001), innerFrame(60)) }), 'vxlan-flags'],
    ['VXLAN reserved byte 1', v6({ payload: concat(vxlanHeader(1, 0x08, 0x800000), innerFrame(60)) }), 'vxlan-flags'],
    ['VXLAN last reserved byte', v6({ payload: concat(vxlanHeader(1, 0x08, 0, 1), innerFrame(60)) }), 'vxlan-flags'],

    ['inner frame of 13 bytes', v4({ payload: concat(vxlanHeader(1), innerFrame(13)) }), 'inner-truncated'],
    ['no inner frame', v6({ payload: vxlanHeader(1) }), 'inner-truncated'],
    ['inner frame cut by the UDP length', v4({}, {}, { length: 16 + 13 }), 'inner-truncated'],
  ];

  for (const [name, frame, want] of rows) {
    it(`${name} → ${want}`, () => assert.equal(decap(frame), want));
  }

  it('every reason has a row', () => {
    const seen = new Set(rows.map((r) => r[2]));
    for (const r of DECAP_PARSE_REASONS) assert.ok(seen.has(r), `no row for ${r}`);
  });

  it('IPv4 options and padding move the offsets', () => {
    const out = new VxlanParse();
    const f = v4({ padTo: 256 }, { options: new Uint8Array(12).fill(1) });
    assert.equal(parseVxlan(f, 0, f.length, out), DECAP_OK);
    assert.deepEqual([out.ipOff, out.udpOff, out.innerOff, out.innerLen, out.vni], [14, 14 + 32, 14 + 32 + 16, 60, 100]);
  });

  it('len past the end of the buffer is cut to the buffer; a bad offset is truncated', () => {
    const out = new VxlanParse();
    const f = v4();
    assert.equal(parseVxlan(f, 0, f.length + 100, out), DECAP_OK);
    assert.equal(parseVxlan(f, 0, f.length - 1, out), 1 + DECAP_PARSE_REASONS.indexOf('truncated'));
    assert.equal(parseVxlan(f, f.length + 1, 10, out), 1 + DECAP_PARSE_REASONS.indexOf('truncated'));
    assert.equal(parseVxlan(f, -1, 10, out), 1 + DECAP_PARSE_REASONS.indexOf('truncated'));
  });
});

describe('flowHash', () => {
  const tcp4 = (sport: number, dport: number, extra: Partial<FrameSpec> = {}, ip: Partial<IPv4Spec> = {}): Uint8Array =>
    buildFrame({ ipv4: { src: '198.18.1.1', dst: '198.18.2.2', ...ip }, tcp: { sport, dport }, ...extra });
  const udp6 = (sport: number, dport: number, extra: Partial<FrameSpec> = {}, ip: Partial<IPv6Spec> = {}): Uint8Array =>
    buildFrame({ ipv6: { src: '2001:db8::a', dst: '2001:db8::b', ...ip }, udp: { sport, dport }, ...extra });
  const h = (f: Uint8Array): number => flowHash(f, 0, f.length);

  it('is an int32 (no heap number per call) and stable: same bytes at any offset, and pinned values', () => {
    const f = tcp4(1000, 80);
    const mem = new Uint8Array(f.length + 100);
    mem.set(f, 57);
    const v = h(f);
    assert.equal(v, v | 0);
    assert.equal(flowHash(mem, 57, f.length), v);
    assert.equal(h(f), v);
    // Pinned so a change of the hash (which moves every flow to another source port) is deliberate.
    assert.equal(v >>> 0, PINNED_TCP4);
    assert.equal(h(udp6(5353, 53)) >>> 0, PINNED_UDP6);
  });

  it('same flow, different packets → same hash', () => {
    const base = h(tcp4(1000, 80));
    assert.equal(h(tcp4(1000, 80, { payload: new Uint8Array(500).fill(7) })), base, 'payload');
    assert.equal(h(tcp4(1000, 80, {}, { ttl: 3, id: 999, tos: 0xb8 })), base, 'TTL, id, DSCP');
    assert.equal(h(tcp4(1000, 80, { eth: { src: '02:aa:aa:aa:aa:aa' } })), base, 'MACs do not count for IP');
    assert.equal(h(tcp4(1000, 80, { vlans: [{ vid: 42 }] })), base, 'one VLAN tag is skipped');
    assert.equal(h(tcp4(1000, 80, {}, { options: Uint8Array.of(1, 1, 1, 1) })), base, 'IPv4 options are skipped');
    assert.equal(h(tcp4(1000, 80, { padTo: 128 })), base, 'Ethernet padding');
    const b6 = h(udp6(5353, 53));
    assert.equal(h(udp6(5353, 53, {}, { flowLabel: 0x12345, hopLimit: 1 })), b6, 'IPv6 flow label and hop limit');
    assert.equal(h(udp6(5353, 53, {}, { extensions: [{ type: 0 }, { type: 60, hdrExtLen: 2 }] })), b6, 'hop-by-hop, destination options');
    assert.equal(h(udp6(5353, 53, { vlans: [{ tpid: 0x88a8, vid: 7 }] })), b6, '802.1ad tag');
  });

  it('fragments of one datagram hash alike (no ports), unlike the unfragmented flow', () => {
    const first = h(tcp4(1000, 80, {}, { moreFragments: true }));
    const later = h(
      buildFrame({ ipv4: { src: '198.18.1.1', dst: '198.18.2.2', fragOffset: 100, protocol: 6 }, payload: new Uint8Array(40) }),
    );
    assert.equal(first, later);
    assert.notEqual(first, h(tcp4(1000, 80)));
  });

  it('ports, addresses, protocol and family all count', () => {
    const seen = new Set<number>();
    let n = 0;
    for (let sport = 1000; sport < 1100; sport++) {
      for (let dport = 1; dport <= 100; dport++) {
        seen.add(h(tcp4(sport, dport)));
        n++;
      }
    }
    assert.equal(seen.size, n, 'distinct ports never collide (the port word is mixed bijectively)');
    assert.notEqual(h(tcp4(1000, 80)), h(tcp4(80, 1000)), 'not symmetric: direction counts');
    assert.notEqual(h(tcp4(1000, 80)), h(tcp4(1000, 80, {}, { src: '198.18.1.2' })));
    assert.notEqual(h(tcp4(1000, 80)), h(buildFrame({ ipv4: { src: '198.18.1.1', dst: '198.18.2.2' }, udp: { sport: 1000, dport: 80 } })));
    assert.notEqual(h(udp6(1, 2)), h(udp6(1, 2, {}, { dst: '2001:db8::c' })));
    const sctp = (sport: number): Uint8Array =>
      buildFrame({
        ipv4: { src: '198.18.1.1', dst: '198.18.2.2', protocol: 132 },
        payload: Uint8Array.of(sport >> 8, sport & 0xff, 0, 9, 0, 0, 0, 0),
      });
    assert.notEqual(h(sctp(1)), h(sctp(2)), 'SCTP ports');
    const gre = (b: number): Uint8Array =>
      buildFrame({ ipv4: { src: '198.18.1.1', dst: '198.18.2.2', protocol: 47 }, payload: Uint8Array.of(b, b, b, b) });
    assert.equal(h(gre(1)), h(gre(2)), 'no ports for other protocols');
    const arp = (mac: string): Uint8Array => buildFrame({ eth: { src: mac }, arp: { senderIp: '198.18.0.1', targetIp: '198.18.0.2' } });
    assert.notEqual(h(arp('02:00:00:00:00:01')), h(arp('02:00:00:00:00:02')), 'non-IP: MACs');
    assert.equal(
      h(arp('02:00:00:00:00:01')),
      h(buildFrame({ eth: { src: '02:00:00:00:00:01' }, arp: { senderIp: '198.18.0.9', targetIp: '198.18.0.2' } })),
    );
  });

  it('spreads flows over source ports evenly (statistically)', () => {
    const buckets = new Array<number>(16).fill(0);
    const ports = new Set<number>();
    const N = 16000;
    for (let i = 0; i < N; i++) {
      const p = sourcePortOf(h(tcp4(1024 + (i % 4000), 443, {}, { src: `198.18.${i >> 12}.${(i >> 4) & 0xff}` })));
      assert.ok(p >= VXLAN_SPORT_MIN && p <= VXLAN_SPORT_MAX);
      buckets[Math.floor(((p - VXLAN_SPORT_MIN) * 16) / (VXLAN_SPORT_MAX - VXLAN_SPORT_MIN + 1))]++;
      ports.add(p);
    }
    // Chi-square with 15 degrees of freedom: 37.7 is the 0.1% tail.
    const chi = buckets.reduce((s, b) => s + (b - N / 16) ** 2 / (N / 16), 0);
    assert.ok(chi < 37.7, `chi-square ${chi.toFixed(1)} over ${buckets.join(',')}`);
    // Birthday bound: 16000 flows over 28232 ports leave about 12,000 distinct ports.
    assert.ok(ports.size > 11000, `${ports.size} distinct ports`);
  });

  it('hashes truncated frames without reading past them', () => {
    const frames = [
      tcp4(1000, 80, { vlans: [{ vid: 1 }] }, { options: new Uint8Array(8) }),
      udp6(1, 2, {}, { extensions: [{ type: 43 }] }),
    ];
    for (const f of frames) {
      const full = h(f);
      for (let n = 0; n <= f.length; n++) {
        const exact = f.slice(0, n); // a buffer of exactly n bytes: a read past it would be undefined
        const v = flowHash(exact, 0, n);
        assert.equal(v, v | 0, `length ${n}: an int32`);
        assert.equal(flowHash(f, 0, n), v, `length ${n}: only the first n bytes count`);
      }
      assert.equal(flowHash(f, 0, f.length + 50), full, 'len past the buffer is cut');
    }
  });
});

// Values of the current hash function for the two frames of the stability test.
const PINNED_TCP4 = 0x2ebccb29;
const PINNED_UDP6 = 0x076982cd;

describe('sourcePortOf', () => {
  it('maps the hash range onto [min, max]', () => {
    assert.equal(sourcePortOf(0), VXLAN_SPORT_MIN);
    assert.equal(sourcePortOf(0xffffffff), VXLAN_SPORT_MAX);
    assert.equal(sourcePortOf(-1), VXLAN_SPORT_MAX, 'signed int32 input');
    assert.equal(sourcePortOf(0x80000000), VXLAN_SPORT_MIN + Math.floor((VXLAN_SPORT_MAX - VXLAN_SPORT_MIN + 1) / 2));
    assert.equal(sourcePortOf(0, 1, 65535), 1);
    assert.equal(sourcePortOf(0xffffffff, 0, 65535), 65535);
    assert.equal(sourcePortOf(0xffffffff, 4789, 4789), 4789);
    assert.equal(sourcePortOf(0x12345678, 4789, 4789), 4789);
    assert.equal(sourcePortOf(0xffffffff, 1000, 1001), 1001);
    assert.equal(sourcePortOf(0x7fffffff, 1000, 1001), 1000);
    assert.equal(sourcePortOf(0x80000000, 1000, 1001), 1001);
  });

  it('matches the kernel formula on random hashes and ranges', () => {
    let x = 12345;
    for (let i = 0; i < 10000; i++) {
      x = (Math.imul(x, 1103515245) + 12345) >>> 0;
      const hash = (x ^ (x << 7)) >>> 0;
      const min = (x >>> 16) & 0x7fff;
      const max = min + ((x >>> 3) & 0x7fff);
      const want = Number(BigInt(min) + ((BigInt(hash) * BigInt(max - min + 1)) >> 32n));
      assert.equal(sourcePortOf(hash, min, max), want);
    }
  });
});
