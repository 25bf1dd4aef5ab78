/**
 * Flow queueing in the RX ring of an AF_XDP port (ports/xsk-core.ts), against the real
 * kernel: a workload veth wl0 (namespace `host`) ↔ pod0 (namespace `pod`), the redirect-all
 * program on wl0, an AF_XDP port on wl0 queue 0 — an XskPort with a UMEM of its own, and a
 * SharedXskPort owning its group's UMEM, the two kinds a worker opens — and UDP frames sent from
 * pod0 through a packet socket while the port does not read, so the ring holds a backlog (six
 * rounds of it: the 256-entry ring wraps):
 *
 *   ring:  │ A0 … A39 │ P1 │ B1 │ A40 … A44 │ P2 │ C1 │        batch 16
 *   rx 1:  A0 P1 B1 C1 (taken ahead) A1 … A12          rx 3:  A29 … A44 (P1, B1 passed over)
 *   rx 2:  A13 … A28                                    rx 4:  P2 (C1 passed over)
 *
 * Every frame carries its id in its payload, so each rx() shows the order the port chose: a flow
 * with nothing waiting in place before it gets one frame per breath taken ahead, a flow with a
 * frame in place keeps its place (P2 behind P1), and the ring is consumed in order afterwards
 * (nothing lost, nothing twice, the ring empty at the end). IPv6 is off in both namespaces and
 * no addresses are configured: the ring holds exactly what the test sent (checked).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { requireRoot } from '../helpers/require.ts';
import { addVeth, withNetns, type Netns } from '../helpers/netns.ts';
import { inNetns, inNetnsSync, PacketSocket } from '../helpers/packet-socket.ts';
import { buildFrame } from '../../src/packet/build.ts';
import { attachRedirectAll, loadRedirectAll } from '../../src/kernel/workload.ts';
import { getSys, MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE, type Mapping } from '../../src/sys/index.ts';
import { PacketMemory } from '../../src/dataplane/memory.ts';
import { Link } from '../../src/dataplane/link.ts';
import { PC, type Port } from '../../src/dataplane/port.ts';
import { PORT_COUNTERS } from '../../src/dataplane/plan.ts';
import { XSK_FRAME_SIZE, XskPort, type XskPortOptions } from '../../src/dataplane/ports/xsk.ts';
import { openGroupPort, XskGroup } from '../../src/dataplane/ports/xsk-shared.ts';

requireRoot();

const BATCH = 16;
const TAG = 3;
const FRAMES = 512;
const POD_MAC = '02:00:00:00:00:02';
const WL_MAC = '02:00:00:00:00:01';
/** Flows: A bulk, P, B, C sparse (same addresses, other ports). */
const FLOW = { A: 40001, P: 40002, B: 40003, C: 40004 } as const;

type Kind = 'own UMEM' | 'shared UMEM';
const KINDS: readonly Kind[] = ['own UMEM', 'shared UMEM'];

function frame(flow: keyof typeof FLOW, id: number): Uint8Array {
  const payload = new Uint8Array(32);
  new DataView(payload.buffer).setUint32(28, id);
  return buildFrame({
    eth: { src: POD_MAC, dst: WL_MAC },
    ipv4: { src: '198.18.0.2', dst: '198.18.0.1', dontFragment: true },
    udp: { sport: FLOW[flow], dport: 5201 },
    payload,
  });
}

interface Lab {
  port: Port;
  memory: PacketMemory;
  counters: Float64Array;
  send(flow: keyof typeof FLOW, id: number): void;
  /** Waits until the port's RX ring holds exactly `n` frames. */
  inRing(n: number): Promise<void>;
}

