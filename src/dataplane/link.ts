/**
 * A link joins one stage's output to another stage's (or port's) input: a bounded batch of frame
 * descriptors, structure-of-arrays over preallocated typed arrays (Snabb's core/link.lua, made
 * to fit one breathe):
 *
 *        push()                                         consumer reads [0, n), then clear()
 *   ───────────────►  mem[i] addr[i] len[i] aux[i]  ───────────────►
 *                     i = 0 .. n-1  (n ≤ capacity)
 *
 * Frames are only descriptors (memory id, byte offset, length) into PacketMemory; `aux` is a
 * per-frame tag the producer sets (the connection index on tunnel paths). `csum` marks a frame
 * whose L4 checksum is still to be computed (CHECKSUM_PARTIAL, as the kernel says it): 0 for a
 * complete frame, else csumStart << 16 | csumOffset (bytes from the frame's first byte to where
 * summing starts; from there to the 16-bit field), the field holding the pseudo-header sum. Only
 * an offload workload port produces such frames (a segment the kernel or our completion will
 * checksum, ports/afpacket.ts); a stage that moves the frame's start adjusts csumStart (encap), and
 * every consumer that sends or seals a frame completes it first unless the kernel does it for it.
 * `gso` ≠ 0 marks a GSO train (a run of same-flow segments laid out to be cut every `gso` bytes,
 * see EncapStage and ports/train.ts): only a port whose graph asked for trains produces them,
 * and only the VXLAN path (encap, nexthop, an uplink that sends trains) carries them. A link is filled and
 * drained within one breathe of the engine, so it needs no ring indexes: the consumer reads every
 * entry and clears it. Pushing into a full link drops the frame and counts it (`dropped`), as a
 * full Snabb link does. That count is a plain number for tests and debugging; what an operator
 * sees is counted by the stages (every drop has a reason there, `link-full` included). A link
 * keeps no running totals of frames or bytes: a number field that grows past 2^31 (2 GiB of
 * bytes: seconds at line rate) changes representation in V8, and every optimised function that
 * touches a link is thrown away and compiled again on the worker's CPU (measured: ~120 ms of
 * compiler threads, ping p99 spikes of 4–15 ms while they ran).
 */
export class Link {
  readonly name: string;
  readonly capacity: number;
  readonly mem: Uint8Array;
  readonly addr: Uint32Array;
  readonly len: Uint32Array;
  readonly aux: Int32Array;
  readonly csum: Uint32Array;
  readonly gso: Uint16Array;
  n = 0;
  /** Frames refused because the link was full. */
  dropped = 0;

  constructor(name: string, capacity: number) {
    this.name = name;
    this.capacity = capacity;
    this.mem = new Uint8Array(capacity);
    this.addr = new Uint32Array(capacity);
    this.len = new Uint32Array(capacity);
    this.aux = new Int32Array(capacity);
    this.csum = new Uint32Array(capacity);
    this.gso = new Uint16Array(capacity);
  }

  /**
   * Appends a frame (`csum`: its pending checksum, 0 for none; `gso`: a train's chunk size, 0 for
   * an ordinary frame); false (and counted as dropped) when the link is full.
   */
  push(mem: number, addr: number, len: number, aux: number, csum = 0, gso = 0): boolean {
    const i = this.n;
    if (i === this.capacity) {
      this.dropped++;
      return false;
    }
    this.mem[i] = mem;
    this.addr[i] = addr;
    this.len[i] = len;
    this.aux[i] = aux;
    this.csum[i] = csum;
    this.gso[i] = gso;
    this.n = i + 1;
    return true;
  }

  clear(): void {
    this.n = 0;
  }
}
