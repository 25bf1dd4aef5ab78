/**
 * AF_XDP uplink core against the real kernel: two fresh namespaces joined by a veth (one
 * queue); the pinhole attached (native) to up0 in A, an XSK bound to queue 0 and registered in
 * the pinhole's xsks map. Frames are injected and captured with AF_PACKET on peer0 in B.
 * Addresses: 198.18.0.0/15 only.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { once } from 'node:events';
import { requireRoot } from '../helpers/require.ts';
import { addVeth, withNetns, type Netns } from '../helpers/netns.ts';
import { loadPinhole } from '../../src/kernel/pinhole.ts';
import { attachXdp } from '../../src/kernel/xdp-attach.ts';
import { getLinkSync } from '../../src/netlink/link.ts';
import { buildFrame } from '../../src/packet/build.ts';
import { openXsk, type XskSocket } from '../../src/uplink/xsk/socket.ts';
import { contains, inNetns, PacketSocket, u32 } from './xsk-netns.ts';

requireRoot();

const A_IP = '198.18.0.1';
const B_IP = '198.18.0.2';

function macOf(ns: Netns, ifname: string): string {
  return (JSON.parse(ns.ip('-j', 'link', 'show', ifname)) as { address: string }[])[0]!.address;
}

function setupPair(a: Netns, b: Netns): { upMac: string; peerMac: string } {
  addVeth(a, 'up0', b, 'peer0', { queues: 1 });
  a.ip('addr', 'add', `${A_IP}/24`, 'dev', 'up0');
  b.ip('addr', 'add', `${B_IP}/24`, 'dev', 'peer0');
  // Native XDP on up0 makes veth deliver to peer0 through NAPI only if peer0 has XDP or GRO.
  b.exec('ethtool', ['-K', 'peer0', 'gro', 'on']);
  return { upMac: macOf(a, 'up0'), peerMac: macOf(b, 'peer0') };
}

/** Takes received frames until one is found or the deadline passes; returns copies. */
async function receiveXsk(xsk: XskSocket, want: number, timeoutMs: number): Promise<Uint8Array[]> {
  const batch = { addr: new Uint32Array(64), len: new Uint32Array(64) };
  const got: Uint8Array[] = [];
  const deadline = Date.now() + timeoutMs;
  while (got.length < want) {
    const left = deadline - Date.now();
    if (left <= 0) break;
    await xsk.waitRx(Math.min(left, 200));
    const n = xsk.rx(batch, 64);
    for (let i = 0; i < n; i++) got.push(xsk.umem.slice(batch.addr[i]!, batch.addr[i]! + batch.len[i]!));
    xsk.releaseRx(batch, n);
    xsk.wakeRx();
  }
  return got;
}

