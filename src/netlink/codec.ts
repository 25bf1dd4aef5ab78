/**
 * Netlink codec: pure, no I/O. Kernel message layouts are declared once as data (fixed headers
 * with `defineStruct`, attribute sets with `defineAttrs`) and every encoder/decoder is derived
 * from those declarations.
 *
 * Wire format (include/uapi/linux/netlink.h, Documentation/userspace-api/netlink/intro.rst):
 *
 *   datagram = message*                    each message starts 4-byte aligned (NLMSG_ALIGN)
 *   message  = nlmsghdr(16) | family header (ifinfomsg, rtmsg, ...) | padding | attribute*
 *   attribute= rtattr{ len:u16, type:u16 }(4) | payload(len-4) | padding to 4 (NLA_ALIGN)
 *
 *   0        4       6       8        12       16
 *   +--------+-------+-------+--------+--------+---------------------------+
 *   | len    | type  | flags | seq    | pid    | payload (len - 16 bytes)  |
 *   +--------+-------+-------+--------+--------+---------------------------+
 *
 * Invariants the decoder enforces (and reports as typed PinholeErrors, never a crash or a
 * silently wrong value): a message's `len` is at least the header and at most what is left in
 * the datagram (ERR_NETLINK_TRUNCATED otherwise); an attribute's `len` is at least 4 and fits
 * in its parent (ERR_NETLINK_TRUNCATED); a fixed-size attribute has exactly its size, nested
 * attributes parse (ERR_NETLINK_MALFORMED). Unknown attribute types are ignored, as the kernel's
 * own policy does, so newer kernels never break us.
 *
 * NLMSG_ERROR carries `struct nlmsgerr` (errno as a negative int, then the request's header,
 * or the whole request unless NLM_F_CAPPED), then extended-ack TLVs when NLM_F_ACK_TLVS is set:
 * NLMSGERR_ATTR_MSG is the kernel's human message ("Nexthop device is not up"), which we keep.
 */
import { PinholeError, SysError, defineStruct, errnoName, type StructLayout } from '../sys/index.ts';
import { formatIpBytes, formatLladdr, parseIpText, parseLladdr } from './ip.ts';

// ---------------------------------------------------------------------------------------------
// Constants (kernel spelling)

export const NETLINK_ROUTE = 0;
export const NLMSG_NOOP = 1;
export const NLMSG_ERROR = 2;
export const NLMSG_DONE = 3;
export const NLMSG_OVERRUN = 4;

export const NLM_F_REQUEST = 0x01;
export const NLM_F_MULTI = 0x02;
export const NLM_F_ACK = 0x04;
export const NLM_F_ECHO = 0x08;
export const NLM_F_DUMP_INTR = 0x10;
export const NLM_F_DUMP_FILTERED = 0x20;
export const NLM_F_ROOT = 0x100;
export const NLM_F_MATCH = 0x200;
export const NLM_F_DUMP = NLM_F_ROOT | NLM_F_MATCH;
export const NLM_F_REPLACE = 0x100;
export const NLM_F_EXCL = 0x200;
export const NLM_F_CREATE = 0x400;
export const NLM_F_APPEND = 0x800;
/** In NLMSG_ERROR: the request payload was not echoed. */
export const NLM_F_CAPPED = 0x100;
/** In NLMSG_ERROR: extended-ack TLVs follow. */
export const NLM_F_ACK_TLVS = 0x200;

export const NLMSGERR_ATTR_MSG = 1;
export const NLMSGERR_ATTR_OFFS = 2;

export const NLA_F_NESTED = 0x8000;
export const NLA_F_NET_BYTEORDER = 0x4000;
const NLA_TYPE_MASK = ~(NLA_F_NESTED | NLA_F_NET_BYTEORDER) & 0xffff;

export const NLMSG_HDRLEN = 16;
export const align4 = (n: number): number => (n + 3) & ~3;

// ---------------------------------------------------------------------------------------------
// Fixed layouts (pinned to the UAPI headers by test/unit/struct-layout.test.ts)

