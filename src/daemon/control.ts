/**
 * What a running daemon offers its operator interfaces (the API server, the metrics endpoint,
 * the CLI through the API): one typed surface, implemented by daemon/daemon.ts over the
 * forwarder, so the HTTP layer never reaches into the dataplane. Plain data in and out (JSON-able).
 *
 * Errors are PinholeError with stable codes; the API maps them to HTTP statuses:
 *   ERR_CONFIG_INVALID          400 (details.field / details.errors name the field)
 *   ERR_API_NOT_FOUND           404 (unknown connection)
 *   ERR_API_CONFLICT            409 (e.g. the interface or (remote, port, vni) is used by another connection)
 *   ERR_TUNNEL_NO_ADDRESS       409 (the uplink has no tunnel address of the remote's family; field vxlan.remote
 *                                   or wireguard.peer.endpoint)
 *   ERR_API_EXISTS              412 (putConnection with ifAbsent, and the name exists)
 *   ERR_API_BUSY                503 (the forwarder is stopping; changes are otherwise queued, never refused)
 *   anything else               500
 * A failed change leaves the running state exactly as it was.
 */
import type { ConnectionConfig } from '../config/index.ts';

export interface ReasonEntry {
  code: string;
  message: string;
}

export interface NextHopStatus {
  state: 'ok' | 'no-route' | 'unknown';
  /** The next hop's address (the remote when on-link, else the gateway). */
  via?: string;
  /** Its MAC from the kernel's neighbour table, when known. */
  mac?: string;
  /** NUD state name (REACHABLE, STALE, ...), when known. */
  neighbourState?: string;
  reason?: string;
}

export interface ConnectionStatus {
  name: string;
  /** The connection as configured (canonical form, defaults filled in). */
  config: ConnectionConfig;
  /** Where it came from: the config file, or the API (until the next reload; see README). */
  source: 'file' | 'api';
  /**
   * `up`: running; `waiting`: its workload interface does not exist (not yet, or deleted: it
   * starts when the interface appears); `recovering`: the whole dataplane is restarting.
   */
  state: 'up' | 'waiting' | 'recovering';
  /** Why it is not up. */
  problem?: string;
  /** Our tunnel address (outer source). */
  local: string;
  /** Workload interface driver and why. */
  driver: 'afxdp' | 'afpacket';
  reasons: ReasonEntry[];
  nextHop: NextHopStatus;
  /** WireGuard connections: our public key, the peer's public key, its current endpoint, allowed IPs (never a private key). */
  wireguard?: Record<string, unknown>;
  /** decap_frames, decap_bytes, encap_frames, encap_bytes, drop_too_big, drop_nexthop. */
  counters: Record<string, number>;
}

export interface UplinkStatus {
  interface: string;
  /** Operational state: `down` (admin down or no carrier) is survived; the daemon keeps running. */
  link?: 'up' | 'down';
  mode: 'afxdp' | 'afpacket';
  xdpMode: string | null;
  /** e.g. 'copy mode, native XDP via netlink'. */
  detail: string;
  reasons: ReasonEntry[];
  queues: number;
  ports: number[];
  tunnelAddresses: string[];
  /** Per queue (worker): rx/tx frames and bytes, drops, ring occupancy where known. */
  perQueue: { queue: number; counters: Record<string, number> }[];
  /** The pinhole XDP program's verdict counters (AF_XDP). */
  pinhole: Record<string, number> | null;
}

export interface DaemonStatus {
  /** `running`; `recovering` while the uplink is gone (or the dataplane restarts): `problem` says why. */
  state: 'running' | 'recovering';
  problem?: { code: string; message: string; since: string };
  pid: number;
  version: string;
  startedAt: string;
  uptimeSeconds: number;
  configFile: string;
  /** null while recovering. */
  uplink: UplinkStatus | null;
  connections: ConnectionStatus[];
  /** Drops by `<stage>:<reason>` (zero reasons omitted), all workers added. */
  drops: Record<string, number>;
  /** Next-hop stage counters (misses, queued, flushed, ...). */
  nexthop: Record<string, number>;
  eventLoopLagMs: { p50: number; p99: number; max: number };
}

export interface NeighbourStatus {
  family: 4 | 6;
  ip: string;
  dev: string;
  mac: string | null;
  state: string;
  /** Connections whose next hop this is. */
  usedBy: string[];
}

export interface PutOptions {
  /** Refuse (ERR_API_EXISTS) instead of replacing an existing connection: the API's `If-None-Match: *`. */
  ifAbsent?: boolean;
}

export interface DaemonControl {
  status(): DaemonStatus;
  connections(): ConnectionStatus[];
  /**
   * Creates or replaces connection `name` (the body is a connection without its name, or with the
   * same name). `ifAbsent`: create only; an existing name is ERR_API_EXISTS (checked in turn with
   * the other changes, so two concurrent creations of one name cannot both succeed).
   */
  putConnection(name: string, body: unknown, opts?: PutOptions): Promise<{ created: boolean; connection: ConnectionStatus }>;
  deleteConnection(name: string): Promise<void>;
  /** The kernel's neighbours on the uplink, marking those our connections use. */
  neighbours(): NeighbourStatus[];
}
