/**
 * The metrics endpoint (src/metrics/server.ts) over real HTTP on 127.0.0.1, an ephemeral port:
 * GET/HEAD /metrics, 404 elsewhere, 405 for other methods, 500 when the source fails, a clear
 * error for a busy port, and close(). parseListen's accepted and refused strings.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { createMetrics, type MetricsSource } from '../../src/metrics/metrics.ts';
import { formatListen, parseListen, startMetricsServer } from '../../src/metrics/server.ts';
import { PinholeError } from '../../src/sys/index.ts';

function source(): MetricsSource {
  return {
    uplink: () => ({ interface: 'eth0', mode: 'afxdp', reason: '', queues: 1 }),
    perQueue: () => [],
    connections: () => [{ name: 'blue', vni: 7, counters: { decap_frames: 5, decap_bytes: 500, encap_frames: 6, encap_bytes: 600 } }],
    drops: () => ({}),
    pinhole: () => null,
    nexthop: () => ({ misses: 0 }),
    eventLoopLagSeconds: () => ({ p50: 0, p99: 0, max: 0 }),
  };
}

test('GET /metrics: 200, Prometheus text with its content type; HEAD has no body', async () => {
  const srv = await startMetricsServer(createMetrics(source()), '127.0.0.1:0');
  try {
    assert.match(srv.address, /^127\.0\.0\.1:\d+$/);
    assert.notEqual(srv.address, '127.0.0.1:0');
    const res = await fetch(`http://${srv.address}/metrics`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8');
    const body = await res.text();
    assert.match(body, /^# TYPE pinhole_connection_frames_total counter$/m);
    assert.match(body, /^pinhole_connection_frames_total\{connection="blue",direction="rx"\} 5$/m);
    assert.match(body, /^pinhole_uplink_info\{interface="eth0",mode="afxdp",reason=""\} 1$/m);

    const withQuery = await fetch(`http://${srv.address}/metrics?x=1`);
    assert.equal(withQuery.status, 200);
    await withQuery.text();

    const head = await fetch(`http://${srv.address}/metrics`, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(await head.text(), '');
  } finally {
    await srv.close();
  }
});

test('other paths are 404, other methods 405 with Allow', async () => {
  const srv = await startMetricsServer(createMetrics(source()), '127.0.0.1:0');
  try {
    for (const path of ['/', '/metrics/', '/favicon.ico', '/v1/status']) {
      const res = await fetch(`http://${srv.address}${path}`);
      assert.equal(res.status, 404, path);
      await res.text();
    }
    for (const method of ['POST', 'PUT', 'DELETE', 'PATCH']) {
      const res = await fetch(`http://${srv.address}/metrics`, { method, body: method === 'DELETE' ? null : 'x' });
      assert.equal(res.status, 405, method);
      assert.equal(res.headers.get('allow'), 'GET, HEAD');
      await res.text();
    }
  } finally {
    await srv.close();
  }
});

test('a failing source is a 500, and the server keeps serving', async () => {
  const src = source();
  let fail = true;
  src.drops = () => {
    if (fail) throw new Error('counters gone');
    return {};
  };
  const srv = await startMetricsServer(createMetrics(src), '127.0.0.1:0');
  try {
    const bad = await fetch(`http://${srv.address}/metrics`);
    assert.equal(bad.status, 500);
    assert.match(await bad.text(), /counters gone/);
    fail = false;
    const ok = await fetch(`http://${srv.address}/metrics`);
    assert.equal(ok.status, 200);
    await ok.text();
  } finally {
    await srv.close();
  }
});

test('a busy port is ERR_METRICS_LISTEN with the errno; close() is idempotent and frees the port', async () => {
  const blocker = createServer();
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
  const port = (blocker.address() as { port: number }).port;
  try {
    await assert.rejects(startMetricsServer(createMetrics(source()), `127.0.0.1:${port}`), (err: unknown) => {
      assert.ok(err instanceof PinholeError);
      assert.equal(err.code, 'ERR_METRICS_LISTEN');
      assert.equal(err.details?.['errno'], 'EADDRINUSE');
      assert.match(err.message, new RegExp(`127\\.0\\.0\\.1:${port}`));
      return true;
    });
  } finally {
    await new Promise<void>((resolve) => blocker.close(() => resolve()));
  }

  const srv = await startMetricsServer(createMetrics(source()), `127.0.0.1:${port}`);
  // A kept-alive connection must not hold close() up.
  const res = await fetch(`http://${srv.address}/metrics`);
  await res.text();
  await Promise.all([srv.close(), srv.close()]);
  await assert.rejects(fetch(`http://${srv.address}/metrics`));
});

test('parseListen accepts host:port with IPv4, bracketed IPv6 or localhost', () => {
  const cases: [string, string, number][] = [
    ['127.0.0.1:9464', '127.0.0.1', 9464],
    ['[::1]:9464', '::1', 9464],
    ['[::]:80', '::', 80],
    ['0.0.0.0:0', '0.0.0.0', 0],
    ['localhost:65535', 'localhost', 65535],
    ['[2001:db8::1]:9100', '2001:db8::1', 9100],
    ['[::ffff:198.18.0.1]:9464', '::ffff:198.18.0.1', 9464],
  ];
  for (const [s, host, port] of cases) {
    assert.deepEqual(parseListen(s), { host, port }, s);
  }
  assert.equal(formatListen({ host: '::1', port: 9464 }), '[::1]:9464');
  assert.equal(formatListen({ host: '127.0.0.1', port: 9464 }), '127.0.0.1:9464');
});

test('parseListen refuses malformed strings with ERR_CONFIG_INVALID naming metrics.listen', () => {
  const bad: [string, RegExp][] = [
    ['', /host:port/],
    ['9464', /no port/],
    [':9464', /host must be/],
    ['127.0.0.1', /no port/],
    ['127.0.0.1:', /port must be/],
    ['127.0.0.1:65536', /port must be/],
    ['127.0.0.1:-1', /port must be/],
    ['127.0.0.1:94a', /port must be/],
    ['127.0.0.1:123456', /port must be/],
    ['::1:9464', /in brackets/],
    ['[::1:9464', /in brackets/],
    ['[not-v6]:9464', /in brackets/],
    ['[127.0.0.1]:9464', /in brackets/],
    ['256.0.0.1:9464', /host must be/],
    ['example.com:9464', /host must be/],
    [' 127.0.0.1:9464', /host must be/],
  ];
  for (const [s, why] of bad) {
    assert.throws(
      () => parseListen(s),
      (err: unknown) => {
        assert.ok(err instanceof PinholeError, s);
        assert.equal(err.code, 'ERR_CONFIG_INVALID', s);
        assert.equal(err.details?.['field'], 'metrics.listen', s);
        assert.match(err.message, /^metrics\.listen: /, s);
        assert.match(err.message, why, s);
        return true;
      },
      s,
    );
  }
});
