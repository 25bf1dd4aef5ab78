/**
 * VXLAN tunnels end to end (lab tier): pods on node A reach pods on node B through `pinhole run`
 * on node A, with node B running the Linux kernel's own vxlan device (the interop reference) or
 * pinhole too. Real kernels on both sides, real ping and iperf3, counters checked against what was
 * sent, and stop leaving nothing attached.
 *
 *   [pod A] ── wl0 [node A: pinhole run] up0 ──(underlay, or via a router)── up0 [node B] ── [pod B]
 *
 * ARP and IPv6 neighbour discovery between the pods cross the tunnel like any other frame: every
 * ping below starts with an empty neighbour cache in the pods. The rest of the matrix (pinhole ↔
 * pinhole per uplink mode, exact counters against the traffic, more garbage kinds, tunnelAddress,
 * next hops through routers that change) is in vxlan-matrix.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { requireRoot } from '../helpers/require.ts';
import {
  configFor,
  delta,
  ifStats,
  iperf,
  noXdp,
  ping,
  quietPods,
  remoteOf,
  settled,
  startRun,
  withLab,
  type RunLine,
} from '../helpers/vxlan-lab.ts';

import type { Lab } from '../../src/control/lab/topology.ts';

requireRoot();

// Pods here have TX checksum offload off (the lab's default), as local.mode afxdp needs.
const CASES: { underlay: 4 | 6; mode: 'auto' | 'afxdp' | 'afpacket'; local?: 'afxdp'; workloadQueues: number; driver: string }[] = [
  { underlay: 4, mode: 'auto', workloadQueues: 2, driver: 'afpacket' },
  { underlay: 6, mode: 'afxdp', local: 'afxdp', workloadQueues: 2, driver: 'afxdp' },
  { underlay: 4, mode: 'afpacket', workloadQueues: 1, driver: 'afpacket' },
  { underlay: 4, mode: 'auto', local: 'afxdp', workloadQueues: 2, driver: 'afxdp' },
  { underlay: 6, mode: 'auto', workloadQueues: 1, driver: 'afpacket' },
  // With the rows above, every underlay × uplink mode: IPv4 over an explicit AF_XDP uplink, IPv6 over AF_PACKET.
  { underlay: 4, mode: 'afxdp', workloadQueues: 1, driver: 'afpacket' },
  { underlay: 6, mode: 'afpacket', workloadQueues: 1, driver: 'afpacket' },
];

for (const c of CASES) {
  test(`pinhole ↔ kernel vxlan, IPv${c.underlay} underlay, --mode ${c.mode}${c.local ? `, local.mode ${c.local}` : ''}: ping (ARP/ND through the tunnel), TCP and UDP pass; counters agree`, async () => {
    await withLab(
      `vx${c.underlay}${c.mode.slice(0, 3)}${c.local ? 'x' : ''}`,
      { underlay: c.underlay, sides: { a: 'pinhole', b: 'kernel' }, workloadQueues: c.workloadQueues },
      async (lab) => {
        const a = lab.a;
        const b = lab.b;
        const p = startRun(a, configFor(a, b, c.mode, [c.underlay], '', c.local));
        const ready = (await p.ready) as unknown as RunLine;
        assert.equal(ready.mode, c.mode === 'afpacket' ? 'afpacket' : 'afxdp');
        assert.equal(ready.workloads[0]!.driver, c.driver);
        if (!c.local) assert.equal(ready.workloads[0]!.reasons[0]!.code, 'WORKLOAD_OFFLOAD');
        const pa = a.workloads[0]!;
        const pb = b.workloads[0]!;
        const r4 = ping(lab, pa.podNs, pb.podAddr4);
        const r6 = ping(lab, pa.podNs, pb.podAddr6);
        assert.equal(r4.received, r4.sent, 'IPv4 overlay ping');
        assert.equal(r6.received, r6.sent, 'IPv6 overlay ping');
        // Host traffic between the nodes, outside the tunnel, still flows.
        assert.equal(ping(lab, a.ns, remoteOf(b, c.underlay), 3).received, 3, 'node-to-node ping');
        const tcp = await iperf(pa.podNs, pb.podNs, pb.podAddr4);
        assert.ok(tcp.bps > 1e6, `TCP through the tunnel: ${tcp.bps} bit/s`);
        // A download: frames from the kernel's vxlan carry complete checksums (the lab's kernel
        // node completes them, as a wire does), and pinhole delivers them to the pod.
        const down = await iperf(pa.podNs, pb.podNs, pb.podAddr4, { reverse: true });
        assert.ok(down.bps > 1e6, `TCP download through the tunnel: ${down.bps} bit/s`);
        const udp = await iperf(pa.podNs, pb.podNs, pb.podAddr4, { udp: true });
        assert.ok(udp.bps > 1e6, `UDP through the tunnel: ${udp.bps} bit/s`);
        const fin = (await p.stop()) as unknown as RunLine;
        const conn = fin.connections.c0!;
        // Every echo request went in and every reply came out through pinhole.
        assert.ok(conn.encap_frames! >= 10, `encapsulated ${conn.encap_frames}`);
        assert.ok(conn.decap_frames! >= 10, `decapsulated ${conn.decap_frames}`);
        // Drops first: a counted drop also breaks the equalities below, and this names it.
        assert.deepEqual(fin.drops, {}, 'no drops');
        assert.equal(fin.ports['wl:c0']!.tx_frames, conn.decap_frames, 'decapsulated frames all left through the workload port');
        assert.equal(fin.ports.uplink!.tx_frames, conn.encap_frames, 'encapsulated frames all left through the uplink');
        // Flow queueing in the AF_XDP rings (ports/xsk-core.ts): a TCP stream keeps a backlog in
        // the receive ring of the port it enters by (upload: the workload port; download: the
        // uplink), and a breath takes a bulk flow's first frame ahead when nothing of it waits.
        if (c.driver === 'afxdp') assert.ok(fin.ports['wl:c0']!.rx_sparse_first! > 0, 'frames taken ahead in the workload ring');
        if (c.mode !== 'afpacket') assert.ok(fin.ports.uplink!.rx_sparse_first! > 0, 'frames taken ahead in the uplink ring');
        noXdp(lab, a.ns, a.uplink);
        noXdp(lab, a.ns, pa.iface);
      },
    );
  });
}

for (const peer of ['kernel', 'pinhole'] as const) {
  test(`local.mode afpacket with the pod's TSO and checksum offload on (↔ ${peer}): super-frames split, partial checksums completed, TCP over IPv4 and IPv6 and UDP pass, nothing dropped`, async () => {
    await withLab(`gso${peer.slice(0, 1)}`, { sides: { a: 'pinhole', b: peer }, podChecksumOffload: true }, async (lab) => {
      const { a, b } = lab;
      const pa = startRun(a, configFor(a, b, 'auto', [4], '', 'afpacket'));
      const pb = peer === 'pinhole' ? startRun(b, configFor(b, a, 'auto', [4], '', 'afpacket')) : undefined;
      const ready = (await pa.ready) as unknown as RunLine;
      await pb?.ready;
      assert.equal(ready.mode, 'afxdp');
      assert.equal(ready.workloads[0]!.driver, 'afpacket');
      assert.equal(ready.workloads[0]!.reasons[0]!.code, 'WORKLOAD_CONFIGURED');
      const src = a.workloads[0]!;
      const dst = b.workloads[0]!;
      // No program on the workload veth: the pod keeps segmentation and checksum offload.
      noXdp(lab, a.ns, src.iface);
      assert.match(lab.exec(src.podNs, 'ethtool', ['-k', src.podIface]), /tcp-segmentation-offload: on/);
      assert.match(lab.exec(src.podNs, 'ethtool', ['-k', src.podIface]), /tx-checksumming: on/);
      assert.equal(ping(lab, src.podNs, dst.podAddr4).received, 5, 'IPv4 overlay ping');
      assert.equal(ping(lab, src.podNs, dst.podAddr6).received, 5, 'IPv6 overlay ping');
      for (const to of [dst.podAddr4, dst.podAddr6]) {
        const tcp = await iperf(src.podNs, dst.podNs, to);
        assert.ok(tcp.bps > 10e6, `TCP pod A → pod B (${to}): ${tcp.bps} bit/s`);
      }
      const back = await iperf(dst.podNs, src.podNs, src.podAddr4);
      assert.ok(back.bps > 10e6, `TCP pod B → pod A: ${back.bps} bit/s`);
      const udp = await iperf(src.podNs, dst.podNs, dst.podAddr4, { udp: true });
      assert.ok(udp.bps > 1e6, `UDP through the tunnel: ${udp.bps} bit/s`);
      const fin = (await pa.stop()) as unknown as RunLine;
      const finB = pb ? ((await pb.stop()) as unknown as RunLine) : undefined;
      const port = fin.ports['wl:c0']!;
      assert.ok(port.rx_gso_frames! > 0, `super-frames split: ${port.rx_gso_frames}`);
      // As GSO trains (ports/train.ts): towards a pinhole peer (XDP on its uplink turns GSO off
      // on our side of the veth) the kernel cuts them in software before they leave.
      assert.ok(fin.ports.uplink!.tx_gso_trains! > 0, `trains sent: ${fin.ports.uplink!.tx_gso_trains}`);
      assert.equal(fin.ports.uplink!.tx_gso_trains, port.rx_gso_trains, 'every train built was sent');
      if (peer === 'pinhole') {
        // Pinhole B hands pod B plain frames (no checksum offload): pod B checks every segment's
        // TCP checksum, which pinhole A computed.
        assert.equal(tcpMib(lab, dst.podNs, 'TcpInCsumErrors'), 0, 'pod B found no TCP checksum error');
      }
      assert.equal(port.rx_offload_drops, 0, 'no offload drops');
      assert.equal(fin.ports.uplink!.tx_frames, fin.connections.c0!.encap_frames, 'encapsulated frames all left through the uplink');
      assert.deepEqual(fin.drops, {}, 'no drops');
      if (finB) {
        assert.ok(finB.ports['wl:c0']!.rx_gso_frames! > 0, 'node B split the reverse direction');
        assert.deepEqual(finB.drops, {}, 'no drops on node B');
      }
    });
  });
}

/** A counter of the kernel's SNMP MIBs in `ns` (nstat -az: absolute, zeroes included). */
function tcpMib(lab: Lab, ns: string, name: string): number {
  const line = lab
    .exec(ns, 'nstat', ['-az', name])
    .split('\n')
    .find((l) => l.startsWith(name));
  assert.ok(line, `nstat shows ${name}`);
  return Number(line.trim().split(/\s+/)[1]);
}

