/**
 * The worker plan: everything a dataplane worker needs to build its ports, links and stages,
 * as plain serialisable data (structured-cloned into the worker). The main thread decides (host
 * setup, driver per interface, connections, next hops); a worker only executes its plan.
 *
 * Counter layout is a pure function of the plan (`planCounters`), so the main thread reads a
 * worker's SharedArrayBuffer counters by name without asking the worker.
 */
import type { PinholeSpec } from '../bpf/pinhole/policy.ts';
import { DECAP_PARSE_REASONS } from '../packet/vxlan.ts';
import type { XskRings } from '../uplink/xsk/sizing.ts';
import { DROP_REASONS as WG_DEVICE_DROPS } from '../tunnel/wireguard/device.ts';
import { layoutCounters, type CounterBlock, type CounterLayout } from './counters.ts';

export type PortDriver = 'afxdp' | 'afpacket';
export type PortRole = 'uplink' | 'workload' | 'to';

export interface PortPlan {
  /** Unique in the worker: 'uplink', 'to', 'wl:<connection>'. */
  name: string;
  role: PortRole;
  ifname: string;
  queue: number;
  driver: PortDriver;
  /**
   * The interface's MTU when the plan was made: AF_XDP ports count a frame above MTU + 14 (18 with
   * an 802.1Q tag) as too big instead of handing it to a kernel that does not check (a veth drops
   * it silently). Absent: no check. (AF_PACKET ports read the MTU when their socket opens.)
   */
  mtu?: number;
  /** Receive on this port (a transmit-only port receives nothing: no socket in an XSKMAP, a drop-all filter). */
  rx: boolean;
  /** AF_XDP: the XSKMAP (fd valid in the whole process) the socket registers itself in under `queue`. */
  xsksMapFd?: number;
  /** AF_XDP UMEM frames for this port (default: derived from `rings`, else 4096); uplink/xsk/sizing.ts umemFrames. */
  frameCount?: number;
  /** AF_XDP ring sizes (powers of two; default 2048 each, openXsk's); built with uplink/xsk/sizing.ts. */
  rings?: XskRings;
  /** AF_PACKET: the pinhole policy compiled to a socket filter (uplink), or 'all' (workload). */
  filter?: PinholeSpec | 'all';
  /** AF_PACKET fanout group shared by the workers serving this interface. */
  fanoutGroup?: number;
  /** For workload ports: the connection index whose frames this port carries. */
  connection?: number;
  /**
   * AF_PACKET workload ports: PACKET_VNET_HDR, so the pod keeps its TSO and checksum offload;
   * GSO super-frames are split and partial checksums completed in the port (packet/offload.ts).
   */
  offload?: boolean;
  /** AF_PACKET TPACKET_V3 rings: the block retire timeout in ms (default 2). */
  retireMs?: number;
  /**
   * The uplink of a VXLAN graph: also open a GSO train socket on the interface
   * (dataplane/ports/train.ts), so workload ports send super-frames as trains.
   */
  trains?: boolean;
}

export interface VxlanConnectionPlan {
  index: number;
  name: string;
  vni: number;
  family: 4 | 6;
  /** Our tunnel address (outer source; decapsulated frames must be sent to it). */
  local: string;
  remote: string;
  port: number;
  ttl: number;
  /** The uplink's MAC (outer source MAC). */
  srcMac: string;
  /** Largest inner frame (Ethernet header included) that still fits the uplink MTU once encapsulated. */
  maxInnerFrame: number;
  /** Name of the workload port. */
  workloadPort: string;
}

/**
 * A WireGuard connection as worker 0 (the owner of every WireGuard connection) sees it. Its
 * index follows the VXLAN connections' (the next-hop table has one slot per connection of both
 * kinds). `keys` is secret: it travels to the worker inside the plan and nowhere else (plans are
 * never logged or shown; see forwarder.ts describe()).
 */
