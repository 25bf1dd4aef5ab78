/**
 * The frame pool of a shared UMEM (src/dataplane/frame-pool.ts) and the AF_XDP ports over it
 * (src/dataplane/ports/xsk-shared.ts), without privileges: the sockets' four rings live in plain
 * memory and a small fake kernel plays the other side of each — it takes frames from a fill
 * ring and hands them back on the RX ring with a packet in them, takes TX descriptors, reads
 * the bytes and (when the test lets it) returns the frames on the completion ring. The engine
 * and graph are the worker's own (graph.ts cross-connect).
 *
 * What must hold: every frame is somewhere exactly once (free, a fill ring, in flight in TX, on
 * a completion ring), so free + in rings = frames after any number of packets; frames go out by
 * descriptor (tx_copies 0) with the bytes that came in; a frame in two links is queued once and
 * copied once; a pool that runs dry is counted (pool_empty) and recovers when completions return.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { counterBase, readCounters } from '../../src/dataplane/counters.ts';
import { FramePool, FREE, NOT_POOLED, QUARANTINED } from '../../src/dataplane/frame-pool.ts';
import { buildGraph } from '../../src/dataplane/graph.ts';
import { Link } from '../../src/dataplane/link.ts';
import { PacketMemory } from '../../src/dataplane/memory.ts';
import { planCounters, type WorkerPlan } from '../../src/dataplane/plan.ts';
import type { Port } from '../../src/dataplane/port.ts';
import { XskCore } from '../../src/dataplane/ports/xsk-core.ts';
import { SharedXskPort, sharedUmemRefused } from '../../src/dataplane/ports/xsk-shared.ts';
import { XSK_FRAME_SIZE } from '../../src/dataplane/ports/xsk.ts';
import { FakeSys } from '../support/fake-sys.ts';
import { PinholeError, type Mapping } from '../../src/sys/index.ts';
import { ConsumerRing, ProducerRing, type RingOffsets } from '../../src/uplink/xsk/ring.ts';
import { XskSocket } from '../../src/uplink/xsk/socket.ts';
import { MemoryPort } from '../support/memory-port.ts';

// The fake sockets here are in copy mode, where a worker copies frames between its sockets unless
// asked to send them by descriptor (ports/xsk-shared.ts): these tests are about the descriptor path.
process.env.PINHOLE_XSK_UMEM = 'shared';

const FS = XSK_FRAME_SIZE;
const HEADROOM = 256;

test('FramePool: slices, take above a floor, put, leave; a bad put is refused and counted', () => {
  let now = 0;
  const pool = new FramePool(64 * FS, FS, { now: () => now });
  assert.equal(pool.capacity, 64);
  assert.equal(pool.owner[0], NOT_POOLED);
  pool.add(0, 16);
  pool.add(32 * FS, 16);
  assert.throws(() => pool.add(0, 1), /added twice/);
  assert.throws(() => pool.add(60 * FS, 8), /outside/);
  assert.equal(pool.available, 32);
  assert.equal(pool.frames, 32);
  const m = pool.join(4);
  assert.equal(pool.reserve, 4);
  const rx = FramePool.rxSide(m);
  const got: number[] = [];
  for (let f = pool.take(rx, pool.reserve); f >= 0; f = pool.take(rx, pool.reserve)) got.push(f);
  assert.equal(got.length, 28, 'takes stop at the reserve');
  assert.equal(got[0], 32 * FS, 'the slice added last first, its lowest address first');
  assert.ok(got.every((a) => a % FS === 0 && (a < 16 * FS || (a >= 32 * FS && a < 48 * FS))));
  assert.equal(pool.held(rx), 28);
  const tx = FramePool.txSide(m);
  assert.ok(pool.take(tx, 0) >= 0, 'the reserve is there for a floor of 0');
  assert.equal(pool.held(tx), 1);
  pool.put(got[0]! + HEADROOM + 14); // any address inside the frame
  assert.equal(pool.owner[got[0]! / FS], FREE);
  pool.put(got[0]!);
  assert.equal(pool.invalid, 1, 'a frame put twice is refused');
  pool.put(20 * FS);
  assert.equal(pool.invalid, 2, 'a frame that is not the pool’s is refused');
  assert.equal(pool.leave(m, 4), 27 + 1, 'leave quarantines what the member held, both sides');
  assert.equal(pool.quarantined, 28);
  assert.equal(pool.held(QUARANTINED), 28);
  assert.equal(pool.available, 4);
  assert.equal(pool.reserve, 0);
  assert.equal(pool.held(rx), 0);
  now = 1000;
  assert.equal(pool.expire(), 28, 'free after the grace period');
  assert.equal(pool.available, 32);
  assert.equal(pool.quarantined, 0);
});

test('sharedUmemRefused: EINVAL and EOPNOTSUPP from the bind or (Linux < 5.10) the ring sizes fall back; EBUSY and other failures do not', () => {
  const bind = (errno: string) => new PinholeError('ERR_XSK_BIND', 'bind', { details: { errno } });
  const setup = (step: string, errno: string) => new PinholeError('ERR_XSK_SETUP', 'setup', { details: { step, errno } });
  assert.match(sharedUmemRefused(bind('EINVAL'))!, /shared bind was refused \(EINVAL\)/);
  assert.match(sharedUmemRefused(bind('EOPNOTSUPP'))!, /shared bind was refused \(EOPNOTSUPP\)/);
  assert.equal(sharedUmemRefused(bind('ENODEV')), undefined);
  assert.match(sharedUmemRefused(setup('ring sizes', 'EINVAL'))!, /rings of its own .*\(EINVAL; Linux < 5\.10\)/);
  assert.match(sharedUmemRefused(setup('ring sizes', 'ENOPROTOOPT'))!, /ENOPROTOOPT/);
  assert.match(sharedUmemRefused(setup('ring sizes', 'EOPNOTSUPP'))!, /EOPNOTSUPP/);
  assert.equal(sharedUmemRefused(setup('ring sizes', 'ENOMEM')), undefined);
  assert.equal(sharedUmemRefused(setup('socket(AF_XDP)', 'EINVAL')), undefined, 'only the ring-size step');
  assert.equal(sharedUmemRefused(new PinholeError('ERR_XSK_BUSY', 'busy', { details: { errno: 'EBUSY' } })), undefined);
  assert.equal(sharedUmemRefused(new Error('x')), undefined);
  assert.equal(sharedUmemRefused(undefined), undefined);
});

// ---------------------------------------------------------------------------------------------
// A fake kernel for one socket

const OFF: RingOffsets = { producer: 0, consumer: 64, flags: 128, desc: 256 };

function ringMapping(entries: number, entryBytes: number): Mapping {
  const buffer = new ArrayBuffer(OFF.desc + entries * entryBytes);
  return { address: 0n, length: buffer.byteLength, buffer };
}

class FakeKernel {
  readonly sock: XskSocket;
  private readonly fillW: Uint32Array;
  private readonly rxW: Uint32Array;
  private readonly txW: Uint32Array;
  private readonly compW: Uint32Array;
  private readonly fillIdx: Uint32Array;
  private readonly rxIdx: Uint32Array;
  private readonly txIdx: Uint32Array;
  private readonly compIdx: Uint32Array;
  /** Frames taken from the TX ring whose completion the test has not released yet. */
  readonly inFlight: number[] = [];
  readonly sent: Uint8Array[] = [];
  drops = 0;

  constructor(
    sys: FakeSys,
    readonly umem: Uint8Array,
    readonly size: number,
    fd: number,
  ) {
    const fill = ringMapping(size, 8);
    const comp = ringMapping(size, 8);
    const rx = ringMapping(size, 16);
    const tx = ringMapping(size, 16);
    this.fillW = new Uint32Array(fill.buffer, OFF.desc);
    this.compW = new Uint32Array(comp.buffer, OFF.desc);
    this.rxW = new Uint32Array(rx.buffer, OFF.desc);
    this.txW = new Uint32Array(tx.buffer, OFF.desc);
    // [producer, consumer] as the kernel sees them (word 0 and word 16).
    this.fillIdx = new Uint32Array(fill.buffer, 0, 17);
    this.compIdx = new Uint32Array(comp.buffer, 0, 17);
    this.rxIdx = new Uint32Array(rx.buffer, 0, 17);
    this.txIdx = new Uint32Array(tx.buffer, 0, 17);
    this.sock = new XskSocket({
      sys,
      fd,
      ifindex: fd,
      queue: 0,
      mode: 'copy',
      frameSize: FS,
      frameCount: umem.length / FS,
      headroom: 0,
      area: undefined,
      umem,
      mappings: [],
      fill: new ProducerRing(fill, OFF, size, 2),
      comp: new ConsumerRing(comp, OFF, size, 2),
      rx: new ConsumerRing(rx, OFF, size, 4),
      tx: new ProducerRing(tx, OFF, size, 4),
      freeStack: new Uint32Array(0),
      freeTop: 0,
    });
  }

  /** Frames waiting in the fill ring. */
  get fillLevel(): number {
    return (this.fillIdx[0]! - this.fillIdx[16]!) >>> 0;
  }

  /** Receives `pkt` into the next fill-ring frame; false (a drop) when there is none or RX is full. */
  deliver(pkt: Uint8Array): boolean {
    const m = this.size - 1;
    if (this.fillLevel === 0 || (this.rxIdx[0]! - this.rxIdx[16]!) >>> 0 === this.size) {
      this.drops++;
      return false;
    }
    const fc = this.fillIdx[16]!;
    const base = this.fillW[(fc & m) * 2]!;
    assert.equal(base % FS, 0, 'fill ring entries are frame bases');
    this.fillIdx[16] = fc + 1;
    const addr = base + HEADROOM;
    this.umem.set(pkt, addr);
    const rp = this.rxIdx[0]!;
    const w = (rp & m) * 4;
    this.rxW[w] = addr;
    this.rxW[w + 1] = 0;
    this.rxW[w + 2] = pkt.length;
    this.rxIdx[0] = rp + 1;
    return true;
  }

  /** Takes every queued TX descriptor (the bytes are read now); completions wait for complete(). */
  transmit(): number {
    const m = this.size - 1;
    let n = 0;
    for (let c = this.txIdx[16]!; c !== this.txIdx[0]!; c = (c + 1) >>> 0, n++) {
      const w = (c & m) * 4;
      const addr = this.txW[w]!;
      const len = this.txW[w + 2]!;
      assert.ok(Math.floor(addr / FS) === Math.floor((addr + len - 1) / FS), 'a TX descriptor stays inside its frame');
      this.sent.push(this.umem.slice(addr, addr + len));
      this.inFlight.push(addr);
      this.txIdx[16] = c + 1;
    }
    return n;
  }

  /** Puts up to `max` transmitted frames on the completion ring. */
  complete(max = Infinity): number {
    const m = this.size - 1;
    let n = 0;
    while (n < max && this.inFlight.length > 0 && (this.compIdx[0]! - this.compIdx[16]!) >>> 0 < this.size) {
      const p = this.compIdx[0]!;
      this.compW[(p & m) * 2] = this.inFlight.shift()!;
      this.compW[(p & m) * 2 + 1] = 0;
      this.compIdx[0] = p + 1;
      n++;
    }
    return n;
  }
}

