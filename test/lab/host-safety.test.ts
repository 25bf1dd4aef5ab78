/**
 * Host safety, the reason pinhole exists. Two hosts joined by a veth (the uplink); for the whole
 * test a TCP stream (iperf3) and pings over IPv4 and IPv6 run between them while pinhole, on
 * host A's uplink:
 *   1. starts (AF_XDP) — host traffic never reaches the dataplane counters;
 *   2. receives tunnel traffic at full rate (kernel live-frame generator on host B);
 *   3. is killed with SIGKILL — its program stays attached and passes everything to the kernel,
 *      tunnel traffic included;
 *   4. restarts and takes its stale program over, receives tunnel traffic again;
 *   5. stops with SIGTERM — nothing of it remains.
 * Asserted: the TCP stream never resets or stalls, ARP/ND keep working, ping loss stays within
 * PING_LOSS_BOUND_PCT (measured on the development VM: 0% typical), and the leftovers.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { requireRoot } from '../helpers/require.ts';
import { LAB, startPing, startTcpStream, twoHosts } from '../helpers/lab.ts';
import { killLeftoverPinholes, startPinhole } from '../helpers/pinhole-proc.ts';
import type { Netns } from '../helpers/netns.ts';
import { buildFrame } from '../../src/packet/build.ts';

requireRoot();

/** Ping loss allowed over the whole run, in percent (a handful of the ~500 pings). */
const PING_LOSS_BOUND_PCT = 2;
/** A stall: a 0.5 s interval in which the TCP stream moved less than this. */
const STALL_BPS = 1e6;

const TRAFFICGEN = fileURLToPath(new URL('../../bench/lib/trafficgen.ts', import.meta.url));
const UDP_LISTEN = fileURLToPath(new URL('./fixtures/udp-listen.ts', import.meta.url));
const UDP_SEND = fileURLToPath(new URL('./fixtures/udp-send.ts', import.meta.url));

function flood(ns: Netns, count: number): void {
  const frame = buildFrame({
    eth: { dst: LAB.aMac, src: LAB.bMac },
    ipv4: { src: LAB.b4, dst: LAB.a4 },
    udp: { sport: 40000, dport: 4789 },
    payload: new Uint8Array(18),
  });
  const out = JSON.parse(
    ns.exec(process.execPath, [
      '--import',
      'tsx',
      TRAFFICGEN,
      '--iface',
      'peer0',
      '--frame',
      Buffer.from(frame).toString('hex'),
      '--count',
      String(count),
    ]),
  ) as { sent: number };
  assert.equal(out.sent, count);
}

function xdpName(ns: Netns): string {
  return /prog\/xdp id \d+ name (\S+)/.exec(ns.ip('-d', 'link', 'show', 'dev', 'up0'))?.[1] ?? 'none';
}

