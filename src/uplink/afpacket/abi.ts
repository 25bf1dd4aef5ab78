/**
 * AF_PACKET UAPI: constants and struct layouts from linux/if_packet.h, linux/if_ether.h and
 * asm-generic/socket.h (x86_64 / arm64 values). Layouts are pinned to the system headers by
 * test/unit/struct-layout.test.ts. See Documentation/networking/packet_mmap.rst.
 */
import { defineStruct } from '../../sys/struct.ts';

export {
  AF_INET,
  AF_INET6,
  AF_PACKET,
  MAP_SHARED,
  MSG_DONTWAIT,
  MSG_TRUNC,
  POLLERR,
  POLLHUP,
  POLLIN,
  POLLNVAL,
  PROT_READ,
  PROT_WRITE,
  SOCK_CLOEXEC,
  SOCK_DGRAM,
  SOCK_RAW,
} from '../../sys/unix.ts';
export const ETH_P_ALL = 0x0003;

export const SOL_SOCKET = 1;
export const SO_ERROR = 4;
export const SO_RCVBUF = 8;
export const SO_RCVBUFFORCE = 33;
export const SO_SNDBUF = 7;
export const SO_SNDBUFFORCE = 32;
export const SO_ATTACH_FILTER = 26;
export const SO_LOCK_FILTER = 44;
export const IPPROTO_IPV6 = 41;
export const IPV6_V6ONLY = 26;

export const SOL_PACKET = 263;
export const PACKET_RX_RING = 5;
export const PACKET_STATISTICS = 6;
export const PACKET_TX_RING = 13;
export const PACKET_VERSION = 10;
export const PACKET_FANOUT = 18;
export const PACKET_QDISC_BYPASS = 20;
/** Frames carry a struct virtio_net_hdr (10 bytes) in front: GSO and checksum offload metadata. */
export const PACKET_VNET_HDR = 15;
export const PACKET_IGNORE_OUTGOING = 23;
export const TPACKET_V2 = 1;
export const TPACKET_V3 = 2;
/** Frames larger than a TPACKET_V2 ring slot also go, whole, to the socket's receive queue (TP_STATUS_COPY). */
export const PACKET_COPY_THRESH = 7;

export const PACKET_FANOUT_HASH = 0;
export const PACKET_FANOUT_LB = 1;
export const PACKET_FANOUT_CPU = 2;
export const PACKET_FANOUT_QM = 5;

/** TX ring frame status (tp_status). */
export const TP_STATUS_AVAILABLE = 0;
export const TP_STATUS_SEND_REQUEST = 1;
export const TP_STATUS_SENDING = 2;
export const TP_STATUS_WRONG_FORMAT = 4;

/** Block and frame status bits. */
export const TP_STATUS_KERNEL = 0;
export const TP_STATUS_USER = 1 << 0;
export const TP_STATUS_COPY = 1 << 1;
export const TP_STATUS_LOSING = 1 << 2;
export const TP_STATUS_CSUMNOTREADY = 1 << 3;
export const TP_STATUS_VLAN_VALID = 1 << 4;
export const TP_STATUS_BLK_TMO = 1 << 5;
export const TP_STATUS_VLAN_TPID_VALID = 1 << 6;

/** Interface ioctls (linux/sockios.h) and struct ifreq (40 bytes: name[16], then a union). */
export const SIOCGIFNAME = 0x8910;
export const SIOCGIFFLAGS = 0x8913;
export const IFREQ_SIZE = 40;
export const IFF_UP = 0x1;

/** ETH_P_ALL in network byte order, as sll_protocol and socket()'s protocol want it. */
export const ETH_P_ALL_BE = ((ETH_P_ALL & 0xff) << 8) | (ETH_P_ALL >> 8);

export const sockaddrLlLayout = defineStruct(
  'sockaddr_ll',
  [
    ['sll_family', 'u16'],
    ['sll_protocol', 'u16'], // network byte order
    ['sll_ifindex', 's32'],
    ['sll_hatype', 'u16'],
    ['sll_pkttype', 'u8'],
    ['sll_halen', 'u8'],
    ['sll_addr', { bytes: 8 }],
  ],
  { cType: 'struct sockaddr_ll', header: 'linux/if_packet.h' },
);

export const tpacketReq3Layout = defineStruct(
  'tpacket_req3',
  [
    ['tp_block_size', 'u32'],
    ['tp_block_nr', 'u32'],
    ['tp_frame_size', 'u32'],
    ['tp_frame_nr', 'u32'],
    ['tp_retire_blk_tov', 'u32'],
    ['tp_sizeof_priv', 'u32'],
    ['tp_feature_req_word', 'u32'],
  ],
  { cType: 'struct tpacket_req3', header: 'linux/if_packet.h' },
);

export const tpacketBdTsLayout = defineStruct(
  'tpacket_bd_ts',
  [
    ['ts_sec', 'u32'],
    ['ts_usec', 'u32'], // union with ts_nsec
  ],
  { cType: 'struct tpacket_bd_ts', header: 'linux/if_packet.h' },
);