const packet = (seq: number, len: number): Uint8Array => {
  const p = new Uint8Array(len);
  for (let i = 0; i < len; i++) p[i] = (seq * 7 + i) & 0xff;
  new DataView(p.buffer).setUint32(0, seq);
  return p;
};

interface Rig {
  pool: FramePool;
  up: FakeKernel;
  to: FakeKernel;
  upPort: SharedXskPort;
  toPort: SharedXskPort;
  /** The pool's clock (ms): quarantined frames are free from 1000 ms after their port closed. */
  clock: { now: number };
  memory: PacketMemory;
  breathe(): number;
  counters(): Record<string, Record<string, number>>;
  /** Frames in the fill rings, in flight (TX ring, taken, completion ring), quarantined and free: must equal pool.frames. */
  accounted(): number;
}

/** A cross-connect worker whose uplink and `to` are two sockets over one shared UMEM. */
function sharedRig(o: { ring: number; upFrames: number; toFrames: number; batch?: number }): Rig {
  const batchSize = o.batch ?? 32;
  const plan: WorkerPlan = {
    worker: 0,
    graph: 'cross-connect',
    ports: [
      { name: 'uplink', role: 'uplink', ifname: 'up0', queue: 0, driver: 'afxdp', rx: true },
      { name: 'to', role: 'to', ifname: 'out0', queue: 0, driver: 'afxdp', rx: false },
    ],
    connections: [],
    batchSize,
    waitQueue: { frames: 0, timeoutMs: 0 },
  };
  const layout = planCounters(plan);
  const c = new Float64Array(layout.size);
  const memory = new PacketMemory();
  const area = new ArrayBuffer((o.upFrames + o.toFrames) * FS);
  const umem = new Uint8Array(area);
  const poolClock = { now: 0 };
  const pool = new FramePool(area.byteLength, FS, { now: () => poolClock.now });
  const sys = new FakeSys({ close: () => undefined, munmap: () => undefined });
  const up = new FakeKernel(sys, umem, o.ring, 3);
  const to = new FakeKernel(sys, umem, o.ring, 4);
  const common = { memory, batchSize, counters: c, area: { address: 0n, length: area.byteLength, buffer: area } };
  const upPort = SharedXskPort.wrap(
    up.sock,
    { ...common, name: 'uplink', ifname: 'up0', queue: 0, areaOffset: 0, frameCount: o.upFrames, base: counterBase(layout, 'port:uplink') },
    pool,
    'shared UMEM',
  );
  const toPort = SharedXskPort.wrap(
    to.sock,
    {
      ...common,
      name: 'to',
      ifname: 'out0',
      queue: 0,
      areaOffset: o.upFrames * FS,
      frameCount: o.toFrames,
      base: counterBase(layout, 'port:to'),
      rx: false,
    },
    pool,
    'shared UMEM',
  );
  const engine = buildGraph(
    plan,
    layout,
    c,
    memory,
    new Map<string, Port>([
      ['uplink', upPort],
      ['to', toPort],
    ]),
    {},
  );
  let clock = 0;
  const compLevel = (k: FakeKernel): number => k.sock.compRing.available(k.size);
  return {
    pool,
    up,
    to,
    upPort,
    toPort,
    clock: poolClock,
    memory,
    breathe: () => engine.breathe(clock++),
    counters: () => readCounters(layout, c),
    accounted: () =>
      pool.available +
      pool.quarantined +
      up.fillLevel +
      to.fillLevel +
      up.sock.rxRing.available(o.ring) +
      to.sock.txRing.pending() +
      up.inFlight.length +
      to.inFlight.length +
      compLevel(up) +
      compLevel(to),
  };
}

