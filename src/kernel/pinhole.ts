/**
 * The pinhole, live: its maps created, its program assembled against their fds and loaded
 * through the verifier. Ports and addresses are map entries, so they change at runtime without
 * reloading (the program only asks "is this key present?").
 *
 * Also: recognising a pinhole program someone else's inspection finds attached (a stale one
 * left by a crash) by what it is, not what it is called — see `isPinholeProgram`.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { assemble } from '../bpf/asm/index.ts';
import type { MapSpec, MapType } from '../bpf/map-spec.ts';
import { buildPinhole, DEFAULT_LIMITS, pinholeMapSpecs, type PinholeLimits, type PinholeMaps } from '../bpf/pinhole/program.ts';
import { REASONS, type PinholeSpec, type Reason } from '../bpf/pinhole/policy.ts';
import { parseIP } from '../packet/ip.ts';
import { alloc, getSys, PinholeError } from '../sys/index.ts';
import {
  BPF_MAP_GET_FD_BY_ID,
  BPF_MAP_TYPE_ARRAY,
  BPF_MAP_TYPE_HASH,
  BPF_MAP_TYPE_PERCPU_ARRAY,
  BPF_MAP_TYPE_XSKMAP,
  BPF_OBJ_GET_INFO_BY_FD,
  BPF_PROG_GET_FD_BY_ID,
  BPF_PROG_TYPE_XDP,
  InfoAttr,
  MapInfo,
  ProgInfo,
} from './bpf-attr.ts';
import { createMap, possibleCpus, type BpfMap } from './map.ts';
import { decodeName, fdById, objectInfo } from './object.ts';
import { loadProgram, type Program } from './program.ts';

export type PinholeMapSet = { [K in keyof PinholeMaps]: BpfMap };

const ONE = new Uint8Array([1, 0, 0, 0]);

export function portKey(port: number): Uint8Array {
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new PinholeError('ERR_CONFIG_PORT', `UDP port ${port} is not an integer in 1..65535`);
  }
  return new Uint8Array([port >> 8, port & 0xff]);
}

export interface PinholeCounters {
  /** Packets per reason, summed over CPUs. */
  byReason: Record<Reason, bigint>;
  xsk: bigint;
  kernel: bigint;
}

export class LoadedPinhole {
  readonly program: Program;
  readonly maps: PinholeMapSet;
  readonly spec: PinholeSpec;
  private readonly counterVals: Uint8Array;
  private readonly counterKeys: Uint8Array;

  constructor(program: Program, maps: PinholeMapSet, spec: PinholeSpec) {
    this.program = program;
    this.maps = maps;
    this.spec = spec;
    this.counterVals = alloc(REASONS.length * maps.counters.valueBytes);
    this.counterKeys = alloc(REASONS.length * 4);
  }

  addPort(port: number): void {
    this.maps.ports.update(portKey(port), ONE);
  }

  removePort(port: number): boolean {
    return this.maps.ports.delete(portKey(port));
  }

  ports(): number[] {
    return this.maps.ports
      .keys()
      .map((k) => (k[0]! << 8) | k[1]!)
      .sort((a, b) => a - b);
  }

  addAddress(text: string): void {
    const ip = parseIP(text);
    (ip.family === 4 ? this.maps.addrs4 : this.maps.addrs6).update(ip.bytes, ONE);
  }

  removeAddress(text: string): boolean {
    const ip = parseIP(text);
    return (ip.family === 4 ? this.maps.addrs4 : this.maps.addrs6).delete(ip.bytes);
  }

  /** Counters summed over CPUs, read in one batch syscall. */
  counters(): PinholeCounters {
    this.maps.counters.lookupAllArray(this.counterVals, this.counterKeys);
    const dv = new DataView(this.counterVals.buffer);
    const stride = this.maps.counters.valueBytes;
    const cpus = possibleCpus();
    const byReason = {} as Record<Reason, bigint>;
    let xsk = 0n;
    let kernel = 0n;
    // The batch returns keys in map order; index by the returned key, not the position.
    const kv = new DataView(this.counterKeys.buffer);
    for (let i = 0; i < REASONS.length; i++) {
      const key = kv.getUint32(i * 4, true);
      let sum = 0n;
      for (let c = 0; c < cpus; c++) sum += dv.getBigUint64(i * stride + c * 8, true);
      const reason = REASONS[key]!;
      byReason[reason] = sum;
      if (reason === 'tunnel') xsk += sum;
      else kernel += sum;
    }
    return { byReason, xsk, kernel };
  }

