/**
 * How busy the bench's two CPUs were while a rate was measured, from /proc/stat (proc(5)): the
 * figure that says which side bounded a rate. The generator runs flat out on its CPU, and on
 * veth the receiving side of a frame runs on the CPU that sent it (drivers/net/veth.c), so that
 * CPU also carries the first hop's receive path (the XDP program and its copy into an AF_XDP
 * ring, AF_PACKET's skb, the kernel's own forwarding and vxlan), and in the vxlan scenario node
 * b's steered receive path and the pods. A forwarder whose own CPU had room to spare was not
 * what bounded the rate (report.ts headroomNote).
 *
 * Per CPU line `cpuN user nice system idle iowait irq softirq steal guest guest_nice` (USER_HZ
 * ticks; guest time is already inside user). Busy = total − idle − iowait: steal counts as busy,
 * a CPU the hypervisor took was not there to be used.
 */
import { readFileSync } from 'node:fs';

export interface CpuTicks {
  busy: number;
  total: number;
}

/** The per-CPU lines of /proc/stat's text, by CPU number (the aggregate `cpu` line left out). */
export function parseProcStat(text: string): Map<number, CpuTicks> {
  const out = new Map<number, CpuTicks>();
  for (const line of text.split('\n')) {
    const m = /^cpu(\d+)\s+(.*)$/.exec(line);
    if (!m) continue;
    const f = m[2]!.trim().split(/\s+/).map(Number);
    if (f.length < 4 || f.some((v) => !Number.isFinite(v))) continue;
    // user nice system idle [iowait irq softirq steal]: guest and guest_nice are inside user and nice.
    const fields = f.slice(0, 8);
    const total = fields.reduce((s, v) => s + v, 0);
    const idle = f[3]! + (f[4] ?? 0);
    out.set(Number(m[1]), { busy: total - idle, total });
  }
  return out;
}

/** The CPUs' tick counts now. */
export function readCpuTicks(): Map<number, CpuTicks> {
  return parseProcStat(readFileSync('/proc/stat', 'utf8'));
}

/**
 * The share of time CPU `cpu` was busy between two readings, less `lessSeconds` of busy time
 * spent on something else (a worker polling with nothing to do) out of `seconds`; 0..1, or
 * undefined without both readings or a tick in between.
 */
export function busyShare(
  before: Map<number, CpuTicks>,
  after: Map<number, CpuTicks>,
  cpu: number,
  less: { seconds: number; lessSeconds: number } = { seconds: 1, lessSeconds: 0 },
): number | undefined {
  const a = before.get(cpu);
  const b = after.get(cpu);
  if (!a || !b || b.total <= a.total) return undefined;
  const share = (b.busy - a.busy) / (b.total - a.total);
  const minus = less.seconds > 0 ? less.lessSeconds / less.seconds : 0;
  return Math.min(1, Math.max(0, share - minus));
}
