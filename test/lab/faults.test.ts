/**
 * Faults, as tables: what a hostile operator does to pinhole (links flapped, deleted or moved,
 * a start on a downed link, output piped into `head`, unusual signals, missing capabilities)
 * and, for every row, what must hold — the process does not spin (CPU share from
 * /proc/PID/stat), tunnel traffic is counted again once the fault is gone, the exit code and
 * final line, no stack trace, and nothing left attached to the interface.
 *
 * Tables:
 *   SOCKET_FAULTS  the AF_PACKET socket itself (in this process): errors read, cleared and
 *                  counted, link state down/up/gone, poll never returns early in a loop;
 *   LINK_FAULTS    `pinhole uplink` while its link goes down/up (logged: link-down, link-up),
 *                  starts down, is deleted, in both modes; host traffic over it again after;
 *   STOP_CASES     SIGHUP, SIGQUIT, stdout/stderr closed: teardown runs, exit 0;
 *   CAPS_CASES     capabilities and RLIMIT_MEMLOCK dropped with setpriv/prlimit.
 */
import { afterEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { setTimeout as delay } from 'node:timers/promises';
import { requireRoot } from '../helpers/require.ts';
import { addVeth, createNetns, withNetns, type Netns } from '../helpers/netns.ts';
import { LAB, twoHosts, type TwoHosts } from '../helpers/lab.ts';
import { PINHOLE_BIN, startCli } from '../helpers/cli.ts';
import { cpuShare, MAX_IDLE_CPU_SHARE } from '../helpers/cpu.ts';
import { killLeftoverPinholes, startPinhole, type PinholeProc } from '../helpers/pinhole-proc.ts';
import { inNetnsSync, PacketSocket } from '../helpers/packet-socket.ts';
import '../../src/sys/index.ts';
import { compilePinholeFilter } from '../../src/bpf/cbpf/pinhole.ts';
import { buildFrame } from '../../src/packet/build.ts';
import { AfPacketSocket, RxBatch } from '../../src/uplink/afpacket/socket.ts';

requireRoot();
afterEach(() => killLeftoverPinholes());

const UDP_SEND = fileURLToPath(new URL('./fixtures/udp-send.ts', import.meta.url));
const XSK_OPEN = fileURLToPath(new URL('./fixtures/xsk-open.ts', import.meta.url));
/** A Node stack trace line: never on stderr, whatever happened. */
const STACK = /\n\s+at .+:\d+:\d+/;

function sendUdp(ns: Netns, dst: string, port: number, count: number): void {
  const out = ns.exec(process.execPath, ['--import', 'tsx', UDP_SEND, dst, String(port), String(count), '64']);
  assert.equal(Number(out), count);
}

function xdpOf(ns: Netns, dev: string): string {
  const m = /prog\/xdp id (\d+) name (\S+)/.exec(ns.ip('-d', 'link', 'show', 'dev', dev));
  return m ? `${m[2]}` : 'none';
}

function lab(tag: string, queues = 1): TwoHosts {
  return twoHosts(tag, { queues, gro: true });
}

// ─── SOCKET_FAULTS: the AF_PACKET socket on its own ─────────────────────────────────────────

interface SocketLab {
  up: Netns;
  peer: Netns;
  /** Another namespace to move up0 into. */
  away: Netns;
  upMac: string;
}

const idleBatch = new RxBatch(64);

/**
 * The worker's idle loop for `ms` — receive, and poll (50 ms) when nothing came; returns how
 * many iterations ran and the CPU time they took.
 */
function pollFor(sock: AfPacketSocket, ms: number): { polls: number; cpuMs: number; wallMs: number } {
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  let polls = 0;
  while (performance.now() - t0 < ms && polls < 100_000) {
    if (sock.receive(idleBatch) === 0) sock.poll(50);
    polls++;
  }
  const c = process.cpuUsage(c0);
  return { polls, cpuMs: (c.user + c.system) / 1000, wallMs: performance.now() - t0 };
}

function assertNoSpin(r: { polls: number; cpuMs: number; wallMs: number }, what: string): void {
  // Every poll waits its 50 ms: a spinning loop makes tens of thousands of calls.
  assert.ok(r.polls <= Math.ceil(r.wallMs / 50) + 2, `${what}: ${r.polls} polls in ${r.wallMs.toFixed(0)} ms (busy loop)`);
  assert.ok(r.cpuMs < r.wallMs * 0.2, `${what}: ${r.cpuMs.toFixed(0)} ms CPU in ${r.wallMs.toFixed(0)} ms`);
}

let marks = 0;
/** Sends tunnel frames from the peer until the socket receives one; the link must be up. */
async function assertReceives(l: SocketLab, sock: AfPacketSocket): Promise<void> {
  const tx = inNetnsSync(l.peer, () => new PacketSocket('peer0'));
  const rxb = new RxBatch(64);
  const id = ++marks;
  const frame = buildFrame({
    eth: { dst: l.upMac, src: '02:00:00:00:00:02' },
    ipv4: { src: '198.18.0.2', dst: '198.18.0.1' },
    udp: { sport: 40000 + id, dport: 4789 },
    payload: new Uint8Array(32).fill(id & 0xff),
  });
  try {
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline) {
      // The peer's carrier comes back a moment after link up: send until one arrives.
      try {
        tx.send(frame);
      } catch {
        // ENETDOWN while the carrier is still off
      }
      await sock.pollAsync(100);
      const n = sock.receive(rxb);
      for (let i = 0; i < n; i++) {
        const at = rxb.offset[i]!;
        // UDP source port (bytes 34..35) identifies this call's frame.
        if (rxb.length[i] === frame.length && sock.memory[at + 34] === frame[34] && sock.memory[at + 35] === frame[35]) return;
      }
    }
    assert.fail('no frame received after the link came back');
  } finally {
    sock.release();
    tx.close();
  }
}

