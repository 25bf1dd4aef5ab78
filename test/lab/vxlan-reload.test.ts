/**
 * Connections change while pinhole runs (lab tier): SIGHUP reloads the config file and applies
 * only the difference. A ping on an untouched connection runs through every change and loses
 * nothing; an added connection carries traffic, one changed in place (a new VNI, the peer
 * reconfigured to match) carries traffic with it, a removed one stops, an invalid file changes
 * nothing (and says so in the log, awaited before the check).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { requireRoot } from '../helpers/require.ts';
import { apiRequest } from '../../src/api/client.ts';
import { killLeftoverPinholes, startPinhole } from '../helpers/pinhole-proc.ts';
import { buildLab, type Lab } from '../../src/control/lab/topology.ts';

requireRoot();

const dir = mkdtempSync(join(tmpdir(), 'ph-reload-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));

interface StatsLine {
  connections: Record<string, Record<string, number>>;
}

function ping(lab: Lab, ns: string, dst: string, count = 5): number {
  try {
    const out = lab.exec(ns, 'ping', ['-n', '-c', String(count), '-W', '1', '-i', '0.1', dst]);
    return Number(/(\d+) received/.exec(out)?.[1] ?? 0);
  } catch (err) {
    return Number(/(\d+) received/.exec(String((err as Error).message))?.[1] ?? 0);
  }
}

/** Resolves with the first JSON log line on `child`'s stderr, from now on, that satisfies `pred`. */
function logLine(child: ChildProcess, pred: (j: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const onData = (d: Buffer): void => {
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        let j: Record<string, unknown>;
        try {
          j = JSON.parse(line) as Record<string, unknown>;
        } catch {
          continue;
        }
        if (pred(j)) {
          done();
          resolve(j);
          return;
        }
      }
    };
    const onClose = (): void => {
      done();
      reject(new Error('pinhole exited before the awaited log line'));
    };
    const done = (): void => {
      child.stderr!.off('data', onData);
      child.off('close', onClose);
    };
    child.stderr!.on('data', onData);
    child.once('close', onClose);
  });
}

/**
 * A kernel vxlan device's VNI cannot be changed in place (EOPNOTSUPP): replace the device with
 * one of the new VNI, same settings, MAC and bridge port (as topology.ts builds it).
 */
function changeKernelVni(lab: Lab, dev: string, bridge: string, vni: number, mac: string | undefined, mtu: number): void {
  const { a, b } = lab;
  const ip = (...args: string[]): string => lab.exec(b.ns, 'ip', args);
  ip('link', 'del', dev);
  ip(
    'link',
    'add',
    dev,
    'type',
    'vxlan',
    'id',
    String(vni),
    'local',
    b.tunnelAddr,
    'remote',
    a.tunnelAddr,
    'dstport',
    String(lab.plan.vxlanPort),
    'dev',
    b.uplink,
  );
  if (mac) ip('link', 'set', 'dev', dev, 'address', mac);
  lab.exec(b.ns, 'sysctl', ['-qw', `net.ipv6.conf.${dev}.disable_ipv6=1`]);
  ip('link', 'set', 'dev', dev, 'mtu', String(mtu));
  ip('link', 'set', 'dev', dev, 'master', bridge);
  ip('link', 'set', 'dev', dev, 'up');
}

