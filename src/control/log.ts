/**
 * Structured logs: JSON lines on stderr, through pino.
 *
 * One line per event, the shape the daemon has always written:
 *   {"level":"info","time":"2025-01-01T00:00:00.000Z","event":"ready","mode":"afxdp",...}
 * `level` is the label (debug, info, warn, error), `time` is ISO 8601 UTC, `event` names what
 * happened, free text goes in `message`. No pid/hostname: a supervisor (systemd, the kubelet)
 * already tags the stream. (pino writes `level` before `time`; the keys are the same as before.)
 *
 * The code logs through a `(event) => void` function taking `{ level, event, ...fields }`
 * (daemon/forwarder.ts `Log`, control/lifecycle.ts); `asLogFn` turns a logger into one, so that
 * code does not change and tests keep passing plain functions.
 *
 * Closed output. The default destination is the process's stderr through control/io.ts, which
 * handles EPIPE once for every writer: the stream is marked closed, later lines are dropped,
 * and long-running commands get a stop request (onOutputClosed). Other destinations (an fd, a
 * stream) are guarded here: an error event or a throwing write closes the destination and
 * later lines are dropped; logging never throws.
 *
 * Writes are synchronous (stderr is a pipe or a file for a daemon): a line logged right before
 * exit is not lost. The level can be changed at runtime (`logger.level = 'debug'`, e.g. on reload).
 */
import { pino, type DestinationStream, type Logger as PinoLogger } from 'pino';

import type { LogLevel } from '../config/schema.ts';
import { processIO } from './io.ts';

export type Logger = PinoLogger;
export type LogFn = (event: Record<string, unknown>) => void;

/** Something lines can be written to: a Node Writable, a SonicBoom, or any `{ write }`. */
export interface LogStream {
  write(line: string): unknown;
  on?(event: 'error', listener: (err: Error) => void): unknown;
}

export interface LoggerOptions {
  level: LogLevel;
  /** A file descriptor (1: stdout, 2: stderr through io.ts) or a stream. Default: stderr. */
  destination?: number | LogStream;
}

const PINO_LEVELS = new Set(['trace', 'debug', 'info', 'warn', 'error', 'fatal']);

/** A destination that never throws: after its first failure it drops every line. */
function guarded(target: LogStream): DestinationStream {
  let closed = false;
  target.on?.('error', () => {
    closed = true;
  });
  return {
    write(line: string): void {
      if (closed) return;
      try {
        target.write(line);
      } catch {
        closed = true;
      }
    },
  };
}

function destinationOf(d: LoggerOptions['destination']): DestinationStream {
  if (d === undefined || d === 2 || d === process.stderr) return { write: (line: string) => processIO.err(line) };
  if (d === 1 || d === process.stdout) return { write: (line: string) => processIO.out(line) };
  if (typeof d === 'number') return guarded(pino.destination({ fd: d, sync: true }));
  return guarded(d);
}

export function createLogger(opts: LoggerOptions): Logger {
  return pino(
    {
      level: opts.level,
      base: null,
      messageKey: 'message',
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    destinationOf(opts.destination),
  );
}

/**
 * `{ level, event, ...fields }` → `logger[level]({ event, ...fields })`. A missing or unknown
 * level logs at info; a `time` field is dropped (the logger stamps its own).
 */
export function asLogFn(logger: Logger): LogFn {
  return (e: Record<string, unknown>): void => {
    const { level, time: _time, ...fields } = e;
    const at = typeof level === 'string' && PINO_LEVELS.has(level) ? (level as 'info') : 'info';
    logger[at](fields);
  };
}
