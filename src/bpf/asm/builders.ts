/**
 * Instruction builders that read like assembly:
 *
 *   alu64.add.imm(R4, 42)           r4 += 42
 *   jmp.jgt.reg(R4, R3, 'pass')     if r4 > r3 goto pass
 *   ldx.h(R2, R7, 12)               r2 = *(u16 *)(r7 + 12)
 *   ld.map(R1, 'ports')             r1 = map[ports] ll
 *   exit().sym('pass')              pass: exit
 *
 * Builders only record what they are given; assemble() checks ranges and resolves labels and
 * maps, so an error can name the instruction's position in the program.
 * Opcodes: include/uapi/linux/bpf.h and bpf_common.h (see opcodes.ts).
 */

import type { Insn, Reg } from './insn.ts';
import { makeInsn, PSEUDO_LABEL } from './insn.ts';
import { AsmError } from './errors.ts';
import * as op from './opcodes.ts';

export interface AluOp {
  /** dst op= imm */
  imm(dst: Reg, imm: number): Insn;
  /** dst op= src */
  reg(dst: Reg, src: Reg): Insn;
}

export type AluOpName = 'add' | 'sub' | 'mul' | 'div' | 'or' | 'and' | 'lsh' | 'rsh' | 'mod' | 'xor' | 'mov' | 'arsh';
export type AluClass = Readonly<Record<AluOpName, AluOp>> & { neg(dst: Reg): Insn };

const ALU_OPS: Readonly<Record<AluOpName, number>> = {
  add: op.BPF_ADD,
  sub: op.BPF_SUB,
  mul: op.BPF_MUL,
  div: op.BPF_DIV,
  or: op.BPF_OR,
  and: op.BPF_AND,
  lsh: op.BPF_LSH,
  rsh: op.BPF_RSH,
  mod: op.BPF_MOD,
  xor: op.BPF_XOR,
  mov: op.BPF_MOV,
  arsh: op.BPF_ARSH,
};

function aluClass(cls: number): AluClass {
  const ops = {} as Record<AluOpName, AluOp>;
  for (const [name, code] of Object.entries(ALU_OPS) as [AluOpName, number][]) {
    ops[name] = Object.freeze({
      imm: (dst: Reg, imm: number) => makeInsn({ op: cls | code | op.BPF_K, dst, src: 0, off: 0, imm }),
      reg: (dst: Reg, src: Reg) => makeInsn({ op: cls | code | op.BPF_X, dst, src, off: 0, imm: 0 }),
    });
  }
  const neg = (dst: Reg) => makeInsn({ op: cls | op.BPF_NEG | op.BPF_K, dst, src: 0, off: 0, imm: 0 });
  return Object.freeze({ ...ops, neg });
}

/** 64-bit ALU (BPF_ALU64). Immediates are sign-extended from 32 bits by the CPU. */
export const alu64: AluClass = aluClass(op.BPF_ALU64);
/** 32-bit ALU (BPF_ALU): operates on the low halves and zeroes the upper 32 bits of dst. */
export const alu32: AluClass = aluClass(op.BPF_ALU);

/** Byte-order conversion (BPF_ALU | BPF_END): `be` swaps on little-endian hosts, `le` only
 *  truncates there. Both zero-extend to 64 bits. */
export const end = Object.freeze({
  le: (dst: Reg, bits: 16 | 32 | 64): Insn => makeInsn({ op: op.BPF_ALU | op.BPF_END | op.BPF_TO_LE, dst, src: 0, off: 0, imm: bits }),
  be: (dst: Reg, bits: 16 | 32 | 64): Insn => makeInsn({ op: op.BPF_ALU | op.BPF_END | op.BPF_TO_BE, dst, src: 0, off: 0, imm: bits }),
});

export interface JmpOp {
  /** if dst cmp imm goto label */
  imm(dst: Reg, imm: number, label: string): Insn;
  /** if dst cmp src goto label */
  reg(dst: Reg, src: Reg, label: string): Insn;
}

export type JmpOpName = 'jeq' | 'jgt' | 'jge' | 'jlt' | 'jle' | 'jset' | 'jne' | 'jsgt' | 'jsge' | 'jslt' | 'jsle';
export type JmpClass = Readonly<Record<JmpOpName, JmpOp>>;

const JMP_OPS: Readonly<Record<JmpOpName, number>> = {
  jeq: op.BPF_JEQ,
  jgt: op.BPF_JGT,
  jge: op.BPF_JGE,
  jlt: op.BPF_JLT,
  jle: op.BPF_JLE,
  jset: op.BPF_JSET,
  jne: op.BPF_JNE,
  jsgt: op.BPF_JSGT,
  jsge: op.BPF_JSGE,
  jslt: op.BPF_JSLT,
  jsle: op.BPF_JSLE,
};

