/**
 * The real Sys: libc through koffi (the project's only native dependency, and this file is its
 * only importer). Calls are declared with fixed prototypes; `syscall` is declared non-variadic
 * with integer/pointer arguments, which is ABI-identical to the variadic call on x86_64 and
 * arm64 for integer arguments.
 *
 * Pointers: koffi passes a TypedArray argument as a pointer to its bytes. Results that are
 * pointers (mmap) come back as koffi externals; `koffi.address()` turns them into BigInt and
 * `koffi.view()` gives a zero-copy ArrayBuffer over them.
 */
import koffi from 'koffi';
import { SysError } from './errors.ts';
import type { Mapping, Sys } from './sys.ts';

const SYS_bpf = process.arch === 'arm64' ? 280 : 321;
/** glibc's cpu_set_t: 1024 CPUs. */
const CPU_SET_BYTES = 128;
/** clockid_t of clock_gettime(2): linux/time.h. */
const CLOCK_MONOTONIC = 1;
const MAP_FAILED = 0xffffffffffffffffn;

/**
 * Buffers pointed to by the struct of the bpf/setsockopt/ioctl call in progress (see Sys.bpf):
 * a property of a module-level object, so they stay reachable until the call returns.
 */
const inFlight: { refs: readonly Uint8Array[] | undefined } = { refs: undefined };

/**
 * BPF_PROG_LOAD runs the verifier in the calling thread, and the verifier gives up with EAGAIN
 * as soon as a signal is pending for it (kernel/bpf/verifier.c checks signal_pending between
 * instructions). A profiler sampling with SIGPROF every millisecond (node --cpu-prof), on a
 * loaded machine where one verification takes longer than that, made every retry fail. The load
 * therefore runs with the thread's signals blocked (pthread_sigmask; glibc keeps its own
 * internal signals out of the set): a signal that arrives meanwhile stays pending and is
 * delivered the moment the mask is restored, a few milliseconds later at most.
 */
const BPF_PROG_LOAD = 5;
const SIG_BLOCK = 0;
const SIG_SETMASK = 2;
const SIGSET_BYTES = 128; // glibc's sigset_t

