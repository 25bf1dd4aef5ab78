/**
 * Waiting on what a child process prints, as it prints it: a condition checked now and on every
 * chunk of one of its streams, failing after a deadline or as soon as the process has ended
 * without it ('close': all its output has been read by then). Built on it: a line matching a
 * pattern, and a follower of a daemon's log (JSON lines on stderr).
 *
 * The caller collects the output itself (its own 'data' listener, added when it spawned the
 * child, so the text is up to date when the condition is checked).
 */
import type { ChildProcess } from 'node:child_process';

/**
 * Resolves with `found()` once it is defined. `what` names the wait and `output()` what was
 * printed, for the error.
 */
export function outputUntil<T>(
  child: ChildProcess,
  stream: 'stdout' | 'stderr',
  found: () => T | undefined,
  what: string,
  output: () => string,
  ms = 15_000,
): Promise<T> {
  return new Promise((resolve, reject) => {
    const src = child[stream]!;
    const check = (): boolean => {
      const v = found();
      if (v === undefined) return false;
      done();
      resolve(v);
      return true;
    };
    const fail = (why: string): void => {
      done();
      reject(new Error(`${what}: ${why}; output:\n${output()}`));
    };
    const onData = (): void => void check();
    const onClose = (): void => {
      if (!check()) fail('the process ended first');
    };
    const timer = setTimeout(() => fail(`not within ${ms} ms`), ms);
    const done = (): void => {
      clearTimeout(timer);
      src.off('data', onData);
      child.off('close', onClose);
    };
    src.on('data', onData);
    child.once('close', onClose);
    if (!check() && (src.readableEnded || src.destroyed)) fail('its output had ended');
  });
}

/** Resolves once `text()` (the child's stdout so far) has a line matching `re`. */
export async function lineMatching(child: ChildProcess, text: () => string, re: RegExp, ms = 15_000): Promise<void> {
  await outputUntil(child, 'stdout', () => (re.test(text()) ? true : undefined), `a line matching ${re}`, text, ms);
}

export interface LogWatch {
  /** Everything logged since the watch began. */
  text(): string;
  /** Resolves once `n` log lines in all match `re`. */
  until(re: RegExp, n?: number, ms?: number): Promise<void>;
}

/** Follows a process's log (JSON lines on stderr) from now on, as it is written. */
export function followLog(child: ChildProcess): LogWatch {
  let text = '';
  child.stderr!.on('data', (d: Buffer) => (text += d.toString()));
  const count = (re: RegExp): number => text.split('\n').filter((l) => re.test(l)).length;
  return {
    text: () => text,
    async until(re, n = 1, ms = 20_000) {
      await outputUntil(
        child,
        'stderr',
        () => (count(re) >= n ? true : undefined),
        `${n} log line(s) matching ${re}`,
        () => text,
        ms,
      );
    },
  };
}
