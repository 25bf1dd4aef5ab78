/**
 * Child for the crash-safety test: run with `ip netns exec NS node --import tsx
 * test/kernel/xsk-crash-child.ts bpf_link|netlink`. Loads the pinhole, attaches it to up0 (bpf_link,
 * or netlink with persist), binds an XSK to queue 0 and registers it, prints one JSON line
 * {"ready":true,...} and then waits to be killed.
 */
import { loadPinhole } from '../../src/kernel/pinhole.ts';
import { attachXdp } from '../../src/kernel/xdp-attach.ts';
import { openXsk } from '../../src/uplink/xsk/socket.ts';
import { u32 } from './xsk-netns.ts';

const persist = process.argv[2] === 'netlink';
const ph = loadPinhole({ ports: [4789], addresses: [] }, { name: 'pinhole' });
const att = attachXdp(ph.program.fd, { iface: 'up0', mode: 'native', persist });
const xsk = await openXsk({ iface: 'up0', queue: 0, frameCount: 256, rxSize: 128, txSize: 128, fillSize: 128, compSize: 128 });
ph.maps.xsks.update(u32(0), u32(xsk.fd));
process.stdout.write(JSON.stringify({ ready: true, via: att.via, mode: att.mode, progId: ph.program.info().id }) + '\n');
setInterval(() => {}, 1 << 30);
