/**
 * attachXdp against the real kernel, on veths inside fresh namespaces: bpf_link first, netlink
 * for `persist` and `replace`, generic when native is refused, and never over a foreign program.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { requireRoot } from '../helpers/require.ts';
import { addVeth, withNetns } from '../helpers/netns.ts';
import { alu64, assemble, exit, R0 } from '../../src/bpf/asm/index.ts';
import { XDP_PASS } from '../../src/kernel/bpf-attr.ts';
import { loadPinhole } from '../../src/kernel/pinhole.ts';
import { loadProgram } from '../../src/kernel/program.ts';
import { attachXdp } from '../../src/kernel/xdp-attach.ts';
import { getLinkSync, setLinkXdpSync } from '../../src/netlink/link.ts';
import { inNetns } from './xsk-netns.ts';

requireRoot();

const xdpOf = (name: string) => getLinkSync(name).xdp;
const isCode = (code: string) => (e: { code?: string }) => e.code === code;

test('bpf_link attach (native), second attach refused as foreign, close detaches', async () => {
  await withNetns(['xat-a', 'xat-b'], async (a, b) => {
    addVeth(a, 'up0', b, 'peer0');
    const ph = loadPinhole({ ports: [4789], addresses: [] });
    try {
      await inNetns(a, () => {
        const att = attachXdp(ph.program.fd, { iface: 'up0' });
        assert.deepEqual([att.via, att.mode, att.fallbacks.length], ['bpf_link', 'native', 0]);
        assert.equal(xdpOf('up0')?.attached, 'native');
        assert.throws(() => attachXdp(ph.program.fd, { iface: 'up0' }), isCode('ERR_XDP_FOREIGN_PROGRAM'));
        // A bpf_link-held program cannot be replaced even with consent.
        assert.throws(() => attachXdp(ph.program.fd, { iface: 'up0', replace: true }), isCode('ERR_XDP_FOREIGN_PROGRAM'));
        att.close();
        assert.equal(xdpOf('up0')?.attached, 'none');
      });
    } finally {
      ph.close();
    }
  });
});

test('a foreign program is never replaced without replace: true; with it, netlink takes over in place', async () => {
  await withNetns(['xat-c', 'xat-d'], async (a, b) => {
    addVeth(a, 'up0', b, 'peer0');
    const ph = loadPinhole({ ports: [4789], addresses: [] });
    const fw = loadProgram({ name: 'xdp_fw', type: 'xdp', insns: assemble([alu64.mov.imm(R0, XDP_PASS), exit()]) });
    try {
      await inNetns(a, () => {
        setLinkXdpSync(getLinkSync('up0').index, fw.fd, { mode: 'generic' });
        const fwId = xdpOf('up0')?.progId;
        assert.throws(
          () => attachXdp(ph.program.fd, { iface: 'up0' }),
          (e: { code?: string; details?: Record<string, unknown> }) => e.code === 'ERR_XDP_FOREIGN_PROGRAM' && e.details?.progId === fwId,
        );
        assert.equal(xdpOf('up0')?.progId, fwId, 'the foreign program is untouched');
        const att = attachXdp(ph.program.fd, { iface: 'up0', replace: true });
        assert.deepEqual([att.via, att.mode], ['netlink', 'generic']);
        assert.equal(xdpOf('up0')?.progId, ph.program.info().id);
        att.close();
        assert.equal(xdpOf('up0')?.attached, 'none');
      });
    } finally {
      fw.close();
      ph.close();
    }
  });
});

test('persist attaches through netlink and survives the owner closing its program fd; close detaches only ours', async () => {
  await withNetns(['xat-e', 'xat-f'], async (a, b) => {
    addVeth(a, 'up0', b, 'peer0');
    const ph = loadPinhole({ ports: [4789], addresses: [] });
    const other = loadProgram({ name: 'xdp_other', type: 'xdp', insns: assemble([alu64.mov.imm(R0, XDP_PASS), exit()]) });
    try {
      await inNetns(a, () => {
        const att = attachXdp(ph.program.fd, { iface: 'up0', persist: true });
        assert.deepEqual([att.via, att.mode], ['netlink', 'native']);
        // Someone replaces it: our close() must leave their program alone.
        setLinkXdpSync(getLinkSync('up0').index, other.fd, { mode: 'native', replace: true });
        att.close();
        assert.equal(xdpOf('up0')?.progId, other.info().id);
        setLinkXdpSync(getLinkSync('up0').index, -1, { mode: 'native', replace: true });
      });
    } finally {
      other.close();
      ph.close();
    }
  });
});

test('native refused (peer MTU too large for XDP) falls back to generic and says why', async () => {
  await withNetns(['xat-g', 'xat-h'], async (a, b) => {
    addVeth(a, 'up0', b, 'peer0', { mtu: 9000 });
    const ph = loadPinhole({ ports: [4789], addresses: [] });
    try {
      await inNetns(a, () => {
        assert.throws(() => attachXdp(ph.program.fd, { iface: 'up0', mode: 'native' }), isCode('ERR_XDP_ATTACH'));
        const att = attachXdp(ph.program.fd, { iface: 'up0' });
        assert.deepEqual([att.via, att.mode], ['bpf_link', 'generic']);
        assert.deepEqual(
          att.fallbacks.map((f) => `${f.via}/${f.mode}`),
          ['bpf_link/native', 'netlink/native'],
        );
        assert.ok(
          att.fallbacks.every((f) => f.errno === 'ERANGE'),
          JSON.stringify(att.fallbacks),
        );
        assert.equal(xdpOf('up0')?.attached, 'generic');
        att.close();
        assert.equal(xdpOf('up0')?.attached, 'none');
      });
    } finally {
      ph.close();
    }
  });
});
