/**
 * `pinhole resolve IP [--json] [--timeout MS]`: what the dataplane would do for a destination —
 * the main-table route, the next hop, and its MAC. A next hop missing from the neighbour table
 * is resolved by the kernel on request (RTM_NEWNEIGH + NTF_USE: ARP or neighbour solicitation
 * sent by the kernel itself, IPv4 and IPv6 alike); the command waits at most --timeout ms
 * (an integer, 1 .. 2^31-1: Node timers fire after 1 ms for anything larger).
 *
 * Argument errors exit 2 before anything is opened: IP not an IPv4/IPv6 address (ERR_CLI_ADDRESS),
 * a bad --timeout (ERR_CLI_USAGE). Destinations that never have a next hop are refused (exit 1)
 * before anything is asked of the kernel: ERR_NETLINK_LOCAL_ADDRESS for loopback and this node's
 * own addresses, ERR_NETLINK_BAD_ADDRESS for the unspecified, multicast, broadcast (limited or
 * directed) and IPv4-mapped addresses.
 */
import { parseArgs } from 'node:util';
import { PinholeError } from '../../sys/index.ts';
import { parseIpText } from '../../netlink/ip.ts';
import { Mirror } from '../../netlink/mirror.ts';
import { nudStateName, routeTypeName } from '../../netlink/rtnl.ts';
import { table, toJson, type CommandIO } from '../io.ts';
import { parseMillis } from '../lifecycle.ts';

export async function run(args: string[], io: CommandIO): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: {
      json: { type: 'boolean', default: false },
      timeout: { type: 'string', default: '3000' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    allowPositionals: true,
    strict: true,
  });
  if (values.help) {
    io.out('usage: pinhole resolve IP [--json] [--timeout MS]');
    return 0;
  }
  if (positionals.length !== 1)
    throw new PinholeError('ERR_CLI_USAGE', `resolve: expected one IP address, got ${positionals.length} arguments`);
  const dst = positionals[0]!;
  if (parseIpText(dst) === undefined) throw new PinholeError('ERR_CLI_ADDRESS', `resolve ${dst}: not an IPv4 or IPv6 address`);
  const timeoutMs = parseMillis('--timeout', values.timeout, 1);
  const mirror = await Mirror.open();
  try {
    const r = await mirror.resolve(dst, { timeoutMs });
    const name = (i: number): string => mirror.tables.links.get(i)?.name ?? String(i);
    const route = `${r.route.dstLen === 0 ? 'default' : `${r.route.dst}/${r.route.dstLen}`}${r.route.gateway ? ` via ${r.route.gateway}` : ''} dev ${name(r.nexthop.ifindex)} metric ${r.route.priority}`;
    const how = r.source === 'mirror' ? 'already in the neighbour table' : 'resolved by the kernel on request (NTF_USE)';
    if (values.json) {
      io.out(
        toJson({
          dst: r.dst,
          route: {
            dst: r.route.dst,
            prefixLen: r.route.dstLen,
            gateway: r.route.gateway ?? null,
            type: routeTypeName(r.route.type),
            metric: r.route.priority,
          },
          nexthop: { ip: r.nexthop.ip, dev: name(r.nexthop.ifindex), ifindex: r.nexthop.ifindex, family: r.nexthop.family },
          mac: r.mac,
          state: nudStateName(r.state),
          source: r.source,
          elapsedMs: Math.round(r.elapsedMs * 1000) / 1000,
        }),
      );
      return 0;
    }
    io.out(
      table(
        ['', ''],
        [
          ['destination', r.dst],
          ['route', route],
          ['next hop', `${r.nexthop.ip} dev ${name(r.nexthop.ifindex)}`],
          ['mac', r.mac],
          ['state', nudStateName(r.state)],
          ['how', how],
          ['took', `${r.elapsedMs.toFixed(1)} ms`],
        ],
      )
        .split('\n')
        .slice(1)
        .join('\n'),
    );
    return 0;
  } finally {
    await mirror.close();
  }
}
