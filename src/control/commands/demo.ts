/**
 * `pinhole demo [--keep]`: the README's first command. Builds the two-node lab, runs pinhole on
 * both nodes from their config files, sends ping and iperf3 TCP/UDP between the pods while the
 * nodes' own traffic flows, prints one table, and removes everything — also on Ctrl-C (SIGINT,
 * SIGTERM, SIGHUP, SIGQUIT: the teardown runs; a third signal forces the exit, and `pinhole lab
 * down` cleans up after that) and on failure (exit 1 with the error). `--keep` leaves the lab and
 * the daemons running and prints the commands to look around.
 *
 * Progress lines go to stderr, the table to stdout. Exit 0; 1 on failure; 130 when interrupted.
 */
import { parseArgs } from 'node:util';
import { requireCaps } from '../caps.ts';
import type { CommandIO } from '../io.ts';
import { FORCED_EXIT_CODE, startLifecycle } from '../lifecycle.ts';
import { keepHints, renderTable, runDemo } from '../lab/demo.ts';

export async function run(args: string[], io: CommandIO, opts: { signal?: AbortSignal } = {}): Promise<number> {
  const { values } = parseArgs({ args, options: { keep: { type: 'boolean', default: false } }, strict: true });
  requireCaps('the demo', ['CAP_SYS_ADMIN', 'CAP_NET_ADMIN', 'CAP_NET_RAW', 'CAP_BPF']);
  const abort = new AbortController();
  const life = startLifecycle({
    ...(opts.signal ? { signal: opts.signal } : {}),
    log: (e) => {
      if (e.event === 'signal' || e.event === 'output-closed') io.err(`pinhole demo: ${String(e.signal ?? e.event)}: ${String(e.message)}`);
    },
  });
  void life.stopRequested.then(() => abort.abort());
  try {
    const r = await runDemo({ keep: values.keep, progress: (l) => io.err(l), signal: abort.signal });
    io.out(renderTable(r));
    if (r.kept) io.out(`\n${keepHints(r)}`);
    return 0;
  } catch (err) {
    if ((err as { code?: string }).code === 'ERR_DEMO_INTERRUPTED') {
      io.err(`pinhole demo: interrupted (${String(life.reason)}); the lab was removed`);
      return FORCED_EXIT_CODE;
    }
    throw err;
  } finally {
    life.close();
  }
}
