/**
 * How a long-running command (uplink today, the daemon tomorrow) lives and ends: it runs until
 * it is asked to stop, then tears down what it set up — and nothing it can be sent may skip the
 * teardown, which is what keeps an XDP program from staying attached to the host's uplink.
 *
 * Stop requests, all ending in the same teardown:
 *   SIGINT, SIGTERM, SIGQUIT   stop;
 *   SIGHUP                     stop (the terminal or the session went away) — unless the command
 *                              gives `hangup` a handler (a daemon reloads its configuration);
 *   output closed              stdout/stderr's reader went away (EPIPE, see io.ts `onOutputClosed`);
 *   requestStop(reason)        the command itself (e.g. a dataplane worker died);
 *   opts.signal                an AbortSignal (tests, embedding).
 *
 * Handlers are installed before anything is set up and removed only after teardown, so a
 * signal during startup stops right after it, and a second signal during teardown cannot end
 * the process halfway: it is logged (a warning naming the way out), the one after that forces
 * the exit (code 130). Without these handlers Node's defaults end the process at once on
 * SIGHUP/SIGQUIT/SIGTERM.
 *
 * Timer options (`--stats-interval`, `--timeout`) go through `parseMillis`: setTimeout and
 * setInterval take at most 2^31−1 ms and silently fire after 1 ms for anything larger.
 */
import { PinholeError } from '../sys/index.ts';
import { onOutputClosed } from './io.ts';

/** The signals that stop a long-running command. */
export const STOP_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGQUIT', 'SIGHUP'] as const;
export type StopSignal = (typeof STOP_SIGNALS)[number];

/** Why a command stopped: a signal, `output-closed`, `abort`, or the command's own reason. */
export type StopReason = StopSignal | 'output-closed' | 'abort' | (string & {});

export interface LifecycleOptions {
  /** What SIGHUP means: 'stop' (the default) or a handler run on every SIGHUP (e.g. reload). */
  hangup?: 'stop' | (() => void);
  /** Stop when this aborts. */
  signal?: AbortSignal;
  /** Structured log (stderr JSON lines): stop requests and the "already stopping" warning. */
  log?: (event: Record<string, unknown>) => void;
  /** Called on the signal after the warning (default: process.exit(130)). */
  forceExit?: () => void;
}

export interface Lifecycle {
  /** Resolves with the reason of the first stop request. */
  readonly stopRequested: Promise<StopReason>;
  /** The first stop request's reason, once there is one. */
  readonly reason: StopReason | undefined;
  /** Asks to stop (the first request wins; later ones are ignored). */
  requestStop(reason: StopReason): void;
  /** Removes every handler: call when teardown has finished. Idempotent. */
  close(): void;
}

/** Exit code after a forced exit (the third signal): 128 + SIGINT, as shells report Ctrl-C. */
export const FORCED_EXIT_CODE = 130;

/** Installs the stop handlers (see the file comment). Pair with `close()` after teardown. */
export function startLifecycle(opts: LifecycleOptions = {}): Lifecycle {
  const log = opts.log ?? (() => undefined);
  let reason: StopReason | undefined;
  let resolveStop!: (r: StopReason) => void;
  const stopRequested = new Promise<StopReason>((resolve) => (resolveStop = resolve));
  let late = 0;
  let closed = false;

  const requestStop = (r: StopReason): void => {
    if (reason !== undefined || closed) return;
    reason = r;
    resolveStop(r);
  };

  const onSignal = (sig: NodeJS.Signals): void => {
    if (sig === 'SIGHUP' && typeof opts.hangup === 'function') {
      opts.hangup();
      return;
    }
    if (reason === undefined) {
      log({ level: 'info', event: 'signal', signal: sig, message: 'stopping' });
      requestStop(sig);
      return;
    }
    late++;
    if (late === 1) {
      log({ level: 'warn', event: 'signal', signal: sig, message: 'stopping already; once more to force exit' });
    } else if (opts.forceExit) {
      opts.forceExit();
    } else {
      process.exit(FORCED_EXIT_CODE);
    }
  };
  for (const s of STOP_SIGNALS) process.on(s, onSignal);

  const offOutput = onOutputClosed((stream, code) => {
    if (reason === undefined) log({ level: 'info', event: 'output-closed', stream, code, message: 'stopping' });
    requestStop('output-closed');
  });
  const onAbort = (): void => requestStop('abort');
  if (opts.signal?.aborted) requestStop('abort');
  else opts.signal?.addEventListener('abort', onAbort, { once: true });

  return {
    stopRequested,
    get reason() {
      return reason;
    },
    requestStop,
    close() {
      if (closed) return;
      closed = true;
      for (const s of STOP_SIGNALS) process.off(s, onSignal);
      offOutput();
      opts.signal?.removeEventListener('abort', onAbort);
    },
  };
}

/**
 * Runs `body` with a lifecycle installed and removes it when `body` has settled (teardown
 * included): the one way long-running commands run until stopped.
 */
export async function runUntilStopped<T>(opts: LifecycleOptions, body: (life: Lifecycle) => Promise<T>): Promise<T> {
  const life = startLifecycle(opts);
  try {
    return await body(life);
  } finally {
    life.close();
  }
}

/** The largest delay setTimeout/setInterval honour (2^31−1 ms, about 24.8 days). */
export const MAX_TIMER_MS = 0x7fffffff;

/**
 * Parses a millisecond option: an integer in [min, MAX_TIMER_MS]. Throws ERR_CLI_USAGE naming
 * the option otherwise (a larger value would overflow the timer and fire after 1 ms).
 */
export function parseMillis(option: string, text: string, min = 0): number {
  const n = /^\d+$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < min || n > MAX_TIMER_MS) {
    throw new PinholeError('ERR_CLI_USAGE', `${option} ${text}: milliseconds, an integer ${min}..${MAX_TIMER_MS}`);
  }
  return n;
}
