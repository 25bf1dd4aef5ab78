// Unit tests for src/packet: address text forms, checksums, frame builders.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';

import { formatIP, formatIPv4, formatIPv6, isIPv4, isIPv6, parseIP, parseIPv4, parseIPv6 } from '../../src/packet/ip.ts';
import { formatMac, parseMac } from '../../src/packet/mac.ts';
import { PacketError } from '../../src/packet/errors.ts';
import {
  finishChecksum,
  foldSum,
  internetChecksum,
  pseudoHeaderSumV4,
  pseudoHeaderSumV6,
  sumWords,
  verifyChecksum,
} from '../../src/packet/checksum.ts';
import { buildFrame, frameLength, ipv6MulticastMac, layoutFrame, solicitedNodeAddress, writeFrame } from '../../src/packet/build.ts';
import type { FrameSpec } from '../../src/packet/build.ts';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const bytes = (h: string): Uint8Array => Uint8Array.from(Buffer.from(h.replace(/\s+/g, ''), 'hex'));
const u16 = (b: Uint8Array, at: number): number => (b[at] << 8) | b[at + 1];
const u32 = (b: Uint8Array, at: number): number => ((b[at] << 24) | (b[at + 1] << 16) | (b[at + 2] << 8) | b[at + 3]) >>> 0;

function throwsCode(fn: () => unknown, code: string): void {
  assert.throws(fn, (e: unknown) => e instanceof PacketError && e.code === code);
}

describe('IPv4 text', () => {
  const valid: Array<[string, string]> = [
    ['0.0.0.0', '00000000'],
    ['255.255.255.255', 'ffffffff'],
    ['198.18.0.1', 'c6120001'],
    ['10.0.0.10', '0a00000a'],
    ['1.2.3.4', '01020304'],
  ];
  for (const [text, h] of valid) {
    it(`parses ${text}`, () => {
      assert.equal(hex(parseIPv4(text)), h);
      assert.equal(formatIPv4(parseIPv4(text)), text);
      assert.ok(isIPv4(text));
    });
  }
  const invalid = [
    '',
    '1',
    '1.2.3',
    '1.2.3.4.5',
    '256.0.0.1',
    '1.2.3.256',
    '01.2.3.4',
    '1.2.3.04',
    '00.0.0.0',
    '1..2.3',
    '.1.2.3',
    '1.2.3.',
    ' 1.2.3.4',
    '1.2.3.4 ',
    '0x1.2.3.4',
    '1.2.3.-4',
    '1.2.3.4/24',
    '::1',
    'a.b.c.d',
    '1.2.3.1000',
  ];
  for (const text of invalid) {
    it(`rejects ${JSON.stringify(text)}`, () => {
      throwsCode(() => parseIPv4(text), 'ERR_INVALID_ADDRESS');
      assert.equal(isIPv4(text), false);
      assert.equal(net.isIPv4(text), false, 'node agrees');
    });
  }
  it('formats at an offset and rejects short input', () => {
    assert.equal(formatIPv4(Uint8Array.of(9, 9, 192, 0, 2, 1), 2), '192.0.2.1');
    throwsCode(() => formatIPv4(new Uint8Array(3)), 'ERR_INVALID_ADDRESS');
  });
});