for (const [uplink, underlay] of [
  ['afxdp', 4],
  ['afxdp', 6],
  ['afpacket', 4],
] as const) {
  test(`pods with TSO → ${uplink} uplink, IPv${underlay} underlay, GSO trains off: the segments' TCP checksums, left pending by the split, are ${uplink === 'afxdp' ? 'computed by the kernel from AF_XDP TX metadata' : 'completed by pinhole'}; the kernel peer's pod counts no checksum error`, async () => {
    await withLab(
      `csum${uplink.slice(2, 4)}${underlay}`,
      { underlay, sides: { a: 'pinhole', b: 'kernel' }, podChecksumOffload: true },
      async (lab) => {
        const { a, b } = lab;
        // Trains off: super-frames leave as separate packets, whose checksums this test is about.
        const p = startRun(a, configFor(a, b, uplink, [underlay], '', 'afpacket'), ['env', 'PINHOLE_GSO_TRAINS=off']);
        const ready = (await p.ready) as unknown as RunLine;
        assert.equal(ready.mode, uplink);
        const src = a.workloads[0]!;
        const dst = b.workloads[0]!;
        const before = tcpMib(lab, dst.podNs, 'TcpInCsumErrors');
        const udpMib = underlay === 6 ? 'Udp6InCsumErrors' : 'UdpInCsumErrors';
        const outerBefore = tcpMib(lab, b.ns, udpMib);
        const tcp = await iperf(src.podNs, dst.podNs, dst.podAddr4);
        assert.ok(tcp.bps > 10e6, `TCP pod A → pod B: ${tcp.bps} bit/s`);
        assert.equal(tcpMib(lab, dst.podNs, 'TcpInCsumErrors') - before, 0, 'no TCP checksum errors at pod B');
        assert.equal(tcpMib(lab, b.ns, udpMib) - outerBefore, 0, `no outer UDP checksum errors at node B (${udpMib})`);
        const fin = (await p.stop()) as unknown as RunLine;
        const wl = fin.ports['wl:c0']!;
        const up = fin.ports.uplink!;
        assert.ok(wl.rx_gso_frames! > 0, `super-frames split: ${wl.rx_gso_frames}`);
        if (uplink === 'afxdp') {
          // Every segment of a split super-frame went out with a checksum request.
          assert.ok(
            up.tx_csum_offload! >= wl.rx_gso_frames! * 2,
            `kernel-computed checksums ${up.tx_csum_offload}, super-frames ${wl.rx_gso_frames}`,
          );
        } else {
          assert.equal(up.tx_csum_offload ?? 0, 0);
        }
        assert.deepEqual(fin.drops, {}, 'no drops');
      },
    );
  });
}

