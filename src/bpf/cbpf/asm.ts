/**
 * Classic BPF (cBPF): the instruction set of socket filters (SO_ATTACH_FILTER), as in
 * include/uapi/linux/filter.h and linux/bpf_common.h. One instruction is `struct sock_filter`:
 *
 *   0       2    3    4               8
 *   +-------+----+----+---------------+
 *   | code  | jt | jf |       k       |     code: class | size/op | mode/src
 *   +-------+----+----+---------------+     jt/jf: forward offsets from the NEXT instruction
 *
 * Jumps are forward-only: conditional jumps reach at most 255 instructions ahead (u8), `ja`
 * reaches anything ahead (u32 k). There are no loops, so every walk is unrolled.
 *
 * The builder reads like assembly: `a.ldh.abs(12)`, `a.jeq.k(0x0800, 'ipv4', 'drop')`,
 * `a.label('drop')`, `a.ret.k(0)`. `assemble()` resolves labels and throws CbpfAsmError naming
 * the instruction when a target is behind, missing, or out of range. `encode()` gives the bytes
 * the kernel reads (little-endian host layout), `disasm()` a stable text form for tests.
 */
import { defineStruct } from '../../sys/struct.ts';

export * from './opcodes.ts';
import {
  BPF_A,
  BPF_ABS,
  BPF_ADD,
  BPF_ALU,
  BPF_AND,
  BPF_B,
  BPF_DIV,
  BPF_H,
  BPF_IMM,
  BPF_IND,
  BPF_JA,
  BPF_JEQ,
  BPF_JGE,
  BPF_JGT,
  BPF_JMP,
  BPF_JSET,
  BPF_K,
  BPF_LD,
  BPF_LDX,
  BPF_LEN,
  BPF_LSH,
  BPF_MAXINSNS,
  BPF_MEM,
  BPF_MEMWORDS,
  BPF_MISC,
  BPF_MOD,
  BPF_MSH,
  BPF_MUL,
  BPF_NEG,
  BPF_OR,
  BPF_RET,
  BPF_RSH,
  BPF_ST,
  BPF_STX,
  BPF_SUB,
  BPF_TAX,
  BPF_TXA,
  BPF_W,
  BPF_X,
  BPF_XOR,
  SKF_AD_OFF,
} from './opcodes.ts';

/** `struct sock_filter` and `struct sock_fprog` (linux/filter.h). */
export const sockFilterLayout = defineStruct(
  'sock_filter',
  [
    ['code', 'u16'],
    ['jt', 'u8'],
    ['jf', 'u8'],
    ['k', 'u32'],
  ],
  { cType: 'struct sock_filter', header: 'linux/filter.h' },
);

export const sockFprogLayout = defineStruct(
  'sock_fprog',
  [
    ['len', 'u16'],
    ['filter', 'u64'],
  ],
  { cType: 'struct sock_fprog', header: 'linux/filter.h' },
);

export class CbpfAsmError extends Error {
  readonly code = 'ERR_CBPF_ASM';
  /** Index of the offending instruction, when there is one. */
  readonly index: number | undefined;
  constructor(message: string, index?: number) {
    super(index === undefined ? message : `insn ${index}: ${message}`);
    this.name = 'CbpfAsmError';
    this.index = index;
  }
}

/** One assembled instruction. */
export interface CbpfInsn {
  code: number;
  jt: number;
  jf: number;
  k: number;
}

/** An assembled program: parallel arrays (what the interpreter runs) plus the count. */
export interface CbpfProgram {
  readonly length: number;
  readonly code: Uint16Array;
  readonly jt: Uint8Array;
  readonly jf: Uint8Array;
  readonly k: Uint32Array;
}

/** A jump target: a label name, or `null` for "the next instruction" (offset 0). */
export type Target = string | null;

interface Pending {
  code: number;
  k: number;
  jt: Target;
  jf: Target;
  /** `ja`: the target lives in k. */
  long: Target | undefined;
}

/**
 * The builder. Instructions are appended in order; labels name the position of the next one.
 * Every method returns the builder, so programs read top to bottom.
 */
