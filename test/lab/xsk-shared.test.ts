/**
 * The shared UMEM for real: with PINHOLE_XSK_UMEM=shared, `pinhole uplink --mode afxdp --to out0`
 * binds the worker's two AF_XDP sockets (up0 and out0, two devices) to one UMEM with
 * XDP_SHARED_UMEM, so every frame leaves by descriptor — `txCopies` 0 — and arrives byte for byte.
 * By default a worker sends by descriptor only in zero-copy mode (veth is copy mode: the sockets
 * still share one UMEM but frames are copied between them, ports/xsk-shared.ts says why);
 * PINHOLE_XSK_UMEM=own gives each socket its own UMEM. Both copy each frame once. Frames of every size from 60
 * to 200 bytes, then sizes up to 1514, so the descriptors' lengths and offsets inside their chunks vary.
 *
 *   [gen] g0 ──veth── up0 [mid: pinhole uplink --to out0] out0 ──veth── s0 [sink]
 *
 * And VXLAN with `local.mode: afxdp` against the kernel's vxlan: each worker's uplink and
 * workload sockets share a UMEM, so decapsulated frames reach the pod by descriptor (the inner
 * frame inside the received chunk) and encapsulated ones leave by descriptor (outer headers
 * written into the chunk's headroom); only frames that waited for the next hop are copied.
 */
import { afterEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { requireRoot } from '../helpers/require.ts';
import { threeNodes } from '../helpers/lab.ts';
import { killLeftoverPinholes, startPinhole } from '../helpers/pinhole-proc.ts';
import { inNetns, PacketSocket } from '../kernel/xsk-netns.ts';
import { buildFrame } from '../../src/packet/build.ts';
import { configFor, iperf, ping, startRun, statusOf, withLab, type RunLine } from '../helpers/vxlan-lab.ts';

requireRoot();
afterEach(() => killLeftoverPinholes());

const FRAMES = 600;
const BATCH = 50;

/**
 * Frame i: its own UDP source port and payload, 60..1514 bytes on the wire: every size from 60 to
 * 200 first (small frames are copied in 64-byte word blocks, ports/xsk-shared.ts SMALL_COPY: each
 * block boundary and the limit), then sizes spread to 1514.
 */
function frameOf(i: number): Uint8Array {
  const size = i <= 140 ? 60 + i : 60 + ((i * 97) % 1455);
  const payload = new Uint8Array(size - 14 - 20 - 8);
  for (let k = 0; k < payload.length; k++) payload[k] = (i * 31 + k) & 0xff;
  return buildFrame({
    eth: { dst: '02:00:00:00:00:aa', src: '02:00:00:00:00:bb' },
    ipv4: { src: '198.18.1.2', dst: '198.18.1.1' },
    udp: { sport: 20000 + i, dport: 4789 },
    payload,
  });
}

const TITLES = {
  shared: 'one shared UMEM (PINHOLE_XSK_UMEM=shared, as in zero-copy mode): frames leave by descriptor (no copy)',
  default: 'the default in copy mode (veth): one shared UMEM, frames copied between the sockets; one copy per frame',
  own: 'a UMEM per socket (PINHOLE_XSK_UMEM=own): one copy per frame',
} as const;
const DETAILS = {
  shared: /, shared UMEM(?!, copy mode)/,
  default: /shared UMEM, copy mode: frames between ports are copied/,
  own: /own UMEM \(PINHOLE_XSK_UMEM=own\)/,
} as const;

for (const umem of ['shared', 'default', 'own'] as const) {
  test(`--to over ${TITLES[umem]}, byte for byte`, async () => {
    const nodes = threeNodes(`xsh-${umem.slice(0, 3)}`);
    const { gen, mid, sink } = nodes;
    try {
      const wrap = umem === 'default' ? [] : ['env', `PINHOLE_XSK_UMEM=${umem}`];
      const p = startPinhole(mid.name, ['--iface', 'up0', '--port', '4789', '--mode', 'afxdp', '--to', 'out0'], 20_000, 'uplink', wrap);
      const ready = await p.ready;
      assert.equal(ready.mode, 'afxdp');
      assert.match(String(ready.detail), DETAILS[umem]);
      const cap = await inNetns(sink, () => new PacketSocket('s0'));
      const inj = await inNetns(gen, () => new PacketSocket('g0'));
      try {
        for (let b = 0; b < FRAMES; b += BATCH) {
          const batch = Array.from({ length: BATCH }, (_, k) => frameOf(b + k));
          for (const f of batch) inj.send(f);
          for (const f of batch) {
            const got = await cap.receive((g) => g.length === f.length && g[34] === f[34] && g[35] === f[35], 3000);
            assert.ok(got, `frame with sport ${(f[34]! << 8) | f[35]!} (${f.length} bytes) arrived`);
            assert.deepEqual(got, f, 'unchanged');
          }
        }
        const fin = (await p.stop()) as unknown as Record<string, number>;
        assert.equal(fin.rxPackets, FRAMES);
        assert.equal(fin.txPackets, FRAMES);
        assert.equal(fin.txDropped, 0);
        assert.equal(fin.txCopies, umem === 'shared' ? 0 : FRAMES, 'frames copied on the way');
      } finally {
        cap.close();
        inj.close();
      }
    } finally {
      nodes.close();
    }
  });
}

test('VXLAN, local.mode afxdp, PINHOLE_XSK_UMEM=shared: uplink and workload sockets share a UMEM; ping and TCP pass with no copy towards the pod', async () => {
  await withLab('xshv', { underlay: 4, sides: { a: 'pinhole', b: 'kernel' }, workloadQueues: 2 }, async (lab) => {
    const { a, b } = lab;
    const p = startRun(a, configFor(a, b, 'afxdp', [4], '', 'afxdp'), ['env', 'PINHOLE_XSK_UMEM=shared']);
    const ready = (await p.ready) as unknown as RunLine;
    assert.equal(ready.workloads[0]!.driver, 'afxdp');
    assert.match((await statusOf(a)).uplink!.detail, /shared UMEM/);
    const pa = a.workloads[0]!;
    const pb = b.workloads[0]!;
    assert.equal(ping(lab, pa.podNs, pb.podAddr4, 10).received, 10, 'overlay ping');
    // Full size: 1402 bytes of ICMP payload is a 1430-byte packet, the lab pods' MTU (uplink − 70).
    assert.equal(ping(lab, pa.podNs, pb.podAddr4, 10, 0.05, 1402).received, 10, 'full-size overlay ping');
    assert.ok((await iperf(pa.podNs, pb.podNs, pb.podAddr4)).bps > 1e6, 'TCP through the tunnel');
    const fin = (await p.stop()) as unknown as RunLine & { nexthop: Record<string, number> };
    const conn = fin.connections.c0!;
    assert.ok(conn.decap_frames! > 100 && conn.encap_frames! > 100, JSON.stringify(conn));
    assert.equal(fin.ports['wl:c0']!.tx_frames, conn.decap_frames);
    assert.equal(fin.ports['wl:c0']!.tx_copies, 0, 'decapsulated frames reached the pod by descriptor');
    assert.equal(fin.ports.uplink!.tx_frames, conn.encap_frames);
    assert.ok(
      fin.ports.uplink!.tx_copies! <= fin.nexthop.flushed!,
      `uplink copies ${fin.ports.uplink!.tx_copies} ≤ frames that waited for the next hop ${fin.nexthop.flushed}`,
    );
    assert.equal(fin.ports.uplink!.pool_empty, 0);
    assert.deepEqual(fin.drops, {}, 'no drops');
  });
});
