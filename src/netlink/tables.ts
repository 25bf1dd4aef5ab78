/**
 * The mirror's tables, pure: links, addresses, main-table routes with longest-prefix match,
 * neighbours (with the shared-memory copy for workers). Fed with parsed rtnetlink messages,
 * either one notification at a time (`apply`) or a whole dump (`replaceAll`). No I/O, so unit
 * tests drive it with crafted messages.
 *
 * `capture()` + `diffTables()` turn a resync into ordinary change events: what a consumer that
 * followed every notification would have seen, had none been lost.
 *
 * Route lookup (`lookupRoute`) follows the kernel's main-table FIB semantics pinhole needs:
 * longest prefix wins; among equal prefixes the lowest metric (RTA_PRIORITY) wins; TOS and
 * policy routing are ignored; RTM_F_CLONED cache entries and other tables are not mirrored.
 */
import { isDeepStrictEqual } from 'node:util';
import { parseIpText } from './ip.ts';
import type { RawMessage } from './codec.ts';
import { NeighbourTableWriter, type NeighSlotValue } from './neigh-table.ts';
import {
  RTM_DELADDR,
  RTM_DELLINK,
  RTM_DELNEIGH,
  RTM_DELROUTE,
  RTM_F_CLONED,
  RTM_NEWADDR,
  RTM_NEWLINK,
  RTM_NEWNEIGH,
  RTM_NEWROUTE,
  RT_TABLE_MAIN,
  NTF_PROXY,
  IFF_UP,
  parseAddr,
  parseLink,
  parseNeigh,
  parseRoute,
  type AddrEntry,
  type Family,
  type LinkInfo,
  type NeighEntry,
  type RouteEntry,
} from './rtnl.ts';

export type TableChange =
  | { table: 'link'; op: 'add' | 'update' | 'del'; entry: LinkInfo }
  | { table: 'addr'; op: 'add' | 'update' | 'del'; entry: AddrEntry }
  | { table: 'route'; op: 'add' | 'update' | 'del'; entry: RouteEntry }
  | { table: 'neigh'; op: 'add' | 'update' | 'del'; entry: NeighEntry };

/** One parsed notification. */
export type Update =
  | { table: 'link'; del: boolean; entry: LinkInfo }
  | { table: 'addr'; del: boolean; entry: AddrEntry }
  | { table: 'route'; del: boolean; entry: RouteEntry }
  | { table: 'neigh'; del: boolean; entry: NeighEntry };

/** Parses a notification or dump message; undefined for messages the mirror ignores. Throws typed errors on malformed input. */
export function parseUpdate(m: RawMessage): Update | undefined {
  switch (m.type) {
    case RTM_NEWLINK:
    case RTM_DELLINK:
      return { table: 'link', del: m.type === RTM_DELLINK, entry: parseLink(m) };
    case RTM_NEWADDR:
    case RTM_DELADDR: {
      const e = parseAddr(m);
      return e && { table: 'addr', del: m.type === RTM_DELADDR, entry: e };
    }
    case RTM_NEWROUTE:
    case RTM_DELROUTE: {
      const e = parseRoute(m);
      if (!e || e.table !== RT_TABLE_MAIN || e.flags & RTM_F_CLONED) return undefined;
      return { table: 'route', del: m.type === RTM_DELROUTE, entry: e };
    }
    case RTM_NEWNEIGH:
    case RTM_DELNEIGH: {
      const e = parseNeigh(m);
      if (!e || e.flags & NTF_PROXY) return undefined;
      return { table: 'neigh', del: m.type === RTM_DELNEIGH, entry: e };
    }
    default:
      return undefined;
  }
}

export const neighKey = (ifindex: number, ip: string): string => `${ifindex}|${ip}`;
const addrKey = (a: AddrEntry): string => `${a.family}|${a.ifindex}|${a.address}/${a.prefixLen}`;
const routeKey = (r: RouteEntry): string => `${r.family}|${r.dst}/${r.dstLen}|${r.tos}|${r.priority}`;

function prefixKey(bytes: Uint8Array, len: number): string {
  let s = '';
  const full = len >> 3;
  for (let i = 0; i < full; i++) s += String.fromCharCode(bytes[i]!);
  if (len & 7) s += String.fromCharCode(bytes[full]! & (0xff << (8 - (len & 7))) & 0xff);
  return s;
}

/** Longest-prefix-match index for one family: prefix length → masked prefix → routes by metric. */
class Lpm {
  private readonly byLen = new Map<number, Map<string, RouteEntry[]>>();
  private lens: number[] = [];

  constructor(private readonly bits: number) {}

