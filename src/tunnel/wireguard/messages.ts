/**
 * WireGuard message layouts (whitepaper section 5.4; all integers little-endian). The first
 * byte is the type, followed by three reserved zero bytes.
 *
 *  1 handshake initiation, 148 bytes        2 handshake response, 92 bytes
 *   0  type=1, 0, 0, 0                        0  type=2, 0, 0, 0
 *   4  sender index                           4  sender index
 *   8  unencrypted ephemeral (32)             8  receiver index
 *  40  encrypted static (32 + 16)            12  unencrypted ephemeral (32)
 *  88  encrypted timestamp (12 + 16)         44  encrypted nothing (0 + 16)
 * 116  mac1 (16)                             60  mac1 (16)
 * 132  mac2 (16)                             76  mac2 (16)
 *
 *  3 cookie reply, 64 bytes                  4 transport data, 32 + 16n bytes
 *   0  type=3, 0, 0, 0                        0  type=4, 0, 0, 0
 *   4  receiver index                         4  receiver index
 *   8  nonce (24)                             8  counter (64-bit)
 *  32  encrypted cookie (16 + 16)            16  encrypted packet, zero-padded to 16 (+ 16 tag)
 *
 * MAC1 covers the message up to mac1, MAC2 up to mac2: for both handshake messages they are
 * the last 32 bytes.
 */

export const MSG_INITIATION = 1;
export const MSG_RESPONSE = 2;
export const MSG_COOKIE_REPLY = 3;
export const MSG_TRANSPORT = 4;

export const INITIATION_LEN = 148;
export const RESPONSE_LEN = 92;
export const COOKIE_REPLY_LEN = 64;
/** Transport header: type, receiver index, counter. */
export const TRANSPORT_HEADER_LEN = 16;
/** The smallest transport message: a keepalive (header + an empty sealed payload). */
export const TRANSPORT_MIN_LEN = 32;

export const INIT_SENDER = 4;
export const INIT_EPHEMERAL = 8;
export const INIT_STATIC = 40;
export const INIT_TIMESTAMP = 88;
export const INIT_MAC1 = 116;
export const INIT_MAC2 = 132;

export const RESP_SENDER = 4;
export const RESP_RECEIVER = 8;
export const RESP_EPHEMERAL = 12;
export const RESP_EMPTY = 44;
export const RESP_MAC1 = 60;
export const RESP_MAC2 = 76;

export const COOKIE_RECEIVER = 4;
export const COOKIE_NONCE = 8;
export const COOKIE_SEALED = 32;

export const DATA_RECEIVER = 4;
export const DATA_COUNTER = 8;
export const DATA_PAYLOAD = 16;

/** The message's type: its first byte when the three reserved bytes are zero, else 0. */
export function messageType(b: Uint8Array, off: number): number {
  return (b[off + 1]! | b[off + 2]! | b[off + 3]!) === 0 ? b[off]! : 0;
}

export function readU32(b: Uint8Array, off: number): number {
  return (b[off]! | (b[off + 1]! << 8) | (b[off + 2]! << 16) | (b[off + 3]! << 24)) >>> 0;
}

export function writeU32(b: Uint8Array, off: number, v: number): void {
  b[off] = v & 0xff;
  b[off + 1] = (v >>> 8) & 0xff;
  b[off + 2] = (v >>> 16) & 0xff;
  b[off + 3] = (v >>> 24) & 0xff;
}

/** A 64-bit little-endian counter as a number; values beyond 2^53 come back as Infinity. */
export function readCounter(b: Uint8Array, off: number): number {
  const hi = readU32(b, off + 4);
  return hi >= 0x200000 ? Infinity : hi * 0x100000000 + readU32(b, off);
}

export function writeCounter(b: Uint8Array, off: number, v: number): void {
  writeU32(b, off, v >>> 0);
  writeU32(b, off + 4, Math.floor(v / 0x100000000));
}

/** Writes the type byte and the three reserved zeros. */
export function writeType(b: Uint8Array, off: number, type: number): void {
  b[off] = type;
  b[off + 1] = 0;
  b[off + 2] = 0;
  b[off + 3] = 0;
}

// --- TAI64N (whitepaper 5.4.2: the initiation's timestamp) ---

/** 2^62 + 10: the TAI64 label of the Unix epoch, as WireGuard implementations write it. */
const TAI64_EPOCH_HI = 0x40000000;
const TAI64_EPOCH_LO = 10;
/**
 * Nanoseconds are rounded down to a multiple of 2^24 (about 16.8 ms) so that the timestamp
 * does not reveal the clock precisely; replay protection only needs it to increase.
 */
const NS_WHITENER = 0xffffff;

