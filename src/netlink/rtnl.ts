/**
 * rtnetlink messages pinhole uses: links, addresses, routes, neighbours. Pure builders and
 * parsers over the codec; layouts and attribute sets are declared here once.
 *
 * References: include/uapi/linux/rtnetlink.h (rtmsg, RTA_*, RTM_*), if_link.h (IFLA_*),
 * if_addr.h (ifaddrmsg, IFA_*), neighbour.h (ndmsg, NDA_*, NUD_*, NTF_*), rtnetlink(7).
 */
import { PinholeError, defineStruct } from '../sys/index.ts';
import {
  NLM_F_ACK,
  NLM_F_CREATE,
  NLM_F_DUMP,
  NLM_F_REQUEST,
  align4,
  decodeAttrs,
  decodeBody,
  defineAttrs,
  defineMessage,
  encodeMessage,
  type AttrValues,
  type RawMessage,
} from './codec.ts';
import { formatIpBytes } from './ip.ts';

// ---------------------------------------------------------------------------------------------
// Constants

import { AF_INET, AF_INET6, AF_UNSPEC } from '../sys/unix.ts';

export { AF_BRIDGE, AF_INET, AF_INET6, AF_UNSPEC } from '../sys/unix.ts';

export const RTM_NEWLINK = 16;
export const RTM_DELLINK = 17;
export const RTM_GETLINK = 18;
export const RTM_SETLINK = 19;
export const RTM_NEWADDR = 20;
export const RTM_DELADDR = 21;
export const RTM_GETADDR = 22;
export const RTM_NEWROUTE = 24;
export const RTM_DELROUTE = 25;
export const RTM_GETROUTE = 26;
export const RTM_NEWNEIGH = 28;
export const RTM_DELNEIGH = 29;
export const RTM_GETNEIGH = 30;

export const RTNLGRP_LINK = 1;
export const RTNLGRP_NEIGH = 3;
export const RTNLGRP_IPV4_IFADDR = 5;
export const RTNLGRP_IPV4_ROUTE = 7;
export const RTNLGRP_IPV6_IFADDR = 9;
export const RTNLGRP_IPV6_ROUTE = 11;

export const RTEXT_FILTER_SKIP_STATS = 1 << 3;

export const IFF_UP = 0x1;
export const IFF_LOOPBACK = 0x8;
export const IFF_RUNNING = 0x40;
export const IF_OPER_UP = 6;

export const RT_TABLE_MAIN = 254;
export const RTN_UNICAST = 1;
export const RTN_LOCAL = 2;
export const RTN_BLACKHOLE = 6;
export const RTN_UNREACHABLE = 7;
export const RTN_PROHIBIT = 8;
export const RTM_F_CLONED = 0x200;

export const NUD_INCOMPLETE = 0x01;
export const NUD_REACHABLE = 0x02;
export const NUD_STALE = 0x04;
export const NUD_DELAY = 0x08;
export const NUD_PROBE = 0x10;
export const NUD_FAILED = 0x20;
export const NUD_NOARP = 0x40;
export const NUD_PERMANENT = 0x80;
export const NUD_NONE = 0x00;
/** States whose link-layer address may be used to send (include/net/neighbour.h NUD_VALID). */
export const NUD_VALID = NUD_PERMANENT | NUD_NOARP | NUD_REACHABLE | NUD_PROBE | NUD_STALE | NUD_DELAY;

export const NTF_USE = 1 << 0;
export const NTF_SELF = 1 << 1;
export const NTF_MASTER = 1 << 2;
export const NTF_PROXY = 1 << 3;
export const NTF_EXT_LEARNED = 1 << 4;
export const NTF_ROUTER = 1 << 7;

export const XDP_FLAGS_UPDATE_IF_NOEXIST = 1 << 0;
export const XDP_FLAGS_SKB_MODE = 1 << 1;
export const XDP_FLAGS_DRV_MODE = 1 << 2;
export const XDP_FLAGS_HW_MODE = 1 << 3;
export const XDP_FLAGS_REPLACE = 1 << 4;

// ---------------------------------------------------------------------------------------------
// Layouts

