/**
 * `union bpf_attr` members and info structs for the bpf(2) commands pinhole uses, declared once
 * (include/uapi/linux/bpf.h). Each layout is one anonymous member of the union; the kernel reads
 * `size` bytes and treats the rest as zero, so passing just the member we fill is correct
 * (it rejects non-zero bytes it does not know, which is why we never pad with garbage).
 */
import { defineStruct } from '../sys/index.ts';

const H = 'linux/bpf.h';
const U = { cType: 'union bpf_attr', header: H, checkSize: false } as const;

export const BPF_OBJ_NAME_LEN = 16;

export const MapCreateAttr = defineStruct(
  'bpf_attr.map_create',
  [
    ['map_type', 'u32'],
    ['key_size', 'u32'],
    ['value_size', 'u32'],
    ['max_entries', 'u32'],
    ['map_flags', 'u32'],
    ['inner_map_fd', 'u32'],
    ['numa_node', 'u32'],
    ['map_name', { bytes: BPF_OBJ_NAME_LEN }],
    ['map_ifindex', 'u32'],
  ],
  U,
);

export const MapElemAttr = defineStruct(
  'bpf_attr.map_elem',
  [
    ['map_fd', 'u32'],
    ['key', 'u64'],
    ['value', 'u64'],
    ['flags', 'u64'],
  ],
  U,
);

export const MapBatchAttr = defineStruct(
  'bpf_attr.batch',
  [
    ['in_batch', 'u64'],
    ['out_batch', 'u64'],
    ['keys', 'u64'],
    ['values', 'u64'],
    ['count', 'u32'],
    ['map_fd', 'u32'],
    ['elem_flags', 'u64'],
    ['flags', 'u64'],
  ],
  { ...U, cPrefix: 'batch.' },
);

export const ProgLoadAttr = defineStruct(
  'bpf_attr.prog_load',
  [
    ['prog_type', 'u32'],
    ['insn_cnt', 'u32'],
    ['insns', 'u64'],
    ['license', 'u64'],
    ['log_level', 'u32'],
    ['log_size', 'u32'],
    ['log_buf', 'u64'],
    ['kern_version', 'u32'],
    ['prog_flags', 'u32'],
    ['prog_name', { bytes: BPF_OBJ_NAME_LEN }],
    ['prog_ifindex', 'u32'],
    ['expected_attach_type', 'u32'],
  ],
  U,
);

export const ObjAttr = defineStruct(
  'bpf_attr.obj',
  [
    ['pathname', 'u64'],
    ['bpf_fd', 'u32'],
    ['file_flags', 'u32'],
  ],
  U,
);

export const TestRunAttr = defineStruct(
  'bpf_attr.test',
  [
    ['prog_fd', 'u32'],
    ['retval', 'u32'],
    ['data_size_in', 'u32'],
    ['data_size_out', 'u32'],
    ['data_in', 'u64'],
    ['data_out', 'u64'],
    ['repeat', 'u32'],
    ['duration', 'u32'],
    ['ctx_size_in', 'u32'],
    ['ctx_size_out', 'u32'],
    ['ctx_in', 'u64'],
    ['ctx_out', 'u64'],
    ['flags', 'u32'],
    ['cpu', 'u32'],
    ['batch_size', 'u32'],
  ],
  { ...U, cPrefix: 'test.' },
);

export const GetIdAttr = defineStruct(
  'bpf_attr.get_id',
  [
    ['start_id', 'u32'],
    ['next_id', 'u32'],
    ['open_flags', 'u32'],
  ],
  U,
);

export const InfoAttr = defineStruct(
  'bpf_attr.info',
  [
    ['bpf_fd', 'u32'],
    ['info_len', 'u32'],
    ['info', 'u64'],
  ],
  { ...U, cPrefix: 'info.' },
);

export const LinkCreateAttr = defineStruct(
  'bpf_attr.link_create',
  [
    ['prog_fd', 'u32'],
    ['target_ifindex', 'u32'],
    ['attach_type', 'u32'],
    ['flags', 'u32'],
  ],
  { ...U, cPrefix: 'link_create.' },
);

export const LinkUpdateAttr = defineStruct(
  'bpf_attr.link_update',
  [
    ['link_fd', 'u32'],
    ['new_prog_fd', 'u32'],
    ['flags', 'u32'],
    ['old_prog_fd', 'u32'],
  ],
  { ...U, cPrefix: 'link_update.' },
);