test('AF_XDP receive: descriptors join the link after what it holds, with the tag, the area offset, no pending checksum and no train; the batch and the link’s room bound it', () => {
  const umem = new Uint8Array(16 * FS);
  const k = new FakeKernel(new FakeSys({ close: () => undefined }), umem, 16, 3);
  for (let i = 0; i < 12; i++) k.sock.fillRing.setAddr(i, i * FS);
  k.sock.fillRing.submit(12);
  for (let i = 0; i < 12; i++) assert.ok(k.deliver(packet(i, 60 + i)));
  const memory = new PacketMemory();
  const id = memory.register(umem.buffer);
  const core = new XskCore(k.sock, id, { name: 'p', ifname: 'p0', memory, batchSize: 4, counters: new Float64Array(64), base: 0 });
  // A link already holding 3 frames of another memory, and stale values in the slots behind them
  // (links are reused every breath; a workload link carries pending checksums and trains).
  const link = new Link('t', 8);
  for (let i = 0; i < 3; i++) link.push(7, 100 + i, 50, 9, 0x00220010, 1400);
  for (let i = 3; i < 8; i++) {
    link.mem[i] = 7;
    link.aux[i] = 9;
    link.csum[i] = 0x00220010;
    link.gso[i] = 1400;
  }
  const OFFSET = 1 << 20; // an XskPort's slice of the area: descriptor address = offset + UMEM address
  assert.equal(core.rx(link, 5, OFFSET), 4, 'a batch at most');
  assert.equal(link.n, 7);
  assert.equal(core.rxN, 4);
  for (let i = 0; i < 3; i++)
    assert.deepEqual(
      [link.mem[i], link.addr[i], link.aux[i], link.csum[i], link.gso[i]],
      [7, 100 + i, 9, 0x00220010, 1400],
      `slot ${i} kept`,
    );
  for (let i = 0; i < 4; i++) {
    const j = 3 + i;
    assert.deepEqual(
      [link.mem[j], link.addr[j], link.len[j], link.aux[j], link.csum[j], link.gso[j]],
      [id, OFFSET + i * FS + HEADROOM, 60 + i, 5, 0, 0],
      `slot ${j}: received frame ${i}`,
    );
    assert.deepEqual([core.rxb.addr[i], core.rxb.len[i]], [i * FS + HEADROOM, 60 + i], `batch entry ${i}: the UMEM address`);
  }
  assert.equal(link.dropped, 0);
  assert.equal(core.rx(link, 5, OFFSET), 0, 'nothing more before the batch is released');
  core.rxN = 0;
  assert.equal(core.rx(link, 5, OFFSET), 1, 'the link’s room: one slot left');
  assert.equal(link.n, 8);
  assert.equal(link.addr[7], OFFSET + 4 * FS + HEADROOM);
  assert.equal(link.dropped, 0, 'never pushed into a full link');
  assert.equal(k.sock.rxRing.available(16), 7, 'the other frames wait in the RX ring');
});

