/**
 * GSO trains through the dataplane (the layout itself and how the kernel cuts it: offload.test.ts):
 * the uplink that sends them (src/dataplane/ports/train.ts) over an in-memory uplink port and a
 * recording sender — order within the link, the virtio_net_hdr in front of a train, the address
 * handed to the kernel, the counters of sent and failed trains — and the stages a train passes,
 * encapsulation and next hop.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Link } from '../../src/dataplane/link.ts';
import { PacketMemory } from '../../src/dataplane/memory.ts';
import { PORT_COUNTERS } from '../../src/dataplane/plan.ts';
import { PC } from '../../src/dataplane/port.ts';
import { TrainPort } from '../../src/dataplane/ports/train.ts';
import { trainsSupported } from '../../src/uplink/afpacket/train-socket.ts';
import { getSys } from '../../src/sys/index.ts';
import { MemoryPort } from '../support/memory-port.ts';
import {
  VNET_F_NEEDS_CSUM,
  VNET_GSO_UDP_L4,
  vnetCsumOffset,
  vnetCsumStart,
  vnetFlags,
  vnetGsoSize,
  vnetGsoType,
  vnetHdrLen,
} from '../../src/packet/offload.ts';
import { EncapStage } from '../../src/dataplane/stages/encap.ts';
import { NexthopStage } from '../../src/dataplane/stages/nexthop.ts';
import { NextHopTable, nextHopTableBytes, NH_OK } from '../../src/dataplane/nexthop-table.ts';
import { NeighbourTableWriter, NeighbourTableReader } from '../../src/netlink/neigh-table.ts';
import { CONNECTION_COUNTERS, ENCAP_COUNTERS, NEXTHOP_COUNTERS, type VxlanConnectionPlan } from '../../src/dataplane/plan.ts';

interface Sent {
  address: number;
  length: number;
  /** How many frames the inner port had put on the wire when the train went. */
  innerSent: number;
}

function setup(result = (_n: number): number => 1) {
  const memory = new PacketMemory();
  const c = new Float64Array(PORT_COUNTERS.length);
  const inner = new MemoryPort({ name: 'uplink', memory, counters: c, base: 0 });
  const calls: Sent[] = [];
  const sender = {
    closed: false,
    send(address: number, length: number): number {
      calls.push({ address, length, innerSent: inner.sent.length });
      return result(calls.length);
    },
    close(): void {
      this.closed = true;
    },
  };
  const port = new TrainPort(inner, sender, memory, c, 0);
  // Frames live in a buffer of their own (as a workload port's segment slots do).
  const buf = new Uint8Array(new ArrayBuffer(1 << 16));
  const id = memory.register(buf.buffer);
  return { memory, c, inner, calls, sender, port, buf, id };
}

/** An outer Ethernet + IPv4 (or IPv6) + UDP header at buf[at], the rest of `len` bytes zero. */
function outer(buf: Uint8Array, at: number, len: number, v6 = false, mark = 0): void {
  buf.fill(0, at, at + len);
  buf[at + 12] = v6 ? 0x86 : 0x08;
  buf[at + 13] = v6 ? 0xdd : 0x00;
  buf[at + len - 1] = mark;
}

