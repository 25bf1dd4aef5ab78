/**
 * Losses and resyncs without a kernel: the subscription's ENOBUFS drain (FakeSys), the mirror's
 * resync diff as change events, link-down replay, error reporting (fatal and not), and the
 * destinations `resolve` refuses up front.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { useSys } from '../../src/sys/index.ts';
import { FakeSys } from '../support/fake-sys.ts';
import { encodeMessage } from '../../src/netlink/codec.ts';
import { AF_INET, NEIGH_MSG, NUD_PERMANENT, NUD_REACHABLE, RTM_NEWNEIGH } from '../../src/netlink/rtnl.ts';
import { RtnlSubscription, type OverflowInfo } from '../../src/netlink/socket.ts';
import { Mirror, MAX_TIMER_MS, type MirrorEvent } from '../../src/netlink/mirror.ts';
import { neighKey, parseUpdate, type TableChange } from '../../src/netlink/tables.ts';
import { specialAddressKind } from '../../src/netlink/ip.ts';
import { parseIpText } from '../../src/netlink/ip.ts';
import { run as runResolve } from '../../src/control/commands/resolve.ts';
import { FakeKernel, addr, link, neigh, route } from './netlink-fake-kernel.ts';

type Step = Uint8Array | 'EAGAIN' | 'ENOBUFS' | 'EBADF';

/** A FakeSys whose subscription socket returns `script` one recv at a time (EAGAIN when empty). */
function scriptedSocket(script: Step[]): { fake: FakeSys; restore: () => void } {
  const fake: FakeSys = new FakeSys({
    socket: () => 7,
    setsockopt: () => undefined,
    bind: () => undefined,
    getsockopt: (_fd, _l, _n, out) => {
      out.set([0, 0x12, 0, 0]);
      return 4;
    },
    close: () => undefined,
    pollAsync: async () => {
      await new Promise((r) => setTimeout(r, 1));
      return script.length ? 1 : 0;
    },
    recvfrom: (_fd, buf) => {
      const s = script.shift() ?? 'EAGAIN';
      if (typeof s === 'string') throw fake.errno('recvfrom', s);
      buf.set(s);
      return s.length;
    },
  });
  return { fake, restore: useSys(fake) };
}

const datagram = (last: number): Uint8Array =>
  encodeMessage(
    NEIGH_MSG,
    { type: RTM_NEWNEIGH, flags: 0 },
    { ndm_family: AF_INET, ndm_ifindex: 2, ndm_state: NUD_REACHABLE },
    { dst: `198.18.0.${last}`, lladdr: '02:00:00:00:00:01' },
  );

/** Runs a subscription over `script` until `done()` holds; returns what it reported, in order. */
async function runSubscription(script: Step[], done: (log: string[]) => boolean, drainBudget?: number): Promise<string[]> {
  const { restore } = scriptedSocket(script);
  const log: string[] = [];
  const sub = RtnlSubscription.open({
    groups: [3],
    drainBudget,
    onMessages: (msgs) => log.push(`msg ${msgs.map((x) => (parseUpdate(x)!.entry as { ip: string }).ip).join(',')}`),
    onOverflow: (i: OverflowInfo) => log.push(`overflow discarded=${i.discarded} drained=${i.drained}`),
    onError: (e, fatal) => log.push(`error ${(e as { code?: string }).code} fatal=${fatal}`),
  });
  try {
    for (let i = 0; i < 200 && !done(log); i++) await new Promise((r) => setTimeout(r, 2));
  } finally {
    await sub.close();
    restore();
  }
  return log;
}

test('subscription: after ENOBUFS the datagrams queued behind the loss are discarded, then onOverflow, then new ones flow', async () => {
  const log = await runSubscription([datagram(1), 'ENOBUFS', datagram(2), datagram(3), 'EAGAIN', datagram(4)], (l) => l.length >= 3);
  assert.deepEqual(log, ['msg 198.18.0.1', 'overflow discarded=2 drained=true', 'msg 198.18.0.4']);
});

