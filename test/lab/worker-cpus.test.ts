/**
 * `uplink.cpus`: each dataplane worker thread pins itself to its CPU (sched_setaffinity on its own
 * thread), the rest of the process stays where it was started. Checked in the kernel's view of
 * the process (/proc/PID/task/TID/status: Cpus_allowed_list; stat: the CPU a thread last ran on),
 * with traffic through the tunnel; and a CPU the process may not use fails the start with
 * ERR_DATAPLANE_CPU, leaving no program attached.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import test from 'node:test';
import { requireRoot } from '../helpers/require.ts';
import { startPinhole, stateUntil } from '../helpers/pinhole-proc.ts';
import { configFor, noXdp, ping, startRun, withLab, type RunLine } from '../helpers/vxlan-lab.ts';

requireRoot();

interface ThreadView {
  tid: number;
  allowed: string;
  lastCpu: number;
}

/** Every thread of `pid`: its allowed CPUs as the kernel prints them, and the CPU it last ran on. */
function threadsOf(pid: number): ThreadView[] {
  return readdirSync(`/proc/${pid}/task`).map((t) => {
    const status = readFileSync(`/proc/${pid}/task/${t}/status`, 'utf8');
    const allowed = /^Cpus_allowed_list:\s*(\S+)$/m.exec(status)![1]!;
    // stat: the command name may hold spaces; fields after ')' start at field 3 (state).
    const stat = readFileSync(`/proc/${pid}/task/${t}/stat`, 'utf8');
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { tid: Number(t), allowed, lastCpu: Number(rest[39 - 3]) };
  });
}

test('uplink.cpus: the workers run on their CPU, the main thread and the runtime threads stay where the process started; traffic flows; after a recovery the workers are on their CPU again', async (t) => {
  const cpus = availableParallelism();
  assert.ok(cpus >= 2, `this test needs two CPUs (have ${cpus})`);
  const workerCpu = cpus - 1;
  await withLab('cpus', { sides: { a: 'pinhole', b: 'kernel' }, uplinkQueues: 2 }, async (lab) => {
    const a = lab.a;
    const file = configFor(a, lab.b, 'afxdp', [4], '', undefined, `queues: 2, cpus: [${workerCpu}]`);
    // Started on CPU 0: that is where everything but the workers stays.
    const p = startRun(a, file, ['taskset', '-c', '0']);
    await p.ready;
    const pw = a.workloads[0]!;
    const r = ping(lab, pw.podNs, lab.b.workloads[0]!.podAddr4, 20);
    assert.equal(r.received, r.sent, 'ping through the tunnel');
    const threads = threadsOf(p.child.pid!);
    const pinned = threads.filter((x) => x.allowed === String(workerCpu));
    t.diagnostic(`threads: ${threads.map((x) => `${x.tid}:${x.allowed}@${x.lastCpu}`).join(' ')}`);
    assert.equal(pinned.length, 2, 'one thread per worker (two queues) on the configured CPU');
    for (const x of pinned) assert.equal(x.lastCpu, workerCpu, `worker thread ${x.tid} ran on CPU ${workerCpu}`);
    const rest = threads.filter((x) => x.allowed !== String(workerCpu));
    assert.ok(rest.length >= 2, 'the main thread and the runtime threads');
    for (const x of rest) assert.equal(x.allowed, '0', `thread ${x.tid} stays where the process started`);

    // The program detached behind our back: the daemon restarts the dataplane from the same plan;
    // its workers are on the configured CPU again (whether the threads are new or kept).
    lab.exec(a.ns, 'ip', ['link', 'set', 'dev', a.uplink, 'xdp', 'off']);
    await stateUntil(p, (s) => s === 'recovering');
    await stateUntil(p, (s) => s === 'running');
    const again = threadsOf(p.child.pid!);
    const repinned = again.filter((x) => x.allowed === String(workerCpu));
    t.diagnostic(`threads after recovery: ${again.map((x) => `${x.tid}:${x.allowed}@${x.lastCpu}`).join(' ')}`);
    assert.equal(repinned.length, 2, 'two workers on the configured CPU after the recovery');
    const r2 = ping(lab, pw.podNs, lab.b.workloads[0]!.podAddr4, 20);
    assert.equal(r2.received, r2.sent, 'ping through the tunnel after the recovery: none lost');
    for (const x of threadsOf(p.child.pid!).filter((y) => y.allowed === String(workerCpu))) {
      assert.equal(x.lastCpu, workerCpu, `worker thread ${x.tid} ran on CPU ${workerCpu}`);
    }
    for (const x of again.filter((y) => y.allowed !== String(workerCpu))) assert.equal(x.allowed, '0', `thread ${x.tid} stays on CPU 0`);
    const fin = (await p.stop()) as unknown as RunLine;
    assert.deepEqual(fin.drops, {}, 'no drops');
    // Two queues on one CPU: the operator is told they share it.
    assert.match((await p.exited).stderr, /"event":"workers-share-cpus","queues":2,"cpus":\[\d+\]/);
  });
});