for (const umem of ['shared', 'default'] as const) {
  test(`shared UMEM cross-connect (${umem === 'shared' ? 'PINHOLE_XSK_UMEM=shared: by descriptor' : 'copy mode by default: copied into pool frames'}): 200,000 frames byte for byte, in order; no frame is lost or doubled`, () => {
    if (umem === 'default') delete process.env.PINHOLE_XSK_UMEM;
    try {
      // A copy holds a second frame while it is in flight: the copy variant gets more pool frames.
      const r = sharedRig({ ring: 64, upFrames: 128, toFrames: umem === 'shared' ? 128 : 256 });
      assert.equal(r.accounted(), r.pool.frames, 'after open');
      assert.equal(r.up.fillLevel, 64, 'the receiving port filled its fill ring');
      assert.equal(r.to.fillLevel, 0, 'the transmit-only port keeps none');
      let seq = 0;
      let next = 0;
      let last = -1;
      let rnd = 12345;
      const rand = (n: number): number => {
        rnd = (rnd * 1103515245 + 12345) >>> 0;
        return rnd % n;
      };
      const sentSeqs: number[] = [];
      while (seq < 200_000) {
        // The kernel receives a burst (some dropped when the fill ring runs low), the worker breathes,
        // the kernel takes what was queued and completes some of it, in a random rhythm.
        const burst = 1 + rand(48);
        for (let i = 0; i < burst; i++, seq++) {
          const len = 60 + rand(1455);
          if (r.up.deliver(packet(seq, len))) sentSeqs.push(seq);
        }
        r.breathe();
        r.to.transmit();
        r.to.complete(rand(3) === 0 ? 0 : 1 + rand(64));
        for (const f of r.to.sent.splice(0)) {
          const s = new DataView(f.buffer, f.byteOffset).getUint32(0);
          if (umem === 'shared') assert.equal(s, sentSeqs[next], 'in order');
          else assert.ok(s > last, `in order (${s} after ${last})`);
          last = s;
          assert.deepEqual(f, packet(s, f.length), `frame ${s} unchanged`);
          next++;
        }
        if ((seq & 0x3fff) < 48) assert.equal(r.accounted(), r.pool.frames, `accounting at ${seq}`);
      }
      // Drain: everything queued goes out and completes; the worker reaps.
      for (let i = 0; i < 8; i++) {
        r.breathe();
        r.to.transmit();
        r.to.complete();
      }
      r.breathe();
      const c = r.counters();
      // Copy mode returns received frames to the fill ring at once, so when this rig holds
      // completions back the drops move from the receive side (uncounted here: the frame never
      // entered) to the TX ring (counted: tx_dropped); none is lost silently.
      const dropped = umem === 'shared' ? 0 : c['port:to']!.tx_dropped!;
      assert.equal(c['port:to']!.tx_frames! + dropped, sentSeqs.length, 'every received frame was transmitted or counted');
      if (umem === 'shared') assert.equal(next, sentSeqs.length, 'every received frame was seen on the wire');
      assert.equal(c['port:uplink']!.rx_frames, sentSeqs.length);
      assert.equal(c['port:to']!.tx_frames, sentSeqs.length - dropped);
      if (umem === 'shared') assert.equal(c['port:to']!.tx_copies, 0, 'no copies: every frame went by descriptor');
      else assert.equal(c['port:to']!.tx_copies, c['port:to']!.tx_frames, 'copy mode: every frame sent was copied into a pool frame');
      if (umem === 'shared') assert.equal(c['port:to']!.tx_dropped, 0);
      assert.equal(r.pool.invalid, 0);
      assert.equal(r.up.inFlight.length + r.to.inFlight.length, 0);
      assert.equal(r.accounted(), r.pool.frames, 'no frame leaked');
      assert.equal(r.pool.held(FramePool.rxSide(r.upPort.member)), r.up.fillLevel, 'the uplink holds its fill ring, nothing else');
      assert.equal(r.pool.held(FramePool.txSide(r.toPort.member)), 0, 'nothing left on a transmit side');
      // Closing gives every frame back: the fill ring's after the grace period.
      r.toPort.close();
      r.upPort.close();
      assert.equal(r.pool.available + r.pool.quarantined, r.pool.frames);
      assert.equal(r.pool.quarantined, r.up.fillLevel);
      r.clock.now = 1000;
      r.pool.expire();
      assert.equal(r.pool.available, r.pool.frames);
    } finally {
      process.env.PINHOLE_XSK_UMEM = 'shared';
    }
  });
}

