/**
 * AF_PACKET TX ring slots sized from the interface's MTU (src/uplink/afpacket/socket.ts): 2 KiB
 * while a frame of the MTU fits one (headers included), else the next power of two; the count
 * keeps the ring's memory but never falls below two batches. The kernel tier sends a 9014-byte
 * frame through a 16 KiB slot (test/kernel/afpacket.test.ts).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { maxTxFrame, txSlotCount, txSlotSize } from '../../src/uplink/afpacket/socket.ts';

test('txSlotSize: 2 KiB up to the MTU that still fits (V3 48-byte header, V2 32 + a 10-byte virtio_net_hdr), then powers of two', () => {
  // V3, no header: 48 + MTU + 18 ≤ 2048 → MTU ≤ 1982.
  assert.equal(txSlotSize(1500, 0, 3), 2048);
  assert.equal(txSlotSize(1982, 0, 3), 2048);
  assert.equal(txSlotSize(1983, 0, 3), 4096);
  // V2 with a virtio_net_hdr (offload ports): 32 + 10 + MTU + 18 ≤ 2048 → MTU ≤ 1988.
  assert.equal(txSlotSize(1988, 10, 2), 2048);
  assert.equal(txSlotSize(1989, 10, 2), 4096);
  for (const [mtu, slot] of [
    [3700, 4096],
    [8896, 16384], // GCP
    [9000, 16384],
    [9001, 16384], // AWS
    [16000, 16384],
    [65535, 131072],
  ] as const) {
    assert.equal(txSlotSize(mtu, 10, 2), slot, `MTU ${mtu}`);
    assert.ok(txSlotSize(mtu, 10, 2) >= 32 + 10 + maxTxFrame(mtu), 'the largest frame fits behind the headers');
  }
});

test('txSlotCount: the memory of the slots asked for at 2 KiB, in blocks of 32, never below 128', () => {
  assert.equal(txSlotCount(512, 2048), 512);
  assert.equal(txSlotCount(512, 4096), 256);
  assert.equal(txSlotCount(512, 8192), 128);
  assert.equal(txSlotCount(512, 16384), 128, 'two batches of 64 at least');
  assert.equal(txSlotCount(2048, 16384), 256);
  assert.equal(txSlotCount(0, 16384), 0, 'no TX ring stays none');
  for (const [asked, size] of [
    [512, 4096],
    [2048, 16384],
    [96, 8192],
  ] as const)
    assert.equal(txSlotCount(asked, size) % 32, 0, 'whole blocks of 32 slots');
});
