/**
 * `pinhole neigh --watch` ends like every long-running command (control/lifecycle.ts): SIGINT,
 * SIGTERM, SIGQUIT and SIGHUP each stop it cleanly — exit 0, no stack trace, the watch still
 * delivering changes up to the signal. Before, SIGHUP and SIGQUIT killed it (129, 131).
 * One namespace with a veth and neighbours in 198.18.0.0/15.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { requireRoot } from '../helpers/require.ts';
import { createNetns } from '../helpers/netns.ts';
import { PINHOLE_BIN } from '../helpers/cli.ts';
import { STOP_SIGNALS } from '../../src/control/lifecycle.ts';

requireRoot();

/** Resolves once `text()` has a line matching `re` (checked on every chunk of stdout). */
function lineMatching(child: ReturnType<typeof spawn>, text: () => string, re: RegExp, ms = 15_000): Promise<void> {
  return new Promise((resolve, reject) => {
    const check = (): void => {
      if (re.test(text())) {
        done();
        resolve();
      }
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`no line matching ${re} within ${ms} ms; stdout:\n${text()}`));
    }, ms);
    const onClose = (): void => {
      done();
      reject(new Error(`exited before a line matching ${re}; stdout:\n${text()}`));
    };
    const done = (): void => {
      clearTimeout(timer);
      child.stdout!.off('data', check);
      child.off('close', onClose);
    };
    child.stdout!.on('data', check);
    child.once('close', onClose);
    check();
  });
}

for (const sig of STOP_SIGNALS) {
  test(`neigh --watch --json: ${sig} stops it cleanly (exit 0, no stack)`, async () => {
    const ns = createNetns(`nw-${sig.slice(3).toLowerCase()}`);
    try {
      ns.ip('link', 'add', 'd0', 'type', 'veth', 'peer', 'name', 'd1');
      ns.ip('link', 'set', 'd0', 'up');
      ns.ip('neigh', 'add', '198.18.6.1', 'lladdr', '02:00:00:00:06:01', 'dev', 'd0');
      const child = spawn('ip', ['netns', 'exec', ns.name, process.execPath, PINHOLE_BIN, 'neigh', '--watch', '--json'], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
        child.once('close', (code, signal) => resolve({ code, signal })),
      );
      try {
        await lineMatching(child, () => stdout, /"event":"present".*"198\.18\.6\.1"/);
        // The watch is live: a change reaches it before the signal does.
        ns.ip('neigh', 'add', '198.18.6.2', 'lladdr', '02:00:00:00:06:02', 'dev', 'd0');
        await lineMatching(child, () => stdout, /"event":"add".*"198\.18\.6\.2"/);
        child.kill(sig);
        const r = await exited;
        assert.deepEqual(r, { code: 0, signal: null }, `${sig}: stderr ${stderr}`);
        assert.doesNotMatch(stderr, /\n\s+at /, 'no stack trace');
        for (const l of stdout.trim().split('\n')) JSON.parse(l); // every line complete
      } finally {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      }
    } finally {
      ns.close();
    }
  });
}
