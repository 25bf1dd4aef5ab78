/**
 * Protocol numbers the packet codecs share (IEEE 802 ethertypes, IANA IP protocol numbers), in
 * kernel spelling. The pinhole policy keeps its own table (bpf/pinhole/policy.ts) on purpose: its
 * three implementations are checked against an oracle written from the RFCs, not from these.
 */
export const ETH_HLEN = 14;
export const ETH_P_IP = 0x0800;
export const ETH_P_IPV6 = 0x86dd;
export const ETH_P_8021Q = 0x8100;
export const ETH_P_8021AD = 0x88a8;
export const IPPROTO_HOPOPTS = 0;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;
export const IPPROTO_ROUTING = 43;
export const IPPROTO_FRAGMENT = 44;
export const IPPROTO_ESP = 50;
export const IPPROTO_AH = 51;
export const IPPROTO_DSTOPTS = 60;
export const IPPROTO_SCTP = 132;
