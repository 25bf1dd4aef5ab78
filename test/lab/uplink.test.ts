/**
 * `pinhole uplink` for real, in network namespaces joined by veths: the mode it picks and why,
 * which frames reach the dataplane (tunnel ones, exactly) and which stay with the kernel, the
 * L2 cross-connect, the fallback cases, and that stopping leaves nothing behind.
 */
import { afterEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requireRoot } from '../helpers/require.ts';
import { createNetns, type Netns } from '../helpers/netns.ts';
import { LAB, threeNodes, twoHosts, type TwoHosts } from '../helpers/lab.ts';
import { killLeftoverPinholes, startPinhole } from '../helpers/pinhole-proc.ts';
import { inNetns, PacketSocket } from '../kernel/xsk-netns.ts';
import { getSys } from '../../src/sys/index.ts';
import { openXsk } from '../../src/uplink/xsk/socket.ts';
import { loadProgram } from '../../src/kernel/program.ts';
import { alu64, assemble, exit, R0 } from '../../src/bpf/asm/index.ts';
import { XDP_PASS } from '../../src/kernel/bpf-attr.ts';
import { buildFrame } from '../../src/packet/build.ts';

requireRoot();
// A failed assertion must not leave a pinhole running (it would keep its namespace alive).
afterEach(() => killLeftoverPinholes());

const UDP_SEND = fileURLToPath(new URL('./fixtures/udp-send.ts', import.meta.url));

function sendUdp(ns: Netns, dst: string, port: number, count: number, size = 64): void {
  const out = ns.exec(process.execPath, ['--import', 'tsx', UDP_SEND, dst, String(port), String(count), String(size)]);
  assert.equal(Number(out), count);
}

function xdpOf(ns: Netns, dev: string): string {
  const m = /prog\/xdp id (\d+) name (\S+)/.exec(ns.ip('-d', 'link', 'show', 'dev', dev));
  return m ? `${m[2]}` : 'none';
}

function lab(tag: string, opts: { queues?: number; mtu?: number } = {}): TwoHosts {
  return twoHosts(tag, { ...opts, gro: true });
}

for (const mode of ['auto', 'afpacket'] as const) {
  test(`--mode ${mode}: exactly the tunnel frames reach the dataplane; host traffic stays with the kernel; stop leaves nothing`, async () => {
    const l = lab(`up-${mode}`, { queues: 2 });
    try {
      l.b.exec('ping', ['-c', '2', '-i', '0.2', LAB.a4]); // ARP resolved before we count
      const p = startPinhole(l.a.name, ['--iface', 'up0', '--port', '4789', '--mode', mode, '--stats-interval', '50']);
      const ready = await p.ready;
      assert.equal(ready.mode, mode === 'auto' ? 'afxdp' : 'afpacket');
      if (mode === 'auto') {
        assert.equal(ready.queues, 2);
        assert.equal(ready.xdpMode, 'native');
        assert.equal(xdpOf(l.a, 'up0'), 'pinhole');
      } else {
        assert.ok(ready.reasons.some((r) => r.code === 'MODE_FORCED'));
      }
      // Host traffic while the dataplane runs: ping, UDP to another port, TCP-ish (ICMP v6 too).
      l.b.exec('ping', ['-c', '5', '-i', '0.05', LAB.a4]);
      l.b.exec('ping', ['-c', '5', '-i', '0.05', LAB.a6]);
      sendUdp(l.b, LAB.a4, 5353, 30);
      const idle = await p.statsUntil(() => true);
      assert.equal(idle.rxPackets, 0, 'no host traffic reached the dataplane');
      sendUdp(l.b, LAB.a4, 4789, 300);
      sendUdp(l.b, LAB.a6, 4789, 200, 1200);
      await p.statsUntil((s) => s.rxPackets >= 500);
      const fin = await p.stop('SIGTERM');
      assert.equal(fin.rxPackets, 500, 'every tunnel frame, nothing else');
      if (mode === 'auto') {
        assert.equal(fin.pinhole!.tunnel, 500);
        assert.ok(fin.pinhole!.icmp >= 5 && fin.pinhole!.icmpv6 >= 5 && fin.pinhole!['udp-port'] >= 30);
        assert.equal(fin.perQueue.length, 2);
        assert.equal(
          fin.perQueue.reduce((s, q) => s + q.rxPackets, 0),
          500,
          'per-queue counters add up',
        );
      }
      assert.ok(fin.eventLoopLagMs.samples > 0);
      assert.equal(xdpOf(l.a, 'up0'), 'none', 'program detached on exit');
      l.b.exec('ping', ['-c', '1', LAB.a4]);
    } finally {
      l.close();
    }
  });
}