  add(r: RouteEntry): void {
    const b = parseIpText(r.dst)!;
    let m = this.byLen.get(r.dstLen);
    if (!m) {
      m = new Map();
      this.byLen.set(r.dstLen, m);
      this.lens = [...this.byLen.keys()].sort((x, y) => y - x);
    }
    const k = prefixKey(b, r.dstLen);
    const list = m.get(k) ?? [];
    list.push(r);
    list.sort((x, y) => x.priority - y.priority);
    m.set(k, list);
  }

  remove(r: RouteEntry): void {
    const m = this.byLen.get(r.dstLen);
    if (!m) return;
    const k = prefixKey(parseIpText(r.dst)!, r.dstLen);
    const list = m.get(k);
    if (!list) return;
    const key = routeKey(r);
    const rest = list.filter((x) => routeKey(x) !== key);
    if (rest.length) m.set(k, rest);
    else m.delete(k);
    if (m.size === 0) {
      this.byLen.delete(r.dstLen);
      this.lens = [...this.byLen.keys()].sort((x, y) => y - x);
    }
  }

  lookup(addr: Uint8Array): RouteEntry | undefined {
    if (addr.length * 8 !== this.bits) return undefined;
    for (const len of this.lens) {
      const list = this.byLen.get(len)!.get(prefixKey(addr, len));
      if (list) return list[0];
    }
    return undefined;
  }
}

/** The four tables at one moment (shallow copies: entries are never mutated, only replaced). */
export interface TablesCapture {
  links: ReadonlyMap<number, LinkInfo>;
  addrs: ReadonlyMap<string, AddrEntry>;
  routes: ReadonlyMap<string, RouteEntry>;
  neighbours: ReadonlyMap<string, NeighEntry>;
}

/**
 * The changes that turn `before` into `after`, per table (links, addresses, routes, neighbours),
 * deletions first: `del` carries the old entry, `add`/`update` the new one. Unchanged entries
 * produce nothing. Applying the result to a copy of `before` (keyed as the tables key) gives `after`.
 */
export function diffTables(before: TablesCapture, after: TablesCapture): TableChange[] {
  const out: TableChange[] = [];
  diffMap(before.links, after.links, (op, entry) => out.push({ table: 'link', op, entry }));
  diffMap(before.addrs, after.addrs, (op, entry) => out.push({ table: 'addr', op, entry }));
  diffMap(before.routes, after.routes, (op, entry) => out.push({ table: 'route', op, entry }));
  diffMap(before.neighbours, after.neighbours, (op, entry) => out.push({ table: 'neigh', op, entry }));
  return out;
}

function diffMap<K, V>(a: ReadonlyMap<K, V>, b: ReadonlyMap<K, V>, push: (op: 'add' | 'update' | 'del', v: V) => void): void {
  for (const [k, v] of a) if (!b.has(k)) push('del', v);
  for (const [k, v] of b) {
    const old = a.get(k);
    if (old === undefined) push('add', v);
    else if (old !== v && !isDeepStrictEqual(old, v)) push('update', v);
  }
}

export class MirrorTables {
  readonly links = new Map<number, LinkInfo>();
  readonly addrs = new Map<string, AddrEntry>();
  readonly routes = new Map<string, RouteEntry>();
  readonly neighbours = new Map<string, NeighEntry>();
  readonly shared: NeighbourTableWriter;
  private lpm4 = new Lpm(32);
  private lpm6 = new Lpm(128);
  eventsApplied = 0;

  constructor(opts: { neighbourCapacity?: number } = {}) {
    this.shared = new NeighbourTableWriter(opts.neighbourCapacity ?? 4096);
  }

