/** The mirror's logic with a fake kernel: tables, LPM, resync protocol, resolve/NTF_USE, pending queues, shared table. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import { splitMessages, decodeBody } from '../../src/netlink/codec.ts';
import {
  AF_INET6,
  NEIGH_MSG,
  NUD_FAILED,
  NUD_INCOMPLETE,
  NUD_PERMANENT,
  NUD_REACHABLE,
  NUD_STALE,
  NTF_USE,
  type RouteEntry,
} from '../../src/netlink/rtnl.ts';
import { Mirror, nextHopOf } from '../../src/netlink/mirror.ts';
import { MirrorTables, parseUpdate } from '../../src/netlink/tables.ts';
import { NEIGH_BUSY, NEIGH_MISS, NeighbourTableReader, NeighbourTableWriter } from '../../src/netlink/neigh-table.ts';
import { parseIpText } from '../../src/netlink/ip.ts';
import { FakeKernel, link, neigh, route } from './netlink-fake-kernel.ts';

test('LPM: longest prefix wins, then lowest metric; defaults; other tables and cloned routes ignored', () => {
  const t = new MirrorTables();
  for (const m of [
    route('0.0.0.0', 0, { gateway: '198.18.0.1' }),
    route('198.19.0.0', 16, { gateway: '198.18.0.2' }),
    route('198.19.7.0', 24, { gateway: '198.18.0.3', priority: 20 }),
    route('198.19.7.0', 24, { gateway: '198.18.0.4', priority: 10 }),
    route('198.19.7.128', 25, { gateway: '198.18.0.5', table: 100 }),
    route('::', 0, { gateway: '2001:db8::1' }),
    route('2001:db8:1::', 48, { gateway: '2001:db8::2' }),
    route('2001:db8:1:2::', 64, { gateway: '2001:db8::3' }),
    route('2001:db8:1:2:3::', 80, { gateway: '2001:db8::4' }),
  ]) {
    const u = parseUpdate(m);
    if (u) t.apply(u);
  }
  const gw = (ip: string): string | undefined => t.lookupRoute(ip)?.gateway;
  assert.equal(gw('198.19.7.200'), '198.18.0.4', 'table 100 is not mirrored; lowest metric among /24s');
  assert.equal(gw('198.19.8.1'), '198.18.0.2');
  assert.equal(gw('203.0.113.9'), '198.18.0.1');
  assert.equal(gw('2001:db8:1:2::9'), '2001:db8::3');
  assert.equal(gw('2001:db8:1:2:3::9'), '2001:db8::4');
  assert.equal(gw('2001:db8:1:2:4::9'), '2001:db8::3');
  assert.equal(gw('2001:db8:1:3::9'), '2001:db8::2');
  assert.equal(gw('2001:db9::'), '2001:db8::1');
  t.apply(parseUpdate(route('198.19.7.0', 24, { priority: 10, del: true }))!);
  assert.equal(gw('198.19.7.200'), '198.18.0.3');
  t.apply(parseUpdate(route('0.0.0.0', 0, { del: true }))!);
  assert.equal(t.lookupRoute('203.0.113.9'), undefined);
  assert.equal(t.lookupRoute('not an ip'), undefined);
  // Non-byte-aligned prefixes.
  t.apply(parseUpdate(route('198.18.128.0', 17, { gateway: '198.18.0.9' }))!);
  assert.equal(gw('198.18.200.1'), '198.18.0.9');
  assert.equal(t.lookupRoute('198.18.127.1'), undefined);
});

test('next hop: gateway, on-link destination, first hop of a multipath route', () => {
  const base: RouteEntry = {
    family: 4,
    dst: '198.19.0.0',
    dstLen: 16,
    table: 254,
    protocol: 4,
    scope: 0,
    type: 1,
    tos: 0,
    priority: 0,
    flags: 0,
  };
  assert.deepEqual(nextHopOf({ ...base, oif: 3, gateway: '198.18.0.2' }, '198.19.1.1'), { family: 4, ifindex: 3, ip: '198.18.0.2' });
  assert.deepEqual(nextHopOf({ ...base, oif: 3 }, '198.19.1.1'), { family: 4, ifindex: 3, ip: '198.19.1.1' });
  assert.deepEqual(
    nextHopOf(
      {
        ...base,
        multipath: [
          { ifindex: 5, gateway: '2001:db8::1', weight: 1, flags: 0 },
          { ifindex: 6, weight: 1, flags: 0 },
        ],
      },
      '198.19.1.1',
    ),
    { family: 6, ifindex: 5, ip: '2001:db8::1' },
  );
  assert.equal(nextHopOf({ ...base, nhId: 7 }, '198.19.1.1'), undefined);
});

test('shared neighbour table: insert, update, delete, tombstone rebuild, full table, no torn reads', () => {
  const w = new NeighbourTableWriter(16);
  const r = new NeighbourTableReader(w.buffer);
  const mac = new Uint8Array(8);
  const v4 = (s: string): number => {
    const b = parseIpText(s)!;
    return ((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0;
  };
  assert.equal(r.lookupV4(2, v4('198.18.0.1'), mac, 0), NEIGH_MISS);
  assert.ok(
    w.upsert({ family: 4, ifindex: 2, addr: parseIpText('198.18.0.1')!, mac: Uint8Array.of(2, 0, 0, 0, 0, 1), state: NUD_REACHABLE }),
  );
  assert.equal(r.lookupV4(2, v4('198.18.0.1'), mac, 1), NUD_REACHABLE);
  assert.deepEqual([...mac.subarray(1, 7)], [2, 0, 0, 0, 0, 1]);
  assert.equal(r.lookupV4(3, v4('198.18.0.1'), mac, 0), NEIGH_MISS, 'ifindex is part of the key');
  w.upsert({ family: 6, ifindex: 2, addr: parseIpText('2001:db8::1')!, mac: Uint8Array.of(2, 0, 0, 0, 0, 6), state: NUD_STALE });
  assert.equal(r.lookupV6(2, parseIpText('2001:db8::1')!, 0, mac, 0), NUD_STALE);
  assert.equal(r.lookupV4(2, v4('198.18.0.1'), mac, 0), NUD_REACHABLE);
  w.upsert({ family: 4, ifindex: 2, addr: parseIpText('198.18.0.1')!, mac: Uint8Array.of(2, 0, 0, 0, 0, 2), state: NUD_PERMANENT });
  assert.equal(r.lookupV4(2, v4('198.18.0.1'), mac, 0), NUD_PERMANENT);
  assert.equal(mac[5], 2);
  assert.equal(r.count, 2);
  // Fill to the load limit (75% of 16 = 12), then one more is refused and counted.
  for (let i = 0; i < 10; i++)
    assert.ok(w.upsert({ family: 4, ifindex: 2, addr: Uint8Array.of(198, 18, 1, i), mac: undefined, state: NUD_INCOMPLETE }));
  assert.equal(w.upsert({ family: 4, ifindex: 2, addr: Uint8Array.of(198, 18, 2, 0), mac: undefined, state: 1 }), false);
  assert.equal(w.fullDrops, 1);
  for (let i = 0; i < 10; i++) assert.ok(w.remove(4, 2, Uint8Array.of(198, 18, 1, i)));
  assert.equal(w.remove(4, 2, Uint8Array.of(198, 18, 1, 0)), false);
  assert.ok(w.needsRebuild, 'many tombstones');
  assert.equal(r.lookupV6(2, parseIpText('2001:db8::1')!, 0, mac, 0), NUD_STALE, 'probe continues past tombstones');
  // A reader never gets an answer while a write section is open.
  w.begin();
  assert.equal(r.lookupV4(2, v4('198.18.0.1'), mac, 0), NEIGH_BUSY);
  w.end();
  assert.throws(() => new NeighbourTableWriter(100), RangeError);
});

test('shared neighbour table read from a worker thread while the main thread rewrites it', async () => {
  const w = new NeighbourTableWriter(1024);
  const addr = parseIpText('198.18.0.9')!;
  w.upsert({ family: 4, ifindex: 2, addr, mac: Uint8Array.of(1, 1, 1, 1, 1, 1), state: NUD_REACHABLE });
  // Workers do not inherit the tsx loader on Node 20: register it, then load the TypeScript worker.
  const entry = new URL('./netlink-neigh-worker.ts', import.meta.url).href;
  const tsxApi = import.meta.resolve('tsx/esm/api');
  const worker = new Worker(`import(${JSON.stringify(tsxApi)}).then((m) => { m.register(); return import(${JSON.stringify(entry)}); })`, {
    eval: true,
    workerData: { sab: w.buffer },
  });
  const result = new Promise<{ torn: number; reads: number }>((res, rej) => {
    worker.once('message', res);
    worker.once('error', rej);
  });
  let stop = false;
  void result.then(
    () => {
      stop = true;
    },
    () => {
      stop = true;
    },
  );
  let v = 0;
  const m = new Uint8Array(6);
  while (!stop) {
    for (let i = 0; i < 2000; i++) {
      v = (v + 1) & 0xff;
      m.fill(v);
      w.upsert({ family: 4, ifindex: 2, addr, mac: m, state: NUD_REACHABLE });
    }
    await new Promise((r) => setImmediate(r));
  }
  const res = await result;
  assert.equal(res.torn, 0);
  assert.ok(res.reads > 0);
  await worker.terminate();
});

test('mirror: initial dump, live notifications, malformed ones skipped and counted', async () => {
  const k = new FakeKernel();
  k.neighbours = [neigh('198.18.0.1', '02:00:00:00:00:01'), neigh('198.18.0.77', undefined, NUD_FAILED)];
  const m = await Mirror.open({ transport: k });
  try {
    assert.equal(m.tables.neighbours.size, 2);
    assert.equal(m.tables.links.get(2)?.name, 'eth0');
    const changes: string[] = [];
    m.onChange((e) => changes.push(`${e.table}:${'op' in e ? e.op : e.reason}`));
    k.notify(neigh('198.18.0.2', '02:00:00:00:00:02'));
    k.notify(neigh('198.18.0.2', '02:00:00:00:00:03'));
    k.notify(neigh('198.18.0.1', undefined, 0, 2, true));
    k.notify(route('198.19.0.0', 16, { gateway: '198.18.0.2' }));
    const bad = neigh('198.18.0.9', '02:00:00:00:00:09');
    const corrupt = { ...bad, payload: bad.payload.subarray(0, 18) };
    k.notify(corrupt, neigh('198.18.0.10', '02:00:00:00:00:10'));
    assert.deepEqual(changes, ['neigh:add', 'neigh:update', 'neigh:del', 'route:add', 'neigh:add']);
    assert.equal(m.tables.getNeighbour(2, '198.18.0.2')?.mac, '02:00:00:00:00:03');
    assert.equal(m.tables.getNeighbour(2, '198.18.0.1'), undefined);
    assert.equal(m.tables.getNeighbour(2, '198.18.0.9'), undefined, 'a malformed notification is skipped, not half-applied');
    assert.equal(m.counters.notificationsMalformed, 1);
    assert.equal((m.error as { code?: string }).code, 'ERR_NETLINK_TRUNCATED');
    const r = new NeighbourTableReader(m.sharedNeighbours);
    const mac = new Uint8Array(6);
    assert.equal(r.lookupV4(2, 0xc612000a, mac, 0), NUD_REACHABLE);
    assert.equal(mac[5], 0x10);
  } finally {
    await m.close();
  }
});

test('mirror: listeners run after the write section closes; a lookup from a listener finds the table idle', async () => {
  const k = new FakeKernel();
  const m = await Mirror.open({ transport: k });
  try {
    const r = new NeighbourTableReader(m.sharedNeighbours);
    const mac = new Uint8Array(6);
    const seen: number[] = [];
    // A listener does the main thread's work for a change (logs, next-hop publishing); a worker
    // that looks the neighbour up meanwhile must get an answer, not NEIGH_BUSY.
    m.onChange((e) => {
      if (e.table === 'neigh') seen.push(r.lookupV4(2, 0xc6120002, mac, 0));
    });
    k.notify(neigh('198.18.0.2', '02:00:00:00:00:02'), neigh('198.18.0.3', '02:00:00:00:00:03'));
    assert.deepEqual(seen, [NUD_REACHABLE, NUD_REACHABLE], 'both changes of the datagram are announced, each after the section closed');
    assert.equal(mac[5], 0x02);
  } finally {
    await m.close();
  }
});

test('mirror: overflow discards buffered notifications and resyncs; notifications during a resync are replayed after it', async () => {
  const k = new FakeKernel();
  const m = await Mirror.open({ transport: k });
  try {
    const resyncs: string[] = [];
    m.onChange((e) => {
      if (e.table === 'resync') resyncs.push(e.reason);
    });
    // Kernel state changed while notifications were lost.
    k.neighbours = [neigh('198.18.0.5', '02:00:00:00:00:05')];
    // During the dump, a notification newer than the snapshot arrives: it must win.
    k.duringDump = () => k.notify(neigh('198.18.0.6', '02:00:00:00:00:06'));
    k.sub!.onOverflow({ discarded: 0, drained: true });
    await m.settled();
    assert.equal(m.counters.overflows, 1);
    assert.deepEqual(resyncs, ['overflow (ENOBUFS)']);
    assert.equal(m.tables.getNeighbour(2, '198.18.0.5')?.mac, '02:00:00:00:00:05');
    assert.equal(m.tables.getNeighbour(2, '198.18.0.6')?.mac, '02:00:00:00:00:06');

    // An overflow during a resync: buffered (possibly stale) notifications are dropped, and the dump runs again.
    k.neighbours = [neigh('198.18.0.7', '02:00:00:00:00:07')];
    k.duringDump = () => {
      k.notify(neigh('198.18.0.7', '02:00:00:00:00:ee')); // stale: lost ones followed it
      k.sub!.onOverflow({ discarded: 0, drained: true });
    };
    const before = k.dumps;
    await m.resync('manual');
    assert.equal(k.dumps - before, 8, 'two full dumps');
    assert.equal(m.tables.getNeighbour(2, '198.18.0.7')?.mac, '02:00:00:00:00:07');
    assert.equal(m.tables.getNeighbour(2, '198.18.0.6'), undefined);
    assert.equal(m.tables.neighbours.size, 1);
  } finally {
    await m.close();
  }
});

test('mirror: a link going down triggers a resync (IPv4 flushes its routes silently)', async () => {
  const k = new FakeKernel();
  const m = await Mirror.open({ transport: k });
  try {
    assert.ok(m.tables.lookupRoute('203.0.113.1'));
    const done = new Promise<string>((res) =>
      m.onChange((e) => {
        if (e.table === 'resync') res(e.reason);
      }),
    );
    k.routes = [];
    k.notify(link(2, 'eth0', 0));
    assert.equal(await done, 'link 2 down');
    assert.equal(m.tables.lookupRoute('203.0.113.1'), undefined);
  } finally {
    await m.close();
  }
});

test('resolve: mirror hit; miss → one NTF_USE request, bounded queue, flush on the answer', async () => {
  const k = new FakeKernel();
  k.neighbours = [neigh('198.18.0.1', '02:00:00:00:00:01')];
  const flushed: { ip: string; mac: string; n: number }[] = [];
  const m = await Mirror.open({
    transport: k,
    pendingQueueLength: 2,
    onFlush: (nh, mac, pkts) => flushed.push({ ip: nh.ip, mac, n: pkts.length }),
  });
  try {
    const hit = await m.resolve('203.0.113.5');
    assert.equal(hit.source, 'mirror');
    assert.equal(hit.nexthop.ip, '198.18.0.1');
    assert.equal(hit.mac, '02:00:00:00:00:01');
    assert.equal(k.requests.length, 0);

    const pkt = new Uint8Array(64);
    const waits = [
      m.resolve('2001:db9::1', { packet: pkt }),
      m.resolve('2001:db9::2', { packet: pkt }),
      m.resolve('2001:db9::3', { packet: pkt }),
    ];
    assert.equal(k.requests.length, 1, 'one request per next hop');
    const req = decodeBody(NEIGH_MSG, splitMessages(k.requests[0]!)[0]!.payload);
    assert.equal(req.header.ndm_flags, NTF_USE);
    assert.equal(req.header.ndm_family, AF_INET6);
    assert.equal(req.attrs.dst, '2001:db8::1');
    assert.equal(m.counters.dropQueueOverflow, 1, 'queue of 2: the oldest packet was dropped');
    assert.equal(m.pendingNextHops().length, 1);
    k.notify(neigh('2001:db8::1', undefined, NUD_INCOMPLETE));
    assert.equal(m.pendingNextHops().length, 1, 'still incomplete');
    k.notify(neigh('2001:db8::1', '02:00:00:00:00:61', NUD_REACHABLE));
    const rs = await Promise.all(waits);
    for (const r of rs) {
      assert.equal(r.source, 'kernel');
      assert.equal(r.mac, '02:00:00:00:00:61');
    }
    assert.deepEqual(flushed, [{ ip: '2001:db8::1', mac: '02:00:00:00:00:61', n: 2 }]);
    assert.equal(m.counters.packetsFlushed, 2);
    assert.equal(m.counters.resolveByKernel, 3);
  } finally {
    await m.close();
  }
});

test('resolve: timeout, FAILED, refused request, too many pending, no route, unreachable; drops counted', async () => {
  const k = new FakeKernel();
  k.routes.push(route('198.51.100.0', 24, { type: 6 }));
  const m = await Mirror.open({ transport: k, maxPending: 2, resolveTimeoutMs: 50 });
  const code = async (p: Promise<unknown>): Promise<string> =>
    p.then(
      () => 'ok',
      (e: { code: string }) => e.code,
    );
  try {
    const pkt = new Uint8Array(1);
    assert.equal(await code(m.resolve('198.18.0.50', { packet: pkt })), 'ERR_NETLINK_RESOLVE_TIMEOUT');
    assert.equal(m.counters.dropTimeout, 1);

    const failing = code(m.resolve('198.18.0.51', { packet: pkt, timeoutMs: 5000 }));
    k.notify(neigh('198.18.0.51', undefined, NUD_FAILED));
    assert.equal(await failing, 'ERR_NETLINK_UNRESOLVED');
    assert.equal(m.counters.dropFailed, 1);

    const a = code(m.resolve('198.18.0.52', { timeoutMs: 5000 }));
    const b = code(m.resolve('198.18.0.53', { timeoutMs: 5000 }));
    assert.equal(await code(m.resolve('198.18.0.54', { packet: pkt })), 'ERR_NETLINK_RESOLVE_BUSY');
    assert.equal(m.counters.dropTooManyPending, 1);
    k.notify(neigh('198.18.0.52', '02:00:00:00:00:52'), neigh('198.18.0.53', '02:00:00:00:00:53', NUD_STALE));
    assert.deepEqual([await a, await b], ['ok', 'ok']);

    k.refuse = true;
    assert.equal(await code(m.resolve('198.18.0.55')), 'ERR_NETLINK_RESOLVE');
    assert.equal(await code(m.resolve('198.51.100.1')), 'ERR_NETLINK_UNREACHABLE');
    assert.equal(await code(m.resolve('nonsense')), 'ERR_NETLINK_BAD_ADDRESS');
    k.notify(route('0.0.0.0', 0, { del: true }));
    assert.equal(await code(m.resolve('203.0.113.1')), 'ERR_NETLINK_NO_ROUTE');
    const pending = code(m.resolve('198.18.0.56', { timeoutMs: 5000 }));
    await m.close();
    assert.equal(await pending, 'ERR_NETLINK_CLOSED');
  } finally {
    await m.close();
  }
});