export class CbpfBuilder {
  private readonly insns: Pending[] = [];
  private readonly labels = new Map<string, number>();

  private emit(code: number, k: number, jt: Target = null, jf: Target = null, long?: Target): this {
    this.insns.push({ code, k: k >>> 0, jt, jf, long });
    return this;
  }

  /** Names the position of the next instruction. */
  label(name: string): this {
    if (this.labels.has(name)) throw new CbpfAsmError(`label ${name} defined twice`);
    this.labels.set(name, this.insns.length);
    return this;
  }

  get size(): number {
    return this.insns.length;
  }

  /** A = packet word/half/byte at k (abs) or X+k (ind); A = k (imm), M[k] (mem), len. */
  readonly ld = {
    abs: (k: number) => this.emit(BPF_LD | BPF_W | BPF_ABS, k),
    ind: (k: number) => this.emit(BPF_LD | BPF_W | BPF_IND, k),
    imm: (k: number) => this.emit(BPF_LD | BPF_IMM, k),
    mem: (k: number) => this.emit(BPF_LD | BPF_MEM, checkMem(k)),
    len: () => this.emit(BPF_LD | BPF_W | BPF_LEN, 0),
    /** Ancillary word: SKF_AD_OFF + `what`. */
    anc: (what: number) => this.emit(BPF_LD | BPF_W | BPF_ABS, SKF_AD_OFF + what),
  };
  readonly ldh = {
    abs: (k: number) => this.emit(BPF_LD | BPF_H | BPF_ABS, k),
    ind: (k: number) => this.emit(BPF_LD | BPF_H | BPF_IND, k),
  };
  readonly ldb = {
    abs: (k: number) => this.emit(BPF_LD | BPF_B | BPF_ABS, k),
    ind: (k: number) => this.emit(BPF_LD | BPF_B | BPF_IND, k),
  };
  /** X = k, M[k], len, or 4 * (P[k] & 0xf) (msh: the IPv4 header length). */
  readonly ldx = {
    imm: (k: number) => this.emit(BPF_LDX | BPF_W | BPF_IMM, k),
    mem: (k: number) => this.emit(BPF_LDX | BPF_W | BPF_MEM, checkMem(k)),
    len: () => this.emit(BPF_LDX | BPF_W | BPF_LEN, 0),
    msh: (k: number) => this.emit(BPF_LDX | BPF_B | BPF_MSH, k),
  };
  /** M[k] = A. */
  st(k: number): this {
    return this.emit(BPF_ST, checkMem(k));
  }
  /** M[k] = X. */
  stx(k: number): this {
    return this.emit(BPF_STX, checkMem(k));
  }

  private alu(op: number) {
    return {
      k: (k: number) => this.emit(BPF_ALU | op | BPF_K, k),
      x: () => this.emit(BPF_ALU | op | BPF_X, 0),
    };
  }
  readonly add = this.alu(BPF_ADD);
  readonly sub = this.alu(BPF_SUB);
  readonly mul = this.alu(BPF_MUL);
  readonly div = this.alu(BPF_DIV);
  readonly mod = this.alu(BPF_MOD);
  readonly or = this.alu(BPF_OR);
  readonly and = this.alu(BPF_AND);
  readonly xor = this.alu(BPF_XOR);
  readonly lsh = this.alu(BPF_LSH);
  readonly rsh = this.alu(BPF_RSH);
  neg(): this {
    return this.emit(BPF_ALU | BPF_NEG, 0);
  }

  private jmp(op: number) {
    return {
      k: (k: number, jt: Target, jf: Target = null) => this.emit(BPF_JMP | op | BPF_K, k, jt, jf),
      x: (jt: Target, jf: Target = null) => this.emit(BPF_JMP | op | BPF_X, 0, jt, jf),
    };
  }
  readonly jeq = this.jmp(BPF_JEQ);
  readonly jgt = this.jmp(BPF_JGT);
  readonly jge = this.jmp(BPF_JGE);
  readonly jset = this.jmp(BPF_JSET);
  /** Unconditional jump, any distance forward. */
  ja(target: string): this {
    return this.emit(BPF_JMP | BPF_JA, 0, null, null, target);
  }

