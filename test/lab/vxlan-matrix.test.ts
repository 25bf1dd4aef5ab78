/**
 * VXLAN tunnels, the rest of the proof matrix (lab tier), one lab per group so the added time
 * stays small:
 *
 *  - pinhole ↔ pinhole over an IPv4 and an IPv6 underlay with the uplink forced to AF_XDP and to
 *    AF_PACKET: ARP and ND between the pods through the tunnel (empty caches first), ping, iperf3
 *    TCP and UDP, and the two nodes' counters equal to the pings sent.
 *  - pinhole ↔ the kernel's vxlan on one direct lab: counters equal to a fixed count of pings and
 *    generated UDP datagrams, checked against the pods' interfaces and the kernel vxlan device's
 *    own counters (IPv4 and IPv6 underlay, AF_XDP and AF_PACKET); garbage kinds the other file
 *    does not send (a non-remote source, an oversize inner frame, a wrong outer destination);
 *    `uplink.tunnelAddress` / `tunnelAddress6` carrying real traffic, seen by the kernel peer.
 *  - A remote behind routers: the gateway changes its MAC while a ping runs; the route moves from
 *    one gateway to another while a ping runs; pinhole follows both without restart.
 *  - The next hop's neighbour entry changing state hundreds of times a second under a TCP stream:
 *    no miss, nothing held or dropped (the mirror's writes never read as a miss in the worker).
 *  - A next hop that never answers ARP: frames time out, those still waiting at stop are counted
 *    (drop:stopped), and every encapsulated frame is accounted for.
 *
 * Exact counts rely on quiet pods (helpers/vxlan-lab.ts quietPods: no router solicitations, and
 * permanent neighbour entries, so no ARP/ND frames during the counted window) and on readings
 * taken while pinhole's counters stand still (settled).
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { requireRoot } from '../helpers/require.ts';
import { killLeftoverPinholes } from '../helpers/pinhole-proc.ts';
import {
  backgroundPing,
  configFor,
  delta,
  flushNeighbours,
  ifStats,
  iperf,
  neighbourOf,
  noXdp,
  ping,
  quietPods,
  setKernelVxlan,
  settled,
  snmp,
  startRun,
  statusOf,
  withLab,
  type RunLine,
} from '../helpers/vxlan-lab.ts';
import type { Lab, LabNode, LabWorkload } from '../../src/control/lab/topology.ts';

requireRoot();

/** A subtest whose pinholes are killed whatever happens, so the next one finds the uplink free. */
function step(t: TestContext, name: string, fn: () => Promise<void>): Promise<void> {
  return t.test(name, async () => {
    try {
      await fn();
    } finally {
      killLeftoverPinholes();
    }
  });
}

/** Runs a node script inside `ns` (sending datagrams, say) and waits for it to finish. */
function nodeScript(lab: Lab, ns: string, script: string): string {
  return lab.exec(ns, process.execPath, ['-e', script]);
}

