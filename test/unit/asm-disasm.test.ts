// Disassembly of src/bpf/asm: golden text (the format golden files of whole programs rely on).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';

import {
  FP,
  Helper,
  R0,
  R1,
  R2,
  R3,
  R4,
  R5,
  R6,
  R7,
  alu32,
  alu64,
  assemble,
  call,
  decode,
  disasm,
  disasmBytes,
  end,
  exit,
  jmp,
  jmp32,
  label,
  ld,
  ldx,
  st,
  stx,
} from '../../src/bpf/asm/index.ts';

const bytes = (...slots: string[]): Uint8Array => Uint8Array.from(Buffer.from(slots.join('').replace(/\s+/g, ''), 'hex'));

const program = () => [
  ldx.w(R2, R1, 0).note('data'),
  ldx.w(R3, R1, 4).note('data_end'),
  alu64.mov.reg(R4, R2),
  alu64.add.imm(R4, 14),
  jmp.jgt.reg(R4, R3, 'pass').note('need the Ethernet header'),
  ldx.h(R5, R2, 12),
  end.be(R5, 16),
  jmp32.jne.imm(R5, 0x0800, 'pass'),
  alu64.and.imm(R5, 0x3fff),
  jmp.jset.imm(R5, 0x10, 'pass'),
  alu32.add.imm(R5, -1),
  alu64.neg(R5),
  alu32.arsh.reg(R5, R6),
  st.b(FP, -1, 0),
  stx.h(FP, -4, R5),
  ld.map(R1, 'ports'),
  alu64.mov.reg(R2, FP),
  alu64.add.imm(R2, -4),
  call(Helper.map_lookup_elem),
  jmp.jeq.imm(R0, 0, 'pass'),
  ld.imm64(R6, 0xdeadbeefn),
  jmp32.jsgt.reg(R6, R7, 'out'),
  ld.map(R1, 'xsks'),
  alu64.mov.imm(R3, 2),
  call(Helper.redirect_map),
  call(9999),
  jmp.ja('out'),
  alu64.mov.imm(R0, 2).sym('pass').note('XDP_PASS'),
  label('out'),
  exit(),
];