test('ordinary frames before a train are on the wire before it; those after it follow at flush', () => {
  const { port, inner, calls, buf, id, c } = setup();
  const link = new Link('in', 16);
  outer(buf, 1000, 100, false, 1);
  outer(buf, 2000, 100, false, 2);
  outer(buf, 4096, 14 + 20 + 8 + 3 * 1000 - 8, false); // a train of three 992-byte inner frames, chunk 1000
  outer(buf, 9000, 100, false, 3);
  link.push(id, 1000, 100, 0);
  link.push(id, 2000, 100, 0);
  link.push(id, 4096, 14 + 20 + 8 + 3 * 1000 - 8, 0, 0, 1000);
  link.push(id, 9000, 100, 0);
  const queued = port.tx(link);
  assert.equal(calls.length, 1, 'one sendto for the train');
  assert.equal(calls[0]!.innerSent, 2, 'the two frames in front of it were flushed first');
  assert.equal(queued, 2 + 3 + 1, 'frames queued: 2 + the train’s 3 packets + 1');
  assert.equal(inner.sent.length, 2, 'the frame behind the train waits for flush()');
  port.flush();
  assert.deepEqual(
    inner.sent.map((f) => f[f.length - 1]),
    [1, 2, 3],
    'ordinary frames in order',
  );
  assert.equal(c[PC.txGsoTrains], 1);
  // tx_frames: 3 packets of the train (the memory port counts its own 3 frames).
  assert.equal(c[PC.txFrames], 3 + 3);
});

test('the train goes with a virtio_net_hdr in the 10 bytes in front of it, by the buffer’s address', () => {
  for (const v6 of [false, true]) {
    const { port, calls, buf, id, c } = setup();
    const l4 = v6 ? 54 : 34;
    const len = l4 + 8 + 1510 * 2 + 700;
    outer(buf, 4096, len, v6);
    const link = new Link('in', 4);
    link.push(id, 4096, len, 0, 0, 1510);
    port.tx(link);
    assert.equal(calls.length, 1);
    assert.equal(calls[0]!.address, Number(getSys().addressOf(buf)) + 4096 - 10);
    assert.equal(calls[0]!.length, len + 10);
    const v = 4096 - 10;
    assert.equal(vnetFlags(buf, v), VNET_F_NEEDS_CSUM);
    assert.equal(vnetGsoType(buf, v), VNET_GSO_UDP_L4);
    assert.equal(vnetGsoSize(buf, v), 1510);
    assert.equal(vnetHdrLen(buf, v), l4 + 8);
    assert.equal(vnetCsumStart(buf, v), l4, 'checksum from the outer UDP header');
    assert.equal(vnetCsumOffset(buf, v), 6, 'into its checksum field');
    assert.equal(c[PC.txFrames], 3, 'three packets');
    assert.equal(c[PC.txBytes], len + 2 * (l4 + 8), 'the bytes of the three packets');
  }
});

test('a full send buffer drops the train’s packets (counted), anything else is also an error; close closes both', () => {
  const { port, buf, id, c, sender, inner } = setup((n) => (n === 1 ? -11 : -22));
  outer(buf, 4096, 34 + 8 + 2000, false);
  const link = new Link('in', 4);
  link.push(id, 4096, 34 + 8 + 2000, 0, 0, 1000);
  assert.equal(port.tx(link), 0);
  assert.equal(c[PC.txDropped], 2);
  assert.equal(c[PC.errors], 0, 'EAGAIN is not an error');
  link.clear();
  link.push(id, 4096, 34 + 8 + 2000, 0, 0, 1000);
  port.tx(link);
  assert.equal(c[PC.txDropped], 4);
  assert.equal(c[PC.errors], 1, 'EINVAL is');
  assert.equal(c[PC.txGsoTrains], 0);
  port.close();
  assert.ok(sender.closed && inner.closed);
});

test('without a socket the port passes through, says why, and the graph builds no trains for it', () => {
  const memory = new PacketMemory();
  const c = new Float64Array(PORT_COUNTERS.length);
  const inner = new MemoryPort({ name: 'uplink', memory, counters: c, base: 0, maxFrame: 1514 });
  const port = new TrainPort(inner, 'off (PINHOLE_GSO_TRAINS=off)', memory, c, 0);
  assert.equal(port.sendsTrains, false);
  assert.match(port.detail, /no GSO trains: off/);
  // A train that reached it anyway is the wrapped port's to refuse (too big), never a throw.
  const buf = new Uint8Array(new ArrayBuffer(1 << 16));
  const id = memory.register(buf.buffer);
  outer(buf, 4096, 3000);
  const link = new Link('in', 4);
  link.push(id, 4096, 3000, 0, 0, 1000);
  assert.equal(port.tx(link), 0);
  assert.equal(c[PC.txTooBig], 1);
});

