// Unit tests for the reference classifier (src/bpf/pinhole/reference.ts) and the differential-test
// corpus (src/bpf/pinhole/corpus.ts).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';

import { CLASSIFICATIONS, classifyAt, classifyFrame, policyState } from '../../src/bpf/pinhole/reference.ts';
import { corpus, edgeCases, fixedCorpusSize, Rng } from '../support/pinhole-corpus.ts';
import { MAX_IPV6_EXT_HEADERS, MAX_VLAN_TAGS, REASON_INDEX, REASONS } from '../../src/bpf/pinhole/policy.ts';
import type { PinholeSpec, PolicyState, Reason } from '../../src/bpf/pinhole/policy.ts';
import { PacketError } from '../../src/packet/errors.ts';
import { buildFrame } from '../../src/packet/build.ts';

const SPEC: PinholeSpec = { ports: [4789, 51820, 500, 4500], addresses: ['198.18.0.1', '198.19.1.2', '2001:db8::1', '2001:db8:1::2'] };

/** Option sets the classifier and corpus are exercised with. */
const SPECS: Array<[string, PinholeSpec]> = [
  ['ports + addresses', SPEC],
  ['ports, no addresses (no filter)', { ports: [4789], addresses: [] }],
  ['IPv4 addresses only', { ports: [51820, 4789], addresses: ['203.0.113.7'] }],
  ['addresses not filtered', { ports: [4789], addresses: ['198.18.0.1'], filterAddresses: false }],
  ['filter with no addresses', { ports: [4789], addresses: [], filterAddresses: true }],
  ['no ports', { ports: [], addresses: ['198.18.0.1', '2001:db8::1'] }],
  ['port 0 and 65535', { ports: [0, 65535], addresses: ['::ffff:198.18.0.1', '198.18.0.1'] }],
];

/**
 * A second reading of policy.ts, written independently of reference.ts in a different style
 * (DataView, explicit cursor), so that a slip in either shows up as a disagreement on the corpus.
 */
function oracle(frame: Uint8Array, state: PolicyState): Reason {
  const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  const remains = (at: number, n: number): boolean => frame.length - at >= n;
  if (!remains(0, 14)) return 'truncated';
  let cursor = 14;
  let ethertype = view.getUint16(12);
  for (let consumed = 0; ethertype === 0x8100 || ethertype === 0x88a8; consumed++) {
    if (consumed >= MAX_VLAN_TAGS) return 'vlan-depth';
    if (!remains(cursor, 4)) return 'truncated';
    ethertype = view.getUint16(cursor + 2);
    cursor += 4;
  }
  const udp = (l4: number, dstAt: number, family: 4 | 6): Reason => {
    if (!remains(l4, 8)) return 'truncated';
    if (!state.ports.has(view.getUint16(l4 + 2))) return 'udp-port';
    if (!state.filterAddresses) return 'tunnel';
    if (family === 4) return state.ipv4.has(view.getUint32(dstAt)) ? 'tunnel' : 'address';
    const key = Buffer.from(frame.subarray(dstAt, dstAt + 16)).toString('hex');
    return state.ipv6.has(key) ? 'tunnel' : 'address';
  };
  switch (ethertype) {
    case 0x0806:
      return 'arp';
    case 0x0800: {
      const l3 = cursor;
      if (!remains(l3, 20)) return 'truncated';
      const version = frame[l3] >>> 4;
      const headerWords = frame[l3] & 15;
      if (version !== 4 || headerWords < 5) return 'bad-header';
      if (!remains(l3, headerWords * 4)) return 'truncated';
      const fragField = view.getUint16(l3 + 6);
      const moreFragments = (fragField & 0x2000) !== 0;
      const offset = fragField & 0x1fff;
      if (moreFragments || offset !== 0) return 'fragment';
      const protocol = frame[l3 + 9];
      return protocol === 1 ? 'icmp' : protocol === 6 ? 'tcp' : protocol === 17 ? udp(l3 + headerWords * 4, l3 + 16, 4) : 'other-l4';
    }
    case 0x86dd: {
      const l3 = cursor;
      if (!remains(l3, 40)) return 'truncated';
      if (frame[l3] >>> 4 !== 6) return 'bad-header';
      let next = frame[l3 + 6];
      let at = l3 + 40;
      const walked = [0, 43, 60];
      for (let seen = 0; walked.includes(next); seen++) {
        if (seen === MAX_IPV6_EXT_HEADERS) return 'ext-limit';
        if (!remains(at, 2)) return 'truncated';
        const length = 8 + 8 * frame[at + 1];
        next = frame[at];
        at += length;
      }
      if (next === 44) return 'fragment';
      return next === 58 ? 'icmpv6' : next === 6 ? 'tcp' : next === 17 ? udp(at, l3 + 24, 6) : 'other-l4';
    }
    default:
      return 'non-ip';
  }
}

