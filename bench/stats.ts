/** Shared benchmark helpers: repeat, summarise as min/median/max, print a table and JSON. */
export interface Summary {
  min: number;
  median: number;
  max: number;
  runs: number[];
}

export function summarise(runs: readonly number[]): Summary {
  const s = [...runs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  const median = s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
  return { min: s[0]!, median, max: s[s.length - 1]!, runs: [...runs] };
}

export function printTable(title: string, unit: string, rows: readonly { name: string; summary: Summary; note?: string }[]): void {
  const fmt = (n: number): string => (n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(2));
  const head = ['case', `min ${unit}`, `median ${unit}`, `max ${unit}`, 'note'];
  const body = rows.map((r) => [r.name, fmt(r.summary.min), fmt(r.summary.median), fmt(r.summary.max), r.note ?? '']);
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
