/**
 * AF_PACKET uplink in a fresh pair of namespaces joined by a veth (up0 ↔ peer0):
 *  - the kernel accepts the compiled pinhole socket filter and its lock;
 *  - frames sent from the peer arrive through the TPACKET_V3 ring, exactly the tunnel ones
 *    (UDP to the configured port over IPv4/IPv6, VLAN-tagged too), none of the others;
 *  - TX from the uplink socket reaches the peer;
 *  - a fanout group delivers each frame to exactly one member;
 *  - the port guard keeps the host from answering tunnel datagrams with ICMP port unreachable.
 * Waits use poll with deadlines; "nothing else arrived" is decided by a sentinel frame sent last
 * (a veth queue keeps order), never by sleeping.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { requireRoot } from '../helpers/require.ts';
import { addVeth, withNetns, type Netns } from '../helpers/netns.ts';
import '../../src/sys/index.ts';
import { getSys, SysError } from '../../src/sys/index.ts';
import { buildFrame, type FrameSpec } from '../../src/packet/build.ts';
import { compilePinholeFilter } from '../../src/bpf/cbpf/pinhole.ts';
import { cbpf } from '../../src/bpf/cbpf/asm.ts';
import { AfPacketSocket, RxBatch, TxBatch, attachFilter, openPortGuard } from '../../src/uplink/afpacket/index.ts';
import { inNetns, macOf, marker, markerOf, RawSocket } from './afpacket-lab.ts';

requireRoot();

const PORT = 4789;
const UP4 = '198.18.0.1';
const PEER4 = '198.18.0.2';
const UP6 = '2001:db8::1';
const PEER6 = '2001:db8::2';

interface Lab {
  up: Netns;
  peer: Netns;
  upMac: string;
  peerMac: string;
}

async function withLab(fn: (lab: Lab) => Promise<void>): Promise<void> {
  await withNetns(['afp-up', 'afp-peer'], async (up, peer) => {
    addVeth(up, 'up0', peer, 'peer0');
    up.ip('addr', 'add', `${UP4}/24`, 'dev', 'up0');
    peer.ip('addr', 'add', `${PEER4}/24`, 'dev', 'peer0');
    up.ip('addr', 'add', `${UP6}/64`, 'dev', 'up0', 'nodad');
    peer.ip('addr', 'add', `${PEER6}/64`, 'dev', 'peer0', 'nodad');
    const upMac = macOf(up, 'up0');
    const peerMac = macOf(peer, 'peer0');
    // Static neighbours: the up side can answer (ICMP) without ARP/ND round trips.
    up.ip('neigh', 'replace', PEER4, 'lladdr', peerMac, 'dev', 'up0', 'nud', 'permanent');
    up.ip('-6', 'neigh', 'replace', PEER6, 'lladdr', peerMac, 'dev', 'up0', 'nud', 'permanent');
    await fn({ up, peer, upMac, peerMac });
  });
}

/** Drains `sock` until frame with marker `until` arrives; returns all marker ids seen in order. */
async function collect(
  sock: AfPacketSocket,
  batch: RxBatch,
  until: number,
  timeoutMs: number,
  vlans?: Map<number, number>,
): Promise<number[]> {
  const seen: number[] = [];
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const n = sock.receive(batch);
    for (let i = 0; i < n; i++) {
      const id = markerOf(sock.memory, batch.offset[i]!, batch.length[i]!);
      seen.push(id);
      if (vlans) vlans.set(id, batch.vlanTci[i]!);
    }
    if (seen.includes(until)) return seen;
    const left = deadline - Date.now();
    if (left <= 0) assert.fail(`frame ${until} did not arrive within ${timeoutMs} ms; saw ${seen.join(',')}`);
    if (n === 0) await sock.pollAsync(Math.min(left, 100));
  }
}