test('pinhole ↔ pinhole, IPv4 and IPv6 underlay × uplink afxdp and afpacket: ARP/ND through the tunnel, ping, TCP and UDP pass; each node decapsulates exactly what the other encapsulated', async (t) => {
  await withLab('ppm', { sides: { a: 'pinhole', b: 'pinhole' } }, async (lab) => {
    const { a, b } = lab;
    const wa = a.workloads[0]!;
    const wb = b.workloads[0]!;
    for (const underlay of [4, 6] as const) {
      for (const mode of ['afxdp', 'afpacket'] as const) {
        await step(t, `IPv${underlay} underlay, --mode ${mode}`, async () => {
          // Empty neighbour caches: the pings below must resolve each other through the tunnel.
          flushNeighbours(lab, wa);
          flushNeighbours(lab, wb);
          assert.equal(neighbourOf(lab, wa, wb.podAddr4), '');
          const pa = startRun(a, configFor(a, b, mode, [underlay]));
          const pb = startRun(b, configFor(b, a, mode, [underlay]));
          const ready = (await Promise.all([pa.ready, pb.ready])) as unknown as RunLine[];
          assert.deepEqual(
            ready.map((r) => r.mode),
            [mode, mode],
          );
          const why = (): string =>
            `\nnode A: ${JSON.stringify(pa.latestStats())}\nnode B: ${JSON.stringify(pb.latestStats())}\n` +
            `pod A: ${lab.exec(wa.podNs, 'ip', ['neigh', 'show'])}\nnode A: ${lab.exec(a.ns, 'ip', ['neigh', 'show'])}`;
          const r4 = ping(lab, wa.podNs, wb.podAddr4);
          assert.equal(r4.received, 5, `IPv4 overlay ping${r4.received === 5 ? '' : why()}`);
          const r6 = ping(lab, wa.podNs, wb.podAddr6);
          assert.equal(r6.received, 5, `IPv6 overlay ping${r6.received === 5 ? '' : why()}`);
          // ARP and ND crossed the tunnel both ways: each pod learned the other's MAC (pod B
          // from pod A's request, pod A from pod B's answer).
          for (const [w, other] of [
            [wa, wb],
            [wb, wa],
          ] as const) {
            for (const addr of [other.podAddr4, other.podAddr6]) {
              assert.match(neighbourOf(lab, w, addr), new RegExp(`lladdr ${other.podMac}`), `${w.podNs} resolved ${addr}`);
            }
          }
          const tcp = await iperf(wa.podNs, wb.podNs, wb.podAddr4);
          assert.ok(tcp.bps > 1e6, `TCP over IPv4 through the tunnel: ${tcp.bps} bit/s`);
          const udp = await iperf(wa.podNs, wb.podNs, wb.podAddr6, { udp: true });
          assert.ok(udp.bps > 1e6, `UDP over IPv6 through the tunnel: ${udp.bps} bit/s`);
          // Counters: 40 pings and nothing else (quiet pods), read when nothing moves. A frame
          // the pods send of their own accord (a late retransmission of the iperf3 control
          // connection's teardown was seen once) shows in the pods' own transmit counters,
          // which pinhole does not touch: then the window is measured again.
          quietPods(lab, [[wa, wb]]);
          const pods = (): { a: { rx: number; tx: number }; b: { rx: number; tx: number } } => ({
            a: ifStats(lab, wa.podNs, ['eth0']).eth0!,
            b: ifStats(lab, wb.podNs, ['eth0']).eth0!,
          });
          const strays: string[] = [];
          for (let attempt = 0; ; attempt++) {
            const s0 = await settled([pa, pb], pods);
            assert.equal(ping(lab, wa.podNs, wb.podAddr4, 20, 0.01).received, 20);
            assert.equal(ping(lab, wa.podNs, wb.podAddr6, 20, 0.01).received, 20);
            const s1 = await settled([pa, pb], pods);
            const pod = [
              s1.read.a.tx - s0.read.a.tx,
              s1.read.b.rx - s0.read.b.rx,
              s1.read.b.tx - s0.read.b.tx,
              s1.read.a.rx - s0.read.a.rx,
            ];
            if ((pod[0] !== 40 || pod[2] !== 40) && attempt < 2) {
              strays.push(`pods sent ${pod[0]} / ${pod[2]}`);
              continue;
            }
            const ca = delta(s0.stats[0]!.connections.c0, s1.stats[0]!.connections.c0);
            const cb = delta(s0.stats[1]!.connections.c0, s1.stats[1]!.connections.c0);
            assert.deepEqual(
              { aEncap: ca.encap_frames, bDecap: cb.decap_frames, bEncap: cb.encap_frames, aDecap: ca.decap_frames },
              { aEncap: 40, bDecap: 40, bEncap: 40, aDecap: 40 },
              `40 requests A → B and 40 replies B → A, each counted once on each node (earlier windows: ${strays.join('; ') || 'none'})`,
            );
            assert.deepEqual(pod, [40, 40, 40, 40], "the pods' own interface counters agree");
            break;
          }
          const [fa, fb] = (await Promise.all([pa.stop(), pb.stop()])) as unknown as RunLine[];
          assert.deepEqual(fa!.drops, {}, 'no drops on node A');
          assert.deepEqual(fb!.drops, {}, 'no drops on node B');
          noXdp(lab, a.ns, a.uplink);
          noXdp(lab, b.ns, b.uplink);
        });
      }
    }
  });
});

/** A VXLAN datagram (I flag, `vni`) carrying an Ethernet frame from pod B to pod A. */
function vxlanScript(wa: LabWorkload, wb: LabWorkload, vni: number): string {
  const mac = (m: string): string => `Buffer.from('${m.replace(/:/g, '')}', 'hex')`;
  return `
    const inner = Buffer.concat([${mac(wa.podMac)}, ${mac(wb.podMac)}, Buffer.from([8, 0]), Buffer.alloc(46)]);
    const vx = Buffer.concat([Buffer.from([8, 0, 0, 0, ${(vni >> 16) & 255}, ${(vni >> 8) & 255}, ${vni & 255}, 0]), inner]);`;
}

