/**
 * Prometheus metrics for the daemon, read at scrape time.
 *
 * Nothing here counts anything. The dataplane's counters already live in shared memory
 * (dataplane/counters.ts) and the daemon knows its own state; a scrape asks a `MetricsSource`
 * for the current values and copies them into prom-client metrics whose `collect()` runs when
 * the registry renders. No timers, nothing on the packet path.
 *
 * Cumulative values are exposed as real counters (TYPE counter, `_total`): each collect()
 * clears the counter's series and sets each one to the source's value (`reset()` + `inc(v)`,
 * the pattern prom-client uses for its own process CPU counters). Clearing also drops the
 * series of connections or queues that went away. A value that goes down (a worker restarted
 * with fresh counters) is a counter reset, which Prometheus' rate() and increase() handle.
 *
 * One scrape reads the source once: every collect() of the same rendering pass shares a
 * snapshot, dropped in a microtask once the pass is over (prom-client calls every collect()
 * synchronously at the start of `registry.metrics()`).
 *
 * Direction of connection traffic: rx is out of the tunnel to the workload (decapsulated),
 * tx is into the tunnel from the workload (encapsulated) — as seen from the workload's side
 * of the cross-connect. Queue traffic directions are the port's own: rx received, tx sent.
 *
 * prom-client's default metrics (process_cpu_seconds_total, process_resident_memory_bytes,
 * process_open_fds, nodejs_eventloop_lag_seconds, nodejs_heap_*, ...) are registered too,
 * without our prefix: dashboards and alerts for Node processes expect the standard names.
 */
import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';

export interface MetricsSource {
  uplink(): {
    interface: string;
    mode: 'afxdp' | 'afpacket';
    reason: string /* fallback/decision reason codes joined by ',' or '' */;
    queues: number;
    /** Operational state of the uplink (false while down, gone or recovering); absent: not exported. */
    up?: boolean;
  };
  /** Per queue: named counters (port:uplink rx_frames..., engine ...), see src/dataplane/plan.ts PORT_COUNTERS/ENGINE_COUNTERS. */
  perQueue(): { queue: number; counters: Record<string, Record<string, number>> }[];
  /** Per connection counters: decap_frames, decap_bytes, encap_frames, encap_bytes, drop_too_big, drop_nexthop. */
  connections(): { name: string; vni: number; counters: Record<string, number> }[];
  /** Drops by stage and reason (all reasons, zeros included): { decap: { 'unknown-vni': n, ... }, encap: {...}, nexthop: {...} } */
  drops(): Record<string, Record<string, number>>;
  /** The pinhole program's verdict counters by reason (AF_XDP), or null. */
  pinhole(): Record<string, number> | null;
  nexthop(): Record<string, number>; // misses, queued, flushed, stale-refreshes ...
  /** Ring occupancy: per queue, port and ring (rx, tx) entries in use, for the rings a port has. Optional. */
  rings?(): { queue: number; port: string; ring: string; used: number; size: number }[];
  eventLoopLagSeconds(): { p50: number; p99: number; max: number };
}

export interface Metrics {
  registry: Registry;
  /** The Prometheus text exposition of every metric, read from the source now. */
  text(): Promise<string>;
  /** The Content-Type of `text()`. */
  contentType: string;
}

type Labels = Record<string, string | number>;
type Emit = (labels: Labels, value: number | undefined) => void;

interface Snapshot {
  uplink: ReturnType<MetricsSource['uplink']>;
  perQueue: ReturnType<MetricsSource['perQueue']>;
  connections: ReturnType<MetricsSource['connections']>;
  drops: ReturnType<MetricsSource['drops']>;
  pinhole: ReturnType<MetricsSource['pinhole']>;
  nexthop: ReturnType<MetricsSource['nexthop']>;
  rings: NonNullable<ReturnType<NonNullable<MetricsSource['rings']>>>;
  lag: ReturnType<MetricsSource['eventLoopLagSeconds']>;
}

