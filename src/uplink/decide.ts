/**
 * Choosing the uplink mode from probe results: pure, so every branch is unit-tested with fake
 * probe results. AF_XDP is chosen only when nothing we know of stands in its way; every reason
 * that pushes us to AF_PACKET (or to generic XDP) is reported with a stable code.
 */
import type { FeatureSet } from '../kernel/features.ts';
import type { IfaceInfo } from '../kernel/iface.ts';

export type UplinkMode = 'afxdp' | 'afpacket';

export interface DecisionReason {
  /** Stable code, e.g. `XDP_SOCKETS_MISSING`, `FOREIGN_XDP_PROGRAM`. */
  code: string;
  message: string;
}

export interface Decision {
  mode: UplinkMode;
  /** For afxdp: the XDP attach mode to try first. */
  xdpMode?: 'native' | 'generic';
  reasons: DecisionReason[];
}

/** Program names pinhole loads; an attached program by this name is ours (e.g. left by a crash). */
export const OWN_PROGRAM_NAMES = new Set(['pinhole']);

const NO_NATIVE_XDP_KINDS = new Set(['bond', 'team', 'vlan', 'macvlan', 'ipvlan', 'bridge', 'loopback']);

export function decideUplink(features: FeatureSet, iface: IfaceInfo | undefined, opts: { replaceForeign?: boolean } = {}): Decision {
  const reasons: DecisionReason[] = [];
  const blockers: DecisionReason[] = [];

  for (const [key, label] of [
    ['bpf', 'the bpf syscall'],
    ['xdpSockets', 'XDP sockets (AF_XDP)'],
  ] as const) {
    const f = features[key];
    if (f.status === 'ok') continue;
    const code = `${key === 'bpf' ? 'BPF' : 'XDP_SOCKETS'}_${f.status === 'not-permitted' ? 'NOT_PERMITTED' : 'UNAVAILABLE'}`;
    blockers.push({ code, message: `${label}: ${f.status}${f.detail ? ` (${f.detail})` : ''}` });
  }

  let xdpMode: 'native' | 'generic' = 'native';
  if (iface) {
    if (NO_NATIVE_XDP_KINDS.has(iface.kind)) {
      blockers.push({
        code: 'IFACE_KIND_UNSUPPORTED',
        message: `${iface.name} is a ${iface.kind} device: native XDP is not supported on it (attach to its lower devices instead)`,
      });
    }
    if (iface.xdp.mode !== 'none') {
      const name = iface.xdp.progName ?? '';
      const who = `program id ${iface.xdp.progId ?? '?'}${name ? ` (${name})` : ''}`;
      if (OWN_PROGRAM_NAMES.has(name)) {
        reasons.push({
          code: 'STALE_PINHOLE_PROGRAM',
          message: `a pinhole ${who} is attached in ${iface.xdp.mode} mode (left by an earlier run); it passes traffic to the kernel and will be taken over`,
        });
      } else if (opts.replaceForeign) {
        reasons.push({
          code: 'FOREIGN_XDP_PROGRAM_REPLACED',
          message: `XDP ${who} of another owner is attached in ${iface.xdp.mode} mode; replacing it as requested`,
        });
      } else {
        blockers.push({
          code: 'FOREIGN_XDP_PROGRAM',
          message: `XDP ${who} of another owner is attached in ${iface.xdp.mode} mode; pinhole never replaces it unless told to`,
        });
      }
    }
    if (iface.maxXdpMtu !== undefined && iface.mtu > iface.maxXdpMtu) {
      xdpMode = 'generic';
      reasons.push({
        code: 'MTU_TOO_LARGE_FOR_NATIVE_XDP',
        message: `MTU ${iface.mtu} exceeds the ${iface.maxXdpMtu} that native XDP on ${iface.driver} accepts; generic (skb) XDP will be used`,
      });
    }
    if (iface.kind === 'veth' || iface.driver === 'veth') {
      reasons.push({ code: 'COPY_MODE_ONLY', message: 'veth supports AF_XDP in copy mode only (no zero-copy)' });
    }
  }

  if (blockers.length > 0) return { mode: 'afpacket', reasons: [...blockers, ...reasons] };
  return { mode: 'afxdp', xdpMode, reasons };
}