test('subscription: a drain longer than its budget reports drained=false, delivers nothing until the queue empties', async () => {
  const log = await runSubscription(
    ['ENOBUFS', datagram(2), datagram(3), datagram(5), 'ENOBUFS', datagram(6), 'EAGAIN', datagram(7)],
    (l) => l.some((x) => x.startsWith('msg')),
    2,
  );
  assert.deepEqual(log, [
    'overflow discarded=2 drained=false',
    'overflow discarded=1 drained=false', // 5, then ENOBUFS again (the queue had emptied and overflowed)
    'overflow discarded=1 drained=true', // 6, then EAGAIN
    'msg 198.18.0.7',
  ]);
});

test('subscription: a socket error is fatal and stops the reader', async () => {
  const log = await runSubscription([datagram(1), 'EBADF', datagram(2)], (l) => l.length >= 2);
  assert.deepEqual(log, ['msg 198.18.0.1', 'error EBADF fatal=true']);
});

/** A consumer of change events, keyed like the mirror's tables. */
class Consumer {
  links = new Map<number, unknown>();
  addrs = new Map<string, unknown>();
  routes = new Map<string, unknown>();
  neighbours = new Map<string, unknown>();
  constructor(m: Mirror) {
    const c = m.tables.capture();
    for (const [k, v] of c.links) this.links.set(k, v);
    for (const [k, v] of c.addrs) this.addrs.set(k, v);
    for (const [k, v] of c.routes) this.routes.set(k, v);
    for (const [k, v] of c.neighbours) this.neighbours.set(k, v);
  }
  apply(e: TableChange): void {
    const [map, key]: [Map<any, unknown>, unknown] =
      e.table === 'link'
        ? [this.links, e.entry.index]
        : e.table === 'addr'
          ? [this.addrs, `${e.entry.family}|${e.entry.ifindex}|${e.entry.address}/${e.entry.prefixLen}`]
          : e.table === 'route'
            ? [this.routes, `${e.entry.family}|${e.entry.dst}/${e.entry.dstLen}|${e.entry.tos}|${e.entry.priority}`]
            : [this.neighbours, neighKey(e.entry.ifindex, e.entry.ip)];
    if (e.op === 'del') map.delete(key);
    else map.set(key, e.entry);
  }
  assertEquals(m: Mirror): void {
    const c = m.tables.capture();
    assert.deepEqual(this.links, c.links);
    assert.deepEqual(this.addrs, c.addrs);
    assert.deepEqual(this.routes, c.routes);
    assert.deepEqual(this.neighbours, c.neighbours);
  }
}