test('shared UMEM: a frame queued twice is sent once by descriptor and once by copy; frames from other memory are copied', () => {
  const r = sharedRig({ ring: 64, upFrames: 128, toFrames: 128 });
  const memory = (r.upPort as unknown as { memory: PacketMemory }).memory;
  const pkt = packet(7, 100);
  assert.ok(r.up.deliver(pkt));
  const link = new Link('test', 8);
  r.upPort.rx(link, -1);
  assert.equal(link.n, 1);
  link.push(link.mem[0]!, link.addr[0]!, link.len[0]!, -1);
  // And a frame from another memory (an AF_PACKET ring, a wait queue): copied into a pool frame.
  const other = new MemoryPort({
    name: 'x',
    memory,
    counters: new Float64Array(64),
    base: 0,
  });
  other.inject(packet(8, 1500));
  other.rx(link, -1);
  const before = r.pool.available;
  assert.equal(r.toPort.tx(link), 3);
  r.upPort.release();
  other.release();
  r.toPort.flush();
  r.to.transmit();
  assert.deepEqual(
    r.to.sent.map((f) => [...f]),
    [pkt, pkt, packet(8, 1500)].map((f) => [...f]),
  );
  const c = r.counters();
  assert.equal(c['port:to']!.tx_copies, 2, 'the duplicate and the foreign frame were copied');
  assert.ok(r.pool.available < before);
  r.to.complete();
  r.breathe();
  assert.equal(r.pool.invalid, 0, 'no frame completed twice into the pool');
  assert.equal(r.accounted(), r.pool.frames);
});

