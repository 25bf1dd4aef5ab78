/**
 * Metrics (src/metrics/metrics.ts) from a fake MetricsSource: the scrape text is parsed line by
 * line and checked against the source — names, types (# TYPE), labels, values — and across
 * scrapes (counters follow the source, series of removed connections go away, the source is
 * read once per scrape).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createMetrics, type MetricsSource } from '../../src/metrics/metrics.ts';

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}
interface Scrape {
  types: Map<string, string>;
  helps: Map<string, string>;
  samples: Sample[];
}

/** Parses the Prometheus text format (0.0.4) strictly enough to catch malformed output. */
function parse(text: string): Scrape {
  const out: Scrape = { types: new Map(), helps: new Map(), samples: [] };
  for (const line of text.split('\n')) {
    if (line === '') continue;
    let m = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line);
    if (m) {
      (m[1] === 'TYPE' ? out.types : out.helps).set(m[2]!, m[3]!);
      continue;
    }
    m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `malformed line: ${line}`);
    const labels: Record<string, string> = {};
    if (m[2]) {
      const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)/y;
      let lm: RegExpExecArray | null;
      let at = 0;
      while (at < m[2].length && (lm = re.exec(m[2]))) {
        labels[lm[1]!] = lm[2]!.replace(/\\(.)/g, (_s, c: string) => (c === 'n' ? '\n' : c));
        at = re.lastIndex;
      }
      assert.equal(at, m[2].length, `malformed labels: ${line}`);
    }
    out.samples.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

function value(s: Scrape, name: string, labels: Record<string, string> = {}): number | undefined {
  const want = JSON.stringify(Object.entries(labels).sort());
  const hits = s.samples.filter((x) => x.name === name && JSON.stringify(Object.entries(x.labels).sort()) === want);
  assert.ok(hits.length <= 1, `duplicate series ${name}${want}`);
  return hits[0]?.value;
}

function series(s: Scrape, name: string): Sample[] {
  return s.samples.filter((x) => x.name === name);
}

const PORT = (n: number): Record<string, number> => ({
  rx_frames: n,
  rx_bytes: n * 100,
  tx_frames: n + 1,
  tx_bytes: (n + 1) * 100,
  tx_dropped: n + 2,
  tx_too_big: n + 3,
  kernel_drops: n + 4,
  errors: n + 5,
});

/** A source whose cumulative values all grow by `step` per tick(). */
function fakeSource(opts: { pinhole?: boolean; rings?: boolean } = {}) {
  const state = {
    t: 1,
    connections: ['blue', 'red'],
    calls: new Map<string, number>(),
  };
  const called = (k: string): void => {
    state.calls.set(k, (state.calls.get(k) ?? 0) + 1);
  };
  const source: MetricsSource = {
    uplink() {
      called('uplink');
      return { interface: 'eth0', mode: 'afpacket', reason: 'xsk-unsupported,driver-refused', queues: 2, up: false };
    },
    perQueue() {
      called('perQueue');
      const t = state.t;
      return [0, 1].map((queue) => ({
        queue,
        counters: {
          engine: { breaths: 1000 * t + queue, idle_waits: 10 * t + queue, frames: 7 * t, spin_ms: 1500 * t + queue },
          'port:uplink': PORT(t * 10 + queue),
          'port:wl:blue': PORT(t * 20 + queue),
          decap: { frames: 1 },
        },
      }));
    },
    connections() {
      called('connections');
      const t = state.t;
      return state.connections.map((name, i) => ({
        name,
        vni: 100 + i,
        counters: {
          decap_frames: t * 3 + i,
          decap_bytes: t * 300 + i,
          encap_frames: t * 4 + i,
          encap_bytes: t * 400 + i,
          drop_too_big: t + i,
          drop_nexthop: t * 2 + i,
        },
      }));
    },
    drops() {
      called('drops');
      const t = state.t;
      return {
        decap: { 'unknown-vni': t * 5, truncated: 0 },
        encap: { 'too-big': t, 'no-headroom': 0 },
        nexthop: { 'queue-full': t * 2, timeout: 0 },
      };
    },
    pinhole() {
      called('pinhole');
      return opts.pinhole ? { 'redirect-v4': state.t * 11, 'pass-tcp': state.t * 12 } : null;
    },
    nexthop() {
      called('nexthop');
      const t = state.t;
      return { frames: t * 9, misses: t * 2, queued: t, flushed: t, 'drop:queue-full': t * 2, 'stale-refreshes': t * 3 };
    },
    eventLoopLagSeconds() {
      called('eventLoopLagSeconds');
      return { p50: 0.0005, p99: 0.004, max: 0.012 };
    },
  };
  if (opts.rings) {
    source.rings = () => {
      called('rings');
      return [
        { queue: 0, port: 'uplink', ring: 'rx', used: 3, size: 2048 },
        { queue: 0, port: 'uplink', ring: 'fill', used: 2000, size: 2048 },
      ];
    };
  }
  return { source, state };
}