test('uplink.cpus naming a CPU the process may not use: ERR_DATAPLANE_CPU, exit 1, nothing left attached', async () => {
  await withLab('cpubad', { sides: { a: 'pinhole', b: 'kernel' } }, async (lab) => {
    const a = lab.a;
    // Two queues, two workers: whichever reports first names itself.
    const file = configFor(a, lab.b, 'afxdp', [4], '', undefined, 'cpus: [1023]');
    const p = startRun(a, file);
    const r = await p.exited;
    assert.equal(r.code, 1, r.stderr);
    assert.match(
      r.stderr,
      /^pinhole: ERR_DATAPLANE_CPU: worker [01]: pin to CPU 1023 \(uplink\.cpus\): not a CPU this process may run on/m,
    );
    noXdp(lab, a.ns, a.uplink);
    noXdp(lab, a.ns, a.workloads[0]!.iface);
  });
});

test('pinhole uplink --cpus: the same for the one-shot command (its workers on the CPU, the rest where it started)', async () => {
  const workerCpu = availableParallelism() - 1;
  assert.ok(workerCpu >= 1, 'this test needs two CPUs');
  await withLab('cpuup', { sides: { a: 'pinhole', b: 'kernel' }, uplinkQueues: 2 }, async (lab) => {
    const p = startPinhole(lab.a.ns, ['--iface', lab.a.uplink, '--mode', 'afxdp', '--cpus', String(workerCpu)], 20_000, 'uplink', [
      'taskset',
      '-c',
      '0',
    ]);
    const ready = await p.ready;
    assert.equal(ready.queues, 2);
    const threads = threadsOf(p.child.pid!);
    const pinned = threads.filter((x) => x.allowed === String(workerCpu));
    assert.equal(pinned.length, 2, 'one thread per worker on the CPU');
    for (const x of threads.filter((t) => t.allowed !== String(workerCpu))) assert.equal(x.allowed, '0');
    await p.stop();
    noXdp(lab, lab.a.ns, lab.a.uplink);
  });
});

/** Frames the dataplane received on all its ports, from a stats line. */
const received = (l: RunLine): number => Object.values(l.ports).reduce((n, c) => n + (c.rx_frames ?? 0), 0);

/** Nanoseconds thread `tid` of `pid` has run (schedstat's first field). */
function cpuNs(pid: number, tid: number): number {
  return Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
}

