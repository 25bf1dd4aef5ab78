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
 * The interface moved to another network namespace (`ip link set IF netns X`): a bpf_link still
 * detaches on close (it holds the device, wherever it is). A netlink attachment moved along and
 * can no longer be addressed from here (ENODEV): `close()` then finds the interface that carries
 * our program in the other namespaces this host can name and detaches it there (netns.ts);
 * `detachedIn` says where. A deleted interface took its attachment with it.
 *
 * Taking over a program (`replace` with `expectedProgId`), e.g. pinhole's own stale program or,
 * when the operator allows it, another owner's:
 *  - in the mode it is attached in, when that is the mode we would attach in first (with
 *    `restoreReplaced`: any mode we accept): atomically (XDP_FLAGS_REPLACE with the inspected
 *    program as the expected one);
 *  - otherwise (another mode wanted, e.g. generic because the MTU grew past the native limit;
 *    or the in-place replace refused for a reason other than a conflict): detach exactly that
 *    program (XDP_FLAGS_REPLACE, no new program), then attach as if nothing were there. Between
 *    the two nothing is attached and every frame goes to the kernel — what the taken-over
 *    program did anyway when it was a stale pinhole.
 *  - `restoreReplaced`: an fd of the replaced program is held, and `close()` puts it back in
 *    the mode it had, atomically replacing ours (XDP_FLAGS_REPLACE with our program expected);
 *    if our attach fails after the program was detached, it is put back at once. It cannot
 *    survive our death: if pinhole is killed, the replaced program is gone with our fd (unless
 *    its owner pinned it).
 *
 * References: include/uapi/linux/bpf.h (link_create), include/uapi/linux/if_link.h (XDP_FLAGS_*),
 * net/core/dev.c dev_xdp_attach (EBUSY when a program is attached by another mechanism).
 */
import { errnoCodeOf, getSys, PinholeError } from '../sys/index.ts';
import { getLinkSync, setLinkXdpSync, type SetXdpOptions } from '../netlink/link.ts';
import { setXdpRequest } from '../netlink/rtnl.ts';
import { fdById, objectInfo } from './object.ts';
import { findXdpProgramElsewhere } from './netns.ts';
import {
  BPF_LINK_CREATE,
  BPF_PROG_GET_FD_BY_ID,
  BPF_XDP,
  LinkCreateAttr,
  ProgInfo,
  XDP_FLAGS_DRV_MODE,
  XDP_FLAGS_SKB_MODE,
} from './bpf-attr.ts';

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
  /** With replace: only replace this program (by id); see "Taking over" in the file comment. */
  expectedProgId?: number;
  /** With expectedProgId: put the replaced program back on close (and if our attach fails). */
  restoreReplaced?: boolean;
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
  /** The program this attachment took over, and how: in place, or detached first. */
  readonly replaced?: { progId: number; mode: XdpMode; how: 'atomic' | 'detached'; restoreOnClose: boolean };
  /** Detaches (only our program: a program someone attached over ours is left alone). */
  close(): void;
  /**
   * After `close()`: the network namespace (a path) the interface had been moved to, where our
   * program was found and detached (or the replaced program put back); undefined otherwise.
   */
  readonly detachedIn?: string | undefined;
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

const errnoOf = (err: unknown): string | undefined => (err as { errnoCode?: string }).errnoCode ?? errnoCodeOf(err);

/** Attaches the XDP program `progFd` to `opts.iface`; see the file comment for the choices. */
export function attachXdp(progFd: number, opts: AttachXdpOptions): XdpAttachment {
  const ifindex = resolveIfindex(opts.iface);
  const replace = opts.replace ?? false;
  const current = getLinkSync(ifindex).xdp;
  if (current && current.attached !== 'none' && !replace) throw foreign(ifindex, { attached: current.attached, progId: current.progId });

  let modes: XdpMode[] = !opts.mode || opts.mode === 'auto' ? ['native', 'generic'] : [opts.mode];
  if (replace && opts.expectedProgId !== undefined) return takeOver(progFd, ifindex, opts, modes, current);
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
  return attachFresh(progFd, ifindex, modes, vias, replace, []);
}

/** Tries every mode × via in order; the first that works wins. */
function attachFresh(
  progFd: number,
  ifindex: number,
  modes: XdpMode[],
  vias: XdpVia[],
  replace: boolean,
  failures: AttemptFailure[],
): XdpAttachment {
  for (const mode of modes) {
    for (const via of vias) {
      try {
        if (via === 'bpf_link') {
          const linkFd = attachLink(progFd, ifindex, mode);
          return makeAttachment(ifindex, via, mode, failures, () => getSys().close(linkFd));
        }
        setLinkXdpSync(ifindex, progFd, { mode, replace });
        return makeAttachment(ifindex, via, mode, failures, () => detachOurs(ifindex, progFd, mode));
      } catch (err) {
        const code = errnoOf(err);
        // EBUSY/EEXIST: someone attached a program meanwhile (or holds it through a bpf_link).
        if (code === 'EBUSY' || code === 'EEXIST') throw foreign(ifindex, { via, mode }, err);
        failures.push({ via, mode, errno: code, message: (err as Error).message });
      }
    }
  }
  throw everyWayFailed(ifindex, failures);
}

