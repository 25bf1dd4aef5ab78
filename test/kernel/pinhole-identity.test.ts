/**
 * Recognising pinhole's own program by what it is: the kernel's tag (a hash of the instructions
 * with map references zeroed) of every shape we build, and the shapes of the maps it uses. The
 * tags we compute must be the ones this kernel gives; look-alikes must not pass. Root only.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { requireRoot } from '../helpers/require.ts';
import '../../src/sys/index.ts';
import { alu64, assemble, exit, R0 } from '../../src/bpf/asm/index.ts';
import { buildPinhole, pinholeMapSpecs } from '../../src/bpf/pinhole/program.ts';
import { XDP_PASS } from '../../src/kernel/bpf-attr.ts';
import { createMap } from '../../src/kernel/map.ts';
import { inspectProgram, isPinholeProgram, kernelProgramTags, loadPinhole } from '../../src/kernel/pinhole.ts';
import { loadProgram } from '../../src/kernel/program.ts';

requireRoot();

const SPECS = [
  { ports: [4789], addresses: [] },
  { ports: [1, 2, 3], addresses: [] },
  { ports: [4789], addresses: ['198.18.0.1'] },
  { ports: [4789], addresses: ['2001:db8::1', '198.18.0.2'] },
];

for (const spec of SPECS) {
  test(`the pinhole (ports ${spec.ports.join(',')}, ${spec.addresses.length} addresses) is recognised; the kernel's tag is one we compute`, () => {
    const ph = loadPinhole(spec, { name: 'renamed' });
    try {
      const id = ph.program.info().id;
      const p = inspectProgram(id);
      assert.ok(p, 'inspectable');
      assert.equal(p.id, id);
      assert.equal(p.name, 'renamed');
      assert.equal(p.tag, ph.program.info().tag);
      // Computed from the instructions we would build, with any map fds: the same tag.
      const fds = Object.fromEntries(Object.values(ph.maps).map((m) => [m.spec.name, 1000 + m.fd]));
      const t = kernelProgramTags(assemble(buildPinhole(spec), { maps: fds }));
      assert.ok(p.tag === t.sha1 || p.tag === t.sha256, `kernel tag ${p.tag}, computed ${JSON.stringify(t)}`);
      assert.equal(p.maps.length, spec.addresses.length > 0 ? 5 : 3);
      assert.ok(isPinholeProgram(p));
    } finally {
      ph.close();
    }
  });
}

test('look-alikes are not ours: another program named pinhole; our instructions over maps of other names', () => {
  const fake = loadProgram({ name: 'pinhole', type: 'xdp', insns: assemble([alu64.mov.imm(R0, XDP_PASS), exit()]) });
  try {
    const p = inspectProgram(fake.info().id)!;
    assert.equal(p.name, 'pinhole');
    assert.equal(isPinholeProgram(p), false);
  } finally {
    fake.close();
  }
  // The same instructions (same tag), loaded against maps of the same types but other names.
  const specs = Object.values(pinholeMapSpecs());
  const maps = specs.map((s) => createMap({ ...s, name: `x${s.name}` }));
  try {
    const insns = assemble(buildPinhole({ ports: [], addresses: [] }), {
      maps: Object.fromEntries(specs.map((s, i) => [s.name, maps[i]!.fd])),
    });
    const prog = loadProgram({ name: 'pinhole', type: 'xdp', insns });
    try {
      const p = inspectProgram(prog.info().id)!;
      const t = kernelProgramTags(insns);
      assert.ok(p.tag === t.sha1 || p.tag === t.sha256, 'same instructions, same tag');
      assert.equal(isPinholeProgram(p), false, 'maps of other names');
      assert.equal(
        isPinholeProgram({ ...p, maps: p.maps.map((m) => ({ ...m, name: m.name.slice(1) })) }),
        true,
        'the names were the only difference',
      );
      assert.equal(isPinholeProgram({ ...p, maps: p.maps.map((m) => ({ ...m, name: m.name.slice(1), keySize: m.keySize + 1 })) }), false);
      assert.equal(isPinholeProgram({ ...p, tag: '0000000000000000' }), false);
    } finally {
      prog.close();
    }
  } finally {
    for (const m of maps) m.close();
  }
});

test('a program that is gone cannot be inspected (and so is never ours)', () => {
  const fake = loadProgram({ name: 'gone', type: 'xdp', insns: assemble([alu64.mov.imm(R0, XDP_PASS), exit()]) });
  const id = fake.info().id;
  fake.close();
  assert.equal(inspectProgram(id), undefined);
});