export function loadLibc(): Sys {
  const libc = koffi.load('libc.so.6');
  const syscall4 = libc.func('long syscall(long nr, long a1, void *a2, unsigned long a3)');
  const socket = libc.func('int socket(int domain, int type, int protocol)');
  const bind = libc.func('int bind(int fd, void *addr, unsigned int len)');
  const setsockopt = libc.func('int setsockopt(int fd, int level, int name, void *val, unsigned int len)');
  const getsockopt = libc.func('int getsockopt(int fd, int level, int name, void *val, _Inout_ unsigned int *len)');
  const ioctl = libc.func('int ioctl(int fd, unsigned long req, void *arg)');
  const mmap = libc.func('void *mmap(void *addr, size_t len, int prot, int flags, int fd, long off)');
  const munmap = libc.func('int munmap(void *addr, size_t len)');
  const poll = libc.func('int poll(void *fds, unsigned long nfds, int timeout)');
  const clockGettime = libc.func('int clock_gettime(int clk, void *ts)');
  // struct timespec { time_t tv_sec; long tv_nsec; } (64-bit little endian: x86-64, arm64): the
  // low words are enough (tv_sec's, signed, wrap after 68 years of uptime; tv_nsec < 1e9). Per
  // thread: a worker's nowMs is on its own performance.now() timeline.
  const ts = new Int32Array(4);
  const monotonicMs = (): number => {
    clockGettime(CLOCK_MONOTONIC, ts);
    return ts[0]! * 1000 + ts[2]! / 1e6;
  };
  const nowOrigin = monotonicMs() - performance.now();
  const sendto = libc.func('long sendto(int fd, void *buf, size_t len, int flags, void *addr, unsigned int alen)');
  const sendtoAddr = libc.func('long sendto(int fd, uintptr_t buf, size_t len, int flags, void *addr, unsigned int alen)');
  const recvfrom = libc.func('long recvfrom(int fd, void *buf, size_t len, int flags, void *addr, _Inout_ unsigned int *alen)');
  const recv = libc.func('long recv(int fd, void *buf, size_t len, int flags)');
  const close = libc.func('int close(int fd)');
  const mount = libc.func('int mount(const char *src, const char *target, const char *fstype, unsigned long flags, const char *data)');
  const unshare = libc.func('int unshare(int flags)');
  const setns = libc.func('int setns(int fd, int nstype)');
  const schedSetaffinity = libc.func('int sched_setaffinity(int pid, size_t size, void *mask)');
  const schedGetaffinity = libc.func('int sched_getaffinity(int pid, size_t size, _Out_ uint8_t *mask)');
  const ifNameToIndex = libc.func('unsigned int if_nametoindex(const char *name)');
  const ifIndexToName = libc.func('char *if_indextoname(unsigned int index, _Out_ uint8_t *name)');
  const pthreadSigmask = libc.func('int pthread_sigmask(int how, void *set, void *old)');
  const allSignals = new Uint8Array(SIGSET_BYTES).fill(0xff);
  const savedMask = new Uint8Array(SIGSET_BYTES);

  const fail = (name: string, detail?: string): never => {
    throw new SysError(name, koffi.errno(), detail);
  };

  const sys: Sys = {
    bpf(cmd, attr, refs) {
      inFlight.refs = refs;
      const quiet = cmd === BPF_PROG_LOAD && pthreadSigmask(SIG_BLOCK, allSignals, savedMask) === 0;
      try {
        const r = Number(syscall4(SYS_bpf, cmd, attr, attr.byteLength));
        const errno = r < 0 ? koffi.errno() : 0; // before pthread_sigmask can touch it
        if (r < 0) throw new SysError('bpf', errno, bpfCmdName(cmd));
        return r;
      } finally {
        if (quiet) pthreadSigmask(SIG_SETMASK, savedMask, null);
        inFlight.refs = undefined;
      }
    },
    socket(domain, type, protocol) {
      const fd = socket(domain, type, protocol);
      if (fd < 0) fail('socket');
      return fd;
    },
    bind(fd, addr) {
      if (bind(fd, addr, addr.byteLength) < 0) fail('bind');
    },
    setsockopt(fd, level, name, value, refs) {
      inFlight.refs = refs;
      try {
        if (setsockopt(fd, level, name, value, value.byteLength) < 0) fail('setsockopt', `level ${level} opt ${name}`);
      } finally {
        inFlight.refs = undefined;
      }
    },
    getsockopt(fd, level, name, value) {
      const len = [value.byteLength];
      if (getsockopt(fd, level, name, value, len) < 0) fail('getsockopt', `level ${level} opt ${name}`);
      return len[0]!;
    },
    ioctl(fd, request, arg, refs) {
      inFlight.refs = refs;
      try {
        const r = ioctl(fd, request, arg);
        if (r < 0) fail('ioctl', `0x${request.toString(16)}`);
        return r;
      } finally {
        inFlight.refs = undefined;
      }
    },
    mmap(length, prot, flags, fd, offset) {
      const p = mmap(null, length, prot, flags, fd, Number(offset));
      const address = p === null ? MAP_FAILED : koffi.address(p);
      if (address === MAP_FAILED) fail('mmap', `length ${length} offset 0x${offset.toString(16)}`);
      return { address, length, buffer: koffi.view(p, length) } satisfies Mapping;
    },
    munmap(m) {
      if (munmap(m.buffer, m.length) < 0) fail('munmap');
    },
    poll(fds, count, timeoutMs) {
      const r = poll(fds, count, timeoutMs);
      if (r < 0) fail('poll');
      return r;
    },
    tryPoll(fds, count, timeoutMs) {
      const r = poll(fds, count, timeoutMs);
      return r < 0 ? -koffi.errno() : r;
    },
    pollAsync(fds, count, timeoutMs) {
      return new Promise((resolve, reject) => {
        poll.async(fds, count, timeoutMs, (err: unknown, r: number) => {
          if (err) reject(err);
          else if (r < 0) reject(new SysError('poll', koffi.errno()));
          else resolve(r);
        });
      });
    },
    sendto(fd, buf, length, flags, addr) {
      // The kernel would read past the buffer's end.
      if (length > buf.byteLength) throw new RangeError(`sendto: length ${length} exceeds the ${buf.byteLength}-byte buffer`);
      const r = Number(sendto(fd, buf, length, flags, addr, addr ? addr.byteLength : 0));
      if (r < 0) fail('sendto');
      return r;
    },
    trySendto(fd, buf, length, flags) {
      const r = Number(sendto(fd, buf, length, flags, null, 0));
      return r < 0 ? -koffi.errno() : r;
    },
    trySendtoAddr(fd, address, length, flags) {
      const r = Number(sendtoAddr(fd, address, length, flags, null, 0));
      return r < 0 ? -koffi.errno() : r;
    },
    tryRecv(fd, buf, flags) {
      const r = Number(recv(fd, buf, buf.byteLength, flags));
      return r < 0 ? -koffi.errno() : r;
    },
    recvfrom(fd, buf, flags, addr) {
      const alen = [addr ? addr.byteLength : 0];
      const r = Number(recvfrom(fd, buf, buf.byteLength, flags, addr, addr ? alen : null));
      if (r < 0) fail('recvfrom');
      return r;
    },
    close(fd) {
      if (close(fd) < 0) fail('close');
    },
    mount(source, target, fstype, flags, data) {
      if (mount(source, target, fstype, flags, data) < 0) fail('mount', target);
    },
    unshare(flags) {
      if (unshare(flags) < 0) fail('unshare', `flags 0x${flags.toString(16)}`);
    },
    setThreadAffinity(cpus) {
      const mask = new Uint8Array(CPU_SET_BYTES);
      for (const c of cpus) {
        if (!Number.isInteger(c) || c < 0 || c >= CPU_SET_BYTES * 8) throw new SysError('sched_setaffinity', 22, `cpu ${c}`);
        mask[c >> 3]! |= 1 << (c & 7);
      }
      if (schedSetaffinity(0, CPU_SET_BYTES, mask) < 0) fail('sched_setaffinity', `cpus ${cpus.join(',')}`);
    },
    threadAffinity() {
      const mask = new Uint8Array(CPU_SET_BYTES);
      if (schedGetaffinity(0, CPU_SET_BYTES, mask) < 0) fail('sched_getaffinity');
      const out: number[] = [];
      for (let c = 0; c < CPU_SET_BYTES * 8; c++) if ((mask[c >> 3]! & (1 << (c & 7))) !== 0) out.push(c);
      return out;
    },
    setns(fd, nstype) {
      if (setns(fd, nstype) < 0) fail('setns', `fd ${fd} nstype 0x${nstype.toString(16)}`);
    },
    ifNameToIndex(name) {
      const i = ifNameToIndex(name);
      if (i === 0) fail('if_nametoindex', name);
      return i;
    },
    ifIndexToName(index) {
      const out = new Uint8Array(16);
      if (ifIndexToName(index, out) === null) fail('if_indextoname', String(index));
      const end = out.indexOf(0);
      return Buffer.from(out.subarray(0, end < 0 ? 16 : end)).toString('latin1');
    },
    nowMs() {
      return monotonicMs() - nowOrigin;
    },
    addressOf(buf) {
      return koffi.address(buf);
    },
  };
  return sys;
}

