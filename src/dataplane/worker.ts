/**
 * Dataplane worker thread: opens its ports, builds its graph from its WorkerPlan (plan.ts,
 * graph.ts), says `ready`, then runs the engine until the main thread raises the stop flag.
 *
 * Ports are opened here, in the thread that drives them (rings and sockets belong to it). AF_XDP
 * ports opened together live in one anonymous mapping (an "area") that is one shared UMEM
 * (XDP_SHARED_UMEM, ports/xsk-shared.ts): a frame received on one is sent on another by its
 * descriptor, without a copy. A port the kernel refuses to share with (or every port, with
 * PINHOLE_XSK_UMEM=own) has a UMEM of its own in its slice of the area, and frames to and from
 * it move with one copy. Ports added later by a new plan get an area of their own (one shared UMEM
 * among them when there are two or more; frames between them and the older ports are copied).
 * Counters are written into the shared Float64Array at the slots the plan's layout gives
 * (counters.ts); the main thread reads them by name at any time.
 *
 * Reconfiguration (connections added, removed or changed while running): the main thread posts
 * a ConfigureMessage on the worker's control port and raises CTRL_RECONF; the engine returns
 * between breaths, the worker reads the message synchronously, opens the ports the new plan adds
 * (if one fails, it closes them and keeps running the old graph: nothing changes), moves every
 * counter that exists in both layouts into the new counters (an untouched connection keeps its
 * numbers), builds the new graph before touching any state, closes the ports the new plan
 * dropped, and answers `configured`. Ports are matched by what their socket is (interface, queue,
 * driver, filter, XSKMAP), not by name or connection index, so a port whose socket did not change
 * stays open through renames and index shifts: its traffic never stops.
 */
import { parentPort, receiveMessageOnPort, workerData, type MessagePort } from 'node:worker_threads';
import { getSys, PinholeError, MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE, type Mapping } from '../sys/index.ts';
import { counterBase, type CounterLayout } from './counters.ts';
import type { Engine } from './engine.ts';
import { buildGraph, type GraphShared } from './graph.ts';
import { PacketMemory } from './memory.ts';
import { CTRL_RECONF, CTRL_STOP, planCounters, type ConfigureMessage, type PortPlan, type WorkerMessage, type WorkerPlan } from './plan.ts';
import type { Port } from './port.ts';
import { AfPacketPort, offloadMemoryBytes } from './ports/afpacket.ts';
import { XSK_FRAME_SIZE, XskPort, type XskPortOptions } from './ports/xsk.ts';
import { openGroupPort, XskGroup } from './ports/xsk-shared.ts';
import { TrainPort } from './ports/train.ts';
import { TrainSocket, trainsSupported } from '../uplink/afpacket/train-socket.ts';
import { release } from 'node:os';
import { umemFrames, xskFrameSize } from '../uplink/xsk/sizing.ts';
import { WgRegistry } from './stages/wireguard.ts';
import { SodiumAead } from '../sys/sodium.ts';
import { NodeAead, type DataAead } from '../tunnel/wireguard/crypto.ts';

/**
 * Test-only: PINHOLE_TEST_CLOCK_RATE=N makes the WireGuard clock of this worker run N times
 * faster than real time (timers, rekeying, session expiry), so lab tests see REKEY_AFTER_TIME
 * (120 s) pass in 120/N s against a real peer. Not a configuration option; unset in production.
 */
function testClockRate(): number {
  const v = Number(process.env.PINHOLE_TEST_CLOCK_RATE ?? '1');
  return Number.isFinite(v) && v >= 1 && v <= 10_000 ? v : 1;
}

/** libsodium for the data path (bench/wireguard-aead.ts); node:crypto when it cannot be loaded. */
function makeAead(): DataAead {
  try {
    return new SodiumAead();
  } catch {
    return new NodeAead();
  }
}

export interface WorkerInit {
  plan: WorkerPlan;
  counters: SharedArrayBuffer;
  control: SharedArrayBuffer;
  /** Where ConfigureMessages arrive (transferred to the worker). */
  inbox?: MessagePort;
  neighbours?: SharedArrayBuffer;
  nexthops?: SharedArrayBuffer;
}

function post(m: WorkerMessage): void {
  parentPort!.postMessage(m);
}

interface Open {
  port: Port;
  /** What the socket is (identityOf), to tell whether a new plan keeps it. */
  key: string;
  /** The queue it holds (AF_XDP: one socket per (interface, queue)). */
  slot: string;
  area: Area | undefined;
}

interface Area {
  mapping: Mapping;
  users: number;
}

