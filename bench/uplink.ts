/**
 * Uplink benchmark: the cross-connect and receive-and-drop scenarios of `pinhole bench`
 * (src/control/bench/uplink.ts) for pinhole AF_XDP and AF_PACKET, the kernel, the in-kernel XDP
 * ceiling and the C reference forwarder. Root; `node --import tsx bench/uplink.ts [--repeat 5] [--quick]`.
 */
import { runPart } from './part.ts';

await runPart('uplink');
