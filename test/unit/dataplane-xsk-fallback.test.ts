/**
 * A worker's AF_XDP ports on a kernel that cannot share a UMEM across devices (Linux < 5.10),
 * without privileges: FakeSys plays the kernel's socket calls (rings in plain memory) and
 * openGroupPort (src/dataplane/ports/xsk-shared.ts) must open the second port with a UMEM of its
 * own — saying why in its `detail` — whichever of the two places the kernel refuses it:
 *
 *   setup  setsockopt(XDP_UMEM_FILL_RING) on a socket with no registered UMEM → EINVAL (5.9)
 *   bind   bind(XDP_SHARED_UMEM) to another device or queue → EINVAL
 *
 * The fallback port must work (its fill ring filled, a frame transmitted through one copy), the
 * refused socket must be closed, and a failure that is not a refusal must not fall back. Also:
 * a group whose first port failed has no owner; a port whose close() throws still leaves the pool.
 */
import { txMetadataHonoured } from '../../src/uplink/xsk/socket.ts';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Link } from '../../src/dataplane/link.ts';
import { PacketMemory } from '../../src/dataplane/memory.ts';
import { PC, type Port } from '../../src/dataplane/port.ts';
import { XSK_FRAME_SIZE, XskPort, type XskPortOptions } from '../../src/dataplane/ports/xsk.ts';
import { openGroupPort, SharedXskPort, XskGroup } from '../../src/dataplane/ports/xsk-shared.ts';
import { useSys, type Mapping } from '../../src/sys/index.ts';
import {
  SockaddrXdp,
  XDP_MMAP_OFFSETS,
  XDP_OPTIONS,
  XDP_PACKET_HEADROOM,
  XDP_PGOFF_TX_RING,
  XDP_SHARED_UMEM,
  XDP_STATISTICS,
  XDP_UMEM_COMPLETION_RING,
  XDP_UMEM_FILL_RING,
  XDP_UMEM_PGOFF_FILL_RING,
  XDP_UMEM_REG,
  XdpUmemReg,
  XDP_RING_NEED_WAKEUP,
} from '../../src/uplink/xsk/abi.ts';
import { FakeSys } from '../support/fake-sys.ts';
import { MemoryPort } from '../support/memory-port.ts';

const FRAMES = 64;
const RING = 64;
/** Ring offsets the fake kernel reports for all four rings. */
const OFF = { producer: 0, consumer: 64, flags: 128, desc: 256 };

interface FakeKernel {
  sys: FakeSys;
  /** fd → whether XDP_UMEM_REG registered a UMEM on it (and its address and length). */
  umems: Map<number, { addr: bigint; len: bigint }>;
  /** Ring mappings by `fd:pgoff`. */
  rings: Map<string, Mapping>;
  binds: { fd: number; flags: number; ifindex: number }[];
  closed: number[];
}

/**
 * A kernel of the given age for AF_XDP: `refuse` says where it refuses a shared UMEM on another
 * device ('setup': Linux 5.9's fill-ring check; 'bind'), `fail` injects another failure.
 */