function digest(frames: Iterable<Uint8Array>): string {
  const h = createHash('sha256');
  const len = new Uint8Array(4);
  for (const f of frames) {
    new DataView(len.buffer).setUint32(0, f.length);
    h.update(len);
    h.update(f);
  }
  return h.digest('hex');
}

describe('policyState', () => {
  it('builds the sets in the PolicyState representation', () => {
    const s = policyState(SPEC);
    assert.deepEqual(
      [...s.ports].sort((a, b) => a - b),
      [500, 4500, 4789, 51820],
    );
    assert.equal(s.filterAddresses, true);
    assert.deepEqual([...s.ipv4], [0xc6120001, 0xc6130102]);
    assert.deepEqual([...s.ipv6], ['20010db8000000000000000000000001', '20010db8000100000000000000000002']);
  });
  it('filterAddresses defaults to addresses.length > 0 and can be overridden', () => {
    assert.equal(policyState({ ports: [1], addresses: [] }).filterAddresses, false);
    assert.equal(policyState({ ports: [1], addresses: ['::1'] }).filterAddresses, true);
    assert.equal(policyState({ ports: [1], addresses: ['::1'], filterAddresses: false }).filterAddresses, false);
    assert.equal(policyState({ ports: [1], addresses: [], filterAddresses: true }).filterAddresses, true);
  });
  it('keeps IPv4-mapped IPv6 addresses IPv6, and normalises IPv6 text', () => {
    const s = policyState({ ports: [1], addresses: ['::FFFF:198.18.0.1', '2001:DB8:0:0::1'] });
    assert.equal(s.ipv4.size, 0);
    assert.deepEqual([...s.ipv6], ['00000000000000000000ffffc6120001', '20010db8000000000000000000000001']);
  });
  it('rejects bad ports and addresses with stable codes', () => {
    for (const port of [-1, 65536, 1.5, NaN]) {
      assert.throws(
        () => policyState({ ports: [port], addresses: [] }),
        (e: unknown) => e instanceof PacketError && e.code === 'ERR_INVALID_PORT',
      );
    }
    for (const address of ['', '1.2.3', '2001:db8::1::2', 'example.com']) {
      assert.throws(
        () => policyState({ ports: [1], addresses: [address] }),
        (e: unknown) => e instanceof PacketError && e.code === 'ERR_INVALID_ADDRESS',
      );
    }
  });
});

describe('reference classifier: edge cases', () => {
  for (const [label, spec] of SPECS) {
    describe(label, () => {
      const state = policyState(spec);
      const cases = edgeCases(spec);
      it('case names are unique and every case has an expectation', () => {
        assert.equal(new Set(cases.map((c) => c.name)).size, cases.length);
        assert.ok(cases.every((c) => c.expected !== undefined));
      });
      for (const c of cases) {
        it(`${c.name} → ${c.expected}`, () => {
          const got = classifyFrame(c.frame, state);
          assert.equal(got.reason, c.expected);
          assert.equal(got.verdict, c.expected === 'tunnel' ? 'xsk' : 'kernel');
          assert.equal(oracle(c.frame, state), c.expected, 'the oracle agrees');
        });
      }
    });
  }
});