const EXPECTED_TYPES: Record<string, 'counter' | 'gauge'> = {
  pinhole_uplink_info: 'gauge',
  pinhole_uplink_queues: 'gauge',
  pinhole_uplink_up: 'gauge',
  pinhole_connection_info: 'gauge',
  pinhole_connection_frames_total: 'counter',
  pinhole_connection_bytes_total: 'counter',
  pinhole_connection_drops_total: 'counter',
  pinhole_drops_total: 'counter',
  pinhole_pinhole_verdicts_total: 'counter',
  pinhole_queue_frames_total: 'counter',
  pinhole_queue_bytes_total: 'counter',
  pinhole_queue_tx_drops_total: 'counter',
  pinhole_queue_kernel_drops_total: 'counter',
  pinhole_queue_errors_total: 'counter',
  pinhole_queue_gso_frames_total: 'counter',
  pinhole_queue_gso_trains_total: 'counter',
  pinhole_queue_offload_drops_total: 'counter',
  pinhole_engine_breaths_total: 'counter',
  pinhole_engine_idle_waits_total: 'counter',
  pinhole_engine_spin_seconds_total: 'counter',
  pinhole_nexthop_misses_total: 'counter',
  pinhole_nexthop_events_total: 'counter',
  pinhole_event_loop_lag_seconds: 'gauge',
};

test('every pinhole_ metric has HELP and the right TYPE; counters and only counters end in _total', async () => {
  const { source } = fakeSource({ pinhole: true, rings: true });
  const m = createMetrics(source);
  const s = parse(await m.text());
  const ours = [...s.types.keys()].filter((n) => n.startsWith('pinhole_')).sort();
  assert.deepEqual(ours, [...Object.keys(EXPECTED_TYPES), 'pinhole_ring_entries', 'pinhole_ring_size'].sort());
  for (const name of ours) {
    const type = s.types.get(name)!;
    assert.equal(type, EXPECTED_TYPES[name] ?? 'gauge', name);
    assert.equal(name.endsWith('_total'), type === 'counter', `${name} is a ${type}`);
    assert.ok(s.helps.get(name), `${name} has help`);
  }
  for (const x of s.samples) assert.ok(s.types.has(x.name), `${x.name} has a TYPE line`);
  assert.equal(m.contentType, 'text/plain; version=0.0.4; charset=utf-8');
});