test('shared UMEM: completions held back drain the pool — counted as pool_empty and kernel drops — and traffic recovers when they return', () => {
  // 192 frames: 64 in the uplink's fill ring, 128 the reserve (64 per port) — nothing to spare.
  const r = sharedRig({ ring: 64, upFrames: 128, toFrames: 64 });
  assert.equal(r.pool.reserve, 128);
  let seq = 0;
  // The device takes frames but completes none: every frame sent stays out of the pool.
  for (let i = 0; i < 40; i++) {
    for (let k = 0; k < 32; k++) r.up.deliver(packet(seq++, 64));
    r.breathe();
    r.to.transmit();
  }
  const c = r.counters();
  assert.ok(c['port:uplink']!.pool_empty! > 0, `pool_empty ${c['port:uplink']!.pool_empty}`);
  assert.ok(r.up.drops > 0, 'the kernel found the fill ring empty');
  assert.ok(r.pool.available <= r.pool.reserve, 'the pool is at its floor');
  assert.equal(r.accounted(), r.pool.frames, 'exhausted, not leaked');
  // Completions come back: the fill ring is refilled and frames flow again.
  r.to.complete();
  r.breathe();
  assert.ok(r.up.fillLevel > 0);
  const sentBefore = r.counters()['port:to']!.tx_frames!;
  for (let k = 0; k < 16; k++) assert.ok(r.up.deliver(packet(seq++, 64)));
  r.breathe();
  r.to.transmit();
  r.to.complete();
  r.breathe();
  assert.equal(r.counters()['port:to']!.tx_frames, sentBefore + 16);
  assert.equal(r.pool.invalid, 0);
  assert.equal(r.accounted(), r.pool.frames);
});

