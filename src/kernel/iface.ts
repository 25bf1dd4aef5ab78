/**
 * What pinhole needs to know about an interface before it touches it: kind, driver, MTU (and
 * the largest MTU native XDP accepts, where the driver's rule is known), queue counts, and any
 * XDP program already attached (with its name and tag, and whether it is pinhole's own program:
 * same instructions and map shapes as this version builds, kernel/pinhole.ts `isPinholeProgram`).
 *
 * Sources: rtnetlink RTM_GETLINK (kind, MTU, queues, IFLA_XDP), the ethtool ioctl
 * (ETHTOOL_GDRVINFO, ETHTOOL_GCHANNELS; include/uapi/linux/ethtool.h), bpf(2) for program info.
 */
import { existsSync, readdirSync } from 'node:fs';
import { getLinkSync } from '../netlink/link.ts';
import { AF_INET, defineStruct, getSys, PinholeError, SOCK_CLOEXEC, SOCK_DGRAM, SysError } from '../sys/index.ts';
import { BPF_PROG_GET_FD_BY_ID, ProgInfo } from './bpf-attr.ts';
import { decodeName, fdById, objectInfo } from './object.ts';
import { inspectProgram, isPinholeProgram } from './pinhole.ts';

const SIOCETHTOOL = 0x8946;
const IFF_LOOPBACK = 0x8;
const ETHTOOL_GDRVINFO = 0x03;
const ETHTOOL_GCHANNELS = 0x3c;

export const Ifreq = defineStruct(
  'ifreq',
  [
    ['ifr_name', { bytes: 16 }],
    ['ifr_data', 'u64'],
    ['pad', { bytes: 16 }],
  ],
  { cType: 'struct ifreq', header: 'net/if.h' },
);

export const EthtoolDrvinfo = defineStruct(
  'ethtool_drvinfo',
  [
    ['cmd', 'u32'],
    ['driver', { bytes: 32 }],
    ['version', { bytes: 32 }],
    ['fw_version', { bytes: 32 }],
    ['bus_info', { bytes: 32 }],
    ['erom_version', { bytes: 32 }],
    ['reserved2', { bytes: 12 }],
    ['n_priv_flags', 'u32'],
    ['n_stats', 'u32'],
    ['testinfo_len', 'u32'],
    ['eedump_len', 'u32'],
    ['regdump_len', 'u32'],
  ],
  { cType: 'struct ethtool_drvinfo', header: 'linux/ethtool.h' },
);

export const EthtoolChannels = defineStruct(
  'ethtool_channels',
  [
    ['cmd', 'u32'],
    ['max_rx', 'u32'],
    ['max_tx', 'u32'],
    ['max_other', 'u32'],
    ['max_combined', 'u32'],
    ['rx_count', 'u32'],
    ['tx_count', 'u32'],
    ['other_count', 'u32'],
    ['combined_count', 'u32'],
  ],
  { cType: 'struct ethtool_channels', header: 'linux/ethtool.h' },
);

export interface Channels {
  maxRx: number;
  maxTx: number;
  maxCombined: number;
  rx: number;
  tx: number;
  combined: number;
}

/** What XDP program an interface has attached, as the kernel reports it (the handle of an attach we made is xdp-attach.ts XdpAttachment). */
export interface XdpState {
  mode: 'none' | 'native' | 'generic' | 'offload' | 'multi';
  progId?: number;
  progName?: string;
  /** The kernel's tag of the program (16 hex digits), when it could be read. */
  progTag?: string;
  /**
   * True when the attached program is pinhole's own (by tag and map shapes, not by name);
   * false for any other program, and for one that could not be inspected.
   */
  ours?: boolean;
}

export interface IfaceInfo {
  name: string;
  index: number;
  /** veth, vlan, bond, team, bridge, vxlan, ..., or `physical` for a device with no kind. */
  kind: string;
  driver?: string;
  mtu: number;
  /** Largest MTU the driver accepts native XDP at (for veth: the peer's MTU), when known. */
  maxXdpMtu?: number;
  maxXdpMtuSource?: string;
  rxQueues?: number;
  txQueues?: number;
  channels?: Channels;
  up: boolean;
  xdp: XdpState;
}

function ethtool(ifname: string, data: Uint8Array): void {
  const sys = getSys();
  const fd = sys.socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  try {
    const name = new TextEncoder().encode(ifname);
    const req = Ifreq.encode({ ifr_name: name, ifr_data: sys.addressOf(data) });
    sys.ioctl(fd, SIOCETHTOOL, req, [data]);
  } finally {
    sys.close(fd);
  }
}

/** Runs an ethtool command; false when the device does not implement it. */
function ethtoolIfSupported(ifname: string, data: Uint8Array): boolean {
  try {
    ethtool(ifname, data);
    return true;
  } catch (err) {
    if (err instanceof SysError && (err.code === 'EOPNOTSUPP' || err.code === 'ENODEV')) return false;
    throw err;
  }
}

