/**
 * Host safety with tunnels running (issue 8): the host-safety scenario of host-safety.test.ts,
 * with `pinhole run` forwarding a VXLAN connection instead of a bare uplink.
 *
 *   [pod A] ── wl0 [node A: pinhole run] up0 ═══veth═══ up0 [node B: kernel vxlan] ── [pod B]
 *
 * For the whole test a host TCP stream (iperf3, node B → node A) and host pings (IPv4 and IPv6,
 * both directions) run between the nodes' underlay addresses, while pinhole on node A:
 *   1. starts (AF_XDP on the uplink and, through bpf_link, on wl0) and forwards overlay pings and
 *      an overlay TCP stream pod A → pod B;
 *   2. is killed with SIGKILL: the uplink's pinhole program stays and passes everything to the
 *      kernel; wl0's program is gone with the process (bpf_link);
 *   3. restarts: takes its stale program over, and the overlay works again;
 *   4. stops with SIGTERM: nothing of it remains on up0 or wl0.
 * Asserted: the host TCP stream never resets and no 0.5 s interval stalls; no host ping is lost;
 * the overlay works after the start and after the restart; nothing attached after the stop; no
 * namespace left behind.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { requireRoot } from '../helpers/require.ts';
import { startPing, startTcpStream } from '../helpers/lab.ts';
import type { Netns } from '../helpers/netns.ts';
import { killLeftoverPinholes, startPinhole, type PinholeProc } from '../helpers/pinhole-proc.ts';
import { buildLab, listNetns, type Lab } from '../../src/control/lab/topology.ts';

requireRoot();

/** Host pings lost over the whole run (each of the four monitors sends ~1000). */
const PING_LOSS_BOUND = 0;
/** A stall: a 0.5 s interval in which the host TCP stream moved less than this. */
const STALL_BPS = 1e6;
/** Long enough to cover every phase; asserted to be still running at the final stop. */
const HOST_TCP_SECONDS = 20;

const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'ph-hst-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));

interface RunReady {
  mode: string;
  reasons: { code: string }[];
  workloads: { driver: string; xdp?: string }[];
}

interface RunStats {
  connections: Record<string, Record<string, number>>;
  drops: Record<string, number>;
}

/** The lab's namespace `ns` as the Netns the lab helpers take (closing it is the lab's job). */
function nsOf(lab: Lab, ns: string): Netns {
  return {
    name: ns,
    exec: (cmd, args) => lab.exec(ns, cmd, args),
    ip: (...args) => lab.exec(ns, 'ip', args),
    spawn: (cmd, args) => lab.spawn(ns, cmd, args),
    close: () => undefined,
  };
}

/** Runs a command in `ns` without blocking the event loop (the monitors keep being read). */
async function execIn(ns: string, cmd: string, args: readonly string[]): Promise<string> {
  const { stdout } = await run('ip', ['netns', 'exec', ns, cmd, ...args], { encoding: 'utf8', timeout: 20_000 });
  return stdout;
}

async function overlayPing(ns: string, dst: string, count = 5): Promise<number> {
  let out: string;
  try {
    out = await execIn(ns, 'ping', ['-n', '-c', String(count), '-W', '2', '-i', '0.1', dst]);
  } catch (err) {
    out = String((err as { stdout?: string }).stdout ?? '');
  }
  return Number(/(\d+) received/.exec(out)?.[1] ?? 0);
}

