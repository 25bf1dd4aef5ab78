/**
 * util/double-fields.ts: a counter field started as a double keeps the optimised code that bumps
 * it when it passes 2^31; a plain integer field throws it away (deoptimises). Checked with V8's
 * own view (%GetOptimizationStatus, in a child process with --allow-natives-syntax).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import test from 'node:test';
import { doubleFields } from '../../src/util/double-fields.ts';

const MODULE = new URL('../../src/util/double-fields.ts', import.meta.url).href;

// %-calls only inside new Function: the module text itself stays plain JavaScript.
const SCRIPT = `
const { doubleFields } = await import(${JSON.stringify(MODULE)});
const status = new Function('f', 'return %GetOptimizationStatus(f)');
const prepare = new Function('f', '%PrepareFunctionForOptimization(f)');
const optimizeNext = new Function('f', '%OptimizeFunctionOnNextCall(f)');
const out = {};
for (const kind of ['plain', 'double']) {
  const o = { bytes: 0, frames: 0 };
  if (kind === 'double') doubleFields(o, 'bytes');
  const bump = new Function('o', 'n', 'o.bytes += n; o.frames++; return o.bytes;');
  prepare(bump);
  bump(o, 1);
  bump(o, 1);
  optimizeNext(bump);
  bump(o, 1);
  const before = status(bump);
  bump(o, 2 ** 31);
  out[kind] = { before: (before & 16) !== 0, after: (status(bump) & 16) !== 0, bytes: o.bytes };
}
console.log(JSON.stringify(out));
`;

test('doubleFields: values unchanged, other fields untouched', () => {
  const o = doubleFields({ a: 7, b: 3, c: 'x' }, 'a');
  assert.deepEqual(o, { a: 7, b: 3, c: 'x' });
});

test('doubleFields: the optimised code bumping a counter survives it passing 2^31 (a plain integer field deoptimises)', () => {
  const r = spawnSync(process.execPath, ['--allow-natives-syntax', '--import', 'tsx', '--input-type=module', '-e', SCRIPT], {
    encoding: 'utf8',
  });
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout) as Record<'plain' | 'double', { before: boolean; after: boolean; bytes: number }>;
  assert.equal(out.plain.before, true, 'optimised before');
  assert.equal(out.plain.after, false, 'an integer field passing 2^31 throws the optimised code away');
  assert.equal(out.double.before, true, 'optimised before');
  assert.equal(out.double.after, true, 'a double field keeps it');
  assert.equal(out.double.bytes, 2 ** 31 + 3);
});
