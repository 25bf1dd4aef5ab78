// Encoding tests for src/bpf/asm. Expected bytes are written by hand from the UAPI layout
// (include/uapi/linux/bpf.h, struct bpf_insn), one slot per string:
//   'op  regs off  imm'   regs = src << 4 | dst; off s16 LE; imm s32 LE.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';

import type { Insn, Reg } from '../../src/bpf/asm/index.ts';
import {
  AsmError,
  FP,
  Helper,
  R0,
  R1,
  R10,
  R2,
  R3,
  R4,
  R5,
  R6,
  R7,
  R8,
  R9,
  alu32,
  alu64,
  assemble,
  call,
  decode,
  end,
  exit,
  fieldsOf,
  jmp,
  jmp32,
  label,
  ld,
  ldx,
  makeInsn,
  st,
  stx,
} from '../../src/bpf/asm/index.ts';

/** '07 04 0000 2a000000' → bytes */
const bytes = (...slots: string[]): Uint8Array => Uint8Array.from(Buffer.from(slots.join('').replace(/\s+/g, ''), 'hex'));
/** bytes → one 'op regs off imm' string per slot, for readable diffs */
const slotsOf = (b: Uint8Array): string[] => {
  const hex = Buffer.from(b).toString('hex');
  const out: string[] = [];
  for (let i = 0; i < hex.length; i += 16) {
    const s = hex.slice(i, i + 16);
    out.push(`${s.slice(0, 2)} ${s.slice(2, 4)} ${s.slice(4, 8)} ${s.slice(8)}`);
  }
  return out;
};

const EXIT = '95 00 0000 00000000';

