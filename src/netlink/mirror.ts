/**
 * The live rtnetlink mirror: links, addresses, main-table routes and IPv4/IPv6 neighbours, kept
 * identical to the kernel's, plus `resolve()` (route → next hop → MAC) that asks the kernel to
 * resolve a missing neighbour with RTM_NEWNEIGH + NTF_USE instead of pinging anything.
 *
 * Consistency protocol:
 *   1. join the multicast groups FIRST, then dump every table (a *resync*);
 *   2. while a dump runs, notifications are buffered (already parsed); the snapshot then replaces
 *      the tables and the buffered notifications are applied on top, in order;
 *   3. on ENOBUFS (the kernel dropped notifications) the subscription has already DISCARDED every
 *      datagram that was queued behind the loss (socket.ts, "Overflow") before `onOverflow` runs;
 *      the mirror drops what it had buffered for a running dump and dumps again (a resync
 *      requested while one runs makes it run once more, with a fresh buffer, afterwards);
 *   4. IPv4 flushes the routes of a device that goes down without RTM_DELROUTE notifications, so
 *      a link going down or away, live or among the buffered notifications of a resync, triggers
 *      (another) resync.
 *
 * Why this converges (per entry; the argument needs no consistent dump across entries):
 *   Let T0 be the moment from which the subscription loses nothing: the join for the first
 *   resync; after an overflow, the moment the drain found the queue empty (the kernel clears its
 *   CONGESTED mark then, and delivers every later notification in order). Every dump of a resync
 *   is sent after T0, and every notification applied after its snapshot was queued after T0
 *   (anything older was discarded by the drain or dropped with the buffer in step 3). Take one
 *   entry E and the dump's view of it, read at some time td >= T0.
 *     - No change to E after T0: the dump shows E's current state and no notification about E
 *       is applied: the mirror holds the kernel's state.
 *     - Changes to E after T0: each produced a notification, all delivered, applied in the
 *       order the kernel sent them, after the snapshot. Each carries the entry's full state as
 *       the kernel built it when sending (or is a deletion), so the last one applied is E's
 *       current state, whatever the dump showed. One older than td merely restates a state the
 *       dump already superseded, and a newer one follows it.
 *   Assumed of the kernel: a dump lists every entry that exists for its whole duration (where it
 *   tracks changes under a multi-part dump it flags NLM_F_DUMP_INTR, and socket.ts dumps again).
 *   Before the fix, the datagrams queued behind an ENOBUFS (all older than the loss, e.g. the
 *   RTM_NEWNEIGH of a neighbour whose RTM_DELNEIGH was dropped) were buffered and replayed on
 *   top of the fresh dump, violating "queued after T0", and resurrected deleted neighbours.
 *   A notification lost *after* T0 is a new overflow and restarts the argument. The kernel test
 *   test/kernel/netlink-resync.test.ts checks the result against `ip neigh` after overflows.
 *
 * Change events (`onChange`): every live notification that changes a table is one event. A
 * resync emits the net difference between the tables before it and after it (`del` for entries
 * gone, `add`/`update` for new or changed ones, links → addresses → routes → neighbours), then
 * one `{ table: 'resync' }` event. A consumer that applies every event to its own copy (keyed
 * like the tables: link index; address family/ifindex/prefix; route family/prefix/tos/metric;
 * neighbour ifindex/ip) therefore holds the kernel's tables after each `resync` event, losses or
 * not. The resync's changes carry `fromResync: true`, so a consumer that recomputes everything on
 * the `resync` event anyway may skip them.
 *
 * Errors (`onError(fn)`, with `fatal`):
 *   - fatal: the subscription socket failed and its reader stopped. The mirror no longer follows
 *     the kernel: `failed` holds ERR_NETLINK_MIRROR_FAILED, pending and later `resolve()` calls
 *     reject with it. The owner should log it, `close()` and open a new Mirror.
 *   - non-fatal: a resync failed (ERR_NETLINK_RESYNC; it is retried with backoff, 50 ms doubling
 *     to 5 s, and the tables count as stale until one succeeds); a notification could not be read
 *     (a resync follows); a change listener threw (ERR_NETLINK_LISTENER; the tables were still
 *     updated). A listener error with no error listener is rethrown (uncaught) instead.
 *   Malformed messages are skipped and counted (`counters.notificationsMalformed`, `error`).
 *
 * Resolution: a next hop without a usable entry (NUD_VALID with a MAC) gets a *pending* record:
 * one NTF_USE request (the kernel creates the entry and sends the ARP request / neighbour
 * solicitation itself, so it also accepts the IPv6 advertisement that answers it), a bounded
 * packet queue (oldest dropped on overflow, as the kernel's unres_qlen does), and a deadline.
 * The pending record ends when the neighbour notification shows a MAC (queued packets are
 * handed to `onFlush`), when it shows NUD_FAILED, or at the deadline; dropped packets are
 * counted by reason. While the tables may be stale (an overflow, a link down or a failed resync
 * awaits its resync) `resolve()` waits for the resync first, so it never answers from a neighbour
 * whose deletion was lost. Destinations that are never a next hop (unspecified, loopback,
 * multicast, broadcast, IPv4-mapped, or one of this node's own addresses) are refused up front:
 * ERR_NETLINK_BAD_ADDRESS or ERR_NETLINK_LOCAL_ADDRESS, with `details.kind`.
 *
 * Workers read neighbours from `sharedNeighbours` (see neigh-table.ts) without locks. A loss is
 * only known when the reader sees ENOBUFS, so between a lost deletion and the resync's commit
 * the shared table can still hold that neighbour; the commit replaces it in one write section.
 */