for (const [uplink, underlay] of [
  ['afxdp', 4],
  ['afxdp', 6],
  ['afpacket', 4],
] as const) {
  test(`pods with TSO → ${uplink} uplink, IPv${underlay} underlay: super-frames leave as GSO trains, each one skb that node B's stack cuts into VXLAN packets; every byte arrives, no checksum error at node B or pod B`, async () => {
    await withLab(
      `trn${uplink.slice(2, 4)}${underlay}`,
      { underlay, sides: { a: 'pinhole', b: 'kernel' }, podChecksumOffload: true },
      async (lab) => {
        const { a, b } = lab;
        const p = startRun(a, configFor(a, b, uplink, [underlay], '', 'afpacket'));
        const ready = (await p.ready) as unknown as RunLine;
        assert.equal(ready.mode, uplink);
        const src = a.workloads[0]!;
        const dst = b.workloads[0]!;
        const udpMib = underlay === 6 ? 'Udp6InCsumErrors' : 'UdpInCsumErrors';
        const before = {
          pod: tcpMib(lab, dst.podNs, 'TcpInCsumErrors'),
          outer: tcpMib(lab, b.ns, udpMib),
          up: ifStats(lab, b.ns, [b.uplink])[b.uplink]!,
        };
        const tcp = await iperf(src.podNs, dst.podNs, dst.podAddr4);
        assert.ok(tcp.bps > 10e6, `TCP pod A → pod B: ${tcp.bps} bit/s`);
        const rxSkbs = ifStats(lab, b.ns, [b.uplink])[b.uplink]!.rx - before.up.rx;
        assert.equal(tcpMib(lab, dst.podNs, 'TcpInCsumErrors') - before.pod, 0, 'no TCP checksum errors at pod B');
        assert.equal(tcpMib(lab, b.ns, udpMib) - before.outer, 0, `no outer UDP checksum errors at node B (${udpMib})`);
        const fin = (await p.stop()) as unknown as RunLine;
        const wl = fin.ports['wl:c0']!;
        const up = fin.ports.uplink!;
        assert.ok(wl.rx_gso_trains! > 0, `trains built: ${wl.rx_gso_trains}`);
        assert.equal(up.tx_gso_trains, wl.rx_gso_trains, 'every train built was sent');
        assert.equal(
          up.tx_frames,
          fin.connections.c0!.encap_frames,
          'the uplink sent every encapsulated packet (a train counts its packets)',
        );
        // The veth between the nodes takes a train whole (NETIF_F_GSO_UDP_L4): node B's uplink
        // received far fewer skbs than the packets pinhole encapsulated.
        assert.ok(
          rxSkbs * 2 < fin.connections.c0!.encap_frames!,
          `node B received ${rxSkbs} skbs for ${fin.connections.c0!.encap_frames} packets`,
        );
        assert.equal(up.tx_dropped ?? 0, 0);
        assert.deepEqual(fin.drops, {}, 'no drops');
      },
    );
  });
}