function fakeKernel(o: { refuse?: 'setup' | 'bind'; fail?: { at: 'rings' | 'bind'; errno: string }; closeThrows?: boolean }): FakeKernel {
  let nextFd = 100;
  const umems = new Map<number, { addr: bigint; len: bigint }>();
  const rings = new Map<string, Mapping>();
  const binds: FakeKernel['binds'] = [];
  const closed: number[] = [];
  const sys: FakeSys = new FakeSys({
    ifNameToIndex: (name) => ({ up0: 2, w0: 3, w1: 4 })[name] ?? 9,
    socket: () => nextFd++,
    setsockopt: (fd, _level, name, value) => {
      if (name === XDP_UMEM_REG) {
        const r = XdpUmemReg.decode(value);
        umems.set(fd, { addr: r.addr as bigint, len: r.len as bigint });
      } else if (name === XDP_UMEM_FILL_RING || name === XDP_UMEM_COMPLETION_RING) {
        if (o.fail?.at === 'rings') throw sys.errno('setsockopt', o.fail.errno);
        // Linux < 5.10 (net/xdp/xsk.c): no UMEM on this socket, no fill or completion ring.
        if (o.refuse === 'setup' && !umems.has(fd)) throw sys.errno('setsockopt', 'EINVAL');
      } else if (name === 9) {
        throw sys.errno('setsockopt', 'ENOPROTOOPT'); // XDP_MAX_TX_SKB_BUDGET: before 6.17
      }
    },
    getsockopt: (_fd, _level, name, buf) => {
      const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
      if (name === XDP_MMAP_OFFSETS) {
        for (let r = 0; r < 4; r++) {
          dv.setBigUint64(r * 32, BigInt(OFF.producer), true);
          dv.setBigUint64(r * 32 + 8, BigInt(OFF.consumer), true);
          dv.setBigUint64(r * 32 + 16, BigInt(OFF.desc), true);
          dv.setBigUint64(r * 32 + 24, BigInt(OFF.flags), true);
        }
      } else if (name === XDP_OPTIONS || name === XDP_STATISTICS) {
        buf.fill(0); // copy mode; no drops
      }
      return buf.byteLength;
    },
    mmap: (length, _prot, _flags, fd, offset) => {
      const m = { address: 0x7000_0000n + BigInt(rings.size) * 0x10000n, length, buffer: new ArrayBuffer(length) };
      rings.set(`${fd}:${Number(offset)}`, m);
      return m;
    },
    bind: (fd, addr) => {
      const a = SockaddrXdp.decode(addr);
      const flags = Number(a.sxdp_flags);
      binds.push({ fd, flags, ifindex: Number(a.sxdp_ifindex) });
      if (o.fail?.at === 'bind') throw sys.errno('bind', o.fail.errno);
      if (o.refuse === 'bind' && (flags & XDP_SHARED_UMEM) !== 0) throw sys.errno('bind', 'EINVAL');
    },
    close: (fd) => {
      closed.push(fd);
      if (o.closeThrows) throw sys.errno('close', 'EIO');
    },
    munmap: () => undefined,
  });
  return { sys, umems, rings, binds, closed };
}

interface Worker {
  group: XskGroup;
  area: Mapping;
  memory: PacketMemory;
  c: Float64Array;
  opts(name: string, ifname: string, slot: number, extra?: Partial<XskPortOptions>): XskPortOptions;
}

function worker(ports: number): Worker {
  const length = ports * FRAMES * XSK_FRAME_SIZE;
  const area: Mapping = { address: 0x1000_0000n, length, buffer: new ArrayBuffer(length) };
  const memory = new PacketMemory();
  const c = new Float64Array(64 * ports);
  return {
    group: new XskGroup(area),
    area,
    memory,
    c,
    opts: (name, ifname, slot, extra = {}) => ({
      name,
      ifname,
      queue: 0,
      memory,
      area,
      areaOffset: slot * FRAMES * XSK_FRAME_SIZE,
      frameCount: FRAMES,
      rings: { rx: RING, tx: RING, fill: RING, comp: RING },
      batchSize: 16,
      rx: true,
      counters: c,
      base: 32 * slot,
      ...extra,
    }),
  };
}

const ownerFd = (g: XskGroup): number | undefined => g.owner?.fd;

