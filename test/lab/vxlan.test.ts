/**
 * VXLAN tunnels end to end (lab tier): pods on node A reach pods on node B through `pinhole run`
 * on node A, with node B running the Linux kernel's own vxlan device (the interop reference) or
 * pinhole too. Real kernels on both sides, real ping and iperf3, counters checked against what was
 * sent, and stop leaving nothing attached.
 *
 *   [pod A] ── wl0 [node A: pinhole run] up0 ──(underlay, or via a router)── up0 [node B] ── [pod B]
 *
 * ARP and IPv6 neighbour discovery between the pods cross the tunnel like any other frame: every
 * ping below starts with an empty neighbour cache in the pods.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requireRoot } from '../helpers/require.ts';
import { killLeftoverPinholes, startPinhole, type PinholeProc } from '../helpers/pinhole-proc.ts';
import { buildLab, type Lab, type LabOptions, type LabNode } from '../../src/control/lab/topology.ts';

requireRoot();

let counter = 0;
const dir = mkdtempSync(join(tmpdir(), 'ph-vxlan-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));

interface RunLine {
  event: string;
  mode: string;
  workloads: { connection: string; driver: string; reasons: { code: string }[] }[];
  connections: Record<string, Record<string, number>>;
  drops: Record<string, number>;
  ports: Record<string, Record<string, number>>;
}

async function withLab(tag: string, o: Omit<LabOptions, 'prefix'>, fn: (lab: Lab) => Promise<void>): Promise<void> {
  const lab = buildLab({ prefix: `ph-${process.pid}-${++counter}-${tag}`, ...o });
  try {
    await fn(lab);
  } finally {
    killLeftoverPinholes();
    lab.close();
  }
}

function remoteOf(node: LabNode, family: 4 | 6): string {
  return family === 4 ? node.underlay4 : node.underlay6;
}

/** Writes a config for `node` with one connection per workload, towards `peer`. */
function configFor(node: LabNode, peer: LabNode, mode: string, families: (4 | 6)[], extra = '', localMode?: string): string {
  const lines = [
    `uplink: { interface: ${node.uplink}, mode: ${mode} }`,
    `api: { socket: ${join(dir, `${node.ns}.sock`)} }`,
    'connections:',
  ];
  node.workloads.forEach((w, i) => {
    const fam = families[i % families.length]!;
    const local = localMode ? `{ interface: ${w.iface}, mode: ${localMode} }` : `{ interface: ${w.iface} }`;
    lines.push(`  - { name: c${i}, local: ${local}, vxlan: { vni: ${w.vni}, remote: "${remoteOf(peer, fam)}" } }`);
  });
  const file = join(dir, `${node.ns}.yaml`);
  writeFileSync(file, lines.join('\n') + '\n' + extra);
  return file;
}

function startRun(node: LabNode, file: string): PinholeProc {
  return startPinhole(node.ns, ['--config', file, '--stats-interval', '200'], 20_000, 'run');
}

/** ping count/loss from `ns` to `dst`. */
function ping(lab: Lab, ns: string, dst: string, count = 5): { sent: number; received: number } {
  let out: string;
  try {
    out = lab.exec(ns, 'ping', ['-n', '-c', String(count), '-W', '2', '-i', '0.1', dst]);
  } catch (err) {
    out = String((err as Error).message);
  }
  const m = /(\d+) packets transmitted, (\d+) received/.exec(out);
  return { sent: Number(m?.[1] ?? count), received: Number(m?.[2] ?? 0) };
}

function iperf(lab: Lab, client: string, serverNs: string, server: string, udp: boolean): { bps: number; lost?: number } {
  const srv = lab.spawn(serverNs, 'iperf3', ['-s', '-1', '-B', server]);
  try {
    // The server needs a moment to listen: retry the client until it connects (bounded).
    for (let i = 0; ; i++) {
      try {
        const args = ['-c', server, '-t', '1', '-J', ...(udp ? ['-u', '-b', '200M', '-l', '1200'] : [])];
        const j = JSON.parse(lab.exec(client, 'iperf3', args)) as {
          end: { sum_received?: { bits_per_second: number }; sum?: { bits_per_second: number; lost_percent: number } };
        };
        if (udp) return { bps: j.end.sum!.bits_per_second, lost: j.end.sum!.lost_percent };
        return { bps: j.end.sum_received!.bits_per_second };
      } catch (err) {
        if (i >= 20) throw err;
        lab.exec(client, 'sleep', ['0.1']);
      }
    }
  } finally {
    srv.kill('SIGKILL');
  }
}

function noXdp(lab: Lab, ns: string, iface: string): void {
  const link = lab.exec(ns, 'ip', ['-d', 'link', 'show', iface]);
  assert.doesNotMatch(link, /xdp|prog\/xdp/, `${iface} in ${ns} still has an XDP program:\n${link}`);
}