  /** Applies one update; returns the change it made (undefined if none). */
  apply(u: Update): TableChange | undefined {
    this.eventsApplied++;
    switch (u.table) {
      case 'link': {
        const had = this.links.has(u.entry.index);
        if (u.del) {
          if (!had) return undefined;
          this.links.delete(u.entry.index);
          return { table: 'link', op: 'del', entry: u.entry };
        }
        this.links.set(u.entry.index, u.entry);
        return { table: 'link', op: had ? 'update' : 'add', entry: u.entry };
      }
      case 'addr': {
        const k = addrKey(u.entry);
        const had = this.addrs.has(k);
        if (u.del) {
          if (!had) return undefined;
          this.addrs.delete(k);
          return { table: 'addr', op: 'del', entry: u.entry };
        }
        this.addrs.set(k, u.entry);
        return { table: 'addr', op: had ? 'update' : 'add', entry: u.entry };
      }
      case 'route': {
        const k = routeKey(u.entry);
        const old = this.routes.get(k);
        const lpm = u.entry.family === 4 ? this.lpm4 : this.lpm6;
        if (old) lpm.remove(old);
        if (u.del) {
          if (!old) return undefined;
          this.routes.delete(k);
          return { table: 'route', op: 'del', entry: old };
        }
        this.routes.set(k, u.entry);
        lpm.add(u.entry);
        return { table: 'route', op: old ? 'update' : 'add', entry: u.entry };
      }
      case 'neigh': {
        const e = u.entry;
        const k = neighKey(e.ifindex, e.ip);
        const had = this.neighbours.has(k);
        if (u.del) {
          if (!had) return undefined;
          this.neighbours.delete(k);
          this.shared.remove(e.family, e.ifindex, parseIpText(e.ip)!);
          if (this.shared.needsRebuild) this.rebuildShared();
          return { table: 'neigh', op: 'del', entry: e };
        }
        this.neighbours.set(k, e);
        this.shared.upsert(slotOf(e));
        return { table: 'neigh', op: had ? 'update' : 'add', entry: e };
      }
    }
  }

  /** Replaces every table with a dump's content (the shared table in one write section). */
  replaceAll(updates: Iterable<Update>): void {
    this.links.clear();
    this.addrs.clear();
    this.routes.clear();
    this.neighbours.clear();
    this.lpm4 = new Lpm(32);
    this.lpm6 = new Lpm(128);
    for (const u of updates) {
      if (u.del) continue;
      switch (u.table) {
        case 'link':
          this.links.set(u.entry.index, u.entry);
          break;
        case 'addr':
          this.addrs.set(addrKey(u.entry), u.entry);
          break;
        case 'route': {
          const k = routeKey(u.entry);
          const old = this.routes.get(k);
          if (old) (old.family === 4 ? this.lpm4 : this.lpm6).remove(old);
          this.routes.set(k, u.entry);
          (u.entry.family === 4 ? this.lpm4 : this.lpm6).add(u.entry);
          break;
        }
        case 'neigh':
          this.neighbours.set(neighKey(u.entry.ifindex, u.entry.ip), u.entry);
          break;
      }
    }
    this.rebuildShared();
  }

  /** The tables as they are now, for `diffTables` after a later change. */
  capture(): TablesCapture {
    return { links: new Map(this.links), addrs: new Map(this.addrs), routes: new Map(this.routes), neighbours: new Map(this.neighbours) };
  }

  rebuildShared(): void {
    this.shared.replaceAll([...this.neighbours.values()].map(slotOf));
  }

  /** Longest-prefix match in the main table. */
  lookupRoute(ip: string): RouteEntry | undefined {
    const b = parseIpText(ip);
    if (!b) return undefined;
    return b.length === 4 ? this.lpm4.lookup(b) : this.lpm6.lookup(b);
  }

  getNeighbour(ifindex: number, ip: string): NeighEntry | undefined {
    return this.neighbours.get(neighKey(ifindex, ip));
  }

  /** Whether a link is administratively up (unknown links count as up). */
  linkUp(index: number): boolean {
    const l = this.links.get(index);
    return !l || (l.flags & IFF_UP) !== 0;
  }

  /** Neighbours sorted for display/comparison. */
  listNeighbours(family?: Family): NeighEntry[] {
    return [...this.neighbours.values()]
      .filter((n) => !family || n.family === family)
      .sort((a, b) => a.ifindex - b.ifindex || a.family - b.family || compareIp(a.ip, b.ip));
  }

  listRoutes(family?: Family): RouteEntry[] {
    return [...this.routes.values()]
      .filter((r) => !family || r.family === family)
      .sort((a, b) => a.family - b.family || b.dstLen - a.dstLen || compareIp(a.dst, b.dst) || a.priority - b.priority);
  }
}

function slotOf(e: NeighEntry): NeighSlotValue {
  const mac = e.mac ? macBytes(e.mac) : undefined;
  return { family: e.family, ifindex: e.ifindex, addr: parseIpText(e.ip)!, mac, state: e.state };
}

function macBytes(mac: string): Uint8Array | undefined {
  const parts = mac.split(':');
  if (parts.length !== 6) return undefined;
  return Uint8Array.from(parts, (p) => Number.parseInt(p, 16));
}

export function compareIp(a: string, b: string): number {
  const x = parseIpText(a);
  const y = parseIpText(b);
  if (!x || !y) return a < b ? -1 : a > b ? 1 : 0;
  if (x.length !== y.length) return x.length - y.length;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return x[i]! - y[i]!;
  return 0;
}
