/**
 * Choosing the uplink mode from probe results: pure, so every branch is unit-tested with fake
 * probe results. AF_XDP is chosen only when nothing we know of stands in its way; every reason
 * that pushes us to AF_PACKET (or to generic XDP) is reported with a stable code.
 */
import type { FeatureSet } from '../kernel/features.ts';
import type { IfaceInfo } from '../kernel/iface.ts';
import { xskMaxMtu, XSK_UMEM_FRAME } from './xsk/sizing.ts';

export type UplinkMode = 'afxdp' | 'afpacket';

export interface DecisionReason {
  /** Stable code, e.g. `XDP_SOCKETS_UNAVAILABLE`, `FOREIGN_XDP_PROGRAM`. */
  code: string;
  message: string;
}

export interface Decision {
  mode: UplinkMode;
  /** For afxdp: the XDP attach mode to try first. */
  xdpMode?: 'native' | 'generic';
  reasons: DecisionReason[];
}

/** What else is known about the interface beyond the probe (the uplink's own checks). */
export interface DecideOptions {
  replaceForeign?: boolean;
  /**
   * A pinhole already runs on this interface (it holds the interface lock, uplink/lock.ts):
   * its program, if attached, is live, not stale; a second pinhole would be refused.
   */
  running?: { pid?: number };
  /**
   * Tunnel ports some other UDP socket (e.g. a kernel vxlan device) already receives on an
   * address the pinhole would take (port guard `busy`). AF_XDP would take that socket's traffic
   * away from it; AF_PACKET only copies it.
   */
  heldPorts?: readonly { family: 4 | 6; port: number; holder?: string }[];
}

/**
 * Largest MTU AF_XDP serves: a frame (the MTU, its Ethernet header, an 802.1Q tag and the FCS some
 * drivers count) must fit one 4 KiB UMEM frame behind XDP_PACKET_HEADROOM (xskMaxMtu). A larger
 * one would be dropped by the kernel on the way into the socket (xsk_rcv: no multi-buffer here),
 * and the program would have taken it from the host: AF_PACKET serves such an interface whole.
 */
export const AFXDP_MAX_MTU = xskMaxMtu(XSK_UMEM_FRAME);

const NO_NATIVE_XDP_KINDS = new Set(['bond', 'team', 'vlan', 'macvlan', 'ipvlan', 'bridge', 'loopback']);

export function decideUplink(features: FeatureSet, iface: IfaceInfo | undefined, opts: DecideOptions = {}): Decision {
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

  for (const h of opts.heldPorts ?? []) {
    blockers.push({
      code: 'PORT_HELD_BY_KERNEL_SOCKET',
      message: `UDP port ${h.port} (IPv${h.family}) is bound by another socket${h.holder ? ` (${h.holder})` : ''}; AF_XDP would take all its traffic away from it (AF_PACKET only copies it). Give pinhole tunnel --address(es) that socket is not bound to, or stop it`,
    });
  }

  let xdpMode: 'native' | 'generic' = 'native';
  if (iface) {
    if (opts.running) {
      blockers.push({
        code: 'PINHOLE_RUNNING',
        message: `a pinhole (pid ${opts.running.pid ?? '?'}) is running on ${iface.name}; a second one on this interface is refused (ERR_UPLINK_BUSY)`,
      });
    }
    if (iface.mtu > AFXDP_MAX_MTU) {
      blockers.push({
        code: 'MTU_TOO_LARGE_FOR_AF_XDP',
        message: `MTU ${iface.mtu} is above the ${AFXDP_MAX_MTU} that AF_XDP serves: a frame must fit one ${XSK_UMEM_FRAME}-byte UMEM frame (multi-buffer AF_XDP is not used); AF_PACKET carries jumbo frames`,
      });
    }
    if (NO_NATIVE_XDP_KINDS.has(iface.kind)) {
      blockers.push({
        code: 'IFACE_KIND_UNSUPPORTED',
        message: `${iface.name} is a ${iface.kind} device: native XDP is not supported on it (attach to its lower devices instead)`,
      });
    }
    if (iface.xdp.mode !== 'none') {
      const name = iface.xdp.progName ?? '';
      const who = `program id ${iface.xdp.progId ?? '?'}${name ? ` (${name})` : ''}`;
      if (iface.xdp.ours && opts.running) {
        reasons.push({
          code: 'LIVE_PINHOLE_PROGRAM',
          message: `the pinhole ${who} attached in ${iface.xdp.mode} mode belongs to the running pinhole`,
        });
      } else if (iface.xdp.ours) {
        const replacedHow =
          iface.xdp.mode === xdpModeFor(iface)
            ? 'will be replaced atomically'
            : `will be detached and pinhole attached in ${xdpModeFor(iface)} mode`;
        reasons.push({
          code: 'STALE_PINHOLE_PROGRAM',
          message: `a pinhole ${who} is attached in ${iface.xdp.mode} mode (left by an earlier run, identified by its tag and maps); it passes traffic to the kernel and ${replacedHow}`,
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
    if (GENERIC_ONLY_KINDS.has(iface.kind)) {
      xdpMode = 'generic';
      reasons.push({
        code: 'NATIVE_XDP_UNSUPPORTED',
        message: `${iface.name} is a ${iface.kind} device, which has no native XDP hook; generic (skb) XDP will be used`,
      });
    } else if (xdpModeFor(iface) === 'generic') {
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

/** The XDP mode to attach in first: generic when the MTU is above the driver's native limit. */
/**
 * Software tunnel devices the kernel gives no native XDP hook (no ndo_bpf): attach falls back to
 * generic (skb) XDP there, so predict that instead of promising native (issue 7: `probe` on a
 * vxlan device said native while `uplink` got generic).
 */
const GENERIC_ONLY_KINDS = new Set(['vxlan', 'geneve', 'gretap', 'ip6gretap', 'ipip', 'sit', 'gre', 'ip6tnl', 'wireguard', 'dummy']);

function xdpModeFor(iface: IfaceInfo): 'native' | 'generic' {
  if (GENERIC_ONLY_KINDS.has(iface.kind)) return 'generic';
  return iface.maxXdpMtu !== undefined && iface.mtu > iface.maxXdpMtu ? 'generic' : 'native';
}
