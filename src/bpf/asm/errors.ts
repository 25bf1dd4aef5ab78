/** The assembler's one error type. Callers switch on `code` (and `reason` for detail), never on text. */

import type { Insn } from './insn.ts';
import { formatInsn } from './disasm.ts';

export type AsmErrorReason =
  | 'unknown-label' // a jump names a label no instruction carries
  | 'duplicate-label' // two instructions carry the same label
  | 'trailing-label' // a label marker with no instruction after it
  | 'jump-range' // a resolved jump displacement does not fit in s16
  | 'imm-range' // an immediate is not an integer in [-2^31, 2^32 - 1] (or 64-bit for lddw)
  | 'offset-range' // an offset is not an integer in s16
  | 'unknown-map' // ld.map names a map missing from AssembleOptions.maps
  | 'bad-map-fd' // the fd given for a map is not a non-negative int32
  | 'bad-register' // dst or src is not an integer 0..10
  | 'bad-opcode' // op is not a byte
  | 'not-a-jump' // a label target on an instruction that does not jump
  | 'bad-bytecode'; // decode(): truncated input or a malformed lddw

export class AsmError extends Error {
  readonly code = 'ERR_BPF_ASM';
  readonly reason: AsmErrorReason;
  /** Position of the offending instruction in the list given to assemble() (a slot number for
   *  decode()); -1 when a builder rejected its arguments before the instruction had a place. */
  readonly index: number;
  readonly insn?: Insn;

  constructor(reason: AsmErrorReason, detail: string, index: number, insn?: Insn) {
    const where = index < 0 ? '' : `insn ${index}${insn === undefined ? '' : ` \`${formatInsn(insn)}\``}: `;
    super(`bpf asm: ${where}${detail}`);
    this.name = 'AsmError';
    this.reason = reason;
    this.index = index;
    if (insn !== undefined) this.insn = insn;
  }
}
