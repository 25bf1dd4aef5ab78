/**
 * XDP programs of the benchmarks and their attachments inside lab namespaces.
 *
 *  - counting programs: add one to a per-CPU counter, then drop, pass, or redirect to an
 *    interface. The sink of the cross-connect runs one (it takes frames off the wire as a
 *    receiving pinhole does, and counts what was delivered without a process reading interface
 *    counters); the ceilings are one (receive-and-drop: count and XDP_DROP in the driver; the
 *    cross-connect: count and bpf_redirect to the other interface, never leaving the kernel);
 *  - a bare XDP_PASS: what any XDP program costs host traffic (on veth: the peer loses TSO);
 *  - pinhole's redirect-all program (kernel/workload.ts), whose XSKMAP the C reference forwarder
 *    fills with its sockets.
 * Every attachment is a bpf_link made from this process (netns.ts inNetns), so it ends with the
 * bench, even on SIGKILL; `close()` ends it earlier.
 */
import { alu64, assemble, call, exit, FP, Helper, jmp, ld, ldx, R0, R1, R2, st, stx } from '../../bpf/asm/index.ts';
import { XDP_DROP, XDP_PASS } from '../../kernel/bpf-attr.ts';
import { createMap, possibleCpus, type BpfMap } from '../../kernel/map.ts';
import { loadProgram, type Program } from '../../kernel/program.ts';
import { loadRedirectAll, type LoadedRedirectAll } from '../../kernel/workload.ts';
import { attachXdp } from '../../kernel/xdp-attach.ts';
import { alloc } from '../../sys/index.ts';
import { inNetns } from './netns.ts';

export type CountAction = { kind: 'drop' } | { kind: 'pass' } | { kind: 'redirect'; ifindex: number };

export interface CountingProgram {
  readonly program: Program;
  /** Frames seen so far, summed over CPUs. */
  count(): number;
  close(): void;
}

export function loadCounting(name: string, action: CountAction): CountingProgram {
  const counter: BpfMap = createMap({ name: `${name}_n`, type: 'percpu_array', keySize: 4, valueSize: 8, maxEntries: 1 });
  try {
    const tail =
      action.kind === 'redirect'
        ? [alu64.mov.imm(R1, action.ifindex).sym('out'), alu64.mov.imm(R2, 0), call(Helper.redirect), exit()]
        : [alu64.mov.imm(R0, action.kind === 'drop' ? XDP_DROP : XDP_PASS).sym('out'), exit()];
    const program = loadProgram({
      name,
      type: 'xdp',
      insns: assemble(
        [
          st.w(FP, -4, 0),
          ld.map(R1, 'n'),
          alu64.mov.reg(R2, FP),
          alu64.add.imm(R2, -4),
          call(Helper.map_lookup_elem),
          jmp.jeq.imm(R0, 0, 'out'),
          ldx.dw(R1, R0, 0),
          alu64.add.imm(R1, 1),
          stx.dw(R0, 0, R1),
          ...tail,
        ],
        { maps: { n: counter.fd } },
      ),
    });
    const key = alloc(4);
    const cpus = possibleCpus();
    return {
      program,
      count() {
        const v = counter.lookup(key);
        if (!v) return 0;
        const dv = new DataView(v.buffer, v.byteOffset, v.byteLength);
        let sum = 0;
        for (let c = 0; c < cpus; c++) sum += Number(dv.getBigUint64(c * 8, true));
        return sum;
      },
      close() {
        program.close();
        counter.close();
      },
    };
  } catch (err) {
    counter.close();
    throw err;
  }
}

/** A bare `return XDP_PASS`. */
export function loadPass(): Program {
  return loadProgram({ name: 'ph_bench_pass', type: 'xdp', insns: assemble([alu64.mov.imm(R0, XDP_PASS), exit()]) });
}

export interface Attached {
  mode: 'native' | 'generic';
  close(): void;
}

/** Attaches `progFd` to `iface` in namespace `ns` through bpf_link (native XDP unless refused). */
export function attachIn(ns: string, iface: string, progFd: number): Attached {
  const att = inNetns(ns, () => attachXdp(progFd, { iface, mode: 'auto', via: 'bpf_link', persist: false, replace: false }));
  return { mode: att.mode, close: () => att.close() };
}

/** pinhole's redirect-all program with an XSKMAP of `queues` entries (for the C forwarder). */
export function loadRedirectAllFor(queues: number): LoadedRedirectAll {
  return loadRedirectAll({ queues });
}
