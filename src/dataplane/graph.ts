/**
 * Builds a worker's graph — links, stages and the engine that runs them — from its plan and its
 * already opened ports. Pure wiring (no I/O, no ports opened here), so the worker and the unit
 * tests (over in-memory ports) build the very same graph.
 *
 *   cross-connect   uplink.rx ─► link ─► to.tx                 (tests, benchmarks; no `to`: drop)
 *   vxlan           uplink.rx ─► decap ─► wl:<c>.tx            (one link per connection)
 *                   wl:<c>.rx ─► encap ─► nexthop ─► uplink.tx
 *   + WireGuard     wg.rx ─► wireguard ─► wl:<w>.tx            (worker 0 only; see stages/wireguard.ts)
 *                   wl:<w>.rx ─► wireguard ─► nexthop ─► uplink.tx
 */
import { NeighbourTableReader } from '../netlink/neigh-table.ts';
import { counterBase, type CounterLayout } from './counters.ts';
import { Engine, type RxRoute, type Step, type TxRoute } from './engine.ts';
import { Link } from './link.ts';
import type { PacketMemory } from './memory.ts';
import { NextHopTable } from './nexthop-table.ts';
import type { WorkerPlan } from './plan.ts';
import { MAX_GSO_SEGMENTS, type Port } from './port.ts';
import { DecapStage } from './stages/decap.ts';
import { EncapStage } from './stages/encap.ts';
import { NexthopStage } from './stages/nexthop.ts';
import { WireguardStage, type WgRegistry } from './stages/wireguard.ts';

export interface GraphShared {
  /** vxlan graph: the mirror's shared neighbour table and the connections' next hops. */
  neighbours?: SharedArrayBuffer;
  nexthops?: SharedArrayBuffer;
  /** Asks the main thread to resolve / refresh connection `i`'s next hop. */
  ask?: (connection: number) => void;
  /** WireGuard connections' lasting state (worker 0); required when the plan has any. */
  wireguard?: WgRegistry;
  /** A WireGuard peer's endpoint changed. */
  onEndpoint?: (connection: number, endpoint: string) => void;
}

