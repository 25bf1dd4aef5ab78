/**
 * The dataplane engine and the VXLAN stages over in-memory ports (no privileges): the graphs
 * are built by src/dataplane/graph.ts exactly as a worker builds them, only the ports are
 * test/support/memory-port.ts. Counters are read by name (planCounters + readCounters), as the
 * main thread reads a worker's.
 *
 *   cross-connect   frames in → the same bytes out, in order; per-breathe bounds (link capacity,
 *                   port batch); a full TX ring drops and counts; the run loop stops on its flag
 *   vxlan           decapsulation to the right workload port by VNI and remote; encapsulation
 *                   with the right outer headers and the next hop's MAC from the neighbour
 *                   table; a missing neighbour holds frames (bounded), flushes them when the
 *                   entry appears, drops them after the timeout; every drop under its reason
 *
 * Received frames are poisoned when their breathe ends (memory-port.ts), so a stage that kept a
 * descriptor instead of copying would send garbage and fail the byte comparisons.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readCounters, counterBase, type CounterValues } from '../../src/dataplane/counters.ts';
import type { Engine } from '../../src/dataplane/engine.ts';
import { buildGraph, type GraphShared } from '../../src/dataplane/graph.ts';
import { PacketMemory } from '../../src/dataplane/memory.ts';
import { addressWords, NextHopTable, nextHopTableBytes, NH_NO_ROUTE, NH_OK } from '../../src/dataplane/nexthop-table.ts';
import { CTRL_SLOTS, CTRL_STOP, planCounters, type PortPlan, type VxlanConnectionPlan, type WorkerPlan } from '../../src/dataplane/plan.ts';
import { NeighbourTableWriter } from '../../src/netlink/neigh-table.ts';
import { NUD_INCOMPLETE, NUD_REACHABLE, NUD_STALE } from '../../src/netlink/rtnl.ts';
import { buildFrame } from '../../src/packet/build.ts';
import { pseudoHeaderSumV6, verifyChecksum } from '../../src/packet/checksum.ts';
import { parseIP } from '../../src/packet/ip.ts';
import { formatMac, parseMac } from '../../src/packet/mac.ts';
import { OUTER_V4_BYTES, OUTER_V6_BYTES, parseVxlan, VxlanParse, VXLAN_SPORT_MAX, VXLAN_SPORT_MIN } from '../../src/packet/vxlan.ts';
import { allocations, bytesOf } from '../support/heap-sampling.ts';
import { MemoryPort, type MemoryPortOptions } from '../support/memory-port.ts';

type PortOpts = Omit<MemoryPortOptions, 'name' | 'memory' | 'counters' | 'base'>;

interface Rig {
  plan: WorkerPlan;
  engine: Engine;
  ports: Map<string, MemoryPort>;
  port(name: string): MemoryPort;
  counters(): CounterValues;
  /** Breathes at `now` and returns the frames received. */
  breathe(now?: number): number;
}

function rig(plan: WorkerPlan, portOpts: Record<string, PortOpts>, shared: GraphShared = {}): Rig {
  const layout = planCounters(plan);
  const c = new Float64Array(layout.size);
  const memory = new PacketMemory();
  const ports = new Map<string, MemoryPort>();
  for (const p of plan.ports) {
    ports.set(
      p.name,
      new MemoryPort({ name: p.name, memory, counters: c, base: counterBase(layout, `port:${p.name}`), ...portOpts[p.name] }),
    );
  }
  const engine = buildGraph(plan, layout, c, memory, ports, shared);
  let clock = 0;
  return {
    plan,
    engine,
    ports,
    port: (name) => ports.get(name)!,
    counters: () => readCounters(layout, c),
    breathe: (now) => engine.breathe(now ?? clock++),
  };
}

const sum = (fs: readonly Uint8Array[]): number => fs.reduce((s, f) => s + f.length, 0);

/** The port counters every port keeps (ports may add gauges of their own). */
const PORT_BASICS = ['rx_frames', 'rx_bytes', 'tx_frames', 'tx_bytes', 'tx_dropped', 'tx_too_big', 'kernel_drops', 'errors'];

function pick(o: Record<string, number>, names: readonly string[]): Record<string, number> {
  return Object.fromEntries(names.map((n) => [n, o[n]!]));
}

// ---------------------------------------------------------------------------------------------
// Cross-connect

function portPlan(name: string, role: PortPlan['role'], rx: boolean, connection?: number): PortPlan {
  return { name, role, ifname: `mem-${name}`, queue: 0, driver: 'afpacket', rx, ...(connection !== undefined ? { connection } : {}) };
}

function crossPlan(batchSize: number, withTo = true): WorkerPlan {
  return {
    worker: 0,
    graph: 'cross-connect',
    ports: [portPlan('uplink', 'uplink', true), ...(withTo ? [portPlan('to', 'to', false)] : [])],
    connections: [],
    batchSize,
    waitQueue: { frames: 0, timeoutMs: 0 },
  };
}

const plainFrame = (i: number, size: number): Uint8Array =>
  buildFrame({
    ipv4: { src: '198.18.0.2', dst: '198.18.0.1' },
    udp: { sport: 40000 + (i & 0xfff), dport: 4789 },
    payload: new Uint8Array(size).fill(i & 0xff),
  });

