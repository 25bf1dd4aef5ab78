/**
 * Flow queueing ("sparse first") of the offload AF_PACKET port, against the real kernel: a fresh
 * pair of namespaces joined by a veth (up0 ↔ peer0), an AfPacketPort with `offload: true` on up0
 * (TPACKET_V2 ring, PACKET_VNET_HDR), and frames sent from peer0 through a packet socket that
 * has PACKET_VNET_HDR too, so a TCP super-frame crosses the veth whole (GSO kept, checksum
 * partial), as a pod's stack would send it.
 *
 *   peer0 ──► ring: │ super F1 │ F1 │ F2 │ F2 │ F3 │        rx():  F2 F2 F3 │ F1 seg×4 │ F1
 *                     (COPY)     stays  ── taken ahead ──           ahead    head, in order
 *
 * Frames are put in the ring before the port reads (the sends complete in softirq before sendto
 * returns; the test then waits until the last expected slot is filled, peeking without taking)
 * and every frame, each segment of a super-frame included, carries a marker at its payload's end,
 * so one rx() shows the order the port chose. IPv6 is off in both namespaces and no addresses are
 * configured, so the kernel sends nothing of its own onto the veth: the ring holds exactly what
 * the test sent (checked before each rx()).
 *
 * The last tests turn on GSO trains (port.trains, as the graph does for a VXLAN connection whose
 * uplink sends them): a super-frame becomes one link entry per train, its segments laid out
 * `gso` bytes apart (ports/afpacket.ts trainUp); how a breath's room bounds them.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { requireRoot } from '../helpers/require.ts';
import { buildFrame } from '../../src/packet/build.ts';
import { foldSum, pseudoHeaderSumV4, verifyChecksum } from '../../src/packet/checksum.ts';
import { VNET_GSO_TCPV4, VNET_HDR_LEN, vnetGsoType } from '../../src/packet/offload.ts';
import { flowHash } from '../../src/packet/vxlan.ts';
import { AfPacketPort } from '../../src/dataplane/ports/afpacket.ts';
import { Link } from '../../src/dataplane/link.ts';
import { MAX_GSO_SEGMENTS, PC } from '../../src/dataplane/port.ts';
import { RxBatch } from '../../src/uplink/afpacket/index.ts';
import { marker, markerOf, withPortLab, type PortLab } from './afpacket-lab.ts';

requireRoot();

const UP4 = '198.18.0.1';
const PEER4 = '198.18.0.2';
const BATCH = 64;
const TAG = 7;
const MSS = 1400;
const TCP_ACK = 0x10;
/** Flows: F1 the bulk TCP connection, F2 and F3 sparse UDP flows (same addresses, other ports). */
const F1 = { sport: 40001, dport: 5201 };
const F2 = { sport: 40002, dport: 53 };
const F3 = { sport: 40003, dport: 123 };
const ETH = 14;
const IP = 20;
const TCP = 20;

type Lab = PortLab;

function withLab(fn: (lab: Lab) => Promise<void>): Promise<void> {
  return withPortLab('afs', { port: { name: 'wl0', offload: true, filter: 'all', batchSize: BATCH }, mtu: 9000 }, async (lab) => {
    lab.port.pendingChecksums = false; // segments leave with complete checksums (checked below)
    await fn(lab);
  });
}

/** `n` payload bytes: zeros with marker(id) in the last 8 (markerOf finds it from the end). */
function markedPayload(n: number, id: number): Uint8Array {
  const p = new Uint8Array(n);
  p.set(marker(id), n - 8);
  return p;
}

/** A small UDP frame of flow `f` carrying marker(id). */
function udpFrame(lab: Lab, f: { sport: number; dport: number }, id: number, size = 64): Uint8Array {
  return buildFrame({
    eth: { src: lab.peerMac, dst: lab.upMac },
    ipv4: { src: PEER4, dst: UP4, dontFragment: true },
    udp: f,
    payload: markedPayload(size, id),
  });
}