describe('encoding: one builder, exact bytes', () => {
  const table: [string, Insn, ...string[]][] = [
    // ALU64 (class 0x07): imm op = code|0x07, reg op = code|0x0f
    ['alu64.add.imm', alu64.add.imm(R4, 42), '07 04 0000 2a000000'],
    ['alu64.add.reg', alu64.add.reg(R4, R3), '0f 34 0000 00000000'],
    ['alu64.sub.imm', alu64.sub.imm(R1, 1), '17 01 0000 01000000'],
    ['alu64.sub.reg', alu64.sub.reg(R1, R2), '1f 21 0000 00000000'],
    ['alu64.mul.imm', alu64.mul.imm(R2, 3), '27 02 0000 03000000'],
    ['alu64.mul.reg', alu64.mul.reg(R2, R9), '2f 92 0000 00000000'],
    ['alu64.div.imm', alu64.div.imm(R3, 10), '37 03 0000 0a000000'],
    ['alu64.div.reg', alu64.div.reg(R3, R4), '3f 43 0000 00000000'],
    ['alu64.or.imm', alu64.or.imm(R5, 0x80), '47 05 0000 80000000'],
    ['alu64.or.reg', alu64.or.reg(R5, R6), '4f 65 0000 00000000'],
    ['alu64.and.imm', alu64.and.imm(R6, 0xff), '57 06 0000 ff000000'],
    ['alu64.and.reg', alu64.and.reg(R6, R7), '5f 76 0000 00000000'],
    ['alu64.lsh.imm', alu64.lsh.imm(R7, 8), '67 07 0000 08000000'],
    ['alu64.lsh.reg', alu64.lsh.reg(R7, R8), '6f 87 0000 00000000'],
    ['alu64.rsh.imm', alu64.rsh.imm(R8, 4), '77 08 0000 04000000'],
    ['alu64.rsh.reg', alu64.rsh.reg(R8, R9), '7f 98 0000 00000000'],
    ['alu64.neg', alu64.neg(R9), '87 09 0000 00000000'],
    ['alu64.mod.imm', alu64.mod.imm(R0, 7), '97 00 0000 07000000'],
    ['alu64.mod.reg', alu64.mod.reg(R0, R1), '9f 10 0000 00000000'],
    ['alu64.xor.imm', alu64.xor.imm(R1, -1), 'a7 01 0000 ffffffff'],
    ['alu64.xor.reg', alu64.xor.reg(R1, R1), 'af 11 0000 00000000'],
    ['alu64.mov.imm', alu64.mov.imm(R0, 2), 'b7 00 0000 02000000'],
    ['alu64.mov.reg', alu64.mov.reg(R6, R1), 'bf 16 0000 00000000'],
    ['alu64.mov.reg from fp', alu64.mov.reg(R2, FP), 'bf a2 0000 00000000'],
    ['alu64.arsh.imm', alu64.arsh.imm(R2, 63), 'c7 02 0000 3f000000'],
    ['alu64.arsh.reg', alu64.arsh.reg(R2, R3), 'cf 32 0000 00000000'],
    // ALU (class 0x04): imm op = code|0x04, reg op = code|0x0c
    ['alu32.add.imm', alu32.add.imm(R4, 1), '04 04 0000 01000000'],
    ['alu32.add.reg', alu32.add.reg(R4, R3), '0c 34 0000 00000000'],
    ['alu32.sub.imm', alu32.sub.imm(R1, 2), '14 01 0000 02000000'],
    ['alu32.sub.reg', alu32.sub.reg(R1, R2), '1c 21 0000 00000000'],
    ['alu32.mul.imm', alu32.mul.imm(R1, 4), '24 01 0000 04000000'],
    ['alu32.mul.reg', alu32.mul.reg(R1, R2), '2c 21 0000 00000000'],
    ['alu32.div.imm', alu32.div.imm(R1, 5), '34 01 0000 05000000'],
    ['alu32.div.reg', alu32.div.reg(R1, R2), '3c 21 0000 00000000'],
    ['alu32.or.imm', alu32.or.imm(R1, 6), '44 01 0000 06000000'],
    ['alu32.or.reg', alu32.or.reg(R1, R2), '4c 21 0000 00000000'],
    ['alu32.and.imm', alu32.and.imm(R1, 0x3fff), '54 01 0000 ff3f0000'],
    ['alu32.and.reg', alu32.and.reg(R1, R2), '5c 21 0000 00000000'],
    ['alu32.lsh.imm', alu32.lsh.imm(R1, 2), '64 01 0000 02000000'],
    ['alu32.lsh.reg', alu32.lsh.reg(R1, R2), '6c 21 0000 00000000'],
    ['alu32.rsh.imm', alu32.rsh.imm(R1, 4), '74 01 0000 04000000'],
    ['alu32.rsh.reg', alu32.rsh.reg(R1, R2), '7c 21 0000 00000000'],
    ['alu32.neg', alu32.neg(R3), '84 03 0000 00000000'],
    ['alu32.mod.imm', alu32.mod.imm(R1, 9), '94 01 0000 09000000'],
    ['alu32.mod.reg', alu32.mod.reg(R1, R2), '9c 21 0000 00000000'],
    ['alu32.xor.imm', alu32.xor.imm(R1, 1), 'a4 01 0000 01000000'],
    ['alu32.xor.reg', alu32.xor.reg(R1, R2), 'ac 21 0000 00000000'],
    ['alu32.mov.imm', alu32.mov.imm(R0, 1), 'b4 00 0000 01000000'],
    ['alu32.mov.reg', alu32.mov.reg(R0, R9), 'bc 90 0000 00000000'],
    ['alu32.arsh.imm', alu32.arsh.imm(R1, 31), 'c4 01 0000 1f000000'],
    ['alu32.arsh.reg', alu32.arsh.reg(R1, R2), 'cc 21 0000 00000000'],
    // unsigned 32-bit immediates wrap to the int32 with the same bits
    ['imm 0xffffffff wraps to -1', alu32.mov.imm(R0, 0xffffffff), 'b4 00 0000 ffffffff'],
    ['imm 0x80000000 wraps to int32 min', alu32.mov.imm(R0, 0x80000000), 'b4 00 0000 00000080'],
    ['imm int32 min', alu64.mov.imm(R0, -0x80000000), 'b7 00 0000 00000080'],
    ['imm int32 max', alu64.mov.imm(R0, 0x7fffffff), 'b7 00 0000 ffffff7f'],
    // BPF_END (class ALU): TO_LE 0xd4, TO_BE 0xdc; imm = width
    ['end.le 16', end.le(R2, 16), 'd4 02 0000 10000000'],
    ['end.le 64', end.le(R5, 64), 'd4 05 0000 40000000'],
    ['end.be 16', end.be(R2, 16), 'dc 02 0000 10000000'],
    ['end.be 32', end.be(R3, 32), 'dc 03 0000 20000000'],
    ['end.be 64', end.be(R4, 64), 'dc 04 0000 40000000'],
    // memory: LDX|MEM 0x61, ST|MEM 0x62, STX|MEM 0x63; sizes W 0x00, H 0x08, B 0x10, DW 0x18
    ['ldx.b', ldx.b(R0, R1, 0), '71 10 0000 00000000'],
    ['ldx.h', ldx.h(R2, R7, 12), '69 72 0c00 00000000'],
    ['ldx.w', ldx.w(R3, R1, 4), '61 13 0400 00000000'],
    ['ldx.dw negative off', ldx.dw(R4, R10, -8), '79 a4 f8ff 00000000'],
    ['stx.b', stx.b(R10, -1, R1), '73 1a ffff 00000000'],
    ['stx.h', stx.h(R6, 2, R2), '6b 26 0200 00000000'],
    ['stx.w', stx.w(R10, -4, R1), '63 1a fcff 00000000'],
    ['stx.dw', stx.dw(R10, -16, R9), '7b 9a f0ff 00000000'],
    ['st.b', st.b(R10, -1, 0x7f), '72 0a ffff 7f000000'],
    ['st.h', st.h(R1, 6, 0x86dd), '6a 01 0600 dd860000'],
    ['st.w', st.w(R10, -4, 0), '62 0a fcff 00000000'],
    ['st.dw', st.dw(R10, -8, -2), '7a 0a f8ff feffffff'],
    ['off int16 max', ldx.b(R0, R1, 32767), '71 10 ff7f 00000000'],
    ['off int16 min', ldx.b(R0, R1, -32768), '71 10 0080 00000000'],
    // call/exit: JMP|CALL 0x85, JMP|EXIT 0x95
    ['call redirect_map', call(Helper.redirect_map), '85 00 0000 33000000'],
    ['call map_lookup_elem', call(Helper.map_lookup_elem), '85 00 0000 01000000'],
    ['exit', exit(), EXIT],
    // lddw (LD|IMM|DW 0x18): two slots, the second has op 0 and the high 32 bits in imm
    ['ld.imm64', ld.imm64(R1, 0x1122334455667788n), '18 01 0000 88776655', '00 00 0000 44332211'],
    ['ld.imm64 small number', ld.imm64(R3, 42), '18 03 0000 2a000000', '00 00 0000 00000000'],
    ['ld.imm64 -1', ld.imm64(R2, -1), '18 02 0000 ffffffff', '00 00 0000 ffffffff'],
    ['ld.imm64 u64 max', ld.imm64(R0, 0xffffffffffffffffn), '18 00 0000 ffffffff', '00 00 0000 ffffffff'],
    ['ld.imm64 int64 min', ld.imm64(R0, -(1n << 63n)), '18 00 0000 00000000', '00 00 0000 00000080'],
    ['ld.map: src = BPF_PSEUDO_MAP_FD, imm = fd', ld.map(R1, 'ports'), '18 11 0000 07000000', '00 00 0000 00000000'],
    ['ld.map big fd', ld.map(R2, 'big'), '18 12 0000 45230100', '00 00 0000 00000000'],
  ];
  for (const [name, insn, ...expected] of table) {
    it(name, () => {
      const out = assemble([insn], { maps: { ports: 7, big: 0x12345 } });
      assert.deepEqual(slotsOf(out), slotsOf(bytes(...expected)));
    });
  }
});

