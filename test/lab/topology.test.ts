/**
 * The lab topology builder (src/control/lab/topology.ts) against the real kernel. With both nodes
 * on the kernel's own vxlan (the reference peer), over an IPv4 and an IPv6 underlay, direct and
 * through a router: pods reach each other over the overlay (IPv4 and IPv6), the nodes reach each
 * other outside the tunnel, and close() leaves no namespace behind. A build the kernel refuses
 * halfway leaves nothing behind either, and cleanupLab removes what a crashed run left.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requireRoot } from '../helpers/require.ts';
import { buildLab, cleanupLab, listNetns, type Lab, type LabOptions } from '../../src/control/lab/topology.ts';
import { PinholeError } from '../../src/sys/errors.ts';
import { iperf, startIperfServer } from '../../src/control/lab/traffic.ts';

requireRoot();

let counter = 0;
const newPrefix = (tag: string): string => `ph-${process.pid}-${++counter}-${tag}`;
const leftovers = (prefix: string): string[] => listNetns().filter((n) => n.startsWith(prefix));

function exited(child: ChildProcess): Promise<{ code: number; out: string }> {
  let out = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  return new Promise((resolve) => child.once('exit', (code, sig) => resolve({ code: code ?? (sig ? 128 : -1), out })));
}

/** `ping -c 3` from `ns` to `dst`; resolves to the number of replies (all pings of a lab run at once). */
async function ping(lab: Lab, ns: string, dst: string): Promise<{ dst: string; received: number; out: string }> {
  const { out } = await exited(lab.spawn(ns, 'ping', ['-n', '-c', '3', '-W', '2', '-i', '0.2', dst]));
  const m = /(\d+) received/.exec(out);
  return { dst, received: m ? Number(m[1]) : 0, out };
}

async function withLab(opts: LabOptions, fn: (lab: Lab) => Promise<void> | void): Promise<void> {
  const lab = buildLab(opts);
  try {
    await fn(lab);
  } finally {
    lab.close();
  }
  assert.deepEqual(leftovers(opts.prefix), [], 'close() removes every namespace of the lab');
}

for (const underlay of [4, 6] as const) {
  for (const router of [false, true]) {
    const name = `kernel/kernel, IPv${underlay} underlay, ${router ? 'through a router' : 'direct'}`;
    test(`${name}: pods ping over the overlay, nodes ping over the underlay`, async () => {
      const prefix = newPrefix(`k${underlay}${router ? 'r' : 'd'}`);
      // The last case also runs two connections (two VNIs, two pods per node).
      const connections = underlay === 6 && router ? [{ vni: 100 }, { vni: 4242 }] : [{ vni: 77 }];
      await withLab({ prefix, underlay, router, sides: { a: 'kernel', b: 'kernel' }, connections }, async (lab) => {
        assert.equal(lab.namespaces.length, 2 + (router ? 1 : 0) + 2 * connections.length);
        const pings: Promise<{ dst: string; received: number; out: string }>[] = [];
        for (let i = 0; i < connections.length; i++) {
          const pa = lab.a.workloads[i]!;
          const pb = lab.b.workloads[i]!;
          pings.push(ping(lab, pa.podNs, pb.podAddr4), ping(lab, pa.podNs, pb.podAddr6));
        }
        pings.push(ping(lab, lab.a.ns, lab.b.underlay4), ping(lab, lab.a.ns, lab.b.underlay6));
        for (const r of await Promise.all(pings)) assert.equal(r.received, 3, `ping ${r.dst}:\n${r.out}`);

        // The pods' traffic really went through the kernel's vxlan devices.
        for (let i = 0; i < connections.length; i++) {
          const w = lab.a.workloads[i]!;
          const vx = JSON.parse(lab.exec(lab.a.ns, 'ip', ['-d', '-s', '-j', 'link', 'show', 'dev', w.vxlan!])) as {
            address: string;
            mtu: number;
            master: string;
            linkinfo: { info_data: { id: number; port: number; local?: string; local6?: string; remote?: string; remote6?: string } };
            stats64: { tx: { packets: number }; rx: { packets: number } };
          }[];
          const d = vx[0]!.linkinfo.info_data;
          assert.equal(d.id, connections[i]!.vni);
          assert.equal(d.port, 4789);
          assert.equal(underlay === 4 ? d.local : d.local6, lab.a.tunnelAddr);
          assert.equal(underlay === 4 ? d.remote : d.remote6, lab.b.tunnelAddr);
          assert.equal(vx[0]!.master, w.bridge);
          assert.equal(vx[0]!.address, w.vxlanMac);
          assert.ok(vx[0]!.stats64.tx.packets >= 6 && vx[0]!.stats64.rx.packets >= 6, 'pings crossed vx0');
        }
      });
    });
  }
}

