// Differential fuzz test of parseVxlan (src/packet/vxlan.ts) against the reference decoder
// (test/support/vxlan-reference.ts): more than 100,000 deterministic frames — valid frames of both
// families (built by the frame builder and by the encapsulation template) with random VNIs, ports,
// IPv4 options, inner lengths and padding; every truncation of a few; random mutations of header
// bytes and length fields; random garbage. Both must agree on ok/reason, and on every field when ok.
// Each frame is parsed at a random offset inside a reused buffer with junk around it, into one
// reused VxlanParse, as the dataplane does.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';

import { DECAP_OK, DECAP_PARSE_REASONS, VxlanEncapTemplate, VxlanParse, parseVxlan } from '../../src/packet/vxlan.ts';
import { buildFrame } from '../../src/packet/build.ts';
import type { FrameSpec } from '../../src/packet/build.ts';
import { formatIPv4, formatIPv6 } from '../../src/packet/ip.ts';
import { Rng } from '../support/pinhole-corpus.ts';
import { referenceDecap } from '../support/vxlan-reference.ts';

const SEED = 0x7348;

/** Generated frame plus, for valid frames, the inner frame it carries (to check innerOff). */
interface Sample {
  frame: Uint8Array;
  inner?: Uint8Array;
}

function randomV4(rng: Rng): string {
  return formatIPv4(rng.bytes(4));
}

function randomV6(rng: Rng): string {
  return formatIPv6(rng.bytes(16));
}

function randomInnerLen(rng: Rng): number {
  const r = rng.int(10);
  if (r === 0) return rng.int(16); // around the 14-byte minimum
  if (r === 1) return rng.range(1000, 1514);
  return rng.range(14, 200);
}

/** A VXLAN header; mostly valid, sometimes with stray flag or reserved bits. */
function vxlanHeader(rng: Rng): Uint8Array {
  const h = Uint8Array.of(0x08, 0, 0, 0, rng.int(256), rng.int(256), rng.int(256), 0);
  if (rng.chance(0.05)) h[rng.pick([0, 1, 2, 3, 7])] ^= 1 << rng.int(8);
  return h;
}

/** A frame the builder writes: well formed unless a random knob says otherwise. */
function builtFrame(rng: Rng): Sample {
  const inner = rng.bytes(randomInnerLen(rng));
  const payload = new Uint8Array(8 + inner.length);
  payload.set(vxlanHeader(rng), 0);
  payload.set(inner, 8);
  const spec: FrameSpec = {
    eth: { src: rng.bytes(6), dst: rng.bytes(6) },
    udp: {
      sport: rng.int(0x10000),
      dport: rng.chance(0.7) ? 4789 : rng.int(0x10000),
      checksum: rng.chance(0.5) ? 'auto' : rng.chance(0.5) ? 'none' : rng.int(0x10000),
    },
    payload,
  };
  let shortened = false;
  if (rng.chance(0.1)) {
    spec.udp!.length = rng.chance(0.5) ? rng.range(16, 8 + payload.length) : rng.int(0x10000);
    shortened = true;
  }
  if (rng.chance(0.5)) {
    spec.ipv4 = {
      src: randomV4(rng),
      dst: randomV4(rng),
      options: rng.chance(0.3) ? rng.bytes(4 * rng.range(1, 10)) : undefined,
      tos: rng.chance(0.2) ? rng.int(256) : 0,
      id: rng.int(0x10000),
      dontFragment: rng.chance(0.5),
      reservedFlag: rng.chance(0.02),
      moreFragments: rng.chance(0.02),
      fragOffset: rng.chance(0.02) ? rng.int(0x2000) : 0,
      ttl: rng.int(256),
      protocol: rng.chance(0.02) ? rng.int(256) : undefined,
    };
  } else {
    spec.ipv6 = {
      src: randomV6(rng),
      dst: randomV6(rng),
      trafficClass: rng.int(256),
      flowLabel: rng.int(0x100000),
      hopLimit: rng.int(256),
      nextHeader: rng.chance(0.02) ? rng.int(256) : undefined,
      extensions: rng.chance(0.03) ? [{ type: rng.pick([0, 43, 60, 44]) }] : undefined,
    };
  }
  if (rng.chance(0.03)) spec.vlans = [{ tpid: rng.pick([0x8100, 0x88a8]), vid: rng.int(4096) }];
  if (rng.chance(0.3)) spec.padTo = rng.range(0, 1600);
  return { frame: buildFrame(spec), inner: shortened ? undefined : inner };
}

