/**
 * `pinhole uplink --iface IF [--mode auto|afxdp|afpacket] [--port N]... [--address IP]... [--to IF2]
 *  [--queues N] [--replace-foreign] [--stats-interval MS]`
 *
 * A foreground process: opens the uplink, prints one JSON line on stdout when ready, counts the
 * tunnel frames it receives and, with --to, forwards them unchanged out of IF2. With
 * --stats-interval it also prints a `stats` line (the same counters) every MS milliseconds. SIGINT/SIGTERM
 * stop it cleanly (program detached, settings restored) and print the final counters as one JSON
 * line. Logs go to stderr as JSON lines.
 */
import { parseArgs } from 'node:util';
import { PinholeError } from '../../sys/index.ts';
import { startUplink, type RequestedMode } from '../../uplink/runner.ts';
import { requireCaps } from '../caps.ts';
import { toJson, type CommandIO } from '../io.ts';
import { startLagMonitor } from '../lag.ts';
import { specFromArgs } from './bpf.ts';

export async function run(args: string[], io: CommandIO, opts: { signal?: AbortSignal } = {}): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      iface: { type: 'string' },
      mode: { type: 'string', default: 'auto' },
      port: { type: 'string', multiple: true, default: [] },
      address: { type: 'string', multiple: true, default: [] },
      to: { type: 'string' },
      queues: { type: 'string' },
      'replace-foreign': { type: 'boolean', default: false },
      'stats-interval': { type: 'string' },
    },
    strict: true,
  });
  if (!values.iface) throw new PinholeError('ERR_CLI_USAGE', 'uplink: --iface NAME is required');
  const mode = values.mode as RequestedMode;
  if (!['auto', 'afxdp', 'afpacket'].includes(mode))
    throw new PinholeError('ERR_CLI_USAGE', `--mode ${values.mode}: expected auto, afxdp or afpacket`);
  const spec = specFromArgs(values.port.length ? values.port : ['4789'], values.address);
  requireCaps('running the uplink', ['CAP_NET_ADMIN', 'CAP_BPF', 'CAP_NET_RAW']);
  const log = (e: Record<string, unknown>): void => io.err(toJson({ time: new Date().toISOString(), ...e }));
  // Listen for SIGINT/SIGTERM before anything is set up: a signal during startup stops cleanly
  // right after it, instead of killing the process halfway (and leaving the program attached).
  const stopRequested = new Promise<void>((resolve) => {
    const done = (): void => resolve();
    process.once('SIGINT', done);
    process.once('SIGTERM', done);
    opts.signal?.addEventListener('abort', done, { once: true });
  });

  const runner = await startUplink({
    iface: values.iface,
    mode,
    ports: spec.ports,
    addresses: spec.addresses,
    log,
    ...(values.to ? { to: values.to } : {}),
    ...(values.queues ? { queues: Number(values.queues) } : {}),
    replaceForeign: values['replace-foreign'],
  });
  io.out(
    toJson({
      event: 'ready',
      mode: runner.mode,
      xdpMode: runner.xdpMode ?? null,
      detail: runner.detail,
      reason: runner.reasons.map((r) => r.code).join(',') || null,
      reasons: runner.reasons,
      queues: runner.workers.length,
      iface: runner.iface.name,
      ports: spec.ports,
      to: values.to ?? null,
    }),
  );
  log({ level: 'info', event: 'ready', mode: runner.mode, detail: runner.detail, queues: runner.workers.length });
  // Measured from ready on: what a busy dataplane does to the main thread.
  const lag = startLagMonitor(10);

  const statsMs = values['stats-interval'] ? Number(values['stats-interval']) : 0;
  if (values['stats-interval'] && (!Number.isInteger(statsMs) || statsMs < 10)) {
    throw new PinholeError('ERR_CLI_USAGE', '--stats-interval: milliseconds, at least 10');
  }
  const statsTimer = statsMs
    ? setInterval(() => io.out(toJson({ event: 'stats', ...runner.totals(), pinhole: runner.pinholeCounters() ?? null })), statsMs)
    : undefined;
  await stopRequested;
  if (statsTimer) clearInterval(statsTimer);
  const totals = await runner.stop();
  const lagMs = lag.stop();
  io.out(
    toJson({
      event: 'stopped',
      mode: runner.mode,
      ...totals,
      pinhole: runner.pinholeCounters() ?? null,
      eventLoopLagMs: lagMs,
    }),
  );
  log({ level: 'info', event: 'stopped' });
  return 0;
}
