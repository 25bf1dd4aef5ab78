/**
 * The redirect-all program for workload interfaces against the real kernel, in fresh network
 * namespaces: it passes the verifier; BPF_PROG_TEST_RUN returns XDP_DROP (never PASS) on queues
 * without a socket and XDP_REDIRECT on a queue with one, counting both; attached (bpf_link) to a
 * veth, frames from the peer reach the AF_XDP sockets byte for byte and are counted, and with no
 * socket they are dropped without reaching the host's stack; another program on the interface is
 * never replaced; a SIGKILLed owner leaves the veth to the kernel; AF_PACKET with the accept-all
 * filter sees every frame. No addresses are needed: frames are raw (lab MACs, marker payloads).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { requireRoot } from '../helpers/require.ts';
import { addVeth, withNetns, type Netns } from '../helpers/netns.ts';
import { inNetnsSync, PacketSocket } from '../helpers/packet-socket.ts';
import { attachRedirectAll, loadRedirectAll, type LoadedRedirectAll } from '../../src/kernel/workload.ts';
import { loadPinhole } from '../../src/kernel/pinhole.ts';
import { attachXdp } from '../../src/kernel/xdp-attach.ts';
import { XDP_DROP, XDP_REDIRECT } from '../../src/kernel/bpf-attr.ts';
import { XdpTestRunner } from '../../src/kernel/program.ts';
import { getLinkSync } from '../../src/netlink/link.ts';
import { openXsk, type XskSocket } from '../../src/uplink/xsk/socket.ts';
import { AfPacketSocket, RxBatch } from '../../src/uplink/afpacket/index.ts';
import { compileAcceptAllFilter } from '../../src/bpf/cbpf/accept-all.ts';
import { inNetns } from './xsk-netns.ts';

requireRoot();

const CHILD = fileURLToPath(new URL('./redirect-all-crash-child.ts', import.meta.url));

const POD_MAC = [0x02, 0x00, 0x00, 0x00, 0x00, 0x02];
const WL_MAC = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];

/**
 * A 64-byte frame wl0 ← pod0 with ethertype `type` and the marker 'PHWL' + u32 id at its end.
 * The program never parses frames, so any ethertype will do: IPv4, ARP, IPv6 and a local one.
 */
function frame(id: number, type: number): Uint8Array {
  const f = new Uint8Array(64);
  f.set(WL_MAC, 0);
  f.set(POD_MAC, 6);
  f[12] = type >> 8;
  f[13] = type & 0xff;
  for (let i = 14; i < 56; i++) f[i] = (i * 37 + id) & 0xff;
  f.set([0x50, 0x48, 0x57, 0x4c], 56);
  new DataView(f.buffer).setUint32(60, id);
  return f;
}
const TYPES = [0x0800, 0x0806, 0x86dd, 0x88b5];

function idOf(f: Uint8Array): number {
  if (f.length < 64 || f[56] !== 0x50 || f[57] !== 0x48 || f[58] !== 0x57 || f[59] !== 0x4c) return -1;
  return new DataView(f.buffer, f.byteOffset).getUint32(60);
}

/**
 * A workload veth wl0 (namespace `host`) ↔ pod0 (namespace `pod`). IPv6 is off in both, and
 * neither end has an address, so neither sends anything of its own: every frame wl0 receives
 * is one the test sent.
 */
function workloadVeth(host: Netns, pod: Netns, queues: number): void {
  for (const ns of [host, pod]) {
    ns.exec('sysctl', ['-qw', 'net.ipv6.conf.all.disable_ipv6=1']);
    ns.exec('sysctl', ['-qw', 'net.ipv6.conf.default.disable_ipv6=1']);
  }
  addVeth(host, 'wl0', pod, 'pod0', { queues });
  host.ip('link', 'set', 'wl0', 'address', WL_MAC.map((b) => b.toString(16).padStart(2, '0')).join(':'));
  pod.ip('link', 'set', 'pod0', 'address', POD_MAC.map((b) => b.toString(16).padStart(2, '0')).join(':'));
}

