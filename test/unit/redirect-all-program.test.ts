/**
 * The redirect-all program for workload interfaces as data: golden disassembly (any change shows
 * up as a diff to review), the fallback is XDP_DROP, maps and counters; and the accept-all cBPF
 * filter for AF_PACKET on workload interfaces.
 * Regenerate the golden with `UPDATE_GOLDEN=1 node --import tsx --test test/unit/redirect-all-program.test.ts`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { assemble, decode, disasm, fieldsOf, Helper } from '../../src/bpf/asm/index.ts';
import {
  buildRedirectAll,
  REDIRECT_ALL_COUNTERS,
  REDIRECT_ALL_INDEX,
  REDIRECT_ALL_MAPS,
  redirectAllMapSpecs,
} from '../../src/bpf/programs/redirect-all.ts';
import { ACCEPT_ALL_SNAP_LEN, compileAcceptAllFilter } from '../../src/bpf/cbpf/accept-all.ts';
import { disasm as cbpfDisasm, encode as cbpfEncode } from '../../src/bpf/cbpf/asm.ts';
import { CbpfVm, validate } from '../support/cbpf-interp.ts';

function golden(name: string, text: string): void {
  const path = new URL(`./golden/${name}`, import.meta.url);
  if (process.env.UPDATE_GOLDEN) writeFileSync(path, text);
  assert.equal(text, readFileSync(path, 'utf8'), `golden ${name} differs (UPDATE_GOLDEN=1 to accept)`);
}

test('golden disassembly: redirect-all', () => {
  golden('redirect-all.txt', disasm(buildRedirectAll()));
});

test('the redirect falls back to XDP_DROP (1), never XDP_PASS', () => {
  const insns = buildRedirectAll();
  const call = insns.findIndex((i) => i.op === 0x85 && i.imm === Helper.redirect_map);
  assert.ok(call > 0, 'calls bpf_redirect_map');
  let flags: ReturnType<typeof fieldsOf> | undefined;
  for (let i = 0; i < call; i++) if (insns[i]!.dst === 3) flags = fieldsOf(insns[i]!);
  assert.ok(flags, 'r3 (flags) is set before the call');
  assert.equal(flags.op, 0xb7, 'r3 = imm (alu64 mov k)');
  assert.equal(flags.imm, 1, 'fallback action XDP_DROP');
  assert.doesNotMatch(disasm(insns), /= 2\b/, 'no XDP_PASS constant anywhere');
});

test('maps: the XSKMAP is sized by queues, the counters have one slot per counter', () => {
  const s = redirectAllMapSpecs(8);
  assert.deepEqual(s.xsks, { name: REDIRECT_ALL_MAPS.xsks, type: 'xskmap', keySize: 4, valueSize: 4, maxEntries: 8 });
  assert.equal(s.counters.type, 'percpu_array');
  assert.equal(s.counters.maxEntries, REDIRECT_ALL_COUNTERS.length);
  assert.equal(redirectAllMapSpecs().xsks.maxEntries, 64);
  for (const n of Object.values(REDIRECT_ALL_MAPS)) assert.ok(n.length <= 15, `${n} fits BPF_OBJ_NAME_LEN`);
  REDIRECT_ALL_COUNTERS.forEach((c, i) => assert.equal(REDIRECT_ALL_INDEX[c], i));
});

test('the program assembles and round-trips through decode', () => {
  const fds = Object.fromEntries(Object.values(redirectAllMapSpecs()).map((m, i) => [m.name, 10 + i]));
  const bytes = assemble(buildRedirectAll(), { maps: fds });
  assert.deepEqual(assemble(decode(bytes)), bytes);
  assert.throws(() => assemble(buildRedirectAll(), { maps: {} }), { code: 'ERR_BPF_ASM' });
});

test('accept-all cBPF filter: one instruction, keeps every frame whole', () => {
  const prog = compileAcceptAllFilter();
  validate(prog);
  assert.equal(cbpfDisasm(prog), '0: ret #0x40000\n');
  assert.deepEqual([...cbpfEncode(prog)], [0x06, 0, 0, 0, 0x00, 0x00, 0x04, 0x00]);
  const vm = new CbpfVm();
  const buf = new Uint8Array(9000);
  for (let i = 0; i < buf.length; i++) buf[i] = (i * 131) & 0xff;
  for (const len of [0, 1, 14, 42, 60, 1514, 9000]) assert.equal(vm.run(prog, buf, 0, len), ACCEPT_ALL_SNAP_LEN, `${len}-byte frame`);
  assert.ok(ACCEPT_ALL_SNAP_LEN > 65535 + 14, 'larger than any GSO packet');
});

test('loadRedirectAll validates queues before touching the kernel', async () => {
  const { loadRedirectAll } = await import('../../src/kernel/workload.ts');
  for (const queues of [0, -1, 1.5, 4097, Number.NaN]) {
    assert.throws(() => loadRedirectAll({ queues }), { code: 'ERR_CONFIG_QUEUES' }, String(queues));
  }
});