test('pinhole cBPF filter: kernel accepts and locks it; the ring receives exactly the tunnel frames', async () => {
  await withLab(async ({ up, peer, upMac, peerMac }) => {
    const filter = compilePinholeFilter({ ports: [PORT], addresses: [] });
    const sock = inNetns(up, () => AfPacketSocket.open({ ifname: 'up0', filter, blockSize: 1 << 16, blockCount: 8 }));
    const raw = inNetns(peer, () => new RawSocket('peer0'));
    try {
      // The filter is locked: replacing it fails with EPERM.
      assert.throws(
        () => attachFilter(sock.fd, cbpf().ret.k(0xffff).assemble()),
        (e: unknown) => e instanceof SysError && e.code === 'EPERM',
      );

      const eth = { src: peerMac, dst: upMac };
      const v4 = { src: PEER4, dst: UP4 };
      const v6 = { src: PEER6, dst: UP6 };
      const tunnel: FrameSpec[] = [
        { eth, ipv4: v4, udp: { sport: 40000, dport: PORT } },
        { eth, ipv6: v6, udp: { sport: 40001, dport: PORT } },
        { eth, ipv6: { ...v6, extensions: [{ type: 0 }, { type: 60, hdrExtLen: 1 }] }, udp: { sport: 40002, dport: PORT } },
        { eth, ipv4: { ...v4, options: new Uint8Array([1, 1, 1, 1]) }, udp: { sport: 40003, dport: PORT } },
        { eth, vlans: [{ vid: 100 }], ipv4: v4, udp: { sport: 40004, dport: PORT } },
        { eth, vlans: [{ tpid: 0x88a8, vid: 200 }, { vid: 300 }], ipv6: v6, udp: { sport: 40005, dport: PORT } },
      ];
      const other: FrameSpec[] = [
        { eth, ipv4: v4, tcp: { sport: 40010, dport: PORT } },
        { eth, ipv4: v4, icmp: { type: 8 } },
        { eth, ipv4: v4, udp: { sport: 40011, dport: 53 } },
        { eth, ipv4: { ...v4, moreFragments: true }, udp: { sport: 40012, dport: PORT } },
        { eth, ipv6: v6, tcp: { sport: 40013, dport: PORT } },
        { eth, ipv6: v6, icmpv6: { type: 128 } },
        { eth, ipv6: v6, udp: { sport: 40014, dport: PORT + 1 } },
        { eth, ipv6: { ...v6, extensions: [{ type: 44 }] }, udp: { sport: 40015, dport: PORT } },
        { eth, vlans: [{ vid: 1 }, { vid: 2 }, { vid: 3 }], ipv4: v4, udp: { sport: 40016, dport: PORT } },
      ];
      let id = 1;
      const want: number[] = [];
      const frames: Uint8Array[] = [];
      // Interleave: tunnel, other, tunnel, other, ...
      for (let i = 0; i < Math.max(tunnel.length, other.length); i++) {
        if (tunnel[i]) {
          want.push(id);
          frames.push(buildFrame({ ...tunnel[i]!, payload: marker(id++) }));
        }
        if (other[i]) frames.push(buildFrame({ ...other[i]!, payload: marker(id++) }));
      }
      const sentinel = id++;
      frames.push(buildFrame({ eth, ipv4: v4, udp: { sport: 40099, dport: PORT }, payload: marker(sentinel) }));
      want.push(sentinel);
      for (const f of frames) raw.send(f);

      const batch = new RxBatch(64);
      const vlans = new Map<number, number>();
      const seen = await collect(sock, batch, sentinel, 5000, vlans);
      assert.deepEqual(seen, want, 'exactly the tunnel frames, in order');
      // The kernel took the outer tag into metadata; the ring reports it.
      assert.equal(vlans.get(want[4]!)! & 0xfff, 100);
      assert.equal(vlans.get(want[5]!)! & 0xfff, 200);
      assert.equal(vlans.get(want[0]!), -1);
      const st = sock.stats();
      assert.equal(st.drops, 0);
      assert.equal(st.packets, want.length, 'PACKET_STATISTICS counts the frames the filter kept');
      assert.equal(sock.counters.rxFrames, want.length);
    } finally {
      raw.close();
      sock.close();
    }
  });
});

