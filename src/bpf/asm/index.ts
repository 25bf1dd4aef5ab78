/**
 * eBPF assembler: instruction builders, assemble() (labels, maps, range checks), decode(), and a
 * stable disassembler. Pure code: no I/O. Encoding per include/uapi/linux/bpf.h.
 */
export type { Insn, InsnFields, Reg } from './insn.ts';
export {
  R0,
  R1,
  R2,
  R3,
  R4,
  R5,
  R6,
  R7,
  R8,
  R9,
  R10,
  FP,
  PSEUDO_LABEL,
  makeInsn,
  fieldsOf,
  isLabelMarker,
  isJump,
  slotsOf,
} from './insn.ts';
export type { AluClass, AluOp, AluOpName, JmpClass, JmpOp, JmpOpName, MemSizes } from './builders.ts';
export { alu64, alu32, end, jmp, jmp32, ldx, stx, st, ld, call, exit, label } from './builders.ts';
export type { HelperName } from './helpers.ts';
export { Helper, helperName } from './helpers.ts';
export type { AsmErrorReason } from './errors.ts';
export { AsmError } from './errors.ts';
export type { AssembleOptions } from './assemble.ts';
export { assemble } from './assemble.ts';
export { decode, disasmBytes } from './decode.ts';
export { disasm, formatInsn } from './disasm.ts';
export * as opcodes from './opcodes.ts';