const BPF_CMD_NAMES = [
  'MAP_CREATE',
  'MAP_LOOKUP_ELEM',
  'MAP_UPDATE_ELEM',
  'MAP_DELETE_ELEM',
  'MAP_GET_NEXT_KEY',
  'PROG_LOAD',
  'OBJ_PIN',
  'OBJ_GET',
  'PROG_ATTACH',
  'PROG_DETACH',
  'PROG_TEST_RUN',
  'PROG_GET_NEXT_ID',
  'MAP_GET_NEXT_ID',
  'PROG_GET_FD_BY_ID',
  'MAP_GET_FD_BY_ID',
  'OBJ_GET_INFO_BY_FD',
  'PROG_QUERY',
  'RAW_TRACEPOINT_OPEN',
  'BTF_LOAD',
  'BTF_GET_FD_BY_ID',
  'TASK_FD_QUERY',
  'MAP_LOOKUP_AND_DELETE_ELEM',
  'MAP_FREEZE',
  'BTF_GET_NEXT_ID',
  'MAP_LOOKUP_BATCH',
  'MAP_LOOKUP_AND_DELETE_BATCH',
  'MAP_UPDATE_BATCH',
  'MAP_DELETE_BATCH',
  'LINK_CREATE',
  'LINK_UPDATE',
  'LINK_GET_FD_BY_ID',
  'LINK_GET_NEXT_ID',
  'ENABLE_STATS',
  'ITER_CREATE',
  'LINK_DETACH',
  'PROG_BIND_MAP',
];

function bpfCmdName(cmd: number): string {
  return `BPF_${BPF_CMD_NAMES[cmd] ?? cmd}`;
}
