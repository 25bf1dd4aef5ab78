/**
 * `pinhole demo` and `pinhole lab up|status|down` as a user runs them (bin/pinhole.js, root).
 * The lab has stable names (phlab-*, /run/pinhole/lab, /run/pinhole/demo), so these tests run one
 * after another (the runner's --test-concurrency=1) and each starts with `lab down` in case a
 * previous run left something.
 *
 *  - the demo exits 0 well within a minute, its table has every row, with numbers from the run,
 *    and it leaves nothing behind;
 *  - `lab up` writes config files pinhole accepts, `lab status --json` describes the lab, and
 *    `lab down` removes every namespace and file;
 *  - a demo SIGKILLed mid-run, together with its pinhole daemons, leaves namespaces, XDP programs
 *    and files that `lab down` then removes: no namespace (so no veth) survives, every XDP program
 *    that was attached is freed, nothing is pinned, no pinhole process runs;
 *  - with PATH lacking ip, ping or iperf3 (a fresh machine), `demo` and `lab up` fail at once with
 *    ERR_LAB_TOOLS_MISSING naming the programs and their Debian packages, and build nothing.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requireRoot } from '../helpers/require.ts';
import { PINHOLE_BIN, runCli } from '../helpers/cli.ts';
import { loadConfig } from '../../src/config/index.ts';
import { listNetns } from '../../src/control/lab/topology.ts';
import { LAB_SOCKET_DIR, LAB_STATE_DIR, labPins, type LabStatus } from '../../src/control/lab/commands.ts';

requireRoot();

function labNamespaces(): string[] {
  return listNetns().filter((n) => n.startsWith('phlab-'));
}

function labDown(): void {
  const r = runCli(['lab', 'down'], { timeoutMs: 60_000 });
  assert.equal(r.code, 0, `lab down: ${r.stderr}`);
}

/** Pids of pinhole CLI processes of the lab (daemons with a lab config, demos). */
function labPinholes(): number[] {
  const out: number[] = [];
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p) || Number(p) === process.pid) continue;
    let cmd = '';
    try {
      cmd = readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0').join(' ');
    } catch {
      continue;
    }
    if (cmd.includes(PINHOLE_BIN) && (cmd.includes(LAB_STATE_DIR) || / demo( |$)/.test(cmd))) out.push(Number(p));
  }
  return out;
}

/** Pids whose network namespace is one of `inodes`. */
function processesInNetns(inodes: Set<number>): number[] {
  const out: number[] = [];
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      const m = /net:\[(\d+)\]/.exec(readlinkSync(`/proc/${p}/ns/net`));
      if (m && inodes.has(Number(m[1]))) out.push(Number(p));
    } catch {
      // gone, or a kernel thread
    }
  }
  return out;
}

/** Whether `pid` runs (a zombie does not: it holds no namespace; PID 1 may be slow to reap it). */
function running(pid: number): boolean {
  try {
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return false;
  }
}

