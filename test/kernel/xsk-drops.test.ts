/**
 * XDP_STATISTICS against the real kernel: a known number of tunnel frames into an AF_XDP socket
 * that cannot take them all (fill ring short of buffers; RX ring full). Every frame the pinhole
 * program redirected is either on the RX ring or counted once in rx_dropped + rx_ring_full —
 * the sum the AF_XDP port reports as kernelDrops (kernelDropsOf). rx_fill_ring_empty_descs is raised for the
 * same drops as rx_dropped (copy mode): adding it too counted each drop twice (issue 7).
 * Two namespaces joined by a veth (one queue); addresses 198.18.0.0/15 only.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { requireRoot } from '../helpers/require.ts';
import { addVeth, withNetns, type Netns } from '../helpers/netns.ts';
import { loadPinhole } from '../../src/kernel/pinhole.ts';
import { attachXdp } from '../../src/kernel/xdp-attach.ts';
import { buildFrame } from '../../src/packet/build.ts';
import { kernelDropsOf, openXsk, type XskStats } from '../../src/uplink/xsk/socket.ts';
import { inNetns, PacketSocket, u32 } from './xsk-netns.ts';

requireRoot();

const A_IP = '198.18.0.1';
const B_IP = '198.18.0.2';
/** Below veth's 256-entry XDP ring, so the veth itself never drops one. */
const SENT = 200;

function macOf(ns: Netns, ifname: string): string {
  return (JSON.parse(ns.ip('-j', 'link', 'show', ifname)) as { address: string }[])[0]!.address;
}

/**
 * Sends SENT tunnel frames at an XSK opened with `frameCount` frames (openXsk puts half of them,
 * at most the fill ring's size, on the fill ring) and a 64-entry RX ring that nobody reads, and
 * returns what the socket holds and what XDP_STATISTICS says once every frame is accounted for.
 */
async function flood(tag: string, frameCount: number, fillSize: number): Promise<{ received: number; tunnel: bigint; stats: XskStats }> {
  return withNetns([`${tag}-a`, `${tag}-b`], async (a, b) => {
    addVeth(a, 'up0', b, 'peer0', { queues: 1 });
    a.ip('addr', 'add', `${A_IP}/24`, 'dev', 'up0');
    b.ip('addr', 'add', `${B_IP}/24`, 'dev', 'peer0');
    b.exec('ethtool', ['-K', 'peer0', 'gro', 'on']);
    const upMac = macOf(a, 'up0');
    const peerMac = macOf(b, 'peer0');
    const ph = loadPinhole({ ports: [4789], addresses: [] });
    try {
      const { att, xsk } = await inNetns(a, async () => ({
        att: attachXdp(ph.program.fd, { iface: 'up0', mode: 'native' }),
        xsk: await openXsk({ iface: 'up0', queue: 0, frameSize: 2048, frameCount, rxSize: 64, txSize: 64, fillSize, compSize: 64 }),
      }));
      const pkt = await inNetns(b, () => new PacketSocket('peer0'));
      try {
        ph.maps.xsks.update(u32(0), u32(xsk.fd));
        for (let i = 0; i < SENT; i++) {
          pkt.send(
            buildFrame({
              eth: { src: peerMac, dst: upMac },
              ipv4: { src: B_IP, dst: A_IP },
              udp: { sport: 40000 + (i & 0xff), dport: 4789 },
              payload: new Uint8Array([0x50, 0x48, i >> 8, i & 0xff]),
            }),
          );
        }
        // veth delivers in NAPI, after the sends: wait until the program saw every frame and
        // the socket accounted for each (received or dropped; never both, never twice).
        const deadline = Date.now() + 5000;
        let received = 0;
        let stats = xsk.stats();
        let tunnel = 0n;
        for (;;) {
          tunnel = ph.counters().byReason.tunnel;
          received = xsk.rxRing.available(xsk.rxRing.size);
          stats = xsk.stats();
          if ((tunnel === BigInt(SENT) && BigInt(received) + kernelDropsOf(stats) >= tunnel) || Date.now() > deadline) break;
          await new Promise((r) => setTimeout(r, 10));
        }
        return { received, tunnel, stats };
      } finally {
        pkt.close();
        xsk.close();
        att.close();
      }
    } finally {
      ph.close();
    }
  });
}

test('fill ring short of buffers: received + rx_dropped == sent; rx_fill_ring_empty_descs counts the same drops again', async () => {
  // 64 frames: 32 on the fill ring, so 32 frames are received and the rest find no buffer.
  const { received, tunnel, stats } = await flood('xskd-fill', 64, 64);
  assert.equal(tunnel, BigInt(SENT), 'the program redirected every frame');
  assert.equal(received, 32, 'as many received as there were fill buffers');
  assert.equal(
    BigInt(received) + kernelDropsOf(stats),
    BigInt(SENT),
    JSON.stringify(stats, (_, v) => (typeof v === 'bigint' ? Number(v) : v)),
  );
  assert.equal(stats.rxDropped, BigInt(SENT - 32));
  assert.equal(stats.rxRingFull, 0n);
  // The double count the port used to make: the same drops, raised in the fill-ring counter too.
  assert.equal(stats.rxFillRingEmptyDescs, stats.rxDropped, 'copy mode raises both for one drop');
});

test('RX ring full: received + rx_ring_full == sent; nothing in rx_dropped', async () => {
  // 256 frames: 128 on the fill ring, more than the 64-entry RX ring holds.
  const { received, tunnel, stats } = await flood('xskd-ring', 256, 128);
  assert.equal(tunnel, BigInt(SENT));
  assert.equal(received, 64, 'the RX ring is full');
  assert.equal(
    BigInt(received) + kernelDropsOf(stats),
    BigInt(SENT),
    JSON.stringify(stats, (_, v) => (typeof v === 'bigint' ? Number(v) : v)),
  );
  assert.equal(stats.rxRingFull, BigInt(SENT - 64));
  assert.equal(stats.rxDropped, 0n);
  assert.equal(stats.rxFillRingEmptyDescs, 0n);
});