  /** Pins the program and its maps under `dir` (bpffs), for a restarted forwarder and bpftool. */
  pin(dir: string): void {
    if (!existsSync(dir)) mkdirSync(dir, { recursive: true, mode: 0o700 });
    this.program.pin(join(dir, 'prog'));
    for (const [name, m] of Object.entries(this.maps)) m.pin(join(dir, name));
  }

  close(): void {
    this.program.close();
    for (const m of Object.values(this.maps)) m.close();
  }
}

/** Removes a pin directory made by `LoadedPinhole.pin` (unpinning drops the kernel objects' pins). */
export function unpinDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

export interface LoadPinholeOptions {
  limits?: PinholeLimits;
  name?: string;
}

export function loadPinhole(spec: PinholeSpec, opts: LoadPinholeOptions = {}): LoadedPinhole {
  const specs = pinholeMapSpecs(opts.limits ?? DEFAULT_LIMITS);
  const made: BpfMap[] = [];
  try {
    const maps = {} as PinholeMapSet;
    for (const [k, s] of Object.entries(specs) as [keyof PinholeMaps, (typeof specs)[keyof PinholeMaps]][]) {
      const m = createMap(s);
      made.push(m);
      maps[k] = m;
    }
    const insns = assemble(buildPinhole(spec), {
      maps: Object.fromEntries(Object.values(maps).map((m) => [m.spec.name, m.fd])),
    });
    const program = loadProgram({ name: opts.name ?? 'pinhole', type: 'xdp', insns });
    const loaded = new LoadedPinhole(program, maps, spec);
    try {
      for (const port of spec.ports) loaded.addPort(port);
      for (const a of spec.addresses) loaded.addAddress(a);
    } catch (err) {
      program.close();
      throw err;
    }
    return loaded;
  } catch (err) {
    for (const m of made) m.close();
    throw err;
  }
}

// ─── Recognising our own program ─────────────────────────────────────────────────────────────
//
// After a crash the pinhole program stays attached (netlink attach, on purpose) and the next
// start must take it over — but only if it really is ours: a program merely *named* `pinhole`
// may do anything (e.g. drop everything) and must be treated as another owner's.
//
// The kernel gives every program a tag (bpf_prog_calc_tag): a hash of its instructions as
// loaded, with the map references in ld_imm64 zeroed, so it does not depend on the map fds, the
// map contents (ports, addresses) or the program name. buildPinhole has exactly two shapes —
// with and without the address filter — so we know every tag our program can have. The hash is
// SHA-1 on older kernels and SHA-256 on newer ones (this machine's 6.18); we accept both: a
// foreign program matching either would have to contain our instructions byte for byte.
// Besides the tag, the program must be XDP and use maps of our maps' shapes (name, type, key
// and value size) — the instructions alone could be loaded against other maps.
//
// Consequence: a pinhole of another version (different instructions) is not recognised and its
// program counts as foreign (take it over with --replace-foreign, or detach it).

const BPF_PSEUDO_MAP_FD = 1;
const BPF_PSEUDO_MAP_VALUE = 2;
const LD_IMM64 = 0x18;

const MAP_TYPE_IDS: Record<MapType, number> = {
  hash: BPF_MAP_TYPE_HASH,
  array: BPF_MAP_TYPE_ARRAY,
  percpu_array: BPF_MAP_TYPE_PERCPU_ARRAY,
  xskmap: BPF_MAP_TYPE_XSKMAP,
};

/** A map as bpf(BPF_OBJ_GET_INFO_BY_FD) describes it; only what identifies its shape. */
export interface MapShape {
  name: string;
  type: number;
  keySize: number;
  valueSize: number;
}

/** What the kernel tells about a loaded program, enough to tell ours from another. */
export interface ProgramIdentity {
  id: number;
  /** BPF_PROG_TYPE_*. */
  type: number;
  name: string;
  /** 16 hex digits. */
  tag: string;
  maps: MapShape[];
}

