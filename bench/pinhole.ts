/**
 * What the pinhole XDP program costs host traffic: nanoseconds per frame measured by the kernel
 * (BPF_PROG_TEST_RUN with repeat), side by side with a bare `return XDP_PASS` program, for frames
 * the kernel keeps (TCP, UDP to a non-pinhole port, IPv6 with extension headers) and for a tunnel
 * frame. Repeated; min/median/max. Run as root: `node --import tsx bench/pinhole.ts [--repeat 7]`.
 */
import { writeFileSync, mkdirSync } from 'node:fs';
import { parseArgs } from 'node:util';
import '../src/sys/index.ts';
import { alu64, assemble, exit, R0 } from '../src/bpf/asm/index.ts';
import { XDP_PASS } from '../src/kernel/bpf-attr.ts';
import { loadPinhole } from '../src/kernel/pinhole.ts';
import { loadProgram, XdpTestRunner, type Program } from '../src/kernel/program.ts';
import { buildFrame } from '../src/packet/build.ts';
import { printTable, summarise, type Summary } from './stats.ts';

const { values } = parseArgs({ options: { repeat: { type: 'string', default: '7' }, iterations: { type: 'string', default: '200000' } } });
const REPEAT = Number(values.repeat);
const ITER = Number(values.iterations);

const frames: Record<string, Uint8Array> = {
  'tcp ipv4 (host ssh)': buildFrame({
    ipv4: { src: '198.18.0.2', dst: '198.18.0.1' },
    tcp: { sport: 50000, dport: 22 },
    payload: new Uint8Array(64),
  }),
  'udp ipv4 to :53 (not pinhole)': buildFrame({
    ipv4: { src: '198.18.0.2', dst: '198.18.0.1' },
    udp: { sport: 50000, dport: 53 },
    payload: new Uint8Array(64),
  }),
  'udp ipv6 + 2 ext hdrs to :53': buildFrame({
    ipv6: { src: '2001:db8::2', dst: '2001:db8::1', extensions: [{ type: 0 }, { type: 60, hdrExtLen: 1 }] },
    udp: { sport: 50000, dport: 53 },
    payload: new Uint8Array(64),
  }),
  'vlan + udp ipv4 to :4789 (tunnel)': buildFrame({
    vlans: [{ tpid: 0x8100, vid: 10 }],
    ipv4: { src: '198.18.0.2', dst: '198.18.0.1' },
    udp: { sport: 50000, dport: 4789 },
    payload: new Uint8Array(64),
  }),
};

function measure(prog: Program, frame: Uint8Array): Summary {
  const r = new XdpTestRunner(prog);
  r.run(frame, frame.length, 1000); // warm up
  const runs: number[] = [];
  for (let i = 0; i < REPEAT; i++) {
    r.run(frame, frame.length, ITER);
    runs.push(r.lastDuration);
  }
  return summarise(runs);
}

const bare = loadProgram({ name: 'bench_pass', type: 'xdp', insns: assemble([alu64.mov.imm(R0, XDP_PASS), exit()]) });
const ph = loadPinhole({ ports: [4789, 51820], addresses: [] });
const phAddr = loadPinhole({ ports: [4789, 51820], addresses: ['198.18.0.1', '2001:db8::1'] });
const rows: { name: string; summary: Summary; note?: string }[] = [];
const json: Record<string, unknown> = {};
try {
  for (const [name, frame] of Object.entries(frames)) {
    const b = measure(bare, frame);
    const p = measure(ph.program, frame);
    const pa = measure(phAddr.program, frame);
    rows.push({ name: `${name}: bare XDP_PASS`, summary: b });
    rows.push({ name: `${name}: pinhole`, summary: p, note: `+${(p.median - b.median).toFixed(1)} ns` });
    rows.push({ name: `${name}: pinhole + address filter`, summary: pa, note: `+${(pa.median - b.median).toFixed(1)} ns` });
    json[name] = { bare: b, pinhole: p, pinholeAddressFilter: pa };
  }
} finally {
  bare.close();
  ph.close();
  phAddr.close();
}
printTable(`pinhole XDP cost per frame (BPF_PROG_TEST_RUN, ${ITER} runs x ${REPEAT} repeats)`, 'ns', rows);
mkdirSync('bench/results', { recursive: true });
writeFileSync(
  'bench/results/pinhole.json',
  JSON.stringify({ date: new Date().toISOString(), repeat: REPEAT, iterations: ITER, results: json }, null, 2),
);
console.log('\nJSON: bench/results/pinhole.json');
