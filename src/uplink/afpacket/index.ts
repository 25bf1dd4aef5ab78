/** AF_PACKET uplink: TPACKET_V3 RX ring + sendto TX, pinhole cBPF filter, ICMP port guard. */
export * from './socket.ts';
export { attachFilter } from './filter.ts';
export { openPortGuard, type PortGuard, type PortGuardOptions } from './port-guard.ts';