describe('encoding: jumps (target two slots ahead, so off = +1)', () => {
  const table: [string, Insn, string][] = [
    ['jmp.ja', jmp.ja('t'), '05 00 0100 00000000'],
    // JMP (class 0x05): imm op = code|0x05, reg op = code|0x0d
    ['jmp.jeq.imm', jmp.jeq.imm(R1, 5, 't'), '15 01 0100 05000000'],
    ['jmp.jeq.reg', jmp.jeq.reg(R1, R2, 't'), '1d 21 0100 00000000'],
    ['jmp.jgt.imm', jmp.jgt.imm(R2, 3, 't'), '25 02 0100 03000000'],
    ['jmp.jgt.reg', jmp.jgt.reg(R4, R3, 't'), '2d 34 0100 00000000'],
    ['jmp.jge.imm', jmp.jge.imm(R2, 3, 't'), '35 02 0100 03000000'],
    ['jmp.jge.reg', jmp.jge.reg(R2, R3, 't'), '3d 32 0100 00000000'],
    ['jmp.jset.imm', jmp.jset.imm(R2, 0x10, 't'), '45 02 0100 10000000'],
    ['jmp.jset.reg', jmp.jset.reg(R2, R3, 't'), '4d 32 0100 00000000'],
    ['jmp.jne.imm', jmp.jne.imm(R0, 0, 't'), '55 00 0100 00000000'],
    ['jmp.jne.reg', jmp.jne.reg(R0, R1, 't'), '5d 10 0100 00000000'],
    ['jmp.jsgt.imm', jmp.jsgt.imm(R3, -1, 't'), '65 03 0100 ffffffff'],
    ['jmp.jsgt.reg', jmp.jsgt.reg(R3, R4, 't'), '6d 43 0100 00000000'],
    ['jmp.jsge.imm', jmp.jsge.imm(R3, 0, 't'), '75 03 0100 00000000'],
    ['jmp.jsge.reg', jmp.jsge.reg(R3, R4, 't'), '7d 43 0100 00000000'],
    ['jmp.jlt.imm', jmp.jlt.imm(R5, 14, 't'), 'a5 05 0100 0e000000'],
    ['jmp.jlt.reg', jmp.jlt.reg(R5, R6, 't'), 'ad 65 0100 00000000'],
    ['jmp.jle.imm', jmp.jle.imm(R5, 14, 't'), 'b5 05 0100 0e000000'],
    ['jmp.jle.reg', jmp.jle.reg(R5, R6, 't'), 'bd 65 0100 00000000'],
    ['jmp.jslt.imm', jmp.jslt.imm(R7, -2, 't'), 'c5 07 0100 feffffff'],
    ['jmp.jslt.reg', jmp.jslt.reg(R7, R8, 't'), 'cd 87 0100 00000000'],
    ['jmp.jsle.imm', jmp.jsle.imm(R7, 2, 't'), 'd5 07 0100 02000000'],
    ['jmp.jsle.reg', jmp.jsle.reg(R7, R8, 't'), 'dd 87 0100 00000000'],
    // JMP32 (class 0x06): imm op = code|0x06, reg op = code|0x0e
    ['jmp32.jeq.imm', jmp32.jeq.imm(R1, 5, 't'), '16 01 0100 05000000'],
    ['jmp32.jeq.reg', jmp32.jeq.reg(R1, R2, 't'), '1e 21 0100 00000000'],
    ['jmp32.jgt.imm', jmp32.jgt.imm(R4, 3, 't'), '26 04 0100 03000000'],
    ['jmp32.jgt.reg', jmp32.jgt.reg(R4, R3, 't'), '2e 34 0100 00000000'],
    ['jmp32.jge.imm', jmp32.jge.imm(R4, 3, 't'), '36 04 0100 03000000'],
    ['jmp32.jge.reg', jmp32.jge.reg(R4, R3, 't'), '3e 34 0100 00000000'],
    ['jmp32.jset.imm', jmp32.jset.imm(R1, 0x3fff, 't'), '46 01 0100 ff3f0000'],
    ['jmp32.jset.reg', jmp32.jset.reg(R1, R2, 't'), '4e 21 0100 00000000'],
    ['jmp32.jne.imm', jmp32.jne.imm(R1, 0x86dd, 't'), '56 01 0100 dd860000'],
    ['jmp32.jne.reg', jmp32.jne.reg(R1, R2, 't'), '5e 21 0100 00000000'],
    ['jmp32.jsgt.imm', jmp32.jsgt.imm(R1, 1, 't'), '66 01 0100 01000000'],
    ['jmp32.jsgt.reg', jmp32.jsgt.reg(R1, R2, 't'), '6e 21 0100 00000000'],
    ['jmp32.jsge.imm', jmp32.jsge.imm(R1, 1, 't'), '76 01 0100 01000000'],
    ['jmp32.jsge.reg', jmp32.jsge.reg(R1, R2, 't'), '7e 21 0100 00000000'],
    ['jmp32.jlt.imm', jmp32.jlt.imm(R1, 1, 't'), 'a6 01 0100 01000000'],
    ['jmp32.jlt.reg', jmp32.jlt.reg(R1, R2, 't'), 'ae 21 0100 00000000'],
    ['jmp32.jle.imm', jmp32.jle.imm(R1, 1, 't'), 'b6 01 0100 01000000'],
    ['jmp32.jle.reg', jmp32.jle.reg(R1, R2, 't'), 'be 21 0100 00000000'],
    ['jmp32.jslt.imm', jmp32.jslt.imm(R1, 1, 't'), 'c6 01 0100 01000000'],
    ['jmp32.jslt.reg', jmp32.jslt.reg(R1, R2, 't'), 'ce 21 0100 00000000'],
    ['jmp32.jsle.imm', jmp32.jsle.imm(R1, 1, 't'), 'd6 01 0100 01000000'],
    ['jmp32.jsle.reg', jmp32.jsle.reg(R1, R2, 't'), 'de 21 0100 00000000'],
    ['jmp imm 0xffffffff wraps', jmp32.jeq.imm(R1, 0xffffffff, 't'), '16 01 0100 ffffffff'],
  ];
  for (const [name, insn, expected] of table) {
    it(name, () => {
      const out = assemble([insn, exit(), exit().sym('t')]);
      assert.deepEqual(slotsOf(out), slotsOf(bytes(expected, EXIT, EXIT)));
    });
  }

  it('every conditional op of jmp and jmp32 is covered above', () => {
    const ops = ['jeq', 'jgt', 'jge', 'jlt', 'jle', 'jset', 'jne', 'jsgt', 'jsge', 'jslt', 'jsle'];
    assert.deepEqual(Object.keys(jmp).sort(), [...ops, 'ja'].sort());
    assert.deepEqual(Object.keys(jmp32).sort(), [...ops].sort());
    const aluOps = ['add', 'sub', 'mul', 'div', 'or', 'and', 'lsh', 'rsh', 'mod', 'xor', 'mov', 'arsh', 'neg'];
    assert.deepEqual(Object.keys(alu64).sort(), [...aluOps].sort());
    assert.deepEqual(Object.keys(alu32).sort(), [...aluOps].sort());
  });
});

