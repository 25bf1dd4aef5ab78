/**
 * The per-packet functions of the VXLAN path allocate nothing once optimised: V8's sampling heap
 * profiler (node:inspector, HeapProfiler.startSampling, keeping objects a GC already collected)
 * watches a loop of each, and no sampled byte may come from a function in src/packet/.
 *
 * Why it matters, and why a test: a value the JIT cannot keep in a register — a uint32 above
 * 2^31 - 1 returned from a function too large to be inlined, a double passed as an argument — is
 * boxed in a heap number, 16 bytes per call. flowHash returned a uint32: under a pod's TCP upload
 * through AF_XDP the dataplane worker allocated ~5 MB/s and scavenged about once a second (0.2-0.7
 * ms with the whole worker stopped). Nothing in the source looks like an allocation; only a
 * measurement shows it.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { buildFrame } from '../../src/packet/build.ts';
import { foldSum, sumWordsFast } from '../../src/packet/checksum.ts';
import { flowHash, parseVxlan, sourcePortOf, VxlanEncapTemplate, VxlanParse } from '../../src/packet/vxlan.ts';
import { Engine, ENGINE_SLOT } from '../../src/dataplane/engine.ts';
import { Link } from '../../src/dataplane/link.ts';
import { CTRL_SLOTS, CTRL_STOP } from '../../src/dataplane/plan.ts';
import type { Port } from '../../src/dataplane/port.ts';
import { getSys } from '../../src/sys/index.ts';
import { allocations, bytesOf } from '../support/heap-sampling.ts';

const ROUNDS = 200_000;
/** Far below one heap number per call (16 bytes × ROUNDS = 3.2 MB): what a deopt or two may leave. */
const ALLOWED_BYTES = 64 * 1024;

/** Runs `fn` enough times for the JIT to optimise it, then measures ROUNDS more calls. */
/**
 * Samples `run` until an attempt allocates at most ALLOWED_BYTES, at most 3 times; returns the
 * last attempt. The steady state is what counts: on a loaded machine the optimising compiler
 * (a thread of its own) may not have installed a function's code by the first sample, and the
 * unoptimised code boxes its numbers (seen once in CI: the clock's frames allocating).
 */
async function steadyAllocations(run: () => void): Promise<Map<string, number>> {
  let seen = await allocations(run);
  for (let attempt = 1; attempt < 3 && bytesOf(seen) > ALLOWED_BYTES; attempt++) seen = await allocations(run);
  return seen;
}

async function assertNoAllocation(name: string, fn: (i: number) => number): Promise<void> {
  let sink = 0;
  for (let i = 0; i < ROUNDS; i++) sink ^= fn(i);
  const seen = await steadyAllocations(() => {
    for (let i = 0; i < ROUNDS; i++) sink ^= fn(i);
  });
  const total = bytesOf(seen);
  assert.ok(total <= ALLOWED_BYTES, `${name}: ${total} bytes sampled over ${ROUNDS} calls: ${JSON.stringify([...seen])} (sink ${sink})`);
}

