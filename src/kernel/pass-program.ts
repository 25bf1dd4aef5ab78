/** The smallest XDP program, for feature probes: pass every frame (r0 = XDP_PASS; exit). */
import { alu64, assemble, exit, R0 } from '../bpf/asm/index.ts';
import { XDP_PASS } from './bpf-attr.ts';

export const XDP_PASS_INSNS: Uint8Array = assemble([alu64.mov.imm(R0, XDP_PASS), exit()]);
