/**
 * Uplink benchmark: one three-namespace topology, every peer in one run, repeated.
 *
 *   [gen] g0 ──veth── up0 [mid] out0 ──veth── s0 [sink]
 *
 * The generator is the kernel itself (BPF_PROG_TEST_RUN live frames, XDP_TX out of g0, ~2 Mpps
 * on one core): UDP to port 4789. Cases:
 *   - receive-and-drop on up0: pinhole AF_XDP, pinhole AF_PACKET;
 *   - L2 cross-connect up0 → out0: pinhole AF_XDP --to, pinhole AF_PACKET --to, the kernel's
 *     own IP forwarding (mid routes the frames to the sink) as the reference, and an in-kernel
 *     XDP redirect up0 → out0 as the ceiling;
 * each for 64-byte frames (packets per second) and 1500-byte frames (Gbit/s). Delivered frames
 * are counted where they land (pinhole's counters for drop, the sink's interface counters for
 * forwarding) and divided by the generator's send time. Prints min/median/max per case and
 * writes bench/results/uplink.json. Root; `node --import tsx bench/uplink.ts [--repeat 5]`.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { Netns } from '../test/helpers/netns.ts';
import { threeNodes } from '../test/helpers/lab.ts';
import { startPinhole, type PinholeProc } from '../test/helpers/pinhole-proc.ts';
import { buildFrame } from '../src/packet/build.ts';
import { getSys } from '../src/sys/index.ts';
import { alu64, assemble, call, exit, Helper, R1, R2 } from '../src/bpf/asm/index.ts';
import { loadProgram } from '../src/kernel/program.ts';
import { printTable, summarise, type Summary } from './stats.ts';

const { values } = parseArgs({ options: { repeat: { type: 'string', default: '5' }, frames: { type: 'string', default: '2000000' } } });
const REPEAT = Number(values.repeat);
const FRAMES = Number(values.frames);
const TRAFFICGEN = fileURLToPath(new URL('./lib/trafficgen.ts', import.meta.url));

const nodes = threeNodes('bench', { queues: 2 });
const { gen, mid, sink } = nodes;
const cleanup = (): void => nodes.close();
process.on('SIGINT', () => {
  cleanup();
  process.exit(130);
});

function sinkRx(): number {
  return Number(sink.exec('cat', ['/sys/class/net/s0/statistics/rx_packets']).trim());
}

function macOf(ns: Netns, dev: string): string {
  return ns.exec('cat', [`/sys/class/net/${dev}/address`]).trim();
}

function frameHex(size: number): string {
  const f = buildFrame({
    eth: { dst: macOf(mid, 'up0'), src: macOf(gen, 'g0') },
    ipv4: { src: '198.18.0.2', dst: '198.19.0.2' },
    udp: { sport: 40000, dport: 4789 },
    payload: new Uint8Array(size - 14 - 20 - 8),
  });
  return Buffer.from(f).toString('hex');
}

function send(size: number): number {
  const out = JSON.parse(
    gen.exec(process.execPath, ['--import', 'tsx', TRAFFICGEN, '--iface', 'g0', '--frame', frameHex(size), '--count', String(FRAMES)]),
  ) as { seconds: number };
  return out.seconds;
}

interface Row {
  name: string;
  summary: Summary;
  note?: string;
}
const rows: Row[] = [];
const json: Record<string, unknown> = {};

async function measure(name: string, size: number, count: () => number | Promise<number>): Promise<void> {
  const rates: number[] = [];
  for (let i = 0; i < REPEAT; i++) {
    const before = await count();
    const seconds = send(size);
    // Let in-flight frames land: wait until the counter stops moving.
    let last = await count();
    for (let k = 0; k < 50; k++) {
      await new Promise((r) => setTimeout(r, 20));
      const now = await count();
      if (now === last) break;
      last = now;
    }
    rates.push((last - before) / seconds);
  }
  const pps = summarise(rates);
  if (size <= 64) {
    rows.push({ name: `${name} ${size}B`, summary: summarise(rates.map((r) => r / 1e6)), note: 'Mpps' });
  } else {
    rows.push({ name: `${name} ${size}B`, summary: summarise(rates.map((r) => (r * size * 8) / 1e9)), note: 'Gbit/s' });
  }
  json[`${name} ${size}B`] = { pps };
}

async function withPinhole(
  args: string[],
  fn: (p: PinholeProc, rx: () => Promise<number>, tx: () => Promise<number>) => Promise<void>,
): Promise<number> {
  const p = startPinhole(mid.name, ['--iface', 'up0', '--port', '4789', '--stats-interval', '20', ...args]);
  await p.ready;
  // Stats lines come every 20 ms; wait for a fresh one so a reading is never stale.
  const latest = async (): Promise<{ rxPackets: number; txPackets: number }> => {
    const mark = p.latestStats();
    await p.statsUntil((s) => s !== mark && (!mark || s.rxPackets >= mark.rxPackets));
    await new Promise((r) => setTimeout(r, 25));
    return p.latestStats()!;
  };
  await fn(
    p,
    async () => (await latest()).rxPackets,
    async () => (await latest()).txPackets,
  );
  const fin = await p.stop();
  return fin.eventLoopLagMs.p99;
}

/** The ceiling: an XDP program on up0 that redirects every frame to out0 inside the kernel. */
async function withXdpRedirect(fn: () => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'ph-bench-bpffs-'));
  getSys().mount('bpf', dir, 'bpf', 0, 'mode=0700');
  const out0 = Number(mid.exec('cat', ['/sys/class/net/out0/ifindex']).trim());
  const prog = loadProgram({
    name: 'ph_bench_redir',
    type: 'xdp',
    insns: assemble([alu64.mov.imm(R1, out0), alu64.mov.imm(R2, 0), call(Helper.redirect), exit()]),
  });
  try {
    prog.pin(join(dir, 'redir'));
    mid.ip('link', 'set', 'dev', 'up0', 'xdpdrv', 'pinned', join(dir, 'redir'));
    try {
      await fn();
    } finally {
      mid.ip('link', 'set', 'dev', 'up0', 'xdpdrv', 'off');
    }
  } finally {
    prog.close();
    execFileSync('umount', [dir]);
    rmSync(dir, { recursive: true, force: true });
  }
}

