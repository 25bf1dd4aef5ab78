/**
 * The four AF_XDP rings, as typed arrays over the memory the kernel maps for a socket
 * (Documentation/networking/af_xdp.rst, net/xdp/xsk_queue.h). Each ring is single-producer,
 * single-consumer; one side is the kernel, the other is us (one thread).
 *
 *   mmap(fd, XDP_PGOFF_* )                          offsets from getsockopt(XDP_MMAP_OFFSETS)
 *   ┌──────────────┬──────────────┬───────┬─────────────────────────────────────────────┐
 *   │ producer u32 │ consumer u32 │ flags │ desc[0] desc[1] ...            desc[size-1] │
 *   └──────────────┴──────────────┴───────┴─────────────────────────────────────────────┘
 *     (each word on its own cache line)     size is a power of two; entry i lives at
 *                                           desc[i & (size - 1)]
 *
 *   producer and consumer are free-running u32 counters (they wrap at 2^32, never at `size`):
 *     entries ready  = producer - consumer        (mod 2^32)
 *     free slots     = size - (producer - consumer)
 *
 *   entry formats                         as 32-bit words (little endian)
 *     fill / completion: u64 addr         [addr_lo, addr_hi]
 *     rx / tx (struct xdp_desc):          [addr_lo, addr_hi, len, options]
 *       u64 addr; u32 len; u32 options
 *
 *   who produces:   fill  us → kernel (empty frames to receive into)
 *                   rx    kernel → us (received frames)
 *                   tx    us → kernel (frames to send)
 *                   compl kernel → us (sent frames, free again)
 *
 * Publication: a producer writes its entries, then stores the new producer index (release);
 * a consumer loads the producer index (acquire), reads the entries, then stores the new
 * consumer index (release) so the slots can be reused. Each side keeps a cached copy of the
 * other side's index and re-reads it only when the cache says there is not enough, so an index
 * crosses the cache line once per batch, not once per packet.
 *
 * How the indexes are read and written (indexLoad/indexStore below): on x86-64 with plain
 * typed-array loads and stores, elsewhere with `Atomics.load/store`. Node 20's optimising
 * compiler does not inline `Atomics` (each is a call into a builtin: ~7 ns per forwarded frame
 * in a profile of the 64-byte cross-connect, about a dozen per breath), and on x86-64 the
 * hardware already gives a plain load acquire and a plain store release ordering (x86-TSO: no
 * load passes an earlier load, no store passes an earlier store; the same plain `mov`s the
 * kernel's own `smp_load_acquire`/`smp_store_release` compile to there). The compiler keeps
 * typed-array loads and stores in program order; it may only reuse an earlier load of the same
 * index when nothing with side effects ran between the two, and a stale index here is always
 * the safe side (fewer entries seen ready, fewer slots seen free, until the next read). Every
 * wait for the kernel passes through a native call (poll, sendto, the clock), after which the
 * index is read afresh. (Node 20's compiler does not even track typed-array loads for reuse; a
 * later one that does could at worst make the worker's polling look a few rounds longer.) Other
 * architectures (arm64: weakly ordered) keep `Atomics`, whose sequentially consistent accesses
 * are at least acquire and release. PINHOLE_RING_ATOMICS=on keeps `Atomics` on x86-64 too (to
 * compare).
 *
 * UMEM addresses fit in 32 bits here (the UMEM is < 4 GiB), so the high address word is zeroed
 * once when a ring we produce is mapped (per entry it is not written) and ignored on read.
 *
 * The indexes are read and kept as signed 32-bit numbers (the same bits): V8 keeps a small
 * integer in an object field as is, but the first value past 2^31 would turn the field into a
 * boxed double, and every optimised function that touches a ring would be thrown away and
 * compiled again on the dataplane's CPU (seen with a link's byte count: ~120 ms of compiling,
 * latency spikes meanwhile). Differences are taken mod 2^32 (`>>> 0`), masks see the same low
 * bits, and a store writes the same 32 bits.
 */
import type { Mapping } from '../../sys/index.ts';

/** Plain index accesses (file comment): x86-64 only, unless PINHOLE_RING_ATOMICS=on. */
const PLAIN_INDEXES = process.arch === 'x64' && process.env.PINHOLE_RING_ATOMICS !== 'on';

/** How this process reads and writes ring indexes (tests, diagnostics). */
export const RING_INDEX_ACCESS: 'plain' | 'atomics' = PLAIN_INDEXES ? 'plain' : 'atomics';

/** Reads a ring index with at least acquire ordering (file comment). */
function indexLoad(word: Int32Array): number {
  return PLAIN_INDEXES ? word[0]! : Atomics.load(word, 0);
}

/** Writes a ring index with at least release ordering (file comment). */
function indexStore(word: Int32Array, v: number): void {
  if (PLAIN_INDEXES) word[0] = v;
  else Atomics.store(word, 0, v);
}

export interface RingOffsets {
  producer: number;
  consumer: number;
  desc: number;
  flags: number;
}

abstract class Ring {
  readonly size: number;
  readonly mask: number;
  readonly mapping: Mapping;
  protected readonly producer: Int32Array;
  protected readonly consumer: Int32Array;
  protected readonly flagsWord: Uint32Array;
  /** Entries as u32 words: 2 per entry (addr rings) or 4 (descriptor rings). */
  protected readonly words: Uint32Array;