/** Polls the counters until `done` accepts them (the XDP run is not an event we can await). */
async function countersUntil(
  wl: LoadedRedirectAll,
  done: (c: ReturnType<LoadedRedirectAll['counters']>) => boolean,
  timeoutMs: number,
): Promise<ReturnType<LoadedRedirectAll['counters']>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const c = wl.counters();
    if (done(c) || Date.now() > deadline) return c;
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Receives from all sockets until `want` frames arrived (or the deadline): copies, with the socket index. */
async function receiveAll(xsks: XskSocket[], want: number, timeoutMs: number): Promise<{ frame: Uint8Array; socket: number }[]> {
  const batch = { addr: new Uint32Array(64), len: new Uint32Array(64) };
  const got: { frame: Uint8Array; socket: number }[] = [];
  const deadline = Date.now() + timeoutMs;
  while (got.length < want) {
    const left = deadline - Date.now();
    if (left <= 0) break;
    let n = 0;
    for (let s = 0; s < xsks.length; s++) {
      const x = xsks[s]!;
      const k = x.rx(batch, 64);
      for (let i = 0; i < k; i++) got.push({ frame: x.umem.slice(batch.addr[i]!, batch.addr[i]! + batch.len[i]!), socket: s });
      x.releaseRx(batch, k);
      x.wakeRx();
      n += k;
    }
    if (n === 0) await Promise.race(xsks.map((x) => x.waitRx(Math.min(left, 50))));
  }
  return got;
}

const smallXsk = (queue: number) => ({
  iface: 'wl0',
  queue,
  frameSize: 2048 as const,
  frameCount: 512,
  rxSize: 256,
  txSize: 64,
  fillSize: 256,
  compSize: 64,
});

test('verifier accepts it; BPF_PROG_TEST_RUN: no socket → XDP_DROP on queues 0 and 3, counted as noSocket', async () => {
  await withNetns(['wl-run-h', 'wl-run-p'], async (host, pod) => {
    workloadVeth(host, pod, 4);
    const wl = loadRedirectAll();
    try {
      assert.equal(wl.program.info().name, 'ph_redirect_all');
      assert.equal(wl.queues, 64);
      assert.deepEqual(wl.counters(), { redirected: 0n, noSocket: 0n });
      const ifindex = inNetnsSync(host, () => getLinkSync('wl0').index);
      const q0 = new XdpTestRunner(wl.program, { ingressIfindex: ifindex, rxQueue: 0 });
      const q3 = new XdpTestRunner(wl.program, { ingressIfindex: ifindex, rxQueue: 3 });
      const f = frame(1, 0x0800);
      // The kernel resolves ingress_ifindex in the caller's namespace: run inside `host`.
      inNetnsSync(host, () => {
        assert.equal(q0.run(f), XDP_DROP, 'queue 0, no socket');
        assert.equal(q3.run(f), XDP_DROP, 'queue 3, no socket');
        assert.equal(q3.run(f.subarray(0, 14)), XDP_DROP, 'a bare Ethernet header too');
      });
      assert.deepEqual(wl.counters(), { redirected: 0n, noSocket: 3n });
      inNetnsSync(host, () => assert.equal(q0.run(f, f.length, 1000), XDP_DROP));
      assert.deepEqual(wl.counters(), { redirected: 0n, noSocket: 1003n }, 'every run counted once');

      // A socket bound on queue 3 and registered: queue 3 redirects, queue 0 still drops.
      const xsk = await inNetns(host, () => openXsk(smallXsk(3)));
      try {
        wl.bindQueue(3, xsk.fd);
        inNetnsSync(host, () => {
          assert.equal(q3.run(f), XDP_REDIRECT, 'queue 3 has a socket');
          assert.equal(q0.run(f), XDP_DROP, 'queue 0 still has none');
        });
        assert.deepEqual(wl.counters(), { redirected: 1n, noSocket: 1004n });
        wl.unbindQueue(3);
        wl.unbindQueue(3); // absent: no error
        inNetnsSync(host, () => assert.equal(q3.run(f), XDP_DROP, 'unbound again'));
        assert.deepEqual(wl.counters(), { redirected: 1n, noSocket: 1005n });
        assert.throws(() => wl.bindQueue(64, xsk.fd), { code: 'ERR_WORKLOAD_QUEUE' });
        assert.throws(() => wl.bindQueue(-1, xsk.fd), { code: 'ERR_WORKLOAD_QUEUE' });
      } finally {
        xsk.close();
      }
    } finally {
      wl.close();
    }

    // A queue beyond the XSKMAP (queues: 2, rx queue 3) drops too.
    const small = loadRedirectAll({ queues: 2 });
    try {
      const ifindex = inNetnsSync(host, () => getLinkSync('wl0').index);
      const q3 = new XdpTestRunner(small.program, { ingressIfindex: ifindex, rxQueue: 3 });
      inNetnsSync(host, () => assert.equal(q3.run(frame(2, 0x86dd)), XDP_DROP));
      assert.deepEqual(small.counters(), { redirected: 0n, noSocket: 1n });
    } finally {
      small.close();
    }
  });
});

