/**
 * Runs netlink code inside a test namespace: kernel tests start it with
 * `ip netns exec NS node --import tsx test/kernel/netlink-child.ts <scenario> [args]` so that
 * every socket it opens lives in that namespace, never in the machine's own.
 *
 *  - `link IFNAME`: one-shot; prints a JSON report of getLink/listLinks/XDP attach and detach.
 *  - `mirror [rcvbuf]`: interactive; reads JSON commands on stdin, one per line, and answers
 *    each with one JSON line on stdout (see `handle` below).
 */
import { createInterface } from 'node:readline';
import { alloc, getSys } from '../../src/sys/index.ts';
import { clearLinkXdp, getLink, getLinkSync, listLinks, listLinksSync, setLinkXdp, setLinkXdpSync } from '../../src/netlink/link.ts';

const BPF_PROG_LOAD = 5;
const BPF_PROG_TYPE_XDP = 6;

/** Loads `r0 = XDP_PASS; exit` with raw bpf(2); returns the program fd. */
function loadXdpPass(): number {
  const insns = alloc(16);
  insns.set([0xb7, 0x00, 0, 0, 2, 0, 0, 0]); // BPF_ALU64 | BPF_MOV | BPF_K: r0 = 2
  insns.set([0x95, 0, 0, 0, 0, 0, 0, 0], 8); // BPF_JMP | BPF_EXIT
  const license = alloc(4);
  license.set([0x47, 0x50, 0x4c, 0]); // "GPL"
  const attr = alloc(128);
  const dv = new DataView(attr.buffer);
  const sys = getSys();
  dv.setUint32(0, BPF_PROG_TYPE_XDP, true);
  dv.setUint32(4, 2, true);
  dv.setBigUint64(8, sys.addressOf(insns), true);
  dv.setBigUint64(16, sys.addressOf(license), true);
  return sys.bpf(BPF_PROG_LOAD, attr);
}

function errInfo(e: unknown): unknown {
  const x = e as { code?: string; errnoCode?: string; extAck?: string; message?: string };
  return { code: x.code, errnoCode: x.errnoCode, extAck: x.extAck, message: x.message };
}

async function linkScenario(ifname: string): Promise<void> {
  const out: Record<string, unknown> = {};
  out.sync = getLinkSync(ifname);
  const byName = await getLink(ifname);
  out.byName = byName;
  out.byIndex = await getLink(byName.index);
  out.list = (await listLinks()).map((l) => l.name);
  out.listSync = listLinksSync().map((l) => l.name);
  for (const name of ['nope0', 'x'.repeat(20)]) {
    try {
      await getLink(name);
      out[`missing:${name}`] = 'found?!';
    } catch (e) {
      out[`missing:${name}`] = errInfo(e);
    }
  }
  try {
    getLinkSync(987654);
    out.missingIndex = 'found?!';
  } catch (e) {
    out.missingIndex = errInfo(e);
  }

  const prog = loadXdpPass();
  const prog2 = loadXdpPass();
  await setLinkXdp(byName.index, prog, { mode: 'generic' });
  out.attached = (await getLink(byName.index)).xdp;
  try {
    await setLinkXdp(byName.index, prog2, { mode: 'generic' });
    out.second = 'attached?!';
  } catch (e) {
    out.second = errInfo(e);
  }
  setLinkXdpSync(byName.index, prog2, { mode: 'generic', replace: true, expectedFd: prog });
  out.replaced = (await getLink(byName.index)).xdp;
  try {
    await setLinkXdp(byName.index, prog, { mode: 'generic', replace: true, expectedFd: prog });
    out.wrongExpected = 'replaced?!';
  } catch (e) {
    out.wrongExpected = errInfo(e);
  }
  await clearLinkXdp(byName.index, 'generic');
  out.cleared = (await getLink(byName.index)).xdp;
  getSys().close(prog);
  getSys().close(prog2);
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

const [scenario, ...args] = process.argv.slice(2);
if (scenario === 'link') {
  await linkScenario(args[0]!);
} else if (scenario === 'mirror') {
  const { runMirrorChild } = await import('./netlink-mirror-child.ts');
  await runMirrorChild(args, createInterface({ input: process.stdin }));
} else {
  process.stderr.write(`unknown scenario ${scenario}\n`);
  process.exitCode = 2;
}