/** Sends `n` copies of the VXLAN datagram from `src` to `dst`:4789, one after the other. */
function sendVxlan(lab: Lab, node: LabNode, wa: LabWorkload, wb: LabWorkload, src: string, dst: string, n: number): void {
  nodeScript(
    lab,
    node.ns,
    `${vxlanScript(wa, wb, wa.vni)}
    const d = require('node:dgram').createSocket('udp4');
    d.bind({ address: '${src}' }, () => {
      let i = 0;
      const next = () => (i++ === ${n} ? d.close() : d.send(vx, 4789, '${dst}', next));
      next();
    });`,
  );
}

/** Counters of the E runs: both pods' eth0 and the kernel peer's vxlan device. */
interface KernelSideStats {
  podA: { rx: number; tx: number };
  podB: { rx: number; tx: number };
  vx: { rx: number; tx: number };
}

async function countersAgainstTraffic(lab: Lab, mode: 'afxdp' | 'afpacket', underlay: 4 | 6): Promise<void> {
  const { a, b } = lab;
  const wa = a.workloads[0]!;
  const wb = b.workloads[0]!;
  const p = startRun(a, configFor(a, b, mode, [underlay]));
  assert.equal(((await p.ready) as unknown as RunLine).mode, mode);
  // A first ping each way resolves the neighbours (ARP/ND through the tunnel); then the pods go
  // quiet, so the counted window holds exactly the frames sent below.
  assert.equal(ping(lab, wa.podNs, wb.podAddr4, 2).received, 2);
  assert.equal(ping(lab, wa.podNs, wb.podAddr6, 2).received, 2);
  quietPods(lab, [[wa, wb]]);
  // A receiver in pod B counts the generator's datagrams.
  const rx = lab.spawn(wb.podNs, process.execPath, [
    '-e',
    `const dgram = require('node:dgram');
     let n = 0, up = 0;
     for (const [type, addr] of [['udp4', '${wb.podAddr4}'], ['udp6', '${wb.podAddr6}']]) {
       const s = dgram.createSocket(type);
       s.on('message', () => n++);
       s.bind(9000, addr, () => { if (++up === 2) console.log('ready'); });
     }
     process.on('SIGTERM', () => { console.log('received ' + n); process.exit(0); });`,
  ]);
  let rxOut = '';
  const rxClosed = new Promise<void>((resolve) => rx.once('close', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    rx.stdout!.on('data', (d: Buffer) => {
      rxOut += d.toString();
      if (rxOut.includes('ready')) resolve();
    });
    rx.once('close', () => reject(new Error(`receiver ended: ${rxOut}`)));
  });
  const read = (): KernelSideStats => ({
    podA: ifStats(lab, wa.podNs, ['eth0']).eth0!,
    podB: ifStats(lab, wb.podNs, ['eth0']).eth0!,
    vx: ifStats(lab, b.ns, [wb.vxlan!])[wb.vxlan!]!,
  });
  const s0 = await settled([p], read);
  // The traffic: 50 + 50 echo requests (replies come back), 200 + 100 one-way UDP datagrams.
  assert.equal(ping(lab, wa.podNs, wb.podAddr4, 50, 0.01).received, 50);
  assert.equal(ping(lab, wa.podNs, wb.podAddr6, 50, 0.01).received, 50);
  nodeScript(
    lab,
    wa.podNs,
    `const dgram = require('node:dgram');
     const payload = Buffer.alloc(64, 1);
     const run = (type, addr, n, done) => {
       const s = dgram.createSocket(type);
       let i = 0;
       const next = () => (i++ === n ? (s.close(), done()) : s.send(payload, 9000, addr, next));
       next();
     };
     run('udp4', '${wb.podAddr4}', 200, () => run('udp6', '${wb.podAddr6}', 100, () => {}));`,
  );
  const s1 = await settled([p], read);
  rx.kill('SIGTERM');
  await rxClosed;
  assert.match(rxOut, /received 300\b/, 'the receiver got all 300 datagrams');
  const conn = delta(s0.stats[0]!.connections.c0, s1.stats[0]!.connections.c0);
  const up = delta(s0.stats[0]!.ports.uplink, s1.stats[0]!.ports.uplink);
  const wl = delta(s0.stats[0]!.ports['wl:c0'], s1.stats[0]!.ports['wl:c0']);
  const d = (k: keyof KernelSideStats, dir: 'rx' | 'tx'): number => s1.read[k][dir] - s0.read[k][dir];
  // Into the tunnel: 100 echo requests + 300 datagrams. Out of it: 100 echo replies.
  assert.equal(conn.encap_frames, 400, `encapsulated: ${JSON.stringify(conn)}`);
  assert.equal(conn.decap_frames, 100, `decapsulated: ${JSON.stringify(conn)}`);
  assert.equal(conn.drop_too_big, 0);
  assert.equal(conn.drop_nexthop, 0);
  assert.deepEqual(
    { wlRx: wl.rx_frames, upTx: up.tx_frames, upRx: up.rx_frames, wlTx: wl.tx_frames },
    { wlRx: 400, upTx: 400, upRx: 100, wlTx: 100 },
    'ports',
  );
  // What the kernel saw: pod A sent 400 and got 100; the kernel's vxlan device decapsulated 400
  // and encapsulated 100; pod B got 400 and answered 100.
  assert.deepEqual(
    {
      podATx: d('podA', 'tx'),
      vxRx: d('vx', 'rx'),
      podBRx: d('podB', 'rx'),
      podBTx: d('podB', 'tx'),
      vxTx: d('vx', 'tx'),
      podARx: d('podA', 'rx'),
    },
    { podATx: 400, vxRx: 400, podBRx: 400, podBTx: 100, vxTx: 100, podARx: 100 },
  );
  assert.deepEqual(s1.stats[0]!.drops, {}, 'no drops');
  await p.stop();
}

