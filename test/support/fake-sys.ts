/**
 * FakeSys: a scripted Sys for unit tests of code above the sys layer. Every call is recorded;
 * behaviour comes from per-method handlers, and a method without a handler throws ENOSYS, so a
 * test states exactly which kernel interactions it expects. Use with `useSys(fake)`.
 *
 *   const fake = new FakeSys({ socket: () => { throw fake.errno('socket', 'EAFNOSUPPORT'); } });
 *   const restore = useSys(fake);
 */
import { errnoNumber } from '../../src/sys/errno.ts';
import { SysError } from '../../src/sys/errors.ts';
import type { Mapping, Sys } from '../../src/sys/sys.ts';

type Handlers = { [K in keyof Sys]?: Sys[K] };

export interface FakeCall {
  method: keyof Sys;
  args: unknown[];
}

export class FakeSys implements Sys {
  readonly calls: FakeCall[] = [];
  private readonly handlers: Handlers;

  constructor(handlers: Handlers = {}) {
    this.handlers = handlers;
  }

  /** A SysError as the real layer would throw it. */
  errno(syscall: string, code: string): SysError {
    return new SysError(syscall, errnoNumber(code));
  }

  private call<K extends keyof Sys>(method: K, args: Parameters<Sys[K]>): ReturnType<Sys[K]> {
    this.calls.push({ method, args });
    const h = this.handlers[method] as ((...a: Parameters<Sys[K]>) => ReturnType<Sys[K]>) | undefined;
    if (!h) throw new SysError(String(method), errnoNumber('ENOSYS'), 'not scripted in FakeSys');
    return h(...args);
  }

  callsOf(method: keyof Sys): unknown[][] {
    return this.calls.filter((c) => c.method === method).map((c) => c.args);
  }

  bpf(cmd: number, attr: Uint8Array, refs?: readonly Uint8Array[]): number {
    return this.call('bpf', [cmd, attr, refs]);
  }
  socket(domain: number, type: number, protocol: number): number {
    return this.call('socket', [domain, type, protocol]);
  }
  bind(fd: number, addr: Uint8Array): void {
    this.call('bind', [fd, addr]);
  }
  setsockopt(fd: number, level: number, name: number, value: Uint8Array, refs?: readonly Uint8Array[]): void {
    this.call('setsockopt', [fd, level, name, value, refs]);
  }
  getsockopt(fd: number, level: number, name: number, value: Uint8Array): number {
    return this.call('getsockopt', [fd, level, name, value]);
  }
  ioctl(fd: number, request: number, arg: Uint8Array, refs?: readonly Uint8Array[]): number {
    return this.call('ioctl', [fd, request, arg, refs]);
  }
  mmap(length: number, prot: number, flags: number, fd: number, offset: number | bigint): Mapping {
    return this.call('mmap', [length, prot, flags, fd, offset]);
  }
  munmap(m: Mapping): void {
    this.call('munmap', [m]);
  }
  poll(fds: Uint8Array, count: number, timeoutMs: number): number {
    return this.call('poll', [fds, count, timeoutMs]);
  }
  tryPoll(fds: Uint8Array, count: number, timeoutMs: number): number {
    return this.call('tryPoll', [fds, count, timeoutMs]);
  }
  pollAsync(fds: Uint8Array, count: number, timeoutMs: number): Promise<number> {
    return this.call('pollAsync', [fds, count, timeoutMs]);
  }
  sendto(fd: number, buf: Uint8Array, length: number, flags: number, addr: Uint8Array | null): number {
    return this.call('sendto', [fd, buf, length, flags, addr]);
  }
  tryRecv(fd: number, buf: Uint8Array, flags: number): number {
    return this.call('tryRecv', [fd, buf, flags]);
  }
  trySendto(fd: number, buf: Uint8Array, length: number, flags: number): number {
    return this.call('trySendto', [fd, buf, length, flags]);
  }
  trySendtoAddr(fd: number, address: number, length: number, flags: number): number {
    return this.call('trySendtoAddr', [fd, address, length, flags]);
  }
  recvfrom(fd: number, buf: Uint8Array, flags: number, addr: Uint8Array | null): number {
    return this.call('recvfrom', [fd, buf, flags, addr]);
  }
  close(fd: number): void {
    this.call('close', [fd]);
  }
  mount(source: string, target: string, fstype: string, flags: number, data: string | null): void {
    this.call('mount', [source, target, fstype, flags, data]);
  }
  unshare(flags: number): void {
    this.call('unshare', [flags]);
  }
  setns(fd: number, nstype: number): void {
    this.call('setns', [fd, nstype]);
  }
  setThreadAffinity(cpus: readonly number[]): void {
    this.call('setThreadAffinity', [cpus]);
  }
  threadAffinity(): number[] {
    return this.call('threadAffinity', []);
  }
  ifNameToIndex(name: string): number {
    return this.call('ifNameToIndex', [name]);
  }
  ifIndexToName(index: number): string {
    return this.call('ifIndexToName', [index]);
  }
  addressOf(_buf: Uint8Array): bigint {
    return 0x1000n;
  }
  /** The real clock: nothing to fake, and engines call it every breath. */
  nowMs(): number {
    return performance.now();
  }
}
