/**
 * An AF_PACKET uplink that receives GSO trains (AfPacketPort `gsoReceive`: a TPACKET_V2 ring with
 * PACKET_VNET_HDR, as a workload port's), against the real kernel. A veth hands a GSO skb whole to
 * a peer that runs no XDP, so a train another pinhole sends (three VXLAN packets as one UDP_L4 GSO
 * frame) reaches the port as one frame with its virtio_net_hdr; the port must hand the graph the
 * three packets, each with its own lengths and complete checksums, in order. A frame with only a
 * partial checksum (CHECKSUM_PARTIAL, as a local sender leaves it) is completed.
 *
 *   peer0 ──► │ eth │ IPv4 │ UDP │ vx │ inner 1 │ vx │ inner 2 │ vx │ inner 3 │  (gso_size 608)
 *             up0: rx() → │ eth IPv4 UDP vx inner 1 │ … inner 2 │ … inner 3 │
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { requireRoot } from '../helpers/require.ts';
import { buildFrame } from '../../src/packet/build.ts';
import { foldSum, pseudoHeaderSumV4, verifyChecksum } from '../../src/packet/checksum.ts';
import { VNET_GSO_NONE, VNET_GSO_UDP_L4 } from '../../src/packet/offload.ts';
import { Link } from '../../src/dataplane/link.ts';
import { MAX_GSO_SEGMENTS, PC } from '../../src/dataplane/port.ts';
import { marker, markerOf, withPortLab, type PortLab } from './afpacket-lab.ts';

requireRoot();

const UP4 = '198.18.0.1';
const PEER4 = '198.18.0.2';
const ip4 = (s: string): Uint8Array => Uint8Array.from(s.split('.').map(Number));
const put16 = (b: Uint8Array, at: number, v: number): void => {
  b[at] = v >>> 8;
  b[at + 1] = v & 0xff;
};

/**
 * A train from `peerMac` to `upMac`: one inner UDP frame per id (payload `len` bytes ending in
 * its marker; the last `lastLen`), each behind a VXLAN header; returns the frame and its chunk.
 */
function buildTrain(
  peerMac: string,
  upMac: string,
  ids: readonly number[],
  len: number,
  lastLen = len,
): { train: Uint8Array; chunk: number; inner: Uint8Array[] } {
  const inner = ids.map((id, i) =>
    buildFrame({
      eth: { src: '02:00:00:00:00:a1', dst: '02:00:00:00:00:b1' },
      ipv4: { src: '198.19.0.1', dst: '198.19.0.2' },
      udp: { sport: 1000, dport: 2000 },
      payload: (() => {
        const p = new Uint8Array(i === ids.length - 1 ? lastLen : len);
        p.set(marker(id), p.length - 8);
        return p;
      })(),
    }),
  );
  const chunk = 8 + inner[0]!.length;
  const payload = new Uint8Array(8 * inner.length + inner.reduce((n, f) => n + f.length, 0));
  let at = 0;
  for (const f of inner) {
    payload.set([0x08, 0, 0, 0, 0, 0, 0x64, 0], at); // VNI 100
    payload.set(f, at + 8);
    at += 8 + f.length;
  }
  const train = buildFrame({
    eth: { src: peerMac, dst: upMac },
    ipv4: { src: PEER4, dst: UP4, dontFragment: true },
    udp: { sport: 40000, dport: 4789, checksum: 'none' },
    payload,
  });
  // CHECKSUM_PARTIAL: the UDP checksum field holds the pseudo-header sum.
  put16(train, 34 + 6, foldSum(pseudoHeaderSumV4(ip4(PEER4), ip4(UP4), 17, 8 + payload.length)));
  return { train, chunk, inner };
}

/** An AF_PACKET uplink port with gsoReceive on up0 and a vnet-header sender on peer0; closed after `fn`. */
function withUplink(tag: string, fn: (lab: PortLab) => Promise<void>): Promise<void> {
  return withPortLab(tag, { port: { name: 'uplink', filter: 'all', gsoReceive: true, batchSize: 64 } }, fn);
}