/**
 * What makes a port's socket: interface, queue, driver, filter, XSKMAP, fanout group, and the
 * interface's MTU (the largest frame a port sends, its AF_XDP frame size and AF_PACKET slot size
 * follow from it when it opens: a port whose interface's MTU changed opens again). Not its name
 * or connection index: removing the first connection shifts the others' indexes, and a rename
 * changes a name, yet their sockets must stay open (an AF_XDP queue cannot be bound twice, and
 * reopening loses frames).
 */
const keyOf = (p: PortPlan): string =>
  JSON.stringify([
    p.role,
    p.ifname,
    p.queue,
    p.driver,
    p.rx,
    p.xsksMapFd ?? null,
    p.filter ?? null,
    p.fanoutGroup ?? null,
    p.offload ?? false,
    p.retireMs ?? null,
    p.frameCount ?? null,
    p.rings ? [p.rings.rx, p.rings.tx, p.rings.fill, p.rings.comp] : null,
    p.trains ?? false,
    p.mtu ?? null,
  ]);
/** UMEM frames of an AF_XDP port: the plan's, else enough for its rings (uplink/xsk/sizing.ts), else 4096. */
const framesOf = (p: PortPlan): number => p.frameCount ?? (p.rings ? umemFrames(p.rings) : 4096);
const slotOf = (p: { ifname: string; queue: number }): string => `${p.ifname}/${p.queue}`;

/**
 * PINHOLE_XSK_UMEM=own gives every AF_XDP port a UMEM of its own (the one-copy path), e.g. to
 * compare the two (README, performance); otherwise the ports opened together form a group whose
 * first socket registers the whole area and the others share it: by descriptor in zero-copy mode
 * (or always, with PINHOLE_XSK_UMEM=shared), by copying into pool frames in copy mode
 * (ports/xsk-shared.ts says why).
 */
const sharedUmemWanted = (): boolean => process.env.PINHOLE_XSK_UMEM !== 'own';
/**
 * The UMEM frame size of AF_XDP ports opened together (one area, one shared UMEM): 2 KiB when
 * every one's MTU fits it, else 4 KiB (uplink/xsk/sizing.ts xskFrameSize). PINHOLE_XSK_FRAME=4096
 * keeps 4 KiB frames (to compare, or for a driver that wants a page per frame).
 */
function frameSizeOf(plans: readonly PortPlan[]): 2048 | 4096 {
  if (process.env.PINHOLE_XSK_FRAME === '4096') return XSK_FRAME_SIZE;
  return xskFrameSize(plans.filter((p) => p.driver === 'afxdp').map((p) => p.mtu));
}
/**
 * Flow queueing in the RX rings of the AF_XDP ports of tunnel graphs, workload interfaces and
 * uplink alike (ports/xsk-core.ts): a pod's upload or download then does not hold other flows'
 * frames behind it. Not in a cross-connect, a raw L2 path measured for its packet rate, where
 * hashing each frame of a backlog cost ~10% at 64 bytes (README, performance).
 * PINHOLE_XSK_FQ=off turns it off, =on on everywhere (to compare).
 */
function xskFlowQueueing(p: PortPlan, graph: WorkerPlan['graph']): boolean {
  const env = process.env.PINHOLE_XSK_FQ;
  if (!p.rx || env === 'off') return false;
  return env === 'on' || graph !== 'cross-connect';
}

/**
 * An uplink whose plan asks for GSO trains (VXLAN graphs) gets a train socket beside it
 * (ports/train.ts), unless the kernel cannot take them, PINHOLE_GSO_TRAINS=off says no (to
 * compare, README performance), or the socket does not open: then the port says why in its
 * detail and workload ports send separate packets, as before.
 */
function withTrains(port: Port, p: PortPlan, memory: PacketMemory, c: Float64Array, base: number): Port {
  if (!p.trains) return port;
  let sock: TrainSocket | string;
  if (process.env.PINHOLE_GSO_TRAINS === 'off') sock = 'off (PINHOLE_GSO_TRAINS=off)';
  else if (!trainsSupported(release())) sock = `Linux ${release()} has no UDP_L4 GSO for AF_PACKET (6.2 or later)`;
  else {
    try {
      sock = TrainSocket.open(p.ifname);
    } catch (err) {
      sock = (err as Error).message;
    }
  }
  return new TrainPort(port, sock, memory, c, base);
}
const MAX_SHARED_UMEM = 0x80000000;
const roundUp = (n: number, to: number): number => Math.ceil(n / to) * to;

