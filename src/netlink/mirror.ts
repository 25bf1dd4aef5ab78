/**
 * The live rtnetlink mirror: links, addresses, main-table routes and IPv4/IPv6 neighbours, kept
 * identical to the kernel's, plus `resolve()` (route → next hop → MAC) that asks the kernel to
 * resolve a missing neighbour with RTM_NEWNEIGH + NTF_USE instead of pinging anything.
 *
 * Consistency protocol:
 *   1. join the multicast groups FIRST, then dump every table: nothing can change unseen
 *      between the dump and the subscription;
 *   2. while a dump runs, notifications are buffered (already parsed); after the snapshot
 *      replaces the tables they are applied in order. Notifications are ordered and each one
 *      carries the object's full state, so replaying ones older than the snapshot converges
 *      to the newest state;
 *   3. ENOBUFS on the subscription means the kernel dropped notifications: the buffered ones are
 *      discarded (they may be followed by lost ones) and a fresh dump is taken (a resync). A
 *      resync requested while one runs makes it run once more afterwards;
 *   4. IPv4 flushes routes of a device that goes down without RTM_DELROUTE notifications, so
 *      a link going down or away triggers a resync too.
 *
 * Resolution: a next hop without a usable entry (NUD_VALID with a MAC) gets a *pending* record:
 * one NTF_USE request (the kernel creates the entry and sends the ARP request / neighbour
 * solicitation itself, so it also accepts the IPv6 advertisement that answers it), a bounded
 * packet queue (oldest dropped on overflow, as the kernel's unres_qlen does), and a deadline.
 * The pending record ends when the neighbour notification shows a MAC (queued packets are
 * handed to `onFlush`), when it shows NUD_FAILED, or at the deadline; dropped packets are
 * counted by reason.
 *
 * Workers read neighbours from `sharedNeighbours` (see neigh-table.ts) without locks.
 */
import { PinholeError } from '../sys/index.ts';
import type { RawMessage } from './codec.ts';
import { canonicalIp, parseIpText } from './ip.ts';
import {
  AF_UNSPEC,
  IFF_UP,
  NUD_FAILED,
  NUD_VALID,
  RTM_GETADDR,
  RTM_GETLINK,
  RTM_GETNEIGH,
  RTM_GETROUTE,
  RTN_UNICAST,
  RTNLGRP_IPV4_IFADDR,
  RTNLGRP_IPV4_ROUTE,
  RTNLGRP_IPV6_IFADDR,
  RTNLGRP_IPV6_ROUTE,
  RTNLGRP_LINK,
  RTNLGRP_NEIGH,
  dumpRequest,
  neighUseRequest,
  routeTypeName,
  type Family,
  type NeighEntry,
  type RouteEntry,
} from './rtnl.ts';
import { RtnlSocket, RtnlSubscription, type SubscriptionOptions } from './socket.ts';
import { MirrorTables, neighKey, parseUpdate, type TableChange, type Update } from './tables.ts';

export const MIRROR_GROUPS = [
  RTNLGRP_LINK,
  RTNLGRP_IPV4_IFADDR,
  RTNLGRP_IPV6_IFADDR,
  RTNLGRP_IPV4_ROUTE,
  RTNLGRP_IPV6_ROUTE,
  RTNLGRP_NEIGH,
] as const;

/** What the mirror needs from the kernel; `kernelTransport()` is the real one, tests pass fakes. */
export interface MirrorTransport {
  /** Dumps one table (all families). */
  dump(type: number): Promise<RawMessage[]>;
  /** Sends a request and waits for its ack. */
  request(msg: Uint8Array, what: string): Promise<void>;
  subscribe(opts: SubscriptionOptions): { readonly rcvbuf: number; close(): Promise<void> };
  close(): void;
}

export function kernelTransport(): MirrorTransport {
  const sock = RtnlSocket.open();
  return {
    dump: (type) => sock.dump(dumpRequest(type, AF_UNSPEC), { what: `dump ${type}`, timeoutMs: 30_000 }),
    request: async (msg, what) => {
      await sock.request(msg, { what });
    },
    subscribe: (opts) => RtnlSubscription.open(opts),
    close: () => sock.close(),
  };
}

export interface MirrorOptions {
  /** Subscription receive buffer in bytes (SO_RCVBUF); default: the kernel's default. */
  rcvbuf?: number;
  /** Slots in the shared neighbour table (power of two). Default 4096. */
  neighbourCapacity?: number;
  /** Packets held per pending next hop. Default 8. */
  pendingQueueLength?: number;
  /** Next hops resolving at once. Default 256. */
  maxPending?: number;
  /** How long a next hop may stay unresolved. Default 3000 ms. */
  resolveTimeoutMs?: number;
  /** Receives packets that were waiting for a next hop once it resolves. */
  onFlush?: (nexthop: NextHopKey, mac: string, packets: Uint8Array[]) => void;
  transport?: MirrorTransport;
}