test('AF_PACKET mode: the kernel does not answer tunnel frames with ICMP port unreachable', async () => {
  const l = lab('up-icmp');
  try {
    l.b.exec('ping', ['-c', '1', LAB.a4]);
    const cap = await inNetns(l.b, () => new PacketSocket('peer0'));
    try {
      const p = startPinhole(l.a.name, ['--iface', 'up0', '--port', '4789', '--mode', 'afpacket', '--stats-interval', '50']);
      await p.ready;
      sendUdp(l.b, LAB.a4, 4789, 20);
      await p.statsUntil((s) => s.rxPackets >= 20);
      // A datagram to an unguarded closed port does get an ICMP error: proof the capture works.
      sendUdp(l.b, LAB.a4, 4790, 1);
      const isIcmpUnreach = (f: Uint8Array): boolean => f[12] === 0x08 && f[13] === 0x00 && f[23] === 1 && f[34] === 3 && f[35] === 3;
      const portOf = (f: Uint8Array): number => (f[14 + 20 + 8 + 22]! << 8) | f[14 + 20 + 8 + 23]!;
      const first = await cap.receive(isIcmpUnreach, 3000);
      assert.ok(first, 'ICMP port unreachable for the unguarded port');
      assert.equal(portOf(first), 4790, 'the only ICMP error is for port 4790, none for 4789');
      await p.stop();
    } finally {
      cap.close();
    }
  } finally {
    l.close();
  }
});

test('--to: tunnel frames are forwarded unchanged out of another interface (AF_XDP and AF_PACKET)', async () => {
  for (const mode of ['afxdp', 'afpacket'] as const) {
    const nodes = threeNodes(`xc-${mode}`);
    const { gen, mid, sink } = nodes;
    try {
      const p = startPinhole(mid.name, ['--iface', 'up0', '--port', '4789', '--mode', mode, '--to', 'out0', '--stats-interval', '50']);
      const ready = await p.ready;
      assert.equal(ready.mode, mode);
      const cap = await inNetns(sink, () => new PacketSocket('s0'));
      const inj = await inNetns(gen, () => new PacketSocket('g0'));
      try {
        const frames = Array.from({ length: 50 }, (_, i) =>
          buildFrame({
            eth: { dst: '02:00:00:00:00:aa', src: '02:00:00:00:00:bb' },
            ipv4: { src: '198.18.1.2', dst: '198.18.1.1' },
            udp: { sport: 40000 + i, dport: 4789 },
            payload: new Uint8Array(100).fill(i),
          }),
        );
        for (const f of frames) inj.send(f);
        inj.send(
          buildFrame({
            eth: { dst: '02:00:00:00:00:aa', src: '02:00:00:00:00:bb' },
            ipv4: { src: '198.18.1.2', dst: '198.18.1.1' },
            udp: { sport: 1, dport: 53 },
          }),
        );
        for (const f of frames) {
          const got = await cap.receive((g) => g.length === f.length && g[36] === f[36] && g[37] === f[37], 3000);
          assert.ok(got, `frame with sport ${(f[34]! << 8) | f[35]!} arrived`);
          assert.deepEqual(got, f, 'unchanged');
        }
        const fin = await p.stop();
        assert.equal(fin.rxPackets, 50);
        assert.equal(fin.txPackets, 50);
        assert.equal(fin.txDropped, 0);
      } finally {
        cap.close();
        inj.close();
      }
    } finally {
      nodes.close();
    }
  }
});

