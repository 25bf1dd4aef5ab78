/**
 * `pinhole uplink` counters as an operator reads them, live (`stats` lines) and final: a known
 * number of tunnel frames sent while the process is stopped (SIGSTOP), so its rings overflow,
 * must come out as received + kernelDrops exactly — each drop counted once (issue 7: AF_XDP
 * counted every empty-fill-ring drop twice) — already in the live lines; and the `--to`
 * cross-connect's txPackets/txBytes/txTooBig in both modes, with frames above an AF_PACKET TX
 * slot (2,000 bytes) and above an AF_XDP UMEM frame (~3.8 KB).
 *
 *   [gen] g0 ──veth── up0 [mid] out0 ──veth── s0 [sink]     (no addresses, IPv6 off)
 */
import { afterEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { requireRoot } from '../helpers/require.ts';
import { threeNodes } from '../helpers/lab.ts';
import { killLeftoverPinholes, startPinhole, type StoppedLine } from '../helpers/pinhole-proc.ts';
import { inNetns, PacketSocket } from '../helpers/packet-socket.ts';
import { buildFrame } from '../../src/packet/build.ts';

requireRoot();
afterEach(() => killLeftoverPinholes());

/** The counters of a stats/stopped line this file reads (StoppedLine has the common ones). */
type Counters = StoppedLine & { txBytes: number; txTooBig: number };

function tunnelFrame(i: number, payload: number): Uint8Array {
  return buildFrame({
    eth: { dst: '02:00:00:00:00:aa', src: '02:00:00:00:00:bb' },
    ipv4: { src: '198.18.1.2', dst: '198.18.1.1' },
    udp: { sport: 40000 + (i & 0xfff), dport: 4789 },
    payload: new Uint8Array(payload).fill(i & 0xff),
  });
}

/** Sends `count` frames from g0, yielding to the event loop every 100 (veth delivers in softirq). */
async function inject(inj: PacketSocket, count: number, payload: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    inj.send(tunnelFrame(i, payload));
    if (i % 100 === 99) await new Promise((r) => setImmediate(r));
  }
}

const DROP_CASES = [
  // AF_XDP: a 64-entry RX and fill ring; stopped, it takes at most 64 frames.
  { mode: 'afxdp', args: ['--ring-size', '64'], sent: 1000, payload: 64 },
  // AF_PACKET: a 4 MiB TPACKET_V3 ring holds ~2,700 frames of 1,442 bytes.
  { mode: 'afpacket', args: [], sent: 6000, payload: 1400 },
] as const;

for (const c of DROP_CASES) {
  test(`${c.mode}: ${c.sent} tunnel frames into a stopped uplink: received + kernelDrops == sent, live and final`, async () => {
    const nodes = threeNodes(`kd-${c.mode}`);
    try {
      const p = startPinhole(nodes.mid.name, ['--iface', 'up0', '--port', '4789', '--mode', c.mode, ...c.args, '--stats-interval', '50']);
      assert.equal((await p.ready).mode, c.mode);
      const inj = await inNetns(nodes.gen, () => new PacketSocket('g0'));
      try {
        p.child.kill('SIGSTOP');
        try {
          await inject(inj, c.sent, c.payload);
        } finally {
          p.child.kill('SIGCONT');
        }
        // kernelDrops is refreshed about once a second: wait for a live line that has caught up
        // with every frame (a double count overshoots and fails the equality below).
        const live = (await p.statsUntil((s) => s.rxPackets + s.kernelDrops >= c.sent, 15_000)) as Counters;
        assert.ok(live.kernelDrops > 0, `the ring overflowed: ${JSON.stringify(live)}`);
        assert.equal(
          live.rxPackets + live.kernelDrops,
          c.sent,
          `live: received + kernelDrops == sent (${live.rxPackets} + ${live.kernelDrops})`,
        );
        if (c.mode === 'afxdp') assert.equal(live.pinhole!.tunnel, c.sent, 'the program redirected every frame');
        const fin = (await p.stop()) as Counters;
        assert.equal(fin.rxPackets + fin.kernelDrops, c.sent, `final: ${fin.rxPackets} + ${fin.kernelDrops}`);
        assert.equal(fin.kernelDrops, live.kernelDrops, 'no drop after the live line');
      } finally {
        inj.close();
      }
    } finally {
      nodes.close();
    }
  });
}

// 5 frames of each size: 142 bytes (fits everywhere), 3,042, 5,042. AF_PACKET: the uplink at MTU
// 9000 takes all three, out0 at 1500 only the first (the others are above its MTU + 14: counted
// too-big, never handed to the kernel). AF_XDP serves MTUs up to 3818 (a 4 KiB UMEM frame): the
// uplink at 3700 takes the first two, out0 at 1500 again only the first (the kernel does not check
// what an AF_XDP socket sends: the veth would drop the larger ones without a trace).
const SMALL = 142;
const TO_CASES = [
  {
    mode: 'afpacket',
    mtu: { g0: 9000, up0: 9000, out0: 1500, s0: 1500 },
    payloads: [100, 3000, 5000],
    rxPackets: 15,
    kernelDrops: 0,
    txPackets: 5,
    txBytes: 5 * SMALL,
    txTooBig: 10,
  },
  {
    mode: 'afxdp',
    mtu: { g0: 3700, up0: 3700, out0: 1500, s0: 1500 },
    payloads: [100, 3000],
    rxPackets: 10,
    kernelDrops: 0,
    txPackets: 5,
    txBytes: 5 * SMALL,
    txTooBig: 5,
  },
] as const;

for (const c of TO_CASES) {
  test(`${c.mode} --to: txPackets, txBytes and txTooBig on the live stats line; too-big frames are not txDropped`, async () => {
    const nodes = threeNodes(`tb-${c.mode}`);
    try {
      for (const [ns, dev] of [
        [nodes.gen, 'g0'],
        [nodes.mid, 'up0'],
        [nodes.mid, 'out0'],
        [nodes.sink, 's0'],
      ] as const)
        ns.ip('link', 'set', 'dev', dev, 'mtu', String(c.mtu[dev]));
      const p = startPinhole(nodes.mid.name, [
        '--iface',
        'up0',
        '--port',
        '4789',
        '--mode',
        c.mode,
        '--to',
        'out0',
        '--stats-interval',
        '50',
      ]);
      assert.equal((await p.ready).mode, c.mode);
      const inj = await inNetns(nodes.gen, () => new PacketSocket('g0'));
      try {
        for (const size of c.payloads) await inject(inj, 5, size);
        const seen = c.rxPackets + c.kernelDrops;
        const live = (await p.statsUntil((s) => s.rxPackets + s.kernelDrops >= seen, 15_000)) as Counters;
        const pick = (s: Counters): Record<string, number> => ({
          rxPackets: s.rxPackets,
          kernelDrops: s.kernelDrops,
          txPackets: s.txPackets,
          txBytes: s.txBytes,
          txTooBig: s.txTooBig,
          txDropped: s.txDropped,
        });
        const want = {
          rxPackets: c.rxPackets,
          kernelDrops: c.kernelDrops,
          txPackets: c.txPackets,
          txBytes: c.txBytes,
          txTooBig: c.txTooBig,
          txDropped: 0,
        };
        assert.deepEqual(pick(live), want, 'live stats line');
        const fin = (await p.stop()) as Counters;
        assert.deepEqual(pick(fin), want, 'final line');
      } finally {
        inj.close();
      }
    } finally {
      nodes.close();
    }
  });
}
