/**
 * Dataplane worker thread: builds its ports, links and stages from its WorkerPlan (plan.ts),
 * says `ready`, then runs the engine until the main thread raises the stop flag.
 *
 * Ports are opened here, in the thread that drives them (rings and sockets belong to it). All
 * AF_XDP UMEMs of the worker live in one anonymous mapping, so a frame moves between AF_XDP
 * ports with one copyWithin. Counters are written into the shared Float64Array at the slots the
 * plan's layout gives (counters.ts); the main thread reads them by name at any time.
 *
 * Graphs:
 *   cross-connect   uplink.rx ─► link ─► to.tx                                  (tests, benchmarks)
 *   vxlan           uplink.rx ─► decap ─► wl:<c>.tx          (one link per connection)
 *                   wl:<c>.rx ─► encap ─► nexthop ─► uplink.tx
 */
import { parentPort, workerData } from 'node:worker_threads';
import { NeighbourTableReader } from '../netlink/neigh-table.ts';
import { getSys, type Mapping } from '../sys/index.ts';
import { counterBase, type CounterLayout } from './counters.ts';
import { Engine, type RxRoute, type Step, type TxRoute } from './engine.ts';
import { Link } from './link.ts';
import { PacketMemory } from './memory.ts';
import { NextHopTable } from './nexthop-table.ts';
import { planCounters, type PortPlan, type WorkerMessage, type WorkerPlan } from './plan.ts';
import type { Port } from './port.ts';
import { AfPacketPort } from './ports/afpacket.ts';
import { XSK_FRAME_SIZE, XskPort } from './ports/xsk.ts';
import { DecapStage } from './stages/decap.ts';
import { EncapStage } from './stages/encap.ts';
import { NexthopStage } from './stages/nexthop.ts';

export interface WorkerInit {
  plan: WorkerPlan;
  counters: SharedArrayBuffer;
  control: SharedArrayBuffer;
  /** vxlan graph: the mirror's shared neighbour table and the connections' next hops. */
  neighbours?: SharedArrayBuffer;
  nexthops?: SharedArrayBuffer;
}

const PROT_RW = 3;
const MAP_PRIVATE = 0x02;
const MAP_ANONYMOUS = 0x20;

function post(m: WorkerMessage): void {
  parentPort!.postMessage(m);
}

async function openPorts(
  plan: WorkerPlan,
  layout: CounterLayout,
  c: Float64Array,
  memory: PacketMemory,
  area: Mapping | undefined,
): Promise<Map<string, Port>> {
  const ports = new Map<string, Port>();
  let areaOffset = 0;
  try {
    for (const p of plan.ports) {
      const base = counterBase(layout, `port:${p.name}`);
      if (p.driver === 'afxdp') {
        const frameCount = p.frameCount ?? 4096;
        ports.set(
          p.name,
          await XskPort.open({
            name: p.name,
            ifname: p.ifname,
            queue: p.queue,
            memory,
            area: area!,
            areaOffset,
            frameCount,
            batchSize: plan.batchSize,
            ...(p.rx && p.xsksMapFd !== undefined ? { xsksMapFd: p.xsksMapFd } : {}),
            counters: c,
            base,
          }),
        );
        areaOffset += frameCount * XSK_FRAME_SIZE;
      } else {
        ports.set(
          p.name,
          new AfPacketPort({
            name: p.name,
            ifname: p.ifname,
            memory,
            filter: p.rx ? (p.filter ?? 'all') : 'none',
            ...(p.fanoutGroup !== undefined && p.rx ? { fanoutGroup: p.fanoutGroup } : {}),
            batchSize: plan.batchSize,
            counters: c,
            base,
          }),
        );
      }
    }
  } catch (err) {
    for (const port of ports.values()) port.close();
    const e = err as { code?: string; message: string };
    const failed = plan.ports[ports.size];
    throw Object.assign(new Error(`${failed ? `${failed.name} (${failed.ifname} queue ${failed.queue}): ` : ''}${e.message}`), {
      code: e.code ?? 'ERR_DATAPLANE_PORT',
      port: failed?.name,
    });
  }
  return ports;
}

function areaBytes(ports: readonly PortPlan[]): number {
  let n = 0;
  for (const p of ports) if (p.driver === 'afxdp') n += (p.frameCount ?? 4096) * XSK_FRAME_SIZE;
  return n;
}

