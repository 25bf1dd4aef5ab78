/**
 * Packet memory of one dataplane worker: every buffer frames can live in (the AF_XDP area that
 * holds a set of the worker's UMEMs, each AF_PACKET ring mapping, the stages' own buffers),
 * registered by whoever opens it (counted: a port or stage releases its registration when it
 * closes, so a worker that changes its plan many times reuses ids) and named by a small integer
 * id. A frame is (memory id, byte offset, length); links carry those triples, never objects.
 *
 * Copies between memories allocate nothing: within one buffer `copyWithin` (util/copy-within.ts)
 * on a view of the whole buffer; across buffers a word loop over cached Int32Array views when
 * source and destination share their alignment (the usual case: Ethernet frames at
 * 2-byte-aligned offsets in both), a word loop that shifts by two bytes when they are two bytes
 * apart (a frame behind a tunnel header), a byte loop otherwise. Views are created once per
 * memory, at registration.
 */
import { PinholeError } from '../sys/errors.ts';
import { copyWithin } from '../util/copy-within.ts';

/** Ids fit the links' Uint8Array `mem` column. */
export const MAX_MEMORIES = 255;
const EMPTY_U8 = new Uint8Array(0);
const EMPTY_I32 = new Int32Array(0);

export class PacketMemory {
  /** Whole-buffer byte views, by id (an empty view for a free id). */
  readonly u8: Uint8Array[] = [];
  /** Whole-buffer 32-bit views (the buffer's length rounded down to 4), by id (also ports/xsk-shared.ts's small copies). */
  readonly i32: Int32Array[] = [];
  private readonly buffers: (ArrayBufferLike | undefined)[] = [];
  /** Holders per id: a buffer registered twice (two ports in one AF_XDP area) is freed once both release it. */
  private readonly refs: number[] = [];

  /** Registers a buffer (counted: each register needs a release) and returns its id. */
  register(buffer: ArrayBufferLike): number {
    const known = this.buffers.indexOf(buffer);
    if (known >= 0) {
      this.refs[known]!++;
      return known;
    }
    let id = this.buffers.indexOf(undefined);
    if (id < 0) {
      if (this.buffers.length >= MAX_MEMORIES) throw new PinholeError('ERR_DATAPLANE_MEMORY', `more than ${MAX_MEMORIES} packet memories`);
      id = this.buffers.length;
      this.buffers.push(undefined);
      this.u8.push(EMPTY_U8);
      this.i32.push(EMPTY_I32);
      this.refs.push(0);
    }
    this.buffers[id] = buffer;
    this.u8[id] = new Uint8Array(buffer);
    this.i32[id] = new Int32Array(buffer, 0, buffer.byteLength >>> 2);
    this.refs[id] = 1;
    return id;
  }

  /** Gives up one registration of `id`; the id is reused once nobody holds it. */
  release(id: number): void {
    if (this.buffers[id] === undefined) return;
    if (--this.refs[id]! > 0) return;
    this.buffers[id] = undefined;
    this.u8[id] = EMPTY_U8;
    this.i32[id] = EMPTY_I32;
  }

  /** Ids in use (tests, diagnostics). */
  get used(): number {
    return this.buffers.filter((b) => b !== undefined).length;
  }

  /**
   * Whether the `len`-byte Ethernet frame at `at` of memory `id` is larger than `max` (port.ts
   * mtuFrameMax), allowing 4 bytes more to a frame that carries an 802.1Q tag (EtherType 0x8100),
   * as the kernel allows an AF_PACKET sender. One comparison for a frame within `max`.
   */
  overMtu(id: number, at: number, len: number, max: number): boolean {
    if (len <= max) return false;
    const b = this.u8[id]!;
    return len > max + 4 || b[at + 12] !== 0x81 || b[at + 13] !== 0x00;
  }

  /** Copies `len` bytes from memory `src` at `from` to memory `dst` at `to`. No allocation. */
  copy(src: number, from: number, dst: number, to: number, len: number): void {
    if (src === dst) {
      copyWithin.call(this.u8[src]!, to, from, from + len);
      return;
    }
    const s8 = this.u8[src]!;
    const d8 = this.u8[dst]!;
    let i = 0;
    if ((from & 3) === (to & 3) && len >= 16) {
      // Head bytes up to the shared alignment, then words, then the tail.
      while (((from + i) & 3) !== 0) {
        d8[to + i] = s8[from + i]!;
        i++;
      }
      const s32 = this.i32[src]!;
      const d32 = this.i32[dst]!;
      const words = (len - i) >>> 2;
      let sw = (from + i) >>> 2;
      let dw = (to + i) >>> 2;
      const end = sw + words;
      while (sw < end) d32[dw++] = s32[sw++]!;
      i += words << 2;
    } else if (((from - to) & 3) === 2 && len >= 16) {
      // Source two bytes off the destination's alignment (a frame behind 14-byte Ethernet plus
      // a 50- or 70-byte tunnel header, copied to an aligned slot): aligned word reads, each
      // output word made of the high half of one and the low half of the next (little endian).
      while (((to + i) & 3) !== 0) {
        d8[to + i] = s8[from + i]!;
        i++;
      }
      const s32 = this.i32[src]!;
      const d32 = this.i32[dst]!;
      // Each output word also reads the source word after it: stop two bytes early, so that no
      // read goes past the frame's last byte (nor past the buffer's last whole word).
      const words = (len - i - 2) >>> 2;
      let sw = (from + i - 2) >>> 2;
      let dw = (to + i) >>> 2;
      const end = dw + words;
      let prev = s32[sw++]!;
      while (dw < end) {
        const next = s32[sw++]!;
        d32[dw++] = (prev >>> 16) | (next << 16);
        prev = next;
      }
      i += words << 2;
    }
    for (; i < len; i++) d8[to + i] = s8[from + i]!;
  }
}
