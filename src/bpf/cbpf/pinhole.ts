/**
 * The pinhole policy (../pinhole/policy.ts) compiled to a classic BPF socket filter for the
 * AF_PACKET uplink. The filter keeps a frame on the socket (returns PINHOLE_SNAP_LEN) exactly
 * when the policy's verdict is `xsk` (reason `tunnel`), and returns 0 otherwise. The kernel's own
 * stack receives every frame regardless: a socket filter only decides what this socket sees.
 *
 * Only the verdict is computed, not the reason: every non-tunnel reason means "not for this
 * socket". That lets the filter fold the policy's "need N" checks into the loads themselves —
 * a cBPF packet load that does not fit in the frame ends the program with 0 (drop) — plus one
 * explicit probe (`ldb [x+7]`: the 8 bytes of the UDP header are present).
 *
 * Ports and addresses are baked into the program as constants (cBPF has no maps). When the port
 * or address set changes, compile a new filter and open a new socket with it: the filter is
 * locked (SO_LOCK_FILTER) so it cannot be swapped on a live socket. Put old and new socket in the
 * same PACKET_FANOUT group while they overlap so each frame is delivered to exactly one of them.
 *
 * VLAN. On receive the kernel takes the outer 802.1Q/802.1ad tag out of the frame into skb
 * metadata (skb_vlan_untag() in __netif_receive_skb_core, before packet taps run), whatever the
 * NIC's offload settings; AF_PACKET then reports it as tp_vlan_tci / TP_STATUS_VLAN_VALID. So an
 * AF_PACKET socket sees a tagged wire frame as [dst src inner-type ...] with SKF_AD_VLAN_TAG_PRESENT
 * = 1, and a double-tagged one with the inner tag still in the data. The filter therefore counts
 * the metadata tag as the first tag of the policy's walk: with it, at most one more tag may follow
 * in the data (the policy's limit of two). The result is that the filter on what the socket sees
 * agrees with the reference classifier on the frame as it was on the wire; on untagged frames
 * it agrees with the reference byte for byte. (A frame whose outer tag is cut short never reaches
 * packet taps: skb_vlan_untag drops it; the policy calls it `truncated` — kernel — too.)
 *
 * Program shape (X holds the current header offset; M[0] = L3 offset, M[1] = next offset):
 *
 *   ld vlan_tag_present ─┬─ 0 ─► ethertype at 12 / 16 / 20 (≤ 2 tags in the data)
 *                        └─ 1 ─► ethertype at 12 / 16      (≤ 1 tag in the data)
 *                                    │ A = ethertype, X = L3 offset
 *            0x0800 ─► IPv4: 0x45 ≤ byte0 ≤ 0x4f, frag bits 0, proto 17, [dst ∈ set],
 *                            X = L3 + 4·IHL, UDP complete, dport ∈ set ─► ret SNAP
 *            0x86dd ─► IPv6: version 6, [dst ∈ set], nh walk over 0/43/60 (6 steps unrolled),
 *                            nh = 17, UDP complete, dport ∈ set ─► ret SNAP
 *            other  ─► ret 0
 */
import { cbpf, SKF_AD_VLAN_TAG_PRESENT } from './asm.ts';
import type { CbpfBuilder, CbpfProgram } from './asm.ts';
import {
  ETH_P_8021AD,
  ETH_P_8021Q,
  ETH_P_IP,
  ETH_P_IPV6,
  IPPROTO_DSTOPTS,
  IPPROTO_HOPOPTS,
  IPPROTO_ROUTING,
  IPPROTO_UDP,
  MAX_IPV6_EXT_HEADERS,
} from '../pinhole/policy.ts';
import type { PinholeSpec } from '../pinhole/policy.ts';
import { policyState } from '../pinhole/reference.ts';

/** What the filter returns for tunnel frames: the snap length, large enough for any frame. */
export const PINHOLE_SNAP_LEN = 0x40000;

/** Port sets up to this size use one-instruction compares (short jumps); larger ones use jeq+ja. */
const SHORT_PORT_CHAIN = 200;

const M_L3 = 0;
const M_NEXT = 1;

/**
 * Compiles the pinhole policy for `spec` (ports validated like the reference: ERR_INVALID_PORT,
 * ERR_INVALID_ADDRESS) into a cBPF program. Deterministic: equal specs give equal programs.
 */