test('fallbacks: foreign program, forced mode, MTU too large, busy queue, second pinhole', async () => {
  const l = lab('up-fb');
  const dir = mkdtempSync(join(tmpdir(), 'ph-fb-bpffs-'));
  getSys().mount('bpf', dir, 'bpf', 0, 'mode=0700');
  const fw = loadProgram({ name: 'xdp_fw', type: 'xdp', insns: assemble([alu64.mov.imm(R0, XDP_PASS), exit()]) });
  try {
    // 1. Another owner's program: auto falls back to AF_PACKET and leaves it alone.
    fw.pin(join(dir, 'fw'));
    l.a.ip('link', 'set', 'dev', 'up0', 'xdpgeneric', 'pinned', join(dir, 'fw'));
    let p = startPinhole(l.a.name, ['--iface', 'up0', '--port', '4789']);
    let r = await p.ready;
    assert.equal(r.mode, 'afpacket');
    assert.equal(r.reasons[0]!.code, 'FOREIGN_XDP_PROGRAM');
    await p.stop();
    assert.equal(xdpOf(l.a, 'up0'), 'xdp_fw', 'foreign program untouched');
    // 2. Forced AF_XDP refuses with a stable code.
    p = startPinhole(l.a.name, ['--iface', 'up0', '--port', '4789', '--mode', 'afxdp']);
    const ex = await p.exited;
    assert.equal(ex.code, 1);
    assert.match(ex.stderr, /ERR_UPLINK_AFXDP_UNAVAILABLE: .*FOREIGN_XDP_PROGRAM/);
    // 3. ...unless replacing is allowed.
    p = startPinhole(l.a.name, ['--iface', 'up0', '--port', '4789', '--replace-foreign']);
    r = await p.ready;
    assert.equal(r.mode, 'afxdp');
    await p.stop();
    l.a.ip('link', 'set', 'dev', 'up0', 'xdpgeneric', 'off');
    assert.equal(xdpOf(l.a, 'up0'), 'none');

    // 4. A queue held by another AF_XDP socket: auto falls back with the bind error.
    const holder = await inNetns(l.a, () => openXsk({ iface: 'up0', queue: 0, frameCount: 64 }));
    try {
      p = startPinhole(l.a.name, ['--iface', 'up0', '--port', '4789']);
      r = await p.ready;
      assert.equal(r.mode, 'afpacket');
      assert.ok(
        r.reasons.some((x) => x.code === 'AFXDP_FAILED' && /ERR_XSK_BUSY/.test(x.message)),
        JSON.stringify(r.reasons),
      );
      // 5. A second pinhole on the same interface is refused while the first runs.
      const second = startPinhole(l.a.name, ['--iface', 'up0', '--port', '4789']);
      const ex2 = await second.exited;
      assert.equal(ex2.code, 1);
      assert.match(ex2.stderr, /ERR_UPLINK_BUSY: another pinhole \(pid \d+\) is running on up0/);
      await p.stop();
    } finally {
      holder.close();
    }
    assert.equal(xdpOf(l.a, 'up0'), 'none', 'the failed AF_XDP attempt was undone');

    // 6. MTU above the native limit (veth 3506), within a UMEM frame (3818): AF_XDP on generic XDP.
    l.a.ip('link', 'set', 'dev', 'up0', 'mtu', '3700');
    l.b.ip('link', 'set', 'dev', 'peer0', 'mtu', '3700');
    p = startPinhole(l.a.name, ['--iface', 'up0', '--port', '4789', '--stats-interval', '50']);
    r = await p.ready;
    assert.equal(r.mode, 'afxdp');
    assert.equal(r.xdpMode, 'generic');
    assert.ok(r.reasons.some((x) => x.code === 'MTU_TOO_LARGE_FOR_NATIVE_XDP'));
    l.b.exec('ping', ['-c', '1', LAB.a4]);
    // 3000 bytes: above the native-XDP MTU limit, within one 4 KiB UMEM frame.
    sendUdp(l.b, LAB.a4, 4789, 10, 3000);
    await p.statsUntil((s) => s.rxPackets >= 10);
    const fin = await p.stop();
    assert.equal(fin.rxPackets, 10);
  } finally {
    fw.close();
    execFileSync('umount', [dir]);
    rmSync(dir, { recursive: true, force: true });
    l.close();
  }
});

test('bad arguments fail before anything is set up; a second signal cannot abort teardown', async () => {
  const l = lab('up-sig');
  try {
    let p = startPinhole(l.a.name, ['--iface', 'up0', '--port', '4789', '--stats-interval', '5']);
    const ex = await p.exited;
    assert.equal(ex.code, 2);
    assert.match(ex.stderr, /ERR_CLI_USAGE: --stats-interval/);
    assert.equal(xdpOf(l.a, 'up0'), 'none');
    p = startPinhole(l.a.name, ['--iface', 'up0', '--port', '4789', '--queues', '3']);
    const ex2 = await p.exited;
    assert.equal(ex2.code, 1);
    assert.match(ex2.stderr, /ERR_CONFIG_QUEUES: AF_XDP serves every RX queue/);
    assert.equal(xdpOf(l.a, 'up0'), 'none', 'the refused start left nothing');

    p = startPinhole(l.a.name, ['--iface', 'up0', '--port', '4789']);
    assert.equal((await p.ready).mode, 'afxdp');
    p.child.kill('SIGINT');
    p.child.kill('SIGINT');
    const done = await p.exited;
    assert.equal(done.code, 0, done.stderr);
    assert.match(done.stdout, /"event":"stopped"/);
    assert.equal(xdpOf(l.a, 'up0'), 'none', 'teardown completed despite the second signal');
  } finally {
    l.close();
  }
});

test('queues in use, not allocated: a veth made without numrxqueues has one RX queue', async () => {
  const a = createNetns('q-a');
  const b = createNetns('q-b');
  try {
    a.ip('link', 'add', 'name', 'up0', 'type', 'veth', 'peer', 'name', 'peer0', 'netns', b.name);
    a.ip('link', 'set', 'up0', 'up');
    b.ip('link', 'set', 'peer0', 'up');
    const p = startPinhole(a.name, ['--iface', 'up0', '--port', '4789']);
    const r = await p.ready;
    assert.equal(r.mode, 'afxdp', JSON.stringify(r.reasons));
    assert.equal(r.queues, 1);
    await p.stop();
  } finally {
    a.close();
    b.close();
  }
});
