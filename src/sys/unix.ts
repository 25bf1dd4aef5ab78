/**
 * Unix constants the kernel interfaces share (sys/socket.h, sys/mman.h, poll.h, linux/socket.h
 * for the address families), in kernel spelling, defined once. Interface-specific ABI stays with
 * its interface (uplink/xsk/abi.ts, uplink/afpacket/abi.ts, netlink/rtnl.ts).
 */
export const AF_UNSPEC = 0;
export const AF_UNIX = 1;
export const AF_INET = 2;
export const AF_BRIDGE = 7;
export const AF_INET6 = 10;
export const AF_NETLINK = 16;
export const AF_PACKET = 17;
export const AF_XDP = 44;

export const SOCK_DGRAM = 2;
export const SOCK_RAW = 3;
export const SOCK_CLOEXEC = 0o2000000;

export const PROT_READ = 0x1;
export const PROT_WRITE = 0x2;
export const MAP_SHARED = 0x01;
export const MAP_PRIVATE = 0x02;
export const MAP_ANONYMOUS = 0x20;
export const MAP_POPULATE = 0x8000;

export const MSG_TRUNC = 0x20;
export const MSG_DONTWAIT = 0x40;

/** struct pollfd events / revents. */
export const POLLIN = 0x0001;
export const POLLERR = 0x0008;
export const POLLHUP = 0x0010;
export const POLLNVAL = 0x0020;