test('cross-connect: N frames in, the same bytes out in order; counters exact; at most one link of frames per breathe', () => {
  // The port would hand over 1000 frames at once; the link (max(batchSize, 64) = 64) bounds a breathe.
  const r = rig(crossPlan(16), { uplink: { batchSize: 1000, slots: 256 } });
  const sent = Array.from({ length: 200 }, (_, i) => plainFrame(i, 18 + ((i * 37) % 1400)));
  for (const f of sent) assert.equal(r.port('uplink').inject(f), true);
  const perBreathe: number[] = [];
  for (let n = r.breathe(); n > 0; n = r.breathe()) perBreathe.push(n);
  assert.deepEqual(perBreathe, [64, 64, 64, 8]);
  assert.deepEqual(r.port('to').sent, sent);
  const bytes = sum(sent);
  const v = r.counters();
  assert.deepEqual(pick(v['port:uplink']!, PORT_BASICS), {
    rx_frames: 200,
    rx_bytes: bytes,
    tx_frames: 0,
    tx_bytes: 0,
    tx_dropped: 0,
    tx_too_big: 0,
    kernel_drops: 0,
    errors: 0,
  });
  assert.deepEqual(pick(v['port:to']!, PORT_BASICS), {
    rx_frames: 0,
    rx_bytes: 0,
    tx_frames: 200,
    tx_bytes: bytes,
    tx_dropped: 0,
    tx_too_big: 0,
    kernel_drops: 0,
    errors: 0,
  });
  assert.deepEqual(v.engine, { breaths: 5, idle_waits: 0, frames: 200, spin_ms: 0 });
  assert.equal(r.port('uplink').borrowed, 0, 'every received frame released at the end of its breathe');
});

test('cross-connect: the port batch bounds a breathe when it is below the link capacity; slots are reused', () => {
  const r = rig(crossPlan(16), { uplink: { batchSize: 16, slots: 40 } });
  const up = r.port('uplink');
  const sent: Uint8Array[] = [];
  // 120 frames through 40 receive slots: only possible if released slots come back.
  for (let round = 0; round < 3; round++) {
    for (let i = 0; i < 40; i++) {
      const f = plainFrame(round * 40 + i, 64);
      sent.push(f);
      assert.equal(up.inject(f), true);
    }
    assert.equal(up.inject(plainFrame(999, 64)), false, 'a full receive queue refuses');
    assert.deepEqual([r.breathe(), r.breathe(), r.breathe(), r.breathe()], [16, 16, 8, 0]);
  }
  assert.deepEqual(r.port('to').sent, sent);
  const v = r.counters();
  assert.equal(v['port:uplink']!.kernel_drops, 3);
  assert.equal(v['port:uplink']!.rx_frames, 120);
  assert.equal(v['port:to']!.tx_frames, 120);
  assert.equal(v.engine!.breaths, 12);
});

test('cross-connect: a full TX ring drops and counts the rest of the batch; the next flush has room again', () => {
  const r = rig(crossPlan(64), { to: { txCapacity: 10, maxFrame: 1000 } });
  const frames = Array.from({ length: 30 }, (_, i) => plainFrame(i, 100));
  for (const f of frames) r.port('uplink').inject(f);
  assert.equal(r.breathe(), 30);
  assert.deepEqual(r.port('to').take(), frames.slice(0, 10));
  let v = r.counters();
  assert.equal(v['port:to']!.tx_frames, 10);
  assert.equal(v['port:to']!.tx_bytes, sum(frames.slice(0, 10)));
  assert.equal(v['port:to']!.tx_dropped, 20);
  // Next breathe: room for 10 again; a frame above the port's largest is a too-big drop, not a TX drop.
  const big = plainFrame(1, 1200);
  r.port('uplink').inject(frames[0]!);
  r.port('uplink').inject(big);
  r.port('uplink').inject(frames[1]!);
  assert.equal(r.breathe(), 3);
  assert.deepEqual(r.port('to').take(), [frames[0], frames[1]]);
  v = r.counters();
  assert.equal(v['port:to']!.tx_frames, 12);
  assert.equal(v['port:to']!.tx_dropped, 20);
  assert.equal(v['port:to']!.tx_too_big, 1);
  assert.equal(v['port:uplink']!.rx_frames, 33);
  assert.equal(v.engine!.frames, 33);
});

test('cross-connect without a `to` port receives and drops; run() breathes until the stop flag', () => {
  const r = rig(crossPlan(64, false), { uplink: { slots: 8 } });
  const up = r.port('uplink');
  const ctrl = new Int32Array(new SharedArrayBuffer(CTRL_SLOTS * 4));
  let rounds = 0;
  // The engine asks readable() before it sleeps: refill there, stop after five refills.
  up.readable = () => {
    if (rounds === 5) {
      Atomics.store(ctrl, CTRL_STOP, 1);
      return true;
    }
    rounds++;
    for (let i = 0; i < 8; i++) up.inject(plainFrame(i, 60));
    return true;
  };
  r.engine.run(ctrl);
  const v = r.counters();
  assert.equal(v['port:uplink']!.rx_frames, 40);
  assert.equal(v['port:uplink']!.kernel_drops, 0);
  assert.equal(v.engine!.frames, 40);
  assert.equal(v.engine!.idle_waits, 6, 'one idle breathe before each refill and before the stop');
  assert.equal(v.engine!.breaths, 11);
});

