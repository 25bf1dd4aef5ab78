/**
 * BLAKE2s (RFC 7693), written from the RFC's description: 32-bit words, 10 rounds, 64-byte
 * blocks, output 1..32 bytes, optional key of 1..32 bytes (the key is padded to a full block and
 * hashed first, which turns the hash into a MAC).
 *
 * Why our own: WireGuard's MAC1/MAC2 and cookies use *keyed* BLAKE2s with a 16-byte output, and
 * node:crypto's 'blake2s256' offers neither a key nor another output length. Unkeyed 32-byte
 * HASH and HMAC go through node:crypto (crypto.ts); this file is checked against it and against
 * the RFC's own self-test.
 *
 * One module-level state, reused: no allocation per call. Not reentrant (JS is single-threaded
 * per isolate, and nothing here yields).
 */

const IV = new Uint32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);

/** The message word permutation of each of the 10 rounds (RFC 7693, section 2.7). */
const SIGMA = new Uint8Array([
  0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3, 11, 8, 12, 0, 5, 2, 15, 13,
  10, 14, 3, 6, 7, 1, 9, 4, 7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8, 9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13, 2,
  12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9, 12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11, 13, 11, 7, 14, 12, 1, 3, 9, 5, 0,
  15, 4, 8, 6, 2, 10, 6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5, 10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0,
]);

const h = new Uint32Array(8);
const v = new Uint32Array(16);
const m = new Uint32Array(16);
const block = new Uint8Array(64);
let blockLen = 0;
/** Bytes compressed so far (t in the RFC); fits a double up to 2^53. */
let total = 0;
let outLen = 32;

function g(a: number, b: number, c: number, d: number, x: number, y: number): void {
  v[a] = v[a]! + v[b]! + x;
  let t = v[d]! ^ v[a]!;
  v[d] = (t >>> 16) | (t << 16);
  v[c] = v[c]! + v[d]!;
  t = v[b]! ^ v[c]!;
  v[b] = (t >>> 12) | (t << 20);
  v[a] = v[a]! + v[b]! + y;
  t = v[d]! ^ v[a]!;
  v[d] = (t >>> 8) | (t << 24);
  v[c] = v[c]! + v[d]!;
  t = v[b]! ^ v[c]!;
  v[b] = (t >>> 7) | (t << 25);
}

function compress(last: boolean): void {
  for (let i = 0; i < 16; i++) {
    const o = i * 4;
    m[i] = block[o]! | (block[o + 1]! << 8) | (block[o + 2]! << 16) | (block[o + 3]! << 24);
  }
  for (let i = 0; i < 8; i++) {
    v[i] = h[i]!;
    v[i + 8] = IV[i]!;
  }
  v[12] = v[12]! ^ (total >>> 0);
  v[13] = v[13]! ^ Math.floor(total / 0x100000000);
  if (last) v[14] = ~v[14]!;
  for (let r = 0; r < 10; r++) {
    const s = r * 16;
    g(0, 4, 8, 12, m[SIGMA[s]!]!, m[SIGMA[s + 1]!]!);
    g(1, 5, 9, 13, m[SIGMA[s + 2]!]!, m[SIGMA[s + 3]!]!);
    g(2, 6, 10, 14, m[SIGMA[s + 4]!]!, m[SIGMA[s + 5]!]!);
    g(3, 7, 11, 15, m[SIGMA[s + 6]!]!, m[SIGMA[s + 7]!]!);
    g(0, 5, 10, 15, m[SIGMA[s + 8]!]!, m[SIGMA[s + 9]!]!);
    g(1, 6, 11, 12, m[SIGMA[s + 10]!]!, m[SIGMA[s + 11]!]!);
    g(2, 7, 8, 13, m[SIGMA[s + 12]!]!, m[SIGMA[s + 13]!]!);
    g(3, 4, 9, 14, m[SIGMA[s + 14]!]!, m[SIGMA[s + 15]!]!);
  }
  for (let i = 0; i < 8; i++) h[i] = h[i]! ^ v[i]! ^ v[i + 8]!;
}

/** Starts a hash of `outBytes` (1..32) bytes, keyed when `key` is non-empty (1..32 bytes). */
export function blake2sInit(outBytes: number, key?: Uint8Array): void {
  const keyLen = key ? key.length : 0;
  if (outBytes < 1 || outBytes > 32 || keyLen > 32) throw new RangeError('blake2s: output 1..32 bytes, key 0..32 bytes');
  h.set(IV);
  // Parameter block word 0: digest length, key length, fanout 1, depth 1.
  h[0] = h[0]! ^ (0x01010000 | (keyLen << 8) | outBytes);
  outLen = outBytes;
  total = 0;
  blockLen = 0;
  block.fill(0);
  if (key && keyLen > 0) {
    block.set(key);
    blockLen = 64;
  }
}

/** Absorbs `data[off, off + len)`. */
export function blake2sUpdate(data: Uint8Array, off = 0, len = data.length - off): void {
  const end = off + len;
  let i = off;
  while (i < end) {
    // Compress a full block only once more input follows: the last block is compressed in final.
    if (blockLen === 64) {
      total += 64;
      compress(false);
      blockLen = 0;
    }
    const n = Math.min(64 - blockLen, end - i);
    block.set(data.subarray(i, i + n), blockLen);
    blockLen += n;
    i += n;
  }
}

/** Writes the digest to `out[outOff, outOff + outBytes)`. */
export function blake2sFinal(out: Uint8Array, outOff = 0): void {
  total += blockLen;
  block.fill(0, blockLen);
  compress(true);
  for (let i = 0; i < outLen; i++) out[outOff + i] = (h[i >>> 2]! >>> ((i & 3) * 8)) & 0xff;
}

/** One-shot BLAKE2s: `out` gets `outBytes` of BLAKE2s(key, data...). */
export function blake2s(outBytes: number, key: Uint8Array | undefined, ...data: Uint8Array[]): Uint8Array {
  blake2sInit(outBytes, key);
  for (const d of data) blake2sUpdate(d);
  const out = new Uint8Array(outBytes);
  blake2sFinal(out);
  return out;
}
