/**
 * The neighbour table shared with dataplane workers: a fixed-size open-addressing hash table in
 * a SharedArrayBuffer, written only by the mirror (main thread) and read lock-free by workers.
 * Pure: no I/O, no imports from sys/, so a worker can load it alone.
 *
 * Layout (all little-endian 32-bit words, Int32Array view):
 *
 *   byte 0                                                     64
 *   +-------+----------+-------+------------+---------+-------+----- - - -
 *   | seq   | capacity | count | tombstones | version | (pad) | slot 0 | slot 1 | ... | slot cap-1
 *   +-------+----------+-------+------------+---------+-------+----- - - -
 *
 *   slot (64 bytes = 16 words, one cache line):
 *   word  0       1        2        3          4..7              8          9        10..15
 *       +-------+--------+--------+----------+-----------------+----------+--------+--------+
 *       | used  | family | ifindex| nud state| address (4 BE   | mac[0..3]| mac[4,5]| spare |
 *       | 0/1/2 | 4 | 6  |        | NUD_*    | words; v4: w4)  |          |        |        |
 *       +-------+--------+--------+----------+-----------------+----------+--------+--------+
 *   used: 0 empty (ends a probe), 1 live, 2 tombstone (deleted; probes continue past it)
 *
 * Hashing: (family, ifindex, address words) mixed with Math.imul, masked by capacity-1
 * (capacity is a power of two); collisions probe linearly. Entries never move while live, so a
 * probe sequence stays valid across updates; when tombstones pile up the writer rebuilds the
 * table in place (a single write section).
 *
 * Concurrency (a seqlock; one writer, any number of readers):
 *   writer: seq++ (odd) → change slots → seq++ (even)     (Atomics.add: ordered, visible)
 *   reader: s1 = seq; if odd, retry; read slot words; if seq !== s1, retry
 * A reader never blocks the writer and never sees a torn entry. Readers bound their retries and
 * report BUSY rather than spin forever. The writer batches a whole netlink datagram (or a
 * resync) into one section.
 *
 * Hot path: `lookupV4` / `lookupV6` take numbers and caller-owned buffers and allocate nothing.
 */

export const NEIGH_TABLE_VERSION = 1;
const HEADER_BYTES = 64;
const SLOT_WORDS = 16;
const H_SEQ = 0;
const H_CAP = 1;
const H_COUNT = 2;
const H_TOMB = 3;
const H_VERSION = 4;

const EMPTY = 0;
const LIVE = 1;
const TOMB = 2;

/** lookup result: no entry for that address. */
export const NEIGH_MISS = -1;
/** lookup result: the writer kept the table busy for every retry; try again later. */
export const NEIGH_BUSY = -2;

const MAX_LOAD = 0.75;
const READ_RETRIES = 64;

/** Bytes needed for a table with `capacity` slots. */
export function neighTableBytes(capacity: number): number {
  return HEADER_BYTES + capacity * SLOT_WORDS * 4;
}

function mix(h: number, w: number): number {
  h = Math.imul(h ^ w, 0x9e3779b1);
  return (h ^ (h >>> 15)) | 0;
}

function hashKey(family: number, ifindex: number, a0: number, a1: number, a2: number, a3: number): number {
  let h = mix(0x811c9dc5, family);
  h = mix(h, ifindex);
  h = mix(h, a0);
  h = mix(h, a1);
  h = mix(h, a2);
  h = mix(h, a3);
  return h;
}

function be32(b: Uint8Array, off: number): number {
  return (b[off]! << 24) | (b[off + 1]! << 16) | (b[off + 2]! << 8) | b[off + 3]! | 0;
}

/** Lock-free reader (use in workers: `new NeighbourTableReader(sab)`). */
export class NeighbourTableReader {
  protected readonly w: Int32Array;
  protected readonly mask: number;
  readonly capacity: number;

  constructor(buffer: SharedArrayBuffer | ArrayBuffer) {
    this.w = new Int32Array(buffer);
    if (this.w[H_VERSION] !== NEIGH_TABLE_VERSION) throw new Error('neighbour table: unknown layout version');
    this.capacity = this.w[H_CAP]!;
    this.mask = this.capacity - 1;
  }

