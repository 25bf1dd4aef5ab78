/**
 * The one door to the kernel. Every module that needs a system call goes through a `Sys`; the
 * real one (libc.ts) is the only code that loads koffi. Tests of code above this layer install a
 * fake with `useSys()` (test/support/fake-sys.ts).
 *
 * Conventions:
 *  - every call throws SysError on failure (errno captured right after the call);
 *  - memory handed to the kernel is a Uint8Array over an off-heap ArrayBuffer (see struct.ts
 *    `alloc`): V8 never moves those, so `addressOf()` stays valid for the duration of a call —
 *    provided the buffer stays reachable: pass every buffer a struct points to in `refs`;
 *  - file descriptors are plain numbers; owners (maps, programs, sockets) close them.
 */

export interface Mapping {
  /** Start address of the mapping. */
  readonly address: bigint;
  readonly length: number;
  /** Zero-copy view over the mapped memory. */
  readonly buffer: ArrayBuffer;
}

export interface Sys {
  /**
   * bpf(2): returns the syscall's non-negative result (an fd for most commands).
   * `refs` are the buffers `attr` points to: they are kept reachable for the whole call. (A
   * buffer referenced only by an address inside `attr` is dead to V8; if a GC freed it
   * mid-call the kernel would write into freed malloc memory.)
   */
  bpf(cmd: number, attr: Uint8Array, refs?: readonly Uint8Array[]): number;
  socket(domain: number, type: number, protocol: number): number;
  bind(fd: number, addr: Uint8Array): void;
  /** `refs`: buffers `value` points to (kept reachable during the call, as for bpf). */
  setsockopt(fd: number, level: number, name: number, value: Uint8Array, refs?: readonly Uint8Array[]): void;
  /** Returns the length the kernel wrote. */
  getsockopt(fd: number, level: number, name: number, value: Uint8Array): number;
  /** `refs`: buffers `arg` points to (e.g. ifreq.ifr_data), kept reachable during the call. */
  ioctl(fd: number, request: number, arg: Uint8Array, refs?: readonly Uint8Array[]): number;
  mmap(length: number, prot: number, flags: number, fd: number, offset: number | bigint): Mapping;
  munmap(m: Mapping): void;
  /** poll(2) over a `struct pollfd[]` buffer (8 bytes each); returns the number ready. */
  poll(fds: Uint8Array, count: number, timeoutMs: number): number;
  /**
   * poll(2) that returns -errno instead of throwing. For waits in dataplane loops, where EINTR
   * (any signal delivered to the thread: a profiler's SIGPROF, SIGCHLD, ...) only means "woke up
   * early" and must never end the loop.
   */
  tryPoll(fds: Uint8Array, count: number, timeoutMs: number): number;
  /** As `poll`, run on the libuv thread pool so the event loop never blocks. */
  pollAsync(fds: Uint8Array, count: number, timeoutMs: number): Promise<number>;
  sendto(fd: number, buf: Uint8Array, length: number, flags: number, addr: Uint8Array | null): number;
  /**
   * sendto(2) to a connected/bound socket without an address, for hot paths where "busy" is an
   * answer, not an error (an AF_XDP TX kick, an AF_PACKET TX ring flush): returns the result, or
   * -errno. Never throws for an errno (a thrown SysError costs microseconds; see design.md).
   */
  trySendto(fd: number, buf: Uint8Array, length: number, flags: number): number;
  /**
   * As `trySendto`, from memory given by address (`addressOf` of a buffer V8 never moves, plus an
   * offset): sends part of a large buffer without creating a view per call (GSO trains).
   */
  trySendtoAddr(fd: number, address: number, length: number, flags: number): number;
  recvfrom(fd: number, buf: Uint8Array, flags: number, addr: Uint8Array | null): number;
  /** recv(2) into all of `buf` for hot paths, as `trySendto`: the length (MSG_TRUNC: the real one), or -errno. */
  tryRecv(fd: number, buf: Uint8Array, flags: number): number;
  close(fd: number): void;
  mount(source: string, target: string, fstype: string, flags: number, data: string | null): void;
  /** unshare(2) for the calling thread (a worker thread: CLONE_NEWNET gives it a private netns). */
  unshare(flags: number): void;
  /** setns(2) for the calling thread: join the namespace `fd` refers to (e.g. /run/netns/NAME). */
  setns(fd: number, nstype: number): void;
  /** sched_setaffinity(2) for the calling thread only (pid 0): it runs on `cpus` from now on. */
  setThreadAffinity(cpus: readonly number[]): void;
  /** sched_getaffinity(2) of the calling thread: the CPUs it may run on, ascending. */
  threadAffinity(): number[];
  ifNameToIndex(name: string): number;
  ifIndexToName(index: number): string;
  /** Address of a buffer's first byte, for pointer fields in kernel structs. */
  addressOf(buf: Uint8Array): bigint;
  /**
   * Milliseconds on performance.now()'s timeline, for clocks read per breath: clock_gettime(2)
   * (CLOCK_MONOTONIC, the clock under performance.now()) into a buffer made once. On Node 20
   * performance.now() builds an array per call (process.hrtime(): 32 bytes) and Date.now() a
   * heap number (16 bytes); this allocates nothing (test/unit/hot-path-alloc.test.ts).
   */
  nowMs(): number;
}

let current: Sys | undefined;
let loader: (() => Sys) | undefined;

/**
 * Registered by libc.ts at import time and loaded on first use: code that installs a fake with
 * `useSys` before any call never opens libc through koffi (the barrel still imports the module).
 */
export function registerDefaultSys(load: () => Sys): void {
  loader = load;
}

export function getSys(): Sys {
  if (current) return current;
  if (!loader) throw new Error('no Sys implementation registered: import src/sys/index.ts');
  current = loader();
  return current;
}

/** Install `s` as the Sys for everything; returns a function that restores the previous one. */
export function useSys(s: Sys): () => void {
  const prev = current;
  current = s;
  return () => {
    current = prev;
  };
}