/** The fallback port works: fill ring filled, a frame from other memory leaves through one copy. */
function assertWorks(k: FakeKernel, w: Worker, port: Port, slot: number): void {
  const fd = port.fd;
  const reg = k.umems.get(fd);
  assert.ok(reg, 'the fallback registered a UMEM of its own');
  assert.equal(reg.addr, w.area.address + BigInt(slot * FRAMES * XSK_FRAME_SIZE), 'in its slice of the area');
  assert.equal(reg.len, BigInt(FRAMES * XSK_FRAME_SIZE));
  const fill = new Uint32Array(k.rings.get(`${fd}:${XDP_UMEM_PGOFF_FILL_RING}`)!.buffer);
  assert.equal(fill[OFF.producer / 4], FRAMES / 2, 'half its frames wait in the fill ring');
  const other = new MemoryPort({ name: 'x', memory: w.memory, counters: new Float64Array(64), base: 0 });
  const pkt = new Uint8Array(300).map((_, i) => (i * 13) & 0xff);
  other.inject(pkt);
  const link = new Link('t', 8);
  other.rx(link, -1);
  assert.equal(port.tx(link), 1);
  const tx = k.rings.get(`${fd}:${XDP_PGOFF_TX_RING}`)!;
  const txw = new DataView(tx.buffer);
  assert.equal(txw.getUint32(OFF.producer, true), 1, 'one descriptor queued');
  const addr = Number(txw.getBigUint64(OFF.desc, true));
  const len = txw.getUint32(OFF.desc + 8, true);
  assert.equal(len, 300);
  assert.ok(addr % XSK_FRAME_SIZE >= XDP_PACKET_HEADROOM && addr < FRAMES * XSK_FRAME_SIZE, 'a UMEM address of its own UMEM');
  const umem = new Uint8Array(w.area.buffer, slot * FRAMES * XSK_FRAME_SIZE, FRAMES * XSK_FRAME_SIZE);
  assert.deepEqual(umem.slice(addr, addr + len), pkt, 'the bytes were copied in');
  assert.equal(w.c[32 * slot + PC.txCopies], 1);
  other.close();
}

/** Runs `fn` with PINHOLE_XSK_UMEM set (the fake kernel binds in copy mode, which shares only when asked). */
async function withUmemEnv(value: string | undefined, fn: () => Promise<void>): Promise<void> {
  const before = process.env.PINHOLE_XSK_UMEM;
  if (value === undefined) delete process.env.PINHOLE_XSK_UMEM;
  else process.env.PINHOLE_XSK_UMEM = value;
  try {
    await fn();
  } finally {
    if (before === undefined) delete process.env.PINHOLE_XSK_UMEM;
    else process.env.PINHOLE_XSK_UMEM = before;
  }
}

test('openGroupPort in copy mode: the sockets share one UMEM registration (pinned once) and say that frames between them are copied', async () => {
  const k = fakeKernel({});
  const restore = useSys(k.sys);
  const w = worker(2);
  try {
    await withUmemEnv(undefined, async () => {
      const up = await openGroupPort(w.opts('uplink', 'up0', 0), w.group);
      const pod = await openGroupPort(w.opts('pod', 'w0', 1), w.group);
      for (const p of [up, pod]) {
        assert.ok(p instanceof SharedXskPort);
        assert.match(p.detail, /shared UMEM, copy mode: frames between ports are copied/);
      }
      assert.equal(k.umems.size, 1, 'one UMEM registered: the area is pinned once');
      assert.equal(k.binds.filter((b) => b.flags === XDP_SHARED_UMEM).length, 1, 'the second socket binds to the shared UMEM');
      pod.close();
      up.close();
    });
  } finally {
    restore();
  }
});

for (const refuse of ['setup', 'bind'] as const) {
  test(`openGroupPort: the kernel refuses to share at ${refuse} (EINVAL, Linux < 5.10) → the port opens with its own UMEM and says why`, async () => {
    const k = fakeKernel({ refuse });
    const restore = useSys(k.sys);
    const w = worker(2);
    try {
      // Sharing in copy mode (the fake binds in copy mode) is what the kernel may refuse.
      await withUmemEnv('shared', async () => {
        const up = await openGroupPort(w.opts('uplink', 'up0', 0), w.group);
        assert.ok(up instanceof SharedXskPort, 'the first port registers the UMEM');
        assert.match(up.detail, /shared UMEM/);
        assert.equal(w.group.owner?.fd, up.fd);
        assert.equal(k.umems.get(up.fd)?.len, BigInt(2 * FRAMES * XSK_FRAME_SIZE), 'the owner’s UMEM is the whole area');
        const socketsBefore = k.sys.callsOf('socket').length;
        const pod = await openGroupPort(w.opts('pod', 'w0', 1), w.group);
        assert.ok(pod instanceof XskPort, 'fell back to an own UMEM');
        const why =
          refuse === 'setup'
            ? /own UMEM: the kernel refused rings of its own to a socket sharing a UMEM \(EINVAL; Linux < 5\.10\), frames to and from it are copied/
            : /own UMEM: the shared bind was refused \(EINVAL\), frames to and from it are copied/;
        assert.match(pod.detail, why);
        assert.equal(k.sys.callsOf('socket').length, socketsBefore + 2, 'one refused socket, one of its own');
        const refused = socketsBefore + 100;
        assert.ok(k.closed.includes(refused), 'the refused socket was closed');
        const sharedBinds = k.binds.filter((b) => b.fd === refused);
        if (refuse === 'setup') assert.equal(sharedBinds.length, 0, 'refused before the bind');
        else assert.deepEqual(sharedBinds, [{ fd: refused, flags: XDP_SHARED_UMEM, ifindex: 3 }]);
        assertWorks(k, w, pod, 1);
        pod.close();
        up.close();
      });
    } finally {
      restore();
    }
  });
}