/** The s16 offset field of the instruction at `slot`. */
const offAt = (b: Uint8Array, slot: number): number => new DataView(b.buffer, b.byteOffset).getInt16(slot * 8 + 2, true);

describe('labels', () => {
  it('forward across an lddw counts it as two slots', () => {
    // slots: 0 ja, 1-2 lddw, 3 exit → off = 3 - (0 + 1) = 2
    const out = assemble([jmp.ja('end'), ld.imm64(R0, 1), exit().sym('end')]);
    assert.equal(out.length, 4 * 8);
    assert.equal(offAt(out, 0), 2);
  });

  it('backward across an lddw', () => {
    // slots: 0 mov (top), 1-2 lddw, 3 jne → off = 0 - (3 + 1) = -4
    const out = assemble([alu64.mov.imm(R0, 0).sym('top'), ld.imm64(R1, 5), jmp.jne.imm(R0, 0, 'top'), exit()]);
    assert.deepEqual(slotsOf(out).slice(3, 4), ['55 00 fcff 00000000']);
  });

  it('a label on an lddw names its first slot', () => {
    // slots: 0 ja, 1 exit, 2-3 lddw (x), 4 jeq → back to 2: off = 2 - 5 = -3
    const out = assemble([jmp.ja('x'), exit(), ld.map(R1, 'm').sym('x'), jmp.jeq.imm(R1, 0, 'x'), exit()], { maps: { m: 3 } });
    assert.equal(offAt(out, 0), 1);
    assert.equal(offAt(out, 4), -3);
  });

  it('to self is -1, to the next instruction is 0', () => {
    const out = assemble([jmp.ja('next'), label('next'), jmp.ja('self').sym('self')]);
    assert.equal(offAt(out, 0), 0);
    assert.equal(offAt(out, 1), -1);
  });

  it('label markers give their name to the next instruction and take no slot', () => {
    const prog = [jmp.jeq.imm(R1, 0, 'a'), jmp.ja('b'), label('a'), label('b'), ld.imm64(R2, 1), exit().sym('c'), jmp.ja('c')];
    const out = assemble(prog);
    assert.equal(out.length, 6 * 8);
    assert.equal(offAt(out, 0), 1);
    assert.equal(offAt(out, 1), 0);
    assert.equal(offAt(out, 5), -2);
  });

  it('the largest forward and backward jumps fit; one more does not', () => {
    const fill = (n: number): Insn[] => Array.from({ length: n }, () => alu64.mov.imm(R0, 0));
    assert.equal(offAt(assemble([jmp.ja('far'), ...fill(32767), exit().sym('far')]), 0), 32767);
    assert.equal(offAt(assemble([exit().sym('top'), ...fill(32766), jmp.ja('top')]), 32767), -32768);
    assert.throws(
      () => assemble([jmp.ja('far'), ...fill(32768), exit().sym('far')]),
      (e: unknown) => e instanceof AsmError && e.reason === 'jump-range' && e.index === 0,
    );
    assert.throws(
      () => assemble([exit().sym('top'), ...fill(32767), jmp.ja('top')]),
      (e: unknown) => e instanceof AsmError && e.reason === 'jump-range' && e.index === 32768 && /spans -32769 slots/.test(e.message),
    );
  });

  it('a jump keeps the numeric offset it was given when it has no label', () => {
    const raw = makeInsn({ ...fieldsOf(jmp.ja('unused')), target: undefined, off: -7 });
    assert.deepEqual(slotsOf(assemble([raw])), ['05 00 f9ff 00000000']);
  });
});

