/**
 * Capability checks, so a missing privilege is reported up front by name instead of as an
 * EPERM deep inside a syscall. Reads CapEff from /proc/self/status (capabilities(7)).
 */
import { readFileSync } from 'node:fs';
import { PinholeError } from '../sys/index.ts';

export const CAPS = { CAP_NET_ADMIN: 12, CAP_NET_RAW: 13, CAP_SYS_ADMIN: 21, CAP_PERFMON: 38, CAP_BPF: 39 } as const;
export type CapName = keyof typeof CAPS;

export function effectiveCaps(): bigint {
  const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? BigInt(`0x${m[1]}`) : 0n;
}

export function missingCaps(wanted: readonly CapName[], eff = effectiveCaps()): CapName[] {
  return wanted.filter((c) => ((eff >> BigInt(CAPS[c])) & 1n) === 0n && !(c === 'CAP_BPF' && ((eff >> 21n) & 1n) === 1n));
}

/** Throws ERR_PERMISSION naming the missing capabilities (CAP_SYS_ADMIN stands in for CAP_BPF). */
export function requireCaps(what: string, wanted: readonly CapName[]): void {
  const missing = missingCaps(wanted);
  if (missing.length > 0) {
    throw new PinholeError('ERR_PERMISSION', `${what} needs ${missing.join(', ')} (run as root, or grant the capabilities)`, {
      details: { missing },
    });
  }
}