// ---- the stages a train passes: encapsulation and next hop ----
const CONN: VxlanConnectionPlan = {
  index: 0,
  name: 'c0',
  vni: 4242,
  family: 4,
  local: '198.18.0.1',
  remote: '198.18.0.2',
  port: 4789,
  ttl: 64,
  srcMac: '02:00:00:00:00:0a',
  maxInnerFrame: 1514,
  workloadPort: 'wl:c0',
};

test('encapsulation: a train gets the outer headers once, a VXLAN header in every gap, and counts its packets', () => {
  const memory = new PacketMemory();
  const buf = new Uint8Array(new ArrayBuffer(1 << 16));
  const id = memory.register(buf.buffer);
  const c = new Float64Array(ENCAP_COUNTERS.length + CONNECTION_COUNTERS.length);
  const out = new Link('out', 8);
  const encap = new EncapStage([CONN], out, memory, c, 0, Int32Array.of(ENCAP_COUNTERS.length));
  const inner = 1000 - 8; // inner frames of 992 bytes, chunk 1000
  const at = 4096;
  const trainLen = 3 * 1000 - 8 - 100; // the last inner frame 100 bytes shorter
  for (let k = 0; k < 3; k++) buf.fill(0x40 + k, at + k * 1000, at + k * 1000 + (k < 2 ? inner : inner - 100));
  const link = new Link('in', 8);
  link.push(id, at, trainLen, 0, 0, 1000);
  encap.push(link);
  assert.equal(out.n, 1);
  assert.equal(out.gso[0], 1000, 'still a train');
  assert.equal(out.addr[0], at - 50);
  assert.equal(out.len[0], 50 + trainLen);
  for (let k = 1; k < 3; k++) {
    const v = at + k * 1000 - 8;
    assert.deepEqual(
      [...buf.subarray(v, v + 8)],
      [0x08, 0, 0, 0, 0x00, 0x10, 0x92, 0],
      `VXLAN header in front of inner frame ${k} (VNI 4242)`,
    );
  }
  assert.equal(buf[at + 999 - 8], 0x40, 'inner frame 0 untouched');
  assert.equal(buf[at + 1000], 0x41, 'inner frame 1 untouched');
  assert.equal(c[ENCAP_COUNTERS.indexOf('frames')], 3, 'three packets');
  const cb = ENCAP_COUNTERS.length;
  assert.equal(c[cb + CONNECTION_COUNTERS.indexOf('encap_frames')], 3);
  assert.equal(c[cb + CONNECTION_COUNTERS.indexOf('encap_bytes')], 2 * inner + inner - 100, 'inner bytes, gaps not counted');
  // A train whose inner frames exceed what fits the uplink: all of its packets are counted drops.
  link.push(id, at, 2 * 1600 - 8, 0, 0, 1600);
  encap.push(link);
  assert.equal(out.n, 1);
  assert.equal(c[ENCAP_COUNTERS.indexOf('drop:too-big')], 2);
});