test('tunnel UDP reaches the XSK byte for byte; other UDP and ping reach the kernel; XSK TX reaches the peer', async () => {
  await withNetns(['xsk-a', 'xsk-b'], async (a, b) => {
    const { upMac, peerMac } = setupPair(a, b);
    const ph = loadPinhole({ ports: [4789], addresses: [] });
    try {
      const { att, xsk, kernelUdp } = await inNetns(a, async () => {
        const att = attachXdp(ph.program.fd, { iface: 'up0', mode: 'native' });
        const xsk = await openXsk({
          iface: 'up0',
          queue: 0,
          frameSize: 2048,
          frameCount: 1024,
          rxSize: 512,
          txSize: 512,
          fillSize: 512,
          compSize: 512,
        });
        const kernelUdp = createSocket('udp4');
        kernelUdp.bind(4790, A_IP);
        await once(kernelUdp, 'listening');
        return { att, xsk, kernelUdp };
      });
      try {
        assert.deepEqual({ via: att.via, mode: att.mode }, { via: 'bpf_link', mode: 'native' });
        const xdp = await inNetns(a, () => getLinkSync('up0').xdp);
        assert.equal(xdp?.attached, 'native');
        assert.equal(xdp?.progId, ph.program.info().id);
        assert.equal(xsk.mode, 'copy', 'veth offers copy mode only');
        ph.maps.xsks.update(u32(0), u32(xsk.fd));
        const pkt = await inNetns(b, () => new PacketSocket('peer0'));
        try {
          // 1. Tunnel frame → XSK, exact bytes.
          const tunnel = buildFrame({
            eth: { src: peerMac, dst: upMac },
            ipv4: { src: B_IP, dst: A_IP, id: 0x1234 },
            udp: { sport: 40000, dport: 4789 },
            payload: new TextEncoder().encode('pinhole-xsk-rx-marker-0001'),
          });
          pkt.send(tunnel);
          const rx = await receiveXsk(xsk, 1, 5000);
          assert.equal(rx.length, 1, 'the tunnel frame arrived at the XSK');
          assert.deepEqual(rx[0], tunnel);
          assert.equal(ph.counters().byReason.tunnel, 1n);

          // 2. UDP to another port → kernel socket; ping → kernel answers.
          const other = new TextEncoder().encode('pinhole-kernel-udp');
          const gotUdp = once(kernelUdp, 'message');
          pkt.send(
            buildFrame({
              eth: { src: peerMac, dst: upMac },
              ipv4: { src: B_IP, dst: A_IP },
              udp: { sport: 40001, dport: 4790 },
              payload: other,
            }),
          );
          const [msg] = (await Promise.race([
            gotUdp,
            new Promise((_, rej) => setTimeout(() => rej(new Error('kernel UDP socket got nothing in 5 s')), 5000).unref()),
          ])) as [Buffer];
          assert.deepEqual(new Uint8Array(msg), other);
          b.exec('ping', ['-c', '1', '-W', '5', A_IP]);
          const c = ph.counters();
          assert.equal(c.byReason.tunnel, 1n, 'nothing else was redirected');
          assert.ok(c.byReason['udp-port'] >= 1n);
          assert.ok(c.byReason.icmp >= 1n, 'the echo request went to the kernel');
          assert.ok(c.byReason.arp >= 1n, 'ARP went to the kernel');
          assert.equal((await receiveXsk(xsk, 1, 50)).length, 0, 'the XSK got no kernel traffic');

          // 3. XSK TX → peer0.
          const out = buildFrame({
            eth: { src: upMac, dst: peerMac },
            ipv4: { src: A_IP, dst: B_IP },
            udp: { sport: 4789, dport: 40000 },
            payload: new TextEncoder().encode('pinhole-xsk-tx-marker-0002'),
          });
          const batch = { addr: new Uint32Array(4), len: new Uint32Array(4) };
          assert.equal(xsk.allocTx(batch, 1), 1);
          xsk.umem.set(out, batch.addr[0]!);
          batch.len[0] = out.length;
          assert.equal(xsk.tx(batch, 1), 1);
          xsk.kick();
          const seen = await pkt.receive((f) => contains(f, out.subarray(out.length - 26)), 5000);
          assert.deepEqual(seen, out);
          let done = 0;
          for (let i = 0; i < 100 && done === 0; i++) {
            done = xsk.completions();
            if (done === 0) await new Promise((r) => setImmediate(r));
          }
          assert.equal(done, 1, 'the sent frame came back on the completion ring');
          const s = xsk.stats();
          assert.equal(s.rxDropped, 0n);
          assert.equal(s.txInvalidDescs, 0n);
        } finally {
          pkt.close();
        }
      } finally {
        kernelUdp.close();
        xsk.close();
        att.close();
      }
      assert.equal(await inNetns(a, () => getLinkSync('up0').xdp?.attached), 'none', 'closing the bpf_link detached the program');
    } finally {
      ph.close();
    }
  });
});

test('a second XSK on the same queue fails with ERR_XSK_BUSY; after close the queue is free again', async () => {
  await withNetns(['xsk-busy-a', 'xsk-busy-b'], async (a, b) => {
    addVeth(a, 'up0', b, 'peer0', { queues: 1 });
    await inNetns(a, async () => {
      const first = await openXsk({ iface: 'up0', queue: 0, frameCount: 64, rxSize: 64, txSize: 64, fillSize: 64, compSize: 64 });
      try {
        await assert.rejects(
          openXsk({
            iface: 'up0',
            queue: 0,
            frameCount: 64,
            rxSize: 64,
            txSize: 64,
            fillSize: 64,
            compSize: 64,
            busyRetries: 2,
            busyDelayMs: 5,
          }),
          (e: { code?: string }) => e.code === 'ERR_XSK_BUSY',
        );
        await assert.rejects(openXsk({ iface: 'up0', queue: 1, frameCount: 64 }), (e: { code?: string }) => e.code === 'ERR_XSK_BIND');
      } finally {
        first.close();
      }
      // Teardown is asynchronous: the retry with backoff absorbs a transient EBUSY.
      const again = await openXsk({ iface: 'up0', queue: 0, frameCount: 64, rxSize: 64, txSize: 64, fillSize: 64, compSize: 64 });
      again.close();
    });
  });
});

