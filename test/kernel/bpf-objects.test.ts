/**
 * Kernel objects through our own bpf(2) door: maps (hash, array, per-CPU array, XSKMAP),
 * iteration, pinning and reopening in bpffs, program load with verifier errors, and
 * BPF_PROG_TEST_RUN with an rx_queue_index context. Root only.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requireRoot } from '../helpers/require.ts';
import { getSys } from '../../src/sys/index.ts';
import { alu64, assemble, exit, jmp, ldx, R0, R1, R2 } from '../../src/bpf/asm/index.ts';
import { createMap, openPinnedMap, possibleCpus } from '../../src/kernel/map.ts';
import { loadProgram, VerifierError, XdpTestRunner } from '../../src/kernel/program.ts';
import { XDP_DROP, XDP_PASS } from '../../src/kernel/bpf-attr.ts';
import { loadPinhole, unpinDir } from '../../src/kernel/pinhole.ts';

requireRoot();

/** A private bpffs mounted on a temp dir for the duration of `fn`. */
function withBpffs(fn: (dir: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), 'ph-bpffs-'));
  getSys().mount('bpf', dir, 'bpf', 0, 'mode=0700');
  try {
    fn(dir);
  } finally {
    execFileSync('umount', [dir]);
    rmSync(dir, { recursive: true, force: true });
  }
}

const u32 = (n: number): Uint8Array => new Uint8Array(new Uint32Array([n]).buffer);

test('hash map: update, lookup, iterate, delete', () => {
  const m = createMap({ name: 'ph_t_hash', type: 'hash', keySize: 4, valueSize: 4, maxEntries: 8 });
  try {
    for (let i = 1; i <= 5; i++) m.update(u32(i), u32(i * 10));
    assert.deepEqual(m.lookup(u32(3)), u32(30));
    assert.equal(m.lookup(u32(99)), undefined);
    const keys = m
      .keys()
      .map((k) => new Uint32Array(k.buffer, k.byteOffset, 1)[0])
      .sort();
    assert.deepEqual(keys, [1, 2, 3, 4, 5]);
    assert.equal(m.delete(u32(3)), true);
    assert.equal(m.delete(u32(3)), false);
    assert.equal(m.entries().length, 4);
    assert.throws(() => m.update(new Uint8Array(3), u32(1)), { code: 'ERR_BPF_MAP_SIZE' });
    for (let i = 10; i < 14; i++) m.update(u32(i), u32(0));
    assert.throws(() => m.update(u32(100), u32(0)), { code: 'ERR_BPF_MAP' }, 'full map: E2BIG wrapped');
  } finally {
    m.close();
  }
});

test('per-CPU array: one slot per possible CPU, batch read', () => {
  const m = createMap({ name: 'ph_t_pcpu', type: 'percpu_array', keySize: 4, valueSize: 8, maxEntries: 4 });
  try {
    const cpus = possibleCpus();
    assert.equal(m.valueBytes, 8 * cpus);
    const v = new Uint8Array(8 * cpus);
    new DataView(v.buffer).setBigUint64(0, 7n, true);
    m.update(u32(2), v);
    const vals = new Uint8Array(new ArrayBuffer(4 * m.valueBytes));
    const keys = new Uint8Array(new ArrayBuffer(16));
    m.lookupAllArray(vals, keys);
    assert.deepEqual([...new Uint32Array(keys.buffer)], [0, 1, 2, 3]);
    assert.equal(new DataView(vals.buffer).getBigUint64(2 * m.valueBytes, true), 7n);
  } finally {
    m.close();
  }
});

test('array and XSKMAP maps are created; an XSKMAP refuses a non-socket fd', () => {
  const a = createMap({ name: 'ph_t_arr', type: 'array', keySize: 4, valueSize: 16, maxEntries: 2 });
  const x = createMap({ name: 'ph_t_xsk', type: 'xskmap', keySize: 4, valueSize: 4, maxEntries: 4 });
  try {
    assert.equal(a.keys().length, 2, 'arrays always have all keys');
    assert.throws(() => x.update(u32(0), u32(a.fd)), { code: 'ERR_BPF_MAP' });
  } finally {
    a.close();
    x.close();
  }
});