test('pinhole ↔ kernel vxlan on one lab: counters equal the traffic sent (IPv4/IPv6 underlay, afxdp/afpacket); garbage from a non-remote source, oversize inner frames, a wrong outer destination; uplink.tunnelAddress/tunnelAddress6 carry the traffic', async (t) => {
  await withLab('kx', { sides: { a: 'pinhole', b: 'kernel' } }, async (lab) => {
    const { a, b } = lab;
    const wa = a.workloads[0]!;
    const wb = b.workloads[0]!;

    for (const mode of ['afxdp', 'afpacket'] as const) {
      await step(t, `counters against traffic, IPv4 underlay, --mode ${mode}`, () => countersAgainstTraffic(lab, mode, 4));
    }

    for (const mode of ['afxdp', 'afpacket'] as const) {
      await step(t, `garbage, --mode ${mode}: a non-remote source, oversize inner frames, a wrong outer destination`, async () => {
        // Pod A (and its veth) take 1500-byte packets, more than the tunnel can carry over a
        // 1500-byte uplink (at most a 1464-byte inner frame over IPv4).
        lab.exec(a.ns, 'ip', ['link', 'set', wa.iface, 'mtu', '1500']);
        lab.exec(wa.podNs, 'ip', ['link', 'set', wa.podIface, 'mtu', '1500']);
        lab.exec(b.ns, 'ip', ['addr', 'add', '198.18.0.9/24', 'dev', b.uplink]); // not the connection's remote
        lab.exec(a.ns, 'ip', ['addr', 'add', '198.18.0.7/24', 'dev', a.uplink]); // not a tunnel address
        try {
          const p = startRun(a, configFor(a, b, mode, [4]));
          await p.ready;
          assert.equal(ping(lab, wa.podNs, wb.podAddr4, 2).received, 2);
          quietPods(lab, [[wa, wb]]);
          const read = (): { udpA: Record<string, number>; icmpB: Record<string, number>; podA: { rx: number; tx: number } } => ({
            udpA: snmp(lab, a.ns, 'Udp'),
            icmpB: snmp(lab, b.ns, 'Icmp'),
            podA: ifStats(lab, wa.podNs, ['eth0']).eth0!,
          });
          const xdp0 = (await statusOf(a)).uplink!.pinhole;
          const s0 = await settled([p], read);
          sendVxlan(lab, b, wa, wb, '198.18.0.9', a.underlay4, 20); // valid VXLAN, VNI 100, wrong source
          sendVxlan(lab, b, wa, wb, b.underlay4, '198.18.0.7', 20); // from the remote, to another address of node A
          // ping -w keeps sending until its deadline when no reply comes: count what it sent.
          const big = ping(lab, wa.podNs, wb.podAddr4, 10, 0.05, 1472, 1);
          assert.ok(big.sent >= 10 && big.received === 0, `1514-byte frames cannot cross: ${JSON.stringify(big)}`);
          const s1 = await settled([p], read);
          const xdp1 = (await statusOf(a)).uplink!.pinhole;
          const st0 = s0.stats[0]!;
          const st1 = s1.stats[0]!;
          assert.deepEqual(
            delta(st0.drops, st1.drops),
            { 'decap:wrong-source': 20, 'encap:too-big': big.sent },
            'drops by reason, exactly',
          );
          const conn = delta(st0.connections.c0, st1.connections.c0);
          assert.deepEqual(
            { decap: conn.decap_frames, encap: conn.encap_frames, tooBig: conn.drop_too_big },
            { decap: 0, encap: 0, tooBig: big.sent },
            `connection counters ${JSON.stringify(conn)}`,
          );
          // Only the wrong-source datagrams reached the dataplane; the wrong-destination ones
          // went to node A's kernel, which has no socket on 4789 there and says so.
          assert.equal(delta(st0.ports.uplink, st1.ports.uplink).rx_frames, 20, 'uplink frames into the dataplane');
          assert.equal(s1.read.udpA.NoPorts! - s0.read.udpA.NoPorts!, 20, "node A's kernel got the 20 wrong-destination datagrams");
          assert.ok(s1.read.icmpB.InDestUnreachs! - s0.read.icmpB.InDestUnreachs! >= 1, 'and answered port unreachable (rate-limited)');
          if (mode === 'afxdp') {
            assert.equal(xdp1!.address! - xdp0!.address!, 20, 'the XDP program passed them (reason address)');
            assert.equal(xdp1!.tunnel! - xdp0!.tunnel!, 20, 'and redirected the wrong-source ones');
          } else {
            assert.equal(xdp1, null, 'no XDP program in afpacket mode');
          }
          assert.deepEqual(
            [s1.read.podA.rx - s0.read.podA.rx, s1.read.podA.tx - s0.read.podA.tx],
            [0, big.sent],
            'pod A got nothing; it sent the big pings',
          );
          // The connection keeps working.
          assert.equal(ping(lab, wa.podNs, wb.podAddr4, 5).received, 5, 'after the garbage');
          assert.equal(p.child.exitCode, null, 'still running');
          await p.stop();
        } finally {
          lab.exec(a.ns, 'ip', ['addr', 'del', '198.18.0.7/24', 'dev', a.uplink]);
          lab.exec(b.ns, 'ip', ['addr', 'del', '198.18.0.9/24', 'dev', b.uplink]);
          lab.exec(wa.podNs, 'ip', ['link', 'set', wa.podIface, 'mtu', String(wa.mtu)]);
          lab.exec(a.ns, 'ip', ['link', 'set', wa.iface, 'mtu', String(wa.mtu)]);
        }
      });
    }

    const tunnelAddressCase = async (family: 4 | 6): Promise<void> => {
      // Node A gets a second address; pinhole must send from (and only accept at) it, and the
      // kernel peer is configured with it as its remote.
      const second = family === 4 ? '198.18.0.11' : '2001:db8::11';
      lab.exec(
        a.ns,
        'ip',
        family === 4 ? ['addr', 'add', `${second}/24`, 'dev', a.uplink] : ['-6', 'addr', 'add', `${second}/64`, 'dev', a.uplink, 'nodad'],
      );
      setKernelVxlan(lab, b, wb, family === 4 ? b.underlay4 : b.underlay6, second);
      try {
        const key = family === 4 ? 'tunnelAddress' : 'tunnelAddress6';
        const p = startRun(a, configFor(a, b, 'auto', [family], '', undefined, `${key}: "${second}"`));
        const ready = (await p.ready) as unknown as RunLine;
        assert.deepEqual(ready.tunnelAddresses, [second]);
        assert.equal(ping(lab, wa.podNs, wb.podAddr4).received, 5, 'IPv4 overlay ping');
        assert.equal(ping(lab, wa.podNs, wb.podAddr6).received, 5, 'IPv6 overlay ping');
        // The kernel's vxlan learns each inner source MAC with the outer source it came from.
        const fdb = lab.exec(b.ns, 'bridge', ['fdb', 'show', 'dev', wb.vxlan!]);
        const learned = fdb.split('\n').filter((l) => l.startsWith(wa.podMac) && l.includes(' dst '));
        assert.deepEqual(
          learned.map((l) => /dst (\S+)/.exec(l)?.[1]),
          [second],
          `pod A's frames arrived from ${second} and from nothing else:\n${fdb}`,
        );
        const fin = (await p.stop()) as unknown as RunLine;
        assert.ok(fin.connections.c0!.decap_frames! >= 10 && fin.connections.c0!.encap_frames! >= 10);
        assert.deepEqual(fin.drops, {}, 'no drops (no wrong-destination: the peer sends to the tunnel address)');
      } finally {
        lab.exec(
          a.ns,
          'ip',
          family === 4 ? ['addr', 'del', `${second}/24`, 'dev', a.uplink] : ['-6', 'addr', 'del', `${second}/64`, 'dev', a.uplink],
        );
      }
    };
    await step(t, 'uplink.tunnelAddress: the outer source is the configured second IPv4 address', () => tunnelAddressCase(4));

    // The kernel peer moves to an IPv6 underlay for the rest.
    setKernelVxlan(lab, b, wb, b.underlay6, a.underlay6);
    await step(t, 'counters against traffic, IPv6 underlay, --mode afxdp', () => countersAgainstTraffic(lab, 'afxdp', 6));
    await step(t, 'uplink.tunnelAddress6: the outer source is the configured second IPv6 address', () => tunnelAddressCase(6));
  });
});