/** A small (no GSO) TCP frame of F1 at `seq`, checksum complete. */
function tcpFrame(lab: Lab, seq: number, id: number): Uint8Array {
  return buildFrame({
    eth: { src: lab.peerMac, dst: lab.upMac },
    ipv4: { src: PEER4, dst: UP4, dontFragment: true },
    tcp: { ...F1, seq, ack: 1, flags: TCP_ACK },
    payload: markedPayload(100, id),
  });
}

/**
 * A TCP super-frame of F1 at `seq`: `ids.length` chunks of `mss` bytes, chunk i ending in
 * marker(ids[i]) so each segment names itself; the TCP checksum field holds the folded
 * pseudo-header sum (CHECKSUM_PARTIAL, as a stack with checksum offload leaves it).
 */
function superFrame(lab: Lab, seq: number, ids: readonly number[], mss = MSS): Uint8Array {
  const payload = new Uint8Array(ids.length * mss);
  ids.forEach((id, i) => payload.set(marker(id), (i + 1) * mss - 8));
  const l4Len = TCP + payload.length;
  const pseudo = foldSum(pseudoHeaderSumV4(ip4(PEER4), ip4(UP4), 6, l4Len));
  return buildFrame({
    eth: { src: lab.peerMac, dst: lab.upMac },
    ipv4: { src: PEER4, dst: UP4, dontFragment: true },
    tcp: { ...F1, seq, ack: 1, flags: TCP_ACK, checksum: pseudo },
    payload,
  });
}

function ip4(s: string): Uint8Array {
  return Uint8Array.from(s.split('.').map(Number));
}

/**
 * Waits until the ring holds `n` frames from the head on (peekAhead: looks, takes nothing), and
 * checks there is no frame after them. Sends finish in softirq before sendto returns, so this is
 * normally true at once; a poll-and-yield loop with a deadline covers a deferred softirq.
 */
async function waitInRing(port: AfPacketPort, n: number): Promise<RxBatch> {
  const probe = new RxBatch(1);
  const deadline = Date.now() + 3000;
  while (!port.sock.peekAhead(probe, 0, n - 1)) {
    if (Date.now() > deadline) assert.fail(`the ring did not fill to ${n} frames within 3 s`);
    if (!port.sock.peekAhead(probe, 0, 0)) await port.sock.pollAsync(100);
    else await new Promise<void>((r) => setImmediate(r));
  }
  assert.equal(port.sock.peekAhead(probe, 0, n), false, `exactly ${n} frames in the ring (nothing of the kernel's own)`);
  return probe;
}

/**
 * The marker ids of the frames in `out`, in order; checks each frame's IPv4 header checksum and L4
 * checksum (segments and frames alike leave complete), and the tag.
 */
function idsOf(lab: Lab, out: Link): number[] {
  const ids: number[] = [];
  for (let i = 0; i < out.n; i++) {
    assert.equal(out.aux[i], TAG);
    assert.equal(out.csum[i], 0, 'checksum complete');
    const g = out.gso[i]!;
    const b = lab.memory.u8[out.mem[i]!]!;
    if (g === 0) {
      ids.push(checkFrame(b, out.addr[i]!, out.len[i]!, i));
      continue;
    }
    // A GSO train: whole segments `g` bytes apart, an 8-byte gap (for a VXLAN header) between,
    // short enough that the outer IPv4 total length (20 + 8 + 8 + train) fits 16 bits.
    assert.ok(out.len[i]! + 36 <= 65535, `train of ${out.len[i]} bytes: too long for one IPv4 packet`);
    const end = out.addr[i]! + out.len[i]!;
    for (let at = out.addr[i]!; at < end; at += g) ids.push(checkFrame(b, at, Math.min(g - 8, end - at), i));
  }
  return ids;
}