export const ifinfomsg = defineStruct(
  'ifinfomsg',
  [
    ['ifi_family', 'u8'],
    ['__ifi_pad', 'u8'],
    ['ifi_type', 'u16'],
    ['ifi_index', 's32'],
    ['ifi_flags', 'u32'],
    ['ifi_change', 'u32'],
  ],
  { cType: 'struct ifinfomsg', header: 'linux/rtnetlink.h' },
);

export const ifaddrmsg = defineStruct(
  'ifaddrmsg',
  [
    ['ifa_family', 'u8'],
    ['ifa_prefixlen', 'u8'],
    ['ifa_flags', 'u8'],
    ['ifa_scope', 'u8'],
    ['ifa_index', 'u32'],
  ],
  { cType: 'struct ifaddrmsg', header: 'linux/if_addr.h' },
);

export const rtmsg = defineStruct(
  'rtmsg',
  [
    ['rtm_family', 'u8'],
    ['rtm_dst_len', 'u8'],
    ['rtm_src_len', 'u8'],
    ['rtm_tos', 'u8'],
    ['rtm_table', 'u8'],
    ['rtm_protocol', 'u8'],
    ['rtm_scope', 'u8'],
    ['rtm_type', 'u8'],
    ['rtm_flags', 'u32'],
  ],
  { cType: 'struct rtmsg', header: 'linux/rtnetlink.h' },
);

export const ndmsg = defineStruct(
  'ndmsg',
  [
    ['ndm_family', 'u8'],
    ['ndm_pad1', 'u8'],
    ['ndm_pad2', 'u16'],
    ['ndm_ifindex', 's32'],
    ['ndm_state', 'u16'],
    ['ndm_flags', 'u8'],
    ['ndm_type', 'u8'],
  ],
  { cType: 'struct ndmsg', header: 'linux/neighbour.h' },
);

export const rtnexthop = defineStruct(
  'rtnexthop',
  [
    ['rtnh_len', 'u16'],
    ['rtnh_flags', 'u8'],
    ['rtnh_hops', 'u8'],
    ['rtnh_ifindex', 's32'],
  ],
  { cType: 'struct rtnexthop', header: 'linux/rtnetlink.h' },
);

export const nda_cacheinfo = defineStruct(
  'nda_cacheinfo',
  [
    ['ndm_confirmed', 'u32'],
    ['ndm_used', 'u32'],
    ['ndm_updated', 'u32'],
    ['ndm_refcnt', 'u32'],
  ],
  { cType: 'struct nda_cacheinfo', header: 'linux/neighbour.h' },
);

// ---------------------------------------------------------------------------------------------
// Attribute sets

export const IFLA_INFO = defineAttrs('IFLA_INFO', {
  kind: [1, 'string'], // IFLA_INFO_KIND
  slaveKind: [4, 'string'], // IFLA_INFO_SLAVE_KIND
});

export const IFLA_XDP = defineAttrs('IFLA_XDP', {
  fd: [1, 's32'], // IFLA_XDP_FD
  attached: [2, 'u8'], // IFLA_XDP_ATTACHED
  flags: [3, 'u32'], // IFLA_XDP_FLAGS
  progId: [4, 'u32'], // IFLA_XDP_PROG_ID
  drvProgId: [5, 'u32'], // IFLA_XDP_DRV_PROG_ID
  skbProgId: [6, 'u32'], // IFLA_XDP_SKB_PROG_ID
  hwProgId: [7, 'u32'], // IFLA_XDP_HW_PROG_ID
  expectedFd: [8, 's32'], // IFLA_XDP_EXPECTED_FD
});

export const IFLA = defineAttrs('IFLA', {
  address: [1, 'mac'], // IFLA_ADDRESS
  broadcast: [2, 'mac'], // IFLA_BROADCAST
  ifname: [3, 'string'], // IFLA_IFNAME
  mtu: [4, 'u32'], // IFLA_MTU
  link: [5, 'u32'], // IFLA_LINK
  master: [10, 'u32'], // IFLA_MASTER
  txqlen: [13, 'u32'], // IFLA_TXQLEN
  operstate: [16, 'u8'], // IFLA_OPERSTATE
  linkinfo: [18, { nested: IFLA_INFO }], // IFLA_LINKINFO
  extMask: [29, 'u32'], // IFLA_EXT_MASK
  numTxQueues: [31, 'u32'], // IFLA_NUM_TX_QUEUES
  numRxQueues: [32, 'u32'], // IFLA_NUM_RX_QUEUES
  carrier: [33, 'u8'], // IFLA_CARRIER
  linkNetnsid: [37, 's32'], // IFLA_LINK_NETNSID
  xdp: [43, { nested: IFLA_XDP }], // IFLA_XDP
  minMtu: [50, 'u32'], // IFLA_MIN_MTU
  maxMtu: [51, 'u32'], // IFLA_MAX_MTU
});

