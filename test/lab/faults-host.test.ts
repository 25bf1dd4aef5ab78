/**
 * Faults on the host side of the uplink, as tables (the style of faults.test.ts): what is already
 * on the interface or the tunnel port when pinhole starts, and, for every row, what must hold —
 * the mode and the reason codes, the tunnel traffic counted, the other owner's traffic and
 * program untouched, the exit code, and what is attached after a clean stop.
 *
 * Tables:
 *   STALE_CASES    pinhole's own program left by kill -9, and look-alikes: recognised by tag and
 *                  map shapes (not by name), taken over in whatever mode the MTU now allows,
 *                  detached when AF_XDP is not used;
 *   PROBE_CASES    `probe` tells a live pinhole's program from a stale one and from a foreign one;
 *   PORT_CASES     a kernel vxlan device (or any UDP socket) already on the tunnel port: AF_XDP
 *                  would take its traffic, so it is refused unless an address separates them;
 *   RESTORE_CASES  --replace-foreign puts the replaced program back (same id, same mode), also
 *                  into the namespace the uplink was moved to.
 *
 * Every clean stop that should leave the host as it was also checks that node b still pings node a.
 */
import { afterEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { requireRoot } from '../helpers/require.ts';
import { createNetns, type Netns } from '../helpers/netns.ts';
import { LAB, twoHosts, type TwoHosts } from '../helpers/lab.ts';
import { runCli } from '../helpers/cli.ts';
import { killLeftoverPinholes, startPinhole, type PinholeProc, type ReadyLine } from '../helpers/pinhole-proc.ts';
import { inNetns } from '../kernel/xsk-netns.ts';
import { getSys } from '../../src/sys/index.ts';
import { loadProgram, type Program } from '../../src/kernel/program.ts';
import { alu64, assemble, exit, R0 } from '../../src/bpf/asm/index.ts';
import { XDP_DROP, XDP_PASS } from '../../src/kernel/bpf-attr.ts';
import { openXsk } from '../../src/uplink/xsk/socket.ts';

requireRoot();
afterEach(() => killLeftoverPinholes());

const UDP_SEND = fileURLToPath(new URL('./fixtures/udp-send.ts', import.meta.url));
const UDP_LISTEN = fileURLToPath(new URL('./fixtures/udp-listen.ts', import.meta.url));
const STACK = /\n\s+at .+:\d+:\d+/;

function lab(tag: string): TwoHosts {
  return twoHosts(tag, { gro: true });
}

function sendUdp(ns: Netns, dst: string, port: number, count: number, size = 64): void {
  const out = ns.exec(process.execPath, ['--import', 'tsx', UDP_SEND, dst, String(port), String(count), String(size)]);
  assert.equal(Number(out), count);
}

interface XdpState {
  mode: 'none' | 'native' | 'generic';
  id?: number;
  name?: string;
}

function xdpState(ns: Netns, dev = 'up0'): XdpState {
  const [link] = JSON.parse(ns.ip('-j', '-d', 'link', 'show', 'dev', dev)) as {
    xdp?: { mode: number; prog?: { id: number; name: string } };
  }[];
  const x = link!.xdp;
  if (!x?.prog) return { mode: 'none' };
  return { mode: x.mode === 1 ? 'native' : 'generic', id: x.prog.id, name: x.prog.name };
}

const codes = (r: { reasons: { code: string }[] }): string[] => r.reasons.map((x) => x.code);

/** A private bpffs with programs pinned in it, so `ip -n NS link set ... pinned PATH` can attach them. */
class Pins {
  private readonly dir = mkdtempSync(join(tmpdir(), 'ph-flth-bpffs-'));
  private readonly progs: Program[] = [];

  constructor() {
    getSys().mount('bpf', this.dir, 'bpf', 0, 'mode=0700');
  }

  /** Loads a one-instruction XDP program returning `action`, pins it; returns its path and id. */
  program(name: string, action: number): { path: string; id: number } {
    const p = loadProgram({ name, type: 'xdp', insns: assemble([alu64.mov.imm(R0, action), exit()]) });
    this.progs.push(p);
    const path = join(this.dir, `p${this.progs.length}`);
    p.pin(path);
    return { path, id: p.info().id };
  }

  close(): void {
    for (const p of this.progs) p.close();
    execFileSync('umount', [this.dir]);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Starts `pinhole uplink` on up0 of `l.a`, waits for ready. */
async function start(l: TwoHosts, extra: readonly string[] = []): Promise<{ p: PinholeProc; ready: ReadyLine }> {
  const p = startPinhole(l.a.name, ['--iface', 'up0', '--port', '4789', '--stats-interval', '100', ...extra]);
  return { p, ready: await p.ready };
}

/** Tunnel frames sent to `dst` are all counted by the dataplane. */
async function assertCounts(l: TwoHosts, p: PinholeProc, dst = LAB.a4, n = 10): Promise<void> {
  l.b.exec('ping', ['-c', '1', '-w', '5', dst]);
  sendUdp(l.b, dst, 4789, n);
  await p.statsUntil((s) => s.rxPackets >= n);
}

/**
 * Stops cleanly: exit 0, no stack trace; with `l`, the host keeps its network after the stop
 * (node b pings node a over the uplink).
 */
async function stopClean(p: PinholeProc, l?: TwoHosts): Promise<void> {
  await p.stop();
  const ex = await p.exited;
  assert.equal(ex.code, 0, ex.stderr);
  assert.doesNotMatch(ex.stderr, STACK);
  if (l) assert.match(l.b.exec('ping', ['-c', '1', '-w', '5', LAB.a4]), / 1 received/, 'host traffic after the stop');
}

/** A native-mode uplink killed with SIGKILL: its program stays attached (by design). Returns its id. */
async function leaveStaleProgram(l: TwoHosts, extra: readonly string[] = []): Promise<number> {
  const { p, ready } = await start(l, extra);
  assert.equal(ready.mode, 'afxdp');
  assert.equal(ready.xdpMode, 'native');
  p.child.kill('SIGKILL');
  await p.exited;
  const s = xdpState(l.a);
  assert.equal(s.mode, 'native');
  assert.equal(s.name, 'pinhole');
  return s.id!;
}

// ─── STALE_CASES: pinhole's own program left behind, and look-alikes ───────────────────────

interface StaleCase {
  name: string;
  run: (l: TwoHosts, pins: Pins) => Promise<void>;
}

const STALE_CASES: StaleCase[] = [
  {
    name: 'kill -9 of a native uplink, MTU raised to 3700, restart (auto): stale detached, AF_XDP on generic XDP, nothing left after stop',
    run: async (l) => {
      const stale = await leaveStaleProgram(l);
      // Above veth's native-XDP limit (3506), within a 4 KiB UMEM frame (3818). The peer cannot
      // follow while native XDP is attached to up0 (veth caps its MTU).
      l.a.ip('link', 'set', 'dev', 'up0', 'mtu', '3700');
      const { p, ready } = await start(l);
      assert.equal(ready.mode, 'afxdp', JSON.stringify(ready.reasons));
      assert.equal(ready.xdpMode, 'generic');
      assert.ok(codes(ready).includes('STALE_PINHOLE_PROGRAM'), JSON.stringify(ready.reasons));
      assert.ok(codes(ready).includes('MTU_TOO_LARGE_FOR_NATIVE_XDP'));
      const taken = ready.reasons.find((r) => r.code === 'STALE_PINHOLE_PROGRAM_REPLACED');
      assert.match(taken?.message ?? '', new RegExp(`program id ${stale} \\(native\\) detached, pinhole attached in generic mode`));
      assert.ok(!codes(ready).includes('AFXDP_FAILED'), JSON.stringify(ready.reasons));
      assert.equal(xdpState(l.a).mode, 'generic');
      await assertCounts(l, p);
      await stopClean(p, l);
      assert.deepEqual(xdpState(l.a), { mode: 'none' }, 'nothing left attached');
    },
  },
  {
    name: 'the same with --mode afxdp: no refusal as "foreign"',
    run: async (l) => {
      await leaveStaleProgram(l);
      l.a.ip('link', 'set', 'dev', 'up0', 'mtu', '3700');
      const { p, ready } = await start(l, ['--mode', 'afxdp']);
      assert.equal(ready.mode, 'afxdp');
      assert.equal(ready.xdpMode, 'generic');
      await assertCounts(l, p);
      await stopClean(p, l);
      assert.deepEqual(xdpState(l.a), { mode: 'none' });
    },
  },
  {
    name: 'kill -9 of a native uplink, MTU raised to 9000 (jumbo), restart (auto): AF_PACKET, the stale program detached; --mode afxdp refused with the reason',
    run: async (l) => {
      const stale = await leaveStaleProgram(l);
      l.a.ip('link', 'set', 'dev', 'up0', 'mtu', '9000');
      // Forced AF_XDP cannot serve 9 KB frames: refused before anything is touched.
      const forced = startPinhole(l.a.name, ['--iface', 'up0', '--port', '4789', '--mode', 'afxdp']);
      const ex = await forced.exited;
      assert.equal(ex.code, 1);
      assert.match(
        ex.stderr,
        /ERR_UPLINK_AFXDP_UNAVAILABLE: AF_XDP cannot work on up0: MTU_TOO_LARGE_FOR_AF_XDP: MTU 9000 is above the 3818/,
      );
      assert.equal(xdpState(l.a).id, stale, 'the stale program untouched by the refused start');
      const { p, ready } = await start(l);
      assert.equal(ready.mode, 'afpacket', JSON.stringify(ready.reasons));
      assert.ok(codes(ready).includes('MTU_TOO_LARGE_FOR_AF_XDP'), JSON.stringify(ready.reasons));
      const removed = ready.reasons.find((r) => r.code === 'STALE_PINHOLE_PROGRAM_REMOVED');
      assert.match(removed?.message ?? '', new RegExp(`program id ${stale} \\(native\\) detached`), JSON.stringify(ready.reasons));
      assert.deepEqual(xdpState(l.a), { mode: 'none' });
      await assertCounts(l, p);
      // Nothing attached now, so the peer can follow: 8000-byte tunnel datagrams arrive whole.
      l.b.ip('link', 'set', 'dev', 'peer0', 'mtu', '9000');
      sendUdp(l.b, LAB.a4, 4789, 10, 8000);
      const s = await p.statsUntil((x) => x.rxPackets >= 20);
      assert.equal(s.rxPackets, 20);
      await stopClean(p, l);
      assert.deepEqual(xdpState(l.a), { mode: 'none' });
    },
  },
  {
    name: 'restart with --mode afpacket: the stale program is detached, nothing left after stop',
    run: async (l) => {
      const stale = await leaveStaleProgram(l);
      const { p, ready } = await start(l, ['--mode', 'afpacket']);
      assert.equal(ready.mode, 'afpacket');
      const removed = ready.reasons.find((r) => r.code === 'STALE_PINHOLE_PROGRAM_REMOVED');
      assert.match(removed?.message ?? '', new RegExp(`program id ${stale} \\(native\\) detached`), JSON.stringify(ready.reasons));
      assert.deepEqual(xdpState(l.a), { mode: 'none' });
      await assertCounts(l, p);
      await stopClean(p, l);
      assert.deepEqual(xdpState(l.a), { mode: 'none' });
    },
  },
  {
    name: 'a stale program of the other shape (started with --address) is recognised and replaced atomically',
    run: async (l) => {
      const stale = await leaveStaleProgram(l, ['--address', LAB.a4]);
      const { p, ready } = await start(l);
      assert.equal(ready.mode, 'afxdp');
      assert.equal(ready.xdpMode, 'native');
      const taken = ready.reasons.find((r) => r.code === 'STALE_PINHOLE_PROGRAM_REPLACED');
      assert.match(taken?.message ?? '', new RegExp(`program id ${stale} \\(native\\) replaced atomically`), JSON.stringify(ready.reasons));
      await assertCounts(l, p);
      await stopClean(p, l);
      assert.deepEqual(xdpState(l.a), { mode: 'none' });
    },
  },
  {
    name: 'a foreign program named "pinhole" (XDP_DROP) is foreign: AF_PACKET, the program untouched',
    run: async (l, pins) => {
      const fake = pins.program('pinhole', XDP_DROP);
      l.a.ip('link', 'set', 'dev', 'up0', 'xdpdrv', 'pinned', fake.path);
      const { p, ready } = await start(l);
      assert.equal(ready.mode, 'afpacket', JSON.stringify(ready.reasons));
      assert.equal(ready.reasons[0]!.code, 'FOREIGN_XDP_PROGRAM');
      assert.ok(!codes(ready).includes('STALE_PINHOLE_PROGRAM'));
      await stopClean(p);
      assert.deepEqual(xdpState(l.a), { mode: 'native', id: fake.id, name: 'pinhole' }, 'the look-alike is still attached');
      // ...and forced AF_XDP refuses it like any foreign program.
      const forced = startPinhole(l.a.name, ['--iface', 'up0', '--port', '4789', '--mode', 'afxdp']);
      const ex = await forced.exited;
      assert.equal(ex.code, 1);
      assert.match(ex.stderr, /ERR_UPLINK_AFXDP_UNAVAILABLE: .*FOREIGN_XDP_PROGRAM: XDP program id \d+ \(pinhole\) of another owner/);
      assert.equal(xdpState(l.a).id, fake.id);
    },
  },
];

for (const c of STALE_CASES) {
  test(`stale program: ${c.name}`, async () => {
    const l = lab('flth-stale');
    const pins = new Pins();
    try {
      await c.run(l, pins);
    } finally {
      killLeftoverPinholes();
      l.close();
      pins.close();
    }
  });
}

// ─── PROBE_CASES: live, stale and foreign programs told apart ──────────────────────────────

interface ProbeJson {
  iface: {
    xdp: { mode: string; progId?: number; progName?: string; progTag?: string; ours?: boolean };
    running: { pid: number | null } | null;
  };
  decision: { mode: string; reasons: { code: string; message: string }[] };
}

function probe(ns: Netns): ProbeJson {
  const r = runCli(['probe', '--iface', 'up0', '--json'], { netns: ns.name });
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as ProbeJson;
}

test('probe: a running pinhole program is live (with its pid), after kill -9 stale, a look-alike foreign', async () => {
  const l = lab('flth-probe');
  const pins = new Pins();
  try {
    const { p } = await start(l);
    let j = probe(l.a);
    assert.equal(j.iface.xdp.ours, true);
    assert.match(j.iface.xdp.progTag ?? '', /^[0-9a-f]{16}$/);
    // `ip netns exec` execs node: the child's pid is pinhole's.
    assert.deepEqual(j.iface.running, { pid: p.child.pid });
    const rc = j.decision.reasons.map((r) => r.code);
    assert.ok(rc.includes('LIVE_PINHOLE_PROGRAM') && rc.includes('PINHOLE_RUNNING'), JSON.stringify(j.decision.reasons));
    assert.ok(!rc.includes('STALE_PINHOLE_PROGRAM'));
    const human = runCli(['probe', '--iface', 'up0'], { netns: l.a.name });
    assert.match(human.stdout, /native id \d+ pinhole \(pinhole, live\)/);

    p.child.kill('SIGKILL');
    await p.exited;
    j = probe(l.a);
    assert.equal(j.iface.running, null);
    assert.ok(j.decision.reasons.some((r) => r.code === 'STALE_PINHOLE_PROGRAM'));
    assert.equal(j.decision.mode, 'afxdp');
    l.a.ip('link', 'set', 'dev', 'up0', 'xdpdrv', 'off');

    const fake = pins.program('pinhole', XDP_PASS);
    l.a.ip('link', 'set', 'dev', 'up0', 'xdpdrv', 'pinned', fake.path);
    j = probe(l.a);
    assert.equal(j.iface.xdp.ours, false);
    assert.equal(j.iface.xdp.progName, 'pinhole');
    assert.equal(j.decision.mode, 'afpacket');
    assert.equal(j.decision.reasons[0]!.code, 'FOREIGN_XDP_PROGRAM');
  } finally {
    killLeftoverPinholes();
    l.close();
    pins.close();
  }
});

// ─── PORT_CASES: another socket already on the tunnel port ─────────────────────────────────

const OVERLAY = { a: '198.19.42.1', b: '198.19.42.2' };

/** Kernel vxlan devices on both nodes, UDP port `port`, an overlay subnet between them. */
function kernelVxlan(l: TwoHosts, port: number): void {
  for (const [ns, local, remote, addr] of [
    [l.a, LAB.a4, LAB.b4, OVERLAY.a],
    [l.b, LAB.b4, LAB.a4, OVERLAY.b],
  ] as const) {
    ns.ip(
      'link',
      'add',
      'vx0',
      'type',
      'vxlan',
      'id',
      '42',
      'local',
      local,
      'remote',
      remote,
      'dstport',
      String(port),
      'dev',
      ns === l.a ? 'up0' : 'peer0',
    );
    ns.ip('addr', 'add', `${addr}/24`, 'dev', 'vx0');
    ns.ip('link', 'set', 'vx0', 'up');
  }
  l.b.exec('ping', ['-c', '1', '-w', '5', OVERLAY.a]);
}

/** Pings across the overlay: every echo answered (the vxlan device still gets its traffic). */
function assertOverlayWorks(l: TwoHosts): void {
  const out = l.b.exec('ping', ['-c', '10', '-i', '0.05', '-W', '1', OVERLAY.a], { allowFail: true });
  assert.match(out, /10 packets transmitted, 10 received/, `overlay ping while pinhole runs:\n${out}`);
}

interface PortCase {
  name: string;
  run: (l: TwoHosts) => Promise<void>;
}

const PORT_CASES: PortCase[] = [
  {
    name: 'kernel vxlan on the tunnel port, --mode auto: AF_PACKET with PORT_HELD_BY_KERNEL_SOCKET, the overlay keeps working',
    run: async (l) => {
      kernelVxlan(l, 4789);
      const { p, ready } = await start(l);
      assert.equal(ready.mode, 'afpacket', JSON.stringify(ready.reasons));
      const held = ready.reasons.filter((r) => r.code === 'PORT_HELD_BY_KERNEL_SOCKET');
      assert.equal(held.length, 1, JSON.stringify(ready.reasons));
      assert.match(held[0]!.message, /UDP port 4789 \(IPv4\) is bound by another socket \(0\.0\.0\.0:4789, no process: a kernel socket/);
      assert.match(held[0]!.message, /AF_XDP would take all its traffic/);
      assert.deepEqual(xdpState(l.a), { mode: 'none' });
      assertOverlayWorks(l);
      await stopClean(p, l);
    },
  },
  {
    name: 'kernel vxlan on the tunnel port, --mode afxdp: refused with the reason, exit 1, nothing attached',
    run: async (l) => {
      kernelVxlan(l, 4789);
      const p = startPinhole(l.a.name, ['--iface', 'up0', '--port', '4789', '--mode', 'afxdp']);
      const first = await Promise.race([p.exited, p.ready.then((r) => r)]);
      assert.ok('code' in first, `started instead of refusing: ${JSON.stringify(first)}`);
      const ex = await p.exited;
      assert.equal(ex.code, 1, ex.stdout);
      assert.match(
        ex.stderr,
        /ERR_UPLINK_AFXDP_UNAVAILABLE: AF_XDP cannot work on up0: PORT_HELD_BY_KERNEL_SOCKET: UDP port 4789 \(IPv4\)/,
      );
      assert.doesNotMatch(ex.stderr, STACK);
      assert.deepEqual(xdpState(l.a), { mode: 'none' });
      assertOverlayWorks(l);
    },
  },
  {
    name: 'kernel vxlan on another port: AF_XDP, no port reason, both the overlay and the tunnel work',
    run: async (l) => {
      kernelVxlan(l, 4790);
      const { p, ready } = await start(l);
      assert.equal(ready.mode, 'afxdp', JSON.stringify(ready.reasons));
      assert.ok(!codes(ready).includes('PORT_HELD_BY_KERNEL_SOCKET'));
      assertOverlayWorks(l);
      await assertCounts(l, p);
      await stopClean(p, l);
    },
  },
  {
    name: 'a UDP socket bound to one address, pinhole --address another: AF_XDP, each gets its own datagrams',
    run: async (l) => {
      const other = '198.18.0.3';
      l.a.ip('addr', 'add', `${other}/24`, 'dev', 'up0');
      await withListener(l.a, LAB.a4, 4789, async (heard) => {
        const { p, ready } = await start(l, ['--address', other]);
        assert.equal(ready.mode, 'afxdp', JSON.stringify(ready.reasons));
        assert.ok(!codes(ready).includes('PORT_HELD_BY_KERNEL_SOCKET'));
        sendUdp(l.b, LAB.a4, 4789, 5);
        await heard(5);
        await assertCounts(l, p, other, 10);
        const fin = await p.stop();
        assert.equal(fin.rxPackets, 10, 'only the datagrams to its own address');
      });
    },
  },
  {
    name: 'a UDP socket bound to the address pinhole is given: AF_PACKET, the holder named with its pid',
    run: async (l) => {
      await withListener(l.a, LAB.a4, 4789, async (_heard, pid) => {
        const { p, ready } = await start(l, ['--address', LAB.a4]);
        assert.equal(ready.mode, 'afpacket', JSON.stringify(ready.reasons));
        const held = ready.reasons.find((r) => r.code === 'PORT_HELD_BY_KERNEL_SOCKET');
        assert.match(held?.message ?? '', new RegExp(`bound over ${LAB.a4.replace(/\./g, '\\.')}: 198\\.18\\.0\\.1:4789, pid ${pid} `));
        await stopClean(p, l);
      });
    },
  },
];

/** Runs a UDP listener (fixtures/udp-listen.ts) for the duration of `fn`. */
async function withListener(
  ns: Netns,
  addr: string,
  port: number,
  fn: (heard: (n: number) => Promise<void>, pid: number) => Promise<void>,
): Promise<void> {
  const child: ChildProcess = ns.spawn(process.execPath, ['--import', 'tsx', UDP_LISTEN, addr, String(port)]);
  let out = '';
  const waiters: { n: number; resolve: () => void }[] = [];
  const got = (): number => (out.match(/got \d+/g) ?? []).length;
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
    for (const w of waiters.splice(0))
      if (got() >= w.n) w.resolve();
      else waiters.push(w);
  });
  try {
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`listener did not start: ${out}`)), 10_000);
      const check = (): void => {
        if (out.includes('listening')) {
          clearTimeout(t);
          child.stdout!.off('data', check);
          resolve();
        }
      };
      child.stdout!.on('data', check);
    });
    // `ip netns exec` execs node, so the child's pid is the listener's.
    const heard = (n: number): Promise<void> =>
      got() >= n
        ? Promise.resolve()
        : new Promise<void>((resolve, reject) => {
            const t = setTimeout(() => reject(new Error(`listener heard ${got()} of ${n}`)), 10_000);
            waiters.push({
              n,
              resolve: () => {
                clearTimeout(t);
                resolve();
              },
            });
          });
    await fn(heard, child.pid!);
  } finally {
    child.kill('SIGKILL');
  }
}