  constructor(mapping: Mapping, off: RingOffsets, size: number, entryWords: number) {
    if (size < 1 || (size & (size - 1)) !== 0) throw new RangeError(`ring size ${size} is not a power of two`);
    this.size = size;
    this.mask = size - 1;
    this.mapping = mapping;
    this.producer = new Int32Array(mapping.buffer, off.producer, 1);
    this.consumer = new Int32Array(mapping.buffer, off.consumer, 1);
    this.flagsWord = new Uint32Array(mapping.buffer, off.flags, 1);
    this.words = new Uint32Array(mapping.buffer, off.desc, size * entryWords);
  }

  /** The ring's flags word (XDP_RING_NEED_WAKEUP). */
  flags(): number {
    // As libbpf's xsk_ring_prod__needs_wakeup: a plain read after the producer index's store,
    // which x86 may let pass that store (Atomics.store was a full fence). A wakeup missed in that
    // window is made up within a breath: kick() reads the flag again every breath while frames
    // are pending, release() every breath, and an idle worker's poll(2) wakes the socket.
    return PLAIN_INDEXES ? this.flagsWord[0]! : Atomics.load(this.flagsWord, 0);
  }
}

/** A ring we produce into (fill, tx). */
export class ProducerRing extends Ring {
  private cachedProd: number;
  private cachedCons: number;

  constructor(mapping: Mapping, off: RingOffsets, size: number, entryWords: 2 | 4) {
    super(mapping, off, size, entryWords);
    this.cachedProd = indexLoad(this.producer);
    this.cachedCons = indexLoad(this.consumer);
    // The high address words, zero from here on whoever created the ring (setAddr, setDesc).
    for (let w = 1; w < this.words.length; w += entryWords) this.words[w] = 0;
  }

  /** Slots free for writing, re-reading the consumer index only if fewer than `want` are known. */
  free(want: number): number {
    let free = this.size - ((this.cachedProd - this.cachedCons) >>> 0);
    if (free >= want) return free;
    this.cachedCons = indexLoad(this.consumer);
    free = this.size - ((this.cachedProd - this.cachedCons) >>> 0);
    return free;
  }

  /**
   * Writes an address entry (fill ring) `i` slots after the current producer index. The high
   * address word is not written per entry: the constructor zeroed them all, the kernel never
   * writes to a ring we produce, and UMEM addresses fit 32 bits (file comment). Aligned chunks
   * only: XDP_UMEM_UNALIGNED_CHUNK_FLAG would put an offset in the high bits.
   */
  setAddr(i: number, addr: number): void {
    this.words[((this.cachedProd + i) & this.mask) << 1] = addr;
  }

  /** Writes a descriptor entry (tx ring) `i` slots after the current producer index (high address word: as setAddr). */
  setDesc(i: number, addr: number, len: number, options = 0): void {
    const w = ((this.cachedProd + i) & this.mask) << 2;
    this.words[w] = addr;
    this.words[w + 2] = len;
    this.words[w + 3] = options;
  }

  /** Publishes `n` written entries to the kernel. */
  submit(n: number): void {
    this.cachedProd = (this.cachedProd + n) | 0;
    indexStore(this.producer, this.cachedProd);
  }

  /** Entries published but not yet consumed by the kernel. */
  pending(): number {
    this.cachedCons = indexLoad(this.consumer);
    return (this.cachedProd - this.cachedCons) >>> 0;
  }
}

/** A ring the kernel produces into (rx, completion). */
export class ConsumerRing extends Ring {
  private cachedProd: number;
  private cachedCons: number;
  /** log2 of the words per entry: 1 (addr rings) or 2 (descriptor rings). */
  private readonly entryShift: number;

  constructor(mapping: Mapping, off: RingOffsets, size: number, entryWords: 2 | 4) {
    super(mapping, off, size, entryWords);
    this.entryShift = entryWords === 4 ? 2 : 1;
    this.cachedProd = indexLoad(this.producer);
    this.cachedCons = indexLoad(this.consumer);
  }

  /** Entries ready to read, re-reading the producer index only if fewer than `want` are known. */
  available(want: number): number {
    let n = (this.cachedProd - this.cachedCons) >>> 0;
    if (n >= want) return n;
    this.cachedProd = indexLoad(this.producer);
    n = (this.cachedProd - this.cachedCons) >>> 0;
    return n;
  }

  /** The consumer index (as int32: mask it to find an entry's slot). */
  consumerIndex(): number {
    return this.cachedCons;
  }

  /** Address (low word) of the entry `i` slots after the current consumer index. */
  addrAt(i: number): number {
    return this.words[((this.cachedCons + i) & this.mask) << this.entryShift]!;
  }

  /** Length of the descriptor `i` slots after the consumer index (rx ring only). */
  lenAt(i: number): number {
    return this.words[(((this.cachedCons + i) & this.mask) << 2) + 2]!;
  }

  /** Gives `n` read entries back to the kernel. */
  release(n: number): void {
    this.cachedCons = (this.cachedCons + n) | 0;
    indexStore(this.consumer, this.cachedCons);
  }
}
