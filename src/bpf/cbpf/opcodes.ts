/**
 * Classic BPF opcodes (linux/bpf_common.h, linux/filter.h). The encodings shared with eBPF
 * are re-exported from the eBPF opcodes; classes 0x06/0x07 differ (cBPF RET/MISC, eBPF
 * JMP32/ALU64) and are defined here with the classic-only modes and ancillary offsets.
 */
export {
  BPF_LD,
  BPF_LDX,
  BPF_ST,
  BPF_STX,
  BPF_ALU,
  BPF_JMP,
  BPF_W,
  BPF_H,
  BPF_B,
  BPF_IMM,
  BPF_ABS,
  BPF_IND,
  BPF_MEM,
  BPF_ADD,
  BPF_SUB,
  BPF_MUL,
  BPF_DIV,
  BPF_OR,
  BPF_AND,
  BPF_LSH,
  BPF_RSH,
  BPF_NEG,
  BPF_MOD,
  BPF_XOR,
  BPF_JA,
  BPF_JEQ,
  BPF_JGT,
  BPF_JGE,
  BPF_JSET,
  BPF_K,
  BPF_X,
} from '../asm/opcodes.ts';

export const BPF_RET = 0x06;
export const BPF_MISC = 0x07;
export const BPF_LEN = 0x80;
export const BPF_MSH = 0xa0;
export const BPF_A = 0x10; // BPF_RET only
// MISC.
export const BPF_TAX = 0x00;
export const BPF_TXA = 0x80;

export const BPF_MEMWORDS = 16;
export const BPF_MAXINSNS = 4096;

/** Ancillary data: `ld [SKF_AD_OFF + x]` reads skb metadata instead of packet bytes. */
export const SKF_AD_OFF = -0x1000;
export const SKF_AD_PROTOCOL = 0;
export const SKF_AD_PKTTYPE = 4;
export const SKF_AD_IFINDEX = 8;
export const SKF_AD_VLAN_TAG = 44;
export const SKF_AD_VLAN_TAG_PRESENT = 48;
export const SKF_AD_VLAN_TPID = 60;