test('queues, MTUs, MACs, addresses without DAD; the pinhole side is bare', async () => {
  const prefix = newPrefix('shape');
  await withLab({ prefix, uplinkQueues: 3, workloadQueues: 2, uplinkMtu: 2000 }, (lab) => {
    assert.equal(lab.a.role, 'pinhole');
    assert.equal(lab.b.role, 'kernel');
    type Link = { ifname: string; mtu: number; address: string; num_tx_queues: number; num_rx_queues: number; operstate: string };
    const link = (ns: string, dev: string): Link =>
      (JSON.parse(lab.exec(ns, 'ip', ['-d', '-j', 'link', 'show', 'dev', dev])) as Link[])[0]!;
    for (const n of [lab.a, lab.b]) {
      const up = link(n.ns, n.uplink);
      assert.deepEqual([up.mtu, up.num_tx_queues, up.num_rx_queues, up.address], [2000, 3, 3, n.uplinkMac]);
      const w = n.workloads[0]!;
      const wl = link(n.ns, w.iface);
      assert.deepEqual([wl.mtu, wl.num_tx_queues, wl.num_rx_queues, wl.address], [1930, 2, 2, w.ifaceMac]);
      const pod = link(w.podNs, w.podIface);
      assert.deepEqual([pod.mtu, pod.address, pod.operstate], [1930, w.podMac, 'UP']);
      // Every address is usable at once: nothing tentative.
      for (const ns of [n.ns, w.podNs]) assert.doesNotMatch(lab.exec(ns, 'ip', ['addr']), /tentative/);
      assert.match(lab.exec(w.podNs, 'ethtool', ['-k', w.podIface]), /tx-checksumming: off/);
      assert.match(lab.exec(n.ns, 'ethtool', ['-k', n.uplink]), /generic-receive-offload: on/);
    }
    // Pinhole side: wl0 has no address at all and no kernel vxlan device exists.
    assert.equal(lab.exec(lab.a.ns, 'ip', ['addr', 'show', 'dev', 'wl0']).includes('inet'), false);
    assert.doesNotMatch(lab.exec(lab.a.ns, 'ip', ['link']), /vx0|br0/);
    assert.match(lab.exec(lab.b.ns, 'ip', ['link', 'show', 'dev', 'vx0']), /master br0/);
    // describe() is plain JSON and names everything.
    const d = JSON.parse(JSON.stringify(lab.describe())) as { namespaces: string[]; a: { underlay4: string } };
    assert.deepEqual(d.namespaces, lab.namespaces);
    assert.equal(d.a.underlay4, '198.18.0.1');
  });
});