export const nlmsghdr = defineStruct(
  'nlmsghdr',
  [
    ['nlmsg_len', 'u32'],
    ['nlmsg_type', 'u16'],
    ['nlmsg_flags', 'u16'],
    ['nlmsg_seq', 'u32'],
    ['nlmsg_pid', 'u32'],
  ],
  { cType: 'struct nlmsghdr', header: 'linux/netlink.h' },
);

export const nlmsgerr = defineStruct(
  'nlmsgerr',
  [
    ['error', 's32'],
    ['msg', nlmsghdr],
  ],
  { cType: 'struct nlmsgerr', header: 'linux/netlink.h' },
);

export const rtattr = defineStruct(
  'rtattr',
  [
    ['rta_len', 'u16'],
    ['rta_type', 'u16'],
  ],
  { cType: 'struct rtattr', header: 'linux/rtnetlink.h' },
);

export const sockaddr_nl = defineStruct(
  'sockaddr_nl',
  [
    ['nl_family', 'u16'],
    ['nl_pad', 'u16'],
    ['nl_pid', 'u32'],
    ['nl_groups', 'u32'],
  ],
  { cType: 'struct sockaddr_nl', header: 'linux/netlink.h' },
);

// ---------------------------------------------------------------------------------------------
// Errors

export const ERR_NETLINK_TRUNCATED = 'ERR_NETLINK_TRUNCATED';
export const ERR_NETLINK_MALFORMED = 'ERR_NETLINK_MALFORMED';
/** The kernel answered a request with NLMSG_ERROR (errno != 0). */
export const ERR_NETLINK_REQUEST = 'ERR_NETLINK_REQUEST';

/** A request the kernel refused: errno, its name, and the extended-ack message if any. */
export class NetlinkError extends PinholeError {
  readonly errno: number;
  readonly errnoCode: string;
  readonly extAck: string | undefined;
  readonly extAckOffset: number | undefined;

  constructor(what: string, errno: number, extAck?: string, extAckOffset?: number) {
    const code = errnoName(errno);
    super(ERR_NETLINK_REQUEST, `${what}: ${code}${extAck ? ` (${extAck})` : ''}`, {
      cause: new SysError('netlink', errno, extAck),
      details: { errno, errnoCode: code, extAck, extAckOffset },
    });
    this.name = 'NetlinkError';
    this.errno = errno;
    this.errnoCode = code;
    this.extAck = extAck;
    this.extAckOffset = extAckOffset;
  }
}

function truncated(what: string, details: Record<string, unknown>): PinholeError {
  return new PinholeError(ERR_NETLINK_TRUNCATED, `truncated netlink ${what}`, { details });
}
function malformed(what: string, details: Record<string, unknown> = {}): PinholeError {
  return new PinholeError(ERR_NETLINK_MALFORMED, `malformed netlink ${what}`, { details });
}

// ---------------------------------------------------------------------------------------------
// Attribute sets, declared as data

export type AttrKind =
  | 'u8'
  | 'u16'
  | 'u32'
  | 's32'
  | 'u64'
  | 'be16'
  | 'flag'
  | 'string'
  | 'binary'
  | 'ip'
  | 'mac'
  | { readonly nested: AttrSet<AttrSpec> }
  | { readonly struct: StructLayout };

export type AttrSpec = Readonly<Record<string, readonly [number, AttrKind]>>;

export type AttrValueOf<K> = K extends 'u8' | 'u16' | 'u32' | 's32' | 'be16'
  ? number
  : K extends 'u64'
    ? bigint
    : K extends 'flag'
      ? true
      : K extends 'string' | 'ip' | 'mac'
        ? string
        : K extends 'binary'
          ? Uint8Array
          : K extends { readonly nested: AttrSet<infer S> }
            ? AttrValues<S>
            : K extends { readonly struct: StructLayout }
              ? Record<string, unknown>
              : never;

/** Decoded attributes: every declared name optional (the kernel may omit any). */
export type AttrValues<S extends AttrSpec> = { -readonly [N in keyof S]?: AttrValueOf<S[N][1]> };

export interface AttrSet<S extends AttrSpec> {
  readonly name: string;
  readonly spec: S;
  /** type number → [name, kind] */
  readonly byType: ReadonlyMap<number, readonly [string, AttrKind]>;
}