test('resync after an overflow: the net changes of every table arrive as events, then one resync event; a consumer ends equal', async () => {
  const k = new FakeKernel();
  k.links.push(link(3, 'eth1'));
  k.addrs = [addr('198.18.0.10', 24), addr('2001:db8::10', 64)];
  k.neighbours = [
    neigh('198.18.0.1', '02:00:00:00:00:01'),
    neigh('198.18.0.2', '02:00:00:00:00:02'),
    neigh('198.18.0.3', '02:00:00:00:00:03'),
    neigh('2001:db8::1', '02:00:00:00:00:61'),
  ];
  const m = await Mirror.open({ transport: k });
  try {
    const consumer = new Consumer(m);
    const events: MirrorEvent[] = [];
    m.onChange((e) => {
      events.push(e);
      if (e.table !== 'resync') consumer.apply(e);
    });
    // While notifications were lost: eth1 went away, eth0 got renamed, an address and a route
    // changed, neighbours were deleted, changed and added; 198.18.0.3 did not change.
    k.links = [link(1, 'lo'), link(2, 'wan0')];
    k.addrs = [addr('198.18.0.11', 24), addr('2001:db8::10', 64)];
    k.routes = [
      route('198.18.0.0', 24),
      route('0.0.0.0', 0, { gateway: '198.18.0.254' }),
      route('198.19.0.0', 16, { gateway: '198.18.0.2' }),
    ];
    k.neighbours = [
      neigh('198.18.0.2', '02:00:00:00:00:22', NUD_PERMANENT),
      neigh('198.18.0.3', '02:00:00:00:00:03'),
      neigh('198.18.0.4', '02:00:00:00:00:04'),
    ];
    // A notification newer than the dump's view arrives during the dump: it is part of the diff.
    k.duringDump = () => k.notify(neigh('198.18.0.5', '02:00:00:00:00:05'));
    k.overflow(17);
    await m.settled();

    consumer.assertEquals(m);
    const last = events.at(-1)!;
    assert.equal(last.table, 'resync');
    const changes = events.slice(0, -1) as TableChange[];
    assert.equal((last as { changes: number }).changes, changes.length);
    assert.ok(
      events.slice(0, -1).every((e) => 'fromResync' in e && e.fromResync === true),
      'the diff is marked as coming from the resync',
    );
    const summary = changes.map(
      (e) =>
        `${e.table} ${e.op} ${'name' in e.entry ? e.entry.name : 'ip' in e.entry ? e.entry.ip : 'address' in e.entry ? e.entry.address : `${e.entry.dst}/${e.entry.dstLen}`}`,
    );
    assert.deepEqual(summary, [
      'link del eth1',
      'link update wan0',
      'addr del 198.18.0.10',
      'addr add 198.18.0.11',
      'route del 2001:db8::/64',
      'route del ::/0',
      'route update 0.0.0.0/0',
      'route add 198.19.0.0/16',
      'neigh del 198.18.0.1',
      'neigh del 2001:db8::1',
      'neigh update 198.18.0.2',
      'neigh add 198.18.0.4',
      'neigh add 198.18.0.5',
    ]);
    assert.equal(m.counters.overflows, 1);
    assert.equal(m.counters.notificationsDiscarded, 17);
    assert.equal(m.isStale, false);

    // Live notifications after the resync are single events again.
    events.length = 0;
    k.notify(neigh('198.18.0.4', undefined, 0, 2, true));
    assert.deepEqual(
      events.map((e) => e.table + ('op' in e ? e.op : '') + ('fromResync' in e ? ' fromResync' : '')),
      ['neighdel'],
    );
    consumer.assertEquals(m);
  } finally {
    await m.close();
  }
});

test('a link that goes down among the notifications buffered during a dump makes the resync run again', async () => {
  const k = new FakeKernel();
  const m = await Mirror.open({ transport: k });
  try {
    assert.ok(m.tables.lookupRoute('203.0.113.1'));
    const reasons: string[] = [];
    m.onChange((e) => {
      if (e.table === 'resync') reasons.push(e.reason);
    });
    // The routes were dumped before the link went down; IPv4 then flushed them silently.
    k.duringDump = () => {
      k.links = [link(1, 'lo'), link(2, 'eth0', 0)];
      k.routes = [];
      k.notify(link(2, 'eth0', 0));
    };
    await m.resync('manual');
    assert.deepEqual(reasons, ['manual', 'link 2 down']);
    assert.equal(m.tables.lookupRoute('203.0.113.1'), undefined);
  } finally {
    await m.close();
  }
});

test('a failed resync is reported (not fatal) and retried; resolve waits for it and never answers from the stale table', async () => {
  const k = new FakeKernel();
  k.neighbours = [neigh('198.18.0.1', '02:00:00:00:00:01')];
  const m = await Mirror.open({ transport: k });
  try {
    const errors: string[] = [];
    m.onError((e, fatal) => errors.push(`${(e as { code?: string }).code} ${fatal}`));
    // The gateway's deletion was lost, and the first dump after the overflow fails.
    k.neighbours = [];
    k.failDumps = 1;
    k.overflow();
    assert.equal(m.isStale, true);
    const resolving = m.resolve('203.0.113.5', { timeoutMs: 5000 });
    await m.settled();
    assert.deepEqual(errors, ['ERR_NETLINK_RESYNC false']);
    assert.equal(m.counters.resyncFailures, 1);
    assert.equal(m.isStale, false);
    assert.equal(m.tables.getNeighbour(2, '198.18.0.1'), undefined);
    // Not in the fresh table: the kernel is asked, and its answer is used.
    await new Promise((r) => setImmediate(r));
    assert.equal(k.requests.length, 1, 'NTF_USE sent');
    k.notify(neigh('198.18.0.1', '02:00:00:00:00:99'));
    const r = await resolving;
    assert.equal(r.mac, '02:00:00:00:00:99');
    assert.equal(r.source, 'kernel');
  } finally {
    await m.close();
  }
});

