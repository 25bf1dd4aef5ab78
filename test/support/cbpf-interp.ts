/**
 * A classic BPF interpreter with the Linux socket-filter semantics (net/core/filter.c, which
 * converts cBPF to eBPF; the behaviour below is what that conversion does):
 *
 *   - A, X and M[0..15] are 32-bit unsigned; all start at 0 (the kernel's checker rejects reads
 *     of M[k] before a store; `validate()` does too).
 *   - ld/ldh/ldb abs and ind read big-endian packet bytes at k or X+k. A read that does not fit
 *     in the packet ends the program with return value 0 (the packet is dropped from the socket).
 *   - Offsets SKF_AD_OFF + n (ld abs word) read ancillary skb data (VLAN tag, protocol, ...) from
 *     the `CbpfContext`; other negative offsets (SKF_NET_OFF, SKF_LL_OFF) are not supported here
 *     and fail validation.
 *   - Division or modulo by X = 0 returns 0; by k = 0 is rejected by validation.
 *   - Shifts by X use the low 5 bits (what the JITs and the eBPF interpreter do for ALU32).
 *   - ret k / ret a: the return value is the number of bytes to keep (0 = drop).
 *
 * `CbpfVm.run()` is allocation-free: it is used by the 100k-frame differential test and may be
 * used on a dataplane fallback path.
 */
import {
  BPF_A,
  BPF_ABS,
  BPF_ADD,
  BPF_K,
  BPF_ALU,
  BPF_AND,
  BPF_B,
  BPF_DIV,
  BPF_H,
  BPF_IMM,
  BPF_IND,
  BPF_JA,
  BPF_JEQ,
  BPF_JGE,
  BPF_JGT,
  BPF_JMP,
  BPF_JSET,
  BPF_LD,
  BPF_LDX,
  BPF_LEN,
  BPF_LSH,
  BPF_MAXINSNS,
  BPF_MEM,
  BPF_MISC,
  BPF_MOD,
  BPF_MSH,
  BPF_MUL,
  BPF_NEG,
  BPF_OR,
  BPF_RET,
  BPF_RSH,
  BPF_ST,
  BPF_STX,
  BPF_SUB,
  BPF_TXA,
  BPF_W,
  BPF_X,
  BPF_XOR,
  SKF_AD_IFINDEX,
  SKF_AD_OFF,
  SKF_AD_PKTTYPE,
  SKF_AD_PROTOCOL,
  SKF_AD_VLAN_TAG,
  SKF_AD_VLAN_TAG_PRESENT,
  SKF_AD_VLAN_TPID,
  CbpfAsmError,
  disasmInsn,
} from '../../src/bpf/cbpf/asm.ts';
import type { CbpfProgram } from '../../src/bpf/cbpf/asm.ts';

/** skb metadata visible to ancillary loads. Mutable: reuse one per VM, set fields per packet. */
export interface CbpfContext {
  /** skb->protocol in host order (the ethertype, e.g. 0x0800). */
  protocol: number;
  pktType: number;
  ifindex: number;
  /** Whether the outer VLAN tag was taken out of the frame into metadata (RX VLAN offload). */
  vlanPresent: boolean;
  vlanTci: number;
  vlanTpid: number;
}

export function newContext(): CbpfContext {
  return { protocol: 0, pktType: 0, ifindex: 0, vlanPresent: false, vlanTci: 0, vlanTpid: 0 };
}

const ANCILLARY = new Set([SKF_AD_PROTOCOL, SKF_AD_PKTTYPE, SKF_AD_IFINDEX, SKF_AD_VLAN_TAG, SKF_AD_VLAN_TAG_PRESENT, SKF_AD_VLAN_TPID]);

/**
 * The checks of the kernel's bpf_check_classic() that matter for programs we build: known
 * opcodes, jumps inside the program, a final ret, constant divisors and shifts in range, scratch
 * slots written before read on every path, supported ancillary offsets. Throws CbpfAsmError.
 */