/** The kernel's tag computation over encoded instructions (see the section comment). */
export function kernelProgramTags(insns: Uint8Array): { sha1: string; sha256: string } {
  const z = insns.slice();
  for (let i = 0; i + 16 <= z.length; i += 8) {
    const src = z[i + 1]! >> 4;
    if (z[i] === LD_IMM64 && (src === BPF_PSEUDO_MAP_FD || src === BPF_PSEUDO_MAP_VALUE)) {
      z.fill(0, i + 4, i + 8);
      z.fill(0, i + 12, i + 16);
      i += 8;
    }
  }
  return {
    sha1: createHash('sha1').update(z).digest('hex').slice(0, 16),
    sha256: createHash('sha256').update(z).digest('hex').slice(0, 16),
  };
}

interface Shape {
  tags: Set<string>;
  /** The maps this shape's instructions reference, as sorted shape keys. */
  maps: string[];
}

let shapes: Shape[] | undefined;

const shapeKey = (m: MapShape): string => `${m.name}/${m.type}/${m.keySize}/${m.valueSize}`;

/** Every shape buildPinhole can produce, with its possible tags and map shapes. */
function pinholeShapes(): Shape[] {
  if (shapes) return shapes;
  const specs: MapSpec[] = Object.values(pinholeMapSpecs());
  const out: Shape[] = [];
  for (const filterAddresses of [false, true]) {
    const insns = buildPinhole({ ports: [], addresses: [], filterAddresses });
    const used = new Set(insns.map((i) => i.mapRef).filter((r): r is string => r !== undefined));
    // Any valid fd: the tag ignores it.
    const bytes = assemble(insns, { maps: Object.fromEntries(specs.map((s) => [s.name, 1])) });
    const t = kernelProgramTags(bytes);
    out.push({
      tags: new Set([t.sha1, t.sha256]),
      maps: specs
        .filter((s) => used.has(s.name))
        .map((s) => shapeKey({ name: s.name, type: MAP_TYPE_IDS[s.type], keySize: s.keySize, valueSize: s.valueSize }))
        .sort(),
    });
  }
  shapes = out;
  return out;
}

/** Is this the pinhole program (any ports, addresses or name), as this version builds it? */
export function isPinholeProgram(p: ProgramIdentity): boolean {
  if (p.type !== BPF_PROG_TYPE_XDP) return false;
  const maps = p.maps.map(shapeKey).sort();
  return pinholeShapes().some((s) => s.tags.has(p.tag) && s.maps.length === maps.length && s.maps.every((m, i) => m === maps[i]));
}

/**
 * The loaded program with this id, as the kernel describes it, or undefined when it cannot be
 * read (gone, or not permitted: CAP_SYS_ADMIN/CAP_BPF is needed to open a program by id).
 */
export function inspectProgram(id: number): ProgramIdentity | undefined {
  const sys = getSys();
  let fd = -1;
  try {
    fd = fdById(BPF_PROG_GET_FD_BY_ID, id);
    // First call: how many maps; second: their ids (the kernel copies min(asked, used) ids).
    const first = objectInfo(fd, ProgInfo);
    const n = Number(first.nr_map_ids);
    const ids = alloc(Math.max(1, n) * 4);
    const info = ProgInfo.encode({ nr_map_ids: n, map_ids: sys.addressOf(ids) });
    sys.bpf(BPF_OBJ_GET_INFO_BY_FD, InfoAttr.encode({ bpf_fd: fd, info_len: ProgInfo.size, info: sys.addressOf(info) }), [info, ids]);
    const p = ProgInfo.decode(info);
    const count = Math.min(n, Number(p.nr_map_ids));
    const dv = new DataView(ids.buffer, ids.byteOffset);
    const maps: MapShape[] = [];
    for (let i = 0; i < count; i++) {
      const m = mapShape(dv.getUint32(i * 4, true));
      if (m) maps.push(m);
    }
    return {
      id: Number(p.id),
      type: Number(p.type),
      name: decodeName(p.name as Uint8Array),
      tag: Buffer.from(p.tag as Uint8Array).toString('hex'),
      maps,
    };
  } catch {
    return undefined;
  } finally {
    if (fd >= 0) sys.close(fd);
  }
}

function mapShape(id: number): MapShape | undefined {
  let fd = -1;
  try {
    fd = fdById(BPF_MAP_GET_FD_BY_ID, id);
    const i = objectInfo(fd, MapInfo);
    return { name: decodeName(i.name as Uint8Array), type: Number(i.type), keySize: Number(i.key_size), valueSize: Number(i.value_size) };
  } catch {
    return undefined;
  } finally {
    if (fd >= 0) getSys().close(fd);
  }
}