test('attached to a workload veth: frames from the pod reach the XSKs byte for byte; without a socket they are dropped, not passed', async () => {
  await withNetns(['wl-xsk-h', 'wl-xsk-p'], async (host, pod) => {
    workloadVeth(host, pod, 2);
    const wl = loadRedirectAll({ queues: 2 });
    try {
      const { att, xsks, tap } = await inNetns(host, async () => {
        const att = attachRedirectAll(wl, 'wl0', 'auto');
        const xsks = [await openXsk(smallXsk(0)), await openXsk(smallXsk(1))];
        // A tap on wl0: it would see any frame the program passed to the kernel.
        const tap = new PacketSocket('wl0', { ignoreOutgoing: true });
        return { att, xsks, tap };
      });
      const sender = inNetnsSync(pod, () => new PacketSocket('pod0', { ignoreOutgoing: true }));
      try {
        assert.equal(att.via, 'bpf_link');
        assert.equal(att.mode, 'native', 'veth takes native XDP at MTU 1500');
        const xdp = inNetnsSync(host, () => getLinkSync('wl0').xdp);
        assert.deepEqual({ attached: xdp?.attached, progId: xdp?.progId }, { attached: 'native', progId: wl.program.info().id });
        for (const x of xsks) wl.bindQueue(x.queue, x.fd);

        // 1. Every frame, whatever its ethertype, reaches one of the sockets unchanged.
        const N = 64;
        const sent = new Map<number, Uint8Array>();
        for (let i = 0; i < N; i++) {
          const f = frame(100 + i, TYPES[i % TYPES.length]!);
          sent.set(100 + i, f);
          sender.send(f);
        }
        const got = await receiveAll(xsks, N, 5000);
        assert.equal(got.length, N, `all ${N} frames arrived at the sockets`);
        const seen = new Set<number>();
        for (const g of got) {
          const id = idOf(g.frame);
          assert.ok(sent.has(id) && !seen.has(id), `frame ${id} sent once, received once`);
          seen.add(id);
          assert.deepEqual(g.frame, sent.get(id), `frame ${id} byte for byte`);
        }
        assert.deepEqual(wl.counters(), { redirected: BigInt(N), noSocket: 0n });
        for (const x of xsks) assert.equal(x.stats().rxDropped, 0n);
        assert.equal(await tap.receive((f) => idOf(f) >= 0, 50), undefined, 'the host stack saw none of them');

        // 2. No socket registered: dropped and counted, and the host's stack never sees them.
        for (const x of xsks) wl.unbindQueue(x.queue);
        for (let i = 0; i < 16; i++) sender.send(frame(500 + i, TYPES[i % TYPES.length]!));
        const c = await countersUntil(wl, (c) => c.noSocket >= 16n, 5000);
        assert.deepEqual(c, { redirected: BigInt(N), noSocket: 16n });
        assert.equal(await tap.receive((f) => idOf(f) >= 500, 200), undefined, 'no frame leaked to the host stack');
        assert.equal((await receiveAll(xsks, 1, 50)).length, 0, 'nor to the unregistered sockets');

        // 3. Detached: the veth is the kernel's again.
        att.close();
        assert.equal(
          inNetnsSync(host, () => getLinkSync('wl0').xdp?.attached),
          'none',
        );
        sender.send(frame(900, 0x88b5));
        const back = await tap.receive((f) => idOf(f) === 900, 5000);
        assert.ok(back, 'after detach the kernel receives the frame');
      } finally {
        sender.close();
        tap.close();
        for (const x of xsks) x.close();
        att.close();
      }
    } finally {
      wl.close();
    }
  });
});