/**
 * Opens `plans` (all or nothing); AF_XDP ones share one new area, which is one shared UMEM when
 * there are two or more of them. `afterXsk`: the worker already runs AF_XDP ports (a new plan),
 * which cannot join this area's UMEM.
 */
async function openPorts(
  plans: readonly PortPlan[],
  batchSize: number,
  layout: CounterLayout,
  c: Float64Array,
  memory: PacketMemory,
  graph: WorkerPlan['graph'],
  afterXsk = false,
): Promise<Map<string, Open>> {
  const opened = new Map<string, Open>();
  const frameSize = frameSizeOf(plans);
  let bytes = 0;
  let xsks = 0;
  for (const p of plans) {
    if (p.driver !== 'afxdp') continue;
    bytes += framesOf(p) * frameSize;
    xsks++;
  }
  // Offload AF_PACKET ports put their segment slots in the same area, after the UMEMs: segments
  // sent on to an AF_XDP port are then copied within one buffer (AfPacketPortOptions.segmentArea).
  // Frames of the area outside every port's slice are never a pool's (NOT_POOLED), so a shared
  // UMEM copies them like any foreign frame.
  const xskBytes = bytes;
  if (xsks > 0) {
    for (const p of plans) if (p.driver === 'afpacket' && p.offload) bytes += roundUp(offloadMemoryBytes(batchSize), XSK_FRAME_SIZE);
  }
  let segAt = xskBytes;
  const area: Area | undefined =
    bytes > 0 ? { mapping: getSys().mmap(bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), users: 0 } : undefined;
  const share = sharedUmemWanted();
  // One UMEM must stay within openXsk's 2 GiB (descriptor addresses are 32-bit here).
  const fits = bytes <= MAX_SHARED_UMEM;
  const group = area && xsks >= 2 && share && fits ? new XskGroup(area.mapping, frameSize) : undefined;
  const note = !share
    ? 'own UMEM (PINHOLE_XSK_UMEM=own), frames to and from it are copied'
    : afterXsk
      ? 'own UMEM: opened after the other AF_XDP ports of the worker, frames to and from them are copied'
      : !fits
        ? 'own UMEM: the AF_XDP ports of this worker need more than a 2 GiB UMEM, frames between them are copied'
        : undefined;
  let areaOffset = 0;
  let current: PortPlan | undefined;
  try {
    for (const p of plans) {
      current = p;
      const base = counterBase(layout, `port:${p.name}`);
      if (p.driver === 'afxdp') {
        const frameCount = framesOf(p);
        const xo: XskPortOptions = {
          name: p.name,
          ifname: p.ifname,
          queue: p.queue,
          memory,
          area: area!.mapping,
          areaOffset,
          frameCount,
          ...(p.rings ? { rings: p.rings } : {}),
          batchSize,
          ...(p.rx && p.xsksMapFd !== undefined ? { xsksMapFd: p.xsksMapFd } : {}),
          rx: p.rx,
          ...(xskFlowQueueing(p, graph) ? { flowQueueing: true } : {}),
          ...(p.mtu !== undefined ? { mtu: p.mtu } : {}),
          frameSize,
          counters: c,
          base,
        };
        const opened1 = group ? await openGroupPort(xo, group) : await XskPort.open(note ? { ...xo, note } : xo);
        const port = withTrains(opened1, p, memory, c, base);
        area!.users++;
        opened.set(p.name, { port, key: keyOf(p), slot: slotOf(p), area });
        areaOffset += frameCount * frameSize;
      } else {
        const segmentArea = area && p.offload ? { buffer: area.mapping.buffer, offset: segAt } : undefined;
        const afp = new AfPacketPort({
          name: p.name,
          ifname: p.ifname,
          memory,
          ...(segmentArea ? { segmentArea } : {}),
          filter: p.rx ? (p.filter ?? 'all') : 'none',
          ...(p.fanoutGroup !== undefined && p.rx ? { fanoutGroup: p.fanoutGroup } : {}),
          ...(p.offload ? { offload: true } : {}),
          ...(p.retireMs !== undefined ? { retireMs: p.retireMs } : {}),
          // An uplink that sends GSO trains receives them too (from another pinhole over a veth).
          ...(p.trains && !p.offload ? { gsoReceive: true } : {}),
          batchSize,
          counters: c,
          base,
        });
        const port = withTrains(afp, p, memory, c, base);
        if (segmentArea) {
          area!.users++;
          segAt += roundUp(offloadMemoryBytes(batchSize), XSK_FRAME_SIZE);
        }
        opened.set(p.name, { port, key: keyOf(p), slot: slotOf(p), area: segmentArea ? area : undefined });
      }
    }
  } catch (err) {
    // closeAll unmaps the area with its last user; unmap it here only if no port ever used it.
    const unused = area !== undefined && area.users === 0;
    closeAll(opened.values());
    if (unused) getSys().munmap(area.mapping);
    const e = err as { code?: string; message: string };
    throw Object.assign(new Error(`${current ? `${current.name} (${current.ifname} queue ${current.queue}): ` : ''}${e.message}`), {
      code: e.code ?? 'ERR_DATAPLANE_PORT',
      port: current?.name,
    });
  }
  return opened;
}