test('run() with spinUs watches the rings that long after the last frame before it waits; a wake-up without frames does not spin again', () => {
  const spinUs = 20_000;
  const r = rig({ ...crossPlan(64, false), spinUs }, { uplink: { slots: 8 } });
  const up = r.port('uplink');
  const ctrl = new Int32Array(new SharedArrayBuffer(CTRL_SLOTS * 4));
  for (let i = 0; i < 8; i++) up.inject(plainFrame(i, 60));
  let lastFrames = -1;
  const rx = up.rx.bind(up);
  up.rx = (out, tag) => {
    const n = rx(out, tag);
    if (n > 0) lastFrames = performance.now();
    return n;
  };
  // readable() is asked while the engine polls and once more when it is about to sleep (after
  // counting an idle wait): note the waits, when, and how many breaths it took.
  const waits: { at: number; breaths: number }[] = [];
  let polls = 0;
  up.readable = () => {
    const v = r.counters().engine!;
    if (v.idle_waits! === waits.length) {
      polls++;
      return false; // polling: nothing yet
    }
    waits.push({ at: performance.now(), breaths: v.breaths! });
    if (waits.length === 2) Atomics.store(ctrl, CTRL_STOP, 1);
    return true; // as if poll() returned at once with nothing (a timeout)
  };
  r.engine.run(ctrl);
  assert.equal(waits.length, 2);
  assert.ok(lastFrames > 0, 'the frames were received');
  // The breath that received the frames started before `lastFrames`: allow it a millisecond.
  assert.ok(waits[0]!.at - lastFrames >= spinUs / 1000 - 1, `first wait ${(waits[0]!.at - lastFrames).toFixed(2)} ms after the last frame`);
  assert.ok(polls > 20, `it watched the ring meanwhile (${polls} looks)`);
  // A breath after each millisecond of polling: the stages' timers run.
  assert.ok(waits[0]!.breaths >= spinUs / 1000 / 2, `${waits[0]!.breaths} breaths while polling`);
  assert.equal(waits[1]!.breaths - waits[0]!.breaths, 1, 'after a wake-up without frames it waits again at the next empty breath');
  const v = r.counters();
  assert.equal(v.engine!.idle_waits, 2);
  assert.equal(v['port:uplink']!.rx_frames, 8);
  const spun = v.engine!.spin_ms!;
  assert.ok(spun >= spinUs / 1000 - 1 && spun <= waits[1]!.at - lastFrames, `spin_ms ${spun.toFixed(2)}: the polling, counted`);
});

test('run() with spinUs: a frame that shows while the engine polls is taken at once, and the spin starts again after it', () => {
  const spinUs = 50_000;
  const r = rig({ ...crossPlan(64, false), spinUs }, { uplink: { slots: 8 } });
  const up = r.port('uplink');
  const ctrl = new Int32Array(new SharedArrayBuffer(CTRL_SLOTS * 4));
  up.inject(plainFrame(0, 60));
  const rx = up.rx.bind(up);
  const got: number[] = [];
  up.rx = (out, tag) => {
    const n = rx(out, tag);
    if (n > 0) got.push(performance.now());
    return n;
  };
  let injected = -1;
  const readable = up.readable.bind(up);
  up.readable = () => {
    const v = r.counters().engine!;
    if (v.idle_waits! > 0) {
      Atomics.store(ctrl, CTRL_STOP, 1);
      return true;
    }
    // 5 ms into the spin after the first frame, a second one arrives.
    if (injected < 0 && got.length === 1 && performance.now() - got[0]! >= 5) {
      up.inject(plainFrame(1, 60));
      injected = performance.now();
    }
    return readable();
  };
  r.engine.run(ctrl);
  assert.equal(got.length, 2, 'both frames received');
  assert.ok(got[1]! - injected < 1, `the second frame was taken ${(got[1]! - injected).toFixed(3)} ms after it arrived`);
  assert.equal(r.counters().engine!.idle_waits, 1, 'one wait: after the spin that followed the second frame');
});

// ---------------------------------------------------------------------------------------------
// VXLAN

const IFINDEX = 2;
const SRC_MAC = '02:00:00:00:00:01';
const MAC_B = '02:00:00:00:00:02';
const MAC_C = '02:00:00:00:00:03';
const MAC_B6 = '02:00:00:00:00:22'; // the remote's own IPv6 entry: not the next hop
const MAC_GW6 = '02:00:00:00:00:fe';
const GW6 = '2001:db8::fe';

function conn(index: number, vni: number, family: 4 | 6, local: string, remote: string): VxlanConnectionPlan {
  return {
    index,
    name: `c${index}`,
    vni,
    family,
    local,
    remote,
    port: 4789,
    ttl: 64,
    srcMac: SRC_MAC,
    maxInnerFrame: 1500 + 14 - (family === 4 ? OUTER_V4_BYTES : OUTER_V6_BYTES),
    workloadPort: `wl:c${index}`,
  };
}

