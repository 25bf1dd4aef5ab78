/**
 * Child for the workload crash test: run with `ip netns exec NS node --import tsx
 * test/kernel/redirect-all-crash-child.ts`. Loads redirect-all, attaches it to wl0 (bpf_link),
 * binds an XSK to queue 0 and registers it, prints one JSON line {"ready":true,...} and then
 * waits to be killed.
 */
import { attachRedirectAll, loadRedirectAll } from '../../src/kernel/workload.ts';
import { openXsk } from '../../src/uplink/xsk/socket.ts';

const wl = loadRedirectAll({ queues: 1 });
const att = attachRedirectAll(wl, 'wl0', 'auto');
const xsk = await openXsk({ iface: 'wl0', queue: 0, frameCount: 256, rxSize: 128, txSize: 128, fillSize: 128, compSize: 128 });
wl.bindQueue(0, xsk.fd);
process.stdout.write(JSON.stringify({ ready: true, via: att.via, mode: att.mode, progId: wl.program.info().id }) + '\n');
setInterval(() => {}, 1 << 30);