describe('reference classifier: behaviour', () => {
  const state = policyState(SPEC);
  const tunnel4 = buildFrame({ ipv4: { src: '198.18.0.9', dst: '198.18.0.1' }, udp: { sport: 1, dport: 4789 } });
  const tunnel6 = buildFrame({ ipv6: { src: '2001:db8::9', dst: '2001:db8:1::2' }, udp: { sport: 1, dport: 4500 } });

  it('returns shared frozen classifications indexed like REASONS', () => {
    assert.equal(CLASSIFICATIONS.length, REASONS.length);
    REASONS.forEach((reason, i) => {
      assert.deepEqual(CLASSIFICATIONS[i], { verdict: i === 0 ? 'xsk' : 'kernel', reason });
      assert.ok(Object.isFrozen(CLASSIFICATIONS[i]));
    });
    assert.equal(classifyFrame(tunnel4, state), CLASSIFICATIONS[0]);
    assert.equal(classifyFrame(tunnel6, state), CLASSIFICATIONS[0]);
  });

  it('classifyAt reads a frame in place inside a larger buffer', () => {
    const buf = new Uint8Array(4096).fill(0x86);
    let count = 0;
    for (const frame of corpus({ ...SPEC, seed: 7, count: 20000 })) {
      const off = (count * 37) % (buf.length - frame.length + 1);
      buf.set(frame, off);
      assert.equal(classifyAt(buf, off, frame.length, state), REASON_INDEX[classifyFrame(frame, state).reason]);
      count++;
    }
  });

  it('classifyAt rejects a range outside the buffer', () => {
    assert.throws(() => classifyAt(tunnel4, 1, tunnel4.length, state), RangeError);
    assert.throws(() => classifyAt(tunnel4, -1, 2, state), RangeError);
    assert.throws(() => classifyAt(tunnel4, 0, -1, state), RangeError);
    assert.equal(classifyAt(tunnel4, tunnel4.length, 0, state), REASON_INDEX.truncated);
  });

  it('follows run-time changes of the sets', () => {
    const ports = new Set([4789]);
    const ipv4 = new Set<number>();
    const ipv6 = new Set<string>();
    const live: PolicyState = { ports, filterAddresses: true, ipv4, ipv6 };
    assert.equal(classifyFrame(tunnel4, live).reason, 'address');
    ipv4.add(0xc6120001);
    assert.equal(classifyFrame(tunnel4, live).reason, 'tunnel');
    ports.delete(4789);
    assert.equal(classifyFrame(tunnel4, live).reason, 'udp-port');
    ports.add(4500);
    assert.equal(classifyFrame(tunnel6, live).reason, 'address');
    ipv6.add('20010DB8000100000000000000000002'); // upper-case hex is accepted too
    assert.equal(classifyFrame(tunnel6, live).reason, 'tunnel');
    ipv6.clear();
    ipv6.add('not hex at all, 32 characters!!!');
    assert.equal(classifyFrame(tunnel6, live).reason, 'address');
  });

  it('agrees with the oracle on 100,000 corpus frames for every option set', () => {
    for (const [label, spec] of SPECS) {
      const s = policyState(spec);
      let n = 0;
      for (const frame of corpus({ ...spec, seed: 0x5eed + n, count: Math.ceil(100_000 / SPECS.length) + fixedCorpusSize(spec) })) {
        const got = classifyFrame(frame, s).reason;
        const want = oracle(frame, s);
        if (got !== want) assert.fail(`${label}: frame ${n} (${Buffer.from(frame).toString('hex')}): reference ${got}, oracle ${want}`);
        n++;
      }
    }
  });
});