  /** Live entries (a snapshot value; may be stale by the time it is used). */
  get count(): number {
    return Atomics.load(this.w, H_COUNT);
  }

  /**
   * IPv4 lookup. `addr` is the address as a big-endian u32 (e.g. 198.18.0.1 = 0xc6120001).
   * Writes the MAC to `macOut[macOff..+6)` and returns the NUD state, or NEIGH_MISS / NEIGH_BUSY.
   * The MAC is meaningful when `state & NUD_VALID`.
   */
  lookupV4(ifindex: number, addr: number, macOut: Uint8Array, macOff: number): number {
    return this.find(4, ifindex, addr | 0, 0, 0, 0, macOut, macOff);
  }

  /** IPv6 lookup: the 16 address bytes at `addr[off..off+16)`. */
  lookupV6(ifindex: number, addr: Uint8Array, off: number, macOut: Uint8Array, macOff: number): number {
    return this.find(6, ifindex, be32(addr, off), be32(addr, off + 4), be32(addr, off + 8), be32(addr, off + 12), macOut, macOff);
  }

  private find(
    family: number,
    ifindex: number,
    a0: number,
    a1: number,
    a2: number,
    a3: number,
    macOut: Uint8Array,
    macOff: number,
  ): number {
    const w = this.w;
    const mask = this.mask;
    const start = hashKey(family, ifindex, a0, a1, a2, a3) & mask;
    for (let attempt = 0; attempt < READ_RETRIES; attempt++) {
      const s1 = Atomics.load(w, H_SEQ);
      if (s1 & 1) continue;
      let result = NEIGH_MISS;
      let i = start;
      for (let n = 0; n <= mask; n++) {
        const base = (HEADER_BYTES >> 2) + i * SLOT_WORDS;
        const used = w[base]!;
        if (used === EMPTY) break;
        if (
          used === LIVE &&
          w[base + 1] === family &&
          w[base + 2] === ifindex &&
          w[base + 4] === a0 &&
          w[base + 5] === a1 &&
          w[base + 6] === a2 &&
          w[base + 7] === a3
        ) {
          result = w[base + 3]!;
          const m0 = w[base + 8]!;
          const m1 = w[base + 9]!;
          macOut[macOff] = m0 >>> 24;
          macOut[macOff + 1] = (m0 >>> 16) & 0xff;
          macOut[macOff + 2] = (m0 >>> 8) & 0xff;
          macOut[macOff + 3] = m0 & 0xff;
          macOut[macOff + 4] = (m1 >>> 8) & 0xff;
          macOut[macOff + 5] = m1 & 0xff;
          break;
        }
        i = (i + 1) & mask;
      }
      if (Atomics.load(w, H_SEQ) === s1) return result;
    }
    return NEIGH_BUSY;
  }
}

export interface NeighSlotValue {
  family: 4 | 6;
  ifindex: number;
  /** 4 or 16 bytes. */
  addr: Uint8Array;
  /** 6 bytes, or undefined (unresolved). */
  mac: Uint8Array | undefined;
  state: number;
}

/** The single writer (the mirror). Owns the SharedArrayBuffer. */
export class NeighbourTableWriter extends NeighbourTableReader {
  readonly buffer: SharedArrayBuffer;
  private depth = 0;
  /** Inserts refused because the table was full (the entry is only in the mirror's map). */
  fullDrops = 0;

  constructor(capacity = 4096) {
    if (!Number.isInteger(capacity) || capacity < 8 || (capacity & (capacity - 1)) !== 0) {
      throw new RangeError(`neighbour table capacity must be a power of two >= 8, not ${capacity}`);
    }
    const buffer = new SharedArrayBuffer(neighTableBytes(capacity));
    const w = new Int32Array(buffer);
    w[H_CAP] = capacity;
    w[H_VERSION] = NEIGH_TABLE_VERSION;
    super(buffer);
    this.buffer = buffer;
  }

  /** Opens a write section (nestable); readers retry until the outermost `end()`. */
  begin(): void {
    if (this.depth++ === 0) Atomics.add(this.w, H_SEQ, 1);
  }

  end(): void {
    if (--this.depth === 0) Atomics.add(this.w, H_SEQ, 1);
  }