test('a fatal subscription error is reported once, fails pending and later resolves, and stops the mirror', async () => {
  const k = new FakeKernel();
  const m = await Mirror.open({ transport: k });
  try {
    const errors: [string | undefined, boolean][] = [];
    m.onError((e, fatal) => errors.push([(e as { code?: string }).code, fatal]));
    const pending = m.resolve('198.18.0.50', { timeoutMs: 5000 }).catch((e: { code: string }) => e.code);
    k.sub!.onError!(new Error('EBADF'), true);
    assert.deepEqual(errors, [['ERR_NETLINK_MIRROR_FAILED', true]]);
    assert.equal(await pending, 'ERR_NETLINK_MIRROR_FAILED');
    assert.equal(m.failed?.code, 'ERR_NETLINK_MIRROR_FAILED');
    await assert.rejects(m.resolve('198.18.0.51'), { code: 'ERR_NETLINK_MIRROR_FAILED' });
    k.notify(neigh('198.18.0.52', '02:00:00:00:00:52'));
    assert.equal(m.tables.getNeighbour(2, '198.18.0.52'), undefined, 'nothing is applied after the failure');
    k.sub!.onError!(new Error('again'), true);
    assert.equal(errors.length, 1);
  } finally {
    await m.close();
  }
});

test('a throwing change listener neither stops the datagram nor goes unnoticed; an unreadable datagram resyncs', async () => {
  const k = new FakeKernel();
  const m = await Mirror.open({ transport: k });
  try {
    const errors: string[] = [];
    m.onError((e, fatal) => errors.push(`${(e as { code?: string }).code} ${fatal}`));
    m.onChange(() => {
      throw new Error('listener bug');
    });
    k.notify(neigh('198.18.0.2', '02:00:00:00:00:02'), neigh('198.18.0.3', '02:00:00:00:00:03'));
    assert.ok(m.tables.getNeighbour(2, '198.18.0.3'), 'the whole datagram was applied');
    assert.deepEqual(errors, ['ERR_NETLINK_LISTENER false', 'ERR_NETLINK_LISTENER false']);

    errors.length = 0;
    const before = m.counters.resyncs;
    k.neighbours = [neigh('198.18.0.9', '02:00:00:00:00:09')];
    k.sub!.onError!(Object.assign(new Error('too big'), { code: 'ERR_NETLINK_TRUNCATED' }), false);
    await m.settled();
    assert.equal(m.counters.resyncs, before + 1);
    assert.ok(m.tables.getNeighbour(2, '198.18.0.9'));
    assert.ok(errors[0]!.startsWith('ERR_NETLINK_TRUNCATED false'));
  } finally {
    await m.close();
  }
});

test('special addresses: unspecified, loopback, multicast, broadcast, IPv4-mapped', () => {
  const kind = (ip: string): string | undefined => specialAddressKind(parseIpText(ip)!);
  assert.equal(kind('0.0.0.0'), 'unspecified');
  assert.equal(kind('0.1.2.3'), 'unspecified');
  assert.equal(kind('::'), 'unspecified');
  assert.equal(kind('127.0.0.1'), 'loopback');
  assert.equal(kind('127.255.0.9'), 'loopback');
  assert.equal(kind('::1'), 'loopback');
  assert.equal(kind('224.0.0.1'), 'multicast');
  assert.equal(kind('239.255.255.250'), 'multicast');
  assert.equal(kind('ff02::1'), 'multicast');
  assert.equal(kind('255.255.255.255'), 'broadcast');
  assert.equal(kind('::ffff:198.18.0.1'), 'v4-mapped');
  for (const ok of ['198.18.0.1', '223.255.255.255', '240.0.0.1', '2001:db8::1', '::2', '::1:0:0:1', 'fe80::1'])
    assert.equal(kind(ok), undefined, ok);
});

