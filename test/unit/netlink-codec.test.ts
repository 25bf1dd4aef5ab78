/** The netlink codec and rtnetlink parsers: table-driven round trips, and malformed input → typed errors. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  NLMSG_ERROR,
  NLM_F_ACK_TLVS,
  NLM_F_CAPPED,
  NLM_F_DUMP,
  NLM_F_REQUEST,
  NetlinkError,
  decodeAttrs,
  decodeBody,
  decodeError,
  defineAttrs,
  encodeMessage,
  nlmsghdr,
  splitMessages,
  NlWriter,
  encodeAttrs,
} from '../../src/netlink/codec.ts';
import {
  AF_INET,
  AF_INET6,
  IFLA,
  LINK_MSG,
  NEIGH_MSG,
  ROUTE_MSG,
  ADDR_MSG,
  RTM_GETLINK,
  RTM_NEWLINK,
  RTM_NEWNEIGH,
  RTM_NEWROUTE,
  RTM_NEWADDR,
  NUD_REACHABLE,
  NTF_USE,
  dumpRequest,
  getLinkRequest,
  neighUseRequest,
  parseAddr,
  parseLink,
  parseNeigh,
  parseRoute,
  setXdpRequest,
  rtnexthop,
  XDP_FLAGS_UPDATE_IF_NOEXIST,
  XDP_FLAGS_SKB_MODE,
  XDP_FLAGS_DRV_MODE,
  XDP_FLAGS_REPLACE,
  nudStateName,
} from '../../src/netlink/rtnl.ts';
import { canonicalIp, formatIpBytes, parseIpText } from '../../src/netlink/ip.ts';
import { parseUpdate } from '../../src/netlink/tables.ts';
import { PinholeError } from '../../src/sys/errors.ts';

const one = (b: Uint8Array) => {
  const m = splitMessages(b);
  assert.equal(m.length, 1);
  return m[0]!;
};

test('IP text round trips (RFC 5952) and rejects garbage', () => {
  const cases: [string, string][] = [
    ['198.18.0.1', '198.18.0.1'],
    ['2001:DB8::1', '2001:db8::1'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'],
    ['::', '::'],
    ['::1', '::1'],
    ['fe80::1%eth0', 'fe80::1'],
    ['::ffff:198.18.0.1', '::ffff:198.18.0.1'],
    ['1::', '1::'],
  ];
  for (const [i, o] of cases) assert.equal(canonicalIp(i), o, i);
  for (const bad of ['', '1.2.3', '1.2.3.256', '1:2:3:4:5:6:7:8:9', '1::2::3', 'g::1', '1.2.3.4.5', '::1::', '12345::']) {
    assert.equal(parseIpText(bad), undefined, bad);
  }
  assert.equal(formatIpBytes(new Uint8Array([1, 2, 3])), '010203');
});

test('nlmsghdr layout and the messages we send are bit-exact', () => {
  assert.equal(nlmsghdr.size, 16);
  // RTM_GETLINK dump: hdr(16) + ifinfomsg(16) + IFLA_EXT_MASK(8)
  const d = dumpRequest(RTM_GETLINK);
  assert.equal(d.length, 40);
  const m = one(d);
  assert.equal(m.type, RTM_GETLINK);
  assert.equal(m.flags, NLM_F_REQUEST | NLM_F_DUMP);
  assert.deepEqual([...d.subarray(32)], [8, 0, 29, 0, 8, 0, 0, 0]);

  const g = one(getLinkRequest('eth0'));
  const gb = decodeBody(LINK_MSG, g.payload);
  assert.equal(gb.attrs.ifname, 'eth0');
  assert.equal(gb.header.ifi_index, 0);
  assert.equal(decodeBody(LINK_MSG, one(getLinkRequest(7)).payload).header.ifi_index, 7);

  const u = one(neighUseRequest(6, 3, '2001:db8::2'));
  const ub = decodeBody(NEIGH_MSG, u.payload);
  assert.equal(u.type, RTM_NEWNEIGH);
  assert.equal(ub.header.ndm_family, AF_INET6);
  assert.equal(ub.header.ndm_flags, NTF_USE);
  assert.equal(ub.header.ndm_ifindex, 3);
  assert.equal(ub.attrs.dst, '2001:db8::2');
});

test('IFLA_XDP requests: flags per mode, replace and expected fd', () => {
  const rows: [Parameters<typeof setXdpRequest>[2], number, number | undefined][] = [
    [{ mode: 'native' }, XDP_FLAGS_DRV_MODE | XDP_FLAGS_UPDATE_IF_NOEXIST, undefined],
    [{ mode: 'generic' }, XDP_FLAGS_SKB_MODE | XDP_FLAGS_UPDATE_IF_NOEXIST, undefined],
    [{ mode: 'generic', replace: true }, XDP_FLAGS_SKB_MODE, undefined],
    [{ mode: 'native', replace: true, expectedFd: 9 }, XDP_FLAGS_DRV_MODE | XDP_FLAGS_REPLACE, 9],
  ];
  for (const [opts, flags, expected] of rows) {
    const b = decodeBody(LINK_MSG, one(setXdpRequest(4, 11, opts)).payload);
    assert.equal(b.header.ifi_index, 4);
    assert.deepEqual(b.attrs.xdp, expected === undefined ? { fd: 11, flags } : { fd: 11, flags, expectedFd: expected });
  }
});

test('link, address, route and neighbour messages decode to typed entries', () => {
  const link = encodeMessage(
    LINK_MSG,
    { type: RTM_NEWLINK, flags: 0 },
    { ifi_index: 5, ifi_flags: 0x1043 },
    {
      ifname: 'veth0',
      mtu: 1500,
      address: '02:00:00:00:00:05',
      operstate: 6,
      link: 9,
      linkNetnsid: 0,
      numRxQueues: 2,
      numTxQueues: 3,
      minMtu: 68,
      maxMtu: 65535,
      linkinfo: { kind: 'veth' },
      xdp: { attached: 2, progId: 42, skbProgId: 42 },
    },
  );
  assert.deepEqual(parseLink(one(link)), {
    index: 5,
    name: 'veth0',
    mtu: 1500,
    flags: 0x1043,
    operUp: true,
    kind: 'veth',
    minMtu: 68,
    maxMtu: 65535,
    numRxQueues: 2,
    numTxQueues: 3,
    mac: '02:00:00:00:00:05',
    link: 9,
    linkNetnsid: 0,
    xdp: { attached: 'generic', progId: 42, skbProgId: 42 },
  });

  const addr = encodeMessage(
    ADDR_MSG,
    { type: RTM_NEWADDR, flags: 0 },
    { ifa_family: AF_INET6, ifa_prefixlen: 64, ifa_index: 5 },
    { address: '2001:db8::1', flags: 0x80 },
  );
  assert.deepEqual(parseAddr(one(addr)), { family: 6, ifindex: 5, address: '2001:db8::1', prefixLen: 64, scope: 0, flags: 0x80 });

  const route = encodeMessage(
    ROUTE_MSG,
    { type: RTM_NEWROUTE, flags: 0 },
    { rtm_family: AF_INET, rtm_dst_len: 16, rtm_table: 254, rtm_type: 1, rtm_protocol: 4 },
    { dst: '198.19.0.0', gateway: '198.18.0.2', oif: 5, priority: 10, table: 254 },
  );
  assert.deepEqual(parseRoute(one(route)), {
    family: 4,
    dst: '198.19.0.0',
    dstLen: 16,
    table: 254,
    protocol: 4,
    scope: 0,
    type: 1,
    tos: 0,
    priority: 10,
    flags: 0,
    oif: 5,
    gateway: '198.18.0.2',
  });
  const dflt = parseRoute(
    one(encodeMessage(ROUTE_MSG, { type: RTM_NEWROUTE, flags: 0 }, { rtm_family: AF_INET6, rtm_table: 254, rtm_type: 1 }, { oif: 2 })),
  );
  assert.equal(dflt!.dst, '::');

  const neigh = encodeMessage(
    NEIGH_MSG,
    { type: RTM_NEWNEIGH, flags: 0 },
    { ndm_family: AF_INET, ndm_ifindex: 5, ndm_state: NUD_REACHABLE },
    { dst: '198.18.0.2', lladdr: '02:00:00:00:00:02' },
  );
  assert.deepEqual(parseNeigh(one(neigh)), {
    family: 4,
    ifindex: 5,
    ip: '198.18.0.2',
    state: NUD_REACHABLE,
    flags: 0,
    mac: '02:00:00:00:00:02',
  });
  assert.equal(nudStateName(NUD_REACHABLE), 'REACHABLE');
  assert.equal(nudStateName(0), 'NONE');
});

test('RTA_MULTIPATH: every next hop with gateway, weight and interface; IPv6 gateway via RTA_VIA', () => {
  const w = new NlWriter();
  const hop = (ifindex: number, hops: number, gw: Uint8Array, type: number): void => {
    const at = w.reserve(rtnexthop.size);
    const attrStart = w.len;
    w.attr(type, gw);
    rtnexthop.encode({ rtnh_len: w.len - at, rtnh_flags: 0, rtnh_hops: hops, rtnh_ifindex: ifindex }, w.buf, at);
    void attrStart;
  };
  hop(3, 0, parseIpText('198.18.0.2')!, 5);
  const via = new Uint8Array(18);
  via[0] = AF_INET6;
  via.set(parseIpText('2001:db8::9')!, 2);
  hop(4, 4, via, 18);
  const mp = w.bytes().slice();
  const route = encodeMessage(
    ROUTE_MSG,
    { type: RTM_NEWROUTE, flags: 0 },
    { rtm_family: AF_INET, rtm_dst_len: 24, rtm_table: 254, rtm_type: 1 },
    { dst: '198.19.1.0', multipath: mp },
  );
  assert.deepEqual(parseRoute(one(route))!.multipath, [
    { flags: 0, weight: 1, ifindex: 3, gateway: '198.18.0.2' },
    { flags: 0, weight: 5, ifindex: 4, gateway: '2001:db8::9' },
  ]);
});

test('NLMSG_ERROR: errno, extended-ack message and offset; acks; capped and uncapped', () => {
  const build = (error: number, flags: number, echoed: Uint8Array, tlvs: Uint8Array): Uint8Array => {
    const w = new NlWriter();
    w.reserve(16);
    const at = w.reserve(4);
    w.view().setInt32(at, error, true);
    const e = w.reserve(echoed.length);
    w.buf.set(echoed, e);
    const t = w.reserve(tlvs.length);
    w.buf.set(tlvs, t);
    nlmsghdr.encode({ nlmsg_len: w.len, nlmsg_type: NLMSG_ERROR, nlmsg_flags: flags, nlmsg_seq: 77, nlmsg_pid: 0 }, w.buf, 0);
    return w.bytes().slice();
  };
  const req = getLinkRequest('eth0');
  const orig = req.slice();
  new DataView(orig.buffer).setUint32(8, 77, true);
  const tl = new NlWriter();
  encodeAttrs(tl, defineAttrs('t', { msg: [1, 'string'], off: [2, 'u32'] }), { msg: 'Peer MTU is too large to set XDP', off: 20 });
  const tlvs = tl.bytes().slice();

  const capped = decodeError(one(build(-16, NLM_F_CAPPED | NLM_F_ACK_TLVS, orig.subarray(0, 16), tlvs)));
  assert.deepEqual(capped, { errno: 16, seq: 77, extAck: 'Peer MTU is too large to set XDP', extAckOffset: 20 });
  const full = decodeError(one(build(-22, NLM_F_ACK_TLVS, orig, tlvs)));
  assert.equal(full.errno, 22);
  assert.equal(full.extAck, 'Peer MTU is too large to set XDP');
  const ack = decodeError(one(build(0, 0, orig.subarray(0, 16), new Uint8Array(0))));
  assert.deepEqual(ack, { errno: 0, seq: 77, extAck: undefined, extAckOffset: undefined });

  const err = new NetlinkError('attach XDP', 16, 'busy');
  assert.equal(err.code, 'ERR_NETLINK_REQUEST');
  assert.equal(err.errnoCode, 'EBUSY');
  assert.match(err.message, /attach XDP: EBUSY \(busy\)/);
  assert.ok(err instanceof PinholeError);
});

test('truncated and malformed messages raise typed errors', () => {
  const good = encodeMessage(
    NEIGH_MSG,
    { type: RTM_NEWNEIGH, flags: 0 },
    { ndm_family: AF_INET, ndm_ifindex: 2, ndm_state: 2 },
    { dst: '198.18.0.2', lladdr: '02:00:00:00:00:02' },
  );
  const code = (f: () => unknown): string => {
    try {
      f();
    } catch (e) {
      assert.ok(e instanceof PinholeError, `not a PinholeError: ${e}`);
      return e.code;
    }
    return 'no error';
  };
  const mutate = (fn: (b: Uint8Array, dv: DataView) => void): Uint8Array => {
    const b = good.slice();
    fn(b, new DataView(b.buffer));
    return b;
  };
  // Header cut short; nlmsg_len larger than the datagram; nlmsg_len smaller than a header.
  assert.equal(
    code(() => splitMessages(good.subarray(0, 10))),
    'ERR_NETLINK_TRUNCATED',
  );
  assert.equal(
    code(() => splitMessages(good.subarray(0, good.length - 4))),
    'ERR_NETLINK_TRUNCATED',
  );
  assert.equal(
    code(() => splitMessages(mutate((_b, dv) => dv.setUint32(0, 8, true)))),
    'ERR_NETLINK_TRUNCATED',
  );
  // Family header shorter than ndmsg.
  assert.equal(
    code(() => parseNeigh(one(mutate((_b, dv) => dv.setUint32(0, 16 + 6, true)).subarray(0, 22)))),
    'ERR_NETLINK_TRUNCATED',
  );
  // An attribute whose length runs past the message; an attribute shorter than its header.
  assert.equal(
    code(() => parseNeigh(one(mutate((_b, dv) => dv.setUint16(28, 200, true))))),
    'ERR_NETLINK_TRUNCATED',
  );
  assert.equal(
    code(() => parseNeigh(one(mutate((_b, dv) => dv.setUint16(28, 2, true))))),
    'ERR_NETLINK_TRUNCATED',
  );
  // NDA_DST with 5 bytes is not an address; a u32 attribute with 2 bytes is malformed.
  const w = new NlWriter();
  w.reserve(16);
  w.struct(NEIGH_MSG.header, { ndm_family: AF_INET });
  w.attr(1, new Uint8Array(5));
  nlmsghdr.encode({ nlmsg_len: w.len, nlmsg_type: RTM_NEWNEIGH, nlmsg_flags: 0, nlmsg_seq: 0, nlmsg_pid: 0 }, w.buf, 0);
  assert.equal(
    code(() => parseNeigh(one(w.bytes()))),
    'ERR_NETLINK_MALFORMED',
  );
  const w2 = new NlWriter();
  w2.reserve(16);
  w2.struct(LINK_MSG.header, {});
  w2.attr(4, new Uint8Array(2)); // IFLA_MTU must be 4 bytes
  nlmsghdr.encode({ nlmsg_len: w2.len, nlmsg_type: RTM_NEWLINK, nlmsg_flags: 0, nlmsg_seq: 0, nlmsg_pid: 0 }, w2.buf, 0);
  assert.equal(
    code(() => parseLink(one(w2.bytes()))),
    'ERR_NETLINK_MALFORMED',
  );
  // Nested attribute whose child overruns the nest.
  const w3 = new NlWriter();
  w3.reserve(16);
  w3.struct(LINK_MSG.header, {});
  const end = w3.nest(43);
  w3.attr(2, new Uint8Array([1]));
  end();
  w3.view().setUint16(16 + 16 + 4, 40, true);
  nlmsghdr.encode({ nlmsg_len: w3.len, nlmsg_type: RTM_NEWLINK, nlmsg_flags: 0, nlmsg_seq: 0, nlmsg_pid: 0 }, w3.buf, 0);
  assert.equal(
    code(() => parseLink(one(w3.bytes()))),
    'ERR_NETLINK_TRUNCATED',
  );
  // NLMSG_ERROR shorter than struct nlmsgerr.
  assert.equal(
    code(() => decodeError({ type: NLMSG_ERROR, flags: 0, seq: 0, pid: 0, payload: new Uint8Array(8) })),
    'ERR_NETLINK_TRUNCATED',
  );
  // Unknown attributes are skipped, not errors.
  const w4 = new NlWriter();
  w4.reserve(16);
  w4.struct(LINK_MSG.header, { ifi_index: 3 });
  w4.attr(999, new Uint8Array(7));
  w4.attr(3, new Uint8Array([0x61, 0]));
  nlmsghdr.encode({ nlmsg_len: w4.len, nlmsg_type: RTM_NEWLINK, nlmsg_flags: 0, nlmsg_seq: 0, nlmsg_pid: 0 }, w4.buf, 0);
  assert.equal(parseLink(one(w4.bytes())).name, 'a');
  assert.deepEqual(decodeAttrs(IFLA, new Uint8Array(3)), {}, 'fewer than 4 bytes is padding');
});

test('fuzz: random corruption of real messages never throws anything but a typed error', () => {
  const samples = [
    encodeMessage(
      NEIGH_MSG,
      { type: RTM_NEWNEIGH, flags: 0 },
      { ndm_family: AF_INET6, ndm_ifindex: 2, ndm_state: 2 },
      { dst: '2001:db8::2', lladdr: '02:00:00:00:00:02', probes: 3 },
    ),
    encodeMessage(
      ROUTE_MSG,
      { type: RTM_NEWROUTE, flags: 0 },
      { rtm_family: AF_INET, rtm_dst_len: 8, rtm_table: 254, rtm_type: 1 },
      { dst: '198.0.0.0', gateway: '198.18.0.1', oif: 2, multipath: new Uint8Array([16, 0, 0, 0, 2, 0, 0, 0, 8, 0, 5, 0, 198, 18, 0, 9]) },
    ),
    encodeMessage(
      LINK_MSG,
      { type: RTM_NEWLINK, flags: 0 },
      { ifi_index: 2 },
      { ifname: 'x', linkinfo: { kind: 'veth' }, xdp: { attached: 1, progId: 3 } },
    ),
    encodeMessage(
      ADDR_MSG,
      { type: RTM_NEWADDR, flags: 0 },
      { ifa_family: AF_INET, ifa_prefixlen: 24, ifa_index: 2 },
      { address: '198.18.0.1', label: 'x' },
    ),
  ];
  let seed = 12345;
  const rnd = (n: number): number => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed % n;
  };
  let typed = 0;
  for (let i = 0; i < 20000; i++) {
    const src = samples[i % samples.length]!;
    const b = src.slice(0, rnd(4) === 0 ? rnd(src.length + 1) : src.length);
    for (let k = rnd(4); k >= 0; k--) if (b.length) b[rnd(b.length)] = rnd(256);
    try {
      for (const m of splitMessages(b)) parseUpdate(m);
    } catch (e) {
      assert.ok(e instanceof PinholeError && e.code.startsWith('ERR_NETLINK_'), `iteration ${i}: ${(e as Error).stack}`);
      typed++;
    }
  }
  assert.ok(typed > 100, `corruption was detected ${typed} times`);
});