/** A frame the encapsulation template writes (always valid). */
function encapFrame(rng: Rng): Sample {
  const v6 = rng.chance(0.5);
  const tpl = new VxlanEncapTemplate({
    srcMac: rng.bytes(6),
    dstMac: rng.chance(0.8) ? rng.bytes(6) : undefined,
    src: v6 ? randomV6(rng) : randomV4(rng),
    dst: v6 ? randomV6(rng) : randomV4(rng),
    dstPort: rng.range(1, 0xffff),
    vni: rng.int(0x1000000),
    ttl: rng.range(1, 255),
  });
  const inner = rng.bytes(randomInnerLen(rng));
  const pad = rng.chance(0.2) ? rng.int(64) : 0;
  const frame = new Uint8Array(tpl.headerBytes + inner.length + pad);
  frame.set(inner, tpl.headerBytes);
  tpl.write(frame, 0, inner.length, rng.int(0x10000));
  return { frame, inner };
}

function validFrame(rng: Rng): Sample {
  return rng.chance(0.7) ? builtFrame(rng) : encapFrame(rng);
}

/** Recomputes the IPv4 header checksum of an untagged frame when its header is all there. */
function fixIPv4Checksum(f: Uint8Array): void {
  if (f.length < 34 || f[12] !== 0x08 || f[13] !== 0x00) return;
  const hlen = (f[14] & 0x0f) * 4;
  if (hlen < 20 || f.length < 14 + hlen) return;
  f[24] = f[25] = 0;
  let sum = 0;
  for (let i = 0; i < hlen; i += 2) sum += (f[14 + i] << 8) | f[15 + i];
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  const ck = ~sum & 0xffff;
  f[24] = ck >> 8;
  f[25] = ck & 0xff;
}

/** Offsets of the length fields of a frame, as if it were an untagged IPv4/IPv6 VXLAN frame. */
function lengthFields(f: Uint8Array): number[] {
  if (f[12] === 0x86 && f[13] === 0xdd) return [14 + 4, 14 + 40 + 4];
  const hlen = (f[14] & 0x0f) * 4;
  return [14 + 2, 14 + hlen + 4];
}

/** A valid frame with 1..4 random changes in its headers, often with the IPv4 checksum made right again. */
function mutatedFrame(rng: Rng): Sample {
  let f = validFrame(rng).frame;
  const changes = rng.range(1, 4);
  for (let c = 0; c < changes; c++) {
    const kind = rng.int(8);
    if (kind === 0) {
      const at = lengthFields(f)[rng.int(2)];
      const v = rng.chance(0.5) ? rng.int(0x10000) : Math.max(0, ((f[at] << 8) | f[at + 1]) + rng.range(-20, 20));
      if (at + 1 < f.length) {
        f[at] = (v >> 8) & 0xff;
        f[at + 1] = v & 0xff;
      }
    } else if (kind === 1) {
      f = f.slice(0, rng.int(f.length + 1)); // truncate
    } else if (kind === 2) {
      const longer = new Uint8Array(f.length + rng.range(1, 40)); // padding
      longer.set(f);
      f = longer;
    } else {
      const at = rng.int(Math.min(f.length, 100) + 1);
      if (at < f.length) f[at] = rng.chance(0.5) ? rng.int(256) : f[at] ^ (1 << rng.int(8));
    }
  }
  if (rng.chance(0.7)) fixIPv4Checksum(f);
  return { frame: f };
}

/** Random bytes, often with a plausible ethertype, version nibble and IPv4 checksum. */
function garbageFrame(rng: Rng): Sample {
  const f = rng.bytes(rng.int(rng.chance(0.5) ? 120 : 40));
  if (f.length >= 14 && rng.chance(0.7)) {
    const v6 = rng.chance(0.5);
    f[12] = v6 ? 0x86 : 0x08;
    f[13] = v6 ? 0xdd : 0x00;
    if (f.length > 14 && rng.chance(0.7)) f[14] = (v6 ? 0x60 : 0x40) | (f[14] & 0x0f);
    if (!v6 && f.length > 14 && rng.chance(0.5)) f[14] = 0x45;
    if (f.length > 23 && rng.chance(0.5)) f[v6 ? 20 : 23] = 17;
    if (rng.chance(0.7)) fixIPv4Checksum(f);
  }
  return { frame: f };
}

/** Parses every sample with both decoders and asserts agreement; counts outcomes by reason. */
class Checker {
  readonly counts = new Map<string, number>();
  private readonly mem = new Uint8Array(4096);
  private readonly out = new VxlanParse();
  total = 0;