test('values equal the source', async () => {
  const { source, state } = fakeSource({ pinhole: true });
  state.t = 3;
  const s = parse(await createMetrics(source).text());

  assert.deepEqual(series(s, 'pinhole_uplink_info'), [
    { name: 'pinhole_uplink_info', labels: { interface: 'eth0', mode: 'afpacket', reason: 'xsk-unsupported,driver-refused' }, value: 1 },
  ]);
  assert.equal(value(s, 'pinhole_uplink_queues'), 2);
  assert.equal(value(s, 'pinhole_uplink_up'), 0);

  assert.equal(value(s, 'pinhole_connection_info', { connection: 'red', vni: '101' }), 1);
  assert.equal(value(s, 'pinhole_connection_frames_total', { connection: 'blue', direction: 'rx' }), 9);
  assert.equal(value(s, 'pinhole_connection_frames_total', { connection: 'red', direction: 'tx' }), 13);
  assert.equal(value(s, 'pinhole_connection_bytes_total', { connection: 'blue', direction: 'rx' }), 900);
  assert.equal(value(s, 'pinhole_connection_bytes_total', { connection: 'red', direction: 'tx' }), 1201);
  assert.equal(value(s, 'pinhole_connection_drops_total', { connection: 'red', reason: 'too-big' }), 4);
  assert.equal(value(s, 'pinhole_connection_drops_total', { connection: 'blue', reason: 'nexthop' }), 6);
  assert.equal(series(s, 'pinhole_connection_frames_total').length, 4);

  assert.equal(value(s, 'pinhole_drops_total', { stage: 'decap', reason: 'unknown-vni' }), 15);
  assert.equal(value(s, 'pinhole_drops_total', { stage: 'decap', reason: 'truncated' }), 0, 'zeros are exposed');
  assert.equal(value(s, 'pinhole_drops_total', { stage: 'nexthop', reason: 'queue-full' }), 6);
  assert.equal(series(s, 'pinhole_drops_total').length, 6);

  assert.equal(value(s, 'pinhole_pinhole_verdicts_total', { reason: 'redirect-v4' }), 33);
  assert.equal(value(s, 'pinhole_pinhole_verdicts_total', { reason: 'pass-tcp' }), 36);

  // queue 1, port uplink: PORT(31); port wl:blue: PORT(61); other blocks (decap) are not per-port metrics.
  assert.equal(value(s, 'pinhole_queue_frames_total', { queue: '1', port: 'uplink', direction: 'rx' }), 31);
  assert.equal(value(s, 'pinhole_queue_frames_total', { queue: '1', port: 'uplink', direction: 'tx' }), 32);
  assert.equal(value(s, 'pinhole_queue_bytes_total', { queue: '0', port: 'wl:blue', direction: 'rx' }), 6000);
  assert.equal(value(s, 'pinhole_queue_tx_drops_total', { queue: '1', port: 'wl:blue', reason: 'ring-full' }), 63);
  assert.equal(value(s, 'pinhole_queue_tx_drops_total', { queue: '1', port: 'wl:blue', reason: 'too-big' }), 64);
  assert.equal(value(s, 'pinhole_queue_kernel_drops_total', { queue: '0', port: 'uplink' }), 34);
  assert.equal(value(s, 'pinhole_queue_errors_total', { queue: '0', port: 'uplink' }), 35);
  assert.equal(series(s, 'pinhole_queue_frames_total').length, 8, '2 queues x 2 ports x 2 directions');
  assert.equal(value(s, 'pinhole_engine_breaths_total', { queue: '1' }), 3001);
  assert.equal(value(s, 'pinhole_engine_idle_waits_total', { queue: '0' }), 30);
  assert.equal(value(s, 'pinhole_engine_spin_seconds_total', { queue: '1' }), 4.501, 'milliseconds counted, seconds exported');

  assert.equal(value(s, 'pinhole_nexthop_misses_total'), 6);
  assert.deepEqual(
    series(s, 'pinhole_nexthop_events_total')
      .map((x) => [x.labels['event'], x.value])
      .sort(),
    [
      ['flushed', 3],
      ['frames', 27],
      ['queued', 3],
      ['stale-refreshes', 9],
    ],
    'misses and drops are not events',
  );

  assert.equal(value(s, 'pinhole_event_loop_lag_seconds', { quantile: '0.5' }), 0.0005);
  assert.equal(value(s, 'pinhole_event_loop_lag_seconds', { quantile: '0.99' }), 0.004);
  assert.equal(value(s, 'pinhole_event_loop_lag_seconds', { quantile: '1' }), 0.012);
});

test('counters follow the source across scrapes and never go down while the source grows', async () => {
  const { source, state } = fakeSource({ pinhole: true });
  const m = createMetrics(source);
  let prev = parse(await m.text());
  for (let i = 0; i < 3; i++) {
    state.t++;
    const next = parse(await m.text());
    let grew = 0;
    for (const x of next.samples) {
      if (!x.name.startsWith('pinhole_') || next.types.get(x.name) !== 'counter') continue;
      const before = value(prev, x.name, x.labels);
      assert.ok(before !== undefined, `${x.name} ${JSON.stringify(x.labels)} present in both scrapes`);
      assert.ok(x.value >= before, `${x.name} ${JSON.stringify(x.labels)} ${before} -> ${x.value}`);
      if (x.value > before) grew++;
    }
    assert.ok(grew > 30, `counters moved with the source (${grew})`);
    assert.equal(value(next, 'pinhole_connection_frames_total', { connection: 'blue', direction: 'rx' }), state.t * 3);
    prev = next;
  }
});