function progExists(id: number): boolean {
  try {
    execFileSync('bpftool', ['prog', 'show', 'id', String(id)], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Waits (polling: namespace and program teardown is asynchronous in the kernel) until `fn` holds. */
async function eventually(what: string, fn: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > deadline) assert.fail(`${what} (after ${ms} ms)`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function assertNothingLeft(): void {
  assert.deepEqual(labNamespaces(), [], 'no lab namespace');
  assert.equal(existsSync(LAB_STATE_DIR), false, `${LAB_STATE_DIR} removed`);
  assert.equal(existsSync(LAB_SOCKET_DIR), false, `${LAB_SOCKET_DIR} removed`);
  assert.deepEqual(labPins(), [], 'nothing pinned');
  assert.deepEqual(labPinholes(), [], 'no pinhole process of the lab');
}

/** The value column of the table row whose label starts with `label`. */
function row(table: string, label: string): string {
  const line = table.split('\n').find((l) => l.startsWith(label));
  assert.ok(line, `row "${label}" in:\n${table}`);
  return line.slice(label.length).trim();
}

const n = (s: string): number => Number(s.replace(/,/g, ''));

test('pinhole demo: exits 0 well within a minute, one table with numbers from the run, nothing left', async () => {
  labDown();
  const t0 = Date.now();
  const r = runCli(['demo'], { timeoutMs: 60_000 });
  const elapsed = Date.now() - t0;
  assert.equal(r.code, 0, `demo failed:\n${r.stderr}\n${r.stdout}`);
  assert.ok(elapsed < 60_000, `took ${elapsed} ms`);
  const t = r.stdout;
  // Progress: one line per step, with timings, on stderr.
  for (const step of [
    'clean up',
    'build the lab',
    'start pinhole',
    'tunnel check',
    'ping pod A',
    'iperf3 TCP',
    'iperf3 UDP',
    'stop pinhole',
    'remove the lab',
  ]) {
    assert.match(r.stderr, new RegExp(`^\\[\\s*[\\d.]+s\\] ${step}.*\\([\\d.]+s\\)$`, 'm'), `progress line for "${step}":\n${r.stderr}`);
  }

  for (const node of ['a', 'b']) {
    assert.match(row(t, `uplink mode, node ${node}`), /^(afxdp|afpacket) \(/);
    assert.match(row(t, `workload, node ${node}`), /^(afxdp|afpacket) on wl0/);
  }
  for (const fam of ['IPv4', 'IPv6']) {
    const m = /^(\d+)\/(\d+) replies, ([\d.]+)% loss, rtt min\/avg\/max ([\d.]+)\/([\d.]+)\/([\d.]+) ms$/.exec(
      row(t, `ping pod A → pod B, ${fam}`),
    );
    assert.ok(m, `ping ${fam} row`);
    assert.equal(Number(m[2]), 20, '20 echo requests');
    assert.ok(Number(m[1]) >= 19, `${fam}: ${m[1]}/20 replies through the tunnel`);
    assert.ok(Number(m[4]) > 0 && Number(m[4]) <= Number(m[5]) && Number(m[5]) <= Number(m[6]), `${fam} rtt min ≤ avg ≤ max`);
  }
  const tcp = /^([\d.]+) Gbit\/s, ([\d,]+) retransmits$/.exec(row(t, 'TCP pod A → pod B, 2 s'));
  assert.ok(tcp, 'TCP row');
  assert.ok(Number(tcp[1]) > 0.01, `TCP ${tcp[1]} Gbit/s`);
  const udp = /^([\d.]+) Gbit\/s delivered of ([\d.]+) Gbit\/s sent, ([\d.]+)% loss \(([\d,]+)\/([\d,]+)\)$/.exec(
    row(t, 'UDP pod A → pod B, 2 s, 1400 B at 500M'),
  );
  assert.ok(udp, 'UDP row');
  assert.ok(Number(udp[1]) > 0.01 && n(udp[5]) > 1000, `UDP ${udp[1]} Gbit/s of ${udp[5]} datagrams`);

  const counters = (node: string): { encap: number; decap: number } => {
    const m = /^encap ([\d,]+) frames \([^)]+\), decap ([\d,]+) frames \([^)]+\)$/.exec(row(t, `connection pods (VNI 100), node ${node}`));
    assert.ok(m, `counters row of node ${node}`);
    return { encap: n(m[1]), decap: n(m[2]) };
  };
  const a = counters('a');
  const b = counters('b');
  // Pod A sent at least the UDP datagrams, the TCP stream and 40 echo requests through node a...
  assert.ok(a.encap >= n(udp[5]), `node a encapsulated ${a.encap} frames, UDP alone sent ${udp[5]}`);
  // ...node b decapsulated them (a veth never drops; an overrun receive ring could), and the replies came back.
  // The two nodes' counters are read one after the other while the pods' last frames (a TCP
  // teardown, neighbour probes) may still pass: node b can count a few that node a sent after its read.
  assert.ok(b.decap >= a.encap * 0.9 && b.decap <= a.encap + 8, `node b decapsulated ${b.decap} of ${a.encap}`);
  assert.ok(b.encap >= 40 && a.decap >= 40 && a.decap <= b.encap, `replies: node b encap ${b.encap}, node a decap ${a.decap}`);
  for (const node of ['a', 'b']) assert.ok(row(t, `drops, node ${node}`).length > 0);

  for (const fam of ['IPv4', 'IPv6']) {
    const m = /^(\d+)\/(\d+) replies, ([\d.]+)% loss/.exec(row(t, `host ping node a → node b, ${fam}`));
    assert.ok(m, `host ping ${fam} row`);
    assert.ok(Number(m[2]) >= 20, `host ping ${fam} ran during the whole run (${m[2]} sent)`);
    assert.ok(Number(m[1]) >= Number(m[2]) - 1, `the host's own ${fam} ping kept flowing: ${m[1]}/${m[2]}`);
  }
  const host = /^([\d.]+) Gbit\/s, ([\d,]+) retransmits, ([\d.]+) s$/.exec(row(t, 'host TCP node a → node b, paced 200M'));
  assert.ok(host, 'host TCP row');
  assert.ok(Number(host[1]) > 0.05, `host TCP ${host[1]} Gbit/s during the run`);
  assert.ok(Number(host[3]) >= 4, `host TCP ran ${host[3]} s, the length of the pod traffic`);

  assertNothingLeft();
});

test('lab up writes valid configs, lab status --json describes the lab, lab down leaves nothing', async () => {
  labDown();
  try {
    const up = runCli(['lab', 'up', '--json']);
    assert.equal(up.code, 0, up.stderr);
    const u = JSON.parse(up.stdout) as {
      nodes: { node: string; ns: string; config: string; socket: string }[];
      plan: { namespaces: string[] };
    };
    assert.deepEqual(u.plan.namespaces, ['phlab-a', 'phlab-b', 'phlab-pA0', 'phlab-pB0']);
    for (const f of u.nodes) {
      const c = await loadConfig(f.config);
      assert.equal(c.uplink.interface, 'up0');
      assert.equal(c.api.socket, f.socket);
      assert.equal(c.connections.length, 1);
      assert.equal(c.connections[0]!.local.interface, 'wl0');
      assert.equal(c.connections[0]!.vxlan!.remote, f.node === 'a' ? '198.18.0.2' : '198.18.0.1');
    }

    const st = runCli(['lab', 'status', '--json']);
    assert.equal(st.code, 0, st.stderr);
    const s = JSON.parse(st.stdout) as LabStatus;
    assert.equal(s.up, true);
    assert.deepEqual(
      s.namespaces.map((x) => [x.name, x.role, x.present]),
      [
        ['phlab-a', 'node a', true],
        ['phlab-b', 'node b', true],
        ['phlab-pA0', 'pod A0', true],
        ['phlab-pB0', 'pod B0', true],
      ],
    );
    const nodeA = s.namespaces[0]!;
    assert.deepEqual(
      nodeA.interfaces.map((i) => [i.name, i.state, i.addresses]),
      [
        ['up0', 'UP', ['198.18.0.1/24', '2001:db8::1/64']],
        ['wl0', 'UP', []],
      ],
    );
    assert.deepEqual(s.namespaces[2]!.interfaces[0]!.addresses, ['198.19.0.1/24', '2001:db8:100::1/64']);
    assert.deepEqual(
      s.nodes.map((x) => [x.node, x.configExists, x.pinhole.length]),
      [
        ['a', true, 0],
        ['b', true, 0],
      ],
    );
    assert.equal(s.demo, null);

    // A second `up` over an idle lab replaces it.
    const again = runCli(['lab', 'up']);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /replaced a leftover lab/);
    assert.match(again.stdout, /ip netns exec phlab-a .* run --config \/run\/pinhole\/lab\/node-a\.yaml/);

    const text = runCli(['lab', 'status']);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /^lab phlab: up, 4 of 4 namespaces/);
    assert.match(text.stdout, /node a\s+phlab-a\s+\/run\/pinhole\/lab\/node-a\.yaml\s+not running/);
  } finally {
    labDown();
  }
  assertNothingLeft();
  const st = runCli(['lab', 'status', '--json']);
  assert.equal((JSON.parse(st.stdout) as LabStatus).present, false);
  const down = runCli(['lab', 'down']);
  assert.equal(down.code, 0);
  assert.match(down.stdout, /nothing to remove/, 'lab down is idempotent');
});

test('lab down after a demo SIGKILLed mid-run (with its daemons): no namespace, veth, XDP program, pin or process left', async () => {
  labDown();
  const demo = spawn(process.execPath, [PINHOLE_BIN, 'demo'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  const exited = new Promise<void>((resolve) => demo.once('exit', () => resolve()));
  try {
    // Mid-run: the pods' pings are done and iperf3 TCP runs, with the host's ping and TCP stream.
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the demo never reached its traffic:\n${stderr}`)), 45_000);
      demo.stderr!.on('data', (d: Buffer) => {
        stderr += d.toString();
        if (/\] ping pod A → pod B/.test(stderr)) {
          clearTimeout(timer);
          resolve();
        }
      });
      demo.once('exit', () => reject(new Error(`the demo exited early:\n${stderr}`)));
    });
    const s = JSON.parse(runCli(['lab', 'status', '--json']).stdout) as LabStatus;
    const inodes = new Set(s.namespaces.filter((x) => x.present).map((x) => statSync(`/run/netns/${x.name}`).ino));
    const progs = s.namespaces.flatMap((x) => x.interfaces.flatMap((i) => i.xdp.map((p) => p.id)));
    const daemons = s.nodes.flatMap((x) => x.pinhole.map((p) => p.pid));
    assert.equal(inodes.size, 4);
    assert.equal(daemons.length, 2, 'a pinhole on each node');
    assert.ok(progs.length >= 2, `XDP programs attached in the lab: ${progs.join(', ')}`);
    assert.ok(processesInNetns(inodes).length > 2, 'the daemons and the traffic tools run in the lab');
    assert.equal(s.demo?.pid, demo.pid, 'lab status names the running demo');

    demo.kill('SIGKILL');
    for (const pid of daemons) process.kill(pid, 'SIGKILL');
    await exited;
    assert.ok(labNamespaces().length > 0, 'the SIGKILLed demo left its lab');

    const down = runCli(['lab', 'down'], { timeoutMs: 60_000 });
    assert.equal(down.code, 0, down.stderr);
    assert.match(down.stdout, /removed namespaces/);
    assertNothingLeft();
    assert.deepEqual(processesInNetns(inodes), [], 'no process holds a lab namespace');
    for (const pid of daemons) assert.equal(running(pid), false, `daemon ${pid} gone`);
    // Without a process or a name holding them, the namespaces are destroyed, their veths with
    // them, and the XDP programs attached to those veths are freed (asynchronously).
    await eventually(`XDP programs ${progs.join(', ')} freed`, () => progs.every((id) => !progExists(id)));
    const bpffs = '/sys/fs/bpf';
    if (existsSync(bpffs)) {
      assert.deepEqual(
        readdirSync(bpffs).filter((x) => x.includes('phlab')),
        [],
        'no lab pin in bpffs',
      );
    }
    assert.doesNotMatch(
      execFileSync('ip', ['-o', 'link', 'show', 'type', 'veth'], { encoding: 'utf8' }),
      /\b(up0|wl0)@/,
      'no lab veth in the root namespace',
    );
  } finally {
    if (demo.exitCode === null && demo.signalCode === null) demo.kill('SIGKILL');
    labDown();
  }
});

test('Ctrl-C (SIGINT) mid-run: the demo stops both daemons, removes the lab and exits 130', async () => {
  labDown();
  const demo = spawn(process.execPath, [PINHOLE_BIN, 'demo'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  const exited = new Promise<number | null>((resolve) => demo.once('exit', (code) => resolve(code)));
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the demo never reached its traffic:\n${stderr}`)), 45_000);
      demo.stderr!.on('data', (d: Buffer) => {
        stderr += d.toString();
        if (/\] ping pod A → pod B/.test(stderr)) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    demo.kill('SIGINT');
    assert.equal(await exited, 130, stderr);
    assert.match(stderr, /interrupted: stopping pinhole and removing the lab/);
    assertNothingLeft();
  } finally {
    if (demo.exitCode === null && demo.signalCode === null) demo.kill('SIGKILL');
    labDown();
  }
});

test('demo --keep: the lab and both daemons stay (status over their API sockets), a second demo is refused, lab down removes it all', async () => {
  labDown();
  try {
    const r = runCli(['demo', '--keep'], { timeoutMs: 60_000 });
    assert.equal(r.code, 0, `demo --keep failed:\n${r.stderr}\n${r.stdout}`);
    assert.match(r.stdout, /^The lab is up; pinhole runs on node a \(pid \d+\) and node b \(pid \d+\)/m);
    assert.match(r.stdout, /status --socket \/run\/pinhole\/demo\/node-a\.sock$/m);
    assert.match(r.stdout, /lab down$/m);
    assert.doesNotMatch(r.stderr, /stop pinhole|remove the lab/);
    const s = JSON.parse(runCli(['lab', 'status', '--json']).stdout) as LabStatus;
    assert.equal(s.up, true);
    assert.deepEqual(
      s.nodes.map((x) => [x.pinhole.length, x.socketExists]),
      [
        [1, true],
        [1, true],
      ],
    );
    const st = runCli(['status', '--json', '--socket', '/run/pinhole/demo/node-b.sock']);
    assert.equal(st.code, 0, st.stderr);
    const status = JSON.parse(st.stdout) as { connections: { name: string; counters: Record<string, number> }[] };
    assert.ok(status.connections[0]!.counters.decap_frames! > 1000, 'node b counted the demo traffic');

    const again = runCli(['demo'], { timeoutMs: 60_000 });
    assert.equal(again.code, 1);
    assert.match(again.stderr, /ERR_LAB_BUSY/);
    assert.equal(
      (JSON.parse(runCli(['lab', 'status', '--json']).stdout) as LabStatus).nodes[0]!.pinhole.length,
      1,
      'the kept lab is untouched',
    );
    const up = runCli(['lab', 'up']);
    assert.equal(up.code, 1);
    assert.match(up.stderr, /ERR_LAB_BUSY/);

    const down = runCli(['lab', 'down']);
    assert.equal(down.code, 0, down.stderr);
    assert.match(
      down.stdout,
      /\(SIGTERM\): .*pinhole\.js run --config \/run\/pinhole\/lab\/node-a\.yaml/,
      'the daemons stopped on SIGTERM',
    );
  } finally {
    labDown();
  }
  assertNothingLeft();
});

/** Where `name` is on this machine's PATH. */
function which(name: string): string {
  for (const d of (process.env.PATH ?? '').split(':')) {
    if (d && existsSync(join(d, name))) return join(d, name);
  }
  assert.fail(`${name} is not installed here`);
}

test('a fresh machine without ip, ping or iperf3: demo and lab up stop at once naming the programs and their Debian packages; nothing is built', () => {
  labDown();
  const bin = mkdtempSync(join(tmpdir(), 'ph-demo-bin-'));
  try {
    // PATH holds node only (bin/pinhole.js is started by absolute path, as `npx` would).
    symlinkSync(process.execPath, join(bin, 'node'));
    const runWithPath = (args: string[]): { code: number | null; stdout: string; stderr: string } => {
      const r = spawnSync(process.execPath, [PINHOLE_BIN, ...args], {
        encoding: 'utf8',
        timeout: 30_000,
        env: { ...process.env, PATH: bin },
      });
      return { code: r.status, stdout: r.stdout, stderr: r.stderr };
    };
    let r = runWithPath(['demo']);
    assert.equal(r.code, 1, r.stderr);
    assert.equal(r.stdout, '');
    assert.match(
      r.stderr,
      /^pinhole: ERR_LAB_TOOLS_MISSING: the demo needs programs that are not installed \(not in PATH\): ip \(.*package iproute2\), ping \(.*package iputils-ping\), iperf3 \(.*package iperf3\)\. On Debian\/Ubuntu: sudo apt-get install iproute2 iputils-ping iperf3\. Nothing was changed\.\n$/,
    );
    assertNothingLeft();

    r = runWithPath(['lab', 'up']);
    assert.equal(r.code, 1, r.stderr);
    assert.match(
      r.stderr,
      /^pinhole: ERR_LAB_TOOLS_MISSING: pinhole lab up needs .*: ip \(.*package iproute2\)\. .*apt-get install iproute2\. /,
    );
    assertNothingLeft();

    // The audit's case: everything but iperf3. Before, the demo built the lab, started both
    // daemons and failed 4 s later (ERR_LAB_TRAFFIC: exec of iperf3 failed).
    symlinkSync(which('ip'), join(bin, 'ip'));
    symlinkSync(which('ping'), join(bin, 'ping'));
    r = runWithPath(['demo']);
    assert.equal(r.code, 1, r.stderr);
    assert.match(
      r.stderr,
      /^pinhole: ERR_LAB_TOOLS_MISSING: the demo needs .*: iperf3 \(.*package iperf3\)\. On Debian\/Ubuntu: sudo apt-get install iperf3\. /,
    );
    assert.doesNotMatch(r.stderr, /build the lab|start pinhole/, 'no step ran');
    assertNothingLeft();
  } finally {
    rmSync(bin, { recursive: true, force: true });
    labDown();
  }
});
