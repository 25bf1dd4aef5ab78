/**
 * Helpers for the AF_PACKET kernel tests: namespace entry and raw sockets (shared, from
 * test/helpers/packet-socket.ts), and marked frames.
 */
import { inNetnsSync, PacketSocket } from '../helpers/packet-socket.ts';
import { addVeth, withNetns, type Netns } from '../helpers/netns.ts';
import { AfPacketPort, type AfPacketPortOptions } from '../../src/dataplane/ports/afpacket.ts';
import { PacketMemory } from '../../src/dataplane/memory.ts';
import { alloc, getSys } from '../../src/sys/index.ts';
import { VNET_F_NEEDS_CSUM, VNET_GSO_TCPV4, VNET_HDR_LEN, writeVnetHeader } from '../../src/packet/offload.ts';
import { AF_PACKET, ETH_P_ALL_BE, PACKET_VNET_HDR, SOL_PACKET } from '../../src/uplink/afpacket/abi.ts';

const SOCK_RAW = 3;

/** The shared helpers, under the names these tests use. */
export { inNetnsSync as inNetns } from '../helpers/packet-socket.ts';

/** A raw packet socket on one interface that ignores its own transmissions. */
export class RawSocket extends PacketSocket {
  constructor(ifname: string) {
    super(ifname, { ignoreOutgoing: true });
  }
}

/** An 8-byte payload marker 'PHAP' + u32 id, findable in any received frame. */
export function marker(id: number): Uint8Array {
  const m = new Uint8Array(8);
  m.set([0x50, 0x48, 0x41, 0x50]);
  new DataView(m.buffer).setUint32(4, id);
  return m;
}

/** The marker id in `frame` (searching from the end, where payloads are), or -1. */
export function markerOf(frame: Uint8Array, off = 0, len = frame.length): number {
  for (let i = off + len - 8; i >= off; i--) {
    if (frame[i] === 0x50 && frame[i + 1] === 0x48 && frame[i + 2] === 0x41 && frame[i + 3] === 0x50) {
      return new DataView(frame.buffer, frame.byteOffset).getUint32(i + 4);
    }
  }
  return -1;
}

export function macOf(ns: Netns, ifname: string): string {
  const info = JSON.parse(ns.ip('-j', 'link', 'show', ifname)) as { address: string }[];
  return info[0]!.address;
}

/** A packet socket on the sending side with PACKET_VNET_HDR: each frame goes with a virtio_net_hdr. */
export class VnetSender {
  readonly fd: number;
  private readonly sll = alloc(20);
  private readonly buf = alloc(VNET_HDR_LEN + 65536);

  /** Created in the calling thread's namespace (inNetns). Unbound: it only sends, to `ifname`. */
  constructor(ifname: string) {
    const sys = getSys();
    this.fd = sys.socket(AF_PACKET, SOCK_RAW, 0);
    const one = alloc(4);
    new DataView(one.buffer).setInt32(0, 1, true);
    sys.setsockopt(this.fd, SOL_PACKET, PACKET_VNET_HDR, one);
    const dv = new DataView(this.sll.buffer);
    dv.setUint16(0, AF_PACKET, true);
    dv.setUint16(2, ETH_P_ALL_BE, true);
    dv.setInt32(4, sys.ifNameToIndex(ifname), true);
  }

  /** An ordinary frame: all-zero header (no GSO, checksum complete). */
  send(frame: Uint8Array): void {
    this.buf.fill(0, 0, VNET_HDR_LEN);
    this.put(frame);
  }

  /** A TCPv4 super-frame (built by superFrame()): GSO TCPV4 with `mss`, checksum partial. */
  sendTcpSuper(frame: Uint8Array, mss: number): void {
    const l4 = 14 + 20;
    this.sendGso(frame, VNET_GSO_TCPV4, l4 + 20, mss, l4, 16);
  }

  /** A frame marked for GSO (`gsoType`, `gsoSize`) with its L4 checksum partial at csumStart + csumOffset. */
  sendGso(frame: Uint8Array, gsoType: number, hdrLen: number, gsoSize: number, csumStart: number, csumOffset: number): void {
    writeVnetHeader(this.buf, 0, VNET_F_NEEDS_CSUM, gsoType, hdrLen, gsoSize, csumStart, csumOffset);
    this.put(frame);
  }

  private put(frame: Uint8Array): void {
    this.buf.set(frame, VNET_HDR_LEN);
    getSys().sendto(this.fd, this.buf, VNET_HDR_LEN + frame.length, 0, this.sll);
  }

  close(): void {
    getSys().close(this.fd);
  }
}

/**
 * A veth up0 (in `up`) ↔ peer0 (in `peer`) between two namespaces that send nothing of their own:
 * IPv6 is off in both before the veth exists, so neither end ever sends DAD, router or MLD
 * frames into a ring under test. Returns both MACs.
 */
export function quietVeth(up: Netns, peer: Netns, opts: { mtu?: number } = {}): { upMac: string; peerMac: string } {
  for (const ns of [up, peer]) ns.exec('sysctl', ['-q', '-w', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']);
  addVeth(up, 'up0', peer, 'peer0', opts);
  return { upMac: macOf(up, 'up0'), peerMac: macOf(peer, 'peer0') };
}

/** An AF_PACKET port on up0 and a vnet-header sender on its veth peer (peer0), as withPortLab gives them. */
export interface PortLab {
  port: AfPacketPort;
  tx: VnetSender;
  memory: PacketMemory;
  counters: Float64Array;
  upMac: string;
  peerMac: string;
}

/**
 * Two namespaces joined by a quiet veth (`mtu`), an AfPacketPort on up0 opened with `port`
 * (its memory and counters provided here) and a VnetSender on peer0; both closed after `fn`.
 */
export async function withPortLab(
  tag: string,
  o: { port: Omit<AfPacketPortOptions, 'ifname' | 'memory' | 'counters' | 'base'>; mtu?: number },
  fn: (lab: PortLab) => Promise<void>,
): Promise<void> {
  await withNetns([`${tag}-up`, `${tag}-peer`], async (up: Netns, peer: Netns) => {
    const { upMac, peerMac } = quietVeth(up, peer, o.mtu === undefined ? {} : { mtu: o.mtu });
    const memory = new PacketMemory();
    const counters = new Float64Array(32);
    const port = inNetnsSync(up, () => new AfPacketPort({ ...o.port, ifname: 'up0', memory, counters, base: 0 }));
    let tx: VnetSender | undefined;
    try {
      tx = inNetnsSync(peer, () => new VnetSender('peer0'));
      await fn({ port, tx, memory, counters, upMac, peerMac });
    } finally {
      tx?.close();
      port.close();
    }
  });
}