describe('hot path: per-packet functions allocate nothing', () => {
  // Many flows: hashes above and below 2^31, so a boxed return value would show.
  const frames = Array.from({ length: 64 }, (_, i) =>
    buildFrame({
      ipv4: { src: `198.18.1.${i + 1}`, dst: '198.18.2.2' },
      tcp: { sport: 1000 + i * 977, dport: 443 },
      payload: new Uint8Array(64),
    }),
  );
  const frames6 = Array.from({ length: 64 }, (_, i) =>
    buildFrame({
      ipv6: { src: `2001:db8::${i + 1}`, dst: '2001:db8::b' },
      udp: { sport: 5000 + i, dport: 53 },
      payload: new Uint8Array(32),
    }),
  );
  const high = frames.filter((f) => flowHash(f, 0, f.length) >>> 0 >= 0x8000_0000).length;

  it('the flows hash both ways (the test can see a boxed uint32)', () => {
    assert.ok(high > 0 && high < frames.length, `${high} of ${frames.length} hashes have the top bit set`);
  });

  it('flowHash, IPv4 and IPv6', async () => {
    await assertNoAllocation('flowHash', (i) => {
      const f = (i & 1) === 0 ? frames[i & 63]! : frames6[i & 63]!;
      return flowHash(f, 0, f.length);
    });
  });

  it('sourcePortOf(flowHash)', async () => {
    await assertNoAllocation('sourcePortOf', (i) => sourcePortOf(flowHash(frames[i & 63]!, 0, frames[i & 63]!.length)));
  });

  it('encapsulation (VxlanEncapTemplate.write) and decapsulation (parseVxlan)', async () => {
    const t = new VxlanEncapTemplate({
      srcMac: Uint8Array.of(2, 0, 0, 0, 0, 1),
      dstMac: Uint8Array.of(2, 0, 0, 0, 0, 2),
      src: '198.18.0.1',
      dst: '198.18.0.2',
      dstPort: 4789,
      vni: 42,
    });
    const inner = frames[0]!;
    const mem = new Uint8Array(256);
    const out = new VxlanParse();
    await assertNoAllocation('encap + decap', (i) => {
      mem.set(inner, 50);
      const total = t.write(mem, 0, inner.length, sourcePortOf(flowHash(mem, 50, inner.length)) + (i & 7));
      return parseVxlan(mem, 0, total, out) + out.vni;
    });
  });

  it('checksums over a frame (sumWordsFast, foldSum)', async () => {
    const big = new Uint8Array(2048).map((_, i) => (i * 131) & 0xff);
    await assertNoAllocation('sumWordsFast', (i) => foldSum(sumWordsFast(big, i & 3, 1400 + (i & 7))));
  });

  it("the engine's clock (Sys.nowMs; performance.now() builds an array per call on Node 20)", async () => {
    const sys = getSys();
    await assertNoAllocation('nowMs', () => sys.nowMs() | 0);
  });

  it('an engine polling its rings (uplink.spinUs) with nothing arriving', async (t) => {
    // A port with nothing to receive that stops the engine after `looks` looks at its ring.
    const ctrl = new Int32Array(new SharedArrayBuffer(CTRL_SLOTS * 4));
    let looks = 0;
    const port: Port = {
      name: 'idle',
      driver: 'memory',
      detail: '',
      fd: -1,
      rx: () => 0,
      release: () => {},
      tx: () => 0,
      flush: () => {},
      readable: () => {
        if (--looks === 0) Atomics.store(ctrl, CTRL_STOP, 1);
        return false;
      },
      pollError: () => {},
      refreshStats: () => {},
      setCounters: () => {},
      close: () => {},
      pendingChecksums: false,
    };
    const c = new Float64Array(8);
    // Polls for 10 s after the frame it never gets: the looks end the run first.
    const engine = new Engine([{ port, out: new Link('in', 64), tag: -1 }], [], [], c, 0, 10_000_000);
    (engine as unknown as { lastBusy: number }).lastBusy = getSys().nowMs();
    const spin = (n: number): void => {
      looks = n;
      Atomics.store(ctrl, CTRL_STOP, 0);
      engine.run(ctrl);
    };
    spin(2_000_000); // warm-up: the JIT optimises the loop
    const seen = await steadyAllocations(() => spin(5_000_000));
    const total = bytesOf(seen);
    t.diagnostic(`polled ${c[ENGINE_SLOT.spinMs]!.toFixed(1)} ms`);
    assert.ok(c[ENGINE_SLOT.spinMs]! > 0, 'it polled (spin_ms)');
    assert.equal(c[ENGINE_SLOT.idleWaits], 0, 'and never slept');
    // A breath a millisecond (the stages' timers) may box its clock value: ~16 bytes each.
    assert.ok(total <= ALLOWED_BYTES, `polling: ${total} bytes sampled: ${JSON.stringify([...seen])}`);
  });
});
