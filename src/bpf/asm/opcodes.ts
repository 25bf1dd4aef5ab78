/**
 * eBPF opcode fields, spelled as in include/uapi/linux/bpf_common.h and include/uapi/linux/bpf.h.
 *
 * An instruction is 8 bytes (struct bpf_insn), little-endian on every host we run on:
 *
 *   byte   0        1                 2..3        4..7
 *        +--------+--------+--------+-----------+-----------+
 *        | opcode | src:4  | dst:4  | off (s16) | imm (s32) |
 *        +--------+--------+--------+-----------+-----------+
 *                  high nib  low nib
 *
 * The opcode byte is split by class (low 3 bits):
 *   ALU, ALU64, JMP, JMP32:  | op:4 | source:1 | class:3 |   source: BPF_K (imm) or BPF_X (src reg)
 *   LD, LDX, ST, STX:        | mode:3 | size:2 | class:3 |
 *
 * `lddw` (BPF_LD | BPF_IMM | BPF_DW) is the only 16-byte instruction: the second slot has opcode 0
 * and carries the high 32 bits of the constant in its imm field.
 */

// Instruction classes (BPF_CLASS).
export const BPF_LD = 0x00;
export const BPF_LDX = 0x01;
export const BPF_ST = 0x02;
export const BPF_STX = 0x03;
export const BPF_ALU = 0x04;
export const BPF_JMP = 0x05;
export const BPF_JMP32 = 0x06;
export const BPF_ALU64 = 0x07;

// Load/store sizes (BPF_SIZE).
export const BPF_W = 0x00;
export const BPF_H = 0x08;
export const BPF_B = 0x10;
export const BPF_DW = 0x18;

// Load/store modes (BPF_MODE). ABS/IND are the legacy packet loads, decoded but never built.
export const BPF_IMM = 0x00;
export const BPF_ABS = 0x20;
export const BPF_IND = 0x40;
export const BPF_MEM = 0x60;
export const BPF_MEMSX = 0x80;
export const BPF_ATOMIC = 0xc0;

// Operand source (BPF_SRC).
export const BPF_K = 0x00;
export const BPF_X = 0x08;

// ALU operations (BPF_OP).
export const BPF_ADD = 0x00;
export const BPF_SUB = 0x10;
export const BPF_MUL = 0x20;
export const BPF_DIV = 0x30;
export const BPF_OR = 0x40;
export const BPF_AND = 0x50;
export const BPF_LSH = 0x60;
export const BPF_RSH = 0x70;
export const BPF_NEG = 0x80;
export const BPF_MOD = 0x90;
export const BPF_XOR = 0xa0;
export const BPF_MOV = 0xb0;
export const BPF_ARSH = 0xc0;
export const BPF_END = 0xd0;

// BPF_END direction lives in the source bit.
export const BPF_TO_LE = 0x00;
export const BPF_TO_BE = 0x08;

// Jump operations (BPF_OP).
export const BPF_JA = 0x00;
export const BPF_JEQ = 0x10;
export const BPF_JGT = 0x20;
export const BPF_JGE = 0x30;
export const BPF_JSET = 0x40;
export const BPF_JNE = 0x50;
export const BPF_JSGT = 0x60;
export const BPF_JSGE = 0x70;
export const BPF_CALL = 0x80;
export const BPF_EXIT = 0x90;
export const BPF_JLT = 0xa0;
export const BPF_JLE = 0xb0;
export const BPF_JSLT = 0xc0;
export const BPF_JSLE = 0xd0;

// Values of the src field of lddw that make the loader patch imm (bpf.h).
export const BPF_PSEUDO_MAP_FD = 1;
export const BPF_PSEUDO_MAP_VALUE = 2;

/** The 16-byte load of a 64-bit constant. */
export const BPF_LDDW = BPF_LD | BPF_IMM | BPF_DW;

/** Size of one instruction slot in bytes. */
export const INSN_SIZE = 8;

export const bpfClass = (op: number): number => op & 0x07;
export const bpfOp = (op: number): number => op & 0xf0;
export const bpfSrc = (op: number): number => op & 0x08;
export const bpfSize = (op: number): number => op & 0x18;
export const bpfMode = (op: number): number => op & 0xe0;