export function defineAttrs<const S extends AttrSpec>(name: string, spec: S): AttrSet<S> {
  const byType = new Map<number, readonly [string, AttrKind]>();
  for (const [n, [t, k]] of Object.entries(spec)) {
    if (byType.has(t)) throw new Error(`${name}: attribute type ${t} declared twice`);
    byType.set(t, [n, k]);
  }
  return { name, spec, byType };
}

const FIXED: Partial<Record<string, number>> = { u8: 1, u16: 2, u32: 4, s32: 4, u64: 8, be16: 2 };

/** Decodes the attributes in `buf[start, end)` per `set`. */
export function decodeAttrs<S extends AttrSpec>(set: AttrSet<S>, buf: Uint8Array, start = 0, end = buf.length): AttrValues<S> {
  const out: Record<string, unknown> = {};
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let off = start;
  while (off + 4 <= end) {
    const len = dv.getUint16(off, true);
    const type = dv.getUint16(off + 2, true) & NLA_TYPE_MASK;
    if (len < 4 || off + len > end) {
      throw truncated(`attribute in ${set.name}`, { type, len, offset: off, available: end - off });
    }
    const decl = set.byType.get(type);
    if (decl) out[decl[0]] = decodeValue(set.name, decl[0], decl[1], buf, dv, off + 4, len - 4);
    off += align4(len);
  }
  // Fewer than 4 trailing bytes cannot hold an attribute: alignment padding, ignored.
  return out as AttrValues<S>;
}

function decodeValue(setName: string, name: string, kind: AttrKind, buf: Uint8Array, dv: DataView, at: number, len: number): unknown {
  if (typeof kind === 'string') {
    const fixed = FIXED[kind];
    if (fixed !== undefined && len !== fixed) {
      throw malformed(`attribute ${setName}.${name}`, { expected: fixed, len });
    }
    switch (kind) {
      case 'u8':
        return dv.getUint8(at);
      case 'u16':
        return dv.getUint16(at, true);
      case 'be16':
        return dv.getUint16(at, false);
      case 'u32':
        return dv.getUint32(at, true);
      case 's32':
        return dv.getInt32(at, true);
      case 'u64':
        return dv.getBigUint64(at, true);
      case 'flag':
        return true;
      case 'binary':
        return buf.slice(at, at + len);
      case 'mac':
        return formatLladdr(buf.subarray(at, at + len));
      case 'string': {
        let e = at;
        while (e < at + len && buf[e] !== 0) e++;
        return Buffer.from(buf.buffer, buf.byteOffset + at, e - at).toString('utf8');
      }
      case 'ip':
        if (len !== 4 && len !== 16) throw malformed(`attribute ${setName}.${name}`, { expected: '4 or 16', len });
        return formatIpBytes(buf.subarray(at, at + len));
    }
  }
  if ('nested' in kind) return decodeAttrs(kind.nested, buf, at, at + len);
  if (len < kind.struct.size) throw malformed(`attribute ${setName}.${name}`, { expected: kind.struct.size, len });
  return kind.struct.decode(buf, at);
}

// ---------------------------------------------------------------------------------------------
// Encoding: a growable writer (control path only; requests are small)

export class NlWriter {
  buf: Uint8Array;
  len = 0;

  constructor(initial = 256) {
    this.buf = new Uint8Array(initial);
  }

  reserve(n: number): number {
    const at = this.len;
    const need = align4(at + n);
    if (need > this.buf.length) {
      const next = new Uint8Array(Math.max(need, this.buf.length * 2));
      next.set(this.buf.subarray(0, this.len));
      this.buf = next;
    }
    this.len = need;
    return at;
  }

