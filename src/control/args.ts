/**
 * Argument values more than one command parses (the pinhole spec of `bpf` and `uplink`, the
 * AF_XDP ring size of `uplink` and `bench`, the address family of `neigh` and `routes`): one
 * place, so the commands do not import each other. Bad values are ERR_CLI_* usage errors (exit 2).
 */
import type { PinholeSpec } from '../bpf/pinhole/policy.ts';
import type { Family } from '../netlink/rtnl.ts';
import { parseIP } from '../packet/ip.ts';
import { PinholeError } from '../sys/index.ts';
import { isRingSize, XSK_RING_MAX, XSK_RING_MIN } from '../uplink/xsk/sizing.ts';
import { CPU_MAX, QUEUES_MAX } from '../config/schema.ts';

/** `--port` and `--address` values: the pinhole spec (ports 1..65535, IPv4 or IPv6 addresses). */
export function specFromArgs(ports: readonly string[], addresses: readonly string[]): PinholeSpec {
  const p = ports.map((s) => {
    const n = Number(s);
    if (!/^\d+$/.test(s) || n < 1 || n > 65535) throw new PinholeError('ERR_CLI_PORT', `--port ${s}: expected a UDP port 1..65535`);
    return n;
  });
  for (const a of addresses) {
    try {
      parseIP(a);
    } catch (err) {
      throw new PinholeError('ERR_CLI_ADDRESS', `--address ${a}: not an IPv4 or IPv6 address`, { cause: err });
    }
  }
  return { ports: p, addresses: [...addresses] };
}

/** `--ring-size N`: a power of two XSK_RING_MIN..XSK_RING_MAX, written in decimal. */
export function parseRingSize(text: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || !isRingSize(n)) {
    throw new PinholeError('ERR_CLI_USAGE', `--ring-size ${text}: a power of two ${XSK_RING_MIN}..${XSK_RING_MAX}`);
  }
  return n;
}

/**
 * `--cpus LIST`: CPU numbers for the dataplane workers, comma-separated (`2,3`), each 0..CPU_MAX,
 * none twice (as the config file's `uplink.cpus`).
 */
export function parseCpus(text: string): number[] {
  const parts = text.split(',');
  const cpus = parts.map(Number);
  if (
    !parts.every((p) => /^\d+$/.test(p)) ||
    cpus.some((c) => c > CPU_MAX) ||
    new Set(cpus).size !== cpus.length ||
    cpus.length > QUEUES_MAX
  ) {
    throw new PinholeError('ERR_CLI_USAGE', `--cpus ${text}: CPU numbers 0..${CPU_MAX}, comma-separated, none twice (e.g. 2,3)`);
  }
  return cpus;
}

/** `--family 4|6` (also inet, inet6, ipv4, ipv6), or undefined for both. */
export function parseFamily(v: string | undefined): Family | undefined {
  if (v === undefined) return undefined;
  if (v === '4' || v === 'inet' || v === 'ipv4') return 4;
  if (v === '6' || v === 'inet6' || v === 'ipv6') return 6;
  throw new PinholeError('ERR_CLI_USAGE', `--family must be 4 or 6, not ${v}`);
}