/** Writes the 12-byte TAI64N timestamp of `wallMs` (milliseconds since the Unix epoch). */
export function writeTai64n(out: Uint8Array, off: number, wallMs: number): void {
  const secs = Math.floor(wallMs / 1000);
  const ns = Math.floor((wallMs - secs * 1000) * 1e6);
  const lo = secs + TAI64_EPOCH_LO;
  const v = new DataView(out.buffer, out.byteOffset + off, 12);
  v.setUint32(0, TAI64_EPOCH_HI + Math.floor(lo / 0x100000000), false);
  v.setUint32(4, lo >>> 0, false);
  v.setUint32(8, (ns & ~NS_WHITENER) >>> 0, false);
}

/** Big-endian comparison of two 12-byte timestamps: <0, 0, >0. */
export function compareTai64n(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < 12; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return 0;
}

// --- Endpoints ---

/**
 * A UDP endpoint (IPv4 or IPv6 address and port), mutable so the data path can fill one in
 * place from a packet's headers and compare it with a peer's without allocating.
 */
export class Endpoint {
  family: 4 | 6 = 4;
  /** Address bytes: 4 used for IPv4, 16 for IPv6. */
  readonly addr = new Uint8Array(16);
  port = 0;

  static parse(host: string, port: number): Endpoint {
    const e = new Endpoint();
    e.setAddress(host);
    e.port = port;
    return e;
  }

  /** "198.18.0.1:51820" or "[2001:db8::1]:51820". */
  static parseHostPort(s: string): Endpoint {
    const m = /^\[([^\]]+)\]:(\d+)$/.exec(s) ?? /^([^:]+):(\d+)$/.exec(s);
    if (!m) throw new RangeError(`bad endpoint ${s}: expected host:port or [v6]:port`);
    const port = Number(m[2]);
    if (port < 1 || port > 65535) throw new RangeError(`bad endpoint port in ${s}`);
    return Endpoint.parse(m[1]!, port);
  }

  setAddress(host: string): void {
    if (/^\d+\.\d+\.\d+\.\d+$/.test(host)) {
      const p = host.split('.').map(Number);
      if (p.some((x) => x > 255)) throw new RangeError(`bad IPv4 address ${host}`);
      this.family = 4;
      this.addr.fill(0);
      this.addr.set(p);
      return;
    }
    const halves = host.split('::');
    if (halves.length > 2 || !/^[0-9a-fA-F:]+$/.test(host)) throw new RangeError(`bad IP address ${host}`);
    const words = (s: string): number[] => (s === '' ? [] : s.split(':').map((w) => Number.parseInt(w, 16)));
    const head = words(halves[0]!);
    const tail = halves.length === 2 ? words(halves[1]!) : [];
    const fill = halves.length === 2 ? 8 - head.length - tail.length : 0;
    const all = [...head, ...Array<number>(fill).fill(0), ...tail];
    if (all.length !== 8 || all.some((w) => !(w >= 0 && w <= 0xffff))) throw new RangeError(`bad IPv6 address ${host}`);
    this.family = 6;
    for (let i = 0; i < 8; i++) {
      this.addr[i * 2] = all[i]! >> 8;
      this.addr[i * 2 + 1] = all[i]! & 0xff;
    }
  }

  /** The bytes a cookie is bound to: the address, then the port (big-endian). */
  writeCookieInput(out: Uint8Array): number {
    const n = this.family === 4 ? 4 : 16;
    for (let i = 0; i < n; i++) out[i] = this.addr[i]!;
    out[n] = this.port >> 8;
    out[n + 1] = this.port & 0xff;
    return n + 2;
  }

  equals(o: Endpoint): boolean {
    if (this.family !== o.family || this.port !== o.port) return false;
    const n = this.family === 4 ? 4 : 16;
    for (let i = 0; i < n; i++) if (this.addr[i] !== o.addr[i]) return false;
    return true;
  }

  copyFrom(o: Endpoint): void {
    this.family = o.family;
    this.addr.set(o.addr);
    this.port = o.port;
  }

  get address(): string {
    if (this.family === 4) return `${this.addr[0]}.${this.addr[1]}.${this.addr[2]}.${this.addr[3]}`;
    const w: string[] = [];
    for (let i = 0; i < 8; i++) w.push(((this.addr[i * 2]! << 8) | this.addr[i * 2 + 1]!).toString(16));
    return w
      .join(':')
      .replace(/(^|:)0(:0)+(:|$)/, '::')
      .replace(/:{3,}/, '::');
  }

  toString(): string {
    return this.family === 4 ? `${this.address}:${this.port}` : `[${this.address}]:${this.port}`;
  }
}