/** The workload veth, the program, a port of `kind` (flow queueing `fq`) on wl0 and a sender on pod0. */
async function withLab(kind: Kind, fq: boolean, fn: (lab: Lab) => Promise<void>): Promise<void> {
  await withNetns(['xfq-h', 'xfq-p'], async (host: Netns, pod: Netns) => {
    for (const ns of [host, pod]) ns.exec('sysctl', ['-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']);
    addVeth(host, 'wl0', pod, 'pod0');
    host.ip('link', 'set', 'wl0', 'address', WL_MAC);
    pod.ip('link', 'set', 'pod0', 'address', POD_MAC);
    const sys = getSys();
    const area: Mapping = sys.mmap(FRAMES * XSK_FRAME_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    const wl = loadRedirectAll({ queues: 1 });
    const memory = new PacketMemory();
    const counters = new Float64Array(PORT_COUNTERS.length);
    const o: XskPortOptions = {
      name: 'wl:pod',
      ifname: 'wl0',
      queue: 0,
      memory,
      area,
      areaOffset: 0,
      frameCount: FRAMES,
      rings: { rx: 256, tx: 64, fill: 256, comp: 64 },
      batchSize: BATCH,
      rx: true,
      xsksMapFd: wl.maps.xsks.fd,
      ...(fq ? { flowQueueing: true } : {}),
      counters,
      base: 0,
    };
    let port: Port | undefined;
    let sender: PacketSocket | undefined;
    const att = inNetnsSync(host, () => attachRedirectAll(wl, 'wl0', 'auto'));
    try {
      port = await inNetns(host, () => (kind === 'own UMEM' ? XskPort.open(o) : openGroupPort(o, new XskGroup(area))));
      assert.equal(port.driver, 'afxdp');
      assert.match(port.detail, kind === 'own UMEM' ? /^copy mode, rx ring 256/ : /shared UMEM/);
      sender = inNetnsSync(pod, () => new PacketSocket('pod0', { ignoreOutgoing: true }));
      const ring = (port as XskPort).sock.rxRing;
      const s = sender;
      await fn({
        port,
        memory,
        counters,
        send: (flow, id) => s.send(frame(flow, id)),
        inRing: async (n) => {
          // The veth delivers in its NAPI poll, after sendto returned: wait for it, bounded.
          const deadline = Date.now() + 3000;
          while (ring.available(n) < n) {
            if (Date.now() > deadline) assert.fail(`the RX ring did not fill to ${n} frames within 3 s (${ring.available(n)})`);
            await new Promise<void>((r) => setTimeout(r, 1));
          }
          assert.equal(ring.available(ring.size), n, `exactly ${n} frames in the ring (nothing of the kernel's own)`);
        },
      });
    } finally {
      sender?.close();
      port?.close();
      att.close();
      wl.close();
      sys.munmap(area);
    }
  });
}

/** One rx() into a fresh link: the frames' ids in order; releases them. */
function rxIds(lab: Lab): number[] {
  const out = new Link('rx', 64);
  const n = lab.port.rx(out, TAG);
  assert.equal(n, out.n);
  const ids: number[] = [];
  for (let i = 0; i < out.n; i++) {
    assert.equal(out.aux[i], TAG);
    const b = lab.memory.u8[out.mem[i]!]!;
    const end = out.addr[i]! + out.len[i]!;
    ids.push(new DataView(b.buffer, b.byteOffset).getUint32(end - 4));
  }
  lab.port.release();
  return ids;
}

const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i);
/** Ids: A frames are 0..44, P1 101, B1 201, P2 102, C1 301. */
const BACKLOG: [keyof typeof FLOW, number][] = [
  ...range(0, 39).map((i): [keyof typeof FLOW, number] => ['A', i]),
  ['P', 101],
  ['B', 201],
  ...range(40, 44).map((i): [keyof typeof FLOW, number] => ['A', i]),
  ['P', 102],
  ['C', 301],
];

for (const kind of KINDS) {
  test(`${kind}: behind a backlog, sparse flows are taken ahead, one frame per flow and breath; order within a flow and the ring's order kept`, async () => {
    await withLab(kind, true, async (lab) => {
      // Six rounds of 49 frames: the ring (256 entries) wraps, and the bookkeeping must drain
      // with it, so every round is treated as the first was.
      for (let r = 0; r < 6; r++) {
        const at = (ids: number[]): number[] => ids.map((id) => r * 1000 + id);
        for (const [f, id] of BACKLOG) lab.send(f, r * 1000 + id);
        await lab.inRing(BACKLOG.length);
        assert.deepEqual(
          rxIds(lab),
          at([0, 101, 201, 301, ...range(1, 12)]),
          'rx 1: A0, then P1, B1, C1 taken ahead, then the ring in order',
        );
        assert.equal(lab.counters[PC.rxSparseFirst], 4 * r + 4);
        assert.deepEqual(rxIds(lab), at(range(13, 28)), 'rx 2: in order');
        assert.deepEqual(rxIds(lab), at([...range(29, 39), ...range(40, 44)]), 'rx 3: P1 and B1 passed over');
        assert.deepEqual(rxIds(lab), at([102]), 'rx 4: P2 (kept behind P1), C1 passed over');
        assert.deepEqual(rxIds(lab), [], 'the ring is empty');
        assert.equal(lab.port.readable(), false);
        assert.equal(lab.counters[PC.rxFrames], (r + 1) * BACKLOG.length, 'every frame once');
      }

      // A bulk flow alone, then a sparse one.
      for (let i = 0; i < 20; i++) lab.send('A', 9000 + i);
      lab.send('P', 9103);
      await lab.inRing(21);
      assert.deepEqual(rxIds(lab), [9000, 9103, ...range(9001, 9014)], 'P taken ahead again: nothing of its flow waits');
      assert.deepEqual(rxIds(lab), range(9015, 9019));
      assert.equal(lab.counters[PC.rxSparseFirst], 26);
      assert.equal(lab.counters[PC.kernelDrops], 0);
    });
  });
}

test('no backlog (a breath takes everything waiting): the ring is read in order, nothing taken ahead', async () => {
  await withLab('shared UMEM', true, async (lab) => {
    const sent: [keyof typeof FLOW, number][] = [
      ['A', 0],
      ['A', 1],
      ['P', 101],
      ['A', 2],
      ['B', 201],
      ['A', 3],
    ];
    for (const [f, id] of sent) lab.send(f, id);
    await lab.inRing(sent.length);
    assert.deepEqual(rxIds(lab), [0, 1, 101, 2, 201, 3]);
    assert.equal(lab.counters[PC.rxSparseFirst], 0);
  });
});

test('flow queueing off (a cross-connect, or PINHOLE_XSK_FQ=off): the same backlog comes out in ring order', async () => {
  await withLab('shared UMEM', false, async (lab) => {
    for (const [f, id] of BACKLOG) lab.send(f, id);
    await lab.inRing(BACKLOG.length);
    const all: number[] = [];
    for (let k = 0; k < 4; k++) all.push(...rxIds(lab));
    assert.deepEqual(
      all,
      BACKLOG.map(([, id]) => id),
    );
    assert.equal(lab.counters[PC.rxSparseFirst], 0);
  });
});