test('uplink.spinUs: a worker keeps polling after each frame (its CPU busy while pings come 50 ms apart), sleeps once the traffic stops and while the link is down, and carries traffic after a flap', async (t) => {
  const workerCpu = availableParallelism() - 1;
  assert.ok(workerCpu >= 1, 'this test needs two CPUs');
  await withLab('spin', { sides: { a: 'pinhole', b: 'kernel' }, uplinkQueues: 1 }, async (lab) => {
    const a = lab.a;
    // 200 ms of polling after a frame: longer than the pings' 50 ms gaps.
    const file = configFor(a, lab.b, 'afxdp', [4], '', undefined, `cpus: [${workerCpu}], spinUs: 200000`);
    const p = startRun(a, file, ['taskset', '-c', '0']);
    await p.ready;
    const pid = p.child.pid!;
    const worker = threadsOf(pid).filter((x) => x.allowed === String(workerCpu));
    assert.equal(worker.length, 1, 'one worker thread on its CPU');
    const tid = worker[0]!.tid;
    const share = (ns0: number, t0: number): number => (cpuNs(pid, tid) - ns0) / ((performance.now() - t0) * 1e6);

    let ns0 = cpuNs(pid, tid);
    let t0 = performance.now();
    const r = ping(lab, a.workloads[0]!.podNs, lab.b.workloads[0]!.podAddr4, 20, 0.05);
    assert.equal(r.received, r.sent, 'ping through the tunnel');
    const busy = share(ns0, t0);

    // The traffic stopped: after the last spin (200 ms) the worker sleeps in poll(). The interval
    // is the measurement itself (CPU time over wall time), not a wait for an event. A frame in it
    // (a pod's ARP refresh, say) is traffic too and earns its 200 ms: counted from the stats lines.
    await new Promise((res) => setTimeout(res, 300));
    const before = received(await p.nextStats());
    ns0 = cpuNs(pid, tid);
    t0 = performance.now();
    await new Promise((res) => setTimeout(res, 2000));
    const idle = share(ns0, t0);
    const stray = received(await p.nextStats()) - before;
    const allowed = 0.1 + (stray * 0.2) / 2;
    t.diagnostic(
      `worker CPU share: ${(busy * 100).toFixed(0)}% while pinged every 50 ms, ${(idle * 100).toFixed(1)}% after (${stray} frames then)`,
    );
    assert.ok(busy >= 0.7, `the worker polls between the pings (CPU share ${busy.toFixed(2)})`);
    assert.ok(
      idle <= allowed,
      `the worker sleeps without traffic (CPU share ${idle.toFixed(3)}, ${stray} frames: at most ${allowed.toFixed(2)})`,
    );

    // A link flap while the worker polls: with the uplink down it sleeps (poll()'s error state is
    // cleared, nothing arrives), and the tunnel carries pings again once the link is up.
    lab.exec(a.ns, 'ip', ['link', 'set', a.uplink, 'down']);
    await new Promise((res) => setTimeout(res, 300)); // past the last spin
    ns0 = cpuNs(pid, tid);
    t0 = performance.now();
    await new Promise((res) => setTimeout(res, 1000)); // the measurement interval
    const down = share(ns0, t0);
    assert.ok(down <= 0.1, `the worker sleeps while the uplink is down (CPU share ${down.toFixed(3)})`);
    lab.exec(a.ns, 'ip', ['link', 'set', a.uplink, 'up']);
    // The first pings may meet the link coming up (ping waits for their replies up to 10 s).
    const warm = ping(lab, a.workloads[0]!.podNs, lab.b.workloads[0]!.podAddr4, 5, 0.2, undefined, 10);
    assert.ok(warm.received > 0, 'the tunnel carries pings after the flap');
    const again = ping(lab, a.workloads[0]!.podNs, lab.b.workloads[0]!.podAddr4, 20, 0.05);
    assert.equal(again.received, again.sent, 'and loses none once it does');
    t.diagnostic(`worker CPU share with the uplink down: ${(down * 100).toFixed(1)}%`);

    const fin = (await p.stop()) as unknown as RunLine;
    assert.deepEqual(fin.drops, {}, 'no drops');
    // The operator is told that the workers poll, and that it was asked for.
    assert.match((await p.exited).stderr, /"event":"workers-poll","spinUs":200000,"configured":true/);
  });
});