test('host traffic survives start, full-rate tunnel traffic, SIGKILL, restart and SIGTERM', async () => {
  const l = twoHosts('safety', { queues: 2 });
  let tcp: ReturnType<typeof startTcpStream> | undefined;
  let ping4: ReturnType<typeof startPing> | undefined;
  let ping6: ReturnType<typeof startPing> | undefined;
  try {
    l.a.exec('ethtool', ['-K', 'up0', 'gro', 'on']);
    l.b.exec('ethtool', ['-K', 'peer0', 'gro', 'on']);
    l.b.exec('ping', ['-c', '1', LAB.a4]);
    l.b.exec('ping', ['-c', '1', LAB.a6]);
    // Long enough to cover every phase on a slow machine; asserted to be running at the stop.
    tcp = startTcpStream(l.a, l.b, LAB.a4, 40);
    ping4 = startPing(l.b, LAB.a4, 20);
    ping6 = startPing(l.b, LAB.a6, 20);

    // 1. Start: AF_XDP; while TCP and ping run, nothing reaches the dataplane.
    let p = startPinhole(l.a.name, ['--iface', 'up0', '--port', '4789', '--stats-interval', '100']);
    let ready = await p.ready;
    assert.equal(ready.mode, 'afxdp');
    // Five more stats lines (half a second) of TCP and ping with the dataplane up.
    await p.statsUntil(() => true);
    const target = p.statsCount() + 5;
    await p.statsUntil(() => p.statsCount() >= target);
    const quiet = p.latestStats()!;
    assert.equal(quiet.rxPackets, 0, 'host traffic never reaches the dataplane counters');
    assert.ok(
      quiet.pinhole!.tcp > 0 && quiet.pinhole!.icmp > 0 && quiet.pinhole!.icmpv6 > 0,
      'host traffic seen and passed by the pinhole',
    );

    // 2. Full-rate tunnel traffic.
    flood(l.b, 1_000_000);
    const busy = await p.statsUntil((s) => s.rxPackets > 100_000);
    assert.ok(busy.rxPackets > 100_000);

    // 3. SIGKILL: the program stays and passes everything to the kernel, tunnel traffic included.
    p.child.kill('SIGKILL');
    await p.exited;
    assert.equal(xdpName(l.a), 'pinhole', 'left-over program still attached');
    const listener = l.a.spawn(process.execPath, ['--import', 'tsx', UDP_LISTEN, LAB.a4, '4789']);
    try {
      let heard = '';
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`listener: ${heard}`)), 10_000);
        listener.stdout!.on('data', (d: Buffer) => {
          heard += d.toString();
          if (heard.includes('listening') && !heard.includes('sent')) {
            heard += 'sent';
            l.b.exec(process.execPath, ['--import', 'tsx', UDP_SEND, LAB.a4, '4789', '3']);
          }
          if (/got \d+/.test(heard)) {
            clearTimeout(t);
            resolve();
          }
        });
      });
    } finally {
      listener.kill('SIGTERM');
    }

    // 4. Restart: takes over its stale program, receives tunnel traffic again.
    p = startPinhole(l.a.name, ['--iface', 'up0', '--port', '4789', '--stats-interval', '100']);
    ready = await p.ready;
    assert.equal(ready.mode, 'afxdp');
    assert.ok(
      ready.reasons.some((r) => r.code === 'STALE_PINHOLE_PROGRAM'),
      JSON.stringify(ready.reasons),
    );
    flood(l.b, 500_000);
    await p.statsUntil((s) => s.rxPackets > 50_000);

    // 5. SIGTERM: clean stop, nothing left — with the TCP stream still running across it.
    assert.ok(tcp.running(), 'the TCP stream still runs when pinhole is stopped');
    const fin = await p.stop('SIGTERM');
    assert.ok(fin.rxPackets > 50_000);
    assert.equal(xdpName(l.a), 'none', 'no XDP program after a clean stop');
    assert.match(l.a.ip('-d', 'link', 'show', 'dev', 'up0'), /mtu 1500 /, 'MTU unchanged');

    const t = await tcp.done;
    const r4 = await ping4.stop();
    const r6 = await ping6.stop();
    assert.ok(t.minIntervalBps > STALL_BPS, `TCP stalled: an interval moved ${t.minIntervalBps} bit/s`);
    assert.ok(r4.lossPct <= PING_LOSS_BOUND_PCT, `IPv4 ping loss ${r4.lossPct.toFixed(1)}% (${r4.sent - r4.received}/${r4.sent})`);
    assert.ok(r6.lossPct <= PING_LOSS_BOUND_PCT, `IPv6 ping loss ${r6.lossPct.toFixed(1)}% (${r6.sent - r6.received}/${r6.sent})`);
    // ARP and ND still answered by the kernel: the neighbours are usable, not FAILED.
    assert.match(l.b.ip('neigh', 'show', LAB.a4), /lladdr 02:00:00:00:00:01 (REACHABLE|STALE|DELAY|PROBE)/);
    assert.match(l.b.ip('-6', 'neigh', 'show', LAB.a6), /lladdr 02:00:00:00:00:01 (REACHABLE|STALE|DELAY|PROBE)/);
    console.log(
      `host-safety: tcp ${(t.bytes / 1e6).toFixed(0)} MB, retransmits ${t.retransmits}, min interval ${(t.minIntervalBps / 1e6).toFixed(0)} Mbit/s; ping v4 loss ${r4.sent - r4.received}/${r4.sent}, v6 ${r6.sent - r6.received}/${r6.sent}; dataplane lag p99 ${fin.eventLoopLagMs.p99.toFixed(2)} ms`,
    );
  } finally {
    killLeftoverPinholes();
    tcp?.kill();
    ping4?.kill();
    ping6?.kill();
    l.close();
  }
});