test('AF_PACKET TX batch reaches the peer (qdisc bypass)', async () => {
  await withLab(async ({ up, peer, upMac, peerMac }) => {
    const filter = compilePinholeFilter({ ports: [PORT], addresses: [] });
    const sock = inNetns(up, () => AfPacketSocket.open({ ifname: 'up0', filter, blockSize: 1 << 16, blockCount: 4 }));
    const raw = inNetns(peer, () => new RawSocket('peer0'));
    try {
      const tx = new TxBatch(32);
      const N = 32;
      for (let i = 0; i < N; i++) {
        const f = buildFrame({
          eth: { src: upMac, dst: peerMac },
          ipv4: { src: UP4, dst: PEER4 },
          udp: { sport: PORT, dport: PORT },
          payload: marker(1000 + i),
        });
        tx.slot[i]!.set(f);
        tx.length[i] = f.length;
      }
      tx.count = N;
      assert.equal(sock.transmit(tx), N);
      assert.equal(sock.counters.txErrors, 0);
      const got = new Set<number>();
      while (got.size < N) {
        const f = await raw.receive((fr) => markerOf(fr) >= 1000, 3000);
        if (!f) assert.fail(`only ${got.size} of ${N} frames reached the peer`);
        got.add(markerOf(f));
      }
      assert.equal(got.size, N);
    } finally {
      raw.close();
      sock.close();
    }
  });
});

test('AF_PACKET TX ring: frames written in place, one sendto per batch, reach the peer in order', async () => {
  await withLab(async ({ up, peer, upMac, peerMac }) => {
    const filter = compilePinholeFilter({ ports: [PORT], addresses: [] });
    const sock = inNetns(up, () => AfPacketSocket.open({ ifname: 'up0', filter, blockSize: 1 << 16, blockCount: 4, txFrames: 64 }));
    const raw = inNetns(peer, () => new RawSocket('peer0'));
    try {
      const N = 512; // eight trips round the 64-slot ring
      let sent = 0;
      let flushes = 0;
      const got: number[] = [];
      while (sent < N) {
        // A batch of 32 written in place, one sendto; then read them on the peer (its socket
        // buffer holds a few hundred small frames only).
        const first = sent;
        while (sent < N && sent - first < 32) {
          const slot = sock.txAcquire();
          if (slot < 0) break; // ring full: flush what we have
          const f = buildFrame({
            eth: { src: upMac, dst: peerMac },
            ipv4: { src: UP4, dst: PEER4 },
            udp: { sport: PORT, dport: PORT },
            payload: marker(5000 + sent),
          });
          sock.txData[slot]!.set(f);
          sock.txCommit(slot, f.length);
          sent++;
        }
        if (sock.txFlush() > 0) flushes++;
        while (got.length < sent) {
          const f = await raw.receive((fr) => markerOf(fr) >= 5000, 3000);
          if (!f) assert.fail(`only ${got.length} of ${sent} frames reached the peer`);
          got.push(markerOf(f));
        }
      }
      assert.deepEqual(
        got,
        Array.from({ length: N }, (_, i) => 5000 + i),
      );
      assert.equal(sock.counters.txFrames, N);
      assert.equal(sock.counters.txErrors, 0, String(sock.lastTxError));
      assert.ok(flushes <= N / 32 + 20, `${flushes} sendto calls for ${N} frames`);
    } finally {
      raw.close();
      sock.close();
    }
  });
});

test('TPACKET_V3 ring: a small ring wraps many times without loss or reordering', async () => {
  await withLab(async ({ up, peer, upMac, peerMac }) => {
    const filter = compilePinholeFilter({ ports: [PORT], addresses: [] });
    // 4 blocks of one page: about 30 small frames per block, so every chunk of 60 below takes
    // 2–3 blocks and the ring wraps every other chunk. The retire timeout is long enough that the
    // sender (this thread) fills blocks before the timer hands over half-empty ones — the test
    // reads only after sending, so it must not need more than the 4 blocks.
    const sock = inNetns(up, () => AfPacketSocket.open({ ifname: 'up0', filter, blockSize: 4096, blockCount: 4, retireMs: 20 }));
    const raw = inNetns(peer, () => new RawSocket('peer0'));
    try {
      const batch = new RxBatch(16); // smaller than a block: blocks are read across several calls
      const seen: number[] = [];
      let id = 0;
      for (let chunk = 0; chunk < 40; chunk++) {
        const last = id + 60;
        for (; id < last; id++) {
          raw.send(
            buildFrame({
              eth: { src: peerMac, dst: upMac },
              ipv4: { src: PEER4, dst: UP4 },
              udp: { sport: 1 + (id % 50), dport: PORT },
              payload: marker(id),
            }),
          );
        }
        const deadline = Date.now() + 5000;
        while (seen.length < id) {
          const n = sock.receive(batch);
          for (let i = 0; i < n; i++) seen.push(markerOf(sock.memory, batch.offset[i]!, batch.length[i]!));
          sock.release();
          if (n === 0) {
            if (Date.now() > deadline) assert.fail(`chunk ${chunk}: ${seen.length} of ${id} frames (${JSON.stringify(sock.stats())})`);
            await sock.pollAsync(20);
          }
        }
      }
      assert.deepEqual(
        seen,
        Array.from({ length: id }, (_, i) => i),
      );
      const st = sock.stats();
      assert.equal(st.drops, 0);
      assert.ok(sock.counters.rxBlocks > 4 * 10, `${sock.counters.rxBlocks} blocks`);
    } finally {
      raw.close();
      sock.close();
    }
  });
});