export interface WgConnectionPlan {
  index: number;
  name: string;
  listenPort: number;
  /** Our tunnel addresses (outer source) per family; '' when the uplink has none of that family. */
  local4: string;
  local6: string;
  /** The uplink's MAC (outer source MAC). */
  srcMac: string;
  uplinkMtu: number;
  ttl: number;
  workloadPort: string;
  /** The workload interface's own MAC: the gateway MAC the workload resolves every address to. */
  workloadMac: string;
  peer: { publicKey: string; endpoint?: string; allowedIPs: string[]; persistentKeepalive?: number };
  keys: { privateKey: Uint8Array; presharedKey?: Uint8Array };
  /** Changes when anything that needs a new Device changes (settings or keys); same: sessions survive a re-plan. */
  generation: string;
}

export interface WorkerPlan {
  worker: number;
  /** The CPU this worker's thread runs on (config uplink.cpus); absent: wherever the process may. */
  cpu?: number;
  graph: 'cross-connect' | 'vxlan';
  ports: PortPlan[];
  connections: VxlanConnectionPlan[];
  /** WireGuard connections: only in worker 0's plan (one owner for handshakes, sessions, replay windows). */
  wireguard?: WgConnectionPlan[];
  batchSize: number;
  /** Microseconds the engine keeps polling after its last frame before it sleeps (config uplink.spinUs); absent: 0. */
  spinUs?: number;
  /** Frames held per connection while its next hop resolves, and for how long. */
  waitQueue: { frames: number; timeoutMs: number };
}

/**
 * Per port; keep in step with port.ts `PC`. All are counters except the four `*_ring_*` gauges,
 * sampled about once a second: entries in use in the receive ring (AF_XDP: descriptors waiting
 * for us; AF_PACKET: blocks or slots held by user space) and the transmit ring (queued, not yet
 * sent), and the rings' sizes. `rx_gso_frames`/`rx_offload_drops`: offload (AF_PACKET workload)
 * ports; `tx_copies`/`pool_empty`: AF_XDP ports (pool_empty: shared UMEM only);
 * `tx_csum_offload`: frames sent with their L4 checksum left to the kernel (AF_XDP TX metadata);
 * `rx_sparse_first`: frames taken ahead of others waiting in the receive ring (flow queueing: an
 * offload port ahead of super-frames, an AF_XDP port of a tunnel graph ahead of a backlog).
 */
export const PORT_COUNTERS = [
  'rx_frames',
  'rx_bytes',
  'tx_frames',
  'tx_bytes',
  'tx_dropped',
  'tx_too_big',
  'kernel_drops',
  'errors',
  'rx_ring_used',
  'rx_ring_size',
  'tx_ring_used',
  'tx_ring_size',
  'rx_gso_frames',
  'rx_offload_drops',
  'tx_copies',
  'pool_empty',
  'tx_csum_offload',
  'rx_sparse_first',
  'rx_gso_trains',
  'tx_gso_trains',
] as const;
/** spin_ms: milliseconds spent polling the receive rings with nothing to do (uplink.spinUs). */
export const ENGINE_COUNTERS = ['breaths', 'idle_waits', 'frames', 'spin_ms'] as const;
export const DECAP_REASONS = [
  ...DECAP_PARSE_REASONS,
  'unknown-vni',
  'wrong-port',
  'wrong-source',
  'wrong-destination',
  'link-full',
] as const;
export type DecapReason = (typeof DECAP_REASONS)[number];
export const DECAP_COUNTERS = ['frames', ...DECAP_REASONS.map((r) => `drop:${r}`)] as const;
export const ENCAP_COUNTERS = ['frames', 'drop:too-big', 'drop:no-headroom', 'drop:link-full'] as const;
export const NEXTHOP_COUNTERS = [
  'frames',
  'misses',
  'queued',
  'flushed',
  'drop:queue-full',
  'drop:timeout',
  'drop:no-route',
  'drop:link-full',
  'drop:reconfigured',
  'drop:stopped',
  'stale-refreshes',
  'resolve-requests',
] as const;
/**
 * The WireGuard stage (worker 0): datagrams in and out, handshake events, the workload side's
 * neighbour answers, then drops by reason — the protocol core's (device.ts DROP_REASONS, '_' as
 * '-') and the stage's own.
 */