export const IFA = defineAttrs('IFA', {
  address: [1, 'ip'], // IFA_ADDRESS
  local: [2, 'ip'], // IFA_LOCAL
  label: [3, 'string'], // IFA_LABEL
  broadcast: [4, 'ip'], // IFA_BROADCAST
  flags: [8, 'u32'], // IFA_FLAGS
});

export const RTA = defineAttrs('RTA', {
  dst: [1, 'ip'], // RTA_DST
  src: [2, 'ip'], // RTA_SRC
  iif: [3, 'u32'], // RTA_IIF
  oif: [4, 'u32'], // RTA_OIF
  gateway: [5, 'ip'], // RTA_GATEWAY
  priority: [6, 'u32'], // RTA_PRIORITY
  prefsrc: [7, 'ip'], // RTA_PREFSRC
  multipath: [9, 'binary'], // RTA_MULTIPATH: rtnexthop records, each with its own RTA_* attributes
  table: [15, 'u32'], // RTA_TABLE
  via: [18, 'binary'], // RTA_VIA: struct rtvia { u16 family; u8 addr[]; }
  pref: [20, 'u8'], // RTA_PREF
  nhId: [30, 'u32'], // RTA_NH_ID
});

export const NDA = defineAttrs('NDA', {
  dst: [1, 'ip'], // NDA_DST
  lladdr: [2, 'mac'], // NDA_LLADDR
  cacheinfo: [3, { struct: nda_cacheinfo }], // NDA_CACHEINFO
  probes: [4, 'u32'], // NDA_PROBES
  vlan: [5, 'u16'], // NDA_VLAN
  ifindex: [8, 'u32'], // NDA_IFINDEX
  master: [9, 'u32'], // NDA_MASTER
  protocol: [12, 'u8'], // NDA_PROTOCOL
});

export const LINK_MSG = defineMessage('ifinfomsg', ifinfomsg, IFLA);
export const ADDR_MSG = defineMessage('ifaddrmsg', ifaddrmsg, IFA);
export const ROUTE_MSG = defineMessage('rtmsg', rtmsg, RTA);
export const NEIGH_MSG = defineMessage('ndmsg', ndmsg, NDA);

// ---------------------------------------------------------------------------------------------
// Typed views

export type XdpAttached = 'none' | 'native' | 'generic' | 'offload' | 'multi';

export interface LinkInfo {
  index: number;
  name: string;
  /** IFLA_INFO_KIND (veth, vxlan, bridge, ...); undefined for physical devices. */
  kind?: string;
  mtu: number;
  minMtu?: number;
  maxMtu?: number;
  numRxQueues?: number;
  numTxQueues?: number;
  mac?: string;
  /** IFF_* flags. */
  flags: number;
  operUp: boolean;
  master?: number;
  /** IFLA_LINK: the lower device, or a veth's peer ifindex (in the peer's namespace). */
  link?: number;
  linkNetnsid?: number;
  xdp?: { attached: XdpAttached; progId?: number; driveProgId?: number; skbProgId?: number; hwProgId?: number };
}

export type Family = 4 | 6;

export interface AddrEntry {
  family: Family;
  ifindex: number;
  address: string;
  prefixLen: number;
  local?: string;
  label?: string;
  scope: number;
  flags: number;
}

export interface NextHop {
  ifindex: number;
  gateway?: string;
  /** Weight as in `ip route ... weight` (rtnh_hops + 1). */
  weight: number;
  flags: number;
}

