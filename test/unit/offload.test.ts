// Unit tests for src/packet/offload.ts (CHECKSUM_PARTIAL completion and software GSO of frames read
// with PACKET_VNET_HDR) and the fast checksum helpers it uses. Every produced frame is checked by an
// independent checker written here: a byte-by-byte one's complement sum, a bitwise CRC32c, and field
// reads at the offsets the test's own frame builder used.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';

import {
  OFFLOAD_BAD_CHECKSUM_OFFSET,
  OFFLOAD_BAD_GSO_SIZE,
  OFFLOAD_BAD_IP_HEADER,
  OFFLOAD_BAD_L4_HEADER,
  OFFLOAD_BAD_SEGMENT,
  OFFLOAD_DROP_REASONS,
  OFFLOAD_IP_FRAGMENT,
  OFFLOAD_IPV6_EXT_HEADER,
  OFFLOAD_NO_ROOM,
  OFFLOAD_NOT_IP,
  OFFLOAD_PROTOCOL_MISMATCH,
  OFFLOAD_TOO_MANY_SEGMENTS,
  OFFLOAD_TRUNCATED,
  OFFLOAD_UNSUPPORTED_GSO,
  Segmenter,
  VNET_F_NEEDS_CSUM,
  VNET_GSO_ECN,
  VNET_GSO_NONE,
  VNET_GSO_TCPV4,
  VNET_GSO_TCPV6,
  VNET_GSO_UDP,
  VNET_GSO_UDP_L4,
  VNET_HDR_LEN,
  completeChecksum,
  crc32c,
  offloadDropReason,
  vnetCsumOffset,
  vnetCsumStart,
  vnetFlags,
  vnetGsoSize,
  vnetGsoType,
  vnetHdrLen,
  writeVnetHeader,
} from '../../src/packet/offload.ts';
import { copySumWords, foldSum, pseudoHeaderSumV6, sumWords, sumWordsFast } from '../../src/packet/checksum.ts';
import { VxlanEncapTemplate } from '../../src/packet/vxlan.ts';
import { parseMac } from '../../src/packet/mac.ts';

// ---------- independent helpers ----------

const u16 = (b: Uint8Array, at: number): number => (b[at] << 8) | b[at + 1];
const u32 = (b: Uint8Array, at: number): number => ((b[at] << 24) | (b[at + 1] << 16) | (b[at + 2] << 8) | b[at + 3]) >>> 0;
const put16 = (b: Uint8Array, at: number, v: number): void => {
  b[at] = (v >>> 8) & 0xff;
  b[at + 1] = v & 0xff;
};
const put32 = (b: Uint8Array, at: number, v: number): void => {
  put16(b, at, v >>> 16);
  put16(b, at + 2, v & 0xffff);
};

/** One's complement sum of b[s, e) (bytes paired from s, big-endian), folded to 16 bits. */
function onesSum(b: Uint8Array, s: number, e: number, init = 0): number {
  let sum = init;
  for (let i = s; i < e; i++) sum += (i - s) % 2 === 0 ? b[i] * 256 : b[i];
  while (sum > 0xffff) sum = (sum % 65536) + Math.floor(sum / 65536);
  return sum;
}

/** Pseudo-header sum (unfolded is fine) of the IP header at l3 for an L4 part of `l4Len` bytes. */
function pseudoOf(b: Uint8Array, l3: number, l4Len: number): number {
  if (b[l3] >>> 4 === 4) return onesSum(b, l3 + 12, l3 + 20) + b[l3 + 9] + l4Len;
  return onesSum(b, l3 + 8, l3 + 40) + b[l3 + 6] + (l4Len >>> 16) + (l4Len & 0xffff);
}