/** A MemoryPort over the rig's memory whose frames (another memory) the shared port must copy. */
function foreign(r: Rig, frames: Uint8Array[]): { port: MemoryPort; link: Link } {
  const port = new MemoryPort({ name: 'x', memory: r.memory, counters: new Float64Array(64), base: 0, slotBytes: 8192 });
  for (const f of frames) assert.ok(port.inject(f));
  const link = new Link('test', 64);
  port.rx(link, -1);
  return { port, link };
}

test('shared UMEM: a descriptor that would cross its 4 KiB chunk is copied into a pool frame, one inside its chunk goes by address', () => {
  const r = sharedRig({ ring: 64, upFrames: 128, toFrames: 64 });
  const pkt = packet(1, 3840); // fills its chunk from the headroom to the end
  assert.ok(r.up.deliver(pkt));
  const link = new Link('test', 8);
  assert.equal(r.upPort.rx(link, -1), 1);
  const a = link.addr[0]!;
  assert.equal(a % FS, HEADROOM);
  // 200 bytes further in: 3,700 bytes end 60 bytes into the next chunk; 3,640 end exactly at its end.
  const id = link.mem[0]!;
  link.n = 0;
  link.push(id, a + 200, 3700, -1);
  link.push(id, a + 200, 3640, -1);
  const want = [r.up.umem.slice(a + 200, a + 200 + 3700), r.up.umem.slice(a + 200, a + 200 + 3640)];
  assert.equal(r.toPort.tx(link), 2);
  r.upPort.release();
  r.toPort.flush();
  assert.equal(r.to.transmit(), 2, 'the fake kernel checks every descriptor stays inside its chunk');
  assert.deepEqual(r.to.sent, want, 'both byte for byte');
  assert.notEqual(Math.floor(r.to.inFlight[0]! / FS), Math.floor(a / FS), 'the crossing one went from another frame (a copy)');
  assert.equal(r.to.inFlight[1], a + 200, 'the one inside its chunk went by its address');
  const c = r.counters()['port:to']!;
  assert.equal(c.tx_copies, 1);
  assert.equal(c.tx_too_big, 0);
  r.to.complete();
  r.breathe();
  assert.equal(r.pool.invalid, 0);
  assert.equal(r.accounted(), r.pool.frames);
});

test('shared UMEM: a greedy fill ring stops at the reserve, so a transmit copy still finds a frame', () => {
  // 192 frames, fill ring of 256: the uplink would take them all. Reserve: 4 batches of 8 per port = 64.
  const r = sharedRig({ ring: 256, upFrames: 128, toFrames: 64, batch: 8 });
  assert.equal(r.pool.reserve, 64);
  for (let i = 0; i < 3; i++) r.breathe();
  assert.equal(r.up.fillLevel, r.pool.frames - r.pool.reserve, 'filled down to the reserve, not further');
  assert.ok(r.up.sock.fillRing.free(256) > 0, 'the fill ring has room it would like to fill');
  assert.equal(r.pool.available, r.pool.reserve);
  const { port, link } = foreign(r, [packet(2, 200), packet(3, 1500)]);
  assert.equal(r.toPort.tx(link), 2, 'both copies found a frame in the reserve');
  port.release();
  r.toPort.flush();
  r.to.transmit();
  assert.deepEqual(r.to.sent, [packet(2, 200), packet(3, 1500)]);
  const c = r.counters()['port:to']!;
  assert.equal(c.tx_copies, 2);
  assert.equal(c.tx_dropped, 0);
  assert.equal(c.pool_empty, 0);
  r.to.complete();
  r.breathe();
  assert.equal(r.accounted(), r.pool.frames);
});