describe('disasm', () => {
  it('prints labels, slots (lddw takes two), map names, comments', () => {
    assert.equal(
      disasm(program()),
      `\
   0: r2 = *(u32 *)(r1 + 0) ; data
   1: r3 = *(u32 *)(r1 + 4) ; data_end
   2: r4 = r2
   3: r4 += 14
   4: if r4 > r3 goto +25 <pass> ; need the Ethernet header
   5: r5 = *(u16 *)(r2 + 12)
   6: r5 = be16 r5
   7: if w5 != 2048 goto +22 <pass>
   8: r5 &= 0x3fff
   9: if r5 & 0x10 goto +20 <pass>
  10: w5 += -1
  11: r5 = -r5
  12: w5 s>>= w6
  13: *(u8 *)(r10 - 1) = 0
  14: *(u16 *)(r10 - 4) = r5
  15: r1 = map[ports] ll
  17: r2 = r10
  18: r2 += -4
  19: call 1 (map_lookup_elem)
  20: if r0 == 0 goto +9 <pass>
  21: r6 = 0xdeadbeef ll
  23: if w6 s> w7 goto +7 <out>
  24: r1 = map[xsks] ll
  26: r3 = 2
  27: call 51 (redirect_map)
  28: call 9999
  29: goto +1 <out>
pass:
  30: r0 = 2 ; XDP_PASS
out:
  31: exit
`,
    );
  });

  it('disasmBytes shows what the kernel gets: numeric offsets, map fds', () => {
    const text = disasmBytes(assemble(program(), { maps: { ports: 4, xsks: 5 } }));
    const lines = text.split('\n');
    assert.equal(lines[4], '   4: if r4 > r3 goto +25');
    assert.equal(lines[15], '  15: r1 = map[fd:4] ll');
    assert.equal(lines[22], '  24: r1 = map[fd:5] ll');
    assert.equal(lines.at(-2), '  31: exit');
    assert.ok(!text.includes('<') && !text.includes(';'), 'no labels or comments in bytes');
  });

  it('the listing of source and of bytes agree line by line once labels, names and notes are stripped', () => {
    const strip = (s: string) =>
      s
        .split('\n')
        .filter((l) => !l.endsWith(':'))
        .map((l) =>
          l
            .replace(/ <\w+>/, '')
            .replace(/ ; .*/, '')
            .replace(/map\[\w+\]/, 'map[?]')
            .replace(/map\[fd:\d+\]/, 'map[?]'),
        );
    assert.deepEqual(strip(disasmBytes(assemble(program(), { maps: { ports: 4, xsks: 5 } }))), strip(disasm(program())));
  });

  it('unresolved labels print without an offset instead of throwing', () => {
    assert.equal(disasm([jmp.ja('nowhere'), exit()]), '   0: goto <nowhere>\n   1: exit\n');
  });

  it('a trailing label marker and multi-line comments stay one line each', () => {
    assert.equal(disasm([exit().note('a\n  b'), label('end').note('c')]), '   0: exit ; a b\nend: ; c\n');
  });

  it('empty program is empty text', () => {
    assert.equal(disasm([]), '');
  });

  const table: [string, string, string][] = [
    ['alu64 imm, negative', 'b7 01 0000 ffffffff', 'r1 = -1'],
    ['alu64 xor mask', 'a7 01 0000 ffffffff', 'r1 ^= -0x1'],
    ['alu32 mov reg', 'bc 21 0000 00000000', 'w1 = w2'],
    ['alu32 or imm', '44 01 0000 00010000', 'w1 |= 0x100'],
    ['lsh / rsh / mod / mul / div / sub', '67 01 0000 08000000', 'r1 <<= 8'],
    ['rsh reg', '7f 21 0000 00000000', 'r1 >>= r2'],
    ['mod imm', '97 01 0000 03000000', 'r1 %= 3'],
    ['signed div (off 1)', '3f 21 0100 00000000', 'r1 s/= r2'],
    ['signed mod (off 1)', '9c 21 0100 00000000', 'w1 s%= w2'],
    ['movsx (off 16)', 'bf 21 1000 00000000', 'r1 = (s16)r2'],
    ['le32', 'd4 03 0000 20000000', 'r3 = le32 r3'],
    ['be64', 'dc 03 0000 40000000', 'r3 = be64 r3'],
    ['bswap (ALU64 END)', 'd7 03 0000 20000000', 'r3 = bswap32 r3'],
    ['ldx dw from fp', '79 a4 f8ff 00000000', 'r4 = *(u64 *)(r10 - 8)'],
    ['ldx sign-extending', '91 21 0200 00000000', 'r1 = *(s8 *)(r2 + 2)'],
    ['st dw', '7a 0a f8ff feffffff', '*(u64 *)(r10 - 8) = -2'],
    ['stx b', '73 1a ffff 00000000', '*(u8 *)(r10 - 1) = r1'],
    ['atomic add', 'db 21 0000 00000000', 'lock *(u64 *)(r1 + 0) += r2'],
    ['atomic fetch-add (not named)', 'db 21 0000 01000000', '.insn op=0xdb dst=1 src=2 off=0 imm=1'],
    ['jmp backward', '05 00 fdff 00000000', 'goto -3'],
    ['jmp32 jle reg', 'be 21 0200 00000000', 'if w1 <= w2 goto +2'],
    ['jmp jsle imm', 'd5 01 0000 feffffff', 'if r1 s<= -2 goto +0'],
    ['jmp32 jset imm', '46 01 0100 ff3f0000', 'if w1 & 0x3fff goto +1'],
    ['gotol', '06 00 0000 10000000', 'gotol +16'],
    ['pseudo call', '85 10 0000 05000000', 'call 5 (src 1)'],
    ['unknown op', 'ff 00 0000 00000000', '.insn op=0xff dst=0 src=0 off=0 imm=0'],
    ['legacy ld abs', '28 00 0000 0c000000', '.insn op=0x28 dst=0 src=0 off=0 imm=12'],
  ];
  for (const [name, slot, text] of table) {
    it(`decoded: ${name}`, () => {
      assert.equal(disasmBytes(bytes(slot)), `   0: ${text}\n`);
    });
  }

  it('decoded lddw forms', () => {
    assert.equal(disasmBytes(bytes('18 02 0000 ffffffff', '00 00 0000 ffffffff')), '   0: r2 = 0xffffffffffffffff ll\n');
    assert.equal(disasmBytes(bytes('18 21 0000 07000000', '00 00 0000 08000000')), '   0: r1 = map_value[fd:7]+8 ll\n');
    assert.equal(disasmBytes(bytes('18 41 0000 07000000', '00 00 0000 00000000')), '   0: r1 = 0x7 ll (src 4)\n');
  });

  it('source immediates print as the int32 the kernel sees', () => {
    assert.equal(
      disasm([alu32.mov.imm(R0, 0xffffffff), alu64.and.imm(R1, 0xffffffff), ld.imm64(R1, -1)]),
      '   0: w0 = -1\n   1: r1 &= -0x1\n   2: r1 = 0xffffffffffffffff ll\n',
    );
  });

  it('decode of source-built immediates matches (round trip of the text)', () => {
    const src = [alu32.mov.imm(R0, 0xffffffff), jmp32.jeq.imm(R1, 0x80000000, 'x'), exit().sym('x')];
    const fromBytes = disasm(decode(assemble(src)));
    assert.equal(fromBytes, '   0: w0 = -1\n   1: if w1 == -2147483648 goto +0\n   2: exit\n');
  });
});