test('rings wrap around: 3200 frames each way through 64-entry rings, in order, none lost, frames recycled', async () => {
  await withNetns(['xsk-wrap-a', 'xsk-wrap-b'], async (a, b) => {
    const { upMac, peerMac } = setupPair(a, b);
    const ph = loadPinhole({ ports: [4789], addresses: [] });
    try {
      const { att, xsk } = await inNetns(a, async () => ({
        att: attachXdp(ph.program.fd, { iface: 'up0', mode: 'native' }),
        xsk: await openXsk({
          iface: 'up0',
          queue: 0,
          frameSize: 2048,
          frameCount: 256,
          rxSize: 64,
          txSize: 64,
          fillSize: 64,
          compSize: 64,
          headroom: 64,
        }),
      }));
      const pkt = await inNetns(b, () => new PacketSocket('peer0'));
      try {
        ph.maps.xsks.update(u32(0), u32(xsk.fd));
        assert.equal(xsk.txOffset, 256 + 64);
        const frame = (seq: number, toPeer: boolean) =>
          buildFrame({
            eth: toPeer ? { src: upMac, dst: peerMac } : { src: peerMac, dst: upMac },
            ipv4: toPeer ? { src: A_IP, dst: B_IP } : { src: B_IP, dst: A_IP },
            udp: toPeer ? { sport: 4789, dport: 40000 } : { sport: 40000, dport: 4789 },
            payload: new Uint8Array([0x50, 0x48, seq >> 8, seq & 0xff]),
          });
        const seqOf = (f: Uint8Array) => (f[f.length - 2]! << 8) | f[f.length - 1]!;
        const upMacBytes = Buffer.from(upMac.replaceAll(':', ''), 'hex');
        const fromUp = (f: Uint8Array) => f.length >= 46 && Buffer.from(f.subarray(6, 12)).equals(upMacBytes);
        const ROUNDS = 100;
        const BATCH = 32;
        const batch = { addr: new Float64Array(BATCH), len: new Uint32Array(BATCH) };
        let next = 0;
        // RX: 32 frames in, 32 frames out, 100 times.
        for (let r = 0; r < ROUNDS; r++) {
          for (let i = 0; i < BATCH; i++) pkt.send(frame(r * BATCH + i, false));
          let got = 0;
          const deadline = Date.now() + 5000;
          while (got < BATCH && Date.now() < deadline) {
            const n = xsk.rx(batch, BATCH - got);
            for (let i = 0; i < n; i++) {
              const f = xsk.umem.subarray(batch.addr[i]!, batch.addr[i]! + batch.len[i]!);
              assert.equal(batch.addr[i]! % 2048, 256 + 64, 'packet starts after XDP_PACKET_HEADROOM + headroom');
              assert.equal(seqOf(f), next++, 'in order');
            }
            xsk.releaseRx(batch, n);
            got += n;
            if (n === 0) {
              xsk.wakeRx();
              await xsk.waitRx(100);
            }
          }
          assert.equal(got, BATCH, `round ${r}`);
        }
        assert.equal(ph.counters().byReason.tunnel, BigInt(ROUNDS * BATCH));
        // TX: 32 frames out, captured at the peer, completions reaped, 100 times.
        let seen = 0;
        for (let r = 0; r < ROUNDS; r++) {
          xsk.completions();
          const n = xsk.allocTx(batch, BATCH);
          assert.equal(n, BATCH, `free frames in round ${r}`);
          for (let i = 0; i < n; i++) {
            const f = frame(r * BATCH + i, true);
            xsk.umem.set(f, batch.addr[i]!);
            batch.len[i] = f.length;
          }
          assert.equal(xsk.tx(batch, n), n);
          xsk.kick();
          for (let i = 0; i < n; i++) {
            const f = await pkt.receive((x) => fromUp(x) && x[x.length - 4] === 0x50 && x[x.length - 3] === 0x48, 5000);
            assert.ok(f, `round ${r} frame ${i} arrived`);
            assert.equal(seqOf(f), seen++);
          }
        }
        // Every frame is accounted for: free, or waiting in the fill ring (none leaked).
        for (let i = 0; i < 100 && xsk.freeFrames + xsk.fillRing.pending() < 256; i++) {
          xsk.completions();
          await new Promise((res) => setImmediate(res));
        }
        assert.equal(xsk.freeFrames + xsk.fillRing.pending(), 256);
        const s = xsk.stats();
        assert.deepEqual([s.rxDropped, s.rxInvalidDescs, s.txInvalidDescs], [0n, 0n, 0n]);
      } finally {
        pkt.close();
        xsk.close();
        att.close();
      }
    } finally {
      ph.close();
    }
  });
});
