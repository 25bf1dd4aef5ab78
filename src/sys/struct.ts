/**
 * Kernel struct layouts, declared once as data. A layout computes C natural alignment and
 * offsets (x86_64 / LP64: every scalar aligned to its size) and encodes/decodes plain objects.
 *
 * Every layout registers itself with the C expression it mirrors, so a unit test
 * (test/unit/struct-layout.test.ts) compiles a probe against the system's UAPI headers
 * (`/usr/include/linux/*.h`) and pins our sizes and offsets to the kernel's.
 *
 * These helpers are for the control path (syscall arguments). Hot paths (rings) use typed
 * arrays at offsets read from `layout.offsets` once, never encode/decode per packet.
 */

export type Scalar = 'u8' | 'u16' | 'u32' | 'u64' | 's32' | 's64';
export type FieldType = Scalar | { bytes: number } | StructLayout;

export type FieldValue = number | bigint | Uint8Array | StructValues;
export interface StructValues {
  [field: string]: FieldValue | undefined;
}

const SCALAR_SIZE: Record<Scalar, number> = { u8: 1, u16: 2, u32: 4, u64: 8, s32: 4, s64: 8 };

export interface StructLayout {
  /** C type this layout mirrors, e.g. `struct xdp_umem_reg` or `union bpf_attr`. */
  readonly cType: string;
  /** Our name for it (unique); for anonymous bpf_attr members, `bpf_attr.map_create` etc. */
  readonly name: string;
  readonly size: number;
  readonly align: number;
  readonly fields: readonly { name: string; type: FieldType; offset: number; size: number }[];
  readonly offsets: Readonly<Record<string, number>>;
  /** Prefix of member paths in C (`test.` for bpf_attr's named `test` struct). */
  readonly cPrefix: string;
  /** Whether `sizeof(cType)` equals `size` (false for members of a larger union). */
  readonly checkSize: boolean;
  /** Header to include for the layout test. */
  readonly header: string;
  encode(values: StructValues, into?: Uint8Array, offset?: number): Uint8Array;
  decode(buf: Uint8Array, offset?: number): Record<string, FieldValue>;
}

const registry: StructLayout[] = [];

/** All layouts declared so far (for the layout test). */
export function declaredLayouts(): readonly StructLayout[] {
  return registry;
}

function sizeOf(t: FieldType): { size: number; align: number } {
  if (typeof t === 'string') return { size: SCALAR_SIZE[t], align: SCALAR_SIZE[t] };
  if ('bytes' in t) return { size: t.bytes, align: 1 };
  return { size: t.size, align: t.align };
}

export interface StructOptions {
  cType: string;
  header: string;
  cPrefix?: string;
  checkSize?: boolean;
  /** Pad the total size up to this many bytes (e.g. a union we only use a prefix of). */
  minSize?: number;
}

export function defineStruct(name: string, fields: readonly (readonly [string, FieldType])[], opts: StructOptions): StructLayout {
  let off = 0;
  let align = 1;
  const out: { name: string; type: FieldType; offset: number; size: number }[] = [];
  const offsets: Record<string, number> = {};
  for (const [fname, type] of fields) {
    const s = sizeOf(type);
    off = Math.ceil(off / s.align) * s.align;
    out.push({ name: fname, type, offset: off, size: s.size });
    offsets[fname] = off;
    off += s.size;
    align = Math.max(align, s.align);
  }
  let size = Math.ceil(off / align) * align;
  if (opts.minSize !== undefined && opts.minSize > size) size = opts.minSize;

  const layout: StructLayout = {
    cType: opts.cType,
    name,
    size,
    align,
    fields: out,
    offsets,
    cPrefix: opts.cPrefix ?? '',
    checkSize: opts.checkSize ?? true,
    header: opts.header,
    encode(values, into, base = 0) {
      const buf = into ?? new Uint8Array(new ArrayBuffer(size));
      if (into && base + size > into.byteLength) throw new RangeError(`${name}: buffer too small`);
      const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
      for (const f of out) {
        const v = values[f.name];
        if (v === undefined) continue;
        writeField(dv, buf, base + f.offset, f.type, v, `${name}.${f.name}`);
      }
      for (const k of Object.keys(values)) {
        if (!(k in offsets)) throw new TypeError(`${name}: no field ${k}`);
      }
      return buf;
    },
    decode(buf, base = 0) {
      const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
      const r: Record<string, FieldValue> = {};
      for (const f of out) r[f.name] = readField(dv, buf, base + f.offset, f.type);
      return r;
    },
  };
  registry.push(layout);
  return layout;
}

function writeField(dv: DataView, buf: Uint8Array, at: number, t: FieldType, v: FieldValue, what: string): void {
  if (typeof t === 'string') {
    if (typeof v !== 'number' && typeof v !== 'bigint') throw new TypeError(`${what}: expected a number`);
    switch (t) {
      case 'u8':
        dv.setUint8(at, Number(v));
        return;
      case 'u16':
        dv.setUint16(at, Number(v), true);
        return;
      case 'u32':
        dv.setUint32(at, Number(v) >>> 0, true);
        return;
      case 's32':
        dv.setInt32(at, Number(v), true);
        return;
      case 'u64':
        dv.setBigUint64(at, BigInt.asUintN(64, BigInt(v)), true);
        return;
      case 's64':
        dv.setBigInt64(at, BigInt.asIntN(64, BigInt(v)), true);
        return;
    }
  }
  if ('bytes' in t) {
    if (!(v instanceof Uint8Array)) throw new TypeError(`${what}: expected bytes`);
    if (v.length > t.bytes) throw new RangeError(`${what}: ${v.length} bytes do not fit in ${t.bytes}`);
    buf.set(v, at);
    return;
  }
  if (v instanceof Uint8Array || typeof v !== 'object') throw new TypeError(`${what}: expected a struct`);
  t.encode(v, buf, at);
}

function readField(dv: DataView, buf: Uint8Array, at: number, t: FieldType): FieldValue {
  if (typeof t === 'string') {
    switch (t) {
      case 'u8':
        return dv.getUint8(at);
      case 'u16':
        return dv.getUint16(at, true);
      case 'u32':
        return dv.getUint32(at, true);
      case 's32':
        return dv.getInt32(at, true);
      case 'u64':
        return dv.getBigUint64(at, true);
      case 's64':
        return dv.getBigInt64(at, true);
    }
  }
  if ('bytes' in t) return buf.slice(at, at + t.bytes);
  return t.decode(buf, at);
}

/** A zeroed, off-heap buffer (safe to hand to the kernel by address; V8 never moves it). */
export function alloc(size: number): Uint8Array {
  return new Uint8Array(new ArrayBuffer(size));
}