test('shared UMEM: copies that find no pool frame are tx_dropped (exactly those), too-big frames are tx_too_big', () => {
  const r = sharedRig({ ring: 64, upFrames: 128, toFrames: 64 });
  r.breathe();
  // Someone else holds all but 3 free frames.
  const hog = FramePool.txSide(r.pool.join(0));
  const held: number[] = [];
  while (r.pool.available > 3) held.push(r.pool.take(hog, 0));
  const frames = [packet(10, 100), packet(11, 100), packet(12, 4000), packet(13, 100), packet(14, 100), packet(15, 100)];
  const { port, link } = foreign(r, frames);
  assert.equal(r.toPort.tx(link), 3);
  port.release();
  const c = r.counters()['port:to']!;
  assert.equal(c.tx_frames, 3);
  assert.equal(c.tx_copies, 3);
  assert.equal(c.tx_too_big, 1, 'larger than a chunk less its headroom');
  assert.equal(c.tx_dropped, 2, 'the two copies that found no frame');
  assert.equal(c.pool_empty, 1, 'one shortfall per batch');
  r.toPort.flush();
  r.to.transmit();
  assert.deepEqual(r.to.sent, [packet(10, 100), packet(11, 100), packet(13, 100)]);
  for (const a of held) r.pool.put(a);
  r.to.complete();
  r.breathe();
  assert.equal(r.pool.invalid, 0);
  assert.equal(r.accounted(), r.pool.frames);
});

test('shared UMEM: a closed port’s frames in user space are free at once; those in its rings only after the grace period; none leaks', () => {
  const r = sharedRig({ ring: 64, upFrames: 128, toFrames: 64 });
  for (let i = 0; i < 20; i++) assert.ok(r.up.deliver(packet(i, 64 + i)));
  r.breathe(); // 20 frames go to the TX ring by descriptor
  r.to.transmit(); // and the device takes them: in flight, not completed
  for (let i = 20; i < 25; i++) assert.ok(r.up.deliver(packet(i, 64)));
  const link = new Link('test', 8);
  assert.equal(r.upPort.rx(link, -1), 5, 'five frames held in user space (received, not released)');
  for (let i = 25; i < 28; i++) assert.ok(r.up.deliver(packet(i, 64))); // three left on the RX ring
  const upSide = FramePool.rxSide(r.upPort.member);
  const inRings = r.pool.held(upSide) - 5;
  assert.equal(inRings, r.up.fillLevel + 3);
  const free0 = r.pool.available;
  r.clock.now = 5000;
  r.upPort.close();
  assert.equal(r.pool.available, free0 + 5, 'the frames held in user space are free at once');
  assert.equal(r.pool.quarantined, inRings, 'fill and RX ring frames quarantined');
  r.clock.now = 5500;
  r.toPort.close();
  assert.equal(r.pool.quarantined, inRings + 20, 'TX frames not completed quarantined too');
  assert.equal(r.pool.held(QUARANTINED), r.pool.quarantined);
  assert.equal(r.pool.available + r.pool.quarantined, r.pool.frames, 'every frame is free or quarantined');
  // Nothing quarantined is handed out before its grace period: drain the free stack.
  const who = FramePool.txSide(r.pool.join(0));
  const taken: number[] = [];
  for (let f = r.pool.take(who, 0); f >= 0; f = r.pool.take(who, 0)) taken.push(f);
  assert.equal(taken.length, free0 + 5);
  r.clock.now = 5999;
  assert.equal(r.pool.take(who, 0), -1, 'the up port’s frames still wait (999 ms)');
  assert.equal(r.pool.expire(), 0);
  // Freed by the next take once old enough, oldest close first.
  r.clock.now = 6000;
  const f = r.pool.take(who, 0);
  assert.ok(f >= 0);
  assert.equal(r.pool.quarantined, 20, 'the up port’s frames are free; the to port’s still wait');
  taken.push(f);
  for (let g = r.pool.take(who, 0); g >= 0; g = r.pool.take(who, 0)) taken.push(g);
  assert.equal(taken.length, free0 + 5 + inRings);
  // And by the periodic refresh (a port of the pool that is still open calls expire()).
  r.clock.now = 6500;
  assert.equal(r.pool.expire(), 20);
  for (let g = r.pool.take(who, 0); g >= 0; g = r.pool.take(who, 0)) taken.push(g);
  assert.equal(taken.length, r.pool.frames, 'no leak: every frame came back');
  assert.equal(new Set(taken).size, taken.length, 'none twice');
  assert.equal(r.pool.invalid, 0);
});