/** Checks one frame's IPv4 header and L4 checksums; returns its marker id. */
function checkFrame(b: Uint8Array, off: number, len: number, i: number): number {
  {
    const l3 = off + ETH;
    const totLen = (b[l3 + 2]! << 8) | b[l3 + 3]!;
    assert.equal(totLen, len - ETH, `frame ${i}: IPv4 total length`);
    assert.ok(verifyChecksum(b, l3, IP), `frame ${i}: IPv4 header checksum`);
    const proto = b[l3 + 9]!;
    const l4Len = totLen - IP;
    const pseudo = pseudoHeaderSumV4(b.subarray(l3 + 12, l3 + 16), b.subarray(l3 + 16, l3 + 20), proto, l4Len);
    assert.ok(verifyChecksum(b, l3 + IP, l4Len, pseudo), `frame ${i}: L4 checksum`);
    return markerOf(b, off, len);
  }
}

/** One rx() into a fresh link with room for a batch and a full split; returns the ids, releases. */
function rxOnce(lab: Lab): number[] {
  const out = new Link('rx', BATCH + MAX_GSO_SEGMENTS);
  const n = lab.port.rx(out, TAG);
  const ids = idsOf(lab, out);
  assert.equal(n, ids.length, 'rx() returns the frames it received (a train counts its segments)');
  lab.port.release();
  return ids;
}

function counter(lab: Lab, c: number): number {
  return lab.counters[c]!;
}

test('a super-frame at the head: other flows behind it are taken ahead, its own flow keeps its place; the ring keeps its order after', async () => {
  await withLab(async (lab) => {
    const { port, tx } = lab;
    // (a) super-frame of F1 (segments 1..4), (b) a small F1 frame behind it, (c), (d) two frames
    // of F2, (e) a sentinel of F3. Expected: c d e (taken ahead) in a breath of their own, then
    // a's segments and b.
    let seq = 1000;
    tx.sendTcpSuper(superFrame(lab, seq, [1, 2, 3, 4]), MSS);
    seq += 4 * MSS;
    tx.send(tcpFrame(lab, seq, 10));
    seq += 100;
    tx.send(udpFrame(lab, F2, 20));
    tx.send(udpFrame(lab, F2, 21));
    tx.send(udpFrame(lab, F3, 30));
    const probe = await waitInRing(port, 5);
    // The veth delivered the super-frame whole: one slot, larger than a ring slot (TP_STATUS_COPY).
    assert.ok(port.sock.peekAhead(probe, 0, 0));
    assert.equal(probe.copied[0], 1, 'the head is a TP_STATUS_COPY slot');
    assert.equal(probe.wireLength[0], ETH + IP + TCP + 4 * MSS);
    // Flow hashes as the port sees them: the F1 frame shares the super-frame's flow, F2 differs.
    const ring = port.sock.memory;
    assert.ok(port.sock.peekAhead(probe, 0, 1));
    const hB = flowHash(ring, probe.offset[0]!, probe.length[0]!);
    assert.equal(hB, flowHash(tcpFrame(lab, 0, 0), 0, ETH + IP + TCP + 100));
    assert.ok(port.sock.peekAhead(probe, 0, 2));
    assert.notEqual(flowHash(ring, probe.offset[0]!, probe.length[0]!), hB);

    assert.deepEqual(rxOnce(lab), [20, 21, 30], 'the frames taken ahead leave in a breath of their own');
    assert.deepEqual(rxOnce(lab), [1, 2, 3, 4, 10], 'the next breath reads the ring in order');
    assert.equal(counter(lab, PC.rxSparseFirst), 3, 'rx_sparse_first: the F2 and F3 frames');
    assert.equal(counter(lab, PC.rxGsoFrames), 1, 'rx_gso_frames: the kernel handed over one super-frame');
    assert.equal(counter(lab, PC.rxOffloadDrops), 0);
    assert.equal(counter(lab, PC.rxFrames), 8);
    assert.equal(port.sock.ringUsage().rxUsed, 0, 'every slot, taken ahead or not, went back to the kernel');

    // Then rounds of mixed flows until the ring has wrapped (taken-ahead slots across its end
    // included): each round's frames arrive exactly once, in the order flow queueing gives.
    const slots = port.sock.ringUsage().rxSize;
    let used = 5;
    let id = 100;
    let sparse = 3;
    let gso = 1;
    let frames = 8;
    // Rounds take 5 and 4 slots in turn: first a few single frames, so that one super-frame round
    // starts 2 slots before the ring's end and its frames taken ahead lie past the wrap.
    const shift = (slots - 2 - used) % 9;
    for (let i = 0; i < shift; i++) tx.send(udpFrame(lab, F3, 50 + i));
    if (shift > 0) {
      await waitInRing(port, shift);
      assert.deepEqual(
        rxOnce(lab),
        Array.from({ length: shift }, (_, i) => 50 + i),
      );
      used += shift;
      frames += shift;
    }
    let straddled = 0;
    for (let round = 0; used < slots + 64; round++) {
      const want: number[] = [];
      let n: number;
      if (round % 2 === 0) {
        // Super-frame at the head: F2, F3, F2 go ahead; F1's small frame waits for the segments.
        const segs = [id, id + 1, id + 2];
        tx.sendTcpSuper(superFrame(lab, seq, segs), MSS);
        seq += 3 * MSS;
        tx.send(tcpFrame(lab, seq, id + 3));
        seq += 100;
        tx.send(udpFrame(lab, F2, id + 4));
        tx.send(udpFrame(lab, F3, id + 5));
        tx.send(udpFrame(lab, F2, id + 6));
        want.push(id + 4, id + 5, id + 6, -1, ...segs, id + 3);
        n = 5;
        if ((used % slots) + n > slots) straddled++;
        sparse += 3;
        gso++;
        frames += 7;
      } else {
        // An ordinary frame at the head: ring order, segments where the super-frame was.
        tx.send(udpFrame(lab, F2, id));
        tx.send(tcpFrame(lab, seq, id + 1));
        seq += 100;
        const segs = [id + 2, id + 3];
        tx.sendTcpSuper(superFrame(lab, seq, segs), MSS);
        seq += 2 * MSS;
        tx.send(udpFrame(lab, F3, id + 4));
        want.push(id, id + 1, ...segs, id + 4);
        n = 4;
        gso++;
        frames += 5;
      }
      await waitInRing(port, n);
      // -1: where one breath ends and the next begins (the frames taken ahead leave on their own).
      const got = want.includes(-1) ? [...rxOnce(lab), -1, ...rxOnce(lab)] : rxOnce(lab);
      assert.deepEqual(got, want, `round ${round}`);
      used += n;
      id += 10;
    }
    assert.equal(straddled, 1, 'one super-frame round had its frames taken ahead across the ring end');
    assert.equal(counter(lab, PC.rxSparseFirst), sparse);
    assert.equal(counter(lab, PC.rxGsoFrames), gso);
    assert.equal(counter(lab, PC.rxFrames), frames);
    assert.equal(counter(lab, PC.rxOffloadDrops), 0);
    port.refreshStats();
    assert.equal(counter(lab, PC.kernelDrops), 0);
    assert.equal(port.sock.ringUsage().rxUsed, 0);
  });
});