function everyWayFailed(ifindex: number, failures: AttemptFailure[]): PinholeError {
  return new PinholeError(
    'ERR_XDP_ATTACH',
    `attach XDP program to ifindex ${ifindex}: every way failed (${failures.map((f) => `${f.via}/${f.mode}: ${f.errno ?? f.message}`).join('; ')})`,
    { details: { ifindex, failures } },
  );
}

/** Sets an interface's XDP program, through a socket of the namespace it is in. */
type SetXdp = (ifindex: number, progFd: number, opts: SetXdpOptions) => void;

/**
 * Runs `fn` against the interface carrying program `progFd` in another network namespace, when
 * it was moved there (see the file comment). Returns that namespace, or undefined when the
 * program is attached nowhere we can reach (the interface was deleted, or is out of reach).
 */
function elsewhere(progFd: number, fn: (set: SetXdp, ifindex: number, attached: XdpMode | undefined) => void): string | undefined {
  const progId = Number(objectInfo(progFd, ProgInfo).id);
  const found = findXdpProgramElsewhere(progId);
  if (!found) return undefined;
  try {
    const set: SetXdp = (ifindex, fd, opts) =>
      void found.socket.requestSync(setXdpRequest(ifindex, fd, opts), { what: `XDP on ifindex ${ifindex} in ${found.netns}` });
    const a = found.link.xdp?.attached;
    fn(set, found.link.index, a === 'native' || a === 'generic' ? a : undefined);
    return found.netns;
  } finally {
    found.socket.close();
  }
}

/**
 * Detaches our program if it is still the one attached (XDP_FLAGS_REPLACE + expected fd),
 * following the interface into another namespace. Returns that namespace when it moved.
 */
function detachOurs(ifindex: number, progFd: number, mode: XdpMode): string | undefined {
  try {
    setLinkXdpSync(ifindex, -1, { mode, replace: true, expectedFd: progFd });
    return undefined;
  } catch (err) {
    const code = errnoOf(err);
    if (code === 'EEXIST') return undefined;
    if (code !== 'ENODEV') throw err;
  }
  try {
    return elsewhere(progFd, (set, idx, attached) => set(idx, -1, { mode: attached ?? mode, replace: true, expectedFd: progFd }));
  } catch (err) {
    const code = errnoOf(err);
    if (code === 'EEXIST' || code === 'ENODEV') return undefined; // replaced or gone meanwhile
    throw err;
  }
}

