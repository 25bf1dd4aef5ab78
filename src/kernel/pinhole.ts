/**
 * The pinhole, live: its maps created, its program assembled against their fds and loaded
 * through the verifier. Ports and addresses are map entries, so they change at runtime without
 * reloading (the program only asks "is this key present?").
 */
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { assemble } from '../bpf/asm/index.ts';
import { buildPinhole, DEFAULT_LIMITS, pinholeMapSpecs, type PinholeLimits, type PinholeMaps } from '../bpf/pinhole/program.ts';
import { REASONS, type PinholeSpec, type Reason } from '../bpf/pinhole/policy.ts';
import { parseIP } from '../packet/ip.ts';
import { alloc, PinholeError } from '../sys/index.ts';
import { createMap, possibleCpus, type BpfMap } from './map.ts';
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