function jmpClass(cls: number): JmpClass {
  const ops = {} as Record<JmpOpName, JmpOp>;
  for (const [name, code] of Object.entries(JMP_OPS) as [JmpOpName, number][]) {
    ops[name] = Object.freeze({
      imm: (dst: Reg, imm: number, target: string) => makeInsn({ op: cls | code | op.BPF_K, dst, src: 0, off: 0, imm, target }),
      reg: (dst: Reg, src: Reg, target: string) => makeInsn({ op: cls | code | op.BPF_X, dst, src, off: 0, imm: 0, target }),
    });
  }
  return Object.freeze(ops);
}

/** 64-bit compares (BPF_JMP) and the unconditional jump. Unsigned: jgt jge jlt jle; signed: js*. */
export const jmp: JmpClass & { ja(label: string): Insn } = Object.freeze({
  ...jmpClass(op.BPF_JMP),
  ja: (target: string) => makeInsn({ op: op.BPF_JMP | op.BPF_JA, dst: 0, src: 0, off: 0, imm: 0, target }),
});
/** 32-bit compares (BPF_JMP32, kernel ≥ 5.1) of the low halves. */
export const jmp32: JmpClass = jmpClass(op.BPF_JMP32);

export interface MemSizes<F> {
  readonly b: F;
  readonly h: F;
  readonly w: F;
  readonly dw: F;
}

const SIZES = { b: op.BPF_B, h: op.BPF_H, w: op.BPF_W, dw: op.BPF_DW } as const;

function bySize<F>(make: (size: number) => F): MemSizes<F> {
  return Object.freeze({ b: make(SIZES.b), h: make(SIZES.h), w: make(SIZES.w), dw: make(SIZES.dw) });
}

/** dst = *(size *)(src + off) */
export const ldx: MemSizes<(dst: Reg, src: Reg, off: number) => Insn> = bySize(
  (size) => (dst, src, off) => makeInsn({ op: op.BPF_LDX | op.BPF_MEM | size, dst, src, off, imm: 0 }),
);

/** *(size *)(dst + off) = src */
export const stx: MemSizes<(dst: Reg, off: number, src: Reg) => Insn> = bySize(
  (size) => (dst, off, src) => makeInsn({ op: op.BPF_STX | op.BPF_MEM | size, dst, src, off, imm: 0 }),
);

/** *(size *)(dst + off) = imm (a dw store sign-extends imm). */
export const st: MemSizes<(dst: Reg, off: number, imm: number) => Insn> = bySize(
  (size) => (dst, off, imm) => makeInsn({ op: op.BPF_ST | op.BPF_MEM | size, dst, src: 0, off, imm }),
);

/** Split a 64-bit constant over lddw's two imm fields: `imm` keeps the low half as an int32. */
function lddw(dst: Reg, value: bigint, src: number): Insn {
  const low = Number(BigInt.asIntN(32, value));
  return makeInsn({ op: op.BPF_LDDW, dst, src, off: 0, imm: low, imm64: value });
}

export const ld = Object.freeze({
  /** dst = value (64-bit constant, two slots). Numbers must be safe integers; pass a bigint
   *  for anything wider. Negative values mean their two's complement. */
  imm64(dst: Reg, value: bigint | number): Insn {
    if (typeof value === 'number' && !Number.isSafeInteger(value)) {
      throw new AsmError('imm-range', `ld.imm64: ${value} is not a safe integer (pass a bigint)`, -1);
    }
    return lddw(dst, BigInt(value), 0);
  },
  /** dst = pointer to the map named mapName. The loader (kernel) replaces the fd that assemble()
   *  writes, because src is BPF_PSEUDO_MAP_FD. */
  map(dst: Reg, mapName: string): Insn {
    return makeInsn({ op: op.BPF_LDDW, dst, src: op.BPF_PSEUDO_MAP_FD, off: 0, imm: 0, mapRef: mapName });
  },
});

/** Call a helper by id (see Helper). Clobbers r1-r5; the result is in r0. */
export function call(helper: number): Insn {
  return makeInsn({ op: op.BPF_JMP | op.BPF_CALL, dst: 0, src: 0, off: 0, imm: helper });
}

/** Return r0. */
export function exit(): Insn {
  return makeInsn({ op: op.BPF_JMP | op.BPF_EXIT, dst: 0, src: 0, off: 0, imm: 0 });
}

/**
 * A label on its own: a zero-width marker whose label belongs to the next real instruction.
 * An alternative to `.sym()` when a block starts with an instruction built elsewhere.
 */
export function label(name: string): Insn {
  return makeInsn({ op: PSEUDO_LABEL, dst: 0, src: 0, off: 0, imm: 0, label: name });
}