const down = (ns: Netns): void => void ns.ip('link', 'set', 'up0', 'down');
const up = (ns: Netns): void => void ns.ip('link', 'set', 'up0', 'up');

const SOCKET_FAULTS: {
  name: string;
  /** Before the socket opens. */
  before?: (l: SocketLab) => void;
  fault: (l: SocketLab) => void;
  /** The state the socket must report after the fault. */
  state: 'down' | 'gone';
  /** Socket errors that must have been read and counted (at least). */
  errors: number;
  recover?: (l: SocketLab) => void;
}[] = [
  { name: 'link down, then up', fault: (l) => down(l.up), state: 'down', errors: 1, recover: (l) => up(l.up) },
  {
    name: 'opened on an admin-down link, then up',
    before: (l) => down(l.up),
    fault: () => undefined,
    state: 'down',
    errors: 1,
    recover: (l) => up(l.up),
  },
  {
    name: 'link flapped 5 times, left down, then up',
    fault: (l) => {
      for (let i = 0; i < 5; i++) {
        down(l.up);
        up(l.up);
      }
      down(l.up);
    },
    state: 'down',
    errors: 1,
    recover: (l) => up(l.up),
  },
  { name: 'link deleted while up', fault: (l) => void l.up.ip('link', 'del', 'up0'), state: 'gone', errors: 1 },
  {
    name: 'link deleted while down (no socket error is raised)',
    before: (l) => down(l.up),
    fault: (l) => void l.up.ip('link', 'del', 'up0'),
    state: 'gone',
    errors: 1,
  },
  {
    name: 'link moved to another namespace',
    fault: (l) => void l.up.ip('link', 'set', 'up0', 'netns', l.away.name),
    state: 'gone',
    errors: 1,
  },
];

for (const f of SOCKET_FAULTS) {
  test(`AF_PACKET socket: ${f.name}: error read and counted, state ${f.state}, no busy loop${f.recover ? ', receives again' : ''}`, async () => {
    await withNetns(['flt-up', 'flt-peer', 'flt-away'], async (upNs, peer, away) => {
      addVeth(upNs, 'up0', peer, 'peer0');
      const upMac = (JSON.parse(upNs.ip('-j', 'link', 'show', 'up0')) as { address: string }[])[0]!.address;
      const l: SocketLab = { up: upNs, peer, away, upMac };
      f.before?.(l);
      const sock = inNetnsSync(upNs, () =>
        AfPacketSocket.open({ ifname: 'up0', filter: compilePinholeFilter({ ports: [4789], addresses: [] }) }),
      );
      try {
        if (f.before) {
          // Opened on a downed link: the bind's ENETDOWN is read and cleared here, before the fault.
          assertNoSpin(pollFor(sock, 150), `${f.name}, opened`);
          assert.equal(sock.linkState, 'down');
        } else {
          await assertReceives(l, sock);
        }
        f.fault(l);
        const r = pollFor(sock, 400);
        assertNoSpin(r, f.name);
        assert.equal(sock.linkState, f.state);
        assert.equal(sock.gone, f.state === 'gone');
        assert.ok(sock.counters.linkErrors >= f.errors, `linkErrors ${sock.counters.linkErrors}`);
        assert.equal(sock.lastLinkError, 'ENETDOWN');
        if (f.recover) {
          f.recover(l);
          await assertReceives(l, sock);
          assert.equal(sock.linkState, 'up');
          // Back to normal: an idle poll waits again.
          assertNoSpin(pollFor(sock, 200), `${f.name}, after recovery`);
        } else {
          // Gone stays gone; polling it still sleeps.
          assertNoSpin(pollFor(sock, 200), `${f.name}, gone`);
          assert.equal(sock.checkLink(), 'gone');
        }
      } finally {
        sock.close();
      }
    });
  });
}