test('TPACKET_V2 ring with PACKET_VNET_HDR and copies: small frames in slots at once, larger ones whole through the queue, in order, with their virtio_net_hdr', async () => {
  await withLab(async ({ up, peer, upMac, peerMac }) => {
    up.ip('link', 'set', 'up0', 'mtu', '9000');
    peer.ip('link', 'set', 'peer0', 'mtu', '9000');
    const all = cbpf().ret.k(0x40000).assemble();
    // 64 slots of 2 KiB: the ring wraps; one frame in three is larger than a slot.
    const sock = inNetns(up, () =>
      AfPacketSocket.open({
        ifname: 'up0',
        filter: all,
        version: 2,
        frameCount: 64,
        copyLarge: true,
        vnetHdr: true,
        rcvbuf: 4 << 20,
        txFrames: 32,
      }),
    );
    const raw = inNetns(peer, () => new RawSocket('peer0'));
    const copy = new Uint8Array(70_000);
    try {
      const batch = new RxBatch(8);
      const seen: number[] = [];
      const sizes: number[] = [];
      let copies = 0;
      let strays = 0;
      const total = 300;
      const sizeOf = (id: number): number => (id % 3 === 2 ? 3000 + id : 60 + (id % 200));
      for (let id = 0; id < total; id++) {
        raw.send(
          buildFrame({
            eth: { src: peerMac, dst: upMac },
            ipv4: { src: PEER4, dst: UP4 },
            udp: { sport: 7, dport: PORT },
            payload: (() => {
              const p = new Uint8Array(sizeOf(id));
              p.set(marker(id), p.length - 8);
              return p;
            })(),
          }),
        );
        // Read as we go: the ring holds 64 slots.
        for (;;) {
          if (!sock.peek(batch, 0)) {
            if (seen.length > id) break;
            await sock.pollAsync(100);
            continue;
          }
          const off = batch.offset[0]!;
          // The virtio_net_hdr in front of every frame: nothing to do for a complete frame.
          assert.equal(sock.memory[off - 10], 0, 'vnet flags');
          assert.equal(sock.memory[off - 9], 0, 'vnet gso_type');
          if (batch.copied[0]) {
            const n = sock.receiveCopy(copy);
            assert.ok(n > 2048, `copied frame of ${n} bytes`);
            assert.equal(n - 10, batch.wireLength[0], 'the whole frame, behind its vnet header');
            seen.push(markerOf(copy, 10, n - 10));
            sizes.push(n - 10);
            copies++;
          } else if (markerOf(sock.memory, off, batch.length[0]!) < 0) {
            // Not one of ours: the peer's own IPv6 (an MLD report or router solicitation after
            // the MTU change) comes through the accept-all filter now and then.
            strays++;
          } else {
            assert.equal(batch.length[0], batch.wireLength[0]);
            seen.push(markerOf(sock.memory, off, batch.length[0]!));
            sizes.push(batch.length[0]!);
          }
          sock.skip();
          sock.release();
        }
      }
      assert.deepEqual(
        seen,
        Array.from({ length: total }, (_, i) => i),
      );
      assert.equal(copies, total / 3, 'every large frame came through the queue');
      assert.ok(strays <= 3, `${strays} frames of the peer's own`);
      assert.deepEqual(
        sizes,
        Array.from({ length: total }, (_, i) => sizeOf(i) + 14 + 20 + 8),
      );
      assert.equal(sock.stats().drops, 0);
      // TX through a V2 ring with the header in front: the peer gets the frame alone.
      const slot = sock.txAcquire();
      const f = buildFrame({
        eth: { src: upMac, dst: peerMac },
        ipv4: { src: UP4, dst: PEER4 },
        udp: { sport: 9, dport: 9 },
        payload: marker(4242),
      });
      sock.txData[slot]!.fill(0, 0, 10);
      sock.txData[slot]!.set(f, 10);
      sock.txCommit(slot, f.length + 10);
      sock.txFlush();
      const got = await raw.receive((fr) => markerOf(fr) === 4242, 3000);
      assert.equal(got?.length, f.length, 'the frame alone, without the header');
      // TX slots sized from the MTU (9000): 16 KiB, and 128 of them (the 32 asked for at 2 KiB
      // would be less than two batches); a frame of the whole MTU goes out in one.
      assert.equal(sock.mtu, 9000);
      assert.equal(sock.txSlot, 16384);
      assert.equal(sock.txFrames, 128);
      assert.equal(sock.txData[0]!.length, 16384 - 32);
      const jumbo = buildFrame({
        eth: { src: upMac, dst: peerMac },
        ipv4: { src: UP4, dst: PEER4 },
        udp: { sport: 9, dport: 9 },
        payload: (() => {
          const p = new Uint8Array(9000 - 28);
          p.set(marker(4343), p.length - 8);
          return p;
        })(),
      });
      assert.equal(jumbo.length, 9014);
      for (let i = 0; i < 130; i++) {
        // Round the ring once: each slot's header sits at its own 16 KiB offset.
        const s = sock.txAcquire();
        assert.ok(s >= 0, `slot for frame ${i}`);
        sock.txData[s]!.fill(0, 0, 10);
        sock.txData[s]!.set(jumbo, 10);
        sock.txCommit(s, jumbo.length + 10);
        sock.txFlush();
        const j = await raw.receive((fr) => fr.length === 9014 && markerOf(fr, 0, fr.length) === 4343, 3000);
        assert.ok(j, `jumbo frame ${i} reached the peer`);
      }
      assert.equal(sock.counters.txErrors, 0, String(sock.lastTxErrno));
    } finally {
      raw.close();
      sock.close();
    }
  });
});