describe('IPv6 text', () => {
  const valid: Array<[string, string, string]> = [
    // input, bytes, RFC 5952 canonical form
    ['::', '00000000000000000000000000000000', '::'],
    ['::1', '00000000000000000000000000000001', '::1'],
    ['1::', '00010000000000000000000000000000', '1::'],
    ['2001:db8::1', '20010db8000000000000000000000001', '2001:db8::1'],
    ['2001:0DB8:0000:0000:0000:0000:0000:0001', '20010db8000000000000000000000001', '2001:db8::1'],
    ['2001:db8:0:0:0:0:2:1', '20010db8000000000000000000020001', '2001:db8::2:1'],
    ['2001:db8:0:1:1:1:1:1', '20010db8000000010001000100010001', '2001:db8:0:1:1:1:1:1'], // single 0 group stays
    ['2001:0:0:1:0:0:0:1', '20010000000000010000000000000001', '2001:0:0:1::1'], // longest run
    ['2001:db8:0:0:1:0:0:1', '20010db8000000000001000000000001', '2001:db8::1:0:0:1'], // first of equal runs
    ['1:2:3:4:5:6:7::', '00010002000300040005000600070000', '1:2:3:4:5:6:7:0'], // "::" for one group
    ['::2:3:4:5:6:7:8', '00000002000300040005000600070008', '0:2:3:4:5:6:7:8'],
    ['fe80::1:2', 'fe800000000000000000000000010002', 'fe80::1:2'],
    ['FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF', 'ffffffffffffffffffffffffffffffff', 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'],
    ['::ffff:198.18.0.1', '00000000000000000000ffffc6120001', '::ffff:198.18.0.1'],
    ['::FFFF:1.2.3.4', '00000000000000000000ffff01020304', '::ffff:1.2.3.4'],
    ['0:0:0:0:0:ffff:1.2.3.4', '00000000000000000000ffff01020304', '::ffff:1.2.3.4'],
    ['::1.2.3.4', '00000000000000000000000001020304', '::102:304'],
    ['64:ff9b::192.0.2.33', '0064ff9b0000000000000000c0000221', '64:ff9b::c000:221'],
    ['1:2:3:4:5:6:1.2.3.4', '00010002000300040005000601020304', '1:2:3:4:5:6:102:304'],
    ['1::5:6:1.2.3.4', '00010000000000000005000601020304', '1::5:6:102:304'],
    ['0001:0002::0003', '00010002000000000000000000000003', '1:2::3'],
    ['ff02::1:ff00:1', 'ff0200000000000000000001ff000001', 'ff02::1:ff00:1'],
  ];
  for (const [text, h, canonical] of valid) {
    it(`parses ${text}`, () => {
      assert.equal(hex(parseIPv6(text)), h);
      assert.equal(formatIPv6(parseIPv6(text)), canonical);
      assert.ok(isIPv6(text));
      assert.ok(net.isIPv6(text), 'node agrees');
    });
  }
  const invalid = [
    '',
    ':',
    ':::',
    '1',
    '1.2.3.4',
    '1:2:3:4:5:6:7',
    '1:2:3:4:5:6:7:8:9',
    '1:2:3:4:5:6:7:8::',
    '::1:2:3:4:5:6:7:8',
    '1::2::3',
    ':1::',
    '1::2:',
    ':1:2:3:4:5:6:7:8',
    '1:2:3:4:5:6:7:8:',
    '12345::',
    'g::',
    '1:2:3:4:5:6:7:1.2.3.4',
    '1::5:6:7:1.2.3.4:1',
    '::1.2.3',
    '::1.2.3.4.5',
    '::01.2.3.4',
    '::256.1.1.1',
    '::1.2.3.4:1',
    'fe80::1%eth0',
    '[::1]',
    ' ::1',
    '::1 ',
    '1:2:3:4:5:6:7:8:1.2.3.4',
    '::ffff:1.2.3.4/96',
    '1:::2',
    '1:2:3:4::5:6:7:8',
  ];
  for (const text of invalid) {
    it(`rejects ${JSON.stringify(text)}`, () => {
      throwsCode(() => parseIPv6(text), 'ERR_INVALID_ADDRESS');
      assert.equal(isIPv6(text), false);
    });
  }
  it('formats like the WHATWG URL serializer (same compression rules) for random addresses', () => {
    let seed = 12345;
    const rand = (): number => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 8;
    for (let n = 0; n < 3000; n++) {
      const b = new Uint8Array(16);
      for (let g = 0; g < 8; g++) {
        const r = rand() % 4; // groups are often zero, so runs of every length occur
        const v = r === 0 ? rand() & 0xffff : r === 1 ? rand() & 0xf : 0;
        b[2 * g] = v >> 8;
        b[2 * g + 1] = v & 0xff;
      }
      if (hex(b.subarray(0, 12)) === '00000000000000000000ffff') continue; // we use mixed notation there
      const text = formatIPv6(b);
      assert.equal(text, new URL(`http://[${text}]/`).hostname.slice(1, -1));
      assert.equal(hex(parseIPv6(text)), hex(b));
    }
  });
  it('formatIP picks the family by length; parseIP by colon', () => {
    assert.equal(formatIP(parseIPv4('192.0.2.1')), '192.0.2.1');
    assert.equal(formatIP(parseIPv6('2001:db8::')), '2001:db8::');
    throwsCode(() => formatIP(new Uint8Array(5)), 'ERR_INVALID_ADDRESS');
    assert.deepEqual(parseIP('192.0.2.1'), { family: 4, bytes: Uint8Array.of(192, 0, 2, 1) });
    assert.equal(parseIP('::ffff:192.0.2.1').family, 6);
    throwsCode(() => parseIP('nonsense'), 'ERR_INVALID_ADDRESS');
    throwsCode(() => parseIP('1:2'), 'ERR_INVALID_ADDRESS');
  });
  it('errors carry a stable code and say what was parsed', () => {
    try {
      parseIPv6('1::2::3');
      assert.fail('no throw');
    } catch (e) {
      assert.ok(e instanceof PacketError);
      assert.equal(e.code, 'ERR_INVALID_ADDRESS');
      assert.equal(e.name, 'PacketError');
      assert.match(e.message, /1::2::3/);
    }
  });
});

describe('MAC text', () => {
  it('parses and formats', () => {
    assert.equal(hex(parseMac('02:00:5E:10:00:01')), '02005e100001');
    assert.equal(hex(parseMac('02-00-5e-10-00-01')), '02005e100001');
    assert.equal(formatMac(bytes('02005e100001')), '02:00:5e:10:00:01');
    for (const bad of ['', '02:00:5e:10:00', '02:00:5e:10:00:01:02', '0200.5e10.0001', 'zz:00:5e:10:00:01']) {
      throwsCode(() => parseMac(bad), 'ERR_INVALID_MAC');
    }
  });
});

describe('checksums', () => {
  it('RFC 1071 §3 worked example', () => {
    const b = bytes('0001 f203 f4f5 f6f7');
    assert.equal(sumWords(b), 0x2ddf0);
    assert.equal(foldSum(0x2ddf0), 0xddf2);
    assert.equal(internetChecksum(b), 0x220d);
  });
  it('a known IPv4 header (checksum 0xb861)', () => {
    const hdr = bytes('4500 0073 0000 4000 4011 0000 c0a8 0001 c0a8 00c7');
    assert.equal(internetChecksum(hdr), 0xb861);
    hdr[10] = 0xb8;
    hdr[11] = 0x61;
    assert.ok(verifyChecksum(hdr));
    hdr[19] ^= 1;
    assert.equal(verifyChecksum(hdr), false);
  });
  it('odd lengths pad with a zero byte; partial sums add up', () => {
    assert.equal(sumWords(Uint8Array.of(0x12, 0x34, 0x56)), 0x1234 + 0x5600);
    const b = bytes('0102030405060708090a');
    assert.equal(sumWords(b, 4, 6, sumWords(b, 0, 4)), sumWords(b));
    assert.equal(internetChecksum(new Uint8Array(0)), 0xffff);
    assert.equal(finishChecksum(0xffff), 0);
  });
  it('a hand-computed UDP/IPv4 checksum', () => {
    // 192.0.2.1:1 → 192.0.2.2:2, no payload: pseudo c000+0201+c000+0202+0011+0008, header 0001+0002+0008.
    const frame = buildFrame({ ipv4: { src: '192.0.2.1', dst: '192.0.2.2' }, udp: { sport: 1, dport: 2 } });
    assert.equal(u16(frame, 14 + 20 + 6), 0x7bd7);
    assert.equal(pseudoHeaderSumV4(parseIPv4('192.0.2.1'), parseIPv4('192.0.2.2'), 17, 8), 0x1841c);
  });
  it('the IPv6 pseudo-header carries a 32-bit length', () => {
    const z = new Uint8Array(16);
    assert.equal(pseudoHeaderSumV6(z, z, 17, 0x12345), 17 + 1 + 0x2345);
  });
});

describe('frame builder', () => {
  const udp4: FrameSpec = {
    ipv4: { src: '198.18.0.1', dst: '198.18.0.2' },
    udp: { sport: 40000, dport: 4789 },
    payload: Uint8Array.of(1, 2, 3),
  };

  it('Ethernet: MACs and ethertype', () => {
    const f = buildFrame({ eth: { src: '02:00:00:00:00:0a', dst: '02:00:00:00:00:0b', type: 0x88b5 }, payload: Uint8Array.of(9) });
    assert.equal(hex(f), '02000000000b' + '02000000000a' + '88b5' + '09');
    const d = buildFrame(udp4);
    assert.equal(formatMac(d, 0), '02:00:00:00:00:02');
    assert.equal(formatMac(d, 6), '02:00:00:00:00:01');
    assert.equal(u16(d, 12), 0x0800);
  });

  it('VLAN tags: each TPID, then TCI, outermost first', () => {
    const f = buildFrame({
      ...udp4,
      vlans: [
        { tpid: 0x88a8, vid: 100, pcp: 5 },
        { vid: 4095, dei: true },
        { tpid: 0x8100, vid: 1 },
      ],
    });
    const l = layoutFrame({ ...udp4, vlans: [{}, {}, {}] });
    assert.deepEqual(l.vlans, [12, 16, 20]);
    assert.equal(l.ethertype, 24);
    assert.equal(l.l3, 26);
    assert.equal(hex(f.subarray(12, 26)), '88a8' + 'a064' + '8100' + '1fff' + '8100' + '0001' + '0800');
    assert.equal(f[26], 0x45);
  });

  it('ARP request', () => {
    const f = buildFrame({ arp: { senderIp: '198.18.0.1', targetIp: '198.18.0.2' } });
    assert.equal(f.length, 42);
    assert.equal(hex(f.subarray(0, 6)), 'ffffffffffff');
    assert.equal(u16(f, 12), 0x0806);
    assert.equal(hex(f.subarray(14)), '0001' + '0800' + '06' + '04' + '0001' + '020000000001' + 'c6120001' + '000000000000' + 'c6120002');
    const r = buildFrame({
      arp: { op: 2, senderIp: '1.1.1.1', targetIp: '2.2.2.2', senderMac: '02:aa:00:00:00:01', targetMac: '02:bb:00:00:00:02' },
      padTo: 60,
    });
    assert.equal(r.length, 60);
    assert.equal(u16(r, 20), 2);
    assert.equal(formatMac(r, 22), '02:aa:00:00:00:01');
    assert.equal(formatMac(r, 32), '02:bb:00:00:00:02');
  });

  it('IPv4 header fields, options and header checksum', () => {
    const options = Uint8Array.of(0x94, 0x04, 0, 0, 1, 1); // padded to 8
    const f = buildFrame({
      ...udp4,
      ipv4: { src: '198.18.0.1', dst: '198.18.0.2', options, id: 0xbeef, ttl: 7, tos: 0xb8, dontFragment: true },
    });
    const l3 = 14;
    assert.equal(f[l3], 0x47); // IHL 7
    assert.equal(f[l3 + 1], 0xb8);
    assert.equal(u16(f, l3 + 2), 28 + 8 + 3);
    assert.equal(u16(f, l3 + 4), 0xbeef);
    assert.equal(u16(f, l3 + 6), 0x4000);
    assert.equal(f[l3 + 8], 7);
    assert.equal(f[l3 + 9], 17);
    assert.equal(formatIPv4(f, l3 + 12), '198.18.0.1');
    assert.equal(formatIPv4(f, l3 + 16), '198.18.0.2');
    assert.equal(hex(f.subarray(l3 + 20, l3 + 28)), '9404000001010000');
    assert.ok(verifyChecksum(f, l3, 28));
    assert.equal(f.length, 14 + 28 + 8 + 3);
  });

  it('IPv4 fragment bits and overrides are written as given', () => {
    const f = buildFrame({
      ...udp4,
      ipv4: {
        src: '1.2.3.4',
        dst: '5.6.7.8',
        moreFragments: true,
        fragOffset: 0x1abc,
        reservedFlag: true,
        ihl: 15,
        version: 6,
        protocol: 99,
        checksum: 0x1234,
        totalLength: 9,
      },
    });
    assert.equal(u16(f, 20), 0x8000 | 0x2000 | 0x1abc);
    assert.equal(f[14], 0x6f);
    assert.equal(f[23], 99);
    assert.equal(u16(f, 24), 0x1234);
    assert.equal(u16(f, 16), 9);
    assert.equal(f.length, 14 + 20 + 8 + 3, 'IHL override does not change what is written');
    const p = buildFrame({ ipv4: { src: '1.2.3.4', dst: '5.6.7.8' } });
    assert.equal(p[23], 253, 'experimental protocol without an L4 header');
  });

  it('UDP/IPv4 length and checksum over the pseudo-header', () => {
    const f = buildFrame(udp4);
    const l4 = 34;
    assert.equal(u16(f, l4), 40000);
    assert.equal(u16(f, l4 + 2), 4789);
    assert.equal(u16(f, l4 + 4), 11);
    assert.ok(verifyChecksum(f, l4, 11, pseudoHeaderSumV4(parseIPv4('198.18.0.1'), parseIPv4('198.18.0.2'), 17, 11)));
    const none = buildFrame({ ...udp4, udp: { sport: 1, dport: 2, checksum: 'none' } });
    assert.equal(u16(none, l4 + 6), 0);
    const fixed = buildFrame({ ...udp4, udp: { sport: 1, dport: 2, checksum: 0xabcd, length: 3 } });
    assert.equal(u16(fixed, l4 + 6), 0xabcd);
    assert.equal(u16(fixed, l4 + 4), 3);
  });

  it('a UDP checksum that computes to 0 is sent as 0xffff', () => {
    // Search a payload word that makes the sum 0xffff (checksum 0), then expect 0xffff.
    const base = buildFrame({ ...udp4, payload: Uint8Array.of(0, 0) });
    const ck = u16(base, 34 + 6);
    // fold(sum) = 0xffff - ck, so a payload word equal to ck makes the sum 0xffff and its complement 0.
    const f = buildFrame({ ...udp4, payload: Uint8Array.of(ck >> 8, ck & 0xff) });
    assert.equal(u16(f, 34 + 6), 0xffff);
  });

  it('IPv6 header, extension header chain, payload length, UDP checksum', () => {
    const spec: FrameSpec = {
      ipv6: {
        src: '2001:db8::1',
        dst: '2001:db8::2',
        trafficClass: 0xab,
        flowLabel: 0xcdef1,
        hopLimit: 9,
        extensions: [
          { type: 0 },
          { type: 43, hdrExtLen: 2, routingType: 4, segmentsLeft: 1 },
          { type: 60, hdrExtLen: 1 },
          { type: 44, fragOffset: 3, moreFragments: true, id: 0xdeadbeef },
        ],
      },
      udp: { sport: 1, dport: 4789 },
      payload: Uint8Array.of(7, 7, 7, 7),
    };
    const f = buildFrame(spec);
    const l = layoutFrame(spec);
    assert.equal(u16(f, 12), 0x86dd);
    assert.equal(u32(f, 14), (6 << 28) | (0xab << 20) | 0xcdef1);
    assert.equal(f[14 + 6], 0); // first extension: hop-by-hop
    assert.equal(f[14 + 7], 9);
    assert.equal(formatIPv6(f, 14 + 8), '2001:db8::1');
    assert.equal(formatIPv6(f, 14 + 24), '2001:db8::2');
    assert.deepEqual(l.extensions, [54, 62, 86, 102]);
    assert.equal(l.l4, 110);
    assert.equal(hex(f.subarray(54, 62)), '2b00' + '0104' + '00000000'); // → routing; PadN of 4
    assert.equal(hex(f.subarray(62, 66)), '3c020401'); // → dstopts, len 2, type 4, segments left 1
    assert.equal(hex(f.subarray(86, 90)), '2c01' + '010c'); // → fragment; PadN of 12
    assert.equal(hex(f.subarray(102, 110)), '1100' + '0019' + 'deadbeef'); // → UDP; offset 3, M
    assert.equal(u16(f, 14 + 4), f.length - 54);
    const udpLen = f.length - l.l4;
    assert.ok(verifyChecksum(f, l.l4, udpLen, pseudoHeaderSumV6(parseIPv6('2001:db8::1'), parseIPv6('2001:db8::2'), 17, udpLen)));
  });

  it('IPv6 defaults: no next header without L4; long extension headers', () => {
    const f = buildFrame({ ipv6: { src: '::1', dst: '::2' } });
    assert.equal(f.length, 54);
    assert.equal(f[20], 59);
    assert.equal(u16(f, 18), 0);
    const g = buildFrame({ ipv6: { src: '::1', dst: '::2', extensions: [{ type: 60, hdrExtLen: 255 }] } });
    assert.equal(g.length, 54 + 2048);
    assert.equal(hex(g.subarray(54, 58)), '3bff' + '01' + 'fc'); // PadN of 2044
    const h = buildFrame({ ipv6: { src: '::1', dst: '::2', nextHeader: 17, extensions: [{ type: 0, nextHeader: 58 }] } });
    assert.equal(h[20], 17);
    assert.equal(h[54], 58);
  });

  it('TCP minimal header', () => {
    const f = buildFrame({
      ipv4: { src: '192.0.2.1', dst: '192.0.2.2' },
      tcp: { sport: 1234, dport: 22, seq: 0x01020304, ack: 5, flags: 0x12 },
    });
    const l4 = 34;
    assert.equal(f[23], 6);
    assert.equal(f.length, l4 + 20);
    assert.equal(hex(f.subarray(l4, l4 + 16)), '04d2' + '0016' + '01020304' + '00000005' + '50' + '12' + 'ffff');
    assert.ok(verifyChecksum(f, l4, 20, pseudoHeaderSumV4(parseIPv4('192.0.2.1'), parseIPv4('192.0.2.2'), 6, 20)));
    const g = buildFrame({ ipv6: { src: '::1', dst: '::2' }, tcp: { sport: 1, dport: 2 }, payload: Uint8Array.of(1, 2, 3) });
    assert.ok(verifyChecksum(g, 54, 23, pseudoHeaderSumV6(parseIPv6('::1'), parseIPv6('::2'), 6, 23)));
  });

  it('ICMP echo', () => {
    const f = buildFrame({ ipv4: { src: '192.0.2.1', dst: '192.0.2.2' }, icmp: { id: 0x1234, seq: 2 }, payload: bytes('aabbcc') });
    assert.equal(f[23], 1);
    assert.equal(hex(f.subarray(34, 35)), '08');
    assert.equal(u16(f, 38), 0x1234);
    assert.equal(u16(f, 40), 2);
    assert.ok(verifyChecksum(f, 34, 11));
  });

  it('ICMPv6 neighbour solicitation and echo', () => {
    const target = '2001:db8::1234:5678';
    const dst = solicitedNodeAddress(target);
    assert.equal(formatIPv6(dst), 'ff02::1:ff34:5678');
    assert.equal(formatMac(ipv6MulticastMac(dst)), '33:33:ff:34:56:78');
    const src = parseIPv6('fe80::1');
    const f = buildFrame({
      eth: { dst: ipv6MulticastMac(dst) },
      ipv6: { src, dst, hopLimit: 255 },
      icmpv6: { target, sourceMac: '02:00:00:00:00:01' },
    });
    assert.equal(f[20], 58);
    assert.equal(f[21], 255);
    assert.equal(f.length, 54 + 32);
    assert.equal(f[54], 135);
    assert.equal(f[55], 0);
    assert.equal(u32(f, 58), 0);
    assert.equal(formatIPv6(f, 62), target);
    assert.equal(hex(f.subarray(78, 86)), '0101020000000001');
    assert.ok(verifyChecksum(f, 54, 32, pseudoHeaderSumV6(src, dst, 58, 32)));
    const e = buildFrame({ ipv6: { src: '::1', dst: '::2' }, icmpv6: { type: 128, id: 3, seq: 4 } });
    assert.equal(hex(e.subarray(54)).slice(0, 2), '80');
    assert.equal(u16(e, 58), 3);
    assert.equal(u16(e, 60), 4);
    assert.ok(verifyChecksum(e, 54, 8, pseudoHeaderSumV6(parseIPv6('::1'), parseIPv6('::2'), 58, 8)));
  });

  it('writeFrame writes at an offset, zeroing stale bytes; frameLength agrees', () => {
    const buf = new Uint8Array(200).fill(0xee);
    const n = writeFrame({ ...udp4, padTo: 60 }, buf, 10);
    assert.equal(n, 60);
    assert.equal(frameLength({ ...udp4, padTo: 60 }), 60);
    assert.deepEqual(buf.subarray(10, 70), buildFrame({ ...udp4, padTo: 60 }));
    assert.equal(buf[9], 0xee);
    assert.equal(buf[70], 0xee);
    assert.equal(u16(buf, 10 + 16), 20 + 8 + 3, 'padding is not part of the IPv4 total length');
    assert.throws(() => writeFrame(udp4, new Uint8Array(10)), RangeError);
  });

  it('rejects impossible layer combinations', () => {
    throwsCode(() => buildFrame({ udp: { sport: 1, dport: 2 } }), 'ERR_INVALID_FRAME_SPEC');
    throwsCode(() => buildFrame({ ipv4: { src: '1.1.1.1', dst: '2.2.2.2' }, ipv6: { src: '::1', dst: '::2' } }), 'ERR_INVALID_FRAME_SPEC');
    throwsCode(
      () => buildFrame({ ipv4: { src: '1.1.1.1', dst: '2.2.2.2' }, udp: { sport: 1, dport: 2 }, tcp: { sport: 1, dport: 2 } }),
      'ERR_INVALID_FRAME_SPEC',
    );
    throwsCode(() => buildFrame({ ipv4: { src: '1.1.1.1', dst: '2.2.2.2' }, icmpv6: {} }), 'ERR_INVALID_FRAME_SPEC');
    throwsCode(() => buildFrame({}), 'ERR_INVALID_FRAME_SPEC');
    throwsCode(() => buildFrame({ ipv4: { src: '1.1.1', dst: '2.2.2.2' } }), 'ERR_INVALID_ADDRESS');
    throwsCode(() => buildFrame({ ipv4: { src: new Uint8Array(16), dst: '2.2.2.2' } }), 'ERR_INVALID_FRAME_SPEC');
    throwsCode(() => buildFrame({ eth: { src: 'nope', type: 1 } }), 'ERR_INVALID_MAC');
  });
});