function closeAll(opens: Iterable<Open>): void {
  for (const o of opens) {
    try {
      o.port.close();
    } finally {
      if (o.area && --o.area.users === 0) getSys().munmap(o.area.mapping);
    }
  }
}

function describePorts(ports: ReadonlyMap<string, Open>): { name: string; driver: 'afxdp' | 'afpacket'; detail: string }[] {
  return [...ports.values()].map((o) => ({ name: o.port.name, driver: o.port.driver as 'afxdp' | 'afpacket', detail: o.port.detail }));
}

class WorkerState {
  engine!: Engine;
  /**
   * A failed configure() that had to close ports of the running graph first (see there): the old
   * graph cannot run any more, so the worker stops and its owner restarts the dataplane.
   */
  broken = false;
  constructor(
    public plan: WorkerPlan,
    public layout: CounterLayout,
    public c: Float64Array,
    public ports: Map<string, Open>,
    readonly memory: PacketMemory,
    readonly shared: GraphShared,
  ) {
    this.rebuild();
  }

  rebuild(): void {
    const byName = new Map<string, Port>();
    for (const [k, o] of this.ports) byName.set(k, o.port);
    this.engine = buildGraph(this.plan, this.layout, this.c, this.memory, byName, this.shared);
    this.shared.wireguard?.retain(new Set((this.plan.wireguard ?? []).map((k) => k.name)));
  }

  async configure(m: ConfigureMessage): Promise<void> {
    const layout = planCounters(m.plan);
    const c = new Float64Array(m.counters);
    // Match the new plan's ports with the open ones by what their sockets are (keyOf), not by
    // name: a kept port may change its name (rename) or connection index (a shift).
    const free = new Map<string, Open[]>();
    for (const o of this.ports.values()) free.set(o.key, [...(free.get(o.key) ?? []), o]);
    const keep = new Map<string, Open>();
    const add: PortPlan[] = [];
    for (const p of m.plan.ports) {
      const o = free.get(keyOf(p))?.shift();
      if (o) keep.set(p.name, o);
      else add.push(p);
    }
    const keptOpens = new Set(keep.values());
    const dropped = [...this.ports.values()].filter((o) => !keptOpens.has(o));
    // An AF_XDP queue holds one socket: a changed port on the same queue must close before its
    // successor binds. That is the one case where a change cannot be all-or-nothing; if the
    // successor then fails, the worker reports it and the owner restarts the dataplane.
    const addSlots = new Set(add.filter((p) => p.driver === 'afxdp').map(slotOf));
    const conflicting = dropped.filter((o) => o.port.driver === 'afxdp' && addSlots.has(o.slot));
    if (conflicting.length > 0) {
      // The engine is not running while configure() is awaited, so nothing uses them meanwhile.
      for (const [name, o] of this.ports) if (conflicting.includes(o)) this.ports.delete(name);
      closeAll(conflicting);
      this.broken = true; // cleared below once the new graph runs
    }
    // Open first: a failure leaves the running graph untouched (opened ones are closed again).
    const afterXsk = [...keep.values()].some((o) => o.port.driver === 'afxdp');
    const opened = await openPorts(add, m.plan.batchSize, layout, c, this.memory, m.plan.graph, afterXsk);
    let engine: Engine;
    const byName = new Map<string, Port>();
    try {
      // Counters present in both layouts carry over (an untouched connection keeps its numbers).
      for (const b of this.layout.blocks) {
        const nb = layout.blocks.find((x) => x.owner === b.owner);
        if (!nb) continue;
        for (let i = 0; i < b.names.length; i++) {
          const j = nb.names.indexOf(b.names[i]!);
          if (j >= 0) c[nb.base + j] = this.c[b.base + i]!;
        }
      }
      for (const [name, o] of keep) byName.set(name, o.port);
      for (const [name, o] of opened) byName.set(name, o.port);
      const shared = m.nexthops ? { ...this.shared, nexthops: m.nexthops } : this.shared;
      // Build the new graph before any state changes: if it fails, nothing did.
      engine = buildGraph(m.plan, layout, c, this.memory, byName, shared);
      if (m.nexthops) this.shared.nexthops = m.nexthops;
    } catch (err) {
      closeAll(opened.values());
      throw err;
    }
    for (const [name, o] of keep) o.port.setCounters(c, counterBase(layout, `port:${name}`));
    this.engine.dispose('reconfigured');
    this.engine = engine;
    this.ports = new Map([...keep, ...opened]);
    this.plan = m.plan;
    this.layout = layout;
    this.c = c;
    this.shared.wireguard?.retain(new Set((this.plan.wireguard ?? []).map((k) => k.name)));
    closeAll(dropped.filter((o) => !conflicting.includes(o)));
    this.broken = false;
  }
}

