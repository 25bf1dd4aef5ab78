/**
 * Next hops of the tunnel connections, shared with the workers: one 16-word slot per connection
 * in a SharedArrayBuffer, written by the main thread (which follows the route mirror) and read
 * lock-free by the nexthop stage once per breathe. The MAC itself is not here: the worker reads
 * it from the shared neighbour table (netlink/neigh-table.ts) under (ifindex, next-hop address),
 * so a neighbour change reaches the dataplane without the main thread doing anything.
 *
 *   slot (16 × Int32):
 *   word 0    1      2       3        4..7                    8       9..15
 *      +-----+------+-------+--------+-----------------------+-------+-------+
 *      | seq | state| family| ifindex| next-hop address (BE) | flags | spare |
 *      +-----+------+-------+--------+-----------------------+-------+-------+
 *   state: NH_UNKNOWN (not computed yet), NH_OK, NH_NO_ROUTE (no route, unreachable, or a route
 *   that does not leave through the uplink).
 *
 * Seqlock as in neigh-table.ts: writer seq++ (odd) → words → seq++ (even); a reader retries
 * while seq is odd or changed.
 */
export const NH_UNKNOWN = 0;
export const NH_OK = 1;
export const NH_NO_ROUTE = 2;

const SLOT = 16;

export interface NextHopValue {
  state: number;
  family: 4 | 6;
  ifindex: number;
  /** Address as 4 big-endian words (IPv4 in word 0). */
  words: [number, number, number, number];
}

export function nextHopTableBytes(connections: number): number {
  return Math.max(1, connections) * SLOT * 4;
}

export class NextHopTable {
  readonly w: Int32Array;
  constructor(readonly buffer: SharedArrayBuffer) {
    this.w = new Int32Array(buffer);
  }

  /** Main thread: publishes connection `i`'s next hop. */
  write(i: number, v: NextHopValue): void {
    const w = this.w;
    const b = i * SLOT;
    Atomics.add(w, b, 1);
    w[b + 1] = v.state;
    w[b + 2] = v.family;
    w[b + 3] = v.ifindex;
    w[b + 4] = v.words[0] | 0;
    w[b + 5] = v.words[1] | 0;
    w[b + 6] = v.words[2] | 0;
    w[b + 7] = v.words[3] | 0;
    Atomics.add(w, b, 1);
  }

  /** The slot's sequence number (changes whenever the slot is rewritten). */
  seq(i: number): number {
    return Atomics.load(this.w, i * SLOT);
  }

  /**
   * Worker: copies connection `i`'s slot into `out` (words 1..7 at out[0..7)); returns the
   * sequence number read, or -1 if the writer kept it busy (retry on the next breathe).
   */
  read(i: number, out: Int32Array): number {
    const w = this.w;
    const b = i * SLOT;
    for (let attempt = 0; attempt < 16; attempt++) {
      const s1 = Atomics.load(w, b);
      if (s1 & 1) continue;
      for (let k = 0; k < 7; k++) out[k] = w[b + 1 + k]!;
      if (Atomics.load(w, b) === s1) return s1;
    }
    return -1;
  }
}

/** Big-endian words of an address given as bytes (4 or 16). */
export function addressWords(bytes: Uint8Array): [number, number, number, number] {
  const be = (o: number): number =>
    o + 4 <= bytes.length ? (bytes[o]! << 24) | (bytes[o + 1]! << 16) | (bytes[o + 2]! << 8) | bytes[o + 3]! | 0 : 0;
  return [be(0), be(4), be(8), be(12)];
}