export interface NextHopKey {
  family: Family;
  ifindex: number;
  ip: string;
}

export interface Resolution {
  dst: string;
  route: RouteEntry;
  nexthop: NextHopKey;
  mac: string;
  state: number;
  /** `mirror`: already known; `kernel`: resolved after our NTF_USE request. */
  source: 'mirror' | 'kernel';
  elapsedMs: number;
}

export interface MirrorCounters {
  eventsApplied: number;
  notificationsMalformed: number;
  overflows: number;
  resyncs: number;
  resolveFromMirror: number;
  resolveByKernel: number;
  resolveFailed: number;
  resolveTimeout: number;
  ntfUseRequests: number;
  packetsQueued: number;
  packetsFlushed: number;
  dropQueueOverflow: number;
  dropTimeout: number;
  dropFailed: number;
  dropTooManyPending: number;
  neighbourTableFull: number;
}

export type MirrorEvent = TableChange | { table: 'resync'; reason: string; neighbours: number; routes: number };

interface Pending {
  key: NextHopKey;
  started: number;
  queue: Uint8Array[];
  waiters: { resolve: (n: NeighEntry) => void; reject: (e: Error) => void }[];
  timer: NodeJS.Timeout;
}

export class Mirror {
  readonly tables: MirrorTables;
  readonly counters: MirrorCounters = {
    eventsApplied: 0,
    notificationsMalformed: 0,
    overflows: 0,
    resyncs: 0,
    resolveFromMirror: 0,
    resolveByKernel: 0,
    resolveFailed: 0,
    resolveTimeout: 0,
    ntfUseRequests: 0,
    packetsQueued: 0,
    packetsFlushed: 0,
    dropQueueOverflow: 0,
    dropTimeout: 0,
    dropFailed: 0,
    dropTooManyPending: 0,
    neighbourTableFull: 0,
  };
  private readonly transport: MirrorTransport;
  private sub: { readonly rcvbuf: number; close(): Promise<void> } | undefined;
  private readonly listeners = new Set<(e: MirrorEvent) => void>();
  private readonly pending = new Map<string, Pending>();
  private buffered: Update[] | undefined;
  private resyncRunning: Promise<void> | undefined;
  private resyncAgain: string | undefined;
  private closed = false;
  private lastError: Error | undefined;

  private constructor(private readonly opts: MirrorOptions) {
    this.tables = new MirrorTables({ neighbourCapacity: opts.neighbourCapacity });
    this.transport = opts.transport ?? kernelTransport();
  }

  /** Subscribes, dumps, and returns a live mirror. Call `close()`. */
  static async open(opts: MirrorOptions = {}): Promise<Mirror> {
    const m = new Mirror(opts);
    try {
      m.sub = m.transport.subscribe({
        groups: MIRROR_GROUPS,
        rcvbuf: opts.rcvbuf,
        onMessages: (msgs) => m.onMessages(msgs),
        onOverflow: () => m.onOverflow(),
        onError: (err, fatal) => {
          m.lastError = err;
          if (fatal) m.emitError(err);
        },
      });
      await m.resync('initial');
    } catch (err) {
      await m.close();
      throw err;
    }
    return m;
  }

  /** The subscription's receive buffer as the kernel set it. */
  get rcvbuf(): number {
    return this.sub?.rcvbuf ?? 0;
  }

  /** The SharedArrayBuffer to post to workers (read it with NeighbourTableReader). */
  get sharedNeighbours(): SharedArrayBuffer {
    return this.tables.shared.buffer;
  }

  /** The last non-fatal error (e.g. a malformed notification that was skipped). */
  get error(): Error | undefined {
    return this.lastError;
  }

