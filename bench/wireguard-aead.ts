/**
 * The WireGuard data path's AEAD (ChaCha20-Poly1305, RFC 8439), one core, 64- and 1400-byte
 * packets: which backend the dataplane should use. Each case seals (or opens) packets in place
 * in one off-heap buffer for about 250 ms, repeated (default 7 runs; --runs N), and reports
 * min/median/max of packets per second and Gbit/s of plaintext.
 *
 *   node:crypto      createCipheriv per packet (node's only way to change the nonce)
 *   libsodium/koffi  crypto_aead_chacha20poly1305_ietf_{en,de}crypt_detached through koffi,
 *                    pointers as numbers (src/sys/sodium.ts): no allocation per packet
 *   sodium-native    the npm binding (prebuilt), only if resolvable: it is not a dependency;
 *                    point PINHOLE_BENCH_SODIUM_NATIVE at an installed copy to include it
 *   peer.encrypt / device.consume   the protocol around libsodium: header, padding, counters,
 *                    replay window, index lookup — the per-packet cost the dataplane will pay
 *
 * Results: a table on stdout and bench/results/wireguard-aead.json.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { cpus } from 'node:os';
import { NodeAead, type DataAead } from '../src/tunnel/wireguard/crypto.ts';
import { SodiumAead } from '../src/sys/sodium.ts';
import { ConsumeResult, Device, WG_DELIVER } from '../src/tunnel/wireguard/device.ts';
import { Endpoint } from '../src/tunnel/wireguard/messages.ts';
import { generatePrivateKey } from '../src/tunnel/wireguard/keys.ts';
import { printTable, summarise, type Summary } from './stats.ts';

const runsArg = process.argv.indexOf('--runs');
const RUNS = runsArg > 0 ? Number(process.argv[runsArg + 1]) : 7;
const RUN_MS = 250;
const SIZES = [64, 1400];

const key = new Uint8Array(32).fill(0x42);
const buf = new Uint8Array(new ArrayBuffer(4096));

/** Runs `op` in batches of 256 for ~RUN_MS; returns packets per second. */
function measure(op: (i: number) => void): number {
  for (let i = 0; i < 2000; i++) op(i); // warm up (JIT, caches)
  let n = 0;
  const start = performance.now();
  let now = start;
  while (now - start < RUN_MS) {
    for (let i = 0; i < 256; i++) op(n + i);
    n += 256;
    now = performance.now();
  }
  return (n / (now - start)) * 1000;
}

interface Row {
  name: string;
  size: number;
  pps: Summary;
  gbps: Summary;
}

const rows: Row[] = [];
function run(name: string, size: number, op: (i: number) => void): void {
  const pps: number[] = [];
  for (let r = 0; r < RUNS; r++) pps.push(measure(op));
  rows.push({ name, size, pps: summarise(pps), gbps: summarise(pps.map((p) => (p * size * 8) / 1e9)) });
}

function aeadCases(a: DataAead, label: string): void {
  for (const size of SIZES) {
    run(`${label} seal`, size, (i) => {
      a.seal(key, i, buf, 16, size, buf, 16);
    });
    // Open a genuine message each time (the same one: counter fixed, as the bytes are).
    const sealed = new Uint8Array(new ArrayBuffer(4096));
    a.seal(key, 7, buf, 16, size, sealed, 16);
    const work = new Uint8Array(new ArrayBuffer(4096));
    run(`${label} open`, size, () => {
      work.set(sealed.subarray(16, 16 + size + 16), 16);
      if (a.open(key, 7, work, 16, size + 16, work, 16) !== size) throw new Error('open failed');
    });
  }
}

interface SodiumNative {
  crypto_aead_chacha20poly1305_ietf_encrypt(c: Buffer, m: Buffer, ad: Buffer | null, nsec: null, npub: Buffer, k: Buffer): number;
  crypto_aead_chacha20poly1305_ietf_decrypt(m: Buffer, nsec: null, c: Buffer, ad: Buffer | null, npub: Buffer, k: Buffer): number;
}

function loadSodiumNative(): SodiumNative | undefined {
  const path = process.env.PINHOLE_BENCH_SODIUM_NATIVE ?? 'sodium-native';
  try {
    return createRequire(import.meta.url)(path) as SodiumNative;
  } catch {
    return undefined;
  }
}

