/**
 * Differential test: the pinhole policy compiled to a classic BPF socket filter, run in the
 * pure-TS cBPF interpreter (Linux socket-filter semantics), against the reference classifier.
 * Verdicts must agree (filter keeps the frame ↔ reference says `xsk`) on every frame of the
 * corpus: untagged and tagged frames as they are (no VLAN metadata), and frames whose outer tag
 * the kernel would have moved to skb metadata (SKF_AD_VLAN_TAG_PRESENT), compared with the
 * reference on the original wire frame.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { corpus, edgeCases } from '../support/pinhole-corpus.ts';
import type { PinholeSpec } from '../../src/bpf/pinhole/policy.ts';
import { REASONS } from '../../src/bpf/pinhole/policy.ts';
import { classifyAt, policyState } from '../../src/bpf/pinhole/reference.ts';
import { compilePinholeFilter, PINHOLE_SNAP_LEN } from '../../src/bpf/cbpf/pinhole.ts';
import { CbpfVm, validate } from '../support/cbpf-interp.ts';
import { disasm } from '../../src/bpf/cbpf/asm.ts';

interface Tally {
  frames: number;
  accepted: number;
  stripped: number;
  perReason: number[];
}

/** Runs the corpus; for each frame also the VLAN-offloaded view when the frame has an outer tag. */
function differential(spec: PinholeSpec, count: number, seed: number): Tally {
  const prog = compilePinholeFilter(spec);
  validate(prog);
  const state = policyState(spec);
  const vm = new CbpfVm();
  const scratch = new Uint8Array(4096);
  const t: Tally = { frames: 0, accepted: 0, stripped: 0, perReason: new Array<number>(REASONS.length).fill(0) };
  for (const frame of corpus({ ...spec, seed, count })) {
    t.frames++;
    const want = classifyAt(frame, 0, frame.length, state);
    t.perReason[want]!++;
    vm.ctx.vlanPresent = false;
    const got = vm.run(prog, frame, 0, frame.length);
    if (got !== 0) t.accepted++;
    if ((got !== 0) !== (want === 0) || (got !== 0 && got !== PINHOLE_SNAP_LEN)) {
      assert.fail(`frame #${t.frames}: filter returned ${got}, reference says ${REASONS[want]}\n${Buffer.from(frame).toString('hex')}`);
    }
    // What an AF_PACKET socket sees of a tagged frame: outer tag in metadata, MACs moved up.
    const type = frame.length >= 18 ? (frame[12]! << 8) | frame[13]! : 0;
    if (type === 0x8100 || type === 0x88a8) {
      t.stripped++;
      scratch.set(frame.subarray(0, 12), 0);
      scratch.set(frame.subarray(16), 12);
      vm.ctx.vlanPresent = true;
      vm.ctx.vlanTpid = type;
      vm.ctx.vlanTci = (frame[14]! << 8) | frame[15]!;
      const got2 = vm.run(prog, scratch, 0, frame.length - 4);
      if ((got2 !== 0) !== (want === 0)) {
        assert.fail(
          `frame #${t.frames} (outer tag in metadata): filter returned ${got2}, reference says ${REASONS[want]}\n` +
            Buffer.from(frame).toString('hex'),
        );
      }
    }
  }
  return t;
}

test('cBPF pinhole filter agrees with the reference on 120k frames (addresses filtered)', () => {
  const t = differential(
    { ports: [4789, 51820, 500, 4500], addresses: ['198.18.0.1', '198.19.255.254', '2001:db8::1', '2001:db8:ffff::2'] },
    120_000,
    7,
  );
  assert.equal(t.frames, 120_000);
  // The corpus must exercise every reason and accept a fair share.
  for (let i = 0; i < REASONS.length; i++) assert.ok(t.perReason[i]! > 0, `no ${REASONS[i]} frame in the corpus`);
  assert.ok(t.accepted > 5_000, `only ${t.accepted} tunnel frames`);
  assert.ok(t.stripped > 1_000, `only ${t.stripped} tagged frames`);
});

test('cBPF pinhole filter agrees with the reference: ports only, one family of addresses, many ports', () => {
  differential({ ports: [4789], addresses: [] }, 30_000, 11);
  differential({ ports: [4789, 6081], addresses: ['198.18.0.1'], filterAddresses: true }, 30_000, 12); // no IPv6 is tunnel
  differential({ ports: [4789], addresses: ['2001:db8::7'] }, 30_000, 13);
  const many = Array.from({ length: 300 }, (_, i) => 1000 + 7 * i).concat([4789]);
  differential({ ports: many, addresses: [] }, 20_000, 14); // the long (jeq + ja) port chain
});

test('cBPF pinhole filter with no ports drops everything', () => {
  const prog = compilePinholeFilter({ ports: [], addresses: [] });
  assert.equal(disasm(prog), '0: ret #0x0\n');
  const vm = new CbpfVm();
  for (const e of edgeCases({ ports: [4789], addresses: [] })) assert.equal(vm.run(prog, e.frame, 0, e.frame.length), 0);
});

test('cBPF pinhole filter is deterministic and fits the kernel limits', () => {
  const spec = { ports: [51820, 4789], addresses: ['2001:db8::1', '198.18.0.1'] };
  const a = compilePinholeFilter(spec);
  const b = compilePinholeFilter({ ports: [4789, 51820], addresses: ['198.18.0.1', '2001:db8::1'] });
  assert.equal(disasm(a), disasm(b));
  assert.ok(a.length < 200, `${a.length} instructions`);
});
