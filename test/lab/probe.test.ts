/**
 * `pinhole probe --json` inside network namespaces with real veths: what it reports about the
 * interface, and how an attached foreign program, a stale pinhole program and a large MTU
 * change the decision. Programs are attached only to veths inside namespaces this test made.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requireRoot } from '../helpers/require.ts';
import { addVeth, withNetns } from '../helpers/netns.ts';
import { runCli } from '../helpers/cli.ts';
import { getSys } from '../../src/sys/index.ts';
import { loadProgram } from '../../src/kernel/program.ts';
import { LoadedPinhole, loadPinhole } from '../../src/kernel/pinhole.ts';
import { alu64, assemble, exit, R0 } from '../../src/bpf/asm/index.ts';
import { XDP_PASS } from '../../src/kernel/bpf-attr.ts';

requireRoot();

interface ProbeJson {
  kernel: { release: string };
  features: { bpf: boolean; xdpSockets: boolean; bpfLinkXdp: boolean; bpffs: boolean };
  iface: {
    name: string;
    kind: string;
    driver: string;
    mtu: number;
    maxXdpMtu: number;
    rxQueues: number;
    txQueues: number;
    xdp: { mode: string; progId?: number; progName?: string };
  };
  decision: { mode: string; xdpMode?: string; reasons: { code: string; message: string }[] };
}

function probe(ns: string, iface: string): ProbeJson {
  const r = runCli(['probe', '--iface', iface, '--json'], { netns: ns });
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as ProbeJson;
}

/**
 * Loads an XDP_PASS program named `name` (or, with `kind` 'pinhole', the real pinhole program),
 * pins it in a private bpffs (visible to `ip -n`).
 */
function withPinnedProgram(name: string, fn: (path: string) => void, kind: 'pass' | 'pinhole' = 'pass'): void {
  const dir = mkdtempSync(join(tmpdir(), 'ph-lab-bpffs-'));
  getSys().mount('bpf', dir, 'bpf', 0, 'mode=0700');
  const prog =
    kind === 'pinhole'
      ? loadPinhole({ ports: [4789], addresses: [] }, { name })
      : loadProgram({ name, type: 'xdp', insns: assemble([alu64.mov.imm(R0, XDP_PASS), exit()]) });
  try {
    (prog instanceof LoadedPinhole ? prog.program : prog).pin(join(dir, 'prog'));
    fn(join(dir, 'prog'));
  } finally {
    prog.close();
    execFileSync('umount', [dir]);
    rmSync(dir, { recursive: true, force: true });
  }
}

test('probe reports a veth correctly and picks AF_XDP', async () => {
  await withNetns(['probe-a', 'probe-b'], (a, b) => {
    addVeth(a, 'up0', b, 'peer0', { queues: 2 });
    const p = probe(a.name, 'up0');
    assert.match(p.kernel.release, /^\d+\.\d+/);
    assert.deepEqual(p.features, { ...p.features, bpf: true, xdpSockets: true, bpfLinkXdp: true });
    assert.equal(p.iface.name, 'up0');
    assert.equal(p.iface.kind, 'veth');
    assert.equal(p.iface.driver, 'veth');
    assert.equal(p.iface.mtu, 1500);
    assert.equal(p.iface.maxXdpMtu, 3506);
    assert.equal(p.iface.rxQueues, 2);
    assert.equal(p.iface.txQueues, 2);
    assert.deepEqual(p.iface.xdp, { mode: 'none' });
    assert.equal(p.decision.mode, 'afxdp');
    assert.equal(p.decision.xdpMode, 'native');
    // Human output has the same facts.
    const human = runCli(['probe', '--iface', 'up0'], { netns: a.name });
    assert.match(human.stdout, /decision: afxdp \(native XDP\)/);
    assert.match(human.stdout, /veth\s+veth\s+1500\s+3506\s+2\s+2\s+none/);
  });
});

test('a foreign XDP program makes probe choose AF_PACKET and name it; a stale pinhole does not', async () => {
  await withNetns(['probe-c', 'probe-d'], (a, b) => {
    addVeth(a, 'up0', b, 'peer0');
    withPinnedProgram('xdp_fw', (path) => {
      a.ip('link', 'set', 'dev', 'up0', 'xdpgeneric', 'pinned', path);
      const p = probe(a.name, 'up0');
      assert.equal(p.iface.xdp.mode, 'generic');
      assert.equal(p.iface.xdp.progName, 'xdp_fw');
      assert.ok(p.iface.xdp.progId! > 0);
      assert.equal(p.decision.mode, 'afpacket');
      assert.equal(p.decision.reasons[0]!.code, 'FOREIGN_XDP_PROGRAM');
      a.ip('link', 'set', 'dev', 'up0', 'xdpgeneric', 'off');
    });
    // Ours is recognised by its instructions and maps (a real pinhole program, no process
    // holding the interface lock: stale), not by its name.
    withPinnedProgram(
      'pinhole',
      (path) => {
        a.ip('link', 'set', 'dev', 'up0', 'xdpdrv', 'pinned', path);
        const p = probe(a.name, 'up0');
        assert.equal(p.iface.xdp.mode, 'native');
        assert.equal(p.decision.mode, 'afxdp');
        assert.ok(p.decision.reasons.some((r) => r.code === 'STALE_PINHOLE_PROGRAM'));
        a.ip('link', 'set', 'dev', 'up0', 'xdpdrv', 'off');
      },
      'pinhole',
    );
  });
});

test('an MTU above the native-XDP limit is reported, and the kernel agrees; a jumbo MTU is AF_PACKET', async () => {
  await withNetns(['probe-e', 'probe-f'], (a, b) => {
    addVeth(a, 'up0', b, 'peer0', { mtu: 9000 });
    const jumbo = probe(a.name, 'up0');
    assert.equal(jumbo.iface.mtu, 9000);
    assert.equal(jumbo.decision.mode, 'afpacket');
    assert.equal(jumbo.decision.reasons[0]?.code, 'MTU_TOO_LARGE_FOR_AF_XDP');
    // Above veth's native limit (3506), within a UMEM frame (3818): AF_XDP on generic XDP.
    a.ip('link', 'set', 'dev', 'up0', 'mtu', '3700');
    const p = probe(a.name, 'up0');
    assert.equal(p.iface.mtu, 3700);
    assert.equal(p.decision.mode, 'afxdp');
    assert.equal(p.decision.xdpMode, 'generic');
    assert.ok(p.decision.reasons.some((r) => r.code === 'MTU_TOO_LARGE_FOR_NATIVE_XDP'));
    // The kernel indeed refuses native XDP here, and accepts generic.
    withPinnedProgram('ph_mtu_check', (path) => {
      assert.throws(() => a.ip('link', 'set', 'dev', 'up0', 'xdpdrv', 'pinned', path), /Peer MTU is too large/);
      a.ip('link', 'set', 'dev', 'up0', 'xdpgeneric', 'pinned', path);
      a.ip('link', 'set', 'dev', 'up0', 'xdpgeneric', 'off');
    });
    // At the limit native XDP is accepted.
    a.ip('link', 'set', 'dev', 'up0', 'mtu', '3506');
    b.ip('link', 'set', 'dev', 'peer0', 'mtu', '3506');
    withPinnedProgram('ph_mtu_check', (path) => {
      a.ip('link', 'set', 'dev', 'up0', 'xdpdrv', 'pinned', path);
      a.ip('link', 'set', 'dev', 'up0', 'xdpdrv', 'off');
    });
    assert.equal(probe(a.name, 'up0').decision.xdpMode, 'native');
  });
});