// ─── LINK_FAULTS: a running `pinhole uplink` ────────────────────────────────────────────────

interface LinkFault {
  name: string;
  mode: 'afpacket' | 'auto';
  queues?: number;
  /** Applied before pinhole starts. */
  before?: (l: TwoHosts) => void;
  /** The fault, while pinhole runs. */
  fault: (l: TwoHosts) => void;
  /** Undoes the fault; absent when it cannot be undone (the link is gone). */
  recover?: (l: TwoHosts) => void;
  /** Log events (stderr) that must have been written, in this order. */
  events?: string[];
}

const FLAP = ['link-down', 'link-up'];

const LINK_FAULTS: LinkFault[] = [
  { name: 'link down, then up', mode: 'afpacket', fault: (l) => down(l.a), recover: (l) => up(l.a), events: FLAP },
  {
    name: 'link down, then up, 2 workers (fanout)',
    mode: 'afpacket',
    queues: 2,
    fault: (l) => down(l.a),
    recover: (l) => up(l.a),
    events: FLAP,
  },
  { name: 'link down, then up', mode: 'auto', fault: (l) => down(l.a), recover: (l) => up(l.a), events: FLAP },
  {
    name: 'started on an admin-down link, then up',
    mode: 'afpacket',
    before: (l) => down(l.a),
    fault: () => undefined,
    recover: (l) => up(l.a),
    events: FLAP,
  },
  {
    name: 'started on an admin-down link, then up',
    mode: 'auto',
    before: (l) => down(l.a),
    fault: () => undefined,
    recover: (l) => up(l.a),
    events: FLAP,
  },
  { name: 'link deleted', mode: 'afpacket', fault: (l) => void l.a.ip('link', 'del', 'up0') },
  { name: 'link deleted', mode: 'auto', fault: (l) => void l.a.ip('link', 'del', 'up0') },
];

for (const f of LINK_FAULTS) {
  test(`uplink --mode ${f.mode}: ${f.name}: no spinning, traffic counted again, clean stop`, async () => {
    const l = lab(`flt-${f.mode}-${f.queues ?? 1}`, f.queues ?? 1);
    try {
      if (!f.before) l.b.exec('ping', ['-c', '1', '-w', '5', LAB.a4]);
      f.before?.(l);
      const args = ['--iface', 'up0', '--port', '4789', '--mode', f.mode, '--stats-interval', '100'];
      const p = startPinhole(l.a.name, f.queues ? [...args, '--queues', String(f.queues)] : args);
      await p.ready;
      const pid = p.child.pid!;
      await p.statsUntil(() => true);
      let counted = 0;
      if (!f.before) {
        sendUdp(l.b, LAB.a4, 4789, 20);
        counted = (await p.statsUntil((s) => s.rxPackets >= 20)).rxPackets;
      }
      f.fault(l);
      const during = await cpuShare(pid, 2000);
      if (during !== undefined) assert.ok(during <= MAX_IDLE_CPU_SHARE, `CPU during the fault: ${(during * 100).toFixed(1)}% of a CPU`);
      if (f.recover) {
        f.recover(l);
        // Host traffic over the uplink again (also: carrier and ARP back).
        assert.match(l.b.exec('ping', ['-c', '1', '-w', '10', LAB.a4]), / 1 received/);
        sendUdp(l.b, LAB.a4, 4789, 50);
        await p.statsUntil((s) => s.rxPackets >= counted + 50);
        const after = await cpuShare(pid, 1000);
        assert.ok(after !== undefined && after <= MAX_IDLE_CPU_SHARE, `CPU after recovery: ${((after ?? 1) * 100).toFixed(1)}% of a CPU`);
        const fin = await p.stop();
        assert.equal(fin.rxPackets, counted + 50, 'every tunnel frame counted, before and after the fault');
        const ex = await p.exited;
        assert.equal(ex.code, 0, ex.stderr);
        assert.doesNotMatch(ex.stderr, STACK);
        assert.equal(xdpOf(l.a, 'up0'), 'none', 'nothing left attached');
        // The operator is told: link-down and link-up, in order, naming the interface.
        const seen = [...ex.stderr.matchAll(/"event":"(link-(?:down|up))","iface":"up0"/g)].map((m) => m[1]);
        assert.deepEqual(seen, f.events ?? [], ex.stderr);
      } else {
        // The link is gone: pinhole may end by itself (non-zero, with a code) or keep idling.
        if (p.child.exitCode === null && p.child.signalCode === null) {
          await p.stop();
          const ex = await p.exited;
          assert.ok(ex.code === 0 || ex.code === 1, `exit ${ex.code}: ${ex.stderr}`);
          assert.doesNotMatch(ex.stderr, STACK);
        } else {
          const ex = await p.exited;
          assert.notEqual(ex.code, 0);
          assert.match(ex.stderr, /ERR_[A-Z_]+/);
          assert.doesNotMatch(ex.stderr, STACK);
        }
      }
    } finally {
      l.close();
    }
  });
}

