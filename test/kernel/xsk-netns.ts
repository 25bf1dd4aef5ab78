/**
 * Helpers for the AF_XDP kernel tests: run code with the calling thread inside a test namespace
 * (setns(2); sockets keep the namespace they were created in after the thread moves back), and a
 * raw AF_PACKET socket to inject and capture frames on the peer side of a veth.
 */

export { inNetns, PacketSocket } from '../helpers/packet-socket.ts';

/** Whether `hay` contains `needle`. */
export function contains(hay: Uint8Array, needle: Uint8Array): boolean {
  return Buffer.from(hay.buffer, hay.byteOffset, hay.byteLength).indexOf(Buffer.from(needle)) >= 0;
}

export function u32(v: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, v, true);
  return b;
}