  /** Listens to table changes and resyncs; returns an unsubscribe function. */
  onChange(fn: (e: MirrorEvent) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const p of [...this.pending.values()]) this.finishPending(p, new PinholeError('ERR_NETLINK_CLOSED', 'mirror closed'), 'closed');
    await this.sub?.close();
    await this.resyncRunning?.catch(() => undefined);
    this.transport.close();
  }

  /** Dumps everything again and replaces the tables (also called on overflow). */
  resync(reason: string): Promise<void> {
    if (this.resyncRunning) {
      this.resyncAgain = reason;
      return this.resyncRunning;
    }
    const run = async (): Promise<void> => {
      let why: string | undefined = reason;
      try {
        while (why !== undefined && !this.closed) {
          this.resyncAgain = undefined;
          this.buffered = [];
          const snapshot: Update[] = [];
          for (const type of [RTM_GETLINK, RTM_GETADDR, RTM_GETROUTE, RTM_GETNEIGH]) {
            for (const m of await this.transport.dump(type)) {
              const u = this.parse(m);
              if (u) snapshot.push(u);
            }
          }
          if (this.resyncAgain !== undefined) {
            why = this.resyncAgain;
            continue;
          }
          this.tables.replaceAll(snapshot);
          const queued = this.buffered;
          this.buffered = undefined;
          this.tables.shared.begin();
          try {
            for (const u of queued) this.applyOne(u, false);
          } finally {
            this.tables.shared.end();
          }
          this.counters.resyncs++;
          this.syncCounters();
          this.emit({ table: 'resync', reason: why, neighbours: this.tables.neighbours.size, routes: this.tables.routes.size });
          for (const p of [...this.pending.values()]) this.checkPending(p.key);
          why = this.resyncAgain;
        }
      } finally {
        this.buffered = undefined;
        this.resyncRunning = undefined;
      }
    };
    this.resyncRunning = run();
    return this.resyncRunning;
  }

  /** Resolves when no resync is running (or queued). */
  async settled(): Promise<void> {
    while (this.resyncRunning) await this.resyncRunning;
  }

  /** Resolves `dst` to route, next hop and MAC, asking the kernel (NTF_USE) on a miss. */
  async resolve(dst: string, opts: { timeoutMs?: number; packet?: Uint8Array } = {}): Promise<Resolution> {
    const started = performance.now();
    let ip: string;
    try {
      ip = canonicalIp(dst);
    } catch (cause) {
      throw new PinholeError('ERR_NETLINK_BAD_ADDRESS', `resolve ${dst}: not an IP address`, { cause });
    }
    const route = this.tables.lookupRoute(ip);
    if (!route) throw new PinholeError('ERR_NETLINK_NO_ROUTE', `resolve ${ip}: no route in the main table`, { details: { dst: ip } });
    if (route.type !== RTN_UNICAST) {
      throw new PinholeError(
        'ERR_NETLINK_UNREACHABLE',
        `resolve ${ip}: route ${route.dst}/${route.dstLen} is ${routeTypeName(route.type)}`,
        { details: { dst: ip, route } },
      );
    }
    const nexthop = nextHopOf(route, ip);
    if (!nexthop) {
      throw new PinholeError(
        'ERR_NETLINK_UNSUPPORTED',
        `resolve ${ip}: route ${route.dst}/${route.dstLen} has no output interface (nexthop objects are not mirrored)`,
        { details: { route } },
      );
    }
    const known = this.tables.getNeighbour(nexthop.ifindex, nexthop.ip);
    if (known && known.state & NUD_VALID && known.mac) {
      this.counters.resolveFromMirror++;
      if (opts.packet) this.opts.onFlush?.(nexthop, known.mac, [opts.packet]);
      return { dst: ip, route, nexthop, mac: known.mac, state: known.state, source: 'mirror', elapsedMs: performance.now() - started };
    }
    const n = await this.waitForNeighbour(nexthop, opts.timeoutMs ?? this.opts.resolveTimeoutMs ?? 3000, opts.packet);
    this.counters.resolveByKernel++;
    return { dst: ip, route, nexthop, mac: n.mac!, state: n.state, source: 'kernel', elapsedMs: performance.now() - started };
  }

  /** Next hops currently being resolved. */
  pendingNextHops(): { key: NextHopKey; queued: number; ageMs: number }[] {
    const now = performance.now();
    return [...this.pending.values()].map((p) => ({ key: p.key, queued: p.queue.length, ageMs: now - p.started }));
  }

  private waitForNeighbour(key: NextHopKey, timeoutMs: number, packet: Uint8Array | undefined): Promise<NeighEntry> {
    const k = neighKey(key.ifindex, key.ip);
    let p = this.pending.get(k);
    if (!p) {
      if (this.pending.size >= (this.opts.maxPending ?? 256)) {
        if (packet) this.counters.dropTooManyPending++;
        return Promise.reject(new PinholeError('ERR_NETLINK_RESOLVE_BUSY', `resolve ${key.ip}: too many next hops resolving`));
      }
      const created: Pending = {
        key,
        started: performance.now(),
        queue: [],
        waiters: [],
        timer: setTimeout(() => {
          this.counters.resolveTimeout++;
          this.finishPending(
            created,
            new PinholeError('ERR_NETLINK_RESOLVE_TIMEOUT', `resolve ${key.ip}: the kernel did not resolve it within ${timeoutMs} ms`, {
              details: { ...key },
            }),
            'timeout',
          );
        }, timeoutMs),
      };
      p = created;
      this.pending.set(k, p);
      this.counters.ntfUseRequests++;
      this.transport
        .request(neighUseRequest(key.family, key.ifindex, key.ip), `resolve ${key.ip} on ifindex ${key.ifindex} (NTF_USE)`)
        .catch((cause: unknown) => {
          this.counters.resolveFailed++;
          this.finishPending(
            created,
            new PinholeError('ERR_NETLINK_RESOLVE', `resolve ${key.ip}: the kernel refused the request`, { cause }),
            'failed',
          );
        });
    }
    if (packet) {
      const limit = this.opts.pendingQueueLength ?? 8;
      if (p.queue.length >= limit) {
        p.queue.shift();
        this.counters.dropQueueOverflow++;
      }
      p.queue.push(packet);
      this.counters.packetsQueued++;
    }
    const target = p;
    return new Promise((resolve, reject) => {
      target.waiters.push({ resolve, reject });
    });
  }

  private finishPending(p: Pending, result: NeighEntry | Error, why: 'ok' | 'timeout' | 'failed' | 'closed'): void {
    if (this.pending.get(neighKey(p.key.ifindex, p.key.ip)) !== p) return;
    this.pending.delete(neighKey(p.key.ifindex, p.key.ip));
    clearTimeout(p.timer);
    if (result instanceof Error) {
      if (why === 'timeout') this.counters.dropTimeout += p.queue.length;
      else this.counters.dropFailed += p.queue.length;
      for (const w of p.waiters) w.reject(result);
      return;
    }
    if (p.queue.length) {
      this.counters.packetsFlushed += p.queue.length;
      this.opts.onFlush?.(p.key, result.mac!, p.queue);
    }
    for (const w of p.waiters) w.resolve(result);
  }

  private checkPending(key: NextHopKey): void {
    const p = this.pending.get(neighKey(key.ifindex, key.ip));
    if (!p) return;
    const n = this.tables.getNeighbour(key.ifindex, key.ip);
    if (!n) return;
    if (n.state & NUD_VALID && n.mac) this.finishPending(p, n, 'ok');
    else if (n.state & NUD_FAILED) {
      this.counters.resolveFailed++;
      this.finishPending(
        p,
        new PinholeError('ERR_NETLINK_UNRESOLVED', `resolve ${key.ip}: the kernel marked the neighbour FAILED (no answer)`, {
          details: { ...key },
        }),
        'failed',
      );
    }
  }

  private parse(m: RawMessage): Update | undefined {
    try {
      return parseUpdate(m);
    } catch (err) {
      // Skip what we cannot read rather than store a wrong entry; keep the error for operators.
      this.counters.notificationsMalformed++;
      this.lastError = err as Error;
      return undefined;
    }
  }

  private onMessages(msgs: RawMessage[]): void {
    if (this.closed) return;
    const updates: Update[] = [];
    for (const m of msgs) {
      const u = this.parse(m);
      if (u) updates.push(u);
    }
    if (this.buffered) {
      for (const u of updates) this.buffered.push(u);
      return;
    }
    // One datagram = one write section for worker readers.
    this.tables.shared.begin();
    try {
      for (const u of updates) this.applyOne(u, true);
    } finally {
      this.tables.shared.end();
    }
    this.syncCounters();
  }

  private applyOne(u: Update, live: boolean): void {
    let needResync: string | undefined;
    if (u.table === 'link') {
      const before = this.tables.links.get(u.entry.index);
      if (u.del) needResync = `link ${u.entry.index} removed`;
      else if (before && before.flags & IFF_UP && !(u.entry.flags & IFF_UP)) needResync = `link ${u.entry.index} down`;
    }
    const change = this.tables.apply(u);
    if (change) this.emit(change);
    if (u.table === 'neigh') this.checkPending(u.entry);
    if (needResync && live) void this.resync(needResync).catch((e: unknown) => this.emitError(e as Error));
  }

  private onOverflow(): void {
    this.counters.overflows++;
    if (this.buffered) this.buffered = []; // may be followed by lost notifications: the next dump supersedes them
    void this.resync('overflow (ENOBUFS)').catch((e: unknown) => this.emitError(e as Error));
  }

  private syncCounters(): void {
    this.counters.eventsApplied = this.tables.eventsApplied;
    this.counters.neighbourTableFull = this.tables.shared.fullDrops;
  }

  private emit(e: MirrorEvent): void {
    for (const fn of this.listeners) fn(e);
  }

  private emitError(err: Error): void {
    this.lastError = err;
  }
}

/** The next hop a route gives for `dst`: its gateway (first hop of a multipath route) or `dst` itself. */
export function nextHopOf(route: RouteEntry, dst: string): NextHopKey | undefined {
  const first = route.multipath?.[0];
  const ifindex = first ? first.ifindex : route.oif;
  const gw = first ? first.gateway : route.gateway;
  if (!ifindex) return undefined;
  const ip = gw ?? dst;
  const fam: Family = parseIpText(ip)!.length === 4 ? 4 : 6;
  return { family: fam, ifindex, ip };
}