/** sodium-native needs Buffers per call (subarray views: one allocation each) — as it would be used. */
function sodiumNativeCases(sn: SodiumNative): void {
  const b = Buffer.from(buf.buffer);
  const nonce = Buffer.alloc(12);
  const k = Buffer.from(key);
  for (const size of SIZES) {
    run('sodium-native seal', size, (i) => {
      nonce.writeUInt32LE(i >>> 0, 4);
      sn.crypto_aead_chacha20poly1305_ietf_encrypt(b.subarray(2048, 2048 + size + 16), b.subarray(16, 16 + size), null, null, nonce, k);
    });
    nonce.fill(0);
    sn.crypto_aead_chacha20poly1305_ietf_encrypt(b.subarray(2048, 2048 + size + 16), b.subarray(16, 16 + size), null, null, nonce, k);
    run('sodium-native open', size, () => {
      if (
        sn.crypto_aead_chacha20poly1305_ietf_decrypt(b.subarray(16, 16 + size), null, b.subarray(2048, 2048 + size + 16), null, nonce, k) <
        0
      )
        throw new Error('open failed');
    });
  }
}

/** The protocol around the AEAD: a real session between two devices, packets in place. */
function protocolCases(): void {
  const aead = new SodiumAead();
  const queue: Uint8Array[] = [];
  const mk = (): Device =>
    new Device({
      privateKey: generatePrivateKey(),
      aead,
      output: { send: (b, o, l) => void queue.push(b.slice(o, o + l)) },
    });
  const a = mk();
  const b = mk();
  const ea = Endpoint.parse('198.18.0.1', 51820);
  const eb = Endpoint.parse('198.18.0.2', 51820);
  const pa = a.addPeer({ publicKey: b.publicKey, endpoint: eb });
  b.addPeer({ publicKey: a.publicKey, endpoint: ea });
  const res = new ConsumeResult();
  pa.handshakeInitiation(0);
  for (let round = 0; round < 4 && queue.length; round++) {
    const msgs = queue.splice(0);
    for (const m of msgs) {
      const t = new Uint8Array(new ArrayBuffer(4096));
      t.set(m);
      (m.length === 148 || m.length === 32 ? b : a).consume(t, 0, m.length, m.length === 148 || m.length === 32 ? ea : eb, 0, res);
    }
  }
  if (!pa.keypairs.current) throw new Error('bench handshake failed');
  const pkt = new Uint8Array(new ArrayBuffer(4096));
  for (const size of SIZES) {
    pkt.fill(0);
    pkt[16] = 0x45;
    pkt[18] = size >> 8;
    pkt[19] = size & 0xff;
    run('peer.encrypt (libsodium)', size, () => {
      pkt[16] = 0x45;
      pkt[18] = size >> 8;
      pkt[19] = size & 0xff;
      pa.encrypt(pkt, 16, size, 1);
    });
    // Fresh genuine messages for consume: pre-encrypt a batch, replay it through copies.
    const batch: Uint8Array[] = [];
    for (let i = 0; i < 4096; i++) {
      pkt[16] = 0x45;
      pkt[18] = size >> 8;
      pkt[19] = size & 0xff;
      const n = pa.encrypt(pkt, 16, size, 1);
      batch.push(pkt.slice(0, n));
    }
    const work = new Uint8Array(new ArrayBuffer(4096));
    const rkp = b.peers[0]!.keypairs.current!;
    let k = 0;
    run('device.consume (libsodium)', size, () => {
      // The batch repeats: forget the counters each time round so every message is genuine
      // (64 words cleared per 4096 packets).
      if ((k & 4095) === 0) rkp.replay.reset();
      const m = batch[k++ & 4095]!;
      work.set(m);
      if (b.consume(work, 0, m.length, ea, 1, res) !== WG_DELIVER) throw new Error(`consume dropped: ${res.reason}`);
    });
  }
}

aeadCases(new NodeAead(), 'node:crypto');
aeadCases(new SodiumAead(), 'libsodium/koffi');
const sn = loadSodiumNative();
if (sn) sodiumNativeCases(sn);
protocolCases();

for (const size of SIZES) {
  const sel = rows.filter((r) => r.size === size);
  printTable(
    `ChaCha20-Poly1305, ${size}-byte packets, one core: Mpps`,
    'Mpps',
    sel.map((r) => ({ name: r.name, summary: scale(r.pps, 1e-6) })),
  );
  printTable(
    `ChaCha20-Poly1305, ${size}-byte packets, one core: Gbit/s of plaintext`,
    'Gbit/s',
    sel.map((r) => ({ name: r.name, summary: r.gbps, note: `${(1e6 / r.pps.median).toFixed(2)} µs/packet (median)` })),
  );
}
if (!sn) console.log('\n(sodium-native not resolvable: set PINHOLE_BENCH_SODIUM_NATIVE to include it)');

function scale(s: Summary, f: number): Summary {
  return { min: s.min * f, median: s.median * f, max: s.max * f, runs: s.runs.map((x) => x * f) };
}

mkdirSync('bench/results', { recursive: true });
writeFileSync(
  'bench/results/wireguard-aead.json',
  `${JSON.stringify({ date: new Date().toISOString(), cpu: cpus()[0]?.model, node: process.version, runs: RUNS, runMs: RUN_MS, rows }, null, 2)}\n`,
);