/** An overlay TCP stream pod A → pod B for `seconds`; returns bits per second. */
async function overlayTcp(lab: Lab, seconds: number): Promise<number> {
  const pa = lab.a.workloads[0]!;
  const pb = lab.b.workloads[0]!;
  const srv = lab.spawn(pb.podNs, 'iperf3', ['-s', '-1', '-B', pb.podAddr4]);
  try {
    for (let i = 0; ; i++) {
      try {
        const out = await execIn(pa.podNs, 'iperf3', ['-c', pb.podAddr4, '-t', String(seconds), '-J']);
        return (JSON.parse(out) as { end: { sum_received: { bits_per_second: number } } }).end.sum_received.bits_per_second;
      } catch (err) {
        // The server needs a moment to listen: retry (bounded).
        if (i >= 20) throw err;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  } finally {
    srv.kill('SIGKILL');
  }
}

function xdpOn(lab: Lab, ns: string, iface: string): string {
  const link = lab.exec(ns, 'ip', ['-d', 'link', 'show', 'dev', iface]);
  return /prog\/xdp id \d+ name (\S+)/.exec(link)?.[1] ?? (/\bxdp/.test(link) ? 'unnamed' : 'none');
}

test('host traffic survives start, tunnel traffic, SIGKILL, restart and SIGTERM of `pinhole run`', async () => {
  const prefix = `ph-${process.pid}-hst`;
  const lab = buildLab({ prefix, sides: { a: 'pinhole', b: 'kernel' }, workloadQueues: 2 });
  const a = nsOf(lab, lab.a.ns);
  const b = nsOf(lab, lab.b.ns);
  const monitors: { kill(): void }[] = [];
  try {
    const file = join(dir, 'a.yaml');
    writeFileSync(
      file,
      [
        `uplink: { interface: ${lab.a.uplink}, mode: auto }`,
        'connections:',
        `  - { name: c0, local: { interface: ${lab.a.workloads[0]!.iface}, mode: afxdp }, vxlan: { vni: ${lab.a.workloads[0]!.vni}, remote: "${lab.b.underlay4}" } }`,
        '',
      ].join('\n'),
    );
    const start = (): PinholeProc => startPinhole(lab.a.ns, ['--config', file, '--stats-interval', '100'], 20_000, 'run');
    const pa = lab.a.workloads[0]!;
    const pb = lab.b.workloads[0]!;
    const wl = pa.iface;
    const up = lab.a.uplink;
    // Neighbours resolved before the monitors start, so their first probes are not lost to ARP/ND.
    b.exec('ping', ['-c', '1', lab.a.underlay4]);
    b.exec('ping', ['-c', '1', lab.a.underlay6]);

    const tcp = startTcpStream(a, b, lab.a.underlay4, HOST_TCP_SECONDS);
    monitors.push(tcp);
    const pings = {
      'B→A IPv4': startPing(b, lab.a.underlay4, 20),
      'B→A IPv6': startPing(b, lab.a.underlay6, 20),
      'A→B IPv4': startPing(a, lab.b.underlay4, 20),
      'A→B IPv6': startPing(a, lab.b.underlay6, 20),
    };
    monitors.push(...Object.values(pings));
    const t0 = Date.now();
    const phases: string[] = [];
    const phase = (name: string): void => void phases.push(`${name} ${((Date.now() - t0) / 1000).toFixed(1)}s`);

    // 1. Start; the overlay works; tunnel traffic flows next to the host traffic.
    let p = start();
    let ready = (await p.ready) as unknown as RunReady;
    phase('ready');
    assert.equal(ready.mode, 'afxdp');
    assert.equal(ready.workloads[0]!.driver, 'afxdp');
    assert.match(ready.workloads[0]!.xdp ?? '', /bpf_link/, 'the workload program is attached through bpf_link');
    assert.equal(xdpOn(lab, lab.a.ns, up), 'pinhole');
    assert.notEqual(xdpOn(lab, lab.a.ns, wl), 'none');
    assert.equal(await overlayPing(pa.podNs, pb.podAddr4), 5, 'overlay IPv4 ping after the start');
    assert.equal(await overlayPing(pa.podNs, pb.podAddr6), 5, 'overlay IPv6 ping after the start');
    const bps = await overlayTcp(lab, 2);
    assert.ok(bps > 1e6, `overlay TCP: ${bps} bit/s`);
    const busy = (await p.statsUntil((s) => (s as unknown as RunStats).connections.c0!.encap_frames! > 1000)) as unknown as RunStats;
    assert.ok(busy.connections.c0!.decap_frames! > 100, JSON.stringify(busy.connections));
    phase('tunnel traffic');

    // 2. SIGKILL: the uplink keeps its pinhole program (passing to the kernel); wl0's goes with the process.
    p.child.kill('SIGKILL');
    await p.exited;
    assert.equal(xdpOn(lab, lab.a.ns, up), 'pinhole', 'the stale pinhole program stays on the uplink');
    assert.equal(xdpOn(lab, lab.a.ns, wl), 'none', 'no stale program on the workload interface (bpf_link)');
    // Host traffic keeps flowing with the stale program alone (the monitors watch it).
    await new Promise((r) => setTimeout(r, 1000));
    phase('killed');

    // 3. Restart: takes its stale program over; the overlay works again.
    p = start();
    ready = (await p.ready) as unknown as RunReady;
    phase('restarted');
    assert.equal(ready.mode, 'afxdp');
    assert.ok(
      ready.reasons.some((r) => r.code === 'STALE_PINHOLE_PROGRAM'),
      JSON.stringify(ready.reasons),
    );
    assert.equal(ready.workloads[0]!.driver, 'afxdp');
    assert.equal(await overlayPing(pa.podNs, pb.podAddr4), 5, 'overlay IPv4 ping after the restart');
    assert.equal(await overlayPing(pa.podNs, pb.podAddr6), 5, 'overlay IPv6 ping after the restart');
    assert.ok((await overlayTcp(lab, 1)) > 1e6, 'overlay TCP after the restart');
    phase('tunnel traffic again');

    // 4. SIGTERM: a clean stop while the host TCP stream still runs; nothing left attached.
    assert.ok(tcp.running(), 'the host TCP stream still runs when pinhole is stopped');
    const fin = (await p.stop('SIGTERM')) as unknown as RunStats;
    phase('stopped');
    const log = (await p.exited).stderr;
    assert.ok(fin.connections.c0!.encap_frames! > 1000, JSON.stringify(fin.connections));
    for (const iface of [up, wl]) {
      const link = lab.exec(lab.a.ns, 'ip', ['-d', 'link', 'show', 'dev', iface]);
      assert.doesNotMatch(link, /xdp/, `${iface} still has an XDP program after the stop:\n${link}`);
    }
    assert.match(lab.exec(lab.a.ns, 'ip', ['link', 'show', 'dev', up]), /mtu 1500 /, 'uplink MTU unchanged');

    const t = await tcp.done;
    phase('host TCP done');
    const results = await Promise.all(Object.entries(pings).map(async ([name, m]) => [name, await m.stop()] as const));
    console.log(
      `host-safety-tunnels: ${phases.join(', ')}; host tcp ${(t.bytes / 1e6).toFixed(0)} MB, retransmits ${t.retransmits}, min interval ${(t.minIntervalBps / 1e6).toFixed(0)} Mbit/s; ` +
        results.map(([name, r]) => `${name} lost ${r.sent - r.received}/${r.sent}`).join(', '),
    );
    assert.ok(t.minIntervalBps > STALL_BPS, `host TCP stalled: a 0.5 s interval moved ${t.minIntervalBps} bit/s`);
    for (const [name, r] of results) {
      assert.ok(r.sent - r.received <= PING_LOSS_BOUND, `${name} ping lost ${r.sent - r.received} of ${r.sent}`);
    }
    assert.deepEqual(fin.drops, {}, `no dataplane drops after the restart; its log:\n${log}`);
  } finally {
    killLeftoverPinholes();
    for (const m of monitors) m.kill();
    lab.close();
  }
  assert.deepEqual(
    listNetns().filter((n) => n.startsWith(prefix)),
    [],
    'no namespace left behind',
  );
});
