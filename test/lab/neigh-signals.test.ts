/**
 * `pinhole neigh --watch` ends like every long-running command (control/lifecycle.ts): SIGINT,
 * SIGTERM, SIGQUIT and SIGHUP each stop it cleanly — exit 0, no stack trace, the watch still
 * delivering changes up to the signal. Before, SIGHUP and SIGQUIT killed it (129, 131).
 * One namespace with a veth and neighbours in 198.18.0.0/15.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { requireRoot } from '../helpers/require.ts';
import { createNetns } from '../helpers/netns.ts';
import { startCli } from '../helpers/cli.ts';
import { STOP_SIGNALS } from '../../src/control/lifecycle.ts';

requireRoot();

for (const sig of STOP_SIGNALS) {
  test(`neigh --watch --json: ${sig} stops it cleanly (exit 0, no stack)`, async () => {
    const ns = createNetns(`nw-${sig.slice(3).toLowerCase()}`);
    try {
      ns.ip('link', 'add', 'd0', 'type', 'veth', 'peer', 'name', 'd1');
      ns.ip('link', 'set', 'd0', 'up');
      ns.ip('neigh', 'add', '198.18.6.1', 'lladdr', '02:00:00:00:06:01', 'dev', 'd0');
      const w = startCli(ns.name, ['neigh', '--watch', '--json']);
      try {
        await w.line(/"event":"present".*"198\.18\.6\.1"/);
        // The watch is live: a change reaches it before the signal does.
        ns.ip('neigh', 'add', '198.18.6.2', 'lladdr', '02:00:00:00:06:02', 'dev', 'd0');
        await w.line(/"event":"add".*"198\.18\.6\.2"/);
        w.child.kill(sig);
        const r = await w.closed;
        assert.deepEqual(r, { code: 0, signal: null }, `${sig}: stderr ${w.stderr()}`);
        assert.doesNotMatch(w.stderr(), /\n\s+at /, 'no stack trace');
        for (const l of w.stdout().trim().split('\n')) JSON.parse(l); // every line complete
      } finally {
        if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill('SIGKILL');
      }
    } finally {
      ns.close();
    }
  });
}