test('pin and reopen maps in a bpffs; the spec is read back from the kernel', () => {
  withBpffs((dir) => {
    const m = createMap({ name: 'ph_t_pin', type: 'hash', keySize: 2, valueSize: 4, maxEntries: 16 });
    m.update(new Uint8Array([0x12, 0xb5]), u32(1));
    m.pin(join(dir, 'ports'));
    m.close();
    const again = openPinnedMap(join(dir, 'ports'));
    try {
      assert.deepEqual(again.spec, { name: 'ph_t_pin', type: 'hash', keySize: 2, valueSize: 4, maxEntries: 16, flags: 0 });
      assert.deepEqual(again.lookup(new Uint8Array([0x12, 0xb5])), u32(1));
    } finally {
      again.close();
    }
    assert.throws(() => openPinnedMap(join(dir, 'missing')), { code: 'ERR_BPF_PIN' });
  });
});

test('a pinned pinhole keeps working after its loader closes; bpftool sees it; unpin removes it', () => {
  withBpffs((dir) => {
    const pinDir = join(dir, 'pinhole', 'eth0');
    const ph = loadPinhole({ ports: [4789], addresses: [] });
    const id = ph.program.info().id;
    ph.pin(pinDir);
    ph.close();
    const ports = openPinnedMap(join(pinDir, 'ports'));
    try {
      assert.deepEqual(ports.keys(), [new Uint8Array([0x12, 0xb5])]);
      ports.update(new Uint8Array([0xca, 0x6c]), u32(1)); // 51820, changed from "another process"
    } finally {
      ports.close();
    }
    const shown = JSON.parse(execFileSync('bpftool', ['-j', 'prog', 'show', 'pinned', join(pinDir, 'prog')], { encoding: 'utf8' }));
    assert.equal(shown.id, id);
    assert.equal(shown.type, 'xdp');
    unpinDir(pinDir);
    assert.equal(existsSync(pinDir), false);
  });
});

test('verifier rejection carries the log and a stable code', () => {
  // Reads r2 before it is written.
  const insns = assemble([alu64.mov.reg(R0, R2), exit()]);
  try {
    loadProgram({ name: 'ph_bad', type: 'xdp', insns });
    assert.fail('the verifier accepted an invalid program');
  } catch (err) {
    assert.ok(err instanceof VerifierError);
    assert.equal(err.code, 'ERR_BPF_VERIFIER');
    assert.match(err.log, /R2 !read_ok/);
    assert.match(err.message, /R2 !read_ok/);
  }
});

test('BPF_PROG_TEST_RUN: verdicts, rx_queue_index in ctx, repeat, and too-short frames', () => {
  // return rx_queue_index == 0 ? XDP_PASS : XDP_DROP
  const insns = assemble([
    ldx.w(R1, R1, 16),
    alu64.mov.imm(R0, XDP_PASS),
    jmp.jeq.imm(R1, 0, 'out'),
    alu64.mov.imm(R0, XDP_DROP),
    exit().sym('out'),
  ]);
  const prog = loadProgram({ name: 'ph_rxq', type: 'xdp', insns });
  try {
    const frame = new Uint8Array(64);
    assert.equal(new XdpTestRunner(prog, { rxQueue: 0 }).run(frame), XDP_PASS);
    const r = new XdpTestRunner(prog);
    assert.equal(r.run(frame, 64, 1000), XDP_PASS);
    assert.ok(r.lastDuration > 0);
    assert.throws(() => new XdpTestRunner(prog, { rxQueue: 5 }).run(frame), { code: 'ERR_BPF_TEST_RUN' }, 'loopback has one queue');
    assert.throws(() => r.run(frame, 10), { code: 'ERR_BPF_TEST_RUN' });
    assert.ok(prog.info().name === 'ph_rxq');
  } finally {
    prog.close();
  }
});
