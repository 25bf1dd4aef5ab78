/**
 * Connections change while pinhole runs (lab tier): SIGHUP reloads the config file and applies
 * only the difference. A ping on an untouched connection runs through every change and loses
 * nothing; an added connection carries traffic, a removed one stops, an invalid file changes
 * nothing (and says so in the log).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requireRoot } from '../helpers/require.ts';
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

test('SIGHUP applies the difference: untouched connection loses no ping; added works, removed stops, invalid file changes nothing', async () => {
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
    const conn = (i: number): string =>
      `  - { name: c${i}, local: { interface: ${a.workloads[i]!.iface} }, vxlan: { vni: ${a.workloads[i]!.vni}, remote: "${b.underlay4}" } }`;
    const write = (conns: number[]): void =>
      writeFileSync(
        file,
        [
          `uplink: { interface: ${a.uplink}, mode: auto }`,
          `api: { socket: ${join(dir, 'a.sock')} }`,
          'connections:',
          ...conns.map(conn),
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
    p.child.kill('SIGHUP');
    // Still both connections: the invalid file was rejected (checked in the log below).
    assert.equal(ping(lab, a1!.podNs, b1!.podAddr4, 3), 3, 'an invalid file changes nothing');

    write([0]);
    p.child.kill('SIGHUP');
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
    const { stderr } = await p.exited;
    assert.match(stderr, /"event":"reload-rejected".*connections\[0\]/, 'the rejected reload is logged with the field');
  } finally {
    steady?.kill('SIGKILL');
    killLeftoverPinholes();
    lab.close();
  }
});