test('remote behind routers: the gateway changes its MAC during a ping, then the route moves to another gateway during a ping; pinhole follows both without restart', async (t) => {
  await withLab('rtm', { router: true, sides: { a: 'pinhole', b: 'kernel' } }, async (lab) => {
    const { a, b } = lab;
    const r = lab.router!;
    const wa = a.workloads[0]!;
    const wb = b.workloads[0]!;

    await step(t, "the gateway's MAC changes while 100 pings at 20 ms run", async () => {
      // Gratuitous ARP on a MAC change, so node A's kernel learns the new MAC at once.
      lab.exec(r.ns, 'sysctl', ['-qw', `net.ipv4.conf.${r.toA.iface}.arp_notify=1`]);
      const p = startRun(a, configFor(a, b, 'auto', [4]));
      const ready = (await p.ready) as unknown as RunLine;
      assert.equal(ready.nextHops![0]!.via, a.gateway4, 'the next hop is the gateway');
      assert.equal(ping(lab, wa.podNs, wb.podAddr4).received, 5);
      assert.equal((await statusOf(a)).connections[0]!.nextHop.mac, r.toA.mac);
      const newMac = '02:00:00:99:00:01';
      const bg = backgroundPing(lab, wa.podNs, wb.podAddr4, 100, 0.02);
      await bg.replies(20);
      // From here on the router drops frames still addressed to its old MAC (not for this host).
      lab.exec(r.ns, 'ip', ['link', 'set', r.toA.iface, 'address', newMac]);
      const res = await bg.done;
      // At most the frames already on their way when the MAC changed (≈ one 20 ms interval).
      assert.ok(res.received >= 97, `lost ${res.sent - res.received} of ${res.sent} across the MAC change:\n${res.raw}`);
      const st = await statusOf(a);
      assert.deepEqual(
        { via: st.connections[0]!.nextHop.via, mac: st.connections[0]!.nextHop.mac },
        { via: a.gateway4, mac: newMac },
        "pinhole's next hop has the gateway's new MAC",
      );
      const gw = st.neighbours.find((n) => n.ip === a.gateway4);
      assert.equal(gw?.mac, newMac);
      assert.deepEqual(gw?.usedBy, ['c0']);
      assert.equal(ping(lab, wa.podNs, wb.podAddr4, 10, 0.02).received, 10, 'after the MAC change');
      const fin = (await p.stop()) as unknown as RunLine;
      assert.deepEqual(fin.drops, {}, 'no drops');
    });

    await step(t, 'the route to the remote moves from gateway 198.18.1.1 to 198.18.1.3 while 100 pings at 20 ms run', async () => {
      // Gateway 2: a macvlan on the router's side of node A's link, with its own MAC and address
      // (so frames for it are told apart on the wire), forwarding like the first.
      const gw2 = { iface: 'ra1', mac: '02:00:00:00:01:03', addr: '198.18.1.3' };
      lab.exec(r.ns, 'ip', ['link', 'add', gw2.iface, 'link', r.toA.iface, 'address', gw2.mac, 'type', 'macvlan', 'mode', 'bridge']);
      // Each gateway answers ARP only for its own address (the default would answer for both).
      lab.exec(r.ns, 'sysctl', [
        '-qw',
        'net.ipv4.conf.all.arp_ignore=1',
        'net.ipv4.conf.all.rp_filter=0',
        `net.ipv4.conf.${r.toA.iface}.rp_filter=0`,
        'net.ipv4.conf.default.rp_filter=0',
      ]);
      lab.exec(r.ns, 'ip', ['addr', 'add', `${gw2.addr}/24`, 'dev', gw2.iface]);
      lab.exec(r.ns, 'ip', ['link', 'set', gw2.iface, 'up']);
      lab.exec(r.ns, 'sysctl', ['-qw', `net.ipv4.conf.${gw2.iface}.forwarding=1`, `net.ipv4.conf.${gw2.iface}.rp_filter=0`]);
      const p = startRun(a, configFor(a, b, 'auto', [4]));
      const ready = (await p.ready) as unknown as RunLine;
      assert.equal(ready.nextHops![0]!.via, a.gateway4);
      assert.equal(ping(lab, wa.podNs, wb.podAddr4).received, 5, 'through gateway 1');
      const g0 = ifStats(lab, r.ns, [gw2.iface])[gw2.iface]!;
      const bg = backgroundPing(lab, wa.podNs, wb.podAddr4, 100, 0.02);
      await bg.replies(20);
      lab.exec(a.ns, 'ip', ['route', 'replace', 'default', 'via', gw2.addr, 'dev', a.uplink]);
      const res = await bg.done;
      // The first frames after the change wait for gateway 2's MAC in the next-hop queue: none lost.
      assert.ok(res.received >= 97, `lost ${res.sent - res.received} of ${res.sent} across the route change:\n${res.raw}`);
      const g1 = ifStats(lab, r.ns, [gw2.iface])[gw2.iface]!;
      assert.ok(g1.rx - g0.rx >= 50, `gateway 2 received ${g1.rx - g0.rx} frames during the ping (the last ≥ 50 requests)`);
      const st = await statusOf(a);
      assert.deepEqual(
        { via: st.connections[0]!.nextHop.via, mac: st.connections[0]!.nextHop.mac },
        { via: gw2.addr, mac: gw2.mac },
        "pinhole's next hop is gateway 2",
      );
      // Every request now goes to gateway 2: 20 pings, 20 frames more (and at most a few ARP).
      const g2 = ifStats(lab, r.ns, [gw2.iface])[gw2.iface]!;
      assert.equal(ping(lab, wa.podNs, wb.podAddr4, 20, 0.02).received, 20, 'through gateway 2');
      const g3 = ifStats(lab, r.ns, [gw2.iface])[gw2.iface]!;
      assert.ok(g3.rx - g2.rx >= 20 && g3.rx - g2.rx <= 24, `gateway 2 received ${g3.rx - g2.rx} frames for 20 pings`);
      assert.equal(p.child.exitCode, null, 'the same pinhole, never restarted');
      const fin = (await p.stop()) as unknown as RunLine;
      assert.deepEqual(fin.drops, {}, 'no drops');
    });
  });
});

