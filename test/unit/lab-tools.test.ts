/**
 * The lab's and the demo's tool check (src/control/lab/tools.ts) over PATHs made of temporary
 * directories: what is found, what is not (a directory, a file without the execute bit), and the
 * error that names the missing programs and their Debian packages.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { DEMO_TOOLS, LAB_TOOLS, missingTools, onPath, requireTools } from '../../src/control/lab/tools.ts';
import { PinholeError } from '../../src/sys/index.ts';

const dir = mkdtempSync(join(tmpdir(), 'ph-tools-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** A directory holding an executable file for each of `names`. */
function binDir(tag: string, names: string[]): string {
  const d = join(dir, tag);
  mkdirSync(d);
  for (const n of names) writeFileSync(join(d, n), '#!/bin/sh\n', { mode: 0o755 });
  return d;
}

test('onPath finds executable files in any PATH directory, not directories or non-executable files', () => {
  const one = binDir('one', ['ip']);
  const two = binDir('two', ['ping']);
  mkdirSync(join(two, 'iperf3')); // a directory of that name is not the program
  writeFileSync(join(one, 'iperf3'), 'not executable', { mode: 0o644 });
  const path = `${one}::${two}`;
  assert.equal(onPath('ip', path), true);
  assert.equal(onPath('ping', path), true);
  // Neither the non-executable file nor the directory (X_OK needs an execute bit, even for root).
  assert.equal(onPath('iperf3', path), false);
  assert.equal(onPath('ip', ''), false);
  assert.deepEqual(
    missingTools(DEMO_TOOLS, path).map((t) => t.name),
    ['iperf3'],
  );
});

test('requireTools: nothing missing is silent; missing tools are ERR_LAB_TOOLS_MISSING naming programs and packages', () => {
  const all = binDir('all', ['ip', 'ping', 'iperf3']);
  requireTools('the demo', DEMO_TOOLS, all);
  requireTools('pinhole lab up', LAB_TOOLS, binDir('ip-only', ['ip']));

  const nodeOnly = binDir('node-only', ['node']);
  assert.throws(
    () => requireTools('the demo', DEMO_TOOLS, nodeOnly),
    (err: PinholeError) => {
      assert.equal(err.code, 'ERR_LAB_TOOLS_MISSING');
      assert.deepEqual(err.details?.missing, ['ip', 'ping', 'iperf3']);
      assert.deepEqual(err.details?.packages, ['iproute2', 'iputils-ping', 'iperf3']);
      assert.match(
        err.message,
        /^the demo needs programs that are not installed \(not in PATH\): ip \(.*package iproute2\), ping \(.*package iputils-ping\), iperf3 \(.*package iperf3\)\./,
      );
      assert.match(err.message, /On Debian\/Ubuntu: sudo apt-get install iproute2 iputils-ping iperf3\. Nothing was changed\.$/);
      return true;
    },
  );
  assert.throws(
    () => requireTools('the demo', DEMO_TOOLS, binDir('no-iperf', ['ip', 'ping'])),
    (err: PinholeError) => {
      assert.deepEqual(err.details?.missing, ['iperf3']);
      assert.match(err.message, /sudo apt-get install iperf3\. /);
      return true;
    },
  );
  assert.throws(
    () => requireTools('pinhole lab up', LAB_TOOLS, nodeOnly),
    (err: PinholeError) => err.code === 'ERR_LAB_TOOLS_MISSING' && /^pinhole lab up needs .*: ip \(.*iproute2\)\./.test(err.message),
  );
});