/** c0 and c2 share VNI 100 and differ by remote; c1 is IPv6 through a gateway. */
const CONNS = [
  conn(0, 100, 4, '198.18.0.1', '198.18.0.2'),
  conn(1, 200, 6, '2001:db8::1', '2001:db8::2'),
  conn(2, 100, 4, '198.18.0.1', '198.18.0.3'),
];

interface VxRig extends Rig {
  neigh: NeighbourTableWriter;
  nh: NextHopTable;
  /** Connections the nexthop stage asked the main thread about, in order. */
  asks: number[];
}

function neighbour(family: 4 | 6, addr: string, mac: string | undefined, state: number) {
  return { family, ifindex: IFINDEX, addr: parseIP(addr).bytes, mac: mac ? parseMac(mac) : undefined, state };
}

function vxRig(waitQueue = { frames: 4, timeoutMs: 100 }, portOpts: Record<string, PortOpts> = {}): VxRig {
  const plan: WorkerPlan = {
    worker: 0,
    graph: 'vxlan',
    ports: [portPlan('uplink', 'uplink', true), ...CONNS.map((k) => portPlan(k.workloadPort, 'workload', true, k.index))],
    connections: CONNS,
    batchSize: 64,
    waitQueue,
  };
  const neigh = new NeighbourTableWriter(64);
  neigh.upsert(neighbour(4, '198.18.0.2', MAC_B, NUD_REACHABLE));
  neigh.upsert(neighbour(4, '198.18.0.3', MAC_C, NUD_STALE));
  neigh.upsert(neighbour(6, '2001:db8::2', MAC_B6, NUD_REACHABLE));
  const nh = new NextHopTable(new SharedArrayBuffer(nextHopTableBytes(CONNS.length)));
  const hop = (i: number, via: string): void =>
    nh.write(i, { state: NH_OK, family: parseIP(via).family, ifindex: IFINDEX, words: addressWords(parseIP(via).bytes) });
  hop(0, '198.18.0.2');
  hop(1, GW6);
  hop(2, '198.18.0.3');
  const asks: number[] = [];
  const r = rig(plan, portOpts, { nexthops: nh.buffer, neighbours: neigh.buffer, ask: (k) => asks.push(k) });
  return { ...r, neigh, nh, asks };
}

/** An inner frame from pod A to pod B of connection k; `seq` goes into the payload and the ports. */
function innerFrame(k: number, seq: number, payload = 64): Uint8Array {
  const body = new Uint8Array(payload).fill(seq & 0xff);
  if (k === 1) {
    return buildFrame({
      eth: { src: '02:00:00:01:01:01', dst: '02:00:00:01:01:02' },
      ipv6: { src: '2001:db8:100:1::1', dst: '2001:db8:100:1::2' },
      udp: { sport: 1000 + seq, dport: 2000 },
      payload: body,
    });
  }
  return buildFrame({
    eth: { src: `02:00:00:01:0${k}:01`, dst: `02:00:00:01:0${k}:02` },
    ipv4: { src: `198.19.${k}.1`, dst: `198.19.${k}.2` },
    udp: { sport: 1000 + seq, dport: 2000 },
    payload: body,
  });
}

/** An inner frame of exactly `len` bytes. */
function innerOfLength(k: number, len: number): Uint8Array {
  const f = innerFrame(k, 0, 0);
  return innerFrame(k, 0, len - f.length);
}