export const WG_STAGE_DROPS = [
  'bad-header',
  'wrong-port',
  'not-allowed-source',
  'no-allowed-ip',
  'too-big',
  'pod-mac-unknown',
  'non-ip',
  'multicast',
  'no-local-address',
  'no-slot',
  'link-full',
] as const;
export const WG_COUNTERS = [
  'rx_datagrams',
  'tx_datagrams',
  'delivered',
  'sent',
  'handshakes',
  'initiations_sent',
  'responses_sent',
  'cookie_replies_sent',
  'keepalives_sent',
  'arp_replies',
  'nd_replies',
  'neighbour_requests',
  'pod_mac_changes',
  'endpoint_changes',
  ...WG_DEVICE_DROPS.map((r) => `drop:${r.replaceAll('_', '-')}`),
  ...WG_STAGE_DROPS.map((r) => `drop:${r}`),
] as const;

/** Per connection: frames/bytes out of the tunnel to the workload (decap) and into it (encap). */
export const CONNECTION_COUNTERS = ['decap_frames', 'decap_bytes', 'encap_frames', 'encap_bytes', 'drop_too_big', 'drop_nexthop'] as const;

export function planCounterBlocks(plan: WorkerPlan): CounterBlock[] {
  const blocks: CounterBlock[] = [{ owner: 'engine', names: ENGINE_COUNTERS }];
  for (const p of plan.ports) blocks.push({ owner: `port:${p.name}`, names: PORT_COUNTERS });
  if (plan.graph === 'vxlan') {
    blocks.push({ owner: 'decap', names: DECAP_COUNTERS });
    blocks.push({ owner: 'encap', names: ENCAP_COUNTERS });
    blocks.push({ owner: 'nexthop', names: NEXTHOP_COUNTERS });
    for (const c of plan.connections) blocks.push({ owner: `conn:${c.name}`, names: CONNECTION_COUNTERS });
    const wg = plan.wireguard ?? [];
    if (wg.length > 0) blocks.push({ owner: 'wireguard', names: WG_COUNTERS });
    for (const c of wg) blocks.push({ owner: `conn:${c.name}`, names: CONNECTION_COUNTERS });
  }
  return blocks;
}

export function planCounters(plan: WorkerPlan): CounterLayout {
  return layoutCounters(planCounterBlocks(plan));
}

/**
 * Int32 control slots shared with each worker: [0] stop flag (main → worker); [1] a new plan
 * waits on the worker's control port (main sets it after posting; the worker clears it).
 */
export const CTRL_STOP = 0;
export const CTRL_RECONF = 1;
export const CTRL_SLOTS = 2;

/** Main → worker, on the worker's control port (read synchronously between breaths). */
export interface ConfigureMessage {
  type: 'configure';
  seq: number;
  plan: WorkerPlan;
  counters: SharedArrayBuffer;
  nexthops?: SharedArrayBuffer;
}

export type WorkerMessage =
  | { type: 'ready'; worker: number; ports: { name: string; driver: PortDriver; detail: string }[] }
  | { type: 'error'; worker: number; code: string; message: string; port?: string }
  | { type: 'miss'; worker: number; connection: number }
  /** A WireGuard peer's endpoint changed (roaming, or learned): the main thread republishes its next hop. */
  | { type: 'endpoint'; worker: number; connection: number; endpoint: string }
  | { type: 'configured'; worker: number; seq: number; ports: { name: string; driver: PortDriver; detail: string }[] }
  | { type: 'configure-failed'; worker: number; seq: number; code: string; message: string; port?: string }
  | { type: 'stopped'; worker: number };
