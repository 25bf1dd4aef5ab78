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
  const statsMs = values['stats-interval'] ? Number(values['stats-interval']) : 0;
  if (values['stats-interval'] && (!Number.isInteger(statsMs) || statsMs < 10)) {
    throw new PinholeError('ERR_CLI_USAGE', '--stats-interval: milliseconds, at least 10');
  }
  const queues = values.queues === undefined ? undefined : Number(values.queues);
  if (queues !== undefined && (!Number.isInteger(queues) || queues < 1 || queues > 64)) {
    throw new PinholeError('ERR_CLI_USAGE', '--queues: an integer 1..64');
  }
  requireCaps('running the uplink', ['CAP_NET_ADMIN', 'CAP_BPF', 'CAP_NET_RAW']);
  const log = (e: Record<string, unknown>): void => io.err(toJson({ time: new Date().toISOString(), ...e }));

  // Signals are handled from before anything is set up until teardown has finished: a signal
  // during startup stops right after it, and a second Ctrl-C during teardown cannot kill the
  // process halfway (leaving the program attached); the third one forces an exit.
  let signals = 0;
  let requestStop!: (why: string) => void;
  const stopRequested = new Promise<string>((resolve) => (requestStop = resolve));
  const onSignal = (sig: NodeJS.Signals): void => {
    signals++;
    if (signals === 1) requestStop(sig);
    else if (signals === 2) log({ level: 'warn', event: 'signal', signal: sig, message: 'stopping already; once more to force exit' });
    else process.exit(130);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  opts.signal?.addEventListener('abort', () => requestStop('abort'), { once: true });

  let exitCode = 0;
  try {
    const runner = await startUplink({
      iface: values.iface,
      mode,
      ports: spec.ports,
      addresses: spec.addresses,
      log,
      ...(values.to ? { to: values.to } : {}),
      ...(queues !== undefined ? { queues } : {}),
      replaceForeign: values['replace-foreign'],
      onWorkerDeath: (queue, why) => {
        // A queue without its socket sends its tunnel traffic to the kernel: not a state to
        // keep running in. Stop everything and exit non-zero so a supervisor restarts us.
        log({ level: 'error', event: 'worker-died', queue, message: why });
        exitCode = 1;
        requestStop('worker-died');
      },
    });
    try {
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
      const printStats = (): void => {
        try {
          io.out(toJson({ event: 'stats', ...runner.totals(), pinhole: runner.pinholeCounters() ?? null }));
        } catch (err) {
          log({ level: 'warn', event: 'stats', message: (err as Error).message });
        }
      };
      const statsTimer = statsMs ? setInterval(printStats, statsMs) : undefined;
      await stopRequested;
      if (statsTimer) clearInterval(statsTimer);
      const totals = await runner.stop();
      io.out(
        toJson({ event: 'stopped', mode: runner.mode, ...totals, pinhole: runner.pinholeCounters() ?? null, eventLoopLagMs: lag.stop() }),
      );
    } finally {
      await runner.stop();
    }
    log({ level: 'info', event: 'stopped' });
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  return exitCode;
}
