/**
 * Attaching an XDP program to an interface: bpf_link (BPF_LINK_CREATE, attach_type BPF_XDP,
 * kernel ≥ 5.9) first, rtnetlink (RTM_SETLINK + IFLA_XDP) as the fallback; native (driver) mode
 * first, generic (skb) mode as the fallback. Returns an owner whose `close()` detaches.
 *
 * Never replaces another owner's program: if the interface already has an XDP program the
 * attach fails with ERR_XDP_FOREIGN_PROGRAM, unless `replace: true` (then only through netlink,
 * the one path that can replace a program it did not attach; a program held by someone's
 * bpf_link cannot be replaced at all).
 *
 * Crash safety — the choice `persist` exposes:
 *  - bpf_link (persist: false, the default): the attachment lives exactly as long as the link fd.
 *    If the process dies (even SIGKILL) the kernel detaches the program: nothing stale is left
 *    and all traffic goes back to the kernel stack, including tunnel traffic (the kernel may
 *    then answer it, e.g. ICMP port unreachable). A restart attaches afresh without `replace`.
 *  - netlink (persist: true): the attachment outlives the process. After a SIGKILL the program
 *    stays; its XSKMAP entries vanish with the dead sockets, and `bpf_redirect_map(..., XDP_PASS)`
 *    then passes every frame to the kernel, so host traffic keeps flowing. The stale program
 *    must be taken over by the next start (`replace: true` after checking it is ours, e.g. by
 *    program name or a pinned id) or removed by an operator. This is the behaviour the uplink
 *    issue asks for ("a stale program after SIGKILL keeps passing traffic").
 *  - (not implemented) a bpf_link pinned in bpffs would also survive the process and be
 *    replaceable atomically with BPF_LINK_UPDATE by the next start.
 *
 * References: include/uapi/linux/bpf.h (link_create), include/uapi/linux/if_link.h (XDP_FLAGS_*),
 * net/core/dev.c dev_xdp_attach (EBUSY when a program is attached by another mechanism).
 */
import { errnoCodeOf, getSys, PinholeError } from '../sys/index.ts';
import { getLinkSync, setLinkXdpSync } from '../netlink/link.ts';
import { fdById } from './object.ts';
import { BPF_LINK_CREATE, BPF_PROG_GET_FD_BY_ID, BPF_XDP, LinkCreateAttr, XDP_FLAGS_DRV_MODE, XDP_FLAGS_SKB_MODE } from './bpf-attr.ts';

export type XdpMode = 'native' | 'generic';
export type XdpVia = 'bpf_link' | 'netlink';

export interface AttachXdpOptions {
  /** Interface name or ifindex, in the calling thread's network namespace. */
  iface: string | number;
  /** 'auto' (default): native, then generic. */
  mode?: 'auto' | XdpMode;
  /** 'auto' (default): bpf_link then netlink, unless `persist`. */
  via?: 'auto' | XdpVia;
  /** Keep the program attached if this process dies (netlink attach). Default false. */
  persist?: boolean;
  /** Replace a program already attached (netlink only). Default false: fail instead. */
  replace?: boolean;
  /** With replace: only replace this program (by id), atomically (XDP_FLAGS_REPLACE). */
  expectedProgId?: number;
}

export interface AttemptFailure {
  via: XdpVia;
  mode: XdpMode;
  errno: string | undefined;
  message: string;
}

export interface XdpAttachment {
  readonly ifindex: number;
  readonly via: XdpVia;
  readonly mode: XdpMode;
  /** Attempts that failed before this one succeeded (e.g. native refused for the peer's MTU). */
  readonly fallbacks: readonly AttemptFailure[];
  /** Detaches (only our program: a program someone attached over ours is left alone). */
  close(): void;
}

function resolveIfindex(iface: string | number): number {
  return typeof iface === 'number' ? iface : getLinkSync(iface).index;
}

function foreign(ifindex: number, details: Record<string, unknown>, cause?: unknown): PinholeError {
  return new PinholeError(
    'ERR_XDP_FOREIGN_PROGRAM',
    `ifindex ${ifindex} already has an XDP program; not replacing it (pass replace: true to take over)`,
    { cause, details: { ifindex, ...details } },
  );
}