/** A next-hop stage over one connection, with its tables, and a breath that sends a train and an ordinary frame. */
function nexthopStage(): {
  buf: Uint8Array;
  id: number;
  out: Link;
  link: Link;
  nh: NexthopStage;
  c: Float64Array;
  asks: number[];
  nexthops: NextHopTable;
  neigh: NeighbourTableWriter;
  /** Publishes 198.18.0.<host> as the next hop. */
  route(host: number): void;
  /** The kernel's entry for 198.18.0.<host>: MAC 02:00:00:00:00:<mac>, REACHABLE. */
  entry(host: number, mac: number): void;
  /** One breath; returns the last MAC byte each frame that left had. */
  breathe(now: number): number[];
} {
  const memory = new PacketMemory();
  const buf = new Uint8Array(new ArrayBuffer(1 << 16));
  const id = memory.register(buf.buffer);
  const nexthops = new NextHopTable(new SharedArrayBuffer(nextHopTableBytes(1)));
  const neigh = new NeighbourTableWriter(16);
  const c = new Float64Array(NEXTHOP_COUNTERS.length + CONNECTION_COUNTERS.length);
  const out = new Link('out', 8);
  const asks: number[] = [];
  const nh = new NexthopStage(
    [CONN],
    out,
    memory,
    nexthops,
    new NeighbourTableReader(neigh.buffer),
    c,
    0,
    Int32Array.of(NEXTHOP_COUNTERS.length),
    { frames: 4, timeoutMs: 1000 },
    (k) => asks.push(k),
  );
  const link = new Link('in', 8);
  return {
    buf,
    id,
    out,
    link,
    nh,
    c,
    asks,
    nexthops,
    neigh,
    route: (host) => nexthops.write(0, { state: NH_OK, family: 4, ifindex: 2, words: [(198 << 24) | (18 << 16) | host, 0, 0, 0] }),
    entry: (host, mac) =>
      void neigh.upsert({
        family: 4,
        ifindex: 2,
        addr: Uint8Array.of(198, 18, 0, host),
        mac: Uint8Array.of(2, 0, 0, 0, 0, mac),
        state: 0x02,
      }),
    breathe: (now) => {
      outer(buf, 4096, 3000);
      link.push(id, 4096, 3000, 0, 0, 1000);
      link.push(id, 8192, 100, 0);
      nh.push(link, now);
      const macs = [];
      for (let i = 0; i < out.n; i++) macs.push(memory.u8[out.mem[i]!]![out.addr[i]! + 5]!);
      out.clear();
      return macs;
    },
  };
}

const NC = (name: (typeof NEXTHOP_COUNTERS)[number]): number => NEXTHOP_COUNTERS.indexOf(name);

test('next hop: a train passes through with its chunk size; on a miss it is dropped and counted, never held', () => {
  const t = nexthopStage();
  t.route(2);
  // A train over IPv4: 42 bytes of outer headers, then 2,958 bytes cut every 1,000: 3 packets.
  outer(t.buf, 4096, 3000);
  t.link.push(t.id, 4096, 3000, 0, 0, 1000);
  t.link.push(t.id, 8192, 100, 0);
  t.nh.push(t.link, 0);
  assert.equal(t.out.n, 0);
  assert.equal(t.nh.held, 1, 'the ordinary frame waits');
  assert.equal(t.c[NC('misses')], 3 + 1, 'misses count packets');
  assert.equal(t.c[NC('drop:queue-full')], 3, "the train's three packets are counted drops");
  assert.equal(t.c[NEXTHOP_COUNTERS.length + CONNECTION_COUNTERS.indexOf('drop_nexthop')], 3);
  assert.deepEqual(t.asks, [0], 'the kernel is asked to resolve');
  t.entry(2, 0xb);
  t.link.push(t.id, 4096, 3000, 0, 0, 1000);
  t.nh.push(t.link, 1);
  assert.equal(t.out.n, 2, 'the held frame, then the train');
  assert.equal(t.out.gso[1], 1000);
  assert.equal(t.c[NC('frames')], 3, "the train's packets passed");
  assert.deepEqual([...t.buf.subarray(4096, 4102)], [2, 0, 0, 0, 0, 0xb], 'the train got the next hop MAC');
  t.nh.dispose('reconfigured');
});