  readonly ret = {
    k: (k: number) => this.emit(BPF_RET | BPF_K, k),
    a: () => this.emit(BPF_RET | BPF_A, 0),
  };
  tax(): this {
    return this.emit(BPF_MISC | BPF_TAX, 0);
  }
  txa(): this {
    return this.emit(BPF_MISC | BPF_TXA, 0);
  }

  /** Resolves labels. Throws CbpfAsmError for unknown labels, backward or too-long jumps. */
  assemble(): CbpfProgram {
    const n = this.insns.length;
    if (n === 0) throw new CbpfAsmError('empty program');
    if (n > BPF_MAXINSNS) throw new CbpfAsmError(`${n} instructions exceed BPF_MAXINSNS (${BPF_MAXINSNS})`);
    const prog = {
      length: n,
      code: new Uint16Array(n),
      jt: new Uint8Array(n),
      jf: new Uint8Array(n),
      k: new Uint32Array(n),
    };
    for (let i = 0; i < n; i++) {
      const p = this.insns[i]!;
      prog.code[i] = p.code;
      prog.k[i] = p.k;
      if (p.long !== undefined) {
        prog.k[i] = this.offset(i, p.long, 0xffffffff);
      } else if ((p.code & 0x07) === BPF_JMP) {
        prog.jt[i] = this.offset(i, p.jt, 255);
        prog.jf[i] = this.offset(i, p.jf, 255);
      }
    }
    const last = prog.code[n - 1]! & 0x07;
    if (last !== BPF_RET) throw new CbpfAsmError('the last instruction must be a ret', n - 1);
    return prog;
  }

  private offset(i: number, target: Target, max: number): number {
    if (target === null) return 0;
    const at = this.labels.get(target);
    if (at === undefined) throw new CbpfAsmError(`unknown label ${target}`, i);
    const off = at - (i + 1);
    if (off < 0) throw new CbpfAsmError(`jump to ${target} goes backwards (cBPF jumps are forward only)`, i);
    if (off > max) throw new CbpfAsmError(`jump to ${target} is ${off} instructions ahead, more than ${max}`, i);
    if (at >= this.insns.length) throw new CbpfAsmError(`label ${target} is past the last instruction`, i);
    return off;
  }
}

function checkMem(k: number): number {
  if (!Number.isInteger(k) || k < 0 || k >= BPF_MEMWORDS) throw new CbpfAsmError(`scratch slot M[${k}] out of 0..15`);
  return k;
}

export function cbpf(): CbpfBuilder {
  return new CbpfBuilder();
}

/** The `struct sock_filter[]` bytes (8 per instruction, host byte order = little-endian). */
export function encode(prog: CbpfProgram, into?: Uint8Array): Uint8Array {
  const out = into ?? new Uint8Array(prog.length * 8);
  if (out.byteLength < prog.length * 8) throw new RangeError(`encode: ${out.byteLength} bytes < ${prog.length * 8}`);
  const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
  for (let i = 0; i < prog.length; i++) {
    dv.setUint16(i * 8, prog.code[i]!, true);
    dv.setUint8(i * 8 + 2, prog.jt[i]!);
    dv.setUint8(i * 8 + 3, prog.jf[i]!);
    dv.setUint32(i * 8 + 4, prog.k[i]!, true);
  }
  return out;
}

/** Inverse of `encode`. */
export function decode(bytes: Uint8Array): CbpfProgram {
  if (bytes.byteLength % 8 !== 0) throw new CbpfAsmError(`${bytes.byteLength} bytes is not a whole number of instructions`);
  const n = bytes.byteLength / 8;
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const prog = { length: n, code: new Uint16Array(n), jt: new Uint8Array(n), jf: new Uint8Array(n), k: new Uint32Array(n) };
  for (let i = 0; i < n; i++) {
    prog.code[i] = dv.getUint16(i * 8, true);
    prog.jt[i] = dv.getUint8(i * 8 + 2);
    prog.jf[i] = dv.getUint8(i * 8 + 3);
    prog.k[i] = dv.getUint32(i * 8 + 4, true);
  }
  return prog;
}