export const tpacketHdrV1Layout = defineStruct(
  'tpacket_hdr_v1',
  [
    ['block_status', 'u32'],
    ['num_pkts', 'u32'],
    ['offset_to_first_pkt', 'u32'],
    ['blk_len', 'u32'],
    ['seq_num', 'u64'],
    ['ts_first_pkt', tpacketBdTsLayout],
    ['ts_last_pkt', tpacketBdTsLayout],
  ],
  { cType: 'struct tpacket_hdr_v1', header: 'linux/if_packet.h' },
);

export const tpacketBlockDescLayout = defineStruct(
  'tpacket_block_desc',
  [
    ['version', 'u32'],
    ['offset_to_priv', 'u32'],
    ['hdr', tpacketHdrV1Layout], // union tpacket_bd_header_u { struct tpacket_hdr_v1 bh1; }
  ],
  { cType: 'struct tpacket_block_desc', header: 'linux/if_packet.h' },
);

export const tpacketHdrVariant1Layout = defineStruct(
  'tpacket_hdr_variant1',
  [
    ['tp_rxhash', 'u32'],
    ['tp_vlan_tci', 'u32'],
    ['tp_vlan_tpid', 'u16'],
    ['tp_padding', 'u16'],
  ],
  { cType: 'struct tpacket_hdr_variant1', header: 'linux/if_packet.h' },
);

export const tpacket3HdrLayout = defineStruct(
  'tpacket3_hdr',
  [
    ['tp_next_offset', 'u32'],
    ['tp_sec', 'u32'],
    ['tp_nsec', 'u32'],
    ['tp_snaplen', 'u32'],
    ['tp_len', 'u32'],
    ['tp_status', 'u32'],
    ['tp_mac', 'u16'],
    ['tp_net', 'u16'],
    ['hv1', tpacketHdrVariant1Layout], // anonymous union { struct tpacket_hdr_variant1 hv1; }
    ['tp_padding', { bytes: 8 }],
  ],
  { cType: 'struct tpacket3_hdr', header: 'linux/if_packet.h' },
);

export const tpacket2HdrLayout = defineStruct(
  'tpacket2_hdr',
  [
    ['tp_status', 'u32'],
    ['tp_len', 'u32'],
    ['tp_snaplen', 'u32'],
    ['tp_mac', 'u16'],
    ['tp_net', 'u16'],
    ['tp_sec', 'u32'],
    ['tp_nsec', 'u32'], // union with tp_usec
    ['tp_vlan_tci', 'u16'],
    ['tp_vlan_tpid', 'u16'],
    ['tp_padding', { bytes: 4 }],
  ],
  { cType: 'struct tpacket2_hdr', header: 'linux/if_packet.h' },
);

export const tpacketStatsV3Layout = defineStruct(
  'tpacket_stats_v3',
  [
    ['tp_packets', 'u32'],
    ['tp_drops', 'u32'],
    ['tp_freeze_q_cnt', 'u32'],
  ],
  { cType: 'struct tpacket_stats_v3', header: 'linux/if_packet.h' },
);

// Offsets the ring walk uses, read once from the layouts (never per packet).
const BH1 = tpacketBlockDescLayout.offsets['hdr']!;
export const BLK_STATUS = BH1 + tpacketHdrV1Layout.offsets['block_status']!;
export const BLK_NUM_PKTS = BH1 + tpacketHdrV1Layout.offsets['num_pkts']!;
export const BLK_FIRST = BH1 + tpacketHdrV1Layout.offsets['offset_to_first_pkt']!;
export const BLK_SEQ = BH1 + tpacketHdrV1Layout.offsets['seq_num']!;
export const PKT_NEXT = tpacket3HdrLayout.offsets['tp_next_offset']!;
export const PKT_SNAPLEN = tpacket3HdrLayout.offsets['tp_snaplen']!;
export const PKT_LEN = tpacket3HdrLayout.offsets['tp_len']!;
export const PKT_STATUS = tpacket3HdrLayout.offsets['tp_status']!;
export const PKT_MAC = tpacket3HdrLayout.offsets['tp_mac']!;
const HV1 = tpacket3HdrLayout.offsets['hv1']!;
export const PKT_RXHASH = HV1 + tpacketHdrVariant1Layout.offsets['tp_rxhash']!;
export const PKT_VLAN_TCI = HV1 + tpacketHdrVariant1Layout.offsets['tp_vlan_tci']!;
export const PKT_VLAN_TPID = HV1 + tpacketHdrVariant1Layout.offsets['tp_vlan_tpid']!;
export const V2_STATUS = tpacket2HdrLayout.offsets['tp_status']!;
export const V2_LEN = tpacket2HdrLayout.offsets['tp_len']!;
export const V2_SNAPLEN = tpacket2HdrLayout.offsets['tp_snaplen']!;
export const V2_MAC = tpacket2HdrLayout.offsets['tp_mac']!;
export const V2_VLAN_TCI = tpacket2HdrLayout.offsets['tp_vlan_tci']!;
export const V2_VLAN_TPID = tpacket2HdrLayout.offsets['tp_vlan_tpid']!;
