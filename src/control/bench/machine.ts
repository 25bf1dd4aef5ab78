/**
 * Where a benchmark ran: CPU model and count, memory, kernel, Node version, date, and the load
 * when it started. Machines of the same kind differ from one session to the next and may be
 * shared, so every report carries this (design.md §4: only ratios from one run compare).
 */
import { readFileSync } from 'node:fs';
import { cpus, loadavg, release, totalmem } from 'node:os';
import type { Machine } from './report.ts';

function cpuModel(): string {
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    if (m) return m[1]!.trim();
  } catch {
    // not Linux procfs: fall through to what Node knows
  }
  return cpus()[0]?.model ?? 'unknown CPU';
}

export function describeMachine(now: Date = new Date()): Machine {
  return {
    cpuModel: cpuModel(),
    cpus: cpus().length,
    kernel: release(),
    node: process.version,
    date: now.toISOString(),
    loadAverage: loadavg()[0] ?? 0,
    memoryGiB: totalmem() / 2 ** 30,
  };
}
