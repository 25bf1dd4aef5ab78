/**
 * A transmit-only AF_PACKET socket for GSO trains: one sendto(2) hands the kernel a whole run of
 * VXLAN packets of one flow as a single skb, marked for UDP segmentation offload (a
 * virtio_net_hdr in front of the frame, PACKET_VNET_HDR, gso_type VIRTIO_NET_HDR_GSO_UDP_L4):
 *
 *   │ virtio_net_hdr (10) │ eth │ IP │ UDP │ vxlan │ inner 0 │ vxlan │ inner 1 │ … │
 *     NEEDS_CSUM, UDP_L4,                   └────── gso_size ───────┘
 *     csum_start = UDP header, csum_offset 6 (the UDP checksum field holds the pseudo-header sum)
 *
 * The kernel cuts the UDP payload every gso_size bytes and gives each piece the outer headers
 * (lengths, IP ID and checksums fixed per piece): `__udp_gso_segment` in net/ipv4/udp_offload.c.
 * Where it does so is the point: a device that offers NETIF_F_GSO_UDP_L4 (a NIC with USO, veth)
 * takes the train whole; otherwise the stack segments it in software on transmit. Either way
 * the forwarder's CPU pays one socket call and one skb per train instead of one per packet,
 * which is the kernel's per-segment cost that bounded TCP through the AF_XDP uplink.
 *
 * The socket is bound to the uplink with protocol 0, so it receives nothing. Unlike pinhole's
 * other AF_PACKET sockets it goes through the qdisc (no PACKET_QDISC_BYPASS): the bypass,
 * __dev_direct_xmit, drops any skb that validate_xmit_skb had to change, and a train the device
 * cannot take whole is exactly that (segmented in software: seen on a veth whose peer runs XDP,
 * which turns GSO off towards it; every train was lost with ENOBUFS). Its send buffer is raised
 * (SO_SNDBUFFORCE, 4 MiB: a few dozen 64 KiB trains in flight), and sends never block
 * (MSG_DONTWAIT: a full buffer is a counted drop, -EAGAIN/-ENOBUFS, never a wait).
 *
 * Kernel support: AF_PACKET parses the vnet header with virtio_net_hdr_to_skb(), which knows
 * VIRTIO_NET_HDR_GSO_UDP_L4 from Linux 6.2 on (trainsSupported). References: Documentation/
 * networking/segmentation-offloads.rst (UDP fragmentation offload → GSO_UDP_L4),
 * include/linux/virtio_net.h, net/packet/af_packet.c (packet_snd).
 */
import { releaseAtLeast } from '../../kernel/features.ts';
import { alloc, getSys, PinholeError, SysError } from '../../sys/index.ts';
import {
  AF_PACKET,
  MSG_DONTWAIT,
  PACKET_VNET_HDR,
  SOCK_CLOEXEC,
  SOCK_RAW,
  SO_SNDBUF,
  SO_SNDBUFFORCE,
  SOL_PACKET,
  SOL_SOCKET,
  sockaddrLlLayout,
} from './abi.ts';
import { int32 } from './filter.ts';

const SNDBUF = 4 << 20;

/** Whether this kernel's AF_PACKET takes UDP_L4 GSO in a vnet header (Linux ≥ 6.2). */
export function trainsSupported(kernelRelease: string): boolean {
  return releaseAtLeast(kernelRelease, 6, 2);
}

/** What sends a train: the socket, or a recorder in tests. */
export interface TrainSender {
  /** Sends `length` bytes at native `address`; the bytes sent or -errno. Never throws. */
  send(address: number, length: number): number;
  close(): void;
}

export class TrainSocket implements TrainSender {
  private closed = false;
  private constructor(
    readonly fd: number,
    readonly ifname: string,
  ) {}

  /** Opens the socket on `ifname`. Throws ERR_AFPACKET_OPEN naming the step that failed. */
  static open(ifname: string): TrainSocket {
    const sys = getSys();
    let step = 'if_nametoindex';
    let fd = -1;
    try {
      const ifindex = sys.ifNameToIndex(ifname);
      step = 'socket';
      fd = sys.socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
      step = 'PACKET_VNET_HDR';
      sys.setsockopt(fd, SOL_PACKET, PACKET_VNET_HDR, int32(1));
      step = 'SO_SNDBUF';
      try {
        sys.setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, int32(SNDBUF));
      } catch {
        // Without CAP_NET_ADMIN: as much as net.core.wmem_max allows.
        sys.setsockopt(fd, SOL_SOCKET, SO_SNDBUF, int32(SNDBUF));
      }
      step = 'bind';
      // Protocol 0: bound for sending only, no packet is ever queued to this socket.
      sys.bind(fd, sockaddrLlLayout.encode({ sll_family: AF_PACKET, sll_protocol: 0, sll_ifindex: ifindex }, alloc(sockaddrLlLayout.size)));
      return new TrainSocket(fd, ifname);
    } catch (cause) {
      if (fd >= 0) sys.close(fd);
      const errno = cause instanceof SysError ? ` (${cause.code})` : '';
      throw new PinholeError('ERR_AFPACKET_OPEN', `open GSO train socket on ${ifname}: ${step} failed${errno}`, {
        cause,
        details: { ifname, step },
      });
    }
  }

  /**
   * Sends `length` bytes at native address `address` (virtio_net_hdr, then the frame). Returns
   * the bytes sent or -errno (EAGAIN/ENOBUFS: the send buffer or the device is full). Never throws.
   */
  send(address: number, length: number): number {
    return getSys().trySendtoAddr(this.fd, address, length, MSG_DONTWAIT);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    getSys().close(this.fd);
  }
}