test('resolve refuses destinations that never have a next hop, before asking the kernel', async () => {
  const k = new FakeKernel();
  k.addrs = [addr('198.18.0.10', 24), addr('2001:db8::10', 64), addr('198.18.9.1', 31)];
  const m = await Mirror.open({ transport: k, resolveTimeoutMs: 20 });
  try {
    const refused = async (ip: string): Promise<string> =>
      m.resolve(ip).then(
        () => 'resolved?!',
        (e: { code: string; details?: { kind?: string } }) => `${e.code} ${e.details?.kind}`,
      );
    const cases: [string, string][] = [
      ['127.0.0.1', 'ERR_NETLINK_LOCAL_ADDRESS loopback'],
      ['::1', 'ERR_NETLINK_LOCAL_ADDRESS loopback'],
      ['198.18.0.10', 'ERR_NETLINK_LOCAL_ADDRESS own'],
      ['2001:db8::10', 'ERR_NETLINK_LOCAL_ADDRESS own'],
      ['2001:0db8:0::10', 'ERR_NETLINK_LOCAL_ADDRESS own'],
      ['0.0.0.0', 'ERR_NETLINK_BAD_ADDRESS unspecified'],
      ['::', 'ERR_NETLINK_BAD_ADDRESS unspecified'],
      ['224.0.0.251', 'ERR_NETLINK_BAD_ADDRESS multicast'],
      ['ff02::1:ff00:1', 'ERR_NETLINK_BAD_ADDRESS multicast'],
      ['255.255.255.255', 'ERR_NETLINK_BAD_ADDRESS broadcast'],
      ['198.18.0.255', 'ERR_NETLINK_BAD_ADDRESS broadcast'],
      ['::ffff:198.18.0.7', 'ERR_NETLINK_BAD_ADDRESS v4-mapped'],
      ['nonsense', 'ERR_NETLINK_BAD_ADDRESS invalid'],
    ];
    for (const [ip, want] of cases) assert.equal(await refused(ip), want, ip);
    assert.equal(k.requests.length, 0, 'no NTF_USE request for any of them');
    // A /31 has no broadcast address (RFC 3021): its other end is an ordinary destination, as is
    // any other unicast address; the kernel is asked for their next hops.
    assert.equal(await refused('198.18.9.1'), 'ERR_NETLINK_LOCAL_ADDRESS own');
    assert.equal(await refused('198.18.9.0'), 'ERR_NETLINK_RESOLVE_TIMEOUT undefined');
    assert.equal(await refused('198.18.0.77'), 'ERR_NETLINK_RESOLVE_TIMEOUT undefined');
    assert.equal(k.requests.length, 2);

    for (const t of [0, -1, MAX_TIMER_MS + 1, Number.NaN, Number.POSITIVE_INFINITY]) {
      await assert.rejects(m.resolve('198.18.0.78', { timeoutMs: t }), { code: 'ERR_NETLINK_BAD_TIMEOUT' }, String(t));
    }
    await assert.rejects(Mirror.open({ transport: new FakeKernel(), resolveTimeoutMs: 2 ** 31 }), { code: 'ERR_NETLINK_BAD_TIMEOUT' });
  } finally {
    await m.close();
  }
});

test('pinhole resolve --timeout: integer milliseconds 1..2^31-1, anything else is a usage error before the mirror opens', async () => {
  const io = { out: (): void => undefined, err: (): void => undefined };
  for (const t of ['2147483648', '99999999999', '0', '-5', '1.5', 'abc', '', '1e3']) {
    await assert.rejects(runResolve(['198.18.0.1', `--timeout=${t}`], io), { code: 'ERR_CLI_USAGE' }, t);
  }
});