for (const c of PORT_CASES) {
  test(`tunnel port held: ${c.name}`, async () => {
    const l = lab('flth-port');
    try {
      await c.run(l);
    } finally {
      killLeftoverPinholes();
      l.close();
    }
  });
}

// ─── RESTORE_CASES: --replace-foreign puts the program back ───────────────────────────────

interface RestoreCase {
  name: string;
  mode: 'native' | 'generic';
  /** While pinhole runs on top of the foreign program; returns the expected ready mode. */
  during?: (l: TwoHosts) => Promise<{ release: () => void }>;
  expect: 'afxdp' | 'afpacket';
}

const RESTORE_CASES: RestoreCase[] = [
  { name: 'native program', mode: 'native', expect: 'afxdp' },
  { name: 'generic program', mode: 'generic', expect: 'afxdp' },
  {
    name: 'native program, AF_XDP then fails (queue held by another socket): put back at once, AF_PACKET',
    mode: 'native',
    during: async (l) => {
      const holder = await inNetns(l.a, () => openXsk({ iface: 'up0', queue: 0, frameCount: 64 }));
      return { release: () => holder.close() };
    },
    expect: 'afpacket',
  },
];

for (const c of RESTORE_CASES) {
  test(`--replace-foreign: ${c.name}: the same program is attached again after a clean stop`, async () => {
    const l = lab('flth-restore');
    const pins = new Pins();
    let held: { release: () => void } | undefined;
    try {
      const fw = pins.program('xdp_fw', XDP_PASS);
      l.a.ip('link', 'set', 'dev', 'up0', c.mode === 'native' ? 'xdpdrv' : 'xdpgeneric', 'pinned', fw.path);
      held = await c.during?.(l);
      const { p, ready } = await start(l, ['--replace-foreign']);
      assert.equal(ready.mode, c.expect, JSON.stringify(ready.reasons));
      if (c.expect === 'afxdp') {
        assert.equal(xdpState(l.a).name, 'pinhole');
        await assertCounts(l, p);
      } else {
        assert.deepEqual(xdpState(l.a), { mode: c.mode, id: fw.id, name: 'xdp_fw' }, 'put back when AF_XDP failed');
      }
      await stopClean(p, l);
      assert.deepEqual(xdpState(l.a), { mode: c.mode, id: fw.id, name: 'xdp_fw' });
      if (c.expect === 'afxdp') {
        // In its own mode, so neither the take-over nor the restore left the interface bare.
        const kept = ready.reasons.find((r) => r.code === 'FOREIGN_XDP_PROGRAM_KEPT');
        assert.match(
          kept?.message ?? '',
          new RegExp(`program id ${fw.id} \\(${c.mode}\\) replaced atomically; it is put back on a clean stop`),
        );
      }
    } finally {
      held?.release();
      killLeftoverPinholes();
      l.close();
      pins.close();
    }
  });
}

test('--replace-foreign, then the uplink is moved to another namespace: the replaced program is put back there, exit 1', async () => {
  const l = lab('flth-restmv');
  const spare = createNetns('flth-restmv-spare');
  const pins = new Pins();
  try {
    const fw = pins.program('xdp_fw', XDP_PASS);
    l.a.ip('link', 'set', 'dev', 'up0', 'xdpdrv', 'pinned', fw.path);
    const { p, ready } = await start(l, ['--replace-foreign']);
    assert.equal(ready.mode, 'afxdp', JSON.stringify(ready.reasons));
    assert.equal(xdpState(l.a).name, 'pinhole');
    l.a.ip('link', 'set', 'up0', 'netns', spare.name);
    const ex = await p.exited;
    assert.equal(ex.code, 1, ex.stderr);
    assert.match(ex.stderr, /"event":"uplink-lost","code":"ERR_UPLINK_GONE"/);
    assert.doesNotMatch(ex.stderr, STACK);
    assert.deepEqual(xdpState(spare), { mode: 'native', id: fw.id, name: 'xdp_fw' }, 'the other owner has its program back');
  } finally {
    killLeftoverPinholes();
    l.close();
    spare.close();
    pins.close();
  }
});
