/**
 * Where each instruction lands: its first slot (lddw takes two, label markers none) and the slot
 * each label names. Shared by assemble() (which insists on a well-formed program) and disasm()
 * (which prints whatever it is given).
 */

import type { Insn } from './insn.ts';
import { slotsOf } from './insn.ts';

export interface Layout {
  /** First slot of insns[i]. For a label marker: the slot of the next real instruction. */
  readonly slots: number[];
  /** Slots in the whole program. */
  readonly total: number;
  /** Label → slot. The first definition wins; redefinitions are reported to onDuplicate. */
  readonly labels: Map<string, number>;
}

export function layout(insns: readonly Insn[], onDuplicate?: (index: number, label: string) => void): Layout {
  const slots: number[] = [];
  const labels = new Map<string, number>();
  let slot = 0;
  for (let i = 0; i < insns.length; i++) {
    const insn = insns[i]!;
    slots.push(slot);
    if (insn.label !== undefined) {
      if (labels.has(insn.label)) onDuplicate?.(i, insn.label);
      else labels.set(insn.label, slot);
    }
    slot += slotsOf(insn);
  }
  return { slots, total: slot, labels };
}
