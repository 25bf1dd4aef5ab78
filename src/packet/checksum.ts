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