  view(): DataView {
    return new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.byteLength);
  }

  struct(layout: StructLayout, values: Record<string, unknown>): void {
    const at = this.reserve(layout.size);
    layout.encode(values as never, this.buf, at);
  }

  attr(type: number, payload: Uint8Array): void {
    const at = this.reserve(4 + payload.length);
    const dv = this.view();
    dv.setUint16(at, 4 + payload.length, true);
    dv.setUint16(at + 2, type, true);
    this.buf.set(payload, at + 4);
  }

  /** Starts a nested attribute; call the returned function when its children are written. */
  nest(type: number): () => void {
    const at = this.reserve(4);
    return () => {
      const dv = this.view();
      dv.setUint16(at, this.len - at, true);
      dv.setUint16(at + 2, type | NLA_F_NESTED, true);
    };
  }

  bytes(): Uint8Array {
    return this.buf.subarray(0, this.len);
  }
}

/** Writes `values` as attributes of `set` (undefined values are skipped). */
export function encodeAttrs<S extends AttrSpec>(w: NlWriter, set: AttrSet<S>, values: AttrValues<S>): void {
  for (const [name, v] of Object.entries(values as Record<string, unknown>)) {
    if (v === undefined) continue;
    const decl = set.spec[name];
    if (!decl) throw new TypeError(`${set.name}: no attribute ${name}`);
    const [type, kind] = decl;
    if (typeof kind === 'object' && 'nested' in kind) {
      const end = w.nest(type);
      encodeAttrs(w, kind.nested, v as AttrValues<AttrSpec>);
      end();
      continue;
    }
    w.attr(type, encodeValue(`${set.name}.${name}`, kind, v));
  }
}

