/**
 * WireGuard in the dataplane, without privileges: the workload side's neighbour answers (ARP,
 * IPv6 neighbour solicitations), cryptokey routing (allowed IPs), and two worker graphs built by
 * src/dataplane/graph.ts exactly as worker 0 builds them, joined back to back over in-memory
 * ports (pinhole ↔ pinhole): handshake, both directions, the Ethernet header on the way out of
 * the tunnel, the outer headers on the way in, and every refusal counted under its reason.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { counterBase, readCounters, type CounterValues } from '../../src/dataplane/counters.ts';
import type { Engine } from '../../src/dataplane/engine.ts';
import { buildGraph } from '../../src/dataplane/graph.ts';
import { PacketMemory } from '../../src/dataplane/memory.ts';
import { addressWords, NextHopTable, nextHopTableBytes, NH_OK } from '../../src/dataplane/nexthop-table.ts';
import { planCounters, type PortPlan, type WgConnectionPlan, type WorkerPlan } from '../../src/dataplane/plan.ts';
import { WgRegistry } from '../../src/dataplane/stages/wireguard.ts';
import { NeighbourTableWriter } from '../../src/netlink/neigh-table.ts';
import { NUD_REACHABLE } from '../../src/netlink/rtnl.ts';
import { buildFrame } from '../../src/packet/build.ts';
import { pseudoHeaderSumV6, verifyChecksum } from '../../src/packet/checksum.ts';
import { parseIP, formatIPv4 } from '../../src/packet/ip.ts';
import { formatMac, parseMac } from '../../src/packet/mac.ts';
import { answerArp, answerNeighbourSolicitation, writeArpRequest, writeNeighbourSolicitation } from '../../src/packet/neighbour-reply.ts';
import { AllowedIps } from '../../src/tunnel/wireguard/allowed-ips.ts';
import { NodeAead } from '../../src/tunnel/wireguard/crypto.ts';
import { encodeKey, generatePrivateKey, publicKeyOf } from '../../src/tunnel/wireguard/keys.ts';
import { MemoryPort } from '../support/memory-port.ts';

const GW_MAC = '02:00:00:02:00:01';
const POD_MAC = '02:00:00:01:00:01';

// ---------------------------------------------------------------------------------------------
// ARP and neighbour discovery

function arp(op: 1 | 2, senderIp: string, targetIp: string): Uint8Array {
  return buildFrame({ eth: { src: POD_MAC, dst: 'ff:ff:ff:ff:ff:ff' }, arp: { op, senderMac: POD_MAC, senderIp, targetIp } });
}

test('ARP: a request for any other address is answered with our MAC; gratuitous ARP, probes and replies are not', () => {
  const out = new Uint8Array(128);
  const mac = parseMac(GW_MAC);
  const req = arp(1, '198.19.0.1', '198.19.0.2');
  const n = answerArp(req, 0, req.length, mac, out, 0);
  assert.equal(n, 42);
  assert.equal(formatMac(out, 0), POD_MAC, 'to the requester');
  assert.equal(formatMac(out, 6), GW_MAC);
  assert.deepEqual([out[12], out[13], out[20], out[21]], [0x08, 0x06, 0, 2], 'an ARP reply');
  assert.equal(formatMac(out, 22), GW_MAC, 'sender MAC: ours');
  assert.equal(formatIPv4(out, 28), '198.19.0.2', 'sender IP: the address asked about');
  assert.equal(formatMac(out, 32), POD_MAC);
  assert.equal(formatIPv4(out, 38), '198.19.0.1');
  for (const [what, f] of [
    ['gratuitous (target = sender)', arp(1, '198.19.0.1', '198.19.0.1')],
    ['probe (sender 0.0.0.0)', arp(1, '0.0.0.0', '198.19.0.1')],
    ['a reply', arp(2, '198.19.0.1', '198.19.0.2')],
    ['truncated', req.subarray(0, 30)],
  ] as const) {
    assert.equal(answerArp(f, 0, f.length, mac, out, 0), 0, what);
  }
  // Our own request (to learn the pod's MAC) is a well-formed broadcast request.
  const ips = new Uint8Array([198, 19, 0, 2, 198, 19, 0, 1]);
  const r = writeArpRequest(mac, ips, 0, 4, out, 0);
  assert.equal(r, 42);
  assert.equal(formatMac(out, 0), 'ff:ff:ff:ff:ff:ff');
  assert.deepEqual([out[20], out[21]], [0, 1]);
  assert.equal(formatIPv4(out, 28), '198.19.0.2');
  assert.equal(formatIPv4(out, 38), '198.19.0.1');
});

function icmp6Valid(f: Uint8Array): boolean {
  const ip = 14;
  const len = (f[ip + 4]! << 8) | f[ip + 5]!;
  return verifyChecksum(f, ip + 40, len, pseudoHeaderSumV6(f.subarray(ip + 8, ip + 24), f.subarray(ip + 24, ip + 40), 58, len));
}

test('IPv6: a neighbour solicitation for another address gets a valid advertisement (S, O, our MAC); DAD and own-address ones do not', () => {
  const out = new Uint8Array(128);
  const mac = parseMac(GW_MAC);
  const buf = new Uint8Array(64);
  buf.set(parseIP('2001:db8:100::1').bytes, 0);
  buf.set(parseIP('2001:db8:100::2').bytes, 16);
  // Build the pod's solicitation with our own writer (the pod's MAC as "ours"), then answer it.
  const ns = new Uint8Array(128);
  const nsLen = writeNeighbourSolicitation(parseMac(POD_MAC), buf, 0, 16, ns, 0);
  assert.equal(nsLen, 86);
  assert.ok(icmp6Valid(ns), 'the solicitation checksum');
  assert.equal(formatMac(ns, 0), '33:33:ff:00:00:02', 'to the solicited-node group');
  const n = answerNeighbourSolicitation(ns, 0, nsLen, mac, out, 0);
  assert.equal(n, 86);
  assert.ok(icmp6Valid(out), 'the advertisement checksum');
  assert.equal(formatMac(out, 0), POD_MAC, 'to the solicitor (its source link-layer address)');
  assert.equal(out[54], 136);
  assert.equal(out[58], 0x60, 'Solicited and Override');
  assert.deepEqual(out.subarray(22, 38), parseIP('2001:db8:100::2').bytes, 'from the target');
  assert.deepEqual(out.subarray(62, 78), parseIP('2001:db8:100::2').bytes, 'target');
  assert.deepEqual([out[78], out[79]], [2, 1], 'target link-layer address option');
  assert.equal(formatMac(out, 80), GW_MAC);
  // DAD: source ::
  const dad = ns.slice(0, nsLen);
  dad.fill(0, 22, 38);
  assert.equal(answerNeighbourSolicitation(dad, 0, nsLen, mac, out, 0), 0, 'DAD');
  // The pod asking about its own address.
  const own = ns.slice(0, nsLen);
  own.set(parseIP('2001:db8:100::1').bytes, 62);
  assert.equal(answerNeighbourSolicitation(own, 0, nsLen, mac, out, 0), 0, 'own address');
  const hop = ns.slice(0, nsLen);
  hop[21] = 64;
  assert.equal(answerNeighbourSolicitation(hop, 0, nsLen, mac, out, 0), 0, 'hop limit ≠ 255');
});

// ---------------------------------------------------------------------------------------------
// Cryptokey routing

test('allowed IPs: prefixes of both families, host routes, /0; source and destination of a packet', () => {
  const a = new AllowedIps(['198.19.1.0/24', '198.19.9.9', '2001:db8:100::/64', '2001:db8:200::7/128']);
  const v4 = (s: string): Uint8Array => parseIP(s).bytes;
  assert.equal(a.matchV4(v4('198.19.1.77'), 0), true);
  assert.equal(a.matchV4(v4('198.19.2.1'), 0), false);
  assert.equal(a.matchV4(v4('198.19.9.9'), 0), true);
  assert.equal(a.matchV4(v4('198.19.9.8'), 0), false);
  assert.equal(a.matchV6(v4('2001:db8:100::ffff'), 0), true);
  assert.equal(a.matchV6(v4('2001:db8:101::1'), 0), false);
  assert.equal(a.matchV6(v4('2001:db8:200::7'), 0), true);
  assert.equal(a.matchV6(v4('2001:db8:200::8'), 0), false);
  assert.equal(new AllowedIps(['0.0.0.0/0']).matchV4(v4('203.0.113.1'), 0), true);
  assert.equal(new AllowedIps(['0.0.0.0/0']).matchV6(v4('2001:db8::1'), 0), false);
  assert.equal(new AllowedIps(['::/0']).matchV6(v4('2001:db8::1'), 0), true);
  const pkt = buildFrame({ ipv4: { src: '198.19.1.5', dst: '198.19.3.3' }, udp: { sport: 1, dport: 2 } });
  assert.equal(a.matchPacket(pkt, 14, true), true, 'source allowed');
  assert.equal(a.matchPacket(pkt, 14, false), false, 'destination not allowed');
  const pkt6 = buildFrame({ ipv6: { src: '2001:db8:300::1', dst: '2001:db8:100::2' }, udp: { sport: 1, dport: 2 } });
  assert.equal(a.matchPacket(pkt6, 14, true), false);
  assert.equal(a.matchPacket(pkt6, 14, false), true);
});

// ---------------------------------------------------------------------------------------------
// Two worker graphs back to back

const IFINDEX = 7;

interface Node {
  engine: Engine;
  uplink: MemoryPort;
  wg: MemoryPort;
  wl: MemoryPort;
  counters(): CounterValues;
  endpoints: string[];
}

function port(name: string, role: PortPlan['role'], connection?: number): PortPlan {
  return { name, role, ifname: `mem-${name}`, queue: 0, driver: 'afpacket', rx: true, ...(connection !== undefined ? { connection } : {}) };
}

function node(
  me: { local: string; mac: string; wlMac: string; priv: Uint8Array },
  peer: { pub: string; endpoint?: string; allowed: string[] },
  hop: { ip: string; mac: string },
): Node {
  const wg: WgConnectionPlan = {
    index: 0,
    name: 'w',
    listenPort: 51820,
    local4: me.local,
    local6: '',
    srcMac: me.mac,
    uplinkMtu: 1500,
    ttl: 64,
    workloadPort: 'wl:w',
    workloadMac: me.wlMac,
    peer: { publicKey: peer.pub, allowedIPs: peer.allowed, ...(peer.endpoint ? { endpoint: peer.endpoint } : {}) },
    keys: { privateKey: me.priv },
    generation: 'g1',
  };
  const plan: WorkerPlan = {
    worker: 0,
    graph: 'vxlan',
    ports: [port('uplink', 'uplink'), port('wg', 'uplink'), port('wl:w', 'workload', 0)],
    connections: [],
    wireguard: [wg],
    batchSize: 64,
    waitQueue: { frames: 8, timeoutMs: 1000 },
  };
  const layout = planCounters(plan);
  const c = new Float64Array(layout.size);
  const memory = new PacketMemory();
  const ports = new Map<string, MemoryPort>();
  for (const p of plan.ports)
    ports.set(p.name, new MemoryPort({ name: p.name, memory, counters: c, base: counterBase(layout, `port:${p.name}`), slots: 256 }));
  const neigh = new NeighbourTableWriter(16);
  neigh.upsert({ family: 4, ifindex: IFINDEX, addr: parseIP(hop.ip).bytes, mac: parseMac(hop.mac), state: NUD_REACHABLE });
  const nh = new NextHopTable(new SharedArrayBuffer(nextHopTableBytes(1)));
  nh.write(0, { state: NH_OK, family: 4, ifindex: IFINDEX, words: addressWords(parseIP(hop.ip).bytes) });
  const endpoints: string[] = [];
  const engine = buildGraph(plan, layout, c, memory, ports, {
    nexthops: nh.buffer,
    neighbours: neigh.buffer,
    wireguard: new WgRegistry(() => new NodeAead()),
    onEndpoint: (_k, e) => endpoints.push(e),
  });
  return {
    engine,
    uplink: ports.get('uplink')!,
    wg: ports.get('wg')!,
    wl: ports.get('wl:w')!,
    counters: () => readCounters(layout, c),
    endpoints,
  };
}

test('pinhole ↔ pinhole graphs: ARP answered, handshake, IPv4 both ways with the right headers, cryptokey routing drops counted', () => {
  const privA = generatePrivateKey();
  const privB = generatePrivateKey();
  const A = node(
    { local: '198.18.0.1', mac: '02:00:00:00:00:01', wlMac: '02:00:00:02:00:01', priv: privA },
    { pub: encodeKey(publicKeyOf(privB)), endpoint: '198.18.0.2:51820', allowed: ['198.19.0.2/32'] },
    { ip: '198.18.0.2', mac: '02:00:00:00:00:02' },
  );
  const B = node(
    { local: '198.18.0.2', mac: '02:00:00:00:00:02', wlMac: '02:00:00:02:00:02', priv: privB },
    { pub: encodeKey(publicKeyOf(privA)), allowed: ['198.19.0.1/32'] },
    { ip: '198.18.0.1', mac: '02:00:00:00:00:01' },
  );
  let t = 1000;
  /** Breathes both nodes and carries the uplink frames across until nothing moves. */
  const settle = (): void => {
    for (let round = 0; round < 20; round++) {
      A.engine.breathe(t);
      B.engine.breathe(t);
      t += 1;
      const ab = A.uplink.take();
      const ba = B.uplink.take();
      if (ab.length + ba.length === 0) return;
      for (const f of ab) B.wg.inject(f);
      for (const f of ba) A.wg.inject(f);
    }
  };
  // Pod A resolves pod B's address: pinhole answers.
  const podA = '02:00:00:01:00:01';
  A.wl.inject(
    buildFrame({
      eth: { src: podA, dst: 'ff:ff:ff:ff:ff:ff' },
      arp: { op: 1, senderMac: podA, senderIp: '198.19.0.1', targetIp: '198.19.0.2' },
    }),
  );
  settle();
  const arpReply = A.wl.take();
  assert.equal(arpReply.length, 1);
  assert.equal(formatMac(arpReply[0]!, 22), '02:00:00:02:00:01', 'the gateway MAC is wl0 on node A');
  // B's pod is known to B by its first frame (it resolved its gateway too).
  const podB = '02:00:00:01:00:02';
  B.wl.inject(
    buildFrame({
      eth: { src: podB, dst: 'ff:ff:ff:ff:ff:ff' },
      arp: { op: 1, senderMac: podB, senderIp: '198.19.0.2', targetIp: '198.19.0.1' },
    }),
  );
  settle();
  B.wl.take();
  // A → B: the first packet waits for the handshake and then leaves.
  const payload = new Uint8Array(100).map((_, i) => i);
  const ping = buildFrame({
    eth: { src: podA, dst: '02:00:00:02:00:01' },
    ipv4: { src: '198.19.0.1', dst: '198.19.0.2' },
    udp: { sport: 7, dport: 9 },
    payload,
  });
  A.wl.inject(ping);
  A.engine.breathe(t++);
  const init = A.uplink.take();
  assert.equal(init.length, 1, 'an initiation');
  const f0 = init[0]!;
  assert.equal(formatMac(f0, 0), '02:00:00:00:00:02', 'next hop MAC from the neighbour table');
  assert.equal(formatIPv4(f0, 26) + ' ' + formatIPv4(f0, 30), '198.18.0.1 198.18.0.2');
  assert.equal((f0[36]! << 8) | f0[37]!, 51820);
  assert.ok(verifyChecksum(f0, 14, 20), 'IPv4 header checksum');
  assert.equal(f0[42], 1, 'message type 1');
  B.wg.inject(f0);
  settle();
  const gotB = B.wl.take();
  assert.equal(gotB.length, 1, 'delivered to pod B');
  const d = gotB[0]!;
  assert.equal(formatMac(d, 0), podB);
  assert.equal(formatMac(d, 6), '02:00:00:02:00:02');
  assert.deepEqual(d.subarray(14), ping.subarray(14), 'the IP packet unchanged');
  assert.deepEqual(B.endpoints, ['198.18.0.1:51820'], 'B learned its peer endpoint');
  // B → A
  const back = buildFrame({
    eth: { src: podB, dst: '02:00:00:02:00:02' },
    ipv4: { src: '198.19.0.2', dst: '198.19.0.1' },
    udp: { sport: 9, dport: 7 },
    payload,
  });
  B.wl.inject(back);
  settle();
  const gotA = A.wl.take();
  assert.equal(gotA.length, 1);
  assert.deepEqual(gotA[0]!.subarray(14), back.subarray(14));
  // Cryptokey routing: pod A to an address B does not own → dropped at A; B's pod sending from a
  // source A does not allow (spoofed) → encrypted by B (its allowed IPs cover the destination), dropped by A.
  A.wl.inject(
    buildFrame({
      eth: { src: podA, dst: '02:00:00:02:00:01' },
      ipv4: { src: '198.19.0.1', dst: '198.19.5.5' },
      udp: { sport: 7, dport: 9 },
    }),
  );
  B.wl.inject(
    buildFrame({
      eth: { src: podB, dst: '02:00:00:02:00:02' },
      ipv4: { src: '198.19.0.99', dst: '198.19.0.1' },
      udp: { sport: 9, dport: 7 },
    }),
  );
  // Multicast and non-IP from the pod stay on the link.
  A.wl.inject(
    buildFrame({
      eth: { src: podA, dst: '01:00:5e:00:00:01' },
      ipv4: { src: '198.19.0.1', dst: '224.0.0.1' },
      udp: { sport: 7, dport: 9 },
    }),
  );
  settle();
  assert.equal(A.wl.take().length, 0);
  const ca = A.counters();
  assert.equal(ca.wireguard!['drop:no-allowed-ip'], 1);
  assert.equal(ca.wireguard!['drop:not-allowed-source'], 1);
  assert.equal(ca.wireguard!['drop:multicast'], 1);
  assert.equal(ca.wireguard!.handshakes, 1);
  assert.equal(ca.wireguard!.initiations_sent, 1);
  assert.equal(ca.wireguard!.arp_replies, 1);
  assert.equal(ca['conn:w']!.encap_frames, 1);
  assert.equal(ca['conn:w']!.decap_frames, 1);
  const cb = B.counters();
  assert.equal(cb.wireguard!.responses_sent, 1);
  assert.equal(cb['conn:w']!.decap_frames, 1);
  // Garbage at the port is counted by reason, never delivered.
  const junk = buildFrame({
    ipv4: { src: '198.18.0.2', dst: '198.18.0.1' },
    udp: { sport: 51820, dport: 51820 },
    payload: new Uint8Array([4, 0, 0, 0, 1, 2]),
  });
  A.wg.inject(junk);
  settle();
  assert.equal(A.counters().wireguard!['drop:truncated'], 1);
});