import { PinholeError } from '../sys/index.ts';
import type { RawMessage } from './codec.ts';
import { canonicalIp, parseIpText, specialAddressKind } from './ip.ts';
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
import { RtnlSocket, RtnlSubscription, type OverflowInfo, type SubscriptionOptions } from './socket.ts';
import { MirrorTables, diffTables, neighKey, parseUpdate, type TableChange, type Update } from './tables.ts';

export const MIRROR_GROUPS = [
  RTNLGRP_LINK,
  RTNLGRP_IPV4_IFADDR,
  RTNLGRP_IPV6_IFADDR,
  RTNLGRP_IPV4_ROUTE,
  RTNLGRP_IPV6_ROUTE,
  RTNLGRP_NEIGH,
] as const;

/** The longest delay a Node.js timer takes (larger values fire after 1 ms). */
export const MAX_TIMER_MS = 2 ** 31 - 1;

const RETRY_FIRST_MS = 50;
const RETRY_MAX_MS = 5000;

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
  /** How long a next hop may stay unresolved, 1 ms .. MAX_TIMER_MS. Default 3000 ms. */
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
  /** ENOBUFS reports (notifications lost). */
  overflows: number;
  /** Datagrams queued behind an ENOBUFS and discarded unread (they predate the loss). */
  notificationsDiscarded: number;
  resyncs: number;
  resyncFailures: number;
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

/**
 * Emitted after every resync, after the change events that bring a consumer's copy of the tables
 * to the new state. `changes` counts those events (0 when nothing had changed or nobody listened).
 */
export interface ResyncEvent {
  table: 'resync';
  reason: string;
  neighbours: number;
  routes: number;
  changes: number;
}

/** A table change; `fromResync` marks the net changes a resync found (they precede its ResyncEvent). */
export type MirrorChange = TableChange & { fromResync?: true };

export type MirrorEvent = MirrorChange | ResyncEvent;