test('a GSO train arriving whole is split into its VXLAN packets, in order, checksums complete; a partial checksum is completed; a frame of another flow behind the train goes first', async () => {
  await withUplink('gsr', async ({ port, tx, memory, counters, upMac, peerMac }) => {
    assert.match(port.detail, /GSO frames split/);
    // Three inner frames (the last shorter), each behind a VXLAN header: the train's UDP payload.
    const { train, chunk, inner } = buildTrain(peerMac, upMac, [1, 2, 3], 558, 358);
    tx.sendGso(train, VNET_GSO_UDP_L4, 42, chunk, 34, 6);
    // An ordinary frame with a partial checksum.
    const partial = buildFrame({
      eth: { src: peerMac, dst: upMac },
      ipv4: { src: PEER4, dst: UP4 },
      udp: { sport: 40001, dport: 4789, checksum: 'none' },
      payload: marker(4),
    });
    put16(partial, 34 + 6, foldSum(pseudoHeaderSumV4(ip4(PEER4), ip4(UP4), 17, 16)));
    tx.sendGso(partial, VNET_GSO_NONE, 0, 0, 34, 6);

    const out = new Link('rx', 64 + MAX_GSO_SEGMENTS);
    let n = 0;
    const deadline = Date.now() + 3000;
    while (out.n < 4 && Date.now() < deadline) {
      n += port.rx(out, 7);
      if (out.n < 4) await port.sock.pollAsync(100);
    }
    // The ordinary frame (another flow) is taken ahead of the train waiting at the head of the
    // ring (flow queueing, sparseFirst), in a breath of its own.
    assert.equal(out.n, 4, 'the ordinary frame, then three packets from the train');
    assert.equal(n, 4);
    const ids: number[] = [];
    for (let i = 0; i < out.n; i++) {
      const b = memory.u8[out.mem[i]!]!;
      const off = out.addr[i]!;
      const len = out.len[i]!;
      assert.equal((b[off + 16]! << 8) | b[off + 17]!, len - 14, `packet ${i}: IPv4 total length`);
      assert.ok(verifyChecksum(b, off + 14, 20), `packet ${i}: IPv4 header checksum`);
      assert.equal((b[off + 38]! << 8) | b[off + 39]!, len - 34, `packet ${i}: UDP length`);
      const pseudo = pseudoHeaderSumV4(ip4(PEER4), ip4(UP4), 17, len - 34);
      assert.ok(verifyChecksum(b, off + 34, len - 34, pseudo), `packet ${i}: UDP checksum complete`);
      if (i > 0) assert.deepEqual(b.subarray(off + 50, off + len), inner[i - 1], `packet ${i}: the inner frame`);
      ids.push(markerOf(b, off, len));
    }
    assert.deepEqual(ids, [4, 1, 2, 3]);
    port.release();
    assert.equal(counters[PC.rxSparseFirst], 1);
    assert.equal(counters[PC.rxGsoFrames], 1);
    assert.equal(counters[PC.rxFrames], 4);
    assert.equal(counters[PC.rxOffloadDrops], 0);
  });
});

test('trains that do not fit one breath wait for the next: none lost, order kept', async () => {
  await withUplink('gsr2', async ({ port, tx, memory, counters, upMac, peerMac }) => {
    // Four trains of 100 small packets: a breath's link holds 64 + 256 frames, so three at most.
    const want: number[] = [];
    for (let t = 0; t < 4; t++) {
      const ids = Array.from({ length: 100 }, (_, i) => 1000 * (t + 1) + i);
      const { train, chunk } = buildTrain(peerMac, upMac, ids, 60);
      tx.sendGso(train, VNET_GSO_UDP_L4, 42, chunk, 34, 6);
      want.push(...ids);
    }
    const got: number[] = [];
    let breaths = 0;
    const deadline = Date.now() + 5000;
    while (got.length < want.length && Date.now() < deadline) {
      const out = new Link('rx', 64 + MAX_GSO_SEGMENTS);
      port.rx(out, 7);
      for (let i = 0; i < out.n; i++) got.push(markerOf(memory.u8[out.mem[i]!]!, out.addr[i]!, out.len[i]!));
      port.release();
      if (out.n > 0) breaths++;
      else await port.sock.pollAsync(100);
    }
    assert.deepEqual(got, want);
    assert.ok(breaths >= 2, `in ${breaths} breaths`);
    assert.equal(counters[PC.rxGsoFrames], 4);
    assert.equal(counters[PC.rxOffloadDrops], 0);
  });
});