/** Counter keys of a port block, by metric. */
const PORT_TRAFFIC = [
  ['rx_frames', 'rx_bytes', 'rx'],
  ['tx_frames', 'tx_bytes', 'tx'],
] as const;
const PORT_TX_DROPS = [
  ['tx_dropped', 'ring-full'],
  ['tx_too_big', 'too-big'],
] as const;
const CONNECTION_TRAFFIC = [
  ['decap_frames', 'decap_bytes', 'rx'],
  ['encap_frames', 'encap_bytes', 'tx'],
] as const;
const CONNECTION_DROPS = [
  ['drop_too_big', 'too-big'],
  ['drop_nexthop', 'nexthop'],
] as const;
const PORT_PREFIX = 'port:';

/** Values that cannot be a counter's (NaN, negative) are left out rather than failing the scrape. */
function usable(v: number | undefined): v is number {
  return typeof v === 'number' && Number.isFinite(v) && v >= 0;
}

export function createMetrics(source: MetricsSource): Metrics {
  const registry = new Registry();
  const registers = [registry];

  let snap: Snapshot | null = null;
  const read = (): Snapshot => {
    if (snap) return snap;
    const s: Snapshot = {
      uplink: source.uplink(),
      perQueue: source.perQueue(),
      connections: source.connections(),
      drops: source.drops(),
      pinhole: source.pinhole(),
      nexthop: source.nexthop(),
      rings: source.rings ? source.rings() : [],
      lag: source.eventLoopLagSeconds(),
    };
    snap = s;
    queueMicrotask(() => {
      if (snap === s) snap = null;
    });
    return s;
  };

  const counter = (name: string, help: string, labelNames: string[], fill: (s: Snapshot, emit: Emit) => void): void => {
    new Counter({
      name,
      help,
      labelNames,
      registers,
      collect() {
        this.reset();
        fill(read(), (labels, value) => {
          if (usable(value)) this.inc(labels, value);
        });
      },
    });
  };
  const gauge = (name: string, help: string, labelNames: string[], fill: (s: Snapshot, emit: Emit) => void): void => {
    new Gauge({
      name,
      help,
      labelNames,
      registers,
      collect() {
        this.reset();
        fill(read(), (labels, value) => {
          if (typeof value === 'number' && Number.isFinite(value)) this.set(labels, value);
        });
      },
    });
  };
  /** Calls fn for every `port:*` block of every queue. */
  const eachPort = (s: Snapshot, fn: (queue: number, port: string, c: Record<string, number>) => void): void => {
    for (const q of s.perQueue) {
      for (const [owner, c] of Object.entries(q.counters)) {
        if (owner.startsWith(PORT_PREFIX)) fn(q.queue, owner.slice(PORT_PREFIX.length), c);
      }
    }
  };

  // --- uplink -------------------------------------------------------------------------------
  gauge(
    'pinhole_uplink_info',
    'The uplink in use: interface, driver mode (afxdp or afpacket) and the fallback/decision reason codes (comma-separated, empty when none). Always 1.',
    ['interface', 'mode', 'reason'],
    (s, emit) => emit({ interface: s.uplink.interface, mode: s.uplink.mode, reason: s.uplink.reason }, 1),
  );
  gauge('pinhole_uplink_queues', 'Uplink queues served (one dataplane worker each).', [], (s, emit) => emit({}, s.uplink.queues));
  gauge(
    'pinhole_uplink_up',
    'Whether the uplink is up and served: 1 up, 0 down (no carrier, admin down) or gone (recovering).',
    [],
    (s, emit) => emit({}, s.uplink.up === undefined ? undefined : s.uplink.up ? 1 : 0),
  );

  // --- connections --------------------------------------------------------------------------
  gauge(
    'pinhole_connection_info',
    'A configured connection and its VXLAN network identifier. Always 1.',
    ['connection', 'vni'],
    (s, emit) => {
      for (const k of s.connections) emit({ connection: k.name, vni: k.vni }, 1);
    },
  );
  counter(
    'pinhole_connection_frames_total',
    'Frames through a connection. direction="rx": out of the tunnel to the workload (decapsulated); "tx": from the workload into the tunnel (encapsulated).',
    ['connection', 'direction'],
    (s, emit) => {
      for (const k of s.connections)
        for (const [frames, , direction] of CONNECTION_TRAFFIC) emit({ connection: k.name, direction }, k.counters[frames]);
    },
  );
  counter(
    'pinhole_connection_bytes_total',
    'Bytes of inner (workload) frames through a connection; direction as in pinhole_connection_frames_total.',
    ['connection', 'direction'],
    (s, emit) => {
      for (const k of s.connections)
        for (const [, bytes, direction] of CONNECTION_TRAFFIC) emit({ connection: k.name, direction }, k.counters[bytes]);
    },
  );
  counter(
    'pinhole_connection_drops_total',
    'Frames from the workload a connection dropped: reason="too-big" (does not fit the uplink MTU once encapsulated), "nexthop" (next hop unresolved or unreachable).',
    ['connection', 'reason'],
    (s, emit) => {
      for (const k of s.connections) for (const [key, reason] of CONNECTION_DROPS) emit({ connection: k.name, reason }, k.counters[key]);
    },
  );

  // --- drops and verdicts -------------------------------------------------------------------
  counter(
    'pinhole_drops_total',
    'Frames dropped by a dataplane stage (decap, encap, nexthop), by reason.',
    ['stage', 'reason'],
    (s, emit) => {
      for (const [stage, reasons] of Object.entries(s.drops)) for (const [reason, v] of Object.entries(reasons)) emit({ stage, reason }, v);
    },
  );
  counter(
    'pinhole_pinhole_verdicts_total',
    'Frames the pinhole XDP program classified on the uplink, by verdict reason (AF_XDP only; absent on AF_PACKET).',
    ['reason'],
    (s, emit) => {
      if (s.pinhole) for (const [reason, v] of Object.entries(s.pinhole)) emit({ reason }, v);
    },
  );

  // --- queues and ports ---------------------------------------------------------------------
  counter(
    'pinhole_queue_frames_total',
    'Frames a worker port received (direction="rx") or sent (direction="tx"); port is uplink, wl:<connection>, ...',
    ['queue', 'port', 'direction'],
    (s, emit) =>
      eachPort(s, (queue, port, c) => {
        for (const [frames, , direction] of PORT_TRAFFIC) emit({ queue, port, direction }, c[frames]);
      }),
  );
  counter('pinhole_queue_bytes_total', 'Bytes a worker port received or sent (whole frames).', ['queue', 'port', 'direction'], (s, emit) =>
    eachPort(s, (queue, port, c) => {
      for (const [, bytes, direction] of PORT_TRAFFIC) emit({ queue, port, direction }, c[bytes]);
    }),
  );
  counter(
    'pinhole_queue_tx_drops_total',
    'Frames a worker port could not send: reason="ring-full" (no transmit buffer or ring slot), "too-big" (larger than the port takes).',
    ['queue', 'port', 'reason'],
    (s, emit) =>
      eachPort(s, (queue, port, c) => {
        for (const [key, reason] of PORT_TX_DROPS) emit({ queue, port, reason }, c[key]);
      }),
  );
  counter(
    'pinhole_queue_kernel_drops_total',
    'Frames the kernel dropped before a worker port saw them (AF_XDP: rx dropped, rx ring full, fill ring empty; AF_PACKET: socket drops).',
    ['queue', 'port'],
    (s, emit) => eachPort(s, (queue, port, c) => emit({ queue, port }, c['kernel_drops'])),
  );
  counter(
    'pinhole_queue_gso_frames_total',
    'GSO super-frames a workload port received and split into MTU-sized frames (AF_PACKET with offload).',
    ['queue', 'port'],
    (s, emit) => eachPort(s, (queue, port, c) => emit({ queue, port }, c['rx_gso_frames'])),
  );
  counter(
    'pinhole_queue_gso_trains_total',
    'GSO trains: built from super-frames by a workload port (rx), sent whole by the uplink (tx), each one skb that is cut into VXLAN packets.',
    ['queue', 'port', 'direction'],
    (s, emit) =>
      eachPort(s, (queue, port, c) => {
        emit({ queue, port, direction: 'rx' }, c['rx_gso_trains']);
        emit({ queue, port, direction: 'tx' }, c['tx_gso_trains']);
      }),
  );
  counter(
    'pinhole_queue_offload_drops_total',
    'Frames a workload port dropped because their checksum or segmentation offload could not be completed.',
    ['queue', 'port'],
    (s, emit) => eachPort(s, (queue, port, c) => emit({ queue, port }, c['rx_offload_drops'])),
  );
  counter('pinhole_queue_errors_total', 'Error conditions reported by poll() on a worker port.', ['queue', 'port'], (s, emit) =>
    eachPort(s, (queue, port, c) => emit({ queue, port }, c['errors'])),
  );
  counter('pinhole_engine_breaths_total', 'Engine iterations of a worker (receive, process, transmit).', ['queue'], (s, emit) => {
    for (const q of s.perQueue) emit({ queue: q.queue }, q.counters['engine']?.['breaths']);
  });
  counter('pinhole_engine_idle_waits_total', 'Times a worker found nothing to do and waited in poll().', ['queue'], (s, emit) => {
    for (const q of s.perQueue) emit({ queue: q.queue }, q.counters['engine']?.['idle_waits']);
  });
  counter(
    'pinhole_engine_spin_seconds_total',
    'Time a worker spent polling with nothing to do before it slept (uplink.spinUs).',
    ['queue'],
    (s, emit) => {
      for (const q of s.perQueue) {
        const ms = q.counters['engine']?.['spin_ms'];
        emit({ queue: q.queue }, ms === undefined ? undefined : ms / 1000);
      }
    },
  );
  if (source.rings) {
    gauge('pinhole_ring_entries', 'Entries in use in a socket ring (rx, tx) of a worker port.', ['queue', 'port', 'ring'], (s, emit) => {
      for (const r of s.rings) emit({ queue: r.queue, port: r.port, ring: r.ring }, r.used);
    });
    gauge('pinhole_ring_size', 'Capacity of a socket ring in entries.', ['queue', 'port', 'ring'], (s, emit) => {
      for (const r of s.rings) emit({ queue: r.queue, port: r.port, ring: r.ring }, r.size);
    });
  }

  // --- next hops ----------------------------------------------------------------------------
  counter('pinhole_nexthop_misses_total', 'Frames whose next hop was not resolved (the kernel was asked to resolve it).', [], (s, emit) =>
    emit({}, s.nexthop['misses']),
  );
  counter(
    'pinhole_nexthop_events_total',
    'Next-hop stage events other than misses and drops (queued, flushed, stale-refreshes, frames, ...); drops are in pinhole_drops_total{stage="nexthop"}.',
    ['event'],
    (s, emit) => {
      for (const [event, v] of Object.entries(s.nexthop)) if (event !== 'misses' && !event.startsWith('drop')) emit({ event }, v);
    },
  );

  // --- control plane ------------------------------------------------------------------------
  gauge(
    'pinhole_event_loop_lag_seconds',
    "Lateness of the daemon's main-thread timer over the recent window (quantile 0.5, 0.99 and 1 = max).",
    ['quantile'],
    (s, emit) => {
      emit({ quantile: '0.5' }, s.lag.p50);
      emit({ quantile: '0.99' }, s.lag.p99);
      emit({ quantile: '1' }, s.lag.max);
    },
  );

  collectDefaultMetrics({ register: registry });

  return {
    registry,
    text: () => registry.metrics(),
    contentType: registry.contentType,
  };
}
