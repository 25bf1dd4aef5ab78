/**
 * Cryptokey routing (whitepaper section 2): a peer's allowed IPs are both where packets to that
 * peer may go (outgoing: the destination must be inside one of them) and where packets from
 * that peer may come from (incoming: the decrypted packet's source must be inside one of them).
 *
 * One connection has one peer, so the table is that peer's prefix list, matched by a linear scan
 * over preallocated words (a handful of prefixes; no hashing, no allocation per packet). Addresses
 * are read straight from the IP header in the packet buffer.
 */
import { parseIP } from '../../packet/ip.ts';

export class AllowedIps {
  private readonly net4: Int32Array;
  private readonly mask4: Int32Array;
  private readonly net6: Int32Array;
  private readonly mask6: Int32Array;
  readonly count4: number;
  readonly count6: number;

  /** `prefixes`: `addr/len` or a bare address (host prefix). */
  constructor(prefixes: readonly string[]) {
    const v4: [number, number][] = [];
    const v6: [number[], number[]][] = [];
    for (const p of prefixes) {
      const slash = p.indexOf('/');
      const ip = parseIP(slash < 0 ? p : p.slice(0, slash));
      const max = ip.family === 4 ? 32 : 128;
      const len = slash < 0 ? max : Number(p.slice(slash + 1));
      if (!Number.isInteger(len) || len < 0 || len > max) throw new RangeError(`bad prefix ${p}`);
      const words: number[] = [];
      const masks: number[] = [];
      for (let w = 0; w < max / 32; w++) {
        const bits = Math.max(0, Math.min(32, len - 32 * w));
        const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) | 0;
        const b = ip.bytes;
        const word = (b[4 * w]! << 24) | (b[4 * w + 1]! << 16) | (b[4 * w + 2]! << 8) | b[4 * w + 3]! | 0;
        words.push(word & mask);
        masks.push(mask);
      }
      if (ip.family === 4) v4.push([words[0]!, masks[0]!]);
      else v6.push([words, masks]);
    }
    this.count4 = v4.length;
    this.count6 = v6.length;
    this.net4 = Int32Array.from(v4.map((x) => x[0]));
    this.mask4 = Int32Array.from(v4.map((x) => x[1]));
    this.net6 = Int32Array.from(v6.flatMap((x) => x[0]));
    this.mask6 = Int32Array.from(v6.flatMap((x) => x[1]));
  }

  /** Whether the IPv4 address at buf[off, off + 4) is inside an allowed prefix. */
  matchV4(buf: Uint8Array, off: number): boolean {
    const a = (buf[off]! << 24) | (buf[off + 1]! << 16) | (buf[off + 2]! << 8) | buf[off + 3]! | 0;
    const n = this.count4;
    for (let i = 0; i < n; i++) if ((a & this.mask4[i]!) === this.net4[i]) return true;
    return false;
  }

  /** Whether the IPv6 address at buf[off, off + 16) is inside an allowed prefix. */
  matchV6(buf: Uint8Array, off: number): boolean {
    const n = this.count6;
    for (let i = 0; i < n; i++) {
      let ok = true;
      for (let w = 0; w < 4 && ok; w++) {
        const o = off + 4 * w;
        const a = (buf[o]! << 24) | (buf[o + 1]! << 16) | (buf[o + 2]! << 8) | buf[o + 3]! | 0;
        if ((a & this.mask6[4 * i + w]!) !== this.net6[4 * i + w]) ok = false;
      }
      if (ok) return true;
    }
    return false;
  }

  /**
   * For the IP packet at buf[ip]: whether its source (`source`) or destination address is
   * allowed. A packet that is neither IPv4 nor IPv6 is not.
   */
  matchPacket(buf: Uint8Array, ip: number, source: boolean): boolean {
    const v = buf[ip]! >> 4;
    if (v === 4) return this.matchV4(buf, ip + (source ? 12 : 16));
    if (v === 6) return this.matchV6(buf, ip + (source ? 8 : 24));
    return false;
  }
}