test('an iperf3 client that never finishes is stopped at its deadline; the error says how far it got, and nothing is left running', async () => {
  await withLab({ prefix: newPrefix('iperf') }, async (lab) => {
    const wa = lab.a.workloads[0]!;
    const wb = lab.b.workloads[0]!;
    const srv = await startIperfServer(wb.podNs, { bind: wb.podAddr4, timeoutMs: 5000 });
    try {
      // Node A runs no forwarder: pod A's connection to pod B goes nowhere.
      await assert.rejects(iperf(wa.podNs, { server: wb.podAddr4, seconds: 1, timeoutMs: 1500 }), (e: PinholeError) => {
        assert.equal(e.code, 'ERR_LAB_TIMEOUT');
        assert.match(
          e.message,
          /no result within 1500 ms; interrupted, it reported: \{"control":false,"connected":0,"intervals":0,"sentBytes":0/,
        );
        return true;
      });
      assert.equal(execFileSync('ip', ['netns', 'pids', wa.podNs], { encoding: 'utf8' }).trim(), '', 'no iperf3 left in pod A');
      assert.match(srv.output(), /Server listening on 5201/, "the server's log is there for a failure's message");
    } finally {
      srv.stop();
    }
  });
});

test('a UDP run whose stream never connected is started once more (iperf3 never resends its connect datagram), and says so', async () => {
  // The kernel here has no tc actions to drop exactly that one datagram, so the client is a
  // stand-in with iperf3's behaviour: its first run waits for the stream's answer until it is
  // interrupted, then prints the JSON iperf3 prints then (no stream connected); the second run
  // finishes. What is under test is the lab's retry, not iperf3.
  const dir = mkdtempSync(join(tmpdir(), 'ph-iperf-'));
  const runs = join(dir, 'runs');
  // Interrupted with the control connection up (the server's cookie) and no stream connected.
  const interrupted = {
    start: { cookie: 'c00k1e', connected: [] },
    intervals: [],
    end: {},
    error: 'interrupt - the client has terminated',
  };
  const sum = { seconds: 1, bytes: 1250000, bits_per_second: 1e7 };
  const finished = {
    start: { connected: [{}], test_start: { protocol: 'UDP' } },
    intervals: [{}],
    end: { sum_sent: sum, sum_received: sum },
  };
  writeFileSync(join(dir, 'interrupted.json'), JSON.stringify(interrupted));
  writeFileSync(join(dir, 'finished.json'), JSON.stringify(finished));
  writeFileSync(
    join(dir, 'iperf3'),
    [
      '#!/bin/sh',
      `echo run >> ${runs}`,
      `if [ "$(wc -l < ${runs})" -eq 1 ]; then`,
      `  trap 'cat ${dir}/interrupted.json; exit 1' INT`,
      '  while :; do sleep 0.05; done',
      'fi',
      `cat ${dir}/finished.json`,
    ].join('\n'),
    { mode: 0o755 },
  );
  const path = process.env.PATH;
  process.env.PATH = `${dir}:${path}`;
  try {
    await withLab({ prefix: newPrefix('iperfu') }, async (lab) => {
      const r = await iperf(lab.a.workloads[0]!.podNs, { server: '198.19.0.2', seconds: 1, udp: true, timeoutMs: 1000 });
      assert.equal(readFileSync(runs, 'utf8'), 'run\nrun\n', 'two runs');
      assert.equal(r.connectRetries, 1, 'the result says it was started once more');
      assert.equal(r.receivedBps, 1e7);
      // A TCP run is not started again: its connect is the kernel's, with its own retries.
      writeFileSync(runs, '');
      const tcp = (e: PinholeError): boolean => {
        assert.equal(e.code, 'ERR_LAB_TIMEOUT');
        assert.match(e.message, /no result within 1000 ms; interrupted, it reported: \{"control":true,"connected":0/);
        return true;
      };
      await assert.rejects(iperf(lab.a.workloads[0]!.podNs, { server: '198.19.0.2', seconds: 1, timeoutMs: 1000 }), tcp);
      assert.equal(readFileSync(runs, 'utf8'), 'run\n', 'one run');
      // Nor is a UDP run whose control connection never came up: that is no lost stream datagram.
      writeFileSync(runs, '');
      writeFileSync(join(dir, 'interrupted.json'), JSON.stringify({ ...interrupted, start: { connected: [] } }));
      await assert.rejects(
        iperf(lab.a.workloads[0]!.podNs, { server: '198.19.0.2', seconds: 1, udp: true, timeoutMs: 1000 }),
        /"control":false/,
      );
      assert.equal(readFileSync(runs, 'utf8'), 'run\n', 'one run');
    });
  } finally {
    process.env.PATH = path;
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a build the kernel refuses halfway leaves nothing behind', () => {
  // Early: veths accept at most 65535 bytes, refused after the namespaces exist.
  const early = newPrefix('fail1');
  assert.throws(
    () => buildLab({ prefix: early, uplinkMtu: 70000, workloadMtu: 1500 }),
    (e: unknown) => e instanceof PinholeError && e.code === 'ERR_LAB_COMMAND' && /mtu 70000/.test(e.message),
  );
  assert.deepEqual(leftovers(early), []);
  // Late: the last step, a kernel vxlan device whose MTU does not fit the IPv6 underlay.
  const late = newPrefix('fail2');
  assert.throws(
    () => buildLab({ prefix: late, underlay: 6, router: true, sides: { a: 'kernel', b: 'kernel' }, workloadMtu: 1500 }),
    (e: unknown) => e instanceof PinholeError && e.code === 'ERR_LAB_COMMAND' && /vx0 mtu 1500/.test(e.message),
  );
  assert.deepEqual(leftovers(late), []);
  // Options are checked before anything is created.
  assert.throws(() => buildLab({ prefix: newPrefix('fail3'), connections: [{ vni: 5 }, { vni: 5 }] }), { code: 'ERR_LAB_OPTIONS' });
  assert.throws(() => cleanupLab(''), { code: 'ERR_LAB_OPTIONS' });
});

test('cleanupLab removes what a crashed run left, processes inside included', async () => {
  const prefix = newPrefix('crash');
  const lab = buildLab({ prefix, router: true, connections: [{ vni: 1 }, { vni: 2 }] });
  try {
    const sleeper = lab.spawn(lab.a.ns, 'sleep', ['30']);
    const gone = exited(sleeper);
    const removed = cleanupLab(prefix, { kill: true });
    assert.deepEqual([...removed].sort(), [...lab.namespaces].sort());
    assert.equal((await gone).code, 128, 'the process inside was killed');
    assert.deepEqual(leftovers(prefix), []);
    assert.deepEqual(cleanupLab(prefix), [], 'nothing left the second time');
  } finally {
    lab.close(); // idempotent after cleanupLab
  }
});
