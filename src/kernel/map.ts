/**
 * BPF maps: spec (plain data) → `BpfMap` (owns an fd). Hash, array, per-CPU array and XSKMAP.
 * Keys and values are raw bytes; typed wrappers live with their users (the pinhole's port and
 * address sets, the counter array). For per-CPU maps a value read returns `possibleCpus()`
 * consecutive slots of `valueSize` rounded up to 8 bytes, as the kernel lays them out.
 */
import { readFileSync } from 'node:fs';
import { alloc, getSys, PinholeError, SysError } from '../sys/index.ts';
import {
  BPF_ANY,
  BPF_MAP_CREATE,
  BPF_MAP_DELETE_ELEM,
  BPF_MAP_GET_NEXT_KEY,
  BPF_MAP_LOOKUP_BATCH,
  BPF_MAP_LOOKUP_ELEM,
  BPF_MAP_TYPE_ARRAY,
  BPF_MAP_TYPE_HASH,
  BPF_MAP_TYPE_PERCPU_ARRAY,
  BPF_MAP_TYPE_XSKMAP,
  BPF_MAP_UPDATE_ELEM,
  BPF_OBJ_NAME_LEN,
  MapBatchAttr,
  MapCreateAttr,
  MapElemAttr,
  MapInfo,
} from './bpf-attr.ts';
import { objectInfo, openPinned, pinObject } from './object.ts';

import type { MapSpec, MapType } from '../bpf/map-spec.ts';

export type { MapSpec, MapType };

const TYPE_IDS: Record<MapType, number> = {
  hash: BPF_MAP_TYPE_HASH,
  array: BPF_MAP_TYPE_ARRAY,
  percpu_array: BPF_MAP_TYPE_PERCPU_ARRAY,
  xskmap: BPF_MAP_TYPE_XSKMAP,
};

let cpuCount: number | undefined;

/** Number of possible CPUs: the per-CPU value stride count (kernel's num_possible_cpus()). */
export function possibleCpus(): number {
  if (cpuCount !== undefined) return cpuCount;
  const text = readFileSync('/sys/devices/system/cpu/possible', 'utf8').trim();
  let n = 0;
  for (const part of text.split(',')) {
    const [a, b] = part.split('-').map(Number);
    n += b === undefined ? 1 : b - a! + 1;
  }
  cpuCount = n;
  return n;
}

export function objName(name: string): Uint8Array {
  // Kernel object names: up to 15 chars of [A-Za-z0-9_.]; anything else is replaced.
  const clean = name.replace(/[^A-Za-z0-9_.]/g, '_').slice(0, BPF_OBJ_NAME_LEN - 1);
  return new TextEncoder().encode(clean);
}

export class BpfMap {
  readonly fd: number;
  readonly spec: MapSpec;
  /** Bytes of one lookup value (valueSize, or the per-CPU slots). */
  readonly valueBytes: number;
  private closed = false;
  // Reusable syscall scratch: a map is used from one thread.
  private readonly attr = alloc(MapElemAttr.size);
  private readonly keyBuf: Uint8Array;
  private readonly valBuf: Uint8Array;
  private readonly nextBuf: Uint8Array;

  constructor(fd: number, spec: MapSpec) {
    this.fd = fd;
    this.spec = spec;
    this.valueBytes = spec.type === 'percpu_array' ? Math.ceil(spec.valueSize / 8) * 8 * possibleCpus() : spec.valueSize;
    this.keyBuf = alloc(spec.keySize);
    this.valBuf = alloc(this.valueBytes);
    this.nextBuf = alloc(spec.keySize);
  }

  private elem(cmd: number, key: Uint8Array | null, value: Uint8Array | null, flags: number): void {
    const sys = getSys();
    if (key) this.keyBuf.set(this.check(key, this.spec.keySize, 'key'));
    this.attr.fill(0);
    MapElemAttr.encode(
      {
        map_fd: this.fd,
        key: key ? sys.addressOf(this.keyBuf) : 0n,
        value: value ? sys.addressOf(value) : 0n,
        flags,
      },
      this.attr,
    );
    sys.bpf(cmd, this.attr, value ? [this.keyBuf, value] : [this.keyBuf]);
  }

  private check(b: Uint8Array, size: number, what: string): Uint8Array {
    if (b.byteLength !== size) {
      throw new PinholeError('ERR_BPF_MAP_SIZE', `map ${this.spec.name}: ${what} must be ${size} bytes, got ${b.byteLength}`);
    }
    return b;
  }

  /** Value for `key`, or undefined when absent. The returned bytes are a copy. */
  lookup(key: Uint8Array): Uint8Array | undefined {
    try {
      this.elem(BPF_MAP_LOOKUP_ELEM, key, this.valBuf, 0);
    } catch (err) {
      if (err instanceof SysError && err.code === 'ENOENT') return undefined;
      throw this.wrap('lookup', err);
    }
    return this.valBuf.slice();
  }

