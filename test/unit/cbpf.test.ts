/**
 * The classic BPF assembler, encoder, disassembler and interpreter (src/bpf/cbpf/).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cbpf, decode, disasm, encode, CbpfAsmError, SKF_AD_VLAN_TAG, SKF_AD_VLAN_TAG_PRESENT } from '../../src/bpf/cbpf/asm.ts';
import { CbpfVm, validate } from '../support/cbpf-interp.ts';

test('encodes instructions as struct sock_filter (tcpdump -dd values)', () => {
  // tcpdump -dd 'udp dst port 4789' style fragments, checked against the UAPI opcode values.
  const prog = cbpf()
    .ldh.abs(12) // { 0x28, 0, 0, 0x0000000c }
    .jeq.k(0x0800, null, 'drop') // { 0x15, 0, 4, 0x00000800 }
    .ldb.abs(23) // { 0x30, 0, 0, 0x00000017 }
    .ldx.msh(14) // { 0xb1, 0, 0, 0x0000000e }
    .ldh.ind(16) // { 0x48, 0, 0, 0x00000010 }
    .ret.k(0x40000) // { 0x06, 0, 0, 0x00040000 }
    .label('drop')
    .ret.k(0) // { 0x06, 0, 0, 0x00000000 }
    .assemble();
  const bytes = encode(prog);
  const want = [
    [0x28, 0, 0, 12],
    [0x15, 0, 4, 0x800],
    [0x30, 0, 0, 23],
    [0xb1, 0, 0, 14],
    [0x48, 0, 0, 16],
    [0x06, 0, 0, 0x40000],
    [0x06, 0, 0, 0],
  ];
  const dv = new DataView(bytes.buffer);
  want.forEach(([code, jt, jf, k], i) => {
    assert.deepEqual(
      [dv.getUint16(i * 8, true), bytes[i * 8 + 2], bytes[i * 8 + 3], dv.getUint32(i * 8 + 4, true)],
      [code, jt, jf, k],
      `insn ${i}`,
    );
  });
  assert.equal(disasm(decode(bytes)), disasm(prog));
  assert.equal(
    disasm(prog),
    [
      '0: ldh [12]',
      '1: jeq #0x800 jt 2 jf 6',
      '2: ldb [23]',
      '3: ldx 4*([14]&0xf)',
      '4: ldh [x+16]',
      '5: ret #0x40000',
      '6: ret #0x0',
      '',
    ].join('\n'),
  );
});

test('assembler errors name the instruction', () => {
  assert.throws(() => cbpf().jeq.k(1, 'nowhere').ret.k(0).assemble(), /insn 0: unknown label nowhere/);
  assert.throws(() => cbpf().label('back').ld.imm(1).jeq.k(1, 'back').ret.k(0).assemble(), /insn 1: .*backwards/);
  const far = cbpf().jeq.k(1, 'far');
  for (let i = 0; i < 256; i++) far.ld.imm(i);
  far.label('far').ret.k(0);
  assert.throws(
    () => far.assemble(),
    (e: unknown) => e instanceof CbpfAsmError && e.index === 0 && /256 instructions ahead/.test(e.message),
  );
  const ok = cbpf().ja('far');
  for (let i = 0; i < 1000; i++) ok.ld.imm(i);
  assert.equal(ok.label('far').ret.k(0).assemble().k[0], 1000); // ja has a 32-bit reach
  assert.throws(() => cbpf().ld.imm(1).assemble(), /last instruction must be a ret/);
  assert.throws(() => cbpf().st(16), /M\[16\]/);
  assert.throws(() => cbpf().label('a').label('a'), /twice/);
});

test('validate: scratch read before write, division by zero constant, bad shifts', () => {
  assert.throws(() => validate(cbpf().ld.mem(3).ret.a().assemble()), /M\[3\] read before/);
  // written on one path only
  assert.throws(() => validate(cbpf().ld.len().jeq.k(1, null, 'b').st(2).label('b').ld.mem(2).ret.a().assemble()), /M\[2\] read before/);
  validate(cbpf().ld.len().st(2).jeq.k(1, null, 'b').ld.imm(0).label('b').ld.mem(2).ret.a().assemble());
  assert.throws(() => validate(cbpf().div.k(0).ret.a().assemble()), /division by constant 0/);
  assert.throws(() => validate(cbpf().lsh.k(32).ret.a().assemble()), /shift/);
});

test('interpreter: loads, out-of-bounds drops, msh, alu, jumps, scratch, ancillary', () => {
  const vm = new CbpfVm();
  const pkt = Uint8Array.from([0x45, 0x01, 0x02, 0x03, 0xff, 0xfe, 0xfd, 0xfc]);
  const run = (b: ReturnType<typeof cbpf>, len = pkt.length, off = 0) => {
    const p = b.assemble();
    validate(p);
    return vm.run(p, pkt, off, len);
  };
  assert.equal(run(cbpf().ld.abs(4).ret.a()), 0xfffefdfc);
  assert.equal(run(cbpf().ldh.abs(0).ret.a()), 0x4501);
  assert.equal(run(cbpf().ld.abs(5).ret.k(1)), 0, 'word crossing the end drops');
  assert.equal(run(cbpf().ldb.abs(7).ret.k(9)), 9);
  assert.equal(run(cbpf().ldb.abs(7).ret.k(9), 7), 0, 'len limits loads, not the buffer');
  assert.equal(run(cbpf().ldb.abs(0).ret.a(), 4, 4), 0xff, 'offset into the buffer');
  assert.equal(run(cbpf().ldx.msh(0).txa().ret.a()), 20);
  assert.equal(run(cbpf().ldx.imm(3).ldb.ind(1).ret.a()), 0xff);
  assert.equal(run(cbpf().ldx.imm(0xffffffff).ldb.ind(1).ret.a()), 0x45, 'X+k wraps at 32 bits');
  assert.equal(run(cbpf().ldx.imm(7).ldh.ind(0).ret.k(1)), 0, 'ind out of bounds drops');
  assert.equal(run(cbpf().ld.len().ret.a(), 6), 6);
  assert.equal(run(cbpf().ld.imm(5).sub.k(7).ret.a()), 0xfffffffe);
  assert.equal(run(cbpf().ld.imm(0x10).lsh.k(28).ret.a()), 0);
  assert.equal(run(cbpf().ld.imm(0x80000000).rsh.k(31).ret.a()), 1);
  assert.equal(run(cbpf().ld.imm(100).div.k(7).ret.a()), 14);
  assert.equal(run(cbpf().ld.imm(100).mod.k(7).ret.a()), 2);
  assert.equal(run(cbpf().ld.imm(100).ldx.imm(0).div.x().ret.k(5)), 0, 'division by X = 0 drops');
  assert.equal(run(cbpf().ld.imm(0x12345678).mul.k(0x10).ret.a()), 0x23456780);
  assert.equal(run(cbpf().ld.imm(1).neg().ret.a()), 0xffffffff);
  assert.equal(run(cbpf().ld.imm(0xf0).and.k(0x3c).or.k(1).xor.k(0xff).ret.a()), 0xce);
  assert.equal(run(cbpf().ld.imm(7).st(15).ld.imm(0).ldx.mem(15).txa().ret.a()), 7);
  assert.equal(run(cbpf().ld.imm(5).jgt.k(4, 'y', null).ret.k(1).label('y').ret.k(2)), 2);
  assert.equal(run(cbpf().ld.imm(4).jge.k(5, 'y', null).ret.k(1).label('y').ret.k(2)), 1);
  assert.equal(run(cbpf().ld.imm(6).jset.k(2, 'y', null).ret.k(1).label('y').ret.k(2)), 2);
  assert.equal(run(cbpf().ld.imm(6).ldx.imm(6).jeq.x('y', null).ret.k(1).label('y').ret.k(2)), 2);
  vm.ctx.vlanPresent = true;
  vm.ctx.vlanTci = 0x2064;
  assert.equal(run(cbpf().ld.anc(SKF_AD_VLAN_TAG_PRESENT).ret.a()), 1);
  assert.equal(run(cbpf().ld.anc(SKF_AD_VLAN_TAG).ret.a()), 0x2064);
  assert.equal(disasm(cbpf().ld.anc(SKF_AD_VLAN_TAG_PRESENT).ret.a().assemble()), '0: ld [ad+48]\n1: ret a\n');
});
