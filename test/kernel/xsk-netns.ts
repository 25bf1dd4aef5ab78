/**
 * Helpers for the AF_XDP kernel tests: run code with the calling thread inside a test namespace
 * (setns(2); sockets keep the namespace they were created in after the thread moves back), and a
 * raw AF_PACKET socket to inject and capture frames on the peer side of a veth.
 */
import { closeSync, openSync } from 'node:fs';
import { alloc, getSys, SysError } from '../../src/sys/index.ts';
import type { Netns } from '../helpers/netns.ts';

const CLONE_NEWNET = 0x40000000;

/** Runs `fn` (sync or async) with this thread in `ns`'s network namespace, then moves back. */
export async function inNetns<T>(ns: Netns, fn: () => Promise<T> | T): Promise<T> {
  const sys = getSys();
  const home = openSync('/proc/thread-self/ns/net', 'r');
  const target = openSync(`/run/netns/${ns.name}`, 'r');
  try {
    sys.setns(target, CLONE_NEWNET);
    try {
      return await fn();
    } finally {
      sys.setns(home, CLONE_NEWNET);
    }
  } finally {
    closeSync(target);
    closeSync(home);
  }
}

const AF_PACKET = 17;
const SOCK_RAW = 3;
const ETH_P_ALL = 0x0003;
const MSG_DONTWAIT = 0x40;
const POLLIN = 1;

/** A raw packet socket on one interface (created in the calling thread's namespace). */
export class PacketSocket {
  readonly fd: number;
  private readonly sll = alloc(20);
  private readonly buf = alloc(65536);
  private readonly pfd = alloc(8);

  constructor(ifname: string) {
    const sys = getSys();
    const ifindex = sys.ifNameToIndex(ifname);
    this.fd = sys.socket(AF_PACKET, SOCK_RAW, ((ETH_P_ALL & 0xff) << 8) | (ETH_P_ALL >> 8));
    const dv = new DataView(this.sll.buffer);
    dv.setUint16(0, AF_PACKET, true);
    dv.setUint16(2, ETH_P_ALL, false);
    dv.setInt32(4, ifindex, true);
    sys.bind(this.fd, this.sll);
    new DataView(this.pfd.buffer).setInt32(0, this.fd, true);
    new DataView(this.pfd.buffer).setInt16(4, POLLIN, true);
  }

  send(frame: Uint8Array): void {
    const b = alloc(frame.length);
    b.set(frame);
    getSys().sendto(this.fd, b, b.length, 0, this.sll);
  }

  /** Frames received until `match` accepts one (returned) or the deadline passes (undefined). */
  async receive(match: (f: Uint8Array) => boolean, timeoutMs: number): Promise<Uint8Array | undefined> {
    const sys = getSys();
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      let n: number;
      try {
        n = sys.recvfrom(this.fd, this.buf, MSG_DONTWAIT, null);
      } catch (err) {
        if (!(err instanceof SysError && err.code === 'EAGAIN')) throw err;
        const left = deadline - Date.now();
        if (left <= 0) return undefined;
        await sys.pollAsync(this.pfd, 1, Math.min(left, 200));
        continue;
      }
      const f = this.buf.slice(0, n);
      if (match(f)) return f;
    }
  }

  close(): void {
    getSys().close(this.fd);
  }
}

/** Whether `hay` contains `needle`. */
export function contains(hay: Uint8Array, needle: Uint8Array): boolean {
  return Buffer.from(hay.buffer, hay.byteOffset, hay.byteLength).indexOf(Buffer.from(needle)) >= 0;
}

export function u32(v: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, v, true);
  return b;
}
