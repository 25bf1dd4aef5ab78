/**
 * Crash safety of the two attach styles (see src/kernel/xdp-attach.ts): a process holding the
 * pinhole and an XSK is SIGKILLed. With bpf_link the program goes with it; with netlink (persist)
 * it stays, and because the dead socket left the xsks map, it passes everything — tunnel UDP
 * included — to the kernel. The next start takes over only with replace: true.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { requireRoot } from '../helpers/require.ts';
import { addVeth, withNetns } from '../helpers/netns.ts';
import { loadPinhole } from '../../src/kernel/pinhole.ts';
import { attachXdp } from '../../src/kernel/xdp-attach.ts';
import { getLinkSync } from '../../src/netlink/link.ts';
import { inNetns } from './xsk-netns.ts';

requireRoot();

const CHILD = fileURLToPath(new URL('./xsk-crash-child.ts', import.meta.url));

for (const style of ['bpf_link', 'netlink'] as const) {
  test(`SIGKILL with a ${style} attachment: host traffic and tunnel UDP reach the kernel afterwards`, async () => {
    await withNetns([`xcr-${style}-a`, `xcr-${style}-b`], async (a, b) => {
      addVeth(a, 'up0', b, 'peer0', { queues: 1 });
      a.ip('addr', 'add', '198.18.0.1/24', 'dev', 'up0');
      b.ip('addr', 'add', '198.18.0.2/24', 'dev', 'peer0');
      b.exec('ethtool', ['-K', 'peer0', 'gro', 'on']);
      const child = a.spawn(process.execPath, ['--import', 'tsx', CHILD, style]);
      try {
        const lines = createInterface({ input: child.stdout! });
        const [line] = (await Promise.race([
          once(lines, 'line'),
          once(child, 'exit').then(() => {
            throw new Error('child exited before ready');
          }),
        ])) as [string];
        const ready = JSON.parse(line) as { via: string; progId: number };
        assert.equal(ready.via, style);
        assert.equal(await inNetns(a, () => getLinkSync('up0').xdp?.progId), ready.progId);
        child.kill('SIGKILL');
        await once(child, 'exit');
      } finally {
        child.kill('SIGKILL');
      }
      const xdp = await inNetns(a, () => getLinkSync('up0').xdp);
      if (style === 'bpf_link') assert.equal(xdp?.attached, 'none', 'the link died with the process');
      else assert.equal(xdp?.attached, 'native', 'the netlink attachment outlives the process');

      // Host traffic flows, and tunnel UDP now reaches the kernel's socket (no XSK to take it).
      b.exec('ping', ['-c', '1', '-W', '5', '198.18.0.1']);
      const sock = await inNetns(a, async () => {
        const s = createSocket('udp4');
        s.bind(4789, '198.18.0.1');
        await once(s, 'listening');
        return s;
      });
      try {
        const got = once(sock, 'message');
        b.exec('bash', ['-c', 'echo -n after-crash > /dev/udp/198.18.0.1/4789']);
        const timeout = new Promise((_, rej) => setTimeout(() => rej(new Error('no UDP at the kernel in 5 s')), 5000).unref());
        const [msg] = (await Promise.race([got, timeout])) as [Buffer];
        assert.equal(msg.toString(), 'after-crash');
      } finally {
        sock.close();
      }

      // The next start: refused without consent if a stale program is there, takes over with it.
      const ph = loadPinhole({ ports: [4789], addresses: [] });
      try {
        await inNetns(a, () => {
          if (style === 'netlink') {
            assert.throws(
              () => attachXdp(ph.program.fd, { iface: 'up0' }),
              (e: { code?: string }) => e.code === 'ERR_XDP_FOREIGN_PROGRAM',
            );
          }
          const att = attachXdp(ph.program.fd, { iface: 'up0', replace: style === 'netlink' });
          assert.equal(getLinkSync('up0').xdp?.progId, ph.program.info().id);
          att.close();
          assert.equal(getLinkSync('up0').xdp?.attached, 'none');
        });
      } finally {
        ph.close();
      }
    });
  });
}