test('attach refuses an interface that already has a program (ERR_XDP_FOREIGN_PROGRAM) and leaves it there', async () => {
  await withNetns(['wl-foreign-h', 'wl-foreign-p'], async (host, pod) => {
    workloadVeth(host, pod, 1);
    const wl = loadRedirectAll({ queues: 1 });
    const other = loadRedirectAll({ queues: 1 });
    const ph = loadPinhole({ ports: [4789], addresses: [] });
    try {
      inNetnsSync(host, () => {
        assert.throws(() => attachRedirectAll(wl, 'nosuch0', 'auto'), { code: 'ERR_IFACE_NOT_FOUND' });

        // Held by someone's bpf_link (here: another redirect-all).
        const first = attachRedirectAll(other, 'wl0', 'native');
        try {
          for (const mode of ['auto', 'native', 'generic'] as const) {
            assert.throws(() => attachRedirectAll(wl, 'wl0', mode), { code: 'ERR_XDP_FOREIGN_PROGRAM' }, mode);
          }
          assert.equal(getLinkSync('wl0').xdp?.progId, other.program.info().id, 'the owner keeps its program');
        } finally {
          first.close();
        }

        // Attached through netlink (e.g. an uplink-style pinhole someone left there).
        const nl = attachXdp(ph.program.fd, { iface: 'wl0', mode: 'generic', persist: true });
        try {
          assert.throws(() => attachRedirectAll(wl, 'wl0', 'auto'), { code: 'ERR_XDP_FOREIGN_PROGRAM' });
          assert.deepEqual(
            { attached: getLinkSync('wl0').xdp?.attached, progId: getLinkSync('wl0').xdp?.progId },
            { attached: 'generic', progId: ph.program.info().id },
          );
        } finally {
          nl.close();
        }

        // Free again: generic mode is obtained when asked for.
        const g = attachRedirectAll(wl, 'wl0', 'generic');
        assert.deepEqual({ via: g.via, mode: g.mode }, { via: 'bpf_link', mode: 'generic' });
        assert.equal(getLinkSync('wl0').xdp?.attached, 'generic');
        g.close();
        assert.equal(getLinkSync('wl0').xdp?.attached, 'none');
      });
    } finally {
      ph.close();
      other.close();
      wl.close();
    }
  });
});

test("SIGKILL of the owner: the bpf_link dies with it and the workload veth is the kernel's again", async () => {
  await withNetns(['wl-crash-h', 'wl-crash-p'], async (host, pod) => {
    workloadVeth(host, pod, 1);
    const child = host.spawn(process.execPath, ['--import', 'tsx', CHILD]);
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    try {
      const lines = createInterface({ input: child.stdout! });
      const [line] = (await Promise.race([
        once(lines, 'line'),
        once(child, 'exit').then(() => {
          throw new Error(`child exited before ready: ${stderr}`);
        }),
      ])) as [string];
      const ready = JSON.parse(line) as { via: string; mode: string; progId: number };
      assert.equal(ready.via, 'bpf_link');
      assert.equal(
        inNetnsSync(host, () => getLinkSync('wl0').xdp?.progId),
        ready.progId,
      );
      child.kill('SIGKILL');
      await once(child, 'exit');
    } finally {
      child.kill('SIGKILL');
    }
    assert.equal(
      inNetnsSync(host, () => getLinkSync('wl0').xdp?.attached),
      'none',
      'the link died with the process',
    );
    const tap = inNetnsSync(host, () => new PacketSocket('wl0', { ignoreOutgoing: true }));
    const sender = inNetnsSync(pod, () => new PacketSocket('pod0', { ignoreOutgoing: true }));
    try {
      sender.send(frame(7, 0x0800));
      assert.ok(await tap.receive((f) => idOf(f) === 7, 5000), 'the kernel receives frames on the veth');
    } finally {
      sender.close();
      tap.close();
    }
    // A restart attaches afresh, without any takeover.
    const wl = loadRedirectAll({ queues: 1 });
    try {
      inNetnsSync(host, () => attachRedirectAll(wl, 'wl0', 'auto').close());
    } finally {
      wl.close();
    }
  });
});

test('AF_PACKET on a workload interface: the accept-all filter keeps every frame whole', async () => {
  await withNetns(['wl-pkt-h', 'wl-pkt-p'], async (host, pod) => {
    workloadVeth(host, pod, 1);
    const sock = inNetnsSync(host, () =>
      AfPacketSocket.open({ ifname: 'wl0', filter: compileAcceptAllFilter(), blockSize: 1 << 16, blockCount: 4, retireMs: 1 }),
    );
    const sender = inNetnsSync(pod, () => new PacketSocket('pod0', { ignoreOutgoing: true }));
    try {
      const sent = new Map<number, Uint8Array>();
      for (let i = 0; i < 32; i++) {
        const f = frame(300 + i, TYPES[i % TYPES.length]!);
        sent.set(300 + i, f);
        sender.send(f);
      }
      const batch = new RxBatch(64);
      const seen = new Set<number>();
      const deadline = Date.now() + 5000;
      while (seen.size < sent.size && Date.now() < deadline) {
        const n = sock.receive(batch);
        for (let i = 0; i < n; i++) {
          const f = sock.memory.slice(batch.offset[i]!, batch.offset[i]! + batch.length[i]!);
          const id = idOf(f);
          assert.deepEqual(f, sent.get(id), `frame ${id} whole`);
          assert.equal(batch.wireLength[i], batch.length[i], 'not truncated');
          seen.add(id);
        }
        if (n === 0) await sock.pollAsync(100);
      }
      assert.equal(seen.size, sent.size, 'every frame, whatever its ethertype');
    } finally {
      sender.close();
      sock.close();
    }
  });
});
