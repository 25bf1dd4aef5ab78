/**
 * Helpers for the AF_PACKET kernel tests: run code with this thread in a test namespace (setns(2);
 * sockets keep the namespace they were created in), a plain raw packet socket to inject and
 * capture frames on the peer end of a veth, and marked frames.
 */
import { closeSync, openSync } from 'node:fs';
import { alloc, getSys, SysError } from '../../src/sys/index.ts';
import type { Netns } from '../helpers/netns.ts';
import {
  AF_PACKET,
  ETH_P_ALL_BE,
  MSG_DONTWAIT,
  PACKET_IGNORE_OUTGOING,
  POLLIN,
  SOCK_RAW,
  SOL_PACKET,
} from '../../src/uplink/afpacket/abi.ts';

const CLONE_NEWNET = 0x40000000;

/** Runs `fn` synchronously with this thread in `ns`'s network namespace, then moves back. */
export function inNetns<T>(ns: Netns, fn: () => T): T {
  const sys = getSys();
  const home = openSync('/proc/thread-self/ns/net', 'r');
  const target = openSync(`/run/netns/${ns.name}`, 'r');
  try {
    sys.setns(target, CLONE_NEWNET);
    try {
      return fn();
    } finally {
      sys.setns(home, CLONE_NEWNET);
    }
  } finally {
    closeSync(target);
    closeSync(home);
  }
}

/** A raw packet socket on one interface that ignores its own transmissions. */
export class RawSocket {
  readonly fd: number;
  private readonly sll = alloc(20);
  private readonly buf = alloc(65536);
  private readonly pfd = alloc(8);
  private readonly out = alloc(65536);

  constructor(ifname: string) {
    const sys = getSys();
    const ifindex = sys.ifNameToIndex(ifname);
    this.fd = sys.socket(AF_PACKET, SOCK_RAW, 0);
    const one = alloc(4);
    one[0] = 1;
    sys.setsockopt(this.fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, one);
    const dv = new DataView(this.sll.buffer);
    dv.setUint16(0, AF_PACKET, true);
    dv.setUint16(2, ETH_P_ALL_BE, true);
    dv.setInt32(4, ifindex, true);
    sys.bind(this.fd, this.sll);
    new DataView(this.pfd.buffer).setInt32(0, this.fd, true);
    new DataView(this.pfd.buffer).setInt16(4, POLLIN, true);
  }

  send(frame: Uint8Array): void {
    this.out.set(frame);
    getSys().sendto(this.fd, this.out, frame.length, 0, null);
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

/** An 8-byte payload marker 'PHAP' + u32 id, findable in any received frame. */
export function marker(id: number): Uint8Array {
  const m = new Uint8Array(8);
  m.set([0x50, 0x48, 0x41, 0x50]);
  new DataView(m.buffer).setUint32(4, id);
  return m;
}

/** The marker id in `frame` (searching from the end, where payloads are), or -1. */
export function markerOf(frame: Uint8Array, off = 0, len = frame.length): number {
  for (let i = off + len - 8; i >= off; i--) {
    if (frame[i] === 0x50 && frame[i + 1] === 0x48 && frame[i + 2] === 0x41 && frame[i + 3] === 0x50) {
      return new DataView(frame.buffer, frame.byteOffset).getUint32(i + 4);
    }
  }
  return -1;
}

export function macOf(ns: Netns, ifname: string): string {
  const info = JSON.parse(ns.ip('-j', 'link', 'show', ifname)) as { address: string }[];
  return info[0]!.address;
}