export interface RouteEntry {
  family: Family;
  dst: string;
  dstLen: number;
  table: number;
  protocol: number;
  scope: number;
  type: number;
  tos: number;
  priority: number;
  flags: number;
  oif?: number;
  gateway?: string;
  prefsrc?: string;
  /** Next hops of a multipath route (RTA_MULTIPATH), in kernel order. */
  multipath?: NextHop[];
  /** RTA_NH_ID: the route uses a nexthop object (not resolved by this mirror). */
  nhId?: number;
}

export interface NeighEntry {
  family: Family;
  ifindex: number;
  ip: string;
  mac?: string;
  /** NUD_* state bits. */
  state: number;
  /** NTF_* flags. */
  flags: number;
}

const XDP_ATTACHED: readonly XdpAttached[] = ['none', 'native', 'generic', 'offload', 'multi'];

function familyOf(af: number): Family | undefined {
  return af === AF_INET ? 4 : af === AF_INET6 ? 6 : undefined;
}

export function parseLink(m: RawMessage): LinkInfo {
  const { header: h, attrs: a } = decodeBody(LINK_MSG, m.payload);
  const info: LinkInfo = {
    index: h.ifi_index!,
    name: a.ifname ?? '',
    mtu: a.mtu ?? 0,
    flags: h.ifi_flags!,
    // IF_OPER_UNKNOWN (0) means the driver does not track it (lo, tun): trust IFF_RUNNING then.
    operUp: a.operstate === IF_OPER_UP || (!a.operstate && (h.ifi_flags! & IFF_RUNNING) !== 0),
  };
  if (a.linkinfo?.kind !== undefined) info.kind = a.linkinfo.kind;
  if (a.minMtu !== undefined) info.minMtu = a.minMtu;
  if (a.maxMtu !== undefined) info.maxMtu = a.maxMtu;
  if (a.numRxQueues !== undefined) info.numRxQueues = a.numRxQueues;
  if (a.numTxQueues !== undefined) info.numTxQueues = a.numTxQueues;
  if (a.address !== undefined) info.mac = a.address;
  if (a.master !== undefined) info.master = a.master;
  if (a.link !== undefined) info.link = a.link;
  if (a.linkNetnsid !== undefined) info.linkNetnsid = a.linkNetnsid;
  if (a.xdp) {
    const x = a.xdp;
    info.xdp = { attached: XDP_ATTACHED[x.attached ?? 0] ?? 'multi' };
    if (x.progId !== undefined) info.xdp.progId = x.progId;
    if (x.drvProgId !== undefined) info.xdp.driveProgId = x.drvProgId;
    if (x.skbProgId !== undefined) info.xdp.skbProgId = x.skbProgId;
    if (x.hwProgId !== undefined) info.xdp.hwProgId = x.hwProgId;
  }
  return info;
}

/** Returns undefined for families the mirror does not track. */
export function parseAddr(m: RawMessage): AddrEntry | undefined {
  if (m.payload.length < ifaddrmsg.size) decodeBody(ADDR_MSG, m.payload); // throws the typed error
  const fam = familyOf(m.payload[0]!);
  if (!fam) return undefined;
  const { header: h, attrs: a } = decodeBody(ADDR_MSG, m.payload);
  const address = a.address ?? a.local;
  if (address === undefined) return undefined;
  const e: AddrEntry = {
    family: fam,
    ifindex: h.ifa_index!,
    address,
    prefixLen: h.ifa_prefixlen!,
    scope: h.ifa_scope!,
    flags: a.flags ?? h.ifa_flags!,
  };
  if (a.local !== undefined) e.local = a.local;
  if (a.label !== undefined) e.label = a.label;
  return e;
}