test('PACKET_FANOUT: two sockets in one group receive each tunnel frame exactly once', async () => {
  await withLab(async ({ up, peer, upMac, peerMac }) => {
    const filter = compilePinholeFilter({ ports: [PORT], addresses: [] });
    const group = 0x1234;
    const a = inNetns(up, () => AfPacketSocket.open({ ifname: 'up0', filter, fanoutGroup: group, blockSize: 1 << 16, blockCount: 8 }));
    const b = inNetns(up, () => AfPacketSocket.open({ ifname: 'up0', filter, fanoutGroup: group, blockSize: 1 << 16, blockCount: 8 }));
    const raw = inNetns(peer, () => new RawSocket('peer0'));
    try {
      const N = 200;
      for (let i = 0; i < N; i++) {
        raw.send(
          buildFrame({
            eth: { src: peerMac, dst: upMac },
            ipv4: { src: PEER4, dst: UP4 },
            udp: { sport: 20000 + i, dport: PORT },
            payload: marker(i),
          }),
        );
      }
      const batch = new RxBatch(64);
      const seenA: number[] = [];
      const seenB: number[] = [];
      const deadline = Date.now() + 5000;
      while (seenA.length + seenB.length < N && Date.now() < deadline) {
        for (const [s, out] of [
          [a, seenA],
          [b, seenB],
        ] as const) {
          const n = s.receive(batch);
          for (let i = 0; i < n; i++) out.push(markerOf(s.memory, batch.offset[i]!, batch.length[i]!));
        }
        if (seenA.length + seenB.length < N && !a.readable() && !b.readable()) await a.pollAsync(5);
      }
      const all = [...seenA, ...seenB].sort((x, y) => x - y);
      assert.deepEqual(
        all,
        Array.from({ length: N }, (_, i) => i),
        'each frame exactly once',
      );
      assert.ok(seenA.length > 0 && seenB.length > 0, `hash fanout spread flows: ${seenA.length} / ${seenB.length}`);
    } finally {
      raw.close();
      a.close();
      b.close();
    }
  });
});

