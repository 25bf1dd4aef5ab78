/**
 * Unit-test doubles for the mirror: rtnetlink message builders and a scripted kernel (dumps come
 * from its fields, notifications and overflows are pushed by the test through the subscription
 * callbacks the mirror registered).
 */
import { encodeMessage, splitMessages, type RawMessage } from '../../src/netlink/codec.ts';
import {
  ADDR_MSG,
  AF_INET,
  AF_INET6,
  LINK_MSG,
  NEIGH_MSG,
  NUD_REACHABLE,
  ROUTE_MSG,
  RTM_DELADDR,
  RTM_DELLINK,
  RTM_DELNEIGH,
  RTM_DELROUTE,
  RTM_GETADDR,
  RTM_GETLINK,
  RTM_GETNEIGH,
  RTM_GETROUTE,
  RTM_NEWADDR,
  RTM_NEWLINK,
  RTM_NEWNEIGH,
  RTM_NEWROUTE,
} from '../../src/netlink/rtnl.ts';
import type { MirrorTransport } from '../../src/netlink/mirror.ts';
import type { SubscriptionOptions } from '../../src/netlink/socket.ts';

export const msg = (b: Uint8Array): RawMessage => splitMessages(b)[0]!;

export const neigh = (ip: string, mac: string | undefined, state = NUD_REACHABLE, ifindex = 2, del = false): RawMessage =>
  msg(
    encodeMessage(
      NEIGH_MSG,
      { type: del ? RTM_DELNEIGH : RTM_NEWNEIGH, flags: 0 },
      { ndm_family: ip.includes(':') ? AF_INET6 : AF_INET, ndm_ifindex: ifindex, ndm_state: state },
      mac ? { dst: ip, lladdr: mac } : { dst: ip },
    ),
  );

export const route = (
  dst: string,
  len: number,
  a: { gateway?: string; oif?: number; priority?: number; table?: number; type?: number; del?: boolean } = {},
): RawMessage =>
  msg(
    encodeMessage(
      ROUTE_MSG,
      { type: a.del ? RTM_DELROUTE : RTM_NEWROUTE, flags: 0 },
      { rtm_family: dst.includes(':') ? AF_INET6 : AF_INET, rtm_dst_len: len, rtm_table: a.table ?? 254, rtm_type: a.type ?? 1 },
      { dst, gateway: a.gateway, oif: a.oif ?? 2, priority: a.priority },
    ),
  );

export const link = (index: number, name: string, flags = 1, del = false): RawMessage =>
  msg(
    encodeMessage(
      LINK_MSG,
      { type: del ? RTM_DELLINK : RTM_NEWLINK, flags: 0 },
      { ifi_index: index, ifi_flags: flags },
      { ifname: name, mtu: 1500 },
    ),
  );

/** An interface address as the kernel reports it (IFA_LOCAL for IPv4, IFA_ADDRESS only for IPv6). */
export const addr = (ip: string, prefixLen: number, ifindex = 2, del = false): RawMessage => {
  const v6 = ip.includes(':');
  return msg(
    encodeMessage(
      ADDR_MSG,
      { type: del ? RTM_DELADDR : RTM_NEWADDR, flags: 0 },
      { ifa_family: v6 ? AF_INET6 : AF_INET, ifa_prefixlen: prefixLen, ifa_index: ifindex },
      v6 ? { address: ip } : { address: ip, local: ip },
    ),
  );
};

/** A scripted kernel: dumps come from the fields, notifications are pushed by the test. */
export class FakeKernel implements MirrorTransport {
  links: RawMessage[] = [link(1, 'lo'), link(2, 'eth0')];
  addrs: RawMessage[] = [];
  routes: RawMessage[] = [
    route('198.18.0.0', 24),
    route('0.0.0.0', 0, { gateway: '198.18.0.1' }),
    route('2001:db8::', 64),
    route('::', 0, { gateway: '2001:db8::1' }),
  ];
  neighbours: RawMessage[] = [];
  requests: Uint8Array[] = [];
  dumps = 0;
  sub: SubscriptionOptions | undefined;
  /** Called inside a dump: lets a test inject notifications while a resync runs. */
  duringDump: (() => void) | undefined;
  /** Called inside every neighbour dump (after `duringDump`). */
  onNeighbourDump: (() => void) | undefined;
  refuse = false;
  /** Dumps that fail (with ERR-like errors) before dumps succeed again. */
  failDumps = 0;

  async dump(type: number): Promise<RawMessage[]> {
    this.dumps++;
    await Promise.resolve();
    if (this.failDumps > 0) {
      this.failDumps--;
      throw Object.assign(new Error('dump interrupted 8 times'), { code: 'ERR_NETLINK_DUMP_INTR' });
    }
    if (type === RTM_GETNEIGH) {
      const f = this.duringDump;
      this.duringDump = undefined;
      f?.();
      this.onNeighbourDump?.();
    }
    switch (type) {
      case RTM_GETLINK:
        return this.links;
      case RTM_GETADDR:
        return this.addrs;
      case RTM_GETROUTE:
        return this.routes;
      case RTM_GETNEIGH:
        return this.neighbours;
      default:
        return [];
    }
  }
  async request(m: Uint8Array): Promise<void> {
    this.requests.push(m.slice());
    if (this.refuse) throw new Error('EPERM');
  }
  subscribe(opts: SubscriptionOptions) {
    this.sub = opts;
    return { rcvbuf: 4608, close: async () => undefined };
  }
  close(): void {}
  notify(...m: RawMessage[]): void {
    this.sub!.onMessages(m);
  }
  overflow(discarded = 0): void {
    this.sub!.onOverflow({ discarded, drained: true });
  }
}