const ALU_NAMES: Record<number, string> = {
  [BPF_ADD]: 'add',
  [BPF_SUB]: 'sub',
  [BPF_MUL]: 'mul',
  [BPF_DIV]: 'div',
  [BPF_OR]: 'or',
  [BPF_AND]: 'and',
  [BPF_LSH]: 'lsh',
  [BPF_RSH]: 'rsh',
  [BPF_NEG]: 'neg',
  [BPF_MOD]: 'mod',
  [BPF_XOR]: 'xor',
};
const JMP_NAMES: Record<number, string> = { [BPF_JEQ]: 'jeq', [BPF_JGT]: 'jgt', [BPF_JGE]: 'jge', [BPF_JSET]: 'jset' };
const SIZE_NAMES: Record<number, string> = { [BPF_W]: 'ld', [BPF_H]: 'ldh', [BPF_B]: 'ldb' };

function hex(k: number): string {
  return `0x${k.toString(16)}`;
}

function absOperand(k: number): string {
  const s = k | 0;
  if (s >= SKF_AD_OFF && s < 0) return `[ad+${s - SKF_AD_OFF}]`;
  return `[${k}]`;
}

/** One instruction as text, tcpdump -d style but with absolute jump targets. */
export function disasmInsn(prog: CbpfProgram, i: number): string {
  const code = prog.code[i]!;
  const k = prog.k[i]!;
  const cls = code & 0x07;
  const t = i + 1 + prog.jt[i]!;
  const f = i + 1 + prog.jf[i]!;
  switch (cls) {
    case BPF_LD: {
      const mode = code & 0xe0;
      const name = SIZE_NAMES[code & 0x18] ?? '?';
      if (mode === BPF_ABS) return `${name} ${absOperand(k)}`;
      if (mode === BPF_IND) return `${name} [x+${k}]`;
      if (mode === BPF_IMM) return `ld #${hex(k)}`;
      if (mode === BPF_MEM) return `ld M[${k}]`;
      if (mode === BPF_LEN) return 'ld #len';
      break;
    }
    case BPF_LDX: {
      const mode = code & 0xe0;
      if (mode === BPF_IMM) return `ldx #${hex(k)}`;
      if (mode === BPF_MEM) return `ldx M[${k}]`;
      if (mode === BPF_LEN) return 'ldx #len';
      if (mode === BPF_MSH) return `ldx 4*([${k}]&0xf)`;
      break;
    }
    case BPF_ST:
      return `st M[${k}]`;
    case BPF_STX:
      return `stx M[${k}]`;
    case BPF_ALU: {
      const op = code & 0xf0;
      if (op === BPF_NEG) return 'neg';
      return `${ALU_NAMES[op] ?? '?'} ${(code & BPF_X) !== 0 ? 'x' : `#${hex(k)}`}`;
    }
    case BPF_JMP: {
      const op = code & 0xf0;
      if (op === BPF_JA) return `ja ${i + 1 + k}`;
      return `${JMP_NAMES[op] ?? '?'} ${(code & BPF_X) !== 0 ? 'x' : `#${hex(k)}`} jt ${t} jf ${f}`;
    }
    case BPF_RET:
      return (code & 0x18) === BPF_A ? 'ret a' : `ret #${hex(k)}`;
    case BPF_MISC:
      return (code & 0xf8) === BPF_TXA ? 'txa' : 'tax';
  }
  return `.insn code=${hex(code)} jt=${prog.jt[i]} jf=${prog.jf[i]} k=${hex(k)}`;
}

/** The whole program, one numbered line per instruction. */
export function disasm(prog: CbpfProgram): string {
  const lines: string[] = [];
  const w = String(prog.length - 1).length;
  for (let i = 0; i < prog.length; i++) lines.push(`${String(i).padStart(w, ' ')}: ${disasmInsn(prog, i)}`);
  return lines.join('\n') + '\n';
}