function encodeValue(what: string, kind: Exclude<AttrKind, { nested: unknown }>, v: unknown): Uint8Array {
  if (typeof kind === 'object') return kind.struct.encode(v as never);
  const fixed = FIXED[kind];
  const out = fixed === undefined ? undefined : new Uint8Array(fixed);
  const dv = out ? new DataView(out.buffer) : undefined;
  const num = (): number => {
    if (typeof v !== 'number') throw new TypeError(`${what}: expected a number`);
    return v;
  };
  switch (kind) {
    case 'u8':
      dv!.setUint8(0, num());
      return out!;
    case 'u16':
      dv!.setUint16(0, num(), true);
      return out!;
    case 'be16':
      dv!.setUint16(0, num(), false);
      return out!;
    case 'u32':
      dv!.setUint32(0, num() >>> 0, true);
      return out!;
    case 's32':
      dv!.setInt32(0, num(), true);
      return out!;
    case 'u64':
      dv!.setBigUint64(0, BigInt(v as bigint), true);
      return out!;
    case 'flag':
      return new Uint8Array(0);
    case 'binary':
      if (!(v instanceof Uint8Array)) throw new TypeError(`${what}: expected bytes`);
      return v;
    case 'string':
      return new Uint8Array(Buffer.from(`${String(v)}\0`, 'utf8'));
    case 'ip': {
      const b = typeof v === 'string' ? parseIpText(v) : undefined;
      if (!b) throw new TypeError(`${what}: not an IP address: ${String(v)}`);
      return b;
    }
    case 'mac': {
      const b = typeof v === 'string' ? parseLladdr(v) : undefined;
      if (!b) throw new TypeError(`${what}: not a link-layer address: ${String(v)}`);
      return b;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Messages: a family header plus an attribute set

export interface MessageSpec<S extends AttrSpec> {
  readonly name: string;
  readonly header: StructLayout;
  readonly attrs: AttrSet<S>;
}

export function defineMessage<S extends AttrSpec>(name: string, header: StructLayout, attrs: AttrSet<S>): MessageSpec<S> {
  return { name, header, attrs };
}

export interface RawMessage {
  readonly type: number;
  readonly flags: number;
  readonly seq: number;
  readonly pid: number;
  /** Bytes after nlmsghdr (a view into the receive buffer: decode before the next receive). */
  readonly payload: Uint8Array;
}

export interface Decoded<S extends AttrSpec> {
  header: Record<string, number>;
  attrs: AttrValues<S>;
}

/** Splits a datagram into messages; throws ERR_NETLINK_TRUNCATED on a bad length. */
export function splitMessages(buf: Uint8Array, length = buf.length): RawMessage[] {
  const out: RawMessage[] = [];
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let off = 0;
  while (off < length) {
    if (length - off < NLMSG_HDRLEN) throw truncated('message header', { offset: off, available: length - off });
    const len = dv.getUint32(off, true);
    if (len < NLMSG_HDRLEN || len > length - off) {
      throw truncated('message', { offset: off, len, available: length - off });
    }
    out.push({
      type: dv.getUint16(off + 4, true),
      flags: dv.getUint16(off + 6, true),
      seq: dv.getUint32(off + 8, true),
      pid: dv.getUint32(off + 12, true),
      payload: buf.subarray(off + NLMSG_HDRLEN, off + len),
    });
    off += align4(len);
  }
  return out;
}

/** Decodes a message body per `spec`. */
export function decodeBody<S extends AttrSpec>(spec: MessageSpec<S>, payload: Uint8Array): Decoded<S> {
  const h = spec.header;
  if (payload.length < h.size) throw truncated(`${spec.name} header`, { len: payload.length, need: h.size });
  const header = h.decode(payload, 0) as Record<string, number>;
  return { header, attrs: decodeAttrs(spec.attrs, payload, align4(h.size), payload.length) };
}

export interface EncodeOptions {
  type: number;
  flags: number;
  seq?: number;
  pid?: number;
}

/** Encodes nlmsghdr + family header + attributes. */
export function encodeMessage<S extends AttrSpec>(
  spec: MessageSpec<S>,
  opts: EncodeOptions,
  header: Record<string, number>,
  attrs: AttrValues<S> = {},
): Uint8Array {
  const w = new NlWriter(NLMSG_HDRLEN + spec.header.size + 64);
  w.reserve(NLMSG_HDRLEN);
  w.struct(spec.header, header);
  encodeAttrs(w, spec.attrs, attrs);
  finishHeader(w, opts);
  return w.bytes();
}

/** Fills nlmsghdr at the start of `w` once the body is written. */
export function finishHeader(w: NlWriter, opts: EncodeOptions): void {
  nlmsghdr.encode(
    {
      nlmsg_len: w.len,
      nlmsg_type: opts.type,
      nlmsg_flags: opts.flags,
      nlmsg_seq: opts.seq ?? 0,
      nlmsg_pid: opts.pid ?? 0,
    },
    w.buf,
    0,
  );
}

/** Sets the sequence number of an encoded message in place. */
export function setSeq(msg: Uint8Array, seq: number): void {
  new DataView(msg.buffer, msg.byteOffset, msg.byteLength).setUint32(8, seq >>> 0, true);
}

const EXT_ACK = defineAttrs('nlmsgerr_attrs', {
  msg: [NLMSGERR_ATTR_MSG, 'string'],
  offset: [NLMSGERR_ATTR_OFFS, 'u32'],
});

export interface ErrorMessage {
  /** 0 for an ack; a positive errno otherwise. */
  readonly errno: number;
  /** Sequence number of the request this answers. */
  readonly seq: number;
  readonly extAck: string | undefined;
  readonly extAckOffset: number | undefined;
}

/** Decodes an NLMSG_ERROR payload (an ack when errno is 0). */
export function decodeError(m: RawMessage): ErrorMessage {
  const p = m.payload;
  if (p.length < nlmsgerr.size) throw truncated('NLMSG_ERROR', { len: p.length, need: nlmsgerr.size });
  const dv = new DataView(p.buffer, p.byteOffset, p.byteLength);
  const error = dv.getInt32(0, true);
  const origLen = dv.getUint32(4, true);
  const seq = dv.getUint32(12, true);
  let extAck: string | undefined;
  let extAckOffset: number | undefined;
  if (m.flags & NLM_F_ACK_TLVS) {
    // TLVs follow the echoed request: just its header if capped (or an ack), else all of it.
    const echoed = m.flags & NLM_F_CAPPED || error === 0 ? NLMSG_HDRLEN : Math.max(origLen, NLMSG_HDRLEN);
    const start = 4 + align4(echoed);
    if (start <= p.length) {
      const t = decodeAttrs(EXT_ACK, p, start, p.length);
      extAck = t.msg;
      extAckOffset = t.offset;
    }
  }
  return { errno: error === 0 ? 0 : -error, seq, extAck, extAckOffset };
}
