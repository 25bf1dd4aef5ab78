#!/usr/bin/env node
// Runs the test tiers named on the command line (unit, kernel, lab) with node:test.
// Kernel and lab tests need root; they fail (never skip) without it — see test/helpers/require.ts.
// Every test has a 5-minute ceiling, so a hung test fails CI instead of stalling it.
// Output passes through unchanged, except that every failed test is listed again, with the first
// lines of its error, just before node:test's closing summary (`# tests`, `# pass`, `# fail`, ...),
// so a log that keeps only its tail still says what failed and why, and still ends with the summary.
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawn } from 'node:child_process';

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
// TAP explicitly (node:test picks it anyway when stdout is not a terminal): the summary below reads it.
const child = spawn(
  process.execPath,
  ['--import', 'tsx', '--test', '--test-reporter=tap', '--test-concurrency=1', '--test-timeout=300000', ...files],
  {
    stdio: ['inherit', 'pipe', 'inherit'],
  },
);
const failures = [];
let partial = '';
let current = null;
/** The closing summary, held back until the failures are listed. */
const summary = [];
const onLine = (line) => {
  if (summary.length > 0 || /^# tests \d+$/.test(line)) {
    summary.push(line);
    return;
  }
  console.log(line);
  if (current) {
    // The YAML block after `not ok`: keep its first lines (location, error, the top of the stack).
    if (/^\s*\.\.\.\s*$/.test(line) && current.lines.length > 0) current = null;
    else if (current.lines.length < 24) current.lines.push(line);
    return;
  }
  const m = /^(\s*)not ok \d+ - (.*)$/.exec(line);
  if (m) {
    current = { name: m[2], depth: m[1].length, lines: [] };
    failures.push(current);
  }
};
child.stdout.setEncoding('utf8');
child.stdout.on('data', (chunk) => {
  const text = partial + chunk;
  const lines = text.split('\n');
  partial = lines.pop() ?? '';
  for (const l of lines) onLine(l);
});
child.on('close', (code) => {
  if (partial) onLine(partial);
  if (failures.length > 0) {
    console.log(`\n# ${failures.length} failed (innermost first where nested):`);
    for (const f of [...failures].sort((a, b) => b.depth - a.depth)) {
      console.log(`# FAILED: ${f.name}`);
      for (const l of f.lines) console.log(`#   ${l.trim()}`);
    }
  }
  for (const l of summary) console.log(l);
  process.exit(code ?? 1);
});
