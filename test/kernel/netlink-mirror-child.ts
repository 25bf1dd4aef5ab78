/**
 * Interactive mirror inside a test namespace (started by netlink-child.ts `mirror [rcvbuf]`).
 * One JSON command per stdin line, one JSON answer per stdout line; waits are event-driven
 * (mirror change events), bounded by `timeoutMs` only as a failure guard.
 *
 *   {cmd:'wait-neigh', dev, ip, mac|null}         until the mirror has (dev, ip) with that MAC (null: absent)
 *   {cmd:'wait-route', dst:'a/len', gateway|null} until the main-table route exists with that gateway (null: absent)
 *   {cmd:'resolve', ip, timeoutMs?}               mirror.resolve()
 *   {cmd:'converge'}                              until the mirror's neighbours equal a fresh kernel dump
 *   {cmd:'stats'}                                 counters and sizes
 *   {cmd:'shared', dev, ip}                       lookup through the worker-side shared table
 *   {cmd:'wait-resync', after}                    until more than `after` resyncs completed and none is due;
 *                                                 answers the mirror's neighbours and the event consumer's
 *   {cmd:'shared-lookup', keys:[{dev, ip}]}       many shared-table lookups, plus the table's live count
 *   {cmd:'block-until', file}                     answers, then keeps the main thread busy (no event
 *                                                 loop turn) until `file` exists
 *
 * The child also runs an event consumer: a map of neighbours seeded from the initial table and
 * kept only from `onChange` events (add/update → set, del → delete), as a stream reader would.
 */
import { existsSync } from 'node:fs';
import type { Interface } from 'node:readline';
import { Mirror, type MirrorEvent } from '../../src/netlink/mirror.ts';
import { NeighbourTableReader } from '../../src/netlink/neigh-table.ts';
import { parseIpText, formatLladdr } from '../../src/netlink/ip.ts';
import { RtnlSocket } from '../../src/netlink/socket.ts';
import { AF_UNSPEC, RTM_GETNEIGH, dumpRequest, nudStateName, type NeighEntry } from '../../src/netlink/rtnl.ts';
import { parseUpdate } from '../../src/netlink/tables.ts';

type Cmd = { cmd: string; [k: string]: unknown };