/** ICMP(v6) port unreachable for UDP dport `port` in a frame seen on the peer. */
function unreachableFor(f: Uint8Array): { family: 4 | 6; port: number } | undefined {
  const type = (f[12]! << 8) | f[13]!;
  if (type === 0x0800 && f[23] === 1 && f[34] === 3 && f[35] === 3) {
    const inner = 42; // 14 + 20 + 8: the quoted IPv4 header
    const ihl = (f[inner]! & 0xf) * 4;
    return { family: 4, port: (f[inner + ihl + 2]! << 8) | f[inner + ihl + 3]! };
  }
  if (type === 0x86dd && f[20] === 58 && f[54] === 1 && f[55] === 4) {
    const inner = 62; // 14 + 40 + 8: the quoted IPv6 header (no extension headers in our probes)
    return { family: 6, port: (f[inner + 42]! << 8) | f[inner + 43]! };
  }
  return undefined;
}

test('port guard: no ICMP port unreachable for tunnel ports while the uplink is open', async () => {
  await withLab(async ({ up, peer, upMac, peerMac }) => {
    up.exec('sysctl', ['-qw', 'net.ipv4.icmp_ratelimit=0']);
    up.exec('sysctl', ['-qw', 'net.ipv6.icmp.ratelimit=0']);
    const CONTROL = PORT + 1; // unguarded: the kernel must answer it, which proves the probe works
    const filter = compilePinholeFilter({ ports: [PORT, CONTROL], addresses: [] });
    const sock = inNetns(up, () => AfPacketSocket.open({ ifname: 'up0', filter, blockSize: 1 << 16, blockCount: 4 }));
    const raw = inNetns(peer, () => new RawSocket('peer0'));
    // Without the guard the host answers the tunnel port itself: the problem being solved.
    const eth0 = { src: peerMac, dst: upMac };
    raw.send(buildFrame({ eth: eth0, ipv4: { src: PEER4, dst: UP4 }, udp: { sport: 30000, dport: PORT }, payload: marker(9) }));
    const before = await raw.receive((f) => unreachableFor(f)?.port === PORT, 5000);
    assert.ok(before, 'without the guard the kernel sends ICMP port unreachable');
    const guard = inNetns(up, () => openPortGuard({ ports: [PORT] }));
    try {
      assert.deepEqual(guard.guarded, [
        { family: 4, port: PORT },
        { family: 6, port: PORT },
      ]);
      assert.deepEqual(guard.busy, []);
      const eth = { src: peerMac, dst: upMac };
      for (const family of [4, 6] as const) {
        const l3 = family === 4 ? { ipv4: { src: PEER4, dst: UP4 } } : { ipv6: { src: PEER6, dst: UP6 } };
        raw.send(buildFrame({ eth, ...l3, udp: { sport: 30000, dport: PORT }, payload: marker(1) }));
        raw.send(buildFrame({ eth, ...l3, udp: { sport: 30000, dport: CONTROL }, payload: marker(2) }));
        // ICMP errors leave in order: once the control port's arrives, a guarded one would have.
        const answers: number[] = [];
        const got = await raw.receive((f) => {
          const u = unreachableFor(f);
          if (u && u.family === family) answers.push(u.port);
          return u?.family === family && u.port === CONTROL;
        }, 5000);
        assert.ok(got, `IPv${family}: the kernel answered the unguarded port`);
        assert.deepEqual(answers, [CONTROL], `IPv${family}: no ICMP port unreachable for the guarded port`);
      }
      // The uplink socket received all five datagrams (the unguarded probe and four guarded).
      const batch = new RxBatch(16);
      let n = 0;
      const deadline = Date.now() + 3000;
      while (n < 5 && Date.now() < deadline) {
        n += sock.receive(batch);
        if (n < 5) await sock.pollAsync(50);
      }
      assert.equal(n, 5);
    } finally {
      raw.close();
      guard.close();
      sock.close();
    }
  });
});

test('the kernel rejects nothing of a large pinhole filter (many ports, addresses)', () => {
  const sys = getSys();
  const ports = Array.from({ length: 400 }, (_, i) => 10000 + i);
  const filter = compilePinholeFilter({ ports, addresses: ['198.18.0.1', '198.18.0.9', '2001:db8::1', '2001:db8::9'] });
  assert.ok(filter.length > 800);
  const fd = sys.socket(17, 3, 0);
  try {
    attachFilter(fd, filter, { lock: true });
  } finally {
    sys.close(fd);
  }
});
