/**
 * Where commands write: stdout for results (JSON or tables), stderr for logs and errors.
 *
 * Closed output. When the reader of a pipe goes away (`pinhole uplink ... | head -1`), the next
 * write fails with EPIPE (Node ignores SIGPIPE), reported as an 'error' event on the stream;
 * unhandled, it kills the process with a stack trace and no teardown — an XDP program would
 * stay attached. `processIO` handles it in one place for every command:
 *   - the failed stream is marked closed; later writes to it are dropped, never retried;
 *   - listeners registered with `onOutputClosed` (lifecycle.ts: every long-running command)
 *     turn it into a stop request, so teardown runs and the exit code is the command's own (0);
 *   - with no listener, the process's SIGTERM listeners are run instead (without sending a
 *     signal): a command that stops on SIGTERM stops cleanly; a short one just finishes.
 */
export interface CommandIO {
  out: (s: string) => void;
  err: (s: string) => void;
}

export type OutputStreamName = 'stdout' | 'stderr';
export type OutputClosedListener = (stream: OutputStreamName, code: string) => void;

const closedListeners = new Set<OutputClosedListener>();
const closed = { stdout: false, stderr: false };
let guarded = false;

/** Installs (once) the error handlers on process.stdout/stderr described above. */
export function guardProcessOutput(): void {
  if (guarded) return;
  guarded = true;
  process.stdout.on('error', (err: Error) => outputFailed('stdout', err));
  process.stderr.on('error', (err: Error) => outputFailed('stderr', err));
}

/** Whether writes to the stream failed (reader gone): further writes are dropped. */
export function outputClosed(stream: OutputStreamName): boolean {
  return closed[stream];
}

/** Calls `fn` when stdout or stderr is found closed; returns the unsubscribe function. */
export function onOutputClosed(fn: OutputClosedListener): () => void {
  guardProcessOutput();
  closedListeners.add(fn);
  return () => {
    closedListeners.delete(fn);
  };
}

function outputFailed(stream: OutputStreamName, err: Error): void {
  if (closed[stream]) return;
  closed[stream] = true;
  const code = (err as { code?: string }).code ?? 'EIO';
  if (closedListeners.size > 0) {
    for (const fn of [...closedListeners]) fn(stream, code);
    return;
  }
  // Nobody manages a lifecycle: stop like on SIGTERM if the command listens for it.
  if (process.listenerCount('SIGTERM') > 0) process.emit('SIGTERM', 'SIGTERM');
}

function write(stream: OutputStreamName, s: string): void {
  if (closed[stream]) return;
  guardProcessOutput();
  (stream === 'stdout' ? process.stdout : process.stderr).write(s.endsWith('\n') ? s : `${s}\n`);
}

export const processIO: CommandIO = {
  out: (s) => write('stdout', s),
  err: (s) => write('stderr', s),
};

/** Renders rows as an aligned text table. */
export function table(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    cells
      .map((c, i) => (c ?? '').padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}

/** JSON with bigint as numbers when safe, strings otherwise. */
export function toJson(v: unknown): string {
  return JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? (x <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(x) : x.toString()) : x));
}