// ─── STOP_CASES: every way to end a running uplink runs the teardown ────────────────────────

interface StopCase {
  name: string;
  act: (p: PinholeProc) => void;
  /** The reason logged on stderr's `stopped` line (absent when stderr is closed too). */
  reason?: string;
  /** Whether stdout still gets the final `stopped` line. */
  finalLine: boolean;
}

const STOP_CASES: StopCase[] = [
  { name: 'SIGHUP', act: (p) => p.child.kill('SIGHUP'), reason: 'SIGHUP', finalLine: true },
  { name: 'SIGQUIT', act: (p) => p.child.kill('SIGQUIT'), reason: 'SIGQUIT', finalLine: true },
  { name: 'stdout closed (| head -1)', act: (p) => p.child.stdout!.destroy(), reason: 'output-closed', finalLine: false },
  {
    name: 'stdout and stderr closed (2>&1 | head -1)',
    act: (p) => {
      p.child.stdout!.destroy();
      p.child.stderr!.destroy();
    },
    finalLine: false,
  },
];

for (const mode of ['auto', 'afpacket'] as const) {
  for (const c of STOP_CASES) {
    test(`uplink --mode ${mode}: ${c.name}: teardown runs, exit 0, nothing attached`, async () => {
      const l = lab(`stop-${mode}`);
      try {
        const p = startPinhole(l.a.name, ['--iface', 'up0', '--port', '4789', '--mode', mode, '--stats-interval', '100']);
        const ready = await p.ready;
        assert.equal(ready.mode, mode === 'auto' ? 'afxdp' : 'afpacket');
        if (mode === 'auto') assert.equal(xdpOf(l.a, 'up0'), 'pinhole');
        await p.statsUntil(() => true);
        c.act(p);
        const ex = await p.exited;
        assert.equal(ex.signal, null, `ended by ${ex.signal}: no teardown`);
        assert.equal(ex.code, 0, ex.stderr);
        assert.doesNotMatch(ex.stderr, STACK);
        assert.doesNotMatch(ex.stderr, /internal error|Unhandled|EPIPE.*\n\s+at/);
        if (c.finalLine) assert.match(ex.stdout, /\{"event":"stopped","mode":/);
        if (c.reason) assert.match(ex.stderr, new RegExp(`"event":"stopped","reason":"${c.reason}"`));
        if (c.reason === 'output-closed') assert.match(ex.stderr, /"event":"output-closed","stream":"stdout","code":"EPIPE"/);
        assert.equal(xdpOf(l.a, 'up0'), 'none', 'program detached');
        assert.match(l.b.exec('ping', ['-c', '1', '-w', '5', LAB.a4]), / 1 received/, 'host traffic after the stop');
      } finally {
        l.close();
      }
    });
  }
}

test('neigh --watch --json | head -1: a closed stdout ends the watch cleanly (exit 0, no stack)', async () => {
  const ns = createNetns('flt-neigh');
  try {
    ns.ip('link', 'add', 'd0', 'type', 'veth', 'peer', 'name', 'd1');
    ns.ip('link', 'set', 'd0', 'up');
    ns.ip('neigh', 'add', '198.18.5.1', 'lladdr', '02:00:00:00:05:01', 'dev', 'd0');
    const w = startCli(ns.name, ['neigh', '--watch', '--json']);
    const { child } = w;
    try {
      await w.line(/"event":"present"/);
      child.stdout!.destroy(); // what `head -1` does after its line
      // Changes make pinhole write again; the write finds the pipe closed.
      for (let i = 2; i < 200 && child.exitCode === null; i++) {
        ns.ip('neigh', 'add', `198.18.5.${i}`, 'lladdr', '02:00:00:00:05:01', 'dev', 'd0');
        await Promise.race([w.closed, delay(50)]);
      }
      assert.deepEqual(await w.closed, { code: 0, signal: null }, w.stderr());
      assert.doesNotMatch(w.stderr(), STACK);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  } finally {
    ns.close();
  }
});

// ─── CAPS_CASES: capabilities and limits ────────────────────────────────────────────────────

/** No CAP_IPC_LOCK (setpriv drops it from the bounding set, so the exec'd root process lacks it) and a 4 MiB RLIMIT_MEMLOCK. */
const NO_IPC_LOCK = ['prlimit', '--memlock=4194304:4194304', 'setpriv', '--bounding-set=-ipc_lock', '--'];
/** Only CAP_NET_RAW. */
const NET_RAW_ONLY = ['setpriv', '--inh-caps=-all', '--bounding-set=-all,+net_raw', '--'];
/** No capability at all. */
const NO_CAPS = ['setpriv', '--inh-caps=-all', '--bounding-set=-all', '--'];

function runWrapped(ns: Netns, wrap: readonly string[], cmd: readonly string[]): { code: number; stdout: string; stderr: string } {
  try {
    const stdout = execFileSync('ip', ['netns', 'exec', ns.name, ...wrap, ...cmd], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    return { code: 0, stdout, stderr: '' };
  } catch (err) {
    const e = err as { status: number; stdout: string; stderr: string };
    return { code: e.status, stdout: e.stdout, stderr: e.stderr };
  }
}

const pinhole = (...args: string[]): string[] => [process.execPath, PINHOLE_BIN, ...args];
const UMEM_LIMIT = /registering a \d+ MiB UMEM failed \(ENOBUFS\): the locked-memory limit: no CAP_IPC_LOCK and RLIMIT_MEMLOCK is 4 MiB/;

interface CapsCase {
  name: string;
  check: (l: TwoHosts) => Promise<void> | void;
}

const CAPS_CASES: CapsCase[] = [
  {
    name: 'probe without CAP_IPC_LOCK: xdpSockets not-permitted, naming CAP_IPC_LOCK and RLIMIT_MEMLOCK; decision afpacket',
    check: (l) => {
      const r = runWrapped(l.a, NO_IPC_LOCK, pinhole('probe', '--iface', 'up0', '--json'));
      assert.equal(r.code, 0, r.stderr);
      const j = JSON.parse(r.stdout) as {
        features: { xdpSockets: boolean };
        featureDetails: { xdpSockets: { status: string; detail: string } };
        decision: { mode: string; reasons: { code: string; message: string }[] };
      };
      assert.equal(j.features.xdpSockets, false);
      assert.equal(j.featureDetails.xdpSockets.status, 'not-permitted');
      assert.match(j.featureDetails.xdpSockets.detail, UMEM_LIMIT);
      assert.match(j.featureDetails.xdpSockets.detail, /grant CAP_IPC_LOCK or raise RLIMIT_MEMLOCK/);
      assert.equal(j.decision.mode, 'afpacket');
      assert.ok(j.decision.reasons.some((x) => x.code === 'XDP_SOCKETS_NOT_PERMITTED' && /CAP_IPC_LOCK/.test(x.message)));
    },
  },
  {
    name: 'uplink --mode afxdp without CAP_IPC_LOCK: ERR_UPLINK_AFXDP_UNAVAILABLE naming the limit, exit 1',
    check: (l) => {
      const r = runWrapped(l.a, NO_IPC_LOCK, pinhole('uplink', '--iface', 'up0', '--mode', 'afxdp'));
      assert.equal(r.code, 1);
      assert.match(r.stderr, /^pinhole: ERR_UPLINK_AFXDP_UNAVAILABLE: AF_XDP cannot work on up0: XDP_SOCKETS_NOT_PERMITTED: /);
      assert.match(r.stderr, UMEM_LIMIT);
      assert.equal(xdpOf(l.a, 'up0'), 'none');
    },
  },
  {
    name: 'an AF_XDP socket without CAP_IPC_LOCK: ERR_XSK_UMEM with the errno and the limit',
    check: (l) => {
      const r = runWrapped(l.a, NO_IPC_LOCK, [process.execPath, '--import', 'tsx', XSK_OPEN, 'up0']);
      const j = JSON.parse(r.stdout) as { code: string; message: string };
      assert.equal(j.code, 'ERR_XSK_UMEM');
      assert.match(j.message, /^set up xsk for ifindex \d+ \(up0\) queue 0: /);
      assert.match(j.message, UMEM_LIMIT);
    },
  },
  {
    name: 'uplink --mode auto without CAP_IPC_LOCK: AF_PACKET with the reason',
    check: async (l) => {
      const p = startPinhole(l.a.name, ['--iface', 'up0', '--port', '4789'], 20_000, 'uplink', NO_IPC_LOCK);
      const r = await p.ready;
      assert.equal(r.mode, 'afpacket');
      assert.ok(r.reasons.some((x) => x.code === 'XDP_SOCKETS_NOT_PERMITTED' && UMEM_LIMIT.test(x.message)));
      await p.stop();
      assert.equal((await p.exited).code, 0);
    },
  },
  {
    name: 'uplink --mode afpacket with only CAP_NET_RAW: runs and counts tunnel frames',
    check: async (l) => {
      l.b.exec('ping', ['-c', '1', '-w', '5', LAB.a4]);
      const p = startPinhole(
        l.a.name,
        ['--iface', 'up0', '--port', '4789', '--mode', 'afpacket', '--stats-interval', '100'],
        20_000,
        'uplink',
        NET_RAW_ONLY,
      );
      assert.equal((await p.ready).mode, 'afpacket');
      sendUdp(l.b, LAB.a4, 4789, 10);
      await p.statsUntil((s) => s.rxPackets >= 10);
      assert.equal((await p.stop()).rxPackets, 10);
      assert.equal((await p.exited).code, 0);
    },
  },
  {
    name: 'uplink --mode auto with only CAP_NET_RAW: AF_PACKET, BPF_NOT_PERMITTED',
    check: async (l) => {
      const p = startPinhole(l.a.name, ['--iface', 'up0', '--port', '4789'], 20_000, 'uplink', NET_RAW_ONLY);
      const r = await p.ready;
      assert.equal(r.mode, 'afpacket');
      assert.ok(r.reasons.some((x) => x.code === 'BPF_NOT_PERMITTED'));
      await p.stop();
    },
  },
  {
    name: 'uplink --mode afpacket without any capability: ERR_PERMISSION naming CAP_NET_RAW only, exit 1',
    check: (l) => {
      const r = runWrapped(l.a, NO_CAPS, pinhole('uplink', '--iface', 'up0', '--mode', 'afpacket'));
      assert.equal(r.code, 1);
      assert.match(r.stderr, /^pinhole: ERR_PERMISSION: running the uplink \(--mode afpacket\) needs CAP_NET_RAW \(/);
      assert.doesNotMatch(r.stderr, /CAP_BPF|CAP_NET_ADMIN/);
    },
  },
  {
    name: 'uplink --mode afxdp without any capability: ERR_PERMISSION naming CAP_NET_RAW, CAP_NET_ADMIN, CAP_BPF',
    check: (l) => {
      const r = runWrapped(l.a, NO_CAPS, pinhole('uplink', '--iface', 'up0', '--mode', 'afxdp'));
      assert.equal(r.code, 1);
      assert.match(r.stderr, /^pinhole: ERR_PERMISSION: running the uplink \(--mode afxdp\) needs CAP_NET_RAW, CAP_NET_ADMIN, CAP_BPF/);
    },
  },
];

for (const c of CAPS_CASES) {
  test(`capabilities: ${c.name}`, async () => {
    const l = lab('flt-caps');
    try {
      await c.check(l);
    } finally {
      l.close();
    }
  });
}