function vxlanHeader(vni: number, flags = 0x08): Uint8Array {
  return new Uint8Array([flags, 0, 0, 0, (vni >>> 16) & 0xff, (vni >>> 8) & 0xff, vni & 0xff, 0]);
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

/** An encapsulated frame as a peer sends it to us. */
function outerFrame(o: { src: string; dst: string; vni: number; inner: Uint8Array; dport?: number; flags?: number }): Uint8Array {
  const family = parseIP(o.src).family;
  const l3 = family === 4 ? { ipv4: { src: o.src, dst: o.dst } } : { ipv6: { src: o.src, dst: o.dst } };
  return buildFrame({
    eth: { src: MAC_B, dst: SRC_MAC },
    ...l3,
    udp: { sport: 51234, dport: o.dport ?? 4789 },
    payload: concat(vxlanHeader(o.vni, o.flags), o.inner),
  });
}

/** Parses an encapsulated frame we sent; asserts it is well formed. */
function parseOuter(f: Uint8Array): VxlanParse & { dstMac: string; srcMac: string; inner: Uint8Array } {
  const p = new VxlanParse();
  assert.equal(parseVxlan(f, 0, f.length, p), 0, 'parseVxlan accepts what encap wrote');
  assert.equal(p.innerOff + p.innerLen, f.length, 'no bytes after the inner frame');
  return Object.assign(p, { dstMac: formatMac(f, 0), srcMac: formatMac(f, 6), inner: f.slice(p.innerOff) });
}

const words = (addr: string): number[] => addressWords(parseIP(addr).bytes);

test('vxlan decap: frames go to the workload port of their VNI and remote, inner bytes unchanged; counted per connection', () => {
  const r = vxRig();
  const inner = [innerFrame(0, 1), innerFrame(1, 2, 300), innerFrame(2, 3, 500)];
  const up = r.port('uplink');
  up.inject(outerFrame({ src: '198.18.0.2', dst: '198.18.0.1', vni: 100, inner: inner[0]! }));
  up.inject(outerFrame({ src: '2001:db8::2', dst: '2001:db8::1', vni: 200, inner: inner[1]! }));
  up.inject(outerFrame({ src: '198.18.0.3', dst: '198.18.0.1', vni: 100, inner: inner[2]! }));
  up.inject(outerFrame({ src: '198.18.0.2', dst: '198.18.0.1', vni: 100, inner: inner[2]! }));
  assert.equal(r.breathe(), 4);
  assert.deepEqual(r.port('wl:c0').sent, [inner[0], inner[2]]);
  assert.deepEqual(r.port('wl:c1').sent, [inner[1]]);
  assert.deepEqual(r.port('wl:c2').sent, [inner[2]]);
  assert.equal(r.port('uplink').sent.length, 0);
  const v = r.counters();
  assert.equal(v.decap!.frames, 4);
  for (const [name, reason] of Object.entries(v.decap!)) if (name.startsWith('drop:')) assert.equal(reason, 0, name);
  assert.deepEqual(
    CONNS.map((k) => [v[`conn:${k.name}`]!.decap_frames, v[`conn:${k.name}`]!.decap_bytes]),
    [
      [2, inner[0]!.length + inner[2]!.length],
      [1, inner[1]!.length],
      [1, inner[2]!.length],
    ],
  );
  assert.equal(v['port:wl:c0']!.tx_frames, 2);
  assert.equal(v['port:wl:c0']!.tx_bytes, inner[0]!.length + inner[2]!.length);
  assert.equal(v['port:uplink']!.rx_frames, 4);
});

test('vxlan decap: wrong VNI, port, source, destination and malformed frames are counted under their reasons', () => {
  const r = vxRig();
  const up = r.port('uplink');
  const inner = innerFrame(0, 0);
  const cases: [string, Uint8Array][] = [
    ['unknown-vni', outerFrame({ src: '198.18.0.2', dst: '198.18.0.1', vni: 999, inner })],
    // VNI 200 is an IPv6 connection: over IPv4 it is unknown too.
    ['unknown-vni', outerFrame({ src: '198.18.0.2', dst: '198.18.0.1', vni: 200, inner })],
    ['wrong-port', outerFrame({ src: '198.18.0.2', dst: '198.18.0.1', vni: 100, inner, dport: 4790 })],
    ['wrong-source', outerFrame({ src: '198.18.0.9', dst: '198.18.0.1', vni: 100, inner })],
    ['wrong-source', outerFrame({ src: '2001:db8::9', dst: '2001:db8::1', vni: 200, inner })],
    ['wrong-destination', outerFrame({ src: '198.18.0.2', dst: '198.18.0.7', vni: 100, inner })],
    ['wrong-destination', outerFrame({ src: '198.18.0.3', dst: '198.18.0.7', vni: 100, inner })],
    ['wrong-destination', outerFrame({ src: '2001:db8::2', dst: '2001:db8::7', vni: 200, inner })],
    ['vxlan-flags', outerFrame({ src: '198.18.0.2', dst: '198.18.0.1', vni: 100, inner, flags: 0x0c })],
    ['inner-truncated', outerFrame({ src: '198.18.0.2', dst: '198.18.0.1', vni: 100, inner: inner.subarray(0, 10) })],
    ['not-ip', buildFrame({ arp: { senderIp: '198.18.0.2', targetIp: '198.18.0.1' } })],
  ];
  for (const [, f] of cases) assert.equal(up.inject(f), true);
  assert.equal(r.breathe(), cases.length);
  for (const p of ['wl:c0', 'wl:c1', 'wl:c2']) assert.equal(r.port(p).sent.length, 0, `nothing reached ${p}`);
  const want: Record<string, number> = {};
  for (const [reason] of cases) want[`drop:${reason}`] = (want[`drop:${reason}`] ?? 0) + 1;
  const got = Object.fromEntries(Object.entries(r.counters().decap!).filter(([k, n]) => k !== 'frames' && n > 0));
  assert.deepEqual(got, want);
  assert.equal(r.counters().decap!.frames, 0);
});

test('vxlan encap: outer headers per connection, the next hop MAC from the neighbour table, one source port per flow', () => {
  const r = vxRig();
  const sent0 = Array.from({ length: 16 }, (_, i) => innerFrame(0, i));
  for (const f of sent0) r.port('wl:c0').inject(f);
  const again = innerFrame(0, 3); // the same flow as sent0[3]
  r.port('wl:c0').inject(again);
  const sent2 = innerFrame(2, 7, 200);
  r.port('wl:c2').inject(sent2);
  assert.equal(r.breathe(), 18);
  const out = r.port('uplink').take().map(parseOuter);
  assert.equal(out.length, 18);
  const sports = new Set<number>();
  for (let i = 0; i < 17; i++) {
    const p = out[i]!;
    assert.deepEqual(p.inner, i < 16 ? sent0[i] : again, `frame ${i}: inner bytes`);
    assert.equal(p.family, 4);
    assert.equal(p.vni, 100);
    assert.equal(p.dstPort, 4789);
    assert.deepEqual([...p.src], words('198.18.0.1'));
    assert.deepEqual([...p.dst], words('198.18.0.2'));
    assert.equal(p.dstMac, MAC_B, 'the next hop MAC');
    assert.equal(p.srcMac, SRC_MAC);
    assert.ok(p.srcPort >= VXLAN_SPORT_MIN && p.srcPort <= VXLAN_SPORT_MAX, `source port ${p.srcPort}`);
    if (i < 16) sports.add(p.srcPort);
  }
  assert.ok(sports.size >= 8, `16 flows spread over ${sports.size} source ports`);
  assert.equal(out[16]!.srcPort, out[3]!.srcPort, 'one flow keeps its source port');
  const p2 = out[17]!;
  assert.deepEqual(p2.inner, sent2);
  assert.deepEqual([...p2.dst], words('198.18.0.3'));
  assert.equal(p2.dstMac, MAC_C, 'a STALE entry is used');
  // STALE: the kernel never sees our traffic, so the worker asks for a refresh (once).
  assert.deepEqual(r.asks, [2]);
  const v = r.counters();
  assert.equal(v.encap!.frames, 18);
  assert.equal(v.nexthop!.frames, 18);
  assert.equal(v.nexthop!['stale-refreshes'], 1);
  assert.equal(v.nexthop!.misses, 0);
  assert.equal(v['conn:c0']!.encap_frames, 17);
  assert.equal(v['conn:c0']!.encap_bytes, sum(sent0) + again.length);
  assert.equal(v['conn:c2']!.encap_frames, 1);
  assert.equal(v['conn:c2']!.encap_bytes, sent2.length);
  assert.equal(v['port:uplink']!.tx_frames, 18);
  assert.equal(v['port:uplink']!.tx_bytes, sum(sent0) + again.length + sent2.length + 18 * OUTER_V4_BYTES);
});

test('vxlan encap: the largest inner frame fits the uplink MTU exactly; one byte more is a too-big drop', () => {
  const r = vxRig();
  const k = CONNS[0]!;
  const fits = innerOfLength(0, k.maxInnerFrame);
  const over = innerOfLength(0, k.maxInnerFrame + 1);
  assert.equal(fits.length, 1464);
  r.port('wl:c0').inject(over);
  r.port('wl:c0').inject(fits);
  r.breathe();
  const out = r.port('uplink').take();
  assert.equal(out.length, 1);
  assert.equal(out[0]!.length, 1514, 'uplink MTU 1500 + Ethernet header');
  assert.deepEqual(parseOuter(out[0]!).inner, fits);
  const v = r.counters();
  assert.equal(v.encap!['drop:too-big'], 1);
  assert.equal(v['conn:c0']!.drop_too_big, 1);
  assert.equal(v.encap!.frames, 1);
  assert.equal(v['conn:c0']!.encap_frames, 1, 'the too-big frame is not counted as encapsulated');
});

test('vxlan next hop: a missing neighbour holds frames (bounded, counted), asks once, flushes them in order when the entry appears', () => {
  const r = vxRig({ frames: 4, timeoutMs: 100 });
  const wl = r.port('wl:c1');
  const frames = Array.from({ length: 6 }, (_, i) => innerFrame(1, i));
  for (const f of frames) wl.inject(f);
  assert.equal(r.breathe(0), 6);
  assert.equal(r.port('uplink').sent.length, 0, 'nothing sent without a MAC');
  assert.deepEqual(r.asks, [1]);
  let v = r.counters();
  assert.equal(v.nexthop!.misses, 6, 'every frame that found no usable entry');
  assert.equal(v.nexthop!['resolve-requests'], 1, 'one request to the kernel per miss episode');
  assert.equal(v.nexthop!.queued, 4);
  assert.equal(v.nexthop!['drop:queue-full'], 2);
  assert.equal(v['conn:c1']!.drop_nexthop, 2);
  assert.equal(v.encap!.frames, 6, 'encapsulated before they waited');
  // The remote's own entry is not the next hop (the gateway is): still waiting. An INCOMPLETE entry is no MAC either.
  r.neigh.upsert(neighbour(6, GW6, undefined, NUD_INCOMPLETE));
  assert.equal(r.breathe(10), 0);
  assert.equal(r.port('uplink').sent.length, 0);
  assert.deepEqual(r.asks, [1], 'asked once per second at most');
  // The kernel resolved the gateway.
  r.neigh.upsert(neighbour(6, GW6, MAC_GW6, NUD_REACHABLE));
  r.breathe(20);
  const out = r.port('uplink').take().map(parseOuter);
  assert.equal(out.length, 4);
  for (let i = 0; i < 4; i++) {
    const p = out[i]!;
    assert.deepEqual(p.inner, frames[i], `held frame ${i}: in order and intact`);
    assert.equal(p.dstMac, MAC_GW6, 'the gateway MAC, not the remote');
    assert.equal(p.family, 6);
    assert.equal(p.vni, 200);
    assert.deepEqual([...p.src], words('2001:db8::1'));
    assert.deepEqual([...p.dst], words('2001:db8::2'));
  }
  v = r.counters();
  assert.equal(v.nexthop!.flushed, 4);
  // New frames go straight out now.
  wl.inject(frames[5]!);
  r.breathe(30);
  const direct = r.port('uplink').take();
  assert.equal(direct.length, 1);
  const p = parseOuter(direct[0]!);
  assert.deepEqual(p.inner, frames[5]);
  // IPv6 outer UDP checksum: verifies over the pseudo-header.
  const ulen = p.innerLen + 16;
  const f = direct[0]!;
  const ck = pseudoHeaderSumV6(f.subarray(p.ipOff + 8, p.ipOff + 24), f.subarray(p.ipOff + 24, p.ipOff + 40), 17, ulen);
  assert.ok(verifyChecksum(f, p.udpOff, ulen, ck), 'outer UDP checksum');
  assert.ok(f[p.udpOff + 6]! !== 0 || f[p.udpOff + 7]! !== 0, 'IPv6 tunnels send a checksum');
  v = r.counters();
  assert.equal(v.nexthop!.frames, 1);
  assert.equal(v['port:uplink']!.tx_frames, 5);
  assert.equal(v['port:uplink']!.tx_bytes, sum(frames.slice(0, 4)) + frames[5]!.length + 5 * OUTER_V6_BYTES);
});

test('vxlan next hop: held frames are dropped after the timeout and never sent; a later miss asks again', () => {
  const r = vxRig({ frames: 8, timeoutMs: 100 });
  const wl = r.port('wl:c1');
  for (let i = 0; i < 3; i++) wl.inject(innerFrame(1, i));
  r.breathe(1000);
  assert.equal(r.breathe(1050), 0);
  assert.equal(r.counters().nexthop!['drop:timeout'], 0, 'still within the timeout');
  r.breathe(1101);
  let v = r.counters();
  assert.equal(v.nexthop!['drop:timeout'], 3);
  assert.equal(v['conn:c1']!.drop_nexthop, 3);
  // Resolving now sends nothing old.
  r.neigh.upsert(neighbour(6, GW6, MAC_GW6, NUD_REACHABLE));
  r.breathe(1200);
  assert.equal(r.port('uplink').sent.length, 0);
  // The entry goes away again; a second episode more than a second later asks again.
  r.neigh.remove(6, IFINDEX, parseIP(GW6).bytes);
  wl.inject(innerFrame(1, 9));
  r.breathe(2500);
  assert.deepEqual(r.asks, [1, 1]);
  v = r.counters();
  assert.equal(v.nexthop!['resolve-requests'], 2);
  assert.equal(v.nexthop!.queued, 4);
  assert.equal(v.nexthop!.flushed, 0);
});

test('vxlan next hop: no route is a counted drop; connections without a problem are not held up', () => {
  const r = vxRig();
  r.nh.write(0, { state: NH_NO_ROUTE, family: 4, ifindex: 0, words: [0, 0, 0, 0] });
  r.port('wl:c0').inject(innerFrame(0, 1));
  const ok = innerFrame(2, 2);
  r.port('wl:c2').inject(ok);
  r.breathe();
  const out = r.port('uplink').take().map(parseOuter);
  assert.equal(out.length, 1);
  assert.deepEqual(out[0]!.inner, ok);
  const v = r.counters();
  assert.equal(v.nexthop!['drop:no-route'], 1);
  assert.equal(v['conn:c0']!.drop_nexthop, 1);
  assert.equal(v.nexthop!.queued, 0);
  // The route comes back: frames flow again on the next breathe.
  r.nh.write(0, { state: NH_OK, family: 4, ifindex: IFINDEX, words: addressWords(parseIP('198.18.0.2').bytes) });
  r.port('wl:c0').inject(innerFrame(0, 3));
  r.breathe();
  assert.equal(r.port('uplink').take().map(parseOuter)[0]!.dstMac, MAC_B);
});

test('vxlan: both directions in one breathe, and a full workload TX ring drops and counts', () => {
  const r = vxRig(undefined, { 'wl:c0': { txCapacity: 2 } });
  const down = Array.from({ length: 5 }, (_, i) => innerFrame(0, i));
  for (const f of down) r.port('uplink').inject(outerFrame({ src: '198.18.0.2', dst: '198.18.0.1', vni: 100, inner: f }));
  const upf = innerFrame(0, 42);
  r.port('wl:c0').inject(upf);
  assert.equal(r.breathe(), 6);
  assert.deepEqual(r.port('wl:c0').sent, down.slice(0, 2));
  assert.deepEqual(parseOuter(r.port('uplink').sent[0]!).inner, upf);
  const v = r.counters();
  assert.equal(v['port:wl:c0']!.tx_dropped, 3);
  assert.equal(v['conn:c0']!.decap_frames, 5, 'decapsulated, then dropped by the port');
  assert.deepEqual(v.engine, { breaths: 1, idle_waits: 0, frames: 6, spin_ms: 0 });
});

test('vxlan: breaths in both directions allocate nothing in src/ (V8 heap sampling; a fractional time, as the engine keeps it)', async () => {
  // Decap, encap (flow hash, source port, headers), next hop, the ports' links: nothing per frame
  // or per breath. The time is fractional, as the engine's is: boxed once by the caller (as the
  // engine's run() boxes it once per breath, its one allocation) and passed along as it is.
  const r = vxRig();
  const down = outerFrame({ src: '198.18.0.2', dst: '198.18.0.1', vni: 100, inner: innerFrame(0, 1) });
  const frames = [innerFrame(0, 2), innerFrame(0, 3, 300), innerFrame(2, 4)];
  let t = 0.25;
  const round = (): void => {
    for (let i = 0; i < 8; i++) {
      r.port('uplink').inject(down);
      const f = frames[i % 3]!;
      r.port(i % 3 === 2 ? 'wl:c2' : 'wl:c0').inject(f);
    }
    r.breathe((t += 0.5));
    r.port('uplink').take();
    r.port('wl:c0').take();
  };
  for (let i = 0; i < 3000; i++) round(); // the JIT optimises the paths
  const seen = await allocations(() => {
    for (let i = 0; i < 5000; i++) round();
  });
  // The memory ports (test/support) copy what they send into arrays: theirs, not the dataplane's.
  const ours = [...seen].filter(([k]) => k.includes('(src/'));
  const total = bytesOf(new Map(ours));
  assert.ok(total <= 16 * 1024, `${total} bytes sampled in src/ over 5,000 breaths and 80,000 frames: ${JSON.stringify(ours)}`);
  assert.equal(r.counters()['conn:c0']!.decap_frames, 8 * 8000);
});

test('PacketMemory.copy: every source and destination alignment and length moves the same bytes and nothing else', () => {
  const mem = new PacketMemory();
  const a = new Uint8Array(512);
  const b = new Uint8Array(512);
  for (let i = 0; i < a.length; i++) a[i] = (i * 131 + 7) & 0xff;
  const sa = mem.register(a.buffer);
  const sb = mem.register(b.buffer);
  for (let from = 0; from < 8; from++) {
    for (let to = 0; to < 8; to++) {
      for (const len of [0, 1, 3, 15, 16, 17, 63, 64, 65, 250, 500 - from]) {
        b.fill(0xee);
        mem.copy(sa, from, sb, to, len);
        assert.deepEqual(b.subarray(to, to + len), a.subarray(from, from + len), `from ${from} to ${to} len ${len}`);
        assert.ok(
          b.subarray(0, to).every((x) => x === 0xee) && b.subarray(to + len).every((x) => x === 0xee),
          `from ${from} to ${to} len ${len}: bytes outside`,
        );
      }
    }
  }
  // The source's last word may end exactly at the end of its buffer.
  b.fill(0);
  mem.copy(sa, 512 - 100, sb, 2, 100);
  assert.deepEqual(b.subarray(2, 102), a.subarray(412, 512));
  // A buffer whose length is not a multiple of 4: the frame's last bytes lie past the last whole word.
  const odd = new Uint8Array(18).map((_, i) => i + 1);
  const so = mem.register(odd.buffer);
  b.fill(0);
  mem.copy(so, 2, sb, 0, 16);
  assert.deepEqual([...b.subarray(0, 16)], [...odd.subarray(2, 18)]);
  // Within one buffer: the same bytes as copyWithin, for every alignment, length and overlap.
  const one = new Uint8Array(1024);
  const so1 = mem.register(one.buffer);
  for (let from = 0; from < 8; from++) {
    // Destinations at every alignment relative to the source, apart and overlapping.
    for (const to of [
      from + 300,
      from + 301,
      from + 302,
      from + 303,
      from + 4,
      from + 1,
      Math.max(0, from - 4),
      from + 512,
      from + 8,
      Math.max(0, from - 8),
    ]) {
      for (const len of [0, 1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 95, 96, 120, 127, 128, 129, 136, 200]) {
        for (let i = 0; i < one.length; i++) one[i] = (i * 97 + 3) & 0xff;
        const want = new Uint8Array(one);
        want.copyWithin(to, from, from + len);
        mem.copy(so1, from, so1, to, len);
        assert.deepEqual(one, want, `one buffer: from ${from} to ${to} len ${len}`);
      }
    }
  }
  // Bytes that read as NaNs when taken 8 at a time (signalling and quiet, both signs) arrive unchanged.
  const nans = [0x7ff0_0000_0000_0001n, 0x7ff8_0000_0000_0000n, 0xfff0_0000_0000_0001n, 0xffff_ffff_ffff_ffffn, 0x7ff4_dead_beef_0000n];
  const words = new BigUint64Array(one.buffer);
  for (let i = 0; i < 16; i++) words[i] = nans[i % nans.length]!;
  mem.copy(so1, 0, so1, 512, 128);
  for (let i = 0; i < 16; i++) assert.equal(words[64 + i], nans[i % nans.length], `word ${i}`);
});
