/**
 * Differential test: the verified pinhole XDP program (run by the kernel through
 * BPF_PROG_TEST_RUN) and the reference classifier must give the same verdict and reason for
 * every frame of a large corpus — hand-made edge cases, every truncation of them, random and
 * mutated frames. The kernel's reason is read from the program's own per-CPU counters (exactly
 * one must move per frame), so the counters are checked too.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { requireRoot } from '../helpers/require.ts';
import '../../src/sys/index.ts';
import { corpus, edgeCases, fixedCorpusSize } from '../support/pinhole-corpus.ts';
import { REASONS, REASON_INDEX, type PinholeSpec, type Reason } from '../../src/bpf/pinhole/policy.ts';
import { classifyAt, policyState } from '../../src/bpf/pinhole/reference.ts';
import { buildFrame } from '../../src/packet/build.ts';
import { loadPinhole, type LoadedPinhole } from '../../src/kernel/pinhole.ts';
import { XDP_TEST_MIN_FRAME, XdpTestRunner } from '../../src/kernel/program.ts';
import { XDP_PASS } from '../../src/kernel/bpf-attr.ts';
import { possibleCpus } from '../../src/kernel/map.ts';
import { alloc } from '../../src/sys/index.ts';

requireRoot();

/** Reads per-reason totals (summed over CPUs) into `out` with one batch syscall. */
function reader(ph: LoadedPinhole): (out: Float64Array) => void {
  const m = ph.maps.counters;
  const vals = alloc(REASONS.length * m.valueBytes);
  const keys = alloc(REASONS.length * 4);
  const dv = new DataView(vals.buffer);
  const kv = new DataView(keys.buffer);
  const cpus = possibleCpus();
  return (out) => {
    m.lookupAllArray(vals, keys);
    for (let i = 0; i < REASONS.length; i++) {
      let s = 0;
      for (let c = 0; c < cpus; c++) s += Number(dv.getBigUint64(i * m.valueBytes + c * 8, true));
      out[kv.getUint32(i * 4, true)] = s;
    }
  };
}

/** Runs one frame and returns the reason whose counter moved. */
function reasonProbe(ph: LoadedPinhole): (frame: Uint8Array) => Reason {
  const runner = new XdpTestRunner(ph.program);
  const read = reader(ph);
  const before = new Float64Array(REASONS.length);
  const after = new Float64Array(REASONS.length);
  return (frame) => {
    read(before);
    runner.run(frame);
    read(after);
    return REASONS[REASONS.findIndex((_, i) => after[i] !== before[i])]!;
  };
}

interface DiffResult {
  frames: number;
  kernelRuns: number;
  perReason: number[];
}

function differential(spec: PinholeSpec, count: number, seed: number): DiffResult {
  const ph = loadPinhole(spec);
  try {
    const state = policyState(spec);
    const runner = new XdpTestRunner(ph.program, { maxFrame: 4096 });
    const read = reader(ph);
    const before = new Float64Array(REASONS.length);
    const after = new Float64Array(REASONS.length);
    const perReason = new Array<number>(REASONS.length).fill(0);
    read(before);
    let frames = 0;
    let kernelRuns = 0;
    for (const frame of corpus({ ...spec, seed, count })) {
      frames++;
      const want = classifyAt(frame, 0, frame.length, state);
      if (frame.length < XDP_TEST_MIN_FRAME) {
        // The kernel's test runner refuses frames shorter than an Ethernet header; the real
        // datapath never delivers one. The reference must call them truncated.
        assert.equal(REASONS[want], 'truncated', `short frame of ${frame.length} bytes`);
        continue;
      }
      const action = runner.run(frame);
      kernelRuns++;
      read(after);
      let moved = -1;
      for (let i = 0; i < REASONS.length; i++) {
        const d = after[i]! - before[i]!;
        if (d === 0) continue;
        if (d !== 1 || moved !== -1) assert.fail(`frame ${frames}: counters moved wrongly (reason ${i} by ${d})`);
        moved = i;
        before[i] = after[i]!;
      }
      if (moved !== want) {
        assert.fail(
          `frame #${frames} (${frame.length} bytes): kernel says ${REASONS[moved] ?? 'nothing'}, reference says ${REASONS[want]}\n` +
            Buffer.from(frame).toString('hex'),
        );
      }
      // No socket is bound in the XSKMAP, so bpf_redirect_map falls back to XDP_PASS.
      assert.equal(action, XDP_PASS);
      perReason[moved]++;
    }
    // Counters add up: every kernel run counted exactly once, by reason.
    const totals = ph.counters();
    assert.equal(Number(totals.xsk + totals.kernel), kernelRuns);
    REASONS.forEach((r, i) => assert.equal(Number(totals.byReason[r]), perReason[i], `counter ${r}`));
    return { frames, kernelRuns, perReason };
  } finally {
    ph.close();
  }
}