function buildGraph(init: WorkerInit, layout: CounterLayout, c: Float64Array, memory: PacketMemory, ports: Map<string, Port>): Engine {
  const plan = init.plan;
  const cap = Math.max(plan.batchSize, 64);
  const rx: RxRoute[] = [];
  const tx: TxRoute[] = [];
  const steps: Step[] = [];
  const uplink = ports.get('uplink')!;
  if (plan.graph === 'cross-connect') {
    const to = ports.get('to');
    const link = new Link('uplink>to', cap);
    rx.push({ port: uplink, out: link, tag: -1 });
    if (to) tx.push({ input: link, port: to });
    else steps.push({ run: () => link.clear() }); // receive-and-drop
  } else {
    const conns = plan.connections;
    const connBase = Int32Array.from(conns.map((k) => counterBase(layout, `conn:${k.name}`)));
    const fromUplink = new Link('uplink>decap', cap);
    const toWorkload = conns.map((k) => new Link(`decap>${k.workloadPort}`, cap));
    const fromWorkloads = new Link('workloads>encap', cap * Math.max(1, conns.length));
    const toNexthop = new Link('encap>nexthop', fromWorkloads.capacity);
    const toUplink = new Link('nexthop>uplink', fromWorkloads.capacity + conns.length * plan.waitQueue.frames);
    const decap = new DecapStage(conns, toWorkload, memory, c, counterBase(layout, 'decap'), connBase);
    const encap = new EncapStage(conns, toNexthop, memory, c, counterBase(layout, 'encap'), connBase);
    const nexthop = new NexthopStage(
      conns,
      toUplink,
      memory,
      new NextHopTable(init.nexthops!),
      new NeighbourTableReader(init.neighbours!),
      c,
      counterBase(layout, 'nexthop'),
      connBase,
      plan.waitQueue,
      (connection) => post({ type: 'miss', worker: plan.worker, connection }),
    );
    rx.push({ port: uplink, out: fromUplink, tag: -1 });
    for (const k of conns) rx.push({ port: ports.get(k.workloadPort)!, out: fromWorkloads, tag: k.index });
    steps.push({ run: () => decap.push(fromUplink) });
    steps.push({ run: () => encap.push(fromWorkloads) });
    steps.push({
      run: (now) => nexthop.push(toNexthop, now),
      get held() {
        return nexthop.held;
      },
    });
    for (let i = 0; i < conns.length; i++) tx.push({ input: toWorkload[i]!, port: ports.get(conns[i]!.workloadPort)! });
    tx.push({ input: toUplink, port: uplink });
  }
  return new Engine(rx, steps, tx, c, counterBase(layout, 'engine'));
}

async function main(): Promise<void> {
  const init = workerData as WorkerInit;
  const plan = init.plan;
  const layout = planCounters(plan);
  const c = new Float64Array(init.counters);
  const ctrl = new Int32Array(init.control);
  const memory = new PacketMemory();
  const bytes = areaBytes(plan.ports);
  let area: Mapping | undefined;
  let ports: Map<string, Port>;
  try {
    if (bytes > 0) area = getSys().mmap(bytes, PROT_RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ports = await openPorts(plan, layout, c, memory, area);
  } catch (err) {
    if (area) getSys().munmap(area);
    const e = err as { code?: string; message: string; port?: string };
    post({
      type: 'error',
      worker: plan.worker,
      code: e.code ?? 'ERR_DATAPLANE_OPEN',
      message: e.message,
      ...(e.port ? { port: e.port } : {}),
    });
    return;
  }
  post({
    type: 'ready',
    worker: plan.worker,
    ports: [...ports.values()].map((p) => ({ name: p.name, driver: p.driver as 'afxdp' | 'afpacket', detail: p.detail })),
  });
  let engine: Engine | undefined;
  try {
    engine = buildGraph(init, layout, c, memory, ports);
    engine.run(ctrl);
  } catch (err) {
    // Reported to the main thread, which treats a worker losing its ports as fatal.
    const e = err as { code?: string; message: string };
    post({ type: 'error', worker: plan.worker, code: e.code ?? 'ERR_DATAPLANE_WORKER', message: e.message });
  } finally {
    try {
      engine?.refreshStats();
    } catch {
      // statistics are best effort; closing is not
    }
    for (const p of ports.values()) p.close();
    if (area) getSys().munmap(area);
    post({ type: 'stopped', worker: plan.worker });
  }
}

await main();