test('no super-frame at the head: nothing is taken ahead, frames come in ring order', async () => {
  await withLab(async (lab) => {
    const { port, tx } = lab;
    let seq = 1000;
    tx.send(udpFrame(lab, F2, 1));
    tx.send(tcpFrame(lab, seq, 2));
    seq += 100;
    tx.sendTcpSuper(superFrame(lab, seq, [3, 4, 5, 6]), MSS);
    tx.send(udpFrame(lab, F2, 7));
    tx.send(udpFrame(lab, F3, 8));
    await waitInRing(port, 5);
    assert.deepEqual(rxOnce(lab), [1, 2, 3, 4, 5, 6, 7, 8]);
    assert.equal(counter(lab, PC.rxSparseFirst), 0);
    assert.equal(counter(lab, PC.rxGsoFrames), 1);
    assert.equal(counter(lab, PC.rxOffloadDrops), 0);
    assert.equal(counter(lab, PC.rxFrames), 8);
    assert.equal(port.sock.ringUsage().rxUsed, 0);
  });
});

test('a GSO frame inside a ring slot at the head also lets sparse flows ahead; a frame left in place holds back its flow', async () => {
  await withLab(async (lab) => {
    const { port, tx } = lab;
    // (a) a small super-frame of F1 (2 × 600: fits a 2 KiB slot, GSO in the slot header), (b) a
    // 3000-byte UDP frame of F3 (no GSO, larger than a slot: TP_STATUS_COPY, so it stays in
    // place), (c) a small F3 frame — its flow has a frame waiting, so it stays too, (d) F2 —
    // taken ahead, (e) F1 small — behind its super-frame.
    const seq = 1000;
    tx.sendTcpSuper(superFrame(lab, seq, [1, 2], 600), 600);
    tx.send(udpFrame(lab, F3, 3, 3000));
    tx.send(udpFrame(lab, F3, 4));
    tx.send(udpFrame(lab, F2, 5));
    tx.send(tcpFrame(lab, seq + 1200, 6));
    const probe = await waitInRing(port, 5);
    assert.ok(port.sock.peekAhead(probe, 0, 0));
    assert.equal(probe.copied[0], 0, 'the super-frame is in its ring slot');
    assert.equal(vnetGsoType(port.sock.memory, probe.offset[0]! - VNET_HDR_LEN), VNET_GSO_TCPV4);
    assert.ok(port.sock.peekAhead(probe, 0, 1));
    assert.equal(probe.copied[0], 1, 'the jumbo frame is a TP_STATUS_COPY slot');

    assert.deepEqual(rxOnce(lab), [5], 'F2, taken ahead, leaves in a breath of its own');
    // One super-frame per breath: the jumbo frame (a copy, as costly) waits for the next, and
    // there F1's small frame, its super-frame gone, has nothing of its flow before it.
    assert.deepEqual(rxOnce(lab), [1, 2], 'the super-frame');
    assert.deepEqual(rxOnce(lab), [6], 'F1 taken ahead of the jumbo frame, in a breath of its own');
    assert.deepEqual(rxOnce(lab), [3, 4], 'F3 in order');
    assert.equal(counter(lab, PC.rxSparseFirst), 2, 'the F2 frame, then the F1 frame');
    assert.equal(counter(lab, PC.rxGsoFrames), 1);
    assert.equal(counter(lab, PC.rxOffloadDrops), 0);
    assert.equal(counter(lab, PC.rxFrames), 6);
    assert.equal(port.sock.ringUsage().rxUsed, 0);
  });
});