  constructor(private readonly rng: Rng) {}

  check(s: Sample, label: string): void {
    const { frame } = s;
    const mem = this.mem;
    const off = this.rng.int(mem.length - frame.length - 64);
    mem.fill(0xa5, Math.max(0, off - 8), Math.min(mem.length, off + frame.length + 64)); // junk around the frame
    mem.set(frame, off);
    // The buffer holds junk after the frame: the parser must only look at [off, off+len).
    const code = parseVxlan(mem, off, frame.length, this.out);
    const ref = referenceDecap(frame);
    this.total++;
    const reason = ref.ok ? 'ok' : ref.reason;
    this.counts.set(reason, (this.counts.get(reason) ?? 0) + 1);
    const got = code === DECAP_OK ? 'ok' : (DECAP_PARSE_REASONS[code - 1] ?? `code ${code}`);
    if (got !== reason) assert.fail(`${label}: parseVxlan ${got}, reference ${reason}, frame ${Buffer.from(frame).toString('hex')}`);
    if (!ref.ok) return;
    const o = this.out;
    const fields = {
      family: o.family,
      vni: o.vni,
      src: addrText(o.src, o.family),
      dst: addrText(o.dst, o.family),
      srcPort: o.srcPort,
      dstPort: o.dstPort,
      innerOff: o.innerOff - off,
      innerLen: o.innerLen,
    };
    const { ok: _ok, ...want } = ref;
    assert.deepEqual(fields, want, `${label}: fields differ, frame ${Buffer.from(frame).toString('hex')}`);
    if (o.family === 4) assert.ok(o.src[1] === 0 && o.src[2] === 0 && o.src[3] === 0 && o.dst[1] === 0 && o.dst[2] === 0 && o.dst[3] === 0);
    assert.equal(o.udpOff - o.ipOff, o.family === 6 ? 40 : (frame[14] & 0x0f) * 4, `${label}: udpOff`);
    if (s.inner !== undefined) {
      assert.equal(o.innerLen, s.inner.length, `${label}: inner length`);
      assert.ok(Buffer.from(mem.buffer, o.innerOff, o.innerLen).equals(s.inner), `${label}: inner bytes`);
    }
  }
}

/** The reference's text form of parseVxlan's address words. */
function addrText(words: Int32Array, family: 4 | 6): string {
  if (family === 4) {
    const w = words[0] >>> 0;
    return `${w >>> 24}.${(w >>> 16) & 0xff}.${(w >>> 8) & 0xff}.${w & 0xff}`;
  }
  const groups: string[] = [];
  for (let i = 0; i < 4; i++) groups.push(((words[i] >>> 16) & 0xffff).toString(16), (words[i] & 0xffff).toString(16));
  return groups.join(':');
}

describe('parseVxlan against the reference decoder', () => {
  it('agrees on more than 100,000 generated frames', (t) => {
    const rng = new Rng(SEED);
    const checker = new Checker(new Rng(SEED ^ 0xffff));
    const parts: Array<[string, number, (r: Rng) => Sample]> = [
      ['valid', 30000, validFrame],
      ['mutated', 50000, mutatedFrame],
      ['garbage', 20000, garbageFrame],
    ];
    for (const [label, n, gen] of parts) {
      for (let i = 0; i < n; i++) checker.check(gen(rng), `${label} #${i}`);
    }

    // Every truncation of a few valid frames of each kind.
    let truncations = 0;
    for (let i = 0; i < 24; i++) {
      const { frame } = i % 2 === 0 ? builtFrame(rng) : encapFrame(rng);
      if (frame.length > 400) continue;
      for (let n = 0; n <= frame.length; n++) {
        const cut = frame.slice(0, n);
        checker.check({ frame: cut }, `truncation ${i} at ${n}`);
        truncations++;
      }
    }

    const counts = Object.fromEntries([...checker.counts].sort((a, b) => b[1] - a[1]));
    t.diagnostic(`${checker.total} frames (${truncations} truncations): ${JSON.stringify(counts)}`);
    assert.ok(checker.total >= 100000, `${checker.total} frames`);
    assert.ok(truncations >= 1000, `${truncations} truncations`);
    for (const r of ['ok', ...DECAP_PARSE_REASONS]) {
      assert.ok((checker.counts.get(r) ?? 0) >= 20, `reason ${r} seen ${checker.counts.get(r) ?? 0} times`);
    }
    assert.ok((checker.counts.get('ok') ?? 0) >= 20000, 'a good share of frames decapsulate');
  });
});
