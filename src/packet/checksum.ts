/**
 * The Internet checksum (RFC 1071) and the pseudo-header sums of UDP/TCP/ICMPv6:
 * RFC 768 and RFC 9293 §3.1 (IPv4), RFC 8200 §8.1 (IPv6).
 *
 * Sums are kept unfolded in a plain number (exact up to 2^53, i.e. far beyond any frame), so partial
 * sums over several pieces simply add up. Only the last piece may have odd length: an odd final byte
 * is padded with a zero byte on the right, as RFC 1071 §4.1 does.
 *
 *   checksum = ~fold(pseudoHeaderSum + sumWords(segment with checksum field zeroed)) & 0xffff
 *   valid    ⇔ fold(pseudoHeaderSum + sumWords(segment as received)) === 0xffff
 */

/** Adds the big-endian 16-bit words of buf[off, off+len) to `acc`; not folded. */
export function sumWords(buf: Uint8Array, off = 0, len = buf.length - off, acc = 0): number {
  let sum = acc;
  const end = off + len;
  let i = off;
  for (; i + 1 < end; i += 2) sum += (buf[i] << 8) | buf[i + 1];
  if (i < end) sum += buf[i] << 8;
  return sum;
}

/** Folds carries back into the low 16 bits (one's complement addition). */
export function foldSum(sum: number): number {
  let s = sum;
  while (s > 0xffff) s = (s % 0x10000) + Math.floor(s / 0x10000);
  return s;
}

/** One's complement of the folded sum: the value to store in a checksum field. */
export function finishChecksum(sum: number): number {
  return ~foldSum(sum) & 0xffff;
}

/** Internet checksum of buf[off, off+len), starting from the partial sum `acc`. */
export function internetChecksum(buf: Uint8Array, off = 0, len = buf.length - off, acc = 0): number {
  return finishChecksum(sumWords(buf, off, len, acc));
}

/** True when buf[off, off+len) (checksum field included) plus `acc` sums to 0xffff. */
export function verifyChecksum(buf: Uint8Array, off = 0, len = buf.length - off, acc = 0): boolean {
  return foldSum(sumWords(buf, off, len, acc)) === 0xffff;
}

/** IPv4 pseudo-header: source, destination, zero, protocol, upper-layer length (16 bits). */
export function pseudoHeaderSumV4(src: Uint8Array, dst: Uint8Array, protocol: number, length: number): number {
  return sumWords(src, 0, 4, sumWords(dst, 0, 4, (protocol & 0xff) + (length & 0xffff)));
}

/** IPv6 pseudo-header: source, destination, upper-layer length (32 bits), 3 zero bytes, next header. */
export function pseudoHeaderSumV6(src: Uint8Array, dst: Uint8Array, nextHeader: number, length: number): number {
  const len = length >>> 0;
  return sumWords(src, 0, 16, sumWords(dst, 0, 16, (nextHeader & 0xff) + (len >>> 16) + (len & 0xffff)));
}

/*
 * Fast paths (RFC 1071 §2(B), byte-order independence): 32-bit words are read in host order through
 * an Int32Array over the whole ArrayBuffer (taken as unsigned with `>>> 0`), summed in a double
 * (exact below 2^53, i.e. for any range up to 2^21 words), folded to 16 bits and byte-swapped back
 * to the big-endian sum. A range that does not start on a 4-byte boundary is summed byte-wise up to
 * the boundary; if that head has odd length, the aligned words pair their bytes the other way round,
 * which cancels the swap. Views are cached for the last two ArrayBuffers (e.g. an RX ring and a TX
 * buffer), so the hot path allocates nothing; another buffer costs one view (and the cache keeps the
 * last two buffers alive). Big-endian hosts and short ranges take sumWords. Int32Array rather than
 * Uint32Array: copied words stay int32 in the JIT; on Node 20 a copy through Uint32Array views
 * measured ~30% slower, the sums the same.
 */
const HOST_LE = new Uint8Array(new Uint16Array([0x0102]).buffer)[0] === 0x02;
const FAST_MIN_BYTES = 32;

let viewBuf0: ArrayBufferLike | null = null;
let view0: Int32Array<ArrayBufferLike> = new Int32Array(0);
let viewBuf1: ArrayBufferLike | null = null;
let view1: Int32Array<ArrayBufferLike> = new Int32Array(0);

/** A 32-bit view over all of `buf` (cached, see above). */
function words32(buf: ArrayBufferLike): Int32Array<ArrayBufferLike> {
  if (buf === viewBuf0) return view0;
  if (buf === viewBuf1) return view1;
  viewBuf1 = viewBuf0;
  view1 = view0;
  viewBuf0 = buf;
  view0 = new Int32Array(buf, 0, buf.byteLength >>> 2);
  return view0;
}

/**
 * Same result as sumWords after folding (foldSum(sumWordsFast(...)) === foldSum(sumWords(...))),
 * about three times faster on long ranges. The returned partial sum is `acc` plus a value below
 * 2^17, so it adds up with other partial sums like sumWords' does.
 */
export function sumWordsFast(buf: Uint8Array, off = 0, len = buf.length - off, acc = 0): number {
  if (len < FAST_MIN_BYTES || !HOST_LE) return sumWords(buf, off, len, acc);
  const abs = buf.byteOffset + off;
  const head = (4 - (abs & 3)) & 3;
  const k0 = (abs + head) >>> 2;
  const n = (len - head) >>> 2;
  const w = words32(buf.buffer);
  if (k0 + n > w.length) return sumWords(buf, off, len, acc);
  const sum = head === 0 ? acc : sumWords(buf, off, head, acc);
  let s0 = 0;
  let s1 = 0;
  let k = k0;
  const e4 = k0 + n - 3;
  for (; k < e4; k += 4) {
    s0 += (w[k] >>> 0) + (w[k + 1] >>> 0);
    s1 += (w[k + 2] >>> 0) + (w[k + 3] >>> 0);
  }
  const e = k0 + n;
  for (; k < e; k++) s0 += w[k] >>> 0;
  return sumTail(buf, off + head + n * 4, off + len, head & 1, sum + foldWords(s0 + s1, head & 1));
}

