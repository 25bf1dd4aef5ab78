/**
 * IP and link-layer address text <-> bytes for the netlink layer's control path (attribute
 * values, CLI output). IP parsing and formatting are src/packet/ip.ts's (RFC 4291 / RFC 5952);
 * this adapts them to netlink's needs: "undefined" instead of an exception for bad text, and
 * link-layer addresses of any length (not only 6-byte Ethernet MACs).
 */
import { formatIPv4, formatIPv6, parseIP } from '../packet/ip.ts';

/**
 * Parses dotted-quad IPv4 or IPv6 text; returns 4 or 16 bytes, or undefined if invalid. An IPv6
 * zone (`fe80::1%eth0`, as `ip neigh` prints link-local neighbours) is accepted and dropped.
 */
export function parseIpText(text: string): Uint8Array | undefined {
  const zone = text.indexOf('%');
  try {
    return parseIP(zone > 0 && text.includes(':') ? text.slice(0, zone) : text).bytes;
  } catch {
    return undefined;
  }
}

/** Formats 4 bytes as IPv4, 16 as IPv6 (RFC 5952); anything else as hex. */
export function formatIpBytes(b: Uint8Array): string {
  if (b.length === 4) return formatIPv4(b);
  if (b.length === 16) return formatIPv6(b);
  return formatHex(b);
}

/** Canonical text of an address given as text (throws TypeError if invalid). */
export function canonicalIp(text: string): string {
  const b = parseIpText(text);
  if (!b) throw new TypeError(`not an IP address: ${text}`);
  return formatIpBytes(b);
}

/**
 * A link-layer address (IFLA_ADDRESS, NDA_LLADDR) of any length as hex pairs: 6 bytes on
 * Ethernet, others on other links (tunnels, InfiniBand). Ethernet frames use packet/mac.ts.
 */
export function formatLladdr(b: Uint8Array): string {
  const out: string[] = [];
  for (let i = 0; i < b.length; i++) out.push(b[i]!.toString(16).padStart(2, '0'));
  return out.join(':');
}

/** The inverse of formatLladdr: undefined for text that is not hex pairs. */
export function parseLladdr(text: string): Uint8Array | undefined {
  const parts = text.split(/[:-]/);
  if (parts.some((p) => !/^[0-9a-fA-F]{1,2}$/.test(p))) return undefined;
  return Uint8Array.from(parts.map((p) => Number.parseInt(p, 16)));
}

function formatHex(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

/** Destinations that are never a next hop on a link (RFC 1122 3.2.1.3, RFC 4291 2.4-2.7, RFC 919). */
export type SpecialAddressKind = 'unspecified' | 'loopback' | 'multicast' | 'broadcast' | 'v4-mapped';

/**
 * What kind of non-unicast-destination `b` (4 or 16 bytes) is, or undefined for an ordinary
 * unicast address. IPv4: 0.0.0.0/8 ("this network"), 127.0.0.0/8, 224.0.0.0/4, 255.255.255.255.
 * IPv6: ::, ::1, ff00::/8, ::ffff:0:0/96 (IPv4-mapped: an API convention, never on the wire).
 * Directed broadcasts depend on the configured prefixes; the mirror checks those itself.
 */
export function specialAddressKind(b: Uint8Array): SpecialAddressKind | undefined {
  if (b.length === 4) {
    if (b[0] === 0) return 'unspecified';
    if (b[0] === 127) return 'loopback';
    if ((b[0]! & 0xf0) === 0xe0) return 'multicast';
    if (b[0] === 255 && b[1] === 255 && b[2] === 255 && b[3] === 255) return 'broadcast';
    return undefined;
  }
  if (b[0] === 0xff) return 'multicast';
  let zeros = 0;
  while (zeros < 15 && b[zeros] === 0) zeros++;
  if (zeros === 15) return b[15] === 0 ? 'unspecified' : b[15] === 1 ? 'loopback' : undefined;
  if (zeros >= 10 && b[10] === 0xff && b[11] === 0xff) return 'v4-mapped';
  return undefined;
}
