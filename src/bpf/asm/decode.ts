/**
 * Decoder from eBPF bytecode (an array of struct bpf_insn, include/uapi/linux/bpf.h; little-endian,
 * 8 bytes per slot, lddw taking two) back to Insn lists, for listings and round-trip tests.
 */

import type { Insn, Reg } from './insn.ts';
import { makeInsn } from './insn.ts';
import { AsmError } from './errors.ts';
import { disasm } from './disasm.ts';
import { BPF_LDDW, INSN_SIZE } from './opcodes.ts';

/**
 * Bytecode → instructions. Jumps keep their numeric offsets (there are no labels to recover);
 * an lddw becomes one Insn with imm64 (its src, e.g. BPF_PSEUDO_MAP_FD, is kept, and the fd is
 * the value). AsmError.index is a slot number here.
 */
export function decode(bytes: Uint8Array): Insn[] {
  if (bytes.length % INSN_SIZE !== 0) {
    throw new AsmError(
      'bad-bytecode',
      `${bytes.length} bytes is not a whole number of ${INSN_SIZE}-byte instructions`,
      Math.floor(bytes.length / INSN_SIZE),
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const slots = bytes.length / INSN_SIZE;
  const insns: Insn[] = [];
  for (let slot = 0; slot < slots; slot++) {
    const at = slot * INSN_SIZE;
    const opcode = view.getUint8(at);
    const regs = view.getUint8(at + 1);
    // Raw bytes may hold dst 11..15; the Insn keeps it (and assemble() would refuse it).
    const dst = (regs & 0x0f) as Reg;
    const src = regs >> 4;
    const off = view.getInt16(at + 2, true);
    const imm = view.getInt32(at + 4, true);
    if (opcode !== BPF_LDDW) {
      insns.push(makeInsn({ op: opcode, dst, src, off, imm }));
      continue;
    }
    if (slot + 1 >= slots) throw new AsmError('bad-bytecode', 'lddw is missing its second slot', slot);
    const next = at + INSN_SIZE;
    // The kernel rejects a second slot with anything but imm set; refusing it here keeps
    // decode → assemble an identity.
    if (view.getUint8(next) !== 0 || view.getUint8(next + 1) !== 0 || view.getInt16(next + 2, true) !== 0) {
      throw new AsmError('bad-bytecode', 'malformed second slot of lddw', slot + 1);
    }
    const high = view.getUint32(next + 4, true);
    const imm64 = (BigInt(high) << 32n) | BigInt(imm >>> 0);
    insns.push(makeInsn({ op: opcode, dst, src, off, imm, imm64 }));
    slot++;
  }
  return insns;
}

/** Listing of bytecode: decode() then disasm(). Jumps show numeric offsets only. */
export function disasmBytes(bytes: Uint8Array): string {
  return disasm(decode(bytes));
}
