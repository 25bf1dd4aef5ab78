#!/usr/bin/env node
// Runs the test tiers named on the command line (unit, kernel, lab) with node:test.
// Kernel and lab tests need root; they fail (never skip) without it — see test/helpers/require.ts.
// Every test has a 5-minute ceiling, so a hung test fails CI instead of stalling it.
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

const tiers = process.argv.slice(2);
if (tiers.length === 0) tiers.push('unit', 'kernel', 'lab');
const files = [];
const walk = (dir) => {
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p);
    else if (name.endsWith('.test.ts')) files.push(p);
  }
};
for (const tier of tiers) walk(join('test', tier));
if (files.length === 0) {
  console.error('no test files found for tiers: ' + tiers.join(', '));
  process.exit(1);
}
const r = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-concurrency=1', '--test-timeout=300000', ...files], {
  stdio: 'inherit',
});
process.exit(r.status ?? 1);