test('pinhole ↔ pinhole: two connections (IPv4 and IPv6 underlay) stay isolated, not one frame leaks; AF_XDP on both nodes', async () => {
  await withLab(
    'pp',
    { sides: { a: 'pinhole', b: 'pinhole' }, connections: [{ vni: 100 }, { vni: 200 }], workloadQueues: 2 },
    async (lab) => {
      const { a, b } = lab;
      const pa = startRun(a, configFor(a, b, 'auto', [4, 6], '', 'afxdp'));
      const pb = startRun(b, configFor(b, a, 'auto', [4, 6], '', 'afxdp'));
      await Promise.all([pa.ready, pb.ready]);
      for (let i = 0; i < 2; i++) {
        const src = a.workloads[i]!;
        const dst = b.workloads[i]!;
        assert.equal(ping(lab, src.podNs, dst.podAddr4).received, 5, `connection ${i} IPv4`);
        assert.equal(ping(lab, src.podNs, dst.podAddr6).received, 5, `connection ${i} IPv6`);
      }
      // From here on the pods send only what the test asks for (no router solicitations, no
      // neighbour probes), and every frame is accounted for: what pinhole moved on each
      // connection is read together with what each pod's eth0 sent and received.
      const [a0, a1] = a.workloads as [(typeof a.workloads)[0], (typeof a.workloads)[0]];
      const [b0, b1] = b.workloads as [(typeof b.workloads)[0], (typeof b.workloads)[0]];
      quietPods(lab, [
        [a0, b0],
        [a1, b1],
      ]);
      const pods = (): Record<string, { rx: number; tx: number }> => ({
        a0: ifStats(lab, a0.podNs, ['eth0']).eth0!,
        a1: ifStats(lab, a1.podNs, ['eth0']).eth0!,
        b0: ifStats(lab, b0.podNs, ['eth0']).eth0!,
        b1: ifStats(lab, b1.podNs, ['eth0']).eth0!,
      });
      const before = await settled([pa, pb], pods);
      // 100 pings on connection 0 only (IPv4 and IPv6 overlay).
      assert.equal(ping(lab, a0.podNs, b0.podAddr4, 50, 0.01).received, 50);
      assert.equal(ping(lab, a0.podNs, b0.podAddr6, 50, 0.01).received, 50);
      const after = await settled([pa, pb], pods);
      const [sa0, sb0] = before.stats as [RunLine, RunLine];
      const [sa1, sb1] = after.stats as [RunLine, RunLine];
      const pod = (k: string): { rx: number; tx: number } => ({
        rx: after.read[k]!.rx - before.read[k]!.rx,
        tx: after.read[k]!.tx - before.read[k]!.tx,
      });
      const conn = (x: RunLine, y: RunLine, c: string): Record<string, number> => delta(x.connections[c], y.connections[c]);
      // Connection 0 carried exactly the pings: 100 requests into the tunnel on A, out on B.
      assert.equal(conn(sa0, sa1, 'c0').encap_frames, 100, 'node A encapsulated the 100 requests');
      assert.equal(conn(sb0, sb1, 'c0').decap_frames, 100, 'node B decapsulated the 100 requests');
      assert.equal(conn(sb0, sb1, 'c0').encap_frames, 100, 'node B encapsulated the 100 replies');
      assert.equal(conn(sa0, sa1, 'c0').decap_frames, 100, 'node A decapsulated the 100 replies');
      assert.deepEqual([pod('a0').tx, pod('b0').rx, pod('b0').tx, pod('a0').rx], [100, 100, 100, 100], 'the pods of connection 0');
      // Connection 1 carried exactly what its own pods sent (nothing: they are quiet): zero frames
      // of connection 0 leaked into it, in either direction, on either node.
      const leakB = conn(sb0, sb1, 'c1').decap_frames! - pod('a1').tx;
      const leakA = conn(sa0, sa1, 'c1').decap_frames! - pod('b1').tx;
      assert.equal(leakB, 0, `node B's connection 1 decapsulated ${leakB} frames its peer pod did not send`);
      assert.equal(leakA, 0, `node A's connection 1 decapsulated ${leakA} frames its peer pod did not send`);
      assert.deepEqual(
        [pod('a1'), pod('b1')],
        [
          { rx: 0, tx: 0 },
          { rx: 0, tx: 0 },
        ],
        "connection 1's pods received nothing",
      );
      for (const [x, y, n] of [
        [sa0, sa1, 'A'],
        [sb0, sb1, 'B'],
      ] as const) {
        assert.deepEqual(
          conn(x, y, 'c1'),
          Object.fromEntries(Object.keys(conn(x, y, 'c1')).map((k) => [k, 0])),
          `node ${n}: connection 1 untouched`,
        );
        assert.equal(delta(x.ports['wl:c1'], y.ports['wl:c1']).tx_frames, 0, `node ${n}: nothing left through connection 1's port`);
      }
      // Pod A0 cannot reach pod B1 (another VNI, another segment).
      assert.equal(ping(lab, a0.podNs, b1.podAddr4, 2, 0.1, undefined, 2).received, 0);
      await Promise.all([pa.stop(), pb.stop()]);
    },
  );
});