test('SIGHUP applies the difference: untouched connection loses no ping; added works, changed VNI works, removed stops, invalid file changes nothing', async () => {
  const lab = buildLab({
    prefix: `ph-${process.pid}-rl`,
    sides: { a: 'pinhole', b: 'kernel' },
    connections: [{ vni: 100 }, { vni: 200 }],
    workloadQueues: 2,
  });
  // Killed in finally too: a failing assertion must not leave the test waiting on a ping.
  let steady: ReturnType<Lab['spawn']> | undefined;
  try {
    const { a, b } = lab;
    const file = join(dir, 'a.yaml');
    const conn = (i: number, vni = a.workloads[i]!.vni): string =>
      `  - { name: c${i}, local: { interface: ${a.workloads[i]!.iface} }, vxlan: { vni: ${vni}, remote: "${b.underlay4}" } }`;
    const write = (conns: number[], vnis: Record<number, number> = {}): void =>
      writeFileSync(
        file,
        [
          `uplink: { interface: ${a.uplink}, mode: auto }`,
          `api: { socket: ${join(dir, 'a.sock')} }`,
          'connections:',
          ...conns.map((i) => conn(i, vnis[i])),
        ].join('\n') + '\n',
      );
    write([0]);
    const p = startPinhole(a.ns, ['--config', file, '--stats-interval', '100'], 20_000, 'run');
    await p.ready;
    const [a0, a1] = a.workloads;
    const [b0, b1] = b.workloads;
    assert.equal(ping(lab, a0!.podNs, b0!.podAddr4), 5);
    assert.equal(ping(lab, a1!.podNs, b1!.podAddr4, 2), 0, 'c1 is not configured yet');

    // An untouched connection under a steady ping through all the changes below.
    steady = lab.spawn(a0!.podNs, 'ping', ['-n', '-i', '0.05', '-W', '1', b0!.podAddr4]);
    let steadyOut = '';
    steady.stdout!.on('data', (d: Buffer) => (steadyOut += d.toString()));
    const running = steady;
    const steadyDone = new Promise<void>((r) => running.once('close', () => r()));

    write([0, 1]);
    p.child.kill('SIGHUP');
    await p.statsUntil((s) => (s as unknown as StatsLine).connections.c1 !== undefined);
    assert.equal(ping(lab, a1!.podNs, b1!.podAddr4), 5, 'the added connection carries traffic');

    writeFileSync(
      file,
      `uplink: { interface: up0, mode: auto }\napi: { socket: ${join(dir, 'a.sock')} }\nconnections:\n  - { name: c0, vxlan: { vni: -1 } }\n`,
    );
    let logged = logLine(p.child, (j) => j.event === 'reload-rejected');
    p.child.kill('SIGHUP');
    // The reload has run (and was rejected, naming the field) before we look: still both connections.
    assert.match(JSON.stringify(await logged), /connections\[0\]/, 'the rejected reload is logged with the field');
    assert.equal(ping(lab, a1!.podNs, b1!.podAddr4, 3), 3, 'an invalid file changes nothing');

    // c1 changed in place: a new VNI. The peer (the kernel's vxlan on node b) moves first; c1
    // then carries traffic again only if node a sends and accepts the new VNI.
    const vni = 300;
    changeKernelVni(lab, b1!.vxlan!, b1!.bridge!, vni, b1!.vxlanMac, b1!.mtu);
    write([0, 1], { 1: vni });
    logged = logLine(p.child, (j) => j.event === 'reloaded' || j.event === 'reload-rejected' || j.event === 'reload-failed');
    p.child.kill('SIGHUP');
    assert.equal((await logged).event, 'reloaded');
    assert.equal(ping(lab, a1!.podNs, b1!.podAddr4), 5, 'c1 works with its new VNI');
    const c1 = await apiRequest<{ config: { vxlan: { vni: number } } }>(join(dir, 'a.sock'), 'GET', '/v1/connections/c1');
    assert.equal(c1.body.config.vxlan.vni, vni, 'the daemon reports the new VNI');

    write([0]);
    // The reload is done (every worker runs the new graph) when `reloaded` is logged; a stats
    // line without c1 can come first.
    logged = logLine(p.child, (j) => j.event === 'reloaded' || j.event === 'reload-rejected' || j.event === 'reload-failed');
    p.child.kill('SIGHUP');
    assert.equal((await logged).event, 'reloaded');
    await p.statsUntil((s) => (s as unknown as StatsLine).connections.c1 === undefined);
    assert.equal(ping(lab, a1!.podNs, b1!.podAddr4, 2), 0, 'the removed connection no longer carries traffic');

    steady.kill('SIGINT');
    await steadyDone;
    const m = /(\d+) packets transmitted, (\d+) received/.exec(steadyOut);
    assert.ok(m, steadyOut);
    assert.ok(Number(m[1]) > 20, `steady ping ran: ${m[0]}`);
    // The last request may still be in flight when ping is interrupted.
    assert.ok(Number(m[1]) - Number(m[2]) <= 1, `untouched connection lost pings: ${m[0]}`);

    const fin = await p.stop();
    assert.ok(fin);
    await p.exited;
  } finally {
    steady?.kill('SIGKILL');
    killLeftoverPinholes();
    lab.close();
  }
});