export function parseRoute(m: RawMessage): RouteEntry | undefined {
  if (m.payload.length < rtmsg.size) decodeBody(ROUTE_MSG, m.payload);
  const fam = familyOf(m.payload[0]!);
  if (!fam) return undefined;
  const { header: h, attrs: a } = decodeBody(ROUTE_MSG, m.payload);
  const r: RouteEntry = {
    family: fam,
    dst: a.dst ?? (fam === 4 ? '0.0.0.0' : '::'),
    dstLen: h.rtm_dst_len!,
    table: a.table ?? h.rtm_table!,
    protocol: h.rtm_protocol!,
    scope: h.rtm_scope!,
    type: h.rtm_type!,
    tos: h.rtm_tos!,
    priority: a.priority ?? 0,
    flags: h.rtm_flags!,
  };
  if (a.oif !== undefined) r.oif = a.oif;
  const gw = a.gateway ?? (a.via ? parseVia(a.via) : undefined);
  if (gw !== undefined) r.gateway = gw;
  if (a.prefsrc !== undefined) r.prefsrc = a.prefsrc;
  if (a.nhId !== undefined) r.nhId = a.nhId;
  if (a.multipath) r.multipath = parseMultipath(a.multipath);
  return r;
}

/** struct rtvia { __kernel_sa_family_t rtvia_family; __u8 rtvia_addr[]; } */
function parseVia(b: Uint8Array): string {
  if (b.length !== 2 + 4 && b.length !== 2 + 16) {
    throw new PinholeError('ERR_NETLINK_MALFORMED', 'malformed netlink attribute RTA.via', { details: { len: b.length } });
  }
  return formatIpBytes(b.subarray(2));
}

const NH_ATTRS = defineAttrs('RTA(nexthop)', {
  gateway: [5, 'ip'], // RTA_GATEWAY
  via: [18, 'binary'], // RTA_VIA
});

/** RTA_MULTIPATH: a sequence of { struct rtnexthop; RTA_* attributes } records. */
export function parseMultipath(b: Uint8Array): NextHop[] {
  const out: NextHop[] = [];
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let off = 0;
  while (off + rtnexthop.size <= b.length) {
    const len = dv.getUint16(off, true);
    if (len < rtnexthop.size || off + len > b.length) {
      throw new PinholeError('ERR_NETLINK_TRUNCATED', 'truncated netlink rtnexthop', { details: { offset: off, len } });
    }
    const a = decodeAttrs(NH_ATTRS, b, off + rtnexthop.size, off + len);
    const nh: NextHop = {
      flags: dv.getUint8(off + 2),
      weight: dv.getUint8(off + 3) + 1,
      ifindex: dv.getInt32(off + 4, true),
    };
    const gw = a.gateway ?? (a.via ? parseVia(a.via) : undefined);
    if (gw !== undefined) nh.gateway = gw;
    out.push(nh);
    off += align4(len);
  }
  return out;
}

export function parseNeigh(m: RawMessage): NeighEntry | undefined {
  if (m.payload.length < ndmsg.size) decodeBody(NEIGH_MSG, m.payload);
  const fam = familyOf(m.payload[0]!);
  if (!fam) return undefined;
  const { header: h, attrs: a } = decodeBody(NEIGH_MSG, m.payload);
  if (a.dst === undefined) return undefined;
  const e: NeighEntry = { family: fam, ifindex: h.ndm_ifindex!, ip: a.dst, state: h.ndm_state!, flags: h.ndm_flags! };
  if (a.lladdr !== undefined) e.mac = a.lladdr;
  return e;
}

// ---------------------------------------------------------------------------------------------
// Requests

/** A dump request (`ip link show`, `ip route show table all`, ...). */
export function dumpRequest(type: number, family = AF_UNSPEC): Uint8Array {
  const flags = NLM_F_REQUEST | NLM_F_DUMP;
  switch (type) {
    case RTM_GETLINK:
      return encodeMessage(LINK_MSG, { type, flags }, { ifi_family: family }, { extMask: RTEXT_FILTER_SKIP_STATS });
    case RTM_GETADDR:
      return encodeMessage(ADDR_MSG, { type, flags }, { ifa_family: family });
    case RTM_GETROUTE:
      return encodeMessage(ROUTE_MSG, { type, flags }, { rtm_family: family });
    case RTM_GETNEIGH:
      return encodeMessage(NEIGH_MSG, { type, flags }, { ndm_family: family });
    default:
      throw new TypeError(`no dump request for message type ${type}`);
  }
}