  get tombstones(): number {
    return this.w[H_TOMB]!;
  }

  /** Inserts or updates; returns false if the table is full. */
  upsert(v: NeighSlotValue): boolean {
    this.begin();
    try {
      const k = keyWords(v.addr);
      const w = this.w;
      const mask = this.mask;
      let i = hashKey(v.family, v.ifindex, k[0], k[1], k[2], k[3]) & mask;
      let free = -1;
      for (let n = 0; n <= mask; n++) {
        const base = (HEADER_BYTES >> 2) + i * SLOT_WORDS;
        const used = w[base]!;
        if (used === EMPTY) {
          if (free < 0) free = i;
          break;
        }
        if (used === TOMB) {
          if (free < 0) free = i;
        } else if (
          w[base + 1] === v.family &&
          w[base + 2] === v.ifindex &&
          w[base + 4] === k[0] &&
          w[base + 5] === k[1] &&
          w[base + 6] === k[2] &&
          w[base + 7] === k[3]
        ) {
          this.fill(base, v, k);
          return true;
        }
        i = (i + 1) & mask;
      }
      if (free < 0 || w[H_COUNT]! + 1 > this.capacity * MAX_LOAD) {
        this.fullDrops++;
        return false;
      }
      const base = (HEADER_BYTES >> 2) + free * SLOT_WORDS;
      if (w[base] === TOMB) w[H_TOMB]!--;
      this.fill(base, v, k);
      w[H_COUNT]!++;
      return true;
    } finally {
      this.end();
    }
  }

  /** Deletes; returns whether an entry was there. */
  remove(family: 4 | 6, ifindex: number, addr: Uint8Array): boolean {
    this.begin();
    try {
      const k = keyWords(addr);
      const w = this.w;
      const mask = this.mask;
      let i = hashKey(family, ifindex, k[0], k[1], k[2], k[3]) & mask;
      for (let n = 0; n <= mask; n++) {
        const base = (HEADER_BYTES >> 2) + i * SLOT_WORDS;
        const used = w[base]!;
        if (used === EMPTY) return false;
        if (
          used === LIVE &&
          w[base + 1] === family &&
          w[base + 2] === ifindex &&
          w[base + 4] === k[0] &&
          w[base + 5] === k[1] &&
          w[base + 6] === k[2] &&
          w[base + 7] === k[3]
        ) {
          w[base] = TOMB;
          w[H_COUNT]!--;
          w[H_TOMB]!++;
          return true;
        }
        i = (i + 1) & mask;
      }
      return false;
    } finally {
      this.end();
      if (this.depth === 0 && this.w[H_TOMB]! > this.capacity / 4) this.needsRebuild = true;
    }
  }

  /** Set when tombstones exceed a quarter of the slots; the owner calls `replaceAll`. */
  needsRebuild = false;

  /** Clears the table and inserts `entries` (one write section: readers see old or new, never a mix). */
  replaceAll(entries: Iterable<NeighSlotValue>): void {
    this.begin();
    try {
      this.w.fill(0, HEADER_BYTES >> 2);
      this.w[H_COUNT] = 0;
      this.w[H_TOMB] = 0;
      for (const e of entries) this.upsert(e);
      this.needsRebuild = false;
    } finally {
      this.end();
    }
  }

  private fill(base: number, v: NeighSlotValue, k: Int32Array): void {
    const w = this.w;
    w[base + 1] = v.family;
    w[base + 2] = v.ifindex;
    w[base + 3] = v.state;
    w[base + 4] = k[0]!;
    w[base + 5] = k[1]!;
    w[base + 6] = k[2]!;
    w[base + 7] = k[3]!;
    const m = v.mac;
    if (m && m.length >= 6) {
      w[base + 8] = be32(m, 0);
      w[base + 9] = (m[4]! << 8) | m[5]!;
    } else {
      w[base + 8] = 0;
      w[base + 9] = 0;
    }
    w[base] = LIVE;
  }
}

const kw = new Int32Array(4);
function keyWords(addr: Uint8Array): Int32Array {
  kw.fill(0);
  if (addr.length === 4) kw[0] = be32(addr, 0);
  else for (let i = 0; i < 4; i++) kw[i] = be32(addr, 4 * i);
  return kw;
}
