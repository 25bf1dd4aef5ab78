/**
 * Micro-benchmark of software GSO and checksum completion (src/packet/offload.ts): nanoseconds per
 * 1400-byte segment (header copy and fix-up, payload copy, checksums), min/median/max over repeats.
 * `node --import tsx bench/offload.ts [--repeat 7]`; no privileges.
 *
 * Cases: TCP/IPv4, TCP/IPv6 and UDP_L4/IPv4 super-frames of ~64 KiB cut into 1400-byte payloads, with the
 * destination at the same offset modulo 4 as the source (32-bit copy and sum) and one byte off
 * (each stored word assembled from two source words); completeChecksum on a 1400-byte TCP payload; and the raw sums for reference.
 */
import { parseArgs } from 'node:util';

import { buildFrame } from '../src/packet/build.ts';
import { sumWords, sumWordsFast } from '../src/packet/checksum.ts';
import { Segmenter, VNET_GSO_TCPV4, VNET_GSO_TCPV6, VNET_GSO_UDP_L4, completeChecksum } from '../src/packet/offload.ts';
import { printTable, summarise, type Summary } from './stats.ts';

const { values } = parseArgs({ options: { repeat: { type: 'string', default: '7' } } });
const repeats = Math.max(1, Number(values.repeat));
const MSS = 1400;
const SEGMENTS = 46; // 46 * 1400 = 64400 payload bytes: the largest IPv4 GSO frame below 64 KiB

function payload(n: number): Uint8Array {
  const p = new Uint8Array(n);
  for (let i = 0; i < n; i++) p[i] = (i * 131 + 7) & 0xff;
  return p;
}

const tcp4 = buildFrame({
  ipv4: { src: '198.18.0.1', dst: '198.18.0.2' },
  tcp: { sport: 40000, dport: 5201, seq: 1, ack: 1, flags: 0x18 },
  payload: payload(SEGMENTS * MSS),
});
const tcp6 = buildFrame({
  ipv6: { src: '2001:db8::1', dst: '2001:db8::2' },
  tcp: { sport: 40000, dport: 5201, seq: 1, ack: 1, flags: 0x18 },
  payload: payload(SEGMENTS * MSS - 20),
});
const udp4 = buildFrame({
  ipv4: { src: '198.18.0.1', dst: '198.18.0.2' },
  udp: { sport: 40000, dport: 4500 },
  payload: payload(SEGMENTS * MSS),
});

/** Source at offset 2 (as TPACKET places an Ethernet frame: tp_net 16-aligned, tp_mac = tp_net - 14). */
function placed(frame: Uint8Array): Uint8Array {
  const buf = new Uint8Array(2 + frame.length);
  buf.set(frame, 2);
  return buf;
}

const seg = new Segmenter(64);
const dst = new Uint8Array(4096);
let sink = 0;

function gsoNsPerSegment(src: Uint8Array, gsoType: number, dstOff: number, frames: number): number {
  const t0 = process.hrtime.bigint();
  let segments = 0;
  for (let r = 0; r < frames; r++) {
    const n = seg.begin(src, 2, src.length - 2, gsoType, MSS);
    for (let i = 0; i < n; i++) sink += seg.write(i, dst, dstOff);
    segments += n;
  }
  return Number(process.hrtime.bigint() - t0) / segments;
}

const partial = placed(
  buildFrame({
    ipv4: { src: '198.18.0.1', dst: '198.18.0.2' },
    tcp: { sport: 40000, dport: 5201, seq: 1, ack: 1, flags: 0x18 },
    payload: payload(MSS),
  }),
);

function csumNs(iterations: number): number {
  const t0 = process.hrtime.bigint();
  for (let r = 0; r < iterations; r++) sink += completeChecksum(partial, 2, partial.length - 2, 34, 16);
  return Number(process.hrtime.bigint() - t0) / iterations;
}

function sumNs(fast: boolean, iterations: number): number {
  const t0 = process.hrtime.bigint();
  if (fast) for (let r = 0; r < iterations; r++) sink += sumWordsFast(partial, 56, MSS);
  else for (let r = 0; r < iterations; r++) sink += sumWords(partial, 56, MSS);
  return Number(process.hrtime.bigint() - t0) / iterations;
}

const cases: { name: string; run: () => number; note: string }[] = [
  { name: 'GSO TCP/IPv4, aligned dst', run: () => gsoNsPerSegment(placed(tcp4), VNET_GSO_TCPV4, 2, 2000), note: '46 segments/frame' },
  { name: 'GSO TCP/IPv4, unaligned dst', run: () => gsoNsPerSegment(placed(tcp4), VNET_GSO_TCPV4, 3, 1000), note: 'shifted word copy' },
  { name: 'GSO TCP/IPv6, aligned dst', run: () => gsoNsPerSegment(placed(tcp6), VNET_GSO_TCPV6, 2, 2000), note: '' },
  { name: 'GSO UDP_L4/IPv4, aligned dst', run: () => gsoNsPerSegment(placed(udp4), VNET_GSO_UDP_L4, 2, 2000), note: '' },
  { name: 'completeChecksum TCP/IPv4', run: () => csumNs(100000), note: 'in place' },
  { name: 'sumWordsFast 1400 B', run: () => sumNs(true, 100000), note: 'reference' },
  { name: 'sumWords 1400 B', run: () => sumNs(false, 100000), note: 'reference' },
];

// Warm every case up first (the JIT sees all frame kinds, as a dataplane would), then interleave the
// repeats so that load from elsewhere on the machine spreads over all cases.
for (const c of cases) c.run();
const runs: number[][] = cases.map(() => []);
for (let r = 0; r < repeats; r++) for (let i = 0; i < cases.length; i++) runs[i]!.push(cases[i]!.run());
const rows: { name: string; summary: Summary; note?: string }[] = cases.map((c, i) => ({
  name: c.name,
  summary: summarise(runs[i]!),
  note: c.note,
}));
printTable(`offload: ns per ${MSS}-byte segment (${repeats} repeats)`, 'ns', rows);
if (sink === 0.5) console.log(sink); // keep the results alive