test('sparse frames arriving breath after breath cannot hold a super-frame back: every other breath reads the ring in order', async () => {
  await withLab(async (lab) => {
    const { port, tx } = lab;
    tx.sendTcpSuper(superFrame(lab, 1000, [1, 2, 3]), MSS);
    tx.send(udpFrame(lab, F2, 10));
    await waitInRing(port, 2);
    assert.deepEqual(rxOnce(lab), [10], 'breath 1: the sparse frame alone');
    tx.send(udpFrame(lab, F2, 11));
    // The super-frame, the slot taken ahead (given back in ring order later) and the new frame.
    await waitInRing(port, 3);
    assert.deepEqual(rxOnce(lab), [11, 1, 2, 3], 'breath 2: the new sparse frame first, then the super-frame all the same');
    assert.equal(counter(lab, PC.rxSparseFirst), 2);
    assert.equal(port.sock.ringUsage().rxUsed, 0);
  });
});

test('a breath splits one super-frame; the rest wait for the next, in order, and an ordinary frame behind the last comes with it', async () => {
  await withLab(async (lab) => {
    const { port, tx } = lab;
    let seq = 1000;
    for (let k = 0; k < 6; k++) {
      tx.sendTcpSuper(superFrame(lab, seq, [10 * k + 1, 10 * k + 2]), MSS);
      seq += 2 * MSS;
    }
    tx.send(tcpFrame(lab, seq, 99));
    await waitInRing(port, 7);
    for (let k = 0; k < 5; k++) assert.deepEqual(rxOnce(lab), [10 * k + 1, 10 * k + 2], `breath ${k + 1}: one super-frame`);
    assert.deepEqual(rxOnce(lab), [51, 52, 99], 'breath 6: the last one and the frame behind');
    assert.equal(counter(lab, PC.rxGsoFrames), 6);
    assert.equal(port.sock.ringUsage().rxUsed, 0);
  });
});

