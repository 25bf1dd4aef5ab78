/**
 * Reference VXLAN decoder for tests: the decapsulation rules of src/packet/vxlan.ts written a second
 * time, plainly and slowly, straight from the RFCs — Ethernet II, IPv4 (RFC 791), IPv6 (RFC 8200),
 * UDP (RFC 768), VXLAN (RFC 7348 §5). It shares no constants or helpers with src/packet/vxlan.ts
 * (every port, flag, ethertype and protocol number is a literal here), so a wrong shared constant
 * cannot make both agree. The order of the checks is part of the contract (the first failing check
 * names the reason) and is the one documented at the top of src/packet/vxlan.ts.
 *
 * Readability over speed: DataView reads, an object per result, addresses as text.
 */

export type ReferenceResult =
  | {
      ok: true;
      family: 4 | 6;
      vni: number;
      src: string;
      dst: string;
      srcPort: number;
      dstPort: number;
      /** Offset of the inner Ethernet frame from the start of the outer frame. */
      innerOff: number;
      innerLen: number;
    }
  | { ok: false; reason: string };

function drop(reason: string): ReferenceResult {
  return { ok: false, reason };
}

/** RFC 1071: one's complement sum of 16-bit words, folded; the header is valid when it is 0xffff. */
function onesComplementSum(view: DataView, start: number, length: number): number {
  let sum = 0;
  for (let i = 0; i < length; i += 2) sum += view.getUint16(start + i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}

function ipv4Text(view: DataView, at: number): string {
  return [0, 1, 2, 3].map((i) => String(view.getUint8(at + i))).join('.');
}

/** IPv6 text: eight groups, lowercase, leading zeros dropped, no "::" compression (keeps it plain). */
function ipv6Text(view: DataView, at: number): string {
  const groups: string[] = [];
  for (let i = 0; i < 8; i++) groups.push(view.getUint16(at + 2 * i).toString(16));
  return groups.join(':');
}

/** Decodes one outer frame (the whole of `frame`). */
export function referenceDecap(frame: Uint8Array): ReferenceResult {
  const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  const size = frame.byteLength;

  // Ethernet II: 6 destination, 6 source, 2 type.
  if (size < 14) return drop('truncated');
  const etherType = view.getUint16(12);
  if (etherType === 0x8100 || etherType === 0x88a8) return drop('vlan');
  if (etherType !== 0x0800 && etherType !== 0x86dd) return drop('not-ip');

  const l3 = 14;
  const l3Bytes = size - l3; // everything after the Ethernet header, padding included
  let family: 4 | 6;
  let l4: number;
  let ipPayloadLength: number;
  let src: string;
  let dst: string;

  if (etherType === 0x0800) {
    // RFC 791 §3.1.
    if (l3Bytes < 20) return drop('truncated');
    const version = view.getUint8(l3) >> 4;
    const headerLength = (view.getUint8(l3) & 0x0f) * 4;
    if (version !== 4) return drop('ip-header');
    if (headerLength < 20) return drop('ip-header');
    if (l3Bytes < headerLength) return drop('truncated');
    if (onesComplementSum(view, l3, headerLength) !== 0xffff) return drop('ip-checksum');
    const totalLength = view.getUint16(l3 + 2);
    if (totalLength > l3Bytes) return drop('truncated');
    if (totalLength < headerLength + 8 + 8) return drop('ip-header');
    const flagsAndOffset = view.getUint16(l3 + 6);
    const moreFragments = (flagsAndOffset & 0x2000) !== 0;
    const fragmentOffset = flagsAndOffset & 0x1fff;
    if (moreFragments || fragmentOffset !== 0) return drop('fragment');
    if (view.getUint8(l3 + 9) !== 17) return drop('not-udp');
    family = 4;
    l4 = l3 + headerLength;
    ipPayloadLength = totalLength - headerLength;
    src = ipv4Text(view, l3 + 12);
    dst = ipv4Text(view, l3 + 16);
  } else {
    // RFC 8200 §3.
    if (l3Bytes < 40) return drop('truncated');
    if (view.getUint8(l3) >> 4 !== 6) return drop('ip-header');
    const payloadLength = view.getUint16(l3 + 4);
    if (payloadLength > l3Bytes - 40) return drop('truncated');
    if (payloadLength < 8 + 8) return drop('ip-header');
    const nextHeader = view.getUint8(l3 + 6);
    const extensionHeaders = [0 /* hop-by-hop */, 43 /* routing */, 60 /* destination options */, 44 /* fragment */];
    if (extensionHeaders.includes(nextHeader)) return drop('ipv6-ext-header');
    if (nextHeader !== 17) return drop('not-udp');
    family = 6;
    l4 = l3 + 40;
    ipPayloadLength = payloadLength;
    src = ipv6Text(view, l3 + 8);
    dst = ipv6Text(view, l3 + 24);
  }

  // RFC 768: source port, destination port, length (header + data), checksum (not checked).
  const srcPort = view.getUint16(l4);
  const dstPort = view.getUint16(l4 + 2);
  const udpLength = view.getUint16(l4 + 4);
  if (udpLength < 8 + 8 || udpLength > ipPayloadLength) return drop('udp-length');

  // RFC 7348 §5: flags (8 bits, only I = 0x08), 24 reserved bits, VNI (24 bits), 8 reserved bits.
  const vx = l4 + 8;
  const flags = view.getUint8(vx);
  const reserved1 = (view.getUint8(vx + 1) << 16) | view.getUint16(vx + 2);
  const vni = view.getUint32(vx + 4) >>> 8;
  const reserved2 = view.getUint8(vx + 7);
  if (flags !== 0x08 || reserved1 !== 0 || reserved2 !== 0) return drop('vxlan-flags');

  const innerOff = vx + 8;
  const innerLen = udpLength - 16;
  if (innerLen < 14) return drop('inner-truncated');
  return { ok: true, family, vni, src, dst, srcPort, dstPort, innerOff, innerLen };
}
