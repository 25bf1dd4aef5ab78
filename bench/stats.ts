/** Shared benchmark helpers: summarise as min/median/max (the suite's own), print a table. */
import { formatNumber, summarise, type Summary } from '../src/control/bench/report.ts';

export { summarise, type Summary };

export function printTable(title: string, unit: string, rows: readonly { name: string; summary: Summary; note?: string }[]): void {
  const head = ['case', `min ${unit}`, `median ${unit}`, `max ${unit}`, 'note'];
  const body = rows.map((r) => [
    r.name,
    formatNumber(r.summary.min),
    formatNumber(r.summary.median),
    formatNumber(r.summary.max),
    r.note ?? '',
  ]);
  const w = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (c: string[]): string =>
    c
      .map((x, i) => (i > 0 && i < 4 ? x.padStart(w[i]!) : x.padEnd(w[i]!)))
      .join('  ')
      .trimEnd();
  console.log(`\n${title}`);
  console.log(line(head));
  console.log(w.map((n) => '-'.repeat(n)).join('  '));
  for (const b of body) console.log(line(b));
}