export async function runMirrorChild(args: string[], rl: Interface): Promise<void> {
  const rcvbuf = args[0] ? Number(args[0]) : undefined;
  const mirror = await Mirror.open({ rcvbuf });
  const waiters = new Set<() => void>();
  const name = (i: number): string => mirror.tables.links.get(i)?.name ?? String(i);
  const line = (n: NeighEntry): string => `${name(n.ifindex)}|${n.ip}|${n.mac ?? '-'}|${nudStateName(n.state)}`;
  const consumer = new Map<string, NeighEntry>();
  for (const n of mirror.tables.neighbours.values()) consumer.set(`${n.ifindex}|${n.ip}`, n);
  mirror.onChange((e: MirrorEvent) => {
    if (e.table === 'neigh') {
      if (e.op === 'del') consumer.delete(`${e.entry.ifindex}|${e.entry.ip}`);
      else consumer.set(`${e.entry.ifindex}|${e.entry.ip}`, e.entry);
    }
    for (const w of [...waiters]) w();
  });
  const ifindex = (dev: string): number => {
    const l = [...mirror.tables.links.values()].find((x) => x.name === dev);
    if (!l) throw new Error(`no link ${dev} in the mirror`);
    return l.index;
  };

  /** Resolves when `check()` returns a value, re-checking on every mirror event. */
  const until = <T>(check: () => T | undefined, timeoutMs = 20_000): Promise<T> =>
    new Promise((resolve, reject) => {
      const first = check();
      if (first !== undefined) {
        resolve(first);
        return;
      }
      const timer = setTimeout(() => {
        waiters.delete(poke);
        reject(new Error('timed out waiting for the mirror'));
      }, timeoutMs);
      const poke = (): void => {
        const v = check();
        if (v === undefined) return;
        clearTimeout(timer);
        waiters.delete(poke);
        resolve(v);
      };
      waiters.add(poke);
    });

  const kernelNeighbours = async (): Promise<string[]> => {
    const s = RtnlSocket.open();
    try {
      const msgs = await s.dump(dumpRequest(RTM_GETNEIGH, AF_UNSPEC));
      const out: string[] = [];
      for (const m of msgs) {
        const u = parseUpdate(m);
        if (u?.table === 'neigh') out.push(`${u.entry.ifindex}|${u.entry.ip}|${u.entry.mac ?? '-'}|${u.entry.state}`);
      }
      return out.sort();
    } finally {
      s.close();
    }
  };
  const mirrorNeighbours = (): string[] =>
    [...mirror.tables.neighbours.values()].map((n) => `${n.ifindex}|${n.ip}|${n.mac ?? '-'}|${n.state}`).sort();

  const handle = async (c: Cmd): Promise<unknown> => {
    switch (c.cmd) {
      case 'wait-neigh': {
        const idx = ifindex(c.dev as string);
        const e = await until(() => {
          const n = mirror.tables.getNeighbour(idx, c.ip as string);
          if (c.mac === null) return n ? undefined : { absent: true };
          return n && n.mac === c.mac ? { ...n, stateName: nudStateName(n.state) } : undefined;
        });
        return e;
      }
      case 'wait-route': {
        const [dst, len] = (c.dst as string).split('/');
        return until(() => {
          const r = mirror.tables.listRoutes().find((x) => x.dst === dst && x.dstLen === Number(len));
          if (c.gateway === null) return r ? undefined : { absent: true };
          return r && (r.gateway ?? null) === c.gateway ? r : undefined;
        });
      }
      case 'lookup-route':
        return mirror.tables.lookupRoute(c.ip as string) ?? null;
      case 'resolve':
        try {
          return await mirror.resolve(c.ip as string, { timeoutMs: (c.timeoutMs as number | undefined) ?? 5000 });
        } catch (e) {
          const x = e as { code?: string; message?: string };
          return { error: x.code, message: x.message };
        }
      case 'converge': {
        const started = Date.now();
        for (;;) {
          const k = await kernelNeighbours();
          const m = mirrorNeighbours();
          if (k.length === m.length && k.every((x, i) => x === m[i])) return { equal: true, count: k.length, ms: Date.now() - started };
          if (Date.now() - started > 60_000) {
            return {
              equal: false,
              kernel: k.length,
              mirror: m.length,
              missing: k.filter((x) => !m.includes(x)).slice(0, 5),
              extra: m.filter((x) => !k.includes(x)).slice(0, 5),
            };
          }
          // Not equal yet: the mirror has notifications (or a resync) to process. Wait for the next
          // change (re-checking at most every second in case the difference was in the kernel dump).
          await new Promise<void>((r) => {
            const w = (): void => {
              waiters.delete(w);
              r();
            };
            waiters.add(w);
            setTimeout(w, 1000);
          });
        }
      }
      case 'stats':
        return {
          counters: mirror.counters,
          rcvbuf: mirror.rcvbuf,
          neighbours: mirror.tables.neighbours.size,
          routes: mirror.tables.routes.size,
        };
      case 'shared': {
        const reader = new NeighbourTableReader(mirror.sharedNeighbours);
        const addr = parseIpText(c.ip as string)!;
        const mac = new Uint8Array(6);
        const idx = ifindex(c.dev as string);
        const state =
          addr.length === 4
            ? reader.lookupV4(idx, ((addr[0]! << 24) | (addr[1]! << 16) | (addr[2]! << 8) | addr[3]!) >>> 0, mac, 0)
            : reader.lookupV6(idx, addr, 0, mac, 0);
        return { state, mac: formatLladdr(mac) };
      }
      case 'wait-resync': {
        const after = c.after as number;
        await until(() => (mirror.counters.resyncs > after ? true : undefined), 60_000);
        await mirror.settled();
        return {
          resyncs: mirror.counters.resyncs,
          overflows: mirror.counters.overflows,
          neighbours: [...mirror.tables.neighbours.values()].map(line).sort(),
          consumer: [...consumer.values()].map(line).sort(),
        };
      }
      case 'shared-lookup': {
        const reader = new NeighbourTableReader(mirror.sharedNeighbours);
        const mac = new Uint8Array(6);
        const results = (c.keys as { dev: string; ip: string }[]).map((k) => {
          const addr = parseIpText(k.ip)!;
          const idx = ifindex(k.dev);
          const state =
            addr.length === 4
              ? reader.lookupV4(idx, ((addr[0]! << 24) | (addr[1]! << 16) | (addr[2]! << 8) | addr[3]!) >>> 0, mac, 0)
              : reader.lookupV6(idx, addr, 0, mac, 0);
          return { state, mac: formatLladdr(mac) };
        });
        return { count: reader.count, results };
      }
      case 'block-until': {
        // Answer first (stdout to a pipe is written synchronously), then spin without yielding.
        process.stdout.write(`${JSON.stringify({ blocked: true })}\n`);
        const file = c.file as string;
        while (!existsSync(file)) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5);
        return { unblocked: true };
      }
      case 'exit':
        await mirror.close();
        return { bye: true };
      default:
        throw new Error(`unknown command ${c.cmd}`);
    }
  };

  process.stdout.write(`${JSON.stringify({ ready: true, rcvbuf: mirror.rcvbuf })}\n`);
  for await (const line of rl) {
    if (!line.trim()) continue;
    let answer: unknown;
    try {
      answer = await handle(JSON.parse(line) as Cmd);
    } catch (e) {
      answer = { error: 'child', message: (e as Error).message };
    }
    process.stdout.write(`${JSON.stringify(answer, (_k, v) => (typeof v === 'bigint' ? Number(v) : v))}\n`);
    if ((answer as { bye?: boolean }).bye) break;
  }
  await mirror.close();
}
