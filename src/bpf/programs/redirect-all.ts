/**
 * The redirect-all XDP program for workload interfaces (the host side of a pod's veth).
 *
 * On the uplink the host has traffic of its own, so the pinhole classifies and passes everything
 * that is not a tunnel. On a workload interface every frame belongs to the dataplane: the program
 * does not look at the frame at all, it hands it to the AF_XDP socket of its RX queue:
 *
 *   bpf_redirect_map(xsks, rx_queue_index, XDP_DROP)
 *
 * Why the fallback is XDP_DROP and not XDP_PASS (the pinhole's fallback): a queue with no socket
 * bound (startup before the sockets are registered, a socket closed or crashed worker, a queue
 * the dataplane did not open) would otherwise hand the pod's frames to the host's stack. There
 * they would be answered (ARP/ND, ICMP), routed by the host's tables, or forwarded out of the
 * uplink unencapsulated — around the tunnel and whatever policy the dataplane applies. The
 * dataplane is the pod's only way out, so a missing socket fails closed: the frame is dropped and
 * counted (`no-socket`), visible in metrics, never leaked. (When the whole process dies the
 * bpf_link attachment goes with it and the veth is the kernel's again — see kernel/workload.ts.)
 *
 * Counters (per-CPU array, one u64 slot per index; no atomics needed per CPU):
 *   0 redirected  bpf_redirect_map returned XDP_REDIRECT: a socket is registered on the queue
 *                 (the socket may still drop the frame if its RX ring is full: see its stats)
 *   1 no-socket   it returned the fallback XDP_DROP: no socket on that queue (or queue ≥ map size)
 *
 * Registers: r7 = verdict of bpf_redirect_map (callee-saved across the counter lookup).
 * Stack: fp-4 u32 counter index (the lookup key).
 */
import { alu64, call, exit, FP, Helper, jmp, ld, ldx, R0, R1, R2, R3, R7, st, stx, type Insn } from '../asm/index.ts';
import type { MapSpec } from '../map-spec.ts';

const XDP_DROP = 1;
const XDP_REDIRECT = 4;

/** Offset of rx_queue_index in struct xdp_md. */
const MD_RX_QUEUE_INDEX = 16;

const SK_INDEX = -4;

/** Counter names in index order. */
export const REDIRECT_ALL_COUNTERS = ['redirected', 'no-socket'] as const;
export type RedirectAllCounter = (typeof REDIRECT_ALL_COUNTERS)[number];
export const REDIRECT_ALL_INDEX: Record<RedirectAllCounter, number> = { redirected: 0, 'no-socket': 1 };

/** Kernel object names (≤ 15 characters), distinct from the pinhole's so bpftool tells them apart. */
export const REDIRECT_ALL_MAPS = {
  xsks: 'ph_wl_xsks',
  counters: 'ph_wl_counters',
} as const;

export const REDIRECT_ALL_PROGRAM_NAME = 'ph_redirect_all';

/** Default size of the XSKMAP: queues 0..63 can have a socket. */
export const DEFAULT_WORKLOAD_QUEUES = 64;

export interface RedirectAllMaps {
  xsks: MapSpec;
  counters: MapSpec;
}

export function redirectAllMapSpecs(queues: number = DEFAULT_WORKLOAD_QUEUES): RedirectAllMaps {
  return {
    xsks: { name: REDIRECT_ALL_MAPS.xsks, type: 'xskmap', keySize: 4, valueSize: 4, maxEntries: queues },
    counters: {
      name: REDIRECT_ALL_MAPS.counters,
      type: 'percpu_array',
      keySize: 4,
      valueSize: 8,
      maxEntries: REDIRECT_ALL_COUNTERS.length,
    },
  };
}

/** The instruction list of the redirect-all program (assemble with the fds of redirectAllMapSpecs()). */
export function buildRedirectAll(): Insn[] {
  return [
    ldx.w(R2, R1, MD_RX_QUEUE_INDEX).note('key: rx queue'),
    ld.map(R1, REDIRECT_ALL_MAPS.xsks),
    alu64.mov.imm(R3, XDP_DROP).note('no socket on this queue: drop, never pass'),
    call(Helper.redirect_map),
    alu64.mov.reg(R7, R0).note('r7 = verdict'),
    st.w(FP, SK_INDEX, REDIRECT_ALL_INDEX.redirected).note('redirected'),
    jmp.jeq.imm(R0, XDP_REDIRECT, 'count'),
    st.w(FP, SK_INDEX, REDIRECT_ALL_INDEX['no-socket']).note('no-socket'),
    ld.map(R1, REDIRECT_ALL_MAPS.counters).sym('count'),
    alu64.mov.reg(R2, FP),
    alu64.add.imm(R2, SK_INDEX),
    call(Helper.map_lookup_elem),
    jmp.jeq.imm(R0, 0, 'verdict'),
    ldx.dw(R1, R0, 0),
    alu64.add.imm(R1, 1),
    stx.dw(R0, 0, R1).note('per-CPU: no atomic needed'),
    alu64.mov.reg(R0, R7).sym('verdict'),
    exit(),
  ];
}