/** RTM_GETLINK for one interface, by index or by name. */
export function getLinkRequest(nameOrIndex: string | number): Uint8Array {
  const attrs: AttrValues<typeof IFLA.spec> = { extMask: RTEXT_FILTER_SKIP_STATS };
  if (typeof nameOrIndex === 'string') attrs.ifname = nameOrIndex;
  return encodeMessage(
    LINK_MSG,
    { type: RTM_GETLINK, flags: NLM_F_REQUEST },
    { ifi_family: AF_UNSPEC, ifi_index: typeof nameOrIndex === 'number' ? nameOrIndex : 0 },
    attrs,
  );
}

export interface SetXdpOptions {
  mode: 'native' | 'generic';
  /** Replace whatever program is attached (default: fail with EBUSY if one is). */
  replace?: boolean;
  /** With replace: only replace this program (XDP_FLAGS_REPLACE + IFLA_XDP_EXPECTED_FD). */
  expectedFd?: number;
}

/** RTM_SETLINK with IFLA_XDP { FD, FLAGS[, EXPECTED_FD] }; progFd -1 detaches. */
export function setXdpRequest(ifindex: number, progFd: number, opts: SetXdpOptions): Uint8Array {
  let flags = opts.mode === 'native' ? XDP_FLAGS_DRV_MODE : XDP_FLAGS_SKB_MODE;
  const xdp: AttrValues<typeof IFLA_XDP.spec> = { fd: progFd };
  if (!opts.replace) flags |= XDP_FLAGS_UPDATE_IF_NOEXIST;
  else if (opts.expectedFd !== undefined) {
    flags |= XDP_FLAGS_REPLACE;
    xdp.expectedFd = opts.expectedFd;
  }
  xdp.flags = flags;
  return encodeMessage(
    LINK_MSG,
    { type: RTM_SETLINK, flags: NLM_F_REQUEST | NLM_F_ACK },
    { ifi_family: AF_UNSPEC, ifi_index: ifindex },
    { xdp },
  );
}

/**
 * RTM_NEWNEIGH with NTF_USE: "use this neighbour now". The kernel creates the entry if needed
 * (NLM_F_CREATE) and calls neigh_event_send(), which starts ARP/ND resolution exactly as if a
 * packet were waiting — so the kernel also accepts the solicited IPv6 advertisement.
 */
export function neighUseRequest(family: Family, ifindex: number, ip: string): Uint8Array {
  return encodeMessage(
    NEIGH_MSG,
    { type: RTM_NEWNEIGH, flags: NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE },
    { ndm_family: family === 4 ? AF_INET : AF_INET6, ndm_ifindex: ifindex, ndm_state: NUD_NONE, ndm_flags: NTF_USE },
    { dst: ip },
  );
}

// ---------------------------------------------------------------------------------------------
// Names for humans

const NUD_NAMES: readonly [number, string][] = [
  [NUD_INCOMPLETE, 'INCOMPLETE'],
  [NUD_REACHABLE, 'REACHABLE'],
  [NUD_STALE, 'STALE'],
  [NUD_DELAY, 'DELAY'],
  [NUD_PROBE, 'PROBE'],
  [NUD_FAILED, 'FAILED'],
  [NUD_NOARP, 'NOARP'],
  [NUD_PERMANENT, 'PERMANENT'],
];

export function nudStateName(state: number): string {
  if (state === NUD_NONE) return 'NONE';
  const names = NUD_NAMES.filter(([bit]) => state & bit).map(([, n]) => n);
  return names.length ? names.join('|') : `0x${state.toString(16)}`;
}

const RTN_NAMES: Record<number, string> = {
  0: 'unspec',
  1: 'unicast',
  2: 'local',
  3: 'broadcast',
  4: 'anycast',
  5: 'multicast',
  6: 'blackhole',
  7: 'unreachable',
  8: 'prohibit',
  9: 'throw',
  10: 'nat',
};
export function routeTypeName(t: number): string {
  return RTN_NAMES[t] ?? String(t);
}

const PROTO_NAMES: Record<number, string> = {
  0: 'unspec',
  1: 'redirect',
  2: 'kernel',
  3: 'boot',
  4: 'static',
  16: 'dhcp',
  42: 'babel',
  186: 'bgp',
  187: 'isis',
  188: 'ospf',
  189: 'rip',
  192: 'eigrp',
  9: 'ra',
};
export function routeProtocolName(p: number): string {
  return PROTO_NAMES[p] ?? String(p);
}
