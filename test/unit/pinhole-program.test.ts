/**
 * The pinhole program as data: golden disassembly for fixed specs (any change to the program
 * shows up as a diff to review), structure checks, and the uplink decision table.
 * Regenerate goldens with `UPDATE_GOLDEN=1 npm run test:unit` and review the diff.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { assemble, decode, disasm } from '../../src/bpf/asm/index.ts';
import { buildPinhole, pinholeMapSpecs, PINHOLE_MAPS } from '../../src/bpf/pinhole/program.ts';
import { REASONS } from '../../src/bpf/pinhole/policy.ts';
import { AFXDP_MAX_MTU, decideUplink } from '../../src/uplink/decide.ts';
import type { FeatureResult, FeatureSet } from '../../src/kernel/features.ts';
import type { IfaceInfo } from '../../src/kernel/iface.ts';
import { parseHexFrame } from '../../src/control/commands/bpf.ts';
import { specFromArgs } from '../../src/control/args.ts';

function golden(name: string, text: string): void {
  const path = new URL(`./golden/${name}`, import.meta.url);
  if (process.env.UPDATE_GOLDEN) writeFileSync(path, text);
  assert.equal(text, readFileSync(path, 'utf8'), `golden ${name} differs (UPDATE_GOLDEN=1 to accept)`);
}

test('golden disassembly: ports only', () => {
  golden('pinhole-ports.txt', disasm(buildPinhole({ ports: [4789, 51820], addresses: [] })));
});

test('golden disassembly: ports and address filter', () => {
  golden('pinhole-addresses.txt', disasm(buildPinhole({ ports: [4789], addresses: ['198.18.0.1', '2001:db8::1'] })));
});

test('ports are runtime data: the program does not depend on the port list', () => {
  const a = disasm(buildPinhole({ ports: [4789], addresses: [] }));
  const b = disasm(buildPinhole({ ports: [1, 2, 3, 51820], addresses: [] }));
  assert.equal(a, b);
});

test('address filter is compiled in only when asked for', () => {
  const without = disasm(buildPinhole({ ports: [4789], addresses: [] }));
  const withF = disasm(buildPinhole({ ports: [4789], addresses: [], filterAddresses: true }));
  assert.ok(!without.includes(PINHOLE_MAPS.addrs4));
  assert.ok(withF.includes(PINHOLE_MAPS.addrs4) && withF.includes(PINHOLE_MAPS.addrs6));
});

test('every reason has a stub and the program assembles and round-trips', () => {
  const insns = buildPinhole({ ports: [4789], addresses: ['198.18.0.1'] });
  const text = disasm(insns);
  for (const r of REASONS) assert.ok(text.includes(`r_${r}:`), `stub for ${r}`);
  assert.ok(!disasm(buildPinhole({ ports: [1], addresses: [] })).includes('r_address:'), 'no unreachable stub');
  const fds = Object.fromEntries(Object.values(pinholeMapSpecs()).map((m, i) => [m.name, 10 + i]));
  const bytes = assemble(insns, { maps: fds });
  assert.deepEqual(assemble(decode(bytes)), bytes);
  assert.ok(bytes.length / 8 < 4096, 'fits the unprivileged instruction limit');
});

const ok = (name: string): FeatureResult => ({ name, status: 'ok', minKernel: '0' });
const allOk: FeatureSet = {
  bpf: ok('bpf'),
  xdpSockets: ok('xdpSockets'),
  bpfLinkXdp: ok('bpfLinkXdp'),
  bpffs: ok('bpffs'),
  btf: ok('btf'),
};
const veth = (over: Partial<IfaceInfo> = {}): IfaceInfo => ({
  name: 'eth0',
  index: 2,
  kind: 'veth',
  driver: 'veth',
  mtu: 1500,
  maxXdpMtu: 3506,
  rxQueues: 2,
  txQueues: 2,
  up: true,
  xdp: { mode: 'none' },
  ...over,
});

test('decision: everything available → afxdp native', () => {
  const d = decideUplink(allOk, veth());
  assert.equal(d.mode, 'afxdp');
  assert.equal(d.xdpMode, 'native');
  assert.deepEqual(
    d.reasons.map((r) => r.code),
    ['COPY_MODE_ONLY'],
  );
});

test('decision: missing or forbidden kernel support → afpacket with the reason', () => {
  const missing = decideUplink(
    { ...allOk, xdpSockets: { name: 'xdpSockets', status: 'missing', minKernel: '4.18', detail: 'EAFNOSUPPORT' } },
    veth(),
  );
  assert.equal(missing.mode, 'afpacket');
  assert.equal(missing.reasons[0]!.code, 'XDP_SOCKETS_UNAVAILABLE');
  const eperm = decideUplink({ ...allOk, bpf: { name: 'bpf', status: 'not-permitted', minKernel: '4.8' } }, undefined);
  assert.equal(eperm.mode, 'afpacket');
  assert.equal(eperm.reasons[0]!.code, 'BPF_NOT_PERMITTED');
});

test('decision: foreign XDP program → afpacket unless replacing is allowed; our stale one is taken over', () => {
  const foreign = veth({ xdp: { mode: 'native', progId: 7, progName: 'xdp_fw' } });
  const d = decideUplink(allOk, foreign);
  assert.equal(d.mode, 'afpacket');
  assert.equal(d.reasons[0]!.code, 'FOREIGN_XDP_PROGRAM');
  assert.equal(decideUplink(allOk, foreign, { replaceForeign: true }).mode, 'afxdp');
  const stale = decideUplink(allOk, veth({ xdp: { mode: 'native', progId: 9, progName: 'pinhole', ours: true } }));
  assert.equal(stale.mode, 'afxdp');
  assert.match(stale.reasons.find((r) => r.code === 'STALE_PINHOLE_PROGRAM')?.message ?? '', /will be replaced atomically/);
  // Ours by tag and maps, not by name: a look-alike named `pinhole` is foreign.
  const lookalike = decideUplink(allOk, veth({ xdp: { mode: 'native', progId: 9, progName: 'pinhole', ours: false } }));
  assert.equal(lookalike.mode, 'afpacket');
  assert.equal(lookalike.reasons[0]!.code, 'FOREIGN_XDP_PROGRAM');
  // A stale native program while the MTU needs generic: detached, then attached generic.
  const moved = decideUplink(allOk, veth({ mtu: 3700, xdp: { mode: 'native', progId: 9, progName: 'pinhole', ours: true } }));
  assert.equal(moved.xdpMode, 'generic');
  assert.match(
    moved.reasons.find((r) => r.code === 'STALE_PINHOLE_PROGRAM')?.message ?? '',
    /will be detached and pinhole attached in generic mode/,
  );
});

test('decision: a running pinhole (lock held) owns its program: live, not stale; a second one is refused', () => {
  const d = decideUplink(allOk, veth({ xdp: { mode: 'native', progId: 9, progName: 'pinhole', ours: true } }), { running: { pid: 42 } });
  assert.deepEqual(
    d.reasons.map((r) => r.code),
    ['PINHOLE_RUNNING', 'LIVE_PINHOLE_PROGRAM', 'COPY_MODE_ONLY'],
  );
  assert.match(d.reasons[0]!.message, /pid 42/);
});

test('decision: a tunnel port another socket receives on rules AF_XDP out', () => {
  const d = decideUplink(allOk, veth(), { heldPorts: [{ family: 4, port: 4789, holder: '0.0.0.0:4789, no process' }] });
  assert.equal(d.mode, 'afpacket');
  assert.equal(d.reasons[0]!.code, 'PORT_HELD_BY_KERNEL_SOCKET');
  assert.match(
    d.reasons[0]!.message,
    /^UDP port 4789 \(IPv4\) is bound by another socket \(0\.0\.0\.0:4789, no process\); AF_XDP would take/,
  );
});

test('decision: MTU above the native XDP limit → generic XDP; above a UMEM frame (jumbo) → afpacket; bonds and VLANs → afpacket', () => {
  const big = decideUplink(allOk, veth({ mtu: 3700 }));
  assert.equal(big.mode, 'afxdp');
  assert.equal(big.xdpMode, 'generic');
  assert.ok(big.reasons.some((r) => r.code === 'MTU_TOO_LARGE_FOR_NATIVE_XDP'));
  // 3818 + 14 + 4 (an 802.1Q tag) + 4 (an FCS some drivers count) = 3840: 4 KiB less XDP_PACKET_HEADROOM.
  assert.equal(AFXDP_MAX_MTU, 3818);
  assert.equal(decideUplink(allOk, veth({ mtu: 3818 })).mode, 'afxdp');
  for (const mtu of [3819, 9000, 9001]) {
    const jumbo = decideUplink(allOk, veth({ mtu }));
    assert.equal(jumbo.mode, 'afpacket', `MTU ${mtu}`);
    assert.equal(jumbo.reasons[0]!.code, 'MTU_TOO_LARGE_FOR_AF_XDP');
    assert.match(jumbo.reasons[0]!.message, new RegExp(`^MTU ${mtu} is above the 3818 that AF_XDP serves`));
  }
  for (const kind of ['bond', 'team', 'vlan']) {
    const d = decideUplink(allOk, veth({ kind, driver: kind }));
    assert.equal(d.mode, 'afpacket', kind);
    assert.equal(d.reasons[0]!.code, 'IFACE_KIND_UNSUPPORTED');
  }
  // A vxlan device has no native XDP hook: the prediction is generic, as the attach will be.
  const vx = decideUplink(allOk, veth({ kind: 'vxlan', driver: 'vxlan' }));
  assert.equal(vx.mode, 'afxdp');
  assert.equal(vx.xdpMode, 'generic');
  assert.ok(vx.reasons.some((r) => r.code === 'NATIVE_XDP_UNSUPPORTED'));
});

test('CLI input: ports, addresses and hex frames are validated with stable codes', () => {
  assert.deepEqual(specFromArgs(['4789', '51820'], ['198.18.0.1']), { ports: [4789, 51820], addresses: ['198.18.0.1'] });
  for (const bad of ['0', '65536', 'x', '47.89']) {
    assert.throws(() => specFromArgs([bad], []), { code: 'ERR_CLI_PORT' });
  }
  assert.throws(() => specFromArgs([], ['300.1.1.1']), { code: 'ERR_CLI_ADDRESS' });
  assert.deepEqual([...parseHexFrame('00:11 22-33.44')], [0, 0x11, 0x22, 0x33, 0x44]);
  assert.deepEqual([...parseHexFrame('0xABcd')], [0xab, 0xcd]);
  for (const bad of ['', 'abc', 'zz']) assert.throws(() => parseHexFrame(bad), { code: 'ERR_CLI_FRAME' });
});