/** A super-frame of F1 at `seq` carrying segments ids[0..]; returns the next seq. */
function sendSuper(lab: Lab, seq: number, ids: readonly number[]): number {
  lab.tx.sendTcpSuper(superFrame(lab, seq, ids), MSS);
  return seq + ids.length * MSS;
}

const range = (from: number, n: number): number[] => Array.from({ length: n }, (_, i) => from + i);

test('GSO trains: a 45-segment super-frame becomes a train of 44 segments and a train of one, in order before the frame behind them', async () => {
  await withLab(async (lab) => {
    const { port, tx } = lab;
    port.trains = true;
    // chunk = 54 + 1400 + 8 = 1462 bytes; 65,507 / 1462 → 44 segments per train.
    const seq = sendSuper(lab, 1000, range(1, 45));
    tx.send(tcpFrame(lab, seq, 99));
    await waitInRing(port, 2);
    const out = new Link('rx', BATCH + MAX_GSO_SEGMENTS);
    port.rx(out, TAG);
    assert.equal(out.n, 3, 'a train, the last segment, the frame behind');
    assert.equal(out.gso[0], 1462, 'the train: segments 1462 bytes apart');
    assert.equal(out.len[0], 43 * 1462 + 1454);
    assert.equal(out.gso[1], 1462, 'the last segment is a train of one: it leaves by the same socket as the first');
    assert.equal(out.len[1], 1454);
    assert.equal(out.gso[2], 0);
    assert.deepEqual(idsOf(lab, out), [...range(1, 45), 99]);
    port.release();
    assert.equal(counter(lab, PC.rxGsoTrains), 2);
    assert.equal(counter(lab, PC.rxGsoFrames), 1);
    assert.equal(counter(lab, PC.rxFrames), 46, 'rx_frames counts segments');
    assert.equal(counter(lab, PC.rxOffloadDrops), 0);
  });
});

test('GSO trains: the outer length bounds a train — 1489-byte chunks, 43 to a train (44 would make a 65,544-byte IPv4 packet)', async () => {
  await withLab(async (lab) => {
    const { port } = lab;
    port.trains = true;
    // MSS 1427: segment 54 + 1427 = 1481 bytes, chunk 1489; 44 × 1489 − 8 = 65,508 > 65,499.
    lab.tx.sendTcpSuper(superFrame(lab, 1000, range(1, 44), 1427), 1427);
    await waitInRing(port, 1);
    const out = new Link('rx', BATCH + MAX_GSO_SEGMENTS);
    port.rx(out, TAG);
    assert.equal(out.n, 2);
    assert.deepEqual([out.gso[0], out.gso[1]], [1489, 1489]);
    assert.equal(out.len[0], 42 * 1489 + 1481, '43 segments');
    assert.equal(out.len[1], 1481, 'then one');
    assert.deepEqual(idsOf(lab, out), range(1, 44));
    port.release();
  });
});

test('GSO trains: super-frames beyond what one breath holds wait for the next, none lost, order kept', async () => {
  await withLab(async (lab) => {
    const { port } = lab;
    port.trains = true;
    let seq = 1000;
    const want: number[] = [];
    for (let k = 0; k < 12; k++) {
      const ids = range(1000 * (k + 1), 40);
      seq = sendSuper(lab, seq, ids);
      want.push(...ids);
    }
    await waitInRing(port, 12);
    const got: number[] = [];
    let breaths = 0;
    while (got.length < want.length && breaths < 20) {
      got.push(...rxOnce(lab));
      breaths++;
    }
    assert.deepEqual(got, want);
    assert.equal(breaths, 12, 'one super-frame per breath');
    assert.equal(counter(lab, PC.rxGsoTrains), 12);
    assert.equal(counter(lab, PC.rxOffloadDrops), 0, 'nothing dropped');
  });
});
