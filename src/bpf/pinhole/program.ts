/**
 * The pinhole XDP program, assembled from a PinholeSpec. It implements policy.ts exactly
 * (the reference classifier is its twin; the differential test holds them together).
 *
 * Registers (r6–r9 survive helper calls):
 *   r6 = ctx (struct xdp_md)   r7 = data   r8 = data_end   r9 = header cursor (l3, then l4)
 *   r0–r5 scratch
 * Stack (fp = r10):
 *   fp-4   u32  reason index (counter key)
 *   fp-8   u32  IP family of the frame (4 or 6), for the address check
 *   fp-12  u16  UDP destination port, bytes as on the wire (port-map key)
 *   fp-24  u32  IPv4 destination, bytes as on the wire (addrs4 key)
 *   fp-40  16B  IPv6 destination, bytes as on the wire (addrs6 key)
 *
 * Every path ends in a reason stub: `fp-4 = reason; goto count`. `count` increments the per-CPU
 * counter for that reason and then either returns XDP_PASS or, for `tunnel`, calls
 * bpf_redirect_map(xsks, rx_queue_index, XDP_PASS) — which itself falls back to XDP_PASS when
 * no socket is bound to the queue, so an unbound queue never blackholes tunnel traffic.
 *
 * Bounds: every packet read is preceded by a `cursor + N > data_end` check (the verifier demands
 * it and the policy's "need N" is exactly that check). The IPv6 extension-header walk and the
 * VLAN tags are unrolled (MAX_IPV6_EXT_HEADERS, MAX_VLAN_TAGS), so there is no loop to verify.
 */
import {
  alu64,
  end,
  exit,
  FP,
  call,
  Helper,
  jmp,
  ld,
  ldx,
  R0,
  R1,
  R2,
  R3,
  R4,
  R5,
  R6,
  R7,
  R8,
  R9,
  st,
  stx,
  type Insn,
} from '../asm/index.ts';
import type { MapSpec } from '../map-spec.ts';
import {
  ETH_P_8021AD,
  ETH_P_8021Q,
  ETH_P_ARP,
  ETH_P_IP,
  ETH_P_IPV6,
  IPPROTO_DSTOPTS,
  IPPROTO_FRAGMENT,
  IPPROTO_HOPOPTS,
  IPPROTO_ICMP,
  IPPROTO_ICMPV6,
  IPPROTO_ROUTING,
  IPPROTO_TCP,
  IPPROTO_UDP,
  MAX_IPV6_EXT_HEADERS,
  MAX_VLAN_TAGS,
  REASON_INDEX,
  REASONS,
  type PinholeSpec,
  type Reason,
} from './policy.ts';

const XDP_PASS = 2;

/** Offsets in struct xdp_md. */
const MD_DATA = 0;
const MD_DATA_END = 4;
const MD_RX_QUEUE_INDEX = 16;

const SK_REASON = -4;
const SK_FAMILY = -8;
const SK_PORT = -12;
const SK_ADDR4 = -24;
const SK_ADDR6 = -40;

export const PINHOLE_MAPS = {
  ports: 'ph_ports',
  addrs4: 'ph_addrs4',
  addrs6: 'ph_addrs6',
  xsks: 'ph_xsks',
  counters: 'ph_counters',
} as const;

export interface PinholeLimits {
  maxPorts: number;
  maxAddresses: number;
  maxQueues: number;
}

export const DEFAULT_LIMITS: PinholeLimits = { maxPorts: 256, maxAddresses: 64, maxQueues: 64 };

export interface PinholeMaps {
  ports: MapSpec;
  addrs4: MapSpec;
  addrs6: MapSpec;
  xsks: MapSpec;
  counters: MapSpec;
}

export function pinholeMapSpecs(limits: PinholeLimits = DEFAULT_LIMITS): PinholeMaps {
  return {
    ports: { name: PINHOLE_MAPS.ports, type: 'hash', keySize: 2, valueSize: 4, maxEntries: limits.maxPorts },
    addrs4: { name: PINHOLE_MAPS.addrs4, type: 'hash', keySize: 4, valueSize: 4, maxEntries: limits.maxAddresses },
    addrs6: { name: PINHOLE_MAPS.addrs6, type: 'hash', keySize: 16, valueSize: 4, maxEntries: limits.maxAddresses },
    xsks: { name: PINHOLE_MAPS.xsks, type: 'xskmap', keySize: 4, valueSize: 4, maxEntries: limits.maxQueues },
    counters: { name: PINHOLE_MAPS.counters, type: 'percpu_array', keySize: 4, valueSize: 8, maxEntries: REASONS.length },
  };
}

export function filtersAddresses(spec: PinholeSpec): boolean {
  return spec.filterAddresses ?? spec.addresses.length > 0;
}

