/**
 * Test-side packet I/O: run code with the calling thread inside a test namespace (setns(2);
 * sockets keep the namespace they were created in after the thread moves back), and a raw
 * AF_PACKET socket to inject and capture frames on one interface.
 */
import { closeSync, openSync } from 'node:fs';
import { alloc, getSys, SysError } from '../../src/sys/index.ts';
import type { Netns } from './netns.ts';

const CLONE_NEWNET = 0x40000000;
const AF_PACKET = 17;
const SOCK_RAW = 3;
const ETH_P_ALL = 0x0003;
const SOL_PACKET = 263;
const PACKET_IGNORE_OUTGOING = 23;
const MSG_DONTWAIT = 0x40;
const POLLIN = 1;

function enter(ns: Netns): { home: number; target: number } {
  const home = openSync('/proc/thread-self/ns/net', 'r');
  const target = openSync(`/run/netns/${ns.name}`, 'r');
  try {
    getSys().setns(target, CLONE_NEWNET);
  } catch (err) {
    closeSync(target);
    closeSync(home);
    throw err;
  }
  return { home, target };
}

function leave(h: { home: number; target: number }): void {
  try {
    getSys().setns(h.home, CLONE_NEWNET);
  } finally {
    closeSync(h.target);
    closeSync(h.home);
  }
}

/** Runs `fn` with this thread in `ns`'s network namespace, then moves back. */
export function inNetnsSync<T>(ns: Netns, fn: () => T): T {
  const h = enter(ns);
  try {
    return fn();
  } finally {
    leave(h);
  }
}

/** As inNetnsSync, for a function that may be async (the thread stays in `ns` until it settles). */
export async function inNetns<T>(ns: Netns, fn: () => Promise<T> | T): Promise<T> {
  const h = enter(ns);
  try {
    return await fn();
  } finally {
    leave(h);
  }
}

/** A raw packet socket on one interface (created in the calling thread's namespace). */
export class PacketSocket {
  readonly fd: number;
  private readonly sll = alloc(20);
  private readonly buf = alloc(65536);
  private readonly out = alloc(65536);
  private readonly pfd = alloc(8);

  /** `ignoreOutgoing`: do not capture this host's own transmissions on the interface. */
  constructor(ifname: string, opts: { ignoreOutgoing?: boolean } = {}) {
    const sys = getSys();
    const ifindex = sys.ifNameToIndex(ifname);
    // Protocol 0 until bound to the interface: an ETH_P_ALL socket would see every interface's
    // traffic in the window between socket() and bind().
    this.fd = sys.socket(AF_PACKET, SOCK_RAW, 0);
    if (opts.ignoreOutgoing) {
      const one = alloc(4);
      one[0] = 1;
      sys.setsockopt(this.fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, one);
    }
    const dv = new DataView(this.sll.buffer);
    dv.setUint16(0, AF_PACKET, true);
    dv.setUint16(2, ETH_P_ALL, false);
    dv.setInt32(4, ifindex, true);
    sys.bind(this.fd, this.sll);
    new DataView(this.pfd.buffer).setInt32(0, this.fd, true);
    new DataView(this.pfd.buffer).setInt16(4, POLLIN, true);
  }

  send(frame: Uint8Array): void {
    this.out.set(frame);
    getSys().sendto(this.fd, this.out, frame.length, 0, this.sll);
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