describe('corpus', () => {
  it('is deterministic for a seed and differs between seeds', () => {
    const fixed = fixedCorpusSize(SPEC);
    const a = digest(corpus({ ...SPEC, seed: 42, count: fixed + 5000 }));
    const b = digest(corpus({ ...SPEC, seed: 42, count: fixed + 5000 }));
    const c = digest(corpus({ ...SPEC, seed: 43, count: fixed + 5000 }));
    assert.equal(a, b);
    assert.notEqual(a, c);
    // The fixed part does not depend on the seed.
    assert.equal(digest(corpus({ ...SPEC, seed: 1, count: fixed })), digest(corpus({ ...SPEC, seed: 2, count: fixed })));
  });

  it('yields exactly count frames: edge cases, their prefixes, then random frames', () => {
    const cases = edgeCases(SPEC);
    const fixed = fixedCorpusSize(SPEC);
    assert.equal(
      fixed,
      cases.reduce((n, c) => n + 1 + c.frame.length, 0),
    );
    const frames = [...corpus({ ...SPEC, seed: 1, count: fixed + 100 })];
    assert.equal(frames.length, fixed + 100);
    assert.deepEqual(frames[0], cases[0].frame);
    const first = cases.find((c) => c.frame.length > 0)!;
    assert.deepEqual(frames[cases.length], new Uint8Array(0));
    assert.deepEqual(frames[cases.length + 1], first.frame.slice(0, 1), 'prefixes follow the cases');
    assert.equal([...corpus({ ...SPEC, seed: 1, count: 10 })].length, 10);
    assert.equal([...corpus({ ...SPEC, seed: 1, count: 0 })].length, 0);
  });

  it('reaches every reason several ways, in the edge cases and in the random part', () => {
    const state = policyState(SPEC);
    const byCase = new Map<Reason, number>();
    for (const c of edgeCases(SPEC)) byCase.set(c.expected!, (byCase.get(c.expected!) ?? 0) + 1);
    for (const reason of REASONS) assert.ok((byCase.get(reason) ?? 0) >= 3, `${reason}: ${byCase.get(reason) ?? 0} edge cases`);

    const fixed = fixedCorpusSize(SPEC);
    const random = new Map<Reason, number>();
    let i = 0;
    let long = 0;
    let max = 0;
    for (const frame of corpus({ ...SPEC, seed: 99, count: fixed + 50_000 })) {
      max = Math.max(max, frame.length);
      if (frame.length > 1514) long++;
      if (i++ < fixed) continue;
      const r = classifyFrame(frame, state).reason;
      random.set(r, (random.get(r) ?? 0) + 1);
    }
    for (const reason of REASONS) assert.ok((random.get(reason) ?? 0) >= 50, `${reason}: ${random.get(reason) ?? 0} random frames`);
    assert.ok(max <= 3000 && max > 2000, `longest frame ${max}`);
    assert.ok(long < i / 10, `${long} of ${i} frames exceed 1514 bytes`);
  });

  it('edge cases cover the named boundaries', () => {
    const names = new Set(edgeCases(SPEC).map((c) => c.name));
    for (const depth of [0, 1, 2, 3]) assert.ok([...names].some((n) => n.startsWith(`vlan/${depth}`)));
    for (let ihl = 0; ihl <= 15; ihl++)
      assert.ok(
        [...names].some((n) => n.startsWith(`ipv4/ihl-${ihl}`)),
        `IHL ${ihl}`,
      );
    for (let n = 0; n <= 8; n++)
      assert.ok(
        [...names].some((x) => x.startsWith(`ipv6/ext-${n}`)),
        `${n} extension headers`,
      );
    for (const name of [
      'vlan/3rd-tpid-at-frame-end',
      'ipv4/df',
      'ipv4/mf',
      'ipv4/offset-1',
      'ipv4/ihl-15-past-end',
      'ipv6/ext-6-then-7th-missing',
      'ipv6/ext-past-end/icmpv6',
    ]) {
      assert.ok(names.has(name), name);
    }
  });

  it('Rng is a deterministic uniform-ish source', () => {
    const a = new Rng(1);
    const b = new Rng(1);
    const buckets = new Array<number>(10).fill(0);
    for (let i = 0; i < 100_000; i++) {
      const x = a.next();
      assert.equal(x, b.next());
      const k = a.int(10);
      assert.equal(k, b.int(10));
      buckets[k]++;
    }
    for (const n of buckets) assert.ok(n > 9000 && n < 11000, `bucket ${n}`);
  });
});
