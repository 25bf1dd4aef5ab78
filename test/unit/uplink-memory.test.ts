/**
 * The uplink contract and the dataplane loop, over in-memory uplinks (no privileges): frames
 * cross-connect unchanged and in order, counters add up, a full receive queue drops and counts,
 * and the loop stops when the flag is raised.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryUplink } from '../../src/uplink/memory-uplink.ts';
import { forwardBatch, runLoop } from '../../src/uplink/forward.ts';
import { copyFrame } from '../../src/uplink/types.ts';
import { CTRL_STOP, SLOT, SLOTS } from '../../src/uplink/worker-abi.ts';
import { buildFrame } from '../../src/packet/build.ts';

const frame = (i: number, size = 100): Uint8Array =>
  buildFrame({
    ipv4: { src: '198.18.0.2', dst: '198.18.0.1' },
    udp: { sport: 40000 + i, dport: 4789 },
    payload: new Uint8Array(size).fill(i & 0xff),
  });

test('cross-connect over memory uplinks: unchanged, in order, counted, in bounded batches', () => {
  const a = new MemoryUplink({ batchSize: 16, slots: 256 });
  const b = new MemoryUplink({ batchSize: 16 });
  const c = new Float64Array(SLOTS);
  const sent = Array.from({ length: 100 }, (_, i) => frame(i, 50 + i));
  for (const f of sent) assert.equal(a.inject(f), true);
  let batches = 0;
  while (forwardBatch(a, b, c) > 0) batches++;
  assert.equal(batches, Math.ceil(100 / 16), 'at most batchSize frames per call');
  assert.deepEqual(b.sent, sent);
  assert.equal(c[SLOT.rxPackets], 100);
  assert.equal(c[SLOT.txPackets], 100);
  assert.equal(c[SLOT.txDropped], 0);
  assert.equal(
    c[SLOT.rxBytes],
    sent.reduce((s, f) => s + f.length, 0),
  );
  assert.equal(c[SLOT.txBytes], c[SLOT.rxBytes]);
  assert.deepEqual(a.counters(), { rxPackets: 100, rxBytes: c[SLOT.rxBytes]!, txPackets: 0, txBytes: 0, txDropped: 0, kernelDrops: 0 });
});

test('a full receive queue drops and counts instead of growing', () => {
  const a = new MemoryUplink({ slots: 8 });
  for (let i = 0; i < 10; i++) a.inject(frame(i));
  assert.equal(a.counters().kernelDrops, 2);
  const c = new Float64Array(SLOTS);
  assert.equal(forwardBatch(a, undefined, c), 8);
  assert.equal(forwardBatch(a, undefined, c), 0);
  assert.equal(a.inject(frame(99)), true, 'released slots are reused');
});

test('the loop runs until the stop flag is raised', () => {
  const a = new MemoryUplink();
  const b = new MemoryUplink();
  for (let i = 0; i < 5; i++) a.inject(frame(i));
  const c = new Float64Array(SLOTS);
  const ctrl = new Int32Array(new SharedArrayBuffer(8));
  // MemoryUplink.wait() returns at once; raise the flag from inside once everything went through.
  const origWait = a.wait.bind(a);
  a.wait = () => {
    if (b.sent.length === 5) Atomics.store(ctrl, CTRL_STOP, 1);
    return origWait();
  };
  runLoop(a, b, c, ctrl);
  assert.equal(b.sent.length, 5);
  assert.ok(c[SLOT.idleWaits]! >= 1);
});

test('copyFrame: within one buffer (shared UMEM) and across buffers', () => {
  const buf = new ArrayBuffer(64);
  const rx = new Uint8Array(buf, 0, 32);
  const tx = new Uint8Array(buf, 32, 32);
  rx.set([1, 2, 3, 4], 4);
  copyFrame(rx, 4, tx, 8, 4);
  assert.deepEqual([...tx.subarray(8, 12)], [1, 2, 3, 4]);
  const other = new Uint8Array(16);
  copyFrame(rx, 4, other, 0, 4);
  assert.deepEqual([...other.subarray(0, 4)], [1, 2, 3, 4]);
});