test("the next hop's neighbour entry churns under TCP (hundreds of kernel notifications a second): no miss, nothing held, asked or dropped", async () => {
  await withLab('nhch', { sides: { a: 'pinhole', b: 'kernel' } }, async (lab) => {
    const { a, b } = lab;
    const wa = a.workloads[0]!;
    const wb = b.workloads[0]!;
    const p = startRun(a, configFor(a, b, 'auto', [4]));
    await p.ready;
    // Resolves the next hop (node B's uplink) before the stream starts.
    const r = ping(lab, wa.podNs, wb.podAddr4);
    assert.equal(r.received, r.sent);
    // Node A's kernel entry for node B flips between STALE and REACHABLE (both usable, same MAC):
    // every flip is a notification the mirror writes into the shared neighbour table while the
    // worker reads it for every breath. A write in progress is no answer, never a miss: before,
    // a lookup that found the table busy held frames, dropped GSO trains and asked the kernel.
    const entry = `neigh replace ${b.underlay4} lladdr ${b.uplinkMac} dev ${a.uplink} nud`;
    const batch = Array.from({ length: 100 }, (_, i) => `${entry} ${i % 2 ? 'reachable' : 'stale'}`).join('\n');
    // One line on stdout per batch of 100 changes; a failed `ip` ends the loop (checked below).
    const churn = lab.spawn(a.ns, 'sh', ['-c', `while ip -batch - <<'EOF'\n${batch}\nEOF\ndo echo; done`]);
    let batches = 0;
    let churnErr = '';
    churn.stdout!.on('data', (d: Buffer) => (batches += d.toString().split('\n').length - 1));
    churn.stderr!.on('data', (d: Buffer) => (churnErr += d.toString()));
    const started = performance.now();
    let during = 0;
    try {
      for (let i = 0; i < 3; i++) assert.ok((await iperf(wa.podNs, wb.podNs, wb.podAddr4)).bps > 1e6, 'TCP through the tunnel');
      assert.equal(churn.exitCode, null, `the churn ran throughout: ${churnErr}`);
      during = batches;
    } finally {
      churn.kill();
    }
    const perSecond = (during * 100) / ((performance.now() - started) / 1000);
    const fin = (await p.stop()) as unknown as RunLine;
    const nh = fin.nexthop!;
    assert.ok(perSecond >= 100, `${during * 100} state changes during the stream, ${perSecond.toFixed(0)} a second`);
    assert.deepEqual(
      { misses: nh.misses, queued: nh.queued, asked: nh['resolve-requests'], drops: fin.drops },
      { misses: 0, queued: 0, asked: 0, drops: {} },
      'the churn never read as a miss',
    );
    assert.equal(fin.ports.uplink!.tx_frames, fin.connections.c0!.encap_frames, 'every encapsulated frame left through the uplink');
  });
});

