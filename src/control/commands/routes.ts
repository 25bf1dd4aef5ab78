/**
 * `pinhole routes [--json] [--family 4|6]`: the main routing table as pinhole's rtnetlink
 * mirror sees it (the table `pinhole resolve` and the dataplane use).
 */
import { parseArgs } from 'node:util';
import { Mirror } from '../../netlink/mirror.ts';
import { routeProtocolName, routeTypeName, type RouteEntry } from '../../netlink/rtnl.ts';
import { table, toJson, type CommandIO } from '../io.ts';
import { parseFamily } from '../args.ts';

export async function run(args: string[], io: CommandIO): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      json: { type: 'boolean', default: false },
      family: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
  if (values.help) {
    io.out('usage: pinhole routes [--json] [--family 4|6]');
    return 0;
  }
  const family = parseFamily(values.family);
  const mirror = await Mirror.open();
  try {
    const name = (i: number | undefined): string => (i === undefined ? '-' : (mirror.tables.links.get(i)?.name ?? String(i)));
    const routes = mirror.tables.listRoutes(family);
    const prefix = (r: RouteEntry): string => (r.dstLen === 0 ? 'default' : `${r.dst}/${r.dstLen}`);
    if (values.json) {
      io.out(
        toJson(
          routes.map((r) => ({
            family: r.family,
            dst: prefix(r),
            prefix: r.dst,
            prefixLen: r.dstLen,
            type: routeTypeName(r.type),
            gateway: r.gateway ?? null,
            dev: r.oif === undefined ? null : name(r.oif),
            ifindex: r.oif ?? null,
            metric: r.priority,
            protocol: routeProtocolName(r.protocol),
            scope: r.scope,
            prefsrc: r.prefsrc ?? null,
            nexthops:
              r.multipath?.map((h) => ({ gateway: h.gateway ?? null, dev: name(h.ifindex), ifindex: h.ifindex, weight: h.weight })) ?? null,
            nhId: r.nhId ?? null,
          })),
        ),
      );
      return 0;
    }
    const via = (r: RouteEntry): string => {
      if (r.multipath) return r.multipath.map((h) => `${h.gateway ?? 'direct'}@${name(h.ifindex)}`).join(', ');
      return r.gateway ?? (r.type === 1 ? 'direct' : '-');
    };
    io.out(
      routes.length
        ? table(
            ['destination', 'via', 'dev', 'metric', 'proto', 'type', 'src'],
            routes.map((r) => [
              prefix(r),
              via(r),
              r.multipath ? '(multipath)' : name(r.oif),
              String(r.priority),
              routeProtocolName(r.protocol),
              routeTypeName(r.type),
              r.prefsrc ?? '-',
            ]),
          )
        : '(no routes in the main table)',
    );
    return 0;
  } finally {
    await mirror.close();
  }
}