/** Bitwise CRC32c (no table), the standard check value of "123456789" is 0xe3069283. */
function crc32cSlow(b: Uint8Array, s: number, e: number): number {
  let c = 0xffffffff;
  for (let i = s; i < e; i++) {
    c ^= b[i];
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

let seed = 0x1234567;
function rnd(): number {
  seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
  return seed >>> 8;
}
function payloadOf(n: number, salt = 0): Uint8Array {
  const p = new Uint8Array(n);
  for (let i = 0; i < n; i++) p[i] = (i * 31 + salt + (i >>> 8)) & 0xff;
  return p;
}

// ---------- frame builder (this test's own) ----------

interface SuperSpec {
  tpid?: number; // one VLAN tag with this TPID
  v6?: boolean;
  ipOptions?: number[]; // IPv4 option bytes, a multiple of 4
  udp?: boolean;
  tcpOptions?: number[]; // a multiple of 4
  payload: Uint8Array;
  seq?: number;
  flags?: number;
  id?: number;
  fragOff?: number; // raw IPv4 flags+fragment word (default DF)
  nextHeader?: number; // IPv6 next header override
  partial?: boolean; // default true: L4 checksum field = pseudo-header sum (CHECKSUM_PARTIAL)
  sctp?: boolean; // SCTP common header (12 bytes) instead of TCP/UDP
}
interface Built {
  frame: Uint8Array;
  l3: number;
  l4: number;
  hdrLen: number;
  csumOffset: number;
}

const TCP_OPTS_TS = [0x01, 0x01, 0x08, 0x0a, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07];

function buildSuper(spec: SuperSpec): Built {
  const l3 = spec.tpid === undefined ? 14 : 18;
  const ipOpts = spec.ipOptions ?? [];
  const ipLen = spec.v6 ? 40 : 20 + ipOpts.length;
  const l4 = l3 + ipLen;
  const l4Hdr = spec.sctp ? 12 : spec.udp ? 8 : 20 + (spec.tcpOptions ?? []).length;
  const hdrLen = l4 + l4Hdr;
  const len = hdrLen + spec.payload.length;
  const f = new Uint8Array(len);
  f.set([2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1], 0);
  const type = spec.v6 ? 0x86dd : 0x0800;
  if (spec.tpid !== undefined) {
    put16(f, 12, spec.tpid);
    put16(f, 14, 0x2064); // PCP 1, VID 100
    put16(f, 16, type);
  } else {
    put16(f, 12, type);
  }
  const proto = spec.sctp ? 132 : spec.udp ? 17 : 6;
  if (spec.v6) {
    put32(f, l3, 0x60012345);
    put16(f, l3 + 4, len - l3 - 40);
    f[l3 + 6] = spec.nextHeader ?? proto;
    f[l3 + 7] = 64;
    f.set([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], l3 + 8);
    f.set([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2], l3 + 24);
  } else {
    f[l3] = 0x40 | (ipLen / 4);
    f[l3 + 1] = 0x02; // ECT(0)
    put16(f, l3 + 2, len - l3);
    put16(f, l3 + 4, spec.id ?? 0x1000);
    put16(f, l3 + 6, spec.fragOff ?? 0x4000);
    f[l3 + 8] = 64;
    f[l3 + 9] = proto;
    f.set([198, 18, 0, 1, 198, 18, 0, 2], l3 + 12);
    f.set(ipOpts, l3 + 20);
    put16(f, l3 + 10, ~onesSum(f, l3, l3 + ipLen) & 0xffff);
  }
  let csumOffset: number;
  if (spec.sctp) {
    put16(f, l4, 5000);
    put16(f, l4 + 2, 5001);
    put32(f, l4 + 4, 0xdeadbeef); // verification tag
    csumOffset = 8;
  } else if (spec.udp) {
    put16(f, l4, 40000);
    put16(f, l4 + 2, 4500);
    put16(f, l4 + 4, len - l4);
    csumOffset = 6;
  } else {
    put16(f, l4, 40000);
    put16(f, l4 + 2, 5201);
    put32(f, l4 + 4, spec.seq ?? 1000);
    put32(f, l4 + 8, 0x01020304);
    f[l4 + 12] = (l4Hdr / 4) << 4;
    f[l4 + 13] = spec.flags ?? 0x18;
    put16(f, l4 + 14, 502);
    f.set(spec.tcpOptions ?? [], l4 + 20);
    csumOffset = 16;
  }
  f.set(spec.payload, hdrLen);
  if (!spec.sctp) {
    if (spec.partial ?? true) put16(f, l4 + csumOffset, onesSum(new Uint8Array(0), 0, 0, pseudoOf(f, l3, len - l4)));
    else put16(f, l4 + csumOffset, 0xbeef); // garbage: GSO must not depend on it
  }
  return { frame: f, l3, l4, hdrLen, csumOffset };
}

// ---------- segment checker ----------

interface Expect {
  mss: number;
  count?: number;
  cwrFirstOnly?: boolean;
}

/** Segments `built` with the module and checks every segment independently. Returns the segments. */
function segmentAndCheck(built: Built, gsoType: number, exp: Expect, seg = new Segmenter()): Uint8Array[] {
  const src = built.frame;
  const { l3, l4, hdrLen } = built;
  const payloadLen = src.length - hdrLen;
  const want = payloadLen <= exp.mss ? 1 : Math.ceil(payloadLen / exp.mss);
  const n = seg.begin(src, 0, src.length, gsoType, exp.mss);
  assert.equal(n, want, `segment count (${offloadDropReason(n) ?? ''})`);
  if (exp.count !== undefined) assert.equal(n, exp.count);
  const v4 = src[l3] >>> 4 === 4;
  const udp = (v4 ? src[l3 + 9] : src[l3 + 6]) === 17;
  const out: Uint8Array[] = [];
  const collected: number[] = [];
  // Write in reverse order into a shared destination buffer at changing offsets, to show order and
  // placement do not matter.
  const dst = new Uint8Array(70000 + 8);
  for (let i = n - 1; i >= 0; i--) {
    const off = 3 + i * 7;
    const segLen = seg.segmentLength(i);
    const wrote = seg.write(i, dst, off);
    assert.equal(wrote, segLen, `segment ${i} length`);
    out[i] = dst.slice(off, off + wrote);
  }
  for (let i = 0; i < n; i++) {
    const s = out[i];
    const last = i === n - 1;
    const segPay = last ? payloadLen - exp.mss * (n - 1) : exp.mss;
    assert.equal(s.length, hdrLen + segPay, `segment ${i} size`);
    // Ethernet/VLAN header untouched
    assert.deepEqual(s.subarray(0, l3), src.subarray(0, l3));
    if (v4) {
      const ihl = (s[l3] & 15) * 4;
      assert.equal(u16(s, l3 + 2), s.length - l3, 'IPv4 total length');
      assert.equal(u16(s, l3 + 4), (u16(src, l3 + 4) + i) & 0xffff, 'IPv4 id increments');
      assert.equal(onesSum(s, l3, l3 + ihl), 0xffff, 'IPv4 header checksum');
      // everything else in the IPv4 header (including options) as in the super-frame
      assert.deepEqual(s.subarray(l3 + 6, l3 + 10), src.subarray(l3 + 6, l3 + 10));
      assert.deepEqual(s.subarray(l3 + 12, l3 + ihl), src.subarray(l3 + 12, l3 + ihl));
      assert.equal(s[l3], src[l3]);
      assert.equal(s[l3 + 1], src[l3 + 1]);
    } else {
      assert.equal(u16(s, l3 + 4), s.length - l3 - 40, 'IPv6 payload length');
      assert.deepEqual(s.subarray(l3, l3 + 4), src.subarray(l3, l3 + 4));
      assert.deepEqual(s.subarray(l3 + 6, l3 + 40), src.subarray(l3 + 6, l3 + 40));
    }
    const l4Len = s.length - l4;
    assert.equal(onesSum(s, l4, s.length, pseudoOf(s, l3, l4Len)), 0xffff, `L4 checksum of segment ${i}`);
    if (udp) {
      assert.equal(u16(s, l4 + 4), l4Len, 'UDP length');
      assert.notEqual(u16(s, l4 + 6), 0, 'UDP checksum never 0');
      assert.deepEqual(s.subarray(l4, l4 + 4), src.subarray(l4, l4 + 4));
    } else {
      assert.equal(u32(s, l4 + 4), (u32(src, l4 + 4) + i * exp.mss) >>> 0, 'TCP seq');
      const f0 = src[l4 + 13];
      let want = f0;
      if (!last) want &= ~0x09; // FIN, PSH only on the last
      if (i > 0) want &= ~0x80; // CWR only on the first
      assert.equal(s[l4 + 13], want, `TCP flags of segment ${i}`);
      assert.deepEqual(s.subarray(l4, l4 + 4), src.subarray(l4, l4 + 4));
      assert.deepEqual(s.subarray(l4 + 8, l4 + 13), src.subarray(l4 + 8, l4 + 13));
      assert.deepEqual(s.subarray(l4 + 14, l4 + 16), src.subarray(l4 + 14, l4 + 16));
      assert.deepEqual(s.subarray(l4 + 18, hdrLen), src.subarray(l4 + 18, hdrLen), 'urgent pointer and options');
    }
    for (let k = hdrLen; k < s.length; k++) collected.push(s[k]);
  }
  assert.deepEqual(Uint8Array.from(collected), src.subarray(hdrLen), 'payloads concatenate to the original');
  return out;
}

// ---------- tests ----------

describe('vnet header', () => {
  it('writes and reads the ten little-endian bytes', () => {
    const b = new Uint8Array(VNET_HDR_LEN + 2);
    writeVnetHeader(b, 1, VNET_F_NEEDS_CSUM, VNET_GSO_TCPV4 | VNET_GSO_ECN, 66, 1448, 34, 16);
    assert.deepEqual([...b], [0, 1, 0x81, 66, 0, 0xa8, 0x05, 34, 0, 16, 0, 0]);
    assert.equal(vnetFlags(b, 1), VNET_F_NEEDS_CSUM);
    assert.equal(vnetGsoType(b, 1), 0x81);
    assert.equal(vnetHdrLen(b, 1), 66);
    assert.equal(vnetGsoSize(b, 1), 1448);
    assert.equal(vnetCsumStart(b, 1), 34);
    assert.equal(vnetCsumOffset(b, 1), 16);
    writeVnetHeader(b, 0, 0, 0, 0xffff, 0xfedc, 0x1234, 0xabcd);
    assert.equal(vnetHdrLen(b, 0), 0xffff);
    assert.equal(vnetGsoSize(b, 0), 0xfedc);
    assert.equal(vnetCsumStart(b, 0), 0x1234);
    assert.equal(vnetCsumOffset(b, 0), 0xabcd);
  });

  it('names drop codes', () => {
    assert.equal(offloadDropReason(OFFLOAD_TRUNCATED), 'truncated');
    assert.equal(offloadDropReason(OFFLOAD_NO_ROOM), 'no-room');
    assert.equal(offloadDropReason(-OFFLOAD_DROP_REASONS.length), OFFLOAD_DROP_REASONS[OFFLOAD_DROP_REASONS.length - 1]);
    assert.equal(offloadDropReason(0), undefined);
    assert.equal(offloadDropReason(3), undefined);
    assert.equal(new Set(OFFLOAD_DROP_REASONS).size, OFFLOAD_DROP_REASONS.length);
  });
});

describe('fast checksum helpers', () => {
  it('sumWordsFast and copySumWords agree with sumWords at every alignment and length', () => {
    const big = new Uint8Array(66000 + 16);
    for (let i = 0; i < big.length; i++) big[i] = rnd() & 0xff;
    for (let t = 0; t < 3000; t++) {
      const b = big.subarray(rnd() & 7);
      const off = rnd() % 64;
      const len = t % 100 === 0 ? 65536 : rnd() % 1600;
      const acc = (rnd() & 1) === 0 ? 0 : rnd();
      assert.equal(foldSum(sumWordsFast(b, off, len, acc)), foldSum(sumWords(b, off, len, acc)), `sum ${off}+${len}`);
      const dstBuf = new Uint8Array(1700);
      const dst = dstBuf.subarray(rnd() & 7);
      const l2 = Math.min(len, 1500);
      const dOff = 8 + (rnd() % 64);
      assert.equal(foldSum(copySumWords(b, off, dst, dOff, l2, acc)), foldSum(sumWords(b, off, l2, acc)), `copy ${off}->${dOff}+${l2}`);
      assert.deepEqual(dst.subarray(dOff, dOff + l2), b.subarray(off, off + l2));
      for (let k = 0; k < dOff; k++) assert.equal(dst[k], 0, 'nothing written before');
      for (let k = dOff + l2; k < dst.length; k++) assert.equal(dst[k], 0, 'nothing written after');
    }
  });

  it('copySumWords up to the very end of the source and destination buffers, at every shift', () => {
    for (let srcLen = 200; srcLen < 208; srcLen++) {
      const src = new Uint8Array(srcLen);
      for (let i = 0; i < srcLen; i++) src[i] = rnd() & 0xff;
      for (let from = 100; from < 108; from++) {
        for (let dstLen = 120; dstLen < 124; dstLen++) {
          const n = srcLen - from;
          const dst = new Uint8Array(dstLen);
          const at = dstLen - n;
          assert.equal(foldSum(copySumWords(src, from, dst, at, n, 7)), foldSum(sumWords(src, from, n, 7)));
          assert.deepEqual(dst.subarray(at), src.subarray(from));
        }
      }
    }
  });

  it('copySumWords copies aligned ranges between views of one buffer', () => {
    const buf = new Uint8Array(4096);
    for (let i = 0; i < 2048; i++) buf[i] = rnd() & 0xff;
    const a = buf.subarray(2);
    const expect = foldSum(sumWords(buf, 102, 1003));
    assert.equal(foldSum(copySumWords(a, 100, buf, 2102, 1003)), expect); // same alignment, same buffer
    assert.deepEqual(buf.subarray(2102, 3105), buf.subarray(102, 1105));
  });
});

describe('completeChecksum (CHECKSUM_PARTIAL)', () => {
  const cases: Array<[string, SuperSpec]> = [
    ['TCP over IPv4', { payload: payloadOf(999) }],
    ['TCP over IPv4 with options, VLAN', { tpid: 0x8100, ipOptions: [1, 1, 1, 0], tcpOptions: TCP_OPTS_TS, payload: payloadOf(1448) }],
    ['UDP over IPv4', { udp: true, payload: payloadOf(513) }],
    ['UDP over IPv6', { udp: true, v6: true, payload: payloadOf(1200) }],
    ['TCP over IPv6, 802.1ad tag', { v6: true, tpid: 0x88a8, payload: payloadOf(77) }],
    ['TCP, no payload', { payload: new Uint8Array(0) }],
  ];
  for (const [name, spec] of cases) {
    it(`completes ${name}`, () => {
      const { frame, l3, l4, csumOffset } = buildSuper(spec);
      assert.notEqual(onesSum(frame, l4, frame.length, pseudoOf(frame, l3, frame.length - l4)), 0xffff, 'partial before');
      // Put the frame at an odd place in a bigger buffer, to exercise the alignment handling.
      const buf = new Uint8Array(frame.length + 16);
      buf.set(frame, 5);
      assert.equal(completeChecksum(buf, 5, frame.length, l4, csumOffset), 0);
      const out = buf.subarray(5, 5 + frame.length);
      assert.equal(onesSum(out, l4, out.length, pseudoOf(out, l3, out.length - l4)), 0xffff, 'valid after');
      assert.deepEqual(out.subarray(0, l4 + csumOffset), frame.subarray(0, l4 + csumOffset), 'nothing else changed');
      assert.deepEqual(out.subarray(l4 + csumOffset + 2), frame.subarray(l4 + csumOffset + 2));
      assert.equal(buf[4], 0);
      assert.equal(buf[5 + frame.length], 0);
    });
  }

  it('stores 0xffff for a UDP checksum that computes to 0', () => {
    // Find a payload whose checksum is 0 by adjusting two payload bytes.
    const spec: SuperSpec = { udp: true, payload: payloadOf(64) };
    const built = buildSuper(spec);
    const { frame, l3, l4 } = built;
    const probe = frame.slice();
    completeChecksum(probe, 0, probe.length, l4, 6);
    // Adding the current checksum value to the last aligned payload word makes the sum 0xffff → checksum 0.
    const c = u16(probe, l4 + 6);
    const at = frame.length - 2;
    const w = u16(frame, at);
    let nw = w + c;
    nw = (nw & 0xffff) + (nw >>> 16);
    put16(frame, at, nw);
    assert.equal(completeChecksum(frame, 0, frame.length, l4, 6), 0);
    assert.equal(u16(frame, l4 + 6), 0xffff);
    assert.equal(onesSum(frame, l4, frame.length, pseudoOf(frame, l3, frame.length - l4)), 0xffff);
  });

  it('computes the SCTP CRC32c', () => {
    const digits = new TextEncoder().encode('123456789');
    assert.equal(crc32c(digits, 0, digits.length), 0xe3069283);
    assert.equal(crc32cSlow(digits, 0, digits.length), 0xe3069283);
    for (const v6 of [false, true]) {
      const { frame, l4 } = buildSuper({ sctp: true, v6, payload: payloadOf(301) });
      put32(frame, l4 + 8, 0x11223344); // whatever the sender left there
      assert.equal(completeChecksum(frame, 0, frame.length, l4, 8), 0);
      const stored = frame[l4 + 8] | (frame[l4 + 9] << 8) | (frame[l4 + 10] << 16) | (frame[l4 + 11] * 0x1000000);
      const copy = frame.slice();
      put32(copy, l4 + 8, 0);
      assert.equal(stored, crc32cSlow(copy, l4, copy.length), v6 ? 'IPv6' : 'IPv4');
    }
  });

  it('refuses offsets outside the frame', () => {
    const { frame, l4 } = buildSuper({ payload: payloadOf(100) });
    const before = frame.slice();
    assert.equal(completeChecksum(frame, 0, frame.length, frame.length, 0), OFFLOAD_BAD_CHECKSUM_OFFSET);
    assert.equal(completeChecksum(frame, 0, frame.length, frame.length - 1, 0), OFFLOAD_BAD_CHECKSUM_OFFSET);
    assert.equal(completeChecksum(frame, 0, frame.length, l4, frame.length - l4 - 1), OFFLOAD_BAD_CHECKSUM_OFFSET);
    assert.equal(completeChecksum(frame, 0, frame.length, l4, 0xffff), OFFLOAD_BAD_CHECKSUM_OFFSET);
    assert.equal(completeChecksum(frame, 0, frame.length, 0xffff, 16), OFFLOAD_BAD_CHECKSUM_OFFSET);
    assert.equal(completeChecksum(frame, 0, frame.length, l4, 15), OFFLOAD_BAD_CHECKSUM_OFFSET, 'odd offset');
    assert.equal(completeChecksum(frame, 0, frame.length, -1, 16), OFFLOAD_BAD_CHECKSUM_OFFSET);
    assert.equal(completeChecksum(frame, 1, frame.length, l4, 16), OFFLOAD_TRUNCATED, 'frame beyond the buffer');
    assert.deepEqual(frame, before, 'nothing written');
    assert.equal(completeChecksum(frame, 0, frame.length, frame.length - 2, 0), 0, 'the last two bytes are fine');
  });
});

describe('Segmenter (software GSO)', () => {
  it('IPv4 TCP with IP options and timestamps, payload not a multiple of the MSS, FIN/PSH/CWR', () => {
    const b = buildSuper({
      ipOptions: [0x94, 0x04, 0, 0], // router alert, copied into every segment
      tcpOptions: TCP_OPTS_TS,
      payload: payloadOf(5000),
      flags: 0x80 | 0x10 | 0x08 | 0x01, // CWR ACK PSH FIN
      seq: 0x7fff0000,
      id: 0x4242,
    });
    const segs = segmentAndCheck(b, VNET_GSO_TCPV4 | VNET_GSO_ECN, { mss: 1448, count: 4 });
    assert.equal(segs[0][b.l4 + 13], 0x90);
    assert.equal(segs[1][b.l4 + 13], 0x10);
    assert.equal(segs[3][b.l4 + 13], 0x19);
    assert.equal(segs[3].length, b.hdrLen + 5000 - 3 * 1448);
  });

  it('IPv6 TCP, payload an exact multiple of the MSS', () => {
    const b = buildSuper({ v6: true, tcpOptions: TCP_OPTS_TS, payload: payloadOf(3 * 1428), flags: 0x18 });
    segmentAndCheck(b, VNET_GSO_TCPV6, { mss: 1428, count: 3 });
  });

  it('UDP_L4 over IPv4 and IPv6: a UDP header per segment', () => {
    segmentAndCheck(buildSuper({ udp: true, payload: payloadOf(4000) }), VNET_GSO_UDP_L4, { mss: 1472, count: 3 });
    segmentAndCheck(buildSuper({ udp: true, v6: true, payload: payloadOf(4000, 9) }), VNET_GSO_UDP_L4, { mss: 1452, count: 3 });
    segmentAndCheck(buildSuper({ udp: true, v6: true, payload: payloadOf(1452 * 5) }), VNET_GSO_UDP_L4, { mss: 1452, count: 5 });
  });

  it('VLAN-tagged (802.1Q and 802.1ad) super-frames', () => {
    segmentAndCheck(buildSuper({ tpid: 0x8100, payload: payloadOf(3001), flags: 0x19 }), VNET_GSO_TCPV4, { mss: 1000, count: 4 });
    segmentAndCheck(buildSuper({ tpid: 0x88a8, v6: true, payload: payloadOf(3001) }), VNET_GSO_TCPV6, { mss: 1000, count: 4 });
    segmentAndCheck(buildSuper({ tpid: 0x8100, udp: true, payload: payloadOf(2999) }), VNET_GSO_UDP_L4, { mss: 1000, count: 3 });
  });

  it('payload smaller than (or equal to) the MSS: one complete frame, fields unchanged', () => {
    for (const [pay, flags] of [
      [100, 0x99],
      [1448, 0x19],
      [0, 0x11],
    ] as const) {
      const b = buildSuper({ payload: payloadOf(pay), flags, tcpOptions: TCP_OPTS_TS });
      const [s] = segmentAndCheck(b, VNET_GSO_TCPV4, { mss: 1448, count: 1 });
      assert.equal(s[b.l4 + 13], flags, 'flags kept');
      assert.deepEqual(s.subarray(0, b.l4 + 16), b.frame.subarray(0, b.l4 + 16), 'headers as they were');
    }
    segmentAndCheck(buildSuper({ udp: true, v6: true, payload: payloadOf(10) }), VNET_GSO_UDP_L4, { mss: 1400, count: 1 });
  });

  it('odd segment sizes and a tiny MSS', () => {
    segmentAndCheck(buildSuper({ payload: payloadOf(1001) }), VNET_GSO_TCPV4, { mss: 333 });
    segmentAndCheck(buildSuper({ v6: true, payload: payloadOf(257) }), VNET_GSO_TCPV6, { mss: 1, count: 257 }, new Segmenter(300));
    segmentAndCheck(buildSuper({ udp: true, payload: payloadOf(999) }), VNET_GSO_UDP_L4, { mss: 7 }, new Segmenter(200));
  });

  it('wraps the sequence number and the IPv4 id', () => {
    const b = buildSuper({ payload: payloadOf(4000), seq: 0xfffffc00, id: 0xfffe });
    const segs = segmentAndCheck(b, VNET_GSO_TCPV4, { mss: 1000, count: 4 });
    assert.equal(u32(segs[1], b.l4 + 4), 0xffffffe8);
    assert.equal(u32(segs[2], b.l4 + 4), 976); // wrapped: 0xfffffc00 + 2000 - 2^32
    assert.equal(u16(segs[2], b.l3 + 4), 0x0000);
    assert.equal(u16(segs[3], b.l3 + 4), 0x0001);
  });

  it('does not depend on the super-frame checksum field (partial or not)', () => {
    segmentAndCheck(buildSuper({ payload: payloadOf(3000), partial: false }), VNET_GSO_TCPV4, { mss: 1448 });
    segmentAndCheck(buildSuper({ udp: true, v6: true, payload: payloadOf(3000), partial: false }), VNET_GSO_UDP_L4, { mss: 1448 });
  });

  it('works at any offset in the source buffer, into the same buffer, and segment 0 in place', () => {
    const b = buildSuper({ tcpOptions: TCP_OPTS_TS, payload: payloadOf(6000), flags: 0x99 });
    const reference = segmentAndCheck(b, VNET_GSO_TCPV4 | VNET_GSO_ECN, { mss: 1448 });
    for (const at of [0, 1, 2, 3, 6]) {
      const buf = new Uint8Array(at + b.frame.length + 5 * 1600);
      buf.set(b.frame, at);
      const seg = new Segmenter();
      const n = seg.begin(buf, at, b.frame.length, VNET_GSO_TCPV4 | VNET_GSO_ECN, 1448);
      assert.equal(n, reference.length);
      // segments 1.. after the super-frame in the same buffer, at aligned and unaligned places
      let off = at + b.frame.length + (at & 1);
      for (let i = n - 1; i >= 1; i--) {
        const len = seg.write(i, buf, off);
        assert.deepEqual(buf.subarray(off, off + len), reference[i], `segment ${i} from offset ${at}`);
        off += len + 1;
      }
      // segment 0 over the super-frame itself, last: every changed field is rebuilt from the parse
      const len0 = seg.write(0, buf, at);
      assert.deepEqual(buf.subarray(at, at + len0), reference[0]);
      // and again after segment 0 overwrote the headers: the later segments are still right
      const out = new Uint8Array(1600);
      for (let i = n - 1; i >= 1; i--) {
        const len = seg.write(i, out, 0);
        assert.deepEqual(out.subarray(0, len), reference[i], `segment ${i} after in-place segment 0`);
      }
    }
  });

  it('refuses what it cannot segment', () => {
    const seg = new Segmenter();
    const tcp4 = buildSuper({ payload: payloadOf(3000) }).frame;
    const tcp6 = buildSuper({ v6: true, payload: payloadOf(3000) }).frame;
    const udp4 = buildSuper({ udp: true, payload: payloadOf(3000) }).frame;
    const run = (f: Uint8Array, t: number, mss = 1000, len = f.length): number => seg.begin(f, 0, len, t, mss);
    for (const t of [VNET_GSO_NONE, VNET_GSO_UDP, 2, 6, 0x41, 0x45, 0x11, 0x21, 0xff, 0x80]) {
      assert.equal(run(tcp4, t), OFFLOAD_UNSUPPORTED_GSO, `gso type ${t}`);
    }
    assert.equal(run(tcp4, VNET_GSO_TCPV4, 0), OFFLOAD_BAD_GSO_SIZE);
    assert.equal(run(tcp4, VNET_GSO_TCPV6), OFFLOAD_PROTOCOL_MISMATCH);
    assert.equal(run(tcp6, VNET_GSO_TCPV4), OFFLOAD_PROTOCOL_MISMATCH);
    assert.equal(run(tcp4, VNET_GSO_UDP_L4), OFFLOAD_PROTOCOL_MISMATCH);
    assert.equal(run(udp4, VNET_GSO_TCPV4), OFFLOAD_PROTOCOL_MISMATCH);
    assert.equal(run(tcp4, VNET_GSO_TCPV4, 1000, tcp4.length + 1), OFFLOAD_TRUNCATED, 'beyond the buffer');
    assert.equal(seg.begin(tcp4, -1, 100, VNET_GSO_TCPV4, 1000), OFFLOAD_TRUNCATED);
    // truncated at every header boundary
    for (const [f, t, hdr] of [
      [tcp4, VNET_GSO_TCPV4, 54],
      [tcp6, VNET_GSO_TCPV6, 74],
      [udp4, VNET_GSO_UDP_L4, 42],
    ] as const) {
      for (let cut = 0; cut < hdr; cut++) {
        const r = run(f, t, 1000, cut);
        assert.ok(r === OFFLOAD_TRUNCATED || r === OFFLOAD_NOT_IP, `cut at ${cut}: ${offloadDropReason(r)}`);
      }
    }
    // a frame shorter than its length fields
    assert.equal(run(tcp4, VNET_GSO_TCPV4, 1000, tcp4.length - 1), OFFLOAD_TRUNCATED);
    // two VLAN tags, ARP
    const qinq = buildSuper({ tpid: 0x88a8, payload: payloadOf(3000) }).frame;
    put16(qinq, 16, 0x8100);
    assert.equal(run(qinq, VNET_GSO_TCPV4), OFFLOAD_NOT_IP);
    const arp = tcp4.slice();
    put16(arp, 12, 0x0806);
    assert.equal(run(arp, VNET_GSO_TCPV4), OFFLOAD_NOT_IP);
    // IPv4 header problems
    const badVer = tcp4.slice();
    badVer[14] = 0x65;
    assert.equal(run(badVer, VNET_GSO_TCPV4), OFFLOAD_BAD_IP_HEADER);
    const badIhl = tcp4.slice();
    badIhl[14] = 0x44;
    assert.equal(run(badIhl, VNET_GSO_TCPV4), OFFLOAD_BAD_IP_HEADER);
    const shortTot = tcp4.slice();
    put16(shortTot, 16, 1000);
    assert.equal(run(shortTot, VNET_GSO_TCPV4), OFFLOAD_BAD_IP_HEADER);
    assert.equal(run(buildSuper({ payload: payloadOf(3000), fragOff: 0x2000 }).frame, VNET_GSO_TCPV4), OFFLOAD_IP_FRAGMENT);
    assert.equal(run(buildSuper({ payload: payloadOf(3000), fragOff: 0x0010 }).frame, VNET_GSO_TCPV4), OFFLOAD_IP_FRAGMENT);
    // IPv6 extension headers and lengths
    for (const nh of [0, 43, 44, 60, 51]) {
      assert.equal(run(buildSuper({ v6: true, payload: payloadOf(3000), nextHeader: nh }).frame, VNET_GSO_TCPV6), OFFLOAD_IPV6_EXT_HEADER);
    }
    const v6len = tcp6.slice();
    put16(v6len, 18, 100);
    assert.equal(run(v6len, VNET_GSO_TCPV6), OFFLOAD_BAD_IP_HEADER);
    // L4 header problems
    const doff = tcp4.slice();
    doff[34 + 12] = 0x40;
    assert.equal(run(doff, VNET_GSO_TCPV4), OFFLOAD_BAD_L4_HEADER);
    const udpLen = udp4.slice();
    put16(udpLen, 38, 100);
    assert.equal(run(udpLen, VNET_GSO_UDP_L4), OFFLOAD_BAD_L4_HEADER);
    // csum_start, when given, must be the L4 header (an encapsulated super-frame has it further in)
    assert.equal(seg.begin(udp4, 0, udp4.length, VNET_GSO_UDP_L4, 1000, 34 + 8 + 8 + 14 + 20), OFFLOAD_BAD_CHECKSUM_OFFSET);
    assert.equal(seg.begin(tcp4, 0, tcp4.length, VNET_GSO_TCPV4, 1000, 14), OFFLOAD_BAD_CHECKSUM_OFFSET);
    assert.equal(seg.begin(udp4, 0, udp4.length, VNET_GSO_UDP_L4, 1000, 34), 3);
    assert.equal(seg.begin(tcp6, 0, tcp6.length, VNET_GSO_TCPV6, 1000, 54), 3);
    assert.equal(seg.begin(tcp6, 0, tcp6.length, VNET_GSO_TCPV6, 1000, -1), 3, '-1: not checked');
    // segments
    assert.equal(new Segmenter(2).begin(tcp4, 0, tcp4.length, VNET_GSO_TCPV4, 1000), OFFLOAD_TOO_MANY_SEGMENTS);
    assert.equal(new Segmenter(3).begin(tcp4, 0, tcp4.length, VNET_GSO_TCPV4, 1000), 3);
    // after a failed begin nothing can be written
    assert.equal(run(arp, VNET_GSO_TCPV4), OFFLOAD_NOT_IP);
    assert.equal(seg.count, 0);
    assert.equal(seg.write(0, new Uint8Array(2000), 0), OFFLOAD_BAD_SEGMENT);
    assert.equal(seg.segmentLength(0), OFFLOAD_BAD_SEGMENT);
  });

  it('checks segment indexes and room', () => {
    const seg = new Segmenter();
    const f = buildSuper({ payload: payloadOf(2500) }).frame;
    assert.equal(seg.begin(f, 0, f.length, VNET_GSO_TCPV4, 1000), 3);
    const d = new Uint8Array(2000);
    for (const i of [-1, 3, 1.5, NaN]) {
      assert.equal(seg.write(i, d, 0), OFFLOAD_BAD_SEGMENT, `index ${i}`);
      assert.equal(seg.segmentLength(i), OFFLOAD_BAD_SEGMENT);
    }
    assert.equal(seg.segmentLength(0), 1054);
    assert.equal(seg.segmentLength(2), 554);
    assert.equal(seg.write(0, d, 2000 - 1053), OFFLOAD_NO_ROOM);
    assert.equal(seg.write(0, d, -1), OFFLOAD_NO_ROOM);
    assert.equal(seg.write(0, d, 2000 - 1054), 1054);
  });

  it('never throws on garbage and on mutated frames; whatever it accepts comes out valid', () => {
    const seg = new Segmenter(64);
    const dst = new Uint8Array(70000);
    const types = [0, 1, 3, 4, 5, 0x81, 0x84, 0x85, 0x41, 0xff];
    const templates = [
      buildSuper({ payload: payloadOf(3000), tcpOptions: TCP_OPTS_TS, ipOptions: [1, 1, 1, 0] }),
      buildSuper({ v6: true, payload: payloadOf(2000) }),
      buildSuper({ udp: true, tpid: 0x8100, payload: payloadOf(2500) }),
      buildSuper({ udp: true, v6: true, payload: payloadOf(1800) }),
    ];
    let accepted = 0;
    for (let t = 0; t < 4000; t++) {
      let f: Uint8Array;
      let len: number;
      if (t % 2 === 0) {
        len = rnd() % 200;
        f = new Uint8Array(len + (rnd() % 8));
        for (let i = 0; i < f.length; i++) f[i] = rnd() & 0xff;
        // make some of them look like IPv4/IPv6 so the parser gets further
        if (len > 14 && (t & 4) !== 0) put16(f, 12, t & 8 ? 0x0800 : 0x86dd);
        if (len > 15 && (t & 4) !== 0) f[14] = t & 8 ? 0x45 : 0x60;
      } else {
        const tpl = templates[t % templates.length];
        f = tpl.frame.slice();
        const flips = 1 + (rnd() % 3);
        for (let k = 0; k < flips; k++) f[rnd() % tpl.hdrLen] = rnd() & 0xff;
        len = (rnd() & 3) === 0 ? rnd() % f.length : f.length;
      }
      const gsoType = types[rnd() % types.length];
      const mss = (rnd() & 7) === 0 ? 0 : 1 + (rnd() % 1600);
      const csumStart = rnd() % 300;
      const csumOffset = rnd() % 40;
      const frameAt = rnd() % 3 === 0 ? 1 : 0;
      const copy = new Uint8Array(f.length + 1);
      copy.set(f, frameAt);
      const r1 = completeChecksum(copy, frameAt, Math.min(len, f.length), csumStart, csumOffset);
      assert.ok(r1 === 0 || offloadDropReason(r1) !== undefined, `completeChecksum result ${r1}`);
      const n = seg.begin(f, 0, Math.min(len, f.length), gsoType, mss, (rnd() & 3) === 0 ? csumStart : -1);
      if (n < 0) {
        assert.ok(offloadDropReason(n) !== undefined, `begin result ${n}`);
        continue;
      }
      accepted++;
      for (let i = 0; i < n; i++) {
        const l = seg.write(i, dst, 0);
        assert.equal(l, seg.segmentLength(i));
        // Independently: find L3/L4 like the builder and check the checksums of what came out.
        let l3 = 14;
        let type = u16(dst, 12);
        if (type === 0x8100 || type === 0x88a8) {
          l3 = 18;
          type = u16(dst, 16);
        }
        if (type === 0x0800) {
          const ihl = (dst[l3] & 15) * 4;
          assert.equal(onesSum(dst, l3, l3 + ihl), 0xffff, 'fuzz IPv4 header checksum');
          assert.equal(onesSum(dst, l3 + ihl, l, pseudoOf(dst, l3, l - l3 - ihl)), 0xffff, 'fuzz IPv4 L4 checksum');
        } else {
          assert.equal(type, 0x86dd);
          assert.equal(onesSum(dst, l3 + 40, l, pseudoOf(dst, l3, l - l3 - 40)), 0xffff, 'fuzz IPv6 L4 checksum');
        }
      }
    }
    assert.ok(accepted > 50, `some mutated frames are accepted (${accepted})`);
  });
});

// ---------- pending checksums: writePartial, then completion or the outer IPv6 checksum (LCO) ----------

describe('Segmenter.writePartial (checksum left pending)', () => {
  const cases: { name: string; spec: SuperSpec; gso: number; mss: number }[] = [
    {
      name: 'TCP/IPv4 with options',
      spec: { payload: payloadOf(5000, 3), tcpOptions: TCP_OPTS_TS, ipOptions: [1, 1, 1, 0] },
      gso: VNET_GSO_TCPV4,
      mss: 1448,
    },
    { name: 'TCP/IPv6 behind a VLAN tag', spec: { tpid: 0x8100, v6: true, payload: payloadOf(4001, 5) }, gso: VNET_GSO_TCPV6, mss: 1000 },
    { name: 'UDP/IPv4 (USO)', spec: { udp: true, payload: payloadOf(3000, 7) }, gso: VNET_GSO_UDP_L4, mss: 1472 },
    { name: 'UDP/IPv6 (USO)', spec: { udp: true, v6: true, payload: payloadOf(2905, 11) }, gso: VNET_GSO_UDP_L4, mss: 1452 },
  ];
  for (const c of cases) {
    it(`${c.name}: pseudo-header sum in the field, and completing it gives write()'s bytes (copy from the same view and from another)`, () => {
      const b = buildSuper(c.spec);
      for (const same of [true, false]) {
        // The super-frame at the start of a big buffer; segments written further on in it (same
        // view: copyWithin) or into another buffer (byte copy).
        const big = new Uint8Array(b.frame.length + 80000);
        big.set(b.frame, 0);
        const full = new Segmenter();
        const part = new Segmenter();
        const n = full.begin(big, 0, b.frame.length, c.gso, c.mss);
        assert.equal(part.begin(big, 0, b.frame.length, c.gso, c.mss), n);
        assert.ok(n > 1);
        const csum = part.partialCsum;
        assert.equal(csum >>> 16, b.l4, 'csumStart: the L4 header');
        assert.equal(csum & 0xffff, b.csumOffset, 'csumOffset: the checksum field');
        const out = same ? big : new Uint8Array(80000);
        for (let i = 0; i < n; i++) {
          const want = new Uint8Array(2048);
          const wl = full.write(i, want, 0);
          const at = (same ? b.frame.length + 64 : 64) + i * 2048;
          const pl = part.writePartial(i, out, at);
          assert.equal(pl, wl, `segment ${i} length`);
          const seg = out.slice(at, at + pl);
          // The field holds the folded pseudo-header sum for this segment's L4 length.
          const l3 = b.l3;
          assert.equal(u16(seg, b.l4 + b.csumOffset), foldSum(pseudoOf(seg, l3, pl - b.l4)), `segment ${i} pseudo-header sum`);
          assert.equal(completeChecksum(seg, 0, pl, csum >>> 16, csum & 0xffff), 0);
          assert.deepEqual(seg, want.subarray(0, wl), `segment ${i} completed = write()`);
        }
      }
    });
  }
});

describe('VXLAN over IPv6 with the inner checksum pending (local checksum offload)', () => {
  for (const udp of [false, true]) {
    it(`${udp ? 'UDP' : 'TCP'} inner segments: once the inner checksum is filled in, the outer UDP checksum verifies`, () => {
      const tpl = new VxlanEncapTemplate({
        srcMac: parseMac('02:00:00:00:00:0a'),
        dstMac: parseMac('02:00:00:00:00:0b'),
        src: '2001:db8::1',
        dst: '2001:db8::2',
        dstPort: 4789,
        vni: 77,
      });
      const b = buildSuper(udp ? { udp: true, payload: payloadOf(4000, 13) } : { payload: payloadOf(4000, 13), tcpOptions: TCP_OPTS_TS });
      const seg = new Segmenter();
      const n = seg.begin(b.frame, 0, b.frame.length, udp ? VNET_GSO_UDP_L4 : VNET_GSO_TCPV4, udp ? 1472 : 1448);
      const csum = seg.partialCsum;
      for (let i = 0; i < n; i++) {
        const mem = new Uint8Array(2048);
        const inner = 128;
        const len = seg.writePartial(i, mem, inner);
        const total = tpl.write(mem, inner - 70, len, 40000 + i, csum);
        assert.equal(completeChecksum(mem, inner, len, csum >>> 16, csum & 0xffff), 0);
        const f = mem.subarray(inner - 70, inner - 70 + total);
        // Outer UDP checksum over the IPv6 pseudo-header and the whole datagram.
        const udpOff = 14 + 40;
        const pseudo = pseudoHeaderSumV6(f.subarray(22, 38), f.subarray(38, 54), 17, total - udpOff);
        assert.equal(onesSum(f, udpOff, total, pseudo), 0xffff, `segment ${i}: outer UDP checksum verifies`);
        assert.notEqual(u16(f, udpOff + 6), 0);
        // And the same as computing it over the completed frame.
        const again = new Uint8Array(mem);
        tpl.write(again, inner - 70, len, 40000 + i);
        assert.equal(u16(f, udpOff + 6), u16(again, inner - 70 + udpOff + 6), 'same as without LCO');
      }
    });
  }
});

describe('GSO trains (UDP segmentation offload of VXLAN packets)', () => {
  /**
   * What the kernel does with a train (__udp_gso_segment + inet_gso_segment / ipv6_gso_segment),
   * written from the UDP and IP RFCs, not from pinhole's code: the UDP payload is cut every
   * `gso` bytes, each piece gets a copy of the outer Ethernet, IP and UDP headers with its own
   * lengths, IPv4 ID (incremented per piece) and header checksum, and a complete UDP checksum. It
   * also checks the train's UDP checksum field holds what CHECKSUM_PARTIAL requires.
   */
  function kernelSplit(f: Uint8Array, gso: number): Uint8Array[] {
    const v4 = u16(f, 12) === 0x0800;
    const l4 = 14 + (v4 ? 20 : 40);
    const total = f.length - l4;
    assert.equal(u16(f, l4 + 4), total, 'the train UDP length covers the whole train');
    assert.equal(u16(f, l4 + 6), foldSum(pseudoOf(f, 14, total)), 'UDP checksum field: the pseudo-header sum (CHECKSUM_PARTIAL)');
    const out: Uint8Array[] = [];
    const id0 = v4 ? u16(f, 18) : 0;
    for (let off = l4 + 8, i = 0; off < f.length; off += gso, i++) {
      const piece = f.subarray(off, Math.min(off + gso, f.length));
      const p = new Uint8Array(l4 + 8 + piece.length);
      p.set(f.subarray(0, l4 + 8));
      p.set(piece, l4 + 8);
      const ulen = 8 + piece.length;
      put16(p, l4 + 4, ulen);
      if (v4) {
        put16(p, 16, p.length - 14);
        put16(p, 18, (id0 + i) & 0xffff);
        put16(p, 24, 0);
        put16(p, 24, ~onesSum(p, 14, 34) & 0xffff);
      } else {
        put16(p, 18, ulen);
      }
      put16(p, l4 + 6, 0);
      const c = ~onesSum(p, l4, p.length, pseudoOf(p, 14, ulen)) & 0xffff;
      put16(p, l4 + 6, c === 0 ? 0xffff : c);
      out.push(p);
    }
    return out;
  }

  const cases: { name: string; outer: 4 | 6; spec: SuperSpec; gso: number; mss: number }[] = [
    {
      name: 'TCP/IPv4 64 KB over IPv4 (two trains)',
      outer: 4,
      spec: { payload: payloadOf(64000, 21), tcpOptions: TCP_OPTS_TS },
      gso: VNET_GSO_TCPV4,
      mss: 1448,
    },
    { name: 'TCP/IPv6 over IPv6', outer: 6, spec: { v6: true, payload: payloadOf(20000, 22) }, gso: VNET_GSO_TCPV6, mss: 1428 },
    {
      name: 'UDP/IPv4 (USO) over IPv6, odd last segment',
      outer: 6,
      spec: { udp: true, payload: payloadOf(9001, 23) },
      gso: VNET_GSO_UDP_L4,
      mss: 1400,
    },
  ];
  for (const c of cases) {
    it(`${c.name}: cut as the kernel cuts it, a train gives the packets pinhole sends one by one (IPv4 IDs and UDP checksums aside)`, () => {
      const tpl = () =>
        new VxlanEncapTemplate({
          srcMac: parseMac('02:00:00:00:00:0a'),
          dstMac: parseMac('02:00:00:00:00:0b'),
          src: c.outer === 4 ? '198.18.0.1' : '2001:db8::1',
          dst: c.outer === 4 ? '198.18.0.2' : '2001:db8::2',
          dstPort: 4789,
          vni: 4242,
        });
      const b = buildSuper(c.spec);
      const seg = new Segmenter();
      const n = seg.begin(b.frame, 0, b.frame.length, c.gso, c.mss);
      assert.ok(n > 1);
      // The layout the workload port builds (ports/afpacket.ts trainUp): segments `chunk` apart,
      // at most 65499 bytes per train, each train behind 128 bytes of headroom.
      const chunk = seg.segmentLength(0) + 8;
      const per = Math.floor((65499 + 8) / chunk);
      const trains = tpl();
      const single = tpl();
      const h = trains.headerBytes;
      let i0 = 0;
      let nTrains = 0;
      while (i0 < n) {
        const count = Math.min(per, n - i0);
        const mem = new Uint8Array(128 + count * chunk);
        let bytes = 0;
        for (let i = 0; i < count; i++) bytes += seg.write(i0 + i, mem, 128 + i * chunk);
        const trainLen = bytes + (count - 1) * 8;
        assert.ok(h + 8 + trainLen - 14 <= 65535 + (c.outer === 6 ? 40 : 0), 'outer length fits 16 bits');
        const total = trains.writeTrain(mem, 128 - h, trainLen, chunk, 40000);
        assert.equal(total, h + trainLen);
        const pieces = kernelSplit(mem.subarray(128 - h, 128 - h + total), chunk);
        assert.equal(pieces.length, count, 'one VXLAN packet per segment');
        for (let i = 0; i < count; i++) {
          const one = new Uint8Array(2048);
          const l = seg.write(i0 + i, one, 128);
          const tl = single.write(one, 128 - h, l, 40000);
          const want = one.slice(128 - h, 128 - h + tl);
          const got = pieces[i]!;
          assert.equal(got.length, want.length, `packet ${i0 + i} length`);
          if (c.outer === 4) {
            // IPv4 ID and header checksum are per packet; a lone packet's UDP checksum is 0 (allowed over IPv4).
            for (const at of [18, 19, 24, 25, 40, 41]) want[at] = got[at]!;
            assert.ok(onesSum(got, 14, 34) === 0xffff, `packet ${i0 + i} IPv4 header checksum`);
          }
          assert.deepEqual(got, want, `packet ${i0 + i}`);
        }
        i0 += count;
        nTrains++;
      }
      if (c.name.includes('two trains')) assert.equal(nTrains, 2);
    });
  }
});
