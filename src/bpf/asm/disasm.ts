/**
 * Text form of eBPF instructions, close to the kernel verifier log and `bpftool prog dump xlated`:
 *
 *   pass:
 *      12: r4 += 42
 *      13: if r4 > r3 goto +5 <pass>
 *      14: r2 = *(u16 *)(r7 + 12)
 *      16: r1 = map[ports] ll          (lddw: two slots, so the next line says 18)
 *      18: call 51 (redirect_map) ; comment
 *
 * The output is stable (golden files depend on it): one line per instruction, slot numbers
 * right-aligned to 4, `w` registers for 32-bit ALU/JMP32, hex immediates for bit operations
 * (masks read better), decimal elsewhere. Immediates are shown as the int32 the kernel sees.
 */

import type { Insn } from './insn.ts';
import { isJump, isLabelMarker } from './insn.ts';
import { helperName } from './helpers.ts';
import { layout } from './layout.ts';
import * as op from './opcodes.ts';

const ALU_SYMBOL: Record<number, string> = {
  [op.BPF_ADD]: '+',
  [op.BPF_SUB]: '-',
  [op.BPF_MUL]: '*',
  [op.BPF_DIV]: '/',
  [op.BPF_OR]: '|',
  [op.BPF_AND]: '&',
  [op.BPF_LSH]: '<<',
  [op.BPF_RSH]: '>>',
  [op.BPF_MOD]: '%',
  [op.BPF_XOR]: '^',
  [op.BPF_ARSH]: 's>>',
};

const JMP_SYMBOL: Record<number, string> = {
  [op.BPF_JEQ]: '==',
  [op.BPF_JGT]: '>',
  [op.BPF_JGE]: '>=',
  [op.BPF_JSET]: '&',
  [op.BPF_JNE]: '!=',
  [op.BPF_JSGT]: 's>',
  [op.BPF_JSGE]: 's>=',
  [op.BPF_JLT]: '<',
  [op.BPF_JLE]: '<=',
  [op.BPF_JSLT]: 's<',
  [op.BPF_JSLE]: 's<=',
};

const SIZE_NAME: Record<number, string> = { [op.BPF_W]: '32', [op.BPF_H]: '16', [op.BPF_B]: '8', [op.BPF_DW]: '64' };

/** Operations whose immediates are masks, printed in hex. */
const BITWISE = new Set([op.BPF_AND, op.BPF_OR, op.BPF_XOR]);

const signed = (n: number): string => (n >= 0 ? `+${n}` : `${n}`);
const reg = (n: number, wide: boolean): string => `${wide ? 'r' : 'w'}${n}`;
const mem = (size: number, signedLoad: boolean, base: number, off: number): string =>
  `*(${signedLoad ? 's' : 'u'}${SIZE_NAME[size]} *)(r${base} ${off < 0 ? '-' : '+'} ${Math.abs(off)})`;

/** The immediate as the kernel will see it: values up to 0xffffffff wrap to int32 (see assemble). */
function immText(imm: number, hex: boolean): string {
  const v = Number.isInteger(imm) && imm >= -0x8000_0000 && imm <= 0xffff_ffff ? imm | 0 : imm;
  if (!hex || !Number.isInteger(v)) return String(v);
  return v < 0 ? `-0x${(-v).toString(16)}` : `0x${v.toString(16)}`;
}

function raw(insn: Insn): string {
  const hex = insn.op >= 0 && insn.op <= 0xff ? `0x${insn.op.toString(16).padStart(2, '0')}` : String(insn.op);
  return `.insn op=${hex} dst=${insn.dst} src=${insn.src} off=${insn.off} imm=${insn.imm}`;
}

/** The 64-bit constant of an lddw, unsigned; undefined if imm is not even an integer. */
function lddwValue(insn: Insn): bigint | undefined {
  if (insn.imm64 !== undefined) return insn.imm64 < 0n ? BigInt.asUintN(64, insn.imm64) : insn.imm64;
  return Number.isInteger(insn.imm) ? BigInt(insn.imm >>> 0) : undefined;
}

function formatLoad(insn: Insn): string {
  if (insn.op !== op.BPF_LDDW) return raw(insn);
  const d = `r${insn.dst}`;
  if (insn.mapRef !== undefined) return `${d} = map[${insn.mapRef}] ll`;
  const value = lddwValue(insn);
  if (value === undefined) return raw(insn);
  const low = value & 0xffff_ffffn;
  switch (insn.src) {
    case 0:
      return `${d} = 0x${value.toString(16)} ll`;
    case op.BPF_PSEUDO_MAP_FD:
      return `${d} = map[fd:${low}] ll`;
    case op.BPF_PSEUDO_MAP_VALUE:
      return `${d} = map_value[fd:${low}]+${value >> 32n} ll`;
    default:
      return `${d} = 0x${value.toString(16)} ll (src ${insn.src})`;
  }
}

const ATOMIC_SYMBOL: Record<number, string> = { [op.BPF_ADD]: '+', [op.BPF_OR]: '|', [op.BPF_AND]: '&', [op.BPF_XOR]: '^' };