/**
 * Copies src[srcOff, srcOff+len) to dst[dstOff, ...) and adds the copied bytes' big-endian 16-bit
 * words to `acc`, like sumWords over the copy (RFC 1071 "copy and checksum"). The regions must not
 * overlap unless they are the same. Whole 32-bit words are stored into dst; when the source sits at
 * another position modulo 4, each is assembled from two source words (shift and or).
 */
export function copySumWords(src: Uint8Array, srcOff: number, dst: Uint8Array, dstOff: number, len: number, acc = 0): number {
  if (len < FAST_MIN_BYTES || !HOST_LE) {
    for (let i = 0; i < len; i++) dst[dstOff + i] = src[srcOff + i];
    return sumWords(dst, dstOff, len, acc);
  }
  const dAbs = dst.byteOffset + dstOff;
  const head = (4 - (dAbs & 3)) & 3;
  const n = (len - head) >>> 2;
  const p = src.byteOffset + srcOff + head;
  const shift = (p & 3) * 8;
  const ks = p >>> 2;
  const j0 = (dAbs + head) >>> 2;
  const si = words32(src.buffer);
  const di = words32(dst.buffer);
  // A shifted copy reads one source word past the last (partly needed) one.
  if (ks + n + (shift === 0 ? 0 : 1) > si.length || j0 + n > di.length) {
    for (let i = 0; i < len; i++) dst[dstOff + i] = src[srcOff + i];
    return sumWords(dst, dstOff, len, acc);
  }
  for (let i = 0; i < head; i++) dst[dstOff + i] = src[srcOff + i];
  const sum = head === 0 ? acc : sumWords(src, srcOff, head, acc);
  const s = shift === 0 ? copyWords(si, di, ks, j0, n) : copyWordsShifted(si, di, ks, j0, n, shift);
  const t = head + n * 4;
  for (let i = t; i < len; i++) dst[dstOff + i] = src[srcOff + i];
  return sumTail(src, srcOff + t, srcOff + len, head & 1, sum + foldWords(s, head & 1));
}

/** Copies n words si[k0..] → di[j0..]; returns their unsigned sum (unfolded). */
function copyWords(si: Int32Array<ArrayBufferLike>, di: Int32Array<ArrayBufferLike>, k0: number, j0: number, n: number): number {
  let s0 = 0;
  let s1 = 0;
  let k = k0;
  let j = j0;
  const e4 = k0 + n - 3;
  for (; k < e4; k += 4, j += 4) {
    const a = si[k];
    const b = si[k + 1];
    const c = si[k + 2];
    const d = si[k + 3];
    di[j] = a;
    di[j + 1] = b;
    di[j + 2] = c;
    di[j + 3] = d;
    s0 += (a >>> 0) + (b >>> 0);
    s1 += (c >>> 0) + (d >>> 0);
  }
  const e = k0 + n;
  for (; k < e; k++, j++) {
    const a = si[k];
    di[j] = a;
    s0 += a >>> 0;
  }
  return s0 + s1;
}

/** Like copyWords for a source `shift` bits (8, 16, 24) past word k0 (little-endian hosts only). */
function copyWordsShifted(
  si: Int32Array<ArrayBufferLike>,
  di: Int32Array<ArrayBufferLike>,
  k0: number,
  j0: number,
  n: number,
  shift: number,
): number {
  const back = 32 - shift;
  let s0 = 0;
  let s1 = 0;
  let prev = si[k0];
  let k = k0 + 1;
  let j = j0;
  const e2 = k0 + n;
  for (; k < e2; k += 2, j += 2) {
    const a = si[k];
    const b = si[k + 1];
    const x = (prev >>> shift) | (a << back);
    const y = (a >>> shift) | (b << back);
    di[j] = x;
    di[j + 1] = y;
    s0 += x >>> 0;
    s1 += y >>> 0;
    prev = b;
  }
  if (k === e2) {
    const a = si[k];
    const x = (prev >>> shift) | (a << back);
    di[j] = x;
    s0 += x >>> 0;
  }
  return s0 + s1;
}

/** Folds a non-negative integer below 2^53 to 16 bits (end-around carry). */
function fold53(sum: number): number {
  let s = (sum % 0x100000000) + Math.floor(sum / 0x100000000);
  s = (s % 0x10000) + Math.floor(s / 0x10000);
  s = (s & 0xffff) + (s >>> 16);
  return (s & 0xffff) + (s >>> 16);
}

/** The big-endian contribution of host-order words: byte-swapped, unless they sit at an odd distance from the range start. */
function foldWords(s: number, odd: number): number {
  const f = fold53(s);
  return odd === 0 ? ((f & 0xff) << 8) | (f >>> 8) : f;
}

/** Bytes [i, end) after the aligned words; `odd` = their distance from the range start is odd. */
function sumTail(buf: Uint8Array, i: number, end: number, odd: number, acc: number): number {
  let sum = acc;
  let p = i;
  if (odd !== 0 && p < end) sum += buf[p++];
  return sumWords(buf, p, end - p, sum);
}