describe('AsmError', () => {
  const bad = (n: number) => n as Reg; // out-of-range registers, as untyped callers could pass
  const table: { name: string; prog: Insn[]; maps?: Record<string, number>; reason: string; index: number; message: RegExp }[] = [
    {
      name: 'unknown label',
      prog: [exit(), jmp.ja('nowhere')],
      reason: 'unknown-label',
      index: 1,
      message: /^bpf asm: insn 1 `goto <nowhere>`: unknown label "nowhere"$/,
    },
    {
      name: 'unknown label (conditional)',
      prog: [jmp32.jgt.imm(R4, 3, 'nope'), exit()],
      reason: 'unknown-label',
      index: 0,
      message: /insn 0 `if w4 > 3 goto <nope>`/,
    },
    {
      name: 'duplicate label',
      prog: [exit().sym('a'), exit().sym('a')],
      reason: 'duplicate-label',
      index: 1,
      message: /^bpf asm: insn 1 `exit`: duplicate label "a"$/,
    },
    {
      name: 'duplicate label via marker',
      prog: [label('a'), exit().sym('a')],
      reason: 'duplicate-label',
      index: 1,
      message: /duplicate label "a"/,
    },
    {
      name: 'trailing label',
      prog: [exit(), label('end')],
      reason: 'trailing-label',
      index: 1,
      message: /^bpf asm: insn 1 `end:`: label "end" has no instruction after it$/,
    },
    {
      name: 'trailing labels (first is named)',
      prog: [exit(), label('x'), label('y')],
      reason: 'trailing-label',
      index: 1,
      message: /label "x"/,
    },
    { name: 'label only', prog: [label('x')], reason: 'trailing-label', index: 0, message: /label "x"/ },
    {
      name: 'imm above u32',
      prog: [alu64.add.imm(R1, 2 ** 32)],
      reason: 'imm-range',
      index: 0,
      message: /^bpf asm: insn 0 `r1 \+= 4294967296`: immediate 4294967296 does not fit in 32 bits$/,
    },
    {
      name: 'imm below int32',
      prog: [exit(), alu32.mov.imm(R1, -(2 ** 31) - 1)],
      reason: 'imm-range',
      index: 1,
      message: /immediate -2147483649/,
    },
    { name: 'imm not an integer', prog: [alu64.mov.imm(R1, 1.5)], reason: 'imm-range', index: 0, message: /immediate 1\.5/ },
    { name: 'imm NaN', prog: [st.w(R10, -4, Number.NaN)], reason: 'imm-range', index: 0, message: /immediate NaN/ },
    {
      name: 'jump imm out of range',
      prog: [jmp.jeq.imm(R1, 2 ** 33, 't'), exit().sym('t')],
      reason: 'imm-range',
      index: 0,
      message: /immediate 8589934592/,
    },
    { name: 'call imm out of range', prog: [call(-(2 ** 40))], reason: 'imm-range', index: 0, message: /immediate/ },
    { name: 'imm64 above u64', prog: [ld.imm64(R1, 1n << 64n)], reason: 'imm-range', index: 0, message: /does not fit in 64 bits/ },
    {
      name: 'imm64 below int64',
      prog: [ld.imm64(R1, -(1n << 63n) - 1n)],
      reason: 'imm-range',
      index: 0,
      message: /does not fit in 64 bits/,
    },
    {
      name: 'offset above int16',
      prog: [ldx.w(R1, R2, 32768)],
      reason: 'offset-range',
      index: 0,
      message: /^bpf asm: insn 0 `r1 = \*\(u32 \*\)\(r2 \+ 32768\)`: offset 32768 does not fit in 16 bits$/,
    },
    { name: 'offset below int16', prog: [stx.b(R10, -32769, R1)], reason: 'offset-range', index: 0, message: /offset -32769/ },
    { name: 'offset not an integer', prog: [st.h(R1, 0.5, 0)], reason: 'offset-range', index: 0, message: /offset 0\.5/ },
    {
      name: 'unknown map',
      prog: [ld.map(R1, 'nope')],
      maps: { ports: 3 },
      reason: 'unknown-map',
      index: 0,
      message: /^bpf asm: insn 0 `r1 = map\[nope\] ll`: unknown map "nope"$/,
    },
    {
      name: 'unknown map without options',
      prog: [exit(), ld.map(R1, 'ports')],
      reason: 'unknown-map',
      index: 1,
      message: /unknown map "ports"/,
    },
    {
      name: 'map name from Object.prototype',
      prog: [ld.map(R1, 'toString')],
      maps: {},
      reason: 'unknown-map',
      index: 0,
      message: /"toString"/,
    },
    { name: 'negative map fd', prog: [ld.map(R1, 'ports')], maps: { ports: -1 }, reason: 'bad-map-fd', index: 0, message: /invalid fd -1/ },
    {
      name: 'dst register 11',
      prog: [alu64.mov.reg(bad(11), R1)],
      reason: 'bad-register',
      index: 0,
      message: /dst register 11 out of range/,
    },
    { name: 'dst register -1', prog: [exit(), alu64.mov.imm(bad(-1), 0)], reason: 'bad-register', index: 1, message: /dst register -1/ },
    { name: 'src register 12', prog: [ldx.w(R1, bad(12), 0)], reason: 'bad-register', index: 0, message: /src register 12/ },
    {
      name: 'label on a non-jump',
      prog: [makeInsn({ ...fieldsOf(exit()), target: 'x' }), exit().sym('x')],
      reason: 'not-a-jump',
      index: 0,
      message: /label target "x" on an instruction that does not jump/,
    },
    {
      name: 'opcode not a byte',
      prog: [makeInsn({ op: 0x100, dst: R0, src: 0, off: 0, imm: 0 })],
      reason: 'bad-opcode',
      index: 0,
      message: /opcode 256/,
    },
  ];
  for (const { name, prog, maps, reason, index, message } of table) {
    it(name, () => {
      assert.throws(
        () => assemble(prog, maps === undefined ? undefined : { maps }),
        (e: unknown) => {
          assert.ok(e instanceof AsmError, `expected AsmError, got ${String(e)}`);
          assert.equal(e.code, 'ERR_BPF_ASM');
          assert.equal(e.name, 'AsmError');
          assert.equal(e.reason, reason);
          assert.equal(e.index, index);
          assert.equal(e.insn, prog[index]);
          assert.match(e.message, message);
          return true;
        },
      );
    });
  }

  it('ld.imm64 refuses numbers that are not safe integers (before assemble)', () => {
    for (const v of [2 ** 53, 0.5, Number.NaN]) {
      assert.throws(
        () => ld.imm64(R1, v),
        (e: unknown) => e instanceof AsmError && e.reason === 'imm-range' && e.index === -1 && /pass a bigint/.test(e.message),
      );
    }
  });
});