test('a next hop that never answers: frames wait, time out and are counted; those still waiting at stop are counted too, and every encapsulated frame is accounted for', async () => {
  await withLab('nhto', { sides: { a: 'pinhole', b: 'kernel' } }, async (lab) => {
    const { a, b } = lab;
    const wa = a.workloads[0]!;
    const wb = b.workloads[0]!;
    // Node B stops answering ARP: node A's kernel never resolves it.
    lab.exec(b.ns, 'ip', ['link', 'set', b.uplink, 'arp', 'off']);
    lab.exec(a.ns, 'ip', ['-4', 'neigh', 'flush', 'dev', a.uplink]);
    const p = startRun(a, configFor(a, b, 'auto', [4]));
    await p.ready;
    // The pod's ARP requests for pod B (one a second, each a frame to encapsulate) wait in the
    // next-hop queue for 3 s, then are dropped as timed out.
    const bg = backgroundPing(lab, wa.podNs, wb.podAddr4, 100, 0.2);
    let fin: RunLine;
    try {
      // Until a frame has timed out and another still waits (a few seconds; 100 ms stats lines).
      const waited = (s: RunLine): boolean =>
        (s.nexthop?.['drop:timeout'] ?? 0) > 0 && (s.nexthop?.queued ?? 0) > (s.nexthop?.['drop:timeout'] ?? 0);
      let s = await p.nextStats();
      for (let i = 0; i < 150 && !waited(s); i++) s = await p.nextStats();
      assert.ok(waited(s), `frames timed out and others waited: ${JSON.stringify(s.nexthop)}`);
      // Stopped while the pod still sends: its latest frames are waiting.
      fin = (await p.stop()) as unknown as RunLine;
    } finally {
      bg.stop();
    }
    const nh = fin.nexthop!;
    const conn = fin.connections.c0!;
    assert.equal(nh.flushed, 0, 'nothing was sent');
    assert.ok(fin.drops['nexthop:timeout']! > 0, `timed out: ${JSON.stringify(fin.drops)}`);
    assert.ok(fin.drops['nexthop:stopped']! > 0, `still waiting at stop: ${JSON.stringify(fin.drops)}`);
    assert.equal(
      nh.queued,
      fin.drops['nexthop:timeout']! + fin.drops['nexthop:stopped']!,
      'every queued frame timed out or was waiting at stop',
    );
    assert.equal(conn.drop_nexthop, nh.queued + (fin.drops['nexthop:queue-full'] ?? 0), "the connection's next-hop drops are the queue's");
    assert.equal(fin.ports.uplink!.tx_frames, 0, 'nothing left through the uplink');
    assert.equal(conn.encap_frames, conn.drop_nexthop, 'every encapsulated frame is accounted for');
  });
});
