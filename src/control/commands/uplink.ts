/**
 * `pinhole uplink --iface IF [--mode auto|afxdp|afpacket] [--port N]... [--address IP]... [--to IF2]
 *  [--queues N] [--ring-size N] [--cpus LIST] [--replace-foreign] [--stats-interval MS]`
 *
 * A foreground process: opens the uplink, prints one JSON line on stdout when ready, counts the
 * tunnel frames it receives and, with --to, forwards them unchanged out of IF2. With
 * --stats-interval it also prints a `stats` line (the same counters) every MS milliseconds.
 * SIGINT, SIGTERM, SIGQUIT, SIGHUP and a closed stdout/stderr (EPIPE) stop it cleanly (program
 * detached, settings restored; see ../lifecycle.ts) and print the final counters as one JSON
 * line; exit 0, or 1 when a worker died. Logs go to stderr as JSON lines.
 *
 * --ring-size N sizes the AF_XDP receive and fill rings of the uplink (a power of two 64..32768,
 * default XSK_DEFAULT_RX_RING): deeper rings absorb longer bursts and pin more memory (4 KiB per
 * frame, the UMEM holds rx + tx frames rounded up to a power of two). AF_PACKET ignores it.
 *
 * --cpus LIST (`2,3`) pins worker i to the i-th CPU (mod the list), as `uplink.cpus` in
 * `pinhole run`'s config: only the workers' threads.
 *
 * Capabilities: what the chosen mode needs, no more. AF_PACKET opens packet sockets and loads
 * only a classic socket filter: CAP_NET_RAW. AF_XDP also loads and attaches the XDP program:
 * CAP_BPF (or CAP_SYS_ADMIN) and CAP_NET_ADMIN. `auto` needs CAP_NET_RAW; the probes find out
 * whether AF_XDP is permitted and fall back to AF_PACKET with the reason when it is not.
 */
import { parseArgs } from 'node:util';
import { getSys, PinholeError } from '../../sys/index.ts';
import { startUplink, type RequestedMode } from '../../uplink/runner.ts';
import { requireCaps, type CapName } from '../caps.ts';
import { toJson, type CommandIO } from '../io.ts';
import { startLagMonitor } from '../lag.ts';
import { parseMillis, runUntilStopped } from '../lifecycle.ts';
import { parseCpus, parseRingSize, specFromArgs } from '../args.ts';

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
      'ring-size': { type: 'string' },
      cpus: { type: 'string' },
      'replace-foreign': { type: 'boolean', default: false },
      'stats-interval': { type: 'string' },
    },
    strict: true,
  });
  if (!values.iface) throw new PinholeError('ERR_CLI_USAGE', 'uplink: --iface NAME is required');
  const mode = values.mode as RequestedMode;
  if (!['auto', 'afxdp', 'afpacket'].includes(mode))
    throw new PinholeError('ERR_CLI_USAGE', `--mode ${values.mode}: expected auto, afxdp or afpacket`);
  if (values.to !== undefined) checkCrossConnect(values.iface, values.to);
  const spec = specFromArgs(values.port.length ? values.port : ['4789'], values.address);
  const statsMs = values['stats-interval'] === undefined ? 0 : parseMillis('--stats-interval', values['stats-interval'], 10);
  const queues = values.queues === undefined ? undefined : Number(values.queues);
  if (queues !== undefined && (!/^\d+$/.test(values.queues!) || queues < 1 || queues > 64)) {
    throw new PinholeError('ERR_CLI_USAGE', '--queues: an integer 1..64');
  }
  const ringSize = values['ring-size'] === undefined ? undefined : parseRingSize(values['ring-size']);
  const cpus = values.cpus === undefined ? undefined : parseCpus(values.cpus);
  requireCaps(`running the uplink (--mode ${mode})`, UPLINK_CAPS[mode]);
  const log = (e: Record<string, unknown>): void => io.err(toJson({ time: new Date().toISOString(), ...e }));

  // Installed before anything is set up, removed after teardown (see ../lifecycle.ts).
  return runUntilStopped({ log, ...(opts.signal ? { signal: opts.signal } : {}) }, async (life) => {
    let exitCode = 0;
    const runner = await startUplink({
      iface: values.iface!,
      mode,
      ports: spec.ports,
      addresses: spec.addresses,
      log,
      ...(values.to ? { to: values.to } : {}),
      ...(queues !== undefined ? { queues } : {}),
      ...(ringSize !== undefined ? { rings: { rx: ringSize } } : {}),
      ...(cpus !== undefined ? { cpus } : {}),
      replaceForeign: values['replace-foreign'],
      onLost: (code, message) => {
        // The uplink (or --to) is gone or lost its program: nothing useful runs any more. Stop
        // cleanly (undo what is left to undo) and exit non-zero with the code.
        log({ level: 'error', event: 'uplink-lost', code, message });
        exitCode = 1;
        life.requestStop(code);
      },
      onLinkState: (iface, state) => log({ level: state === 'up' ? 'info' : 'warn', event: `link-${state}`, iface }),
      onWorkerDeath: (queue, why) => {
        // A queue without its socket sends its tunnel traffic to the kernel: not a state to
        // keep running in. Stop everything and exit non-zero so a supervisor restarts us.
        log({ level: 'error', event: 'worker-died', queue, message: why });
        exitCode = 1;
        life.requestStop('worker-died');
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
      const why = await life.stopRequested;
      if (statsTimer) clearInterval(statsTimer);
      const totals = await runner.stop();
      io.out(
        toJson({ event: 'stopped', mode: runner.mode, ...totals, pinhole: runner.pinholeCounters() ?? null, eventLoopLagMs: lag.stop() }),
      );
      log({ level: 'info', event: 'stopped', reason: why });
    } finally {
      await runner.stop();
    }
    return exitCode;
  });
}

/** Capabilities per requested mode (see the file comment). */
const UPLINK_CAPS: Record<RequestedMode, readonly CapName[]> = {
  auto: ['CAP_NET_RAW'],
  afpacket: ['CAP_NET_RAW'],
  afxdp: ['CAP_NET_RAW', 'CAP_NET_ADMIN', 'CAP_BPF'],
};

/** `--to` must name another interface: the uplink cross-connected to itself is refused up front. */
function checkCrossConnect(iface: string, to: string): void {
  if (to === '') throw new PinholeError('ERR_CLI_USAGE', 'uplink: --to needs an interface name');
  let same = to === iface;
  if (!same) {
    // Another name (an altname) for the same interface is the same interface.
    try {
      const sys = getSys();
      same = sys.ifNameToIndex(to) === sys.ifNameToIndex(iface);
    } catch {
      // a missing interface is reported by the uplink with its own code
    }
  }
  if (same) throw new PinholeError('ERR_CLI_USAGE', `uplink: --to ${to} is the uplink itself (--iface ${iface}); name another interface`);
}