/** Replaces exactly program `opts.expectedProgId` (netlink); see "Taking over" in the file comment. */
function takeOver(
  progFd: number,
  ifindex: number,
  opts: AttachXdpOptions,
  modes: XdpMode[],
  current: { attached: string; progId?: number } | undefined,
): XdpAttachment {
  const expectedId = opts.expectedProgId!;
  const was = current?.attached;
  if (current?.progId !== expectedId || (was !== 'native' && was !== 'generic')) {
    // Not what was inspected any more: gone (attach normally) or something else (refuse).
    if (!current || was === 'none') return attachFresh(progFd, ifindex, modes, ['netlink'], false, []);
    throw foreign(ifindex, { attached: was, progId: current.progId, expectedProgId: expectedId });
  }
  const theirMode: XdpMode = was;
  let theirFd: number;
  try {
    theirFd = fdById(BPF_PROG_GET_FD_BY_ID, expectedId);
  } catch (err) {
    throw new PinholeError(
      'ERR_XDP_ATTACH',
      `open XDP program id ${expectedId} on ifindex ${ifindex} to replace it: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
  const restore = opts.restoreReplaced ?? false;
  const keep = (how: 'atomic' | 'detached', att: XdpAttachment): XdpAttachment => {
    const replaced = { progId: expectedId, mode: theirMode, how, restoreOnClose: restore };
    let closed = false;
    let detachedIn: string | undefined;
    return {
      ifindex,
      via: att.via,
      mode: att.mode,
      fallbacks: att.fallbacks,
      replaced,
      get detachedIn() {
        return detachedIn;
      },
      close() {
        if (closed) return;
        closed = true;
        try {
          if (restore) detachedIn = putBack(ifindex, theirFd, theirMode, progFd, att.mode, expectedId);
          else {
            att.close();
            detachedIn = att.detachedIn;
          }
        } finally {
          getSys().close(theirFd);
        }
      },
    };
  };
  const failures: AttemptFailure[] = [];
  try {
    // In place, when that is the mode we want first — or, for a program to be put back, any mode
    // we accept: then neither the take-over nor the restore leaves the interface without one.
    if (restore ? modes.includes(theirMode) : modes[0] === theirMode) {
      try {
        setLinkXdpSync(ifindex, progFd, { mode: theirMode, replace: true, expectedFd: theirFd });
        return keep(
          'atomic',
          makeAttachment(ifindex, 'netlink', theirMode, failures, () => detachOurs(ifindex, progFd, theirMode)),
        );
      } catch (err) {
        const code = errnoOf(err);
        if (code === 'EBUSY' || code === 'EEXIST')
          throw foreign(ifindex, { via: 'netlink', mode: theirMode, expectedProgId: expectedId }, err);
        failures.push({ via: 'netlink', mode: theirMode, errno: code, message: (err as Error).message });
      }
    }
    // Another mode is wanted, or the in-place replace was refused: detach exactly that program.
    try {
      setLinkXdpSync(ifindex, -1, { mode: theirMode, replace: true, expectedFd: theirFd });
    } catch (err) {
      const code = errnoOf(err);
      if (code === 'EEXIST' || code === 'EBUSY')
        throw foreign(ifindex, { via: 'netlink', mode: theirMode, expectedProgId: expectedId }, err);
      throw new PinholeError(
        'ERR_XDP_ATTACH',
        `detach XDP program id ${expectedId} (${theirMode}) from ifindex ${ifindex}: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
    try {
      return keep('detached', attachFresh(progFd, ifindex, modes, ['netlink'], false, failures));
    } catch (err) {
      // Leave the interface as we found it when the program is to be kept.
      if (restore) {
        try {
          setLinkXdpSync(ifindex, theirFd, { mode: theirMode, replace: false });
        } catch (err2) {
          throw new PinholeError(
            'ERR_XDP_RESTORE',
            `${(err as Error).message}; and putting the replaced program id ${expectedId} back failed: ${(err2 as Error).message}`,
            { cause: err },
          );
        }
      }
      throw err;
    }
  } catch (err) {
    getSys().close(theirFd);
    throw err;
  }
}

/**
 * Puts the replaced program back: atomically over ours when the modes agree (XDP_FLAGS_REPLACE,
 * ours expected); otherwise ours is detached first. If ours is no longer attached, someone else
 * changed the interface: nothing is touched and the caller is told. An interface moved to
 * another namespace is followed there (returned).
 */
function putBack(
  ifindex: number,
  theirFd: number,
  theirMode: XdpMode,
  ourFd: number,
  ourMode: XdpMode,
  theirId: number,
): string | undefined {
  const swap = (set: SetXdp, idx: number): void => {
    if (theirMode === ourMode) {
      set(idx, theirFd, { mode: theirMode, replace: true, expectedFd: ourFd });
    } else {
      set(idx, -1, { mode: ourMode, replace: true, expectedFd: ourFd });
      set(idx, theirFd, { mode: theirMode, replace: false });
    }
  };
  try {
    try {
      swap(setLinkXdpSync, ifindex);
      return undefined;
    } catch (err) {
      if (errnoOf(err) !== 'ENODEV') throw err;
    }
    // Gone from here: deleted (the attachment went with it) or moved (follow it).
    return elsewhere(ourFd, (set, idx) => swap(set, idx));
  } catch (err) {
    const code = errnoOf(err);
    if (code === 'ENODEV') return undefined; // the interface is gone, and the attachment with it
    throw new PinholeError(
      'ERR_XDP_RESTORE',
      code === 'EEXIST' || code === 'EBUSY'
        ? `ifindex ${ifindex}: our XDP program was replaced by someone else; not putting the replaced program id ${theirId} back`
        : `ifindex ${ifindex}: putting the replaced XDP program id ${theirId} back (${theirMode}) failed: ${(err as Error).message}`,
      { cause: err, details: { ifindex, progId: theirId, mode: theirMode } },
    );
  }
}

/**
 * Detaches program `progId` from `iface` if it is still the one attached (netlink, the check
 * and the detach in one step: XDP_FLAGS_REPLACE with it expected). Returns false when another
 * program, or none, is attached; throws on other errors (e.g. EPERM).
 */
export function detachXdpProgram(iface: string | number, progId: number): boolean {
  const ifindex = resolveIfindex(iface);
  const cur = getLinkSync(ifindex).xdp;
  if (!cur || cur.progId !== progId || (cur.attached !== 'native' && cur.attached !== 'generic')) return false;
  const fd = fdById(BPF_PROG_GET_FD_BY_ID, progId);
  try {
    setLinkXdpSync(ifindex, -1, { mode: cur.attached, replace: true, expectedFd: fd });
    return true;
  } catch (err) {
    const code = errnoOf(err);
    if (code === 'EEXIST' || code === 'ENODEV') return false;
    throw err;
  } finally {
    getSys().close(fd);
  }
}

function makeAttachment(
  ifindex: number,
  via: XdpVia,
  mode: XdpMode,
  fallbacks: AttemptFailure[],
  detach: () => string | undefined | void,
): XdpAttachment {
  let closed = false;
  let detachedIn: string | undefined;
  return {
    ifindex,
    via,
    mode,
    fallbacks,
    get detachedIn() {
      return detachedIn;
    },
    close() {
      if (closed) return;
      closed = true;
      detachedIn = detach() ?? undefined;
    },
  };
}
