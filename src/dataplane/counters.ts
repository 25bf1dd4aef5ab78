/**
 * Counters declared by name. Every port and stage of a worker declares a block of counters
 * (`owner` + names); the layout is a pure function of the worker plan, so the worker (writer)
 * and the main thread (reader: status, metrics, stats lines) compute the same slots without
 * exchanging a table. Values live in a SharedArrayBuffer of Float64 (exact up to 2^53), written
 * only by the worker (plain stores: one writer, readers tolerate a value one batch old).
 *
 *   Float64Array: [ block 0: name 0, name 1, ... | block 1: ... | ... ]
 *                   ^ base(owner 0)                ^ base(owner 1)
 */
export interface CounterBlock {
  owner: string;
  names: readonly string[];
}

export interface CounterLayout {
  blocks: { owner: string; names: readonly string[]; base: number }[];
  size: number;
}

export function layoutCounters(blocks: readonly CounterBlock[]): CounterLayout {
  const out: CounterLayout['blocks'] = [];
  let base = 0;
  const seen = new Set<string>();
  for (const b of blocks) {
    if (seen.has(b.owner)) throw new Error(`counter block ${b.owner} declared twice`);
    seen.add(b.owner);
    out.push({ owner: b.owner, names: b.names, base });
    base += b.names.length;
  }
  return { blocks: out, size: base };
}

/** The slot index of `owner.name`; throws if the layout has no such counter. */
export function counterSlot(layout: CounterLayout, owner: string, name: string): number {
  const b = layout.blocks.find((x) => x.owner === owner);
  const i = b ? b.names.indexOf(name) : -1;
  if (!b || i < 0) throw new Error(`no counter ${owner}.${name}`);
  return b.base + i;
}

/** The base slot of a block (its first counter); names follow in declaration order. */
export function counterBase(layout: CounterLayout, owner: string): number {
  const b = layout.blocks.find((x) => x.owner === owner);
  if (!b) throw new Error(`no counter block ${owner}`);
  return b.base;
}

export type CounterValues = Record<string, Record<string, number>>;

/** Reads every counter as { owner: { name: value } }. */
export function readCounters(layout: CounterLayout, values: Float64Array): CounterValues {
  const out: CounterValues = {};
  for (const b of layout.blocks) {
    const o: Record<string, number> = {};
    for (let i = 0; i < b.names.length; i++) o[b.names[i]!] = values[b.base + i]!;
    out[b.owner] = o;
  }
  return out;
}

/** Adds `b` into `a` (same shape or a subset), for totals across workers. */
export function addCounters(a: CounterValues, b: CounterValues): CounterValues {
  for (const [owner, names] of Object.entries(b)) {
    const t = (a[owner] ??= {});
    for (const [k, v] of Object.entries(names)) t[k] = (t[k] ?? 0) + v;
  }
  return a;
}
