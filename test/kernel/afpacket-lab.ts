/**
 * Helpers for the AF_PACKET kernel tests: namespace entry and raw sockets (shared, from
 * test/helpers/packet-socket.ts), and marked frames.
 */
import { PacketSocket } from '../helpers/packet-socket.ts';
import type { Netns } from '../helpers/netns.ts';

/** The shared helpers, under the names these tests use. */
export { inNetnsSync as inNetns } from '../helpers/packet-socket.ts';

/** A raw packet socket on one interface that ignores its own transmissions. */
export class RawSocket extends PacketSocket {
  constructor(ifname: string) {
    super(ifname, { ignoreOutgoing: true });
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