test('openGroupPort: a failure that is not a refusal (ENOMEM at the ring sizes, ENODEV at the bind) does not fall back', async () => {
  for (const fail of [
    { at: 'rings', errno: 'ENOMEM', code: 'ERR_XSK_SETUP' },
    { at: 'bind', errno: 'ENODEV', code: 'ERR_XSK_BIND' },
  ] as const) {
    const o: Parameters<typeof fakeKernel>[0] = { refuse: 'bind' };
    const k = fakeKernel(o);
    const restore = useSys(k.sys);
    const w = worker(2);
    try {
      const up = await openGroupPort(w.opts('uplink', 'up0', 0), w.group);
      o.fail = fail;
      await assert.rejects(openGroupPort(w.opts('pod', 'w0', 1), w.group), (e: { code?: string }) => e.code === fail.code);
      assert.deepEqual(k.closed, [101], 'the socket it opened was closed');
      assert.equal(k.sys.callsOf('socket').length, 2, 'no fallback socket');
      up.close();
    } finally {
      restore();
    }
  }
});

test('openGroupPort: a first port that fails after its socket opened leaves the group without an owner', async () => {
  const k = fakeKernel({ refuse: 'bind' });
  const restore = useSys(k.sys);
  const w = worker(2);
  try {
    // No bpf() in this fake: entering the XSKMAP fails after the socket opened.
    await assert.rejects(openGroupPort(w.opts('uplink', 'up0', 0, { xsksMapFd: 7 }), w.group));
    assert.equal(ownerFd(w.group), undefined, 'no closed socket as the owner');
    assert.deepEqual(k.closed, [100]);
    const up = await openGroupPort(w.opts('pod', 'w0', 1), w.group);
    assert.equal(ownerFd(w.group), up.fd, 'the next first port becomes the owner');
    up.close();
  } finally {
    restore();
  }
});

test('SharedXskPort.close: a close() that throws still gives the frames back to the pool and the memory id', async () => {
  const k = fakeKernel({ refuse: 'bind', closeThrows: true });
  const restore = useSys(k.sys);
  const w = worker(2);
  try {
    const up = (await openGroupPort(w.opts('uplink', 'up0', 0, { batchSize: 4 }), w.group)) as SharedXskPort;
    const pool = w.group.pool;
    const inFill = pool.held(1 + 2 * up.member);
    assert.equal(inFill, FRAMES - pool.reserve, 'its fill ring, down to the reserve');
    assert.throws(() => up.close(), /EIO/);
    assert.equal(pool.quarantined, inFill, 'left the pool: its fill ring is quarantined');
    assert.equal(pool.reserve, 0);
    assert.equal(pool.available + pool.quarantined, pool.frames);
    assert.equal(w.memory.used, 0, 'its memory id was released');
    up.close(); // once only
    assert.equal(k.closed.length, 1);
  } finally {
    restore();
  }
});