describe('decode', () => {
  it('reads fields, signed off/imm, and lddw as one instruction', () => {
    const insns = decode(
      bytes(
        '69 72 0c00 00000000',
        '65 03 fbff ffffffff',
        '18 11 0000 07000000',
        '00 00 0000 00000000',
        '18 02 0000 ffffffff',
        '00 00 0000 00000080',
        EXIT,
      ),
    );
    assert.deepEqual(insns.map(fieldsOf), [
      { op: 0x69, dst: 2, src: 7, off: 12, imm: 0 },
      { op: 0x65, dst: 3, src: 0, off: -5, imm: -1 },
      { op: 0x18, dst: 1, src: 1, off: 0, imm: 7, imm64: 7n },
      { op: 0x18, dst: 2, src: 0, off: 0, imm: -1, imm64: 0x80000000ffffffffn },
      { op: 0x95, dst: 0, src: 0, off: 0, imm: 0 },
    ]);
  });

  it('decodes a subarray at any byte offset', () => {
    const buf = new Uint8Array(24);
    buf.set(bytes('b7 00 0000 02000000', EXIT), 8);
    assert.deepEqual(decode(buf.subarray(8)).map(fieldsOf), [
      { op: 0xb7, dst: 0, src: 0, off: 0, imm: 2 },
      { op: 0x95, dst: 0, src: 0, off: 0, imm: 0 },
    ]);
  });

  const table: [string, Uint8Array, number, RegExp][] = [
    ['length not a multiple of 8', bytes(EXIT, '95 00 0000 000000'), 1, /15 bytes is not a whole number/],
    ['lddw without its second slot', bytes(EXIT, '18 01 0000 01000000'), 1, /missing its second slot/],
    ['lddw with a non-zero opcode in slot 2', bytes('18 01 0000 01000000', EXIT), 1, /malformed second slot/],
    ['lddw with registers in slot 2', bytes('18 01 0000 01000000', '00 10 0000 00000000'), 1, /malformed second slot/],
    ['lddw with an offset in slot 2', bytes('18 01 0000 01000000', '00 00 0100 00000000'), 1, /malformed second slot/],
  ];
  for (const [name, input, index, message] of table) {
    it(`rejects ${name}`, () => {
      assert.throws(
        () => decode(input),
        (e: unknown) => e instanceof AsmError && e.reason === 'bad-bytecode' && e.index === index && message.test(e.message),
      );
    });
  }
});