test('garbage at the tunnel port: counted drops by reason, never a crash, the connection keeps working', async () => {
  await withLab('gb', { sides: { a: 'pinhole', b: 'kernel' } }, async (lab) => {
    const { a, b } = lab;
    const p = startRun(a, configFor(a, b, 'auto', [4]));
    await p.ready;
    // Datagrams from node B (the connection's remote) to node A's tunnel port.
    const script = `
      const d = require('node:dgram').createSocket('udp4');
      const inner = Buffer.alloc(60, 7);
      const vx = (flags, vni, body) => Buffer.concat([Buffer.from([flags, 0, 0, 0, (vni >> 16) & 255, (vni >> 8) & 255, vni & 255, 0]), body]);
      const sends = [];
      for (let i = 0; i < 20; i++) sends.push(vx(0x08, 999, inner));          // unknown VNI
      for (let i = 0; i < 20; i++) sends.push(vx(0x0c, 100, inner));          // wrong flags
      for (let i = 0; i < 20; i++) sends.push(Buffer.alloc(5 + i % 3, 1));      // shorter than a VXLAN header
      for (let i = 0; i < 20; i++) sends.push(vx(0x08, 100, Buffer.alloc(6)));  // inner frame truncated
      for (let i = 0; i < 200; i++) sends.push(require('node:crypto').randomBytes(1 + (i * 37) % 1400)); // random
      let n = 0;
      const next = () => { if (n === sends.length) return d.close(); d.send(sends[n++], 4789, '${a.underlay4}', next); };
      next();`;
    lab.exec(b.ns, process.execPath, ['-e', script]);
    const s = (await p.statsUntil((x) => {
      const l = x as unknown as RunLine;
      return Object.values(l.drops).reduce((x, y) => x + y, 0) >= 280;
    })) as unknown as RunLine;
    assert.ok((s.drops['decap:unknown-vni'] ?? 0) >= 20, JSON.stringify(s.drops));
    assert.ok((s.drops['decap:vxlan-flags'] ?? 0) >= 20, JSON.stringify(s.drops));
    // An IP packet too short to hold UDP + VXLAN headers is a malformed IP header.
    assert.ok((s.drops['decap:ip-header'] ?? 0) >= 20, JSON.stringify(s.drops));
    assert.ok((s.drops['decap:inner-truncated'] ?? 0) >= 20, JSON.stringify(s.drops));
    const dropped = Object.values(s.drops).reduce((x, y) => x + y, 0);
    assert.ok(dropped >= 280, `every garbage datagram is a counted drop: ${JSON.stringify(s.drops)}`);
    assert.equal(ping(lab, a.workloads[0]!.podNs, b.workloads[0]!.podAddr4).received, 5, 'the connection still works');
    const fin = await p.stop();
    assert.ok(fin);
  });
});