try {
  mid.ip('addr', 'add', '198.18.0.1/24', 'dev', 'up0');
  mid.ip('addr', 'add', '198.19.0.1/24', 'dev', 'out0');
  sink.ip('addr', 'add', '198.19.0.2/24', 'dev', 's0');
  mid.ip('neigh', 'replace', '198.19.0.2', 'lladdr', macOf(sink, 's0'), 'dev', 'out0', 'nud', 'permanent');
  const lag: Record<string, number> = {};
  for (const size of [64, 1500]) {
    for (const mode of ['afxdp', 'afpacket'] as const) {
      lag[`${mode} drop ${size}B`] = await withPinhole(['--mode', mode], (_p, rx) => measure(`pinhole ${mode} rx-drop`, size, rx));
      lag[`${mode} xc ${size}B`] = await withPinhole(['--mode', mode, '--to', 'out0'], () =>
        measure(`pinhole ${mode} cross-connect`, size, sinkRx),
      );
    }
    mid.exec('sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
    await measure('kernel ip forwarding', size, sinkRx);
    mid.exec('sysctl', ['-qw', 'net.ipv4.ip_forward=0']);
    await withXdpRedirect(() => measure('in-kernel XDP redirect (ceiling)', size, sinkRx));
  }
  rows.sort((a, b) => a.name.localeCompare(b.name));
  printTable(`uplink throughput (veth, ${FRAMES} frames per run, ${REPEAT} runs; generator: kernel live frames)`, '', rows);
  console.log('\nmain-thread event-loop lag p99 while forwarding (ms):', JSON.stringify(lag));
  mkdirSync('bench/results', { recursive: true });
  writeFileSync(
    'bench/results/uplink.json',
    JSON.stringify({ date: new Date().toISOString(), repeat: REPEAT, frames: FRAMES, results: json, lagP99Ms: lag }, null, 2),
  );
  console.log('JSON: bench/results/uplink.json');
} finally {
  cleanup();
}