const to = (r: Reason): string => `r_${r}`;

/** Branch to `label` when r`reg` equals any of `values`. */
function jeqAny(reg: typeof R2, values: readonly number[], label: string): Insn[] {
  return values.map((v) => jmp.jeq.imm(reg, v, label));
}

/** The instruction list of the pinhole program (assemble with the fds of pinholeMapSpecs()). */
export function buildPinhole(spec: PinholeSpec): Insn[] {
  const p: Insn[] = [];
  const push = (...i: Insn[]): void => {
    p.push(...i);
  };
  const VLAN = [ETH_P_8021Q, ETH_P_8021AD];
  const EXT = [IPPROTO_HOPOPTS, IPPROTO_ROUTING, IPPROTO_DSTOPTS];

  // --- Ethernet -------------------------------------------------------------------------------
  push(
    alu64.mov.reg(R6, R1).note('r6 = ctx'),
    ldx.w(R7, R6, MD_DATA).note('r7 = data'),
    ldx.w(R8, R6, MD_DATA_END).note('r8 = data_end'),
    alu64.mov.reg(R9, R7),
    alu64.add.imm(R9, 14),
    jmp.jgt.reg(R9, R8, to('truncated')).note('need 14: Ethernet header'),
    ldx.h(R2, R7, 12),
    end.be(R2, 16).note('r2 = ethertype'),
  );

  // --- VLAN tags (unrolled): r9 points at the tag, inner ethertype at +2 ------------------------
  for (let t = 0; t < MAX_VLAN_TAGS; t++) {
    push(
      ...jeqAny(R2, VLAN, `vlan${t}`),
      jmp.ja('l3'),
      alu64.mov.reg(R3, R9).sym(`vlan${t}`),
      alu64.add.imm(R3, 4),
      jmp.jgt.reg(R3, R8, to('truncated')).note(`need 4: VLAN tag ${t + 1}`),
      ldx.h(R2, R9, 2),
      end.be(R2, 16),
      alu64.mov.reg(R9, R3),
    );
  }
  push(...jeqAny(R2, VLAN, to('vlan-depth')));

  // --- L3 dispatch ------------------------------------------------------------------------------
  push(
    jmp.jeq.imm(R2, ETH_P_ARP, to('arp')).sym('l3'),
    jmp.jeq.imm(R2, ETH_P_IP, 'ipv4'),
    jmp.jeq.imm(R2, ETH_P_IPV6, 'ipv6'),
    jmp.ja(to('non-ip')),
  );

  // --- IPv4 -------------------------------------------------------------------------------------
  push(
    alu64.mov.reg(R3, R9).sym('ipv4'),
    alu64.add.imm(R3, 20),
    jmp.jgt.reg(R3, R8, to('truncated')).note('need 20: IPv4 header'),
    ldx.b(R2, R9, 0),
    alu64.mov.reg(R3, R2),
    alu64.rsh.imm(R3, 4),
    jmp.jne.imm(R3, 4, to('bad-header')).note('version 4'),
    alu64.and.imm(R2, 0x0f),
    jmp.jlt.imm(R2, 5, to('bad-header')).note('IHL >= 5'),
    alu64.lsh.imm(R2, 2),
    alu64.mov.reg(R3, R9),
    alu64.add.reg(R3, R2),
    jmp.jgt.reg(R3, R8, to('truncated')).note('need IHL*4: options'),
    ldx.h(R4, R9, 6),
    end.be(R4, 16),
    alu64.and.imm(R4, 0x3fff),
    jmp.jne.imm(R4, 0, to('fragment')).note('MF or offset'),
    ldx.b(R4, R9, 9).note('r4 = protocol'),
    jmp.jeq.imm(R4, IPPROTO_ICMP, to('icmp')),
    jmp.jeq.imm(R4, IPPROTO_TCP, to('tcp')),
    jmp.jne.imm(R4, IPPROTO_UDP, to('other-l4')),
    ldx.w(R5, R9, 16),
    stx.w(FP, SK_ADDR4, R5).note('key: IPv4 destination'),
    st.w(FP, SK_FAMILY, 4),
    alu64.mov.reg(R9, R3).note('r9 = UDP header'),
    jmp.ja('udp'),
  );

  // --- IPv6 -------------------------------------------------------------------------------------
  push(
    alu64.mov.reg(R3, R9).sym('ipv6'),
    alu64.add.imm(R3, 40),
    jmp.jgt.reg(R3, R8, to('truncated')).note('need 40: IPv6 header'),
    ldx.b(R2, R9, 0),
    alu64.rsh.imm(R2, 4),
    jmp.jne.imm(R2, 6, to('bad-header')).note('version 6'),
    ldx.b(R4, R9, 6).note('r4 = next header'),
    ldx.dw(R5, R9, 24),
    stx.dw(FP, SK_ADDR6, R5).note('key: IPv6 destination'),
    ldx.dw(R5, R9, 32),
    stx.dw(FP, SK_ADDR6 + 8, R5),
  );
  // Extension headers (unrolled): r3 = cursor, r4 = next header.
  for (let e = 0; e < MAX_IPV6_EXT_HEADERS; e++) {
    push(
      ...jeqAny(R4, EXT, `ext${e}`),
      jmp.ja('l4v6'),
      alu64.mov.reg(R5, R3).sym(`ext${e}`),
      alu64.add.imm(R5, 2),
      jmp.jgt.reg(R5, R8, to('truncated')).note(`need 2: extension header ${e + 1}`),
      ldx.b(R4, R3, 0),
      ldx.b(R5, R3, 1),
      alu64.add.imm(R5, 1),
      alu64.lsh.imm(R5, 3),
      alu64.add.reg(R3, R5).note('skip (len + 1) * 8'),
    );
  }
  push(
    ...jeqAny(R4, EXT, to('ext-limit')),
    jmp.jeq.imm(R4, IPPROTO_FRAGMENT, to('fragment')).sym('l4v6'),
    jmp.jeq.imm(R4, IPPROTO_ICMPV6, to('icmpv6')),
    jmp.jeq.imm(R4, IPPROTO_TCP, to('tcp')),
    jmp.jne.imm(R4, IPPROTO_UDP, to('other-l4')),
    st.w(FP, SK_FAMILY, 6),
    alu64.mov.reg(R9, R3).note('r9 = UDP header'),
  );

  // --- UDP --------------------------------------------------------------------------------------
  push(
    alu64.mov.reg(R3, R9).sym('udp'),
    alu64.add.imm(R3, 8),
    jmp.jgt.reg(R3, R8, to('truncated')).note('need 8: UDP header'),
    ldx.h(R2, R9, 2),
    stx.h(FP, SK_PORT, R2).note('key: destination port'),
    ld.map(R1, PINHOLE_MAPS.ports),
    alu64.mov.reg(R2, FP),
    alu64.add.imm(R2, SK_PORT),
    call(Helper.map_lookup_elem),
    jmp.jeq.imm(R0, 0, to('udp-port')),
  );
  if (filtersAddresses(spec)) {
    push(
      ldx.w(R1, FP, SK_FAMILY),
      jmp.jeq.imm(R1, 6, 'addr6'),
      ld.map(R1, PINHOLE_MAPS.addrs4),
      alu64.mov.reg(R2, FP),
      alu64.add.imm(R2, SK_ADDR4),
      call(Helper.map_lookup_elem),
      jmp.jeq.imm(R0, 0, to('address')),
      jmp.ja(to('tunnel')),
      ld.map(R1, PINHOLE_MAPS.addrs6).sym('addr6'),
      alu64.mov.reg(R2, FP),
      alu64.add.imm(R2, SK_ADDR6),
      call(Helper.map_lookup_elem),
      jmp.jeq.imm(R0, 0, to('address')),
    );
  }
  push(jmp.ja(to('tunnel')));

  // --- Reason stubs -----------------------------------------------------------------------------
  // The verifier rejects unreachable code: without the address filter, `address` has no stub.
  for (const r of REASONS) {
    if (r === 'address' && !filtersAddresses(spec)) continue;
    push(st.w(FP, SK_REASON, REASON_INDEX[r]).sym(to(r)).note(r), jmp.ja('count'));
  }

  // --- Count, then pass or redirect ---------------------------------------------------------------
  push(
    ld.map(R1, PINHOLE_MAPS.counters).sym('count'),
    alu64.mov.reg(R2, FP),
    alu64.add.imm(R2, SK_REASON),
    call(Helper.map_lookup_elem),
    jmp.jeq.imm(R0, 0, 'verdict'),
    ldx.dw(R1, R0, 0),
    alu64.add.imm(R1, 1),
    stx.dw(R0, 0, R1).note('per-CPU: no atomic needed'),
    ldx.w(R1, FP, SK_REASON).sym('verdict'),
    jmp.jeq.imm(R1, REASON_INDEX.tunnel, 'redirect'),
    alu64.mov.imm(R0, XDP_PASS),
    exit(),
    ld.map(R1, PINHOLE_MAPS.xsks).sym('redirect'),
    ldx.w(R2, R6, MD_RX_QUEUE_INDEX).note('key: rx queue'),
    alu64.mov.imm(R3, XDP_PASS).note('no socket on this queue: pass'),
    call(Helper.redirect_map),
    exit(),
  );
  return p;
}