function attachLink(progFd: number, ifindex: number, mode: XdpMode): number {
  const attr = LinkCreateAttr.encode({
    prog_fd: progFd,
    target_ifindex: ifindex,
    attach_type: BPF_XDP,
    flags: mode === 'native' ? XDP_FLAGS_DRV_MODE : XDP_FLAGS_SKB_MODE,
  });
  return getSys().bpf(BPF_LINK_CREATE, attr);
}

/** Attaches the XDP program `progFd` to `opts.iface`; see the file comment for the choices. */
export function attachXdp(progFd: number, opts: AttachXdpOptions): XdpAttachment {
  const ifindex = resolveIfindex(opts.iface);
  const replace = opts.replace ?? false;
  const current = getLinkSync(ifindex).xdp;
  if (current && current.attached !== 'none' && !replace) throw foreign(ifindex, { attached: current.attached, progId: current.progId });

  let modes: XdpMode[] = !opts.mode || opts.mode === 'auto' ? ['native', 'generic'] : [opts.mode];
  // The kernel refuses native and generic programs side by side (EEXIST): replace in place.
  if (replace && (opts.mode === undefined || opts.mode === 'auto')) {
    if (current?.attached === 'native' || current?.attached === 'generic') modes = [current.attached];
  }
  let vias: XdpVia[];
  if (opts.via && opts.via !== 'auto') vias = [opts.via];
  else if (opts.persist || replace) vias = ['netlink'];
  else vias = ['bpf_link', 'netlink'];
  if (opts.persist && vias.includes('bpf_link')) {
    throw new PinholeError('ERR_XDP_ATTACH', 'persist needs a netlink attachment (a bpf_link dies with its fd)');
  }

  const failures: AttemptFailure[] = [];
  for (const mode of modes) {
    for (const via of vias) {
      try {
        if (via === 'bpf_link') {
          const linkFd = attachLink(progFd, ifindex, mode);
          return makeAttachment(ifindex, via, mode, failures, () => getSys().close(linkFd));
        }
        if (replace && opts.expectedProgId !== undefined) {
          const expected = fdById(BPF_PROG_GET_FD_BY_ID, opts.expectedProgId);
          try {
            setLinkXdpSync(ifindex, progFd, { mode, replace: true, expectedFd: expected });
          } finally {
            getSys().close(expected);
          }
        } else {
          setLinkXdpSync(ifindex, progFd, { mode, replace });
        }
        return makeAttachment(ifindex, via, mode, failures, () => {
          // Detach only if our program is still the one attached (XDP_FLAGS_REPLACE + expected fd).
          try {
            setLinkXdpSync(ifindex, -1, { mode, replace: true, expectedFd: progFd });
          } catch (err) {
            const code = (err as { errnoCode?: string }).errnoCode ?? errnoCodeOf(err);
            if (code !== 'EEXIST' && code !== 'ENODEV') throw err;
          }
        });
      } catch (err) {
        const code = (err as { errnoCode?: string }).errnoCode ?? errnoCodeOf(err);
        // EBUSY/EEXIST: someone attached a program meanwhile (or holds it through a bpf_link).
        if (code === 'EBUSY' || code === 'EEXIST') throw foreign(ifindex, { via, mode }, err);
        failures.push({ via, mode, errno: code, message: (err as Error).message });
      }
    }
  }
  throw new PinholeError(
    'ERR_XDP_ATTACH',
    `attach XDP program to ifindex ${ifindex}: every way failed (${failures.map((f) => `${f.via}/${f.mode}: ${f.errno ?? f.message}`).join('; ')})`,
    {
      details: { ifindex, failures },
    },
  );
}

function makeAttachment(ifindex: number, via: XdpVia, mode: XdpMode, fallbacks: AttemptFailure[], detach: () => void): XdpAttachment {
  let closed = false;
  return {
    ifindex,
    via,
    mode,
    fallbacks,
    close() {
      if (closed) return;
      closed = true;
      detach();
    },
  };
}
