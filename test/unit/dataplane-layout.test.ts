/**
 * The port counter slots the ports write (port.ts `PC`) and the names the layout declares
 * (plan.ts `PORT_COUNTERS`) must agree: a port writing past its block corrupts its neighbour's.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PORT_COUNTERS } from '../../src/dataplane/plan.ts';
import { PC } from '../../src/dataplane/port.ts';

test('PC slots match PORT_COUNTERS names, one to one', () => {
  const snake = (k: string): string => k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
  assert.equal(Object.keys(PC).length, PORT_COUNTERS.length);
  for (const [k, slot] of Object.entries(PC)) assert.equal(PORT_COUNTERS[slot], snake(k), `PC.${k}`);
});