// Pods here have TX checksum offload off (the lab's default), as local.mode afxdp needs.
const CASES: { underlay: 4 | 6; mode: 'auto' | 'afxdp' | 'afpacket'; local?: 'afxdp'; workloadQueues: number; driver: string }[] = [
  { underlay: 4, mode: 'auto', workloadQueues: 2, driver: 'afpacket' },
  { underlay: 6, mode: 'afxdp', local: 'afxdp', workloadQueues: 2, driver: 'afxdp' },
  { underlay: 4, mode: 'afpacket', workloadQueues: 1, driver: 'afpacket' },
  { underlay: 4, mode: 'auto', local: 'afxdp', workloadQueues: 2, driver: 'afxdp' },
  { underlay: 6, mode: 'auto', workloadQueues: 1, driver: 'afpacket' },
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
        const tcp = iperf(lab, pa.podNs, pb.podNs, pb.podAddr4, false);
        assert.ok(tcp.bps > 1e6, `TCP through the tunnel: ${tcp.bps} bit/s`);
        const udp = iperf(lab, pa.podNs, pb.podNs, pb.podAddr4, true);
        assert.ok(udp.bps > 1e6, `UDP through the tunnel: ${udp.bps} bit/s`);
        const fin = (await p.stop()) as unknown as RunLine;
        const conn = fin.connections.c0!;
        // Every echo request went in and every reply came out through pinhole.
        assert.ok(conn.encap_frames! >= 10, `encapsulated ${conn.encap_frames}`);
        assert.ok(conn.decap_frames! >= 10, `decapsulated ${conn.decap_frames}`);
        assert.equal(fin.ports['wl:c0']!.tx_frames, conn.decap_frames, 'decapsulated frames all left through the workload port');
        assert.equal(fin.ports.uplink!.tx_frames, conn.encap_frames, 'encapsulated frames all left through the uplink');
        assert.deepEqual(fin.drops, {}, 'no drops');
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
        const tcp = iperf(lab, src.podNs, dst.podNs, to, false);
        assert.ok(tcp.bps > 10e6, `TCP pod A → pod B (${to}): ${tcp.bps} bit/s`);
      }
      const back = iperf(lab, dst.podNs, src.podNs, src.podAddr4, false);
      assert.ok(back.bps > 10e6, `TCP pod B → pod A: ${back.bps} bit/s`);
      const udp = iperf(lab, src.podNs, dst.podNs, dst.podAddr4, true);
      assert.ok(udp.bps > 1e6, `UDP through the tunnel: ${udp.bps} bit/s`);
      const fin = (await pa.stop()) as unknown as RunLine;
      const finB = pb ? ((await pb.stop()) as unknown as RunLine) : undefined;
      const port = fin.ports['wl:c0']!;
      assert.ok(port.rx_gso_frames! > 0, `super-frames split: ${port.rx_gso_frames}`);
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

test('pinhole ↔ pinhole: two connections (IPv4 and IPv6 underlay) stay isolated; AF_XDP on both nodes', async () => {
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
      // 100 pings on connection 0 only: connection 1 on node B must not see them (a few frames of
      // its own pods' neighbour upkeep may cross meanwhile).
      const base1 = (await pb.statsUntil(() => true)) as unknown as RunLine;
      assert.equal(ping(lab, a.workloads[0]!.podNs, b.workloads[0]!.podAddr4, 100).received, 100);
      const after = (await pb.statsUntil((s) => {
        const l = s as unknown as RunLine;
        return l.connections.c0!.decap_frames! >= base1.connections.c0!.decap_frames! + 100;
      })) as unknown as RunLine;
      assert.ok(
        after.connections.c1!.decap_frames! - base1.connections.c1!.decap_frames! < 30,
        `connection 1 saw ${after.connections.c1!.decap_frames! - base1.connections.c1!.decap_frames!} frames of connection 0's traffic`,
      );
      // Pod A0 cannot reach pod B1 (another VNI, another segment).
      assert.equal(ping(lab, a.workloads[0]!.podNs, b.workloads[1]!.podAddr4, 2).received, 0);
      await Promise.all([pa.stop(), pb.stop()]);
    },
  );
});

test('next hop through a router: the gateway changes its MAC while traffic flows, pinhole follows the kernel without restart', async () => {
  await withLab('rt', { router: true, sides: { a: 'pinhole', b: 'kernel' } }, async (lab) => {
    const { a, b } = lab;
    const r = lab.router!;
    // Gratuitous ARP on a MAC change, so node A's kernel learns the new MAC at once.
    lab.exec(r.ns, 'sysctl', ['-qw', `net.ipv4.conf.${r.toA.iface}.arp_notify=1`]);
    const p = startRun(a, configFor(a, b, 'auto', [4]));
    const ready = (await p.ready) as unknown as { nextHops: { via: string }[] };
    assert.equal(ready.nextHops[0]!.via, a.gateway4, 'the next hop is the gateway');
    const pa = a.workloads[0]!;
    const pb = b.workloads[0]!;
    assert.equal(ping(lab, pa.podNs, pb.podAddr4).received, 5);
    const newMac = '02:00:00:99:00:01';
    lab.exec(r.ns, 'ip', ['link', 'set', r.toA.iface, 'address', newMac]);
    // Node A's kernel neighbour entry for the gateway now has the new MAC...
    for (let i = 0; !lab.exec(a.ns, 'ip', ['neigh', 'show', a.gateway4!]).includes(newMac); i++) {
      if (i > 50) assert.fail(`node A never learned the gateway's new MAC: ${lab.exec(a.ns, 'ip', ['neigh', 'show'])}`);
      lab.exec(a.ns, 'sleep', ['0.1']);
    }
    // ...and the tunnel keeps working through it.
    assert.equal(ping(lab, pa.podNs, pb.podAddr4, 10).received, 10, 'after the MAC change');
    const fin = (await p.stop()) as unknown as RunLine;
    assert.equal(fin.drops['nexthop:no-route'] ?? 0, 0);
  });
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
