/**
 * Watching the interfaces a running pinhole depends on, event-driven: an rtnetlink subscription
 * to link notifications (RTNLGRP_LINK); on every notification (and after an overflow, when some
 * were lost) each watched interface is looked up again by index. It is *lost* when
 *   - it no longer exists in this namespace (deleted, or moved to another network namespace:
 *     both are RTM_DELLINK here) or its index now names another interface → ERR_UPLINK_GONE;
 *   - our XDP program is no longer the one attached (detached behind our back, e.g.
 *     `ip link set IF xdp off`, or replaced) → ERR_UPLINK_PROGRAM_DETACHED;
 *   - its MTU is no longer the one pinhole started with (the mode, the ports' slot sizes and the
 *     frames they send follow from it) → ERR_UPLINK_MTU_CHANGED.
 * Link down and up are reported as state changes (not losses: the sockets survive them); a link
 * already down when the watch starts is reported down at once.
 * A loss is reported once per interface. `pinhole uplink` turns it into a clean stop and a
 * non-zero exit; the daemon stops its forwarder and recovers when the interface is back.
 */
import { getLinkSync } from '../netlink/link.ts';
import { RTNLGRP_LINK } from '../netlink/rtnl.ts';
import { RtnlSubscription } from '../netlink/socket.ts';

export interface WatchTarget {
  ifindex: number;
  name: string;
  /** What the interface is to us, for messages: 'uplink', 'the --to interface', ... */
  role: string;
  /** When set, the XDP program id that must stay attached. */
  xdpProgId?: number;
  /** When set, the MTU the interface must keep. */
  mtu?: number;
}

export interface WatchEvents {
  onLost(code: 'ERR_UPLINK_GONE' | 'ERR_UPLINK_PROGRAM_DETACHED' | 'ERR_UPLINK_MTU_CHANGED', message: string, target: WatchTarget): void;
  onState?(state: 'up' | 'down', target: WatchTarget): void;
  /** The subscription failed: interfaces are no longer watched. */
  onError?(err: Error): void;
}

export interface LinkWatch {
  /** Looks at every target now (also done on each notification). */
  check(): void;
  close(): Promise<void>;
}

export function watchInterfaces(targets: readonly WatchTarget[], ev: WatchEvents): LinkWatch {
  const lost = new Set<WatchTarget>();
  const up = new Map<WatchTarget, boolean>();
  const check = (): void => {
    for (const t of targets) {
      if (lost.has(t)) continue;
      let link: ReturnType<typeof getLinkSync> | undefined;
      try {
        link = getLinkSync(t.ifindex);
      } catch {
        link = undefined;
      }
      if (!link || link.name !== t.name) {
        lost.add(t);
        ev.onLost('ERR_UPLINK_GONE', `${t.role} ${t.name} was deleted or moved to another network namespace`, t);
        continue;
      }
      if (t.xdpProgId !== undefined) {
        const ids = [link.xdp?.progId, link.xdp?.driveProgId, link.xdp?.skbProgId];
        if (!ids.includes(t.xdpProgId)) {
          lost.add(t);
          const now = link.xdp?.progId ? `program ${link.xdp.progId} is attached instead` : 'no program is attached';
          ev.onLost(
            'ERR_UPLINK_PROGRAM_DETACHED',
            `the pinhole XDP program ${t.xdpProgId} was removed from ${t.role} ${t.name} behind our back (${now})`,
            t,
          );
          continue;
        }
      }
      if (t.mtu !== undefined && link.mtu !== 0 && link.mtu !== t.mtu) {
        lost.add(t);
        ev.onLost('ERR_UPLINK_MTU_CHANGED', `the MTU of ${t.role} ${t.name} changed from ${t.mtu} to ${link.mtu}`, t);
        continue;
      }
      const isUp = link.operUp;
      if (up.get(t) !== isUp) {
        // First sight: only a link that is down is worth a word (started on a downed link).
        if (up.has(t) || !isUp) ev.onState?.(isUp ? 'up' : 'down', t);
        up.set(t, isUp);
      }
    }
  };
  const sub = RtnlSubscription.open({
    groups: [RTNLGRP_LINK],
    onMessages: () => check(),
    onOverflow: () => check(),
    onError: (err, fatal) => {
      if (fatal) ev.onError?.(err);
      else check();
    },
  });
  check();
  return { check, close: () => sub.close() };
}