describe('round trip', () => {
  const program = (): Insn[] => [
    ldx.w(R2, R1, 0),
    ldx.w(R3, R1, 4),
    alu64.mov.reg(R4, R2),
    alu64.add.imm(R4, 14),
    jmp.jgt.reg(R4, R3, 'pass'),
    ldx.h(R5, R2, 12),
    end.be(R5, 16),
    jmp32.jne.imm(R5, 0x0800, 'pass'),
    ld.map(R1, 'ports'),
    stx.h(FP, -2, R5),
    alu64.mov.reg(R2, FP),
    alu64.add.imm(R2, -2),
    call(Helper.map_lookup_elem),
    jmp.jeq.imm(R0, 0, 'pass'),
    ld.imm64(R6, 0xdeadbeefcafef00dn),
    st.dw(FP, -16, -1),
    alu32.xor.imm(R6, 0xffffffff),
    ld.map(R1, 'xsks'),
    ldx.w(R2, R1, 16),
    alu64.mov.imm(R3, 2),
    call(Helper.redirect_map),
    exit(),
    alu64.mov.imm(R0, 2).sym('pass'),
    exit(),
  ];

  it('assemble → decode → assemble is the identity', () => {
    const maps = { ports: 4, xsks: 5 };
    const first = assemble(program(), { maps });
    const again = assemble(decode(first));
    assert.deepEqual(again, first);
    assert.deepEqual(assemble(decode(again)), first);
  });

  it('decode → assemble is the identity on arbitrary well-formed bytecode', () => {
    // A fixed-seed xorshift makes failures reproducible.
    let seed = 0x2545f491;
    const next = (): number => {
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      return seed >>> 0;
    };
    for (let round = 0; round < 200; round++) {
      const slots: string[] = [];
      const n = 1 + (next() % 20);
      for (let i = 0; i < n; i++) {
        let opcode = next() & 0xff;
        if (opcode === 0x18 && i === n - 1) opcode = 0x95;
        const regs = ((next() % 11) << 4) | (next() % 11);
        const rest = (next() >>> 0).toString(16).padStart(8, '0') + (next() >>> 0).toString(16).padStart(8, '0');
        const slot = opcode.toString(16).padStart(2, '0') + regs.toString(16).padStart(2, '0') + rest.slice(0, 12);
        slots.push(slot);
        if (opcode === 0x18) {
          slots.push('000000000' + rest.slice(9, 16));
          i++;
        }
      }
      const input = bytes(...slots);
      assert.deepEqual(assemble(decode(input)), input, `round ${round}: ${slots.join(' ')}`);
    }
  });
});