test('a removed connection loses its series; rings and verdicts appear only when known', async () => {
  const { source, state } = fakeSource();
  const m = createMetrics(source);
  let s = parse(await m.text());
  assert.equal(series(s, 'pinhole_connection_info').length, 2);
  assert.equal(series(s, 'pinhole_pinhole_verdicts_total').length, 0, 'AF_PACKET: no verdicts');
  assert.equal(s.types.get('pinhole_pinhole_verdicts_total'), 'counter', 'the family is still declared');
  assert.equal(s.types.has('pinhole_ring_entries'), false, 'no rings() in the source: no ring metrics');

  state.connections = ['red'];
  s = parse(await m.text());
  assert.deepEqual(
    series(s, 'pinhole_connection_frames_total').map((x) => x.labels['connection']),
    ['red', 'red'],
  );
  assert.equal(value(s, 'pinhole_connection_info', { connection: 'blue', vni: '100' }), undefined);

  const withRings = parse(await createMetrics(fakeSource({ rings: true }).source).text());
  assert.equal(value(withRings, 'pinhole_ring_entries', { queue: '0', port: 'uplink', ring: 'fill' }), 2000);
  assert.equal(value(withRings, 'pinhole_ring_size', { queue: '0', port: 'uplink', ring: 'rx' }), 2048);
});

test('one scrape reads the source once; the registry can be rendered directly too', async () => {
  const { source, state } = fakeSource({ rings: true });
  const m = createMetrics(source);
  await m.text();
  for (const k of ['uplink', 'perQueue', 'connections', 'drops', 'pinhole', 'nexthop', 'rings', 'eventLoopLagSeconds']) {
    assert.equal(state.calls.get(k), 1, k);
  }
  await Promise.all([m.text(), m.text()]);
  assert.ok(state.calls.get('connections')! <= 3);
  state.t = 5;
  const s = parse(await m.registry.metrics());
  assert.equal(value(s, 'pinhole_connection_frames_total', { connection: 'blue', direction: 'tx' }), 20, 'no stale snapshot');
});

test('values a counter cannot hold (NaN, negative, missing) are left out, the scrape still works', async () => {
  const { source } = fakeSource();
  source.connections = () => [{ name: 'odd', vni: 1, counters: { decap_frames: Number.NaN, decap_bytes: -1, encap_frames: 5 } }];
  source.eventLoopLagSeconds = () => ({ p50: Number.NaN, p99: 0.001, max: Infinity });
  const s = parse(await createMetrics(source).text());
  assert.deepEqual(
    series(s, 'pinhole_connection_frames_total').map((x) => [x.labels['direction'], x.value]),
    [['tx', 5]],
  );
  assert.equal(series(s, 'pinhole_connection_bytes_total').length, 0);
  assert.deepEqual(
    series(s, 'pinhole_event_loop_lag_seconds').map((x) => x.labels['quantile']),
    ['0.99'],
  );
});

test("label values are escaped; prom-client's default process metrics keep their standard names", async () => {
  const { source } = fakeSource();
  source.uplink = () => ({ interface: 'we"ird\\if', mode: 'afxdp', reason: '', queues: 1 });
  const s = parse(await createMetrics(source).text());
  assert.deepEqual(series(s, 'pinhole_uplink_info')[0]!.labels, { interface: 'we"ird\\if', mode: 'afxdp', reason: '' });
  assert.equal(s.types.get('process_cpu_seconds_total'), 'counter');
  assert.equal(s.types.get('process_resident_memory_bytes'), 'gauge');
  assert.ok(value(s, 'process_resident_memory_bytes')! > 0);
  assert.equal(s.types.has('pinhole_process_resident_memory_bytes'), false);
});
