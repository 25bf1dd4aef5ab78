/**
 * Attaching a classic BPF program to a socket: SO_ATTACH_FILTER with a `struct sock_fprog`
 * pointing at the `struct sock_filter[]`, optionally SO_LOCK_FILTER so that nobody (not even this
 * process) can detach or replace it afterwards. The kernel copies the program during the call;
 * the instruction array only has to stay reachable until setsockopt returns.
 */
import type { CbpfProgram } from '../../bpf/cbpf/asm.ts';
import { encode, sockFprogLayout } from '../../bpf/cbpf/asm.ts';
import { alloc, getSys } from '../../sys/index.ts';
import { SO_ATTACH_FILTER, SO_LOCK_FILTER, SOL_SOCKET } from './abi.ts';

export function attachFilter(fd: number, prog: CbpfProgram, opts: { lock?: boolean } = {}): void {
  const sys = getSys();
  const insns = encode(prog, alloc(prog.length * 8));
  const fprog = sockFprogLayout.encode({ len: prog.length, filter: sys.addressOf(insns) }, alloc(sockFprogLayout.size));
  // `insns` is referenced only by address inside `fprog`: `refs` keeps it reachable.
  sys.setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, fprog, [insns]);
  if (opts.lock) sys.setsockopt(fd, SOL_SOCKET, SO_LOCK_FILTER, int32(1));
}

export function int32(v: number): Uint8Array {
  const b = alloc(4);
  new DataView(b.buffer).setInt32(0, v, true);
  return b;
}