export function validate(prog: CbpfProgram): void {
  const n = prog.length;
  if (n === 0 || n > BPF_MAXINSNS) throw new CbpfAsmError(`program length ${n} not in 1..${BPF_MAXINSNS}`);
  // Bitmask of initialised M[] slots known at each instruction (intersection over incoming edges).
  const known = new Int32Array(n).fill(-1);
  known[0] = 0;
  for (let i = 0; i < n; i++) {
    const code = prog.code[i]!;
    const k = prog.k[i]!;
    const cls = code & 0x07;
    let mem = known[i]!;
    const fail = (why: string): never => {
      throw new CbpfAsmError(`${why} (${disasmInsn(prog, i)})`, i);
    };
    const flow = (to: number): void => {
      if (to >= n) fail(`jump target ${to} past the end`);
      known[to] = known[to]! & mem;
    };
    switch (cls) {
      case BPF_LD:
      case BPF_LDX: {
        const mode = code & 0xe0;
        if (mode === BPF_MEM) {
          if (k >= 16) fail('scratch slot out of range');
          if ((mem & (1 << k)) === 0) fail(`M[${k}] read before it is written`);
        } else if (mode === BPF_ABS && cls === BPF_LD) {
          const s = k | 0;
          if (s < 0) {
            if (s < SKF_AD_OFF || !ANCILLARY.has(s - SKF_AD_OFF) || (code & 0x18) !== BPF_W) fail('unsupported negative offset');
          }
        } else if (
          !(mode === BPF_IND && cls === BPF_LD) &&
          mode !== BPF_IMM &&
          mode !== BPF_LEN &&
          !(mode === BPF_MSH && cls === BPF_LDX && (code & 0x18) === BPF_B)
        ) {
          fail('unknown load');
        }
        flow(i + 1);
        break;
      }
      case BPF_ST:
      case BPF_STX:
        if (k >= 16) fail('scratch slot out of range');
        mem |= 1 << k;
        flow(i + 1);
        break;
      case BPF_ALU: {
        const op = code & 0xf0;
        if ((code & BPF_X) === 0 && (op === BPF_DIV || op === BPF_MOD) && k === 0) fail('division by constant 0');
        if ((code & BPF_X) === 0 && (op === BPF_LSH || op === BPF_RSH) && k >= 32) fail('shift by 32 or more');
        if (op > BPF_XOR) fail('unknown alu op');
        flow(i + 1);
        break;
      }
      case BPF_JMP: {
        const op = code & 0xf0;
        if (op === BPF_JA) {
          flow(i + 1 + k);
        } else if (op === BPF_JEQ || op === BPF_JGT || op === BPF_JGE || op === BPF_JSET) {
          flow(i + 1 + prog.jt[i]!);
          flow(i + 1 + prog.jf[i]!);
        } else {
          fail('unknown jump');
        }
        break;
      }
      case BPF_RET:
        if ((code & 0x18) !== 0 && (code & 0x18) !== BPF_A) fail('ret x is not allowed');
        break;
      case BPF_MISC:
        flow(i + 1);
        break;
    }
  }
  if ((prog.code[n - 1]! & 0x07) !== BPF_RET) throw new CbpfAsmError('the last instruction must be a ret', n - 1);
}

/**
 * Runs programs over packets. One VM per thread; `run()` allocates nothing.
 */
export class CbpfVm {
  readonly ctx: CbpfContext = newContext();
  private readonly mem = new Uint32Array(16);
  /** Instructions executed by the last run (for tests and cost estimates). */
  steps = 0;

