/**
 * AF_XDP UAPI: socket options, flags, mmap page offsets and struct layouts, declared once from
 * include/uapi/linux/if_xdp.h (Documentation/networking/af_xdp.rst). The layouts are pinned to
 * the system headers by test/unit/struct-layout.test.ts.
 */
import { defineStruct } from '../../sys/index.ts';

const H = 'linux/if_xdp.h';

export const AF_XDP = 44;
export const SOCK_RAW = 3;
export const SOL_XDP = 283;

// struct sockaddr_xdp.sxdp_flags
export const XDP_SHARED_UMEM = 1 << 0;
export const XDP_COPY = 1 << 1;
export const XDP_ZEROCOPY = 1 << 2;
export const XDP_USE_NEED_WAKEUP = 1 << 3;

// xdp_umem_reg.flags
export const XDP_UMEM_UNALIGNED_CHUNK_FLAG = 1 << 0;

// SOL_XDP socket options
export const XDP_MMAP_OFFSETS = 1;
export const XDP_RX_RING = 2;
export const XDP_TX_RING = 3;
export const XDP_UMEM_REG = 4;
export const XDP_UMEM_FILL_RING = 5;
export const XDP_UMEM_COMPLETION_RING = 6;
export const XDP_STATISTICS = 7;
export const XDP_OPTIONS = 8;

// xdp_options.flags
export const XDP_OPTIONS_ZEROCOPY = 1 << 0;

// xdp_ring_offset.flags word
export const XDP_RING_NEED_WAKEUP = 1 << 0;

// mmap(2) page offsets selecting which ring a mapping of the socket fd returns.
export const XDP_PGOFF_RX_RING = 0;
export const XDP_PGOFF_TX_RING = 0x80000000;
export const XDP_UMEM_PGOFF_FILL_RING = 0x100000000;
export const XDP_UMEM_PGOFF_COMPLETION_RING = 0x180000000;

/** The kernel puts the packet at chunk + XDP_PACKET_HEADROOM + umem headroom on receive. */
export const XDP_PACKET_HEADROOM = 256;

/** struct xdp_desc: { u64 addr; u32 len; u32 options } — RX and TX ring entries. */
export const XDP_DESC_SIZE = 16;
/** Fill and completion ring entries are bare u64 UMEM addresses. */
export const XDP_ADDR_SIZE = 8;

export const SockaddrXdp = defineStruct(
  'sockaddr_xdp',
  [
    ['sxdp_family', 'u16'],
    ['sxdp_flags', 'u16'],
    ['sxdp_ifindex', 'u32'],
    ['sxdp_queue_id', 'u32'],
    ['sxdp_shared_umem_fd', 'u32'],
  ],
  { cType: 'struct sockaddr_xdp', header: H },
);

export const XdpRingOffset = defineStruct(
  'xdp_ring_offset',
  [
    ['producer', 'u64'],
    ['consumer', 'u64'],
    ['desc', 'u64'],
    ['flags', 'u64'],
  ],
  { cType: 'struct xdp_ring_offset', header: H },
);

export const XdpMmapOffsets = defineStruct(
  'xdp_mmap_offsets',
  [
    ['rx', XdpRingOffset],
    ['tx', XdpRingOffset],
    ['fr', XdpRingOffset],
    ['cr', XdpRingOffset],
  ],
  { cType: 'struct xdp_mmap_offsets', header: H },
);

/**
 * struct xdp_umem_reg. Newer kernels append `tx_metadata_len` in what is padding here (the
 * struct stays 32 bytes); a zero there means "no TX metadata", which is what we want.
 */
export const XdpUmemReg = defineStruct(
  'xdp_umem_reg',
  [
    ['addr', 'u64'],
    ['len', 'u64'],
    ['chunk_size', 'u32'],
    ['headroom', 'u32'],
    ['flags', 'u32'],
  ],
  { cType: 'struct xdp_umem_reg', header: H },
);

export const XdpStatistics = defineStruct(
  'xdp_statistics',
  [
    ['rx_dropped', 'u64'],
    ['rx_invalid_descs', 'u64'],
    ['tx_invalid_descs', 'u64'],
    ['rx_ring_full', 'u64'],
    ['rx_fill_ring_empty_descs', 'u64'],
    ['tx_ring_empty_descs', 'u64'],
  ],
  { cType: 'struct xdp_statistics', header: H },
);

export const XdpOptions = defineStruct('xdp_options', [['flags', 'u32']], { cType: 'struct xdp_options', header: H });