test('release() wakes the driver when the fill ring asks for it (need_wakeup: a zero-copy driver whose fill ring ran dry), and only then', async () => {
  // Shared UMEM owner, and a port with its own UMEM (the kernel refused to share at the bind).
  const k = fakeKernel({ refuse: 'bind' });
  const polls: { fd: number; timeoutMs: number }[] = [];
  const sys = k.sys as unknown as { handlers: { tryPoll?: (fds: Uint8Array, n: number, t: number) => number } };
  sys.handlers.tryPoll = (fds, _n, t) => {
    polls.push({ fd: new DataView(fds.buffer, fds.byteOffset).getInt32(0, true), timeoutMs: t });
    return 0;
  };
  const restore = useSys(k.sys);
  const w = worker(2);
  try {
    await withUmemEnv('shared', async () => {
      const up = await openGroupPort(w.opts('uplink', 'up0', 0), w.group);
      const pod = await openGroupPort(w.opts('pod', 'w0', 1), w.group);
      assert.ok(up instanceof SharedXskPort && pod instanceof XskPort);
      for (const p of [up, pod]) {
        const flags = new Uint32Array(k.rings.get(`${p.fd}:${XDP_UMEM_PGOFF_FILL_RING}`)!.buffer);
        polls.length = 0;
        p.release();
        assert.deepEqual(polls, [], `${p.name}: no flag, no syscall`);
        flags[OFF.flags / 4] = XDP_RING_NEED_WAKEUP;
        p.release();
        assert.deepEqual(polls, [{ fd: p.fd, timeoutMs: 0 }], `${p.name}: the flag → one poll that does not wait`);
        flags[OFF.flags / 4] = 0;
      }
      pod.close();
      up.close();
    });
  } finally {
    restore();
  }
});

test('txMetadataHonoured: the kernel computes AF_XDP TX checksums on every device only from Linux 6.18 on', () => {
  for (const r of ['6.18.0', '6.18.44-fc-v657', '6.19.1', '7.0.0-rc1', '10.2.3']) assert.equal(txMetadataHonoured(r), true, r);
  for (const r of ['6.17.9', '6.11.0-generic', '6.8.0', '5.15.0-91-generic', '4.19.0', 'garbage', ''])
    assert.equal(txMetadataHonoured(r), false, r);
});

test('AF_XDP ports with an MTU (PortPlan.mtu): a frame above MTU + 14, or MTU + 18 with an 802.1Q tag, is counted too-big and not queued; both port kinds', async () => {
  // Shared UMEM owner, and a port with its own UMEM (the kernel refused to share at the bind).
  const k = fakeKernel({ refuse: 'bind' });
  const restore = useSys(k.sys);
  const w = worker(2);
  try {
    await withUmemEnv('shared', async () => {
      const up = await openGroupPort(w.opts('uplink', 'up0', 0, { mtu: 1500 }), w.group);
      const pod = await openGroupPort(w.opts('pod', 'w0', 1, { mtu: 1500 }), w.group);
      assert.ok(up instanceof SharedXskPort && pod instanceof XskPort);
      const frame = (len: number, tagged: boolean): Uint8Array => {
        const f = new Uint8Array(len).fill(0x5a);
        f.set(tagged ? [0x81, 0x00] : [0x08, 0x00], 12);
        return f;
      };
      for (const [slot, p] of [up, pod].entries()) {
        const other = new MemoryPort({ name: 'x', memory: w.memory, counters: new Float64Array(64), base: 0 });
        for (const [len, tagged] of [
          [1514, false],
          [1515, false],
          [1518, true],
          [1519, true],
          [1516, false],
        ] as const)
          other.inject(frame(len, tagged));
        const link = new Link('t', 8);
        other.rx(link, -1);
        assert.equal(p.tx(link), 2, `${p.name}: the untagged 1514 and the tagged 1518 are queued`);
        const tx = new DataView(k.rings.get(`${p.fd}:${XDP_PGOFF_TX_RING}`)!.buffer);
        assert.equal(tx.getUint32(OFF.producer, true), 2);
        assert.deepEqual([tx.getUint32(OFF.desc + 8, true), tx.getUint32(OFF.desc + 16 + 8, true)], [1514, 1518]);
        assert.equal(w.c[32 * slot + PC.txTooBig], 3, `${p.name}: 1515 and 1516 untagged, 1519 tagged`);
        assert.equal(w.c[32 * slot + PC.txDropped], 0, 'too big is not dropped for lack of room');
        other.close();
      }
      pod.close();
      up.close();
    });
  } finally {
    restore();
  }
});