/** `fatal`: the mirror stopped following the kernel (see the file header). */
export type MirrorErrorListener = (err: Error, fatal: boolean) => void;

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
    notificationsDiscarded: 0,
    resyncs: 0,
    resyncFailures: 0,
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
  private readonly errorListeners = new Set<MirrorErrorListener>();
  private readonly pending = new Map<string, Pending>();
  private buffered: Update[] | undefined;
  private resyncRunning: Promise<void> | undefined;
  private resyncAgain: string | undefined;
  /** Why the tables may be behind the kernel (a resync is due); undefined when in step. */
  private stale: string | undefined;
  /** An overflow whose drain has not finished (socket.ts `drained: false`). */
  private overflowOpen = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private retryDelay = RETRY_FIRST_MS;
  private settleWaiters: (() => void)[] = [];
  private closed = false;
  private failure: PinholeError | undefined;
  private lastError: Error | undefined;

  private constructor(private readonly opts: MirrorOptions) {
    if (opts.resolveTimeoutMs !== undefined) checkTimeout(opts.resolveTimeoutMs, 'resolveTimeoutMs');
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
        onOverflow: (info) => m.onOverflow(info),
        onError: (err, fatal) => m.onSubscriptionError(err, fatal),
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

  /** The most recent error, fatal or not (e.g. a malformed notification that was skipped). */
  get error(): Error | undefined {
    return this.lastError;
  }

  /** Set (ERR_NETLINK_MIRROR_FAILED) once the mirror has stopped following the kernel. */
  get failed(): PinholeError | undefined {
    return this.failure;
  }

  /** Whether the tables may be behind the kernel until a due resync completes. */
  get isStale(): boolean {
    return this.stale !== undefined;
  }

  /** Listens to table changes and resyncs (see the file header); returns an unsubscribe function. */
  onChange(fn: (e: MirrorEvent) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Listens to errors (`fatal`: the mirror stopped; see the file header); returns an unsubscribe function. */
  onError(fn: MirrorErrorListener): () => void {
    this.errorListeners.add(fn);
    return () => this.errorListeners.delete(fn);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.clearRetry();
    this.wakeSettled();
    for (const p of [...this.pending.values()]) this.finishPending(p, new PinholeError('ERR_NETLINK_CLOSED', 'mirror closed'), 'closed');
    await this.sub?.close();
    await this.resyncRunning?.catch(() => undefined);
    this.transport.close();
  }

  /**
   * Dumps everything again and replaces the tables (also run on overflow and link down). A resync
   * requested while one runs makes it run once more afterwards; the promise covers both.
   */
  resync(reason: string): Promise<void> {
    if (this.resyncRunning) {
      this.resyncAgain = reason;
      return this.resyncRunning;
    }
    if (this.failure) return Promise.reject(this.failure);
    const run = async (): Promise<void> => {
      let why: string | undefined = reason;
      try {
        while (why !== undefined && !this.closed && !this.failure) {
          this.resyncAgain = undefined;
          this.buffered = [];
          const snapshot: Update[] = [];
          for (const type of [RTM_GETLINK, RTM_GETADDR, RTM_GETROUTE, RTM_GETNEIGH]) {
            for (const m of await this.transport.dump(type)) {
              const u = this.parse(m);
              if (u) snapshot.push(u);
            }
          }
          if (this.closed || this.failure) return;
          if (this.resyncAgain !== undefined) {
            // An overflow (or a new reason) during the dump: dump again with a fresh buffer.
            why = this.resyncAgain;
            continue;
          }
          this.commit(why, snapshot);
          why = this.resyncAgain;
        }
      } catch (err) {
        // The buffered notifications are gone with this attempt: the tables are behind until a retry succeeds.
        if (!this.closed && !this.failure) {
          this.stale ??= `resync failed (${why ?? reason})`;
          this.scheduleRetry(why ?? reason, err);
        }
        throw err;
      } finally {
        this.buffered = undefined;
        this.resyncRunning = undefined;
      }
    };
    this.resyncRunning = run();
    return this.resyncRunning;
  }

  /** Resolves when no resync is running or due (or the mirror closed or failed). */
  async settled(): Promise<void> {
    for (;;) {
      if (this.closed || this.failure) return;
      if (this.resyncRunning) await this.resyncRunning.catch(() => undefined);
      else if (this.retryTimer) await new Promise<void>((r) => this.settleWaiters.push(r));
      else return;
    }
  }

  /** Resolves `dst` to route, next hop and MAC, asking the kernel (NTF_USE) on a miss. */
  async resolve(dst: string, opts: { timeoutMs?: number; packet?: Uint8Array } = {}): Promise<Resolution> {
    const started = performance.now();
    const timeoutMs = opts.timeoutMs ?? this.opts.resolveTimeoutMs ?? 3000;
    checkTimeout(timeoutMs, 'timeoutMs');
    let ip: string;
    try {
      ip = canonicalIp(dst);
    } catch (cause) {
      throw new PinholeError('ERR_NETLINK_BAD_ADDRESS', `resolve ${dst}: not an IP address`, { cause, details: { dst, kind: 'invalid' } });
    }
    this.refuseNonNextHop(ip);
    if (this.failure) throw this.failure;
    if (this.stale !== undefined) await this.waitInStep(ip, timeoutMs);
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
    const n = await this.waitForNeighbour(nexthop, timeoutMs, opts.packet);
    this.counters.resolveByKernel++;
    return { dst: ip, route, nexthop, mac: n.mac!, state: n.state, source: 'kernel', elapsedMs: performance.now() - started };
  }

  /** Next hops currently being resolved. */
  pendingNextHops(): { key: NextHopKey; queued: number; ageMs: number }[] {
    const now = performance.now();
    return [...this.pending.values()].map((p) => ({ key: p.key, queued: p.queue.length, ageMs: now - p.started }));
  }

  /** Throws for destinations that can never be a next hop: special addresses and this node's own. */
  private refuseNonNextHop(ip: string): void {
    const b = parseIpText(ip)!;
    const kind = specialAddressKind(b);
    if (kind === 'loopback') {
      throw new PinholeError('ERR_NETLINK_LOCAL_ADDRESS', `resolve ${ip}: a loopback address is delivered locally, it has no next hop`, {
        details: { dst: ip, kind },
      });
    }
    if (kind) {
      throw new PinholeError('ERR_NETLINK_BAD_ADDRESS', `resolve ${ip}: ${SPECIAL_TEXT[kind]}, not a unicast destination`, {
        details: { dst: ip, kind },
      });
    }
    for (const a of this.tables.addrs.values()) {
      const own = a.local ?? a.address;
      if (own === ip) {
        throw new PinholeError(
          'ERR_NETLINK_LOCAL_ADDRESS',
          `resolve ${ip}: this node's own address (ifindex ${a.ifindex}), it has no next hop`,
          {
            details: { dst: ip, kind: 'own', ifindex: a.ifindex },
          },
        );
      }
      if (a.family === 4 && b.length === 4 && a.prefixLen <= 30 && isDirectedBroadcast(b, parseIpText(own)!, a.prefixLen)) {
        throw new PinholeError(
          'ERR_NETLINK_BAD_ADDRESS',
          `resolve ${ip}: the broadcast address of ${own}/${a.prefixLen}, not a unicast destination`,
          { details: { dst: ip, kind: 'broadcast', ifindex: a.ifindex } },
        );
      }
    }
  }

  /** Waits (at most `timeoutMs`) until a due resync has brought the tables in step with the kernel. */
  private async waitInStep(ip: string, timeoutMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((r) => {
      timer = setTimeout(() => r('late'), timeoutMs);
    });
    try {
      if ((await Promise.race([this.settled(), late])) === 'late') {
        this.counters.resolveTimeout++;
        throw new PinholeError('ERR_NETLINK_RESOLVE_TIMEOUT', `resolve ${ip}: the mirror was still resynchronising after ${timeoutMs} ms`, {
          details: { dst: ip, stale: this.stale },
        });
      }
    } finally {
      clearTimeout(timer);
    }
    if (this.failure) throw this.failure;
    if (this.closed) throw new PinholeError('ERR_NETLINK_CLOSED', 'mirror closed');
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

  /**
   * Installs a resync's snapshot plus the notifications buffered during its dump (one write
   * section for workers), then tells listeners what changed, then `resync`.
   */
  private commit(why: string, snapshot: Update[]): void {
    const queued = this.buffered ?? [];
    this.buffered = undefined;
    const before = this.listeners.size ? this.tables.capture() : undefined;
    this.tables.shared.begin();
    try {
      this.tables.replaceAll(snapshot);
      for (const u of queued) {
        // The routes dumped before this link went down may have been flushed since: dump again.
        const again = this.applyOne(u).resync;
        if (again) this.resyncAgain ??= again;
      }
    } finally {
      this.tables.shared.end();
    }
    this.counters.resyncs++;
    this.retryDelay = RETRY_FIRST_MS;
    // A link that went down among the buffered notifications asked for another round (applyOne).
    // So did an overflow whose drain is still under way (its final report will).
    if (this.resyncAgain === undefined && !this.overflowOpen) this.stale = undefined;
    this.syncCounters();
    const changes = before ? diffTables(before, this.tables) : [];
    for (const c of changes) this.emit({ ...c, fromResync: true });
    this.emit({
      table: 'resync',
      reason: why,
      neighbours: this.tables.neighbours.size,
      routes: this.tables.routes.size,
      changes: changes.length,
    });
    for (const p of [...this.pending.values()]) this.checkPending(p.key);
  }

  private onMessages(msgs: RawMessage[]): void {
    if (this.closed || this.failure) return;
    const updates: Update[] = [];
    for (const m of msgs) {
      const u = this.parse(m);
      if (u) updates.push(u);
    }
    if (this.buffered) {
      for (const u of updates) this.buffered.push(u);
      return;
    }
    // One datagram = one write section for worker readers, and only the tables are written
    // inside it: listeners (logs, next-hop publishing, pending resolutions) run after it closes,
    // so their work does not lengthen it. A worker that finds it open through all its retries
    // gets NEIGH_BUSY and keeps its last answer (dataplane/stages/nexthop.ts); listeners see the
    // tables after the whole datagram.
    const applied: ReturnType<Mirror['applyOne']>[] = [];
    this.tables.shared.begin();
    try {
      for (const u of updates) applied.push(this.applyOne(u));
    } finally {
      this.tables.shared.end();
    }
    this.syncCounters();
    for (let i = 0; i < applied.length; i++) {
      const { change, resync } = applied[i]!;
      const u = updates[i]!;
      if (change) this.emit(change);
      if (u.table === 'neigh') this.checkPending(u.entry);
      if (resync) this.requestResync(resync);
    }
  }

  /**
   * Applies one notification to the tables. Returns the change to announce (live notifications;
   * buffered ones are part of a resync's diff) and why the tables must be dumped again, if so.
   */
  private applyOne(u: Update): { change: MirrorEvent | undefined; resync: string | undefined } {
    let resync: string | undefined;
    if (u.table === 'link') {
      const before = this.tables.links.get(u.entry.index);
      if (u.del) resync = `link ${u.entry.index} removed`;
      else if (before && before.flags & IFF_UP && !(u.entry.flags & IFF_UP)) resync = `link ${u.entry.index} down`;
    }
    return { change: this.tables.apply(u), resync };
  }

  private onOverflow(info: OverflowInfo): void {
    if (this.closed || this.failure) return;
    if (!this.overflowOpen) this.counters.overflows++;
    this.overflowOpen = !info.drained;
    this.counters.notificationsDiscarded += info.discarded;
    // Buffered for a running dump, possibly followed by lost ones: the next dump supersedes them.
    if (this.buffered) this.buffered = [];
    this.requestResync('overflow (ENOBUFS)');
  }

  private onSubscriptionError(err: Error, fatal: boolean): void {
    if (this.closed || this.failure) return;
    if (fatal) {
      this.fail(err);
      return;
    }
    // A datagram we could not read is a lost notification.
    this.reportError(err, false);
    this.requestResync('unreadable notification');
  }

  /** Marks the tables stale and runs a resync (one already running will run again). */
  private requestResync(reason: string): void {
    if (this.closed || this.failure) return;
    this.stale ??= reason;
    this.clearRetry();
    // Failures are reported and retried inside resync().
    this.resync(reason).catch(() => undefined);
    this.wakeSettled();
  }

  private scheduleRetry(reason: string, cause: unknown): void {
    this.counters.resyncFailures++;
    const delay = this.retryDelay;
    this.retryDelay = Math.min(RETRY_MAX_MS, delay * 2);
    this.clearRetry();
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.requestResync(`retry: ${reason}`);
    }, delay);
    this.reportError(
      new PinholeError('ERR_NETLINK_RESYNC', `resync (${reason}) failed; the tables may be stale, retrying in ${delay} ms`, {
        cause,
        details: { reason, retryInMs: delay },
      }),
      false,
    );
  }

  private clearRetry(): void {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
  }

  private wakeSettled(): void {
    const w = this.settleWaiters;
    this.settleWaiters = [];
    for (const r of w) r();
  }

  private fail(cause: Error): void {
    this.failure = new PinholeError(
      'ERR_NETLINK_MIRROR_FAILED',
      'the rtnetlink subscription failed: the mirror no longer follows the kernel (close it and open a new one)',
      { cause },
    );
    this.clearRetry();
    this.wakeSettled();
    for (const p of [...this.pending.values()]) this.finishPending(p, this.failure, 'failed');
    this.reportError(this.failure, true);
  }

  private reportError(err: Error, fatal: boolean): void {
    this.lastError = err;
    for (const fn of this.errorListeners) {
      try {
        fn(err, fatal);
      } catch (e) {
        queueMicrotask(() => {
          throw e;
        });
      }
    }
  }

  private syncCounters(): void {
    this.counters.eventsApplied = this.tables.eventsApplied;
    this.counters.neighbourTableFull = this.tables.shared.fullDrops;
  }

  private emit(e: MirrorEvent): void {
    for (const fn of this.listeners) {
      try {
        fn(e);
      } catch (err) {
        // The tables must keep up with the kernel whatever a listener does: report, do not unwind.
        if (this.errorListeners.size === 0) {
          queueMicrotask(() => {
            throw err;
          });
        } else {
          this.reportError(
            new PinholeError('ERR_NETLINK_LISTENER', `a mirror change listener threw: ${(err as Error)?.message}`, { cause: err }),
            false,
          );
        }
      }
    }
  }
}

const SPECIAL_TEXT: Record<string, string> = {
  unspecified: 'the unspecified address',
  multicast: 'a multicast address',
  broadcast: 'the limited broadcast address',
  'v4-mapped': 'an IPv4-mapped IPv6 address',
};

/** Whether `b` is the all-ones host part of `own`/`len` (IPv4). */
function isDirectedBroadcast(b: Uint8Array, own: Uint8Array, len: number): boolean {
  for (let i = 0; i < 4; i++) {
    const bits = Math.max(0, Math.min(8, len - 8 * i));
    const mask = (0xff << (8 - bits)) & 0xff;
    if ((b[i]! & mask) !== (own[i]! & mask) || (b[i]! | mask) !== 0xff) return false;
  }
  return true;
}

function checkTimeout(ms: number, what: string): void {
  if (!Number.isFinite(ms) || ms <= 0 || ms > MAX_TIMER_MS) {
    throw new PinholeError('ERR_NETLINK_BAD_TIMEOUT', `${what} must be more than 0 and at most ${MAX_TIMER_MS} ms, not ${ms}`, {
      details: { [what]: ms },
    });
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
