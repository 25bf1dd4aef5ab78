/**
 * One eBPF instruction as data (struct bpf_insn in include/uapi/linux/bpf.h), plus the symbolic
 * parts an assembler needs: a label naming it, a label it jumps to, a map it loads, a comment.
 * Values are stored as the caller gave them; assemble() checks ranges, so errors can say where.
 */

import { BPF_CALL, BPF_EXIT, BPF_JA, BPF_JMP, BPF_JMP32, BPF_LDDW, bpfClass, bpfOp } from './opcodes.ts';

/** r0 = return value / helper result, r1-r5 = helper arguments (clobbered by calls),
 *  r6-r9 = callee-saved, r10 = read-only frame pointer. */
export type Reg = 0 | 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9 | 10;

export const R0: Reg = 0;
export const R1: Reg = 1;
export const R2: Reg = 2;
export const R3: Reg = 3;
export const R4: Reg = 4;
export const R5: Reg = 5;
export const R6: Reg = 6;
export const R7: Reg = 7;
export const R8: Reg = 8;
export const R9: Reg = 9;
export const R10: Reg = 10;
/** The frame pointer; the stack grows down from it (512 bytes). */
export const FP: Reg = R10;

export interface Insn {
  /** Opcode byte; PSEUDO_LABEL for a label marker (see label()). */
  readonly op: number;
  readonly dst: Reg;
  /** Source register, or the pseudo type of lddw / call (BPF_PSEUDO_*). */
  readonly src: number;
  readonly off: number;
  readonly imm: number;
  /** The 64-bit constant of lddw (two slots). */
  readonly imm64?: bigint;
  /** Symbol attached to this instruction (a jump target). */
  readonly label?: string;
  /** For jumps: the label jumped to; assemble() turns it into `off`. */
  readonly target?: string;
  /** For ld.map: the map name; assemble() turns it into a map fd in `imm`. */
  readonly mapRef?: string;
  /** Free text printed by disasm(). */
  readonly comment?: string;
  /** A copy carrying the label (replacing any label it had). */
  sym(label: string): Insn;
  /** A copy carrying a comment (replacing any comment it had). */
  note(text: string): Insn;
}

/** The plain fields of an instruction, without the methods. */
export interface InsnFields {
  op: number;
  dst: Reg;
  src: number;
  off: number;
  imm: number;
  imm64?: bigint;
  label?: string;
  target?: string;
  mapRef?: string;
  comment?: string;
}

/**
 * Opcode of a label marker: a zero-width pseudo instruction that gives its label to the next real
 * instruction. Real opcodes are bytes, so -1 can never collide with one.
 */
export const PSEUDO_LABEL = -1;

class Instruction implements Insn {
  readonly op: number;
  readonly dst: Reg;
  readonly src: number;
  readonly off: number;
  readonly imm: number;
  declare readonly imm64?: bigint;
  declare readonly label?: string;
  declare readonly target?: string;
  declare readonly mapRef?: string;
  declare readonly comment?: string;

  constructor(f: InsnFields) {
    this.op = f.op;
    this.dst = f.dst;
    this.src = f.src;
    this.off = f.off;
    this.imm = f.imm;
    // Optional fields are only set when present, so deepEqual and object spread see the same
    // shape whether an instruction was built or decoded.
    const self = this as { -readonly [K in keyof InsnFields]?: InsnFields[K] };
    if (f.imm64 !== undefined) self.imm64 = f.imm64;
    if (f.label !== undefined) self.label = f.label;
    if (f.target !== undefined) self.target = f.target;
    if (f.mapRef !== undefined) self.mapRef = f.mapRef;
    if (f.comment !== undefined) self.comment = f.comment;
    Object.freeze(this);
  }

  sym(label: string): Insn {
    return new Instruction({ ...fieldsOf(this), label });
  }

  note(text: string): Insn {
    return new Instruction({ ...fieldsOf(this), comment: text });
  }
}

/** Build an instruction from its fields. */
export function makeInsn(fields: InsnFields): Insn {
  return new Instruction(fields);
}

/** The plain fields of an instruction (drops methods and absent optional fields). */
export function fieldsOf(insn: Insn): InsnFields {
  const f: InsnFields = { op: insn.op, dst: insn.dst, src: insn.src, off: insn.off, imm: insn.imm };
  if (insn.imm64 !== undefined) f.imm64 = insn.imm64;
  if (insn.label !== undefined) f.label = insn.label;
  if (insn.target !== undefined) f.target = insn.target;
  if (insn.mapRef !== undefined) f.mapRef = insn.mapRef;
  if (insn.comment !== undefined) f.comment = insn.comment;
  return f;
}

export const isLabelMarker = (insn: Insn): boolean => insn.op === PSEUDO_LABEL;

/** Instruction slots taken: 2 for lddw, 0 for a label marker, 1 otherwise. */
export function slotsOf(insn: Insn): number {
  if (insn.op === BPF_LDDW) return 2;
  return insn.op === PSEUDO_LABEL ? 0 : 1;
}

/** True for instructions whose `off` is a branch displacement: everything in the JMP classes
 *  except call and exit, and except JMP32|JA (`gotol`), whose displacement is in imm. */
export function isJump(op: number): boolean {
  const cls = bpfClass(op);
  if (op < 0 || op > 0xff || (cls !== BPF_JMP && cls !== BPF_JMP32)) return false;
  const code = bpfOp(op);
  if (cls === BPF_JMP32 && code === BPF_JA) return false;
  return code !== BPF_CALL && code !== BPF_EXIT;
}
