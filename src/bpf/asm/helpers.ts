/**
 * BPF helper function ids: the imm of `call` (BPF_JMP | BPF_CALL, src 0). They are positions in
 * __BPF_FUNC_MAPPER in include/uapi/linux/bpf.h, which only ever appends, so ids are stable ABI.
 * Only helpers a pinhole-style XDP program (or its tests and probes) plausibly calls are listed;
 * call() takes any number.
 */
export const Helper = {
  map_lookup_elem: 1,
  map_update_elem: 2,
  map_delete_elem: 3,
  ktime_get_ns: 5,
  trace_printk: 6,
  get_prandom_u32: 7,
  get_smp_processor_id: 8,
  tail_call: 12,
  get_current_pid_tgid: 14,
  redirect: 23,
  perf_event_output: 25,
  csum_diff: 28,
  get_hash_recalc: 34,
  csum_update: 40,
  get_numa_node_id: 42,
  xdp_adjust_head: 44,
  redirect_map: 51,
  xdp_adjust_meta: 54,
  xdp_adjust_tail: 65,
  fib_lookup: 69,
  map_push_elem: 87,
  map_pop_elem: 88,
  map_peek_elem: 89,
  spin_lock: 93,
  spin_unlock: 94,
  probe_read_kernel: 113,
  jiffies64: 118,
  ktime_get_boot_ns: 125,
  ringbuf_output: 130,
  ringbuf_reserve: 131,
  ringbuf_submit: 132,
  ringbuf_discard: 133,
  ktime_get_coarse_ns: 160,
  check_mtu: 163,
  for_each_map_elem: 164,
  loop: 181,
  xdp_get_buff_len: 188,
  xdp_load_bytes: 189,
  xdp_store_bytes: 190,
  map_lookup_percpu_elem: 195,
} as const;

export type HelperName = keyof typeof Helper;

const namesById = new Map<number, string>(Object.entries(Helper).map(([name, id]) => [id, name]));

/** The name of a helper id listed in Helper, or undefined. */
export function helperName(id: number): string | undefined {
  return namesById.get(id);
}