export function driverOf(ifname: string): string | undefined {
  const buf = EthtoolDrvinfo.encode({ cmd: ETHTOOL_GDRVINFO });
  if (!ethtoolIfSupported(ifname, buf)) return undefined;
  return decodeName(EthtoolDrvinfo.decode(buf).driver as Uint8Array) || undefined;
}

export function channelsOf(ifname: string): Channels | undefined {
  const buf = EthtoolChannels.encode({ cmd: ETHTOOL_GCHANNELS });
  if (!ethtoolIfSupported(ifname, buf)) return undefined;
  const c = EthtoolChannels.decode(buf);
  return {
    maxRx: Number(c.max_rx),
    maxTx: Number(c.max_tx),
    maxCombined: Number(c.max_combined),
    rx: Number(c.rx_count),
    tx: Number(c.tx_count),
    combined: Number(c.combined_count),
  };
}

/** Name of the loaded BPF program with this id ('' if it cannot be read). */
export function programName(id: number): string {
  try {
    const fd = fdById(BPF_PROG_GET_FD_BY_ID, id);
    try {
      return decodeName(objectInfo(fd, ProgInfo).name as Uint8Array);
    } finally {
      getSys().close(fd);
    }
  } catch {
    return '';
  }
}

/**
 * The native-XDP MTU ceiling by driver, from each driver's XDP setup path (4 KiB pages, no XDP
 * multi-buffer). veth's value was measured on this kernel ("Peer MTU is too large to set XDP"
 * above 3506); the others come from the drivers' sources and peers' bug reports.
 */
const XDP_MTU_BY_DRIVER: Record<string, { mtu: number; source: string }> = {
  veth: { mtu: 3506, source: 'veth: PAGE_SIZE - XDP headroom - skb_shared_info - Ethernet header; applies to the peer' },
  virtio_net: { mtu: 3502, source: 'virtio_net: header and data must fit one page' },
  ena: { mtu: 3498, source: 'AWS ENA: ENA_XDP_MAX_MTU' },
  gve: { mtu: 2048, source: 'Google gVNIC: XDP needs MTU <= 2048 with the default queue format' },
};

export function interfaceInfo(name: string): IfaceInfo {
  const link = getLinkSync(name);
  let kind = link.kind ?? 'physical';
  if ((link.flags & IFF_LOOPBACK) !== 0) kind = 'loopback';
  else if (!link.kind && !existsSync(`/sys/class/net/${link.name}/device`)) kind = 'virtual';
  const driver = driverOf(link.name);
  const limit = driver ? XDP_MTU_BY_DRIVER[driver] : undefined;
  const xdpRaw = link.xdp;
  const xdp: XdpState = { mode: xdpRaw?.attached ?? 'none' };
  const progId = xdpRaw?.progId ?? xdpRaw?.driveProgId ?? xdpRaw?.skbProgId;
  if (progId) {
    xdp.progId = progId;
    const p = inspectProgram(progId);
    xdp.progName = p?.name ?? '';
    if (p) xdp.progTag = p.tag;
    xdp.ours = p !== undefined && isPinholeProgram(p);
  }
  const info: IfaceInfo = {
    name: link.name,
    index: link.index,
    kind,
    mtu: link.mtu,
    up: (link.flags & 1) !== 0,
    xdp,
  };
  if (driver) info.driver = driver;
  if (limit) {
    info.maxXdpMtu = limit.mtu;
    info.maxXdpMtuSource = limit.source;
  }
  // Queues in use, not allocated: IFLA_NUM_RX_QUEUES is the allocation (a veth made without
  // numrxqueues allocates 2, uses 1; `ethtool -L` shrinks a NIC's channels without freeing).
  // Binding an AF_XDP socket to an unused queue fails, so count what the device runs.
  const ch = channelsOf(link.name);
  if (ch) info.channels = ch;
  const rx = ch && ch.rx + ch.combined > 0 ? ch.rx + ch.combined : (sysfsQueues(link.name, 'rx') ?? link.numRxQueues);
  const tx = ch && ch.tx + ch.combined > 0 ? ch.tx + ch.combined : (sysfsQueues(link.name, 'tx') ?? link.numTxQueues);
  if (rx !== undefined) info.rxQueues = rx;
  if (tx !== undefined) info.txQueues = tx;
  return info;
}

/** rx-N / tx-N entries under /sys/class/net/IF/queues (this network namespace's sysfs). */
function sysfsQueues(ifname: string, dir: 'rx' | 'tx'): number | undefined {
  try {
    const n = readdirSync(`/sys/class/net/${ifname}/queues`).filter((q) => q.startsWith(`${dir}-`)).length;
    return n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
}

export function requireInterface(name: string): IfaceInfo {
  try {
    return interfaceInfo(name);
  } catch (err) {
    if (err instanceof PinholeError) throw err;
    throw new PinholeError('ERR_IFACE', `inspect interface ${name}: ${(err as Error).message}`, { cause: err });
  }
}
