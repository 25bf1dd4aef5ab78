/**
 * The AF_XDP ring indexes are free-running u32 counters (net/xdp/xsk_queue.h): entries must keep
 * flowing, in order and counted right, when producer and consumer wrap past 2^31 and 2^32 —
 * ring.ts keeps them as signed 32-bit numbers, the same bits.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import test from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Mapping } from '../../src/sys/index.ts';
import { ConsumerRing, ProducerRing, RING_INDEX_ACCESS, type RingOffsets } from '../../src/uplink/xsk/ring.ts';

const ATOMICS_WANTED = process.env.PINHOLE_RING_ATOMICS === 'on' || process.arch !== 'x64';

test(`ring indexes are read and written with ${ATOMICS_WANTED ? 'Atomics' : 'plain loads and stores (x86-64)'}`, () => {
  assert.equal(RING_INDEX_ACCESS, ATOMICS_WANTED ? 'atomics' : 'plain');
});

if (process.env.PINHOLE_RING_ATOMICS !== 'on') {
  // The other architectures' path (Atomics), exercised here too: this file again in a child
  // process with PINHOLE_RING_ATOMICS=on (read once, when ring.ts loads).
  test('the same tests with Atomics for the indexes (PINHOLE_RING_ATOMICS=on, as on arm64)', () => {
    // Without NODE_TEST_CONTEXT, which would make the child report to a parent runner instead of stdout.
    const { NODE_TEST_CONTEXT: _, ...env } = process.env;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-reporter', 'tap', fileURLToPath(import.meta.url)], {
      env: { ...env, PINHOLE_RING_ATOMICS: 'on' },
      encoding: 'utf8',
    });
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /ring indexes are read and written with Atomics/);
    assert.match(r.stdout, /^# fail 0$/m);
  });
}

const OFF: RingOffsets = { producer: 0, consumer: 64, flags: 128, desc: 256 };
const SIZE = 64;

function ringAt(start: number, entryBytes: number): { m: Mapping; idx: Uint32Array } {
  const buffer = new ArrayBuffer(OFF.desc + SIZE * entryBytes);
  const idx = new Uint32Array(buffer, 0, 17);
  idx[0] = start; // producer
  idx[16] = start; // consumer
  return { m: { address: 0n, length: buffer.byteLength, buffer }, idx };
}

for (const start of [0x7fffffc0, 0xffffffc0]) {
  test(`ring indexes from 0x${start.toString(16)}: entries cross the ${start < 0x80000000 ? '2^31' : '2^32'} boundary in order, counts stay right, the kernel sees u32 indexes`, () => {
    // One ring as both sides see it: we produce (fill), and read it back as the kernel would.
    const { m, idx } = ringAt(start, 8);
    const prod = new ProducerRing(m, OFF, SIZE, 2);
    const kernelView = new ConsumerRing(m, OFF, SIZE, 2);
    let next = 0;
    let expect = 0;
    for (let round = 0; round < 8; round++) {
      const n = prod.free(48);
      assert.equal(n, SIZE, 'empty ring: every slot free');
      for (let i = 0; i < 48; i++) prod.setAddr(i, 0x1000 + next++ * 8);
      prod.submit(48);
      assert.equal(prod.pending(), 48, 'published, not yet consumed');
      assert.equal(idx[0], (start + (round + 1) * 48) >>> 0, 'producer index the kernel reads (u32)');
      const avail = kernelView.available(48);
      assert.equal(avail, 48);
      for (let i = 0; i < avail; i++) assert.equal(kernelView.addrAt(i), 0x1000 + expect++ * 8, `entry ${expect - 1}`);
      kernelView.release(avail);
      assert.equal(idx[16], idx[0], 'consumer caught up (u32)');
      assert.equal(prod.pending(), 0);
    }
  });
}

test('rings we produce: high address words zero from the start, whatever the memory held before', () => {
  for (const entryBytes of [8, 16] as const) {
    const { m } = ringAt(0, entryBytes);
    new Uint32Array(m.buffer, OFF.desc).fill(0xffffffff);
    const ring = new ProducerRing(m, OFF, SIZE, entryBytes === 8 ? 2 : 4);
    for (let i = 0; i < SIZE; i++) {
      if (entryBytes === 8) ring.setAddr(i, 0x1000 + i);
      else ring.setDesc(i, 0x1000 + i, 60);
    }
    const words = new Uint32Array(m.buffer, OFF.desc, SIZE * (entryBytes / 4));
    for (let i = 0; i < SIZE; i++) {
      assert.equal(words[(i * entryBytes) / 4], 0x1000 + i);
      assert.equal(words[(i * entryBytes) / 4 + 1], 0, `entry ${i}: high address word`);
    }
  }
});

test('descriptor ring across 2^32: addresses and lengths read back in order', () => {
  const { m, idx } = ringAt(0xfffffff0, 16);
  const tx = new ProducerRing(m, OFF, SIZE, 4);
  const rx = new ConsumerRing(m, OFF, SIZE, 4);
  for (let i = 0; i < 40; i++) tx.setDesc(i, 0x2000 + i * 0x800, 60 + i);
  tx.submit(40);
  assert.equal(idx[0], 0x18, 'wrapped to 0x18');
  assert.equal(rx.available(1), 40);
  for (let i = 0; i < 40; i++) {
    assert.equal(rx.addrAt(i), 0x2000 + i * 0x800);
    assert.equal(rx.lenAt(i), 60 + i);
  }
  rx.release(40);
  assert.equal(tx.free(SIZE), SIZE);
});