export function compilePinholeFilter(spec: PinholeSpec): CbpfProgram {
  const state = policyState(spec);
  const ports = [...state.ports].sort((x, y) => x - y);
  const v4 = [...state.ipv4].sort((x, y) => x - y);
  const v6 = [...state.ipv6].sort().map(hexWords);
  const a = cbpf();
  if (ports.length === 0) return a.ret.k(0).assemble();

  // Ethernet and VLAN. A = ethertype, X = L3 offset at 'dispatch'.
  a.ld.anc(SKF_AD_VLAN_TAG_PRESENT).jeq.k(0, 'untagged', null);
  // The kernel took the outer tag into metadata: one more tag at most in the data.
  tpid(a, 12, 'm.tag1', null).ldx.imm(14).ja('dispatch').label('m.tag1');
  tpid(a, 16, 'eth.drop', null).ldx.imm(18).ja('dispatch').label('untagged');
  tpid(a, 12, 'u.tag1', null).ldx.imm(14).ja('dispatch').label('u.tag1');
  tpid(a, 16, 'u.tag2', null).ldx.imm(18).ja('dispatch').label('u.tag2');
  tpid(a, 20, 'eth.drop', null)
    .ldx.imm(22)
    .label('dispatch')
    .jeq.k(ETH_P_IP, 'ipv4', null)
    .jeq.k(ETH_P_IPV6, null, 'eth.drop')
    .ja('ipv6') // far: past the IPv4 port chain
    .label('eth.drop')
    .ret.k(0);

  // IPv4, X = L3.
  a.label('ipv4')
    .stx(M_L3)
    .ldb.ind(0)
    .jge.k(0x45, null, 'v4.drop')
    .jgt.k(0x4f, 'v4.drop', null) // version 4, IHL ≥ 5
    .ldh.ind(6)
    .jset.k(0x3fff, 'v4.drop', null) // MF or fragment offset
    .ldb.ind(9)
    .jeq.k(IPPROTO_UDP, null, 'v4.drop');
  if (state.filterAddresses) {
    if (v4.length === 0) a.ja('v4.drop');
    else {
      a.ld.ind(16);
      for (const addr of v4) a.jeq.k(addr, 'v4.addr-ok', null);
      a.ja('v4.drop');
    }
  }
  a.label('v4.addr-ok')
    .ldb.ind(0)
    .and.k(0x0f)
    .lsh.k(2)
    .add.x()
    .tax() // X = L4 = L3 + 4·IHL
    .ldb.ind(7) // the whole UDP header is there, else the load drops the frame
    .ldh.ind(2)
    .ja('v4.ports')
    .label('v4.drop')
    .ret.k(0) // before the port chain, so early drops stay within 255
    .label('v4.ports');
  portChain(a, ports, 'v4');

  // IPv6, X = L3.
  a.label('ipv6').stx(M_L3).ldb.ind(0).and.k(0xf0).jeq.k(0x60, null, 'v6.drop');
  if (state.filterAddresses) {
    if (v6.length === 0) a.ja('v6.drop');
    for (let i = 0; i < v6.length; i++) {
      const w = v6[i]!;
      const next = i + 1 < v6.length ? `v6.addr${i + 1}` : 'v6.drop';
      a.label(`v6.addr${i}`);
      for (let j = 0; j < 4; j++) a.ld.ind(24 + 4 * j).jeq.k(w[j]!, j === 3 ? 'v6.addr-ok' : null, next);
    }
  }
  a.label('v6.addr-ok')
    .txa()
    .add.k(40)
    .st(M_NEXT)
    .ldb.ind(6) // A = next header
    .ldx.mem(M_NEXT); // X = its offset
  for (let i = 0; i < MAX_IPV6_EXT_HEADERS; i++) {
    a.jeq
      .k(IPPROTO_HOPOPTS, `v6.ext${i}`, null)
      .jeq.k(IPPROTO_ROUTING, `v6.ext${i}`, null)
      .jeq.k(IPPROTO_DSTOPTS, `v6.ext${i}`, 'v6.l4')
      .label(`v6.ext${i}`)
      .ldb.ind(1)
      .add.k(1)
      .lsh.k(3)
      .add.x()
      .st(M_NEXT) // next offset = X + (len + 1)·8
      .ldb.ind(0) // A = next header (the loads check the policy's "need 2")
      .ldx.mem(M_NEXT);
  }
  // MAX_IPV6_EXT_HEADERS walked: one more walked type is `ext-limit`, anything else but UDP is
  // not a tunnel frame either.
  a.label('v6.l4').jeq.k(IPPROTO_UDP, null, 'v6.drop').ldb.ind(7).ldh.ind(2).ja('v6.ports').label('v6.drop').ret.k(0).label('v6.ports');
  portChain(a, ports, 'v6');
  return a.assemble();
}

/** A = ethertype at `at`; jump to `tag` if it is a VLAN TPID. */
function tpid(a: CbpfBuilder, at: number, tag: string, other: string | null): CbpfBuilder {
  return a.ldh.abs(at).jeq.k(ETH_P_8021Q, tag, null).jeq.k(ETH_P_8021AD, tag, other);
}

/** A = destination port: accept when it is in `ports`, else fall through. */
function portChain(a: CbpfBuilder, ports: readonly number[], tag: string): void {
  const accept = `${tag}.accept`;
  if (ports.length <= SHORT_PORT_CHAIN) {
    for (const p of ports) a.jeq.k(p, accept, null);
    a.ja(`${tag}.miss`);
  } else {
    ports.forEach((p, i) => {
      a.jeq.k(p, null, `${tag}.p${i}`).ja(accept).label(`${tag}.p${i}`);
    });
    a.ja(`${tag}.miss`);
  }
  a.label(accept).ret.k(PINHOLE_SNAP_LEN);
  a.label(`${tag}.miss`).ret.k(0);
}

function hexWords(hex: string): number[] {
  const out: number[] = [];
  for (let i = 0; i < 4; i++) out.push(Number.parseInt(hex.slice(8 * i, 8 * i + 8), 16) >>> 0);
  return out;
}