export function buildGraph(
  plan: WorkerPlan,
  layout: CounterLayout,
  c: Float64Array,
  memory: PacketMemory,
  ports: ReadonlyMap<string, Port>,
  shared: GraphShared,
): Engine {
  const cap = Math.max(plan.batchSize, 64);
  const rx: RxRoute[] = [];
  const tx: TxRoute[] = [];
  const steps: Step[] = [];
  /** Ports' pendingChecksums and trains, applied once the graph is built. */
  const pending: [Port, boolean, boolean][] = [];
  const uplink = ports.get('uplink');
  if (!uplink) throw new Error('worker plan has no uplink port');
  if (plan.graph === 'cross-connect') {
    const to = ports.get('to');
    const link = new Link('uplink>to', cap);
    rx.push({ port: uplink, out: link, tag: -1 });
    if (to) tx.push({ input: link, port: to });
    else steps.push({ run: () => link.clear() }); // receive-and-drop
  } else {
    const conns = plan.connections;
    const wg = plan.wireguard ?? [];
    const connBase = Int32Array.from(conns.map((k) => counterBase(layout, `conn:${k.name}`)));
    // Room for a batch and one split GSO frame (an AF_PACKET uplink receiving trains, ports/afpacket.ts rxVnet).
    const fromUplink = new Link('uplink>decap', cap + MAX_GSO_SEGMENTS);
    const toWorkload = conns.map((k) => new Link(`decap>${k.workloadPort}`, fromUplink.capacity));
    // A workload port with offload may push a batch plus one split super-frame per breathe
    // (ports/afpacket.ts): room for every port's share, so none waits on another.
    const perPort = cap + MAX_GSO_SEGMENTS;
    const fromWorkloads = new Link('workloads>encap', perPort * Math.max(1, conns.length));
    // The WireGuard stage builds at most `wgSlots` frames per breathe into the nexthop link.
    const wgSlots = wg.length > 0 ? perPort * wg.length + cap * 3 + 64 : 0;
    const toNexthop = new Link('encap>nexthop', fromWorkloads.capacity + wgSlots);
    const toUplink = new Link('nexthop>uplink', toNexthop.capacity + (conns.length + wg.length) * plan.waitQueue.frames);
    const decap = new DecapStage(conns, toWorkload, memory, c, counterBase(layout, 'decap'), connBase);
    const encap = new EncapStage(conns, toNexthop, memory, c, counterBase(layout, 'encap'), connBase);
    const nexthop = new NexthopStage(
      [...conns, ...wg.map((w) => ({ maxInnerFrame: w.uplinkMtu + 14 }))],
      toUplink,
      memory,
      new NextHopTable(shared.nexthops!),
      new NeighbourTableReader(shared.neighbours!),
      c,
      counterBase(layout, 'nexthop'),
      connBase,
      plan.waitQueue,
      (connection) => shared.ask?.(connection),
    );
    rx.push({ port: uplink, out: fromUplink, tag: -1 });
    for (const k of conns) {
      const p = ports.get(k.workloadPort);
      if (!p) throw new Error(`worker plan has no port ${k.workloadPort}`);
      // Segments go out through the uplink, which has the kernel checksum them (or completes
      // them); as GSO trains when the uplink sends those.
      pending.push([p, true, uplink.sendsTrains === true]);
      rx.push({ port: p, out: fromWorkloads, tag: k.index });
    }
    steps.push({ run: () => decap.push(fromUplink) });
    steps.push({ run: () => encap.push(fromWorkloads) });
    if (wg.length > 0) {
      if (!shared.wireguard) throw new Error('worker plan has WireGuard connections but no registry');
      const wgIn = ports.get('wg');
      const fromWg = new Link('wg>wireguard', cap);
      const wgToWorkload = wg.map((k) => new Link(`wireguard>${k.workloadPort}`, cap * 2));
      const fromWgWorkloads = new Link('workloads>wireguard', perPort * wg.length);
      const stage = new WireguardStage(
        wg,
        shared.wireguard,
        wgToWorkload,
        toNexthop,
        memory,
        c,
        counterBase(layout, 'wireguard'),
        Int32Array.from(wg.map((k) => counterBase(layout, `conn:${k.name}`))),
        { slots: wgSlots, ...(shared.onEndpoint ? { onEndpoint: shared.onEndpoint } : {}) },
      );
      if (wgIn) rx.push({ port: wgIn, out: fromWg, tag: -1 });
      for (const k of wg) {
        const p = ports.get(k.workloadPort);
        if (!p) throw new Error(`worker plan has no port ${k.workloadPort}`);
        pending.push([p, false, false]); // sealed by WireGuard: checksummed before, one packet each
        rx.push({ port: p, out: fromWgWorkloads, tag: k.index });
      }
      steps.push({ run: (now) => stage.push(fromWg, fromWgWorkloads, now), dispose: () => stage.dispose() });
      wg.forEach((k, i) => tx.push({ input: wgToWorkload[i]!, port: ports.get(k.workloadPort)! }));
    }
    steps.push({
      run: (now) => nexthop.push(toNexthop, now),
      get held() {
        return nexthop.held;
      },
      dispose: (why) => nexthop.dispose(why),
    });
    for (let i = 0; i < conns.length; i++) tx.push({ input: toWorkload[i]!, port: ports.get(conns[i]!.workloadPort)! });
    tx.push({ input: toUplink, port: uplink });
  }
  const engine = new Engine(rx, steps, tx, c, counterBase(layout, 'engine'), plan.spinUs ?? 0);
  // Only a graph that was built changes its ports: a failed build leaves the running graph's
  // ports as they were (the caller keeps running it).
  for (const [p, on, trains] of pending) {
    p.pendingChecksums = on;
    p.trains = trains;
  }
  return engine;
}
