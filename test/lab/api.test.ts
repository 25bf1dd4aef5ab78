/**
 * The operator interface against a real daemon (lab tier): `pinhole status|connect|disconnect`
 * over the API socket change connections at runtime while an untouched connection keeps its
 * ping; errors come back with stable codes and change nothing; SIGHUP after an API change
 * discards it with a warning (the file wins); the Prometheus endpoint, scraped over HTTP inside
 * the node, agrees with what was sent.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requireRoot } from '../helpers/require.ts';
import { runCli } from '../helpers/cli.ts';
import { killLeftoverPinholes, startPinhole } from '../helpers/pinhole-proc.ts';
import { buildLab, type Lab } from '../../src/control/lab/topology.ts';

requireRoot();

const dir = mkdtempSync(join(tmpdir(), 'ph-api-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));

function ping(lab: Lab, ns: string, dst: string, count = 5): number {
  try {
    return Number(/(\d+) received/.exec(lab.exec(ns, 'ping', ['-n', '-c', String(count), '-W', '1', '-i', '0.1', dst]))?.[1] ?? 0);
  } catch (err) {
    return Number(/(\d+) received/.exec(String((err as Error).message))?.[1] ?? 0);
  }
}

/** One metric sample's value from Prometheus text, matching all `labels`. */
function sample(text: string, name: string, labels: Record<string, string>): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return undefined;
}