test('kernel program and reference agree on 120,000 frames (no address filter)', () => {
  const spec: PinholeSpec = { ports: [4789, 51820, 4500], addresses: [] };
  const n = fixedCorpusSize(spec) + 60_000;
  const r = differential(spec, n, 0x5eed);
  assert.ok(r.frames >= 60_000);
  for (const reason of REASONS.filter((x) => x !== 'address')) {
    assert.ok(r.perReason[REASON_INDEX[reason]]! > 0, `corpus reached ${reason} in the kernel`);
  }
});

test('kernel program and reference agree with the address filter compiled in', () => {
  const spec: PinholeSpec = { ports: [4789, 51820], addresses: ['198.18.0.1', '2001:db8::1'] };
  const n = fixedCorpusSize(spec) + 40_000;
  const r = differential(spec, n, 0xbeef);
  assert.ok(r.perReason[REASON_INDEX.address]! > 0);
  assert.ok(r.perReason[REASON_INDEX.tunnel]! > 0);
});

test('edge cases with known reasons get them from the kernel', () => {
  const spec: PinholeSpec = { ports: [4789], addresses: ['198.18.0.1', '2001:db8::1'] };
  const ph = loadPinhole(spec);
  try {
    const reasonOf = reasonProbe(ph);
    let checked = 0;
    for (const c of edgeCases(spec)) {
      if (!c.expected || c.frame.length < XDP_TEST_MIN_FRAME) continue;
      assert.equal(reasonOf(c.frame), c.expected, c.name);
      checked++;
    }
    assert.ok(checked > 50, `checked ${checked} named cases`);
  } finally {
    ph.close();
  }
});

test('ports and addresses change at runtime without reloading the program', () => {
  const spec: PinholeSpec = { ports: [4789], addresses: [] };
  const ph = loadPinhole(spec);
  try {
    const id = ph.program.info().id;
    const reasonOf = reasonProbe(ph);
    const udp = (dport: number, dst = '198.18.0.1'): Uint8Array =>
      buildFrame({ ipv4: { src: '198.18.0.2', dst }, udp: { sport: 40000, dport }, payload: new Uint8Array(16) });
    assert.equal(reasonOf(udp(4789)), 'tunnel');
    assert.equal(reasonOf(udp(51820)), 'udp-port');
    ph.addPort(51820);
    assert.equal(reasonOf(udp(51820)), 'tunnel');
    assert.equal(ph.removePort(4789), true);
    assert.equal(reasonOf(udp(4789)), 'udp-port');
    assert.equal(ph.removePort(4789), false);
    assert.deepEqual(ph.ports(), [51820]);
    assert.equal(ph.program.info().id, id, 'same program, no reload');
  } finally {
    ph.close();
  }
  // The address set is runtime data too (the filter itself is compiled in).
  const ph2 = loadPinhole({ ports: [4789], addresses: ['198.18.0.1'] });
  try {
    const reasonOf = reasonProbe(ph2);
    const v6 = buildFrame({ ipv6: { src: '2001:db8::2', dst: '2001:db8::9' }, udp: { sport: 1, dport: 4789 }, payload: new Uint8Array(8) });
    assert.equal(reasonOf(v6), 'address');
    ph2.addAddress('2001:db8::9');
    assert.equal(reasonOf(v6), 'tunnel');
    assert.equal(ph2.removeAddress('2001:db8::9'), true);
    assert.equal(reasonOf(v6), 'address');
  } finally {
    ph2.close();
  }
});