  update(key: Uint8Array, value: Uint8Array, flags = BPF_ANY): void {
    this.valBuf.set(this.check(value, this.valueBytes, 'value'));
    try {
      this.elem(BPF_MAP_UPDATE_ELEM, key, this.valBuf, flags);
    } catch (err) {
      throw this.wrap('update', err);
    }
  }

  /** Deletes `key`; returns false when it was absent. */
  delete(key: Uint8Array): boolean {
    try {
      this.elem(BPF_MAP_DELETE_ELEM, key, null, 0);
      return true;
    } catch (err) {
      if (err instanceof SysError && err.code === 'ENOENT') return false;
      throw this.wrap('delete', err);
    }
  }

  /** All keys (BPF_MAP_GET_NEXT_KEY walk). Entries changing concurrently may be missed or repeated. */
  keys(): Uint8Array[] {
    const sys = getSys();
    const out: Uint8Array[] = [];
    let first = true;
    for (;;) {
      this.attr.fill(0);
      MapElemAttr.encode(
        {
          map_fd: this.fd,
          key: first ? 0n : sys.addressOf(this.keyBuf),
          value: sys.addressOf(this.nextBuf),
        },
        this.attr,
      );
      try {
        sys.bpf(BPF_MAP_GET_NEXT_KEY, this.attr, [this.keyBuf, this.nextBuf]);
      } catch (err) {
        if (err instanceof SysError && err.code === 'ENOENT') return out;
        throw this.wrap('iterate', err);
      }
      out.push(this.nextBuf.slice());
      this.keyBuf.set(this.nextBuf);
      first = false;
    }
  }

  /** All entries as [key, value] copies. */
  entries(): [Uint8Array, Uint8Array][] {
    const out: [Uint8Array, Uint8Array][] = [];
    for (const k of this.keys()) {
      const v = this.lookup(k);
      if (v) out.push([k, v]);
    }
    return out;
  }

  /**
   * Reads every value of an array map in one BPF_MAP_LOOKUP_BATCH call into `values`
   * (maxEntries × valueBytes). Used to read counters without one syscall per key.
   */
  lookupAllArray(values: Uint8Array, keys: Uint8Array): void {
    const n = this.spec.maxEntries;
    if (values.byteLength < n * this.valueBytes || keys.byteLength < n * 4) throw new RangeError('batch buffers too small');
    const sys = getSys();
    const attr = alloc(MapBatchAttr.size);
    const outBatch = alloc(8);
    MapBatchAttr.encode(
      {
        in_batch: 0n,
        out_batch: sys.addressOf(outBatch),
        keys: sys.addressOf(keys),
        values: sys.addressOf(values),
        count: n,
        map_fd: this.fd,
      },
      attr,
    );
    try {
      sys.bpf(BPF_MAP_LOOKUP_BATCH, attr, [outBatch, keys, values]);
    } catch (err) {
      // ENOENT marks the end of the walk; with count = max_entries everything was read.
      if (!(err instanceof SysError && err.code === 'ENOENT')) throw this.wrap('batch lookup', err);
    }
  }

  pin(path: string): void {
    pinObject(this.fd, path, `map ${this.spec.name}`);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    getSys().close(this.fd);
  }

  private wrap(op: string, err: unknown): Error {
    if (err instanceof PinholeError) return err;
    return new PinholeError('ERR_BPF_MAP', `${op} on map ${this.spec.name}: ${(err as Error).message}`, { cause: err });
  }
}

export function createMap(spec: MapSpec): BpfMap {
  const attr = MapCreateAttr.encode({
    map_type: TYPE_IDS[spec.type],
    key_size: spec.keySize,
    value_size: spec.valueSize,
    max_entries: spec.maxEntries,
    map_flags: spec.flags ?? 0,
    map_name: objName(spec.name),
  });
  let fd: number;
  try {
    fd = getSys().bpf(BPF_MAP_CREATE, attr);
  } catch (err) {
    throw new PinholeError('ERR_BPF_MAP_CREATE', `create ${spec.type} map ${spec.name}: ${(err as Error).message}`, { cause: err });
  }
  return new BpfMap(fd, spec);
}

const TYPE_NAMES = Object.fromEntries(Object.entries(TYPE_IDS).map(([k, v]) => [v, k])) as Record<number, MapType>;

/** Opens a map pinned in bpffs; its spec is read back from the kernel. */
export function openPinnedMap(path: string): BpfMap {
  const fd = openPinned(path, 'map');
  try {
    const info = objectInfo(fd, MapInfo);
    const type = TYPE_NAMES[Number(info.type)];
    if (!type) throw new PinholeError('ERR_BPF_MAP_TYPE', `${path}: unsupported map type ${info.type}`);
    const nameBytes = info.name as Uint8Array;
    const z = nameBytes.indexOf(0);
    return new BpfMap(fd, {
      name: new TextDecoder().decode(nameBytes.subarray(0, z < 0 ? nameBytes.length : z)),
      type,
      keySize: Number(info.key_size),
      valueSize: Number(info.value_size),
      maxEntries: Number(info.max_entries),
      flags: Number(info.map_flags),
    });
  } catch (err) {
    getSys().close(fd);
    throw err;
  }
}
