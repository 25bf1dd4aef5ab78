/**
 * VXLAN benchmark: the workload-to-workload and host-cost scenarios of `pinhole bench`
 * (src/control/bench/vxlan.ts), pinhole AF_XDP and AF_PACKET against the kernel's vxlan. Root;
 * `node --import tsx bench/vxlan.ts [--repeat 5] [--quick]`.
 */
import { runPart } from './part.ts';

await runPart('vxlan');
