/**
 * IP address text forms to bytes and back.
 *
 * IPv4: dotted decimal, exactly four decimal octets 0..255. Leading zeros are rejected because
 * inet_aton() reads them as octal (RFC 6943 §3.1.1); shorthand forms ("10.1", "0x0a.0.0.1") too.
 *
 * IPv6: every text form of RFC 4291 §2.2 — eight groups of 1..4 hex digits, one "::" standing for
 * one or more zero groups, and an embedded dotted-quad IPv4 address in the last 32 bits
 * ("::ffff:198.18.0.1", "64:ff9b::192.0.2.1"). Zone identifiers ("%eth0", RFC 4007) and brackets are
 * not addresses and are rejected. Output is the canonical RFC 5952 form: lowercase, no leading zeros,
 * the longest run (leftmost on a tie) of two or more zero groups shortened to "::", and the mixed
 * notation for IPv4-mapped addresses (::ffff:0:0/96, RFC 5952 §5).
 *
 * Bad input throws PacketError with code ERR_INVALID_ADDRESS.
 */
import { PacketError } from './errors.ts';

export type IPFamily = 4 | 6;

export interface ParsedIP {
  family: IPFamily;
  bytes: Uint8Array;
}

/** Parses dotted-decimal IPv4 text into 4 bytes (network order). */
export function parseIPv4(text: string): Uint8Array {
  const out = new Uint8Array(4);
  if (typeof text !== 'string' || !parseIPv4Into(text, 0, text.length, out, 0)) {
    throw invalidAddress(text, 'IPv4');
  }
  return out;
}

/** Parses any RFC 4291 IPv6 text form into 16 bytes (network order). */
export function parseIPv6(text: string): Uint8Array {
  const out = new Uint8Array(16);
  if (typeof text !== 'string' || !parseIPv6Into(text, out)) throw invalidAddress(text, 'IPv6');
  return out;
}

/** Parses IPv4 or IPv6 text; the family is decided by the presence of a colon. */
export function parseIP(text: string): ParsedIP {
  if (typeof text === 'string' && text.includes(':')) return { family: 6, bytes: parseIPv6(text) };
  return { family: 4, bytes: parseIPv4(text) };
}

export function isIPv4(text: string): boolean {
  return typeof text === 'string' && parseIPv4Into(text, 0, text.length, new Uint8Array(4), 0);
}

export function isIPv6(text: string): boolean {
  return typeof text === 'string' && parseIPv6Into(text, new Uint8Array(16));
}

/** Formats 4 bytes (or the 4 bytes at `off`) as dotted decimal. */
export function formatIPv4(bytes: Uint8Array, off = 0): string {
  if (bytes.length < off + 4) throw invalidBytes(bytes, 4);
  return `${bytes[off]}.${bytes[off + 1]}.${bytes[off + 2]}.${bytes[off + 3]}`;
}

/** Formats 16 bytes (or the 16 bytes at `off`) in the RFC 5952 canonical form. */
export function formatIPv6(bytes: Uint8Array, off = 0): string {
  if (bytes.length < off + 16) throw invalidBytes(bytes, 16);
  const words = new Array<number>(8);
  for (let i = 0; i < 8; i++) words[i] = (bytes[off + 2 * i] << 8) | bytes[off + 2 * i + 1];

  // RFC 5952 §5: IPv4-mapped addresses are written with the IPv4 part dotted.
  if (words[0] === 0 && words[1] === 0 && words[2] === 0 && words[3] === 0 && words[4] === 0 && words[5] === 0xffff) {
    return `::ffff:${formatIPv4(bytes, off + 12)}`;
  }

  // RFC 5952 §4.2: shorten the longest run of ≥ 2 zero groups, the first one on a tie.
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }

  let out = '';
  for (let i = 0; i < 8; i++) {
    if (i === bestStart) {
      out += '::';
      i += bestLen - 1;
      continue;
    }
    if (out.length > 0 && !out.endsWith(':')) out += ':';
    out += words[i].toString(16);
  }
  return out;
}

/** Formats 4 or 16 bytes by length. */
export function formatIP(bytes: Uint8Array): string {
  if (bytes.length === 4) return formatIPv4(bytes);
  if (bytes.length === 16) return formatIPv6(bytes);
  throw invalidBytes(bytes, 16);
}

function invalidAddress(text: unknown, family: string): PacketError {
  return new PacketError('ERR_INVALID_ADDRESS', `parse ${JSON.stringify(text)} as an ${family} address`);
}

function invalidBytes(bytes: Uint8Array, want: number): PacketError {
  return new PacketError('ERR_INVALID_ADDRESS', `format a ${bytes.length}-byte value as an address (want ${want} bytes)`);
}

/** Dotted quad in text[start, end) into out[at, at+4); false on any deviation. */
function parseIPv4Into(text: string, start: number, end: number, out: Uint8Array, at: number): boolean {
  let part = 0;
  let value = 0;
  let digits = 0;
  for (let i = start; i < end; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x2e /* . */) {
      if (digits === 0 || part === 3) return false;
      out[at + part++] = value;
      value = 0;
      digits = 0;
      continue;
    }
    if (c < 0x30 || c > 0x39) return false;
    if (digits > 0 && value === 0) return false; // leading zero: octal to inet_aton
    value = value * 10 + (c - 0x30);
    digits++;
    if (value > 255) return false;
  }
  if (digits === 0 || part !== 3) return false;
  out[at + 3] = value;
  return true;
}

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  if (c >= 0x41 && c <= 0x46) return c - 0x41 + 10;
  return -1;
}

function parseIPv6Into(text: string, out: Uint8Array): boolean {
  const n = text.length;
  if (n < 2) return false;
  out.fill(0);
  let words = 0; // 16-bit groups written so far (an embedded IPv4 counts as two)
  let gap = -1; // group index where "::" stands, -1 if none
  let i = 0;
  if (text.charCodeAt(0) === 0x3a /* : */) {
    if (text.charCodeAt(1) !== 0x3a) return false; // a lone leading colon
    gap = 0;
    i = 2;
    if (n === 2) return true;
  }
  for (;;) {
    const start = i;
    let value = 0;
    while (i < n) {
      const h = hexValue(text.charCodeAt(i));
      if (h < 0) break;
      value = value * 16 + h;
      i++;
    }
    if (i < n && text.charCodeAt(i) === 0x2e /* . */) {
      // Embedded IPv4: the rest of the text must be a dotted quad filling the last 32 bits.
      if (words > 6 || !parseIPv4Into(text, start, n, out, words * 2)) return false;
      words += 2;
      break;
    }
    const digits = i - start;
    if (digits === 0 || digits > 4 || words === 8) return false;
    out[words * 2] = value >> 8;
    out[words * 2 + 1] = value & 0xff;
    words++;
    if (i === n) break;
    if (text.charCodeAt(i) !== 0x3a) return false;
    i++;
    if (i < n && text.charCodeAt(i) === 0x3a) {
      if (gap >= 0) return false; // "::" may appear once
      gap = words;
      i++;
      if (i === n) break;
    } else if (i === n) {
      return false; // a lone trailing colon
    }
  }
  if (gap < 0) return words === 8;
  if (words > 7) return false; // "::" stands for at least one group
  // Move the groups after "::" to the end; the hole is zeros.
  const tail = (words - gap) * 2;
  out.copyWithin(16 - tail, gap * 2, words * 2);
  out.fill(0, gap * 2, 16 - tail);
  return true;
}
