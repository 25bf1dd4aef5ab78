/**
 * Faults to the interfaces themselves while pinhole runs (issue 7 items 4 and 10), as a table:
 * the uplink deleted, moved to another namespace, its XDP program detached behind our back, and
 * the `--to` interface deleted, in AF_XDP and AF_PACKET modes alike. For `pinhole uplink` (one
 * shot) every row must end the process by itself with exit 1, a stable code on stderr, no stack
 * trace and nothing left attached. For `pinhole run` (long-running), the daemon reports the loss,
 * restores the host, and recovers on its own once the interface is back: tunnel traffic flows
 * again without a restart.
 */
import { afterEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requireRoot } from '../helpers/require.ts';
import { addVeth, createNetns, type Netns } from '../helpers/netns.ts';
import { twoHosts, type TwoHosts } from '../helpers/lab.ts';
import { killLeftoverPinholes, startPinhole } from '../helpers/pinhole-proc.ts';
import { buildLab } from '../../src/control/lab/topology.ts';

requireRoot();
afterEach(() => killLeftoverPinholes());

const STACK = /\n\s+at .+:\d+:\d+/;
const dir = mkdtempSync(join(tmpdir(), 'ph-watch-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));

interface WatchFault {
  name: string;
  mode: 'auto' | 'afpacket';
  /** Cross-connect out of `out0` (a second veth in node a). */
  to?: boolean;
  fault: (l: TwoHosts, spare: Netns) => void;
  code: string;
}

const WATCH_FAULTS: WatchFault[] = [
  { name: 'uplink deleted', mode: 'auto', fault: (l) => l.a.ip('link', 'del', 'up0'), code: 'ERR_UPLINK_GONE' },
  { name: 'uplink deleted', mode: 'afpacket', fault: (l) => l.a.ip('link', 'del', 'up0'), code: 'ERR_UPLINK_GONE' },
  {
    name: 'uplink moved to another namespace',
    mode: 'auto',
    fault: (l, spare) => l.a.ip('link', 'set', 'up0', 'netns', spare.name),
    code: 'ERR_UPLINK_GONE',
  },
  {
    name: 'XDP program detached behind our back',
    mode: 'auto',
    fault: (l) => l.a.ip('link', 'set', 'dev', 'up0', 'xdp', 'off'),
    code: 'ERR_UPLINK_PROGRAM_DETACHED',
  },
  { name: '--to interface deleted', mode: 'auto', to: true, fault: (l) => l.a.ip('link', 'del', 'out0'), code: 'ERR_UPLINK_GONE' },
  { name: '--to interface deleted', mode: 'afpacket', to: true, fault: (l) => l.a.ip('link', 'del', 'out0'), code: 'ERR_UPLINK_GONE' },
];

for (const f of WATCH_FAULTS) {
  test(`uplink --mode ${f.mode}: ${f.name}: exits 1 with ${f.code}, no stack, nothing left attached`, async () => {
    const l = twoHosts(`wf-${f.mode.slice(0, 3)}`);
    const spare = createNetns('wf-spare');
    const sink = f.to ? createNetns('wf-sink') : undefined;
    try {
      if (sink) addVeth(l.a, 'out0', sink, 'in0');
      const args = ['--iface', 'up0', '--port', '4789', '--mode', f.mode, ...(f.to ? ['--to', 'out0'] : [])];
      const p = startPinhole(l.a.name, args);
      const ready = await p.ready;
      assert.equal(ready.mode, f.mode === 'afpacket' ? 'afpacket' : 'afxdp');
      f.fault(l, spare);
      const ex = await p.exited;
      assert.equal(ex.code, 1, ex.stderr);
      assert.match(ex.stderr, new RegExp(`"event":"uplink-lost".*"code":"${f.code}"`));
      assert.doesNotMatch(ex.stderr, STACK);
      // Wherever the uplink is now, no program of ours is left on it except after a move, where
      // the program that went along passes every frame to the kernel (no socket is bound).
      const where = f.name.includes('moved') ? spare : l.a;
      const link = where.exec('ip', ['-d', 'link', 'show', 'up0'], { allowFail: true });
      if (!f.name.includes('moved') && link) assert.doesNotMatch(link, /prog\/xdp/, link);
    } finally {
      l.close();
      spare.close();
      sink?.close();
    }
  });
}

test('pinhole run: program detached, uplink moved away and back: the daemon restores the host and recovers by itself', async () => {
  const lab = buildLab({ prefix: `ph-${process.pid}-wr`, sides: { a: 'pinhole', b: 'kernel' } });
  try {
    const { a, b } = lab;
    const file = join(dir, 'run.yaml');
    const w = a.workloads[0]!;
    writeFileSync(
      file,
      `uplink: { interface: ${a.uplink}, mode: auto }\napi: { socket: ${join(dir, 'run.sock')} }\nconnections:\n  - { name: c0, local: { interface: ${w.iface} }, vxlan: { vni: ${w.vni}, remote: "${b.underlay4}" } }\n`,
    );
    const p = startPinhole(a.ns, ['--config', file, '--stats-interval', '100'], 20_000, 'run');
    await p.ready;
    const ping = (): number => {
      try {
        return Number(
          /(\d+) received/.exec(lab.exec(w.podNs, 'ping', ['-n', '-c', '3', '-W', '1', '-i', '0.2', b.workloads[0]!.podAddr4]))?.[1],
        );
      } catch {
        return 0;
      }
    };
    assert.equal(ping(), 3);
    /** Resolves when the most recent stats line satisfies `pred` (checked on every output chunk). */
    const latest = (pred: (state: string) => boolean): Promise<void> =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no such state; latest: ${JSON.stringify(p.latestStats())}`)), 20_000);
        const check = (): void => {
          const l = p.latestStats() as unknown as { state?: string } | undefined;
          if (l?.state !== undefined && pred(l.state)) {
            clearTimeout(timer);
            p.child.stdout!.off('data', check);
            resolve();
          }
        };
        p.child.stdout!.on('data', check);
        check();
      });
    const recovered = async (): Promise<void> => {
      await latest((s) => s === 'recovering');
      await latest((s) => s === 'running');
    };
    // 1. The program removed behind our back: the daemon notices, restarts the dataplane.
    lab.exec(a.ns, 'ip', ['link', 'set', 'dev', a.uplink, 'xdp', 'off']);
    await recovered();
    const after = ping();
    assert.equal(after, 3, `tunnel traffic after the program was put back: ${JSON.stringify(p.latestStats())}`);
    // 2. The uplink moved away (gone from this namespace) and brought back later: the daemon
    // keeps trying and recovers once the interface is usable again.
    const spare = createNetns('wr-spare');
    try {
      lab.exec(a.ns, 'ip', ['link', 'set', a.uplink, 'netns', spare.name]);
      await latest((s) => s === 'recovering');
      spare.ip('link', 'set', a.uplink, 'netns', a.ns);
      lab.exec(a.ns, 'ip', ['addr', 'add', `${a.underlay4}/24`, 'dev', a.uplink]);
      lab.exec(a.ns, 'ip', ['link', 'set', a.uplink, 'up']);
      await latest((s) => s === 'running');
      let got = 0;
      for (let i = 0; i < 5 && got < 3; i++) got = ping(); // the peer's ARP entry for us may be stale
      assert.equal(got, 3, 'tunnel traffic after the uplink came back');
    } finally {
      spare.close();
    }
    p.child.kill('SIGTERM');
    const ex = await p.exited;
    assert.equal(ex.code, 0, ex.stderr);
    assert.match(ex.stderr, /"event":"recovering".*ERR_UPLINK_GONE/);
    assert.match(ex.stderr, /"event":"recovering".*ERR_UPLINK_PROGRAM_DETACHED/);
    assert.match(ex.stderr, /"event":"recovered"/);
    assert.doesNotMatch(ex.stderr, STACK);
    assert.doesNotMatch(lab.exec(a.ns, 'ip', ['-d', 'link', 'show', a.uplink]), /prog\/xdp/);
  } finally {
    killLeftoverPinholes();
    lab.close();
  }
});

test('signals into every thread (node --cpu-prof: SIGPROF) neither fail the program load (verifier EAGAIN) nor end a worker (poll EINTR)', async () => {
  const lab = buildLab({ prefix: `ph-${process.pid}-sg`, sides: { a: 'pinhole', b: 'kernel' }, workloadQueues: 2 });
  const profDir = mkdtempSync(join(tmpdir(), 'ph-prof-'));
  try {
    const { a, b } = lab;
    const w = a.workloads[0]!;
    const file = join(dir, 'sig.yaml');
    writeFileSync(
      file,
      `uplink: { interface: ${a.uplink}, mode: auto }\napi: { socket: ${join(dir, 'sig.sock')} }\nconnections:\n  - { name: c0, local: { interface: ${w.iface} }, vxlan: { vni: ${w.vni}, remote: "${b.underlay4}" } }\n`,
    );
    // The profiler samples with SIGPROF many times a second, in every thread.
    const wrapper = join(profDir, 'node-prof.sh');
    writeFileSync(wrapper, `#!/bin/sh\nshift\nexec "${process.execPath}" --cpu-prof --cpu-prof-dir="${profDir}" "$@"\n`, { mode: 0o755 });
    const p = startPinhole(a.ns, ['--config', file, '--stats-interval', '200'], 30_000, 'run', [wrapper]);
    await p.ready;
    const out = lab.exec(w.podNs, 'ping', ['-n', '-c', '20', '-i', '0.05', '-W', '1', b.workloads[0]!.podAddr4]);
    assert.match(out, / 0% packet loss/);
    const fin = (await p.stop()) as unknown as { event: string };
    assert.equal(fin.event, 'stopped');
    const ex = await p.exited;
    assert.doesNotMatch(ex.stderr, /"event":"recovering"|EINTR|EAGAIN/, ex.stderr);
  } finally {
    killLeftoverPinholes();
    lab.close();
    rmSync(profDir, { recursive: true, force: true });
  }
});

for (const how of ['stdout closed', 'SIGQUIT'] as const) {
  test(`pinhole run: ${how}: the daemon stops cleanly (exit 0, no stack, nothing attached, socket gone)`, async () => {
    const lab = buildLab({ prefix: `ph-${process.pid}-oc`, sides: { a: 'pinhole', b: 'kernel' }, workloadQueues: 2 });
    try {
      const { a, b } = lab;
      const w = a.workloads[0]!;
      const file = join(dir, 'oc.yaml');
      const sock = join(dir, 'oc.sock');
      writeFileSync(
        file,
        `uplink: { interface: ${a.uplink}, mode: auto }\napi: { socket: ${sock} }\nconnections:\n  - { name: c0, local: { interface: ${w.iface} }, vxlan: { vni: ${w.vni}, remote: "${b.underlay4}" } }\n`,
      );
      const p = startPinhole(a.ns, ['--config', file, '--stats-interval', '50'], 20_000, 'run');
      await p.ready;
      if (how === 'stdout closed') p.child.stdout!.destroy();
      else p.child.kill('SIGQUIT');
      const ex = await p.exited;
      assert.equal(ex.code, 0, ex.stderr);
      assert.doesNotMatch(ex.stderr, STACK);
      assert.match(ex.stderr, /"event":"stopped"/);
      assert.ok(!existsSync(sock), 'the API socket is removed');
      for (const iface of [a.uplink, w.iface]) assert.doesNotMatch(lab.exec(a.ns, 'ip', ['-d', 'link', 'show', iface]), /prog\/xdp/);
    } finally {
      killLeftoverPinholes();
      lab.close();
    }
  });
}
