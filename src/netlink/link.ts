/**
 * Links over rtnetlink: what `pinhole probe` and the uplink drivers need to know about an
 * interface (kind, MTU limits, queues, XDP state), and the netlink XDP attach path
 * (RTM_SETLINK + IFLA_XDP), the fallback when bpf_link is unavailable.
 *
 * The kernel resolves names itself (RTM_GETLINK with IFLA_IFNAME), so there is no race between
 * a name lookup and the query. A missing interface is ENODEV from the kernel, reported as
 * ERR_IFACE_NOT_FOUND.
 */
import { PinholeError } from '../sys/index.ts';
import { NetlinkError } from './codec.ts';
import {
  RTM_GETLINK,
  RTM_NEWLINK,
  dumpRequest,
  getLinkRequest,
  parseLink,
  setXdpRequest,
  type LinkInfo,
  type SetXdpOptions,
} from './rtnl.ts';
import { rtnlRequest, rtnlRequestSync, RtnlSocket } from './socket.ts';

export type { LinkInfo, SetXdpOptions, XdpAttached } from './rtnl.ts';

const IFNAMSIZ = 16;

function checkName(nameOrIndex: string | number): void {
  if (typeof nameOrIndex === 'number') {
    if (!Number.isInteger(nameOrIndex) || nameOrIndex <= 0 || nameOrIndex > 0x7fffffff) throw notFound(nameOrIndex);
  } else if (nameOrIndex.length === 0 || Buffer.byteLength(nameOrIndex) >= IFNAMSIZ || nameOrIndex.includes('/')) {
    throw notFound(nameOrIndex);
  }
}

function notFound(nameOrIndex: string | number, cause?: unknown): PinholeError {
  const what = typeof nameOrIndex === 'number' ? `ifindex ${nameOrIndex}` : `"${nameOrIndex}"`;
  return new PinholeError('ERR_IFACE_NOT_FOUND', `no network interface ${what} in this namespace`, {
    cause,
    details: { iface: nameOrIndex },
  });
}

function mapError(nameOrIndex: string | number, err: unknown): unknown {
  return err instanceof NetlinkError && err.errnoCode === 'ENODEV' ? notFound(nameOrIndex, err) : err;
}

function single(nameOrIndex: string | number, msgs: ReturnType<typeof rtnlRequestSync>): LinkInfo {
  const m = msgs.find((x) => x.type === RTM_NEWLINK);
  if (!m) throw notFound(nameOrIndex);
  return parseLink(m);
}

/** Describes one interface by name or ifindex. Throws ERR_IFACE_NOT_FOUND if absent. */
export async function getLink(nameOrIndex: string | number): Promise<LinkInfo> {
  checkName(nameOrIndex);
  try {
    return single(nameOrIndex, await rtnlRequest(getLinkRequest(nameOrIndex), { what: `get link ${nameOrIndex}` }));
  } catch (err) {
    throw mapError(nameOrIndex, err);
  }
}

/** As `getLink`, blocking (a one-shot request/response; fine for CLI calls). */
export function getLinkSync(nameOrIndex: string | number): LinkInfo {
  checkName(nameOrIndex);
  try {
    return single(nameOrIndex, rtnlRequestSync(getLinkRequest(nameOrIndex), { what: `get link ${nameOrIndex}` }));
  } catch (err) {
    throw mapError(nameOrIndex, err);
  }
}

/** All interfaces in this namespace, by ifindex. */
export async function listLinks(): Promise<LinkInfo[]> {
  const s = RtnlSocket.open();
  try {
    const msgs = await s.dump(dumpRequest(RTM_GETLINK), { what: 'dump links' });
    return msgs
      .filter((m) => m.type === RTM_NEWLINK)
      .map(parseLink)
      .sort((a, b) => a.index - b.index);
  } finally {
    s.close();
  }
}

export function listLinksSync(): LinkInfo[] {
  const s = RtnlSocket.open();
  try {
    const msgs = s.dumpSync(dumpRequest(RTM_GETLINK), { what: 'dump links' });
    return msgs
      .filter((m) => m.type === RTM_NEWLINK)
      .map(parseLink)
      .sort((a, b) => a.index - b.index);
  } finally {
    s.close();
  }
}

function xdpWhat(ifindex: number, progFd: number, mode: string): string {
  return progFd < 0 ? `detach ${mode} XDP from ifindex ${ifindex}` : `attach XDP program (fd ${progFd}, ${mode}) to ifindex ${ifindex}`;
}

/**
 * Attaches an XDP program through netlink. Without `replace` the kernel refuses (EBUSY) if a
 * program is already attached (XDP_FLAGS_UPDATE_IF_NOEXIST): we never replace another owner's
 * program silently. With `replace` and `expectedFd`, only that program is replaced
 * (XDP_FLAGS_REPLACE; EEXIST if another one is attached). Errors are NetlinkError (code
 * ERR_NETLINK_REQUEST) with `errnoCode` and the kernel's `extAck` ("Peer MTU is too large...").
 */
export async function setLinkXdp(ifindex: number, progFd: number, opts: SetXdpOptions): Promise<void> {
  await rtnlRequest(setXdpRequest(ifindex, progFd, opts), { what: xdpWhat(ifindex, progFd, opts.mode) });
}

export function setLinkXdpSync(ifindex: number, progFd: number, opts: SetXdpOptions): void {
  rtnlRequestSync(setXdpRequest(ifindex, progFd, opts), { what: xdpWhat(ifindex, progFd, opts.mode) });
}

/** Detaches whatever XDP program is attached in `mode` (no error if none is). */
export async function clearLinkXdp(ifindex: number, mode: 'native' | 'generic'): Promise<void> {
  await rtnlRequest(setXdpRequest(ifindex, -1, { mode, replace: true }), { what: xdpWhat(ifindex, -1, mode) });
}