  /**
   * Runs `prog` over buf[off, off+len) and returns the filter's result (bytes to keep; 0 =
   * drop). The program must have passed `validate()`.
   */
  run(prog: CbpfProgram, buf: Uint8Array, off: number, len: number): number {
    const code = prog.code;
    const jt = prog.jt;
    const jf = prog.jf;
    const kk = prog.k;
    const m = this.mem;
    let a = 0;
    let x = 0;
    let pc = 0;
    let steps = 0;
    for (;;) {
      const c = code[pc]!;
      const k = kk[pc]!;
      steps++;
      pc++;
      switch (c) {
        // Loads into A.
        case BPF_LD | BPF_W | BPF_ABS:
        case BPF_LD | BPF_H | BPF_ABS:
        case BPF_LD | BPF_B | BPF_ABS:
        case BPF_LD | BPF_W | BPF_IND:
        case BPF_LD | BPF_H | BPF_IND:
        case BPF_LD | BPF_B | BPF_IND: {
          let at: number;
          if ((c & 0xe0) === BPF_ABS) {
            const s = k | 0;
            if (s < 0) {
              a = this.ancillary(s - SKF_AD_OFF);
              break;
            }
            at = k;
          } else {
            at = (x + k) >>> 0;
          }
          const size = c & 0x18;
          const n = size === BPF_W ? 4 : size === BPF_H ? 2 : 1;
          if (at + n > len) {
            this.steps = steps;
            return 0;
          }
          const p = off + at;
          if (n === 4) a = ((buf[p]! << 24) | (buf[p + 1]! << 16) | (buf[p + 2]! << 8) | buf[p + 3]!) >>> 0;
          else if (n === 2) a = (buf[p]! << 8) | buf[p + 1]!;
          else a = buf[p]!;
          break;
        }
        case BPF_LD | BPF_IMM:
          a = k;
          break;
        case BPF_LD | BPF_MEM:
          a = m[k]!;
          break;
        case BPF_LD | BPF_W | BPF_LEN:
          a = len;
          break;
        case BPF_LDX | BPF_W | BPF_IMM:
          x = k;
          break;
        case BPF_LDX | BPF_W | BPF_MEM:
          x = m[k]!;
          break;
        case BPF_LDX | BPF_W | BPF_LEN:
          x = len;
          break;
        case BPF_LDX | BPF_B | BPF_MSH:
          if (k >= len) {
            this.steps = steps;
            return 0;
          }
          x = (buf[off + k]! & 0xf) << 2;
          break;
        case BPF_ST:
          m[k] = a;
          break;
        case BPF_STX:
          m[k] = x;
          break;

        case BPF_ALU | BPF_ADD | BPF_K:
          a = (a + k) >>> 0;
          break;
        case BPF_ALU | BPF_ADD | BPF_X:
          a = (a + x) >>> 0;
          break;
        case BPF_ALU | BPF_SUB | BPF_K:
          a = (a - k) >>> 0;
          break;
        case BPF_ALU | BPF_SUB | BPF_X:
          a = (a - x) >>> 0;
          break;
        case BPF_ALU | BPF_MUL | BPF_K:
          a = Math.imul(a, k) >>> 0;
          break;
        case BPF_ALU | BPF_MUL | BPF_X:
          a = Math.imul(a, x) >>> 0;
          break;
        case BPF_ALU | BPF_DIV | BPF_K:
          a = Math.floor(a / k) >>> 0;
          break;
        case BPF_ALU | BPF_DIV | BPF_X:
          if (x === 0) {
            this.steps = steps;
            return 0;
          }
          a = Math.floor(a / x) >>> 0;
          break;
        case BPF_ALU | BPF_MOD | BPF_K:
          a = a % k;
          break;
        case BPF_ALU | BPF_MOD | BPF_X:
          if (x === 0) {
            this.steps = steps;
            return 0;
          }
          a = a % x;
          break;
        case BPF_ALU | BPF_OR | BPF_K:
          a = (a | k) >>> 0;
          break;
        case BPF_ALU | BPF_OR | BPF_X:
          a = (a | x) >>> 0;
          break;
        case BPF_ALU | BPF_AND | BPF_K:
          a = (a & k) >>> 0;
          break;
        case BPF_ALU | BPF_AND | BPF_X:
          a = (a & x) >>> 0;
          break;
        case BPF_ALU | BPF_XOR | BPF_K:
          a = (a ^ k) >>> 0;
          break;
        case BPF_ALU | BPF_XOR | BPF_X:
          a = (a ^ x) >>> 0;
          break;
        case BPF_ALU | BPF_LSH | BPF_K:
          a = (a << k) >>> 0;
          break;
        case BPF_ALU | BPF_LSH | BPF_X:
          a = (a << (x & 31)) >>> 0;
          break;
        case BPF_ALU | BPF_RSH | BPF_K:
          a = a >>> k;
          break;
        case BPF_ALU | BPF_RSH | BPF_X:
          a = a >>> (x & 31);
          break;
        case BPF_ALU | BPF_NEG:
          a = (0 - a) >>> 0;
          break;

        case BPF_JMP | BPF_JA:
          pc += k;
          break;
        case BPF_JMP | BPF_JEQ | BPF_K:
          pc += a === k ? jt[pc - 1]! : jf[pc - 1]!;
          break;
        case BPF_JMP | BPF_JEQ | BPF_X:
          pc += a === x ? jt[pc - 1]! : jf[pc - 1]!;
          break;
        case BPF_JMP | BPF_JGT | BPF_K:
          pc += a > k ? jt[pc - 1]! : jf[pc - 1]!;
          break;
        case BPF_JMP | BPF_JGT | BPF_X:
          pc += a > x ? jt[pc - 1]! : jf[pc - 1]!;
          break;
        case BPF_JMP | BPF_JGE | BPF_K:
          pc += a >= k ? jt[pc - 1]! : jf[pc - 1]!;
          break;
        case BPF_JMP | BPF_JGE | BPF_X:
          pc += a >= x ? jt[pc - 1]! : jf[pc - 1]!;
          break;
        case BPF_JMP | BPF_JSET | BPF_K:
          pc += (a & k) !== 0 ? jt[pc - 1]! : jf[pc - 1]!;
          break;
        case BPF_JMP | BPF_JSET | BPF_X:
          pc += (a & x) !== 0 ? jt[pc - 1]! : jf[pc - 1]!;
          break;

        case BPF_RET:
          this.steps = steps;
          return k;
        case BPF_RET | BPF_A:
          this.steps = steps;
          return a;
        case BPF_MISC | 0:
          x = a;
          break; // tax
        case BPF_MISC | BPF_TXA:
          a = x;
          break;
        default:
          throw new CbpfAsmError(`cannot run opcode 0x${c.toString(16)}`, pc - 1);
      }
    }
  }

  private ancillary(what: number): number {
    const c = this.ctx;
    switch (what) {
      case SKF_AD_PROTOCOL:
        return c.protocol;
      case SKF_AD_PKTTYPE:
        return c.pktType;
      case SKF_AD_IFINDEX:
        return c.ifindex;
      case SKF_AD_VLAN_TAG:
        return c.vlanTci;
      case SKF_AD_VLAN_TAG_PRESENT:
        return c.vlanPresent ? 1 : 0;
      case SKF_AD_VLAN_TPID:
        return c.vlanTpid;
    }
    return 0;
  }
}