test('API and CLI verbs change connections at runtime; errors change nothing; SIGHUP: the file wins; metrics agree', async () => {
  const lab = buildLab({
    prefix: `ph-${process.pid}-api`,
    sides: { a: 'pinhole', b: 'kernel' },
    connections: [{ vni: 100 }, { vni: 200 }],
    workloadQueues: 2,
  });
  // Killed in finally too: a failing assertion must not leave the test waiting on a ping.
  let steady: ReturnType<Lab['spawn']> | undefined;
  try {
    const { a, b } = lab;
    const socket = join(dir, 'a.sock');
    const file = join(dir, 'a.yaml');
    const [a0, a1] = a.workloads;
    const [b0, b1] = b.workloads;
    writeFileSync(
      file,
      [
        `uplink: { interface: ${a.uplink}, mode: auto }`,
        `api: { socket: ${socket} }`,
        'metrics: { listen: "127.0.0.1:9464" }',
        'connections:',
        `  - { name: c0, local: { interface: ${a0!.iface} }, vxlan: { vni: ${a0!.vni}, remote: "${b.underlay4}" } }`,
      ].join('\n') + '\n',
    );
    const p = startPinhole(a.ns, ['--config', file], 20_000, 'run');
    await p.ready;
    const cli = (...args: string[]) => runCli([...args, '--socket', socket], { netns: a.ns, timeoutMs: 30_000 });

    let r = cli('status', '--json');
    assert.equal(r.code, 0, r.stderr);
    const st = JSON.parse(r.stdout) as { state: string; uplink: { mode: string }; connections: { name: string; source: string }[] };
    assert.equal(st.state, 'running');
    assert.equal(st.uplink.mode, 'afxdp');
    assert.deepEqual(
      st.connections.map((c) => [c.name, c.source]),
      [['c0', 'file']],
    );
    r = cli('status');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /c0/);

    // A steady ping on c0 through every change below.
    steady = lab.spawn(a0!.podNs, 'ping', ['-n', '-i', '0.05', '-W', '1', b0!.podAddr4]);
    let steadyOut = '';
    steady.stdout!.on('data', (d: Buffer) => (steadyOut += d.toString()));
    const running = steady;
    const steadyDone = new Promise<void>((res) => running.once('close', () => res()));

    // Add c1 through the CLI: it carries traffic at once.
    r = cli('connect', 'c1', '--local', a1!.iface, '--vxlan-vni', String(a1!.vni), '--remote', b.underlay4);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(ping(lab, a1!.podNs, b1!.podAddr4), 5, 'the connection added through the API carries traffic');

    // Errors: stable codes, exit 1, nothing changes.
    r = cli('connect', 'c2', '--local', a1!.iface, '--vxlan-vni', '300', '--remote', b.underlay4);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /ERR_API_CONFLICT/);
    r = cli('connect', 'c2', '--local', a1!.iface, '--vxlan-vni', '16777216', '--remote', b.underlay4);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /vni/);
    r = cli('disconnect', 'nope');
    assert.equal(r.code, 1);
    assert.match(r.stderr, /ERR_API_NOT_FOUND/);
    assert.equal(ping(lab, a1!.podNs, b1!.podAddr4, 3), 3, 'c1 untouched by the failed requests');

    // Metrics over HTTP inside the node: c1's counters agree with the pings sent on it.
    const scrape = (): string =>
      lab.exec(a.ns, process.execPath, [
        '-e',
        "fetch('http://127.0.0.1:9464/metrics').then(r => r.text()).then(t => process.stdout.write(t))",
      ]);
    const before = scrape();
    const tx0 = sample(before, 'pinhole_connection_frames_total', { connection: 'c1', direction: 'tx' }) ?? -1;
    assert.ok(tx0 >= 8, `c1 tx frames so far: ${tx0}`);
    assert.equal(ping(lab, a1!.podNs, b1!.podAddr4, 10), 10);
    const after = scrape();
    const tx1 = sample(after, 'pinhole_connection_frames_total', { connection: 'c1', direction: 'tx' })!;
    const rx1 = sample(after, 'pinhole_connection_frames_total', { connection: 'c1', direction: 'rx' })!;
    // 10 echo requests in, 10 replies out (plus at most a neighbour probe or two).
    assert.ok(tx1 - tx0 >= 10 && tx1 - tx0 <= 12, `c1 tx delta ${tx1 - tx0}`);
    assert.ok(rx1 >= 18, `c1 rx ${rx1}`);
    assert.match(after, /pinhole_uplink_info\{[^}]*mode="afxdp"/);
    assert.ok(
      sample(after, 'pinhole_drops_total', { stage: 'decap', reason: 'unknown-vni' }) !== undefined,
      'drop series exist from the start',
    );

    // Remove c1 through the CLI.
    r = cli('disconnect', 'c1');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(ping(lab, a1!.podNs, b1!.podAddr4, 2), 0, 'the removed connection carries nothing');

    // Add it again, then SIGHUP: the file (without c1) wins, with a warning.
    r = cli('connect', 'c1', '--local', a1!.iface, '--vxlan-vni', String(a1!.vni), '--remote', b.underlay4);
    assert.equal(r.code, 0, r.stderr);
    p.child.kill('SIGHUP');
    for (let i = 0; ; i++) {
      const s = JSON.parse(cli('status', '--json').stdout) as { connections: { name: string }[] };
      if (s.connections.length === 1) break;
      if (i > 50) assert.fail('SIGHUP did not reload');
      lab.exec(a.ns, 'sleep', ['0.1']);
    }

    steady.kill('SIGINT');
    await steadyDone;
    const m = /(\d+) packets transmitted, (\d+) received/.exec(steadyOut);
    assert.ok(m && Number(m[1]) > 20, steadyOut);
    assert.ok(Number(m[1]) - Number(m[2]) <= 1, `the untouched connection lost pings: ${m[0]}`);

    await p.stop();
    const ex = await p.exited;
    assert.match(ex.stderr, /"event":"api-changes-discarded".*"c1"/);
    // The socket is gone with the daemon: the CLI says no daemon answers.
    r = cli('status');
    assert.equal(r.code, 1);
    assert.match(r.stderr, /ERR_API_NO_DAEMON/);
  } finally {
    steady?.kill('SIGKILL');
    killLeftoverPinholes();
    lab.close();
  }
});
