/**
 * WireGuard (whitepaper: "WireGuard: Next Generation Kernel Network Tunnel", and the protocol
 * description on wireguard.com), implemented from the specification: the protocol core used by
 * the dataplane. See device.ts for the entry points and their hot-path contract.
 */
export * from './device.ts';
export { Endpoint } from './messages.ts';
export { NodeAead, type DataAead } from './crypto.ts';
export { WG_TIMINGS, type WgTimings } from './timers.ts';
export { decodeKey, encodeKey, generatePrivateKey, publicKeyOf } from './keys.ts';