function formatMemory(insn: Insn): string {
  const cls = op.bpfClass(insn.op);
  const mode = op.bpfMode(insn.op);
  const size = op.bpfSize(insn.op);
  if (cls === op.BPF_LDX && (mode === op.BPF_MEM || mode === op.BPF_MEMSX)) {
    return `r${insn.dst} = ${mem(size, mode === op.BPF_MEMSX, insn.src, insn.off)}`;
  }
  if (cls === op.BPF_ST && mode === op.BPF_MEM) return `${mem(size, false, insn.dst, insn.off)} = ${immText(insn.imm, false)}`;
  if (cls === op.BPF_STX && mode === op.BPF_MEM) return `${mem(size, false, insn.dst, insn.off)} = r${insn.src}`;
  if (cls === op.BPF_STX && mode === op.BPF_ATOMIC && ATOMIC_SYMBOL[insn.imm] !== undefined) {
    return `lock ${mem(size, false, insn.dst, insn.off)} ${ATOMIC_SYMBOL[insn.imm]}= r${insn.src}`;
  }
  return raw(insn);
}

function formatAlu(insn: Insn): string {
  const wide = op.bpfClass(insn.op) === op.BPF_ALU64;
  const code = op.bpfOp(insn.op);
  const byReg = op.bpfSrc(insn.op) === op.BPF_X;
  const d = reg(insn.dst, wide);
  const operand = byReg ? reg(insn.src, wide) : immText(insn.imm, BITWISE.has(code));
  switch (code) {
    case op.BPF_NEG:
      return `${d} = -${d}`;
    case op.BPF_END:
      // 32-bit class converts to a byte order; the 64-bit class (kernel ≥ 6.6) swaps unconditionally.
      if (!wide) return `r${insn.dst} = ${byReg ? 'be' : 'le'}${insn.imm} r${insn.dst}`;
      return byReg ? raw(insn) : `r${insn.dst} = bswap${insn.imm} r${insn.dst}`;
    case op.BPF_MOV:
      // off 8/16/32 on a register move is movsx (sign-extending move, kernel ≥ 6.6).
      if (byReg && insn.off !== 0) return `${d} = (s${insn.off})${operand}`;
      return `${d} = ${operand}`;
    case op.BPF_DIV:
    case op.BPF_MOD:
      // off 1 selects the signed variant (kernel ≥ 6.6).
      return `${d} ${insn.off === 1 ? 's' : ''}${ALU_SYMBOL[code]}= ${operand}`;
  }
  const symbol = ALU_SYMBOL[code];
  return symbol === undefined ? raw(insn) : `${d} ${symbol}= ${operand}`;
}

function formatJump(insn: Insn, jumpOff: number | undefined): string {
  const wide = op.bpfClass(insn.op) === op.BPF_JMP;
  const code = op.bpfOp(insn.op);
  // With a label: the resolved offset (when known) and the label; without: the raw offset.
  const dest =
    insn.target === undefined ? signed(insn.off) : jumpOff === undefined ? `<${insn.target}>` : `${signed(jumpOff)} <${insn.target}>`;
  switch (code) {
    case op.BPF_JA:
      return wide ? `goto ${dest}` : `gotol ${signed(insn.imm)}`;
    case op.BPF_CALL: {
      if (!wide) return raw(insn);
      if (insn.src !== 0) return `call ${insn.imm} (src ${insn.src})`;
      const name = helperName(insn.imm);
      return name === undefined ? `call ${insn.imm}` : `call ${insn.imm} (${name})`;
    }
    case op.BPF_EXIT:
      return wide ? 'exit' : raw(insn);
  }
  const symbol = JMP_SYMBOL[code];
  if (symbol === undefined) return raw(insn);
  const operand = op.bpfSrc(insn.op) === op.BPF_X ? reg(insn.src, wide) : immText(insn.imm, code === op.BPF_JSET);
  return `if ${reg(insn.dst, wide)} ${symbol} ${operand} goto ${dest}`;
}

/**
 * One instruction without its slot number, label line or comment. `jumpOff` is the resolved
 * displacement of a labelled jump, when the caller knows it.
 */
export function formatInsn(insn: Insn, jumpOff?: number): string {
  if (isLabelMarker(insn)) return `${insn.label ?? '?'}:`;
  if (!Number.isInteger(insn.op) || insn.op < 0 || insn.op > 0xff) return raw(insn);
  switch (op.bpfClass(insn.op)) {
    case op.BPF_LD:
      return formatLoad(insn);
    case op.BPF_LDX:
    case op.BPF_ST:
    case op.BPF_STX:
      return formatMemory(insn);
    case op.BPF_ALU:
    case op.BPF_ALU64:
      return formatAlu(insn);
    default:
      return formatJump(insn, jumpOff);
  }
}

const oneLine = (text: string): string => text.replace(/\s*\n\s*/g, ' ');

/**
 * Listing of an instruction list: label lines, slot-numbered instructions, `; comments`.
 * Never throws: labels that do not resolve print without an offset, so a broken program can
 * still be shown (assemble() is the one that complains).
 */
export function disasm(insns: readonly Insn[]): string {
  const { slots, labels } = layout(insns);
  let out = '';
  for (let i = 0; i < insns.length; i++) {
    const insn = insns[i]!;
    const comment = insn.comment === undefined ? '' : ` ; ${oneLine(insn.comment)}`;
    if (isLabelMarker(insn)) {
      out += `${formatInsn(insn)}${comment}\n`;
      continue;
    }
    if (insn.label !== undefined) out += `${insn.label}:\n`;
    let jumpOff: number | undefined;
    if (insn.target !== undefined && isJump(insn.op)) {
      const to = labels.get(insn.target);
      if (to !== undefined) jumpOff = to - (slots[i]! + 1);
    }
    out += `${String(slots[i]).padStart(4)}: ${formatInsn(insn, jumpOff)}${comment}\n`;
  }
  return out;
}
