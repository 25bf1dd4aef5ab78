/**
 * Encoder from Insn lists to eBPF bytecode (an array of struct bpf_insn,
 * include/uapi/linux/bpf.h), little-endian, 8 bytes per slot, lddw taking two slots.
 *
 * assemble() is where a program becomes concrete, so it is where everything is checked:
 * labels resolve to displacements (off = target_slot - (this_slot + 1)), map names to fds, and
 * every field must fit its encoding. Immediates accept [-2^31, 2^32 - 1]: values above int32 max
 * are wrapped to the int32 with the same 32 bits (0xffffffff → -1), because masks and 32-bit
 * constants are naturally written unsigned. Mind that 64-bit ALU and JMP sign-extend imm, so
 * `alu64.and.imm(r, 0xffffffff)` keeps all 64 bits; use alu32 or a register for a 32-bit mask.
 */

import type { Insn } from './insn.ts';
import { isJump, isLabelMarker } from './insn.ts';
import { AsmError } from './errors.ts';
import { layout } from './layout.ts';
import { BPF_LDDW, INSN_SIZE } from './opcodes.ts';

export interface AssembleOptions {
  /** Map name → file descriptor, for ld.map. */
  maps?: Record<string, number>;
}

const INT16_MIN = -0x8000;
const INT16_MAX = 0x7fff;
const INT32_MIN = -0x8000_0000;
const UINT32_MAX = 0xffff_ffff;
const INT64_MIN = -(1n << 63n);
const UINT64_MAX = (1n << 64n) - 1n;

const isInt16 = (n: number): boolean => Number.isInteger(n) && n >= INT16_MIN && n <= INT16_MAX;
const isReg = (n: number): boolean => Number.isInteger(n) && n >= 0 && n <= 10;

function write(view: DataView, slot: number, opcode: number, dst: number, src: number, off: number, imm: number): void {
  const at = slot * INSN_SIZE;
  view.setUint8(at, opcode);
  view.setUint8(at + 1, (src << 4) | dst); // dst in the low nibble, src in the high (little-endian bitfields)
  view.setInt16(at + 2, off, true);
  view.setInt32(at + 4, imm, true);
}

/** The imm of one instruction as the int32 to encode, or an AsmError. */
function checkImm(insn: Insn, index: number): number {
  const imm = insn.imm;
  if (!Number.isInteger(imm) || imm < INT32_MIN || imm > UINT32_MAX) {
    throw new AsmError('imm-range', `immediate ${imm} does not fit in 32 bits`, index, insn);
  }
  return imm | 0;
}

/** The 64-bit value of an lddw, unsigned. */
function lddwValue(insn: Insn, index: number, maps: Record<string, number>): bigint {
  if (insn.mapRef !== undefined) {
    if (!Object.hasOwn(maps, insn.mapRef)) {
      throw new AsmError('unknown-map', `unknown map "${insn.mapRef}"`, index, insn);
    }
    const fd = maps[insn.mapRef]!;
    if (!Number.isInteger(fd) || fd < 0 || fd > 0x7fff_ffff) {
      throw new AsmError('bad-map-fd', `map "${insn.mapRef}" has invalid fd ${fd}`, index, insn);
    }
    return BigInt(fd);
  }
  if (insn.imm64 === undefined) return BigInt(checkImm(insn, index) >>> 0); // a hand-made lddw: low half only
  if (typeof insn.imm64 !== 'bigint' || insn.imm64 < INT64_MIN || insn.imm64 > UINT64_MAX) {
    throw new AsmError('imm-range', `immediate ${insn.imm64} does not fit in 64 bits`, index, insn);
  }
  return BigInt.asUintN(64, insn.imm64);
}

/** Encode a program. Throws AsmError naming the first offending instruction. */
export function assemble(insns: readonly Insn[], opts: AssembleOptions = {}): Uint8Array {
  const maps = opts.maps ?? {};
  const { slots, total, labels } = layout(insns, (index, name) => {
    throw new AsmError('duplicate-label', `duplicate label "${name}"`, index, insns[index]);
  });
  const out = new Uint8Array(total * INSN_SIZE);
  const view = new DataView(out.buffer);

  for (let i = 0; i < insns.length; i++) {
    const insn = insns[i]!;
    const slot = slots[i]!;
    if (isLabelMarker(insn)) {
      if (insn.label === undefined) throw new AsmError('bad-opcode', 'label marker without a label', i, insn);
      if (slot === total) throw new AsmError('trailing-label', `label "${insn.label}" has no instruction after it`, i, insn);
      continue;
    }
    if (!Number.isInteger(insn.op) || insn.op < 0 || insn.op > 0xff) {
      throw new AsmError('bad-opcode', `opcode ${insn.op} is not a byte`, i, insn);
    }
    if (!isReg(insn.dst)) throw new AsmError('bad-register', `dst register ${insn.dst} out of range 0..10`, i, insn);
    if (!isReg(insn.src)) throw new AsmError('bad-register', `src register ${insn.src} out of range 0..10`, i, insn);

    let off = insn.off;
    if (insn.target !== undefined) {
      if (!isJump(insn.op)) throw new AsmError('not-a-jump', `label target "${insn.target}" on an instruction that does not jump`, i, insn);
      const to = labels.get(insn.target);
      if (to === undefined) throw new AsmError('unknown-label', `unknown label "${insn.target}"`, i, insn);
      off = to - (slot + 1);
      if (!isInt16(off))
        throw new AsmError('jump-range', `jump to "${insn.target}" spans ${off} slots, more than an s16 offset holds`, i, insn);
    } else if (!isInt16(off)) {
      throw new AsmError('offset-range', `offset ${off} does not fit in 16 bits`, i, insn);
    }

    if (insn.op === BPF_LDDW) {
      const value = lddwValue(insn, i, maps);
      const low = Number(BigInt.asIntN(32, value));
      const high = Number(BigInt.asIntN(32, value >> 32n));
      write(view, slot, insn.op, insn.dst, insn.src, off, low);
      write(view, slot + 1, 0, 0, 0, 0, high);
    } else {
      write(view, slot, insn.op, insn.dst, insn.src, off, checkImm(insn, i));
    }
  }
  return out;
}