describe('Insn values', () => {
  it('sym() replaces an earlier label (use label() markers for a second name)', () => {
    assert.equal(exit().sym('a').sym('b').label, 'b');
  });

  it('sym() and note() return copies; the original is unchanged and frozen', () => {
    const base = exit();
    const named = base.sym('out');
    const noted = named.note('why');
    assert.equal(base.label, undefined);
    assert.equal(named.label, 'out');
    assert.equal(noted.label, 'out');
    assert.equal(noted.comment, 'why');
    assert.equal(named.comment, undefined);
    assert.ok(Object.isFrozen(base));
    assert.deepEqual(fieldsOf(noted), { op: 0x95, dst: 0, src: 0, off: 0, imm: 0, label: 'out', comment: 'why' });
  });

  it('builders record symbols for assemble to resolve', () => {
    assert.equal(jmp.jgt.reg(R4, R3, 'pass').target, 'pass');
    assert.equal(ld.map(R1, 'ports').mapRef, 'ports');
    assert.equal(ld.map(R1, 'ports').src, 1);
    assert.equal(ld.imm64(R1, -1).imm64, -1n);
  });

  it('comments and labels do not change the bytes', () => {
    const plain = assemble([alu64.mov.imm(R0, 1), exit()]);
    assert.deepEqual(assemble([alu64.mov.imm(R0, 1).note('one').sym('start'), exit().note('done')]), plain);
  });

  it('Helper ids match include/uapi/linux/bpf.h', () => {
    assert.equal(Helper.map_lookup_elem, 1);
    assert.equal(Helper.map_update_elem, 2);
    assert.equal(Helper.map_delete_elem, 3);
    assert.equal(Helper.ktime_get_ns, 5);
    assert.equal(Helper.trace_printk, 6);
    assert.equal(Helper.get_smp_processor_id, 8);
    assert.equal(Helper.redirect, 23);
    assert.equal(Helper.xdp_adjust_head, 44);
    assert.equal(Helper.redirect_map, 51);
    assert.equal(Helper.xdp_adjust_tail, 65);
  });
});