/**
 * Moves this worker's thread (only it: sched_setaffinity with pid 0) to `cpu`, so that the
 * runtime's own threads (compiler, garbage collector) and the main thread never take the
 * worker's CPU from it mid-breath: each time one did, every frame waited for the scheduler's
 * next tick (a ping's p99 under TCP: see the README's performance section).
 */
function pinThread(cpu: number): void {
  try {
    getSys().setThreadAffinity([cpu]);
  } catch (cause) {
    const why = (cause as { code?: string }).code === 'EINVAL' ? 'not a CPU this process may run on' : (cause as Error).message;
    throw new PinholeError('ERR_DATAPLANE_CPU', `pin to CPU ${cpu} (uplink.cpus): ${why}`, { cause, details: { cpu } });
  }
}

async function main(): Promise<void> {
  const init = workerData as WorkerInit;
  const plan = init.plan;
  const ctrl = new Int32Array(init.control);
  const memory = new PacketMemory();
  const shared: GraphShared = {
    ...(init.neighbours ? { neighbours: init.neighbours } : {}),
    ...(init.nexthops ? { nexthops: init.nexthops } : {}),
    ask: (connection) => post({ type: 'miss', worker: state.plan.worker, connection }),
    wireguard: new WgRegistry(makeAead, testClockRate()),
    onEndpoint: (connection, endpoint) => post({ type: 'endpoint', worker: state.plan.worker, connection, endpoint }),
  };
  let state: WorkerState;
  try {
    if (plan.cpu !== undefined) pinThread(plan.cpu);
    const layout = planCounters(plan);
    const c = new Float64Array(init.counters);
    const ports = await openPorts(plan.ports, plan.batchSize, layout, c, memory, plan.graph);
    try {
      state = new WorkerState(plan, layout, c, ports, memory, shared);
    } catch (err) {
      closeAll(ports.values());
      throw err;
    }
  } catch (err) {
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
  post({ type: 'ready', worker: plan.worker, ports: describePorts(state.ports) });
  try {
    while (Atomics.load(ctrl, CTRL_STOP) === 0) {
      state.engine.run(ctrl);
      if (Atomics.load(ctrl, CTRL_RECONF) === 0) continue;
      Atomics.store(ctrl, CTRL_RECONF, 0);
      for (let got = init.inbox && receiveMessageOnPort(init.inbox); got; got = receiveMessageOnPort(init.inbox!)) {
        const m = got.message as ConfigureMessage;
        try {
          await state.configure(m);
          post({ type: 'configured', worker: state.plan.worker, seq: m.seq, ports: describePorts(state.ports) });
        } catch (err) {
          const e = err as { code?: string; message: string; port?: string };
          post({
            type: 'configure-failed',
            worker: state.plan.worker,
            seq: m.seq,
            code: e.code ?? 'ERR_DATAPLANE_CONFIGURE',
            message: e.message,
            ...(e.port ? { port: e.port } : {}),
          });
          if (state.broken)
            throw Object.assign(new Error(`a failed change left worker ${state.plan.worker} without ports it needs: ${e.message}`), {
              code: 'ERR_DATAPLANE_PORT_LOST',
            });
        }
      }
    }
  } catch (err) {
    // Reported to the main thread, which treats a worker losing its ports as fatal.
    const e = err as { code?: string; message: string };
    post({ type: 'error', worker: state.plan.worker, code: e.code ?? 'ERR_DATAPLANE_WORKER', message: e.message });
  } finally {
    try {
      // Frames still held (next-hop wait queues) are counted as dropped: the final counters add up.
      state.engine.dispose('stopped');
    } catch {
      // counting is best effort; closing is not
    }
    try {
      state.engine.refreshStats();
    } catch {
      // statistics are best effort; closing is not
    }
    closeAll(state.ports.values());
    post({ type: 'stopped', worker: state.plan.worker });
  }
}

await main();