test('next hop: a writer busy on either table is no miss: frames keep the last MAC, nothing is held, dropped or asked', () => {
  const t = nexthopStage();
  t.route(2);
  t.entry(2, 0xa);
  assert.deepEqual(t.breathe(0), [0xa, 0xa]);
  // The mirror is writing (its section open through every retry: NEIGH_BUSY), and what it
  // writes is a new MAC: a lookup meanwhile may see it torn, so the stage keeps the last one.
  t.neigh.begin();
  t.entry(2, 0xb);
  assert.deepEqual(t.breathe(1), [0xa, 0xa], 'the neighbour table busy: the last MAC');
  t.neigh.end();
  // The main thread is republishing the next hop (the slot's sequence odd: read() gives up),
  // with the neighbour table idle and holding the new MAC: the stage does not look it up.
  Atomics.add(t.nexthops.w, 0, 1);
  assert.deepEqual(t.breathe(2), [0xa, 0xa], 'the next-hop slot busy: still the last MAC');
  Atomics.add(t.nexthops.w, 0, 1);
  assert.deepEqual(t.breathe(3), [0xb, 0xb], 'both writers done: the new MAC');
  // The main thread rewrites the slot with the same next hop while the mirror writes its entry:
  // no move, so the last MAC still holds.
  t.neigh.begin();
  t.entry(2, 0xd);
  t.route(2);
  assert.deepEqual(t.breathe(4), [0xb, 0xb], 'the same next hop rewritten: the last MAC');
  t.neigh.end();
  assert.deepEqual(t.breathe(5), [0xd, 0xd]);
  assert.equal(t.c[NC('misses')], 0, 'no miss');
  assert.equal(t.c[NC('drop:queue-full')], 0, 'no train dropped');
  assert.equal(t.nh.held, 0, 'nothing held');
  assert.deepEqual(t.asks, [], 'the kernel was not asked to resolve');
  assert.equal(t.c[NC('frames')], 6 * (3 + 1));
  t.nh.dispose('reconfigured');
});

test('next hop: a busy writer before there is an answer to keep holds frames; it never sends them to another next hop’s MAC or drops them as unroutable', () => {
  const t = nexthopStage();
  t.route(2);
  t.entry(2, 0xa);
  // The first read of the slot finds it busy: not computed yet, so the frame waits (the train,
  // which a wait slot cannot take, is dropped as a miss), nothing is dropped as unroutable.
  Atomics.add(t.nexthops.w, 0, 1);
  assert.deepEqual(t.breathe(0), []);
  assert.equal(t.nh.held, 1, 'the ordinary frame waits');
  assert.equal(t.c[NC('drop:no-route')], 0, 'nothing dropped as unroutable');
  Atomics.add(t.nexthops.w, 0, 1);
  assert.deepEqual(t.breathe(1), [0xa, 0xa, 0xa], 'the held frame, then this breath’s two');
  // The route moves to 198.18.0.3 while the mirror is writing that next hop's entry: the MAC
  // kept from 198.18.0.2 is no answer for it, so the frames wait rather than go to the old one.
  t.neigh.begin();
  t.entry(3, 0xc);
  t.route(3);
  assert.deepEqual(t.breathe(2), [], 'nothing to the old next hop’s MAC');
  assert.equal(t.nh.held, 1);
  t.neigh.end();
  assert.deepEqual(t.breathe(3), [0xc, 0xc, 0xc], 'the new next hop’s MAC once the mirror is done');
  assert.deepEqual(t.asks, [], 'a busy table asks the kernel nothing');
  assert.equal(t.c[NC('misses')], 2 * (3 + 1), 'the two breaths without an answer');
  assert.equal(t.c[NC('drop:queue-full')], 2 * 3, 'their trains');
  assert.equal(t.c[NC('flushed')], 2);
  t.nh.dispose('reconfigured');
});

test('trains need Linux 6.2 (AF_PACKET takes UDP_L4 GSO in a vnet header from then on)', () => {
  for (const r of ['6.2.0', '6.18.44-fc-v657', '7.0.0-rc1', '10.1.1']) assert.equal(trainsSupported(r), true, r);
  for (const r of ['6.1.99', '5.19.0', '4.18.0-553.el8', 'unknown', '']) assert.equal(trainsSupported(r), false, r);
});