/** Prefix of struct bpf_prog_info (the kernel copies min(info_len, its size)). */
export const ProgInfo = defineStruct(
  'bpf_prog_info',
  [
    ['type', 'u32'],
    ['id', 'u32'],
    ['tag', { bytes: 8 }],
    ['jited_prog_len', 'u32'],
    ['xlated_prog_len', 'u32'],
    ['jited_prog_insns', 'u64'],
    ['xlated_prog_insns', 'u64'],
    ['load_time', 'u64'],
    ['created_by_uid', 'u32'],
    ['nr_map_ids', 'u32'],
    ['map_ids', 'u64'],
    ['name', { bytes: BPF_OBJ_NAME_LEN }],
  ],
  { cType: 'struct bpf_prog_info', header: H, checkSize: false },
);

/** Prefix of struct bpf_map_info. */
export const MapInfo = defineStruct(
  'bpf_map_info',
  [
    ['type', 'u32'],
    ['id', 'u32'],
    ['key_size', 'u32'],
    ['value_size', 'u32'],
    ['max_entries', 'u32'],
    ['map_flags', 'u32'],
    ['name', { bytes: BPF_OBJ_NAME_LEN }],
  ],
  { cType: 'struct bpf_map_info', header: H, checkSize: false },
);

/** struct xdp_md: the XDP program context, also the ctx_in of BPF_PROG_TEST_RUN. */
export const XdpMd = defineStruct(
  'xdp_md',
  [
    ['data', 'u32'],
    ['data_end', 'u32'],
    ['data_meta', 'u32'],
    ['ingress_ifindex', 'u32'],
    ['rx_queue_index', 'u32'],
    ['egress_ifindex', 'u32'],
  ],
  { cType: 'struct xdp_md', header: H },
);

// enum bpf_cmd
export const BPF_MAP_CREATE = 0;
export const BPF_MAP_LOOKUP_ELEM = 1;
export const BPF_MAP_UPDATE_ELEM = 2;
export const BPF_MAP_DELETE_ELEM = 3;
export const BPF_MAP_GET_NEXT_KEY = 4;
export const BPF_PROG_LOAD = 5;
export const BPF_OBJ_PIN = 6;
export const BPF_OBJ_GET = 7;
export const BPF_PROG_TEST_RUN = 10;
export const BPF_PROG_GET_NEXT_ID = 11;
export const BPF_PROG_GET_FD_BY_ID = 13;
export const BPF_MAP_GET_FD_BY_ID = 14;
export const BPF_OBJ_GET_INFO_BY_FD = 15;
export const BPF_MAP_LOOKUP_BATCH = 24;
export const BPF_LINK_CREATE = 28;
export const BPF_LINK_UPDATE = 29;
export const BPF_LINK_GET_FD_BY_ID = 30;
export const BPF_LINK_DETACH = 34;

// enum bpf_map_type
export const BPF_MAP_TYPE_HASH = 1;
export const BPF_MAP_TYPE_ARRAY = 2;
export const BPF_MAP_TYPE_PERCPU_ARRAY = 6;
export const BPF_MAP_TYPE_XSKMAP = 17;

// enum bpf_prog_type
export const BPF_PROG_TYPE_SOCKET_FILTER = 1;
export const BPF_PROG_TYPE_XDP = 6;

// enum bpf_attach_type
export const BPF_XDP = 37;

// map update flags
export const BPF_ANY = 0;
export const BPF_NOEXIST = 1;
export const BPF_EXIST = 2;

// test run flags
export const BPF_F_TEST_XDP_LIVE_FRAMES = 1 << 1;

// XDP actions
export const XDP_ABORTED = 0;
export const XDP_DROP = 1;
export const XDP_PASS = 2;
export const XDP_TX = 3;
export const XDP_REDIRECT = 4;
export const XDP_ACTION_NAMES = ['XDP_ABORTED', 'XDP_DROP', 'XDP_PASS', 'XDP_TX', 'XDP_REDIRECT'] as const;

// XDP attach flags (linux/if_link.h)
export const XDP_FLAGS_UPDATE_IF_NOEXIST = 1 << 0;
export const XDP_FLAGS_SKB_MODE = 1 << 1;
export const XDP_FLAGS_DRV_MODE = 1 << 2;
export const XDP_FLAGS_HW_MODE = 1 << 3;
export const XDP_FLAGS_REPLACE = 1 << 4;
